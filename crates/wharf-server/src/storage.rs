//! Storage: the [`Storage`] trait the session talks to, and [`LocalFs`], a jail on the local file
//! system.
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

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use wharf_proto::{FileInfo, FileKind, Reply, ReplyCode, VPath};

/// Prefix of the temporary files an overwriting upload writes beside its target. Hidden from
/// listings.
pub const TEMP_PREFIX: &[u8] = b".wharf-upload.";

/// A storage failure, mapped to its reply in [`StorageError::reply`].
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
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// The one place where storage errors become replies.
    pub fn reply(&self) -> Reply {
        let (code, text) = match self {
            StorageError::NotFound => (ReplyCode::FILE_UNAVAILABLE, "No such file or directory."),
            StorageError::PermissionDenied => (ReplyCode::FILE_UNAVAILABLE, "Permission denied."),
            StorageError::OutsideRoot => (ReplyCode::FILE_UNAVAILABLE, "Path is outside the root."),
            StorageError::NotAFile => (ReplyCode::FILE_UNAVAILABLE, "Not a plain file."),
            StorageError::NotADirectory => (ReplyCode::FILE_UNAVAILABLE, "Not a directory."),
            StorageError::AlreadyExists => (ReplyCode::FILE_UNAVAILABLE, "File exists."),
            StorageError::NotEmpty => (ReplyCode::FILE_UNAVAILABLE, "Directory not empty."),
            StorageError::NoSpace => (
                ReplyCode::INSUFFICIENT_STORAGE,
                "Insufficient storage space.",
            ),
            StorageError::InvalidName => (ReplyCode::BAD_FILE_NAME, "File name not allowed."),
            StorageError::BadOffset => (ReplyCode(554), "Invalid REST parameter."),
            StorageError::Io(_) => (ReplyCode::LOCAL_ERROR, "Local error in processing."),
        };
        Reply::new(code, text)
    }
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

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: a new file is written in place (a broken upload stays, for resuming); an existing one
    /// is replaced atomically when the upload completes.
    Replace,
    /// REST n + STOR: write into the existing file from offset n.
    Resume(u64),
    /// APPE: append, creating the file if needed.
    Append,
    /// STOU: a new file that must not exist.
    CreateNew,
}

/// The file system behind a user's session. Blocking calls: the session runs them on tokio's
/// blocking pool. Paths are virtual, already normalised; the implementation keeps them inside the
/// root.
pub trait Storage: Send + Sync + 'static {
    /// Facts about a path, following symlinks that stay inside the root.
    fn stat(&self, path: &VPath) -> Result<FileInfo, StorageError>;
    /// The entries of a directory (not `.`/`..`). Symlinks are shown as what they point to; ones
    /// that dangle or point outside the root are left out.
    fn list(&self, dir: &VPath) -> Result<Vec<FileInfo>, StorageError>;
    /// Opens a plain file for reading.
    fn open_read(&self, path: &VPath) -> Result<File, StorageError>;
    /// Opens a file for an upload.
    fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Upload, StorageError>;
    fn mkdir(&self, path: &VPath) -> Result<(), StorageError>;
    fn rmdir(&self, path: &VPath) -> Result<(), StorageError>;
    fn delete(&self, path: &VPath) -> Result<(), StorageError>;
    /// Renames; an existing target is replaced only when `replace` (the user may delete).
    fn rename(&self, from: &VPath, to: &VPath, replace: bool) -> Result<(), StorageError>;
    /// Sets the modification time (MFMT).
    fn set_mtime(&self, path: &VPath, unix_secs: i64) -> Result<(), StorageError>;
    /// Sets permission bits (SITE CHMOD).
    fn chmod(&self, path: &VPath, mode: u32) -> Result<(), StorageError>;
}

/// An open upload: the file to write, and what completing or abandoning it means.
#[derive(Debug)]
pub struct Upload {
    pub file: File,
    finish: Finish,
}

#[derive(Debug)]
enum Finish {
    /// Written in place: nothing to do at the end; a broken upload stays for resuming.
    InPlace,
    /// REST n + STOR: written in place from `offset`; the file is cut to what was sent only when
    /// the upload completes, so a failed resume destroys nothing beyond what it overwrote.
    Resume { offset: u64 },
    /// Written to a temporary name in `dir`; renamed over `name` on commit, removed otherwise.
    Replace {
        dir: OwnedFd,
        tmp: Vec<u8>,
        name: Vec<u8>,
    },
}

impl Upload {
    /// The upload completed with `written` bytes: make it visible under its name. A replacement
    /// is synced to disk before it takes the old file's place, so a crash cannot leave the name
    /// pointing at a partial file.
    pub fn commit(mut self, written: u64) -> Result<(), StorageError> {
        match std::mem::replace(&mut self.finish, Finish::InPlace) {
            Finish::InPlace => Ok(()),
            Finish::Resume { offset } => Ok(self.file.set_len(offset.saturating_add(written))?),
            Finish::Replace { dir, tmp, name } => {
                self.file.sync_all()?;
                let r = rustix::fs::renameat(&dir, os(&tmp), &dir, os(&name));
                if r.is_err() {
                    let _ = rustix::fs::unlinkat(&dir, os(&tmp), AtFlags::empty());
                }
                Ok(r?)
            }
        }
    }
}

impl Drop for Upload {
    /// An upload dropped without `commit` broke: a replacement's temporary file goes, so the old
    /// file stays exactly as it was.
    fn drop(&mut self) {
        if let Finish::Replace { dir, tmp, .. } = &self.finish {
            let _ = rustix::fs::unlinkat(dir, os(tmp), AtFlags::empty());
        }
    }
}

/// A user's jail on the local file system.
#[derive(Debug)]
pub struct LocalFs {
    root: OwnedFd,
}

/// Home directories open at the moment, by path; an entry lives as long as a session uses it.
#[derive(Debug, Default)]
pub struct HomeCache {
    open: std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, std::sync::Weak<LocalFs>>>,
}

impl HomeCache {
    /// The home directory `home` if a session has it open already (no system call).
    pub fn get(&self, home: &Path) -> Option<std::sync::Arc<LocalFs>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(home).and_then(std::sync::Weak::upgrade)
    }

    /// The open home directory `home`, shared with the other sessions that use it, or newly
    /// opened.
    pub fn open(&self, home: &Path) -> std::io::Result<std::sync::Arc<LocalFs>> {
        if let Some(fs) = self.get(home) {
            return Ok(fs);
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let fs = std::sync::Arc::new(LocalFs::new(home)?);
        // Forget homes nobody uses any more before adding one.
        open.retain(|_, w| w.strong_count() > 0);
        open.insert(home.to_path_buf(), std::sync::Arc::downgrade(&fs));
        Ok(fs)
    }
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

impl LocalFs {
    /// Opens `root` as the jail. The directory must exist.
    pub fn new(root: &Path) -> std::io::Result<LocalFs> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(LocalFs { root: fd })
    }

    /// `openat2` beneath the root. EAGAIN (a concurrent rename during resolution) is retried.
    fn open_beneath(
        &self,
        path: &VPath,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, StorageError> {
        let rel = path.relative();
        // O_NOCTTY: a terminal node in the tree must never become the server's controlling
        // terminal (openat2 refuses it beside O_PATH, where it means nothing anyway).
        let flags = if flags.contains(OFlags::PATH) {
            flags | OFlags::CLOEXEC
        } else {
            flags | OFlags::CLOEXEC | OFlags::NOCTTY
        };
        let mut tries = 0;
        loop {
            match rustix::fs::openat2(&self.root, os(&rel), flags, mode, BENEATH) {
                Err(Errno::AGAIN) if tries < 8 => tries += 1,
                r => return Ok(r?),
            }
        }
    }

    /// The parent directory of `path` (as an `O_PATH` descriptor) and the last component.
    fn parent_of(&self, path: &VPath) -> Result<(OwnedFd, Vec<u8>), StorageError> {
        let name = path
            .file_name()
            .ok_or(StorageError::PermissionDenied)?
            .to_vec();
        let dir = self.open_beneath(
            &path.parent(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )?;
        Ok((dir, name))
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

impl Storage for LocalFs {
    fn stat(&self, path: &VPath) -> Result<FileInfo, StorageError> {
        let fd = self.open_beneath(path, OFlags::PATH, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        Ok(info_from_stat(
            path.file_name().unwrap_or(b"/").to_vec(),
            &st,
        ))
    }

    fn list(&self, dir: &VPath) -> Result<Vec<FileInfo>, StorageError> {
        let fd = self.open_beneath(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())?;
        let mut out = Vec::new();
        let reader = rustix::fs::Dir::read_from(&fd)?;
        for entry in reader {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." || name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let st = match rustix::fs::statat(&fd, os(name), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(_) => continue, // removed meanwhile
            };
            let mut info = info_from_stat(name.to_vec(), &st);
            if info.kind == FileKind::Symlink {
                // Show what the link points to, if that is inside the root; hide it otherwise.
                let Ok(child) = dir.join(name) else { continue };
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
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn open_read(&self, path: &VPath) -> Result<File, StorageError> {
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty())?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(StorageError::NotAFile);
        }
        // Regular files ignore O_NONBLOCK; it only kept a FIFO from blocking the open.
        Ok(File::from(fd))
    }

    fn open_write(&self, path: &VPath, mode: WriteMode) -> Result<Upload, StorageError> {
        let (dir, name) = self.parent_of(path)?;
        let file_mode = Mode::from_raw_mode(0o644);
        let in_place = |file: OwnedFd| Upload {
            file: File::from(file),
            finish: Finish::InPlace,
        };
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
                Ok(in_place(fd))
            }
            WriteMode::Append => {
                let fd = self.open_beneath(
                    path,
                    OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NONBLOCK,
                    file_mode,
                )?;
                ensure_regular(&fd)?;
                Ok(in_place(fd))
            }
            WriteMode::Resume(offset) => {
                let fd =
                    self.open_beneath(path, OFlags::WRONLY | OFlags::NONBLOCK, Mode::empty())?;
                ensure_regular(&fd)?;
                let st = rustix::fs::fstat(&fd)?;
                if offset > u64::try_from(st.st_size).unwrap_or(0) {
                    return Err(StorageError::BadOffset);
                }
                rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(offset))?;
                Ok(Upload {
                    file: File::from(fd),
                    finish: Finish::Resume { offset },
                })
            }
            WriteMode::Replace => {
                match rustix::fs::statat(&dir, os(&name), AtFlags::SYMLINK_NOFOLLOW) {
                    Err(Errno::NOENT) => self.open_write(path, WriteMode::CreateNew),
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
                        let (fd, tmp) = create_temp(&dir, keep_mode)?;
                        Ok(Upload {
                            file: File::from(fd),
                            finish: Finish::Replace { dir, tmp, name },
                        })
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

fn ensure_regular(fd: &impl AsFd) -> Result<(), StorageError> {
    let st = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(StorageError::NotAFile);
    }
    Ok(())
}

/// Creates a temporary file with a random name in `dir`.
fn create_temp(dir: &OwnedFd, mode: Mode) -> Result<(OwnedFd, Vec<u8>), StorageError> {
    for _ in 0..16 {
        let mut name = TEMP_PREFIX.to_vec();
        name.extend_from_slice(random_hex(8).as_bytes());
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
    use std::io::{Read, Write};

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

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let (_o, _r, fs) = setup();
        for p in ["abs-link", "rel-link", "dir-link/secret"] {
            assert!(
                matches!(fs.open_read(&vp(p)), Err(StorageError::OutsideRoot)),
                "{p}"
            );
            assert!(
                matches!(fs.stat(&vp(p)), Err(StorageError::OutsideRoot)),
                "{p}"
            );
        }
        assert!(matches!(
            fs.list(&vp("dir-link")),
            Err(StorageError::OutsideRoot)
        ));
        assert!(matches!(
            fs.open_write(&vp("dir-link/new"), WriteMode::Replace),
            Err(StorageError::OutsideRoot)
        ));
        let mut s = String::new();
        fs.open_read(&vp("good-link"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn listing_hides_escaping_links() {
        let (_o, _r, fs) = setup();
        let names: Vec<Vec<u8>> = fs
            .list(&VPath::root())
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, vec![b"good-link".to_vec(), b"sub".to_vec()]);
    }

    #[test]
    fn replace_is_atomic_and_abandon_keeps_old() {
        let (_o, root, fs) = setup();
        let p = vp("sub/a.txt");
        let mut up = fs.open_write(&p, WriteMode::Replace).unwrap();
        up.file.write_all(b"partial").unwrap();
        drop(up);
        assert_eq!(
            std::fs::read(root.path().join("sub/a.txt")).unwrap(),
            b"hello"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("sub")).unwrap().count(),
            1
        );
        let mut up = fs.open_write(&p, WriteMode::Replace).unwrap();
        up.file.write_all(b"new").unwrap();
        up.commit(3).unwrap();
        assert_eq!(
            std::fs::read(root.path().join("sub/a.txt")).unwrap(),
            b"new"
        );
        assert_eq!(
            std::fs::read_dir(root.path().join("sub")).unwrap().count(),
            1
        );
    }

    #[test]
    fn new_upload_stays_when_abandoned_and_resumes() {
        let (_o, root, fs) = setup();
        let p = vp("new.bin");
        let mut up = fs.open_write(&p, WriteMode::Replace).unwrap();
        up.file.write_all(b"12345").unwrap();
        drop(up);
        assert_eq!(
            std::fs::read(root.path().join("new.bin")).unwrap(),
            b"12345"
        );
        let mut up = fs.open_write(&p, WriteMode::Resume(3)).unwrap();
        assert_eq!(
            std::fs::read(root.path().join("new.bin")).unwrap(),
            b"12345",
            "nothing cut before data"
        );
        up.file.write_all(b"XY").unwrap();
        up.commit(2).unwrap();
        assert_eq!(
            std::fs::read(root.path().join("new.bin")).unwrap(),
            b"123XY"
        );
        assert!(matches!(
            fs.open_write(&p, WriteMode::Resume(99)),
            Err(StorageError::BadOffset)
        ));
    }

    #[test]
    fn dir_ops() {
        let (_o, root, fs) = setup();
        fs.mkdir(&vp("d")).unwrap();
        assert!(matches!(
            fs.mkdir(&vp("d")),
            Err(StorageError::AlreadyExists)
        ));
        fs.rename(&vp("d"), &vp("sub/e"), false).unwrap();
        assert!(matches!(
            fs.rename(&vp("good-link"), &vp("sub/a.txt"), false),
            Err(StorageError::AlreadyExists)
        ));
        assert!(root.path().join("sub/e").is_dir());
        assert!(matches!(fs.rmdir(&vp("sub")), Err(StorageError::NotEmpty)));
        assert!(matches!(
            fs.delete(&vp("sub/e")),
            Err(StorageError::NotAFile)
        ));
        fs.rmdir(&vp("sub/e")).unwrap();
        // Deleting a link that points outside removes the link, not the target.
        fs.delete(&vp("abs-link")).unwrap();
        assert!(!root.path().join("abs-link").exists());
        fs.set_mtime(&vp("sub/a.txt"), 1_000_000_000).unwrap();
        assert_eq!(fs.stat(&vp("sub/a.txt")).unwrap().mtime, 1_000_000_000);
        fs.chmod(&vp("sub/a.txt"), 0o4755).unwrap();
        assert_eq!(fs.stat(&vp("sub/a.txt")).unwrap().mode, 0o755, "no setuid");
    }
}
