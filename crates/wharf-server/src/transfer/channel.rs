//! The data channel: the passive listener (a port of our choosing) and the active connection
//! (the RFC 2577 checks are already done by the session), and the peer check on passive
//! connections.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};

/// Binds a passive listener on `ip`, on a random free port of `range`, or without a range on
/// one of the kernel's ephemeral ports.
///
/// We pick the port even then: the kernel's own pick (`bind` to port 0) skips every port where
/// an earlier transfer lingers in TIME_WAIT, and searches slower the more there are. Under load
/// (2,000 clients fetching small files) that search took most of the server's CPU, and after
/// some 28,000 transfers within a minute it found no port at all. A port we name, with
/// `SO_REUSEADDR`, can be reused while only TIME_WAIT connections hold it. (Where the kernel's
/// settings cannot be read, it picks after all.)
pub fn bind_passive(ip: IpAddr, range: Option<&RangeInclusive<u16>>) -> io::Result<TcpListener> {
    let (range, reserved) = match (range, ephemeral_ports()) {
        (Some(r), _) => (r, &[][..]),
        (None, Some(eph)) => (&eph.ports, &eph.reserved[..]),
        (None, None) => return listen_on(SocketAddr::new(ip, 0)),
    };
    let (start, end) = (u32::from(*range.start()), u32::from(*range.end()));
    let count = end - start + 1;
    let mut seed = [0u8; 4];
    // Without entropy, probing from the range start is still correct, only predictable.
    let _ = getrandom::fill(&mut seed);
    let first = u32::from_le_bytes(seed) % count;
    for i in 0..count {
        let port = start + (first + i) % count;
        let port = u16::try_from(port).unwrap_or(u16::MAX);
        if reserved.iter().any(|r| r.contains(&port)) {
            continue;
        }
        match listen_on(SocketAddr::new(ip, port)) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "every port of the passive range is in use",
    ))
}

/// The kernel's ephemeral ports: `net.ipv4.ip_local_port_range` (IPv6 uses it too) less
/// `net.ipv4.ip_local_reserved_ports`, read once.
struct Ephemeral {
    ports: RangeInclusive<u16>,
    reserved: Vec<RangeInclusive<u16>>,
}

fn ephemeral_ports() -> Option<&'static Ephemeral> {
    static EPHEMERAL: std::sync::OnceLock<Option<Ephemeral>> = std::sync::OnceLock::new();
    EPHEMERAL
        .get_or_init(|| {
            let read = |name: &str| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"));
            parse_ephemeral(
                &read("ip_local_port_range").ok()?,
                &read("ip_local_reserved_ports").ok()?,
            )
        })
        .as_ref()
}

/// Parses the two sysctls: `"32768\t60999"` and `"8080,9000-9009"` (the second may be empty).
/// `None` if they make no sense.
fn parse_ephemeral(range: &str, reserved: &str) -> Option<Ephemeral> {
    let mut it = range.split_whitespace().map(str::parse::<u16>);
    let ports = match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi && lo > 0 => lo..=hi,
        _ => return None,
    };
    let mut ranges = Vec::new();
    for item in reserved.trim().split(',').filter(|i| !i.is_empty()) {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        ranges.push(lo.trim().parse().ok()?..=hi.trim().parse().ok()?);
    }
    Some(Ephemeral {
        ports,
        reserved: ranges,
    })
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Ports of finished transfers sit in TIME_WAIT (we close first after a download); without
    // this, a busy server runs out of ports to listen on, and the kernel's search for a free one
    // grows slow long before that. A port with a live listener is still refused.
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(8)
}

/// The last address a passive listener refused (see [`accept_passive`]): when nobody else came,
/// the 425 and SITE DIAG name it.
#[derive(Clone, Default)]
pub struct Intruder(std::sync::Arc<std::sync::Mutex<Option<IpAddr>>>);

impl Intruder {
    pub fn get(&self) -> Option<IpAddr> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set(&self, ip: IpAddr) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(ip);
    }
}

/// Waits for the client's data connection. Connections from any address other than `peer` are
/// closed at once (RFC 2577: no data connection theft) unless `allow_any`; the last is kept in
/// `intruder`.
pub async fn accept_passive(
    listener: TcpListener,
    peer: crate::conn::DataPeers,
    allow_any: bool,
    deadline: Instant,
    intruder: &Intruder,
) -> io::Result<TcpStream> {
    loop {
        let (stream, from) = timeout_at(deadline, listener.accept())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no data connection in time"))??;
        if allow_any || peer.allows(from.ip()) {
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
        tracing::warn!(%from, %peer, "refused passive data connection from a foreign address");
        intruder.set(from.ip().to_canonical());
    }
}

/// Connects to the client for an active-mode transfer, from the control connection's local
/// address and, if configured, a fixed source port.
pub async fn connect_active(
    target: SocketAddr,
    local_ip: IpAddr,
    source_port: Option<u16>,
    limit: Duration,
) -> io::Result<TcpStream> {
    let sock = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(port) = source_port {
        // Every active connection leaves from this port: allow rebinding it while earlier
        // connections linger in TIME_WAIT.
        sock.set_reuseaddr(true)?;
        sock.bind(SocketAddr::new(local_ip, port))?;
    } else if local_ip.is_ipv4() == target.is_ipv4() {
        sock.bind(SocketAddr::new(local_ip, 0))?;
    }
    let stream = timeout(limit, sock.connect(target))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "active connection timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn ephemeral_sysctls_parse() {
        let e = parse_ephemeral("32768\t60999\n", "8080,9000-9009\n").unwrap();
        assert_eq!(e.ports, 32768..=60999);
        assert_eq!(e.reserved, vec![8080..=8080, 9000..=9009]);
        let e = parse_ephemeral("1024 65535", "\n").unwrap();
        assert_eq!(e.ports, 1024..=65535);
        assert!(e.reserved.is_empty());
        // Nonsense: the kernel picks (port 0) instead.
        assert!(parse_ephemeral("", "").is_none());
        assert!(parse_ephemeral("50000 40000", "").is_none(), "reversed");
        assert!(parse_ephemeral("32768 60999", "x,1-").is_none());
    }

    #[tokio::test]
    async fn passive_port_held_by_time_wait_is_reused() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let listener = bind_passive(ip, None).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(ephemeral_ports().unwrap().ports.contains(&port));
        // A transfer on it, which we close first: our end stays in TIME_WAIT on that port.
        let client = TcpStream::connect((ip, port)).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        drop(listener);
        server.shutdown().await.unwrap();
        let mut client = client;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        drop(client);
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let only = port..=port;
        let again = bind_passive(ip, Some(&only)).expect("the port is free but for TIME_WAIT");
        assert_eq!(again.local_addr().unwrap().port(), port);
    }
}
