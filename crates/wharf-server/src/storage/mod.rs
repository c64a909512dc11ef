//! Storage: the async, handle-based [`Storage`] trait a session's driver talks to, the
//! [`StorageProvider`] that opens a user's home, and two backends: [`LocalFs`] (the local file
//! system, jailed with `openat2`) and [`MemFs`] (in memory: for tests, and the proof that the
//! seam holds), and [`S3Provider`] (an S3-compatible object store, for several nodes on one
//! bucket).
//!
//! A backend implements the calls it can and says what it cannot in [`Capabilities`]: FEAT and
//! the replies follow them. Errors are [`StorageError`]s; [`StorageError::kind`] is how the
//! protocol core sees them (one mapping to reply codes, in `wharf-proto`).

mod local;
mod mem;
mod s3;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use wharf_proto::server::FsError;
use wharf_proto::{FileInfo, VPath};

pub(crate) use local::random_hex;
pub use local::{HomeCache, LocalFs, LocalProvider, LocalUpload, TEMP_PREFIX, sweep_stale_uploads};
pub use mem::{MemFs, MemProvider};
pub use s3::{DIR_MARKER, S3Fs, S3Provider, S3Settings, UPLOAD_CONCURRENCY, UPLOAD_PART};
pub use wharf_proto::server::{Capabilities, Undone, WriteMode};

use crate::auth::Account;

/// A boxed future: what the storage traits return, so that they can be used as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("no such file or directory")]
    NotFound,
    #[error("permission denied")]
    PermissionDenied,
    /// The path (through `..` or a symlink) leads out of the user's root.
    #[error("path leads outside the root")]
    OutsideRoot,
    #[error("not a plain file")]
    NotAFile,
    #[error("not a directory")]
    NotADirectory,
    #[error("already exists")]
    AlreadyExists,
    #[error("directory not empty")]
    NotEmpty,
    #[error("no space left on device")]
    NoSpace,
    #[error("invalid file name")]
    InvalidName,
    #[error("restart offset beyond end of file")]
    BadOffset,
    /// The backend cannot do this (see [`Capabilities`]).
    #[error("not supported by this storage")]
    Unsupported,
    /// The backend cannot be reached now; trying again later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("quota exceeded")]
    QuotaExceeded,
    #[error("file too large")]
    TooLarge,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// The error as the protocol core sees it; it chooses the reply.
    pub fn kind(&self) -> FsError {
        match self {
            StorageError::NotFound => FsError::NotFound,
            StorageError::PermissionDenied => FsError::PermissionDenied,
            StorageError::OutsideRoot => FsError::OutsideRoot,
            StorageError::NotAFile => FsError::NotAFile,
            StorageError::NotADirectory => FsError::NotADirectory,
            StorageError::AlreadyExists => FsError::AlreadyExists,
            StorageError::NotEmpty => FsError::NotEmpty,
            StorageError::NoSpace => FsError::NoSpace,
            StorageError::InvalidName => FsError::InvalidName,
            StorageError::BadOffset => FsError::BadOffset,
            StorageError::Unsupported => FsError::Unsupported,
            StorageError::Unavailable(_) => FsError::Unavailable,
            StorageError::QuotaExceeded => FsError::QuotaExceeded,
            StorageError::TooLarge => FsError::TooLarge,
            StorageError::Io(e) if is_no_space(e) => FsError::NoSpace,
            StorageError::Io(_) => FsError::Io,
        }
    }

    /// Transient: the same call may work later (a backend that is down), as opposed to a
    /// permanent answer about the path.
    pub fn is_transient(&self) -> bool {
        matches!(self, StorageError::Unavailable(_) | StorageError::Io(_))
    }
}

/// ENOSPC or EDQUOT.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() || code == rustix::io::Errno::DQUOT.raw_os_error())
}

/// A file opened for a download.
pub struct ReadHandle {
    /// The file's whole length (not what is left after the offset).
    pub len: u64,
    pub body: ReadBody,
}

impl std::fmt::Debug for ReadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadHandle")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// The bytes of a download, from the offset asked for on.
pub enum ReadBody {
    /// A local file, positioned at the offset: the fast path (`sendfile(2)` on a plain binary
    /// transfer).
    File(std::fs::File),
    /// Any other backend.
    Stream(Box<dyn AsyncRead + Send + Unpin>),
}

/// An upload in progress: the bytes are written to it; [`WriteHandle::commit`] makes a
/// complete upload visible under its name; dropping it uncommitted abandons it (a replacement
/// leaves the old file as it was; a new file stays, partial, for resuming, where the backend
/// can resume).
pub trait WriteHandle: AsyncWrite + Send + Unpin {
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>>;
    /// The upload is refused (over quota or size): when dropped, it leaves the file as it was
    /// before — a new file goes, a resumed or appended one is cut back to its old length, a
    /// replaced one stays — and says which.
    fn discard(&mut self) -> Undone;
    /// The local file the upload goes into, at the position the next byte belongs, for a
    /// copy that moves bytes into it in the kernel (splice); `None` when there is none or its
    /// writes must go through [`AsyncWrite`].
    fn direct(&mut self) -> Option<DirectFile<'_>> {
        None
    }
}

/// See [`WriteHandle::direct`]: the file, and the upload's count of bytes written, which the
/// one who writes to the file advances.
pub struct DirectFile<'a> {
    pub file: &'a std::fs::File,
    pub written: &'a mut u64,
}

/// What a home holds, for quotas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub files: u64,
}

/// A directory listing, read in batches so that a directory of any size is listed with bounded
/// memory. `Ok(None)`: the end.
pub trait EntryStream: Send {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<FileInfo>>, StorageError>>;
}

/// A user's home: paths are virtual, already normalised (no `..`); the backend keeps them
/// inside the home.
pub trait Storage: Send + Sync + 'static {
    /// Facts about a path, following symlinks that stay inside the home.
    fn stat<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<FileInfo, StorageError>>;
    /// The entries of a directory (not `.`/`..`).
    fn list<'a>(
        &'a self,
        dir: &'a VPath,
    ) -> BoxFuture<'a, Result<Box<dyn EntryStream>, StorageError>>;
    /// Opens a plain file to read from `offset` ([`StorageError::BadOffset`] past its end).
    fn open_read<'a>(
        &'a self,
        path: &'a VPath,
        offset: u64,
    ) -> BoxFuture<'a, Result<ReadHandle, StorageError>>;
    /// Opens a plain file to read the bytes `offset..end` (a hash of a range): as
    /// [`Storage::open_read`], but nothing from `end` on will be read, so a backend that
    /// fetches over the network may ask for the range alone. The length is the whole file's;
    /// the caller checks `end` against it.
    fn open_range<'a>(
        &'a self,
        path: &'a VPath,
        offset: u64,
        end: u64,
    ) -> BoxFuture<'a, Result<ReadHandle, StorageError>> {
        let _ = end;
        self.open_read(path, offset)
    }
    /// Opens a file for an upload.
    fn open_write<'a>(
        &'a self,
        path: &'a VPath,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Box<dyn WriteHandle>, StorageError>>;
    fn mkdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>>;
    fn rmdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>>;
    fn delete<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Renames; an existing target is replaced only when `replace` (the user may delete).
    fn rename<'a>(
        &'a self,
        from: &'a VPath,
        to: &'a VPath,
        replace: bool,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Sets the modification time (MFMT).
    fn set_mtime<'a>(
        &'a self,
        path: &'a VPath,
        unix_secs: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>>;
    /// Sets permission bits (SITE CHMOD); never setuid, setgid or sticky.
    fn chmod<'a>(&'a self, path: &'a VPath, mode: u32) -> BoxFuture<'a, Result<(), StorageError>>;
    /// The bytes and files the home holds (for quotas); `Unsupported` where it cannot be told.
    fn usage(&self) -> BoxFuture<'_, Result<Usage, StorageError>> {
        Box::pin(std::future::ready(Err(StorageError::Unsupported)))
    }
}

/// Opens users' homes on one backend.
pub trait StorageProvider: Send + Sync + 'static {
    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;
    /// Whether the backend answers now (said at start; the server starts anyway).
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// The home of a logged-in user (`account.home`, as this backend understands it).
    fn open_home<'a>(
        &'a self,
        account: &'a Account,
    ) -> BoxFuture<'a, Result<Arc<dyn Storage>, StorageError>>;
}

/// Runs a blocking storage call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StorageError::Io(std::io::Error::other(e))))
}

/// Reads a whole listing into memory, at most `cap` entries (STAT of a directory goes over the
/// control connection in one reply).
pub async fn collect(
    mut entries: Box<dyn EntryStream>,
    cap: usize,
) -> Result<Vec<FileInfo>, StorageError> {
    let mut all = Vec::new();
    while let Some(batch) = entries.next_batch().await? {
        all.extend(batch);
        if all.len() >= cap {
            all.truncate(cap);
            break;
        }
    }
    Ok(all)
}
