//! `wharf`: the FTP server, client and troubleshooter in one binary.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use wharf_server::Services;
use wharf_server::config::{FileConfig, Overrides, Settings};

mod bench_cli;
mod client_cli;
mod generate;
mod privilege;
mod shell;
mod startup;
mod systemd;
mod users_cli;

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
    /// Delete files (several URLs, or a pattern: 'ftp://h/dir/*.log')
    Rm(client_cli::PathArgs),
    /// Create directories (-p: with their parents)
    Mkdir(client_cli::PathArgs),
    /// Remove empty directories
    Rmdir(client_cli::PathArgs),
    /// Rename or move a file or directory on the server
    Mv(client_cli::MvArgs),
    /// Bring a local directory to a remote one, or the other way round (by size and time)
    Mirror(client_cli::MirrorArgs),
    /// An interactive session: ls, cd, get, put, mget, mput, rm, mkdir, mv, lcd, lls, …
    Shell(shell::ShellArgs),
    /// Diagnose an FTP server: reachability, banner, login, and which data modes work, and why
    Check(client_cli::CheckArgs),
    /// Load an FTP server (ours or any): retr, stor, login, small, idle, list; throughput,
    /// latency percentiles, errors
    Bench(bench_cli::BenchArgs),
    /// Write a self-signed certificate and key for NAME (development only): NAME.crt, NAME.key
    Cert(CertArgs),
    /// Manage the users in a user database (SQLite or PostgreSQL): add, list, show, passwd,
    /// set, disable, enable, del, import
    Users(users_cli::UsersArgs),
    /// Write the manual pages (wharf(1), one per subcommand, wharf.toml(5)) or the shell
    /// completions (bash, zsh, fish) into a directory: what the package ships
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

#[derive(clap::Args)]
struct CertArgs {
    /// Host name (or IP address) the certificate is for
    name: String,
    /// Directory to write NAME.crt and NAME.key into (made when missing; keep it outside what
    /// the server serves)
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Run as root: the user the key is given to (the server's run_as), readable by it only
    /// [default: the owner of DIR when not root, else nobody]
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
    /// More names or addresses the certificate is valid for (repeatable; localhost gets
    /// 127.0.0.1 and ::1 without asking)
    #[arg(long = "alt", value_name = "NAME")]
    alt: Vec<String>,
    /// Validity in days
    #[arg(long, value_name = "DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(1..=36_500))]
    days: u32,
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
    /// TLS certificate chain (PEM); enables FTPS (AUTH TLS), required by default
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// off, optional or required (default: required when a certificate is given)
    #[arg(long = "tls", value_name = "MODE")]
    tls_mode: Option<String>,
    /// Implicit-TLS listener, ADDR:PORT (repeatable; port 990 in production)
    #[arg(long, value_name = "ADDR:PORT")]
    listen_implicit: Vec<String>,
    /// TOML configuration file
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// error, warn, info, debug, trace
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,
    /// text, or json (one object a line)
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Started as root: the user to switch to once the listeners are bound [default: nobody]
    #[arg(long, value_name = "USER")]
    run_as: Option<String>,
    /// Started as root: stay root (not recommended)
    #[arg(long)]
    allow_root: bool,
    /// Users in a database too: sqlite:PATH (created when missing) or postgres://USER@HOST/DB
    #[arg(long, value_name = "URL")]
    users_db: Option<String>,
    /// Admin listener (HTTP: /health, /metrics, /api/v1), ADDR:PORT
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<String>,
    /// Check the configuration and the start-up rules without binding a port (as run_as), print
    /// what would be served, and exit: 0, or 2 with the error
    #[arg(long)]
    check: bool,
}

/// Raises the soft limit on open files to the hard one: every session and every data
/// connection is a descriptor, and the usual soft limit (1024) is far below what a server or a
/// load generator holds. Without the right to, it stays as it is.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve(args) => {
            raise_open_file_limit();
            serve(args)
        }
        Cmd::Passwd => passwd(),
        Cmd::Ls(a) => client_cli::run(client_cli::Request::Ls(a)),
        Cmd::Get(a) => client_cli::run(client_cli::Request::Get(a)),
        Cmd::Put(a) => client_cli::run(client_cli::Request::Put(a)),
        Cmd::Rm(a) => client_cli::run(client_cli::Request::Rm(a)),
        Cmd::Mkdir(a) => client_cli::run(client_cli::Request::Mkdir(a)),
        Cmd::Rmdir(a) => client_cli::run(client_cli::Request::Rmdir(a)),
        Cmd::Mv(a) => client_cli::run(client_cli::Request::Mv(a)),
        Cmd::Mirror(a) => client_cli::run(client_cli::Request::Mirror(a)),
        Cmd::Shell(a) => shell::run(a),
        Cmd::Check(a) => client_cli::check(a),
        Cmd::Bench(a) => {
            raise_open_file_limit();
            bench_cli::bench(a)
        }
        Cmd::Cert(a) => cert(a),
        Cmd::Users(a) => users_cli::users(a),
        Cmd::Generate(a) => generate::run(a, <Cli as clap::CommandFactory>::command()),
    }
}

/// The log on standard error: text, or one JSON object a line with the event's fields at the
/// top level (`timestamp`, `level`, `target`, `message`, then `session`, `peer`, `user`, `verb`,
/// `path`, `code`, … as the event has them).
fn init_log(level: tracing::Level, format: wharf_server::config::LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match format {
        // The journal stamps each line itself.
        wharf_server::config::LogFormat::Text if systemd::stderr_is_journal() => {
            builder.with_ansi(false).without_time().init()
        }
        wharf_server::config::LogFormat::Text => {
            builder.with_ansi(std::io::stderr().is_terminal()).init()
        }
        wharf_server::config::LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let text = args
        .config
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok());
    // A configuration error: one line naming the file, line and field, and exit code 2.
    let config_path = args.config.clone();
    let config_error = |e: &wharf_server::ConfigError| -> ExitCode {
        match &config_path {
            Some(path) => usage_error(&e.located(path, text.as_deref())),
            None => usage_error(&e.to_string()),
        }
    };
    let file = match &args.config {
        Some(path) => match FileConfig::load(path) {
            Ok(f) => f,
            Err(e) => return config_error(&e),
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
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        tls_mode: args.tls_mode.clone(),
        listen_implicit: args.listen_implicit.clone(),
        log_format: args.log_format.clone(),
        run_as: args.run_as.clone(),
        allow_root: args.allow_root,
        users_db: args.users_db.clone(),
        admin: args.admin.clone(),
    };
    let mut settings = match Settings::build(file, overrides.clone()) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    // Sockets handed over by systemd (socket activation) take the place of the configured
    // listeners; the process then never needs root.
    let activated = if args.check {
        None
    } else {
        match systemd::activated() {
            Ok(a) => a,
            Err(e) => return config_error(&wharf_server::ConfigError::new("LISTEN_FDS", e)),
        }
    };
    let fixed_listen = activated.as_ref().map(|a| {
        let addrs = |v: &Vec<std::net::TcpListener>| -> Vec<std::net::SocketAddr> {
            v.iter().filter_map(|l| l.local_addr().ok()).collect()
        };
        (addrs(&a.ftp), addrs(&a.ftps))
    });
    if let Some(fixed) = &fixed_listen {
        // What socket activation cannot do (yet) is said, not ignored.
        if settings.listen_proxy.iter().any(Option::is_some) {
            return config_error(&wharf_server::ConfigError::new(
                "listener",
                "[[listener]] with proxy_protocol cannot take a socket from systemd: listen on its address yourself (stop wharf.socket) or drop proxy_protocol",
            ));
        }
        if !fixed.1.is_empty() && settings.tls.is_none() {
            return config_error(&wharf_server::ConfigError::new(
                "tls",
                "systemd hands over a socket named ftps (implicit TLS), but there is no [tls] certificate",
            ));
        }
        if !settings.listen_implicit.is_empty() && fixed.1.is_empty() {
            eprintln!(
                "wharf: warning: tls.listen_implicit is ignored under socket activation: add a socket named ftps (FileDescriptorName=ftps) for implicit TLS"
            );
        }
        fixed.apply(&mut settings);
    }
    // `--check`: nothing opened or made (a transfer log created as root would stop the
    // service); the checks as run_as.
    if args.check {
        return startup::check_only(&settings, |e| config_error(e));
    }
    let services = match Services::new(&settings) {
        Ok(s) => s,
        Err(e) => return config_error(&e),
    };
    // The format is known now; a reload does not change it (nor the level).
    init_log(args.log_level, settings.log.format);
    // Binding: a port in use or a privileged one is a configuration error too (exit code 2).
    let bind_error = |field: &str, addr: &std::net::SocketAddr, e: &std::io::Error| -> ExitCode {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another server listens there: stop it, or choose another port)"
            }
            std::io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need root or CAP_NET_BIND_SERVICE: `setcap cap_net_bind_service=+ep wharf`, or use a port above 1023)"
            }
            std::io::ErrorKind::AddrNotAvailable => {
                " (no interface of this machine has that address)"
            }
            _ => "",
        };
        config_error(&wharf_server::ConfigError::new(
            field,
            format!("cannot listen on {addr}: {e}{hint}"),
        ))
    };
    let listen_field = if args.listen.is_empty() {
        "listen"
    } else {
        "--listen"
    };
    let implicit_field = if args.listen_implicit.is_empty() {
        "tls.listen_implicit"
    } else {
        "--listen-implicit"
    };
    // The listeners, while the process may still bind privileged ports; then the switch away
    // from root, while the process has one thread (so that it holds for all).
    let (mut std_listeners, mut std_implicit, acme_socket) = match activated {
        Some(a) => (a.ftp, a.ftps, a.acme),
        None => (Vec::new(), Vec::new(), None),
    };
    if fixed_listen.is_none() {
        for addr in &settings.listen {
            match wharf_server::bind_std(*addr) {
                Ok(l) => std_listeners.push(l),
                Err(e) => return bind_error(listen_field, addr, &e),
            }
        }
        for addr in &settings.listen_implicit {
            match wharf_server::bind_std(*addr) {
                Ok(l) => std_implicit.push(l),
                Err(e) => return bind_error(implicit_field, addr, &e),
            }
        }
    }
    // The admin listener's certificate, read now (it may be readable by root only).
    let admin_tls = match settings.admin.as_ref().and_then(|a| a.tls.as_ref()) {
        Some((cert, key)) => match wharf_server::tls::https_acceptor(cert, key) {
            Ok(a) => Some(Arc::new(a)),
            Err(e) => return config_error(&wharf_server::ConfigError::new("admin.cert", e)),
        },
        None => None,
    };
    if let Some(a) = settings.admin.as_ref().filter(|a| a.plain_on_network) {
        eprintln!(
            "wharf: warning: the admin listener {} is plain HTTP on a network address (plain_http = true): its token and every answer cross that network in clear",
            a.listen
        );
    }
    let admin_std = match &settings.admin {
        Some(a) => match wharf_server::bind_std(a.listen) {
            Ok(l) => Some(l),
            Err(e) => {
                let field = if args.admin.is_some() {
                    "--admin"
                } else {
                    "admin.listen"
                };
                return bind_error(field, &a.listen, &e);
            }
        },
        None => None,
    };
    // ACME's challenge listener (port 80 by default), bound while still root, or handed over
    // by systemd (a socket named acme).
    let acme_std = match settings.acme.as_ref().map(|a| &a.challenge) {
        _ if acme_socket.is_some() && settings.acme.is_none() => {
            return config_error(&wharf_server::ConfigError::new(
                "acme",
                "systemd hands over a socket named acme, but there is no [acme] table",
            ));
        }
        Some(wharf_server::config::AcmeChallenge::Webroot(_)) if acme_socket.is_some() => {
            return config_error(&wharf_server::ConfigError::new(
                "acme.webroot",
                "systemd hands over a socket named acme: answer the challenges there (drop webroot) or drop the socket",
            ));
        }
        _ if acme_socket.is_some() => acme_socket,
        Some(wharf_server::config::AcmeChallenge::Listen(addr)) => {
            match wharf_server::bind_std(*addr) {
                Ok(l) => Some(l),
                Err(e) => return bind_error("acme.http_listen", addr, &e),
            }
        }
        _ => None,
    };
    let outcome = privilege::drop_root(&settings.run_as, settings.allow_root);
    match outcome {
        Ok(privilege::Outcome::Switched { user, uid, gid }) => {
            tracing::info!(
                user,
                uid,
                gid,
                "listening; running as an unprivileged user from now on"
            )
        }
        Ok(privilege::Outcome::StayedRoot) => {
            tracing::warn!("running as root (allow_root): a flaw would be a flaw as root")
        }
        Ok(privilege::Outcome::NotRoot) => {}
        Err(e) => return config_error(&e),
    }
    // From here on the process is the user it serves as: what it checks, it checks as that user
    // (as `--check` does).
    let user = startup::current_user();
    let checked = startup::check_homes(&settings, &user)
        .and_then(|()| startup::check_database(&settings, &user))
        .and_then(|()| startup::check_acme_state(&settings, &user));
    if let Err(e) = checked {
        return config_error(&e);
    }
    for w in startup::warnings(&settings, &services.own_files, &user) {
        eprintln!("wharf: warning: {w}");
    }
    let runtime = match start_runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        // Signals first: one that arrives once the server says it is serving must find them.
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("wharf: cannot watch signals: {e}");
                return ExitCode::from(1);
            }
        };
        let to_tokio =
            |v: Vec<std::net::TcpListener>| -> std::io::Result<Vec<tokio::net::TcpListener>> {
                v.into_iter()
                    .map(tokio::net::TcpListener::from_std)
                    .collect()
            };
        let (listeners, implicit) = match (to_tokio(std_listeners), to_tokio(std_implicit)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("wharf: cannot use the listeners: {e}");
                return ExitCode::from(1);
            }
        };
        // The user database: reached, and migrated, before the server says it serves (its
        // file is made by the user the server runs as).
        if let Some(db) = &services.users_db {
            if let Err(e) = db.ready().await {
                let field = if args.users_db.is_some() {
                    "--users-db"
                } else {
                    "users.db"
                };
                return config_error(&wharf_server::ConfigError::new(
                    field,
                    format!("{}: {e}", db.shown()),
                ));
            }
            // Its -wal and -shm exist now: known by their inodes too.
            services.own_files.refresh();
        }
        // The admin listener, and its token: the configured hash, or one made now and shown
        // once.
        let (admin_reload_tx, admin_reload_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut admin_lines = Vec::new();
        let admin = match admin_std {
            None => None,
            Some(std_listener) => {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("wharf: cannot use the admin listener: {e}");
                        return ExitCode::from(1);
                    }
                };
                let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let scheme = if admin_tls.is_some() { "https" } else { "http" };
                let configured = settings.admin.as_ref().and_then(|a| a.token_hash.clone());
                let token_hash = match configured {
                    Some(h) => {
                        admin_lines.push(format!("Admin API on {scheme}://{addr}/ (token: the one whose hash is admin.token_hash)"));
                        h
                    }
                    None => {
                        let made = wharf_server::admin::generate_token(32)
                            .and_then(|t| wharf_server::auth::hash_password(t.as_bytes()).map(|h| (t, h)));
                        match made {
                            Ok((token, hash)) => {
                                admin_lines.push(format!("Admin API on {scheme}://{addr}/ (token, shown only now: {token})"));
                                hash
                            }
                            Err(e) => {
                                eprintln!("wharf: cannot make an admin token: {e}");
                                return ExitCode::from(1);
                            }
                        }
                    }
                };
                Some(wharf_server::admin::AdminSetup {
                    listener,
                    token_hash,
                    reload: Some(admin_reload_tx),
                    tls: admin_tls.as_ref().map(|t| t.acceptor.clone()),
                })
            }
        };
        // Certificates by ACME: the manager, and the listener answering its challenges.
        if let (Some(acme_settings), Some(tls)) = (&settings.acme, &services.tls) {
            let acme = wharf_server::acme::Acme::new(
                acme_settings.clone(),
                &settings.hosts,
                tls.clone(),
                services.users_db.clone(),
            );
            if let Some(std_listener) = acme_std {
                match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => {
                        if let Ok(addr) = l.local_addr() {
                            admin_lines.push(format!(
                                "ACME: challenges answered on http://{addr}/.well-known/acme-challenge/ ({})",
                                acme_settings.directory
                            ));
                        }
                        tokio::spawn(wharf_server::acme::serve_challenges(
                            l,
                            acme.tokens(),
                            acme.shared_db(),
                        ));
                    }
                    Err(e) => {
                        eprintln!("wharf: cannot use the ACME challenge listener: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            tokio::spawn(acme.run());
        }
        // Said at start, not at the first login: storage that does not answer.
        if let Err(e) = services.storage.check().await {
            eprintln!("wharf: warning: {e}");
        }
        let root = match &settings.storage {
            None => settings.root.display().to_string(),
            Some(s3) => {
                let mut url = format!("s3://{}/", s3.bucket);
                if !s3.prefix.is_empty() {
                    url.push_str(&s3.prefix);
                    url.push('/');
                }
                url
            }
        };
        let mut out = std::io::stdout().lock();
        let explicit = match settings.tls.as_ref().map(|t| t.mode) {
            Some(wharf_server::tls::TlsMode::Required) => "ftpes",
            _ => "ftp",
        };
        for l in &listeners {
            if let Ok(addr) = l.local_addr() {
                let _ = writeln!(
                    out,
                    "Wharf is serving {} on {explicit}://{addr}/",
                    root
                );
            }
        }
        for l in &implicit {
            if let Ok(addr) = l.local_addr() {
                let _ = writeln!(out, "Wharf is serving {root} on ftps://{addr}/");
            }
        }
        let first = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let example = startup::example(&settings, &first);
        for line in admin_lines.iter().chain(&startup::summary(&settings)) {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "Connect with an FTP client (e.g. `{example}`); stop with Ctrl-C."
        );
        let _ = out.flush();
        drop(out);
        // Temporary upload files of earlier runs go, in the background: the homes may be large.
        let mut homes = vec![settings.root.clone()];
        homes.extend(settings.users.iter().map(|u| u.home.clone()));
        homes.sort();
        homes.dedup();
        if settings.storage.is_some() {
            // In a bucket an unfinished upload is never an object: nothing to sweep.
            homes.clear();
        }
        tokio::task::spawn_blocking(move || {
            let (removed, seen) = wharf_server::storage::sweep_stale_uploads(&homes, 10_000_000);
            tracing::info!(
                removed,
                entries = seen,
                "swept temporary upload files of earlier runs"
            );
        });
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        let source = ConfigSource {
            path: args.config.clone(),
            overrides,
            fixed_listen,
        };
        let Signals {
            hangup,
            user1,
            user2,
            interrupt,
            terminate,
        } = signals;
        let notify = systemd::Notify::from_env().map(Arc::new);
        tokio::spawn(reload_on_hangup(
            hangup,
            admin_reload_rx,
            source,
            services.clone(),
            reload_tx,
            notify.clone(),
            admin_tls.clone(),
        ));
        tokio::spawn(log_user_signals(user1, user2));
        // Listening, as the user it serves as, its database ready: systemd may send clients.
        if let Some(n) = &notify {
            n.ready();
            tokio::spawn(n.clone().keep_telling());
        }
        let stopping = notify.clone();
        let shutdown = async move {
            shutdown_signal(interrupt, terminate).await;
            if let Some(n) = stopping {
                n.stopping();
            }
        };
        wharf_server::run_reloadable(
            settings,
            services,
            listeners,
            implicit,
            shutdown,
            reload_rx,
            admin,
        )
        .await;
        ExitCode::SUCCESS
    })
}

/// Where the configuration comes from, to read it again on SIGHUP.
struct ConfigSource {
    path: Option<std::path::PathBuf>,
    overrides: Overrides,
    /// The sockets systemd handed over, which a reload keeps whatever the file says.
    fixed_listen: Option<FixedListen>,
}

/// The addresses of the sockets of socket activation: control, implicit TLS.
type FixedListen = (Vec<std::net::SocketAddr>, Vec<std::net::SocketAddr>);

trait ApplyListen {
    /// The settings' listeners become these sockets (no PROXY protocol on them).
    fn apply(&self, settings: &mut Settings);
}

impl ApplyListen for FixedListen {
    fn apply(&self, settings: &mut Settings) {
        settings.listen = self.0.clone();
        settings.listen_proxy = vec![None; self.0.len()];
        settings.listen_implicit = self.1.clone();
    }
}

impl ConfigSource {
    /// The file read and checked again, and the services for it (see `Services::reloaded`).
    fn rebuild(&self, current: &Services) -> Result<(Settings, Services), String> {
        let file = match &self.path {
            Some(path) => {
                FileConfig::load(path).map_err(|e| format!("config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let mut settings =
            Settings::build(file, self.overrides.clone()).map_err(|e| e.to_string())?;
        if let Some(fixed) = &self.fixed_listen {
            fixed.apply(&mut settings);
        }
        let services = current.reloaded(&settings).map_err(|e| e.to_string())?;
        Ok((settings, services))
    }
}

/// The signals a service manager sends, watched from the start: none of them may kill the
/// server (their default action would) except TERM and INT, which stop it gracefully.
struct Signals {
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
    user2: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            user1: signal(SignalKind::user_defined1())?,
            user2: signal(SignalKind::user_defined2())?,
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }
}

/// SIGHUP: reads the configuration again (users, permissions, limits, passive settings, the
/// certificate). New connections and new logins get it; running sessions go on. A file that
/// does not parse, or a certificate that does not load, is logged and the old configuration
/// stays.
async fn reload_on_hangup(
    mut hup: tokio::signal::unix::Signal,
    mut asked: tokio::sync::mpsc::UnboundedReceiver<wharf_server::admin::ReloadRequest>,
    source: ConfigSource,
    mut current: Services,
    reloads: tokio::sync::mpsc::UnboundedSender<wharf_server::Reload>,
    notify: Option<Arc<systemd::Notify>>,
    admin_tls: Option<Arc<wharf_server::tls::HttpsTls>>,
) {
    let source = Arc::new(source);
    loop {
        // SIGHUP, or the admin API's POST /api/v1/reload (which wants the outcome).
        let answer = tokio::select! {
            s = hup.recv() => match s {
                Some(()) => None,
                None => return,
            },
            Some(tx) = asked.recv() => Some(tx),
        };
        let by = if answer.is_some() {
            "admin API"
        } else {
            "SIGHUP"
        };
        tracing::info!("{by}: reading the configuration again");
        if let Some(n) = &notify {
            n.reloading();
        }
        let (src, cur) = (source.clone(), current.clone());
        let built = tokio::task::spawn_blocking(move || src.rebuild(&cur))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let outcome = match built {
            Ok((settings, services)) => {
                // The admin listener's certificate too (a renewal); its paths change at a
                // restart only.
                if let Some(t) = &admin_tls
                    && let Err(e) = t.reload()
                {
                    tracing::error!(error = %e, "{by}: the admin listener's certificate not reloaded; the old one stays");
                }
                current = services.clone();
                let _ = reloads.send(wharf_server::Reload { settings, services });
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "{by}: configuration not reloaded; the old one stays in use");
                Err(e)
            }
        };
        if let Some(n) = &notify {
            n.ready();
        }
        if let Some(tx) = answer {
            let _ = tx.send(outcome);
        }
    }
}

/// SIGUSR1 reopens the transfer log (after logrotate moved it; standard error is the service
/// manager's); SIGUSR2 is logged and ignored.
async fn log_user_signals(
    mut user1: tokio::signal::unix::Signal,
    mut user2: tokio::signal::unix::Signal,
) {
    loop {
        tokio::select! {
            Some(()) = user1.recv() => {
                let failed = wharf_server::xferlog::reopen_all();
                for (path, e) in &failed {
                    tracing::error!(file = %path.display(), error = %e, "SIGUSR1: cannot reopen the transfer log");
                }
                if failed.is_empty() {
                    tracing::info!("SIGUSR1: log files reopened");
                }
            }
            Some(()) = user2.recv() => tracing::info!("SIGUSR2: ignored"),
            else => return,
        }
    }
}

/// Writes a self-signed certificate and key for development.
fn cert(args: CertArgs) -> ExitCode {
    let mut names = vec![args.name.clone()];
    names.extend(args.alt.iter().cloned());
    // For localhost, the loopback addresses too: clients connect to 127.0.0.1 as often.
    if args.name == "localhost" {
        for ip in ["127.0.0.1", "::1"] {
            if !names.iter().any(|n| n == ip) {
                names.push(ip.to_string());
            }
        }
    }
    let key = match rcgen::KeyPair::generate() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("wharf: cannot generate a key: {e}");
            return ExitCode::from(1);
        }
    };
    let mut params = match rcgen::CertificateParams::new(names) {
        Ok(p) => p,
        Err(e) => return usage_error(&format!("certificate names: {e}")),
    };
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, args.name.clone());
    let now = std::time::SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + std::time::Duration::from_secs(u64::from(args.days) * 86_400)).into();
    let cert = match params.self_signed(&key) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf: cannot sign the certificate: {e}");
            return ExitCode::from(1);
        }
    };
    let safe = args
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let parent = args
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let owner = if args.out.exists() {
        privilege::owner_for(&args.out, args.owner.as_deref())
    } else {
        privilege::owner_for(parent, args.owner.as_deref())
    };
    if !args.out.exists() {
        let made = std::fs::create_dir_all(&args.out)
            .map_err(|e| format!("{}: {e}", args.out.display()))
            .and_then(|()| privilege::make_private(&args.out, &owner));
        if let Err(e) = made {
            eprintln!("wharf: cannot make the directory {e}");
            return ExitCode::from(1);
        }
    }
    let cert_path = args.out.join(format!("{safe}.crt"));
    let key_path = args.out.join(format!("{safe}.key"));
    if let Err(e) = std::fs::write(&cert_path, cert.pem()) {
        eprintln!("wharf: cannot write {}: {e}", cert_path.display());
        return ExitCode::from(1);
    }
    if let Err(e) = write_private(&key_path, key.serialize_pem().as_bytes()) {
        eprintln!("wharf: cannot write {}: {e}", key_path.display());
        return ExitCode::from(1);
    }
    // As root, the key goes to the user the server will read it as (a reload reads it then).
    if let Err(e) = privilege::make_private(&key_path, &owner) {
        eprintln!("wharf: cannot hand the key over: {e}");
        return ExitCode::from(1);
    }
    println!("{}", cert_path.display());
    println!("{}", key_path.display());
    eprintln!(
        "Self-signed, for development: clients must trust {} (e.g. `--ca-file`).",
        cert_path.display()
    );
    ExitCode::SUCCESS
}

/// Writes a file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Never through a symbolic link planted where the key goes (`--out /tmp` as root).
    let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nofollow)
        .open(path)?;
    // An existing file keeps its mode on open: make it private before the key goes in.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

/// Completes on SIGINT or SIGTERM (graceful shutdown); a second SIGINT or SIGTERM during it
/// ends the process at once.
async fn shutdown_signal(
    mut interrupt: tokio::signal::unix::Signal,
    mut terminate: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::warn!("second signal: stopping at once");
        std::process::exit(130);
    });
}

/// The tokio runtime: `Some(0)` runs on the calling thread, `Some(n)` on n workers, `None` on
/// one per CPU. Failing to start it is reported, and is exit code 1.
fn start_runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = match workers {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n @ 1..) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("wharf: cannot start runtime: {e}");
        ExitCode::from(1)
    })
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

pub(crate) fn prompt_hidden(prompt: &str) -> Option<String> {
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
