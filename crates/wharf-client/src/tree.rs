//! Whole files and whole trees: downloads through a temporary file, resume from what is already
//! there, recursive copies both ways, and several sessions working through one queue.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
        if let Some(sink) = &self.options.log {
            sink(&LogLine::Status(message));
        }
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

/// Downloads `remote` to `local`. Without `resume` the data goes to a temporary file beside
/// `local` that replaces it only when the transfer completed, so a broken download never
/// leaves a truncated file under the real name. With `resume` it appends to `local` from its
/// current size (REST + RETR).
pub async fn download_file(
    client: &mut Client,
    remote: &[u8],
    local: &Path,
    size_hint: Option<u64>,
    resume: bool,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let at = |e: Error| at_path(e, local);
    if resume {
        let have = match std::fs::metadata(local) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(at(local_error(e))),
        };
        let size = match size_hint {
            Some(s) => Some(s),
            None => client.size(remote).await?,
        };
        if let Some(size) = size {
            if have == size {
                client.log_status(format!(
                    "{}: already complete ({size} bytes)",
                    local.display()
                ));
                progress.advance(have);
                return Ok(Outcome::AlreadyComplete);
            }
            if have > size {
                return Err(Error::Usage(format!(
                    "{}: the local file ({have} bytes) is larger than the remote one ({size} bytes); not resuming",
                    local.display()
                )));
            }
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(local)
            .await
            .map_err(|e| at(local_error(e)))?;
        progress.advance(have);
        let n = client
            .retrieve(remote, have, &mut file, progress)
            .await
            .map_err(at)?;
        file.sync_all().await.map_err(|e| at(local_error(e)))?;
        return Ok(Outcome::Transferred(n));
    }
    let temp = temp_path(local);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .await
        .map_err(|e| at_path(local_error(e), &temp))?;
    let result = async {
        let n = client
            .retrieve(remote, 0, &mut file, progress)
            .await
            .map_err(at)?;
        file.sync_all().await.map_err(|e| at(local_error(e)))?;
        drop(file);
        tokio::fs::rename(&temp, local)
            .await
            .map_err(|e| at(local_error(e)))?;
        Ok(n)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result.map(Outcome::Transferred)
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
    let at = |e: Error| at_path(e, local);
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| at(local_error(e)))?;
    let len = file.metadata().await.map_err(|e| at(local_error(e)))?.len();
    let mut how = Store::Replace;
    if resume {
        let have = client.size(remote).await?.unwrap_or(0);
        if have == len && len > 0 {
            client.log_status(format!(
                "{}: already complete on the server ({len} bytes)",
                String::from_utf8_lossy(remote)
            ));
            progress.advance(len);
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
                .map_err(|e| at(local_error(e)))?;
            progress.advance(have);
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
    std::fs::create_dir_all(local).map_err(|e| at_path(local_error(e), local))?;
    let mut dirs = vec![(remote.to_vec(), local.to_path_buf())];
    while let Some((rdir, ldir)) = dirs.pop() {
        for entry in client.list(&rdir).await? {
            let rpath = join_remote(&rdir, &entry.name);
            let shown = String::from_utf8_lossy(&rpath).into_owned();
            if !is_safe_name(&entry.name) {
                client.log_status(format!("Skipping {shown:?}: not a safe local file name"));
                report.skipped.push(format!("{shown}: unsafe name"));
                continue;
            }
            let lpath = ldir.join(OsStr::from_bytes(&entry.name));
            match entry.kind {
                FileKind::Dir => {
                    match std::fs::create_dir(&lpath) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && lpath.is_dir() => {}
                        Err(e) => return Err(at_path(local_error(e), &lpath)),
                    }
                    dirs.push((rpath, lpath));
                }
                FileKind::File => {
                    total += entry.size.unwrap_or(0);
                    jobs.push_back(Job {
                        kind: JobKind::Download {
                            remote: rpath,
                            local: lpath,
                            size: entry.size,
                        },
                        attempts: 0,
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
    let mut dirs = vec![(local.to_path_buf(), remote.to_vec())];
    while let Some((ldir, rdir)) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&ldir)
            .map_err(|e| at_path(local_error(e), &ldir))?
            .collect::<io::Result<_>>()
            .map_err(|e| at_path(local_error(e), &ldir))?;
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
            let meta =
                std::fs::symlink_metadata(&lpath).map_err(|e| at_path(local_error(e), &lpath))?;
            let file_type = meta.file_type();
            if file_type.is_dir() {
                ensure_remote_dir(&mut client, &rpath).await?;
                dirs.push((lpath, rpath));
            } else if file_type.is_file()
                || (file_type.is_symlink() && lpath.metadata().is_ok_and(|m| m.is_file()))
            {
                total += lpath.metadata().map_or(0, |m| m.len());
                jobs.push_back(Job {
                    kind: JobKind::Upload {
                        local: lpath,
                        remote: rpath,
                    },
                    attempts: 0,
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

/// MKD, and when that is refused, whether the directory is there already.
async fn ensure_remote_dir(client: &mut Client, path: &[u8]) -> Result<()> {
    match client.mkdir(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.session_usable() => {
            if client.is_dir(path).await? {
                Ok(())
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

struct Job {
    kind: JobKind,
    /// Tries so far that broke the session (a file gets a second try on a fresh one).
    attempts: u32,
}

enum JobKind {
    Download {
        remote: Vec<u8>,
        local: PathBuf,
        size: Option<u64>,
    },
    Upload {
        local: PathBuf,
        remote: Vec<u8>,
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
    /// Workers still running: one that cannot get a session leaves only if others remain.
    alive: AtomicUsize,
    bytes: AtomicU64,
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
}

/// Runs the jobs over `first` plus up to `parallel - 1` more sessions. A server that turns a
/// further session away (421, or ProFTPD's 530 "maximum number of clients") is not an error:
/// the copy goes on with the sessions it has.
async fn run_pool(
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
                    plural(clients.len(), "session")
                ));
                break;
            }
        }
    }
    let pool = Arc::new(Pool {
        queue: Mutex::new(jobs),
        report: Mutex::new(report),
        alive: AtomicUsize::new(clients.len()),
        bytes: AtomicU64::new(0),
    });
    let sessions = clients.len();
    let mut tasks = Vec::new();
    for client in clients {
        let pool = pool.clone();
        let connector = connector.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            worker(Some(client), &pool, &connector, options.resume, &*progress).await;
        }));
    }
    for task in tasks {
        if let Err(e) = task.await {
            return Err(Error::Protocol(format!("a transfer task failed: {e}")));
        }
    }
    let mut report = match Arc::try_unwrap(pool) {
        Ok(pool) => pool.report.into_inner().unwrap_or_default(),
        Err(pool) => pool
            .report
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default(),
    };
    report.sessions = sessions;
    Ok(report)
}

async fn worker(
    mut client: Option<Client>,
    pool: &Pool,
    connector: &Connector,
    resume: bool,
    progress: &dyn Progress,
) {
    while let Some(mut job) = pool.pop() {
        let session = match client.as_mut() {
            Some(c) => c,
            None => match connector.open().await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    if e.is_connection_limit() && pool.alive.load(Ordering::SeqCst) > 1 {
                        pool.alive.fetch_sub(1, Ordering::SeqCst);
                        pool.push(job);
                        return;
                    }
                    job.attempts += 1;
                    if job.attempts < 3 {
                        pool.push(job);
                    } else {
                        let name = job.name();
                        pool.record(|r| r.failures.push((name, e)));
                    }
                    continue;
                }
            },
        };
        let result = match &job.kind {
            JobKind::Download {
                remote,
                local,
                size,
            } => download_file(session, remote, local, *size, resume, progress).await,
            JobKind::Upload { local, remote } => {
                upload_file(session, local, remote, resume, progress).await
            }
        };
        match result {
            Ok(Outcome::Transferred(n)) => {
                pool.bytes.fetch_add(n, Ordering::Relaxed);
                pool.record(|r| {
                    r.files += 1;
                    r.bytes += n;
                });
            }
            Ok(Outcome::AlreadyComplete) => pool.record(|r| r.already_complete += 1),
            Err(e) => {
                if !e.session_usable() {
                    client = None;
                    // A broken session gets the file one more try on a fresh session.
                    if job.attempts == 0 && e.kind() != crate::error::ErrorKind::Local {
                        connector.log_status(format!(
                            "{}: {e}; trying again on a new session",
                            job.name()
                        ));
                        job.attempts += 1;
                        pool.push(job);
                        continue;
                    }
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

/// `.NAME.wharf-XXXXXXXX.part` beside `local`.
fn temp_path(local: &Path) -> PathBuf {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let name = local
        .file_name()
        .map_or_else(|| "download".into(), |n| n.to_string_lossy().into_owned());
    local.with_file_name(format!(".{name}.wharf-{hex}.part"))
}

fn local_error(source: io::Error) -> Error {
    Error::Local {
        path: PathBuf::new(),
        source,
    }
}

/// Fills in the path of a local error that does not have one yet.
fn at_path(e: Error, path: &Path) -> Error {
    match e {
        Error::Local { path: p, source } if p.as_os_str().is_empty() => Error::Local {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    }
}

fn plural(n: usize, word: &str) -> String {
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
