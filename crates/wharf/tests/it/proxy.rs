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
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
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
