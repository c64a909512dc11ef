//! The troubleshooter behind `wharf check`: what an administrator does by hand with telnet and a
//! client's log, in order — resolve, connect, banner, login, SYST, FEAT, a listing over each data
//! method, then PWD, TYPE I, the listing parsed, a resumed download, the names (UTF-8), with
//! `--write` an upload, rename and delete, the other address family, TLS versions and session
//! reuse, and on Wharf what the server saw (SITE DIAG) — each with a verdict, the evidence and,
//! on failure, the likely cause and the change to make, named in the server's own terms.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::client::{Client, DataMethod, Options, Probe, is_local_address};
use crate::error::Error;
use crate::log::LogSink;
use crate::tls::{TlsSettings, TlsVersion};

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

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but something is wrong that breaks some clients.
    Warn,
    Fail,
    /// Not tried (an earlier step failed, or it cannot apply).
    Skipped,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One step of the diagnosis.
#[derive(Debug, Clone)]
pub struct Step {
    /// `resolve`, `connect`, `banner`, `login`, `syst`, `feat`, `EPSV`, `PASV`, `EPRT`, `PORT`.
    pub name: String,
    pub verdict: Verdict,
    /// What was seen: the reply, the error, the addresses.
    pub evidence: String,
    pub elapsed: Duration,
    /// On failure or warning: the likely cause, in plain words.
    pub cause: Option<String>,
    /// On failure or warning: what to change.
    pub advice: Option<String>,
}

/// FTP server software, as the banner and SYST tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Software {
    Wharf,
    Vsftpd,
    Proftpd,
    PureFtpd,
    FileZilla,
    Iis,
    Pyftpdlib,
    Rclone,
    Sftpgo,
    FtpSrv,
    ServU,
    Titan,
    CrushFtp,
    Cerberus,
    WingFtp,
    Unftp,
    Unknown,
}

impl Software {
    /// Recognises the server from its banner and SYST reply (the names as the products write
    /// them in their default welcome messages).
    pub fn identify(banner: &str, syst: &str) -> Software {
        // Product names first: a server's configured name (ProFTPD's `ServerName`) can contain
        // anything, "wharf" included.
        let text = format!("{banner}\n{syst}").to_ascii_lowercase();
        const BY_NAME: &[(&str, Software)] = &[
            ("vsftpd", Software::Vsftpd),
            ("proftpd", Software::Proftpd),
            ("pure-ftpd", Software::PureFtpd),
            ("filezilla", Software::FileZilla),
            ("microsoft ftp", Software::Iis),
            ("pyftpdlib", Software::Pyftpdlib),
            ("rclone", Software::Rclone),
            ("sftpgo", Software::Sftpgo),
            ("ftp-srv", Software::FtpSrv),
            ("serv-u", Software::ServU),
            ("titan ftp", Software::Titan),
            ("crushftp", Software::CrushFtp),
            ("cerberus ftp", Software::Cerberus),
            ("wing ftp", Software::WingFtp),
            ("unftp", Software::Unftp),
            ("wharf", Software::Wharf),
        ];
        if let Some((_, sw)) = BY_NAME.iter().find(|(name, _)| text.contains(name)) {
            return *sw;
        }
        if syst.contains("Windows_NT") {
            Software::Iis
        } else {
            Software::Unknown
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Software::Wharf => "Wharf",
            Software::Vsftpd => "vsftpd",
            Software::Proftpd => "ProFTPD",
            Software::PureFtpd => "Pure-FTPd",
            Software::FileZilla => "FileZilla Server",
            Software::Iis => "Microsoft FTP Service (IIS)",
            Software::Pyftpdlib => "pyftpdlib",
            Software::Rclone => "rclone serve ftp",
            Software::Sftpgo => "SFTPGo",
            Software::FtpSrv => "ftp-srv (Node.js)",
            Software::ServU => "Serv-U",
            Software::Titan => "Titan FTP Server",
            Software::CrushFtp => "CrushFTP",
            Software::Cerberus => "Cerberus FTP Server",
            Software::WingFtp => "Wing FTP Server",
            Software::Unftp => "unFTP",
            Software::Unknown => "unknown",
        }
    }

    /// How this server is told which address to announce in PASV replies.
    pub fn masquerade_setting(self) -> &'static str {
        match self {
            Software::Wharf => "`--passive-address ADDR` (or `[passive] address` in the config)",
            Software::Vsftpd => "`pasv_address=ADDR` in vsftpd.conf",
            Software::Proftpd => "`MasqueradeAddress ADDR` in proftpd.conf",
            Software::PureFtpd => "`-P ADDR` (ForcePassiveIP)",
            Software::FileZilla => {
                "Passive mode settings → \"Use the following IP\" (the public address)"
            }
            Software::Iis => "FTP Firewall Support → \"External IP Address of Firewall\"",
            Software::Pyftpdlib => "`handler.masquerade_address = ADDR`",
            Software::Rclone => "`--public-ip ADDR` of `rclone serve ftp`",
            Software::Sftpgo => "`force_passive_ip` of the FTP binding (ftpd.bindings)",
            Software::FtpSrv => "the `pasv_url` option of FtpSrv",
            Software::ServU => "the listener's \"PASV IP address\" (Domain → Listeners)",
            Software::Titan => "the server's PASV IP address (NAT settings)",
            Software::CrushFtp => "the server item's PASV IP (Preferences → IP/Port)",
            Software::Cerberus => "the interface's passive IP address",
            Software::WingFtp => "the domain's passive mode IP",
            Software::Unftp => "`--passive-host ADDR`",
            Software::Unknown => "the server's passive/masquerade address setting",
        }
    }

    /// How this server's passive port range is set.
    /// Where TLS is turned on, in the server's own terms.
    pub fn tls_setting(self) -> &'static str {
        match self {
            Software::Wharf => "--tls-cert FILE --tls-key FILE (or [tls] cert/key in the config)",
            Software::Vsftpd => "ssl_enable=YES with rsa_cert_file and rsa_private_key_file",
            Software::Proftpd => "TLSEngine on (mod_tls) with TLSRSACertificateFile",
            Software::PureFtpd => "--tls=1 (or 2) and /etc/ssl/private/pure-ftpd.pem",
            Software::FileZilla => {
                "FTP over TLS settings: a certificate and \"Allow explicit FTP over TLS\""
            }
            Software::Iis => "FTP SSL Settings: choose a certificate",
            Software::Pyftpdlib => "TLS_FTPHandler with certfile",
            Software::Rclone => "`--cert FILE --key FILE` of `rclone serve ftp`",
            Software::Sftpgo => "`tls_mode` and certificate_file/certificate_key_file of ftpd",
            Software::FtpSrv => "the `tls` option of FtpSrv (key and cert)",
            Software::ServU => "a listener of type \"FTP and Explicit SSL/TLS\" with a certificate",
            Software::Titan => "FTPS (explicit) with a certificate",
            Software::CrushFtp => "an FTPES server item with a keystore",
            Software::Cerberus => "explicit TLS on the interface, with a certificate",
            Software::WingFtp => "FTP over TLS (explicit) for the domain, with a certificate",
            Software::Unftp => "`--ftps-certs-file FILE --ftps-key-file FILE`",
            Software::Unknown => "the server's TLS (FTPS) settings",
        }
    }

    /// How this server is made to accept TLS 1.2 (with ciphers current clients offer).
    pub fn tls12_setting(self) -> &'static str {
        match self {
            Software::Vsftpd => {
                "`ssl_ciphers=HIGH` and `ssl_tlsv1_2=YES` in vsftpd.conf (its default cipher, DES-CBC3-SHA, is one current clients refuse)"
            }
            Software::Proftpd => "`TLSProtocol TLSv1.2 TLSv1.3` and `TLSCipherSuite HIGH`",
            Software::PureFtpd => "`--tlsciphersuite=HIGH`",
            Software::FileZilla => "FTP over TLS settings → minimum allowed TLS version 1.2",
            _ => "the server's TLS protocol and cipher settings (TLS 1.2 with ECDHE and AES-GCM)",
        }
    }

    /// Where a user is allowed to upload, rename and delete, in the server's own terms.
    pub fn write_setting(self) -> &'static str {
        match self {
            Software::Wharf => {
                "`--write` for command-line users and anonymous, or the user's `permissions` in the config"
            }
            Software::Vsftpd => {
                "`write_enable=YES` in vsftpd.conf (anonymous: also `anon_upload_enable=YES`, `anon_other_write_enable=YES`), and a directory the user may write"
            }
            Software::Proftpd => {
                "a `<Limit WRITE>` that allows the user in the directory's `<Directory>` block, and a directory the user may write"
            }
            Software::PureFtpd => {
                "a home directory the user may write (anonymous: without `--anonymouscantupload`)"
            }
            Software::FileZilla => "the user's file permissions: Write, Delete, Append",
            Software::Pyftpdlib => "the user's `perm` string (`elradfmwMT` for everything)",
            Software::Rclone => "`rclone serve ftp` without `--read-only`",
            Software::Unftp => "a storage back end the server may write",
            _ => "the user's write, rename and delete permissions on its login directory",
        }
    }

    /// How this server is made to listen on IPv6 (`ipv6`) or IPv4 as well.
    pub fn listen_setting(self, ipv6: bool) -> &'static str {
        match (self, ipv6) {
            (Software::Wharf, true) => "`--listen [::]:21` beside the IPv4 listener",
            (Software::Wharf, false) => "`--listen 0.0.0.0:21` beside the IPv6 listener",
            (Software::Vsftpd, _) => "`listen_ipv6=YES` (and `listen=NO`): one socket for both",
            (Software::Proftpd, _) => "`UseIPv6 on` and no IPv4-only `DefaultAddress`",
            (Software::PureFtpd, _) => "no `-4`/`-6` option",
            _ => "the server's listen address settings",
        }
    }

    /// How this server is told that names are UTF-8.
    pub fn utf8_setting(self) -> &'static str {
        match self {
            Software::Vsftpd => "`utf8_filesystem=YES` in vsftpd.conf",
            Software::Proftpd => "`UseUTF8 on` (mod_lang) in proftpd.conf",
            Software::PureFtpd => "`--fscharset=UTF-8` (with `--clientcharset`)",
            Software::FileZilla => "names are UTF-8 always; check the client's charset setting",
            _ => "the server's file name encoding setting (UTF-8)",
        }
    }

    pub fn passive_range_setting(self) -> &'static str {
        match self {
            Software::Wharf => "`--passive-ports A-B` (or `[passive] ports`)",
            Software::Vsftpd => "`pasv_min_port`/`pasv_max_port` in vsftpd.conf",
            Software::Proftpd => "`PassivePorts A B` in proftpd.conf",
            Software::PureFtpd => "`-p A:B`",
            Software::FileZilla => "Passive mode settings → \"Use custom port range\"",
            Software::Iis => "FTP Firewall Support → \"Data Channel Port Range\"",
            Software::Pyftpdlib => "`handler.passive_ports = range(A, B)`",
            Software::Rclone => "`--passive-port A-B` of `rclone serve ftp`",
            Software::Sftpgo => "`passive_port_range` of ftpd",
            Software::FtpSrv => "the `pasv_min`/`pasv_max` options of FtpSrv",
            Software::ServU => "the listener's PASV port range",
            Software::Titan => "the server's PASV port range",
            Software::CrushFtp => "the server item's PASV port range",
            Software::Cerberus => "the interface's passive port range",
            Software::WingFtp => "the domain's passive port range",
            Software::Unftp => "`--passive-ports A-B`",
            Software::Unknown => "the server's passive port range",
        }
    }
}

/// The whole diagnosis.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    pub software: Option<Software>,
    pub steps: Vec<Step>,
    /// Data methods that listed a directory.
    pub working: Vec<DataMethod>,
    /// One line: which modes work and which to use.
    pub summary: String,
    /// 0: at least one data mode works; 1: the server answers but login or every data mode
    /// fails; 3: the control port cannot be reached.
    pub exit_code: u8,
}

/// Runs the diagnosis. Never fails: every failure is a step of the report.
pub async fn check(opts: &CheckOptions) -> Report {
    let mut run = Run {
        steps: Vec::new(),
        progress: opts.progress.clone(),
        told: 0,
        target: target(&opts.host, opts.port),
    };
    let begun = Instant::now();
    let options = Options {
        timeout: opts.timeout,
        mode: crate::client::DataMode::Auto,
        log: opts.log.clone(),
        tls: opts.tls.clone(),
        // A checker connects only where the user pointed it, whatever a server announces.
        trust_pasv_address: false,
        throttle: None,
    };
    let implicit = opts.tls.as_ref().is_some_and(|t| t.implicit);

    // 1. Resolve.
    if opts.host.parse::<IpAddr>().is_err() {
        run.start(
            "resolve",
            &format!(
                "resolving {}, up to {} s",
                opts.host,
                opts.timeout.as_secs()
            ),
        );
    }
    let started = Instant::now();
    let addrs: Vec<SocketAddr> = match opts.host.parse::<IpAddr>() {
        Ok(ip) => {
            run.step(
                "resolve",
                Verdict::Skipped,
                format!("{ip} is an address"),
                started,
            );
            vec![SocketAddr::new(ip, opts.port)]
        }
        Err(_) => match timeout(
            opts.timeout,
            tokio::net::lookup_host((opts.host.as_str(), opts.port)),
        )
        .await
        {
            Ok(Ok(a)) => {
                let a: Vec<SocketAddr> = a.collect();
                let shown: Vec<String> = a.iter().map(|s| s.ip().to_string()).collect();
                run.step(
                    "resolve",
                    Verdict::Ok,
                    format!("{} → {}", opts.host, shown.join(", ")),
                    started,
                );
                a
            }
            Ok(Err(e)) => {
                run.fail(
                    "resolve",
                    format!("{}: {e}", opts.host),
                    started,
                    "the name does not resolve (a typo, or no DNS record)",
                    "check the host name, or use the server's IP address",
                );
                return run.finish(None, Vec::new(), 3);
            }
            Err(_) => {
                run.fail(
                    "resolve",
                    format!("no answer from DNS within {} s", opts.timeout.as_secs()),
                    started,
                    "the DNS server does not answer",
                    "check this machine's DNS settings, or use the server's IP address",
                );
                return run.finish(None, Vec::new(), 3);
            }
        },
    };

    // 2. TCP connect to the control port: refused, filtered and reset mean different things.
    let mut control = None;
    let mut tried = Vec::new();
    for addr in &addrs {
        tried.push(*addr);
        run.start(
            "connect",
            &format!("connecting to {addr}, up to {} s", opts.timeout.as_secs()),
        );
        let started = Instant::now();
        match timeout(opts.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                // Addresses tried before this one did not answer: clients that try them first
                // wait or fail, but FTP works. A warning, not a failure.
                for earlier in run.steps.iter_mut().filter(|s| s.name == "connect") {
                    earlier.verdict = Verdict::Warn;
                    earlier.advice = Some(format!(
                        "make the server listen on every address the name resolves to, or remove that address from DNS ({} works)",
                        addr
                    ));
                }
                run.step(
                    "connect",
                    Verdict::Ok,
                    format!("connected to {addr}"),
                    started,
                );
                control = Some(s);
                break;
            }
            Ok(Err(e)) => {
                let (cause, advice) = connect_failure(&e, *addr);
                run.fail("connect", format!("{addr}: {e}"), started, &cause, &advice);
            }
            Err(_) => {
                let port = addr.port();
                run.fail(
                    "connect",
                    format!(
                        "{addr}: no answer within {} s (timed out: filtered)",
                        opts.timeout.as_secs()
                    ),
                    started,
                    &format!(
                        "packets to port {port} are dropped: a firewall on the way, on the server, or at the ISP (many block port 21)"
                    ),
                    &format!(
                        "open TCP port {port} in the server's firewall; if it is open there, try from another network or ask the ISP"
                    ),
                );
            }
        }
    }
    let Some(control) = control else {
        return run.finish(None, Vec::new(), 3);
    };

    // 3. The banner. On a plain port, first what the service sends before anything is asked:
    // something other than an FTP reply is shown and named.
    run.start(
        "banner",
        &format!(
            "waiting for the welcome message, up to {} s",
            opts.timeout.as_secs()
        ),
    );
    let started = Instant::now();
    if !implicit {
        if let Some((evidence, cause, advice)) =
            not_ftp(&control, opts.timeout, &target_host(&opts.host), opts.port).await
        {
            run.fail("banner", evidence, started, &cause, &advice);
            return run.finish(None, Vec::new(), 1);
        }
    }
    let mut client = match Client::from_stream(control, options.clone()).await {
        Ok(c) => c,
        Err(e @ Error::Tls(_)) if implicit => {
            run.fail(
                "tls",
                e.to_string(),
                started,
                "the TLS handshake failed on the implicit-TLS port: the server does not speak TLS there, or no protocol version or cipher suite is shared",
                "check that the port is the server's implicit FTPS port (990 usually); for explicit FTPS on port 21 use ftpes:// or --tls",
            );
            return run.finish(None, Vec::new(), 1);
        }
        Err(e) => {
            let (cause, advice) = match &e {
                Error::Network(io) if io.kind() == io::ErrorKind::ConnectionReset => (
                    "reset: the connection was cut before the welcome message, by the server (an access rule such as tcp_wrappers or an allow list) or a middlebox".to_string(),
                    "check the server's access rules and log, and any firewall or intrusion prevention between".to_string(),
                ),
                Error::Closed => (
                    "the server closed the connection without a welcome message: an access rule, a connection limit, or a crash".to_string(),
                    "check the server's log".to_string(),
                ),
                Error::Timeout(_) => (
                    "the port accepts connections but nothing speaks FTP: a firewall or proxy in the way, an overloaded server, or another service on this port".to_string(),
                    "check that the FTP server runs and listens on this port; try telnet HOST PORT from the server itself".to_string(),
                ),
                Error::Refused { reply, .. } if reply.code.0 == 421 => (
                    "the server turns sessions away: too many connections, or this address is not allowed".to_string(),
                    "wait and retry, or raise the server's connection limits".to_string(),
                ),
                _ => (
                    "the connection broke before the welcome message: a middlebox or the server reset it".to_string(),
                    "check the server's log and any firewall or IPS between".to_string(),
                ),
            };
            run.fail("banner", e.to_string(), started, &cause, &advice);
            return run.finish(None, Vec::new(), 1);
        }
    };
    let banner = client.welcome().text().replace('\n', " / ");
    let mut software = Software::identify(&banner, "");
    run.step(
        "banner",
        Verdict::Ok,
        format!(
            "{} {banner} (server: {})",
            client.welcome().code,
            software.name()
        ),
        started,
    );

    // 3a. The virtual host: HOST with the name given, where FEAT lists HOST (RFC 7151).
    client.set_name(&opts.host);
    let started = Instant::now();
    match client.choose_host().await {
        Ok(()) => match client.host_reply().cloned() {
            Some(r) if r.code.0 == 220 => run.step(
                "host",
                Verdict::Ok,
                format!("HOST {}: {} {}", opts.host, r.code, r.text()),
                started,
            ),
            Some(r) => run.judged(
                "host",
                Verdict::Warn,
                format!("HOST {}: {} {}", opts.host, r.code, r.text()),
                started,
                &format!(
                    "the server has virtual hosts but does not serve {}: the login goes to its default host, with other users and files",
                    opts.host
                ),
                "check the host name with the provider (the one its certificate names)",
            ),
            None => {}
        },
        Err(e) => run.judged(
            "host",
            Verdict::Warn,
            e.to_string(),
            started,
            "FEAT or HOST before login broke the session",
            "try again; report it to the server's vendor",
        ),
    }

    // 3b. TLS: AUTH TLS (explicit) and what the handshake showed.
    let mut tls_failed = false;
    if let Some(settings) = &opts.tls {
        run.start(
            "tls",
            &format!(
                "AUTH TLS and the TLS handshake, up to {} s",
                opts.timeout.as_secs()
            ),
        );
        let started = Instant::now();
        match client.secure().await {
            Ok(()) => {
                let step = judge_tls(&client, settings, opts.insecure, started, software);
                tls_failed = step.verdict == Verdict::Fail;
                run.steps.push(step);
            }
            Err(e) => {
                let (cause, advice) = match &e {
                    Error::Refused { .. } => (
                        "the server does not offer explicit TLS (AUTH TLS refused)".to_string(),
                        format!("turn TLS on in the server: {}", software.tls_setting()),
                    ),
                    _ => (
                        "the TLS handshake failed: no shared protocol version or cipher suite, or the connection was cut".to_string(),
                        "check the server's TLS settings and log (minimum TLS 1.2)".to_string(),
                    ),
                };
                run.fail("tls", e.to_string(), started, &cause, &advice);
                return run.finish(Some(software), Vec::new(), 1);
            }
        }
    }

    // 4. Login. A password is not sent to a server whose certificate did not verify: it may
    // not be the server meant (anonymous goes on, to check the rest).
    run.start(
        "login",
        &format!(
            "logging in as {}, up to {} s",
            opts.user.as_deref().unwrap_or("anonymous"),
            opts.timeout.as_secs()
        ),
    );
    let started = Instant::now();
    if tls_failed && !opts.insecure && opts.user.is_some() {
        run.step(
            "login",
            Verdict::Skipped,
            "password not sent: the server's certificate did not verify".into(),
            started,
        );
        if let Some(step) = run.steps.last_mut() {
            step.advice =
                Some("trust the server's CA with --ca-file, or --insecure to log in anyway".into());
        }
        return run.finish(Some(software), Vec::new(), 1);
    }
    let (user, password) = match &opts.user {
        Some(u) => (u.clone(), opts.password.clone().unwrap_or_default()),
        None => (
            crate::tree::ANONYMOUS.0.to_string(),
            crate::tree::ANONYMOUS.1.to_string(),
        ),
    };
    if let Err(e) = client.login(&user, &password).await {
        let (cause, advice) = login_failure(&e, opts.user.is_none());
        run.fail("login", e.to_string(), started, &cause, &advice);
        return run.finish(Some(software), Vec::new(), 1);
    }
    run.step(
        "login",
        Verdict::Ok,
        format!("logged in as {user}"),
        started,
    );
    let account = Account {
        options: &options,
        user: &user,
        password: &password,
    };

    // 5. SYST, FEAT.
    let started = Instant::now();
    match client.command("SYST", None).await {
        Ok(reply) => {
            let text = reply.text();
            if software == Software::Unknown {
                software = Software::identify(&banner, &text);
            }
            let verdict = if reply.code.is_completion() {
                Verdict::Ok
            } else {
                Verdict::Warn
            };
            run.step("syst", verdict, format!("{} {text}", reply.code), started);
        }
        Err(e) => run.step("syst", Verdict::Warn, e.to_string(), started),
    }
    let started = Instant::now();
    let feat = match client.feat_reply() {
        Some(r) if r.code.is_completion() => {
            let n = r.lines.len();
            let features: Vec<String> = r
                .lines
                .iter()
                .take(n.saturating_sub(1))
                .skip(1)
                .map(|l| String::from_utf8_lossy(l).trim().to_string())
                .collect();
            (Verdict::Ok, features.join(", "))
        }
        Some(r) => (Verdict::Ok, format!("{} {} (no FEAT)", r.code, r.text())),
        None => (Verdict::Skipped, String::new()),
    };
    run.step("feat", feat.0, feat.1, started);

    // 6. A listing over each data method.
    let mut working = Vec::new();
    let ipv6 = client.peer_addr().is_ipv6();
    for method in DataMethod::ALL {
        run.start(
            method.name(),
            &format!(
                "a listing over {}: the data connection, up to {} s",
                method.name(),
                opts.timeout.as_secs()
            ),
        );
        let started = Instant::now();
        if ipv6 && matches!(method, DataMethod::Pasv | DataMethod::Port) {
            run.step(
                method.name(),
                Verdict::Skipped,
                "IPv4 only; this is an IPv6 connection".into(),
                started,
            );
            continue;
        }
        // The last probe may have left the session out of step: a fresh one for the next, to
        // the same address, after closing the old one (per-IP limits count it).
        if let Err(e) = account.ready(&mut client).await {
            run.fail(
                method.name(),
                format!("could not open a new session: {e}"),
                started,
                "the server stopped accepting sessions",
                "check the server's connection limits",
            );
            continue;
        }
        let probe = client.probe_listing(method).await;
        let step = judge(&probe, software, client.peer_addr());
        if matches!(step.verdict, Verdict::Ok | Verdict::Warn) {
            working.push(method);
        }
        run.steps.push(step);
    }
    // 7. Deeper: where the session is, binary mode, the listing parsed, a resumed download,
    // and how fast the server answered.
    if !working.is_empty() && account.ready(&mut client).await.is_ok() {
        let entries = deeper(&mut run, &mut client, opts.timeout).await;
        if account.ready(&mut client).await.is_ok() {
            names(&mut run, &mut client, &entries, software, opts.timeout).await;
        }
        if opts.write {
            write_round_trip(&mut run, &mut client, &account, software).await;
        } else {
            run.step(
                "write",
                Verdict::Skipped,
                "not tried: `--write` uploads, renames and deletes a test file".into(),
                Instant::now(),
            );
        }
    }
    // 7b. TLS in depth: the protocol versions the server accepts, and its session reuse rule
    // for data connections.
    if let (Some(settings), false) = (&opts.tls, tls_failed) {
        let peer = client.peer_addr();
        tls_versions(&mut run, peer, settings, &options, software).await;
        if let Some(method) = working
            .iter()
            .copied()
            .find(|m| m.is_passive())
            .or(working.first().copied())
        {
            tls_reuse(&mut run, peer, &account, method).await;
        }
    }
    // 8. The server's end: Wharf says what it saw (SITE DIAG).
    if software == Software::Wharf && account.ready(&mut client).await.is_ok() {
        server_side(&mut run, &mut client, opts.timeout, begun).await;
    }
    let used = client.peer_addr();
    if client.in_step() {
        client.quit().await;
    }
    // 9. The other address family, when the name has both and the first worked: clients that
    // prefer it (IPv6 first, most of them) must work too.
    if let Some(other) = addrs
        .iter()
        .find(|a| a.is_ipv4() != used.is_ipv4() && !tried.contains(a))
    {
        other_family(
            &mut run,
            *other,
            &opts.host,
            &options,
            (&user, &password),
            software,
        )
        .await;
    }

    let exit = if working.is_empty() || tls_failed {
        1
    } else {
        0
    };
    run.finish(Some(software), working, exit)
}

/// A reply slower than this is worth a warning: clients time out, users give up.
const SLOW: Duration = Duration::from_secs(2);

/// PWD, TYPE I, the listing parsed and its entries named, and a download of a listed file
/// resumed at byte 1 (REST): what a client does right after login, each a step.
async fn deeper(run: &mut Run, client: &mut Client, wait: Duration) -> Vec<crate::Entry> {
    let secs = wait.as_secs();
    run.start("pwd", &format!("PWD, up to {secs} s"));
    let started = Instant::now();
    match client.pwd().await {
        Ok(dir) => run.step(
            "pwd",
            Verdict::Ok,
            format!("the login directory is {}", String::from_utf8_lossy(&dir)),
            started,
        ),
        Err(e) => run.warn(
            "pwd",
            e.to_string(),
            started,
            "the server does not say where the session is (PWD): clients that build paths from it go wrong",
            "check the server's log",
        ),
    }
    run.start("type", &format!("TYPE I, up to {secs} s"));
    let started = Instant::now();
    match client.command("TYPE", Some(b"I")).await {
        Ok(r) if r.code.is_completion() => run.step(
            "type",
            Verdict::Ok,
            format!("{} {}", r.code, r.text()),
            started,
        ),
        Ok(r) => run.warn(
            "type",
            format!("{} {}", r.code, r.text()),
            started,
            "the server refuses binary mode (TYPE I): files may arrive altered",
            "check the server's transfer settings",
        ),
        Err(e) => run.step("type", Verdict::Warn, e.to_string(), started),
    }
    run.start(
        "list",
        &format!("the listing of the login directory, parsed, up to {secs} s"),
    );
    let started = Instant::now();
    let entries = match client.list(b"").await {
        Ok(entries) => {
            let shown: Vec<String> = entries
                .iter()
                .take(5)
                .map(|e| {
                    let name = String::from_utf8_lossy(&e.name).into_owned();
                    match (e.kind, e.size) {
                        (wharf_proto::FileKind::Dir, _) => format!("{name}/"),
                        (_, Some(n)) => format!("{name} ({n} bytes)"),
                        _ => name,
                    }
                })
                .collect();
            let evidence = match entries.len() {
                0 => "an empty directory".to_string(),
                n if n > 5 => format!("{n} entries: {}, …", shown.join(", ")),
                n => format!("{n} entries: {}", shown.join(", ")),
            };
            run.step("list", Verdict::Ok, evidence, started);
            entries
        }
        Err(e) => {
            run.warn(
                "list",
                e.to_string(),
                started,
                "the listing came, but could not be read as MLSD or LIST",
                "check the server's listing format settings",
            );
            Vec::new()
        }
    };
    let file = entries
        .iter()
        .find(|e| e.kind == wharf_proto::FileKind::File && e.size.is_some_and(|n| n >= 2));
    let started = Instant::now();
    let Some(file) = file else {
        run.step(
            "resume",
            Verdict::Skipped,
            "no file of 2 bytes or more in the login directory to download".into(),
            started,
        );
        return entries;
    };
    let name = String::from_utf8_lossy(&file.name).into_owned();
    let size = file.size.unwrap_or(0);
    // REST to at most RESUME_PEEK bytes before the end (byte 1 of a small file), and a RETR
    // that may take one byte more: a server that honours REST sends exactly the rest; one that
    // ignores it starts from the beginning, and the extra byte shows it whatever the file
    // holds (the data connection is then cut). Never the whole of a large file.
    let offset = size.saturating_sub(RESUME_PEEK).max(1);
    let want = size - offset;
    run.start(
        "resume",
        &format!("REST {offset} and RETR {name}, up to {secs} s"),
    );
    let mut got = Vec::new();
    let np = &crate::client::NoProgress;
    let shown = |n: u64| {
        if offset == 1 {
            format!("REST 1 + RETR {name}: {n} of {size} bytes")
        } else {
            format!("REST {offset} + RETR {name}: the last {n} of {size} bytes")
        }
    };
    match client
        .retrieve_range(&file.name, offset, want + 1, &mut got, np)
        .await
    {
        Ok(n) if n == want => run.step(
            "resume",
            Verdict::Ok,
            format!("{} (resumed downloads work)", shown(n)),
            started,
        ),
        Ok(n) => run.warn(
            "resume",
            format!("REST {offset} + RETR {name}: {n} bytes, expected {want}"),
            started,
            "the server does not honour REST: a resumed download restarts, and a client that trusts REST writes a corrupt file",
            "enable restart (REST STREAM) in the server",
        ),
        Err(e) => run.warn(
            "resume",
            e.to_string(),
            started,
            "resuming a download (REST) fails: broken downloads must start over",
            "enable restart (REST STREAM) in the server",
        ),
    }
    entries
}

/// Bytes the resume step reads of a larger file: its last few, never the whole file (a large
/// file at a capped rate took a minute, and was then blamed on the server).
const RESUME_PEEK: u64 = 4096;

/// Which TLS versions the server accepts: one handshake with each, on connections of their
/// own. Clients without TLS 1.3 are still common (older Windows and Java versions), so a
/// server with 1.3 only is a warning; one without 1.3 is told, not judged.
async fn tls_versions(
    run: &mut Run,
    peer: SocketAddr,
    settings: &TlsSettings,
    options: &Options,
    software: Software,
) {
    run.start(
        "versions",
        &format!(
            "a TLS 1.3 and a TLS 1.2 handshake with {peer}, up to {} s each",
            options.timeout.as_secs()
        ),
    );
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut accepted = Vec::new();
    for version in [TlsVersion::Tls13, TlsVersion::Tls12] {
        let result = match settings.only(version) {
            Ok(only) => {
                let options = Options {
                    tls: Some(only),
                    log: None,
                    ..options.clone()
                };
                handshake_only(peer, &options).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(suite) => {
                seen.push(format!("{}: accepted ({suite})", version.name()));
                accepted.push(version);
            }
            Err(e) => seen.push(format!("{}: refused ({e})", version.name())),
        }
    }
    let evidence = seen.join("; ");
    match accepted[..] {
        [TlsVersion::Tls13] => run.warn(
            "versions",
            evidence,
            started,
            "the server accepts TLS 1.3 only: clients without it (older Windows and Java versions, older FTP clients) cannot connect",
            &format!("allow TLS 1.2 as well: {}", software.tls12_setting()),
        ),
        [] => run.warn(
            "versions",
            evidence,
            started,
            "neither a TLS 1.3 nor a TLS 1.2 handshake succeeded on a connection of its own, though the first one did: the server limits TLS connections per address, or is overloaded",
            "check the server's log",
        ),
        _ => run.step("versions", Verdict::Ok, evidence, started),
    }
}

/// Connects, and runs AUTH TLS and the handshake (or the implicit handshake): the cipher suite.
async fn handshake_only(peer: SocketAddr, options: &Options) -> Result<String, Error> {
    let stream = match timeout(options.timeout, TcpStream::connect(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(Error::Connect { addr: peer, source }),
        Err(_) => return Err(Error::Timeout(format!("connecting to {peer}"))),
    };
    let mut client = Client::from_stream(stream, options.clone()).await?;
    client.secure().await?;
    let suite = client
        .tls_info()
        .map_or_else(|| "?".to_string(), |(_, suite)| suite.clone());
    client.quit().await;
    Ok(suite)
}

/// Whether the server requires data connections to resume the control connection's TLS
/// session (vsftpd's `require_ssl_reuse`, ProFTPD, FileZilla Server, Wharf), and whether ours,
/// which do, are accepted: a listing resuming the session, then one with a new session.
async fn tls_reuse(run: &mut Run, peer: SocketAddr, account: &Account<'_>, method: DataMethod) {
    let options = account.options;
    run.start(
        "reuse",
        &format!(
            "a listing over {} resuming the TLS session, then one with a new session, up to {} s each",
            method.name(),
            options.timeout.as_secs()
        ),
    );
    let started = Instant::now();
    let mut client = match reopen(peer, options, account.user, account.password).await {
        Ok(c) => c,
        Err(e) => {
            return run.step(
                "reuse",
                Verdict::Skipped,
                format!("no new session: {e}"),
                started,
            );
        }
    };
    let ours = client.probe_listing(method).await;
    let ours_text = match (&ours.result, ours.data_tls_resumed) {
        (Ok(_), Some(true)) => "a data connection resuming the control connection's session: accepted".to_string(),
        (Ok(_), _) => "the server did not resume our session (each data connection a full handshake), and accepted it".to_string(),
        (Err(e), _) => format!("a data connection resuming the control connection's session: {e}"),
    };
    if ours.result.is_err() {
        client.close().await;
        return run.warn(
            "reuse",
            ours_text,
            started,
            "the server refuses data connections that resume the control connection's TLS session, which is what clients do: a server-side session cache or ticket problem",
            "check the server's log and its TLS session cache settings",
        );
    }
    if let Err(e) = account.ready(&mut client).await {
        return run.step(
            "reuse",
            Verdict::Ok,
            format!("{ours_text}; no second session: {e}"),
            started,
        );
    }
    client.forget_tls_sessions();
    let fresh = client.probe_listing(method).await;
    if client.in_step() {
        client.quit().await;
    }
    let fresh_text = match &fresh.result {
        Ok(_) => {
            "one with a new TLS session: accepted too (the server does not require session reuse)"
                .to_string()
        }
        Err(e) => {
            format!("one with a new TLS session: refused (the server requires session reuse): {e}")
        }
    };
    run.step(
        "reuse",
        Verdict::Ok,
        format!("{ours_text}; {fresh_text}"),
        started,
    );
}

/// The same session over the other address family of the name: connect, login, and a listing
/// over EPSV (the one passive command of both families).
async fn other_family(
    run: &mut Run,
    addr: SocketAddr,
    host: &str,
    options: &Options,
    (user, password): (&str, &str),
    software: Software,
) {
    let (name, record) = if addr.is_ipv6() {
        ("IPv6", "AAAA")
    } else {
        ("IPv4", "A")
    };
    run.start(
        name,
        &format!(
            "{host} also has {}: connect, login and a listing over EPSV there, up to {} s each",
            addr.ip(),
            options.timeout.as_secs()
        ),
    );
    let started = Instant::now();
    let mut client = match reopen(addr, options, user, password).await {
        Ok(c) => c,
        Err(e) => {
            return run.warn(
                name,
                format!("{addr}: {e}"),
                started,
                &format!(
                    "{host} also resolves to {}, but FTP does not work there: clients that try that address first wait or fail",
                    addr.ip()
                ),
                &format!(
                    "make the server listen on {name} too ({}), or remove the {record} record of {host}",
                    software.listen_setting(addr.is_ipv6())
                ),
            );
        }
    };
    let probe = client.probe_listing(DataMethod::Epsv).await;
    if client.in_step() {
        client.quit().await;
    }
    match probe.result {
        Ok(bytes) => run.step(
            name,
            Verdict::Ok,
            format!("{addr}: connected, logged in, listing over EPSV received ({bytes} bytes)"),
            started,
        ),
        Err(e) => run.warn(
            name,
            format!("{addr}: connected and logged in; EPSV listing: {e}"),
            started,
            &format!(
                "over {name} the control connection works but the passive data connection does not: the firewall opens the passive ports for one family only"
            ),
            &format!(
                "open the passive ports for {name} too (nftables `inet` rules, or ip6tables beside iptables), {}",
                software.passive_range_setting()
            ),
        ),
    }
}

/// The start of this check's test file names, unlikely to meet a user's.
fn test_prefix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("wharf-check-{secs}-{}", std::process::id())
}

/// Who the check logs in as: to open a fresh session when one is out of step.
struct Account<'a> {
    options: &'a Options,
    user: &'a str,
    password: &'a str,
}

impl Account<'_> {
    /// Makes `client` usable: a session left out of step (a timeout, a broken transfer, a
    /// reply still on its way) is closed and a new one opened to the same address, so that no
    /// late reply is read as the answer to the next command.
    async fn ready(&self, client: &mut Client) -> Result<(), Error> {
        if client.in_step() {
            return Ok(());
        }
        let peer = client.peer_addr();
        client.close().await;
        *client = reopen(peer, self.options, self.user, self.password).await?;
        Ok(())
    }

    /// Deletes a test file after a failed step: what is left, said for the evidence.
    async fn remove(&self, client: &mut Client, name: &str) -> String {
        if let Err(e) = self.ready(client).await {
            return format!("; {name} may be left on the server (no session to delete it: {e})");
        }
        match client.delete(name.as_bytes()).await {
            Ok(()) => format!("; the partial {name} was deleted"),
            Err(e) if e.reply_code().is_some_and(|c| c.0 == 550) => "; nothing was left".into(),
            Err(e) => format!("; {name} may be left on the server: delete it by hand ({e})"),
        }
    }
}

/// UTF-8 names: whether the server announces UTF8 and accepts `OPTS UTF8 ON`, and whether the
/// names it lists are UTF-8. Without `UTF8` clients guess the encoding; a listed name that is
/// not UTF-8 shows garbled in every modern client.
async fn names(
    run: &mut Run,
    client: &mut Client,
    entries: &[crate::Entry],
    software: Software,
    wait: Duration,
) {
    run.start(
        "utf8",
        &format!(
            "OPTS UTF8 ON and the listed names, up to {} s",
            wait.as_secs()
        ),
    );
    let started = Instant::now();
    let announced = client.features().utf8;
    let opts = match client.command("OPTS", Some(b"UTF8 ON")).await {
        Ok(r) => format!("{} {}", r.code, r.text()),
        Err(e) => e.to_string(),
    };
    let not_utf8: Vec<&crate::Entry> = entries
        .iter()
        .filter(|e| std::str::from_utf8(&e.name).is_err())
        .collect();
    let non_ascii = entries
        .iter()
        .filter(|e| !e.name.is_ascii() && std::str::from_utf8(&e.name).is_ok())
        .count();
    let evidence = format!(
        "FEAT {} UTF8; OPTS UTF8 ON: {opts}; listed names: {} non-ASCII UTF-8, {} not UTF-8",
        if announced {
            "announces"
        } else {
            "does not announce"
        },
        non_ascii,
        not_utf8.len()
    );
    if let Some(first) = not_utf8.first() {
        run.warn(
            "utf8",
            format!("{evidence} (first: \"{}\")", shown(&first.name)),
            started,
            "names on the server are not UTF-8 (a legacy encoding such as Latin-1): clients show them garbled and may fail to open them",
            "rename the files to UTF-8 on the server (convmv -f latin1 -t utf8)",
        );
    } else if !announced && non_ascii > 0 {
        run.warn(
            "utf8",
            evidence,
            started,
            "the server lists non-ASCII names but does not announce UTF8: some clients decode them in a local code page and show them garbled",
            &format!("announce UTF-8 names: {}", software.utf8_setting()),
        );
    } else {
        run.step("utf8", Verdict::Ok, evidence, started);
    }
}

/// `--write`: an upload (SIZE of what arrived compared with what was sent), a rename and a
/// delete of a test file, and the same for a name with non-ASCII characters, listed back byte
/// for byte. Nothing is left behind when the server allows deleting; what is, is named.
async fn write_round_trip(
    run: &mut Run,
    client: &mut Client,
    account: &Account<'_>,
    software: Software,
) {
    let secs = account.options.timeout.as_secs();
    let prefix = test_prefix();
    // Every byte value, so that a server altering line ends or high bytes changes the size.
    let body: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = body.len() as u64;
    let name = format!("{prefix}.txt");
    run.start(
        "upload",
        &format!("STOR {name} ({sent} bytes) and SIZE, up to {secs} s each"),
    );
    let started = Instant::now();
    if let Err(e) = account.ready(client).await {
        return run.step(
            "upload",
            Verdict::Skipped,
            format!("no session: {e}"),
            started,
        );
    }
    let mut input = &body[..];
    let stored = client
        .store(
            name.as_bytes(),
            crate::client::Store::Replace,
            &mut input,
            &crate::client::NoProgress,
        )
        .await;
    if let Err(e) = stored {
        let (cause, advice) = match e.reply_code().map(|c| c.0) {
            Some(452 | 552) => (
                "the server has no room for the upload (disk full or the user's quota)".to_string(),
                "free space on the server, or raise the user's quota".to_string(),
            ),
            Some(550 | 553 | 532 | 450) => (
                "the server refuses uploads for this user in its login directory".to_string(),
                format!("allow uploads: {}", software.write_setting()),
            ),
            _ => (
                "the upload failed".to_string(),
                "check the server's log".to_string(),
            ),
        };
        let left = account.remove(client, &name).await;
        run.fail("upload", format!("{e}{left}"), started, &cause, &advice);
        return;
    }
    match client.size(name.as_bytes()).await {
        Ok(Some(n)) if n == sent => run.step(
            "upload",
            Verdict::Ok,
            format!("STOR {name}: {sent} bytes sent; SIZE says {n}"),
            started,
        ),
        Ok(Some(n)) => run.fail(
            "upload",
            format!("STOR {name}: {sent} bytes sent; SIZE says {n}"),
            started,
            "the file arrived altered or cut: the server converted it (ASCII mode) or the upload broke",
            "check the server's log and its ASCII/binary settings",
        ),
        Ok(None) | Err(_) => run.step(
            "upload",
            Verdict::Ok,
            format!("STOR {name}: {sent} bytes sent; SIZE not answered, size not compared"),
            started,
        ),
    }
    let renamed = format!("{prefix}-renamed.txt");
    run.start("rename", &format!("RNFR/RNTO to {renamed}, up to {secs} s"));
    let started = Instant::now();
    let renaming = match account.ready(client).await {
        Ok(()) => client.rename(name.as_bytes(), renamed.as_bytes()).await,
        Err(e) => Err(e),
    };
    let left = match renaming {
        Ok(()) => {
            run.step(
                "rename",
                Verdict::Ok,
                format!("{name} → {renamed}"),
                started,
            );
            renamed
        }
        Err(e) => {
            run.warn(
                "rename",
                e.to_string(),
                started,
                "the user may upload but not rename: clients that upload to a temporary name and rename it when complete fail",
                &format!("allow renaming: {}", software.write_setting()),
            );
            name
        }
    };
    run.start("delete", &format!("DELE {left}, up to {secs} s"));
    let started = Instant::now();
    let deleting = match account.ready(client).await {
        Ok(()) => client.delete(left.as_bytes()).await,
        Err(e) => Err(e),
    };
    match deleting {
        Ok(()) => run.step("delete", Verdict::Ok, format!("{left} deleted"), started),
        Err(e) => run.warn(
            "delete",
            format!("{e}; the test file {left} is left on the server"),
            started,
            "the user may upload but not delete",
            &format!(
                "delete {left} by hand; allow deleting: {}",
                software.write_setting()
            ),
        ),
    }
    // A non-ASCII name, sent as UTF-8 bytes, must come back in the listing as the same bytes.
    let name = format!("{prefix}-ünïcødé-名前.txt");
    run.start(
        "names",
        &format!("STOR {name}, the listing, DELE, up to {secs} s each"),
    );
    let started = Instant::now();
    if let Err(e) = account.ready(client).await {
        return run.step(
            "names",
            Verdict::Skipped,
            format!("no session: {e}"),
            started,
        );
    }
    let mut input = &b"UTF-8\n"[..];
    if let Err(e) = client
        .store(
            name.as_bytes(),
            crate::client::Store::Replace,
            &mut input,
            &crate::client::NoProgress,
        )
        .await
    {
        let left = account.remove(client, &name).await;
        return run.warn(
            "names",
            format!("{e}{left}"),
            started,
            "a file with a non-ASCII name cannot be uploaded, while an ASCII one can: the server or its file system refuses UTF-8 names",
            &format!("store names as UTF-8: {}", software.utf8_setting()),
        );
    }
    let listed = match account.ready(client).await {
        Ok(()) => client.list(b"").await,
        Err(e) => Err(e),
    };
    // This run's files, under whatever names the server gave them.
    let ours: Vec<Vec<u8>> = match &listed {
        Ok(entries) => entries
            .iter()
            .filter(|e| {
                e.name.starts_with(prefix.as_bytes())
                    && e.name != format!("{prefix}.txt").as_bytes()
                    && e.name != format!("{prefix}-renamed.txt").as_bytes()
            })
            .map(|e| e.name.clone())
            .collect(),
        Err(_) => vec![name.clone().into_bytes()],
    };
    let mut left = Vec::new();
    for file in &ours {
        let gone = match account.ready(client).await {
            Ok(()) => client.delete(file).await.is_ok(),
            Err(_) => false,
        };
        if !gone {
            left.push(format!("\"{}\"", shown(file)));
        }
    }
    let left = if left.is_empty() {
        String::new()
    } else {
        format!("; left on the server (delete by hand): {}", left.join(", "))
    };
    match listed {
        Ok(_) if ours.iter().any(|n| *n == name.as_bytes()) => {
            let verdict = if left.is_empty() {
                Verdict::Ok
            } else {
                Verdict::Warn
            };
            run.step(
                "names",
                verdict,
                format!("{name} uploaded, listed back byte for byte, deleted{left}"),
                started,
            );
        }
        Ok(_) => {
            let seen: Vec<String> = ours.iter().map(|n| format!("\"{}\"", shown(n))).collect();
            run.warn(
                "names",
                format!(
                    "{name} uploaded, but listed as {}{left}",
                    if seen.is_empty() {
                        "nothing like it".to_string()
                    } else {
                        seen.join(", ")
                    }
                ),
                started,
                "the server changes non-ASCII names (recodes them to another charset): files uploaded with such names are shown and found under other names",
                &format!("store names as UTF-8: {}", software.utf8_setting()),
            );
        }
        Err(e) => run.step("names", Verdict::Warn, format!("{e}{left}"), started),
    }
}

/// SITE DIAG: what the server saw of this client — its address after any NAT, and the data
/// connections that failed at its end during this check — told beside what this side saw.
async fn server_side(run: &mut Run, client: &mut Client, wait: Duration, begun: Instant) {
    use wharf_proto::diag::{DataFailure, Diagnosis};
    run.start(
        "server",
        &format!("SITE DIAG: what the server saw, up to {} s", wait.as_secs()),
    );
    let started = Instant::now();
    let reply = match client.command("SITE", Some(b"DIAG")).await {
        Ok(r) if r.code.0 == 200 => r,
        Ok(r) => {
            let evidence = format!("{} {}", r.code, r.text());
            return run.step("server", Verdict::Skipped, evidence, started);
        }
        Err(e) => return run.step("server", Verdict::Skipped, e.to_string(), started),
    };
    let text: Vec<String> = reply
        .lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let diag = Diagnosis::parse(text.iter().map(String::as_str));
    let local = client.local_addr().ip().to_canonical();
    let range = diag.passive_ports.map(|(a, b)| format!("{a}-{b}"));
    let (closed, open_it) = match &range {
        Some(r) => (
            format!("the range {r} is not open between you"),
            format!(
                "open TCP ports {r} in the firewall in front of the server (and in any firewall between), or use active mode"
            ),
        ),
        None => (
            "its passive ports are not open between you".to_string(),
            "give the server a passive port range (Wharf: `--passive-ports A-B`) and open it in the firewall in front of the server, or use active mode".to_string(),
        ),
    };
    let mut seen = Vec::new();
    if let Some(ip) = diag.client_address {
        seen.push(format!("it sees this client as {ip}"));
    }
    if let Some((ip, configured)) = diag.passive_address {
        seen.push(format!(
            "announces {ip} for PASV ({})",
            if configured {
                "configured"
            } else {
                "its own address"
            }
        ));
    }
    seen.push(match &range {
        Some(r) => format!("passive ports {r}"),
        None => "no passive port range (any port)".to_string(),
    });
    if let Some(tls) = &diag.tls {
        seen.push(format!("TLS {tls}"));
    }
    // What this check caused: records no older than the check.
    let window = begun.elapsed().as_secs() + 1;
    let ours: Vec<_> = diag
        .data
        .iter()
        .filter(|r| match r.failure {
            // A wait in progress is "now": it is ours if it began during the check.
            DataFailure::PassiveWaiting { secs, .. } => secs <= window,
            _ => r.ago <= window,
        })
        .collect();
    let mut findings: Vec<(String, String)> = Vec::new();
    let nat = diag
        .client_address
        .filter(|seen| seen.to_canonical() != local);
    if let Some(outside) = nat {
        let active_failed = run
            .steps
            .iter()
            .any(|s| matches!(s.name.as_str(), "EPRT" | "PORT") && s.verdict == Verdict::Fail);
        let finding = format!(
            "the server saw you as {outside} while your side says {local}: you are behind NAT"
        );
        let passive_works = run.steps.iter().any(|s| {
            matches!(s.name.as_str(), "EPSV" | "PASV")
                && matches!(s.verdict, Verdict::Ok | Verdict::Warn)
        });
        if active_failed {
            findings.push((
                format!(
                    "{finding}, so active mode (the server connecting back to you) does not reach you"
                ),
                if passive_works {
                    "use passive mode; active mode needs a NAT with an FTP helper and a forwarded port range".into()
                } else {
                    "make passive mode work (see below): active mode through this NAT needs an FTP helper and a forwarded port range".into()
                },
            ));
        } else {
            seen.push(finding);
        }
    }
    for r in &ours {
        let finding = match r.failure {
            DataFailure::PassiveTimeout { port, secs }
            | DataFailure::PassiveUnused { port, secs }
            | DataFailure::PassiveWaiting { port, secs } => (
                format!(
                    "the server {} {secs} s on port {port} ({}) and no connection came: {closed}",
                    if matches!(r.failure, DataFailure::PassiveWaiting { .. }) {
                        "has been waiting"
                    } else {
                        "waited"
                    },
                    r.verb
                ),
                open_it.clone(),
            ),
            DataFailure::PassiveForeign { port, from, .. } => (
                format!(
                    "a data connection to port {port} came from {from}, not from the address of the control connection ({}): refused, against connection theft",
                    diag.client_address.map_or_else(|| "?".into(), |ip| ip.to_string())
                ),
                "make data and control connections leave from one address (a NAT with paired address pooling, no proxy for data only)".into(),
            ),
            DataFailure::ActiveRefused { addr } => (
                format!("the server's connection to {addr} was refused: this side refuses incoming connections"),
                "use passive mode, or open that port in this machine's firewall".into(),
            ),
            DataFailure::ActiveTimeout { addr, secs } => (
                format!("the server's connection to {addr} got no answer in {secs} s: a firewall or NAT on this side drops it"),
                "use passive mode".into(),
            ),
            // Told already, as NAT.
            DataFailure::ActiveForeign { addr, .. }
                if nat.is_some() && addr.ip().to_canonical() == local =>
            {
                continue;
            }
            DataFailure::ActiveForeign { addr, seen } => (
                format!(
                    "the server refused active mode to {addr}: it sees you as {seen}, so a NAT rewrites your address"
                ),
                "use passive mode".into(),
            ),
        };
        if !findings.iter().any(|(c, _)| *c == finding.0) {
            findings.push(finding);
        }
    }
    let evidence = seen.join("; ");
    if findings.is_empty() {
        return run.step("server", Verdict::Ok, evidence, started);
    }
    let (causes, advice): (Vec<String>, Vec<String>) = findings.into_iter().unzip();
    let mut advice_once: Vec<String> = Vec::new();
    for a in advice {
        if !advice_once.iter().any(|told| told.contains(&a)) {
            advice_once.push(a);
        }
    }
    run.warn(
        "server",
        evidence,
        started,
        &causes.join("; "),
        &advice_once.join("; "),
    );
}

/// A warning step when any step that worked took longer than [`SLOW`].
fn slow_steps(run: &mut Run) {
    let slow: Vec<String> = run
        .steps
        .iter()
        .filter(|s| {
            // Replies on the control connection only: a data step's time is spent waiting for
            // a data connection (a passive port that times out is not a slow server), and a
            // step that failed or warned has its own cause.
            s.verdict == Verdict::Ok
                && s.elapsed > SLOW
                && !matches!(
                    s.name.as_str(),
                    "resolve"
                        | "connect"
                        | "EPSV"
                        | "PASV"
                        | "EPRT"
                        | "PORT"
                        | "IPv4"
                        | "IPv6"
                        | "list"
                        | "resume"
                        | "upload"
                        | "delete"
                        | "rename"
                )
        })
        .map(|s| format!("{} {:.1} s", s.name, s.elapsed.as_secs_f64()))
        .collect();
    if slow.is_empty() {
        return;
    }
    run.steps.push(Step {
        name: "speed".into(),
        verdict: Verdict::Warn,
        evidence: format!("slow: {}", slow.join(", ")),
        elapsed: Duration::ZERO,
        cause: Some(format!(
            "the server took over {} s to answer: reverse DNS lookups of clients, a slow disk or user database, or an overloaded server; clients with short timeouts give up",
            SLOW.as_secs()
        )),
        advice: Some("turn off reverse DNS lookups of clients (vsftpd reverse_lookup_enable=NO, ProFTPD UseReverseDNS off), and check the server's load and log".into()),
    });
}

/// Days left under which a certificate gets a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// The TLS step: version, cipher suite, certificate subject and expiry, name match, trust.
fn judge_tls(
    client: &Client,
    settings: &TlsSettings,
    insecure: bool,
    started: Instant,
    software: Software,
) -> Step {
    let mut step = Step {
        name: "tls".into(),
        verdict: Verdict::Ok,
        evidence: String::new(),
        elapsed: started.elapsed(),
        cause: None,
        advice: None,
    };
    let (version, suite) = client
        .tls_info()
        .cloned()
        .unwrap_or_else(|| ("?".into(), "?".into()));
    let name = settings.server_name();
    let Some(seen) = settings.last_certificate() else {
        step.evidence = format!("{version}, {suite}; no certificate seen");
        return step;
    };
    let summary = seen
        .chain
        .first()
        .and_then(|c| crate::x509::summarize(c.as_ref()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let cert_text = match &summary {
        Some(c) => {
            let days = (c.not_after - now).div_euclid(86_400);
            format!(
                "certificate {} (issuer {}), expires {} ({})",
                c.subject,
                c.issuer,
                crate::x509::date(c.not_after),
                if days >= 0 {
                    format!("{days} days left")
                } else {
                    format!("expired {} days ago", -days)
                }
            )
        }
        None => "certificate not readable".into(),
    };
    let trust = match &seen.verdict {
        Ok(()) => "trusted".to_string(),
        Err(why) => why.clone(),
    };
    step.evidence = format!(
        "{version}, {suite}; {cert_text}; name {name} {}; {trust}",
        if seen.name_matches {
            "matches"
        } else {
            "does not match"
        }
    );
    // Every problem of the certificate gets its own cause (a name mismatch does not hide an
    // expiry).
    let mut problems: Vec<(String, String)> = Vec::new();
    if !seen.name_matches {
        problems.push((
            format!("the certificate is not issued for {name}: clients that check names refuse it"),
            format!(
                "connect with a name the certificate carries ({}), or issue one that includes {name}",
                summary
                    .as_ref()
                    .map_or("see its subject", |c| c.subject.as_str())
            ),
        ));
    }
    // The verifier's own word, unless it is the name again (or the expiry, said below).
    if let Err(why) = &seen.verdict
        && !matches!(why.as_str(), "issued for another name" | "expired")
    {
        problems.push((
            format!("the certificate is {why}: clients that verify certificates refuse it"),
            "use a certificate from a CA clients trust (such as Let's Encrypt), or give clients this CA (wharf: --ca-file)".to_string(),
        ));
    }
    if let Some(c) = summary
        .as_ref()
        .filter(|c| c.not_after - now < EXPIRY_WARNING_DAYS * 86_400)
    {
        let when = crate::x509::date(c.not_after);
        problems.push((
            if c.not_after < now {
                format!("the certificate expired on {when}: clients refuse it")
            } else {
                format!("the certificate expires on {when}")
            },
            if software == Software::Wharf {
                "renew the certificate (Wharf reloads it on SIGHUP)".to_string()
            } else {
                "renew the certificate, and reload the server".to_string()
            },
        ));
    }
    if !problems.is_empty() {
        let expiring_only = seen.verdict.is_ok() && seen.name_matches;
        step.verdict = if expiring_only || insecure {
            Verdict::Warn
        } else {
            Verdict::Fail
        };
        let (causes, advice): (Vec<String>, Vec<String>) = problems.into_iter().unzip();
        step.cause = Some(causes.join("; "));
        step.advice = Some(advice.join("; "));
    }
    step
}

async fn reopen(
    peer: SocketAddr,
    options: &Options,
    user: &str,
    password: &str,
) -> Result<Client, Error> {
    let stream = match timeout(options.timeout, TcpStream::connect(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(Error::Connect { addr: peer, source }),
        Err(_) => return Err(Error::Timeout(format!("connecting to {peer}"))),
    };
    let mut c = Client::from_stream(stream, options.clone()).await?;
    c.login(user, password).await?;
    Ok(c)
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

/// The first bytes a service sent, printable and cut, for the evidence.
fn shown(bytes: &[u8]) -> String {
    let mut out: String = bytes
        .iter()
        .take(80)
        .map(|&b| match b {
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    if bytes.len() > 80 {
        out.push('…');
    }
    out
}

/// What a non-FTP service is, from what it sent: (name, advice).
pub(crate) fn name_service(first: &[u8], host: &str, port: u16) -> Option<(&'static str, String)> {
    let text = String::from_utf8_lossy(first).to_ascii_uppercase();
    let ftp_like = first.len() >= 3 && first.iter().take(3).all(u8::is_ascii_digit);
    let wrong_port = format!(
        "point the check (and clients) at the FTP server's port, not {port}: find it in the server's configuration, or ask its administrator"
    );
    if first.starts_with(b"SSH-") {
        Some((
            "an SSH server (SFTP is file transfer over SSH, not FTP)",
            format!("use an SFTP client for this port, or {wrong_port}"),
        ))
    } else if first.starts_with(b"HTTP/") {
        Some(("a web server (HTTP)", wrong_port))
    } else if first.len() >= 2 && matches!(first[0], 0x15 | 0x16) && first[1] == 0x03 {
        Some((
            "a TLS server: an implicit FTPS port (the TLS handshake comes first)",
            format!("check it as implicit FTPS: `wharf check ftps://{host}:{port}`"),
        ))
    } else if first.starts_with(b"+OK") {
        Some(("a mail server (POP3)", wrong_port))
    } else if first.starts_with(b"* OK") {
        Some(("a mail server (IMAP)", wrong_port))
    } else if ftp_like && text.contains("SMTP") {
        Some(("a mail server (SMTP)", wrong_port))
    } else if ftp_like {
        None
    } else {
        Some(("a service that does not speak FTP", wrong_port))
    }
}

/// Looks at what the service on the control port says before it is asked anything (without
/// taking it from the stream). An FTP reply, or nothing to tell: `None`, the banner step goes
/// on as usual. Else (evidence, cause, advice): the first bytes shown and named — SSH, HTTP,
/// mail, TLS. A service that says nothing within the timeout is sent one line (`HELP`), as a
/// person at a telnet prompt would: a web server answers it with HTTP, a TLS server (an
/// implicit FTPS port) with an alert; silence even then means a proxy or filter holding the
/// connection.
async fn not_ftp(
    control: &TcpStream,
    wait: Duration,
    host: &str,
    port: u16,
) -> Option<(String, String, String)> {
    let mut buf = [0u8; 256];
    match timeout(wait, control.peek(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => None, // closed or reset: the banner step tells these apart
        Ok(Ok(n)) => {
            let first = buf.get(..n).unwrap_or_default();
            let (what, advice) = name_service(first, host, port)?;
            Some((
                format!("received instead of an FTP welcome: \"{}\"", shown(first)),
                format!("the port is answered by {what}, not by an FTP server"),
                advice,
            ))
        }
        Err(_) => {
            // Silence: ask, once.
            let _ = control.try_write(b"HELP\r\n");
            let answer = timeout(Duration::from_secs(3).min(wait), control.peek(&mut buf))
                .await
                .map(|r| Some(r.unwrap_or(0)));
            let secs = wait.as_secs();
            match answer {
                Ok(Some(n)) if n > 0 => {
                    let first = buf.get(..n).unwrap_or_default();
                    let (what, advice) = name_service(first, host, port).unwrap_or((
                        "a service that waits for its client to speak first",
                        format!("point the check at the FTP server's port, not {port}"),
                    ));
                    Some((
                        format!(
                            "no welcome message within {secs} s; after a HELP line it answered: \"{}\"",
                            shown(first)
                        ),
                        format!("the port is answered by {what}, not by an FTP server"),
                        advice,
                    ))
                }
                Ok(_) => Some((
                    format!("no welcome message within {secs} s; after a HELP line the connection was closed"),
                    "the service on this port waits for its client to speak first and closed on an FTP line: not an FTP server (an implicit FTPS port closes like this too)".to_string(),
                    format!("if it is implicit FTPS, check `wharf check ftps://{host}:{port}`; else point the check at the FTP server's port"),
                )),
                Err(_) => Some((
                    format!("no welcome message within {secs} s, and no answer to a HELP line either (silence)"),
                    "the port accepts connections but nothing speaks FTP on it: a proxy or filtering middlebox that holds connections, or a hung or overloaded server".to_string(),
                    "check that the FTP server runs and listens on this port (from the server itself: telnet localhost PORT), and any proxy or firewall between".to_string(),
                )),
            }
        }
    }
}

/// Why a login failed, and what to do: credentials, limits, TLS, server errors, timeouts.
fn login_failure(e: &Error, anonymous: bool) -> (String, String) {
    let text = match e {
        Error::Refused { reply, .. } => reply.text().to_ascii_lowercase(),
        _ => String::new(),
    };
    let code = e.reply_code().map(|c| c.0);
    if e.is_connection_limit() {
        (
            "the server turns this session away: too many connections (in all or from this address)".into(),
            "close other sessions, or raise the server's connection limits".into(),
        )
    } else if text.contains("tls")
        || text.contains("ssl")
        || text.contains("encrypt")
        || code == Some(534)
    {
        (
            "the server requires TLS (FTPS) before login".into(),
            "use an FTPS client (explicit TLS, AUTH TLS)".into(),
        )
    } else if text.contains("oops") {
        (
            "the server failed at login: a configuration error on the server (its message above)"
                .into(),
            "fix the server's configuration as its message says".into(),
        )
    } else if matches!(e, Error::Timeout(_) | Error::Closed | Error::Network(_)) {
        (
            "the server stopped answering during login (slow name lookups or authentication on the server, or a ban after failures)".into(),
            "check the server's log; turn off reverse DNS lookups of clients if it does them".into(),
        )
    } else if anonymous {
        (
            "the server refused the anonymous login".into(),
            "this server does not allow anonymous logins: give a user with --user (the password in WHARF_PASSWORD or --password-stdin)".into(),
        )
    } else {
        (
            "the server refused the user name or password".into(),
            "check the user name and password; the server's log says which was wrong".into(),
        )
    }
}

/// The verdict, cause and advice for one data method.
fn judge(probe: &Probe, software: Software, server: SocketAddr) -> Step {
    let name = probe.method.name().to_string();
    let passive = probe.method.is_passive();
    let setup = probe
        .setup_reply
        .as_ref()
        .map(|r| format!("{} {}", r.code, r.text()))
        .unwrap_or_default();
    let mut step = Step {
        name,
        verdict: Verdict::Ok,
        evidence: String::new(),
        elapsed: probe.elapsed,
        cause: None,
        advice: None,
    };
    // A PASV reply announcing another address than the one we connected to.
    let mismatch = probe
        .announced
        .filter(|a| a.ip() != server.ip())
        .map(|a| a.ip());
    let masquerade = || {
        format!(
            "set the server's public address with {}",
            software.masquerade_setting()
        )
    };
    match &probe.result {
        Ok(bytes) => {
            let over = match probe.data_tls_resumed {
                Some(true) => " over TLS (session resumed)",
                Some(false) => " over TLS (new session)",
                None => "",
            };
            step.evidence = format!("{setup}; listing received ({bytes} bytes){over}");
            let Some(ip) = mismatch else {
                return step;
            };
            if !probe.used_control_address {
                // Another address of the server (multi-homed, load-balanced) that works.
                step.evidence = format!(
                    "{setup}; announced {ip}, not {}, and it was reachable",
                    server.ip()
                );
                return step;
            }
            step.verdict = Verdict::Warn;
            step.evidence = format!(
                "{setup}; announced {ip}, not {} ({}): not connected to, as a check connects only to the address you named; the server's own address {} worked",
                server.ip(),
                crate::client::address_class(ip, server.ip()),
                server.ip()
            );
            if is_local_address(server.ip()) && !is_local_address(ip) {
                step.cause = Some(format!(
                    "checked from inside the server's network: the server announces its public address {ip}, right for clients outside, not reachable from here (no hairpin NAT)"
                ));
                step.advice = Some(
                    "nothing to change for clients outside; inside, use EPSV or a client that falls back to the server's address".into(),
                );
            } else {
                step.cause = Some(format!(
                    "the server announces {ip} ({}) in PASV replies instead of the address clients reach it at: a NAT/masquerade misconfiguration. Clients that trust the PASV address fail",
                    crate::client::address_class(ip, server.ip())
                ));
                step.advice = Some(masquerade());
            }
        }
        Err(e) => {
            step.verdict = Verdict::Fail;
            // A refused setup command is in the error already.
            step.evidence = if setup.is_empty() || e.to_string().contains(&setup) {
                e.to_string()
            } else {
                format!("{setup}; {e}")
            };
            let setup_reply = probe.setup_reply.as_ref().filter(|r| r.code.is_negative());
            let listing_refused = matches!(e, Error::Refused { .. })
                && !e.is_data_connection_failure()
                && setup_reply.is_none();
            let tls_refused = e
                .reply_code()
                .is_some_and(wharf_proto::ReplyCode::may_be_data_tls)
                && {
                    let t = e.to_string().to_ascii_lowercase();
                    t.contains("tls") || t.contains("ssl") || t.contains("reuse")
                };
            let (cause, advice) = match setup_reply {
                _ if matches!(e, Error::Tls(_)) => (
                    "the data connection was made, but its TLS handshake failed".to_string(),
                    "check the server's TLS settings and log for data connections".to_string(),
                ),
                None if tls_refused => (
                    "the data connection was made, but the server refused its TLS (a server that requires TLS session reuse refuses a data connection that does not resume the control connection's session)".to_string(),
                    "check the server's log; this client resumes sessions, so a refusal points at the server's session cache or ticket settings".to_string(),
                ),
                Some(reply) if !passive && active_address_refused(reply, probe, server) => (
                    format!(
                        "the server refuses the data address this client sent ({}): this client is behind NAT, so the address it knows is not the one the server sees (bounce protection)",
                        probe.data_addr.map_or_else(String::new, |a| a.ip().to_string())
                    ),
                    "use passive mode (clients do by default)".to_string(),
                ),
                Some(_) => (
                    format!("the server does not offer {}", probe.method.name()),
                    if passive {
                        "use another passive command (clients fall back by themselves)".to_string()
                    } else {
                        "use another data mode".to_string()
                    },
                ),
                None if listing_refused => (
                    "the data connection worked, but the server refused the listing".to_string(),
                    "check the user's permissions on its login directory".to_string(),
                ),
                None if passive => {
                    let addr = probe
                        .data_addr
                        .map_or_else(|| "the data port".to_string(), |a| a.to_string());
                    let both_failed = probe.used_control_address
                        && matches!(e, Error::DataConnect { .. });
                    match mismatch {
                        Some(ip) if both_failed => (
                            format!(
                                "the server announces {ip} in PASV replies, which this client cannot reach, and its own address did not answer on that port either"
                            ),
                            format!(
                                "{}, and open its passive ports ({}) in its firewall",
                                masquerade(),
                                software.passive_range_setting()
                            ),
                        ),
                        _ => (
                            format!(
                                "the passive data connection to {addr} {}: a firewall in front of the server lets the control port through but not the passive ports",
                                if is_timeout(e) { "timed out" } else { "failed" }
                            ),
                            format!(
                                "open the server's passive port range in its firewall{}, and set the range with {} so that it matches",
                                probe
                                    .data_addr
                                    .map(|a| format!(" (this time it offered port {})", a.port()))
                                    .unwrap_or_default(),
                                software.passive_range_setting()
                            ),
                        ),
                    }
                }
                None => (
                    "the server could not connect back to this client: this client's firewall or NAT blocks incoming connections (or the server's outgoing ones)".to_string(),
                    "use passive mode (clients do by default); active mode needs this client reachable from the server".to_string(),
                ),
            };
            step.cause = Some(cause);
            step.advice = Some(advice);
        }
    }
    step
}

/// An EPRT/PORT refusal that means "not your address": a client behind NAT sends its inside
/// address, which bounce protection refuses (vsftpd/ProFTPD 500 "Illegal PORT command",
/// pyftpdlib 501 "foreign address").
fn active_address_refused(reply: &wharf_proto::Reply, probe: &Probe, server: SocketAddr) -> bool {
    let text = reply.text().to_ascii_lowercase();
    let nat = probe
        .data_addr
        .is_some_and(|a| is_local_address(a.ip()) && !is_local_address(server.ip()));
    reply.code.is_not_accepted() && (nat || text.contains("illegal") || text.contains("foreign"))
}

fn is_timeout(e: &Error) -> bool {
    match e {
        Error::Timeout(_) => true,
        Error::DataConnect { source, .. } => source.kind() == io::ErrorKind::TimedOut,
        _ => false,
    }
}

fn connect_failure(e: &io::Error, addr: SocketAddr) -> (String, String) {
    let port = addr.port();
    match e.kind() {
        io::ErrorKind::ConnectionRefused => (
            format!(
                "refused: nothing listens on port {port} at {}, or a firewall rejects the connection",
                addr.ip()
            ),
            format!(
                "start the FTP server or make it listen on {addr} (`ss -ltn` on the server shows what listens); if it does, allow TCP port {port} in the firewall"
            ),
        ),
        io::ErrorKind::ConnectionReset => (
            "reset: a middlebox or the server cut the connection at once".into(),
            "check firewalls or intrusion prevention between, and the server's access rules (tcp_wrappers, allow lists)".into(),
        ),
        io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::PermissionDenied => (
            format!(
                "no route to {}: the network is down or has no route there, or a firewall rejects port {port} (firewalld and iptables' default reject answer \"host unreachable\" or \"prohibited\")",
                addr.ip()
            ),
            format!(
                "check the address and this machine's network; if the server is up, allow TCP port {port} in its firewall"
            ),
        ),
        _ => (
            format!("the connection failed: {e}"),
            "check the address, the port and the network".into(),
        ),
    }
}

/// Collects steps.
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

    fn step(&mut self, name: &str, verdict: Verdict, evidence: String, started: Instant) {
        self.steps.push(Step {
            name: name.into(),
            verdict,
            evidence,
            elapsed: started.elapsed(),
            cause: None,
            advice: None,
        });
    }

    fn fail(&mut self, name: &str, evidence: String, started: Instant, cause: &str, advice: &str) {
        self.judged(name, Verdict::Fail, evidence, started, cause, advice);
    }

    fn warn(&mut self, name: &str, evidence: String, started: Instant, cause: &str, advice: &str) {
        self.judged(name, Verdict::Warn, evidence, started, cause, advice);
    }

    /// A step with its cause and advice.
    fn judged(
        &mut self,
        name: &str,
        verdict: Verdict,
        evidence: String,
        started: Instant,
        cause: &str,
        advice: &str,
    ) {
        self.step(name, verdict, evidence, started);
        if let Some(step) = self.steps.last_mut() {
            step.cause = Some(cause.into());
            step.advice = Some(advice.into());
        }
    }

    fn finish(
        mut self,
        software: Option<Software>,
        working: Vec<DataMethod>,
        exit_code: u8,
    ) -> Report {
        slow_steps(&mut self);
        self.tell();
        let names: Vec<&str> = working.iter().map(|m| m.name()).collect();
        let passive = working.iter().any(|m| m.is_passive());
        let active = working.iter().any(|m| !m.is_passive());
        let tls_failed = self
            .steps
            .iter()
            .any(|s| s.name == "tls" && s.verdict == Verdict::Fail);
        let summary = match (passive, active) {
            _ if exit_code == 3 => format!("{} cannot be reached: no FTP possible", self.target),
            (false, false) if tls_failed => "TLS fails: no FTPS session possible".to_string(),
            _ if tls_failed => format!(
                "TLS certificate refused by verifying clients (see the tls step); past it, working: {}",
                names.join(", ")
            ),
            (false, false)
                if self
                    .steps
                    .iter()
                    .any(|s| s.name == "login" && s.verdict == Verdict::Fail) =>
            {
                "the server answers, but the login fails".to_string()
            }
            (false, false) if !self.steps.iter().any(|s| s.name == "login") => {
                "the server does not get as far as a login".to_string()
            }
            (false, false) => "no data mode works: listings and transfers fail".to_string(),
            (true, true) => format!(
                "working: {}; use passive mode (the default)",
                names.join(", ")
            ),
            (true, false) => format!("working: {}; use passive mode", names.join(", ")),
            (false, true) => format!(
                "working: {}; only active mode works: use active mode (`--active`)",
                names.join(", ")
            ),
        };
        // Warnings of the data modes (a PASV address that is not the server's) stay visible,
        // each cause once, with every step it came from.
        let mut summary = summary;
        let mut said: Vec<(String, Vec<&str>)> = Vec::new();
        for step in self.steps.iter().filter(|s| {
            (s.verdict == Verdict::Warn
                && matches!(
                    s.name.as_str(),
                    "EPSV" | "PASV" | "EPRT" | "PORT" | "server" | "IPv4" | "IPv6"
                ))
                || (s.verdict == Verdict::Fail && s.name == "upload")
        }) {
            if let Some(cause) = &step.cause {
                match said.iter_mut().find(|(c, _)| c == cause) {
                    Some((_, names)) => names.push(step.name.as_str()),
                    None => said.push((cause.clone(), vec![step.name.as_str()])),
                }
            }
        }
        for (cause, names) in said {
            match names.as_slice() {
                ["server"] => summary.push_str(&format!("; the server's end: {cause}")),
                ["upload"] => summary.push_str(&format!("; the upload fails: {cause}")),
                names => summary.push_str(&format!("; warning ({}): {cause}", names.join(", "))),
            }
        }
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

impl Report {
    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        out.push_str(&format!("\"target\":{},", json_str(&self.target)));
        out.push_str(&format!(
            "\"server\":{},",
            self.software
                .map_or_else(|| "null".to_string(), |s| json_str(s.name()))
        ));
        out.push_str("\"steps\":[");
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"name\":{},\"verdict\":{},\"evidence\":{},\"ms\":{},\"cause\":{},\"advice\":{}}}",
                json_str(&s.name),
                json_str(s.verdict.name()),
                json_str(&s.evidence),
                s.elapsed.as_millis(),
                s.cause.as_deref().map_or_else(|| "null".into(), json_str),
                s.advice.as_deref().map_or_else(|| "null".into(), json_str),
            ));
        }
        out.push_str("],\"working_modes\":[");
        let modes: Vec<String> = self.working.iter().map(|m| json_str(m.name())).collect();
        out.push_str(&modes.join(","));
        out.push_str("],\"advice\":[");
        let advice: Vec<String> = self
            .steps
            .iter()
            .filter_map(|s| s.advice.as_deref().map(json_str))
            .collect();
        out.push_str(&advice.join(","));
        out.push_str(&format!(
            "],\"summary\":{},\"exit_code\":{}}}",
            json_str(&self.summary),
            self.exit_code
        ));
        out
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_names() {
        assert_eq!(Software::identify("(vsFTPd 3.0.3)", ""), Software::Vsftpd);
        assert_eq!(
            Software::identify("ProFTPD Server (Debian) [::ffff:1.2.3.4]", ""),
            Software::Proftpd
        );
        assert_eq!(
            Software::identify("Microsoft FTP Service", "215 Windows_NT"),
            Software::Iis
        );
        assert_eq!(
            Software::identify("FileZilla Server 1.8.0", ""),
            Software::FileZilla
        );
        assert_eq!(
            Software::identify("---------- Welcome to Pure-FTPd [privsep] ----------", ""),
            Software::PureFtpd
        );
        assert_eq!(
            Software::identify("pyftpdlib 2.0.1 ready.", ""),
            Software::Pyftpdlib
        );
        assert_eq!(
            Software::identify("Wharf FTP server ready.", ""),
            Software::Wharf
        );
        assert_eq!(
            Software::identify("hello", "215 UNIX Type: L8"),
            Software::Unknown
        );
        for (banner, sw) in [
            ("Welcome to Rclone v1.75.2 FTP Server", Software::Rclone),
            ("SFTPGo 2.6.4 ready", Software::Sftpgo),
            ("Serv-U FTP Server v15.4 ready...", Software::ServU),
            ("Titan FTP Server 2019 Ready.", Software::Titan),
            ("CrushFTP Server Ready!", Software::CrushFtp),
            ("Cerberus FTP Server - Home Edition", Software::Cerberus),
            ("Wing FTP Server ready...", Software::WingFtp),
            ("Welcome to unFTP", Software::Unftp),
            ("ftp-srv ready", Software::FtpSrv),
        ] {
            assert_eq!(Software::identify(banner, ""), sw, "{banner}");
        }
        assert_eq!(
            Software::identify("ProFTPD Server (wharf) [127.0.0.1]", ""),
            Software::Proftpd
        );
    }

    #[test]
    fn json_escaping() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }
}
