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
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    Attribute, ClientOptions, GetOptions, GetRange, GetResult, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wharf_proto::{FileInfo, FileKind, VPath};

use super::{
    BoxFuture, Capabilities, EntryStream, ReadBody, ReadHandle, Storage, StorageError,
    StorageProvider, Undone, WriteHandle, WriteMode,
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
            .with_connect_timeout(Duration::from_secs(5))
            .with_read_timeout(Duration::from_secs(60));
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
        // Keys in the config are the whole story; without them, the environment's (and with
        // them its session token, endpoint, …).
        let base = if self.access_key_id.is_some() {
            AmazonS3Builder::new()
        } else {
            AmazonS3Builder::from_env()
        };
        let mut b = base
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_client_options(options)
            .with_retry(retry)
            .with_unsigned_payload(true);
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
}

impl StorageProvider for S3Provider {
    /// One listing request: whether the bucket answers with these credentials.
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            first_keys(&self.store, "", 1)
                .await
                .map(drop)
                .map_err(|e| format!("the bucket `{}` does not answer: {e}", self.settings.bucket))
        })
    }

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
        E::AlreadyExists { .. } => StorageError::AlreadyExists,
        // The object changed between the HEAD and the GET (its ETag).
        E::Precondition { .. } => {
            StorageError::Unavailable("the file changed while it was opened".into())
        }
        E::InvalidPath { .. } => StorageError::InvalidName,
        E::NotSupported { .. } | E::NotImplemented { .. } => StorageError::Unsupported,
        // The node's own credentials: not the user's doing, and not transient either.
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            tracing::error!(error = %e, "the store refused this node's credentials");
            StorageError::PermissionDenied
        }
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

/// The largest object S3 copies in one request (CopyObject): renames and MFMT of larger ones
/// are refused.
pub const MAX_COPY: u64 = 5 << 30;

/// What a directory's prefix holds.
#[derive(Debug, PartialEq, Eq)]
enum DirContents {
    /// No key: no directory.
    Nothing,
    /// Only its marker: an empty directory.
    Marker,
    /// Files or directories.
    More,
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

    /// Whether a directory exists, and its time (its marker's, or the first object's beneath).
    async fn dir_time(&self, key: &str) -> Result<Option<i64>, StorageError> {
        if key == self.home {
            return Ok(Some(crate::transfer::unix_now()));
        }
        let first = first_keys(&self.store, &Self::dir_prefix(key), 1).await?;
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

    /// What lies under a directory's prefix.
    async fn dir_contents(&self, key: &str) -> Result<DirContents, StorageError> {
        let inside = first_keys(&self.store, &Self::dir_prefix(key), 2).await?;
        let marker = format!("{key}/{DIR_MARKER}");
        Ok(if inside.is_empty() {
            DirContents::Nothing
        } else if inside.iter().all(|m| m.location.as_ref() == marker) {
            DirContents::Marker
        } else {
            DirContents::More
        })
    }

    /// A file's bytes from `offset` (to `end`, when given) as a streamed GET: never the whole
    /// object in memory. The ETag of the HEAD pins the GET to the same version of the object.
    async fn open_bytes(
        &self,
        path: &VPath,
        offset: u64,
        end: Option<u64>,
    ) -> Result<ReadHandle, StorageError> {
        let key = self.key(path)?;
        let head = self.file_head(&key, StorageError::NotAFile).await?;
        if offset > head.size {
            return Err(StorageError::BadOffset);
        }
        let end = end.map_or(head.size, |e| e.min(head.size));
        let body: Box<dyn AsyncRead + Send + Unpin> = if offset >= end {
            Box::new(tokio::io::empty())
        } else {
            let range = match (offset, end == head.size) {
                (0, true) => None,
                (_, true) => Some(GetRange::Offset(offset)),
                (_, false) => Some(GetRange::Bounded(offset..end)),
            };
            let opts = GetOptions {
                range,
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
    }

    /// The HEAD of a file; `if_dir` when the path is a directory, else `NotFound`.
    async fn file_head(&self, key: &str, if_dir: StorageError) -> Result<Head, StorageError> {
        match self.head(key).await? {
            Some(h) => Ok(h),
            None if self.dir_time(key).await?.is_some() => Err(if_dir),
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

    /// Every object beneath a directory.
    async fn all_keys(&self, dir_key: &str) -> Result<Vec<object_store::ObjectMeta>, StorageError> {
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
            keys.extend(page.result.objects);
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
        let from_head = self.head(&fk).await?;
        if from_head.as_ref().is_some_and(|h| h.size > MAX_COPY) {
            return Err(StorageError::Unsupported);
        }
        let from_file = from_head.is_some();
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
        if to_dir && self.dir_contents(&tk).await? == DirContents::More {
            return Err(StorageError::NotEmpty);
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
        // A directory: each object beneath, copied then deleted; none too large to copy,
        // checked before the first moves.
        let from_prefix = Self::dir_prefix(&fk);
        let to_prefix = Self::dir_prefix(&tk);
        let all = self.all_keys(&fk).await?;
        if all.iter().any(|m| m.size > MAX_COPY) {
            return Err(StorageError::Unsupported);
        }
        for meta in all {
            let key = meta.location.as_ref();
            let Some(rest) = key.strip_prefix(&from_prefix) else {
                continue;
            };
            let new_key = format!("{to_prefix}{rest}");
            self.store
                .copy(&meta.location, &Self::object(&new_key)?)
                .await
                .map_err(store_error)?;
            self.delete_key(key).await?;
        }
        Ok(())
    }

    async fn set_mtime_now(&self, path: &VPath, unix_secs: i64) -> Result<(), StorageError> {
        let key = self.key(path)?;
        if self.file_head(&key, StorageError::Unsupported).await?.size > MAX_COPY {
            return Err(StorageError::Unsupported);
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
        let prefill = (keep > 0).then(|| {
            // The old bytes go in first, once the upload runs (not while the client waits
            // for its 150 reply); the ETag makes sure they are the bytes the size was of.
            let opts = GetOptions {
                range: Some(GetRange::Bounded(0..keep)),
                if_match: existing.and_then(|h| h.e_tag),
                ..GetOptions::default()
            };
            let (store, object) = (self.store.clone(), object.clone());
            Prefill::Opening(
                Box::pin(async move { store.get_opts(&object, opts).await.map_err(store_error) }),
                keep,
            )
        });
        Ok(Box::new(S3Upload {
            store: self.store.clone(),
            object,
            prefill,
            up: Up::Small(Vec::new()),
            written: 0,
        }))
    }
}

/// The most parts S3 takes in one upload: with [`UPLOAD_PART`], the largest file.
const MAX_PARTS: u64 = 10_000;

/// Where an upload's bytes are.
enum Up {
    /// Less than one part so far: kept here, and written in one PUT when committed.
    Small(Vec<u8>),
    /// The multipart upload is being created; the first part waits for it.
    Creating(
        BoxFuture<'static, object_store::Result<Box<dyn MultipartUpload>>>,
        Vec<u8>,
    ),
    /// Parts go up, at most [`UPLOAD_CONCURRENCY`] at once.
    Multi(WriteMultipart),
    /// Failed, or handed to [`WriteHandle::commit`].
    Ended,
}

/// The old object's first bytes, copied in before the client's (REST+STOR, APPE).
enum Prefill {
    /// The GET, and how many bytes it must give.
    Opening(BoxFuture<'static, Result<GetResult, StorageError>>, u64),
    Copying {
        stream: Pin<Box<dyn Stream<Item = object_store::Result<Bytes>> + Send>>,
        /// Bytes still to take from the stream.
        left: u64,
        /// Taken from the stream, not yet in the upload.
        chunk: Bytes,
    },
}

/// An upload into an object.
struct S3Upload {
    store: Arc<AmazonS3>,
    object: Path,
    prefill: Option<Prefill>,
    up: Up,
    /// Bytes in the upload so far.
    written: u64,
}

fn ended() -> std::io::Error {
    std::io::Error::other("the upload has ended")
}

/// Aborts a multipart upload in the background (from `Drop` and after a failure): its parts go.
fn abort_in_background(up: Up) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    match up {
        Up::Multi(w) => {
            rt.spawn(async move {
                if let Err(e) = w.abort().await {
                    tracing::warn!(error = %e, "aborting an unfinished upload failed");
                }
            });
        }
        Up::Creating(fut, _) => {
            rt.spawn(async move {
                if let Ok(mut upload) = fut.await
                    && let Err(e) = upload.abort().await
                {
                    tracing::warn!(error = %e, "aborting an unfinished upload failed");
                }
            });
        }
        Up::Small(_) | Up::Ended => {}
    }
}

impl S3Upload {
    fn fail(&mut self, e: std::io::Error) -> Poll<std::io::Result<usize>> {
        abort_in_background(std::mem::replace(&mut self.up, Up::Ended));
        Poll::Ready(Err(e))
    }

    /// Takes some of `buf` into the upload.
    fn poll_push(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.written.saturating_add(buf.len() as u64) > UPLOAD_PART as u64 * MAX_PARTS {
            // Larger than the store takes in one upload: 552, as a file size limit is.
            return self.fail(std::io::Error::other(crate::transfer::CapExceeded {
                quota: false,
            }));
        }
        loop {
            match &mut self.up {
                Up::Small(v) if v.len() + buf.len() < UPLOAD_PART => {
                    v.extend_from_slice(buf);
                    self.written += buf.len() as u64;
                    return Poll::Ready(Ok(buf.len()));
                }
                Up::Small(v) => {
                    let pending = std::mem::take(v);
                    let (store, object) = (self.store.clone(), self.object.clone());
                    let create = Box::pin(async move { store.put_multipart(&object).await });
                    self.up = Up::Creating(create, pending);
                }
                Up::Creating(create, pending) => match ready!(create.as_mut().poll(cx)) {
                    Ok(upload) => {
                        let mut w = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART);
                        w.write(pending);
                        self.up = Up::Multi(w);
                    }
                    Err(e) => {
                        self.up = Up::Ended;
                        return Poll::Ready(Err(std::io::Error::other(e)));
                    }
                },
                Up::Multi(w) => {
                    if let Err(e) = ready!(w.poll_for_capacity(cx, UPLOAD_CONCURRENCY)) {
                        return self.fail(std::io::Error::other(e));
                    }
                    w.write(buf);
                    self.written += buf.len() as u64;
                    return Poll::Ready(Ok(buf.len()));
                }
                Up::Ended => return Poll::Ready(Err(ended())),
            }
        }
    }

    /// Copies the old bytes in, before anything of the client's.
    fn poll_prefill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            match &mut self.prefill {
                None => return Poll::Ready(Ok(())),
                Some(Prefill::Opening(get, keep)) => match ready!(get.as_mut().poll(cx)) {
                    Ok(result) if result.range != (0..*keep) => {
                        // Shorter than its HEAD said (a store without ETags): the client's
                        // bytes would land at the wrong offset.
                        self.prefill = None;
                        self.up = Up::Ended;
                        return Poll::Ready(Err(std::io::Error::other(
                            "the stored file changed while it was resumed",
                        )));
                    }
                    Ok(result) => {
                        let left = result.range.end.saturating_sub(result.range.start);
                        self.prefill = Some(Prefill::Copying {
                            stream: result.into_stream(),
                            left,
                            chunk: Bytes::new(),
                        });
                    }
                    Err(e) => {
                        self.prefill = None;
                        self.up = Up::Ended;
                        return Poll::Ready(Err(std::io::Error::other(e)));
                    }
                },
                Some(Prefill::Copying { chunk, .. }) if !chunk.is_empty() => {
                    let mut data = std::mem::take(chunk);
                    let pushed = self.poll_push(cx, &data);
                    let n = match pushed {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => {
                            self.prefill = None;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Pending => 0,
                    };
                    data.advance(n);
                    if let Some(Prefill::Copying { chunk, .. }) = &mut self.prefill {
                        *chunk = data;
                    }
                    if pushed.is_pending() {
                        return Poll::Pending;
                    }
                }
                Some(Prefill::Copying { left: 0, .. }) => self.prefill = None,
                Some(Prefill::Copying {
                    stream,
                    left,
                    chunk,
                }) => match ready!(stream.as_mut().poll_next(cx)) {
                    Some(Ok(mut b)) => {
                        b.truncate(usize::try_from(*left).unwrap_or(usize::MAX));
                        *left -= b.len() as u64;
                        *chunk = b;
                    }
                    Some(Err(e)) => {
                        self.prefill = None;
                        return self.fail(std::io::Error::other(e)).map_ok(drop);
                    }
                    None => {
                        self.prefill = None;
                        return self
                            .fail(std::io::Error::other(
                                "the stored file changed while it was resumed",
                            ))
                            .map_ok(drop);
                    }
                },
            }
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
        ready!(this.poll_prefill(cx))?;
        this.poll_push(cx, buf)
    }

    /// The old bytes of a resume are in (the copy loop flushes at the end of the data, so
    /// an empty REST+STOR or APPE copies them then, and not in the commit, which has a time
    /// limit); the rest is on its way to the store, and only [`WriteHandle::commit`] lands it.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_prefill(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl WriteHandle for S3Upload {
    /// An upload is an object only once committed: a refused one leaves the object (or its
    /// absence) as it was.
    fn discard(&mut self) -> Undone {
        abort_in_background(std::mem::replace(&mut self.up, Up::Ended));
        Undone::Unchanged
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async move {
            std::future::poll_fn(|cx| self.poll_prefill(cx)).await?;
            let (store, object) = (self.store.clone(), self.object.clone());
            let up = std::mem::replace(&mut self.up, Up::Ended);
            // Only now does the object appear: in one PUT when small, else by completing
            // the multipart upload (which aborts it when it fails). In a task of its own: a
            // commit the driver gives up waiting for still ends one way or the other, and
            // never leaves parts behind.
            let landing = tokio::spawn(async move {
                let w = match up {
                    Up::Small(v) => {
                        return store.put(&object, PutPayload::from(v)).await.map(drop);
                    }
                    Up::Creating(create, pending) => {
                        let upload = create.await?;
                        let mut w = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART);
                        w.write(&pending);
                        w
                    }
                    Up::Multi(w) => w,
                    Up::Ended => {
                        return Err(object_store::Error::Generic {
                            store: "wharf",
                            source: Box::new(ended()),
                        });
                    }
                };
                w.finish().await.map(drop)
            });
            match landing.await {
                Ok(r) => r.map_err(store_error),
                Err(e) => Err(StorageError::Io(std::io::Error::other(e))),
            }
        })
    }
}

impl Drop for S3Upload {
    /// An upload that was not committed is aborted: its parts go, no object appears, and an
    /// object it was to replace stays as it was.
    fn drop(&mut self) {
        abort_in_background(std::mem::replace(&mut self.up, Up::Ended));
    }
}

/// An object's bytes as an [`AsyncRead`]. A read takes every chunk the body has ready, up to
/// the caller's buffer: one write to the client for many small chunks of the HTTP body.
struct StreamReader {
    stream: Pin<Box<dyn Stream<Item = object_store::Result<Bytes>> + Send>>,
    chunk: Bytes,
    /// An error that came after bytes a read returned: the next read's.
    error: Option<std::io::Error>,
}

impl StreamReader {
    fn new(stream: Pin<Box<dyn Stream<Item = object_store::Result<Bytes>> + Send>>) -> Self {
        StreamReader {
            stream,
            chunk: Bytes::new(),
            error: None,
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
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e));
        }
        let mut copied = false;
        loop {
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(this.chunk.get(..n).unwrap_or_default());
                this.chunk.advance(n);
                copied |= n > 0;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            match this.stream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => this.chunk = b,
                Poll::Ready(Some(Err(e))) if copied => {
                    this.error = Some(std::io::Error::other(e));
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending if copied => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
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
        Box::pin(self.open_bytes(path, offset, None))
    }

    /// A ranged GET of the bytes a hash reads, and no more.
    fn open_range<'a>(
        &'a self,
        path: &'a VPath,
        offset: u64,
        end: u64,
    ) -> BoxFuture<'a, Result<ReadHandle, StorageError>> {
        Box::pin(self.open_bytes(path, offset, Some(end)))
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
            match self.dir_contents(&key).await? {
                DirContents::Nothing => return Err(StorageError::NotFound),
                DirContents::More => return Err(StorageError::NotEmpty),
                DirContents::Marker => {}
            }
            self.keep_parent(path).await?;
            self.delete_key(&format!("{key}/{DIR_MARKER}")).await
        })
    }

    fn delete<'a>(&'a self, path: &'a VPath) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let key = self.key(path)?;
            self.file_head(&key, StorageError::NotAFile).await?;
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

    /// Every object of the home, listed (for quotas: a request per 1,000 objects).
    fn usage(&self) -> BoxFuture<'_, Result<super::Usage, StorageError>> {
        Box::pin(async move {
            let mut usage = super::Usage::default();
            for m in self.all_keys(&self.home).await? {
                if m.location.filename() != Some(DIR_MARKER) {
                    usage.files += 1;
                    usage.bytes += m.size;
                }
            }
            Ok(usage)
        })
    }
}
