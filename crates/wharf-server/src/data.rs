//! Data connections: the passive listener and the active connection (with the RFC 2577 checks
//! already done by the session), and the transfer loops that move bytes with per-operation
//! timeouts, TYPE A conversion and a progress counter for STAT.

use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};
use wharf_proto::ascii::{FromWire, ToWire};

use crate::tls::MaybeTls;

/// Size of the transfer buffer: large enough for loopback and LAN speeds, allocated per transfer
/// only (an idle session holds none).
const BUF_SIZE: usize = 256 * 1024;

/// How the next transfer gets its data connection. Set by PASV/EPSV/PORT/EPRT, consumed by the
/// transfer command that uses it.
#[derive(Debug, Default)]
pub enum DataSetup {
    #[default]
    None,
    /// A listener waiting for the client; closed when `expires` passes unused.
    Passive {
        listener: TcpListener,
        expires: Instant,
    },
    /// Connect to this address (already checked against the client's).
    Active(SocketAddr),
}

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

/// Waits for the client's data connection. Connections from any address other than `peer` are
/// closed at once (RFC 2577: no data connection theft) unless `allow_any`.
pub async fn accept_passive(
    listener: TcpListener,
    peer: IpAddr,
    allow_any: bool,
    deadline: Instant,
) -> io::Result<TcpStream> {
    loop {
        let (stream, from) = timeout_at(deadline, listener.accept())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no data connection in time"))??;
        if allow_any || from.ip().to_canonical() == peer {
            let _ = stream.set_nodelay(true);
            return Ok(stream);
        }
        tracing::warn!(%from, %peer, "refused passive data connection from a foreign address");
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

/// Why a transfer failed: the data connection (426) or the local file (451/452).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("data connection: {0}")]
    Data(io::Error),
    #[error("data connection stalled")]
    Stalled,
    /// A TLS upload ended with a TCP close but no close_notify: it may be cut short.
    #[error("data connection closed without TLS close_notify")]
    Truncated,
    #[error("local file: {0}")]
    Local(io::Error),
}

/// What a download sends.
pub enum Source {
    File(std::fs::File),
    Bytes(Vec<u8>),
}

async fn write_data(
    stream: &mut MaybeTls,
    buf: &[u8],
    limit: Duration,
) -> Result<(), TransferError> {
    match timeout(limit, stream.write_all(buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(TransferError::Data(e)),
        Err(_) => Err(TransferError::Stalled),
    }
}

/// Sends `source` and closes the data connection cleanly (TLS close_notify, then FIN) so the
/// client sees the end before the 226 reply. A file in binary mode over a plain connection goes
/// with sendfile(2): no copy through user space.
pub(crate) async fn send(
    mut stream: MaybeTls,
    source: Source,
    ascii: bool,
    limit: Duration,
    progress: &AtomicU64,
) -> Result<u64, TransferError> {
    let total = match (source, &stream) {
        (Source::Bytes(bytes), _) => {
            write_data(&mut stream, &bytes, limit).await?;
            progress.store(bytes.len() as u64, Ordering::Relaxed);
            bytes.len() as u64
        }
        (Source::File(file), MaybeTls::Plain(tcp)) if !ascii => {
            send_file(tcp, &file, limit, progress).await?
        }
        (Source::File(file), _) => {
            let file = tokio::fs::File::from_std(file);
            copy_file(&mut stream, file, ascii, limit, progress).await?
        }
    };
    match timeout(limit, stream.shutdown()).await {
        Ok(Ok(())) => {
            linger(stream);
            Ok(total)
        }
        Ok(Err(e)) => Err(TransferError::Data(e)),
        Err(_) => Err(TransferError::Stalled),
    }
}

/// Bytes one sendfile(2) call may move; it returns sooner when the socket buffer is full.
const SENDFILE_CHUNK: usize = 4 * 1024 * 1024;

/// sendfile(2) from the file's position to its end, waiting for the socket to take more.
async fn send_file(
    tcp: &TcpStream,
    file: &std::fs::File,
    limit: Duration,
    progress: &AtomicU64,
) -> Result<u64, TransferError> {
    // Corked, the kernel sends only full segments however the calls split the file; the
    // shutdown after the transfer sends what is left.
    let _ = socket2::SockRef::from(tcp).set_tcp_cork(true);
    let mut total = 0u64;
    loop {
        match timeout(limit, tcp.writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(TransferError::Data(e)),
            Err(_) => return Err(TransferError::Stalled),
        }
        let sent = tcp.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(tcp, file, None, SENDFILE_CHUNK).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total += n as u64;
                progress.store(total, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The socket's errors; anything else came from reading the file.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::NotConnected
                ) =>
            {
                return Err(TransferError::Data(e));
            }
            Err(e) => return Err(TransferError::Local(e)),
        }
    }
}

/// Reads the file and writes it to the data connection (TLS, or TYPE A conversion).
async fn copy_file(
    stream: &mut MaybeTls,
    mut file: tokio::fs::File,
    ascii: bool,
    limit: Duration,
    progress: &AtomicU64,
) -> Result<u64, TransferError> {
    let mut total = 0u64;
    let mut conv = ascii.then(ToWire::new);
    let mut wire = Vec::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = file.read(&mut buf).await.map_err(TransferError::Local)?;
        if n == 0 {
            return Ok(total);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        match conv.as_mut() {
            Some(c) => {
                wire.clear();
                c.convert(chunk, &mut wire);
                write_data(stream, &wire, limit).await?;
            }
            None => write_data(stream, chunk, limit).await?,
        }
        total += n as u64;
        progress.store(total, Ordering::Relaxed);
    }
}

/// After a TLS download the client answers our close_notify with its own. Closing the socket at
/// once would meet that with a reset, which some clients (Python's `unwrap`) report as an error:
/// read it in the background first, briefly.
fn linger(stream: MaybeTls) {
    if let MaybeTls::Tls(mut tls) = stream {
        tokio::spawn(async move {
            let mut sink = [0u8; 512];
            let _ = timeout(Duration::from_secs(5), async {
                while let Ok(n) = tls.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .await;
        });
    }
}

/// Size of the upload buffer, written on the thread that read it while it is still in the CPU's
/// cache (1 MiB buffers handed to another thread ran at a third of the speed). Each read takes
/// what the socket holds; against 128 KiB, 512 KiB took 28% less CPU per GiB (fewer reads and
/// wake-ups) and uploaded 1 GiB over loopback at ~2,450 MB/s instead of ~1,850. Allocated per
/// upload only.
const UPLOAD_BUF: usize = 512 * 1024;

/// Receives into `file` until the client closes the data connection. Returns the bytes written
/// to the file; write errors (no space) surface here. Over TLS the end is the client's
/// close_notify, answered with ours; a bare TCP close is an error when `require_close_notify`.
///
/// The file is written on this thread, as the forking servers do: a write to the page cache
/// costs less than handing the chunk to another thread (a disk too slow to take writes stalls
/// this worker thread, not the server).
pub(crate) async fn receive(
    mut stream: MaybeTls,
    mut file: std::fs::File,
    ascii: bool,
    limit: Duration,
    require_close_notify: bool,
    progress: &AtomicU64,
) -> Result<u64, TransferError> {
    let tls = stream.is_tls();
    let mut buf = vec![0u8; UPLOAD_BUF];
    let mut conv = ascii.then(FromWire::new);
    let mut local = Vec::new();
    let mut total = 0u64;
    loop {
        let n = match timeout(limit, stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if tls && e.kind() == io::ErrorKind::UnexpectedEof => {
                if require_close_notify {
                    return Err(TransferError::Truncated);
                }
                0
            }
            Ok(Err(e)) => return Err(TransferError::Data(e)),
            Err(_) => return Err(TransferError::Stalled),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        let out: &[u8] = match conv.as_mut() {
            Some(c) => {
                local.clear();
                if n == 0 {
                    c.finish(&mut local);
                } else {
                    c.convert(chunk, &mut local);
                }
                &local
            }
            None => chunk,
        };
        file.write_all(out).map_err(TransferError::Local)?;
        total += out.len() as u64;
        progress.store(total, Ordering::Relaxed);
        if n == 0 {
            break;
        }
    }
    if tls {
        // Our close_notify answers the client's (Python's `unwrap` waits for it).
        let _ = timeout(Duration::from_secs(5), stream.shutdown()).await;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

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
