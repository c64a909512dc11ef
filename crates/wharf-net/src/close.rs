//! Ending a connection the way FTPS peers expect.
//!
//! The side that finishes sending shuts its side down: over TLS that sends close_notify, then
//! FIN, so the peer can tell a complete transfer from a cut one. The other side answers with its
//! own close_notify. Closing a socket while the peer's close_notify (or, over TLS 1.3, a session
//! ticket) sits unread makes the kernel send a reset instead of a FIN, which some peers report
//! as an error (Python's `unwrap`), and which can throw away the end of an upload. So after
//! shutting down, a TLS connection is read to its end, briefly.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::Stream;

/// How long the peer's close_notify is waited for.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Sends close_notify (over TLS) and FIN, within `limit`.
pub async fn shutdown(stream: &mut Stream, limit: Duration) -> std::io::Result<()> {
    match timeout(limit, stream.shutdown()).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "data connection stalled at close",
        )),
    }
}

/// Reads a TLS connection to its end (the peer's close_notify, tickets), at most `limit`.
/// Nothing to do in clear.
pub async fn drain(stream: &mut Stream, limit: Duration) {
    if !stream.is_tls() {
        return;
    }
    let mut sink = [0u8; 1024];
    let _ = timeout(limit, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// [`drain`] on a task of its own, so that the caller can reply at once; a plain connection is
/// simply closed.
pub fn drain_in_background(mut stream: Stream) {
    if stream.is_tls() {
        tokio::spawn(async move { drain(&mut stream, DRAIN_LIMIT).await });
    }
}
