//! Whole files and whole trees: downloads through a temporary file, resume from what is already
//! there, recursive copies both ways, and several sessions working through one queue.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncSeekExt;
use wharf_proto::FileKind;

use crate::client::{Client, Options, Progress, Store};
use crate::error::{Error, Result};
use crate::log::LogLine;
use crate::url::FtpUrl;

/// Everything needed to open another session to the same server as the same user.
#[derive(Clone)]
pub struct Connector {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub ascii: bool,
    pub options: Options,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The user name and password sent for anonymous logins.
pub const ANONYMOUS: (&str, &str) = ("anonymous", "anonymous@");

impl Connector {
    /// The URL's host, port and user (anonymous when it has none); `password` overrides the
    /// URL's password.
    pub fn new(url: &FtpUrl, password: Option<String>, options: Options) -> Connector {
        let (user, password) = match &url.user {
            None => (ANONYMOUS.0.to_string(), ANONYMOUS.1.to_string()),
            Some(user) => (
                user.clone(),
                url.password.clone().or(password).unwrap_or_default(),
            ),
        };
        Connector {
            host: url.host.clone(),
            port: url.port,
            user,
            password,
            ascii: false,
            options,
        }
    }

    /// Connects and logs in.
    pub async fn open(&self) -> Result<Client> {
        let mut client = Client::connect(&self.host, self.port, self.options.clone()).await?;
        client.login(&self.user, &self.password).await?;
        client.set_ascii(self.ascii);
        Ok(client)
    }

    fn log_status(&self, message: String) {
        self.options.log(LogLine::Status(message));
    }
}

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
    let resume = how != Resume::Fresh;
    let at = |e: Error| e.at(local);
    let part = part_path(local);
    let len_of = |p: &Path| match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Err(Error::Usage(format!(
            "{}: exists and is not a regular file",
            p.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::local(e).at(p)),
    };
    // Where the bytes go, and how many are there already.
    let (target, have) = if resume {
        match (len_of(&part)?, len_of(local)?) {
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
        if have == size && len_of(target)?.is_some() {
            client.log_status(format!(
                "{}: already complete ({size} bytes)",
                local.display()
            ));
            if target != local {
                std::fs::rename(target, local).map_err(|e| at(Error::local(e)))?;
            }
            progress.resumed(have);
            return Ok(Outcome::AlreadyComplete);
        }
        if have > size {
            return Err(Error::Usage(format!(
                "{}: the local file ({have} bytes) is larger than the remote one ({size} bytes); not resuming",
                target.display()
            )));
        }
    }
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true);
    if have > 0 {
        options.append(true);
    } else {
        options.truncate(true);
    }
    // Never write through a symbolic link planted where the file goes.
    options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    let mut file = options
        .open(target)
        .await
        .map_err(|e| Error::local(e).at(local))?;
    progress.resumed(have);
    let result = async {
        let n = client
            .retrieve(remote, have, &mut file, progress)
            .await
            .map_err(at)?;
        file.sync_all().await.map_err(|e| at(Error::local(e)))?;
        check_size(client, remote, have + n, size)?;
        if target != local {
            tokio::fs::rename(target, local)
                .await
                .map_err(|e| at(Error::local(e)))?;
        }
        Ok(n)
    }
    .await;
    drop(file);
    if result.is_err() && target == part && len_of(&part).ok().flatten() == Some(0) {
        // Nothing came (a refusal, no such file): no partial file to keep.
        let _ = std::fs::remove_file(&part);
    }
    result.map(Outcome::Transferred)
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
    if resume {
        let have = client.size(remote).await?.unwrap_or(0);
        if have == len && len > 0 {
            client.log_status(format!(
                "{}: already complete on the server ({len} bytes)",
                String::from_utf8_lossy(remote)
            ));
            progress.resumed(len);
            return Ok(Outcome::AlreadyComplete);
        }
        if have > len {
            return Err(Error::Usage(format!(
                "{}: the server's file ({have} bytes) is larger than the local one ({len} bytes); not resuming",
                String::from_utf8_lossy(remote)
            )));
        }
        if have > 0 {
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
    let n = client
        .store(remote, how, &mut file, progress)
        .await
        .map_err(at)?;
    Ok(Outcome::Transferred(n))
}

/// Settings of a recursive copy.
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    /// Sessions working at once (at least 1).
    pub parallel: usize,
    /// Resume files that are partly there instead of transferring them again.
    pub resume: bool,
    /// Further tries of a file whose transfer broke (network, timeout, a transient 4xx), each
    /// on a new session after a pause (1, 2, 4 … 30 s) and resumed from where it stopped. With
    /// 0, a file whose session broke still gets one more try at once.
    pub retries: u32,
    /// `upload_tree`: follow symbolic links that lead out of the tree (else they are skipped
    /// with a warning).
    pub follow_links: bool,
    /// Downloads continue `.part` files left by an earlier run (mirror).
    pub mirror: bool,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions {
            parallel: 2,
            resume: false,
            retries: 0,
            follow_links: false,
            mirror: false,
        }
    }
}

/// Whether another try may succeed where `e` failed: the network or a timeout, or a reply that
/// says the failure is transient (421, 425, 426, 450, 451). A refusal (5xx), a local error or
/// a usage error will fail again.
pub fn is_transient(e: &Error) -> bool {
    match e.reply_code() {
        Some(code) => code.is_transient(),
        None => e.kind() == crate::error::ErrorKind::Network,
    }
}

/// The pause before try number `attempt` (1-based) of a broken transfer: 1, 2, 4 … 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs((1u64 << attempt.saturating_sub(1).min(5)).min(30))
}

/// What a recursive copy did.
#[derive(Debug, Default)]
pub struct TreeReport {
    pub files: u64,
    pub already_complete: u64,
    pub bytes: u64,
    /// Files that failed, with why. The others were copied.
    pub failures: Vec<(String, Error)>,
    /// Entries left alone (symbolic links, special files, unsafe names), with why.
    pub skipped: Vec<String>,
    /// Sessions that worked at once (fewer than asked when the server limits connections).
    pub sessions: usize,
}

/// Copies the remote directory `remote` into the local directory `local` (created if missing):
/// lists the tree with `client` (MLSD where offered, else LIST), creates the directories, then
/// transfers the files over up to `options.parallel` sessions.
pub async fn download_tree(
    mut client: Client,
    connector: &Connector,
    remote: &[u8],
    local: &Path,
    options: TreeOptions,
    progress: Arc<dyn Progress>,
) -> Result<TreeReport> {
    let mut report = TreeReport::default();
    let mut jobs = VecDeque::new();
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    std::fs::create_dir_all(local).map_err(|e| Error::local(e).at(local))?;
    let mut dirs = vec![(remote.to_vec(), local.to_path_buf(), 0usize)];
    while let Some((rdir, ldir, depth)) = dirs.pop() {
        let shown_dir = String::from_utf8_lossy(&rdir).into_owned();
        // The top directory must list; a subdirectory that does not is one failure among others.
        let entries = match client.list(&rdir).await {
            Ok(entries) => entries,
            Err(e) if depth == 0 || !client.in_step() => return Err(e),
            Err(e) => {
                report.failures.push((shown_dir, e));
                continue;
            }
        };
        for entry in entries {
            let rpath = join_remote(&rdir, &entry.name);
            let shown = String::from_utf8_lossy(&rpath).into_owned();
            if !is_safe_name(&entry.name) {
                client.log_status(format!("Skipping {shown:?}: not a safe local file name"));
                report.skipped.push(format!("{shown}: unsafe name"));
                continue;
            }
            if is_part_name(&entry.name) {
                report.skipped.push(format!(
                    "{shown}: named like a partial download ({PART_SUFFIX})"
                ));
                continue;
            }
            let lpath = ldir.join(OsStr::from_bytes(&entry.name));
            if !seen.insert(lpath.clone()) {
                report.skipped.push(format!("{shown}: listed twice"));
                continue;
            }
            match entry.kind {
                FileKind::Dir if depth >= MAX_DEPTH => {
                    // Deeper than any real tree: a symbolic link loop shown as a directory.
                    report
                        .skipped
                        .push(format!("{shown}: deeper than {MAX_DEPTH} levels"));
                }
                FileKind::Dir => {
                    match std::fs::create_dir(&lpath) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && lpath.is_dir() => {}
                        Err(e) => {
                            report.failures.push((shown, Error::local(e).at(&lpath)));
                            continue;
                        }
                    }
                    dirs.push((rpath, lpath, depth + 1));
                }
                FileKind::File => {
                    total = total.saturating_add(entry.size.unwrap_or(0));
                    jobs.push_back(Job {
                        kind: JobKind::Download {
                            remote: rpath,
                            local: lpath,
                            size: entry.size,
                            mtime: None,
                        },
                        attempts: 0,
                        retries: 0,
                        started: false,
                    });
                }
                FileKind::Symlink | FileKind::Other => {
                    client.log_status(format!("Skipping {shown}: not a regular file"));
                    report.skipped.push(format!("{shown}: not a regular file"));
                }
            }
        }
    }
    progress.set_total(total);
    run_pool(client, connector, jobs, options, progress, report).await
}

/// Downloads a list of files (`remote`, `local`, size if known) over up to `options.parallel`
/// sessions: what `get` of a pattern does.
pub async fn download_files(
    client: Client,
    connector: &Connector,
    files: Vec<(Vec<u8>, PathBuf, Option<u64>)>,
    options: TreeOptions,
    progress: Arc<dyn Progress>,
) -> Result<TreeReport> {
    let total = files.iter().map(|f| f.2.unwrap_or(0)).sum();
    let jobs = files
        .into_iter()
        .map(|(remote, local, size)| Job {
            kind: JobKind::Download {
                remote,
                local,
                size,
                mtime: None,
            },
            attempts: 0,
            retries: 0,
            started: false,
        })
        .collect();
    progress.set_total(total);
    run_pool(
        client,
        connector,
        jobs,
        options,
        progress,
        TreeReport::default(),
    )
    .await
}

/// Deepest directory level a recursive copy descends to.
const MAX_DEPTH: usize = 64;

/// Copies the local directory `local` into the remote directory `remote` (created if missing).
/// Symbolic links to files are followed; links to directories and special files are skipped.
pub async fn upload_tree(
    mut client: Client,
    connector: &Connector,
    local: &Path,
    remote: &[u8],
    options: TreeOptions,
    progress: Arc<dyn Progress>,
) -> Result<TreeReport> {
    let mut report = TreeReport::default();
    let mut jobs = VecDeque::new();
    let mut total = 0u64;
    if !remote.is_empty() {
        ensure_remote_dir(&mut client, remote).await?;
    }
    let root = std::fs::canonicalize(local).map_err(|e| Error::local(e).at(local))?;
    let mut dirs = vec![(local.to_path_buf(), remote.to_vec())];
    while let Some((ldir, rdir)) = dirs.pop() {
        let read = std::fs::read_dir(&ldir).and_then(|d| d.collect::<io::Result<Vec<_>>>());
        let mut entries = match read {
            Ok(entries) => entries,
            Err(e) if ldir == local => return Err(Error::local(e).at(&ldir)),
            Err(e) => {
                let shown = ldir.display().to_string();
                report.failures.push((shown, Error::local(e).at(&ldir)));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let lpath = entry.path();
            let rpath = join_remote(&rdir, name.as_bytes());
            if name.as_bytes().iter().any(|&b| b == b'\r' || b == b'\n') {
                report
                    .skipped
                    .push(format!("{}: name has CR or LF", lpath.display()));
                continue;
            }
            let meta = match std::fs::symlink_metadata(&lpath) {
                Ok(m) => m,
                Err(e) => {
                    let shown = lpath.display().to_string();
                    report.failures.push((shown, Error::local(e).at(&lpath)));
                    continue;
                }
            };
            let file_type = meta.file_type();
            if file_type.is_symlink() && !options.follow_links {
                let inside = std::fs::canonicalize(&lpath).is_ok_and(|t| t.starts_with(&root));
                if !inside {
                    client.log_status(format!(
                        "Skipping {}: a symbolic link leading out of the tree",
                        lpath.display()
                    ));
                    report.skipped.push(format!(
                        "{}: a symbolic link leading out of the tree (--follow-links uploads what it points to)",
                        lpath.display()
                    ));
                    continue;
                }
            }
            if file_type.is_dir() {
                match ensure_remote_dir(&mut client, &rpath).await {
                    Ok(()) => dirs.push((lpath, rpath)),
                    Err(e) if client.in_step() => {
                        let shown = String::from_utf8_lossy(&rpath).into_owned();
                        report.failures.push((shown, e));
                    }
                    Err(e) => return Err(e),
                }
            } else if let Some(target) = (file_type.is_file() || file_type.is_symlink())
                .then(|| lpath.metadata().ok())
                .flatten()
                .filter(|m| m.is_file())
            {
                // A file, or a symbolic link to one (followed).
                total = total.saturating_add(target.len());
                jobs.push_back(Job {
                    kind: JobKind::Upload {
                        local: lpath,
                        remote: rpath,
                        mtime: None,
                    },
                    attempts: 0,
                    retries: 0,
                    started: false,
                });
            } else {
                client.log_status(format!("Skipping {}: not a regular file", lpath.display()));
                report
                    .skipped
                    .push(format!("{}: not a regular file", lpath.display()));
            }
        }
    }
    progress.set_total(total);
    run_pool(client, connector, jobs, options, progress, report).await
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

/// MKD of each missing directory along `path` (`mkdir -p`): a component that exists already
/// is passed.
pub async fn mkdir_p(client: &mut Client, path: &[u8]) -> Result<()> {
    let mut prefix = Vec::new();
    if path.starts_with(b"/") {
        prefix.push(b'/');
    }
    for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if !prefix.is_empty() && !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(component);
        if component == b"." || component == b".." {
            continue;
        }
        ensure_remote_dir(client, &prefix).await?;
    }
    Ok(())
}

/// The directory part of a remote path (`a/b/c` → `a/b`; `c` → empty, the login directory).
pub fn remote_parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => path.get(..i).unwrap_or_default(),
        None => b"",
    }
}

/// MKD, and when that is refused, whether the directory is there already.
pub(crate) async fn ensure_remote_dir(client: &mut Client, path: &[u8]) -> Result<()> {
    match client.mkdir(path).await {
        Ok(()) => Ok(()),
        Err(e) if client.in_step() => {
            if client.is_dir(path).await? {
                Ok(())
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

pub(crate) struct Job {
    pub(crate) kind: JobKind,
    /// Sessions this job could not get.
    pub(crate) attempts: u32,
    /// Tries of the transfer itself that failed and were given another.
    pub(crate) retries: u32,
    /// A try got as far as the server's 1xx: the server's file holds this run's bytes.
    pub(crate) started: bool,
}

pub(crate) enum JobKind {
    Download {
        remote: Vec<u8>,
        local: PathBuf,
        size: Option<u64>,
        /// Set as the local file's modification time once it is complete (mirror).
        mtime: Option<i64>,
    },
    Upload {
        local: PathBuf,
        remote: Vec<u8>,
        /// Set on the server's file once it is complete (MFMT; mirror).
        mtime: Option<i64>,
    },
}

impl Job {
    fn name(&self) -> String {
        match &self.kind {
            JobKind::Download { remote, .. } | JobKind::Upload { remote, .. } => {
                String::from_utf8_lossy(remote).into_owned()
            }
        }
    }
}

/// State the workers share.
struct Pool {
    queue: Mutex<VecDeque<Job>>,
    report: Mutex<TreeReport>,
    /// Workers still running: one that cannot get a session leaves only if another remains.
    alive: AtomicUsize,
}

impl Pool {
    fn pop(&self) -> Option<Job> {
        self.queue.lock().ok()?.pop_front()
    }

    fn push(&self, job: Job) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(job);
        }
    }

    fn record(&self, f: impl FnOnce(&mut TreeReport)) {
        if let Ok(mut r) = self.report.lock() {
            f(&mut r);
        }
    }

    /// Leaves the pool unless this is the last worker (atomically: two workers can never both
    /// leave on the strength of each other).
    fn leave_unless_last(&self) -> bool {
        self.alive
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > 1).then(|| n - 1)
            })
            .is_ok()
    }
}

/// Sessions a job may fail to get before it counts as failed.
const SESSION_TRIES: u32 = 4;

/// Runs the jobs over `first` plus up to `parallel - 1` more sessions. A server that turns a
/// further session away (421, or ProFTPD's 530 "maximum number of clients") is not an error:
/// the copy goes on with the sessions it has, and a worker that loses its session waits
/// (1, 2, 4 s) before it asks for another.
pub(crate) async fn run_pool(
    first: Client,
    connector: &Connector,
    jobs: VecDeque<Job>,
    options: TreeOptions,
    progress: Arc<dyn Progress>,
    report: TreeReport,
) -> Result<TreeReport> {
    let wanted = options.parallel.max(1).min(jobs.len().max(1));
    let mut clients = vec![first];
    while clients.len() < wanted {
        match connector.open().await {
            Ok(c) => clients.push(c),
            Err(e) => {
                let why = if e.is_connection_limit() {
                    "the server limits connections"
                } else {
                    "it failed"
                };
                connector.log_status(format!(
                    "Could not open session {} ({e}): {why}; going on with {}",
                    clients.len() + 1,
                    plural(clients.len() as u64, "session")
                ));
                break;
            }
        }
    }
    let sessions = clients.len();
    let pool = Arc::new(Pool {
        queue: Mutex::new(jobs),
        report: Mutex::new(report),
        alive: AtomicUsize::new(sessions),
    });
    let mut tasks = Vec::new();
    for client in clients {
        let pool = pool.clone();
        let connector = connector.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            worker(client, &pool, &connector, options, &*progress).await;
        }));
    }
    for task in tasks {
        if let Err(e) = task.await {
            return Err(Error::Protocol(format!("a transfer task failed: {e}")));
        }
    }
    // Whatever is still queued was never tried (every session was refused): a failure each,
    // never a silent omission.
    let left: Vec<Job> = pool
        .queue
        .lock()
        .map(|mut q| q.drain(..).collect())
        .unwrap_or_default();
    let mut report = pool
        .report
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for job in left {
        report.failures.push((
            job.name(),
            Error::Protocol("not transferred: no session to the server".into()),
        ));
    }
    report.sessions = sessions;
    Ok(report)
}

async fn worker(
    first: Client,
    pool: &Pool,
    connector: &Connector,
    options: TreeOptions,
    progress: &dyn Progress,
) {
    let mut client = Some(first);
    let mut refusals = 0u32;
    while let Some(mut job) = pool.pop() {
        let session = match client.as_mut() {
            Some(c) => c,
            None => match connector.open().await {
                Ok(c) => {
                    refusals = 0;
                    client.insert(c)
                }
                Err(e) => {
                    if e.is_connection_limit() && pool.leave_unless_last() {
                        // Another worker goes on; this one's file goes back to the queue.
                        pool.push(job);
                        return;
                    }
                    job.attempts += 1;
                    refusals += 1;
                    if job.attempts < SESSION_TRIES {
                        let wait = Duration::from_secs(1 << refusals.min(3).saturating_sub(1));
                        connector.log_status(format!(
                            "No session ({e}); waiting {} s before trying again",
                            wait.as_secs()
                        ));
                        tokio::time::sleep(wait).await;
                        pool.push(job);
                    } else {
                        let name = job.name();
                        pool.record(|r| r.failures.push((name, e)));
                    }
                    continue;
                }
            },
        };
        // A file tried before continues from where that try stopped.
        let how = if options.resume {
            Resume::Any
        } else if job.retries > 0 || options.mirror {
            Resume::Partial
        } else {
            Resume::Fresh
        };
        let retrying = Retrying(progress);
        let progress: &dyn Progress = if job.retries > 0 { &retrying } else { progress };
        let result = match &job.kind {
            JobKind::Download {
                remote,
                local,
                size,
                mtime,
            } => {
                let r = download_file(session, remote, local, *size, how, progress).await;
                if let (Ok(_), Some(t)) = (&r, mtime) {
                    set_local_mtime(local, *t);
                }
                r
            }
            JobKind::Upload {
                local,
                remote,
                mtime,
            } => {
                // A try that broke before the server said 150 left its file as it was: the
                // next one replaces it rather than resume what may be an older file.
                let resume = options.resume || job.started;
                let r = upload_file(session, local, remote, resume, progress).await;
                if let (Ok(_), Some(t)) = (&r, mtime) {
                    if !matches!(session.set_mtime(remote, *t).await, Ok(true)) {
                        session.log_status(format!(
                            "{}: the server keeps no modification time (no MFMT)",
                            String::from_utf8_lossy(remote)
                        ));
                    }
                }
                r
            }
        };
        let in_step = session.in_step();
        job.started |= session.data_started();
        match result {
            Ok(Outcome::Transferred(n)) => pool.record(|r| {
                r.files += 1;
                r.bytes += n;
            }),
            Ok(Outcome::AlreadyComplete) => pool.record(|r| r.already_complete += 1),
            Err(e) => {
                if !in_step {
                    client = None;
                }
                // A broken session gets the file one more try on a fresh session; --retry N
                // gives N tries after a pause, for any transient failure.
                let again = if options.retries > 0 {
                    is_transient(&e) && job.retries < options.retries
                } else {
                    !in_step && job.retries == 0 && e.kind() != crate::error::ErrorKind::Local
                };
                if again {
                    job.retries += 1;
                    let wait = if options.retries > 0 {
                        backoff(job.retries)
                    } else {
                        Duration::ZERO
                    };
                    connector.log_status(format!(
                        "{}: {e}; trying again in {} s (try {} of {})",
                        job.name(),
                        wait.as_secs(),
                        job.retries + 1,
                        options.retries.max(1) + 1
                    ));
                    if let Some(c) = client.take() {
                        // A new session for the new try: this one may be what broke.
                        c.quit().await;
                    }
                    tokio::time::sleep(wait).await;
                    pool.push(job);
                    continue;
                }
                let name = job.name();
                pool.record(|r| r.failures.push((name, e)));
            }
        }
    }
    pool.alive.fetch_sub(1, Ordering::SeqCst);
    if let Some(c) = client {
        c.quit().await;
    }
}

/// A name from a listing that is safe to create locally: not empty, not `.` or `..`, no `/`
/// and no NUL. A hostile server cannot write outside the target directory with it.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// `dir/name`, or `name` when `dir` is empty (the login directory).
pub fn join_remote(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = dir.to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// `1 session`, `2 sessions`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_refused() {
        for bad in [&b""[..], b".", b"..", b"../x", b"a/b", b"/etc", b"a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        assert!(is_safe_name(b"..."));
        assert!(is_safe_name(b"a b\\c"));
    }

    #[test]
    fn joins() {
        assert_eq!(join_remote(b"", b"a"), b"a");
        assert_eq!(join_remote(b"pub", b"a"), b"pub/a");
        assert_eq!(join_remote(b"/", b"a"), b"/a");
    }
}
