//! The client commands: `wharf ls/get/put/rm/mkdir/rmdir/mv/mirror/shell`, over `wharf-client`.
//! Exit codes (DESIGN §1): 0 success, 1 the server refused (the reply is printed), 2 usage,
//! 3 network or connection failure, 130 interrupted (Ctrl-C). A local file error is 1.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wharf_client::connector::Connector;
use wharf_client::ops::PathOp;
use wharf_client::{DataMode, Error, ErrorKind, FtpUrl, LogLine, Options};

mod args;
mod check;
mod commands;
mod output;

pub use args::*;
pub use check::{CheckArgs, check};
pub use output::{Bar, Ui, long_line, print_tree_report, result_line, verified_line};

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
        Request::Rm(a) | Request::Rmdir(a) if a.parents => {
            Err(Error::Usage("-p is for mkdir".into()))
        }
        Request::Ls(a) => commands::ls(a).await,
        Request::Get(a) => commands::get(a).await,
        Request::Put(a) => commands::put(a).await,
        Request::Rm(a) => commands::paths(a, PathOp::Rm).await,
        Request::Mkdir(a) => {
            let parents = a.parents;
            commands::paths(a, PathOp::Mkdir { parents }).await
        }
        Request::Rmdir(a) => commands::paths(a, PathOp::Rmdir).await,
        Request::Mv(a) => commands::mv(a).await,
        Request::Mirror(a) => commands::mirror(a).await,
    }
}

pub(crate) fn exit_code(kind: ErrorKind) -> u8 {
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
