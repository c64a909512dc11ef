//! Running under systemd without systemd (it is not PID 1 here): the notify protocol against a
//! socket that plays the service manager's part, socket activation through Debian's
//! `systemd-socket-activate` with real clients, and `wharf serve --check`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wharf_testkit::{Ftp, output_within, require_tool};

use crate::{BIN, server};

const LIMIT: Duration = Duration::from_secs(30);

fn require_root() {
    assert!(
        wharf_testkit::is_root(),
        "this test starts the server as root to see it run as nobody: run the tests as root (CI does)"
    );
}

/// The next message on the notify socket, within `wait`.
fn next(sock: &UnixDatagram, wait: Duration) -> String {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Messages until one contains `what` (at most 10 s); all of them.
fn until(sock: &UnixDatagram, what: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what}: {seen:?}");
        let m = next(sock, left);
        let done = m.contains(what);
        seen.push(m);
        if done {
            return seen;
        }
    }
}

fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap() * 1_000_000 + u64::try_from(t.tv_nsec).unwrap() / 1_000
}

/// READY=1 only once the port accepts and root is gone; STATUS with the sessions; WATCHDOG=1
/// at the interval; RELOADING=1 with MONOTONIC_USEC, then READY=1, around a SIGHUP; STOPPING=1
/// at SIGTERM.
#[test]
fn notify_protocol_as_a_service_manager_sees_it() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let s = server()
        .args(&["--run-as", "nobody"])
        .env("NOTIFY_SOCKET", &path.to_string_lossy())
        .env("WATCHDOG_USEC", "400000")
        .start_on(&root);
    let ready = until(&sock, "READY=1");
    let ids = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    assert!(ids.contains("Uid:\t65534\t65534\t65534\t65534"), "{ids}");
    assert!(
        ready.last().unwrap().contains("STATUS=Serving; 0 sessions"),
        "{ready:?}"
    );
    let _ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let seen = until(&sock, "STATUS=Serving; 1 session");
    assert!(seen.iter().any(|m| m.contains("WATCHDOG=1")), "{seen:?}");
    // The watchdog keeps coming, at half the interval.
    let started = Instant::now();
    until(&sock, "WATCHDOG=1");
    until(&sock, "WATCHDOG=1");
    // At 0.2 s apart, two within a few seconds even on a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(5));
    let before = monotonic_usec();
    s.signal("HUP");
    let reload = until(&sock, "RELOADING=1");
    let stamp: u64 = reload
        .last()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .expect("MONOTONIC_USEC");
    assert!(stamp >= before && stamp < monotonic_usec(), "{reload:?}");
    until(&sock, "READY=1");
    s.signal("TERM");
    until(&sock, "STOPPING=1");
}

/// Socket activation through `systemd-socket-activate`, which listens, and on the first
/// connection runs the server with the socket (`LISTEN_FDS`, named `ftp`): the server is
/// never root (all of it runs as nobody), and curl and lftp download through that socket.
#[test]
fn socket_activation_with_curl_and_lftp() {
    require_root();
    let activate = require_tool("systemd-socket-activate");
    let lftp = require_tool("lftp");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"handed over\n").unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut child = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&activate)
        .args([
            "-l",
            &format!("127.0.0.1:{port}"),
            "--fdname=ftp",
            BIN,
            "serve",
        ])
        .arg("--root")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = output_within(
        Command::new("curl").args(["-sS", &format!("ftp://127.0.0.1:{port}/hello.txt")]),
        LIMIT,
    );
    let log_text = || std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert_eq!(
        out.stdout,
        b"handed over\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log_text()
    );
    let target = dir.path().join("got.txt");
    let out = output_within(
        Command::new(&lftp).args([
            "-c",
            &format!(
                "set net:max-retries 1; open ftp://anonymous:x@127.0.0.1:{port}; get hello.txt -o {}",
                target.display()
            ),
        ]),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"handed over\n");
    // The process systemd-socket-activate became: wharf, as nobody from its first instruction.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    assert!(
        status.contains("Uid:\t65534\t65534\t65534\t65534"),
        "{status}"
    );
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(cmdline.starts_with(BIN), "{cmdline}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `wharf serve --check`: a good configuration prints what would be served and exits 0 without
/// binding its port (which another process holds); a broken one exits 2 with the same line as
/// a start; as root, it checks as run_as.
#[test]
fn serve_check_describes_or_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("srv");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "root = \"{}\"\nlisten = [\"{addr}\"]\n[passive]\nports = \"50000-50009\"\n[[user]]\nname = \"alice\"\npassword_hash = \"{}\"\npermissions = [\"read\"]\n",
            root.display(),
            wharf_testkit::PW_HASH
        ),
    )
    .unwrap();
    let check = |config: &std::path::Path| {
        output_within(
            Command::new(BIN)
                .args(["serve", "--check", "--config"])
                .arg(config),
            LIMIT,
        )
    };
    let out = check(&config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "Configuration OK",
        &format!("Listener: {addr} (plain)"),
        &format!("Root: {} (local file system)", root.display()),
        "User: alice (config)",
        "Passive mode: ports 50000-50009",
        "TLS: off",
        "Admin listener: none",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    std::fs::write(&config, "root = \"/does/not/exist\"\n").unwrap();
    let out = check(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("wharf.toml:1: root:"), "{err}");
    std::fs::write(&config, "[passive]\nports = \"21-30\"\n").unwrap();
    let out = check(&config);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("below 1024"));
    if wharf_testkit::is_root() {
        // A root nobody may read: the check says so as nobody, as a start would.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(&config, format!("root = \"{}\"\n", root.display())).unwrap();
        let out = check(&config);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("cannot be read as `nobody`"), "{err}");
    }
    drop(held);
}

/// On the journal (`JOURNAL_STREAM` names its stderr), log lines carry no timestamp of their
/// own: the journal stamps them. Elsewhere they do.
#[test]
fn no_timestamps_of_its_own_on_the_journal() {
    use std::io::BufRead;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log_of = |journal: bool| -> String {
        let path = dir.path().join(format!("stderr-{journal}.log"));
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file);
        if wharf_testkit::is_root() {
            cmd.arg("--allow-root");
        }
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        }
        let mut child = cmd.spawn().unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while out.read_line(&mut line).unwrap() > 0 && !line.starts_with("Connect") {
            line.clear();
        }
        let _ = child.kill();
        let _ = child.wait();
        std::fs::read_to_string(&path).unwrap()
    };
    let plain = log_of(false);
    let journal = log_of(true);
    let first = |log: &str| log.lines().next().unwrap_or_default().to_string();
    assert!(
        first(&plain).starts_with("20"),
        "plain:\n{plain}\njournal:\n{journal}"
    );
    let level = first(&journal)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    assert!(
        ["INFO", "WARN", "ERROR"].contains(&level.as_str()),
        "{journal}"
    );
}

/// wharf.socket's `ListenStream=21` is one dual-stack IPv6 socket: IPv4 clients arrive as
/// IPv4-mapped addresses. In two network namespaces (a dual-stack `[::]` socket there leaves
/// no loopback of this machine), an IPv4 client downloads through the handed-over socket in
/// passive (PASV, whose reply needs an IPv4 address) and active mode (the PORT check compares
/// the mapped peer as IPv4), and the log names it as IPv4.
#[test]
fn socket_activation_on_a_dual_stack_socket_treats_ipv4_as_ipv4() {
    require_root();
    let activate = require_tool("systemd-socket-activate");
    let curl = require_tool("curl");
    let lab = wharf_testkit::netns::Lab::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"dual stack\n").unwrap();
    let log_path = dir.path().join("server.log");
    let mut child = lab
        .command(&lab.server, Path::new("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&activate)
        .args(["-l", "[::]:2121", "--fdname=ftp", BIN, "serve", "--root"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let url = format!("ftp://{}:2121/hello.txt", wharf_testkit::netns::SERVER_IP);
    let fetch = |extra: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = output_within(
                lab.command(&lab.client, &curl)
                    .args(["-sS", "--connect-timeout", "5"])
                    .args(extra)
                    .arg(&url),
                LIMIT,
            );
            // Until systemd-socket-activate listens (code 7: connection refused).
            if out.status.code() != Some(7) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    for extra in [&["--disable-epsv"][..], &["-P", "-", "--disable-eprt"][..]] {
        let out = fetch(extra);
        assert_eq!(
            out.stdout,
            b"dual stack\n",
            "{extra:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            log()
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = log();
    assert!(
        text.contains(&format!("peer={}:", wharf_testkit::netns::CLIENT_IP)),
        "{text}"
    );
    assert!(!text.contains("::ffff:"), "{text}");
}
