//! Virtual hosts: HOST (RFC 7151) and the TLS name (SNI) choose a customer's site — its users,
//! its files, its greeting and its certificate — on one address; curl and Python's ftplib as
//! the clients.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wharf_testkit::{Ftp, PW_HASH, Server, output_within, require_tool, write_file};

use crate::BIN;
use crate::tls::make_cert;

/// Two customers and the default host: `ftp.a.example` (alice, a.txt), `ftp.b.example` and
/// `*.b.example` (bob, b.txt), and carol on the default host (the server's root, root.txt).
struct Sites {
    server: Server,
    dir: tempfile::TempDir,
}

fn sites(tls: bool) -> Sites {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    write_file(&a.join("a.txt"), b"customer a");
    write_file(&b.join("b.txt"), b"customer b");
    let mut config = format!(
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 0\n\
         [admin]\nmetrics_by_host = true\n\
         [[host]]\nnames = ['ftp.a.example']\nroot = '{a}'\nbanner = 'Customer A at your service.'\n{a_cert}\
         [[host]]\nnames = ['ftp.b.example', '*.b.example']\nroot = '{b}'\nanonymous = true\n{b_cert}\
         [[user]]\nname = 'alice'\npassword_hash = '{PW_HASH}'\nhost = 'ftp.a.example'\n\
         [[user]]\nname = 'bob'\npassword_hash = '{PW_HASH}'\nhost = 'ftp.b.example'\n\
         [[user]]\nname = 'carol'\npassword_hash = '{PW_HASH}'\n",
        a = a.display(),
        b = b.display(),
        a_cert = if tls {
            cert_lines(dir.path(), "ftp.a.example")
        } else {
            String::new()
        },
        b_cert = if tls {
            cert_lines(dir.path(), "ftp.b.example")
        } else {
            String::new()
        },
    );
    // A database user of b's.
    let db = format!("sqlite:{}", dir.path().join("users.db").display());
    let mut add = Command::new(BIN)
        .args([
            "users",
            "--db",
            &db,
            "add",
            "dan@b",
            "--host",
            "ftp.b.example",
            "--password-stdin",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"pw\n").unwrap();
    assert!(add.wait().unwrap().success());
    let mut builder = Server::builder(BIN).args(&["--users-db", &db, "--admin", "127.0.0.1:0"]);
    if tls {
        let (cert, key) = make_cert(dir.path(), "localhost");
        config.push_str(&format!(
            "[tls]\ncert = '{}'\nkey = '{}'\n",
            cert.display(),
            key.display()
        ));
        builder = builder.args(&["--listen-implicit", "127.0.0.1:0"]);
    }
    let server = builder.config(&config).start();
    write_file(&server.path("root.txt"), b"the default host");
    Sites { server, dir }
}

fn cert_lines(dir: &Path, name: &str) -> String {
    let (cert, key) = make_cert(dir, name);
    format!("cert = '{}'\nkey = '{}'\n", cert.display(), key.display())
}

/// ftplib: HOST (if given), login, the listing and a file; each step's reply or error.
fn ftplib(addr: SocketAddr, host: Option<&str>, user: &str, file: &str) -> String {
    let script = r#"
import ftplib, sys
port, host, user, name = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
f = ftplib.FTP(timeout=20)
f.connect("127.0.0.1", port)
out = []
try:
    if host:
        out.append(f.sendcmd("HOST " + host))
    f.login(user, "pw")
    out.append(",".join(sorted(f.nlst())))
    parts = []
    f.retrbinary("RETR " + name, parts.append)
    out.append(b"".join(parts).decode())
except ftplib.all_errors as e:
    out.append("ERR " + str(e))
print(" | ".join(out))
"#;
    let out = output_within(
        Command::new(require_tool("python3"))
            .arg("-c")
            .arg(script)
            .args([&addr.port().to_string(), host.unwrap_or(""), user, file]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn host_chooses_the_customer_and_rfc_7151_codes_refuse_the_rest() {
    let s = sites(false);
    let a = s.server.addr;
    // Each customer's user sees its own files only; the greeting is the host's.
    assert_eq!(
        ftplib(a, Some("ftp.a.example"), "alice", "a.txt"),
        "220 Customer A at your service. | a.txt | customer a"
    );
    assert_eq!(
        ftplib(a, Some("FTP.B.example."), "bob", "b.txt"),
        "220 Wharf FTP server ready. | b.txt | customer b",
        "case and a trailing dot do not matter"
    );
    assert_eq!(
        ftplib(a, Some("files.b.example"), "bob", "b.txt"),
        "220 Wharf FTP server ready. | b.txt | customer b",
        "a wildcard name"
    );
    // A database user of b's, and b's anonymous access (a's has none).
    assert_eq!(
        ftplib(a, Some("ftp.b.example"), "dan@b", "b.txt"),
        "220 Wharf FTP server ready. | b.txt | customer b"
    );
    assert!(
        ftplib(a, Some("ftp.a.example"), "dan@b", "a.txt").ends_with("ERR 530 Login incorrect.")
    );
    assert!(ftplib(a, None, "dan@b", "b.txt").ends_with("ERR 530 Login incorrect."));
    assert_eq!(
        ftplib(a, Some("ftp.b.example"), "anonymous", "b.txt"),
        "220 Wharf FTP server ready. | b.txt | customer b"
    );
    assert!(
        ftplib(a, Some("ftp.a.example"), "anonymous", "a.txt")
            .ends_with("ERR 530 Login incorrect.")
    );
    // Another host's user, or a host's user without HOST: unknown here (530).
    assert!(ftplib(a, Some("ftp.a.example"), "bob", "a.txt").ends_with("ERR 530 Login incorrect."));
    assert!(ftplib(a, None, "alice", "a.txt").ends_with("ERR 530 Login incorrect."));
    assert_eq!(
        ftplib(a, None, "carol", "root.txt"),
        "root.txt | the default host",
        "no name: the default host"
    );
    assert!(
        s.server.wait_log("host=ftp.a.example", 1),
        "{}",
        s.server.log()
    );

    // RFC 7151 §3.2.
    let mut ftp = Ftp::connect(a);
    assert_eq!(ftp.cmd("HOST www.other.example").code, 504);
    assert_eq!(
        ftp.cmd("HOST [127.0.0.2]").code,
        504,
        "not this server's address"
    );
    assert_eq!(
        ftp.cmd("HOST *.b.example").code,
        504,
        "a wildcard is not a name"
    );
    assert_eq!(
        ftp.cmd("HOST [127.0.0.1]").code,
        220,
        "its own address: the default host"
    );
    assert_eq!(ftp.cmd("USER carol").code, 331);
    assert_eq!(ftp.cmd("HOST ftp.a.example").code, 503, "after USER");
    assert_eq!(ftp.cmd("PASS pw").code, 230);
    assert_eq!(ftp.cmd("HOST ftp.a.example").code, 503, "after login");
    // The admin API shows each session's host, and filters by it.
    let mut held = Ftp::connect(a);
    assert_eq!(held.cmd("HOST ftp.b.example").code, 220);
    held.login("bob", "pw");
    let token = s.server.admin.clone().and_then(|(_, t)| t);
    let (code, body) = crate::admin::api(
        &s.server,
        "GET",
        "/api/v1/sessions?host=ftp.b.example",
        token.as_deref(),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let list = crate::admin::json(&body);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(list[0]["host"], "ftp.b.example");
    assert_eq!(list[0]["user"], "bob");
    let (_, body) = crate::admin::api(
        &s.server,
        "GET",
        "/api/v1/sessions?host=ftp.a.example",
        token.as_deref(),
        None,
    );
    assert!(!body.contains("\"bob\""), "{body}");
    let (_, body) = crate::admin::api(
        &s.server,
        "GET",
        "/api/v1/users?host=ftp.b.example",
        token.as_deref(),
        None,
    );
    let users = crate::admin::json(&body);
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(users[0]["name"], "dan@b");
    assert_eq!(users[0]["host"], "ftp.b.example");
    // Sessions by host in /metrics, as asked for.
    let (_, metrics) = crate::admin::api(&s.server, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("wharf_sessions_by_host{host=\"ftp.b.example\"} 1\n"),
        "{metrics}"
    );
    drop(held);
    // REIN forgets the host: HOST may come again.
    assert_eq!(ftp.cmd("REIN").code, 220);
    assert_eq!(ftp.cmd("HOST ftp.b.example").code, 220);
    ftp.login("bob", "pw");
    // A login after REIN without HOST goes to the default host again: bob is unknown there.
    assert_eq!(ftp.cmd("REIN").code, 220);
    assert_eq!(ftp.cmd("USER bob").code, 331);
    assert_eq!(ftp.cmd("PASS pw").code, 530);
    drop(s.dir);
}

/// curl with `--resolve`, trusting one host's certificate only.
fn curl_tls(url: &str, resolve: &str, ca: &Path, user: &str) -> (i32, String) {
    let out = output_within(
        Command::new(require_tool("curl"))
            .args([
                "-sS",
                "--max-time",
                "30",
                "--ssl-reqd",
                "--resolve",
                resolve,
            ])
            .arg("--cacert")
            .arg(ca)
            .args(["-u", &format!("{user}:pw"), url]),
        Duration::from_secs(60),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_tls_name_chooses_the_certificate_and_the_host() {
    let s = sites(true);
    let port = s.server.addr.port();
    let implicit = s.server.implicit.unwrap().port();
    let ca_a = s.dir.path().join("ftp.a.example.crt");
    let ca_b = s.dir.path().join("ftp.b.example.crt");
    // Explicit TLS (AUTH TLS): ftp.a.example's certificate, and its user and files.
    let (code, out) = curl_tls(
        &format!("ftp://ftp.a.example:{port}/a.txt"),
        &format!("ftp.a.example:{port}:127.0.0.1"),
        &ca_a,
        "alice",
    );
    assert_eq!((code, out.as_str()), (0, "customer a"));
    // The other host's certificate is not trusted for it: the certificate served is a's own.
    let (code, _) = curl_tls(
        &format!("ftp://ftp.a.example:{port}/a.txt"),
        &format!("ftp.a.example:{port}:127.0.0.1"),
        &ca_b,
        "alice",
    );
    assert_eq!(code, 60, "curl: the peer certificate cannot be verified");
    // Implicit TLS: ftp.b.example's certificate, bob, b's files.
    let (code, out) = curl_tls(
        &format!("ftps://ftp.b.example:{implicit}/b.txt"),
        &format!("ftp.b.example:{implicit}:127.0.0.1"),
        &ca_b,
        "bob",
    );
    assert_eq!((code, out.as_str()), (0, "customer b"));
    // On a's name, b's user is unknown.
    let (code, _) = curl_tls(
        &format!("ftp://ftp.a.example:{port}/a.txt"),
        &format!("ftp.a.example:{port}:127.0.0.1"),
        &ca_a,
        "bob",
    );
    assert_eq!(code, 67, "530");

    // /metrics: when each certificate expires, the default's and each host's.
    let (code, metrics) = crate::admin::api(&s.server, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    for host in ["default", "ftp.a.example", "ftp.b.example"] {
        assert!(
            metrics.contains(&format!(
                "wharf_certificate_expiry_timestamp_seconds{{host=\"{host}\"}} "
            )),
            "{metrics}"
        );
    }
    // HOST under TLS must be the name TLS was started for (RFC 7151 §3.2: 504).
    let script = r#"
import ftplib, ssl, sys
class Reusing(ftplib.FTP_TLS):
    # Data connections resume the control connection's TLS session (stock FTP_TLS does not).
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
f = Reusing(context=ctx, timeout=20)
f.connect("127.0.0.1", port)
f.host = "ftp.a.example"  # the name sent in the handshake (SNI) and checked
f.auth()
out = []
for name in ["ftp.b.example", "ftp.a.example"]:
    try:
        out.append(f.sendcmd("HOST " + name))
    except ftplib.all_errors as e:
        out.append(str(e))
f.login("alice", "pw")
f.prot_p()
out.append(",".join(f.nlst()))
print(" | ".join(out))
"#;
    let out = output_within(
        Command::new(require_tool("python3"))
            .arg("-c")
            .arg(script)
            .arg(port.to_string())
            .arg(&ca_a),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}\n{}", s.server.log());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "504 ftp.b.example is not the name TLS was started for (ftp.a.example). | \
         220 Customer A at your service. | a.txt"
    );
}

/// Wharf's own client sends HOST with the URL's name where FEAT lists HOST (an address sends
/// none), and `wharf check` says which host answered.
#[test]
fn wharf_get_and_check_send_host_for_the_url_name() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_file(&site.join("l.txt"), b"the localhost site");
    let secret = wharf_server::auth::hash_password(b"secret").unwrap();
    let config = format!(
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 0\n\
         [[host]]\nnames = ['localhost']\nroot = '{}'\n\
         [[user]]\nname = 'lena'\npassword_hash = '{secret}'\nhost = 'localhost'\n",
        site.display()
    );
    let server = Server::builder(BIN).config(&config).start();
    let port = server.addr.port();
    let out_dir = tempfile::tempdir().unwrap();
    let by_name = crate::client::wharf(
        out_dir.path(),
        &[
            "get",
            "-v",
            &format!("ftp://lena@localhost:{port}/l.txt"),
            "got.txt",
        ],
    );
    assert_eq!(by_name.code, 0, "{}", by_name.stderr);
    assert!(
        by_name.stderr.contains("HOST localhost"),
        "{}",
        by_name.stderr
    );
    assert_eq!(
        std::fs::read(out_dir.path().join("got.txt")).unwrap(),
        b"the localhost site"
    );
    // By address: no HOST, the default host, where lena is unknown.
    let by_address = crate::client::wharf(
        out_dir.path(),
        &[
            "get",
            &format!("ftp://lena@127.0.0.1:{port}/l.txt"),
            "again.txt",
        ],
    );
    assert_ne!(by_address.code, 0);
    assert!(!by_address.stderr.contains("HOST"), "{}", by_address.stderr);
    // The troubleshooter's report has the host step.
    let out = output_within(
        Command::new(BIN)
            .args(["check", "--json", "--timeout", "5", "--user", "lena"])
            .arg(format!("localhost:{port}"))
            .env("WHARF_PASSWORD", "secret"),
        Duration::from_secs(120),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let host = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "host")
        .unwrap_or_else(|| panic!("no host step: {json}"));
    assert_eq!(host["verdict"], "ok", "{host}");
    assert!(
        host["evidence"]
            .as_str()
            .unwrap()
            .contains("HOST localhost: 220"),
        "{host}"
    );
}
