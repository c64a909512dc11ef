//! Verified transfers (`--verify`): after a file moved, the server's hash of it is compared with
//! a digest of the local file. The digest is taken of the bytes as they move ([`Hashing`]);
//! only what this run did not move (a resumed prefix) is read back from disk.
//!
//! The algorithm is chosen before the transfer, from FEAT (the strongest offered, by
//! [`wharf_proto::client::hash::choose`]), so that the bytes are hashed once, on their way.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use wharf_net::digest::Digest;
use wharf_proto::HashAlgorithm;
use wharf_proto::client::hash::HashCommand;
pub use wharf_proto::client::hash::is_weak;
use wharf_proto::hash::hex;

use crate::client::Client;
use crate::error::{Error, Result};

/// Whether transfers are checked against the server's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// No check (the default: a hash costs the server a read of the whole file).
    #[default]
    Off,
    /// Check where the server offers a hash; warn where it offers none.
    On,
    /// Check, and fail a file whose server offers no hash (`--verify=required`).
    Required,
}

/// What a verified transfer can do on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not asked for.
    Off,
    /// Ask the server this way.
    Check(HashCommand),
    /// Asked for but impossible, for this reason.
    Impossible(&'static str),
}

/// How transfers on `client` can be verified, before any message is said (a tree says one
/// line for all its files). `ascii`: TYPE A changes line endings, so the bytes on each side
/// differ and cannot be compared.
pub fn decide(client: &Client, verify: Verify, ascii: bool) -> Decision {
    if verify == Verify::Off {
        return Decision::Off;
    }
    if ascii {
        return Decision::Impossible(
            "a TYPE A (ascii) transfer changes line endings, so the two sides' bytes differ",
        );
    }
    match client.hash_command() {
        Some(how) => Decision::Check(how),
        None => Decision::Impossible(
            "the server offers no hash command (neither HASH nor XSHA256 and its kin in FEAT)",
        ),
    }
}

/// The error of a file that `--verify=required` cannot verify.
pub fn required(shown: &str, why: &str) -> Error {
    Error::Verify(format!("{shown}: cannot verify: {why} (--verify=required)"))
}

/// The warning that a weak algorithm is all there is.
pub fn weak_warning(algorithm: HashAlgorithm) -> String {
    format!(
        "the server offers only {} for verifying: it catches accidents, not deliberate changes",
        algorithm.name()
    )
}

/// Decides how one transfer on `client` is verified: `Ok(None)` for no check (off, or no hash
/// offered and not required, which `say` warns of). `say` also warns when only a weak
/// algorithm (MD5, CRC32) is offered. `ascii`: TYPE A changes line endings, so the bytes on
/// each side differ and cannot be compared.
pub fn plan(
    client: &Client,
    verify: Verify,
    ascii: bool,
    shown: &str,
    say: &dyn Fn(&str),
) -> Result<Option<HashCommand>> {
    match decide(client, verify, ascii) {
        Decision::Off => Ok(None),
        Decision::Impossible(why) if verify == Verify::Required => Err(required(shown, why)),
        Decision::Impossible(why) => {
            say(&format!("warning: {shown}: not verified: {why}"));
            Ok(None)
        }
        Decision::Check(how) => {
            if is_weak(how.algorithm()) {
                say(&format!(
                    "warning: {shown}: {}",
                    weak_warning(how.algorithm())
                ));
            }
            Ok(Some(how))
        }
    }
}

/// Asks the server for its hash of `remote` (`len` bytes, when known) by `how` and compares
/// it with `local`; a difference is an [`Error::Verify`] naming both digests. `kept`: what the
/// caller leaves behind on a mismatch, said in the error.
pub async fn compare(
    client: &mut Client,
    how: HashCommand,
    (remote, len): (&[u8], Option<u64>),
    local: Vec<u8>,
    shown: &str,
    kept: &str,
) -> Result<HashAlgorithm> {
    let algorithm = how.algorithm();
    let theirs = client.hash_with(how, remote, len).await?;
    if theirs == local {
        return Ok(algorithm);
    }
    Err(Error::Verify(format!(
        "{shown}: verification FAILED: {} here is {}, the server's is {}{kept}",
        algorithm.name(),
        hex(&local, false),
        hex(&theirs, false)
    )))
}

/// Feeds the first `len` bytes of the file at `path` into `digest`: the part of a resumed
/// transfer that an earlier run moved.
pub async fn hash_prefix(path: &Path, len: u64, digest: &mut Digest) -> Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::local(e).at(path))?;
    let mut limited = file.take(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let n = limited
            .read(&mut buf)
            .await
            .map_err(|e| Error::local(e).at(path))?;
        if n == 0 {
            let short = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ended {left} bytes early while it was read back to verify"),
            );
            return Err(Error::local(short).at(path));
        }
        digest.update(buf.get(..n).unwrap_or_default());
        left -= n as u64;
    }
    Ok(())
}

/// A writer or reader that hashes what goes through it; with no digest, a plain pass-through.
pub struct Hashing<T> {
    pub inner: T,
    pub digest: Option<Digest>,
}

impl<T> Hashing<T> {
    pub fn new(inner: T, digest: Option<Digest>) -> Hashing<T> {
        Hashing { inner, digest }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Hashing<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        // Only what the writer took: the rest comes again in the next call.
        if let (Poll::Ready(Ok(n)), Some(d)) = (&polled, &mut this.digest) {
            d.update(buf.get(..*n).unwrap_or_default());
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(d)) = (&polled, &mut this.digest) {
            d.update(buf.filled().get(before..).unwrap_or_default());
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn hashes_what_passes_and_what_was_there() {
        let mut w = Hashing::new(Vec::new(), Some(Digest::new(HashAlgorithm::Crc32)));
        w.write_all(b"hello ").await.unwrap();
        w.write_all(b"world\n").await.unwrap();
        assert_eq!(w.inner, b"hello world\n");
        assert_eq!(w.digest.unwrap().finish(), [0xaf, 0x08, 0x3b, 0x2d]);

        let mut r = Hashing::new(&b"abc"[..], Some(Digest::new(HashAlgorithm::Crc32)));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(r.digest.unwrap().finish(), [0x35, 0x24, 0x41, 0xc2]);

        // "hello " read back from a file, "world\n" as it moves.
        let dir = std::env::temp_dir().join(format!("wharf-verify-{}", std::process::id()));
        std::fs::write(&dir, b"hello world\n").unwrap();
        let mut d = Digest::new(HashAlgorithm::Crc32);
        hash_prefix(&dir, 6, &mut d).await.unwrap();
        d.update(b"world\n");
        assert_eq!(d.finish(), [0xaf, 0x08, 0x3b, 0x2d]);
        let mut d = Digest::new(HashAlgorithm::Crc32);
        let e = hash_prefix(&dir, 13, &mut d).await.unwrap_err();
        assert!(e.to_string().contains("1 bytes early"), "{e}");
        let _ = std::fs::remove_file(&dir);
    }
}
