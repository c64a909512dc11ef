//! FTPS end to end: `wharf serve` with a certificate against curl (explicit `--ssl-reqd` and
//! implicit `ftps://`), lftp (`ftp:ssl-force`, `ftp:ssl-protect-data`) and Python's ftplib
//! (`FTP_TLS.prot_p()` with and without data-session reuse); the wharf client against vsftpd
//! (`ssl_enable`, `require_ssl_reuse`) and `wharf serve`; the policy cases (clear login refused,
//! PROT C refused, a fresh data session refused, AUTH TLS with a pipelined USER), certificate
//! reload on SIGHUP, and `wharf check --tls`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wharf_testkit::{Ftp, Server, output_with_input, output_within, pattern, peers, require_tool};

use crate::{BIN, server};

/// `wharf cert NAME` into `dir`: a self-signed certificate for NAME, 127.0.0.1 and ::1.
pub(crate) fn make_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    make_cert_for(dir, name, &["127.0.0.1", "::1"])
}

fn make_cert_for(dir: &Path, name: &str, alt: &[&str]) -> (PathBuf, PathBuf) {
    let mut cmd = Command::new(BIN);
    cmd.args(["cert", name, "--out", &dir.to_string_lossy()]);
    for a in alt {
        cmd.args(["--alt", a]);
    }
    let out = output_within(&mut cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{out:?}");
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// A writable FTPS server (user demo/secret) with TLS in `mode`, and its certificate.
pub(crate) struct Tls {
    pub(crate) server: Server,
    pub(crate) cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn tls_server(mode: &str, extra: &[&str]) -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "localhost");
    tls_server_with(mode, extra, dir, cert, key)
}

fn tls_server_with(
    mode: &str,
    extra: &[&str],
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
) -> Tls {
    let server = server()
        .args(&[
            "--tls-cert",
            &cert.to_string_lossy(),
            "--tls-key",
            &key.to_string_lossy(),
            "--tls",
            mode,
            "--listen-implicit",
            "127.0.0.1:0",
            "--user",
            "demo:secret",
            "-w",
            "--log-level",
            "debug",
        ])
        .args(extra)
        .start();
    std::fs::write(server.path("a.txt"), b"hello over TLS\n").unwrap();
    Tls {
        server,
        cert,
        key,
        _dir: dir,
    }
}

fn run_ok(cmd: &mut Command) -> Vec<u8> {
    let out = output_within(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{cmd:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn curl_explicit_and_implicit() {
    let curl = require_tool("curl");
    let t = tls_server("required", &[]);
    let addr = t.server.addr;
    let implicit = t.server.implicit.expect("implicit listener");
    let dir = tempfile::tempdir().unwrap();
    let payload = pattern(3 * 1024 * 1024 + 17, 5);
    let local = dir.path().join("payload.bin");
    std::fs::write(&local, &payload).unwrap();
    // Passive only: curl 7.88 (Debian 12) hangs in active-mode FTPS after it accepts the
    // server's data connection, against vsftpd as well; lftp and the wharf client cover active.
    // Explicit: AUTH TLS on the control port, PROT P for data.
    let got = run_ok(
        Command::new(&curl)
            .args(["-sS", "--ssl-reqd", "--cacert"])
            .arg(&t.cert)
            .arg(format!("ftp://demo:secret@{addr}/a.txt")),
    );
    assert_eq!(got, b"hello over TLS\n");
    run_ok(
        Command::new(&curl)
            .args(["-sS", "--ssl-reqd", "--cacert"])
            .arg(&t.cert)
            .arg("-T")
            .arg(&local)
            .arg(format!("ftp://demo:secret@{addr}/up.bin")),
    );
    assert!(
        std::fs::read(t.server.path("up.bin")).unwrap() == payload,
        "upload differs"
    );
    // Implicit: TLS from the first byte.
    let got = run_ok(
        Command::new(&curl)
            .args(["-sS", "--cacert"])
            .arg(&t.cert)
            .arg(format!("ftps://demo:secret@{implicit}/up.bin")),
    );
    assert!(got == payload, "implicit download differs");
    // TLS 1.2 too.
    let got = run_ok(
        Command::new(&curl)
            .args(["-sS", "--tls-max", "1.2", "--ssl-reqd", "--cacert"])
            .arg(&t.cert)
            .arg(format!("ftp://demo:secret@{addr}/up.bin")),
    );
    assert!(got == payload, "TLS 1.2 download differs");
    let log = t.server.log();
    assert!(!log.contains("did not resume"), "{log}");
    // curl without TLS is refused before its password is sent.
    let out = output_within(
        Command::new(&curl).args(["-sS", &format!("ftp://demo:secret@{addr}/a.txt")]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("530"),
        "{out:?}"
    );
}

#[test]
fn lftp_ssl_force_and_protect_data() {
    let lftp = require_tool("lftp");
    let t = tls_server("required", &[]);
    let dir = tempfile::tempdir().unwrap();
    let payload = pattern(1024 * 1024 + 3, 9);
    std::fs::write(dir.path().join("up.bin"), &payload).unwrap();
    for passive in [true, false] {
        let script = format!(
            "set ssl:ca-file {ca}; set ftp:ssl-force true; set ftp:ssl-protect-data true; \
             set ftp:passive-mode {passive}; set net:max-retries 1; set net:timeout 10; \
             open -u demo,secret ftp://{addr}; lcd {dir}; put up.bin -o up-{passive}.bin; \
             get a.txt -o a-{passive}.txt; cls -1; bye",
            ca = t.cert.display(),
            addr = t.server.addr,
            dir = dir.path().display()
        );
        let out = run_ok(Command::new(&lftp).arg("-c").arg(&script));
        let listing = String::from_utf8_lossy(&out);
        assert!(listing.contains(&format!("up-{passive}.bin")), "{listing}");
        let stored = std::fs::read(t.server.path(&format!("up-{passive}.bin"))).unwrap();
        assert!(
            stored == payload,
            "upload differs: {} bytes stored of {}\n{}",
            stored.len(),
            payload.len(),
            t.server.log()
        );
        assert_eq!(
            std::fs::read(dir.path().join(format!("a-{passive}.txt"))).unwrap(),
            b"hello over TLS\n"
        );
    }
}

fn python(args: &[&str]) -> String {
    python_with(args, false)
}

/// The ftplib helper; `tls12`: TLS 1.2 at most.
fn python_with(args: &[&str], tls12: bool) -> String {
    let python = require_tool("python3");
    let script = peers::script("ftps_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).args(args);
    if tls12 {
        cmd.env("FTPS_TLS12", "1");
    }
    let out = output_within(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn python_ftplib_prot_p_needs_session_reuse() {
    let t = tls_server("required", &[]);
    let port = t.server.addr.port().to_string();
    let ca = t.cert.to_string_lossy().into_owned();
    let args =
        |mode: &'static str| [mode, "127.0.0.1", &port, &ca, "demo", "secret"].map(String::from);
    // TLS 1.3 (tickets) and TLS 1.2 (session IDs and tickets) alike.
    for (tls12, version) in [(false, "TLSv1.3"), (true, "TLSv1.2")] {
        std::fs::remove_file(t.server.path("up.bin")).ok();
        let reuse = args("reuse");
        let out = python_with(&reuse.iter().map(String::as_str).collect::<Vec<_>>(), tls12);
        assert!(
            out.contains("RETR 226 Transfer complete. hello over TLS"),
            "{out}"
        );
        assert!(out.contains("STOR 226"), "{out}");
        assert!(out.contains("NLST a.txt up.bin"), "{out}");
        assert!(out.contains(&format!("VERSION {version}")), "{out}");
        let expected: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert!(std::fs::read(t.server.path("up.bin")).unwrap() == expected);
        // Stock FTP_TLS opens each data connection with a fresh TLS session: refused (as
        // vsftpd's require_ssl_reuse does), with the reason on the control connection.
        let plain = args("plain");
        let out = python_with(&plain.iter().map(String::as_str).collect::<Vec<_>>(), tls12);
        assert!(
            out.contains("reply 522 TLS session reuse required"),
            "{out}"
        );
    }
    assert!(
        t.server
            .log()
            .contains("did not resume the control connection's TLS session")
    );
}

/// rclone (Go's TLS) shares one session cache between its control connections, so a data
/// connection resumes a sibling control connection's session: admitted when it is the same
/// user from the same address, refused (522) for another user.
#[test]
fn data_connections_may_resume_a_sibling_session_of_the_same_user_only() {
    let t = tls_server("required", &["--user", "other:pw2"]);
    let port = t.server.addr.port().to_string();
    let ca = t.cert.to_string_lossy().into_owned();
    for tls12 in [false, true] {
        let out = python_with(
            &[
                "sibling",
                "127.0.0.1",
                &port,
                &ca,
                "demo",
                "secret",
                "other",
                "pw2",
            ],
            tls12,
        );
        assert!(
            out.contains("SIBLING 226 Transfer complete. hello over TLS"),
            "TLS 1.2 only: {tls12}\n{out}"
        );
        assert!(
            out.contains("FOREIGN") && out.contains("522 TLS session reuse required"),
            "TLS 1.2 only: {tls12}\n{out}"
        );
    }
}

/// aioftp starts the data connection's TLS handshake before it sends RETR; ftplib only after
/// the 150. Both work: the handshake runs as soon as the connection arrives.
#[test]
fn data_tls_handshake_before_the_transfer_command() {
    let t = tls_server("required", &[]);
    let port = t.server.addr.port().to_string();
    let ca = t.cert.to_string_lossy().into_owned();
    let out = python(&["early", "127.0.0.1", &port, &ca, "demo", "secret"]);
    assert!(
        out.contains("EARLY 150") && out.contains("226 Transfer complete. hello over TLS"),
        "{out}"
    );
}

/// PROT C after a PASV made under PROT P: the connection waits for the client, who speaks
/// first in clear (the 150), so the listing goes in clear as asked.
#[test]
fn prot_c_after_pasv_under_prot_p_transfers_in_clear() {
    let t = tls_server("optional", &[]);
    let port = t.server.addr.port().to_string();
    let ca = t.cert.to_string_lossy().into_owned();
    let out = python(&["clearlate", "127.0.0.1", &port, &ca, "demo", "secret"]);
    assert!(
        out.contains("CLEARLATE 150") && out.contains("226") && out.contains("'a.txt'"),
        "{out}"
    );
}

#[test]
fn upload_without_close_notify_is_not_complete() {
    let t = tls_server("required", &[]);
    let port = t.server.addr.port().to_string();
    let out = python(&[
        "cut",
        "127.0.0.1",
        &port,
        &t.cert.to_string_lossy(),
        "demo",
        "secret",
    ]);
    // A TCP FIN alone could be forged or come from a cut connection: 426, never 226.
    assert!(
        out.contains("reply 426 Data connection closed without TLS close_notify"),
        "{out}"
    );
}

#[test]
fn reuse_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "localhost");
    let server = server()
        .config(&format!(
            "[tls]\ncert = '{}'\nkey = '{}'\nrequire_session_reuse = false\n\n[[user]]\nname = 'demo'\npassword_hash = '{}'\n",
            cert.display(),
            key.display(),
            "$6$wharftest$hUtbuCOguMJZM1yrMv4LXw7gYI8qH6Qa9ipf6YNIC4pxtX1WxxNFirSA/MXsee.vmj89GPzxztUwClTtPd.uq1"
        ))
        .start();
    std::fs::write(server.path("a.txt"), b"x").unwrap();
    let port = server.addr.port().to_string();
    let out = python(&[
        "plain",
        "127.0.0.1",
        &port,
        &cert.to_string_lossy(),
        "demo",
        "secret",
    ]);
    assert!(out.contains("NLST worked"), "{out}");
}

#[test]
fn pipelined_user_after_auth_is_discarded() {
    let t = tls_server("optional", &[]);
    let port = t.server.addr.port().to_string();
    let out = python(&["pipelined", "127.0.0.1", &port, &t.cert.to_string_lossy()]);
    assert!(out.contains("auth 234"), "{out}");
    // The first reply over TLS answers PWD: not logged in. Had the clear `USER pipelined` run
    // after the handshake, a 331 would come first.
    assert!(out.contains("first 530"), "{out}");
    assert!(
        t.server
            .log()
            .contains("discarded commands pipelined after AUTH TLS")
    );
}

#[test]
fn policy_replies() {
    // Required: USER in clear is refused before any password; PBSZ/PROT need AUTH first.
    let t = tls_server("required", &[]);
    let mut ftp = Ftp::connect(t.server.addr);
    let feat = ftp.cmd("FEAT");
    for line in [" AUTH TLS", " PBSZ", " PROT"] {
        assert!(feat.text.lines().any(|l| l == line), "{}", feat.text);
    }
    assert_eq!(ftp.cmd("USER demo").code, 530);
    assert_eq!(ftp.cmd("PASS secret").code, 503);
    assert_eq!(ftp.cmd("PBSZ 0").code, 503);
    assert_eq!(ftp.cmd("PROT P").code, 503);
    assert_eq!(ftp.cmd("CCC").code, 534);
    assert_eq!(ftp.cmd("AUTH KERBEROS_V4").code, 504);
    assert!(!t.server.log().contains("login failed"));

    // Off: AUTH is not offered.
    let plain = server().start();
    let mut ftp = Ftp::connect(plain.addr);
    assert!(!ftp.cmd("FEAT").text.contains("AUTH"));
    assert_eq!(ftp.cmd("AUTH TLS").code, 502);
}

#[test]
fn prot_c_refused_when_required_allowed_when_optional() {
    for mode in ["optional", "required"] {
        let t = tls_server(mode, &[]);
        let port = t.server.addr.port().to_string();
        let out = python(&[
            "protc",
            "127.0.0.1",
            &port,
            &t.cert.to_string_lossy(),
            "demo",
            "secret",
        ]);
        assert!(out.contains("PROT before PBSZ 503"), "{out}");
        if mode == "optional" {
            assert!(out.contains("PROT C 200"), "{out}");
            assert!(out.contains("NLST a.txt"), "{out}");
        } else {
            // RFC 4217: PROT C refused by policy, and a transfer in clear refused too.
            assert!(out.contains("PROT C 534"), "{out}");
            assert!(out.contains("NLST 521"), "{out}");
        }
    }
}

fn wharf(args: &[&str]) -> (i32, String, String) {
    let out = output_with_input(
        Command::new(BIN).args(args).env("WHARF_PASSWORD", "secret"),
        None,
        Duration::from_secs(60),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn wharf_client_against_wharf_explicit_and_implicit() {
    let t = tls_server("required", &[]);
    let dir = tempfile::tempdir().unwrap();
    let payload = pattern(2 * 1024 * 1024 + 1, 3);
    let local = dir.path().join("p.bin");
    std::fs::write(&local, &payload).unwrap();
    let ca = t.cert.to_string_lossy().into_owned();
    let explicit = format!("ftpes://demo@localhost:{}", t.server.addr.port());
    let implicit = format!(
        "ftps://demo@localhost:{}",
        t.server.implicit.expect("implicit").port()
    );
    for base in [&explicit, &implicit] {
        for mode in ["--passive", "--active"] {
            let name = format!("{}{mode}.bin", if base == &explicit { "e" } else { "i" });
            let (code, _, err) = wharf(&[
                "put",
                "-v",
                mode,
                "--ca-file",
                &ca,
                &local.to_string_lossy(),
                &format!("{base}/{name}"),
            ]);
            assert_eq!(code, 0, "{err}");
            assert!(
                err.lines().any(|l| l == "Status: Initializing TLS..."),
                "{err}"
            );
            assert!(
                err.lines()
                    .any(|l| l == "Status: TLS connection established."),
                "{err}"
            );
            assert!(err.lines().any(|l| l == "Command: PROT P"), "{err}");
            assert!(!err.contains("was not resumed"), "{err}");
            assert!(
                std::fs::read(t.server.path(&name)).unwrap() == payload,
                "{name} differs"
            );
            let back = dir.path().join(format!("back-{name}"));
            let (code, _, err) = wharf(&[
                "get",
                mode,
                "--ca-file",
                &ca,
                &format!("{base}/{name}"),
                &back.to_string_lossy(),
            ]);
            assert_eq!(code, 0, "{err}");
            assert!(std::fs::read(&back).unwrap() == payload, "{name} differs");
        }
    }
    // A tree, one session: more data connections than the control connection gave tickets
    // (rustls uses each once; every resumed data connection brings a fresh one).
    let tree = dir.path().join("tree");
    for i in 0..12 {
        wharf_testkit::write_file(
            &tree.join(format!("f{i:02}.txt")),
            format!("file {i}\n").as_bytes(),
        );
    }
    let (code, _, err) = wharf(&[
        "put",
        "-r",
        "-v",
        "--parallel",
        "2",
        "--ca-file",
        &ca,
        &tree.to_string_lossy(),
        &format!("{explicit}/tree/"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("was not resumed"), "{err}");
    let back = dir.path().join("tree-back");
    let (code, _, err) = wharf(&[
        "get",
        "-r",
        "-v",
        "--parallel",
        "2",
        "--ca-file",
        &ca,
        &format!("{explicit}/tree/"),
        &back.to_string_lossy(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("was not resumed"), "{err}");
    wharf_testkit::assert_same_tree(&tree, &back);
    // `--tls` with ftp:// is explicit TLS too.
    let (code, out, err) = wharf(&[
        "ls",
        "--tls",
        "--ca-file",
        &ca,
        &format!("ftp://demo@localhost:{}/", t.server.addr.port()),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("a.txt"), "{out}");
    // Verification is on by default: the self-signed certificate is refused, exit 3...
    let (code, _, err) = wharf(&["get", &format!("{explicit}/a.txt"), "-"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not trusted") && err.contains("--ca-file"),
        "{err}"
    );
    // ...and a name the certificate does not carry too.
    let other = tempfile::tempdir().unwrap();
    let (other_cert, _) = make_cert(other.path(), "elsewhere.example");
    let (code, _, err) = wharf(&[
        "get",
        "--ca-file",
        &other_cert.to_string_lossy(),
        &format!("{explicit}/a.txt"),
        "-",
    ]);
    assert_eq!(code, 3, "{err}");
    // --insecure goes on, and says so.
    let (code, out, err) = wharf(&["get", "-v", "--insecure", &format!("{explicit}/a.txt"), "-"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "hello over TLS\n");
    assert!(err.contains("certificate NOT verified"), "{err}");
    // A password never shows in the log.
    assert!(!err.contains("secret"), "{err}");
}

#[test]
fn wharf_client_against_vsftpd_requiring_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "localhost");
    // vsftpd drops privileges: its certificate must be readable by it.
    for f in [&cert, &key] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    let cert_line = format!("rsa_cert_file={}", cert.display());
    let key_line = format!("rsa_private_key_file={}", key.display());
    let peer = peers::vsftpd(&[
        "ssl_enable=YES",
        "allow_anon_ssl=YES",
        "force_anon_logins_ssl=YES",
        "force_anon_data_ssl=YES",
        "require_ssl_reuse=YES",
        &cert_line,
        &key_line,
    ]);
    let payload = pattern(1024 * 1024 + 5, 1);
    peer.seed("down.bin", &payload);
    let ca = cert.to_string_lossy().into_owned();
    let base = peer
        .url("")
        .replacen("ftp://", "ftpes://", 1)
        .replace("127.0.0.1", "localhost");
    let local = dir.path().join("up.bin");
    std::fs::write(&local, &payload).unwrap();
    for mode in ["--passive", "--active"] {
        let (code, out, err) = wharf(&["ls", "-v", mode, "--ca-file", &ca, &base]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("down.bin"), "{out}");
        assert!(
            err.lines()
                .any(|l| l == "Status: TLS connection established."),
            "{err}"
        );
        let back = dir.path().join(format!("down{mode}.bin"));
        let (code, _, err) = wharf(&[
            "get",
            mode,
            "--ca-file",
            &ca,
            &format!("{base}down.bin"),
            &back.to_string_lossy(),
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(std::fs::read(&back).unwrap() == payload, "download differs");
        let name = format!("up{mode}.bin");
        let (code, _, err) = wharf(&[
            "put",
            mode,
            "--ca-file",
            &ca,
            &local.to_string_lossy(),
            &format!("{base}{name}"),
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            std::fs::read(peer.path(&name)).unwrap() == payload,
            "{name} differs"
        );
    }
    // Plain FTP to it is refused (vsftpd forces TLS for anonymous here).
    let (code, _, _) = wharf(&["ls", &peer.url("")]);
    assert_eq!(code, 1);
}

/// `wharf check --tls` against vsftpd, with and without `require_ssl_reuse`: the reuse step
/// tells the two apart; a certificate that expires within 30 days is a warning; vsftpd's
/// default cipher list leaves TLS 1.2 without a cipher current clients offer (1.3 only), which
/// `ssl_ciphers=HIGH` fixes.
#[test]
fn check_tls_reuse_and_expiry_against_vsftpd() {
    // vsftpd's default cipher list, then HIGH (an empty line is a comment to vsftpd).
    for (require, ciphers) in [("YES", "#"), ("NO", "ssl_ciphers=HIGH")] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "cert",
            "localhost",
            "--days",
            "10",
            "--out",
            &dir.path().to_string_lossy(),
        ]);
        assert!(
            output_within(&mut cmd, Duration::from_secs(30))
                .status
                .success()
        );
        let (cert, key) = (
            dir.path().join("localhost.crt"),
            dir.path().join("localhost.key"),
        );
        for f in [&cert, &key] {
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .unwrap();
        }
        let peer = peers::vsftpd(&[
            "ssl_enable=YES",
            "allow_anon_ssl=YES",
            "force_anon_logins_ssl=YES",
            "force_anon_data_ssl=YES",
            &format!("require_ssl_reuse={require}"),
            ciphers,
            &format!("rsa_cert_file={}", cert.display()),
            &format!("rsa_private_key_file={}", key.display()),
        ]);
        let ca = cert.to_string_lossy().into_owned();
        let target = format!("localhost:{}", peer.addr.port());
        let (code, out, err) = wharf(&["check", "--tls", "--ca-file", &ca, "--json", &target]);
        assert_eq!(code, 0, "{out}\n{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let step = |name: &str| {
            report["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("no {name} step: {out}"))
                .clone()
        };
        assert_eq!(report["server"], "vsftpd");
        let tls = step("tls");
        assert_eq!(tls["verdict"], "warn", "{tls}");
        assert!(
            tls["cause"]
                .as_str()
                .unwrap()
                .starts_with("the certificate expires on "),
            "{tls}"
        );
        let versions = step("versions");
        if require == "YES" {
            assert_eq!(versions["verdict"], "warn", "{versions}");
            assert!(
                versions["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("TLS 1.2: refused"),
                "{versions}"
            );
            assert!(
                versions["advice"]
                    .as_str()
                    .unwrap()
                    .starts_with("allow TLS 1.2 as well: `ssl_ciphers=HIGH`"),
                "{versions}"
            );
        } else {
            assert_eq!(versions["verdict"], "ok", "{versions}");
            assert!(
                versions["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("TLS 1.2: accepted"),
                "{versions}"
            );
        }
        let reuse = step("reuse")["evidence"].as_str().unwrap().to_string();
        assert!(
            reuse.starts_with(
                "a data connection resuming the control connection's session: accepted; "
            ),
            "{reuse}"
        );
        if require == "YES" {
            assert!(
                reuse.contains(
                    "one with a new TLS session: refused (the server requires session reuse)"
                ),
                "{reuse}"
            );
        } else {
            assert!(
                reuse.ends_with("one with a new TLS session: accepted too (the server does not require session reuse)"),
                "{reuse}"
            );
        }
    }
}

#[test]
fn certificate_reloads_on_sighup_without_dropping_sessions() {
    let python = require_tool("python3");
    let t = tls_server("required", &[]);
    let port = t.server.addr.port().to_string();
    // A CA file trusting both the old certificate and the new one.
    let new_dir = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = make_cert(new_dir.path(), "renewed");
    let both = new_dir.path().join("both.pem");
    let mut pem = std::fs::read(&t.cert).unwrap();
    pem.extend(std::fs::read(&new_cert).unwrap());
    std::fs::write(&both, pem).unwrap();
    let mut child = Command::new(python)
        .arg(peers::script("ftps_client.py"))
        .args([
            "hold",
            "127.0.0.1",
            &port,
            &both.to_string_lossy(),
            "demo",
            "secret",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let ready = line == "ready";
        seen.push(line);
        if ready {
            break;
        }
    }
    assert!(seen.iter().any(|l| l == "before localhost"), "{seen:?}");
    // Renew: new files in place, then SIGHUP.
    std::fs::copy(&new_cert, &t.cert).unwrap();
    std::fs::copy(&new_key, &t.key).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &t.server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if t.server.log().contains("configuration reloaded") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = child.wait();
    assert!(
        rest.iter().any(|l| l == "after renewed"),
        "{rest:?}\n{}",
        t.server.log()
    );
    assert!(rest.iter().any(|l| l == "old session a.txt"), "{rest:?}");
}

#[test]
fn check_tls_reports_certificate_and_data_modes() {
    let t = tls_server("required", &[]);
    let ca = t.cert.to_string_lossy().into_owned();
    let target = format!("localhost:{}", t.server.addr.port());
    let (code, out, err) = wharf(&[
        "check",
        "--tls",
        "--ca-file",
        &ca,
        "--user",
        "demo",
        "--json",
        &target,
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps = report["steps"].as_array().unwrap();
    let step = |name: &str| {
        steps
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} step: {out}"))
    };
    let tls = step("tls");
    assert_eq!(tls["verdict"], "ok", "{out}");
    let evidence = tls["evidence"].as_str().unwrap();
    for part in [
        "TLS 1.3",
        "TLS13_",
        "certificate CN=localhost",
        "expires ",
        "days left",
        "name localhost matches",
        "trusted",
    ] {
        assert!(evidence.contains(part), "{part}: {evidence}");
    }
    for method in ["EPSV", "PASV", "EPRT", "PORT"] {
        let s = step(method);
        assert_eq!(s["verdict"], "ok", "{out}");
        assert!(
            s["evidence"]
                .as_str()
                .unwrap()
                .contains("over TLS (session resumed)"),
            "{out}"
        );
    }
    // TLS in depth: both versions accepted, and Wharf requires data connections to resume
    // the control connection's session, which ours do.
    let versions = step("versions");
    assert_eq!(versions["verdict"], "ok", "{out}");
    let evidence = versions["evidence"].as_str().unwrap();
    assert!(
        evidence.starts_with("TLS 1.3: accepted (TLS13_")
            && evidence.contains("; TLS 1.2: accepted (TLS_ECDHE_"),
        "{evidence}"
    );
    let reuse = step("reuse");
    assert_eq!(reuse["verdict"], "ok", "{out}");
    assert!(
        reuse["evidence"].as_str().unwrap().starts_with(
            "a data connection resuming the control connection's session: accepted; one with a new TLS session: refused (the server requires session reuse): the server refused MLSD: 522 TLS session reuse required"
        ),
        "{reuse}"
    );
    // Without the CA: the certificate is not trusted. The check says so and does not send the
    // password to a server that may not be the one meant...
    let logins = t.server.log().matches("login peer=").count();
    let (code, out, _) = wharf(&["check", "--tls", "--user", "demo", &target]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] tls"), "{out}");
    assert!(out.contains("not trusted"), "{out}");
    assert!(out.contains("[SKIP] login"), "{out}");
    assert!(!out.contains("EPSV"), "{out}");
    assert_eq!(t.server.log().matches("login peer=").count(), logins);
    // ...unless asked: with --insecure it is a warning, and the rest is checked.
    let (code, out, _) = wharf(&["check", "--tls", "--insecure", "--user", "demo", &target]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[WARN] tls"), "{out}");
    assert!(out.contains("[ OK ] EPSV"), "{out}");
    // Implicit, through the URL form, to a server whose certificate names another host.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert_for(dir.path(), "ftp.elsewhere.example", &[]);
    let other_ca = cert.to_string_lossy().into_owned();
    let other = tls_server_with("required", &[], dir, cert, key);
    let (code, out, _) = wharf(&[
        "check",
        "--ca-file",
        &other_ca,
        "--user",
        "demo",
        &format!("ftps://127.0.0.1:{}", other.server.implicit.unwrap().port()),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("name 127.0.0.1 does not match"), "{out}");
    assert!(out.contains("CN=ftp.elsewhere.example"), "{out}");
    // A server without TLS: AUTH refused, with the setting to change.
    let plain = server().start();
    let (code, out, _) = wharf(&["check", "--tls", &plain.addr.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("[FAIL] tls"), "{out}");
    assert!(out.contains("--tls-cert"), "{out}");
}

/// Many data connections from one control session all resume, with `require_session_reuse`:
/// curl (OpenSSL uses a TLS 1.3 session once, then needs a ticket from the data connection it
/// resumed; it used to get every second file refused with 522 and open a new control
/// connection) with 20 and 200 files over one control connection, TLS 1.3 and 1.2; and
/// Python's ftplib with 200 RETRs in a row, resuming the control session each time.
#[test]
fn many_data_connections_in_a_row_all_resume() {
    let curl = require_tool("curl");
    let t = tls_server("required", &[]);
    let addr = t.server.addr;
    let dir = tempfile::tempdir().unwrap();
    // (curl 7.88 itself waits up to a second between some transfers, against vsftpd too: the
    // 200 take a while.)
    for (max, count) in [("1.3", 20), ("1.2", 20), ("1.3", 200)] {
        let mut cmd = Command::new(&curl);
        cmd.args(["-sS", "--ssl-reqd", "-u", "demo:secret", "--cacert"])
            .arg(&t.cert)
            .args(["--tls-max", max]);
        if max == "1.3" {
            cmd.arg("--tlsv1.3");
        }
        for i in 0..count {
            cmd.arg(format!("ftp://{addr}/a.txt"))
                .arg("-o")
                .arg(dir.path().join(format!("{max}-{i}.txt")));
        }
        let before = t.server.log().matches(" login").count();
        let out = output_within(&mut cmd, Duration::from_secs(400));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for i in 0..count {
            let got = std::fs::read(dir.path().join(format!("{max}-{i}.txt")));
            assert_eq!(
                got.ok().as_deref(),
                Some(&b"hello over TLS\n"[..]),
                "TLS {max}: file {i} of {count}"
            );
        }
        // One control connection did it all.
        let logins = t.server.log().matches(" login").count() - before;
        assert_eq!(logins, 1, "TLS {max}, {count} files: {logins} logins");
    }
    assert!(
        !t.server.log().contains("did not resume"),
        "{}",
        t.server.log()
    );
    let port = addr.port().to_string();
    let ca = t.cert.to_string_lossy().into_owned();
    for tls12 in [false, true] {
        let out = python_with(&["many", "127.0.0.1", &port, &ca, "demo", "secret"], tls12);
        assert!(
            out.contains("MANY 200 of 200"),
            "TLS 1.2 only: {tls12}\n{out}"
        );
    }
}
