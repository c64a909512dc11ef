//! [`S3Fs`]: homes in an S3-compatible object store, through the `object_store` crate.
//!
//! FTP over objects, as the scale-out design describes it (docs/SCALE-OUT.md):
//! - a file `/a/b.txt` of a home with prefix `homes/alice` is the object `homes/alice/a/b.txt`;
//! - a directory is a prefix. MKD writes an empty marker object `DIR/.wharf-dir` so that an empty
//!   directory exists; a directory also exists when any object lies beneath it (written by
//!   another tool). The marker never shows in a listing and cannot be written by a client;
//! - a listing streams the store's paginated listing with the delimiter `/`;
//! - an upload is a multipart upload with bounded memory ([`UPLOAD_PART`] ×
//!   [`UPLOAD_CONCURRENCY`]); the object appears only when it completes, and an upload that
//!   breaks is aborted: no torn object is ever visible, and a broken new upload leaves nothing
//!   (there is nothing to resume; the client starts again);
//! - REST+STOR and APPE write a new object made of the old one's first bytes (copied through
//!   this node) and what the client sends; it replaces the old one when complete;
//! - RNFR/RNTO copy and then delete, object by object for a directory: not atomic;
//! - MFMT stores the time as the object's metadata `x-amz-meta-wharf-mtime` (a copy of the object
//!   onto itself); MDTM and MLST show it, a listing shows the store's own time;
//! - SITE CHMOD is not offered, and usage for quotas cannot be told.

use std::borrow::Cow;
use std::path::{Component, Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    Attribute, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use wharf_proto::{FileInfo, FileKind, VPath};

use super::{
    BoxFuture, Capabilities, EntryStream, ReadBody, ReadHandle, Storage, StorageError,
    StorageProvider, WriteHandle, WriteMode,
};
use crate::auth::Account;

/// The marker object that makes an empty directory exist.
pub const DIR_MARKER: &str = ".wharf-dir";
/// The metadata key (`x-amz-meta-…`) that holds a time set by MFMT.
const MTIME_KEY: &str = "wharf-mtime";
/// Bytes buffered before an upload becomes a multipart upload, and the size of each part.
pub const UPLOAD_PART: usize = 8 << 20;
/// Parts of one upload in flight at once.
pub const UPLOAD_CONCURRENCY: usize = 3;
/// Keys asked for in one listing request.
const LIST_PAGE: usize = 1000;
/// Subdirectories of a listing page checked at once (see [`S3Entries::next_page`]).
const PREFIX_CHECKS: usize = 16;

/// Where the objects are: the `[storage]` table with `backend = "s3"`.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// `http(s)://HOST:PORT` of an S3-compatible store; `None`: AWS itself (by region).
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    /// The key prefix every home lies under (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// From the config, or `None`: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` from the
    /// environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// A client for the store; `headers` go with every request (signed).
    fn build(&self, headers: Option<reqwest::header::HeaderMap>) -> Result<AmazonS3, String> {
        // reqwest's TLS takes the process's rustls provider; the workspace's is ring (the
        // call fails harmlessly when one is installed already).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut options = ClientOptions::new()
            // A download to a slow client may take hours: no limit on a whole request, but on
            // connecting, and on a request that sends nothing for a while.
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(5));
        if self
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            options = options.with_allow_http(true);
        }
        if let Some(h) = headers {
            options = options.with_default_headers(h);
        }
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        };
        let mut b = AmazonS3Builder::from_env()
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &self.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &self.secret_access_key {
            b = b.with_secret_access_key(s);
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// Homes in one bucket.
pub struct S3Provider {
    settings: Arc<S3Settings>,
    store: Arc<AmazonS3>,
    /// The server's root: a home under it is the prefix of its path below it.
    root: PathBuf,
}

impl std::fmt::Debug for S3Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl S3Provider {
    pub fn new(settings: S3Settings, root: PathBuf) -> Result<S3Provider, String> {
        let store = settings.build(None)?;
        Ok(S3Provider {
            settings: Arc::new(settings),
            store: Arc::new(store),
            root,
        })
    }

    /// The key prefix of a home: the home's path below the root (or the whole path, when it
    /// is elsewhere), under the configured prefix.
    pub fn home_prefix(&self, home: &FsPath) -> Result<String, StorageError> {
        let rel = home.strip_prefix(&self.root).unwrap_or(home);
        let mut key = self.settings.prefix.clone();
        for c in rel.components() {
            match c {
                Component::Normal(part) => {
                    let part = part.to_str().ok_or(StorageError::InvalidName)?;
                    if !key.is_empty() {
                        key.push('/');
                    }
                    key.push_str(part);
                }
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(StorageError::InvalidName);
                }
            }
        }
        Ok(key)
    }

    /// One listing request: whether the bucket answers with these credentials.
    pub async fn probe(&self) -> Result<(), String> {
        let opts = PaginatedListOptions {
            max_keys: Some(1),
            ..PaginatedListOptions::default()
        };
        self.store
            .list_paginated(None, opts)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl StorageProvider for S3Provider {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            set_mtime: true,
            chmod: false,
            append: true,
            atomic_rename: false,
        }
    }

    fn open_home<'a>(
        &'a self,
        account: &'a Account,
    ) -> BoxFuture<'a, Result<Arc<dyn Storage>, StorageError>> {
        Box::pin(async move {
            let home = self.home_prefix(&account.home)?;
            let fs: Arc<dyn Storage> = Arc::new(S3Fs {
                settings: self.settings.clone(),
                store: self.store.clone(),
                home,
            });
            Ok(fs)
        })
    }
}

/// One home: the objects under a prefix.
pub struct S3Fs {
    settings: Arc<S3Settings>,
    store: Arc<AmazonS3>,
    /// No trailing `/`; empty for the bucket's top.
    home: String,
}

fn store_error(e: object_store::Error) -> StorageError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => StorageError::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => StorageError::AlreadyExists,
        E::InvalidPath { .. } => StorageError::InvalidName,
        E::NotSupported { .. } | E::NotImplemented { .. } => StorageError::Unsupported,
        other => StorageError::Unavailable(other.to_string()),
    }
}

/// A file's facts from its object.
fn file_info(name: &str, size: u64, mtime: i64) -> FileInfo {
    FileInfo {
        name: name.as_bytes().to_vec(),
        kind: FileKind::File,
        size,
        mtime,
        mode: 0o644,
        nlink: 1,
    }
}

fn dir_info(name: &str, mtime: i64) -> FileInfo {
    FileInfo {
        name: name.as_bytes().to_vec(),
        kind: FileKind::Dir,
        size: 4096,
        mtime,
        mode: 0o755,
        nlink: 1,
    }
}

/// The last component of a path, `/` for the root.
fn name_of(path: &VPath) -> String {
    String::from_utf8_lossy(path.file_name().unwrap_or(b"/")).into_owned()
}

/// The first `max` keys under `prefix` (no delimiter: everything beneath).
async fn first_keys(
    store: &AmazonS3,
    prefix: &str,
    max: usize,
) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
    let opts = PaginatedListOptions {
        max_keys: Some(max),
        ..PaginatedListOptions::default()
    };
    let page = store
        .list_paginated(Some(prefix), opts)
        .await
        .map_err(store_error)?;
    Ok(page.result.objects)
}

/// What a HEAD tells.
struct Head {
    size: u64,
    mtime: i64,
    e_tag: Option<String>,
}

impl S3Fs {
    /// The key of a path (the home's prefix for the root). Names must be UTF-8 and may not be
    /// the directory marker.
    fn key(&self, path: &VPath) -> Result<String, StorageError> {
        let mut key = self.home.clone();
        for c in path.components() {
            let c = std::str::from_utf8(c).map_err(|_| StorageError::InvalidName)?;
            if c == DIR_MARKER {
                return Err(StorageError::InvalidName);
            }
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(c);
        }
        Ok(key)
    }

    fn object(key: &str) -> Result<Path, StorageError> {
        Path::parse(key).map_err(|_| StorageError::InvalidName)
    }

    /// The prefix of what lies in a directory: `KEY/`, or empty for a home at the top.
    fn dir_prefix(key: &str) -> String {
        if key.is_empty() {
            String::new()
        } else {
            format!("{key}/")
        }
    }

    async fn head(&self, key: &str) -> Result<Option<Head>, StorageError> {
        if key.is_empty() || key == self.home {
            return Ok(None);
        }
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.store.get_opts(&Self::object(key)?, opts).await {
            Ok(r) => {
                let set = r
                    .attributes
                    .get(&Attribute::Metadata(Cow::Borrowed(MTIME_KEY)))
                    .and_then(|v| v.as_ref().parse::<i64>().ok());
                Ok(Some(Head {
                    size: r.meta.size,
                    mtime: set.unwrap_or_else(|| r.meta.last_modified.timestamp()),
                    e_tag: r.meta.e_tag,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn first_keys(
        &self,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
        first_keys(&self.store, prefix, max).await
    }

    /// Whether a directory exists, and its time (its marker's, or the first object's beneath).
    async fn dir_time(&self, key: &str) -> Result<Option<i64>, StorageError> {
        if key == self.home {
            return Ok(Some(crate::transfer::unix_now()));
        }
        let first = self.first_keys(&Self::dir_prefix(key), 1).await?;
        Ok(first.first().map(|m| m.last_modified.timestamp()))
    }

    async fn stat_key(&self, path: &VPath, key: &str) -> Result<FileInfo, StorageError> {
        if let Some(h) = self.head(key).await? {
            return Ok(file_info(&name_of(path), h.size, h.mtime));
        }
        match self.dir_time(key).await? {
            Some(t) => Ok(dir_info(&name_of(path), t)),
            None => Err(StorageError::NotFound),
        }
    }

    /// The parent of `path` must be a directory.
    async fn check_parent(&self, path: &VPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(StorageError::PermissionDenied);
        }
        let parent = path.parent();
        let key = self.key(&parent)?;
        if self.head(&key).await?.is_some() {
            return Err(StorageError::NotADirectory);
        }
        match self.dir_time(&key).await? {
            Some(_) => Ok(()),
            None => Err(StorageError::NotFound),
        }
    }

    async fn put_marker(&self, dir_key: &str) -> Result<(), StorageError> {
        if dir_key == self.home {
            return Ok(());
        }
        let marker = Self::object(&format!("{dir_key}/{DIR_MARKER}"))?;
        self.store
            .put(&marker, PutPayload::new())
            .await
            .map(drop)
            .map_err(store_error)
    }

    /// Keeps the directory a removed object leaves: its marker, so that it does not vanish
    /// with its last file.
    async fn keep_parent(&self, path: &VPath) -> Result<(), StorageError> {
        let parent = self.key(&path.parent())?;
        self.put_marker(&parent).await
    }

    async fn delete_key(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&Self::object(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Every key beneath a directory.
    async fn all_keys(&self, dir_key: &str) -> Result<Vec<String>, StorageError> {
        let prefix = Self::dir_prefix(dir_key);
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let opts = PaginatedListOptions {
                page_token: token.take(),
                max_keys: Some(LIST_PAGE),
                ..PaginatedListOptions::default()
            };
            let page = self
                .store
                .list_paginated(Some(&prefix), opts)
                .await
                .map_err(store_error)?;
            keys.extend(
                page.result
                    .objects
                    .into_iter()
                    .map(|m| m.location.as_ref().to_string()),
            );
            match page.page_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    async fn rename_now(
        &self,
        from: &VPath,
        to: &VPath,
        replace: bool,
    ) -> Result<(), StorageError> {
        if from.is_root() || to.is_root() {
            return Err(StorageError::PermissionDenied);
        }
        let (fk, tk) = (self.key(from)?, self.key(to)?);
        let from_file = self.head(&fk).await?.is_some();
        if !from_file && self.dir_time(&fk).await?.is_none() {
            return Err(StorageError::NotFound);
        }
        self.check_parent(to).await?;
        if !from_file && tk.starts_with(&Self::dir_prefix(&fk)) {
            return Err(StorageError::InvalidName);
        }
        if fk == tk {
            return Ok(());
        }
        let to_file = self.head(&tk).await?.is_some();
        let to_dir = !to_file && self.dir_time(&tk).await?.is_some();
        if (to_file || to_dir) && !replace {
            return Err(StorageError::AlreadyExists);
        }
        if to_dir {
            let inside = self.first_keys(&Self::dir_prefix(&tk), 2).await?;
            let marker = format!("{tk}/{DIR_MARKER}");
            if inside.iter().any(|m| m.location.as_ref() != marker) {
                return Err(StorageError::NotEmpty);
            }
        }
        if to_file != from_file && (to_file || to_dir) {
            return Err(if from_file {
                StorageError::NotAFile
            } else {
                StorageError::NotADirectory
            });
        }
        self.keep_parent(from).await?;
        if from_file {
            self.store
                .copy(&Self::object(&fk)?, &Self::object(&tk)?)
                .await
                .map_err(store_error)?;
            return self.delete_key(&fk).await;
        }
        // A directory: each object beneath, copied then deleted.
        let from_prefix = Self::dir_prefix(&fk);
        let to_prefix = Self::dir_prefix(&tk);
        for key in self.all_keys(&fk).await? {
            let Some(rest) = key.strip_prefix(&from_prefix) else {
                continue;
            };
            let new_key = format!("{to_prefix}{rest}");
            self.store
                .copy(&Self::object(&key)?, &Self::object(&new_key)?)
                .await
                .map_err(store_error)?;
            self.delete_key(&key).await?;
        }
        Ok(())
    }

    async fn set_mtime_now(&self, path: &VPath, unix_secs: i64) -> Result<(), StorageError> {
        let key = self.key(path)?;
        if self.head(&key).await?.is_none() {
            return Err(match self.dir_time(&key).await? {
                Some(_) => StorageError::Unsupported,
                None => StorageError::NotFound,
            });
        }
        // A copy onto itself that replaces the metadata: the only way S3 changes it. The
        // headers go with every request of a client, so this copy gets a client of its own.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-amz-metadata-directive",
            reqwest::header::HeaderValue::from_static("REPLACE"),
        );
        let value = reqwest::header::HeaderValue::from_str(&unix_secs.to_string())
            .map_err(|_| StorageError::InvalidName)?;
        headers.insert(
            reqwest::header::HeaderName::from_static("x-amz-meta-wharf-mtime"),
            value,
        );
        let store = self
            .settings
            .build(Some(headers))
            .map_err(StorageError::Unavailable)?;
        let object = Self::object(&key)?;
        store.copy(&object, &object).await.map_err(store_error)
    }

    async fn open_write_now(
        &self,
        path: &VPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        let key = self.key(path)?;
        self.check_parent(path).await?;
        let existing = self.head(&key).await?;
        if existing.is_none() && self.dir_time(&key).await?.is_some() {
            return Err(StorageError::NotAFile);
        }
        // How many of the old object's bytes the new one starts with.
        let keep = match (mode, &existing) {
            (WriteMode::CreateNew, Some(_)) => return Err(StorageError::AlreadyExists),
            (WriteMode::Replace | WriteMode::CreateNew, _) => 0,
            (WriteMode::Resume(n), Some(h)) if n > h.size => return Err(StorageError::BadOffset),
            (WriteMode::Resume(n), Some(_)) => n,
            (WriteMode::Resume(0), None) => 0,
            (WriteMode::Resume(_), None) => return Err(StorageError::NotFound),
            (WriteMode::Append, Some(h)) => h.size,
            (WriteMode::Append, None) => 0,
        };
        let object = Self::object(&key)?;
        let store: Arc<dyn ObjectStore> = self.store.clone();
        let writer = BufWriter::with_capacity(store, object.clone(), UPLOAD_PART)
            .with_max_concurrency(UPLOAD_CONCURRENCY);
        let state = if keep == 0 {
            State::Writing(Box::new(writer))
        } else {
            // The old bytes go in first, once the upload runs (not while the client waits
            // for its 150 reply).
            let e_tag = existing.and_then(|h| h.e_tag);
            let source = self.store.clone();
            State::Prefill(Box::pin(prefill(source, object, e_tag, keep, writer)))
        };
        Ok(Box::new(S3Upload {
            state,
            discarded: false,
        }))
    }
}

/// Copies the first `keep` bytes of the object into the upload that replaces it.
async fn prefill(
    store: Arc<AmazonS3>,
    object: Path,
    e_tag: Option<String>,
    keep: u64,
    mut writer: BufWriter,
) -> Result<Box<BufWriter>, StorageError> {
    let opts = GetOptions {
        range: Some(GetRange::Bounded(0..keep)),
        if_match: e_tag,
        ..GetOptions::default()
    };
    let result = store.get_opts(&object, opts).await.map_err(store_error)?;
    let mut reader = StreamReader::new(result.into_stream());
    let copied = tokio::io::copy(&mut reader, &mut writer).await?;
    if copied != keep {
        let _ = writer.abort().await;
        return Err(StorageError::Unavailable(format!(
            "the stored file changed while it was resumed ({copied} of {keep} bytes)"
        )));
    }
    Ok(Box::new(writer))
}

type Prefilling =
    Pin<Box<dyn std::future::Future<Output = Result<Box<BufWriter>, StorageError>> + Send>>;

enum State {
    Prefill(Prefilling),
    Writing(Box<BufWriter>),
    /// Committed, failed or aborted.
    Done,
}

/// An upload into an object.
struct S3Upload {
    state: State,
    discarded: bool,
}

impl S3Upload {
    /// The writer, once the old bytes are in.
    fn poll_writer(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<&mut BufWriter>> {
        if let State::Prefill(fut) = &mut self.state {
            match ready!(fut.as_mut().poll(cx)) {
                Ok(w) => self.state = State::Writing(w),
                Err(e) => {
                    self.state = State::Done;
                    return Poll::Ready(Err(std::io::Error::other(e)));
                }
            }
        }
        match &mut self.state {
            State::Writing(w) => Poll::Ready(Ok(w)),
            _ => Poll::Ready(Err(std::io::Error::other("the upload has ended"))),
        }
    }
}

impl AsyncWrite for S3Upload {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let w = ready!(this.poll_writer(cx))?;
        Pin::new(w).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let w = ready!(this.poll_writer(cx))?;
        Pin::new(w).poll_flush(cx)
    }

    /// Shutting down is committing; see [`WriteHandle::commit`].
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl WriteHandle for S3Upload {
    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move {
            std::future::poll_fn(|cx| self.poll_writer(cx).map_ok(drop)).await?;
            let state = std::mem::replace(&mut self.state, State::Done);
            let State::Writing(mut w) = state else {
                return Err(StorageError::Io(std::io::Error::other(
                    "the upload has ended",
                )));
            };
            // Completes the multipart upload (or writes the object in one request when it
            // was small): only now does the object appear.
            if let Err(e) = w.shutdown().await {
                let _ = w.abort().await;
                return Err(StorageError::Io(e));
            }
            Ok(())
        })
    }

    fn discard(&mut self) {
        self.discarded = true;
    }
}

impl Drop for S3Upload {
    /// An upload that was not committed is aborted: its parts go, no object appears, and an
    /// object it was to replace stays as it was.
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Done);
        let mut writer = match state {
            State::Writing(w) => w,
            State::Prefill(_) | State::Done => return,
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = writer.abort().await {
                    tracing::warn!(error = %e, "aborting an unfinished upload failed");
                }
            });
        }
    }
}

/// An object's bytes as an [`AsyncRead`].
struct StreamReader {
    stream: Pin<Box<dyn Stream<Item = object_store::Result<Bytes>> + Send>>,
    chunk: Bytes,
}

impl StreamReader {
    fn new(stream: Pin<Box<dyn Stream<Item = object_store::Result<Bytes>> + Send>>) -> Self {
        StreamReader {
            stream,
            chunk: Bytes::new(),
        }
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(this.chunk.get(..n).unwrap_or_default());
                this.chunk.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(this.stream.as_mut().poll_next(cx)) {
                Some(Ok(b)) => this.chunk = b,
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// A listing, a page of the store's listing at a time.
struct S3Entries {
    store: Arc<AmazonS3>,
    prefix: String,
    token: Option<String>,
    done: bool,
}

impl S3Entries {
    async fn next_page(&mut self) -> Result<Option<Vec<FileInfo>>, StorageError> {
        while !self.done {
            let opts = PaginatedListOptions {
                delimiter: Some(Cow::Borrowed("/")),
                max_keys: Some(LIST_PAGE),
                page_token: self.token.take(),
                ..PaginatedListOptions::default()
            };
            let page = self
                .store
                .list_paginated(Some(&self.prefix), opts)
                .await
                .map_err(store_error)?;
            self.token = page.page_token;
            self.done = self.token.is_none();
            let prefix = self.prefix.as_str();
            let name = |p: &Path| -> Option<String> {
                let rest = p.as_ref().strip_prefix(prefix)?;
                (!rest.is_empty() && !rest.contains('/') && rest != DIR_MARKER)
                    .then(|| rest.to_string())
            };
            // A common prefix is a directory only while some key lies under it: stores built
            // on a file system (SeaweedFS) keep listing a folder after its last object went.
            let dirs: Vec<(String, String)> = page
                .result
                .common_prefixes
                .iter()
                .filter_map(|p| name(p).map(|n| (n, format!("{}/", p.as_ref()))))
                .collect();
            let store = &self.store;
            let checked: Vec<Result<Option<FileInfo>, StorageError>> =
                futures_util::stream::iter(dirs)
                    .map(|(n, prefix)| async move {
                        let first = first_keys(store, &prefix, 1).await?;
                        Ok(first
                            .first()
                            .map(|m| dir_info(&n, m.last_modified.timestamp())))
                    })
                    .buffered(PREFIX_CHECKS)
                    .collect()
                    .await;
            let mut batch = Vec::new();
            for dir in checked {
                batch.extend(dir?);
            }
            batch.extend(page.result.objects.iter().filter_map(|m| {
                name(&m.location).map(|n| file_info(&n, m.size, m.last_modified.timestamp()))
            }));
            batch.sort_by(|a, b| a.name.cmp(&b.name));
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }
}

impl EntryStream for S3Entries {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<FileInfo>>, StorageError>> {
        Box::pin(self.next_page())
    }
}

impl Storage for S3Fs {
    fn stat<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<FileInfo, StorageError>> {
        Box::pin(async move {
            let key = self.key(path)?;
            self.stat_key(path, &key).await
        })
    }

    fn list<'a>(
        &'a self,
        dir: &'a VPath,
    ) -> BoxFuture<'a, Result<Box<dyn EntryStream>, StorageError>> {
        Box::pin(async move {
            let key = self.key(dir)?;
            if self.stat_key(dir, &key).await?.kind != FileKind::Dir {
                return Err(StorageError::NotADirectory);
            }
            let entries: Box<dyn EntryStream> = Box::new(S3Entries {
                store: self.store.clone(),
                prefix: Self::dir_prefix(&key),
                token: None,
                done: false,
            });
            Ok(entries)
        })
    }

    fn open_read<'a>(
        &'a self,
        path: &'a VPath,
        offset: u64,
    ) -> BoxFuture<'a, Result<ReadHandle, StorageError>> {
        Box::pin(async move {
            let key = self.key(path)?;
            let Some(head) = self.head(&key).await? else {
                return Err(match self.dir_time(&key).await? {
                    Some(_) => StorageError::NotAFile,
                    None => StorageError::NotFound,
                });
            };
            if offset > head.size {
                return Err(StorageError::BadOffset);
            }
            let body: Box<dyn AsyncRead + Send + Unpin> = if offset == head.size {
                Box::new(tokio::io::empty())
            } else {
                let opts = GetOptions {
                    range: (offset > 0).then_some(GetRange::Offset(offset)),
                    if_match: head.e_tag,
                    ..GetOptions::default()
                };
                let result = self
                    .store
                    .get_opts(&Self::object(&key)?, opts)
                    .await
                    .map_err(store_error)?;
                Box::new(StreamReader::new(result.into_stream()))
            };
            Ok(ReadHandle {
                len: head.size,
                body: ReadBody::Stream(body),
            })
        })
    }

    fn open_write<'a>(
        &'a self,
        path: &'a VPath,
        mode: WriteMode,
    ) -> BoxFuture<'a, Result<Box<dyn WriteHandle>, StorageError>> {
        Box::pin(self.open_write_now(path, mode))
    }

    fn mkdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let key = self.key(path)?;
            self.check_parent(path).await?;
            if self.head(&key).await?.is_some() || self.dir_time(&key).await?.is_some() {
                return Err(StorageError::AlreadyExists);
            }
            self.put_marker(&key).await
        })
    }

    fn rmdir<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            if path.is_root() {
                return Err(StorageError::PermissionDenied);
            }
            let key = self.key(path)?;
            if self.head(&key).await?.is_some() {
                return Err(StorageError::NotADirectory);
            }
            let inside = self.first_keys(&Self::dir_prefix(&key), 2).await?;
            let marker = format!("{key}/{DIR_MARKER}");
            if inside.is_empty() {
                return Err(StorageError::NotFound);
            }
            if inside.iter().any(|m| m.location.as_ref() != marker) {
                return Err(StorageError::NotEmpty);
            }
            self.keep_parent(path).await?;
            self.delete_key(&marker).await
        })
    }

    fn delete<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let key = self.key(path)?;
            if self.head(&key).await?.is_none() {
                return Err(match self.dir_time(&key).await? {
                    Some(_) => StorageError::NotAFile,
                    None => StorageError::NotFound,
                });
            }
            self.keep_parent(path).await?;
            self.delete_key(&key).await
        })
    }

    fn rename<'a>(
        &'a self,
        from: &'a VPath,
        to: &'a VPath,
        replace: bool,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.rename_now(from, to, replace))
    }

    fn set_mtime<'a>(
        &'a self,
        path: &'a VPath,
        unix_secs: i64,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(self.set_mtime_now(path, unix_secs))
    }

    fn chmod<'a>(
        &'a self,
        _path: &'a VPath,
        _mode: u32,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(std::future::ready(Err(StorageError::Unsupported)))
    }
}
