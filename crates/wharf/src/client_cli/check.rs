//! `wharf check`: its arguments and how its steps and verdict are printed.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wharf_client::url::redact;
use wharf_client::{Error, FtpUrl, LogLine};

use super::{TlsFlags, clean, fail, password_for};

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
