//! The client commands: `wharf ls/get/put/rm/mkdir/rmdir/mv/mirror/shell`, over `wharf-client`.
//! Exit codes (DESIGN §1): 0 success, 1 the server refused (the reply is printed), 2 usage,
//! 3 network or connection failure, 130 interrupted (Ctrl-C). A local file error is 1.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use wharf_client::mirror::{self, Direction, MirrorOptions};
use wharf_client::tree::{self, Connector, Resume, TreeOptions, TreeReport, plural};
use wharf_client::url::redact;
use wharf_client::{
    Client, DataMode, Entry, Error, ErrorKind, FileKind, FtpUrl, LogLine, Options, Progress,
};
use wharf_proto::glob;

/// Flags every client command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Passive mode only (EPSV, then PASV)
    #[arg(long, conflicts_with = "active")]
    pub passive: bool,
    /// Active mode only (EPRT, then PORT)
    #[arg(long)]
    pub active: bool,
    /// Print the connection log (Status/Command/Response lines) to stderr
    #[arg(short = 'v', long = "log", visible_alias = "verbose")]
    pub log: bool,
    /// No result lines (errors and warnings are still printed)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Seconds to wait for a connection, for each reply and for data to move
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Read the password from the first line of stdin (else WHARF_PASSWORD, else ~/.netrc,
    /// else a prompt)
    #[arg(long)]
    pub password_stdin: bool,
    /// Read logins and passwords from this file instead of ~/.netrc
    #[arg(long, value_name = "FILE")]
    pub netrc_file: Option<PathBuf>,
    /// Limit the whole command to RATE bytes a second, all sessions together (500k, 2M, 1G;
    /// k = 1024)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
    /// Connect to the address a PASV reply announces even when it is not the server's own
    /// (by default the server's own address is used: a server cannot steer the client elsewhere)
    #[arg(long)]
    pub trust_pasv_address: bool,
    #[command(flatten)]
    pub tls: TlsFlags,
}

/// `500k`, `2M`, `1.5G`, `100000` (k, M, G are powers of 1024, as curl reads them).
fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit must be k, M or G")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (like 500k or 2M)"))?;
    let rate = value * scale as f64;
    if !(1.0..=1e13).contains(&rate) {
        return Err(format!(
            "{text:?}: the rate must be at least 1 byte a second"
        ));
    }
    Ok(rate as u64)
}

/// FTPS flags, shared by the client commands and `wharf check`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsFlags {
    /// Use explicit TLS (AUTH TLS) with an ftp:// URL, as ftpes:// does
    #[arg(long)]
    tls: bool,
    /// Trust only the CA certificates in this PEM file (instead of the system's)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate (its name and who issued it); still encrypted
    #[arg(long)]
    insecure: bool,
}

impl TlsFlags {
    /// The TLS settings the URL and flags ask for; `None` for plain FTP.
    pub fn settings(
        &self,
        url: &FtpUrl,
        accept_invalid: bool,
    ) -> Result<Option<wharf_client::TlsSettings>, Error> {
        use wharf_client::url::Security;
        let implicit = match (url.security, self.tls) {
            (Security::Implicit, _) => true,
            (Security::Explicit, _) | (Security::None, true) => false,
            (Security::None, false) => {
                if self.ca_file.is_some() || self.insecure {
                    return Err(Error::Usage(
                        "--ca-file and --insecure need TLS: use ftpes://, ftps:// or --tls".into(),
                    ));
                }
                return Ok(None);
            }
        };
        let trust = match &self.ca_file {
            Some(p) => wharf_client::Trust::CaFile(p.clone()),
            None => wharf_client::Trust::System,
        };
        wharf_client::TlsSettings::new(&url.host, implicit, &trust, accept_invalid || self.insecure)
            .map(Some)
    }
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// ftp://[user@]host[:port]/path (a directory, a file, or a pattern like /logs/*.gz)
    url: String,
    /// Long form: type, size, modification time (UTC), name
    #[arg(short = 'l')]
    long: bool,
    /// One JSON array: an object per entry with the MLSD facts (type, size, modify, perm, …)
    #[arg(long, conflicts_with = "long")]
    json: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TransferFlags {
    /// Resume: continue a partial file (NAME.wharf-part, or a shorter NAME) from its size (REST;
    /// APPE for uploads where needed)
    #[arg(short = 'c', long = "continue")]
    resume: bool,
    /// Copy a directory tree
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Transfer in ASCII mode (TYPE A: line endings converted)
    #[arg(long, conflicts_with = "resume")]
    ascii: bool,
    #[command(flatten)]
    pool: PoolFlags,
}

/// How many sessions work at once, and how often a broken transfer is tried again.
#[derive(clap::Args, Debug, Clone)]
pub struct PoolFlags {
    /// Sessions used at once for a tree (-r), several files or a mirror; fewer when the server
    /// limits connections
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// When a transfer breaks (network, timeout, 421/425/426/450/451), reconnect and resume it
    /// with REST, up to N times, waiting 1, 2, 4 … 30 s between tries
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    retry: u32,
}

impl PoolFlags {
    fn tree_options(&self) -> TreeOptions {
        TreeOptions {
            parallel: usize::from(self.parallel),
            retries: self.retry,
            ..TreeOptions::default()
        }
    }
}

impl TransferFlags {
    fn tree_options(&self) -> TreeOptions {
        TreeOptions {
            resume: self.resume,
            ..self.pool.tree_options()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// ftp://[user@]host[:port]/path; a pattern in the last part (quoted: 'ftp://h/logs/*.gz')
    /// gets every file it matches
    url: String,
    /// Local file or directory (default: the remote name in the current directory; - for stdout)
    local: Option<PathBuf>,
    /// Download one file over N sessions at once, each a byte range
    #[arg(long, value_name = "N", conflicts_with_all = ["recursive", "ascii", "resume"],
          value_parser = clap::value_parser!(u16).range(1..=32))]
    segments: Option<u16>,
    #[command(flatten)]
    flags: TransferFlags,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// Local file (or directory with -r; - for stdin)
    local: PathBuf,
    /// ftp://[user@]host[:port]/path (ending in / : into that directory)
    url: String,
    /// Create the remote directories the path names that are missing (MKD each)
    #[arg(long)]
    create_dirs: bool,
    /// With -r: upload what symbolic links leading out of the tree point to (skipped otherwise)
    #[arg(long)]
    follow_links: bool,
    #[command(flatten)]
    flags: TransferFlags,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// ftp://[user@]host[:port]/path, one or more (rm: a pattern in the last part deletes every
    /// file it matches)
    #[arg(required = true)]
    urls: Vec<String>,
    /// mkdir: create missing parent directories too, and do not fail when it exists
    #[arg(short = 'p', long)]
    parents: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct MvArgs {
    /// ftp://[user@]host[:port]/path
    url: String,
    /// New path on the same server (relative to the login directory, or absolute with /), or a
    /// URL of the same server
    new_path: String,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct MirrorArgs {
    /// Source: an ftp:// URL of a directory or a local directory
    src: String,
    /// Destination: a local directory or an ftp:// URL of a directory (the other kind than SRC)
    dst: String,
    /// Delete what DST has and SRC lacks
    #[arg(long)]
    delete: bool,
    /// Print what would be done, and do nothing
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Only files matching GLOB (name, or path with /); repeatable
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files and directories matching GLOB (name, or path with /); repeatable
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Upload what symbolic links leading out of the tree point to (skipped otherwise)
    #[arg(long)]
    follow_links: bool,
    #[command(flatten)]
    pool: PoolFlags,
    #[command(flatten)]
    common: Common,
}

/// What the client was asked to do.
#[derive(Debug)]
pub enum Request {
    Ls(LsArgs),
    Get(GetArgs),
    Put(PutArgs),
    Rm(PathArgs),
    Mkdir(PathArgs),
    Rmdir(PathArgs),
    Mv(MvArgs),
    Mirror(MirrorArgs),
}

/// Where partial downloads of this command go (a `.part` file, or a directory of them), and
/// how to resume them: named in the message after an interruption or a failure.
static PARTIALS: Mutex<Vec<(PathBuf, &'static str)>> = Mutex::new(Vec::new());

/// How `get` resumes.
const RESUME_GET: &str = "run again with -c to resume";
/// How `mirror` resumes.
const RESUME_MIRROR: &str = "run the mirror again to resume";

fn note_partial(path: PathBuf, how: &'static str) {
    if let Ok(mut p) = PARTIALS.lock() {
        p.push((path, how));
    }
}

/// Runs a client command and turns its result into the exit code. Ctrl-C stops it; partial
/// downloads are kept, and the user is told how to resume them.
pub fn run(request: Request) -> ExitCode {
    let runtime = match crate::start_runtime(Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = dispatch(request) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match outcome {
        Some(Ok(code)) => code,
        Some(Err(e)) => {
            let code = fail(&e);
            hint_partials();
            code
        }
        None => {
            eprintln!();
            eprintln!("wharf: interrupted");
            hint_partials();
            ExitCode::from(130)
        }
    }
}

/// Names the partial files on disk, with how to continue them.
fn hint_partials() {
    let kept: Vec<(PathBuf, &str)> = PARTIALS
        .lock()
        .map(|p| p.iter().filter(|(p, _)| p.exists()).cloned().collect())
        .unwrap_or_default();
    for (path, how) in kept {
        if path.is_dir() {
            eprintln!(
                "wharf: partial files (NAME.wharf-part) under {} are kept: {how}",
                path.display()
            );
        } else {
            eprintln!("wharf: the partial file {} is kept: {how}", path.display());
        }
    }
}

async fn dispatch(request: Request) -> Result<ExitCode, Error> {
    match request {
        Request::Ls(a) => ls(a).await,
        Request::Get(a) => get(a).await,
        Request::Put(a) => put(a).await,
        Request::Rm(a) => paths(a, PathOp::Rm).await,
        Request::Mkdir(a) => paths(a, PathOp::Mkdir).await,
        Request::Rmdir(a) => paths(a, PathOp::Rmdir).await,
        Request::Mv(a) => mv(a).await,
        Request::Mirror(a) => mirror_cmd(a).await,
    }
}

fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Refused | ErrorKind::Local => 1,
        ErrorKind::Usage => 2,
        ErrorKind::Network => 3,
    }
}

/// Text from the server (names, reply text) with control characters shown as `?`, so that it
/// cannot drive the user's terminal.
pub fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn fail(e: &Error) -> ExitCode {
    eprintln!("wharf: {}", clean(&e.to_string()));
    ExitCode::from(exit_code(e.kind()))
}

/// The session set-up shared by all commands: URL, password, options, log and progress.
pub struct Setup {
    pub url: FtpUrl,
    pub connector: Connector,
    pub bar: Bar,
    pub quiet: bool,
}

pub fn setup(url: &str, common: &Common, want_bar: bool) -> Result<Setup, Error> {
    let mut url = FtpUrl::parse(url)?;
    let password = credentials(&mut url, common)?;
    let show_bar = want_bar && std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    let bar = Bar::new(show_bar);
    let log = common.log.then(|| {
        let bar = bar.bar.clone();
        Arc::new(move |line: &LogLine| match &bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }) as wharf_client::LogSink
    });
    let options = Options {
        timeout: Duration::from_secs(common.timeout),
        mode: match (common.passive, common.active) {
            (true, _) => DataMode::Passive,
            (_, true) => DataMode::Active,
            _ => DataMode::Auto,
        },
        log,
        tls: common.tls.settings(&url, false)?,
        trust_pasv_address: common.trust_pasv_address,
        throttle: common
            .limit_rate
            .map(|r| Arc::new(wharf_client::RateLimit::new(r)) as Arc<dyn wharf_client::Throttle>),
    };
    let connector = Connector::new(&url, password, options);
    Ok(Setup {
        url,
        connector,
        bar,
        quiet: common.quiet,
    })
}

/// The password for the URL's user, from the URL, `--password-stdin`, `WHARF_PASSWORD`, the
/// netrc file or a prompt, in that order. A URL without a user takes the netrc file's login for
/// its host when there is one (as curl and lftp do), else it is anonymous.
fn credentials(url: &mut FtpUrl, common: &Common) -> Result<Option<String>, Error> {
    if url.password.is_some() {
        return Ok(url.password.clone());
    }
    // A password given on purpose (stdin, WHARF_PASSWORD) wins over the netrc's; the netrc
    // still gives the login when the URL has none.
    let explicit = common.password_stdin || std::env::var_os("WHARF_PASSWORD").is_some();
    if !(explicit && url.user.is_some()) {
        if let Some(found) = netrc(url, common.netrc_file.as_deref())? {
            if url.user.is_none() {
                url.user = found.login.clone();
            }
            if !explicit && url.user.is_some() {
                // An entry without a password (`login anonymous`) is a login without one.
                if found.password.is_none() && !std::io::stdin().is_terminal() {
                    return Ok(None);
                }
                if found.password.is_some() {
                    return Ok(found.password);
                }
            }
        }
    }
    password_for(url, common.password_stdin)
}

/// The netrc entry for the URL's host (and user, when it names one). The file is `--netrc-file`
/// or `~/.netrc`; a missing `~/.netrc` is no error, a missing `--netrc-file` is. A file others
/// can read gets a warning.
fn netrc(
    url: &FtpUrl,
    file: Option<&Path>,
) -> Result<Option<wharf_client::netrc::Credentials>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let (path, must_exist) = match file {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os("HOME") {
            Some(home) => (PathBuf::from(home).join(".netrc"), false),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::local(e).at(&path)),
    };
    if let Ok(meta) = std::fs::metadata(&path) {
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            eprintln!(
                "wharf: warning: {} is readable by others (mode {:o}): its passwords are not secret; chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(wharf_client::netrc::lookup(
        &text,
        &url.host,
        url.user.as_deref(),
    ))
}

/// The password: the URL's, else `--password-stdin`, else `WHARF_PASSWORD`, else a prompt
/// on a terminal. None for anonymous logins.
pub fn password_for(url: &FtpUrl, password_stdin: bool) -> Result<Option<String>, Error> {
    let Some(user) = &url.user else {
        return Ok(None);
    };
    if let Some(p) = &url.password {
        return Ok(Some(p.clone()));
    }
    if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Error::Usage(format!("cannot read the password from stdin: {e}")))?;
        return Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()));
    }
    if let Ok(p) = std::env::var("WHARF_PASSWORD") {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        return Ok(crate::prompt_hidden(&format!(
            "Password for {user}@{}: ",
            url.host
        )));
    }
    // Anonymous logins need no password of the user's.
    if user.eq_ignore_ascii_case("anonymous") || user.eq_ignore_ascii_case("ftp") {
        return Ok(None);
    }
    // No one to ask: say where a password goes rather than send an empty one.
    Err(Error::Usage(format!(
        "no password for {user}@{} and no terminal to ask on: set WHARF_PASSWORD, pipe it with --password-stdin, or put it in ~/.netrc",
        url.host
    )))
}

/// What this run moved: the rate, the time left and the result lines come from these bytes
/// only (not from what a resumed file already had), timed from when data first flowed.
#[derive(Debug, Default)]
struct Moved {
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Moved {
    fn secs(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    fn rate(&self) -> Option<f64> {
        let secs = self.first?.elapsed().as_secs_f64();
        (secs > 0.2 && self.bytes > 0).then(|| self.bytes as f64 / secs)
    }
}

/// Progress: an indicatif bar on a terminal, and always the count behind the result lines.
#[derive(Clone)]
pub struct Bar {
    bar: Option<ProgressBar>,
    moved: Arc<Mutex<Moved>>,
}

impl Bar {
    fn new(show: bool) -> Bar {
        let moved = Arc::new(Mutex::new(Moved::default()));
        let bar = show.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(bar_style(false, &moved));
            bar
        });
        Bar { bar, moved }
    }

    pub fn moved(&self) -> (u64, f64) {
        self.moved
            .lock()
            .map(|m| (m.bytes, m.secs()))
            .unwrap_or_default()
    }

    /// Starts counting afresh (the next file of a list, say).
    pub fn reset(&self) {
        if let Ok(mut m) = self.moved.lock() {
            *m = Moved::default();
        }
        if let Some(b) = &self.bar {
            b.set_position(0);
            b.set_length(0);
            b.reset();
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    /// Writes a line above the bar (or just to stderr).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

fn bar_style(known_total: bool, moved: &Arc<Mutex<Moved>>) -> ProgressStyle {
    // Decimal units (kB, MB), as the rate and README use: never MiB beside MB/s.
    let template = if known_total {
        "{decimal_bytes:>10}/{decimal_total_bytes:<10} [{bar:30}] {rate:>12} ETA {left}"
    } else {
        "{decimal_bytes:>10} {rate:>12} {elapsed}"
    };
    let (for_rate, for_left) = (moved.clone(), moved.clone());
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = for_rate.lock().ok().and_then(|m| m.rate());
                let _ = match rate {
                    Some(r) => write!(w, "{}", wharf_client::client::format_rate(r)),
                    None => write!(w, "-"),
                };
            },
        )
        .with_key(
            "left",
            move |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let rate = for_left.lock().ok().and_then(|m| m.rate());
                let left = s.len().map(|l| l.saturating_sub(s.pos()));
                let _ = match (rate, left) {
                    (Some(r), Some(left)) => write!(w, "{}", format_secs(left as f64 / r)),
                    _ => write!(w, "-"),
                };
            },
        )
        .progress_chars("=> ")
}

/// `7s`, `3m05s`, `2h10m`.
fn format_secs(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `1.2 MB`, decimal units as transfer sizes are given next to rates.
fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(bar_style(true, &self.moved));
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(mut m) = self.moved.lock() {
            let now = Instant::now();
            m.first.get_or_insert(now);
            m.last = Some(now);
            m.bytes += bytes;
        }
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    fn resumed(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
}

/// `name: 5.0 MB in 1.2 s (4.2 MB/s)`: what this run moved for one file.
pub fn result_line(s: &Setup, name: &str, total: Option<u64>) {
    if s.quiet {
        return;
    }
    let (bytes, secs) = s.bar.moved();
    let mut line = format!("{}: {}", clean(name), format_size(bytes));
    if let Some(total) = total.filter(|&t| t != bytes) {
        line.push_str(&format!(" (of {})", format_size(total)));
    }
    line.push_str(&format!(" in {secs:.1} s"));
    if secs > 0.0 {
        line.push_str(&format!(
            " ({})",
            wharf_client::client::format_rate(bytes as f64 / secs)
        ));
    }
    s.bar.println(&line);
}

async fn ls(args: LsArgs) -> Result<ExitCode, Error> {
    let s = setup(&args.url, &args.common, false)?;
    let mut client = s.connector.open().await?;
    let path = s.url.path_trimmed().to_vec();
    let (dir, pattern) = split_pattern(&path);
    let entries: Vec<(Entry, Option<serde_json::Value>)> = match pattern {
        Some(p) => list_json(&mut client, dir, args.json)
            .await?
            .into_iter()
            .filter(|(e, _)| glob::matches(p, &e.name))
            .collect(),
        None => match list_json(&mut client, &path, args.json).await {
            Ok(entries) => entries,
            // Not a directory: a file's facts come from MLST (without MLST, LIST of a file
            // gave its line already).
            Err(e) if names_no_directory(&e, &path) && client.in_step() => {
                match file_entry(&mut client, &path, args.json).await? {
                    Some(one) => vec![one],
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        },
    };
    client.quit().await;
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    if args.json {
        let all: Vec<serde_json::Value> = entries
            .iter()
            .map(|(e, facts)| facts.clone().unwrap_or_else(|| entry_json(e)))
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(all));
        let _ = out.flush();
        return Ok(ExitCode::SUCCESS);
    }
    for (e, _) in &entries {
        let mut line = if args.long {
            long_line(e)
        } else {
            let mut l = e.name.clone();
            l.push(b'\n');
            l
        };
        if terminal {
            // A name from the server must not drive the user's terminal (escape sequences).
            let end = line.len().saturating_sub(1);
            for b in line.iter_mut().take(end) {
                if b.is_ascii_control() {
                    *b = b'?';
                }
            }
        }
        if out.write_all(&line).is_err() {
            break;
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// Whether a listing failed because `path` is no directory (550, 501 or 450 to MLSD of a
/// file), rather than because of the data connection or the session.
pub fn names_no_directory(e: &Error, path: &[u8]) -> bool {
    !path.is_empty()
        && !e.is_data_connection_failure()
        && e.reply_code()
            .is_some_and(wharf_proto::ReplyCode::names_no_directory)
}

/// What a pattern in the last component of `path` matches: each entry of that kind (files,
/// or anything but directories) with its path; `None` when `path` has no pattern. Matching
/// nothing is an error that names the pattern.
pub async fn expand(
    client: &mut Client,
    path: &[u8],
    files_only: bool,
) -> Result<Option<Vec<(Vec<u8>, Entry)>>, Error> {
    let (dir, Some(pattern)) = split_pattern(path) else {
        return Ok(None);
    };
    let matched: Vec<(Vec<u8>, Entry)> = client
        .list(dir)
        .await?
        .into_iter()
        .filter(|e| {
            let kind = if files_only {
                e.kind == FileKind::File
            } else {
                e.kind != FileKind::Dir
            };
            kind && tree::is_safe_name(&e.name) && glob::matches(pattern, &e.name)
        })
        .map(|e| (tree::join_remote(dir, &e.name), e))
        .collect();
    if matched.is_empty() {
        return Err(Error::Usage(format!(
            "no file matches {}",
            String::from_utf8_lossy(path)
        )));
    }
    Ok(Some(matched))
}

/// `dir/pat*` → (`dir`, Some(`pat*`)) when the last component is a pattern.
pub fn split_pattern(path: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (dir, last) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (
            path.get(..i).unwrap_or_default(),
            path.get(i + 1..).unwrap_or_default(),
        ),
        None => (&b""[..], path),
    };
    if glob::is_pattern(last) {
        let dir = if dir.is_empty() && path.starts_with(b"/") {
            &b"/"[..]
        } else {
            dir
        };
        (dir, Some(last))
    } else {
        (path, None)
    }
}

/// A listing, each entry with its MLSD facts as JSON when `json` and the server has MLSD.
async fn list_json(
    client: &mut Client,
    path: &[u8],
    json: bool,
) -> Result<Vec<(Entry, Option<serde_json::Value>)>, Error> {
    if json && client.features().mlst {
        let raw = client.listing("MLSD", path).await?;
        return Ok(raw
            .split(|&b| b == b'\n')
            .filter_map(|line| {
                let facts = facts_json(line)?;
                match wharf_proto::entry::parse_mlsx_line(line)? {
                    wharf_proto::entry::MlsxLine::Entry(e) => Some((e, Some(facts))),
                    wharf_proto::entry::MlsxLine::SelfOrParent => None,
                }
            })
            .collect());
    }
    Ok(client
        .list(path)
        .await?
        .into_iter()
        .map(|e| (e, None))
        .collect())
}

/// One file's entry, from MLST (`None` without MLST: LIST of a file gave its line already, or
/// it is no file).
async fn file_entry(
    client: &mut Client,
    path: &[u8],
    json: bool,
) -> Result<Option<(Entry, Option<serde_json::Value>)>, Error> {
    let Some(line) = client.mlst_line(path).await? else {
        return Ok(None);
    };
    let Some(e) = wharf_client::client::mlst_entry(&line).filter(|e| e.kind != FileKind::Dir)
    else {
        return Ok(None);
    };
    let mut facts = json.then(|| facts_json(&line)).flatten();
    if let Some(serde_json::Value::Object(o)) = &mut facts {
        // The name, not the path MLST was asked for.
        o.insert(
            "name".into(),
            String::from_utf8_lossy(&e.name).into_owned().into(),
        );
    }
    Ok(Some((e, facts)))
}

/// `{"name": …, "type": "file", "size": "12", "modify": "2026…"}`: an MLSx line's facts, names
/// in lower case, values as sent.
fn facts_json(line: &[u8]) -> Option<serde_json::Value> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let space = line.iter().position(|&b| b == b' ')?;
    let (facts, name) = (line.get(..space)?, line.get(space + 1..)?);
    let mut object = serde_json::Map::new();
    object.insert(
        "name".into(),
        String::from_utf8_lossy(name).into_owned().into(),
    );
    for fact in facts.split(|&b| b == b';').filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(fact);
        let (key, value) = text.split_once('=')?;
        let value: serde_json::Value = match value.parse::<u64>() {
            Ok(n) if key.eq_ignore_ascii_case("size") => n.into(),
            _ => value.to_string().into(),
        };
        object.insert(key.to_ascii_lowercase(), value);
    }
    Some(serde_json::Value::Object(object))
}

/// The facts a LIST line gives, in the MLSD names.
fn entry_json(e: &Entry) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(
        "name".into(),
        String::from_utf8_lossy(&e.name).into_owned().into(),
    );
    let kind = match e.kind {
        FileKind::Dir => "dir",
        FileKind::File => "file",
        FileKind::Symlink => "OS.unix=symlink",
        FileKind::Other => "other",
    };
    object.insert("type".into(), kind.into());
    if let Some(size) = e.size {
        object.insert("size".into(), size.into());
    }
    if let Some(t) = e.mtime {
        object.insert(
            "modify".into(),
            wharf_proto::UtcTime::from_unix(t).to_timeval().into(),
        );
    }
    if let Some(target) = &e.link_target {
        object.insert(
            "target".into(),
            String::from_utf8_lossy(target).into_owned().into(),
        );
    }
    serde_json::Value::Object(object)
}

/// `d         4096  2026-11-24 13:49  name`; a symlink shows `-> target` when LIST told it.
pub fn long_line(e: &Entry) -> Vec<u8> {
    let kind = match e.kind {
        FileKind::Dir => 'd',
        FileKind::File => '-',
        FileKind::Symlink => 'l',
        FileKind::Other => '?',
    };
    let size = e.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let date = e.mtime.map_or_else(
        || "-               ".to_string(),
        |t| {
            let t = wharf_proto::UtcTime::from_unix(t);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}",
                t.year, t.month, t.day, t.hour, t.minute
            )
        },
    );
    let mut line = format!("{kind} {size:>14}  {date}  ").into_bytes();
    line.extend_from_slice(&e.name);
    if let Some(target) = &e.link_target {
        line.extend_from_slice(b" -> ");
        line.extend_from_slice(target);
    }
    line.push(b'\n');
    line
}

pub fn local_name(name: &[u8]) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    if !tree::is_safe_name(name) {
        return Err(Error::Usage(format!(
            "cannot make a local name of {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(name)))
}

/// Runs `attempt` once, and again up to `retries` times after a transient failure (a pause of
/// 1, 2, 4 … 30 s first); each later try gets `true` (resume).
async fn with_retries<T, F, Fut>(
    s: &Setup,
    retries: u32,
    what: &str,
    mut attempt: F,
) -> Result<T, Error>
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut tries = 0u32;
    loop {
        match attempt(tries > 0).await {
            Err(e) if tries < retries && tree::is_transient(&e) => {
                tries += 1;
                let wait = tree::backoff(tries);
                s.bar.println(&format!(
                    "wharf: {}: {}; trying again in {} s (try {} of {})",
                    clean(what),
                    clean(&e.to_string()),
                    wait.as_secs(),
                    tries + 1,
                    retries + 1
                ));
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

async fn get(args: GetArgs) -> Result<ExitCode, Error> {
    let to_stdout = args.local.as_deref() == Some(Path::new("-"));
    let mut s = setup(&args.url, &args.common, !to_stdout)?;
    s.connector.ascii = args.flags.ascii;
    let remote = s.url.path_trimmed().to_vec();
    if let (_, Some(_)) = split_pattern(&remote) {
        return get_matching(&s, &args, &remote).await;
    }
    if args.flags.recursive {
        if to_stdout {
            return Err(Error::Usage("-r cannot write to stdout".into()));
        }
        let local = match (&args.local, s.url.file_name()) {
            (Some(l), _) => l.clone(),
            (None, Some(name)) => local_name(name)?,
            (None, None) => PathBuf::from("."),
        };
        note_partial(local.clone(), RESUME_GET);
        let client = s.connector.open().await?;
        let options = args.flags.tree_options();
        let report = tree::download_tree(
            client,
            &s.connector,
            &remote,
            &local,
            options,
            Arc::new(s.bar.clone()),
        )
        .await?;
        s.bar.finish();
        return Ok(tree_exit(&s, &report));
    }
    if remote.is_empty() || s.url.trailing_slash {
        return Err(Error::Usage(format!(
            "{} names a directory: use -r to copy it, or `wharf ls` to list it",
            redact(&args.url)
        )));
    }
    let name = s
        .url
        .file_name()
        .ok_or_else(|| Error::Usage("the URL names no file".into()))?
        .to_vec();
    let shown = String::from_utf8_lossy(&name).into_owned();
    if to_stdout {
        let retries = args.flags.pool.retry;
        let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
        with_retries(&s, retries, &shown, |_| {
            let (s, remote, written) = (&s, &remote, written.clone());
            async move {
                let mut client = s.connector.open().await?;
                // What stdout has already had cannot be taken back: a retry resumes after it.
                let from = written.load(std::sync::atomic::Ordering::Relaxed);
                let mut out = tree::Counting::new(tokio::io::stdout());
                let result = client.retrieve(remote, from, &mut out, &s.bar).await;
                written.fetch_add(out.written, std::sync::atomic::Ordering::Relaxed);
                result?;
                client.quit().await;
                Ok(())
            }
        })
        .await?;
        result_line(&s, &shown, None);
        return Ok(ExitCode::SUCCESS);
    }
    let local = match &args.local {
        None => local_name(&name)?,
        Some(l) if l.is_dir() => l.join(local_name(&name)?),
        Some(l) => l.clone(),
    };
    if let Some(parent) = local.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(Error::Local {
                path: local.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no such directory: {}", parent.display()),
                ),
            });
        }
    }
    note_partial(tree::part_path(&local), RESUME_GET);
    let mut client = s.connector.open().await?;
    // The size: for the bar, the result line, and to check that all of it came.
    let size = if args.flags.ascii {
        None
    } else {
        client.size(&remote).await?
    };
    if let Some(size) = size {
        s.bar.set_total(size);
    } else if remote_is_dir(&mut client, &remote).await? {
        // No size: perhaps no file at all (SIZE of a directory is 550 "Not a plain file").
        return Err(Error::Usage(format!(
            "{} is a directory: use -r to copy it, or `wharf ls` to list it",
            redact(&args.url)
        )));
    }
    if let (Some(n), Some(size)) = (args.segments, size) {
        if client.features().rest_stream {
            let report = wharf_client::segments::download(
                client,
                &s.connector,
                &remote,
                &local,
                wharf_client::segments::Plan {
                    size,
                    segments: usize::from(n),
                    retries: args.flags.pool.retry,
                },
                Arc::new(s.bar.clone()),
            )
            .await?;
            s.bar.finish();
            result_line(&s, &shown, Some(size));
            if !s.quiet {
                eprintln!(
                    "{}: {} over {}",
                    clean(&shown),
                    plural(report.segments as u64, "range"),
                    plural(report.sessions as u64, "session")
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        s.bar
            .println("wharf: the server offers no REST STREAM: downloading over one session");
    } else if args.segments.is_some() {
        s.bar.println(
            "wharf: the server does not tell the size (SIZE): downloading over one session",
        );
    }
    let first_how = if args.flags.resume {
        Resume::Any
    } else {
        Resume::Fresh
    };
    let mut first = Some(client);
    with_retries(&s, args.flags.pool.retry, &shown, |again| {
        let session = first.take();
        let (s, remote, local) = (&s, &remote, &local);
        async move {
            let mut client = match session {
                Some(c) => c,
                None => s.connector.open().await?,
            };
            let how = if again && first_how == Resume::Fresh {
                Resume::Partial
            } else {
                first_how
            };
            // A further try: what the file has was counted by the try that wrote it.
            let retrying = tree::Retrying(&s.bar);
            let progress: &dyn Progress = if again { &retrying } else { &s.bar };
            tree::download_file(&mut client, remote, local, size, how, progress).await?;
            client.quit().await;
            Ok(())
        }
    })
    .await?;
    s.bar.finish();
    result_line(&s, &local.display().to_string(), size);
    Ok(ExitCode::SUCCESS)
}

/// Whether `remote` is a directory: MLST's type where the server offers it, else a CWD there
/// and back (a server that refuses PWD cannot be asked: no).
async fn remote_is_dir(client: &mut Client, remote: &[u8]) -> Result<bool, Error> {
    if client.features().mlst
        && let Ok(Some(entry)) = client.mlst(remote).await
    {
        return Ok(entry.kind == FileKind::Dir);
    }
    match client.is_dir(remote).await {
        Ok(dir) => Ok(dir),
        Err(Error::Refused { command, .. }) if command.starts_with("PWD") => Ok(false),
        Err(e) => Err(e),
    }
}

/// `get 'ftp://h/dir/*.log' [DIR]`: every file the pattern matches, into DIR (default: here).
async fn get_matching(s: &Setup, args: &GetArgs, remote: &[u8]) -> Result<ExitCode, Error> {
    let target = match &args.local {
        Some(p) if p == Path::new("-") => {
            return Err(Error::Usage("a pattern cannot be written to stdout".into()));
        }
        Some(p) => p.clone(),
        None => PathBuf::from("."),
    };
    if target.exists() && !target.is_dir() {
        return Err(Error::Usage(format!(
            "{}: a pattern needs a local directory to download into",
            target.display()
        )));
    }
    let mut client = s.connector.open().await?;
    let files: Vec<(Vec<u8>, PathBuf, Option<u64>)> = expand(&mut client, remote, true)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|(path, e)| {
            use std::os::unix::ffi::OsStrExt;
            let local = target.join(std::ffi::OsStr::from_bytes(&e.name));
            (path, local, e.size)
        })
        .collect();
    // Made when missing, as -r does.
    if !files.is_empty() && !target.exists() {
        std::fs::create_dir_all(&target).map_err(|source| Error::Local {
            path: target.clone(),
            source,
        })?;
    }
    note_partial(target.clone(), RESUME_GET);
    let report = tree::download_files(
        client,
        &s.connector,
        files,
        args.flags.tree_options(),
        Arc::new(s.bar.clone()),
    )
    .await?;
    s.bar.finish();
    Ok(tree_exit(s, &report))
}

async fn put(args: PutArgs) -> Result<ExitCode, Error> {
    use std::os::unix::ffi::OsStrExt;
    let from_stdin = args.local == Path::new("-");
    let mut s = setup(&args.url, &args.common, !from_stdin)?;
    s.connector.ascii = args.flags.ascii;
    if from_stdin {
        if s.url.trailing_slash || s.url.path_trimmed().is_empty() || args.flags.recursive {
            return Err(Error::Usage(
                "put - reads stdin into one file: the URL must name that file".into(),
            ));
        }
        let remote = s.url.path_trimmed().to_vec();
        let mut client = s.connector.open().await?;
        if args.create_dirs {
            tree::mkdir_p(&mut client, tree::remote_parent(&remote)).await?;
        }
        let mut stdin = tokio::io::stdin();
        client
            .store(&remote, wharf_client::Store::Replace, &mut stdin, &s.bar)
            .await?;
        client.quit().await;
        result_line(&s, &String::from_utf8_lossy(&remote), None);
        return Ok(ExitCode::SUCCESS);
    }
    let meta = std::fs::metadata(&args.local).map_err(|source| Error::Local {
        path: args.local.clone(),
        source,
    })?;
    if args.flags.recursive {
        if !meta.is_dir() {
            return Err(Error::Usage(format!(
                "{}: -r needs a directory",
                args.local.display()
            )));
        }
        let mut client = s.connector.open().await?;
        if args.create_dirs {
            tree::mkdir_p(&mut client, tree::remote_parent(s.url.path_trimmed())).await?;
        }
        let mut options = args.flags.tree_options();
        options.follow_links = args.follow_links;
        let report = tree::upload_tree(
            client,
            &s.connector,
            &args.local,
            s.url.path_trimmed(),
            options,
            Arc::new(s.bar.clone()),
        )
        .await?;
        s.bar.finish();
        return Ok(tree_exit(&s, &report));
    }
    if meta.is_dir() {
        return Err(Error::Usage(format!(
            "{} is a directory: use -r to copy it",
            args.local.display()
        )));
    }
    let remote = if s.url.trailing_slash {
        let name = args
            .local
            .file_name()
            .ok_or_else(|| Error::Usage("the local path names no file".into()))?;
        tree::join_remote(s.url.path_trimmed(), name.as_bytes())
    } else {
        s.url.path_trimmed().to_vec()
    };
    let mut client = s.connector.open().await?;
    if args.create_dirs {
        tree::mkdir_p(&mut client, tree::remote_parent(&remote)).await?;
    }
    s.bar.set_total(meta.len());
    let shown = args.local.display().to_string();
    let mut first = Some(client);
    // Whether a broken try got as far as the server's 150: only then does the server's file
    // hold this run's bytes, to be resumed; else it is replaced.
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    with_retries(&s, args.flags.pool.retry, &shown, |again| {
        let session = first.take();
        let (s, remote, local) = (&s, &remote, &args.local);
        let started = started.clone();
        let resume = args.flags.resume || started.load(std::sync::atomic::Ordering::Relaxed);
        async move {
            let mut client = match session {
                Some(c) => c,
                None => s.connector.open().await?,
            };
            let retrying = tree::Retrying(&s.bar);
            let progress: &dyn Progress = if again { &retrying } else { &s.bar };
            let result = tree::upload_file(&mut client, local, remote, resume, progress).await;
            if client.data_started() {
                started.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            result?;
            client.quit().await;
            Ok(())
        }
    })
    .await?;
    s.bar.finish();
    result_line(&s, &shown, Some(meta.len()));
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathOp {
    Rm,
    Mkdir,
    Rmdir,
}

/// rm, mkdir, rmdir of one or more URLs (one session per server, in order); rm of a pattern
/// deletes each file it matches. Every path is tried; the first failure gives the exit code.
async fn paths(args: PathArgs, op: PathOp) -> Result<ExitCode, Error> {
    if args.parents && op != PathOp::Mkdir {
        return Err(Error::Usage("-p is for mkdir".into()));
    }
    let mut session: Option<(String, Client)> = None;
    // One set-up (password, netrc, TLS) per server and user, however many paths name it.
    let mut connectors: std::collections::HashMap<String, Connector> = Default::default();
    let mut first_failure: Option<ErrorKind> = None;
    for text in &args.urls {
        let result = async {
            let url = FtpUrl::parse(text)?;
            let path = url.path_trimmed().to_vec();
            if path.is_empty() {
                return Err(Error::Usage(format!("{} names no path", redact(text))));
            }
            let key = format!(
                "{:?}|{}|{}|{:?}|{}",
                url.security,
                url.host,
                url.port,
                url.user,
                url.password.is_some()
            );
            let client = match session.take() {
                Some((k, c)) if k == key && c.in_step() => c,
                other => {
                    if let Some((_, c)) = other {
                        c.quit().await;
                    }
                    let connector = match connectors.get(&key) {
                        Some(c) => c.clone(),
                        None => {
                            let c = setup(text, &args.common, false)?.connector;
                            connectors.insert(key.clone(), c.clone());
                            c
                        }
                    };
                    connector.open().await?
                }
            };
            let (client, result) = apply(client, op, &path, args.parents).await;
            session = Some((key, client));
            result
        }
        .await;
        if let Err(e) = result {
            eprintln!("wharf: {}", clean(&e.to_string()));
            first_failure.get_or_insert(e.kind());
        }
    }
    if let Some((_, c)) = session {
        c.quit().await;
    }
    Ok(match first_failure {
        None => ExitCode::SUCCESS,
        Some(kind) => ExitCode::from(exit_code(kind)),
    })
}

async fn apply(
    mut client: Client,
    op: PathOp,
    path: &[u8],
    parents: bool,
) -> (Client, Result<(), Error>) {
    let result = async {
        match op {
            PathOp::Rm => {
                if let Some(matched) = expand(&mut client, path, false).await? {
                    let mut failed = None;
                    for (p, _) in matched {
                        if let Err(e) = client.delete(&p).await {
                            eprintln!("wharf: {}", clean(&e.to_string()));
                            failed.get_or_insert(e);
                        }
                    }
                    return failed.map_or(Ok(()), Err);
                }
                client.delete(path).await
            }
            PathOp::Mkdir if parents => tree::mkdir_p(&mut client, path).await,
            PathOp::Mkdir => client.mkdir(path).await,
            PathOp::Rmdir => client.rmdir(path).await,
        }
    }
    .await;
    (client, result)
}

async fn mv(args: MvArgs) -> Result<ExitCode, Error> {
    let s = setup(&args.url, &args.common, false)?;
    let from = s.url.path_trimmed().to_vec();
    if from.is_empty() {
        return Err(Error::Usage(format!("{} names no path", redact(&args.url))));
    }
    let to = if args.new_path.contains("://") {
        let other = FtpUrl::parse(&args.new_path)?;
        if (other.host.as_str(), other.port) != (s.url.host.as_str(), s.url.port) {
            return Err(Error::Usage(
                "mv renames on one server: the new URL must name the same host and port".into(),
            ));
        }
        other.path_trimmed().to_vec()
    } else {
        args.new_path.clone().into_bytes()
    };
    if to.is_empty() {
        return Err(Error::Usage("the new path is empty".into()));
    }
    // Refused before anything is sent (it would split the command on the wire).
    if to.iter().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Err(Error::Usage(
            "the new path contains CR, LF or NUL, which an FTP command cannot carry".into(),
        ));
    }
    let mut client = s.connector.open().await?;
    client.rename(&from, &to).await?;
    client.quit().await;
    Ok(ExitCode::SUCCESS)
}

async fn mirror_cmd(args: MirrorArgs) -> Result<ExitCode, Error> {
    let (url, local, direction) = match (args.src.contains("://"), args.dst.contains("://")) {
        (true, false) => (&args.src, PathBuf::from(&args.dst), Direction::Download),
        (false, true) => (&args.dst, PathBuf::from(&args.src), Direction::Upload),
        _ => {
            return Err(Error::Usage(
                "mirror needs one ftp:// URL and one local directory".into(),
            ));
        }
    };
    if direction == Direction::Upload && !local.is_dir() {
        return Err(Error::Usage(format!(
            "{}: not a directory",
            local.display()
        )));
    }
    let s = setup(url, &args.common, !args.dry_run)?;
    let options = MirrorOptions {
        delete: args.delete,
        dry_run: args.dry_run,
        include: args.include.iter().map(|g| g.as_bytes().to_vec()).collect(),
        exclude: args.exclude.iter().map(|g| g.as_bytes().to_vec()).collect(),
        tree: TreeOptions {
            follow_links: args.follow_links,
            ..args.pool.tree_options()
        },
    };
    if direction == Direction::Download {
        note_partial(local.clone(), RESUME_MIRROR);
    }
    let client = s.connector.open().await?;
    let started = Instant::now();
    let report = mirror::mirror(
        client,
        &s.connector,
        direction,
        s.url.path_trimmed(),
        &local,
        &options,
        Arc::new(s.bar.clone()),
    )
    .await?;
    s.bar.finish();
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        for line in &report.plan {
            let _ = writeln!(out, "{}", clean(line));
        }
    }
    let t = &report.transfers;
    for skipped in &t.skipped {
        eprintln!("wharf: warning: skipped {}", clean(skipped));
    }
    for (name, e) in &t.failures {
        eprintln!("wharf: {}: {}", clean(name), clean(&e.to_string()));
    }
    let (verb, files) = if args.dry_run {
        (
            "would transfer",
            report
                .plan
                .iter()
                .filter(|l| l.starts_with("get ") || l.starts_with("put "))
                .count() as u64,
        )
    } else {
        ("transferred", t.files)
    };
    let summary = format!(
        "mirror: {verb} {files} files ({}), {} up to date, {} already complete, {} directories made, {} deleted, {} failed, in {:.1} s",
        format_size(t.bytes),
        report.up_to_date,
        t.already_complete,
        report.dirs_made,
        report.deleted,
        t.failures.len(),
        started.elapsed().as_secs_f64()
    );
    if !s.quiet || !t.failures.is_empty() {
        eprintln!("{summary}");
    }
    Ok(match t.failures.first() {
        None => ExitCode::SUCCESS,
        Some((_, e)) => ExitCode::from(exit_code(e.kind())),
    })
}

/// Prints what a tree copy left out or failed and its result line, and gives the exit code:
/// the first failure's.
fn tree_exit(s: &Setup, report: &TreeReport) -> ExitCode {
    print_tree_report(s, report);
    match report.failures.first() {
        None => ExitCode::SUCCESS,
        Some((_, e)) => ExitCode::from(exit_code(e.kind())),
    }
}

/// What a tree copy left out or failed, and its result line (files, bytes, time, rate).
pub fn print_tree_report(s: &Setup, report: &TreeReport) {
    for skipped in &report.skipped {
        eprintln!("wharf: warning: skipped {}", clean(skipped));
    }
    for (name, e) in &report.failures {
        eprintln!("wharf: {}: {}", clean(name), clean(&e.to_string()));
    }
    if !s.quiet {
        let (_, secs) = s.bar.moved();
        let mut line = format!(
            "{} ({}) in {secs:.1} s",
            plural(report.files, "file"),
            format_size(report.bytes)
        );
        if secs > 0.0 {
            line.push_str(&format!(
                " ({})",
                wharf_client::client::format_rate(report.bytes as f64 / secs)
            ));
        }
        if report.already_complete > 0 {
            line.push_str(&format!(", {} already complete", report.already_complete));
        }
        if !report.skipped.is_empty() {
            line.push_str(&format!(", {} skipped", report.skipped.len()));
        }
        line.push_str(&format!(", {}", plural(report.sessions as u64, "session")));
        eprintln!("{line}");
    }
    if !report.failures.is_empty() {
        eprintln!(
            "wharf: {} of {} files failed",
            report.failures.len(),
            report.failures.len() as u64 + report.files + report.already_complete
        );
    }
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// HOST, HOST:PORT, [IPv6]:PORT or an ftp:// URL (port 21 by default)
    target: String,
    /// Log in as this user instead of anonymous (password from WHARF_PASSWORD, --password-stdin
    /// or a prompt)
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of stdin
    #[arg(long)]
    password_stdin: bool,
    /// Seconds to wait at each step
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// Also print the connection log to stderr
    #[arg(short = 'v', long = "log", visible_alias = "verbose")]
    log: bool,
    /// Also upload a test file (and one with a non-ASCII name) to the login directory, check
    /// its size, rename it and delete it
    #[arg(long)]
    write: bool,
    #[command(flatten)]
    tls: TlsFlags,
}

/// Parses the target of `wharf check`.
fn check_target(text: &str) -> Result<FtpUrl, Error> {
    if text.contains("://") {
        return FtpUrl::parse(text);
    }
    // A bare IPv6 address has colons of its own: it can only be the host.
    let wrapped = if text.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("ftp://[{text}]/")
    } else {
        format!("ftp://{text}/")
    };
    FtpUrl::parse(&wrapped).map_err(|_| {
        Error::Usage(format!(
            "bad target {:?}: expected HOST[:PORT], [IPv6]:PORT or ftp://URL",
            redact(&format!("ftp://{text}")).trim_start_matches("ftp://")
        ))
    })
}

/// `wharf check`: exit 0 when a data mode works, 1 when the server answers but login or every
/// data mode fails, 3 when the control port cannot be reached, 2 for usage errors.
pub fn check(args: CheckArgs) -> ExitCode {
    let target = match check_target(&args.target) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let (host, port) = (target.host.clone(), target.port);
    let user = args.user.clone().or(target.user.clone());
    let password = match &user {
        None => None,
        Some(_) if target.password.is_some() => target.password.clone(),
        Some(u) => {
            let url = FtpUrl {
                user: Some(u.clone()),
                password: None,
                host: host.clone(),
                port,
                path: Vec::new(),
                trailing_slash: true,
                security: target.security,
            };
            match password_for(&url, args.password_stdin) {
                Ok(p) => p,
                Err(e) => return fail(&e),
            }
        }
    };
    // The check goes on past a bad certificate, to report it and the rest.
    let tls = match args.tls.settings(&target, true) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let options = wharf_client::check::CheckOptions {
        tls,
        insecure: args.tls.insecure,
        write: args.write,
        host,
        port,
        user,
        password,
        timeout: Duration::from_secs(args.timeout),
        log: args
            .log
            .then(|| Arc::new(|line: &LogLine| eprintln!("{line}")) as wharf_client::LogSink),
        // Text: each step as it starts and ends; JSON: one object at the end, nothing before.
        progress: (!args.json).then(|| {
            Arc::new(|event: &wharf_client::check::Event<'_>| {
                let text = match event {
                    wharf_client::check::Event::Start { name, waiting } => {
                        format!("[....] {name:<8} {waiting}\n")
                    }
                    wharf_client::check::Event::Done(step) => render_step(step),
                };
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }) as wharf_client::check::Progress
        }),
    };
    let runtime = match crate::start_runtime(Some(0)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if !args.json {
        let target = wharf_client::check::target(&options.host, options.port);
        println!("wharf check {target}");
    }
    let report = runtime.block_on(wharf_client::check::check(&options));
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = writeln!(out, "{}", report.to_json());
    } else {
        // The steps were printed as they ran; what is left is the verdict.
        let _ = write!(out, "{}", render_trailer(&report));
    }
    let _ = out.flush();
    ExitCode::from(report.exit_code)
}

/// One step as it ended: verdict, evidence, time, and the cause and fix of a failure.
fn render_step(s: &wharf_client::check::Step) -> String {
    use wharf_client::check::Verdict;
    let tag = match s.verdict {
        Verdict::Ok => "[ OK ]",
        Verdict::Warn => "[WARN]",
        Verdict::Fail => "[FAIL]",
        Verdict::Skipped => "[SKIP]",
    };
    let mut text = format!(
        "{tag} {:<8} {} ({} ms)\n",
        s.name,
        clean(&s.evidence),
        s.elapsed.as_millis()
    );
    if let Some(cause) = &s.cause {
        text.push_str(&format!("       cause: {}\n", clean(cause)));
    }
    if let Some(advice) = &s.advice {
        text.push_str(&format!("       fix:   {}\n", clean(advice)));
    }
    text
}

/// After the steps: the server named and the summary.
fn render_trailer(report: &wharf_client::check::Report) -> String {
    let mut text = String::new();
    if let Some(sw) = report.software {
        // Unknown: the banner is what there is to go by, so it is shown.
        let banner = report
            .steps
            .iter()
            .find(|s| s.name == "banner")
            .filter(|_| sw == wharf_client::check::Software::Unknown)
            .map(|s| {
                // The step's evidence is the banner, then what it was taken for.
                let banner = s
                    .evidence
                    .rsplit_once(" (server: ")
                    .map_or(s.evidence.as_str(), |(b, _)| b);
                format!(" (banner: {})", clean(banner))
            })
            .unwrap_or_default();
        text.push_str(&format!("Server: {}{banner}\n", sw.name()));
    }
    text.push_str(&format!("Summary: {}\n", report.summary));
    text
}
