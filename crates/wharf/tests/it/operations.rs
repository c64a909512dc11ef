//! Operations: session limits, idle timeout, graceful shutdown, configuration and users.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use wharf_testkit::{Ftp, output_within, write_file};

const LIMIT: Duration = Duration::from_secs(30);

use crate::{BIN, server};
use wharf_testkit::PW_HASH;

#[test]
fn per_ip_limit_gives_421_and_frees_on_close() {
    let s = server()
        .config("[limits]\nmax_sessions_per_ip = 2\n")
        .start();
    let a = Ftp::connect(s.addr);
    let _b = Ftp::connect(s.addr);
    let c = Ftp::connect(s.addr);
    assert_eq!(c.banner.code, 421, "{}", c.banner.text);
    // Another address is still served.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &"127.0.0.3:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let mut other: TcpStream = sock.into();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 3];
    other.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"220");
    drop(a);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(Ftp::connect(s.addr).banner.code, 220);
}

#[test]
fn total_limit_gives_421() {
    let s = server().config("[limits]\nmax_sessions = 1\n").start();
    let _a = Ftp::connect(s.addr);
    assert_eq!(Ftp::connect(s.addr).banner.code, 421);
}

#[test]
fn idle_session_gets_421() {
    let s = server().config("[limits]\nidle_timeout = 1\n").start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let r = ftp.read_reply();
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(ftp.is_closed());
}

#[test]
fn unused_passive_listener_closes_when_it_expires_and_the_session_stays() {
    let s = server()
        .config("[limits]\naccept_timeout = 1\nidle_timeout = 4\n")
        .start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let port = ftp.pasv();
    std::thread::sleep(Duration::from_millis(1600));
    let err = TcpStream::connect(port).expect_err("the listener is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(
        ftp.cmd("NOOP").code,
        200,
        "the session outlives its listener"
    );
    assert_eq!(
        ftp.cmd("LIST").code,
        425,
        "no data connection set up any more"
    );
    // The idle clock still runs from the last command.
    let r = ftp.read_reply();
    assert_eq!(r.code, 421, "{}", r.text);
}

#[test]
fn graceful_shutdown_lets_transfers_finish() {
    let mut s = server().config("[limits]\nshutdown_grace = 20\n").start();
    let size = 48 << 20;
    write_file(&s.path("big"), &vec![7u8; size]);
    let mut idle = Ftp::login_to(s.addr, "anonymous", "x");
    let mut busy = Ftp::login_to(s.addr, "anonymous", "x");
    let mut data = busy.passive();
    assert_eq!(busy.cmd("RETR big").code, 150);
    let mut first = vec![0u8; 1 << 20];
    data.read_exact(&mut first).unwrap();
    let addr = s.addr;
    let pid = s.pid();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    assert_eq!(idle.read_reply().code, 421, "idle sessions are told");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "still accepting"
    );
    let mut rest = Vec::new();
    data.read_to_end(&mut rest).unwrap();
    assert_eq!(
        first.len() + rest.len(),
        size,
        "the running transfer finished"
    );
    assert_eq!(busy.read_reply().code, 226);
    let status = s.terminate().expect("server exited");
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_config_names_the_field_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[passive]\nports = \"9000-8000\"\n", "passive.ports"),
        ("[limits]\nidle_timout = 5\n", "limits.idle_timout"),
        ("listen = [\"localhost\"]\n", "listen"),
        (
            "[[user]]\nname = \"a\"\npassword_hash = \"secret\"\n",
            "user[0].password_hash",
        ),
    ];
    for (toml, field) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let out = output_within(
            Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&path),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{toml}: {err}");
    }
    let out = output_within(
        Command::new(BIN).args(["serve", "--passive-ports", "x"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--passive-ports"));
    let out = output_within(
        Command::new(BIN).args(["serve", "--root", "/does/not/exist"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Start-up checks: each problem is one line naming the file, line and field, with a hint, and
/// exit code 2 — a hash cut short, a user defined twice, a home that is missing, a passive
/// address that does not resolve, a syntax error, a port in use, a privileged port.
#[test]
fn startup_checks_name_file_line_and_field_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let hash = passwd("pw");
    let cut = &hash[..hash.len() - 10];
    let cases = [
        (
            format!(
                "listen = [\"127.0.0.1:0\"]\n\n[[user]]\nname = \"a\"\npassword_hash = \"{cut}\"\n"
            ),
            ":5: user[0].password_hash: Argon2 hash",
        ),
        (
            format!(
                "[[user]]\nname = \"a\"\npassword_hash = \"{hash}\"\n[[user]]\nname = \"a\"\npassword_hash = \"{hash}\"\n"
            ),
            ":5: user[1].name: user `a` is defined twice (first as user[0])",
        ),
        (
            format!(
                "[[user]]\nname = \"a\"\npassword_hash = \"{hash}\"\nhome = \"/does/not/exist\"\n"
            ),
            ":4: user[0].home: `/does/not/exist`",
        ),
        (
            "# NAT\n[passive]\naddress = \"no-such-host.invalid\"\n".to_string(),
            ":3: passive.address: `no-such-host.invalid` does not resolve",
        ),
        (
            "[[user]\nname = \"x\"\n".to_string(),
            ":1: user: unclosed array table",
        ),
    ];
    for (toml, want) in cases {
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, &toml).unwrap();
        let out = output_within(
            Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&path),
            LIMIT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("{}{want}", path.display())),
            "{toml}: {err}"
        );
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = output_within(
        Command::new(BIN).args(["serve", "--root", "/tmp", "--listen", &addr]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--listen: cannot listen on") && err.contains("another server listens there"),
        "{err}"
    );
    // A privileged port without the right to bind it: as `nobody` when the tests run as root.
    let mut cmd = if rustix::process::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let out = output_within(
        cmd.args(["serve", "--root", "/tmp", "--listen", "127.0.0.1:21"]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CAP_NET_BIND_SERVICE"), "{err}");
}

fn passwd(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn config_users_with_hashes_homes_and_permissions() {
    let argon = passwd("pw-argon");
    assert!(argon.starts_with("$argon2id$"), "{argon}");
    // `openssl passwd -6 -salt saltsalt pw`, as imported from /etc/shadow.
    let six = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
    let homes = tempfile::tempdir().unwrap();
    std::fs::create_dir(homes.path().join("carol")).unwrap();
    let toml = format!(
        r#"
anonymous = false
[[user]]
name = "alice"
password_hash = "{argon}"
permissions = ["read", "write"]

[[user]]
name = "bob"
password_hash = "{six}"

[[user]]
name = "carol"
password_hash = "{six}"
home = "{}"
permissions = ["all"]
"#,
        homes.path().join("carol").display()
    );
    let s = server().config(&toml).start();
    write_file(&s.path("shared.txt"), b"shared");
    let mut alice = Ftp::login_to(s.addr, "alice", "pw-argon");
    assert_eq!(alice.upload("STOR a.txt", b"from alice").code, 226);
    assert_eq!(std::fs::read(s.path("a.txt")).unwrap(), b"from alice");
    assert_eq!(alice.cmd("DELE a.txt").code, 550, "alice may not delete");
    assert_eq!(alice.cmd("MKD d").code, 550, "alice may not mkdir");
    let mut bob = Ftp::login_to(s.addr, "bob", "pw");
    let _d = bob.passive();
    assert_eq!(bob.cmd("STOR b.txt").code, 550, "bob is read-only");
    let mut carol = Ftp::login_to(s.addr, "carol", "pw");
    let (names, _) = carol.download("NLST");
    assert!(names.is_empty(), "carol is jailed in her home");
    assert_eq!(carol.cmd("MKD mine").code, 257);
    assert!(homes.path().join("carol/mine").is_dir());
    let mut anon = Ftp::connect(s.addr);
    anon.cmd("USER anonymous");
    assert_eq!(anon.cmd("PASS x").code, 530);
}

#[test]
fn bcrypt_hashes_are_accepted() {
    // Made with Python's `bcrypt` package: hashpw(b"pw", gensalt(4)).
    let hash = "$2b$04$zkCVNQw8e4rLULyIdahX3.k6Px7T0B5U3Fbnqc0xmdyKOSRXZpO1G";
    let s = server()
        .config(&format!(
            "[[user]]\nname = \"dave\"\npassword_hash = \"{hash}\"\n"
        ))
        .start();
    let mut ftp = Ftp::login_to(s.addr, "dave", "pw");
    assert_eq!(ftp.cmd("NOOP").code, 200);
}

#[test]
fn embedded_default_serves_the_current_directory_read_only_to_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("here.txt"), b"cwd");
    // Started as root (CI), the server gives up root for `nobody`, who must read the directory.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Everything default but the port (a test may not take 2121 from a running server).
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr: std::net::SocketAddr = line
        .split("ftp://")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut ftp = Ftp::login_to(addr, "anonymous", "me@example.net");
    let (data, _) = ftp.download("RETR here.txt");
    assert_eq!(data, b"cwd");
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("STOR new.txt").code, 550, "read-only by default");
    let _ = child.kill();
    let _ = child.wait();
    // And the default address is the documented one.
    let help = output_within(Command::new(BIN).args(["serve", "--help"]), LIMIT);
    assert!(String::from_utf8_lossy(&help.stdout).contains("127.0.0.1:2121"));
}

fn users_config(banner: &str, users: &[&str]) -> String {
    let mut toml = format!("banner = \"{banner}\"\n");
    for u in users {
        toml.push_str(&format!(
            "[[user]]\nname = \"{u}\"\npassword_hash = \"{PW_HASH}\"\npermissions = [\"read\"]\n"
        ));
    }
    toml
}

/// SIGHUP on a server without TLS (it used to exit with 129): ten downloads running across it
/// all complete; new connections get the new banner and new logins the new users, also on a
/// connection made before the reload; a file that does not parse is logged and changes
/// nothing; SIGUSR1 and SIGUSR2 do not stop it; SIGTERM still stops it gracefully (exit 0).
#[test]
fn sighup_reloads_the_configuration_and_nothing_is_dropped() {
    let mut s = server().config(&users_config("One.", &["alice"])).start();
    let size = 8 << 20;
    write_file(&s.path("big.bin"), &vec![7u8; size]);
    // Ten sessions, each in the middle of a download.
    let mut running = Vec::new();
    for _ in 0..10 {
        let mut ftp = Ftp::login_to(s.addr, "alice", "pw");
        let mut data = ftp.passive();
        assert_eq!(ftp.cmd("RETR big.bin").code, 150);
        let mut first = vec![0u8; 64 << 10];
        data.read_exact(&mut first).unwrap();
        running.push((ftp, data));
    }
    let early = Ftp::connect(s.addr); // connected before the reload, logs in after it
    assert_eq!(early.banner.text, "220 One.");
    std::fs::write(s.config_path(), users_config("Two.", &["alice", "bob"])).unwrap();
    s.signal("HUP");
    assert!(s.wait_log("configuration reloaded", 1), "{}", s.log());
    for (mut ftp, mut data) in running {
        let mut rest = Vec::new();
        data.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), size - (64 << 10), "a download was cut");
        assert_eq!(ftp.read_reply().code, 226);
    }
    assert_eq!(Ftp::connect(s.addr).banner.text, "220 Two.");
    let mut early = early;
    early.login("bob", "pw");
    Ftp::login_to(s.addr, "bob", "pw");

    // A broken file: logged, and the old configuration stays.
    std::fs::write(
        s.config_path(),
        "banner = \"Three.\"\n[[user]\nname = \"x\"\n",
    )
    .unwrap();
    s.signal("HUP");
    assert!(s.wait_log("configuration not reloaded", 1), "{}", s.log());
    assert_eq!(Ftp::connect(s.addr).banner.text, "220 Two.");
    Ftp::login_to(s.addr, "bob", "pw");
    // A file that parses but names a hash that is not one: the same.
    std::fs::write(
        s.config_path(),
        "[[user]]\nname = \"carol\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ\"\n",
    )
    .unwrap();
    s.signal("HUP");
    assert!(s.wait_log("configuration not reloaded", 2), "{}", s.log());
    Ftp::login_to(s.addr, "bob", "pw");

    for sig in ["USR1", "USR2"] {
        s.signal(sig);
        std::thread::sleep(Duration::from_millis(200));
        assert!(s.is_running(), "SIGUSR{sig} stopped the server");
        assert_eq!(Ftp::connect(s.addr).banner.code, 220);
    }
    let status = s.terminate().expect("exit status");
    assert!(status.success(), "{status:?}");
}

/// The audit trail in JSON: one object a line, with session, peer, user and the absolute
/// path for every change and every refusal, the login failure's reason (never told to the
/// client); the xferlog has one line per file transfer and is reopened on SIGUSR1.
#[test]
fn audit_log_in_json_and_xferlog_reopened_on_sigusr1() {
    let dir = tempfile::tempdir().unwrap();
    let xfer = dir.path().join("xfer.log");
    let s = server()
        .args(&["--user", "alice:pw", "-w", "--log-format", "json"])
        .config(&format!(
            "[limits]\nfailed_login_delay_ms = 0\n[log]\nxferlog = \"{}\"\n",
            xfer.display()
        ))
        .start();
    let mut ftp = Ftp::connect(s.addr);
    assert_eq!(ftp.cmd("USER alice").code, 331);
    let r = ftp.cmd("PASS wrong");
    assert_eq!(
        r.text, "530 Login incorrect.",
        "the reason stays in the log"
    );
    ftp.login("alice", "pw");
    assert_eq!(ftp.cmd("MKD docs").code, 257);
    assert_eq!(ftp.cmd("CWD docs").code, 250);
    assert_eq!(ftp.upload("STOR a file.txt", b"hello").code, 226);
    let (got, r) = ftp.download("RETR a file.txt");
    assert_eq!((got.as_slice(), r.code), (&b"hello"[..], 226));
    assert_eq!(ftp.cmd("RNFR a file.txt").code, 350);
    assert_eq!(ftp.cmd("RNTO b.txt").code, 250);
    assert_eq!(ftp.cmd("DELE missing").code, 550);
    assert_eq!(ftp.cmd("SITE CHMOD 600 b.txt").code, 200);
    assert_eq!(ftp.cmd("DELE b.txt").code, 250);
    assert_eq!(ftp.cmd("CWD /").code, 250);
    assert_eq!(ftp.cmd("RMD docs").code, 250);
    ftp.cmd("QUIT");
    assert!(s.wait_log("session closed", 1), "{}", s.log());
    let events: Vec<serde_json::Value> = s
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |message: &str, verb: &str| -> &serde_json::Value {
        events
            .iter()
            .find(|e| e["message"] == message && (verb.is_empty() || e["verb"] == verb))
            .unwrap_or_else(|| panic!("no {message} {verb}: {events:#?}"))
    };
    let failed = find("login failed", "");
    assert_eq!(failed["reason"], "wrong password");
    assert_eq!(failed["user"], "alice");
    let session = failed["session"].clone();
    assert!(session.is_u64());
    for (message, verb, path, code) in [
        ("changed", "MKD", "/docs", 257),
        ("changed", "RNFR", "/docs/a file.txt", 350),
        ("changed", "RNTO", "/docs/b.txt", 250),
        ("refused", "DELE", "/docs/missing", 550),
        ("changed", "SITE", "/docs/b.txt", 200),
        ("changed", "DELE", "/docs/b.txt", 250),
        ("changed", "RMD", "/docs", 250),
    ] {
        let e = find(message, verb);
        assert_eq!(e["path"], path, "{e}");
        assert_eq!(e["code"], code, "{e}");
        assert_eq!(e["user"], "alice", "{e}");
        assert_eq!(e["session"], session, "{e}");
        assert_eq!(e["level"], "INFO", "{e}");
        assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
        assert!(e["timestamp"].is_string());
    }
    for verb in ["STOR", "RETR"] {
        let t = find("transfer", verb);
        assert_eq!(t["path"], "/docs/a file.txt");
        assert_eq!(t["bytes"], 5);
        assert_eq!(t["result"], "ok");
    }
    let lines: Vec<String> = std::fs::read_to_string(&xfer)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    // weekday month day time year secs host bytes path type flag direction mode user ftp 0 * c
    assert_eq!(fields.len(), 18, "{lines:?}");
    assert_eq!(
        &fields[6..],
        [
            "127.0.0.1",
            "5",
            "/docs/a_file.txt",
            "b",
            "_",
            "i",
            "r",
            "alice",
            "ftp",
            "0",
            "*",
            "c"
        ]
    );
    assert_eq!(lines[1].split_whitespace().nth(11), Some("o"));
    // logrotate moves the file away, then SIGUSR1: the next transfer goes to a new file.
    std::fs::rename(&xfer, dir.path().join("xfer.log.1")).unwrap();
    s.signal("USR1");
    assert!(s.wait_log("SIGUSR1: log files reopened", 1), "{}", s.log());
    let mut ftp = Ftp::login_to(s.addr, "alice", "pw");
    assert_eq!(ftp.upload("STOR c.txt", b"again").code, 226);
    ftp.cmd("QUIT");
    assert!(s.wait_log("session closed", 2));
    let fresh = std::fs::read_to_string(&xfer).unwrap();
    assert_eq!(fresh.lines().count(), 1, "{fresh}");
    assert!(fresh.contains(" /c.txt b _ i r alice ftp 0 * c"), "{fresh}");
}

fn uids(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn require_root() {
    assert!(
        wharf_testkit::is_root(),
        "this test starts the server as root to see it give root up: run the tests as root (CI does)"
    );
}

/// Started as root, the server binds, then runs as `nobody` (real, effective and saved ids, no
/// supplementary groups): it serves what `nobody` may read and nothing else, and its uploads
/// belong to `nobody`.
#[test]
fn started_as_root_it_runs_as_nobody() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("srv");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    write_file(&root.join("public.txt"), b"for everyone");
    write_file(&root.join("secret.txt"), b"root only");
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let s = server().args(&["--run-as", "nobody", "-w"]).start_on(&root);
    let ids = uids(s.pid());
    assert!(
        ids.contains("Uid:\t65534\t65534\t65534\t65534")
            && ids.contains("Gid:\t65534\t65534\t65534\t65534"),
        "{ids}"
    );
    assert!(
        s.log().contains("running as an unprivileged user"),
        "{}",
        s.log()
    );
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.download("RETR public.txt").0, b"for everyone");
    let _ = ftp.passive();
    assert_eq!(
        ftp.cmd("RETR secret.txt").code,
        550,
        "nobody cannot read it"
    );
    assert_eq!(ftp.upload("STOR new.txt", b"mine").code, 226);
    assert_eq!(
        std::fs::metadata(root.join("new.txt")).unwrap().uid(),
        65534
    );
    println!("server ids after start: {ids}");
}

/// Root it must not stay without being told: `run_as` naming root is refused, and a home the
/// new user cannot read is refused at start, both with exit code 2 and one clear line.
#[test]
fn root_is_kept_only_when_allowed() {
    require_root();
    let out = output_within(
        Command::new(BIN).args([
            "serve",
            "--root",
            "/tmp",
            "--listen",
            "127.0.0.1:0",
            "--run-as",
            "root",
        ]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("run_as: `root` is root; to run as root, set allow_root"),
        "{err}"
    );
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        private.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let out = output_within(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(private.path()),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be read as `nobody`"), "{err}");
    let out = output_within(
        Command::new(BIN).args([
            "serve",
            "--root",
            "/tmp",
            "--listen",
            "127.0.0.1:0",
            "--run-as",
            "no-such-user-x",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user `no-such-user-x`"));
}
