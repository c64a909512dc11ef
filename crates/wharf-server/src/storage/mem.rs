//! [`MemFs`]: homes kept in memory. For tests (the command and transfer tests run against it as
//! well as against the local file system) and as the proof that a backend needs nothing from
//! the rest of the server but the [`Storage`] trait.
//!
//! It keeps the local backend's upload rules: a replacement appears whole when committed (the
//! old contents stay otherwise), a new file or a resumed one keeps what arrived when the upload
//! breaks.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wharf_proto::{FileInfo, FileKind, VPath};

use super::{
    BoxFuture, Capabilities, EntryStream, ReadBody, ReadHandle, Storage, StorageError,
    StorageProvider, Undone, WriteHandle, WriteMode,
};
use crate::auth::Account;

#[derive(Debug, Clone)]
struct Node {
    /// `None` for a directory.
    data: Option<Arc<Vec<u8>>>,
    mtime: i64,
    mode: u32,
}

impl Node {
    fn dir() -> Node {
        Node {
            data: None,
            mtime: now(),
            mode: 0o755,
        }
    }

    fn file(data: Vec<u8>) -> Node {
        Node {
            data: Some(Arc::new(data)),
            mtime: now(),
            mode: 0o644,
        }
    }
}

fn now() -> i64 {
    crate::transfer::unix_now()
}

/// Paths are keys: `/` and `/a/b` (the bytes of [`VPath::to_bytes`]).
type Tree = BTreeMap<Vec<u8>, Node>;

/// One home in memory. Clones share the tree.
#[derive(Debug, Clone)]
pub struct MemFs {
    tree: Arc<Mutex<Tree>>,
}

impl Default for MemFs {
    fn default() -> MemFs {
        MemFs::new()
    }
}

/// The key of `path`'s children: `/a/b/` (`/` for the root).
fn child_prefix(key: &[u8]) -> Vec<u8> {
    let mut p = key.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p
}

fn info(key: &[u8], node: &Node) -> FileInfo {
    let name = match key.iter().rposition(|&b| b == b'/') {
        Some(i) if key.len() > 1 => key.get(i + 1..).unwrap_or_default().to_vec(),
        _ => b"/".to_vec(),
    };
    FileInfo {
        name,
        kind: if node.data.is_some() {
            FileKind::File
        } else {
            FileKind::Dir
        },
        size: node.data.as_ref().map_or(4096, |d| d.len() as u64),
        mtime: node.mtime,
        mode: node.mode,
        nlink: 1,
    }
}

impl MemFs {
    /// An empty home (just `/`).
    pub fn new() -> MemFs {
        let mut tree = Tree::new();
        tree.insert(b"/".to_vec(), Node::dir());
        MemFs {
            tree: Arc::new(Mutex::new(tree)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `path` (`a/b` or `/a/b`) as a key; `None` if it is not a valid path.
    fn key(path: &[u8]) -> Option<Vec<u8>> {
        VPath::root().join(path).ok().map(|p| p.to_bytes())
    }

    /// Writes a file, creating missing parent directories (for tests).
    pub fn put(&self, path: impl AsRef<[u8]>, data: impl Into<Vec<u8>>) {
        let Ok(p) = VPath::root().join(path.as_ref()) else {
            return;
        };
        self.mkdir_all(p.parent().to_bytes());
        self.lock().insert(p.to_bytes(), Node::file(data.into()));
    }

    /// Creates a directory and its parents (for tests).
    pub fn mkdir_all(&self, path: impl AsRef<[u8]>) {
        let Ok(p) = VPath::root().join(path.as_ref()) else {
            return;
        };
        let mut tree = self.lock();
        let mut cur = VPath::root();
        for c in p.components() {
            let Ok(next) = cur.join(c) else { return };
            cur = next;
            tree.entry(cur.to_bytes()).or_insert_with(Node::dir);
        }
    }

    /// A file's contents.
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let key = Self::key(path.as_ref())?;
        let tree = self.lock();
        tree.get(&key)?.data.as_ref().map(|d| d.to_vec())
    }

    pub fn exists(&self, path: impl AsRef<[u8]>) -> bool {
        Self::key(path.as_ref()).is_some_and(|k| self.lock().contains_key(&k))
    }

    pub fn is_dir(&self, path: impl AsRef<[u8]>) -> bool {
        Self::key(path.as_ref())
            .is_some_and(|k| self.lock().get(&k).is_some_and(|n| n.data.is_none()))
    }

    /// The facts of a path.
    pub fn info(&self, path: impl AsRef<[u8]>) -> Option<FileInfo> {
        let key = Self::key(path.as_ref())?;
        let tree = self.lock();
        tree.get(&key).map(|n| info(&key, n))
    }

    /// The names in a directory, sorted.
    pub fn names(&self, dir: impl AsRef<[u8]>) -> Vec<Vec<u8>> {
        let Some(key) = Self::key(dir.as_ref()) else {
            return Vec::new();
        };
        children(&self.lock(), &key)
            .into_iter()
            .map(|i| i.name)
            .collect()
    }

    fn stat_now(&self, path: &VPath) -> Result<FileInfo, StorageError> {
        let key = path.to_bytes();
        let tree = self.lock();
        tree.get(&key)
            .map(|n| info(&key, n))
            .ok_or(StorageError::NotFound)
    }
}

fn children(tree: &Tree, key: &[u8]) -> Vec<FileInfo> {
    let prefix = child_prefix(key);
    tree.range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| {
            k.get(prefix.len()..)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(&b'/'))
        })
        .map(|(k, n)| info(k, n))
        .collect()
}

/// The parent of `path` must be a directory.
fn check_parent(tree: &Tree, path: &VPath) -> Result<(), StorageError> {
    if path.is_root() {
        return Err(StorageError::PermissionDenied);
    }
    match tree.get(&path.parent().to_bytes()) {
        None => Err(StorageError::NotFound),
        Some(n) if n.data.is_some() => Err(StorageError::NotADirectory),
        Some(_) => Ok(()),
    }
}

/// Entries handed out in batches, as a large backend would.
struct MemEntries {
    entries: std::vec::IntoIter<FileInfo>,
}

impl EntryStream for MemEntries {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<FileInfo>>, StorageError>> {
        let batch: Vec<FileInfo> = self.entries.by_ref().take(1024).collect();
        Box::pin(async move { Ok((!batch.is_empty()).then_some(batch)) })
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(async move { v })
}

impl Storage for MemFs {
    fn stat<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<FileInfo, StorageError>> {
        ready(self.stat_now(path))
    }

    fn list<'a>(
        &'a self,
        dir: &'a VPath,
    ) -> BoxFuture<'a, Result<Box<dyn EntryStream>, StorageError>> {
        let key = dir.to_bytes();
        let tree = self.lock();
        let r = match tree.get(&key) {
            None => Err(StorageError::NotFound),
            Some(n) if n.data.is_some() => Err(StorageError::NotADirectory),
            Some(_) => {
                let entries: Box<dyn EntryStream> = Box::new(MemEntries {
                    entries: children(&tree, &key).into_iter(),
                });
                Ok(entries)
            }
        };
        ready(r)
    }

    fn open_read<'a>(
        &'a self,
        path: &'a VPath,
        offset: u64,
    ) -> BoxFuture<'a, Result<ReadHandle, StorageError>> {
        let tree = self.lock();
        let r = match tree.get(&path.to_bytes()) {
            None => Err(StorageError::NotFound),
            Some(Node { data: None, .. }) => Err(StorageError::NotAFile),
            Some(Node {
                data: Some(data), ..
            }) => {
                let len = data.len() as u64;
                if offset > len {
                    Err(StorageError::BadOffset)
                } else {
                    let mut cursor = std::io::Cursor::new(SharedBytes(data.clone()));
                    cursor.set_position(offset);
                    Ok(ReadHandle {
                        len,
                        body: ReadBody::Stream(Box::new(cursor)),
                    })
                }
            }
        };
        ready(r)
    }

    fn open_write<'a>(
        &'a self,
        path: &'a VPath,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Box<dyn WriteHandle>, StorageError>> {
        ready(self.start_upload(path, mode))
    }

    fn mkdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut tree = self.lock();
        let r = check_parent(&tree, path).and_then(|()| {
            let key = path.to_bytes();
            if tree.contains_key(&key) {
                return Err(StorageError::AlreadyExists);
            }
            tree.insert(key, Node::dir());
            Ok(())
        });
        ready(r)
    }

    fn rmdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut tree = self.lock();
        let key = path.to_bytes();
        let r = match tree.get(&key) {
            _ if path.is_root() => Err(StorageError::PermissionDenied),
            None => Err(StorageError::NotFound),
            Some(n) if n.data.is_some() => Err(StorageError::NotADirectory),
            Some(_) if !children(&tree, &key).is_empty() => Err(StorageError::NotEmpty),
            Some(_) => {
                tree.remove(&key);
                Ok(())
            }
        };
        ready(r)
    }

    fn delete<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut tree = self.lock();
        let key = path.to_bytes();
        let r = match tree.get(&key) {
            None => Err(StorageError::NotFound),
            Some(n) if n.data.is_none() => Err(StorageError::NotAFile),
            Some(_) => {
                tree.remove(&key);
                Ok(())
            }
        };
        ready(r)
    }

    fn rename<'a>(
        &'a self,
        from: &'a VPath,
        to: &'a VPath,
        replace: bool,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut tree = self.lock();
        ready(rename_in(&mut tree, from, to, replace))
    }

    fn set_mtime<'a>(
        &'a self,
        path: &'a VPath,
        unix_secs: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut tree = self.lock();
        let r = match tree.get_mut(&path.to_bytes()) {
            Some(n) => {
                n.mtime = unix_secs;
                Ok(())
            }
            None => Err(StorageError::NotFound),
        };
        ready(r)
    }

    fn chmod<'a>(&'a self, path: &'a VPath, mode: u32) -> BoxFuture<'a, Result<(), StorageError>> {
        let mut tree = self.lock();
        let r = match tree.get_mut(&path.to_bytes()) {
            Some(n) => {
                n.mode = mode & 0o777;
                Ok(())
            }
            None => Err(StorageError::NotFound),
        };
        ready(r)
    }

    fn usage(&self) -> BoxFuture<'_, Result<super::Usage, StorageError>> {
        let tree = self.lock();
        let mut usage = super::Usage::default();
        for data in tree.values().filter_map(|n| n.data.as_ref()) {
            usage.files += 1;
            usage.bytes += data.len() as u64;
        }
        ready(Ok(usage))
    }
}

fn rename_in(tree: &mut Tree, from: &VPath, to: &VPath, replace: bool) -> Result<(), StorageError> {
    let (fk, tk) = (from.to_bytes(), to.to_bytes());
    let node = tree.get(&fk).cloned().ok_or(StorageError::NotFound)?;
    if from.is_root() || to.is_root() {
        return Err(StorageError::PermissionDenied);
    }
    check_parent(tree, to)?;
    let moving_dir = node.data.is_none();
    if moving_dir && tk.starts_with(&child_prefix(&fk)) {
        return Err(StorageError::InvalidName);
    }
    match tree.get(&tk) {
        Some(_) if !replace => return Err(StorageError::AlreadyExists),
        Some(t) if t.data.is_none() && !children(tree, &tk).is_empty() => {
            return Err(StorageError::NotEmpty);
        }
        Some(t) if t.data.is_none() != moving_dir => {
            return Err(if moving_dir {
                StorageError::NotADirectory
            } else {
                StorageError::NotAFile
            });
        }
        _ => {}
    }
    // The node and, for a directory, everything beneath it.
    let prefix = child_prefix(&fk);
    let moved: Vec<(Vec<u8>, Node)> = tree
        .range(fk.clone()..)
        .take_while(|(k, _)| **k == fk || k.starts_with(&prefix))
        .map(|(k, n)| (k.clone(), n.clone()))
        .collect();
    for (k, _) in &moved {
        tree.remove(k);
    }
    for (k, n) in moved {
        let mut new_key = tk.clone();
        new_key.extend_from_slice(k.get(fk.len()..).unwrap_or_default());
        tree.insert(new_key, n);
    }
    Ok(())
}

/// The bytes of a file, shared with the tree: a download reads a snapshot while the file may be
/// replaced.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// How an upload lands in the tree.
#[derive(Debug, Clone, Copy)]
enum Landing {
    /// Replaces the contents when committed; abandoned, the old contents stay.
    Replace,
    /// The file's contents up to `offset`, then what arrived (cut there when committed;
    /// abandoned, what was beyond stays, as with a file written in place).
    At { offset: usize },
    /// Appended.
    Append,
}

/// An upload into a [`MemFs`].
struct MemUpload {
    fs: MemFs,
    key: Vec<u8>,
    landing: Landing,
    buf: Vec<u8>,
    done: bool,
    /// This upload created the file: if it breaks before a byte arrived, the file goes.
    created: bool,
}

impl MemFs {
    fn start_upload(
        &self,
        path: &VPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        let mut tree = self.lock();
        check_parent(&tree, path)?;
        let key = path.to_bytes();
        let existing = tree.get(&key);
        if existing.is_some_and(|n| n.data.is_none()) {
            return Err(StorageError::NotAFile);
        }
        let landing = match (mode, existing) {
            (WriteMode::CreateNew, Some(_)) => return Err(StorageError::AlreadyExists),
            (WriteMode::Replace, Some(_)) => Landing::Replace,
            (WriteMode::Resume(n), Some(node)) => {
                let len = node.data.as_ref().map_or(0, |d| d.len());
                let offset = usize::try_from(n).map_err(|_| StorageError::BadOffset)?;
                if offset > len {
                    return Err(StorageError::BadOffset);
                }
                Landing::At { offset }
            }
            (WriteMode::Resume(_), None) => return Err(StorageError::NotFound),
            (WriteMode::Append, _) => Landing::Append,
            // A new file exists from the start, as one created on disk does.
            (WriteMode::CreateNew | WriteMode::Replace, None) => Landing::At { offset: 0 },
        };
        let created = existing.is_none();
        tree.entry(key.clone())
            .or_insert_with(|| Node::file(Vec::new()));
        Ok(Box::new(MemUpload {
            fs: self.clone(),
            key,
            landing,
            buf: Vec::new(),
            done: false,
            created,
        }))
    }
}

impl MemUpload {
    /// Puts what arrived into the tree. `complete`: the upload committed.
    fn land(&mut self, complete: bool) {
        if self.done {
            return;
        }
        self.done = true;
        let mut tree = self.fs.lock();
        let Some(node) = tree.get_mut(&self.key) else {
            return;
        };
        if !complete
            && self.created
            && self.buf.is_empty()
            && node.data.as_ref().is_some_and(|d| d.is_empty())
        {
            tree.remove(&self.key);
            return;
        }
        let old = node.data.clone().unwrap_or_default();
        let new = match self.landing {
            Landing::Replace if !complete => return,
            Landing::Replace => std::mem::take(&mut self.buf),
            Landing::Append => {
                let mut v = old.to_vec();
                v.extend_from_slice(&self.buf);
                v
            }
            Landing::At { offset } => {
                let mut v = old.get(..offset).unwrap_or_default().to_vec();
                v.extend_from_slice(&self.buf);
                if !complete {
                    v.extend_from_slice(old.get(offset + self.buf.len()..).unwrap_or_default());
                }
                v
            }
        };
        node.data = Some(Arc::new(new));
        node.mtime = now();
    }
}

impl AsyncWrite for MemUpload {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().buf.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl WriteHandle for MemUpload {
    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>> {
        self.land(true);
        ready(Ok(()))
    }

    /// Nothing of the upload lands; a file it created goes.
    fn discard(&mut self) -> Undone {
        if self.done {
            return Undone::Unchanged;
        }
        self.done = true;
        if !self.created {
            return Undone::Unchanged;
        }
        {
            let mut tree = self.fs.lock();
            if tree
                .get(&self.key)
                .is_some_and(|n| n.data.as_ref().is_some_and(|d| d.is_empty()))
            {
                tree.remove(&self.key);
            }
        }
        Undone::Removed
    }
}

impl Drop for MemUpload {
    fn drop(&mut self) {
        self.land(false);
    }
}

/// Homes in memory, one tree per `Account::home`.
#[derive(Debug)]
pub struct MemProvider {
    homes: Mutex<HashMap<PathBuf, MemFs>>,
    capabilities: Capabilities,
}

impl Default for MemProvider {
    fn default() -> MemProvider {
        MemProvider::new()
    }
}

impl MemProvider {
    pub fn new() -> MemProvider {
        MemProvider {
            homes: Mutex::new(HashMap::new()),
            capabilities: Capabilities::ALL,
        }
    }

    /// The home for `home`, created empty on first use (tests fill it through this).
    pub fn home(&self, home: &Path) -> MemFs {
        let mut homes = self.homes.lock().unwrap_or_else(|p| p.into_inner());
        homes.entry(home.to_path_buf()).or_default().clone()
    }
}

impl StorageProvider for MemProvider {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn open_home<'a>(
        &'a self,
        account: &'a Account,
    ) -> BoxFuture<'a, Result<Arc<dyn Storage>, StorageError>> {
        let fs: Arc<dyn Storage> = Arc::new(self.home(&account.home));
        ready(Ok(fs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn vp(s: &str) -> VPath {
        VPath::root().join(s.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn uploads_keep_the_local_rules() {
        let fs = MemFs::new();
        fs.put("keep.txt", "old contents");
        let mut up = fs
            .open_write(&vp("keep.txt"), WriteMode::Replace)
            .await
            .unwrap();
        up.write_all(b"partial").await.unwrap();
        drop(up);
        assert_eq!(fs.get("keep.txt").unwrap(), b"old contents");
        let mut up = fs
            .open_write(&vp("new.bin"), WriteMode::Replace)
            .await
            .unwrap();
        up.write_all(b"12345").await.unwrap();
        drop(up);
        assert_eq!(
            fs.get("new.bin").unwrap(),
            b"12345",
            "a broken new file stays"
        );
        let mut up = fs
            .open_write(&vp("new.bin"), WriteMode::Resume(3))
            .await
            .unwrap();
        up.write_all(b"X").await.unwrap();
        drop(up);
        assert_eq!(fs.get("new.bin").unwrap(), b"123X5", "overwritten in place");
        let mut up = fs
            .open_write(&vp("new.bin"), WriteMode::Resume(3))
            .await
            .unwrap();
        up.write_all(b"XY").await.unwrap();
        up.commit().await.unwrap();
        assert_eq!(fs.get("new.bin").unwrap(), b"123XY");
        assert!(matches!(
            fs.open_write(&vp("new.bin"), WriteMode::CreateNew).await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(matches!(
            fs.open_write(&vp("nodir/x"), WriteMode::Replace).await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn tree_operations() {
        let fs = MemFs::new();
        fs.put("d/a.txt", "a");
        fs.mkdir(&vp("e")).await.unwrap();
        assert!(matches!(
            fs.mkdir(&vp("e")).await,
            Err(StorageError::AlreadyExists)
        ));
        assert!(matches!(
            fs.rmdir(&vp("d")).await,
            Err(StorageError::NotEmpty)
        ));
        fs.rename(&vp("d"), &vp("e/f"), false).await.unwrap();
        assert_eq!(fs.get("e/f/a.txt").unwrap(), b"a");
        assert!(!fs.exists("d"));
        assert!(matches!(
            fs.rename(&vp("e"), &vp("e/f/g"), false).await,
            Err(StorageError::InvalidName)
        ));
        let mut r = fs.open_read(&vp("e/f/a.txt"), 0).await.unwrap();
        let ReadBody::Stream(s) = &mut r.body else {
            panic!()
        };
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"a");
        let all = super::super::collect(fs.list(&vp("e")).await.unwrap(), 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, b"f");
        assert_eq!(all[0].kind, FileKind::Dir);
        fs.delete(&vp("e/f/a.txt")).await.unwrap();
        fs.rmdir(&vp("e/f")).await.unwrap();
        assert_eq!(fs.names("e"), Vec::<Vec<u8>>::new());
    }
}
