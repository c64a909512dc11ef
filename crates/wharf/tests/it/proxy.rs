//! Control listeners behind a load balancer (`[[listener]]` with `proxy_protocol` and
//! `proxy_from`): PROXY v1 and v2 headers name the client, which the log, the PORT check and
//! bans then go by; passive data connections may come from the balancer; a connection from
//! elsewhere, or without a header, is closed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use wharf_proto::proxy::{v1_header, v2_header};
use wharf_testkit::{Ftp, Server};

use crate::BIN;

/// A port free on 127.0.0.1 just now (the listener is closed before the server binds it).
fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A writable anonymous server with a plain listener and one behind a balancer at `from`.
fn server(from: &str, extra: &str) -> (Server, SocketAddr) {
    let port = free_port();
    let proxied: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = format!(
        "[[listener]]\naddress = \"{proxied}\"\nproxy_protocol = true\nproxy_from = [{from}]\n{extra}"
    );
    let server = Server::builder(BIN).arg("-w").config(&config).start();
    (server, proxied)
}

/// Connects to the proxied listener as a balancer would, sending `header` first.
fn through(addr: SocketAddr, header: &[u8]) -> Ftp {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(header).unwrap();
    Ftp::over(stream)
}

/// What a connection that should be refused gets: closed, no banner.
fn closed_without_banner(mut stream: TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    // Closed, or reset; a read that times out (held open, no banner) is not a refusal.
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn headers_name_the_client_for_logs_port_checks_and_bans() {
    let (server, addr) = server(
        "\"127.0.0.1/32\"",
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 2\nmax_login_failures = 100\n",
    );
    // v1: the log shows the client the header names, and the balancer it came through.
    let client: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    let mut ftp = through(addr, v1_header(client, addr).as_bytes());
    assert_eq!(ftp.banner.code, 220, "{}", ftp.banner.text);
    ftp.login("anonymous", "x@");
    assert!(
        server.wait_log("peer=192.0.2.9:40000 via=127.0.0.1:", 1),
        "{}",
        server.log()
    );
    // Passive: the data connection comes from the balancer's address, and is taken.
    let (listing, done) = ftp.download("LIST");
    assert_eq!(done.code, 226, "{}", done.text);
    let _ = listing;
    // PORT goes by the client's address: an address of the balancer's is a bounce.
    let r = ftp.cmd("PORT 127,0,0,1,200,10");
    assert!(r.code >= 500, "{}", r.text);

    // v2, IPv6.
    let six: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let dst: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
    let mut ftp = through(addr, &v2_header(six, dst));
    assert_eq!(ftp.banner.code, 220, "{}", ftp.banner.text);
    assert!(
        server.wait_log("peer=[2001:db8::7]:5555", 1),
        "{}",
        server.log()
    );
    let _ = ftp.cmd("QUIT");

    // Bans go by the client: two failures from 192.0.2.50 ban it, 192.0.2.51 still logs in.
    let bad: SocketAddr = "192.0.2.50:1000".parse().unwrap();
    for _ in 0..2 {
        let mut ftp = through(addr, v1_header(bad, addr).as_bytes());
        let _ = ftp.cmd("USER nobody-here");
        let r = ftp.cmd("PASS wrong");
        assert_eq!(r.code, 530, "{}", r.text);
    }
    let ftp = through(addr, v1_header(bad, addr).as_bytes());
    assert_eq!(ftp.banner.code, 421, "{}", ftp.banner.text);
    let good: SocketAddr = "192.0.2.51:1000".parse().unwrap();
    let mut ftp = through(addr, v1_header(good, addr).as_bytes());
    assert_eq!(ftp.banner.code, 220, "{}", ftp.banner.text);
    ftp.login("anonymous", "x@");
    // The balancer itself (127.0.0.1) is not banned: the plain listener still answers it.
    let direct = Ftp::connect(server.addr);
    assert_eq!(direct.banner.code, 220, "{}", direct.banner.text);

    // No header, or garbage, from the balancer: closed without a banner.
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.write_all(b"USER anonymous\r\n").unwrap();
    assert!(closed_without_banner(plain));
    assert!(
        server.wait_log("connection refused: no valid PROXY header", 1),
        "{}",
        server.log()
    );
}

#[test]
fn headers_from_outside_proxy_from_are_refused() {
    let (server, addr) = server("\"10.0.0.0/8\", \"192.0.2.0/24\"", "");
    // 127.0.0.1 is no balancer here: even a well-formed header is not read.
    let client: SocketAddr = "198.51.100.1:1234".parse().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(v1_header(client, addr).as_bytes())
        .unwrap();
    assert!(closed_without_banner(stream));
    assert!(
        server.wait_log("not from a load balancer allowed to send PROXY headers", 1),
        "{}",
        server.log()
    );
    assert!(!server.log().contains("198.51.100.1"), "{}", server.log());
}

#[test]
fn proxy_protocol_needs_proxy_from() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!("[[listener]]\naddress = \"127.0.0.1:{port}\"\nproxy_protocol = true\n"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--root", dir.path().to_str().unwrap(), "--config"])
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listener[1].proxy_from"), "{err}");
}

/// A port free on `ip` just now.
fn free_port_on(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground (`-db`), stopped by its PID when dropped.
struct Haproxy {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    fn start(config: &str, wait_for: u16) -> Haproxy {
        let bin = wharf_testkit::require_tool("haproxy");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("haproxy.log");
        let child = std::process::Command::new(bin)
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut h = Haproxy { child, _dir: dir };
        // Listening is seen in the socket table, without a connection that would count.
        for _ in 0..100 {
            let out = std::process::Command::new("ss")
                .args(["-Hltn", &format!("sport = :{wait_for}")])
                .output()
                .unwrap();
            if !out.stdout.is_empty() {
                return h;
            }
            if let Ok(Some(status)) = h.child.try_wait() {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("haproxy exited: {status}\n{said}\n{config}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = h.child.kill();
        panic!("haproxy is not listening on {wait_for}");
    }
}

/// Sessions a node's log shows opened.
fn sessions(server: &Server) -> usize {
    server.log().matches("session opened").count()
}

#[test]
fn two_nodes_behind_haproxy_serve_curl_lftp_ftplib_and_resume_on_the_survivor() {
    two_nodes_behind_haproxy(None, 28700);
}

/// The same on files in S3 (SeaweedFS), each node on the bucket by itself: an upload through
/// one node is listed and downloaded through the other.
#[test]
fn two_nodes_on_one_bucket_behind_haproxy() {
    let store = wharf_testkit::seaweed::Seaweed::shared();
    let bucket = store.bucket();
    two_nodes_behind_haproxy(Some(&bucket), 28720);
    // The files are objects under the prefix, and nothing else is left in the bucket.
    assert_eq!(bucket.keys(""), vec!["site/big.bin", "site/up.bin"]);
    assert!(bucket.unfinished_uploads("").is_empty());
}

/// Two nodes on one storage (a shared directory, or the bucket `s3` with the prefix `site`),
/// passive ranges from `pasv`, 20 ports: below 32768, where the kernel never picks a port for
/// another test's connection or `bind(0)` (HAProxy binds them all).
fn two_nodes_behind_haproxy(s3: Option<&wharf_testkit::seaweed::Bucket>, pasv: u16) {
    use wharf_testkit::peers::{PASSWORD, USER};
    let storage = s3.map(|b| b.storage_toml("site")).unwrap_or_default();
    let (r1, r2) = (
        format!("{}-{}", pasv, pasv + 9),
        format!("{}-{}", pasv + 10, pasv + 19),
    );
    // Nodes on 127.0.0.2 and 127.0.0.4, HAProxy on 127.0.0.1 relaying from 127.0.0.3: the
    // nodes must see the clients' 127.0.0.1 through PROXY v2, not the balancer's address.
    let front = free_port_on("127.0.0.1");
    let node = |ip: &str, ports: &str, root: Option<&std::path::Path>| {
        let port = free_port_on(ip);
        let config = format!(
            "[[listener]]\naddress = \"{ip}:{port}\"\nproxy_protocol = true\nproxy_from = [\"127.0.0.3\"]\n\
             [passive]\nports = \"{ports}\"\naddress = \"127.0.0.1\"\n{storage}"
        );
        let b = Server::builder(BIN)
            .args(&["--user", &format!("{USER}:{PASSWORD}"), "-w"])
            .config(&config);
        let s = match root {
            Some(r) => b.start_on(r),
            None => b.start(),
        };
        (s, port)
    };
    let (mut n1, p1) = node("127.0.0.2", &r1, None);
    // The same directory (or the same bucket).
    let (mut n2, p2) = node("127.0.0.4", &r2, Some(&n1.root.clone()));
    let config = format!(
        "global\n  maxconn 200\n\
         defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  retries 2\n  option redispatch 1\n\
         frontend ftp\n  bind 127.0.0.1:{front}\n  default_backend nodes\n\
         backend nodes\n  balance roundrobin\n\
           server n1 127.0.0.2:{p1} send-proxy-v2 source 127.0.0.3\n\
           server n2 127.0.0.4:{p2} send-proxy-v2 source 127.0.0.3\n\
         frontend pasv1\n  bind 127.0.0.1:{r1}\n  default_backend pasv1\n\
         backend pasv1\n  server n1 127.0.0.2 source 127.0.0.3\n\
         frontend pasv2\n  bind 127.0.0.1:{r2}\n  default_backend pasv2\n\
         backend pasv2\n  server n2 127.0.0.4 source 127.0.0.3\n"
    );
    let _haproxy = Haproxy::start(&config, front);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let body = wharf_testkit::pattern(1_000_000, 21);
    wharf_testkit::write_file(&w.join("up.bin"), &body);
    let url = |rel: &str| format!("ftp://{USER}:{PASSWORD}@127.0.0.1:{front}/{rel}");

    // curl uploads (node 1), lftp downloads (node 2), Python's ftplib lists and downloads
    // (node 1 again): passive mode through the balancer each time.
    let run = |cmd: &mut std::process::Command, what: &str| {
        let out = wharf_testkit::output_within(cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(
        std::process::Command::new("curl")
            .args(["-sS", "--ftp-pasv", "-T"])
            .arg(w.join("up.bin"))
            .arg(url("up.bin")),
        "curl upload",
    );
    run(
        std::process::Command::new("lftp")
            .args(["-c", &format!(
                "set ftp:passive-mode on; set net:max-retries 1; open -u {USER},{PASSWORD} -p {front} 127.0.0.1; get up.bin -o lftp.bin"
            )])
            .current_dir(w),
        "lftp download",
    );
    assert!(
        std::fs::read(w.join("lftp.bin")).unwrap() == body,
        "lftp: bytes differ"
    );
    let script = format!(
        "import ftplib\nf = ftplib.FTP()\nf.connect('127.0.0.1', {front}, timeout=20)\nf.login('{USER}', '{PASSWORD}')\n\
         assert 'up.bin' in f.nlst(), f.nlst()\nwith open('py.bin', 'wb') as out:\n    f.retrbinary('RETR up.bin', out.write)\nf.quit()\n"
    );
    run(
        std::process::Command::new("python3")
            .args(["-c", &script])
            .current_dir(w),
        "ftplib",
    );
    assert!(
        std::fs::read(w.join("py.bin")).unwrap() == body,
        "ftplib: bytes differ"
    );
    // Upload on one node, download on the other; both saw the client, through the balancer.
    let (l1, l2) = (n1.log(), n2.log());
    assert!(
        l1.contains("verb=\"STOR\"") && l2.contains("verb=\"RETR\""),
        "{l1}\n{l2}"
    );
    for log in [&l1, &l2] {
        assert!(
            log.contains("peer=127.0.0.1:") && log.contains("via=127.0.0.3:"),
            "{log}"
        );
        assert!(!log.contains("foreign"), "{log}");
    }

    // A download at 1 MB/s, larger than what socket and balancer buffers hold; the node
    // serving it dies; `get -c` through the balancer finishes
    // on the other one.
    let big = wharf_testkit::pattern(16_000_000, 22);
    match s3 {
        Some(bucket) => bucket.put("site/big.bin", &big),
        None => wharf_testkit::write_file(&n1.root.join("big.bin"), &big),
    }
    let before = (sessions(&n1), sessions(&n2));
    let child = std::process::Command::new(BIN)
        .args(["get", "--passive", "--limit-rate", "1M", &url("big.bin")])
        .current_dir(w)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let on_first = sessions(&n1) > before.0;
    assert!(
        on_first || sessions(&n2) > before.1,
        "no node took the download"
    );
    if on_first {
        n1.kill()
    } else {
        n2.kill()
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the download survived its node");
    let kept = std::fs::metadata(w.join("big.bin.wharf-part"))
        .unwrap()
        .len();
    assert!(kept > 0 && kept < big.len() as u64, "{kept}");
    let out = wharf_testkit::output_within(
        std::process::Command::new(BIN)
            .args([
                "get",
                "-c",
                "-v",
                "--passive",
                "--retry",
                "3",
                &url("big.bin"),
            ])
            .current_dir(w),
        Duration::from_secs(60),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("Command: REST {kept}")), "{log}");
    assert!(
        std::fs::read(w.join("big.bin")).unwrap() == big,
        "get -c: bytes differ"
    );
}

#[test]
fn a_ban_behind_proxy_on_one_node_is_refused_on_all_and_lifted_on_all() {
    let pg = wharf_testkit::postgres::Postgres::start();
    let url = pg.url();
    let node = || {
        let port = free_port();
        let proxied: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = format!(
            "[[listener]]\naddress = \"{proxied}\"\nproxy_protocol = true\nproxy_from = [\"127.0.0.1\"]\n\
             [limits]\nfailed_login_delay_ms = 0\nban_after_failures = 2\nmax_login_failures = 100\n"
        );
        let s = Server::builder(BIN)
            .args(&["--users-db", &url, "--admin", "127.0.0.1:0"])
            .config(&config)
            .start();
        (s, proxied)
    };
    let ((one, a1), (two, a2)) = (node(), node());
    let bad: SocketAddr = "192.0.2.60:1000".parse().unwrap();
    let good: SocketAddr = "192.0.2.61:1000".parse().unwrap();
    for _ in 0..2 {
        let mut ftp = through(a1, v1_header(bad, a1).as_bytes());
        let _ = ftp.cmd("USER nobody-here");
        assert_eq!(ftp.cmd("PASS wrong").code, 530);
    }
    assert!(
        one.wait_log("address banned after failed logins", 1),
        "{}",
        one.log()
    );
    // Node two learns it from the database within a few of its 2 s looks.
    let refused_on_two =
        |who: SocketAddr| through(a2, v1_header(who, a2).as_bytes()).banner.code == 421;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !refused_on_two(bad) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        refused_on_two(bad),
        "node two never refused the banned client:\n{}",
        two.log()
    );
    assert!(!refused_on_two(good), "another client was refused too");
    assert!(two.wait_log("connection refused: address banned peer=192.0.2.60", 1));
    // Lifted through node two's admin API: node one lets the client in again.
    let token = two.admin.clone().and_then(|(_, t)| t).unwrap();
    let (code, body) = crate::admin::api(
        &two,
        "DELETE",
        "/api/v1/bans/192.0.2.60",
        Some(&token),
        None,
    );
    assert_eq!(code, 204, "{body}");
    let back_on_one = || through(a1, v1_header(bad, a1).as_bytes()).banner.code == 220;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !back_on_one() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        back_on_one(),
        "node one kept the lifted ban:\n{}",
        one.log()
    );
}
