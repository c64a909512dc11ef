//! Hashing a file for HASH and the `X` commands (XSHA256 and its kin).
//!
//! The digest is computed off the session's thread, on tokio's blocking pool: a local file is
//! read and hashed there in one task; any other backend's stream (MemFs, an S3 GET) is read by
//! the session's task and its chunks handed to a blocking task through a small channel, so
//! memory stays at a few chunks whatever the file's size.
//!
//! A client cannot pin the server's CPUs: each user hashes one file at a time (its other
//! sessions wait their turn, [`Turns::user`]), and the server runs at most one hash per CPU
//! ([`Turns::server`]). Waiting for a turn is part of the work, so ABOR stops a hash that
//! waits as promptly as one that runs. Dropping the future (ABOR, a kick, the session's end)
//! stops the blocking task after the chunk in hand.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};
use wharf_net::digest::Digest as Hasher;
use wharf_proto::HashAlgorithm;

use crate::storage::ReadBody;

/// Bytes read and hashed at a time: large enough that the per-chunk costs (a read call, a
/// channel hop) vanish beside the hashing, small enough that a stop is seen within a
/// millisecond or so.
const CHUNK: usize = 256 * 1024;

/// Chunks of a stream waiting for the hashing task: reading the next one overlaps hashing the
/// last.
const IN_FLIGHT: usize = 2;

/// Who may hash now.
#[derive(Debug, Clone)]
pub(crate) struct Turns {
    /// One permit: the user's hashes run one after another.
    pub user: Arc<Semaphore>,
    /// One permit per CPU, shared by every session of the server.
    pub server: Arc<Semaphore>,
}

/// Why a hash stopped before its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    #[error("reading the file failed: {0}")]
    Read(#[source] io::Error),
    #[error("the file ended {0} bytes early")]
    Short(u64),
    #[error("no bytes from the storage for {0} s")]
    Stalled(u64),
    #[error("the hashing task failed")]
    Task,
}

/// Hashes the next `len` bytes of `body` (positioned at the range's start) once the turns
/// allow, counting hashed bytes into `progress`. `stall`: the longest wait for the storage's
/// next bytes.
pub(crate) async fn digest(
    body: ReadBody,
    algorithm: HashAlgorithm,
    len: u64,
    turns: Turns,
    stall: Duration,
    progress: &AtomicU64,
) -> Result<Vec<u8>, HashError> {
    // The user's turn first, so a user's queued hashes hold none of the server's permits.
    let _user = turns
        .user
        .acquire_owned()
        .await
        .map_err(|_| HashError::Task)?;
    let _server = turns
        .server
        .acquire_owned()
        .await
        .map_err(|_| HashError::Task)?;
    match body {
        ReadBody::File(file) => file_digest(file, algorithm, len, progress).await,
        ReadBody::Stream(reader) => stream_digest(reader, algorithm, len, stall, progress).await,
    }
}

/// Sets its flag when dropped: the blocking task's signal that nobody waits for it any more.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A local file, read and hashed on one blocking thread (no copy through a channel).
async fn file_digest(
    mut file: std::fs::File,
    algorithm: HashAlgorithm,
    len: u64,
    progress: &AtomicU64,
) -> Result<Vec<u8>, HashError> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let done = Arc::new(AtomicU64::new(0));
    let counted = done.clone();
    let mut task = tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new(algorithm);
        let mut buf = vec![0u8; CHUNK];
        let mut left = len;
        while left > 0 {
            if stop.load(Ordering::Relaxed) {
                return Err(HashError::Task);
            }
            let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
            let chunk = buf.get_mut(..want).unwrap_or_default();
            let n = match file.read(chunk) {
                Ok(0) => return Err(HashError::Short(left)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HashError::Read(e)),
            };
            hasher.update(chunk.get(..n).unwrap_or_default());
            left -= n as u64;
            counted.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(hasher.finish())
    });
    // The blocking thread cannot see `progress` (it borrows from the session), so its count
    // is copied over while it runs, for STAT and the admin table.
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = &mut task => {
                progress.store(done.load(Ordering::Relaxed), Ordering::Relaxed);
                return r.map_err(|_| HashError::Task)?;
            }
            _ = tick.tick() => progress.store(done.load(Ordering::Relaxed), Ordering::Relaxed),
        }
    }
}

/// Any other backend: read here, hashed on a blocking thread fed through a bounded channel.
async fn stream_digest(
    mut reader: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    algorithm: HashAlgorithm,
    len: u64,
    stall: Duration,
    progress: &AtomicU64,
) -> Result<Vec<u8>, HashError> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    // Ends when the channel closes: all sent, or this future dropped (then its result is
    // thrown away).
    let task = tokio::task::spawn_blocking(move || {
        let mut hasher = Hasher::new(algorithm);
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher.finish()
    });
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        let mut chunk = Vec::with_capacity(want);
        // Fill the chunk (a stream hands out small pieces), each wait bounded.
        while chunk.len() < want {
            let mut limited = (&mut reader).take((want - chunk.len()) as u64);
            let n = match tokio::time::timeout(stall, limited.read_buf(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(HashError::Read(e)),
                Err(_) => return Err(HashError::Stalled(stall.as_secs())),
            };
            if n == 0 {
                return Err(HashError::Short(left - chunk.len() as u64));
            }
        }
        left -= chunk.len() as u64;
        progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if tx.send(chunk).await.is_err() {
            return Err(HashError::Task);
        }
    }
    drop(tx);
    task.await.map_err(|_| HashError::Task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &[u8]) -> String {
        wharf_proto::hash::hex(d, false)
    }

    fn turns() -> Turns {
        Turns {
            user: Arc::new(Semaphore::new(1)),
            server: Arc::new(Semaphore::new(2)),
        }
    }

    /// Known answers for `hello world\n`, as sha1sum, sha256sum, sha512sum, md5sum and zlib
    /// give them.
    const HELLO: &[(HashAlgorithm, &str)] = &[
        (
            HashAlgorithm::Sha1,
            "22596363b3de40b06f981fb85d82312e8c0ed511",
        ),
        (
            HashAlgorithm::Sha256,
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447",
        ),
        (
            HashAlgorithm::Sha512,
            "db3974a97f2407b7cae1ae637c0030687a11913274d578492558e39c16c017de84eacdc8c62fe34ee4e12b4b1428817f09b6a2760c3f8a664ceae94d2434a593",
        ),
        (HashAlgorithm::Md5, "6f5902ac237024bdd0c176cb93063dc4"),
        (HashAlgorithm::Crc32, "af083b2d"),
    ];

    /// CRC-32 (zlib's) one bit at a time: slow, and independent of the table-driven crate.
    fn crc32_bitwise(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[tokio::test]
    async fn known_answers_from_a_stream_and_a_file() {
        let data = b"hello world\n";
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, data).unwrap();
        for &(algorithm, want) in HELLO {
            let progress = AtomicU64::new(0);
            let body = ReadBody::Stream(Box::new(std::io::Cursor::new(data.to_vec())));
            let got = digest(
                body,
                algorithm,
                12,
                turns(),
                Duration::from_secs(5),
                &progress,
            )
            .await
            .unwrap();
            assert_eq!(hex(&got), want, "{algorithm:?} stream");
            assert_eq!(got.len(), algorithm.digest_len());
            assert_eq!(progress.load(Ordering::Relaxed), 12);
            let mut f = file.try_clone().unwrap();
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
            let got = digest(
                ReadBody::File(f),
                algorithm,
                12,
                turns(),
                Duration::from_secs(5),
                &progress,
            )
            .await
            .unwrap();
            assert_eq!(hex(&got), want, "{algorithm:?} file");
        }
    }

    #[tokio::test]
    async fn a_range_and_a_short_body() {
        // The first 5 bytes of a longer body, across several chunks' worth of data.
        let mut data = b"hello".to_vec();
        data.extend(std::iter::repeat_n(7u8, 3 * CHUNK));
        let body = ReadBody::Stream(Box::new(std::io::Cursor::new(data.clone())));
        let progress = AtomicU64::new(0);
        let got = digest(
            body,
            HashAlgorithm::Sha256,
            5,
            turns(),
            Duration::from_secs(5),
            &progress,
        )
        .await
        .unwrap();
        assert_eq!(
            hex(&got),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let body = ReadBody::Stream(Box::new(std::io::Cursor::new(data.clone())));
        let whole = digest(
            body,
            HashAlgorithm::Crc32,
            data.len() as u64,
            turns(),
            Duration::from_secs(5),
            &progress,
        )
        .await
        .unwrap();
        assert_eq!(whole, crc32_bitwise(&data).to_be_bytes());
        let body = ReadBody::Stream(Box::new(std::io::Cursor::new(b"abc".to_vec())));
        let r = digest(
            body,
            HashAlgorithm::Md5,
            10,
            turns(),
            Duration::from_secs(5),
            &progress,
        )
        .await;
        assert!(matches!(r, Err(HashError::Short(7))), "{r:?}");
    }

    #[tokio::test]
    async fn a_user_hashes_one_file_at_a_time() {
        let t = turns();
        let held = t.user.clone().acquire_owned().await.unwrap();
        let progress = AtomicU64::new(0);
        let body = ReadBody::Stream(Box::new(std::io::Cursor::new(b"x".to_vec())));
        let waiting = digest(
            body,
            HashAlgorithm::Sha1,
            1,
            t.clone(),
            Duration::from_secs(5),
            &progress,
        );
        let r = tokio::time::timeout(Duration::from_millis(100), waiting).await;
        assert!(r.is_err(), "waits for the user's other hash");
        drop(held);
        let body = ReadBody::Stream(Box::new(std::io::Cursor::new(b"x".to_vec())));
        digest(
            body,
            HashAlgorithm::Sha1,
            1,
            t,
            Duration::from_secs(5),
            &progress,
        )
        .await
        .unwrap();
    }
}
