//! `wharf`: the FTP server, client and troubleshooter in one binary.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use wharf_server::config::{FileConfig, Overrides, ServerConfig};

mod client_cli;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Wharf: FTP server, client and troubleshooter"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the FTP server (default: the current directory, read-only, anonymous, 127.0.0.1:2121)
    Serve(ServeArgs),
    /// Print an Argon2id hash of a password for the config file (reads the password from stdin)
    Passwd,
    /// List a directory (MLSD where offered, else LIST), one entry a line
    Ls(client_cli::LsArgs),
    /// Download a file, or a tree with -r
    Get(client_cli::GetArgs),
    /// Upload a file, or a tree with -r
    Put(client_cli::PutArgs),
    /// Delete a file
    Rm(client_cli::PathArgs),
    /// Create a directory
    Mkdir(client_cli::PathArgs),
    /// Remove an empty directory
    Rmdir(client_cli::PathArgs),
    /// Rename or move a file or directory on the server
    Mv(client_cli::MvArgs),
    /// Diagnose an FTP server: reachability, banner, login, and which data modes work, and why
    Check(client_cli::CheckArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Directory served (the jail of every user without a home of its own)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Control listener, ADDR:PORT (repeatable; IPv6 as [::1]:2121)
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<String>,
    /// Allow uploads, deletes, renames and mkdir for command-line users and anonymous
    #[arg(short = 'w', long)]
    write: bool,
    /// A user NAME:PASSWORD (repeatable); turns anonymous off unless --anonymous
    #[arg(long, value_name = "NAME:PASSWORD")]
    user: Vec<String>,
    /// Allow anonymous/ftp logins (read-only unless --write)
    #[arg(long)]
    anonymous: bool,
    /// Passive port range, A-B
    #[arg(long, value_name = "A-B")]
    passive_ports: Option<String>,
    /// Address announced in PASV replies (NAT); a name is resolved at each PASV
    #[arg(long, value_name = "HOST")]
    passive_address: Option<String>,
    /// Source port of active-mode data connections (20 classically; needs privilege)
    #[arg(long, value_name = "N")]
    active_source_port: Option<u16>,
    /// TOML configuration file
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// error, warn, info, debug, trace
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(args) => serve(args),
        Cmd::Passwd => passwd(),
        Cmd::Ls(a) => client_cli::run(client_cli::Request::Ls(a)),
        Cmd::Get(a) => client_cli::run(client_cli::Request::Get(a)),
        Cmd::Put(a) => client_cli::run(client_cli::Request::Put(a)),
        Cmd::Rm(a) => client_cli::run(client_cli::Request::Rm(a)),
        Cmd::Mkdir(a) => client_cli::run(client_cli::Request::Mkdir(a)),
        Cmd::Rmdir(a) => client_cli::run(client_cli::Request::Rmdir(a)),
        Cmd::Mv(a) => client_cli::run(client_cli::Request::Mv(a)),
        Cmd::Check(a) => client_cli::check(a),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let file = match &args.config {
        Some(path) => match FileConfig::load(path) {
            Ok(f) => f,
            Err(e) => return usage_error(&format!("config {}: {e}", path.display())),
        },
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        root: args.root.clone(),
        listen: args.listen.clone(),
        write: args.write,
        users: args.user.clone(),
        anonymous: args.anonymous,
        passive_ports: args.passive_ports.clone(),
        passive_address: args.passive_address.clone(),
        active_source_port: args.active_source_port,
    };
    let config = match ServerConfig::build(file, overrides) {
        Ok(c) => Arc::new(c),
        Err(e) => return usage_error(&e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf: cannot start runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let mut listeners = Vec::new();
        for addr in &config.listen {
            match wharf_server::bind(*addr) {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    eprintln!("wharf: cannot listen on {addr}: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        let root = args.root.clone().unwrap_or_else(|| PathBuf::from("."));
        let root = std::fs::canonicalize(&root).unwrap_or(root);
        let mut out = std::io::stdout().lock();
        for l in &listeners {
            if let Ok(addr) = l.local_addr() {
                let _ = writeln!(out, "Wharf is serving {} on ftp://{addr}/", root.display());
            }
        }
        let _ = writeln!(
            out,
            "Connect with an FTP client (e.g. `curl ftp://{}/`); stop with Ctrl-C.",
            listeners
                .first()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        let _ = out.flush();
        drop(out);
        wharf_server::run(config, listeners, shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("wharf: {msg}");
    ExitCode::from(2)
}

/// Reads a password (without echo on a terminal, twice to confirm) and prints its hash.
fn passwd() -> ExitCode {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt_hidden("Password: ");
        let second = prompt_hidden("Again: ");
        match (first, second) {
            (Some(a), Some(b)) if a == b => a,
            (Some(_), Some(_)) => return usage_error("passwords do not match"),
            _ => return usage_error("cannot read the password"),
        }
    } else {
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).is_err() {
            return usage_error("cannot read the password from stdin");
        }
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return usage_error("empty password");
    }
    match wharf_server::auth::hash_password(password.as_bytes()) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::from(1)
        }
    }
}

fn prompt_hidden(prompt: &str) -> Option<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    eprint!("{prompt}");
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    if let Some(t) = &saved {
        let _ = tcsetattr(&stdin, OptionalActions::Now, t);
    }
    eprintln!();
    r.ok()?;
    Some(line.trim_end_matches(['\r', '\n']).to_string())
}
