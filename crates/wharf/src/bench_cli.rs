//! `wharf bench URL`: the load generator's command line.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wharf_client::bench::{self, BenchOptions, Workload};
use wharf_client::{DataMode, Error, FtpUrl, LogLine, Options};

use crate::client_cli::{Common, fail, password_for};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// ftp://[USER@]HOST[:PORT]/PATH — the file to download (retr, small), the file to write
    /// (stor; several clients add .N), or the directory to list (list)
    url: String,
    /// retr, stor, login, small, idle, list, or loopback (plain TCP: the loopback limit)
    #[arg(short = 'w', long, value_name = "NAME", default_value = "retr",
          value_parser = parse_workload)]
    workload: Workload,
    /// Sessions at once [default: 100 for small and idle, else 1]
    #[arg(short = 'c', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    clients: Option<u64>,
    /// Operations per session [default: login 200, small 10, list 20, else 1]
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    count: Option<u64>,
    /// Bytes per upload (stor) or per round (loopback); K, M, G suffixes are powers of 1024
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_size)]
    size: u64,
    /// Seconds the idle workload holds its sessions
    #[arg(long, value_name = "SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    hold: u64,
    /// Start no new operation after this many seconds
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Allow a target that is not this machine (only load servers you run or may load)
    #[arg(long)]
    allow_remote: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: Common,
}

fn parse_workload(text: &str) -> Result<Workload, String> {
    Workload::parse(text).ok_or_else(|| {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        format!("unknown workload; one of: {}", names.join(", "))
    })
}

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, 64K, 100M, 1G)"))?;
    let factor: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit (K, M or G)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Refuses targets that are not this machine unless `--allow-remote`.
async fn check_target(host: &str, port: u16, allow_remote: bool) -> Result<(), Error> {
    if allow_remote {
        return Ok(());
    }
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(source) => {
            return Err(Error::Resolve {
                host: host.to_string(),
                source,
            });
        }
    };
    if addrs.is_empty() || addrs.iter().any(|a| !bench::is_loopback(a.ip())) {
        return Err(Error::Usage(format!(
            "{host} is not a loopback address: a load generator points at this machine unless \
             --allow-remote is given (load only servers you run or may load)"
        )));
    }
    Ok(())
}

pub fn bench(args: BenchArgs) -> ExitCode {
    let runtime = match crate::start_runtime(Some(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match run(args).await {
            Ok(code) => code,
            Err(e) => fail(&e),
        }
    })
}

async fn run(args: BenchArgs) -> Result<ExitCode, Error> {
    let url = FtpUrl::parse(&args.url)?;
    check_target(&url.host, url.port, args.allow_remote).await?;
    let password = password_for(&url, args.common.password_stdin)?;
    let (user, password) = match (&url.user, password) {
        (None, _) => ("anonymous".to_string(), "bench@wharf".to_string()),
        (Some(u), p) => (u.clone(), p.unwrap_or_default()),
    };
    let workload = args.workload;
    if matches!(workload, Workload::Retr | Workload::Stor | Workload::Small)
        && url.path_trimmed().is_empty()
    {
        return Err(Error::Usage(format!(
            "the {} workload needs a file in the URL (ftp://host/path/to/file)",
            workload.name()
        )));
    }
    let clients = args.clients.unwrap_or(match workload {
        Workload::Small | Workload::Idle => 100,
        _ => 1,
    });
    let count = args.count.unwrap_or(match workload {
        Workload::Login => 200,
        Workload::Small => 10,
        Workload::List => 20,
        _ => 1,
    });
    let log = args
        .common
        .log
        .then(|| Arc::new(|line: &LogLine| eprintln!("{line}")) as wharf_client::LogSink);
    let session = Options {
        timeout: Duration::from_secs(args.common.timeout),
        mode: match (args.common.passive, args.common.active) {
            (_, true) => DataMode::Active,
            // A benchmark measures one path: passive unless told otherwise.
            _ => DataMode::Passive,
        },
        log,
        tls: args.common.tls.settings(&url, false)?,
        trust_pasv_address: args.common.trust_pasv_address,
        throttle: None,
    };
    let notify: bench::Notify = Arc::new(|text: &str| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "wharf bench: {text}");
        let _ = err.flush();
    });
    let options = BenchOptions {
        workload,
        host: url.host.clone(),
        port: url.port,
        user,
        password,
        path: url.path_trimmed().to_vec(),
        clients: usize::try_from(clients).unwrap_or(usize::MAX),
        count: usize::try_from(count).unwrap_or(usize::MAX),
        size: args.size,
        hold: Duration::from_secs(args.hold),
        duration: Duration::from_secs(args.duration),
        session,
        notify: Some(notify),
    };
    let report = bench::run(&options).await;
    let target = wharf_client::url::redact(&args.url);
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = writeln!(out, "{}", report.to_json(&target));
    } else {
        let _ = write!(out, "{}", report.render(&target));
    }
    let _ = out.flush();
    Ok(ExitCode::from(if report.errors == 0 { 0 } else { 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("64K"), Ok(65_536));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("3mib"), Ok(3 << 20));
        assert!(parse_size("1T").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn workloads() {
        for w in Workload::ALL {
            assert_eq!(parse_workload(w.name()), Ok(w));
        }
        assert!(parse_workload("fast").is_err());
    }
}
