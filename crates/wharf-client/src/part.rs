//! One file each way. A download goes through `NAME.wharf-part` beside the real name and
//! continues it after a break; an upload continues the server's shorter file. The trees and
//! the single-file commands both use these.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncSeekExt;
use wharf_net::digest::Digest;
use wharf_proto::HashAlgorithm;
use wharf_proto::client::hash::HashCommand;

use crate::client::{Client, Progress, Store};
use crate::error::{Error, Result};
use crate::verify::{self, Hashing};

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes transferred.
    Transferred(u64),
    /// Resuming found the file already complete.
    AlreadyComplete,
}

/// Downloads `remote` to `local` through `NAME.wharf-part` beside it, which replaces `local`
/// only when the transfer completed: a broken download never leaves a truncated file under the
/// real name. A transfer that breaks (or is interrupted) keeps the partial file, which
/// [`Resume::Partial`] and [`Resume::Any`] continue from its size (REST + RETR);
/// [`Resume::Any`] also appends to a shorter `local` when there is no `.part` (a file another
/// program left). [`Resume::Fresh`] starts any old `.part` afresh.
pub async fn download_file(
    client: &mut Client,
    remote: &[u8],
    local: &Path,
    size_hint: Option<u64>,
    how: Resume,
    progress: &dyn Progress,
) -> Result<Outcome> {
    download_checked(client, remote, local, size_hint, how, progress, None)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`download_file`], and with `check` the file is compared with the server's hash (asked by
/// that command) before the partial file takes the real name: a file that differs stays
/// `NAME.wharf-part` and fails with [`Error::Verify`]. The bytes are hashed as they are
/// written; a resumed prefix is read back from the partial file first. Returns the algorithm
/// that verified the file, with `check`.
pub async fn download_checked(
    client: &mut Client,
    remote: &[u8],
    local: &Path,
    size_hint: Option<u64>,
    how: Resume,
    progress: &dyn Progress,
    check: Option<HashCommand>,
) -> Result<(Outcome, Option<HashAlgorithm>)> {
    let resume = how != Resume::Fresh;
    let at = |e: Error| e.at(local);
    let part = part_path(local);
    // Where the bytes go, and how many are there already.
    let (target, have) = if resume {
        match (regular_len(&part)?, regular_len(local)?) {
            (Some(n), _) => (part.as_path(), n),
            (None, Some(n)) if how == Resume::Any => (local, n),
            (None, _) => (part.as_path(), 0),
        }
    } else {
        (part.as_path(), 0)
    };
    let size = match size_hint {
        Some(s) => Some(s),
        None if resume => client.size(remote).await?,
        None => None,
    };
    if resume && let Some(size) = size {
        if have == size && regular_len(target)?.is_some() {
            client.log_status(format!(
                "{}: already complete ({size} bytes)",
                local.display()
            ));
            // Nothing moves: all of it is read back.
            let verified = match check {
                Some(how) => {
                    let mut digest = Digest::new(how.algorithm());
                    verify::hash_prefix(target, have, &mut digest).await?;
                    let found = (remote, have, digest);
                    Some(compare(client, how, found, target, local).await?)
                }
                None => None,
            };
            if target != local {
                std::fs::rename(target, local).map_err(|e| at(Error::local(e)))?;
            }
            progress.resumed(have);
            return Ok((Outcome::AlreadyComplete, verified));
        }
        if have > size {
            return Err(Error::Usage(format!(
                "{}: the local file ({have} bytes) is larger than the remote one ({size} bytes); not resuming",
                target.display()
            )));
        }
    }
    let mut file = open_for_writing(target, have)
        .await
        .map_err(|e| Error::local(e).at(local))?;
    progress.resumed(have);
    let result = async {
        let mut digest = check.map(|how| Digest::new(how.algorithm()));
        if let Some(d) = &mut digest
            && have > 0
        {
            // What an earlier run wrote did not pass through this one.
            verify::hash_prefix(target, have, d).await?;
        }
        let mut out = Hashing::new(&mut file, digest);
        let n = client
            .retrieve(remote, have, &mut out, progress)
            .await
            .map_err(at)?;
        let Hashing { digest, .. } = out;
        file.sync_all().await.map_err(|e| at(Error::local(e)))?;
        check_size(client, remote, have + n, size)?;
        let verified = match (check, digest) {
            (Some(how), Some(digest)) => {
                let found = (remote, have + n, digest);
                Some(compare(client, how, found, target, local).await?)
            }
            _ => None,
        };
        if target != local {
            tokio::fs::rename(target, local)
                .await
                .map_err(|e| at(Error::local(e)))?;
        }
        Ok((n, verified))
    }
    .await;
    drop(file);
    if result.is_err() && target == part && regular_len(&part).ok().flatten() == Some(0) {
        // Nothing came (a refusal, no such file): no partial file to keep.
        let _ = std::fs::remove_file(&part);
    }
    result.map(|(n, verified)| (Outcome::Transferred(n), verified))
}

/// The length of `p` when it is a regular file, `None` when it does not exist.
fn regular_len(p: &Path) -> Result<Option<u64>> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Err(Error::Usage(format!(
            "{}: exists and is not a regular file",
            p.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::local(e).at(p)),
    }
}

/// The file a download writes: appended to after `have` bytes, else from the start; never
/// through a symbolic link planted where the file goes.
async fn open_for_writing(target: &Path, have: u64) -> io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true);
    if have > 0 {
        options.append(true);
    } else {
        options.truncate(true);
    }
    options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    options.open(target).await
}

/// The downloaded file's digest (`found`: the remote path, its length, the local digest)
/// against the server's, before `target` takes the real name `local`.
async fn compare(
    client: &mut Client,
    how: HashCommand,
    found: (&[u8], u64, Digest),
    target: &Path,
    local: &Path,
) -> Result<HashAlgorithm> {
    let (remote, len, digest) = found;
    let shown = local.display().to_string();
    let kept = kept_as(target, local);
    let ours = digest.finish();
    verify::compare(client, how, (remote, Some(len)), ours, &shown, &kept).await
}

/// What a failed verification says is left: the partial file, when the download went to one.
fn kept_as(target: &Path, local: &Path) -> String {
    if target == local {
        String::new()
    } else {
        format!("; the download is kept as {}", target.display())
    }
}

/// What a download does with what is already on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Start from byte 0.
    Fresh,
    /// Continue a `.part` file left by a broken download; else start from byte 0.
    Partial,
    /// Continue a `.part` file, else a shorter local file (`get -c`).
    Any,
}

/// A writer that counts what went through it: where a broken transfer stopped, so that the
/// next try resumes there.
pub struct Counting<W> {
    pub inner: W,
    pub written: u64,
}

impl<W> Counting<W> {
    pub fn new(inner: W) -> Counting<W> {
        Counting { inner, written: 0 }
    }
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counting<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &polled {
            this.written += *n as u64;
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a partial download's name ends with: not a plain `.part`, which files of their own
/// are often called (a server's uploads in progress, say).
pub const PART_SUFFIX: &str = ".wharf-part";

/// `NAME.wharf-part` beside `local`: where a download goes until it is complete, kept when it
/// breaks so that `-c` continues it.
pub fn part_path(local: &Path) -> PathBuf {
    let mut name = local.file_name().map_or_else(
        || OsStr::new("download").to_os_string(),
        OsStr::to_os_string,
    );
    name.push(PART_SUFFIX);
    local.with_file_name(name)
}

/// Whether a name is one [`part_path`] makes: a remote file of that name is not downloaded
/// beside the partial file it would be mistaken for.
pub fn is_part_name(name: &[u8]) -> bool {
    name.ends_with(PART_SUFFIX.as_bytes())
}

/// A [`Progress`] for a further try of a transfer: what the file already has was counted by
/// the try that wrote it, so `resumed` is not passed on.
pub struct Retrying<'a>(pub &'a dyn Progress);

impl Progress for Retrying<'_> {
    fn set_total(&self, total: u64) {
        self.0.set_total(total);
    }

    fn advance(&self, bytes: u64) {
        self.0.advance(bytes);
    }
}

/// A binary download of known size must have exactly that size: a data connection cut short
/// but followed by 226 is not a complete file.
fn check_size(client: &Client, remote: &[u8], got: u64, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(want) if !client.is_ascii() && got != want => Err(Error::Protocol(format!(
            "{}: received {got} bytes, but the file has {want}",
            String::from_utf8_lossy(remote)
        ))),
        _ => Ok(()),
    }
}

/// Uploads `local` to `remote`. With `resume`, asks the server for the size it has (SIZE) and
/// sends the rest: REST + STOR where FEAT offers REST STREAM, APPE otherwise.
pub async fn upload_file(
    client: &mut Client,
    local: &Path,
    remote: &[u8],
    resume: bool,
    progress: &dyn Progress,
) -> Result<Outcome> {
    upload_checked(client, local, remote, resume, progress, None)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`upload_file`], and with `check` the server's file is compared with the local one by the
/// server's hash (asked by that command) once stored: a difference fails with
/// [`Error::Verify`]. The bytes are hashed as they are read for sending; a prefix the server
/// already had is read from the local file first. Returns the algorithm that verified it.
pub async fn upload_checked(
    client: &mut Client,
    local: &Path,
    remote: &[u8],
    resume: bool,
    progress: &dyn Progress,
    check: Option<HashCommand>,
) -> Result<(Outcome, Option<HashAlgorithm>)> {
    let shown = local.display().to_string();
    let at = |e: Error| e.at(local);
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| at(Error::local(e)))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| at(Error::local(e)))?
        .len();
    let mut how = Store::Replace;
    let mut digest = check.map(|c| Digest::new(c.algorithm()));
    if resume {
        let have = client.size(remote).await?.unwrap_or(0);
        if have == len && len > 0 {
            client.log_status(format!(
                "{}: already complete on the server ({len} bytes)",
                String::from_utf8_lossy(remote)
            ));
            progress.resumed(len);
            let mut verified = None;
            if let Some(how) = check {
                let mut digest = Digest::new(how.algorithm());
                verify::hash_prefix(local, len, &mut digest).await?;
                verified = Some(
                    verify::compare(
                        client,
                        how,
                        (remote, Some(len)),
                        digest.finish(),
                        &shown,
                        "",
                    )
                    .await?,
                );
            }
            return Ok((Outcome::AlreadyComplete, verified));
        }
        if have > len {
            return Err(Error::Usage(format!(
                "{}: the server's file ({have} bytes) is larger than the local one ({len} bytes); not resuming",
                String::from_utf8_lossy(remote)
            )));
        }
        if have > 0 {
            if let Some(d) = &mut digest {
                verify::hash_prefix(local, have, d).await?;
            }
            file.seek(io::SeekFrom::Start(have))
                .await
                .map_err(|e| at(Error::local(e)))?;
            progress.resumed(have);
            how = if client.features().rest_stream {
                Store::Resume(have)
            } else {
                Store::Append
            };
        }
    }
    let mut input = Hashing::new(&mut file, digest);
    let n = client
        .store(remote, how, &mut input, progress)
        .await
        .map_err(at)?;
    let mut verified = None;
    if let (Some(check), Some(digest)) = (check, input.digest) {
        verified = Some(
            verify::compare(
                client,
                check,
                (remote, Some(len)),
                digest.finish(),
                &shown,
                "",
            )
            .await?,
        );
    }
    Ok((Outcome::Transferred(n), verified))
}

/// Sets a local file's modification time (seconds since the epoch); a failure is only logged
/// by the next comparison, which sees the file as changed.
pub fn set_local_mtime(path: &Path, unix: i64) {
    let Some(time) = u64::try_from(unix)
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
    else {
        return;
    };
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_modified(time);
    }
}
