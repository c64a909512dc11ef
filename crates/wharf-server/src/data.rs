//! Data connections: the passive listener and the active connection (with the RFC 2577 checks
//! already done by the session), and the transfer loops that move bytes with per-operation
//! timeouts, TYPE A conversion and a progress counter for STAT.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Binds a passive listener on `ip`, on a random free port of `range` (or any port).
pub fn bind_passive(ip: IpAddr, range: Option<&RangeInclusive<u16>>) -> io::Result<TcpListener> {
    let Some(range) = range else {
        return listen_on(SocketAddr::new(ip, 0));
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

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
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
    File(tokio::fs::File),
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
/// client sees the end before the 226 reply.
pub(crate) async fn send(
    mut stream: MaybeTls,
    source: Source,
    ascii: bool,
    limit: Duration,
    progress: &AtomicU64,
) -> Result<u64, TransferError> {
    let mut total = 0u64;
    let mut conv = ascii.then(ToWire::new);
    let mut wire = Vec::new();
    match source {
        Source::Bytes(bytes) => {
            write_data(&mut stream, &bytes, limit).await?;
            total = bytes.len() as u64;
            progress.store(total, Ordering::Relaxed);
        }
        Source::File(mut file) => {
            let mut buf = vec![0u8; BUF_SIZE];
            loop {
                let n = file.read(&mut buf).await.map_err(TransferError::Local)?;
                if n == 0 {
                    break;
                }
                let chunk = buf.get(..n).unwrap_or_default();
                match conv.as_mut() {
                    Some(c) => {
                        wire.clear();
                        c.convert(chunk, &mut wire);
                        write_data(&mut stream, &wire, limit).await?;
                    }
                    None => write_data(&mut stream, chunk, limit).await?,
                }
                total += n as u64;
                progress.store(total, Ordering::Relaxed);
            }
        }
    }
    match timeout(limit, stream.shutdown()).await {
        Ok(Ok(())) => {
            linger(stream);
            Ok(total)
        }
        Ok(Err(e)) => Err(TransferError::Data(e)),
        Err(_) => Err(TransferError::Stalled),
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

/// Receives into `file` until the client closes the data connection. Returns the bytes written
/// to the file; the file is flushed, so write errors (no space) surface here. Over TLS the end is
/// the client's close_notify, answered with ours; a bare TCP close is an error when
/// `require_close_notify`.
pub(crate) async fn receive(
    mut stream: MaybeTls,
    mut file: tokio::fs::File,
    ascii: bool,
    limit: Duration,
    require_close_notify: bool,
    progress: &AtomicU64,
) -> Result<u64, TransferError> {
    let tls = stream.is_tls();
    let mut buf = vec![0u8; BUF_SIZE];
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
        file.write_all(out).await.map_err(TransferError::Local)?;
        total += out.len() as u64;
        progress.store(total, Ordering::Relaxed);
        if n == 0 {
            break;
        }
    }
    file.flush().await.map_err(TransferError::Local)?;
    if tls {
        // Our close_notify answers the client's (Python's `unwrap` waits for it).
        let _ = timeout(Duration::from_secs(5), stream.shutdown()).await;
    }
    Ok(total)
}
