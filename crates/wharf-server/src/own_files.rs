//! The server's own files — its config file, the user database and its companions, the TLS
//! certificate and key, the transfer log — which no command may ever reach, wherever an admin
//! puts them (`docs/SECURITY.md`, "The server's own files").
//!
//! A file is the server's when it is the same file (device and inode: a hard link or a symbolic
//! link to it is the same file) or when it has the same name in the same directory (so that a
//! companion SQLite creates later, a log rotated and made again, or a certificate replaced by a
//! renewal is the server's from its first byte, and no client can create one first). The
//! local storage backend asks [`OwnFiles::is_own`] of everything it opens and
//! [`OwnFiles::is_own_name`] of every name it creates, removes, renames or lists; a refused file
//! is `PermissionDenied` (550), and a listing leaves it out.
//!
//! The inodes are read again when the server (re)loads its settings, and at most once a second
//! when asked, so a file the server replaced is known by its new inode soon after.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How old the inodes may get before a check reads them again.
const REFRESH: Duration = Duration::from_secs(1);

/// One file the server uses, and what it is (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnFile {
    pub path: PathBuf,
    pub what: &'static str,
}

impl OwnFile {
    pub fn new(path: impl Into<PathBuf>, what: &'static str) -> OwnFile {
        OwnFile {
            path: path.into(),
            what,
        }
    }
}

/// The set of the server's own files, shared by every open home.
#[derive(Debug, Default)]
pub struct OwnFiles {
    inner: RwLock<Known>,
}

#[derive(Debug, Default)]
struct Known {
    files: Vec<OwnFile>,
    /// (device, inode) of each file that exists.
    inodes: HashSet<(u64, u64)>,
    /// (device, inode) of the directory, and the name in it.
    names: HashSet<(u64, u64, Vec<u8>)>,
    /// The names alone: a path whose last part is none of them needs no look at its directory.
    bare_names: HashSet<Vec<u8>>,
    /// (device, inode) of every directory on the way to one of the files: renaming or removing
    /// one would take the file out of its known place (and let another take it).
    dirs: HashSet<(u64, u64)>,
    read_at: Option<Instant>,
}

impl Known {
    fn read(files: Vec<OwnFile>) -> Known {
        let mut known = Known {
            files,
            read_at: Some(Instant::now()),
            ..Known::default()
        };
        for f in &known.files {
            let mut spellings = vec![f.path.clone()];
            // The file the path leads to (a symlinked certificate, say) is named too.
            if let Ok(canonical) = std::fs::canonicalize(&f.path) {
                spellings.push(canonical);
            }
            for path in spellings {
                if let Ok(st) = rustix::fs::stat(&path) {
                    known.inodes.insert((st.st_dev, st.st_ino));
                }
                if let (Some(dir), Some(name)) = (parent(&path), path.file_name())
                    && let Ok(st) = rustix::fs::stat(dir)
                {
                    let name = name.as_bytes().to_vec();
                    known.bare_names.insert(name.clone());
                    known.names.insert((st.st_dev, st.st_ino, name));
                }
                let mut up = std::fs::canonicalize(&path).ok().or_else(|| {
                    std::fs::canonicalize(parent(&path)?)
                        .ok()
                        .map(|d| d.join("x"))
                });
                while let Some(dir) = up.as_deref().and_then(Path::parent) {
                    if let Ok(st) = rustix::fs::stat(dir) {
                        known.dirs.insert((st.st_dev, st.st_ino));
                    }
                    up = Some(dir.to_path_buf());
                }
            }
        }
        known
    }
}

/// The directory a path names a file in (`.` for a bare name).
fn parent(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

impl OwnFiles {
    pub fn new(files: Vec<OwnFile>) -> OwnFiles {
        OwnFiles {
            inner: RwLock::new(Known::read(files)),
        }
    }

    /// Replaces the list (a reload) and reads the files' inodes.
    pub fn set(&self, files: Vec<OwnFile>) {
        let known = Known::read(files);
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = known;
    }

    /// Reads the inodes again (the server made or replaced one of its files).
    pub fn refresh(&self) {
        let files = self.files();
        self.set(files);
    }

    /// The files, as configured.
    pub fn files(&self) -> Vec<OwnFile> {
        self.known(false).files.clone()
    }

    /// The known set, read again first when it is older than [`REFRESH`] and `fresh`.
    fn known(&self, fresh: bool) -> std::sync::RwLockReadGuard<'_, Known> {
        {
            let known = self.inner.read().unwrap_or_else(|p| p.into_inner());
            let stale = known
                .read_at
                .is_none_or(|t| t.elapsed() >= REFRESH && !known.files.is_empty());
            if !(fresh && stale) {
                return known;
            }
        }
        // One checker reads them again; the others go on with what is known.
        if let Ok(mut known) = self.inner.try_write() {
            let files = std::mem::take(&mut known.files);
            *known = Known::read(files);
        }
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether there is nothing to protect (no check needed).
    pub fn is_empty(&self) -> bool {
        self.known(false).files.is_empty()
    }

    /// Whether the file `st` describes is one of the server's.
    pub fn is_own(&self, st: &rustix::fs::Stat) -> bool {
        let known = self.known(true);
        !known.files.is_empty() && known.inodes.contains(&(st.st_dev, st.st_ino))
    }

    /// Whether `st` is a directory on the way to one of the server's files.
    pub fn is_own_dir(&self, st: &rustix::fs::Stat) -> bool {
        let known = self.known(true);
        !known.files.is_empty() && known.dirs.contains(&(st.st_dev, st.st_ino))
    }

    /// Whether one of the server's files has this name (in whatever directory): only then is
    /// [`OwnFiles::is_own_name`] worth the look at the directory.
    pub fn has_name(&self, name: &[u8]) -> bool {
        self.known(false).bare_names.contains(name)
    }

    /// Whether `name` in the directory `dir` names one of the server's files.
    pub fn is_own_name(&self, dir: &rustix::fs::Stat, name: &[u8]) -> bool {
        let known = self.known(true);
        !known.files.is_empty()
            && known
                .names
                .contains(&(dir.st_dev, dir.st_ino, name.to_vec()))
    }

    /// The files that lie inside one of `roots` (canonical directories): said at start.
    pub fn inside(&self, roots: &[PathBuf]) -> Vec<(OwnFile, PathBuf)> {
        let mut out = Vec::new();
        for f in self.files() {
            let at = std::fs::canonicalize(&f.path).ok().or_else(|| {
                let dir = std::fs::canonicalize(parent(&f.path)?).ok()?;
                Some(dir.join(f.path.file_name()?))
            });
            let Some(at) = at else { continue };
            if let Some(root) = roots.iter().find(|r| at.starts_with(r)) {
                out.push((f, root.clone()));
            }
        }
        out
    }
}

/// The companions SQLite keeps beside a database file.
pub const SQLITE_COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The database file and its companions.
pub fn sqlite_files(db: &Path) -> Vec<OwnFile> {
    let mut out = vec![OwnFile::new(db, "the user database")];
    for suffix in SQLITE_COMPANIONS {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        out.push(OwnFile::new(name, "a companion file of the user database"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_by_inode_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        std::fs::write(&key, b"secret").unwrap();
        let link = dir.path().join("hard");
        std::fs::hard_link(&key, &link).unwrap();
        let own = OwnFiles::new(sqlite_files(&dir.path().join("u.db")));
        own.set(vec![OwnFile::new(&key, "the TLS key")]);
        assert!(own.is_own(&rustix::fs::stat(&link).unwrap()));
        let d = rustix::fs::stat(dir.path()).unwrap();
        assert!(own.is_own_name(&d, b"k.key"));
        assert!(!own.is_own_name(&d, b"hard"));
        std::fs::write(dir.path().join("other"), b"x").unwrap();
        assert!(!own.is_own(&rustix::fs::stat(dir.path().join("other")).unwrap()));
    }

    #[test]
    fn companions_count_before_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let own = OwnFiles::new(sqlite_files(&dir.path().join("u.db")));
        let d = rustix::fs::stat(dir.path()).unwrap();
        for name in ["u.db", "u.db-wal", "u.db-shm", "u.db-journal"] {
            assert!(own.is_own_name(&d, name.as_bytes()), "{name}");
        }
        assert!(!own.is_own_name(&d, b"u.db-other"));
        // A file made later is known by its inode once the set is read again.
        std::fs::write(dir.path().join("u.db-wal"), b"x").unwrap();
        own.refresh();
        let st = rustix::fs::stat(dir.path().join("u.db-wal")).unwrap();
        assert!(own.is_own(&st));
    }

    #[test]
    fn inside_names_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let own = OwnFiles::new(vec![
            OwnFile::new(root.join("wharf.toml"), "the config file"),
            OwnFile::new("/nonexistent-dir/x.key", "the TLS key"),
        ]);
        let inside = own.inside(std::slice::from_ref(&root));
        assert_eq!(inside.len(), 1);
        assert_eq!(inside[0].0.what, "the config file");
    }
}
