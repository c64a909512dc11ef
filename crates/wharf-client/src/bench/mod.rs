//! `wharf bench`: a load generator for any FTP server. Each workload runs a bounded number of
//! operations (and stops starting new ones at a deadline), and reports throughput, latency
//! percentiles and errors.
//!
//! - `retr`: N clients each download one file `count` times (into nothing: no disk involved);
//! - `stor`: N clients each upload `size` bytes `count` times;
//! - `login`: N clients each connect, USER, PASS, QUIT, `count` times (sessions per second);
//! - `small`: N clients at once, each logs in and downloads a small file `count` times (the
//!   figure is the wall time until all are done, and whether any client was refused);
//! - `idle`: N logged-in sessions held open at once for a while (the server's memory per
//!   session is measured from outside, while they are held);
//! - `list`: LIST of a directory, `count` times per client;
//! - `loopback`: no FTP at all: plain TCP from an in-process sender, read the same way the
//!   `retr` workload reads: the loopback limit that a server's `retr` figure compares with.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wharf_proto::ReplyCode;

mod report;

pub use report::BenchReport;

use crate::client::{Client, NoProgress, Options, Store};
use crate::error::{Error, Result};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Retr,
    Stor,
    Login,
    Small,
    Idle,
    List,
    Loopback,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::Retr,
        Workload::Stor,
        Workload::Login,
        Workload::Small,
        Workload::Idle,
        Workload::List,
        Workload::Loopback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Retr => "retr",
            Workload::Stor => "stor",
            Workload::Login => "login",
            Workload::Small => "small",
            Workload::Idle => "idle",
            Workload::List => "list",
            Workload::Loopback => "loopback",
        }
    }

    pub fn parse(text: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == text)
    }

    /// Whether the figure of merit is bytes per second (else operations per second or time).
    fn moves_bytes(self) -> bool {
        matches!(self, Workload::Retr | Workload::Stor | Workload::Loopback)
    }
}

/// Told when something worth knowing happens during a run (the idle workload holding its
/// sessions, so that the server's memory can be read from outside).
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// A run's settings.
#[derive(Clone)]
pub struct BenchOptions {
    pub workload: Workload,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The file (retr, small, stor) or directory (list).
    pub path: Vec<u8>,
    /// Sessions at once.
    pub clients: usize,
    /// Operations per session (idle: ignored).
    pub count: usize,
    /// Bytes per upload (stor) or per round (loopback).
    pub size: u64,
    /// How long the idle workload holds its sessions.
    pub hold: Duration,
    /// No new operation starts after this much time.
    pub duration: Duration,
    /// Per-session settings: timeout, data mode, TLS.
    pub session: Options,
    pub notify: Option<Notify>,
}

impl std::fmt::Debug for BenchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchOptions")
            .field("workload", &self.workload)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("clients", &self.clients)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

/// What one session did.
#[derive(Default)]
struct Tally {
    ok: u64,
    bytes: u64,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    stopped: bool,
    /// Start of the first operation and end of the last.
    window: Option<(Instant, Instant)>,
}

impl Tally {
    fn fail(&mut self, e: &Error) {
        self.errors.push(e.to_string());
    }

    fn done(&mut self, started: Instant, bytes: u64) {
        let now = Instant::now();
        self.ok += 1;
        self.bytes += bytes;
        self.latencies.push(now - started);
        self.window = Some(match self.window {
            Some((first, _)) => (first, now),
            None => (started, now),
        });
    }
}

/// True for addresses of this machine: the default target of a load generator.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Runs one workload.
pub async fn run(options: &BenchOptions) -> BenchReport {
    let options = Arc::new(options.clone());
    let clients = options.clients.max(1);
    let count = options.count.max(1);
    let mut report = BenchReport {
        workload: Some(options.workload),
        clients,
        count,
        planned: match options.workload {
            Workload::Idle => clients as u64,
            _ => (clients * count) as u64,
        },
        ..BenchReport::default()
    };
    let started = Instant::now();
    let deadline = started + options.duration;
    if options.workload == Workload::Idle {
        idle(&options, clients, &mut report).await;
    } else {
        let mut tasks = JoinSet::new();
        for index in 0..clients {
            let options = options.clone();
            tasks.spawn(async move {
                match options.workload {
                    Workload::Login => {
                        repeat(count, deadline, || async {
                            login_once(&options).await.map(|()| 0)
                        })
                        .await
                    }
                    Workload::Loopback => {
                        repeat(count, deadline, || async {
                            loopback_once(&options).await.map_err(Error::Network)
                        })
                        .await
                    }
                    _ => session_loop(&options, index, count, deadline).await,
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(tally) => report.merge(tally),
                Err(e) => report.merge(Tally {
                    errors: vec![format!("a bench task failed: {e}")],
                    ..Tally::default()
                }),
            }
        }
    }
    report.wall = started.elapsed();
    report.busy = report.window.map_or(report.wall, |(a, b)| b - a);
    report.latencies.sort_unstable();
    report
}

async fn logged_in(options: &BenchOptions) -> Result<Client> {
    let mut client = Client::connect(&options.host, options.port, options.session.clone()).await?;
    client.login(&options.user, &options.password).await?;
    Ok(client)
}

/// retr, stor, small, list: one session, `count` operations.
async fn session_loop(
    options: &BenchOptions,
    index: usize,
    count: usize,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut client = match logged_in(options).await {
        Ok(c) => c,
        Err(e) => {
            // The session's operations never ran: each counts as failed.
            for _ in 0..count {
                tally.fail(&e);
            }
            return tally;
        }
    };
    // Several uploaders write to files of their own.
    let upload_path = if options.clients > 1 {
        [&options.path[..], format!(".{index}").as_bytes()].concat()
    } else {
        options.path.clone()
    };
    for _ in 0..count {
        if Instant::now() >= deadline {
            tally.stopped = true;
            break;
        }
        if !client.in_step() {
            match logged_in(options).await {
                Ok(c) => client = c,
                Err(e) => {
                    tally.fail(&e);
                    continue;
                }
            }
        }
        let t0 = Instant::now();
        let result = match options.workload {
            Workload::Stor => {
                let mut input = tokio::io::repeat(b'w').take(options.size);
                client
                    .store(&upload_path, Store::Replace, &mut input, &NoProgress)
                    .await
            }
            Workload::List => client
                .listing("LIST", &options.path)
                .await
                .map(|raw| raw.len() as u64),
            _ => {
                client
                    .retrieve(&options.path, 0, &mut tokio::io::sink(), &NoProgress)
                    .await
            }
        };
        match result {
            Ok(bytes) => tally.done(t0, bytes),
            Err(e) => tally.fail(&e),
        }
    }
    if client.in_step() {
        client.quit().await;
    }
    tally
}

/// Connect, USER, PASS, QUIT: the cost of a session without any transfer.
async fn login_once(options: &BenchOptions) -> Result<()> {
    let mut client = Client::connect(&options.host, options.port, options.session.clone()).await?;
    client.secure().await?;
    let reply = client
        .command("USER", Some(options.user.as_bytes()))
        .await?;
    let reply = if reply.code == ReplyCode::NEED_PASSWORD {
        client
            .command("PASS", Some(options.password.as_bytes()))
            .await?
    } else {
        reply
    };
    if reply.code != ReplyCode::LOGGED_IN {
        return Err(Error::Refused {
            command: "the login".into(),
            reply,
        });
    }
    client.quit().await;
    Ok(())
}

/// login, loopback: `count` times one operation that stands alone, each returning its bytes.
async fn repeat<F, Fut>(count: usize, deadline: Instant, mut op: F) -> Tally
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut tally = Tally::default();
    for _ in 0..count {
        if Instant::now() >= deadline {
            tally.stopped = true;
            break;
        }
        let t0 = Instant::now();
        match op().await {
            Ok(bytes) => tally.done(t0, bytes),
            Err(e) => tally.fail(&e),
        }
    }
    tally
}

/// Holds `clients` logged-in sessions at once for `options.hold`, then quits them all.
async fn idle(options: &Arc<BenchOptions>, clients: usize, report: &mut BenchReport) {
    let (ready_tx, mut ready_rx) = mpsc::channel::<std::result::Result<Duration, String>>(64);
    let (release_tx, release_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let options = options.clone();
        let ready = ready_tx.clone();
        let mut release = release_rx.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            match logged_in(&options).await {
                Ok(client) => {
                    let _ = ready.send(Ok(t0.elapsed())).await;
                    let _ = release.wait_for(|&go| go).await;
                    // Still there after the hold? A server that dropped the session fails QUIT.
                    let mut client = client;
                    match client.command("NOOP", None).await {
                        Ok(r) if r.code.is_completion() => {
                            client.quit().await;
                            None
                        }
                        Ok(r) => Some(format!("NOOP after the hold: {}", r.code)),
                        Err(e) => Some(format!("after the hold: {e}")),
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(e.to_string())).await;
                    None
                }
            }
        });
    }
    drop(ready_tx);
    let mut tally = Tally::default();
    // Each session reports once (logged in or failed), and keeps its sender until released.
    for _ in 0..clients {
        let Some(result) = ready_rx.recv().await else {
            break;
        };
        match result {
            Ok(latency) => {
                report.held += 1;
                tally.latencies.push(latency);
            }
            Err(e) => tally.errors.push(e),
        }
    }
    if let Some(notify) = &options.notify {
        notify(&format!(
            "holding {} sessions for {} s",
            report.held,
            options.hold.as_secs_f64()
        ));
    }
    tokio::time::sleep(options.hold).await;
    let _ = release_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(None) => tally.ok += 1,
            Ok(Some(e)) => tally.errors.push(e),
            Err(e) => tally.errors.push(format!("a bench task failed: {e}")),
        }
    }
    // A session that failed to log in sent its error already; it is not also counted as ok.
    tally.ok = tally.ok.saturating_sub((clients - report.held) as u64);
    report.merge(tally);
}

/// The loopback limit: the same read loop as `retr`, from a sender that writes from memory.
async fn loopback_once(options: &BenchOptions) -> std::io::Result<u64> {
    use std::io::Write;
    let ip: IpAddr = options.host.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))?;
    let addr = listener.local_addr()?;
    let size = options.size;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        let chunk = vec![b'w'; 256 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            stream.write_all(chunk.get(..n).unwrap_or_default())?;
            left -= n as u64;
        }
        Ok(())
    });
    let mut stream = tokio::time::timeout(
        options.session.timeout,
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = tokio::time::timeout(options.session.timeout, stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    match sender.join() {
        Ok(r) => r?,
        Err(_) => return Err(std::io::Error::other("the sender thread panicked")),
    }
    Ok(total)
}
