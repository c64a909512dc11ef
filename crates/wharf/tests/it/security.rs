//! Each safety rule has its own test: bounce, data-connection theft, the jail, the line limit,
//! listener lifetime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use wharf_testkit::{Ftp, IO_TIMEOUT, write_file};

use crate::server;

/// Whether anything connects to `listener` within `wait`.
fn gets_connection(listener: &TcpListener, wait: Duration) -> bool {
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + wait;
    while Instant::now() < end {
        if listener.accept().is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn bounce_port_to_another_host_is_refused_and_never_connected() {
    let s = server().start();
    write_file(&s.path("f"), b"data");
    // A "victim" on another loopback address: the client is 127.0.0.1.
    let victim = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = victim.local_addr().unwrap().port();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let r = ftp.cmd(&format!("PORT 127,0,0,2,{},{}", port >> 8, port & 255));
    assert_eq!(r.code, 504, "{}", r.text);
    let r = ftp.cmd(&format!("EPRT |1|127.0.0.2|{port}|"));
    assert_eq!(r.code, 504, "{}", r.text);
    assert_eq!(ftp.cmd("RETR f").code, 425, "no data connection was set up");
    assert!(
        !gets_connection(&victim, Duration::from_millis(500)),
        "server connected to the bounce target"
    );
}

#[test]
fn port_below_1024_is_refused() {
    let s = server().start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("PORT 127,0,0,1,0,80").code, 504);
    assert_eq!(ftp.cmd("EPRT |1|127.0.0.1|25|").code, 504);
    assert_eq!(
        ftp.cmd("EPRT |2|::1|5000|").code,
        522,
        "IPv6 target on an IPv4 session"
    );
}

#[test]
fn passive_connection_from_another_address_gets_no_data() {
    let s = server().start();
    write_file(&s.path("secret.txt"), b"top secret");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let addr = ftp.pasv();
    // A thief connects first, from 127.0.0.2.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let mut thief: TcpStream = sock.into();
    thief.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Then the client.
    let mut data = TcpStream::connect(addr).unwrap();
    assert_eq!(ftp.cmd("RETR secret.txt").code, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"top secret");
    assert_eq!(ftp.read_reply().code, 226);
    let mut stolen = Vec::new();
    let _ = thief.read_to_end(&mut stolen);
    assert!(stolen.is_empty(), "the thief got data");
    assert!(
        s.log().contains("refused passive data connection"),
        "{}",
        s.log()
    );
}

#[test]
fn dotdot_absolute_and_nul_stay_in_the_jail() {
    let s = server().start();
    write_file(&s.path("in.txt"), b"inside");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    for path in [
        "../../../../etc/passwd",
        "..",
        "/../etc/passwd",
        "sub/../../x",
    ] {
        let _d = ftp.passive();
        let r = ftp.cmd(&format!("RETR {path}"));
        assert_eq!(r.code, 550, "{path}: {}", r.text);
    }
    assert_eq!(ftp.cmd("CWD ..").code, 550);
    assert_eq!(
        ftp.cmd("CWD /etc").code,
        550,
        "absolute paths start at the jail root"
    );
    assert_eq!(ftp.cmd("SIZE /etc/passwd").code, 550);
    assert_eq!(ftp.cmd_bytes(b"SIZE in.txt\0../x").code, 550, "NUL");
    assert_eq!(ftp.cmd("SIZE /in.txt").text, "213 6");
}

#[test]
fn symlinks_pointing_outside_are_refused() {
    let s = server().arg("-w").start();
    let outside = tempfile::tempdir().unwrap();
    write_file(&outside.path().join("secret"), b"secret");
    std::os::unix::fs::symlink(outside.path().join("secret"), s.path("link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), s.path("dirlink")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../etc/passwd", s.path("rel")).unwrap();
    write_file(&s.path("ok.txt"), b"ok");
    std::os::unix::fs::symlink("ok.txt", s.path("goodlink")).unwrap();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    for path in ["link", "rel", "dirlink/secret"] {
        let _d = ftp.passive();
        assert_eq!(ftp.cmd(&format!("RETR {path}")).code, 550, "{path}");
    }
    assert_eq!(ftp.cmd("CWD dirlink").code, 550);
    let _d = ftp.passive();
    assert_eq!(ftp.cmd("STOR dirlink/new").code, 550);
    assert!(!outside.path().join("new").exists());
    let (data, _) = ftp.download("RETR goodlink");
    assert_eq!(data, b"ok", "a link inside the jail works");
    let (names, _) = ftp.download("NLST");
    assert_eq!(
        names, b"goodlink\r\nok.txt\r\n",
        "escaping links are not listed"
    );
}

#[test]
fn symlink_swapped_in_during_transfer_cannot_escape() {
    // The file is opened (beneath the root) before the data flows; replacing its parent with a
    // link to the outside afterwards changes nothing for this transfer or the next one.
    let s = server().start();
    let outside = tempfile::tempdir().unwrap();
    write_file(&outside.path().join("f"), b"OUTSIDE");
    write_file(&s.path("d/f"), &vec![b'i'; 4 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd("RETR d/f").code, 150);
    std::fs::rename(s.path("d"), s.path("d.old")).unwrap();
    std::os::unix::fs::symlink(outside.path(), s.path("d")).unwrap();
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(ftp.read_reply().code, 226);
    assert!(got.iter().all(|&b| b == b'i') && got.len() == 4 << 20);
    let _d = ftp.passive();
    assert_eq!(
        ftp.cmd("RETR d/f").code,
        550,
        "the swapped-in link leads outside"
    );
}

#[test]
fn overlong_line_gets_500_and_service_goes_on() {
    let s = server().start();
    let mut ftp = Ftp::connect(s.addr);
    let mut line = b"USER ".to_vec();
    line.extend(std::iter::repeat_n(b'A', 200 * 1024));
    let r = ftp.cmd_bytes(&line);
    assert_eq!(r.code, 500, "{}", r.text);
    assert_eq!(ftp.cmd("NOOP").code, 200, "the same session goes on");
    let mut other = Ftp::connect(s.addr);
    other.login("anonymous", "x");
    assert_eq!(other.cmd("NOOP").code, 200, "the next client is served");
}

#[test]
fn second_pasv_closes_the_first_listener() {
    let s = server().start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let first = ftp.pasv();
    let second = ftp.pasv();
    assert_ne!(first, second);
    let r = TcpStream::connect_timeout(&first, Duration::from_secs(2));
    assert!(r.is_err(), "the first passive listener is still open");
    TcpStream::connect_timeout(&second, Duration::from_secs(2)).unwrap();
}

#[test]
fn unused_passive_listener_expires_and_transfer_gets_425() {
    let s = server().config("[limits]\naccept_timeout = 1\n").start();
    write_file(&s.path("f"), b"x");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let addr = ftp.pasv();
    std::thread::sleep(Duration::from_millis(1600));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "listener still open"
    );
    assert_eq!(ftp.cmd("RETR f").code, 425);
    // A PASV whose client never connects: the transfer command gets 425 within the timeout,
    // saying what the server saw, so that any client's log shows it.
    let addr = ftp.pasv();
    let r = ftp.cmd("RETR f");
    assert_eq!(
        r.text,
        format!(
            "425 No data connection: nobody connected to port {} within 1 s (a firewall between you and the server may block the passive ports).",
            addr.port()
        )
    );
    assert!(
        s.log()
            .contains("data connection failed: No data connection: nobody connected to port")
    );
    // Active mode to a port where nothing listens: refused, and said so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(ftp.cmd(&format!("EPRT |1|127.0.0.1|{port}|")).code, 200);
    let r = ftp.cmd("RETR f");
    assert_eq!(
        r.text,
        format!(
            "425 No data connection: 127.0.0.1:{port} refused it (a firewall on your side, or NAT: use passive mode)."
        )
    );
}

/// SITE DIAG on a later session of the same client tells what the server saw of the data
/// connections that failed: a passive connection from another address, a PORT to another
/// address, a passive listener nobody came to.
#[test]
fn site_diag_tells_what_the_server_saw() {
    let s = server().config("[limits]\naccept_timeout = 1\n").start();
    write_file(&s.path("f"), b"x");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let stolen = ftp.pasv();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&stolen.into()).unwrap();
    let r = ftp.cmd("RETR f");
    assert_eq!(
        r.text,
        format!(
            "425 No data connection: within 1 s only 127.0.0.2 connected to port {}, not your address (refused: a proxy or a second NAT address on your side; connect from the control connection's address).",
            stolen.port()
        )
    );
    let r = ftp.cmd("EPRT |1|127.0.0.2|40000|");
    assert_eq!(
        r.text,
        "504 Illegal EPRT: 127.0.0.2 is not your address as this server sees it (127.0.0.1): a NAT between you rewrites your address, so use passive mode."
    );
    // A connection from another address waiting in the listener's backlog when a new PASV
    // closes it: refused, and remembered as such (not as "nobody came").
    let queued = ftp.pasv();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&queued.into()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let unused = ftp.pasv();
    drop(ftp);
    std::thread::sleep(Duration::from_millis(300));

    let mut later = Ftp::login_to(s.addr, "anonymous", "x");
    let r = later.cmd("SITE DIAG");
    assert_eq!(r.code, 200, "{}", r.text);
    let lines: Vec<&str> = r.text.lines().map(str::trim).collect();
    for want in [
        "client-address: 127.0.0.1",
        "server-address: 127.0.0.1",
        "passive-address: 127.0.0.1 (this connection's address)",
        "passive-ports: any (the system's ephemeral ports)",
        "accept-timeout: 1 s",
        "tls: off",
    ] {
        assert!(lines.contains(&want), "{want}: {}", r.text);
    }
    let failures: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("data-failure: "))
        .collect();
    assert_eq!(failures.len(), 4, "{}", r.text);
    assert!(
        failures[0].starts_with(&format!(
            "passive-unused port={} secs=0 ago=0 verb=PASV;",
            unused.port()
        )),
        "{}",
        r.text
    );
    assert!(
        failures[1].starts_with(&format!(
            "passive-foreign port={} from=127.0.0.2 secs=0 ago=0 verb=PASV;",
            queued.port()
        )),
        "{}",
        r.text
    );
    assert!(
        failures[2]
            .starts_with("active-foreign addr=127.0.0.2:40000 seen=127.0.0.1 ago=0 verb=EPRT;"),
        "{}",
        r.text
    );
    assert!(
        failures[3].starts_with(&format!(
            "passive-foreign port={} from=127.0.0.2 secs=1 ago=",
            stolen.port()
        )),
        "{}",
        r.text
    );
    // Only what is past: SITE DIAG is not a data command, and it needs a login.
    let mut stranger = Ftp::connect(s.addr);
    assert_eq!(stranger.cmd("SITE DIAG").code, 530);
}

#[test]
fn epsv_all_refuses_other_data_commands() {
    let s = server().start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("EPSV ALL").code, 200);
    assert_eq!(ftp.cmd("PASV").code, 503);
    assert_eq!(ftp.cmd("PORT 127,0,0,1,200,1").code, 503);
    assert_eq!(ftp.cmd("EPRT |1|127.0.0.1|51201|").code, 503);
    assert_eq!(ftp.cmd("EPSV").code, 229);
    assert_eq!(ftp.cmd("EPSV 2").code, 522);
}

#[test]
fn failed_logins_are_delayed_alike_and_limited() {
    let s = server()
        .args(&["--user", "alice:wonderland"])
        .config("[limits]\nfailed_login_delay_ms = 400\nmax_login_failures = 2\n")
        .start();
    let mut ftp = Ftp::connect(s.addr);
    let known = ftp.cmd("USER alice");
    let mut other = Ftp::connect(s.addr);
    let unknown = other.cmd("USER mallory");
    assert_eq!(
        known.text, unknown.text,
        "same 331 for known and unknown users"
    );
    let t = Instant::now();
    assert_eq!(ftp.cmd("PASS guess-one").code, 530);
    assert!(
        t.elapsed() >= Duration::from_millis(380),
        "failed login not delayed"
    );
    let t = Instant::now();
    assert_eq!(other.cmd("PASS guess-two").code, 530);
    assert!(
        t.elapsed() >= Duration::from_millis(380),
        "unknown user not delayed"
    );
    assert_eq!(ftp.cmd("USER alice").code, 331);
    assert_eq!(ftp.cmd("PASS guess-three").code, 530);
    assert!(ftp.is_closed(), "closed after max_login_failures");
    assert!(!s.log().contains("guess-"), "a password reached the log");
    assert!(s.log().contains("reason=unknown user") && s.log().contains("reason=wrong password"));
    let mut ok = Ftp::connect(s.addr);
    ok.login("alice", "wonderland");
    let mut anon = Ftp::connect(s.addr);
    assert_eq!(anon.cmd("USER anonymous").code, 331);
    assert_eq!(
        anon.cmd("PASS x").code,
        530,
        "anonymous is off when users are given"
    );
    let _ = anon.stream().write_all(b"QUIT\r\n");
}

#[test]
fn passive_range_and_masquerade_address() {
    let s = server()
        .args(&[
            "--passive-ports",
            "41000-41019",
            "--passive-address",
            "203.0.113.9",
        ])
        .start();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..12 {
        let a = ftp.pasv();
        assert_eq!(
            a.ip().to_string(),
            "203.0.113.9",
            "masquerade address announced"
        );
        assert!((41000..=41019).contains(&a.port()), "{a}");
        seen.insert(a.port());
        let r = ftp.cmd("EPSV");
        let p = wharf_testkit::parse_epsv(&r.text);
        assert!((41000..=41019).contains(&p), "{p}");
    }
    assert!(
        seen.len() > 1,
        "ports are chosen at random within the range"
    );
}

#[test]
fn passive_address_name_is_resolved() {
    let s = server().args(&["--passive-address", "localhost"]).start();
    write_file(&s.path("f"), b"via name");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let addr = ftp.pasv();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let mut data = TcpStream::connect(addr).unwrap();
    assert_eq!(ftp.cmd("RETR f").code, 150);
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"via name");
    assert_eq!(ftp.read_reply().code, 226);
}

/// A crowd of sessions from one address cannot take a 10-port passive range from everyone
/// else: the address gets its share (a third of the range by default), its further PASV/EPSV
/// get 425, the warning names session, user and address, `/metrics` counts the refusals, and
/// another address still gets a port and downloads through it.
#[test]
fn one_address_cannot_take_the_passive_range() {
    let s = server()
        .args(&["--passive-ports", "28900-28909", "--admin", "127.0.0.1:0"])
        .start();
    std::fs::write(s.path("f.txt"), b"still served").unwrap();
    let crowd: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut flood: Vec<Ftp> = (0..20)
        .map(|_| {
            let mut f = Ftp::connect_from(crowd, s.addr);
            f.login("anonymous", "x");
            f
        })
        .collect();
    let codes: Vec<u16> = flood.iter_mut().map(|f| f.cmd("PASV").code).collect();
    assert_eq!(codes.iter().filter(|c| **c == 227).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 425).count(), 17, "{codes:?}");
    // A session's second PASV replaces its own listener: still within the share.
    let first = codes.iter().position(|c| *c == 227).unwrap();
    assert_eq!(flood[first].cmd("PASV").code, 227);
    // Everyone else: a port, and the data through it.
    let mut other = Ftp::login_to(s.addr, "anonymous", "x");
    let (data, r) = other.download("RETR f.txt");
    assert_eq!((data.as_slice(), r.code), (&b"still served"[..], 226));
    let log = s.log();
    assert!(
        log.contains("as many passive listeners as it may")
            && log.contains("client=127.0.0.2")
            && log.contains("anonymous")
            && log.contains("session="),
        "{log}"
    );
    let (_, metrics) = crate::admin::api(&s, "GET", "/metrics", None, None);
    assert!(
        metrics.contains("wharf_passive_refused_total{reason=\"address_cap\"} 17"),
        "{metrics}"
    );
}
