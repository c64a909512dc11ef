//! [`LocalFs`]: a user's home on the local file system, jailed with `openat2`.
//!
//! # Why `openat2(RESOLVE_BENEATH)`
//! Every path is resolved by the kernel relative to a directory descriptor of the user's root,
//! with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: `..` and symlinks may be followed only while
//! they stay beneath the root; anything else fails with `EXDEV` (reported as 550). Because the
//! check happens inside the same system call that opens the file, a symlink swapped in between a
//! check and the open (or during a transfer, when the descriptor is already open) cannot lead out
//! of the jail. A `chroot` would need privileges and a process per user; checking
//! `canonicalize()` first and opening afterwards is racy. Operations on the last component
//! (mkdir, unlink, rename) open the *parent* this way and then act on a single name with the
//! `*at` calls, which never follow a symlink in that name.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use tokio::io::AsyncWrite;
use wharf_proto::{FileInfo, FileKind, VPath};

use super::{
    BoxFuture, Capabilities, EntryStream, ReadBody, ReadHandle, Storage, StorageError,
    StorageProvider, Undone, WriteHandle, WriteMode, blocking,
};
use crate::auth::Account;
use crate::own_files::OwnFiles;

/// Prefix of the temporary names an overwriting upload may use beside its target: hidden from
/// listings, unreachable by any command (a path with such a component is "not found"), and
/// swept at start-up ([`sweep_stale_uploads`]). Since the upload is written to an unnamed file
/// (`O_TMPFILE`) and named only for the rename that replaces the target, one is seldom there.
pub const TEMP_PREFIX: &[u8] = b".wharf-upload.";

/// This process's part of temporary names (`.wharf-upload.RUN.RANDOM`), so that the start-up
/// sweep of another run never takes the name of an upload being committed.
fn run_id() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| random_hex(4))
}

/// Whether a path names a temporary upload file (or something beneath such a name).
fn is_temp(path: &VPath) -> bool {
    path.components().any(|c| c.starts_with(TEMP_PREFIX))
}

impl From<Errno> for StorageError {
    fn from(e: Errno) -> StorageError {
        match e {
            Errno::NOENT => StorageError::NotFound,
            Errno::ACCESS | Errno::PERM | Errno::ROFS => StorageError::PermissionDenied,
            // EXDEV: RESOLVE_BENEATH refused an escape; ELOOP: too many links or NOFOLLOW hit one.
            Errno::XDEV | Errno::LOOP => StorageError::OutsideRoot,
            Errno::ISDIR => StorageError::NotAFile,
            Errno::NOTDIR => StorageError::NotADirectory,
            Errno::EXIST => StorageError::AlreadyExists,
            Errno::NOTEMPTY => StorageError::NotEmpty,
            Errno::NOSPC | Errno::DQUOT => StorageError::NoSpace,
            Errno::NAMETOOLONG | Errno::INVAL => StorageError::InvalidName,
            other => StorageError::Io(other.into()),
        }
    }
}

/// Entries a quota's usage walk looks at, at most: a home larger than that counts as what the
/// walk saw.
const USAGE_WALK_MAX: usize = 1_000_000;

/// The jail: a descriptor of the home directory that every path is resolved beneath. Shared by
/// the blocking calls of the sessions of one home.
#[derive(Debug)]
struct Jail {
    root: OwnedFd,
    /// The server's own files: refused and hidden wherever they lie in the home.
    own: Arc<OwnFiles>,
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

impl Jail {
    /// `openat2` beneath the root. EAGAIN (a concurrent rename during resolution) is retried.
    fn open_beneath(
        &self,
        path: &VPath,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, StorageError> {
        if is_temp(path) {
            return Err(StorageError::NotFound);
        }
        let rel = path.relative();
        // O_NOCTTY: a terminal node in the tree must never become the server's controlling
        // terminal (openat2 refuses it beside O_PATH, where it means nothing anyway).
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        let mut tries = 0;
        let fd = loop {
            match rustix::fs::openat2(&self.root, os(&rel), flags, mode, BENEATH) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                r => break r?,
            }
        };
        if !self.own.is_empty() {
            if self.own.is_own(&rustix::fs::fstat(&fd)?) {
                return Err(StorageError::PermissionDenied);
            }
            // By its name too: a file the server made a moment ago (SQLite's -wal) is its own
            // before its inode is read again.
            if let Some(name) = path.file_name()
                && self.own.has_name(name)
            {
                let dir = self.open_beneath(
                    &path.parent(),
                    OFlags::PATH | OFlags::DIRECTORY,
                    Mode::empty(),
                )?;
                if self.own.is_own_name(&rustix::fs::fstat(&dir)?, name) {
                    return Err(StorageError::PermissionDenied);
                }
            }
        }
        Ok(fd)
    }

    /// Refuses `name` in `dir` when it is one of the server's own files — by its name there, or
    /// as the file it is (a hard link, or a symlink to it) — or a directory on the way to one
    /// (renamed or removed, it would take the file out of its known place).
    fn refuse_own(&self, dir: &OwnedFd, name: &[u8]) -> Result<(), StorageError> {
        if self.own.is_empty() {
            return Ok(());
        }
        let own = self.own.is_own_name(&rustix::fs::fstat(dir)?, name)
            || [AtFlags::SYMLINK_NOFOLLOW, AtFlags::empty()]
                .into_iter()
                .any(|f| {
                    rustix::fs::statat(dir, os(name), f)
                        .is_ok_and(|st| self.own.is_own(&st) || self.own.is_own_dir(&st))
                });
        if own {
            return Err(StorageError::PermissionDenied);
        }
        Ok(())
    }

    /// The parent directory of `path` (as an `O_PATH` descriptor) and the last component.
    fn parent_of(&self, path: &VPath) -> Result<(OwnedFd, Vec<u8>), StorageError> {
        if is_temp(path) {
            return Err(StorageError::NotFound);
        }
        let name = path
            .file_name()
            .ok_or(StorageError::PermissionDenied)?
            .to_vec();
        let dir = self.open_beneath(
            &path.parent(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        self.refuse_own(&dir, &name)?;
        Ok((dir, name))
    }

    /// Bytes and files beneath the root: a walk without following symlinks (temporary upload
    /// files not counted), as far as [`USAGE_WALK_MAX`] entries.
    fn usage(&self) -> Result<super::Usage, StorageError> {
        let mut usage = super::Usage::default();
        let root = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut stack = vec![root];
        let mut seen = 0usize;
        while let Some(dir) = stack.pop() {
            let mut reader = rustix::fs::Dir::read_from(&dir)?;
            for entry in reader.by_ref() {
                let Ok(entry) = entry else { break };
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." || name.starts_with(TEMP_PREFIX) {
                    continue;
                }
                seen += 1;
                if seen > USAGE_WALK_MAX {
                    return Ok(usage);
                }
                let Ok(st) = rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                else {
                    continue;
                };
                // The server's own files (a transfer log growing with everyone's transfers) are
                // not the user's to pay for.
                if !self.own.is_empty() && self.own.is_own(&st) {
                    continue;
                }
                match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                    rustix::fs::FileType::RegularFile => {
                        usage.files += 1;
                        usage.bytes += u64::try_from(st.st_size).unwrap_or(0);
                    }
                    rustix::fs::FileType::Directory => {
                        if let Ok(sub) = rustix::fs::openat(
                            &dir,
                            entry.file_name(),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        ) {
                            stack.push(sub);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(usage)
    }

    fn stat(&self, path: &VPath) -> Result<FileInfo, StorageError> {
        let fd = self.open_beneath(path, OFlags::PATH, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        Ok(info_from_stat(
            path.file_name().unwrap_or(b"/").to_vec(),
            &st,
        ))
    }

    /// Up to `max` entries of an open directory: what it shows of each (symlinks as what they
    /// point to, if that is inside the root; hidden otherwise; temporary upload files hidden).
    /// `None` at the end.
    fn read_entries(
        &self,
        dir_path: &VPath,
        dir_fd: &OwnedFd,
        reader: &mut rustix::fs::Dir,
        max: usize,
    ) -> Result<Option<Vec<FileInfo>>, StorageError> {
        let mut out = Vec::new();
        let mut any = false;
        let dir_st = match self.own.is_empty() {
            true => None,
            false => Some(rustix::fs::fstat(dir_fd)?),
        };
        for entry in reader.by_ref() {
            any = true;
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let st = match rustix::fs::statat(dir_fd, os(name), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(_) => continue, // removed meanwhile
            };
            if let Some(d) = &dir_st
                && (self.own.is_own(&st) || self.own.is_own_name(d, name))
            {
                continue;
            }
            let mut info = info_from_stat(name.to_vec(), &st);
            if info.kind == FileKind::Symlink {
                let Ok(child) = dir_path.join(name) else {
                    continue;
                };
                match self.stat(&child) {
                    Ok(target) => {
                        info = FileInfo {
                            name: name.to_vec(),
                            ..target
                        };
                    }
                    Err(_) => continue,
                }
            }
            out.push(info);
            if out.len() >= max {
                break;
            }
        }
        Ok((any || !out.is_empty()).then_some(out))
    }

    fn open_read(&self, path: &VPath, offset: u64) -> Result<ReadHandle, StorageError> {
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(StorageError::NotAFile);
        }
        // Regular files ignore O_NONBLOCK; it only kept a FIFO from blocking the open.
        let len = u64::try_from(st.st_size).unwrap_or(0);
        if offset > len {
            return Err(StorageError::BadOffset);
        }
        if offset > 0 {
            rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(offset))?;
        }
        Ok(ReadHandle {
            len,
            body: ReadBody::File(File::from(fd)),
        })
    }

    fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<LocalUpload, StorageError> {
        self.open_write_once(path, mode, false)
    }

    /// `raced`: a STOR of a new name found it created meanwhile, and tries once more.
    fn open_write_once(
        &self,
        path: &VPath,
        mode: WriteMode,
        raced: bool,
    ) -> Result<LocalUpload, StorageError> {
        // (Every mode: an append may create the file.)
        let (dir, name) = self.parent_of(path)?;
        let file_mode = Mode::from_raw_mode(0o644);
        match mode {
            WriteMode::CreateNew => {
                let fd = rustix::fs::openat(
                    &dir,
                    os(&name),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    file_mode,
                )?;
                Ok(LocalUpload::new(
                    File::from(fd),
                    Finish::Created { dir, name },
                ))
            }
            WriteMode::Append => {
                // A new name is created here, never through a symlink (a dangling one could
                // name a file the server is about to make); it goes again if refused.
                if let Err(Errno::NOENT) =
                    rustix::fs::statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW)
                {
                    return match self.open_write(path, WriteMode::CreateNew) {
                        Err(StorageError::AlreadyExists) if !raced => {
                            self.open_write_once(path, mode, true)
                        }
                        r => r,
                    };
                }
                let fd = self.open_beneath(
                    path,
                    OFlags::WRONLY | OFlags::APPEND | OFlags::NONBLOCK,
                    Mode::empty(),
                )?;
                ensure_regular(&fd)?;
                let orig = u64::try_from(rustix::fs::fstat(&fd)?.st_size).unwrap_or(0);
                Ok(LocalUpload::new(File::from(fd), Finish::Append { orig }))
            }
            WriteMode::Resume(offset) => {
                let fd =
                    self.open_beneath(path, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty())?;
                ensure_regular(&fd)?;
                let st = rustix::fs::fstat(&fd)?;
                let orig = u64::try_from(st.st_size).unwrap_or(0);
                if offset > orig {
                    return Err(StorageError::BadOffset);
                }
                rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(offset))?;
                Ok(LocalUpload::new(
                    File::from(fd),
                    Finish::Resume { offset, orig },
                ))
            }
            WriteMode::Replace => {
                match rustix::fs::statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW) {
                    // Another upload of the same new name may create it first: then this one
                    // replaces it (STOR means create or replace, never "exists").
                    Err(Errno::NOENT) => match self.open_write(path, WriteMode::CreateNew) {
                        Err(StorageError::AlreadyExists) if !raced => {
                            self.open_write_once(path, mode, true)
                        }
                        r => r,
                    },
                    Err(e) => Err(e.into()),
                    Ok(st) => {
                        let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
                        if ft == rustix::fs::FileType::Directory {
                            return Err(StorageError::NotAFile);
                        }
                        // An existing file (or a symlink, which is replaced by the new file: the
                        // upload never writes through a link): write beside it, rename at the end.
                        let keep_mode = if ft == rustix::fs::FileType::RegularFile {
                            Mode::from_raw_mode(st.st_mode & 0o777)
                        } else {
                            file_mode
                        };
                        let (fd, tmp) = create_replacement(&dir, keep_mode)?;
                        Ok(LocalUpload::new(
                            File::from(fd),
                            Finish::Replace { dir, tmp, name },
                        ))
                    }
                }
            }
        }
    }

    fn mkdir(&self, path: &VPath) -> Result<(), StorageError> {
        let (dir, name) = self.parent_of(path)?;
        Ok(rustix::fs::mkdirat(
            &dir,
            os(&name),
            Mode::from_raw_mode(0o755),
        )?)
    }

    fn rmdir(&self, path: &VPath) -> Result<(), StorageError> {
        let (dir, name) = self.parent_of(path)?;
        Ok(rustix::fs::unlinkat(&dir, os(&name), AtFlags::REMOVEDIR)?)
    }

    fn delete(&self, path: &VPath) -> Result<(), StorageError> {
        let (dir, name) = self.parent_of(path)?;
        let st = rustix::fs::statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            return Err(StorageError::NotAFile);
        }
        Ok(rustix::fs::unlinkat(&dir, os(&name), AtFlags::empty())?)
    }

    fn rename(&self, from: &VPath, to: &VPath, replace: bool) -> Result<(), StorageError> {
        let (from_dir, from_name) = self.parent_of(from)?;
        let (to_dir, to_name) = self.parent_of(to)?;
        let flags = if replace {
            rustix::fs::RenameFlags::empty()
        } else {
            rustix::fs::RenameFlags::NOREPLACE
        };
        Ok(rustix::fs::renameat_with(
            &from_dir,
            os(&from_name),
            &to_dir,
            os(&to_name),
            flags,
        )?)
    }

    fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<(), StorageError> {
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let times = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: unix_secs,
                tv_nsec: 0,
            },
        };
        Ok(rustix::fs::futimens(&fd, &times)?)
    }

    fn chmod(&self, path: &VPath, mode: u32) -> Result<(), StorageError> {
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        // Never setuid/setgid/sticky: the server may run as root.
        Ok(rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777))?)
    }
}

fn info_from_stat(name: Vec<u8>, st: &rustix::fs::Stat) -> FileInfo {
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => FileKind::File,
        rustix::fs::FileType::Directory => FileKind::Dir,
        rustix::fs::FileType::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    FileInfo {
        name,
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: st.st_mtime,
        mode: st.st_mode & 0o7777,
        nlink: st.st_nlink,
    }
}

/// A user's home on the local file system.
#[derive(Debug, Clone)]
pub struct LocalFs {
    jail: Arc<Jail>,
}

impl LocalFs {
    /// Opens `root` as the jail. The directory must exist.
    pub fn new(root: &Path) -> std::io::Result<LocalFs> {
        LocalFs::guarding(root, Arc::default())
    }

    /// Opens `root` as the jail, never reaching the server's own files `own`.
    pub fn guarding(root: &Path, own: Arc<OwnFiles>) -> std::io::Result<LocalFs> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(LocalFs {
            jail: Arc::new(Jail { root: fd, own }),
        })
    }

    /// Runs `f` on the jail on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Jail) -> Result<T, StorageError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, StorageError>> {
        let jail = self.jail.clone();
        Box::pin(blocking(move || f(&jail)))
    }
}

/// Entries a directory listing sorts before sending (the order `ls` shows). A larger directory
/// is sent as the kernel reads it, in batches, so that its size does not decide the memory a
/// listing takes.
const SORTED_UP_TO: usize = 16_384;
/// Entries read per blocking call beyond [`SORTED_UP_TO`].
const BATCH: usize = 1024;

/// A listing being read: the directory's descriptor and reader travel to the blocking pool and
/// back for each batch.
struct LocalEntries {
    jail: Arc<Jail>,
    path: VPath,
    open: Option<(OwnedFd, rustix::fs::Dir)>,
    first: bool,
}

impl EntryStream for LocalEntries {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<FileInfo>>, StorageError>> {
        Box::pin(async move {
            let Some((fd, mut reader)) = self.open.take() else {
                return Ok(None);
            };
            let jail = self.jail.clone();
            let path = self.path.clone();
            let first = std::mem::replace(&mut self.first, false);
            let (batch, fd, reader) = blocking(move || {
                let max = if first { SORTED_UP_TO } else { BATCH };
                let mut batch = jail.read_entries(&path, &fd, &mut reader, max)?;
                if let Some(b) = batch.as_mut().filter(|b| first && b.len() < max) {
                    b.sort_unstable_by(|a, b| a.name.cmp(&b.name));
                }
                Ok((batch, fd, reader))
            })
            .await?;
            if batch.is_some() {
                self.open = Some((fd, reader));
            }
            Ok(batch)
        })
    }
}

impl Storage for LocalFs {
    fn stat<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<FileInfo, StorageError>> {
        let path = path.clone();
        self.run(move |j| j.stat(&path))
    }

    fn list<'a>(
        &'a self,
        dir: &'a VPath,
    ) -> BoxFuture<'a, Result<Box<dyn EntryStream>, StorageError>> {
        let jail = self.jail.clone();
        let path = dir.clone();
        Box::pin(async move {
            let p = path.clone();
            let j = jail.clone();
            let open = blocking(move || {
                let fd = j.open_beneath(&p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
                let reader = rustix::fs::Dir::read_from(&fd)?;
                Ok((fd, reader))
            })
            .await?;
            let entries: Box<dyn EntryStream> = Box::new(LocalEntries {
                jail,
                path,
                open: Some(open),
                first: true,
            });
            Ok(entries)
        })
    }

    /// Opened on the caller's thread, not the blocking pool: an open and an fstat cost
    /// microseconds, less than a round trip through the pool (a stalled file system stalls the
    /// caller's worker for it).
    fn open_read<'a>(
        &'a self,
        path: &'a VPath,
        offset: u64,
    ) -> BoxFuture<'a, Result<ReadHandle, StorageError>> {
        Box::pin(async move { self.jail.open_read(path, offset) })
    }

    fn open_write<'a>(
        &'a self,
        path: &'a VPath,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Box<dyn WriteHandle>, StorageError>> {
        let path = path.clone();
        Box::pin(async move {
            let upload = self.run(move |j| j.open_write(&path, mode)).await?;
            let handle: Box<dyn WriteHandle> = Box::new(upload);
            Ok(handle)
        })
    }

    fn mkdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = path.clone();
        self.run(move |j| j.mkdir(&path))
    }

    fn rmdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = path.clone();
        self.run(move |j| j.rmdir(&path))
    }

    fn delete<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = path.clone();
        self.run(move |j| j.delete(&path))
    }

    fn rename<'a>(
        &'a self,
        from: &'a VPath,
        to: &'a VPath,
        replace: bool,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let (from, to) = (from.clone(), to.clone());
        self.run(move |j| j.rename(&from, &to, replace))
    }

    fn set_mtime<'a>(
        &'a self,
        path: &'a VPath,
        unix_secs: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = path.clone();
        self.run(move |j| j.set_mtime(&path, unix_secs))
    }

    fn chmod<'a>(&'a self, path: &'a VPath, mode: u32) -> BoxFuture<'a, Result<(), StorageError>> {
        let path = path.clone();
        self.run(move |j| j.chmod(&path, mode))
    }

    fn usage(&self) -> BoxFuture<'_, Result<super::Usage, StorageError>> {
        self.run(|j| j.usage())
    }
}

/// An upload into a local file: written on the caller's thread as the bytes arrive (a write to
/// the page cache costs less than handing the chunk to another thread), made visible by
/// [`WriteHandle::commit`].
#[derive(Debug)]
pub struct LocalUpload {
    file: File,
    finish: Finish,
    written: u64,
    /// Refused (quota, size): leave nothing of it when dropped.
    discard: bool,
}

#[derive(Debug)]
enum Finish {
    /// Written in place: nothing to do at the end; a broken upload stays for resuming.
    InPlace,
    /// APPE to a file of `orig` bytes (cut back to it if the upload is discarded).
    Append { orig: u64 },
    /// A new file this upload created (STOR of a new name, STOU): as `InPlace`, but if it
    /// breaks before a byte arrived (the data connection never came, its TLS was refused) the
    /// empty file goes again.
    Created { dir: OwnedFd, name: Vec<u8> },
    /// REST n + STOR into a file of `orig` bytes: written in place from `offset`; the file is
    /// cut to what was sent only when the upload completes, so a failed resume destroys nothing
    /// beyond what it overwrote (a refused one is cut back to `orig`).
    Resume { offset: u64, orig: u64 },
    /// Written to a new file in `dir` — unnamed (`O_TMPFILE`, `tmp` is `None`) or, where the
    /// file system has no unnamed files, under a temporary name — that takes `name`'s place on
    /// commit; an unnamed one vanishes by itself otherwise, a named one is removed.
    Replace {
        dir: OwnedFd,
        tmp: Option<Vec<u8>>,
        name: Vec<u8>,
    },
}

impl LocalUpload {
    fn new(file: File, finish: Finish) -> LocalUpload {
        LocalUpload {
            file,
            finish,
            written: 0,
            discard: false,
        }
    }

    /// The upload completed: make it visible under its name. A replacement is synced to disk
    /// before it takes the old file's place, so a crash cannot leave the name pointing at a
    /// partial file.
    fn finish(mut self) -> Result<(), StorageError> {
        match std::mem::replace(&mut self.finish, Finish::InPlace) {
            Finish::InPlace | Finish::Created { .. } | Finish::Append { .. } => Ok(()),
            Finish::Resume { offset, .. } => {
                Ok(self.file.set_len(offset.saturating_add(self.written))?)
            }
            Finish::Replace { dir, tmp, name } => {
                if let Err(e) = self.file.sync_all() {
                    // No space at fsync, say: the replacement goes, the old file stays.
                    if let Some(tmp) = &tmp {
                        let _ = rustix::fs::unlinkat(&dir, os(tmp), AtFlags::empty());
                    }
                    return Err(e.into());
                }
                // An unnamed file gets a temporary name only now, for the rename.
                let tmp = match tmp {
                    Some(t) => t,
                    None => link_temp(&self.file, &dir)?,
                };
                let r = rustix::fs::renameat(&dir, os(&tmp), &dir, os(&name));
                if r.is_err() {
                    let _ = rustix::fs::unlinkat(&dir, os(&tmp), AtFlags::empty());
                }
                Ok(r?)
            }
        }
    }
}

impl AsyncWrite for LocalUpload {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = std::io::Write::write(&mut this.file, buf);
        if let Ok(n) = r {
            this.written += n as u64;
        }
        Poll::Ready(r)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl WriteHandle for LocalUpload {
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(blocking(move || self.finish()))
    }

    fn discard(&mut self) -> Undone {
        self.discard = true;
        match self.finish {
            Finish::Created { .. } => Undone::Removed,
            Finish::Append { orig } => Undone::CutBack(orig),
            Finish::Resume { offset, orig } if offset < orig => Undone::Rewritten {
                from: offset,
                len: orig,
            },
            Finish::Resume { orig, .. } => Undone::CutBack(orig),
            Finish::InPlace | Finish::Replace { .. } => Undone::Unchanged,
        }
    }

    /// Not for an append: splice(2) refuses a file opened with `O_APPEND`.
    fn direct(&mut self) -> Option<super::DirectFile<'_>> {
        match self.finish {
            Finish::Append { .. } => None,
            _ => Some(super::DirectFile {
                file: &self.file,
                written: &mut self.written,
            }),
        }
    }
}

impl Drop for LocalUpload {
    /// An upload dropped without `commit` broke: a replacement's temporary file goes, so the old
    /// file stays exactly as it was; a new file that received nothing goes.
    fn drop(&mut self) {
        match &self.finish {
            Finish::Replace {
                dir,
                tmp: Some(tmp),
                ..
            } => {
                let _ = rustix::fs::unlinkat(dir, os(tmp), AtFlags::empty());
            }
            // Only if the name still is this file (another upload may have replaced it), and
            // it received nothing, or the upload was refused.
            Finish::Created { dir, name } if self.written == 0 || self.discard => {
                let ours = rustix::fs::fstat(&self.file);
                let named = rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW);
                if let (Ok(a), Ok(b)) = (ours, named)
                    && a.st_dev == b.st_dev
                    && a.st_ino == b.st_ino
                {
                    let _ = rustix::fs::unlinkat(dir, os(name), AtFlags::empty());
                }
            }
            Finish::Append { orig } | Finish::Resume { orig, .. } if self.discard => {
                let _ = self.file.set_len(*orig);
            }
            _ => {}
        }
    }
}

/// Home directories open at the moment, by path; an entry lives as long as a session uses it.
/// Sessions of one home share one open home (one descriptor, one allocation): a thousand
/// sessions of one user hold one, not a thousand.
#[derive(Debug, Default)]
pub struct HomeCache {
    open: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::sync::Weak<LocalFs>>>,
    own: Arc<OwnFiles>,
}

impl HomeCache {
    /// The home directory `home` if a session has it open already (no system call).
    pub fn get(&self, home: &Path) -> Option<Arc<LocalFs>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(home).and_then(std::sync::Weak::upgrade)
    }

    /// The open home directory `home`, shared with the other sessions that use it, or newly
    /// opened.
    pub fn open(&self, home: &Path) -> std::io::Result<Arc<LocalFs>> {
        if let Some(fs) = self.get(home) {
            return Ok(fs);
        }
        let fs = Arc::new(LocalFs::guarding(home, self.own.clone())?);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // Forget homes nobody uses any more before adding one.
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(home.to_path_buf(), Arc::downgrade(&fs));
        Ok(fs)
    }
}

/// Homes on the local file system: `Account::home` is a directory.
#[derive(Debug, Default)]
pub struct LocalProvider {
    homes: Arc<HomeCache>,
}

impl LocalProvider {
    pub fn new() -> LocalProvider {
        LocalProvider::default()
    }

    /// Homes in which the server's own files `own` are refused and hidden.
    pub fn guarding(own: Arc<OwnFiles>) -> LocalProvider {
        LocalProvider {
            homes: Arc::new(HomeCache {
                own,
                ..HomeCache::default()
            }),
        }
    }
}

impl StorageProvider for LocalProvider {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn open_home<'a>(
        &'a self,
        account: &'a Account,
    ) -> BoxFuture<'a, Result<Arc<dyn Storage>, StorageError>> {
        Box::pin(async move {
            // Most logins find their home open already: no blocking thread needed for it.
            let fs = match self.homes.get(&account.home) {
                Some(fs) => fs,
                None => {
                    let homes = self.homes.clone();
                    let home = account.home.clone();
                    blocking(move || Ok(homes.open(&home)?)).await?
                }
            };
            let fs: Arc<dyn Storage> = fs;
            Ok(fs)
        })
    }
}

fn ensure_regular(fd: &impl AsFd) -> Result<(), StorageError> {
    let st = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(StorageError::NotAFile);
    }
    Ok(())
}

/// A temporary name in this run's form: `.wharf-upload.RUN.RANDOM`.
fn temp_name() -> Vec<u8> {
    let mut name = TEMP_PREFIX.to_vec();
    name.extend_from_slice(run_id().as_bytes());
    name.push(b'.');
    name.extend_from_slice(random_hex(8).as_bytes());
    name
}

/// A new file in `dir` for a replacing upload: unnamed (`O_TMPFILE`, nothing left behind if
/// the server dies) where the file system allows, else under a temporary name.
fn create_replacement(
    dir: &OwnedFd,
    mode: Mode,
) -> Result<(OwnedFd, Option<Vec<u8>>), StorageError> {
    if std::path::Path::new("/proc/self/fd").is_dir() {
        match rustix::fs::openat(
            dir,
            ".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            mode,
        ) {
            Ok(fd) => return Ok((fd, None)),
            // No unnamed files on this file system (EOPNOTSUPP, or EISDIR from old kernels).
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (fd, name) = create_temp(dir, mode)?;
    Ok((fd, Some(name)))
}

/// Gives the unnamed file `file` a temporary name in `dir` (through `/proc/self/fd`, which
/// needs no privilege, unlike `AT_EMPTY_PATH`).
fn link_temp(file: &File, dir: &OwnedFd) -> Result<Vec<u8>, StorageError> {
    use std::os::fd::AsRawFd;
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    for _ in 0..16 {
        let name = temp_name();
        match rustix::fs::linkat(
            rustix::fs::CWD,
            proc_path.as_str(),
            dir,
            os(&name),
            AtFlags::SYMLINK_FOLLOW,
        ) {
            Ok(()) => return Ok(name),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StorageError::AlreadyExists)
}

/// Removes temporary upload files left by earlier runs (a server killed while it renamed, or
/// one without unnamed files killed mid-upload) under each of `dirs`, depth first, without
/// following symlinks; at most `max_entries` entries are looked at. Returns (files removed,
/// entries looked at).
pub fn sweep_stale_uploads(dirs: &[std::path::PathBuf], max_entries: usize) -> (usize, usize) {
    let mine = {
        let mut p = TEMP_PREFIX.to_vec();
        p.extend_from_slice(run_id().as_bytes());
        p.push(b'.');
        p
    };
    let (mut removed, mut seen) = (0, 0);
    let mut stack: Vec<std::path::PathBuf> = dirs.to_vec();
    let mut visited = std::collections::HashSet::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        if let Ok(meta) = std::fs::symlink_metadata(&dir) {
            use std::os::unix::fs::MetadataExt;
            if !visited.insert((meta.dev(), meta.ino())) {
                continue;
            }
        }
        for entry in entries.flatten() {
            seen += 1;
            if seen > max_entries {
                return (removed, seen);
            }
            let name = entry.file_name();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && name.as_bytes().starts_with(TEMP_PREFIX)
                && !name.as_bytes().starts_with(&mine)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    (removed, seen)
}

/// Creates a temporary file with a random name in `dir`.
fn create_temp(dir: &OwnedFd, mode: Mode) -> Result<(OwnedFd, Vec<u8>), StorageError> {
    for _ in 0..16 {
        let name = temp_name();
        match rustix::fs::openat(
            dir,
            os(&name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        ) {
            Ok(fd) => return Ok((fd, name)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StorageError::AlreadyExists)
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // getrandom failing means the OS has no entropy source at all; a time-based fallback keeps
    // temporary names distinct, and O_EXCL keeps them safe.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn vp(s: &str) -> VPath {
        VPath::root().join(s.as_bytes()).unwrap()
    }

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, LocalFs) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/a.txt"), b"hello").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("abs-link"))
            .unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../../etc/passwd",
            root.path().join("rel-link"),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/a.txt", root.path().join("good-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("dir-link")).unwrap();
        let fs = LocalFs::new(root.path()).unwrap();
        (outside, root, fs)
    }

    async fn read_all(fs: &LocalFs, p: &str) -> Result<Vec<u8>, StorageError> {
        let h = fs.open_read(&vp(p), 0).await?;
        let ReadBody::File(f) = h.body else {
            panic!("a local file")
        };
        let mut out = Vec::new();
        tokio::fs::File::from_std(f).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn names(fs: &LocalFs, p: &VPath) -> Result<Vec<Vec<u8>>, StorageError> {
        let all = super::super::collect(fs.list(p).await?, usize::MAX).await?;
        Ok(all.into_iter().map(|i| i.name).collect())
    }

    #[tokio::test]
    async fn symlinks_out_of_the_root_are_refused() {
        let (_o, _r, fs) = setup();
        for p in ["abs-link", "rel-link", "dir-link/secret"] {
            assert!(
                matches!(read_all(&fs, p).await, Err(StorageError::OutsideRoot)),
                "{p}"
            );
            assert!(
                matches!(fs.stat(&vp(p)).await, Err(StorageError::OutsideRoot)),
                "{p}"
            );
        }
        assert!(matches!(
            fs.list(&vp("dir-link")).await,
            Err(StorageError::OutsideRoot)
        ));
        assert!(matches!(
            fs.open_write(&vp("dir-link/new"), WriteMode::Replace).await,
            Err(StorageError::OutsideRoot)
        ));
        assert_eq!(read_all(&fs, "good-link").await.unwrap(), b"hello");
    }

    #[tokio::test]
    async fn listing_hides_escaping_links() {
        let (_o, _r, fs) = setup();
        assert_eq!(
            names(&fs, &VPath::root()).await.unwrap(),
            vec![b"good-link".to_vec(), b"sub".to_vec()]
        );
    }

    #[tokio::test]
    async fn large_directories_are_listed_in_batches() {
        let root = tempfile::tempdir().unwrap();
        let n = SORTED_UP_TO + 2 * BATCH + 7;
        for i in 0..n {
            std::fs::write(root.path().join(format!("f{i:06}")), b"").unwrap();
        }
        let fs = LocalFs::new(root.path()).unwrap();
        let mut entries = fs.list(&VPath::root()).await.unwrap();
        let mut sizes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(batch) = entries.next_batch().await.unwrap() {
            sizes.push(batch.len());
            seen.extend(batch.into_iter().map(|i| i.name));
        }
        assert_eq!(seen.len(), n, "every entry once");
        assert!(
            sizes.iter().all(|&s| s <= SORTED_UP_TO),
            "bounded batches: {sizes:?}"
        );
        assert_eq!(sizes[0], SORTED_UP_TO);
    }

    #[tokio::test]
    async fn offsets_past_the_end_are_refused() {
        let (_o, _r, fs) = setup();
        let h = fs.open_read(&vp("sub/a.txt"), 2).await.unwrap();
        assert_eq!(h.len, 5);
        assert!(matches!(
            fs.open_read(&vp("sub/a.txt"), 6).await,
            Err(StorageError::BadOffset)
        ));
    }

    #[tokio::test]
    async fn replace_is_atomic_and_abandon_keeps_old() {
        let (_o, root, fs) = setup();
        let p = vp("sub/a.txt");
        let mut up = fs.open_write(&p, WriteMode::Replace).await.unwrap();
        up.write_all(b"partial").await.unwrap();
        drop(up);
        assert_eq!(
            std::fs::read(root.path().join("sub/a.txt")).unwrap(),
            b"hello"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("sub")).unwrap().count(),
            1
        );
        let mut up = fs.open_write(&p, WriteMode::Replace).await.unwrap();
        up.write_all(b"new").await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("sub/a.txt")).unwrap(),
            b"new"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[tokio::test]
    async fn new_upload_stays_when_abandoned_and_resumes() {
        let (_o, root, fs) = setup();
        let p = vp("new.bin");
        let mut up = fs.open_write(&p, WriteMode::Replace).await.unwrap();
        up.write_all(b"12345").await.unwrap();
        drop(up);
        assert_eq!(
            std::fs::read(root.path().join("new.bin")).unwrap(),
            b"12345"
        );
        let mut up = fs.open_write(&p, WriteMode::Resume(3)).await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("new.bin")).unwrap(),
            b"12345",
            "nothing cut before data"
        );
        up.write_all(b"XY").await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(
            std::fs::read(root.path().join("new.bin")).unwrap(),
            b"123XY"
        );
        assert!(matches!(
            fs.open_write(&p, WriteMode::Resume(99)).await,
            Err(StorageError::BadOffset)
        ));
    }

    #[tokio::test]
    async fn dir_ops() {
        let (_o, root, fs) = setup();
        fs.mkdir(&vp("d")).await.unwrap();
        assert!(matches!(
            fs.mkdir(&vp("d")).await,
            Err(StorageError::AlreadyExists)
        ));
        fs.rename(&vp("d"), &vp("sub/e"), false).await.unwrap();
        assert!(matches!(
            fs.rename(&vp("good-link"), &vp("sub/a.txt"), false).await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(root.path().join("sub/e").is_dir());
        assert!(matches!(
            fs.rmdir(&vp("sub")).await,
            Err(StorageError::NotEmpty)
        ));
        assert!(matches!(
            fs.delete(&vp("sub/e")).await,
            Err(StorageError::NotAFile)
        ));
        fs.rmdir(&vp("sub/e")).await.unwrap();
        // Deleting a link that points outside removes the link, not the target.
        fs.delete(&vp("abs-link")).await.unwrap();
        assert!(!root.path().join("abs-link").exists());
        fs.set_mtime(&vp("sub/a.txt"), 1_000_000_000).await.unwrap();
        assert_eq!(
            fs.stat(&vp("sub/a.txt")).await.unwrap().mtime,
            1_000_000_000
        );
        fs.chmod(&vp("sub/a.txt"), 0o4755).await.unwrap();
        assert_eq!(
            fs.stat(&vp("sub/a.txt")).await.unwrap().mode,
            0o755,
            "no setuid"
        );
    }
}
