//! Each stage of the check: told as it starts, its probe run, its facts judged, its steps kept.
//! A stage after which nothing more can be checked returns [`Stop`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::probe::{self, Account};
use super::report::Verdict;
use super::software::Software;
use super::{CheckOptions, Run, Stop, judge_banner, judge_connect, judge_data, judge_login};
use super::{judge_server, judge_session, judge_tls, judge_write, probe_session};
use crate::client::{Client, DataMethod, Options};
use crate::tls::TlsSettings;

/// The addresses of the name.
pub(super) async fn resolve(run: &mut Run, opts: &CheckOptions) -> Result<Vec<SocketAddr>, Stop> {
    let wait = opts.timeout;
    if opts.host.parse::<std::net::IpAddr>().is_err() {
        let waiting = format!("resolving {}, up to {} s", opts.host, wait.as_secs());
        run.start("resolve", &waiting);
    }
    let started = Instant::now();
    let (resolved, addrs) = probe::resolve(&opts.host, opts.port, wait).await;
    let step = judge_connect::resolve(&opts.host, &resolved, wait, started.elapsed());
    // Nothing to connect to: the control port cannot be reached.
    run.keep(step, Stop::at(None, 3))?;
    Ok(addrs)
}

/// A TCP connection to the control port, each address in turn until one answers: refused,
/// filtered and reset mean different things. Also the addresses tried.
pub(super) async fn connect(
    run: &mut Run,
    opts: &CheckOptions,
    addrs: &[SocketAddr],
) -> Result<(TcpStream, Vec<SocketAddr>), Stop> {
    let wait = opts.timeout;
    let mut tried = Vec::new();
    for &addr in addrs {
        tried.push(addr);
        run.start(
            "connect",
            &format!("connecting to {addr}, up to {} s", wait.as_secs()),
        );
        let started = Instant::now();
        let outcome = probe::connect(addr, wait).await;
        let seen = outcome.as_ref().map(|r| r.as_ref().map(|_| ()));
        let step = judge_connect::connect(addr, seen, wait, started.elapsed());
        if let Some(Ok(stream)) = outcome {
            judge_connect::answered_later(&mut run.steps, addr);
            run.steps.push(step);
            return Ok((stream, tried));
        }
        run.steps.push(step);
    }
    Err(Stop::at(None, 3))
}

/// The welcome message; on a plain port first what the service sends before anything is
/// asked: something other than an FTP reply is shown and named.
pub(super) async fn banner(
    run: &mut Run,
    opts: &CheckOptions,
    options: &Options,
    control: TcpStream,
) -> Result<(Client, Software), Stop> {
    let wait = opts.timeout;
    run.start(
        "banner",
        &format!(
            "waiting for the welcome message, up to {} s",
            wait.as_secs()
        ),
    );
    let started = Instant::now();
    let implicit = opts.tls.as_ref().is_some_and(|t| t.implicit);
    if !implicit {
        let first = probe::first_bytes(&control, wait).await;
        let host = super::target_host(&opts.host);
        if let Some(step) = judge_banner::not_ftp(&first, wait, &host, opts.port, started.elapsed())
        {
            run.steps.push(step);
            return Err(Stop::at(None, 1));
        }
    }
    match Client::from_stream(control, options.clone()).await {
        Ok(client) => {
            let (step, software) = judge_banner::banner(client.welcome(), started.elapsed());
            run.steps.push(step);
            Ok((client, software))
        }
        Err(e) => {
            run.steps
                .push(judge_banner::no_banner(&e, implicit, started.elapsed()));
            Err(Stop::at(None, 1))
        }
    }
}

/// The virtual host: HOST with the name given, where FEAT lists HOST (RFC 7151).
pub(super) async fn host(run: &mut Run, opts: &CheckOptions, client: &mut Client) {
    client.set_name(&opts.host);
    let started = Instant::now();
    let chosen = match client.choose_host().await {
        Ok(()) => Ok(client.host_reply().cloned()),
        Err(e) => Err(e),
    };
    if let Some(step) = judge_banner::host(&opts.host, &chosen, started.elapsed()) {
        run.steps.push(step);
    }
}

/// TLS: AUTH TLS (explicit) and what the handshake showed. Whether the certificate failed.
pub(super) async fn tls(
    run: &mut Run,
    opts: &CheckOptions,
    client: &mut Client,
    software: Software,
) -> Result<bool, Stop> {
    let Some(settings) = &opts.tls else {
        return Ok(false);
    };
    let waiting = format!(
        "AUTH TLS and the TLS handshake, up to {} s",
        opts.timeout.as_secs()
    );
    run.start("tls", &waiting);
    let started = Instant::now();
    if let Err(e) = client.secure().await {
        run.steps
            .push(judge_banner::no_tls(&e, software, started.elapsed()));
        return Err(Stop::at(Some(software), 1));
    }
    let seen = probe::handshake(client, settings, started);
    let step = judge_tls::handshake(&seen, opts.insecure, software);
    let failed = step.verdict == Verdict::Fail;
    run.steps.push(step);
    Ok(failed)
}

/// Login. A password is not sent to a server whose certificate did not verify: it may not
/// be the server meant (anonymous goes on, to check the rest).
pub(super) async fn login(
    run: &mut Run,
    opts: &CheckOptions,
    client: &mut Client,
    (user, password): (&str, &str),
    tls_failed: bool,
    software: Software,
) -> Result<(), Stop> {
    let waiting = format!(
        "logging in as {}, up to {} s",
        opts.user.as_deref().unwrap_or("anonymous"),
        opts.timeout.as_secs()
    );
    run.start("login", &waiting);
    let started = Instant::now();
    if tls_failed && !opts.insecure && opts.user.is_some() {
        run.steps
            .push(judge_login::login_withheld(started.elapsed()));
        return Err(Stop::at(Some(software), 1));
    }
    let result = client.login(user, password).await;
    let anonymous = opts.user.is_none();
    let step = judge_login::login(user, &result, anonymous, started.elapsed());
    run.keep(step, Stop::at(Some(software), 1))
}

/// SYST (the server named again if the banner did not tell) and FEAT as read at login.
pub(super) async fn syst_feat(run: &mut Run, client: &mut Client, software: Software) -> Software {
    let started = Instant::now();
    let reply = client.command("SYST", None).await;
    let mut software = software;
    if let (Ok(r), Software::Unknown) = (&reply, software) {
        let banner = client.welcome().text().replace('\n', " / ");
        software = Software::identify(&banner, &r.text());
    }
    run.steps.push(judge_login::syst(&reply, started.elapsed()));
    let started = Instant::now();
    run.steps
        .push(judge_login::feat(client.feat_reply(), started.elapsed()));
    software
}

/// A listing over each data method, each on a session in step: the methods that work.
pub(super) async fn data_methods(
    run: &mut Run,
    client: &mut Client,
    account: &Account<'_>,
    software: Software,
) -> Vec<DataMethod> {
    let mut working = Vec::new();
    let ipv6 = client.peer_addr().is_ipv6();
    for method in DataMethod::ALL {
        let waiting = format!(
            "a listing over {}: the data connection, up to {} s",
            method.name(),
            account.options.timeout.as_secs()
        );
        run.start(method.name(), &waiting);
        let started = Instant::now();
        if ipv6 && matches!(method, DataMethod::Pasv | DataMethod::Port) {
            run.steps
                .push(judge_data::ipv4_only(method, started.elapsed()));
            continue;
        }
        // The last probe may have left the session out of step: a fresh one for the next, to
        // the same address, after closing the old one (per-IP limits count it).
        if let Err(e) = account.ready(client).await {
            run.steps
                .push(judge_data::no_session(method, &e, started.elapsed()));
            continue;
        }
        let probe = client.probe_listing(method).await;
        let step = judge_data::listing(&probe, software, client.peer_addr());
        if step.works() {
            working.push(method);
        }
        run.steps.push(step);
    }
    working
}

/// What a client does right after login: PWD, TYPE I, the listing parsed and a download of
/// a listed file resumed (REST); the names; with `--write` an upload, rename and delete.
pub(super) async fn after_login(
    run: &mut Run,
    opts: &CheckOptions,
    client: &mut Client,
    account: &Account<'_>,
    software: Software,
) {
    let secs = opts.timeout.as_secs();
    run.start("pwd", &format!("PWD, up to {secs} s"));
    let started = Instant::now();
    let dir = client.pwd().await;
    run.steps.push(judge_session::pwd(&dir, started.elapsed()));
    run.start("type", &format!("TYPE I, up to {secs} s"));
    let started = Instant::now();
    let reply = client.command("TYPE", Some(b"I")).await;
    run.steps
        .push(judge_session::binary(&reply, started.elapsed()));
    run.start(
        "list",
        &format!("the listing of the login directory, parsed, up to {secs} s"),
    );
    let started = Instant::now();
    let listed = client.list(b"").await;
    run.steps
        .push(judge_session::list(&listed, started.elapsed()));
    let entries = listed.unwrap_or_default();
    resume(run, client, &entries, secs).await;
    if account.ready(client).await.is_ok() {
        names(run, client, &entries, software, secs).await;
    }
    if opts.write {
        write(run, client, account, software).await;
    } else {
        let evidence = "not tried: `--write` uploads, renames and deletes a test file";
        let step = super::Step::new("write", Verdict::Skipped, evidence, Duration::ZERO);
        run.steps.push(step);
    }
}

/// A download of a listed file resumed near its end.
async fn resume(run: &mut Run, client: &mut Client, entries: &[crate::Entry], secs: u64) {
    let started = Instant::now();
    let Some(plan) = judge_session::Resume::plan(entries) else {
        run.steps.push(judge_session::no_resume(started.elapsed()));
        return;
    };
    let waiting = format!(
        "REST {} and RETR {}, up to {secs} s",
        plan.offset,
        plan.shown_name()
    );
    run.start("resume", &waiting);
    let got = probe_session::resume(client, &plan).await;
    run.steps
        .push(judge_session::resume(&plan, &got, started.elapsed()));
}

/// UTF-8 names: FEAT's UTF8, `OPTS UTF8 ON`, and the names listed.
async fn names(
    run: &mut Run,
    client: &mut Client,
    entries: &[crate::Entry],
    software: Software,
    secs: u64,
) {
    let waiting = format!("OPTS UTF8 ON and the listed names, up to {secs} s");
    run.start("utf8", &waiting);
    let started = Instant::now();
    let announced = client.features().utf8;
    let utf8_on = client.command("OPTS", Some(b"UTF8 ON")).await;
    let facts = judge_session::Names {
        announced,
        utf8_on,
        entries,
        elapsed: started.elapsed(),
    };
    run.steps.push(judge_session::utf8(&facts, software));
}

/// `--write`: an upload (SIZE of what arrived compared with what was sent), a rename and a
/// delete of a test file, and the same for a name with non-ASCII characters. Nothing is left
/// behind when the server allows deleting; what is, is named.
async fn write(run: &mut Run, client: &mut Client, account: &Account<'_>, software: Software) {
    let secs = account.options.timeout.as_secs();
    let names = judge_write::TestNames {
        prefix: test_prefix(),
    };
    // Every byte value, so that a server altering line ends or high bytes changes the size.
    let body: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let sent = body.len() as u64;
    let name = names.plain();
    run.start(
        "upload",
        &format!("STOR {name} ({sent} bytes) and SIZE, up to {secs} s each"),
    );
    let started = Instant::now();
    let upload = probe_session::upload(account, client, &name, &body).await;
    let step = judge_write::upload(&name, sent, &upload, software, started.elapsed());
    run.steps.push(step);
    if !matches!(upload, judge_write::Upload::Stored { .. }) {
        return;
    }
    let renamed = names.renamed();
    run.start("rename", &format!("RNFR/RNTO to {renamed}, up to {secs} s"));
    let started = Instant::now();
    let result = probe_session::rename(account, client, &name, &renamed).await;
    let step = judge_write::rename(&name, &renamed, &result, software, started.elapsed());
    run.steps.push(step);
    let left = if result.is_ok() { renamed } else { name };
    run.start("delete", &format!("DELE {left}, up to {secs} s"));
    let started = Instant::now();
    let result = probe_session::delete(account, client, left.as_bytes()).await;
    let step = judge_write::delete(&left, &result, software, started.elapsed());
    run.steps.push(step);
    let name = names.non_ascii();
    run.start(
        "names",
        &format!("STOR {name}, the listing, DELE, up to {secs} s each"),
    );
    let started = Instant::now();
    let facts = probe_session::non_ascii(account, client, &names).await;
    let step = judge_write::non_ascii(&name, &facts, software, started.elapsed());
    run.steps.push(step);
}

/// The start of this check's test file names, unlikely to meet a user's.
fn test_prefix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("wharf-check-{secs}-{}", std::process::id())
}

/// TLS in depth: the protocol versions the server accepts, and its session reuse rule for
/// data connections (over a passive method that works, else any that does).
pub(super) async fn tls_depth(
    run: &mut Run,
    settings: &TlsSettings,
    peer: SocketAddr,
    account: &Account<'_>,
    working: &[DataMethod],
    software: Software,
) {
    let secs = account.options.timeout.as_secs();
    run.start(
        "versions",
        &format!("a TLS 1.3 and a TLS 1.2 handshake with {peer}, up to {secs} s each"),
    );
    let started = Instant::now();
    let tried = probe_session::versions(peer, settings, account.options).await;
    run.steps
        .push(judge_tls::versions(&tried, software, started.elapsed()));
    let Some(method) = working
        .iter()
        .copied()
        .find(|m| m.is_passive())
        .or(working.first().copied())
    else {
        return;
    };
    run.start(
        "reuse",
        &format!(
            "a listing over {} resuming the TLS session, then one with a new session, up to {secs} s each",
            method.name(),
        ),
    );
    let started = Instant::now();
    let facts = probe_session::reuse(peer, account, method).await;
    run.steps.push(judge_tls::reuse(&facts, started.elapsed()));
}

/// The server's end: Wharf says what it saw (SITE DIAG).
pub(super) async fn server_side(
    run: &mut Run,
    client: &mut Client,
    wait: Duration,
    begun: Instant,
) {
    run.start(
        "server",
        &format!("SITE DIAG: what the server saw, up to {} s", wait.as_secs()),
    );
    let started = Instant::now();
    let reply = client.command("SITE", Some(b"DIAG")).await;
    let view = judge_server::ServerView {
        reply,
        local: client.local_addr().ip(),
        window: begun.elapsed().as_secs() + 1,
        elapsed: started.elapsed(),
    };
    let step = judge_server::server_side(&view, &run.steps);
    run.steps.push(step);
}

/// The other address family of the name: connect, login and a listing over EPSV there.
pub(super) async fn other_family(
    run: &mut Run,
    addr: SocketAddr,
    host: &str,
    account: &Account<'_>,
    software: Software,
) {
    let (name, _) = judge_data::family(addr);
    run.start(
        name,
        &format!(
            "{host} also has {}: connect, login and a listing over EPSV there, up to {} s each",
            addr.ip(),
            account.options.timeout.as_secs()
        ),
    );
    let started = Instant::now();
    let facts = probe_session::other_family(addr, account).await;
    let step = judge_data::other_family(host, addr, &facts, software, started.elapsed());
    run.steps.push(step);
}
