//! Several sessions working through one queue of file transfers: the tree copies, `get` of a
//! pattern and the mirror hand their jobs to [`run_pool`].

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wharf_proto::HashAlgorithm;
use wharf_proto::client::hash::HashCommand;

use crate::client::{Client, Progress};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::part::{self, Outcome, Resume, Retrying};
use crate::retry::RetryPolicy;
use crate::tree::{TreeOptions, TreeReport, plural};
use crate::verify::{self, Decision};

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
    let policy = RetryPolicy::for_pool(options.retries);
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
                    refusals += 1;
                    if no_session(pool, connector, job, e, refusals).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let decision = verify::decide(session, options.verify, session.is_ascii());
        let result = match decision {
            Decision::Impossible(why) if options.verify == verify::Verify::Required => {
                Err(verify::required(&job.name(), why))
            }
            Decision::Check(how) => transfer(session, &job, options, progress, Some(how)).await,
            Decision::Off | Decision::Impossible(_) => {
                transfer(session, &job, options, progress, None).await
            }
        };
        let in_step = session.in_step();
        job.started |= session.data_started();
        let (outcome, verified) = match result {
            Ok(done) => done,
            Err(e) => {
                if !in_step {
                    client = None;
                }
                retry_or_fail(pool, connector, policy, job, e, !in_step, &mut client).await;
                continue;
            }
        };
        pool.record(|r| {
            match outcome {
                Outcome::Transferred(n) => {
                    r.files += 1;
                    r.bytes += n;
                }
                Outcome::AlreadyComplete => r.already_complete += 1,
            }
            match (verified, decision) {
                (Some(algorithm), _) => {
                    r.verified += 1;
                    r.verified_by = Some(algorithm);
                }
                (None, Decision::Impossible(why)) => {
                    r.unverified += 1;
                    r.unverified_why = Some(why);
                }
                (None, _) => {}
            }
        });
    }
    pool.alive.fetch_sub(1, Ordering::SeqCst);
    if let Some(c) = client {
        c.quit().await;
    }
}

/// A failed try of `job`: queued again after a pause where the policy allows, else recorded
/// as failed.
async fn retry_or_fail(
    pool: &Pool,
    connector: &Connector,
    policy: RetryPolicy,
    mut job: Job,
    e: Error,
    session_lost: bool,
    client: &mut Option<Client>,
) {
    let Some(wait) = policy.again(&e, job.retries, session_lost) else {
        let name = job.name();
        pool.record(|r| r.failures.push((name, e)));
        return;
    };
    job.retries += 1;
    connector.log_status(policy.message(&job.name(), &e, job.retries, wait));
    if let Some(c) = client.take() {
        // A new session for the new try: this one may be what broke.
        c.quit().await;
    }
    tokio::time::sleep(wait).await;
    pool.push(job);
}

/// A worker was refused a session for `job`. Returns whether the worker leaves the pool (the
/// server limits connections and another worker goes on: the job goes back to the queue);
/// else the job waits and goes back, or fails after too many refusals.
async fn no_session(
    pool: &Pool,
    connector: &Connector,
    mut job: Job,
    e: Error,
    refusals: u32,
) -> bool {
    if e.is_connection_limit() && pool.leave_unless_last() {
        pool.push(job);
        return true;
    }
    job.attempts += 1;
    match RetryPolicy::session_wait(job.attempts, refusals) {
        Some(wait) => {
            connector.log_status(format!(
                "No session ({e}); waiting {} s before trying again",
                wait.as_secs()
            ));
            tokio::time::sleep(wait).await;
            pool.push(job);
        }
        None => {
            let name = job.name();
            pool.record(|r| r.failures.push((name, e)));
        }
    }
    false
}

/// One try of a job's transfer on `session`: a file tried before continues from where that
/// try stopped; a mirror's file gets its modification time once it is complete.
async fn transfer(
    session: &mut Client,
    job: &Job,
    options: TreeOptions,
    progress: &dyn Progress,
    check: Option<HashCommand>,
) -> Result<(Outcome, Option<HashAlgorithm>)> {
    let retrying = Retrying(progress);
    let progress: &dyn Progress = if job.retries > 0 { &retrying } else { progress };
    match &job.kind {
        JobKind::Download {
            remote,
            local,
            size,
            mtime,
        } => {
            let how = if options.resume {
                Resume::Any
            } else if job.retries > 0 || options.mirror {
                Resume::Partial
            } else {
                Resume::Fresh
            };
            let r =
                part::download_checked(session, remote, local, *size, how, progress, check).await;
            if let (Ok(_), Some(t)) = (&r, mtime) {
                part::set_local_mtime(local, *t);
            }
            r
        }
        JobKind::Upload {
            local,
            remote,
            mtime,
        } => {
            // A try that broke before the server said 150 left its file as it was: the next
            // one replaces it rather than resume what may be an older file.
            let resume = options.resume || job.started;
            let r = part::upload_checked(session, local, remote, resume, progress, check).await;
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
    }
}
