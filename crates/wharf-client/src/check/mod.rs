//! The troubleshooter behind `wharf check`: what an administrator does by hand with telnet and a
//! client's log, in order — resolve, connect, banner, login, SYST, FEAT, a listing over each data
//! method, then PWD, TYPE I, the listing parsed, a resumed download, the names (UTF-8), with
//! `--write` an upload, rename and delete, the other address family, TLS versions and session
//! reuse, and on Wharf what the server saw (SITE DIAG) — each with a verdict, the evidence and,
//! on failure, the likely cause and the change to make, named in the server's own terms.
//!
//! The shape: probes (`probe*.rs`) do the I/O and return facts; judges (`judge_*.rs`) are pure
//! functions from facts to a step's verdict, cause and advice, each with table tests; the
//! stages (`stages.rs`) tell each step as it starts, run its probe and keep what its judge
//! says; [`check`] is the ordered list of stages; the report (`report.rs`) is a serde type.

mod judge_banner;
mod judge_connect;
mod judge_data;
mod judge_login;
mod judge_server;
mod judge_session;
mod judge_tls;
mod judge_write;
mod probe;
mod probe_session;
mod report;
mod software;
mod stages;

use std::time::{Duration, Instant};

pub(crate) use judge_banner::name_service;
pub use report::{Report, Step, Verdict, json_str};
pub use software::Software;

use crate::client::{DataMode, Options};
use crate::log::LogSink;
use crate::tls::TlsSettings;
use probe::Account;

/// What to check, and how.
#[derive(Clone)]
pub struct CheckOptions {
    pub host: String,
    pub port: u16,
    /// `None`: anonymous.
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
    pub log: Option<LogSink>,
    /// FTPS: check TLS too (build the settings with `accept_invalid`, so that a certificate
    /// problem is reported and the rest still checked).
    pub tls: Option<TlsSettings>,
    /// The user accepts certificates that do not verify (`--insecure`): a warning, not a failure.
    pub insecure: bool,
    /// Told each step as it starts (with what it waits for) and as it ends: live output.
    pub progress: Option<Progress>,
    /// Also upload, check, rename and delete a test file (and one with a non-ASCII name) in
    /// the login directory (`--write`).
    pub write: bool,
}

/// A step starting or ending, as the check runs.
pub enum Event<'a> {
    Start {
        name: &'a str,
        /// What the step waits for, and how long at most.
        waiting: &'a str,
    },
    Done(&'a Step),
}

/// Where [`Event`]s go.
pub type Progress = std::sync::Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// Runs the diagnosis. Never fails: every failure is a step of the report.
pub async fn check(opts: &CheckOptions) -> Report {
    let mut run = Run {
        steps: Vec::new(),
        progress: opts.progress.clone(),
        told: 0,
        target: target(&opts.host, opts.port),
    };
    let (software, working, exit_code) = match stages_in_order(&mut run, opts).await {
        Ok(done) => done,
        Err(Stop {
            software,
            exit_code,
        }) => (software, Vec::new(), exit_code),
    };
    run.finish(software, working, exit_code)
}

/// What an administrator does by hand, in order. A stage after which nothing more can be
/// checked stops the list ([`Stop`]); else: the server, the data methods that work, and the
/// exit code.
async fn stages_in_order(
    run: &mut Run,
    opts: &CheckOptions,
) -> Result<(Option<Software>, Vec<crate::DataMethod>, u8), Stop> {
    let begun = Instant::now();
    let options = client_options(opts);
    let addrs = stages::resolve(run, opts).await?;
    let (control, tried) = stages::connect(run, opts, &addrs).await?;
    let (mut client, software) = stages::banner(run, opts, &options, control).await?;
    stages::host(run, opts, &mut client).await;
    let tls_failed = stages::tls(run, opts, &mut client, software).await?;
    let (user, password) = credentials(opts);
    stages::login(
        run,
        opts,
        &mut client,
        (&user, &password),
        tls_failed,
        software,
    )
    .await?;
    let account = Account {
        options: &options,
        user: &user,
        password: &password,
    };
    let software = stages::syst_feat(run, &mut client, software).await;
    let working = stages::data_methods(run, &mut client, &account, software).await;
    if !working.is_empty() && account.ready(&mut client).await.is_ok() {
        stages::after_login(run, opts, &mut client, &account, software).await;
    }
    if let (Some(settings), false) = (&opts.tls, tls_failed) {
        let peer = client.peer_addr();
        stages::tls_depth(run, settings, peer, &account, &working, software).await;
    }
    if software == Software::Wharf && account.ready(&mut client).await.is_ok() {
        stages::server_side(run, &mut client, opts.timeout, begun).await;
    }
    let used = client.peer_addr();
    if client.in_step() {
        client.quit().await;
    }
    // The other address family, when the name has both and the first worked: clients that
    // prefer it (IPv6 first, most of them) must work too.
    if let Some(other) = addrs
        .iter()
        .find(|a| a.is_ipv4() != used.is_ipv4() && !tried.contains(a))
    {
        stages::other_family(run, *other, &opts.host, &account, software).await;
    }
    let exit_code = if working.is_empty() || tls_failed {
        1
    } else {
        0
    };
    Ok((Some(software), working, exit_code))
}

/// The client's options for every session of the check.
fn client_options(opts: &CheckOptions) -> Options {
    Options {
        timeout: opts.timeout,
        mode: DataMode::Auto,
        log: opts.log.clone(),
        tls: opts.tls.clone(),
        // A checker connects only where the user pointed it, whatever a server announces.
        trust_pasv_address: false,
        throttle: None,
    }
}

/// The user and password to log in with: anonymous's when no user is given.
fn credentials(opts: &CheckOptions) -> (String, String) {
    match &opts.user {
        Some(u) => (u.clone(), opts.password.clone().unwrap_or_default()),
        None => (
            crate::connector::ANONYMOUS.0.to_string(),
            crate::connector::ANONYMOUS.1.to_string(),
        ),
    }
}

/// The check stopped early: the server as far as known, and the exit code.
struct Stop {
    software: Option<Software>,
    exit_code: u8,
}

impl Stop {
    fn at(software: Option<Software>, exit_code: u8) -> Stop {
        Stop {
            software,
            exit_code,
        }
    }
}

/// `HOST:PORT` as the check names its target (an IPv6 address in brackets).
pub fn target(host: &str, port: u16) -> String {
    format!("{}:{port}", target_host(host))
}

/// The host as a URL spells it (an IPv6 address in brackets).
fn target_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Collects steps, and tells them to [`Progress`] as they end.
struct Run {
    steps: Vec<Step>,
    target: String,
    progress: Option<Progress>,
    /// Steps already told to `progress`.
    told: usize,
}

impl Run {
    /// A step starts: the steps that ended before are told, then this one with what it waits
    /// for.
    fn start(&mut self, name: &str, waiting: &str) {
        self.tell();
        if let Some(p) = &self.progress {
            p(&Event::Start { name, waiting });
        }
    }

    /// Tells the steps that ended and were not told yet (their cause and advice included).
    fn tell(&mut self) {
        if let Some(p) = &self.progress {
            for step in self.steps.get(self.told..).unwrap_or_default() {
                p(&Event::Done(step));
            }
        }
        self.told = self.steps.len();
    }

    /// Keeps a step; a failed one stops the check, as `stop` says.
    fn keep(&mut self, step: Step, stop: Stop) -> Result<(), Stop> {
        let failed = step.verdict == Verdict::Fail;
        self.steps.push(step);
        if failed { Err(stop) } else { Ok(()) }
    }

    fn finish(
        mut self,
        software: Option<Software>,
        working: Vec<crate::DataMethod>,
        exit_code: u8,
    ) -> Report {
        if let Some(slow) = report::slow_step(&self.steps) {
            self.steps.push(slow);
        }
        self.tell();
        let summary = report::summary(&self.target, &self.steps, &working, exit_code);
        Report {
            target: self.target,
            software,
            steps: self.steps,
            working,
            summary,
            exit_code,
        }
    }
}
