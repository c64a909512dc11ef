//! The listener side: binding, the accept loop, session limits, and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use wharf_proto::server::{Policy, TlsPolicy};

use crate::config::Settings;
use crate::conn::ConnInfo;
use crate::driver::{self, Driver};
use crate::guard::Guard;
use crate::services::Services;

/// Listen backlog: bursts of connections queue instead of being dropped.
const BACKLOG: i32 = 1024;

/// Binds a control listener: SO_REUSEADDR (restarts while old connections linger), a large
/// backlog, and IPv6 sockets IPv6-only so that `[::]` and `0.0.0.0` can both be listed.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(bind_std(addr)?)
}

/// [`bind`], as a standard listener: made before the runtime starts (and before the process
/// gives up root), turned into a tokio one inside it.
pub fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// Counts sessions in all and per IP address. The maxima change on a reload.
#[derive(Debug)]
struct Limiter {
    max_total: AtomicUsize,
    max_per_ip: AtomicUsize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// A session's place in the limits; released on drop.
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Limiter {
    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, &'static str> {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        if *total >= self.max_total.load(Ordering::Relaxed) {
            return Err("Too many users, try again later.");
        }
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip.load(Ordering::Relaxed) {
            return Err("Too many connections from your address.");
        }
        *count += 1;
        *total += 1;
        Ok(Permit {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut guard = self.limiter.state.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(c) = per_ip.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// What every session of a server shares: the settings, the services, and the protocol policy
/// made from both.
pub(crate) struct Shared {
    pub settings: Settings,
    pub services: Services,
    pub policy: Arc<Policy>,
}

impl Shared {
    fn new(settings: Settings, services: Services) -> Shared {
        let tls = match &services.tls {
            Some(t) => TlsPolicy {
                mode: t.mode,
                require_reuse: t.require_reuse,
                require_close_notify: t.require_close_notify,
            },
            None => TlsPolicy::default(),
        };
        let limits = &settings.limits;
        let policy = Policy {
            banner: settings.banner.clone(),
            tls,
            allow_foreign_active: settings.active.allow_foreign_address,
            allow_low_active_ports: settings.active.allow_privileged_ports,
            capabilities: services.storage.capabilities(),
            max_login_failures: limits.max_login_failures,
            failed_login_delay: limits.failed_login_delay,
            idle_timeout: limits.idle_timeout,
            accept_timeout: limits.accept_timeout,
        };
        Shared {
            settings,
            services,
            policy: Arc::new(policy),
        }
    }
}

/// The configuration new connections and new logins get: swapped whole by a reload, while
/// running sessions keep the one they hold.
pub(crate) struct Live {
    current: RwLock<Arc<Shared>>,
    /// Bans and the fair queue of password checks: they outlive reloads.
    pub(crate) guard: Arc<Guard>,
    /// Each user's sessions and uploads in progress: they outlive reloads too.
    pub(crate) seats: Arc<crate::users::Seats>,
    /// Data connections that failed, for SITE DIAG: they outlive sessions and reloads.
    pub(crate) watch: Arc<crate::diag::DataWatch>,
    /// Counters and the table of sessions, for the admin listener.
    pub(crate) monitor: Arc<crate::monitor::Monitor>,
    /// Hashes (HASH, XSHA256…) running at once on the whole server: one per CPU, so that
    /// many users hashing at once queue for the cores instead of crowding the blocking pool
    /// (each user has one turn of its own besides, in its seat).
    pub(crate) hashing: Arc<tokio::sync::Semaphore>,
}

impl Live {
    pub(crate) fn current(&self) -> Arc<Shared> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn replace(&self, fresh: Arc<Shared>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }
}

/// A new configuration for a running server (see [`run_reloadable`]).
pub struct Reload {
    pub settings: Settings,
    pub services: Services,
}

fn warn_about(settings: &Settings) {
    if settings.active.allow_foreign_address {
        warn!(
            "active.allow_foreign_address is on: PORT/EPRT may target other hosts (bounce attacks possible)"
        );
    }
    if settings.active.allow_privileged_ports {
        warn!("active.allow_privileged_ports is on: PORT/EPRT may target ports below 1024");
    }
    if settings.passive.allow_foreign_peer {
        warn!("passive.allow_foreign_peer is on: any host may take a passive data connection");
    }
    if settings.listen_proxy.iter().any(Option::is_some)
        && settings.passive.address == crate::config::PassiveAddress::Local
    {
        warn!(
            "a [[listener]] takes PROXY headers but [passive] address is not set: PASV replies name this node's own address, which clients behind the balancer may not reach"
        );
    }
}

/// Serves on `listeners` (and on `implicit`, TLS from the first byte) until `shutdown`
/// completes; then stops accepting, tells idle sessions to close (421), lets running transfers
/// go on for the grace period, and returns.
pub async fn run(
    settings: Settings,
    services: Services,
    listeners: Vec<TcpListener>,
    implicit: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let (_never, reloads) = mpsc::unbounded_channel();
    run_reloadable(
        settings, services, listeners, implicit, shutdown, reloads, None,
    )
    .await;
}

/// [`run`], taking new configurations from `reloads` while it runs: connections accepted after
/// a reload get the new settings, logins after it are checked against the new users (and open
/// the homes the new file gives), and sessions already logged in go on as they were. The
/// listeners stay: a change of listen addresses needs a restart (and is logged as such).
pub async fn run_reloadable(
    settings: Settings,
    services: Services,
    listeners: Vec<TcpListener>,
    implicit: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::UnboundedReceiver<Reload>,
    admin: Option<crate::admin::AdminSetup>,
) {
    warn_about(&settings);
    let shared = Arc::new(Shared::new(settings, services));
    let limiter = Arc::new(Limiter {
        max_total: AtomicUsize::new(shared.settings.limits.max_sessions),
        max_per_ip: AtomicUsize::new(shared.settings.limits.max_sessions_per_ip),
        state: Mutex::new((0, HashMap::new())),
    });
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    let live = Arc::new(Live {
        current: RwLock::new(shared.clone()),
        guard: Arc::new(Guard::new(shared.settings.limits.ban_policy(), slots)),
        seats: Arc::new(crate::users::Seats::default()),
        watch: Arc::default(),
        monitor: Arc::default(),
        hashing: Arc::new(tokio::sync::Semaphore::new(slots)),
    });
    let ban_sync = tokio::spawn(import_shared_bans(live.clone()));
    let reloader = {
        let (live, limiter) = (live.clone(), limiter.clone());
        tokio::spawn(async move {
            while let Some(r) = reloads.recv().await {
                let old = live.current();
                let s = &r.settings;
                if s.listen != old.settings.listen
                    || s.listen_implicit != old.settings.listen_implicit
                    || s.listen_proxy != old.settings.listen_proxy
                {
                    warn!(
                        "reload: listeners changed (addresses, proxy_protocol or proxy_from); they apply at the next restart"
                    );
                }
                if s.storage != old.settings.storage
                    || (s.storage.is_some() && s.root != old.settings.root)
                {
                    warn!("reload: [storage] or root changed; it applies at the next restart");
                }
                warn_about(s);
                live.guard.set_policy(s.limits.ban_policy());
                limiter
                    .max_total
                    .store(s.limits.max_sessions, Ordering::Relaxed);
                limiter
                    .max_per_ip
                    .store(s.limits.max_sessions_per_ip, Ordering::Relaxed);
                live.replace(Arc::new(Shared::new(r.settings, r.services)));
                info!(
                    users = live.current().settings.users.len(),
                    "configuration reloaded"
                );
            }
        })
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin =
        admin.map(|setup| tokio::spawn(crate::admin::serve(setup, live.clone(), stop_rx.clone())));
    // Every session holds a clone of `alive_tx`; when all are gone, `recv` returns None.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut acceptors = Vec::new();
    let proxies = shared.settings.listen_proxy.clone();
    let tagged = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, false, proxies.get(i).cloned().flatten()))
        .chain(implicit.into_iter().map(|l| (l, true, None)));
    for (listener, implicit_tls, proxy) in tagged {
        let ctx = AcceptCtx {
            live: live.clone(),
            limiter: limiter.clone(),
            stop: stop_rx.clone(),
            alive: alive_tx.clone(),
            implicit_tls,
            proxy: proxy.map(Arc::new),
        };
        acceptors.push(tokio::spawn(accept_loop(listener, ctx)));
    }
    drop(alive_tx);
    shutdown.await;
    reloader.abort();
    ban_sync.abort();
    info!("shutting down: no new connections; running transfers may finish");
    let _ = stop_tx.send(true);
    for a in acceptors {
        let _ = a.await;
    }
    let grace = live.current().settings.limits.shutdown_grace;
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        warn!(
            secs = grace.as_secs(),
            "grace period over; closing remaining sessions"
        );
    }
    // The admin listener stopped taking requests with the others; open keep-alive
    // connections go now.
    if let Some(admin) = admin {
        admin.abort();
    }
}

/// How often a node reads the bans every node recorded in the user database.
pub const BAN_SYNC: Duration = Duration::from_secs(2);

/// This node's name in the shared ban list: host name and process.
pub(crate) fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// Records a ban this node made in the user database, for the other nodes (off the session's
/// path; a database that is away only delays the others: this node's ban holds).
pub(crate) fn share_ban(
    db: Arc<crate::userdb::UserDb>,
    guard: Arc<Guard>,
    ip: IpAddr,
    time: Duration,
) {
    tokio::spawn(async move {
        let until = crate::transfer::unix_now()
            .saturating_add(i64::try_from(time.as_secs()).unwrap_or(i64::MAX));
        match tokio::time::timeout(BAN_SYNC * 5, db.record_ban(ip, until, &node_name())).await {
            Ok(Ok(())) => guard.mark_shared(ip, std::time::Instant::now()),
            Ok(Err(e)) => warn!(%ip, error = %e, "cannot record the ban in the user database"),
            Err(_) => warn!(%ip, "cannot record the ban in the user database: no answer in time"),
        }
    });
}

/// Every [`BAN_SYNC`], takes in the bans all nodes recorded in the user database (when there
/// is one): an address banned on one node is refused on all, and a ban lifted on one is
/// lifted on all.
async fn import_shared_bans(live: Arc<Live>) {
    let mut tick = tokio::time::interval(BAN_SYNC);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(db) = live.current().services.users_db.clone() else {
            continue;
        };
        let fetched_at = std::time::Instant::now();
        let now = crate::transfer::unix_now();
        match tokio::time::timeout(BAN_SYNC * 5, db.active_bans()).await {
            Ok(Ok(list)) => {
                let bans: Vec<(IpAddr, std::time::Instant)> = list
                    .into_iter()
                    .map(|(ip, until)| {
                        let left = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
                        (ip, fetched_at + Duration::from_secs(left))
                    })
                    .collect();
                live.guard.import_bans(&bans, fetched_at);
                failing = false;
            }
            Ok(Err(e)) if !failing => {
                warn!(error = %e, "cannot read the shared bans from the user database");
                failing = true;
            }
            Err(_) if !failing => {
                warn!("cannot read the shared bans from the user database: no answer in time");
                failing = true;
            }
            _ => {}
        }
    }
}

#[derive(Clone)]
struct AcceptCtx {
    live: Arc<Live>,
    limiter: Arc<Limiter>,
    stop: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    implicit_tls: bool,
    /// Connections here start with a PROXY protocol header from these networks.
    proxy: Option<Arc<crate::config::ProxyFrom>>,
}

/// How long a load balancer has to send its PROXY header (it sends it at once).
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a session holds while it runs, released when it ends: its place in the limits, and
/// the sender graceful shutdown waits on.
pub(crate) struct SessionHold {
    _permit: Permit,
    _alive: mpsc::Sender<()>,
}

async fn accept_loop(listener: TcpListener, mut ctx: AcceptCtx) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = async { drop(ctx.stop.wait_for(|&v| v).await) } => return,
        };
        let (stream, _) = match accepted {
            Ok(v) => {
                backoff = Duration::from_millis(10);
                v
            }
            Err(e) => {
                // Out of file descriptors and the like: wait and retry rather than spin.
                error!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Who it is from is decided here, once; everything after reads it from `conn`.
        match &ctx.proxy {
            None => match ConnInfo::of(&stream) {
                Ok(conn) => start_session(stream, conn, &ctx),
                Err(e) => warn!(error = %e, "accepted connection without addresses"),
            },
            Some(from) => {
                // The header is read off the accept loop: a slow proxy holds up nobody else.
                let (ctx, from) = (ctx.clone(), from.clone());
                tokio::spawn(async move {
                    if let Some((stream, conn)) = read_proxy_header(stream, &from).await {
                        // Shutting down meanwhile: no new session.
                        if !*ctx.stop.borrow() {
                            start_session(stream, conn, &ctx);
                        }
                    }
                });
            }
        }
    }
}

/// True at most once a second: for log lines anyone can cause.
fn rarely() -> bool {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::transfer::unix_now().max(0) as u64;
    LAST.swap(now, Ordering::Relaxed) != now
}

/// The PROXY step of a listener behind a load balancer: the connection must come from one of
/// `from` and start with a v1 or v2 header, which names the client. Anything else is closed
/// (logged): a header from elsewhere would let anyone pick the address that bans, limits and
/// the PORT checks go by.
async fn read_proxy_header(
    mut stream: TcpStream,
    from: &crate::config::ProxyFrom,
) -> Option<(TcpStream, ConnInfo)> {
    use tokio::io::AsyncReadExt;
    use wharf_proto::proxy::{self, Header, Parsed};
    let (relay, local) = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(p), Ok(l)) => (p, l),
        _ => return None,
    };
    if !from.allows(relay.ip()) {
        // Anyone can knock: at most one line a second.
        if rarely() {
            warn!(peer = %relay, "connection refused: not from a load balancer allowed to send PROXY headers (proxy_from)");
        }
        return None;
    }
    let mut buf = Vec::with_capacity(64);
    let read = tokio::time::timeout(PROXY_HEADER_TIMEOUT, async {
        loop {
            match proxy::parse(&buf) {
                Ok(Parsed::Done { header, len }) if len == buf.len() => return Ok(header),
                Ok(Parsed::Done { .. }) => return Err("header and more in one read".to_string()),
                Ok(Parsed::Need(n)) => {
                    // Exactly up to what the header needs: the session's bytes stay unread.
                    let start = buf.len();
                    buf.resize(n, 0);
                    let got = stream
                        .read(buf.get_mut(start..).unwrap_or_default())
                        .await
                        .map_err(|e| e.to_string())?;
                    if got == 0 {
                        return Err("closed before the header was complete".to_string());
                    }
                    buf.truncate(start + got);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let header = match read {
        Ok(Ok(h)) => h,
        Ok(Err(why)) => {
            warn!(peer = %relay, reason = %why, "connection refused: no valid PROXY header");
            return None;
        }
        Err(_) => {
            warn!(peer = %relay, secs = PROXY_HEADER_TIMEOUT.as_secs(), "connection refused: no PROXY header in time");
            return None;
        }
    };
    let conn = match header {
        // A health check: the balancer speaks for itself.
        Header::Local => ConnInfo::direct(relay, local),
        Header::Proxied { source, .. } => ConnInfo::proxied(source, local, relay),
    };
    Some((stream, conn))
}

fn start_session(stream: TcpStream, conn: ConnInfo, ctx: &AcceptCtx) {
    if let Some(until) = ctx
        .live
        .guard
        .banned(conn.peer.ip(), std::time::Instant::now())
    {
        info!(
            peer = %conn.peer,
            secs_left = until.saturating_duration_since(std::time::Instant::now()).as_secs(),
            "connection refused: address banned"
        );
        // Counted with the logins a ban refuses: this connection came to log in.
        ctx.live
            .monitor
            .metrics
            .login(crate::monitor::LoginCount::Banned);
        if !ctx.implicit_tls {
            tokio::spawn(driver::refuse(
                stream,
                "Too many failed logins from your address, try again later.",
            ));
        }
        return;
    }
    let permit = match ctx.limiter.try_acquire(conn.peer.ip()) {
        Ok(p) => p,
        Err(text) => {
            warn!(peer = %conn.peer, reason = text, "connection refused by limits");
            // On an implicit-TLS listener a clear 421 would only garble the handshake: close.
            if !ctx.implicit_tls {
                tokio::spawn(driver::refuse(stream, text));
            }
            return;
        }
    };
    let driver = match Driver::new(
        stream,
        conn,
        ctx.live.clone(),
        ctx.stop.clone(),
        ctx.implicit_tls,
    ) {
        Ok(d) => d,
        Err(e) => {
            warn!(peer = %conn.peer, error = %e, "cannot set up session");
            return;
        }
    };
    // The session's own future is the task: no wrapper holding a second copy of the session.
    tokio::spawn(driver.run(SessionHold {
        _permit: permit,
        _alive: ctx.alive.clone(),
    }));
}
