//! The copy loops: one per direction, used by the server's RETR/STOR/listings and the client's
//! get/put alike.
//!
//! [`send`] reads a local source and writes the wire; [`receive`] reads the wire and writes a
//! local sink. The wire side has the stall timeout (the local side is a file or a buffer); TYPE A
//! converts line endings on the way (RFC 959: CRLF on the wire); a [`Throttle`] is asked before
//! each chunk goes on.

use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use wharf_proto::ascii::{FromWire, ToWire};

/// Why a copy stopped early.
#[derive(Debug)]
pub enum CopyError {
    /// Reading or writing the wire failed.
    Wire(io::Error),
    /// Nothing moved on the wire for the stall timeout.
    Stalled,
    /// A TLS upload ended with a TCP close but no close_notify: it may be cut short.
    Truncated,
    /// Reading or writing the local side failed.
    Local(io::Error),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Wire(e) => write!(f, "data connection: {e}"),
            CopyError::Stalled => f.write_str("data connection stalled"),
            CopyError::Truncated => f.write_str("data connection closed without TLS close_notify"),
            CopyError::Local(e) => write!(f, "local file: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// Paces a transfer: asked before each chunk of `bytes` goes on, it answers how long to wait
/// first. Shared by every transfer it limits (a user's sessions, say).
pub trait Throttle: Send + Sync {
    fn delay(&self, bytes: u64) -> Duration;
}

/// No limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Throttle for Unlimited {
    fn delay(&self, _bytes: u64) -> Duration {
        Duration::ZERO
    }
}

/// A rate limit of `rate` bytes per second shared by whoever holds it: each call reserves its
/// bytes on a virtual clock and waits until the clock catches up; up to a quarter second of
/// unused time is credited (a short burst after a pause).
#[derive(Debug)]
pub struct RateLimit {
    rate: u64,
    next: Mutex<Option<Instant>>,
}

impl RateLimit {
    pub fn new(rate: u64) -> RateLimit {
        RateLimit {
            rate: rate.max(1),
            next: Mutex::new(None),
        }
    }
}

impl Throttle for RateLimit {
    fn delay(&self, bytes: u64) -> Duration {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let credit = now.checked_sub(Duration::from_millis(250)).unwrap_or(now);
        let start = next.map_or(credit, |n| n.max(credit));
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        let end = start + cost;
        *next = Some(end);
        end.saturating_duration_since(now)
    }
}

/// Waits as long as `throttle` says for `bytes`.
pub async fn pace(throttle: &dyn Throttle, bytes: u64) {
    let wait = throttle.delay(bytes);
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// How a copy runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// TYPE A: convert line endings (local LF, CRLF on the wire).
    pub ascii: bool,
    /// The wire may stall this long per read or write.
    pub stall: Duration,
    /// The buffer a chunk is read into (allocated per copy).
    pub buffer: usize,
    /// `receive` over TLS: a bare TCP close (no close_notify) is [`CopyError::Truncated`].
    pub require_close_notify: bool,
}

impl CopyOptions {
    pub fn new(stall: Duration) -> CopyOptions {
        CopyOptions {
            ascii: false,
            stall,
            buffer: 256 * 1024,
            require_close_notify: false,
        }
    }
}

/// Copies `source` to `wire` until the source ends. Returns the bytes read from the source;
/// `progress(wire, local)` is told each chunk's size as sent and as read. Does not close the
/// wire (see [`crate::close`]).
pub async fn send<R, W>(
    source: &mut R,
    wire: &mut W,
    opts: &CopyOptions,
    throttle: &dyn Throttle,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut conv = opts.ascii.then(ToWire::new);
    let mut converted = Vec::new();
    let mut buf = vec![0u8; opts.buffer.max(1)];
    let mut total = 0u64;
    loop {
        let n = source.read(&mut buf).await.map_err(CopyError::Local)?;
        if n == 0 {
            return Ok(total);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        let out = match conv.as_mut() {
            Some(c) => {
                converted.clear();
                c.convert(chunk, &mut converted);
                &converted[..]
            }
            None => chunk,
        };
        pace(throttle, out.len() as u64).await;
        match timeout(opts.stall, wire.write_all(out)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CopyError::Wire(e)),
            Err(_) => return Err(CopyError::Stalled),
        }
        total += n as u64;
        progress(out.len() as u64, n as u64);
    }
}

/// Copies `wire` to `sink` until the peer closes the wire. Returns the bytes written to the sink;
/// `progress(wire, local)` is told each chunk's size as received and as written. The sink is
/// flushed at the end.
pub async fn receive<R, W>(
    wire: &mut R,
    sink: &mut W,
    opts: &CopyOptions,
    throttle: &dyn Throttle,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<u64, CopyError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut conv = opts.ascii.then(FromWire::new);
    let mut converted = Vec::new();
    let mut buf = vec![0u8; opts.buffer.max(1)];
    let mut total = 0u64;
    loop {
        let n = match timeout(opts.stall, wire.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            // rustls reports a TCP close without close_notify as UnexpectedEof.
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                if opts.require_close_notify {
                    return Err(CopyError::Truncated);
                }
                0
            }
            Ok(Err(e)) => return Err(CopyError::Wire(e)),
            Err(_) => return Err(CopyError::Stalled),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        let out = match conv.as_mut() {
            Some(c) => {
                converted.clear();
                if n == 0 {
                    c.finish(&mut converted);
                } else {
                    c.convert(chunk, &mut converted);
                }
                &converted[..]
            }
            None => chunk,
        };
        sink.write_all(out).await.map_err(CopyError::Local)?;
        total += out.len() as u64;
        progress(n as u64, out.len() as u64);
        if n == 0 {
            break;
        }
        pace(throttle, n as u64).await;
    }
    sink.flush().await.map_err(CopyError::Local)?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_paces_its_holders_together() {
        let r = RateLimit::new(1000);
        // The first quarter second is credit; then 1,000 bytes a second.
        let mut total = Duration::ZERO;
        for _ in 0..10 {
            total = r.delay(500);
        }
        // 5,000 bytes at 1,000/s: about 5 s from the credit point, 4.75 s from now.
        assert!(
            total > Duration::from_millis(4500) && total <= Duration::from_secs(5),
            "{total:?}"
        );
    }

    #[tokio::test]
    async fn ascii_both_ways_and_progress() {
        let opts = CopyOptions {
            ascii: true,
            buffer: 3,
            ..CopyOptions::new(Duration::from_secs(1))
        };
        let mut wire = Vec::new();
        let mut src: &[u8] = b"a\nbc\n\nd";
        let mut seen = (0, 0);
        let n = send(&mut src, &mut wire, &opts, &Unlimited, &mut |w, l| {
            seen.0 += w;
            seen.1 += l;
        })
        .await
        .unwrap();
        assert_eq!(wire, b"a\r\nbc\r\n\r\nd");
        assert_eq!((n, seen), (7, (10, 7)));
        let mut back = Vec::new();
        let mut w: &[u8] = &wire;
        let n = receive(&mut w, &mut back, &opts, &Unlimited, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!((n, back.as_slice()), (7, &b"a\nbc\n\nd"[..]));
    }

    #[tokio::test]
    async fn binary_is_byte_exact_and_local_errors_are_local() {
        let opts = CopyOptions::new(Duration::from_secs(1));
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        let mut src: &[u8] = &data;
        receive(&mut src, &mut out, &opts, &Unlimited, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(out, data);
        struct Full;
        impl AsyncWrite for Full {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                _: &[u8],
            ) -> std::task::Poll<io::Result<usize>> {
                std::task::Poll::Ready(Err(io::Error::other("disk full")))
            }
            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut src: &[u8] = &data;
        let e = receive(&mut src, &mut Full, &opts, &Unlimited, &mut |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(e, CopyError::Local(_)), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_wire_stalls() {
        let opts = CopyOptions::new(Duration::from_secs(2));
        let (mut a, _b) = tokio::io::duplex(64);
        let mut out = Vec::new();
        let e = receive(&mut a, &mut out, &opts, &Unlimited, &mut |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(e, CopyError::Stalled));
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_is_asked_per_chunk() {
        struct OneSecondPerKiB;
        impl Throttle for OneSecondPerKiB {
            fn delay(&self, bytes: u64) -> Duration {
                Duration::from_millis(bytes * 1000 / 1024)
            }
        }
        let opts = CopyOptions {
            buffer: 1024,
            ..CopyOptions::new(Duration::from_secs(60))
        };
        let data = vec![1u8; 4096];
        let mut src: &[u8] = &data;
        let mut wire = Vec::new();
        let t0 = tokio::time::Instant::now();
        send(&mut src, &mut wire, &opts, &OneSecondPerKiB, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(4));
    }
}
