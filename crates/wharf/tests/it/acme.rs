//! Certificates by ACME (RFC 8555) from Debian's pebble on loopback: issued by HTTP-01 for two
//! virtual hosts and served by name over explicit and implicit TLS, renewed while a download
//! runs, and a CA that refuses leaves the old certificate in use.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wharf_testkit::pebble::Pebble;
use wharf_testkit::{PW_HASH, Server, free_port, output_within, require_tool, write_file};

use crate::BIN;
use crate::tls::make_cert;

/// Two ACME hosts (alice on ftp.a.test, bob on ftp.b.test) and the default certificate.
fn config(dir: &Path, pebble: &Pebble, challenge_port: u16, state: &Path, extra: &str) -> String {
    let a = dir.join("a");
    let b = dir.join("b");
    write_file(&a.join("a.txt"), b"customer a");
    write_file(&b.join("b.txt"), &wharf_testkit::pattern(4 << 20, 7));
    let (cert, key) = make_cert(dir, "localhost");
    format!(
        "[limits]\nfailed_login_delay_ms = 0\n\
         [tls]\ncert = '{cert}'\nkey = '{key}'\n\
         [acme]\ndirectory = '{url}'\nca = '{ca}'\nterms_agreed = true\nstate = '{state}'\n\
         http_listen = '127.0.0.1:{challenge_port}'\ncheck_secs = 1\n{extra}\n\
         [[host]]\nnames = ['ftp.a.test']\nroot = '{a}'\nacme = true\n\
         [[host]]\nnames = ['ftp.b.test']\nroot = '{b}'\nacme = true\n\
         [[user]]\nname = 'alice'\npassword_hash = '{PW_HASH}'\nhost = 'ftp.a.test'\n\
         [[user]]\nname = 'bob'\npassword_hash = '{PW_HASH}'\nhost = 'ftp.b.test'\n",
        cert = cert.display(),
        key = key.display(),
        url = pebble.directory_url,
        ca = pebble.directory_ca().display(),
        state = state.display(),
        a = a.display(),
        b = b.display(),
    )
}

/// The SHA-256 of the certificate served for `name` on the implicit-TLS port, checked against
/// `ca`.
fn served_cert(port: u16, name: &str, ca: &Path) -> String {
    let script = r#"
import hashlib, socket, ssl, sys
port, name, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname=name) as t:
        print(hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest())
"#;
    let out = output_within(
        Command::new(require_tool("python3"))
            .arg("-c")
            .arg(script)
            .arg(port.to_string())
            .arg(name)
            .arg(ca),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The SHA-256 of the first certificate of a PEM file.
fn file_cert(pem: &Path) -> String {
    let script = r#"
import hashlib, ssl, sys
text = open(sys.argv[1]).read()
first = text[: text.index("-----END CERTIFICATE-----") + 25]
print(hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest())
"#;
    let out = output_within(
        Command::new(require_tool("python3"))
            .arg("-c")
            .arg(script)
            .arg(pem),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// curl over TLS by name (`--resolve`), trusting pebble's issuer only.
fn curl(
    scheme: &str,
    name: &str,
    port: u16,
    ca: &Path,
    user: &str,
    file: &str,
    extra: &[&str],
) -> (i32, Vec<u8>) {
    let out = output_within(
        Command::new(require_tool("curl"))
            .args(["-sS", "--max-time", "60", "--ssl-reqd"])
            .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
            .arg("--cacert")
            .arg(ca)
            .args(["-u", &format!("{user}:pw")])
            .args(extra)
            .arg(format!("{scheme}://{name}:{port}/{file}")),
        Duration::from_secs(90),
    );
    (out.status.code().unwrap_or(-1), out.stdout)
}

fn wait_for(server: &Server, text: &str, count: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if server.log().matches(text).count() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn two_names_get_certificates_by_http01_and_each_is_served_by_name() {
    let challenge = free_port();
    let pebble = Pebble::start(challenge, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("acme");
    let server = Server::builder(BIN)
        .args(&["--listen-implicit", "127.0.0.1:0"])
        .config(&config(dir.path(), &pebble, challenge, &state, ""))
        .start();
    assert!(
        wait_for(
            &server,
            "ACME: certificate obtained and in use",
            2,
            Duration::from_secs(60)
        ),
        "{}\n{}",
        server.log(),
        pebble.log()
    );
    assert_eq!(pebble.issued_count(), 2, "{}", pebble.log());
    let roots = pebble.issuer_roots();
    let port = server.addr.port();
    let implicit = server.implicit.unwrap().port();
    // Explicit TLS on a's name: a's certificate (trusted through pebble's root), a's user.
    let (code, got) = curl("ftp", "ftp.a.test", port, &roots, "alice", "a.txt", &[]);
    assert_eq!((code, got.as_slice()), (0, b"customer a".as_slice()));
    // Implicit TLS on b's name.
    let (code, got) = curl("ftps", "ftp.b.test", implicit, &roots, "bob", "b.txt", &[]);
    assert_eq!(code, 0);
    assert_eq!(got.len(), 4 << 20);
    // Each name gets its own certificate, the one kept in the state directory.
    assert_eq!(
        served_cert(implicit, "ftp.a.test", &roots),
        file_cert(&state.join("ftp.a.test.crt"))
    );
    assert_eq!(
        served_cert(implicit, "ftp.b.test", &roots),
        file_cert(&state.join("ftp.b.test.crt"))
    );
    // The keys and the account readable by the server alone.
    use std::os::unix::fs::PermissionsExt;
    for f in ["ftp.a.test.key", "ftp.b.test.key", "account.json"] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    // The challenge listener serves nothing but challenges.
    let out = output_within(
        Command::new(require_tool("curl"))
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{challenge}/")),
        Duration::from_secs(30),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    // A start with valid certificates in the state directory orders nothing.
    drop(server);
    let again = Server::builder(BIN)
        .args(&["--listen-implicit", "127.0.0.1:0"])
        .config(&config(dir.path(), &pebble, challenge, &state, ""))
        .start();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pebble.issued_count(), 2, "no new order: {}", again.log());
    assert_eq!(
        served_cert(again.implicit.unwrap().port(), "ftp.a.test", &roots),
        file_cert(&state.join("ftp.a.test.crt"))
    );
    // A name added to a host: a certificate for the new set, served for the new name.
    drop(again);
    let wider = config(dir.path(), &pebble, challenge, &state, "").replace(
        "names = ['ftp.b.test']",
        "names = ['ftp.b.test', 'files.b.test']",
    );
    let third = Server::builder(BIN)
        .args(&["--listen-implicit", "127.0.0.1:0"])
        .config(&wider)
        .start();
    assert!(
        wait_for(
            &third,
            "ACME: certificate obtained and in use",
            1,
            Duration::from_secs(60)
        ),
        "{}",
        third.log()
    );
    assert!(
        third.log().contains("the host's names changed"),
        "{}",
        third.log()
    );
    assert_eq!(pebble.issued_count(), 3);
    assert_eq!(
        served_cert(third.implicit.unwrap().port(), "files.b.test", &roots),
        file_cert(&state.join("ftp.b.test.crt"))
    );
}

#[test]
fn renewal_swaps_the_certificate_while_a_download_runs() {
    let challenge = free_port();
    let pebble = Pebble::start(challenge, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("acme");
    // Every look finds the certificates due (pebble 2.4 has no short validity to wait for).
    let server = Server::builder(BIN)
        .args(&["--listen-implicit", "127.0.0.1:0"])
        .config(&config(
            dir.path(),
            &pebble,
            challenge,
            &state,
            "renew_days = 100000",
        ))
        .start();
    assert!(
        wait_for(
            &server,
            "ACME: certificate obtained and in use",
            2,
            Duration::from_secs(60)
        ),
        "{}",
        server.log()
    );
    let roots = pebble.issuer_roots();
    let implicit = server.implicit.unwrap().port();
    let first = served_cert(implicit, "ftp.b.test", &roots);
    let issued = pebble.issued_count();
    // A 4 MiB download at 1 MiB/s over TLS: renewals happen while it runs.
    let (code, got) = curl(
        "ftps",
        "ftp.b.test",
        implicit,
        &roots,
        "bob",
        "b.txt",
        &["--limit-rate", "1M"],
    );
    assert_eq!(code, 0, "the download completes");
    assert_eq!(got, wharf_testkit::pattern(4 << 20, 7));
    assert!(
        pebble.issued_count() > issued,
        "renewed meanwhile: {}",
        server.log()
    );
    // The next connection gets the new certificate.
    let now = served_cert(implicit, "ftp.b.test", &roots);
    assert_ne!(now, first);
    // Renewals go on all the time here (every look finds the certificate due): what is served
    // must be what is on disk just before or just after the connection, on one of a few tries.
    let file = state.join("ftp.b.test.crt");
    let same = (0..10).any(|_| {
        let before = file_cert(&file);
        let served = served_cert(implicit, "ftp.b.test", &roots);
        let after = file_cert(&file);
        let same = served == before || served == after;
        if !same {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        same
    });
    assert!(same, "the served certificate is never the one on disk");
}

#[test]
fn a_ca_that_refuses_leaves_the_old_certificate_in_use() {
    // First a certificate, from a pebble that validates on the challenge port.
    let challenge = free_port();
    let good = Pebble::start(challenge, false);
    let dir = tempfile::tempdir().unwrap();
    let first_state = dir.path().join("first");
    let server = Server::builder(BIN)
        .config(&config(dir.path(), &good, challenge, &first_state, ""))
        .start();
    assert!(wait_for(
        &server,
        "ACME: certificate obtained and in use",
        2,
        Duration::from_secs(60)
    ));
    drop(server);
    // Then a pebble that validates on a port nobody listens on, and certificates due.
    let closed = free_port();
    let refusing = Pebble::start(closed, false);
    let state: PathBuf = dir.path().join("second");
    std::fs::create_dir(&state).unwrap();
    for f in [
        "ftp.a.test.crt",
        "ftp.a.test.key",
        "ftp.b.test.crt",
        "ftp.b.test.key",
    ] {
        std::fs::copy(first_state.join(f), state.join(f)).unwrap();
    }
    let server = Server::builder(BIN)
        .args(&["--listen-implicit", "127.0.0.1:0"])
        .config(&config(
            dir.path(),
            &refusing,
            challenge,
            &state,
            "renew_days = 100000",
        ))
        .start();
    assert!(
        wait_for(
            &server,
            "ACME: order failed; the certificate in use stays",
            1,
            Duration::from_secs(60)
        ),
        "{}",
        server.log()
    );
    // The CA's problem document is in the log (pebble: a connection error on validation).
    let log = server.log();
    assert!(log.contains("urn:ietf:params:acme:error:"), "{log}");
    assert_eq!(refusing.issued_count(), 0);
    // The old certificate is still the one served.
    let roots = good.issuer_roots();
    assert_eq!(
        served_cert(server.implicit.unwrap().port(), "ftp.a.test", &roots),
        file_cert(&first_state.join("ftp.a.test.crt"))
    );
}

/// A TCP relay on pebble's validation port: each request goes to the node that did *not*
/// order the certificate of its Host header (read from the nodes' logs), so a challenge can
/// only be answered by the node that did not order. Counts what it relayed, and what it could
/// not place.
struct Relay {
    relayed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    unplaced: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(listener: TcpListener, logs: [PathBuf; 2], ports: [u16; 2]) -> Relay {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let relayed = std::sync::Arc::new(AtomicUsize::new(0));
        let unplaced = std::sync::Arc::new(AtomicUsize::new(0));
        let (done, lost) = (relayed.clone(), unplaced.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().take(100) {
                let Ok(mut inbound) = conn else { continue };
                // The request head, for its Host header.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    match inbound.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let name = text
                    .lines()
                    .find_map(|l| l.strip_prefix("host:"))
                    .map(|h| h.trim().split(':').next().unwrap_or("").to_string())
                    .unwrap_or_default();
                let ordering = format!("ACME: ordering a certificate host={name}");
                let orders = |log: &PathBuf| {
                    std::fs::read_to_string(log)
                        .unwrap_or_default()
                        .contains(&ordering)
                };
                let to = match (orders(&logs[0]), orders(&logs[1])) {
                    (true, false) => 1,
                    (false, true) => 0,
                    _ => {
                        lost.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                };
                let Ok(mut outbound) = std::net::TcpStream::connect(("127.0.0.1", ports[to]))
                else {
                    lost.fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                done.fetch_add(1, Ordering::SeqCst);
                let _ = outbound.write_all(&head);
                let (mut ri, mut wi) = (inbound.try_clone().unwrap(), inbound);
                let (mut ro, mut wo) = (outbound.try_clone().unwrap(), outbound);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut ri, &mut wo);
                    let _ = wo.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut ro, &mut wi);
                    let _ = wi.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Relay { relayed, unplaced }
    }
}

#[test]
fn two_nodes_on_one_postgresql_order_once_and_serve_the_same_certificate() {
    assert!(
        wharf_testkit::is_root(),
        "this test starts PostgreSQL as its own user: run the tests as root (scripts/test)"
    );
    let pg = wharf_testkit::postgres::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let relay_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pebble = Pebble::start(relay_listener.local_addr().unwrap().port(), false);
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let node = |n: usize| {
        let state = dir.path().join(format!("state{n}"));
        let extra = format!("shared_key = '{key}'");
        Server::builder(BIN)
            .args(&["--listen-implicit", "127.0.0.1:0", "--users-db", &pg.url()])
            .config(&config(dir.path(), &pebble, ports[n], &state, &extra))
            .start()
    };
    let a = node(0);
    let b = node(1);
    let relay = Relay::start(
        relay_listener,
        [a.log_path().to_path_buf(), b.log_path().to_path_buf()],
        ports,
    );
    // Each host's certificate: ordered by one node, taken from the database by the other.
    for s in [&a, &b] {
        assert!(
            wait_for(s, "ACME: certificate", 2, Duration::from_secs(60)),
            "{}",
            s.log()
        );
    }
    let ordered = |s: &Server| {
        s.log()
            .matches("ACME: certificate obtained and in use")
            .count()
    };
    let taken = |s: &Server| {
        s.log()
            .matches("ACME: certificate taken from the shared database")
            .count()
    };
    assert_eq!(
        ordered(&a) + ordered(&b),
        2,
        "one order per host:\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(taken(&a) + taken(&b), 2, "{}\n{}", a.log(), b.log());
    assert_eq!(pebble.issued_count(), 2, "{}", pebble.log());
    // Every challenge went to the node that did not order it, and was answered there.
    use std::sync::atomic::Ordering;
    assert!(
        relay.relayed.load(Ordering::SeqCst) >= 2,
        "no challenge relayed"
    );
    assert_eq!(relay.unplaced.load(Ordering::SeqCst), 0);
    // Both serve the same certificate for each name; no private key is in the database.
    let roots = pebble.issuer_roots();
    for name in ["ftp.a.test", "ftp.b.test"] {
        let on_a = served_cert(a.implicit.unwrap().port(), name, &roots);
        let on_b = served_cert(b.implicit.unwrap().port(), name, &roots);
        assert_eq!(on_a, on_b, "{name}");
    }
    let dump = output_within(
        Command::new("runuser")
            .args(["-u", "postgres", "--", "pg_dump", "-h", "127.0.0.1", "-p"])
            .arg(pg.port.to_string())
            .args(["-U", "postgres", "-t", "wharf_acme_*", "postgres"]),
        Duration::from_secs(60),
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("wharf_acme_certs"), "{dump}");
    assert!(
        !dump.contains("PRIVATE KEY"),
        "a private key in the database"
    );
    // A third node starting while the certificates are valid orders nothing.
    let issued = pebble.issued_count();
    let c = {
        let state = dir.path().join("state2");
        Server::builder(BIN)
            .args(&["--listen-implicit", "127.0.0.1:0", "--users-db", &pg.url()])
            .config(&config(
                dir.path(),
                &pebble,
                free_port(),
                &state,
                &format!("shared_key = '{key}'"),
            ))
            .start()
    };
    assert!(
        wait_for(
            &c,
            "ACME: certificate taken from the shared database",
            2,
            Duration::from_secs(30)
        ),
        "{}",
        c.log()
    );
    assert_eq!(pebble.issued_count(), issued);
    assert!(!c.log().contains("ACME: ordering"), "{}", c.log());
}

/// The challenge listener handed over by systemd (a socket named `acme`, as a socket unit on
/// port 80 would): the process never binds it itself.
#[test]
fn a_challenge_socket_from_systemd_answers_the_ca() {
    let activate = require_tool("systemd-socket-activate");
    let (ftp_port, acme_port) = (free_port(), free_port());
    let pebble = Pebble::start(acme_port, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("acme");
    let config_file = dir.path().join("wharf.toml");
    std::fs::write(
        &config_file,
        config(dir.path(), &pebble, free_port(), &state, ""),
    )
    .unwrap();
    let log_file = dir.path().join("server.log");
    let log = std::fs::File::create(&log_file).unwrap();
    let mut child = Command::new(&activate)
        .args(["-l", &format!("127.0.0.1:{ftp_port}")])
        .args(["-l", &format!("127.0.0.1:{acme_port}")])
        .arg("--fdname=ftp:acme")
        .args([BIN, "serve", "--allow-root", "--config"])
        .arg(&config_file)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // The first connection starts the server with both sockets.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ftp = loop {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", ftp_port)) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut banner = [0u8; 64];
    let _ = std::io::Read::read(&mut ftp, &mut banner);
    let deadline = Instant::now() + Duration::from_secs(60);
    let obtained = loop {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        if text
            .matches("ACME: certificate obtained and in use")
            .count()
            >= 2
        {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log_file).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(obtained, "{text}\n{}", pebble.log());
    assert!(
        text.contains(&format!(
            "challenges answered on http://127.0.0.1:{acme_port}/"
        )),
        "{text}"
    );
    assert_eq!(pebble.issued_count(), 2);
}

/// `webroot`: the answers are files a web server already on port 80 serves (Python's
/// http.server here), removed once the order is done.
#[test]
fn challenges_answered_by_files_in_a_webroot() {
    let challenge = free_port();
    let pebble = Pebble::start(challenge, false);
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let mut web = Some(
        Command::new(require_tool("python3"))
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &challenge.to_string(),
            ])
            .current_dir(&www)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let state = dir.path().join("acme");
    let config = config(dir.path(), &pebble, challenge, &state, "").replace(
        &format!("http_listen = '127.0.0.1:{challenge}'"),
        &format!("webroot = '{}'", www.display()),
    );
    let server = Server::builder(BIN).config(&config).start();
    let obtained = wait_for(
        &server,
        "ACME: certificate obtained and in use",
        2,
        Duration::from_secs(60),
    );
    wharf_testkit::stop_child(&mut web, Duration::from_secs(5));
    assert!(obtained, "{}\n{}", server.log(), pebble.log());
    assert_eq!(pebble.issued_count(), 2);
    let left: Vec<_> = std::fs::read_dir(www.join(".well-known/acme-challenge"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "answers left behind: {left:?}");
}

/// A state directory the server's user cannot write stops the start, with the fix.
#[test]
fn a_state_directory_the_server_cannot_write_stops_the_start() {
    assert!(
        wharf_testkit::is_root(),
        "this test checks as `nobody`: run it as root"
    );
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pebble_less = format!(
        "root = '{root}'\n[tls]\ncert = '{cert}'\nkey = '{key}'\n\
         [acme]\nterms_agreed = true\nstate = '{state}'\n\
         [[host]]\nnames = ['ftp.a.test']\nroot = '{root}'\nacme = true\n",
        root = dir.path().display(),
        cert = make_cert(dir.path(), "localhost").0.display(),
        key = dir.path().join("localhost.key").display(),
        state = dir.path().join("state/acme").display(),
    );
    let file = dir.path().join("wharf.toml");
    std::fs::write(&file, pebble_less).unwrap();
    let out = output_within(
        Command::new(BIN)
            .args(["serve", "--check", "--config"])
            .arg(&file),
        Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("acme.state") && err.contains("chown nobody"),
        "{err}"
    );
}
