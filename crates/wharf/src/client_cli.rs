//! The client commands: `wharf ls/get/put/rm/mkdir/rmdir/mv`, over `wharf-client`.
//! Exit codes (DESIGN §1): 0 success, 1 the server refused (the reply is printed), 2 usage,
//! 3 network or connection failure. A local file error is 1.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_client::tree::{self, Connector, TreeOptions, TreeReport};
use wharf_client::url::redact;
use wharf_client::{
    Client, DataMode, Entry, Error, ErrorKind, FileKind, FtpUrl, LogLine, Options, Progress,
};

/// Flags every client command takes.
#[derive(clap::Args, Debug)]
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
    /// Seconds to wait for a connection, for each reply and for data to move
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Read the password from the first line of stdin (else WHARF_PASSWORD, else a prompt)
    #[arg(long)]
    pub password_stdin: bool,
    /// Connect to the address a PASV reply announces even when it is not the server's own
    /// (by default the server's own address is used: a server cannot steer the client elsewhere)
    #[arg(long)]
    pub trust_pasv_address: bool,
    #[command(flatten)]
    pub tls: TlsFlags,
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
    /// ftp://[user@]host[:port]/path
    url: String,
    /// Long form: type, size, modification time (UTC), name
    #[arg(short = 'l')]
    long: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct TransferFlags {
    /// Resume: continue a partial file from its size (REST; APPE for uploads where needed)
    #[arg(short = 'c', long = "continue")]
    resume: bool,
    /// Copy a directory tree
    #[arg(short = 'r', long)]
    recursive: bool,
    /// Transfer in ASCII mode (TYPE A: line endings converted)
    #[arg(long, conflicts_with = "resume")]
    ascii: bool,
    /// Sessions used at once for a tree (-r); fewer when the server limits connections
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
}

impl TransferFlags {
    fn tree_options(&self) -> TreeOptions {
        TreeOptions {
            parallel: usize::from(self.parallel),
            resume: self.resume,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// ftp://[user@]host[:port]/path
    url: String,
    /// Local file or directory (default: the remote name in the current directory; - for stdout)
    local: Option<PathBuf>,
    #[command(flatten)]
    flags: TransferFlags,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// Local file (or directory with -r)
    local: PathBuf,
    /// ftp://[user@]host[:port]/path (ending in / : into that directory)
    url: String,
    #[command(flatten)]
    flags: TransferFlags,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// ftp://[user@]host[:port]/path
    url: String,
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
}

/// Runs a client command and turns its result into the exit code.
pub fn run(request: Request) -> ExitCode {
    let runtime = match crate::start_runtime(Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(dispatch(request)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

async fn dispatch(request: Request) -> Result<ExitCode, Error> {
    match request {
        Request::Ls(a) => ls(a).await,
        Request::Get(a) => get(a).await,
        Request::Put(a) => put(a).await,
        Request::Rm(a) => path_op(a, |c, p| Box::pin(async move { c.delete(&p).await })).await,
        Request::Mkdir(a) => path_op(a, |c, p| Box::pin(async move { c.mkdir(&p).await })).await,
        Request::Rmdir(a) => path_op(a, |c, p| Box::pin(async move { c.rmdir(&p).await })).await,
        Request::Mv(a) => mv(a).await,
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
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn fail(e: &Error) -> ExitCode {
    eprintln!("wharf: {}", clean(&e.to_string()));
    ExitCode::from(exit_code(e.kind()))
}

/// The session set-up shared by all commands: URL, password, options, log and progress bar.
struct Setup {
    url: FtpUrl,
    connector: Connector,
    bar: Option<ProgressBar>,
}

fn setup(url: &str, common: &Common, want_bar: bool) -> Result<Setup, Error> {
    let url = FtpUrl::parse(url)?;
    let password = password_for(&url, common)?;
    let show_bar = want_bar && std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    let bar = show_bar.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(bar_style(false));
        bar
    });
    let log = common.log.then(|| {
        let bar = bar.clone();
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
    };
    let connector = Connector::new(&url, password, options);
    Ok(Setup {
        url,
        connector,
        bar,
    })
}

fn bar_style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{bytes:>10}/{total_bytes:<10} [{bar:30}] {binary_bytes_per_sec:>12} ETA {eta}"
    } else {
        "{bytes:>10} {binary_bytes_per_sec:>12} {elapsed}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// The password: the URL's, else `--password-stdin`, else `WHARF_PASSWORD`, else a prompt
/// on a terminal. None for anonymous logins.
pub fn password_for(url: &FtpUrl, common: &Common) -> Result<Option<String>, Error> {
    let Some(user) = &url.user else {
        return Ok(None);
    };
    if let Some(p) = &url.password {
        return Ok(Some(p.clone()));
    }
    if common.password_stdin {
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
    Ok(None)
}

/// Progress into an indicatif bar (or nowhere).
struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_style(bar_style(true));
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
}

async fn ls(args: LsArgs) -> Result<ExitCode, Error> {
    let s = setup(&args.url, &args.common, false)?;
    let mut client = s.connector.open().await?;
    let entries = client.list(s.url.path_trimmed()).await?;
    client.quit().await;
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::stdout().lock();
    for e in &entries {
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

/// `d         4096  2026-11-24 13:49  name`; a symlink shows `-> target` when LIST told it.
fn long_line(e: &Entry) -> Vec<u8> {
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

fn local_name(name: &[u8]) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    if !tree::is_safe_name(name) {
        return Err(Error::Usage(format!(
            "cannot make a local name of {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(name)))
}

async fn get(args: GetArgs) -> Result<ExitCode, Error> {
    let to_stdout = args.local.as_deref() == Some(Path::new("-"));
    let mut s = setup(&args.url, &args.common, !to_stdout)?;
    s.connector.ascii = args.flags.ascii;
    let remote = s.url.path_trimmed().to_vec();
    let progress = Bar(s.bar.clone());
    if args.flags.recursive {
        if to_stdout {
            return Err(Error::Usage("-r cannot write to stdout".into()));
        }
        let local = match (&args.local, s.url.file_name()) {
            (Some(l), _) => l.clone(),
            (None, Some(name)) => local_name(name)?,
            (None, None) => PathBuf::from("."),
        };
        let client = s.connector.open().await?;
        let options = args.flags.tree_options();
        let report = tree::download_tree(
            client,
            &s.connector,
            &remote,
            &local,
            options,
            Arc::new(progress),
        )
        .await?;
        finish_bar(&s.bar);
        return Ok(tree_exit(&report));
    }
    if remote.is_empty() || s.url.trailing_slash {
        return Err(Error::Usage(format!(
            "{} names a directory: use -r to copy it, or `wharf ls` to list it",
            redact(&args.url)
        )));
    }
    let mut client = s.connector.open().await?;
    if to_stdout {
        let mut stdout = tokio::io::stdout();
        client
            .retrieve(&remote, 0, &mut stdout, &wharf_client::NoProgress)
            .await?;
        client.quit().await;
        return Ok(ExitCode::SUCCESS);
    }
    let name = s
        .url
        .file_name()
        .ok_or_else(|| Error::Usage("the URL names no file".into()))?;
    let local = match &args.local {
        None => local_name(name)?,
        Some(l) if l.is_dir() => l.join(local_name(name)?),
        Some(l) => l.clone(),
    };
    if s.bar.is_some() {
        if let Some(size) = client.size(&remote).await? {
            progress.set_total(size);
        }
    }
    tree::download_file(
        &mut client,
        &remote,
        &local,
        None,
        args.flags.resume,
        &progress,
    )
    .await?;
    finish_bar(&s.bar);
    client.quit().await;
    Ok(ExitCode::SUCCESS)
}

async fn put(args: PutArgs) -> Result<ExitCode, Error> {
    use std::os::unix::ffi::OsStrExt;
    let mut s = setup(&args.url, &args.common, true)?;
    s.connector.ascii = args.flags.ascii;
    let progress = Bar(s.bar.clone());
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
        let client = s.connector.open().await?;
        let options = args.flags.tree_options();
        let report = tree::upload_tree(
            client,
            &s.connector,
            &args.local,
            s.url.path_trimmed(),
            options,
            Arc::new(progress),
        )
        .await?;
        finish_bar(&s.bar);
        return Ok(tree_exit(&report));
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
    progress.set_total(meta.len());
    tree::upload_file(
        &mut client,
        &args.local,
        &remote,
        args.flags.resume,
        &progress,
    )
    .await?;
    finish_bar(&s.bar);
    client.quit().await;
    Ok(ExitCode::SUCCESS)
}

type OpFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send + 'a>>;

async fn path_op(
    args: PathArgs,
    op: impl for<'a> FnOnce(&'a mut Client, Vec<u8>) -> OpFuture<'a>,
) -> Result<ExitCode, Error> {
    let s = setup(&args.url, &args.common, false)?;
    let path = s.url.path_trimmed().to_vec();
    if path.is_empty() {
        return Err(Error::Usage(format!("{} names no path", redact(&args.url))));
    }
    let mut client = s.connector.open().await?;
    op(&mut client, path).await?;
    client.quit().await;
    Ok(ExitCode::SUCCESS)
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
    let mut client = s.connector.open().await?;
    client.rename(&from, &to).await?;
    client.quit().await;
    Ok(ExitCode::SUCCESS)
}

fn finish_bar(bar: &Option<ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

/// Prints what a tree copy left out or failed, and gives the exit code: the first failure's.
fn tree_exit(report: &TreeReport) -> ExitCode {
    for skipped in &report.skipped {
        eprintln!("wharf: skipped {}", clean(skipped));
    }
    for (name, e) in &report.failures {
        eprintln!("wharf: {}: {}", clean(name), clean(&e.to_string()));
    }
    match report.failures.first() {
        None => ExitCode::SUCCESS,
        Some((_, e)) => {
            eprintln!(
                "wharf: {} of {} files failed",
                report.failures.len(),
                report.failures.len() as u64 + report.files + report.already_complete
            );
            ExitCode::from(exit_code(e.kind()))
        }
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
            let common = Common {
                passive: false,
                active: false,
                log: false,
                timeout: args.timeout,
                password_stdin: args.password_stdin,
                trust_pasv_address: false,
                tls: TlsFlags::default(),
            };
            let url = FtpUrl {
                user: Some(u.clone()),
                password: None,
                host: host.clone(),
                port,
                path: Vec::new(),
                trailing_slash: true,
                security: target.security,
            };
            match password_for(&url, &common) {
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
