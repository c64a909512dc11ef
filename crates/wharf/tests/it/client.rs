//! The client commands (`wharf ls/get/put/rm/mkdir/rmdir/mv`) against real servers: vsftpd,
//! ProFTPD, pyftpdlib and `wharf serve`, each started on loopback by the test, in both data
//! modes; the fallbacks (no EPSV, no EPRT, an unreachable PASV address, passive impossible);
//! the connection log line by line; exit codes and timeouts.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use wharf_testkit::peers::{self, Peer, PyOptions};
use wharf_testkit::{assert_same_tree, make_tree, output_with_input, pattern, write_file};

use crate::BIN;

/// What one `wharf` client run did.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn ok(&self, what: &str) -> &Run {
        assert_eq!(self.code, 0, "{what} failed:\n{}", self.stderr);
        self
    }

    pub(crate) fn log_has(&self, line: &str) -> bool {
        self.stderr.lines().any(|l| l == line)
    }

    pub(crate) fn log_starts(&self, prefix: &str) -> bool {
        self.stderr.lines().any(|l| l.starts_with(prefix))
    }
}

pub(crate) fn wharf_in(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut cmd = Command::new(BIN);
    // A short timeout: pyftpdlib now and then loses a tiny active-mode upload when two sessions
    // run at once (its log shows `completed=0`); the client's retry on a fresh session recovers,
    // and this bounds what that costs.
    let timeout = ["--timeout", "10"];
    let has_timeout = args.contains(&"--timeout");
    let (sub, rest) = args.split_first().expect("a subcommand");
    cmd.arg(sub)
        .args(if has_timeout { &[][..] } else { &timeout[..] })
        .args(rest)
        .current_dir(dir)
        .env("WHARF_PASSWORD", peers::PASSWORD);
    let out = output_with_input(&mut cmd, stdin, Duration::from_secs(120));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn wharf(dir: &Path, args: &[&str]) -> Run {
    wharf_in(dir, args, None)
}

/// Every client command against `peer` in one forced mode, checking bytes on disk on both
/// sides and that the mode asked for is the one used.
fn exercise(peer: &Peer, mode: &str) {
    let name = peer.name;
    let tag = mode.trim_start_matches("--");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let (used, unused) = if mode == "--passive" {
        ("Command: EPSV", "Command: EPRT")
    } else {
        ("Command: EPRT", "Command: EPSV")
    };
    let ctx = |step: &str| format!("{name} {mode}: {step}");

    // put: a new file, byte-exact on the server's disk.
    let body = pattern(300_000, 7);
    write_file(&w.join("local.bin"), &body);
    let file = format!("up-{tag}.bin");
    let r = wharf(w, &["put", "-v", mode, "local.bin", &peer.url(&file)]);
    r.ok(&ctx("put"));
    assert!(
        r.log_starts(used) && !r.log_starts(unused),
        "{}\n{}",
        ctx("put mode"),
        r.stderr
    );
    assert!(
        std::fs::read(peer.path(&file)).unwrap() == body,
        "{}",
        ctx("put bytes")
    );

    // ls and ls -l.
    let r = wharf(w, &["ls", mode, &peer.url("")]);
    r.ok(&ctx("ls"));
    let names = String::from_utf8(r.stdout.clone()).unwrap();
    assert!(names.lines().any(|l| l == file), "{}: {names}", ctx("ls"));
    let r = wharf(w, &["ls", "-l", mode, &peer.url("")]);
    r.ok(&ctx("ls -l"));
    let long = String::from_utf8(r.stdout.clone()).unwrap();
    let line = long
        .lines()
        .find(|l| l.ends_with(&file))
        .unwrap_or_default();
    assert!(
        line.starts_with("- ") && line.contains(" 300000 "),
        "{}: {long}",
        ctx("ls -l")
    );

    // get, into a named file and into a directory.
    let r = wharf(w, &["get", mode, &peer.url(&file), "got.bin"]);
    r.ok(&ctx("get"));
    assert!(
        std::fs::read(w.join("got.bin")).unwrap() == body,
        "{}",
        ctx("get bytes")
    );
    std::fs::create_dir(w.join("into")).unwrap();
    wharf(w, &["get", mode, &peer.url(&file), "into"]).ok(&ctx("get into dir"));
    assert!(std::fs::read(w.join("into").join(&file)).unwrap() == body);
    let leftovers: Vec<_> = std::fs::read_dir(w.join("into")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "{}: temporary files left", ctx("get"));

    // get -c: resume a partial download with REST.
    write_file(&w.join("part.bin"), &body[..100_000]);
    let r = wharf(w, &["get", "-c", "-v", mode, &peer.url(&file), "part.bin"]);
    r.ok(&ctx("get -c"));
    assert!(
        r.log_has("Command: REST 100000"),
        "{}\n{}",
        ctx("get -c"),
        r.stderr
    );
    assert!(
        std::fs::read(w.join("part.bin")).unwrap() == body,
        "{}",
        ctx("get -c bytes")
    );

    // put -c: resume a partial upload (SIZE, then REST+STOR or APPE).
    let partial = format!("resume-{tag}.bin");
    peer.seed(&partial, &body[..120_000]);
    let r = wharf(
        w,
        &["put", "-c", "-v", mode, "local.bin", &peer.url(&partial)],
    );
    r.ok(&ctx("put -c"));
    assert!(r.log_starts("Command: SIZE "), "{}", r.stderr);
    assert!(
        (r.log_has("Command: REST 120000") && r.log_starts("Command: STOR "))
            || r.log_starts("Command: APPE "),
        "{}\n{}",
        ctx("put -c"),
        r.stderr
    );
    assert!(
        std::fs::read(peer.path(&partial)).unwrap() == body,
        "{}",
        ctx("put -c bytes")
    );

    // put -r and get -r, two sessions.
    make_tree(&w.join("tree"));
    let tree = format!("tree-{tag}");
    let r = wharf(
        w,
        &[
            "put",
            "-r",
            "--parallel",
            "2",
            mode,
            "tree",
            &peer.url(&tree),
        ],
    );
    r.ok(&ctx("put -r"));
    assert_same_tree(&w.join("tree"), &peer.path(&tree));
    let r = wharf(w, &["get", "-r", mode, &peer.url(&tree), "back"]);
    r.ok(&ctx("get -r"));
    assert_same_tree(&w.join("tree"), &w.join("back"));

    // mkdir, mv, rm, rmdir.
    let dir = format!("dir-{tag}");
    wharf(w, &["mkdir", mode, &peer.url(&dir)]).ok(&ctx("mkdir"));
    assert!(peer.path(&dir).is_dir(), "{}", ctx("mkdir"));
    let moved = format!("moved-{tag}.bin");
    wharf(w, &["mv", mode, &peer.url(&file), &peer.url(&moved)]).ok(&ctx("mv"));
    assert!(
        !peer.path(&file).exists() && peer.path(&moved).is_file(),
        "{}",
        ctx("mv")
    );
    wharf(w, &["rm", mode, &peer.url(&moved)]).ok(&ctx("rm"));
    assert!(!peer.path(&moved).exists(), "{}", ctx("rm"));
    wharf(w, &["rmdir", mode, &peer.url(&dir)]).ok(&ctx("rmdir"));
    assert!(!peer.path(&dir).exists(), "{}", ctx("rmdir"));

    // A refusal: exit 1, the reply printed; no local file left behind.
    let r = wharf(w, &["get", mode, &peer.url("no-such-file"), "nothing.bin"]);
    assert_eq!(r.code, 1, "{}: {}", ctx("missing file"), r.stderr);
    assert!(
        r.stderr.contains(" 550 ") || r.stderr.contains(": 550"),
        "{}",
        r.stderr
    );
    assert!(!w.join("nothing.bin").exists());
    let temps = std::fs::read_dir(w)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("part")
        })
        .count();
    assert_eq!(temps, 0, "{}: temporary file left", ctx("missing file"));
}

fn exercise_both_modes(peer: &Peer) {
    exercise(peer, "--passive");
    exercise(peer, "--active");
}

#[test]
fn every_command_against_vsftpd() {
    exercise_both_modes(&peers::vsftpd(&[]));
}

#[test]
fn every_command_against_proftpd() {
    exercise_both_modes(&peers::proftpd());
}

#[test]
fn every_command_against_pyftpdlib() {
    exercise_both_modes(&peers::pyftpdlib(&PyOptions::default()));
}

#[test]
fn every_command_against_wharf() {
    exercise_both_modes(&peers::wharf(BIN, "127.0.0.1:0", None));
}

/// Asserts that `lines` has each expected line, in order, allowing nothing in between:
/// `Some(text)` must match exactly, a pattern ending in `*` matches a prefix.
fn assert_log(stderr: &str, expected: &[&str]) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "log:\n{stderr}");
    for (i, (line, want)) in lines.iter().zip(expected).enumerate() {
        let ok = match want.strip_suffix('*') {
            Some(prefix) => line.starts_with(prefix),
            None => line == want,
        };
        assert!(ok, "line {i}: {line:?} is not {want:?}\nlog:\n{stderr}");
    }
}

#[test]
fn connection_log_line_by_line() {
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    peer.seed("f.bin", &pattern(5000, 3));
    let r = wharf(w, &["ls", "-v", "--passive", &peer.url("")]);
    r.ok("ls -v");
    let port = peer.addr.port();
    let connecting = format!("Status: Connecting to 127.0.0.1:{port}...");
    assert_log(
        &r.stderr,
        &[
            &connecting,
            "Status: Connection established, waiting for welcome message...",
            "Response: 220 *",
            "Command: USER demo",
            "Response: 331 *",
            "Command: PASS ****",
            "Response: 230 *",
            "Command: FEAT",
            "Response: 211-Features:",
            "Response:  EPRT",
            "Response:  EPSV",
            "Response:  HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32",
            "Response:  HOST",
            "Response:  MDTM",
            "Response:  MFMT",
            "Response:  MLST *",
            "Response:  REST STREAM",
            "Response:  SIZE",
            "Response:  TVFS",
            "Response:  UTF8",
            "Response:  XCRC",
            "Response:  XMD5",
            "Response:  XSHA1",
            "Response:  XSHA256",
            "Response:  XSHA512",
            "Response: 211 End",
            "Command: OPTS UTF8 ON",
            "Response: 200 *",
            "Command: EPSV",
            "Response: 229 Entering Extended Passive Mode (|||*",
            "Command: MLSD",
            "Response: 150 *",
            "Response: 226 *",
            "Status: Directory listing successful",
            "Command: QUIT",
            "Response: 221 *",
        ],
    );
    assert!(!r.stderr.contains(peers::PASSWORD), "password in the log");

    // A name is resolved first; a download ends with bytes and rate.
    let url = peer.url("f.bin").replace("127.0.0.1", "localhost");
    let r = wharf(w, &["get", "-v", "--passive", &url]);
    r.ok("get -v");
    let first = r.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first, "Status: Resolving address of localhost",
        "{}",
        r.stderr
    );
    assert!(r.log_has(&connecting), "{}", r.stderr);
    assert!(r.log_has("Command: TYPE I"), "{}", r.stderr);
    assert!(r.log_has("Command: RETR f.bin"), "{}", r.stderr);
    let done = r
        .stderr
        .lines()
        .find(|l| l.starts_with("Status: File transfer successful, transferred 5000 bytes in "))
        .unwrap_or_else(|| panic!("no success line:\n{}", r.stderr));
    assert!(done.ends_with("B/s)"), "{done}");
    assert!(!r.stderr.contains(peers::PASSWORD), "password in the log");
    // Without -v: no log, and no progress bar when not on a terminal: the result line only,
    // and with -q not even that.
    let r = wharf(w, &["get", &peer.url("f.bin"), "quiet.bin"]);
    r.ok("get quiet");
    assert!(
        r.stderr.starts_with("quiet.bin: 5.0 kB in ") && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    let r = wharf(w, &["get", "-q", &peer.url("f.bin"), "quiet.bin"]);
    r.ok("get -q");
    assert_eq!(r.stderr, "");
}

#[test]
fn epsv_refused_falls_back_to_pasv() {
    let peer = peers::pyftpdlib(&PyOptions {
        without: vec!["EPSV"],
        ..PyOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let body = pattern(200_000, 4);
    peer.seed("f.bin", &body);
    let r = wharf(work.path(), &["get", "-v", "--passive", &peer.url("f.bin")]);
    r.ok("get");
    let log: Vec<&str> = r.stderr.lines().collect();
    let at = log
        .iter()
        .position(|l| *l == "Command: EPSV")
        .expect("EPSV tried");
    assert!(log[at + 1].starts_with("Response: 500 "), "{}", r.stderr);
    assert_eq!(log[at + 2], "Command: PASV");
    assert!(log[at + 3].starts_with("Response: 227 "), "{}", r.stderr);
    assert!(std::fs::read(work.path().join("f.bin")).unwrap() == body);
}

#[test]
fn eprt_refused_falls_back_to_port() {
    let peer = peers::pyftpdlib(&PyOptions {
        without: vec!["EPRT"],
        ..PyOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let body = pattern(200_000, 5);
    peer.seed("f.bin", &body);
    let r = wharf(work.path(), &["get", "-v", "--active", &peer.url("f.bin")]);
    r.ok("get");
    let log: Vec<&str> = r.stderr.lines().collect();
    let at = log
        .iter()
        .position(|l| l.starts_with("Command: EPRT |1|127.0.0.1|"))
        .expect("EPRT tried");
    assert!(log[at + 1].starts_with("Response: 500 "), "{}", r.stderr);
    assert!(
        log[at + 2].starts_with("Command: PORT 127,0,0,1,"),
        "{}",
        r.stderr
    );
    assert!(log[at + 3].starts_with("Response: 200 "), "{}", r.stderr);
    assert!(!r.log_starts("Command: EPSV") && !r.log_starts("Command: PASV"));
    assert!(std::fs::read(work.path().join("f.bin")).unwrap() == body);
}

#[test]
fn unreachable_pasv_address_is_retried_with_the_control_address() {
    // pyftpdlib announces 127.0.0.2 (its masquerade_address) but listens on 127.0.0.1 only,
    // as a server behind NAT announcing an address the client cannot reach.
    let peer = peers::pyftpdlib(&PyOptions {
        without: vec!["EPSV"],
        masquerade: Some("127.0.0.2"),
        ..PyOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    make_tree(&peer.path("tree"));
    let r = wharf(
        work.path(),
        &[
            "get",
            "-r",
            "-v",
            "--passive",
            "--parallel",
            "1",
            &peer.url("tree"),
            "copy",
        ],
    );
    r.ok("get -r");
    assert!(
        r.log_starts("Response: 227 Entering passive mode (127,0,0,2,"),
        "{}",
        r.stderr
    );
    let notes: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("Status: Server sent passive reply with address 127.0.0.2"))
        .collect();
    assert_eq!(notes.len(), 1, "said once, then remembered:\n{}", r.stderr);
    assert!(
        notes[0].ends_with("using the server address 127.0.0.1 instead"),
        "{}",
        notes[0]
    );
    assert_same_tree(&peer.path("tree"), &work.path().join("copy"));
}

#[test]
fn passive_impossible_falls_back_to_active() {
    let peer = peers::pyftpdlib(&PyOptions {
        broken_passive: true,
        ..PyOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    make_tree(&peer.path("tree"));
    let r = wharf(
        work.path(),
        &[
            "get",
            "-r",
            "-v",
            "--parallel",
            "1",
            &peer.url("tree"),
            "copy",
        ],
    );
    r.ok("get -r in automatic mode");
    assert_same_tree(&peer.path("tree"), &work.path().join("copy"));
    let epsv = r.stderr.lines().filter(|l| *l == "Command: EPSV").count();
    assert_eq!(epsv, 1, "passive tried once per session:\n{}", r.stderr);
    assert!(
        r.log_starts("Status: Passive mode failed (data connection to 127.0.0.1:1 failed: "),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("trying active mode"), "{}", r.stderr);
    assert!(r.log_starts("Command: EPRT |1|127.0.0.1|"), "{}", r.stderr);

    // Forced passive does not fall back: the failure is a network error, exit 3.
    let r = wharf(
        work.path(),
        &["get", "--passive", &peer.url("tree/a.bin"), "x"],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("data connection to 127.0.0.1:1 failed"),
        "{}",
        r.stderr
    );
    assert!(!work.path().join("x").exists());
}

#[test]
fn connection_limit_backs_off_to_fewer_sessions() {
    for peer in [
        peers::wharf(
            BIN,
            "127.0.0.1:0",
            Some("[limits]\nmax_sessions_per_ip = 1\n"),
        ),
        peers::vsftpd(&["max_per_ip=1"]),
    ] {
        let work = tempfile::tempdir().unwrap();
        make_tree(&work.path().join("tree"));
        let r = wharf(
            work.path(),
            &[
                "put",
                "-r",
                "-v",
                "--parallel",
                "3",
                "tree",
                &peer.url("up"),
            ],
        );
        r.ok(&format!("{}: put -r with a per-IP limit of 1", peer.name));
        assert!(
            r.log_starts(
                "Status: Could not open session 2 (the server refused the connection: 421"
            ),
            "{}: {}",
            peer.name,
            r.stderr
        );
        assert!(r.stderr.contains("going on with 1 session"), "{}", r.stderr);
        assert_same_tree(&work.path().join("tree"), &peer.path("up"));
    }
}

#[test]
fn ipv6_both_modes() {
    let peer = peers::wharf(BIN, "[::1]:0", None);
    let work = tempfile::tempdir().unwrap();
    let body = pattern(150_000, 6);
    peer.seed("six.bin", &body);
    for mode in ["--passive", "--active"] {
        let r = wharf(
            work.path(),
            &["get", "-v", mode, &peer.url("six.bin"), "six.bin"],
        );
        r.ok(mode);
        assert!(std::fs::read(work.path().join("six.bin")).unwrap() == body);
        if mode == "--active" {
            assert!(r.log_starts("Command: EPRT |2|::1|"), "{}", r.stderr);
        } else {
            assert!(r.log_starts("Response: 229 "), "{}", r.stderr);
        }
        let r = wharf(
            work.path(),
            &["put", mode, "six.bin", &peer.url("back.bin")],
        );
        r.ok(mode);
        assert!(std::fs::read(peer.path("back.bin")).unwrap() == body);
    }
}

#[test]
fn ascii_mode_converts_line_endings() {
    // vsftpd stores ASCII uploads as they arrive (ascii_upload_enable=NO), so its disk shows
    // exactly what the client put on the wire.
    let peer = peers::vsftpd(&[]);
    let work = tempfile::tempdir().unwrap();
    write_file(&work.path().join("unix.txt"), b"one\ntwo\n\nthree");
    let r = wharf(
        work.path(),
        &["put", "--ascii", "-v", "unix.txt", &peer.url("wire.txt")],
    );
    r.ok("put --ascii");
    assert!(r.log_has("Command: TYPE A"), "{}", r.stderr);
    assert_eq!(
        std::fs::read(peer.path("wire.txt")).unwrap(),
        b"one\r\ntwo\r\n\r\nthree"
    );
    peer.seed("dos.txt", b"a\r\nb\r\n");
    wharf(work.path(), &["get", "--ascii", &peer.url("dos.txt")]).ok("get --ascii");
    assert_eq!(
        std::fs::read(work.path().join("dos.txt")).unwrap(),
        b"a\nb\n"
    );
    let r = wharf(work.path(), &["get", "--ascii", "-c", &peer.url("dos.txt")]);
    assert_eq!(
        r.code, 2,
        "resume in ASCII mode is a usage error: {}",
        r.stderr
    );
}

#[test]
fn upload_resume_uses_appe_without_rest_stream() {
    let peer = peers::pyftpdlib(&PyOptions {
        without: vec!["REST"],
        ..PyOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let body = pattern(250_000, 8);
    write_file(&work.path().join("f.bin"), &body);
    peer.seed("f.bin", &body[..90_000]);
    let r = wharf(
        work.path(),
        &["put", "-c", "-v", "f.bin", &peer.url("f.bin")],
    );
    r.ok("put -c");
    assert!(r.log_has("Command: APPE f.bin"), "{}", r.stderr);
    assert!(!r.log_starts("Command: REST"), "{}", r.stderr);
    assert!(std::fs::read(peer.path("f.bin")).unwrap() == body);
    // Already complete: nothing sent.
    let r = wharf(
        work.path(),
        &["put", "-c", "-v", "f.bin", &peer.url("f.bin")],
    );
    r.ok("put -c again");
    assert!(!r.log_starts("Command: APPE"), "{}", r.stderr);
    assert!(r.stderr.contains("already complete"), "{}", r.stderr);
}

#[test]
fn passwords_from_stdin_and_environment_and_login_refused() {
    let peer = peers::proftpd();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // --password-stdin wins over WHARF_PASSWORD.
    let mut cmd = Command::new(BIN);
    cmd.args(["ls", "-v", "--password-stdin", &peer.url("")])
        .current_dir(w)
        .env("WHARF_PASSWORD", "wrong");
    let out = output_with_input(&mut cmd, Some(b"secret\n"), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
    // A wrong password: exit 1 and the server's reply.
    let mut cmd = Command::new(BIN);
    cmd.args(["ls", &peer.url("")])
        .current_dir(w)
        .env("WHARF_PASSWORD", "wrong");
    let out = output_with_input(&mut cmd, None, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the server refused PASS ****: 530 "),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let work = tempfile::tempdir().unwrap();
    for args in [
        &["ls", "http://example.net/"][..],
        &["get", "ftp://127.0.0.1:1/"],
        &["get", "ftp://127.0.0.1:1/dir/"],
        &["put", "no-such-local-dir", "ftp://127.0.0.1:1/", "-r"],
        &["rm", "ftp://127.0.0.1:1/"],
        &["ls", "--passive", "--active", "ftp://127.0.0.1:1/"],
        &["get", "--parallel", "0", "-r", "ftp://127.0.0.1:1/x"],
    ] {
        let r = wharf(work.path(), args);
        let expect = if args[1] == "no-such-local-dir" { 1 } else { 2 };
        assert_eq!(r.code, expect, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("wharf: ") || r.stderr.starts_with("error: "),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn network_failures_exit_3_within_the_timeout() {
    let work = tempfile::tempdir().unwrap();
    // Nothing listens.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = wharf(work.path(), &["ls", &format!("ftp://127.0.0.1:{port}/")]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot connect to 127.0.0.1:"),
        "{}",
        r.stderr
    );

    // A listener whose accept queue is full: the kernel drops further SYNs, as a firewall that
    // drops port 21 does, so the connection attempt times out.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap().as_socket().unwrap();
    let _fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&full_addr, Duration::from_millis(300)).ok()
        })
        .collect();
    let started = std::time::Instant::now();
    let r = wharf(
        work.path(),
        &["ls", "--timeout", "1", &format!("ftp://{full_addr}/")],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("timed out connecting to {full_addr}")),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A server that accepts and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ftp://{}/", silent.local_addr().unwrap());
    let holder = std::thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let started = std::time::Instant::now();
    let r = wharf(work.path(), &["ls", "--timeout", "1", &url]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("timed out waiting 1 s for the reply to the welcome message"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    holder.join().unwrap();

    // A data connection that opens and then stalls.
    let fake = fake::Server::start(fake::Behaviour::StallRetr);
    let r = wharf(
        work.path(),
        &[
            "get",
            "--timeout",
            "1",
            "--passive",
            &format!("ftp://{}/f", fake.addr),
            "f",
        ],
    );
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("on the data connection: nothing moved for 1 s"),
        "{}",
        r.stderr
    );
    assert!(
        !work.path().join("f").exists(),
        "no partial file under the real name"
    );
}

#[test]
fn hostile_listing_names_never_escape_the_target() {
    let fake = fake::Server::start(fake::Behaviour::HostileListing);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir(w.join("inner")).unwrap();
    let r = wharf(
        &w.join("inner"),
        &[
            "get",
            "-r",
            "-v",
            &format!("ftp://{}/dir", fake.addr),
            "copy",
        ],
    );
    r.ok("get -r from a hostile server");
    assert_eq!(
        std::fs::read(w.join("inner/copy/good.txt")).unwrap(),
        b"hello"
    );
    assert!(!w.join("escape.txt").exists() && !w.join("inner/escape.txt").exists());
    let entries: Vec<_> = std::fs::read_dir(w.join("inner/copy")).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert!(
        r.stderr
            .contains("wharf: warning: skipped dir/../escape.txt: unsafe name"),
        "{}",
        r.stderr
    );
}

/// Counts the connections a listener took (without waiting).
fn connections_to(l: &std::net::TcpListener) -> usize {
    l.set_nonblocking(true).unwrap();
    let mut n = 0;
    while l.accept().is_ok() {
        n += 1;
    }
    n
}

/// A server whose PASV reply names another host (here 127.0.0.2, where a listener counts):
/// the client uses the server's own address with the announced port, and says so; only with
/// `--trust-pasv-address` does it go where the server points. Paths with CR, LF or NUL are
/// refused before anything is sent.
#[test]
fn a_pasv_address_elsewhere_is_not_connected_to_unless_trusted() {
    let decoy = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let announce = decoy.local_addr().unwrap();
    let fake = fake::Server::start(fake::Behaviour::ForeignPasv(announce));
    let work = tempfile::tempdir().unwrap();
    let url = format!("ftp://u@{}/", fake.addr);
    let r = wharf(work.path(), &["ls", "-v", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("only.txt"),
        "{}",
        r.stderr
    );
    assert!(
        r.log_has("Status: Server sent passive reply with address 127.0.0.2 (not connected to: a loopback address, not the server's (--trust-pasv-address to allow it)); using the server address 127.0.0.1 instead"),
        "{}",
        r.stderr
    );
    assert_eq!(
        connections_to(&decoy),
        0,
        "the client went where the server pointed"
    );
    // Trusted: it goes there (the decoy takes it and says nothing; the listing then fails).
    let _ = wharf(
        work.path(),
        &["ls", "--timeout", "3", "--trust-pasv-address", &url],
    );
    assert!(
        connections_to(&decoy) >= 1,
        "--trust-pasv-address was not followed"
    );
    // CR, LF and NUL in a path: refused before anything is sent.
    let bad = format!("ftp://u@{}/a%0Db", fake.addr);
    let r = wharf(work.path(), &["ls", &bad]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("CR, LF or NUL"), "{}", r.stderr);
}

/// A scripted FTP server for what real servers will not do: stall, or send hostile names.
mod fake {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    #[derive(Clone, Copy)]
    pub enum Behaviour {
        /// RETR opens the data connection and then sends nothing.
        StallRetr,
        /// LIST shows names with `/` and `..`; RETR good.txt sends "hello".
        HostileListing,
        /// EPSV is refused; PASV announces this address (its port is where the server listens,
        /// on 127.0.0.1); LIST sends one entry.
        ForeignPasv(SocketAddr),
    }

    pub struct Server {
        pub addr: SocketAddr,
    }

    impl Server {
        pub fn start(behaviour: Behaviour) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // Sessions are served until the test process ends; each is bounded by timeouts.
            std::thread::spawn(move || {
                for _ in 0..8 {
                    let Ok((s, _)) = listener.accept() else {
                        return;
                    };
                    std::thread::spawn(move || session(s, behaviour));
                }
            });
            Server { addr }
        }
    }

    fn session(control: TcpStream, behaviour: Behaviour) {
        control
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut out = control.try_clone().unwrap();
        let mut reader = BufReader::new(control);
        let mut data: Option<TcpListener> = None;
        let _ = out.write_all(b"220 fake ready\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
            let reply = match verb {
                "USER" => "331 password".to_string(),
                "PASS" => "230 in".to_string(),
                "TYPE" => "200 ok".to_string(),
                "EPSV" if matches!(behaviour, Behaviour::ForeignPasv(_)) => {
                    "500 no EPSV here".to_string()
                }
                "PASV" => {
                    let Behaviour::ForeignPasv(announce) = behaviour else {
                        let _ = out.write_all(b"502 no\r\n");
                        continue;
                    };
                    let l = TcpListener::bind(("127.0.0.1", announce.port())).unwrap();
                    data = Some(l);
                    let std::net::IpAddr::V4(ip) = announce.ip() else {
                        return;
                    };
                    let [a, b, c, d] = ip.octets();
                    let p = announce.port();
                    format!(
                        "227 Entering Passive Mode ({a},{b},{c},{d},{},{})",
                        p >> 8,
                        p & 255
                    )
                }
                "EPSV" => {
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    let port = l.local_addr().unwrap().port();
                    data = Some(l);
                    format!("229 Entering Extended Passive Mode (|||{port}|)")
                }
                "LIST" | "RETR" => {
                    let Some(l) = data.take() else {
                        let _ = out.write_all(b"425 no data connection\r\n");
                        continue;
                    };
                    let content: Option<&[u8]> = match (behaviour, verb, arg) {
                        (Behaviour::StallRetr, _, _) => None,
                        (Behaviour::HostileListing, "LIST", _) => Some(
                            b"-rw-r--r-- 1 ftp ftp 5 Nov 24 13:49 ../escape.txt\r\n\
                              -rw-r--r-- 1 ftp ftp 5 Nov 24 13:49 ..\r\n\
                              drwxr-xr-x 1 ftp ftp 0 Nov 24 13:49 .\r\n\
                              -rw-r--r-- 1 ftp ftp 5 Nov 24 13:49 good.txt\r\n",
                        ),
                        (Behaviour::HostileListing, "RETR", "dir/good.txt") => Some(b"hello"),
                        (Behaviour::ForeignPasv(_), "LIST", _) => {
                            Some(b"-rw-r--r-- 1 ftp ftp 5 Nov 24 13:49 only.txt\r\n")
                        }
                        _ => {
                            let _ = out.write_all(b"550 no\r\n");
                            continue;
                        }
                    };
                    let _ = out.write_all(b"150 here it comes\r\n");
                    let Ok((mut d, _)) = l.accept() else { return };
                    match content {
                        Some(bytes) => {
                            let _ = d.write_all(bytes);
                            drop(d);
                            "226 done".to_string()
                        }
                        None => {
                            std::thread::sleep(Duration::from_secs(5));
                            return;
                        }
                    }
                }
                "QUIT" => {
                    let _ = out.write_all(b"221 bye\r\n");
                    return;
                }
                _ => "502 not here".to_string(),
            };
            let _ = out.write_all(format!("{reply}\r\n").as_bytes());
        }
    }
}

#[test]
fn progress_bar_only_on_a_terminal() {
    // `script` (util-linux) gives the client a pseudo-terminal, as a user's shell would.
    let script = wharf_testkit::require_tool("script");
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    let work = tempfile::tempdir().unwrap();
    let body = pattern(40_000_000, 9);
    peer.seed("big.bin", &body);
    let line = format!("{BIN} get --timeout 30 {} big.bin", peer.url("big.bin"));
    let mut cmd = Command::new(script);
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(work.path())
        .env("WHARF_PASSWORD", peers::PASSWORD);
    let out = output_with_input(&mut cmd, None, Duration::from_secs(120));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(std::fs::read(work.path().join("big.bin")).unwrap() == body);
    // size so far / total (decimal units, as the rate), a rate and an ETA.
    assert!(
        shown.contains("/40.00 MB") && shown.contains("ETA"),
        "{shown:?}"
    );
    // The same download with output to a pipe: no bar (checked in connection_log_line_by_line).
}

/// What a new user hits first gets a clear word: a directory fetched without -r; a port where
/// something else than FTP answers (SSH) named, with `wharf check`; a user without a password
/// and no terminal to ask on; a pattern into a directory that does not exist yet (made, as -r
/// does); a new name with CR/LF refused before anything is sent.
#[test]
fn what_a_new_user_hits_first() {
    let server = crate::server().arg("-w").start();
    std::fs::create_dir(server.path("dir")).unwrap();
    for name in ["a.gz", "b.gz", "c.txt"] {
        std::fs::write(server.path(&format!("dir/{name}")), name.as_bytes()).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = format!("ftp://{}", server.addr);
    let run = wharf(tmp.path(), &["get", &format!("{base}/dir")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is a directory: use -r"),
        "{}",
        run.stderr
    );
    // A pattern into logs/, which is not there yet.
    wharf(tmp.path(), &["get", &format!("{base}/dir/*.gz"), "logs/"]).ok("get pattern");
    assert_eq!(
        std::fs::read(tmp.path().join("logs/a.gz")).unwrap(),
        b"a.gz"
    );
    assert!(tmp.path().join("logs/b.gz").exists() && !tmp.path().join("logs/c.txt").exists());
    // An SSH server on the port.
    let ssh = TcpListener::bind("127.0.0.1:0").unwrap();
    let ssh_port = ssh.local_addr().unwrap().port();
    let banner = std::thread::spawn(move || {
        if let Ok((mut s, _)) = ssh.accept() {
            use std::io::Write;
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let run = wharf(tmp.path(), &["ls", &format!("ftp://127.0.0.1:{ssh_port}/")]);
    banner.join().unwrap();
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("an SSH server") && run.stderr.contains("wharf check 127.0.0.1:"),
        "{}",
        run.stderr
    );
    // A user, no password anywhere, no terminal: said, nothing sent.
    let out = output_with_input(
        Command::new(BIN)
            .args(["ls", &format!("ftp://alice@{}/", server.addr)])
            .env_remove("WHARF_PASSWORD")
            .env("HOME", tmp.path()),
        None,
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("WHARF_PASSWORD") && err.contains("--password-stdin"),
        "{err}"
    );
    // mv to a name with CR/LF: refused before connecting (nothing listens on that port).
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let run = wharf(
        tmp.path(),
        &["mv", &format!("ftp://{closed}/a.txt"), "b\r\nDELE x"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("CR, LF or NUL"), "{}", run.stderr);
}
