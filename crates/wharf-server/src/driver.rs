//! The driver: owns one control connection and a `wharf-proto` [`Session`], and performs what
//! the session asks for (see the driving contract in `wharf_proto::server`). It makes no
//! protocol decision of its own: every reply comes from the session.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, error, info, warn};
use wharf_net::Stream;
use wharf_net::copy::CopyError;
use wharf_proto::server::{
    Action, ActiveRefusal, Body, DataChannel, DataFailure, HashDone, HashSpec, LoginResult, Note,
    Opened, Outcome, Output, PassiveOpened, Session, StorageDone, StorageOp, TransferEnd,
    TransferSpec, User,
};
use wharf_proto::{FileKind, LineBuffer, LineEvent, Reply, ReplyCode, VPath};

use crate::auth::{AuthError, Credentials};
use crate::config::PassiveAddress;
use crate::conn::ConnInfo;
use crate::guard::Failure;
use crate::server::{Live, Shared};
use crate::storage::{self, Storage, StorageError, WriteMode};
use crate::tls::{DataTls, SessionTls};
use crate::transfer::{self, Held, ListSource, Listing, channel};

/// Entries a STAT of a directory shows at most (it goes over the control connection, in one
/// reply).
const STAT_ENTRIES: usize = 10_000;

/// The control connection: the socket (TLS after AUTH TLS or on the implicit listener), the line
/// buffer, and a reused output buffer.
struct Control {
    stream: Stream,
    lines: LineBuffer,
    out: Vec<u8>,
}

impl Control {
    /// The next line, or `None` at end of stream. Cancel-safe: bytes read stay in the buffer.
    async fn next_event(&mut self) -> io::Result<Option<LineEvent>> {
        loop {
            if let Some(ev) = self.lines.next_line() {
                return Ok(Some(ev));
            }
            let buf = self.lines.buffer_mut();
            buf.reserve(512);
            if self.stream.read_buf(buf).await? == 0 {
                return Ok(None);
            }
            self.drain_past_urgent_mark();
        }
    }

    /// Runs the TLS handshake on the (plain) control connection. Whatever was buffered before it
    /// is dropped: a command pipelined behind AUTH TLS was sent in clear and must never run as if
    /// it came over TLS (the CVE-2011-1575 class).
    async fn start_tls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
        limit: Duration,
    ) -> io::Result<String> {
        self.lines.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = tokio::time::timeout(limit, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        self.stream = Stream::from(tls);
        let shown = self
            .stream
            .tls_facts()
            .map(|f| format!("{} {}", f.version, f.suite))
            .unwrap_or_default();
        Ok(shown)
    }

    /// Reads what is already queued on the socket, without waiting.
    ///
    /// Linux ends a read just before the urgent mark (the Telnet Synch a client sends before
    /// ABOR), and tokio takes a short read to mean the socket is drained and waits for the next
    /// readiness edge, which never comes for bytes that were already queued. So `IAC IP` +
    /// urgent `IAC DM` + `ABOR` would sit unread until the client sent more. Reading directly
    /// until `WouldBlock` picks those bytes up. Bounded, so a flood cannot grow the buffer.
    fn drain_past_urgent_mark(&mut self) {
        use std::io::Read;
        // Over TLS the bytes are records, not commands; rustls reads what it needs.
        let Stream::Plain(stream) = &self.stream else {
            return;
        };
        let sock = socket2::SockRef::from(stream);
        let mut chunk = [0u8; 512];
        while self.lines.buffer_mut().len() < 2 * wharf_proto::command::MAX_LINE {
            match (&*sock).read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => self
                    .lines
                    .buffer_mut()
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    }

    /// Sends a reply. A client that stops reading cannot hold the session (and its place in the
    /// limits) forever: the write times out like a stalled data connection.
    async fn send(&mut self, reply: &Reply, limit: Duration) -> io::Result<()> {
        self.out.clear();
        reply.encode(&mut self.out);
        let write = async {
            self.stream.write_all(&self.out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client does not read replies",
            )),
        }
    }
}

/// What the driver keeps of a logged-in user: its home and the throttle of its transfers (the
/// account itself is not kept: an idle session should cost as little as it can).
struct Home {
    storage: Arc<dyn Storage>,
    throttles: crate::services::AccountThrottles,
    /// A shared account (anonymous).
    shared: bool,
    limits: crate::auth::UserLimits,
    /// This session's place among its user's sessions (and the user's uploads in progress).
    seat: crate::users::Seat,
}

pub(crate) struct Driver {
    /// The configuration this session runs with: the one current when it connected, then the
    /// one current at its last login.
    shared: Arc<Shared>,
    /// The server's current configuration (a reload swaps it).
    live: Arc<Live>,
    conn: ConnInfo,
    control: Control,
    session: Session,
    home: Option<Home>,
    /// This session's TLS acceptors (its own session cache and ticket key), made when first
    /// needed; data connections under PROT P use them too.
    tls: Option<SessionTls>,
    /// The data connection of the last PASV/EPSV, while the session plans a passive transfer.
    passive: Option<Passive>,
    /// A connection from another address that the passive listener refused.
    intruder: channel::Intruder,
    /// The passive listener as SITE DIAG sees it: waiting, then how it ended.
    passive_seen: Option<crate::diag::Waiting>,
    /// The passive listener, counted for the metrics while it is open.
    passive_count: Option<crate::monitor::PassiveCount>,
    /// This session in the admin listener's table (removed when the driver goes).
    entry: crate::monitor::SessionHandle,
    /// What the last open action left for the transfer.
    held: Held,
    /// The byte limit of the upload opened last (quota, file size).
    cap: Option<transfer::Cap>,
    shutdown: watch::Receiver<bool>,
    /// The virtual host chosen by HOST or the TLS name, if any.
    host: Option<HostChoice>,
}

/// A virtual host chosen for this connection.
#[derive(Debug, Clone)]
struct HostChoice {
    /// The name the client gave (HOST, or the TLS name).
    name: String,
    /// The `[[host]]` serving it (its own name); `None`: the default host.
    id: Option<String>,
    /// Chosen by HOST (which REIN forgets), not by the TLS name.
    by_command: bool,
}

/// A passive data connection being set up before its transfer command arrives.
enum Passive {
    /// The listener; the connection is accepted when the transfer starts.
    Listening(TcpListener),
    /// Under PROT P: accepted, and its TLS handshake run, as soon as the client connects.
    Arriving(EarlyTls),
}

/// A data connection as a transfer finds it.
enum Arrived {
    Tcp(TcpStream),
    /// The client ran the TLS handshake before the transfer command (see [`EarlyTls`]).
    Tls(Box<(Handshake, DataTls)>),
}

type Handshake = Result<tokio_rustls::server::TlsStream<TcpStream>, Option<io::Error>>;

/// What became of an early passive connection when its transfer asked for it.
enum Early {
    /// The client said nothing yet: it waits for the preliminary reply (ftplib under PROT P,
    /// any client in clear). The transfer goes on as with a listener.
    Plain(TcpStream),
    /// The client spoke first, a TLS hello (aioftp): the handshake's result.
    Tls(Box<(Handshake, DataTls)>),
}

/// A passive data connection under PROT P, accepted by a task of its own as soon as the client
/// connects. Some clients (aioftp) start the TLS handshake then and send RETR only after it;
/// others (ftplib) start it only after the 150 reply. So the task runs the handshake when the
/// client speaks first, and otherwise hands the connection back untouched when the transfer
/// asks for it. Dropped (a new PASV, the listener expired, the session ended), the task stops.
struct EarlyTls {
    /// The listener's port (for the 425 when nobody comes).
    port: u16,
    /// Signalled when the TCP connection is accepted (from the control peer's address).
    connected: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The transfer wants the connection now.
    take: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<Early>>,
}

impl EarlyTls {
    fn start(
        listener: TcpListener,
        tls: DataTls,
        peer: crate::conn::DataPeers,
        settings: &crate::config::Settings,
        intruder: channel::Intruder,
    ) -> EarlyTls {
        let (connected_tx, connected_rx) = tokio::sync::oneshot::channel();
        let (take_tx, mut take_rx) = tokio::sync::oneshot::channel::<()>();
        let allow_any = settings.passive.allow_foreign_peer;
        let limit = settings.limits.accept_timeout;
        let port = listener.local_addr().map_or(0, |a| a.port());
        let task = tokio::spawn(async move {
            // No deadline here: the session closes an unused listener after the accept
            // timeout (dropping this task), and a transfer waits for it at most that long.
            let far = Instant::now() + Duration::from_secs(366 * 86_400);
            let tcp = channel::accept_passive(listener, peer, allow_any, far, &intruder).await?;
            let _ = connected_tx.send(());
            // Whoever speaks first: the client (a TLS hello), or the transfer asking. A byte
            // that has arrived, not a readiness hint, decides (peek leaves it for rustls).
            let mut probe = [0u8; 1];
            tokio::select! {
                biased;
                _ = &mut take_rx => return Ok(Early::Plain(tcp)),
                r = tcp.peek(&mut probe) => drop(r?),
            }
            let handshake = match tokio::time::timeout(limit, tls.acceptor.accept(tcp)).await {
                Ok(r) => r.map_err(Some),
                Err(_) => Err(None),
            };
            Ok(Early::Tls(Box::new((handshake, tls))))
        });
        EarlyTls {
            port,
            connected: Some(connected_rx),
            take: Some(take_tx),
            task,
        }
    }

    /// Whether the client's TCP connection came (without waiting).
    fn has_connected(&mut self) -> bool {
        match &mut self.connected {
            Some(rx) => rx.try_recv().is_ok(),
            None => true,
        }
    }

    /// Waits (at most `limit`) for the client's TCP connection.
    async fn connected(&mut self, limit: Duration) -> io::Result<()> {
        let Some(rx) = self.connected.take() else {
            return Ok(());
        };
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::other("the passive connection failed")),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no data connection in time",
            )),
        }
    }

    /// The connection, as the client left it (a handshake it started runs to its end, bounded
    /// by the accept timeout).
    async fn take(mut self) -> io::Result<Early> {
        if let Some(tx) = self.take.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

impl Drop for EarlyTls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One action's work, boxed and sized to that action (see [`Driver::perform`]).
type ActionFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<()>> + Send + 'a>>;

impl Drop for Driver {
    /// The session's TLS sessions stay for its siblings, but are the first to go when the
    /// server's store is full.
    fn drop(&mut self) {
        if let Some(tls) = &self.tls {
            tls.store.retire(&tls.owner);
        }
        self.end_passive();
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Driver {
    pub(crate) fn new(
        stream: TcpStream,
        conn: ConnInfo,
        live: Arc<Live>,
        shutdown: watch::Receiver<bool>,
        implicit_tls: bool,
    ) -> io::Result<Driver> {
        // Urgent data stays in the stream, so `IAC IP IAC DM ABOR` (and ftplib's ABOR sent
        // wholly as urgent data) arrives intact.
        socket2::SockRef::from(&stream).set_out_of_band_inline(true)?;
        stream.set_nodelay(true)?;
        let shared = live.current();
        let entry = live.monitor.sessions.open(conn.id, conn.peer);
        let session = Session::new(
            shared.policy.clone(),
            conn.peer.ip(),
            conn.local.ip(),
            implicit_tls,
            now(),
        );
        Ok(Driver {
            control: Control {
                stream: Stream::Plain(stream),
                lines: LineBuffer::new(),
                out: Vec::new(),
            },
            shared,
            live,
            conn,
            session,
            home: None,
            tls: None,
            passive: None,
            intruder: channel::Intruder::default(),
            passive_seen: None,
            passive_count: None,
            entry,
            held: Held::None,
            cap: None,
            shutdown,
            host: None,
        })
    }

    /// Runs the session to its end; `hold` is released after it. A plain function returning an
    /// `async move` block: an `async fn` would keep a second copy of the driver in its future
    /// (its arguments are moved into locals), and this future is what every session holds.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn's future is larger, see above"
    )]
    pub(crate) fn run(
        mut self,
        hold: crate::server::SessionHold,
    ) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let started = Instant::now();
            match self.conn.via {
                crate::conn::Via::Direct => {
                    info!(session = self.conn.id, peer = %self.conn.peer, "session opened");
                }
                crate::conn::Via::Proxy { proxy } => {
                    info!(session = self.conn.id, peer = %self.conn.peer, via = %proxy, "session opened");
                }
            }
            if let Err(e) = self.serve().await {
                debug!(session = self.conn.id, peer = %self.conn.peer, error = %e, "control connection error");
            }
            info!(
                session = self.conn.id,
                peer = %self.conn.peer,
                user = self.session.user_name().unwrap_or("-"),
                secs = started.elapsed().as_secs(),
                "session closed"
            );
            drop(hold);
        }
    }

    async fn serve(&mut self) -> io::Result<()> {
        // Came in on an implicit-TLS port: the session was made with a TLS control connection,
        // and the handshake comes before the banner.
        if self.session.control_is_tls() && !self.control.stream.is_tls() {
            Box::pin(self.implicit_handshake()).await?;
        }
        self.session.start(now());
        loop {
            while let Some(out) = self.session.poll_output() {
                match out {
                    Output::Reply(r) => self.send_reply(&r).await?,
                    Output::Note(n) => self.note(n),
                    Output::Do(action) => self.perform(action).await?,
                }
            }
            if self.session.is_closed() {
                return Ok(());
            }
            if *self.shutdown.borrow() && self.session.is_idle() {
                self.session.handle_shutdown();
                continue;
            }
            if self.session.has_queued() {
                self.session.run_queued(now());
                continue;
            }
            if !self.wait().await? {
                return Ok(());
            }
        }
    }

    /// Waits for a line, a timer or shutdown, and hands it to the session. `false`: the client
    /// closed the connection.
    ///
    /// This is the future an idle session sits in, so it is kept small: one timer for whichever
    /// deadline comes first.
    async fn wait(&mut self) -> io::Result<bool> {
        let deadline = self.session.poll_timeout();
        let reading = self.session.wants_input();
        let idle = self.session.is_idle();
        let Driver {
            control,
            shutdown,
            session,
            entry,
            ..
        } = self;
        // Without a deadline the timer is off; the far-off instant only fills the slot.
        let wake = deadline.map_or_else(
            || Instant::now() + Duration::from_secs(86_400),
            Instant::from_std,
        );
        tokio::select! {
            ev = control.next_event(), if reading => match ev? {
                Some(ev) => session.handle_line(ev, now()),
                None => return Ok(false),
            },
            _ = sleep_until(wake), if deadline.is_some() => session.handle_timeout(now()),
            // Shutdown only ever turns on; a closed channel means the server is gone.
            _ = shutdown.changed(), if idle => session.handle_shutdown(),
            // The administrator ends this session (the admin API).
            _ = entry.entry.kicked() => session.handle_kick(),
        }
        Ok(true)
    }

    async fn implicit_handshake(&mut self) -> io::Result<()> {
        let acceptor = self.acceptor()?;
        let limit = self.shared.settings.limits.accept_timeout;
        let shown = self.control.start_tls(&acceptor.control, limit).await?;
        debug!(peer = %self.conn.peer, tls = %shown, "implicit TLS established");
        self.host_from_tls_name();
        // The greeting comes after the handshake here: the chosen host's.
        let banner = self
            .host
            .as_ref()
            .and_then(|h| h.id.as_deref())
            .and_then(|id| {
                self.shared
                    .settings
                    .host_by_id(id)
                    .and_then(|h| h.banner.clone())
            });
        if let Some(banner) = banner {
            self.session.set_banner(banner);
        }
        Ok(())
    }

    /// The chosen virtual host's own name for audit lines, `-` for the default host.
    fn host_name(&self) -> &str {
        self.host
            .as_ref()
            .and_then(|h| h.id.as_deref())
            .unwrap_or("-")
    }

    /// Chooses `choice` as this connection's host (the admin listener shows it).
    fn set_host(&mut self, choice: HostChoice) {
        self.entry.entry.set_host(choice.id.as_deref());
        self.host = Some(choice);
    }

    /// After a TLS handshake: the name the client asked for chooses the virtual host, unless
    /// HOST chose one already.
    fn host_from_tls_name(&mut self) {
        if self.host.is_some() {
            return;
        }
        let Some(name) = self.control.stream.server_name() else {
            return;
        };
        let settings = &self.live.current().settings;
        if let Some(h) = settings.host_named(&name) {
            info!(session = self.conn.id, peer = %self.conn.peer, host = %h.id(), "host chosen by the TLS name");
            let choice = HostChoice {
                name: crate::config::normalize_host(&name),
                id: Some(h.id().to_string()),
                by_command: false,
            };
            self.set_host(choice);
        }
    }

    /// HOST (RFC 7151): the host serving `name`, or why not (504). An address in brackets
    /// must be this server's own; a name must be one of the `[[host]]` names (any name, with
    /// none configured) and, under TLS, the name the handshake asked for.
    fn choose_host(&mut self, name: &[u8]) -> Result<String, String> {
        let current = self.live.current();
        let settings = &current.settings;
        let default = settings.banner.clone();
        let Ok(text) = std::str::from_utf8(name) else {
            return Err("That is not a host name.".into());
        };
        if let Some(literal) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if let Some(sni) = self.control.stream.server_name() {
                return Err(format!(
                    "{text} is not the name TLS was started for ({sni})."
                ));
            }
            let own = self.conn.local.ip().to_canonical();
            return match literal.parse::<std::net::IpAddr>() {
                Ok(ip) if ip.to_canonical() == own => {
                    self.set_host(HostChoice {
                        name: text.to_string(),
                        id: None,
                        by_command: true,
                    });
                    Ok(default)
                }
                _ => Err(format!("{text} is not this server's address.")),
            };
        }
        let wanted = crate::config::normalize_host(text);
        if wanted.is_empty()
            || wanted.contains(|c: char| c.is_whitespace() || c.is_control() || c == '*')
        {
            return Err("That is not a host name.".into());
        }
        if let Some(sni) = self.control.stream.server_name() {
            let sni = crate::config::normalize_host(&sni);
            if sni != wanted {
                return Err(format!(
                    "{wanted} is not the name TLS was started for ({sni})."
                ));
            }
        }
        if settings.hosts.is_empty() {
            self.set_host(HostChoice {
                name: wanted,
                id: None,
                by_command: true,
            });
            return Ok(default);
        }
        match settings.host_named(&wanted) {
            Some(h) => {
                let banner = h.banner.clone().unwrap_or(default);
                info!(session = self.conn.id, peer = %self.conn.peer, host = %h.id(), "host chosen by HOST");
                self.set_host(HostChoice {
                    name: wanted,
                    id: Some(h.id().to_string()),
                    by_command: true,
                });
                Ok(banner)
            }
            None => Err(format!("{wanted} is not served here.")),
        }
    }

    /// Writes a reply, bounded like a stalled data connection.
    async fn send_reply(&mut self, reply: &Reply) -> io::Result<()> {
        self.live.monitor.metrics.reply(reply.code.0);
        let limit = self.shared.settings.limits.data_timeout;
        self.control.send(reply, limit).await
    }

    fn note(&self, note: Note) {
        let peer = self.conn.peer;
        match note {
            Note::Command { verb } => debug!(%peer, verb, "command"),
            Note::RefusedActive {
                verb,
                target,
                reason: ActiveRefusal::ForeignAddress,
            } => {
                warn!(session = self.conn.id, %peer, %target, "refused {verb} to a foreign address: {} is not the client's address as seen here ({}): a client behind NAT without an FTP helper (it should use passive mode), or a bounce attempt", target.ip(), peer.ip());
                let failure = DataFailure::ActiveForeign {
                    addr: target,
                    seen: peer.ip(),
                };
                self.record(verb, failure);
            }
            Note::RefusedActive {
                verb,
                target,
                reason,
            } => {
                warn!(session = self.conn.id, %peer, %target, "refused {verb} to {}", reason.name())
            }
            Note::PassiveExpired => debug!(%peer, "passive listener expired unused"),
            // Logged where the reason is known (see `login`).
            Note::LoginFailed { .. } => {}
            Note::Outcome { verb, path, code } => {
                let path = path.map_or_else(|| "-".to_string(), |p| p.to_string());
                let user = self.session.user_name().unwrap_or("-");
                let host = self.host_name();
                if code >= 400 {
                    info!(session = self.conn.id, %peer, user, verb, path, code, host, "refused");
                } else {
                    info!(session = self.conn.id, %peer, user, verb, path, code, host, "changed");
                    use crate::hooks::EventKind;
                    let kind = match verb {
                        "DELE" | "RMD" => Some(EventKind::Delete),
                        "MKD" => Some(EventKind::Mkdir),
                        "RNTO" => Some(EventKind::Rename),
                        _ => None,
                    };
                    if let Some(kind) = kind {
                        self.emit(kind, user, Some(path), None);
                    }
                }
            }
            Note::ClearDataRefused => {
                debug!(%peer, "data connection in clear refused: PROT P required")
            }
        }
    }

    /// Hands an event to the hooks, if any want it (never waits).
    fn emit(
        &self,
        kind: crate::hooks::EventKind,
        user: &str,
        path: Option<String>,
        bytes: Option<u64>,
    ) {
        if let Some(hooks) = &self.shared.services.hooks {
            hooks.emit(crate::hooks::Event {
                kind,
                user: user.to_string(),
                client: self.conn.peer.ip(),
                session: self.conn.id,
                path,
                bytes,
                host: self.host.as_ref().and_then(|h| h.id.clone()),
            });
        }
    }

    /// Keeps a data connection's failure for SITE DIAG.
    fn record(&self, verb: &'static str, failure: DataFailure) {
        let user = self.session.user_name().unwrap_or("-");
        let ip = self.conn.peer.ip();
        self.live
            .watch
            .failed(ip, user, self.conn.id, verb, failure);
    }

    /// SITE DIAG: what the server sees of this session.
    async fn diagnose(&mut self) -> Vec<String> {
        let settings = &self.shared.settings;
        let local = self.conn.local.ip();
        let passive_address = match passive_announce(&settings.passive.address).await {
            Some(ip) => (std::net::IpAddr::V4(ip), true),
            None => (local, false),
        };
        let tls = self
            .shared
            .services
            .tls
            .as_ref()
            .map_or("off", |t| t.mode.name());
        let user = self.session.user_name().unwrap_or("-");
        wharf_proto::diag::Diagnosis {
            client_address: Some(self.conn.peer.ip()),
            server_address: Some(local),
            passive_address: Some(passive_address),
            passive_ports: settings
                .passive
                .ports
                .as_ref()
                .map(|r| (*r.start(), *r.end())),
            accept_timeout: Some(settings.limits.accept_timeout.as_secs()),
            tls: Some(tls.to_string()),
            data: self.live.watch.report(self.conn.peer.ip(), user),
        }
        .lines()
    }

    /// Performs one action and feeds its outcome back to the session. Each action's future is
    /// boxed on its own, so it takes only the memory its own work needs, and only while it runs:
    /// hundreds of sessions waiting at once for their password checks hold a login's future
    /// each, not a transfer's (one future for every action would be the size of the largest).
    fn perform(&mut self, action: Action) -> ActionFuture<'_> {
        match action {
            Action::Login {
                user,
                password,
                host,
            } => Box::pin(async move {
                let name = String::from_utf8_lossy(&user).into_owned();
                // After REIN the session has forgotten HOST: so does the connection (a host
                // the TLS name chose stays).
                if host.is_none() && self.host.as_ref().is_some_and(|h| h.by_command) {
                    self.host = None;
                    self.entry.entry.set_host(None);
                }
                // The name HOST gave, or the TLS name that chose a host.
                let host = self
                    .host
                    .as_ref()
                    .map(|h| h.name.clone())
                    .or_else(|| host.map(|h| String::from_utf8_lossy(&h).into_owned()));
                let r = self.login(user, password, host).await;
                use crate::hooks::EventKind;
                use crate::monitor::LoginCount;
                match &r {
                    LoginResult::Ok(u) => self.emit(EventKind::Login, &u.name, None, None),
                    LoginResult::Rejected => self.emit(EventKind::LoginFailed, &name, None, None),
                    _ => {}
                }
                let count = match &r {
                    LoginResult::Ok(u) => {
                        self.entry.entry.set_user(Some(&u.name));
                        LoginCount::Ok
                    }
                    LoginResult::AddressRefused => LoginCount::Banned,
                    LoginResult::Unavailable | LoginResult::HomeUnavailable => {
                        LoginCount::Unavailable
                    }
                    _ => LoginCount::Rejected,
                };
                self.live.monitor.metrics.login(count);
                self.done(Outcome::Login(r))
            }),
            Action::Storage(op) => Box::pin(async move {
                let r = self.storage(op).await;
                self.done(Outcome::Storage(r))
            }),
            Action::OpenPassive { pasv, tls } => Box::pin(async move {
                let r = self.open_passive(pasv, tls).await;
                self.done(Outcome::Passive(r))
            }),
            Action::StartTls { discarded } => Box::pin(async move {
                let r = self.start_tls(discarded).await;
                self.done(Outcome::Tls(r))
            }),
            Action::OpenRead { path, offset, end } => Box::pin(async move {
                let r = self.open_read(&path, offset, end).await;
                self.done(Outcome::Opened(r.map_err(|e| e.kind())))
            }),
            Action::OpenWrite { path, mode } => Box::pin(async move {
                let r = self.open_write(&path, mode).await.map(|()| Opened {
                    len: 0,
                    is_dir: false,
                    name: None,
                });
                self.done(Outcome::Opened(r.map_err(|e| e.kind())))
            }),
            Action::OpenUnique { dir } => Box::pin(async move {
                let r = self.open_unique(&dir).await;
                self.done(Outcome::Opened(r.map_err(|e| e.kind())))
            }),
            Action::OpenList { path, glob } => Box::pin(async move {
                let r = self.open_list(&path, glob).await;
                self.done(Outcome::Opened(r.map_err(|e| e.kind())))
            }),
            Action::Transfer(spec) => Box::pin(async move {
                let end = self.transfer(*spec).await?;
                self.done(Outcome::Transfer(end))
            }),
            Action::Hash(spec) => Box::pin(async move {
                let r = self.hash(*spec).await?;
                self.done(Outcome::Hashed(r))
            }),
            Action::ClosePassive => {
                self.end_passive();
                Box::pin(std::future::ready(Ok(())))
            }
            Action::DropOpened => {
                self.held = Held::None;
                self.cap = None;
                Box::pin(std::future::ready(Ok(())))
            }
            Action::Logout => {
                self.home = None;
                self.entry.entry.set_user(None);
                if let Some(tls) = &self.tls {
                    tls.owner.logged_out();
                }
                Box::pin(std::future::ready(Ok(())))
            }
            Action::ChooseHost { name } => {
                let r = self.choose_host(&name);
                Box::pin(std::future::ready(self.done(Outcome::Host(r))))
            }
            Action::Diagnose => Box::pin(async move {
                let lines = self.diagnose().await;
                self.done(Outcome::Diagnosis(lines))
            }),
            // A running transfer handles these itself; the serve loop ends on Close.
            Action::AbortTransfer | Action::Close => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn done(&mut self, outcome: Outcome) -> io::Result<()> {
        self.session.handle_outcome(outcome, now());
        Ok(())
    }

    // ---- login ----

    async fn login(
        &mut self,
        user: Vec<u8>,
        password: Vec<u8>,
        host: Option<String>,
    ) -> LoginResult {
        let name = String::from_utf8_lossy(&user).into_owned();
        let credentials = Credentials {
            user,
            password,
            conn: self.conn,
            tls: self.control.stream.is_tls(),
            host,
            vhost: self.host.as_ref().and_then(|h| h.id.clone()),
            // A hash is checked with a slot of the fair queue, taken by the authenticator
            // only for that (a remote source is waited on without one).
            queue: Some(self.live.guard.clone()),
        };
        // A login is checked against the configuration current now (a reload may have changed
        // the users), and the session runs with that configuration from here on.
        let current = self.live.current();
        let limit = current.settings.limits.backend_timeout;
        let ip = self.conn.peer.ip();
        let auth = current.services.auth.clone();
        // With a remote source, one login of an address at a time: each failure is counted
        // before the next is tried. Waiting for the turn is bounded too.
        let _turn = if auth.one_login_per_address() {
            match tokio::time::timeout(limit, self.live.guard.turn(ip)).await {
                Ok(t) => Some(t),
                Err(_) => {
                    error!(session = self.conn.id, peer = %self.conn.peer, secs = limit.as_secs(), "login failed: the address's earlier login did not end in time");
                    return LoginResult::Unavailable;
                }
            }
        } else {
            None
        };
        if self
            .live
            .guard
            .banned(ip, std::time::Instant::now())
            .is_some()
        {
            warn!(session = self.conn.id, peer = %self.conn.peer, reason = "Banned", "login refused for the address");
            return LoginResult::AddressRefused;
        }
        // The check runs as a task of its own, which holds its password-check slot until it
        // is done: a check that outlives the timeout still counts against the slots (its
        // thread and memory).
        let check = tokio::spawn(async move { auth.authenticate(credentials).await });
        let checked = match tokio::time::timeout(limit, check).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(AuthError::Unavailable(format!(
                "password check failed: {e}"
            ))),
            Err(_) => Err(AuthError::Unavailable(format!(
                "no answer within {} s",
                limit.as_secs()
            ))),
        };
        let account = match checked {
            Ok(a) => a,
            Err(AuthError::AddressRefused) => {
                warn!(session = self.conn.id, peer = %self.conn.peer, reason = "Banned", "login refused for the address");
                return LoginResult::AddressRefused;
            }
            Err(AuthError::Rejected(why)) => {
                // The reason is for the log; the client only hears 530.
                let host = self
                    .host
                    .as_ref()
                    .and_then(|h| h.id.as_deref())
                    .unwrap_or("-");
                warn!(session = self.conn.id, peer = %self.conn.peer, user = %name, reason = %why, host = %host, "login failed");
                if !why.counts_as_failure() {
                    return LoginResult::Rejected;
                }
                if let Failure::Banned(time) = self.live.guard.failed(ip, std::time::Instant::now())
                {
                    warn!(session = self.conn.id, peer = %self.conn.peer, secs = time.as_secs(), "address banned after failed logins");
                    if let Some(db) = self.shared.services.users_db.clone() {
                        crate::server::share_ban(db, self.live.guard.clone(), ip, time);
                    }
                }
                return LoginResult::Rejected;
            }
            Err(AuthError::Unavailable(why)) => {
                error!(session = self.conn.id, peer = %self.conn.peer, user = %name, error = %why, "login failed: the source of users is unavailable");
                return LoginResult::Unavailable;
            }
        };
        let Some(seat) = self
            .live
            .seats
            .take(&account.name, account.limits.max_sessions)
        else {
            warn!(session = self.conn.id, peer = %self.conn.peer, user = %account.name, "login refused: the user has as many sessions as it may");
            return LoginResult::TooManySessions;
        };
        let opened = backend(limit, current.services.storage.open_home(&account)).await;
        match opened {
            Ok(storage) => {
                let host = self
                    .host
                    .as_ref()
                    .and_then(|h| h.id.as_deref())
                    .unwrap_or("-");
                info!(session = self.conn.id, peer = %self.conn.peer, user = %account.name, host = %host, "login");
                let user = User {
                    name: account.name.clone(),
                    permissions: account.permissions,
                };
                let throttles = current.services.throttles.for_account(&account);
                self.shared = current;
                // TLS sessions of this connection now belong to this user (data connections of
                // the same user and address may resume them).
                if let Some(tls) = &self.tls {
                    tls.owner.logged_in(&account.name, account.anonymous);
                }
                self.home = Some(Home {
                    storage,
                    throttles,
                    shared: account.anonymous,
                    limits: account.limits,
                    seat,
                });
                LoginResult::Ok(user)
            }
            Err(e) if e.is_transient() && matches!(e, StorageError::Unavailable(_)) => {
                error!(peer = %self.conn.peer, user = %account.name, error = %e, "storage unavailable: login refused");
                LoginResult::Unavailable
            }
            Err(e) => {
                warn!(user = %account.name, home = %account.home.display(), error = %e, "home directory unavailable");
                LoginResult::HomeUnavailable
            }
        }
    }

    fn storage_of(&self) -> Result<Arc<dyn Storage>, StorageError> {
        self.home
            .as_ref()
            .map(|h| h.storage.clone())
            .ok_or(StorageError::PermissionDenied)
    }

    // ---- storage ----

    async fn storage(
        &mut self,
        op: StorageOp,
    ) -> Result<StorageDone, wharf_proto::server::FsError> {
        self.storage_op(op).await.map_err(|e| e.kind())
    }

    async fn storage_op(&mut self, op: StorageOp) -> Result<StorageDone, StorageError> {
        let limit = self.shared.settings.limits.backend_timeout;
        backend(limit, self.storage_call(op)).await
    }

    async fn storage_call(&mut self, op: StorageOp) -> Result<StorageDone, StorageError> {
        let fs = self.storage_of()?;
        let done = StorageDone::Done;
        match op {
            StorageOp::Stat(p) => fs.stat(&p).await.map(StorageDone::Info),
            StorageOp::StatList(p) => {
                let info = fs.stat(&p).await?;
                let entries = if info.kind == FileKind::Dir {
                    storage::collect(fs.list(&p).await?, STAT_ENTRIES).await?
                } else {
                    vec![info]
                };
                Ok(StorageDone::Entries {
                    entries,
                    now: transfer::unix_now(),
                })
            }
            StorageOp::Mkdir(p) => fs.mkdir(&p).await.map(|()| done),
            StorageOp::Rmdir(p) => fs.rmdir(&p).await.map(|()| done),
            StorageOp::Delete(p) => fs.delete(&p).await.map(|()| done),
            StorageOp::Rename { from, to, replace } => {
                fs.rename(&from, &to, replace).await.map(|()| done)
            }
            StorageOp::SetMtime { path, unix_secs } => {
                fs.set_mtime(&path, unix_secs).await.map(|()| done)
            }
            StorageOp::Chmod { path, mode } => fs.chmod(&path, mode).await.map(|()| done),
        }
    }

    async fn open_read(
        &mut self,
        path: &VPath,
        offset: u64,
        end: Option<u64>,
    ) -> Result<Opened, StorageError> {
        self.cap = None;
        let limit = self.shared.settings.limits.backend_timeout;
        let fs = self.storage_of()?;
        let open = match end {
            Some(end) => fs.open_range(path, offset, end),
            None => fs.open_read(path, offset),
        };
        let handle = backend(limit, open).await?;
        let len = handle.len;
        self.held = Held::Read(Box::new(handle));
        Ok(Opened {
            len,
            is_dir: false,
            name: None,
        })
    }

    async fn open_write(&mut self, path: &VPath, mode: WriteMode) -> Result<(), StorageError> {
        let limit = self.shared.settings.limits.backend_timeout;
        let cap = self.upload_cap(path, mode).await?;
        let handle = backend(limit, self.storage_of()?.open_write(path, mode)).await?;
        self.held = Held::Write(handle);
        self.cap = cap;
        Ok(())
    }

    /// The limits of an upload to `path` under the user's quota and file size limit (`None`:
    /// none); refused at once when nothing is left, or when a new file would exceed the file
    /// quota. The quota's room is what the home holds now (a file an upload replaces counts as
    /// freed) against the quota, shared by the user's uploads in progress.
    async fn upload_cap(
        &mut self,
        path: &VPath,
        mode: WriteMode,
    ) -> Result<Option<transfer::Cap>, StorageError> {
        let Some(home) = &self.home else {
            return Ok(None);
        };
        let limits = home.limits;
        if limits.max_file_size.is_none()
            && limits.quota_bytes.is_none()
            && limits.quota_files.is_none()
        {
            return Ok(None);
        }
        let storage = home.storage.clone();
        let state = home.seat.state.clone();
        let limit = self.shared.settings.limits.backend_timeout;
        let existing = match backend(limit, storage.stat(path)).await {
            Ok(info) if info.kind == FileKind::File => Some(info.size),
            _ => None,
        };
        let base = match mode {
            WriteMode::Replace | WriteMode::CreateNew => 0,
            WriteMode::Append => existing.unwrap_or(0),
            WriteMode::Resume(n) => n,
        };
        let size_left = limits.max_file_size.map(|m| m.saturating_sub(base));
        if size_left == Some(0) {
            return Err(StorageError::TooLarge);
        }
        let mut quota_room = None;
        let freed = match mode {
            WriteMode::Replace => existing.unwrap_or(0),
            // A resume rewrites what lies beyond its offset.
            WriteMode::Resume(n) => existing.unwrap_or(0).saturating_sub(n),
            _ => 0,
        };
        let committed_at_open = state.committed.load(Ordering::Acquire);
        if limits.quota_bytes.is_some() || limits.quota_files.is_some() {
            let usage = backend(limit, storage.usage()).await?;
            if limits
                .quota_files
                .is_some_and(|q| existing.is_none() && usage.files >= q)
            {
                return Err(StorageError::QuotaExceeded);
            }
            if let Some(q) = limits.quota_bytes {
                let room = q.saturating_sub(usage.bytes.saturating_sub(freed));
                if room <= state.inflight.load(Ordering::Acquire) {
                    return Err(StorageError::QuotaExceeded);
                }
                quota_room = Some(room);
            }
        }
        Ok(Some(transfer::Cap {
            size_left,
            quota_room,
            committed_at_open,
            freed,
            state,
            written: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// STOU: a new file with a name nobody has.
    async fn open_unique(&mut self, dir: &VPath) -> Result<Opened, StorageError> {
        let fs = self.storage_of()?;
        for _ in 0..8 {
            let name = format!("wharf.{}", storage::random_hex(6)).into_bytes();
            let path = dir.join(&name).map_err(|_| StorageError::InvalidName)?;
            let limit = self.shared.settings.limits.backend_timeout;
            let cap = self.upload_cap(&path, WriteMode::CreateNew).await?;
            match backend(limit, fs.open_write(&path, WriteMode::CreateNew)).await {
                Ok(handle) => {
                    self.held = Held::Write(handle);
                    self.cap = cap;
                    return Ok(Opened {
                        len: 0,
                        is_dir: false,
                        name: Some(name),
                    });
                }
                Err(StorageError::AlreadyExists) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StorageError::AlreadyExists)
    }

    async fn open_list(
        &mut self,
        path: &VPath,
        glob: Option<Vec<u8>>,
    ) -> Result<Opened, StorageError> {
        self.cap = None;
        let limit = self.shared.settings.limits.backend_timeout;
        backend(limit, self.open_listing(path, glob)).await
    }

    async fn open_listing(
        &mut self,
        path: &VPath,
        glob: Option<Vec<u8>>,
    ) -> Result<Opened, StorageError> {
        let fs = self.storage_of()?;
        let info = match (fs.stat(path).await, glob) {
            // A name that exists as written is listed as itself, pattern characters or not.
            (Err(StorageError::NotFound), Some(prefix)) => {
                let pattern = path.file_name().unwrap_or_default().to_vec();
                let entries = fs.list(&path.parent()).await?;
                let matching = transfer::Matching::start(entries, pattern, prefix).await?;
                self.held = Held::List(Box::new(Listing {
                    dir: None,
                    source: ListSource::Entries(Box::new(matching)),
                }));
                return Ok(Opened {
                    len: 0,
                    is_dir: true,
                    name: None,
                });
            }
            (r, _) => r?,
        };
        let is_dir = info.kind == FileKind::Dir;
        let listing = if is_dir {
            Listing {
                source: ListSource::Entries(fs.list(path).await?),
                dir: Some(info),
            }
        } else {
            Listing {
                dir: None,
                source: ListSource::Single(info),
            }
        };
        self.held = Held::List(Box::new(listing));
        Ok(Opened {
            len: 0,
            is_dir,
            name: None,
        })
    }

    // ---- data connections ----

    /// The passive listener closes without a transfer (a new PASV, ClosePassive, the end of the
    /// session): whether the client had connected decides what SITE DIAG remembers.
    fn end_passive(&mut self) {
        self.passive_count = None;
        let passive = self.passive.take();
        let Some(seen) = self.passive_seen.take() else {
            return;
        };
        let came = match passive {
            Some(Passive::Listening(listener)) => {
                // A connection waiting in the backlog: the client connected, if it came from
                // the client's address (another one would have been refused).
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                match listener.poll_accept(&mut cx) {
                    std::task::Poll::Ready(Ok((_, from))) => {
                        let ip = from.ip().to_canonical();
                        let own = self.conn.data_peers().allows(ip)
                            || self.shared.settings.passive.allow_foreign_peer;
                        if !own {
                            self.intruder.set(ip);
                        }
                        own
                    }
                    _ => false,
                }
            }
            Some(Passive::Arriving(mut early)) => early.has_connected(),
            None => false,
        };
        match (came, self.intruder.get()) {
            (true, _) => seen.connected(),
            (false, Some(from)) => {
                let failure = DataFailure::PassiveForeign {
                    port: seen.port(),
                    from,
                    secs: seen.age().as_secs(),
                };
                seen.failed(failure);
            }
            // Dropped unsettled: "nobody connected in the time it was open".
            (false, None) => drop(seen),
        }
    }

    async fn open_passive(&mut self, pasv: bool, tls: bool) -> Result<PassiveOpened, ()> {
        self.end_passive();
        self.intruder = channel::Intruder::default();
        let shared = self.shared.clone();
        let announce = if pasv {
            passive_announce(&shared.settings.passive.address).await
        } else {
            None
        };
        // One address's share of the range (clients behind one NAT share it; nothing here
        // touches another session's listener).
        let ip = self.conn.peer.ip().to_canonical();
        let user = self.session.user_name().unwrap_or("-").to_string();
        let cap = shared.settings.passive.max_per_address;
        let metrics = &self.live.monitor.metrics;
        let seat = match metrics.passive_seat(ip, cap) {
            Ok(seat) => seat,
            Err(held) => {
                warn!(session = self.conn.id, user, client = %ip, held, cap, "no passive port: this client address holds as many passive listeners as it may (passive.max_per_address)");
                return Err(());
            }
        };
        let bound =
            channel::bind_passive(self.conn.local.ip(), shared.settings.passive.ports.as_ref())
                .and_then(|l| Ok((l.local_addr()?.port(), l)));
        match bound {
            Ok((port, listener)) => {
                self.passive_count = Some(seat);
                self.passive_seen = Some(self.live.watch.waiting(
                    self.conn.peer.ip(),
                    self.session.user_name().unwrap_or("-"),
                    self.conn.id,
                    if pasv { "PASV" } else { "EPSV" },
                    port,
                ));
                let early = tls.then(|| self.acceptor().ok()).flatten();
                self.passive = Some(match early {
                    Some(acceptor) => Passive::Arriving(EarlyTls::start(
                        listener,
                        // The client speaks first, before its command: a download, most
                        // likely (curl, aioftp), which takes one TLS 1.3 ticket.
                        acceptor.data(1),
                        self.conn.data_peers(),
                        &shared.settings,
                        self.intruder.clone(),
                    )),
                    None => Passive::Listening(listener),
                });
                Ok(PassiveOpened { port, announce })
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::AddrInUse {
                    metrics.passive_refused(crate::monitor::PassiveRefusal::RangeFull);
                }
                warn!(session = self.conn.id, user, client = %ip, error = %e, "no passive port: cannot open a passive listener");
                Err(())
            }
        }
    }

    /// This session's TLS acceptors, made on first use.
    fn acceptor(&mut self) -> io::Result<SessionTls> {
        if let Some(a) = &self.tls {
            return Ok(a.clone());
        }
        let Some(tls) = &self.shared.services.tls else {
            return Err(io::Error::other("TLS is not configured"));
        };
        let owner = Arc::new(crate::tls::Owner::new(self.conn.peer.ip()));
        if let (Some(user), Some(home)) = (self.session.user_name(), &self.home) {
            owner.logged_in(user, home.shared);
        }
        let a = tls.session_acceptors(owner)?;
        self.tls = Some(a.clone());
        Ok(a)
    }

    async fn start_tls(&mut self, discarded: usize) -> Result<(), ()> {
        if self.control.lines.has_pending() || discarded > 0 {
            warn!(peer = %self.conn.peer, "discarded commands pipelined after AUTH TLS");
        }
        let acceptor = self.acceptor().map_err(|e| {
            warn!(error = %e, "no TLS for the control connection");
        })?;
        let limit = self.shared.settings.limits.accept_timeout;
        match self.control.start_tls(&acceptor.control, limit).await {
            Ok(shown) => {
                debug!(peer = %self.conn.peer, tls = %shown, "TLS established");
                self.host_from_tls_name();
                Ok(())
            }
            Err(e) => {
                info!(peer = %self.conn.peer, error = %e, "TLS handshake failed");
                Err(())
            }
        }
    }

    /// Under PROT P, the TLS handshake on a data connection (the preliminary reply is already
    /// sent: clients such as Python's ftplib start the handshake only after it) and, when
    /// required, the check that it resumed this session's TLS session.
    async fn protect(
        &mut self,
        tcp: TcpStream,
        require_resumed: bool,
        upload: bool,
    ) -> Result<Stream, TransferEnd> {
        let acceptor = self.acceptor().map_err(|e| {
            warn!(error = %e, "no TLS for the data connection");
            TransferEnd::LocalSetup
        })?;
        let limit = self.shared.settings.limits.accept_timeout;
        let tls = acceptor.data(usize::from(!upload));
        let handshake = match tokio::time::timeout(limit, tls.acceptor.accept(tcp)).await {
            Ok(r) => r.map_err(Some),
            Err(_) => Err(None),
        };
        Self::protected(self.conn.peer, limit, handshake, &tls, require_resumed).await
    }

    /// The result of a data connection's TLS handshake (`Err(None)`: it timed out), and the
    /// check that it resumed a session of this client.
    /// No borrow of the driver across the wait: its future must stay `Send`.
    async fn protected(
        peer: std::net::SocketAddr,
        limit: Duration,
        handshake: Handshake,
        tls: &DataTls,
        require_resumed: bool,
    ) -> Result<Stream, TransferEnd> {
        let stream = match handshake {
            Ok(tls) => Stream::from(tls),
            Err(Some(e)) => {
                debug!(peer = %peer, error = %e, "TLS handshake on the data connection failed");
                return Err(TransferEnd::TlsFailed);
            }
            Err(None) => return Err(TransferEnd::TlsTimedOut),
        };
        let resumed = stream.tls_facts().is_some_and(|f| f.resumed);
        if require_resumed && !tls.resumed_by_owner(resumed, limit).await {
            warn!(peer = %peer, "data connection did not resume the control connection's TLS session (nor one of the same user from the same address)");
            return Err(TransferEnd::NotResumed);
        }
        Ok(stream)
    }

    /// The port of the passive listener waiting for the client, if there is one.
    fn passive_port(&self) -> Option<u16> {
        match &self.passive {
            Some(Passive::Listening(l)) => l.local_addr().ok().map(|a| a.port()),
            Some(Passive::Arriving(early)) => Some(early.port),
            None => None,
        }
    }

    /// The data connection of a transfer: accepted (passive) or made (active).
    async fn data_connection(&mut self, data: DataChannel) -> io::Result<Arrived> {
        let settings = &self.shared.settings;
        let limit = settings.limits.accept_timeout;
        match (data, self.passive.take()) {
            (DataChannel::Passive, Some(Passive::Arriving(mut early))) => {
                early.connected(limit).await?;
                Ok(match early.take().await? {
                    Early::Plain(tcp) => Arrived::Tcp(tcp),
                    Early::Tls(handshake) => Arrived::Tls(handshake),
                })
            }
            (DataChannel::Passive, Some(Passive::Listening(listener))) => {
                let deadline = Instant::now() + limit;
                channel::accept_passive(
                    listener,
                    self.conn.data_peers(),
                    settings.passive.allow_foreign_peer,
                    deadline,
                    &self.intruder,
                )
                .await
                .map(Arrived::Tcp)
            }
            (DataChannel::Passive, None) => Err(io::Error::other("no passive listener")),
            (DataChannel::Active(target), _) => channel::connect_active(
                target,
                self.conn.local.ip(),
                settings.active.source_port,
                settings.limits.connect_timeout,
            )
            .await
            .map(Arrived::Tcp),
        }
    }

    // ---- transfers ----

    /// Runs one transfer: the data connection, the preliminary reply, TLS, then the bytes while
    /// the control connection is still read (ABOR, STAT, commands queued for later).
    async fn transfer(&mut self, spec: TransferSpec) -> io::Result<TransferEnd> {
        let started = Instant::now();
        let held = std::mem::take(&mut self.held);
        // The upload's limits, and the settling of its bytes however the transfer ends.
        let cap = self.cap.take();
        let mut settle = cap.as_ref().map(|c| transfer::CapSettle {
            state: c.state.clone(),
            written: c.written.clone(),
            freed: c.freed,
            committed: false,
        });
        let passive_port = self.passive_port();
        // SITE DIAG remembers how the wait ended.
        let seen = self.passive_seen.take();
        let arrived = self.data_connection(spec.data).await;
        self.passive_count = None;
        let arrived = match arrived {
            Ok(s) => {
                if let Some(seen) = seen {
                    seen.connected();
                }
                s
            }
            Err(e) => {
                // Why, in the log with the advice, in the 425 (so that any client's log shows
                // where the data connection broke), and for SITE DIAG.
                let limits = &self.shared.settings.limits;
                let secs = limits.accept_timeout.as_secs();
                let why = match (spec.data, e.kind()) {
                    (DataChannel::Passive, io::ErrorKind::TimedOut) => {
                        passive_port.map(|port| match self.intruder.get() {
                            Some(from) => DataFailure::PassiveForeign { port, from, secs },
                            None => DataFailure::PassiveTimeout { port, secs },
                        })
                    }
                    (DataChannel::Active(addr), io::ErrorKind::ConnectionRefused) => {
                        Some(DataFailure::ActiveRefused { addr })
                    }
                    (DataChannel::Active(addr), io::ErrorKind::TimedOut) => {
                        Some(DataFailure::ActiveTimeout {
                            addr,
                            secs: limits.connect_timeout.as_secs(),
                        })
                    }
                    _ => None,
                };
                return Ok(match why {
                    Some(why) => {
                        warn!(session = self.conn.id, peer = %self.conn.peer, verb = spec.verb, error = %e, "data connection failed: {}", why.text());
                        match seen {
                            Some(seen) => seen.failed(why),
                            None => self.record(spec.verb, why),
                        }
                        TransferEnd::DataFailed(why)
                    }
                    None => {
                        // Not "nobody came": the connection broke as it was made (its TLS
                        // start, an accept error). The log says what; SITE DIAG keeps nothing.
                        if let Some(seen) = seen {
                            seen.connected();
                        }
                        warn!(session = self.conn.id, peer = %self.conn.peer, verb = spec.verb, error = %e, "data connection failed");
                        TransferEnd::NoConnection
                    }
                });
            }
        };
        self.send_reply(&spec.preliminary).await?;
        let protected = match (arrived, spec.protect) {
            (Arrived::Tcp(tcp), false) => Ok(Stream::Plain(tcp)),
            (Arrived::Tcp(tcp), true) => {
                let upload = matches!(spec.body, Body::Upload);
                self.protect(tcp, spec.require_resumed, upload).await
            }
            (Arrived::Tls(early), true) => {
                let (handshake, tls) = *early;
                let limit = self.shared.settings.limits.accept_timeout;
                Self::protected(self.conn.peer, limit, handshake, &tls, spec.require_resumed).await
            }
            // A TLS hello on a connection that is to carry data in clear (PROT C came after
            // PASV): the client and the session disagree.
            (Arrived::Tls(_), false) => Err(TransferEnd::TlsFailed),
        };
        let stream = match protected {
            Ok(s) => s,
            Err(end) => return Ok(end),
        };
        let throttle: Arc<dyn wharf_net::copy::Throttle> = match (&self.home, &spec.body) {
            (Some(h), Body::Upload) => h.throttles.upload.clone(),
            (Some(h), _) => h.throttles.download.clone(),
            (None, _) => Arc::new(wharf_net::copy::Unlimited),
        };
        // The admin listener sees the transfer and its bytes while it runs.
        let entry = self.entry.entry.clone();
        let direction = direction_of(&spec.body);
        entry.set_running(Some(crate::monitor::Running {
            verb: spec.verb,
            path: spec.path.as_ref().map_or_else(
                || String::from_utf8_lossy(&spec.arg).into_owned(),
                |p| p.to_string(),
            ),
            direction,
            started: started.into_std(),
        }));
        let progress = &entry.bytes;
        let job = transfer::Job {
            body: &spec.body,
            ascii: spec.ascii,
            require_close_notify: spec.require_close_notify,
            stall: self.shared.settings.limits.data_timeout,
            throttle: throttle.as_ref(),
            progress,
            cap,
        };
        // Boxed so that it can be dropped (closing the data connection) before the final reply.
        let mut work = Box::pin(transfer::run(stream, held, job));
        let finished = match self.watch(&mut work, &entry, progress).await? {
            Watched::Done(r) => Some(r),
            Watched::Aborted => None,
            Watched::Kicked => {
                drop(work);
                self.log_transfer(&spec, progress, started, "ended by the administrator");
                return Ok(TransferEnd::Kicked);
            }
            Watched::ControlLost => {
                drop(work);
                self.log_transfer(&spec, progress, started, "control connection lost");
                return Ok(TransferEnd::ControlLost);
            }
        };
        // Dropping the future closes the data connection; dropping an uncommitted upload
        // abandons it (a replacement's temporary file goes, the old file stays).
        drop(work);
        let end = match finished {
            None => TransferEnd::Aborted,
            Some((Ok(bytes), upload)) => match upload {
                Some(upload) => {
                    match backend(self.shared.settings.limits.backend_timeout, upload.commit())
                        .await
                    {
                        Ok(()) => {
                            if let Some(s) = settle.as_mut() {
                                s.committed = true;
                            }
                            TransferEnd::Done { bytes }
                        }
                        Err(e) => {
                            self.log_transfer(&spec, progress, started, "commit failed");
                            return Ok(TransferEnd::Commit(e.kind()));
                        }
                    }
                }
                None => TransferEnd::Done { bytes },
            },
            Some((Err(e), mut upload)) => {
                // Over quota or size: nothing of the upload stays.
                let exceeded = match &e {
                    CopyError::Local(err) => transfer::cap_exceeded(err),
                    _ => None,
                };
                let undone = match (exceeded, upload.as_mut()) {
                    (Some(_), Some(u)) => u.discard(),
                    _ => storage::Undone::Unchanged,
                };
                drop(upload);
                self.log_transfer(&spec, progress, started, &e.to_string());
                return Ok(match e {
                    CopyError::Wire(_) => TransferEnd::Wire,
                    CopyError::Stalled => TransferEnd::Stalled,
                    CopyError::Truncated => TransferEnd::Truncated,
                    CopyError::Local(_) if exceeded.is_some() => TransferEnd::Exceeded {
                        quota: exceeded == Some(true),
                        undone,
                    },
                    CopyError::Local(e) if storage::is_no_space(&e) => TransferEnd::NoSpace,
                    CopyError::Local(_) => TransferEnd::Local,
                });
            }
        };
        let result = match end {
            TransferEnd::Aborted => "aborted",
            _ => "ok",
        };
        self.log_transfer(&spec, progress, started, result);
        Ok(end)
    }

    // ---- hashes ----

    /// Hashes the opened file (HASH, XSHA256…) as a transfer runs: the control connection is
    /// still read, so STAT answers, other commands queue, and ABOR, a kick or the loss of the
    /// control connection drop the work at once (see `crate::hash` for the turns it waits
    /// for and where the CPU work runs).
    async fn hash(&mut self, spec: HashSpec) -> io::Result<Result<HashDone, TransferEnd>> {
        let started = Instant::now();
        let Held::Read(handle) = std::mem::take(&mut self.held) else {
            warn!(
                session = self.conn.id,
                verb = spec.verb,
                "hash without an opened file"
            );
            return Ok(Err(TransferEnd::Local));
        };
        let Some(home) = &self.home else {
            return Ok(Err(TransferEnd::Local));
        };
        let turns = crate::hash::Turns {
            user: home.seat.state.hashing.0.clone(),
            server: self.live.hashing.clone(),
        };
        let entry = self.entry.entry.clone();
        entry.set_running(Some(crate::monitor::Running {
            verb: spec.verb,
            path: Self::shown_path(&spec.path, &spec.arg),
            // It reads the file, as a download does; nothing goes to the client but the reply.
            direction: crate::monitor::Direction::Download,
            started: started.into_std(),
        }));
        let progress = &entry.bytes;
        let stall = self.shared.settings.limits.data_timeout;
        let len = spec.end.saturating_sub(spec.start);
        let mut work = Box::pin(crate::hash::digest(
            handle.body,
            spec.algorithm,
            len,
            turns,
            stall,
            progress,
        ));
        let finished = match self.watch(&mut work, &entry, progress).await? {
            Watched::Done(r) => Some(r),
            Watched::Aborted => None,
            Watched::Kicked => {
                drop(work);
                self.log_hash(&spec, progress, started, "ended by the administrator");
                return Ok(Err(TransferEnd::Kicked));
            }
            Watched::ControlLost => {
                drop(work);
                self.log_hash(&spec, progress, started, "control connection lost");
                return Ok(Err(TransferEnd::ControlLost));
            }
        };
        // Dropping the future stops the hashing task after the chunk in hand.
        drop(work);
        let r = match finished {
            None => Err(TransferEnd::Aborted),
            Some(Ok(digest)) => Ok(HashDone { digest }),
            Some(Err(e)) => {
                self.log_hash(&spec, progress, started, &e.to_string());
                return Ok(Err(TransferEnd::Local));
            }
        };
        let result = if r.is_ok() { "ok" } else { "aborted" };
        self.log_hash(&spec, progress, started, result);
        Ok(r)
    }

    /// The absolute path when the session resolved one, else the argument as sent.
    fn shown_path(path: &Option<VPath>, arg: &[u8]) -> String {
        path.as_ref().map_or_else(
            || String::from_utf8_lossy(arg).into_owned(),
            |p| p.to_string(),
        )
    }

    /// The hash's line in the log, as a transfer's: verb, path, bytes, time, result.
    fn log_hash(&self, spec: &HashSpec, progress: &AtomicU64, started: Instant, result: &str) {
        // Read before `set_running` clears the count.
        let bytes = progress.load(Ordering::Relaxed);
        self.entry.entry.set_running(None);
        info!(
            session = self.conn.id,
            peer = %self.conn.peer,
            user = self.session.user_name().unwrap_or("-"),
            verb = spec.verb,
            path = Self::shown_path(&spec.path, &spec.arg),
            algorithm = spec.algorithm.name(),
            start = spec.start,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            result,
            host = self.host_name(),
            "hash"
        );
    }

    /// Runs `work` (a transfer or a hash) while the control connection is still read: each
    /// line goes to the session with the bytes moved so far (STAT answers, other commands
    /// queue), until the work ends, the session asks for the stop (ABOR, a flood), the
    /// administrator ends the session, or the control connection goes.
    async fn watch<F: Future + Unpin>(
        &mut self,
        work: &mut F,
        entry: &crate::monitor::SessionEntry,
        progress: &AtomicU64,
    ) -> io::Result<Watched<F::Output>> {
        loop {
            tokio::select! {
                r = &mut *work => return Ok(Watched::Done(r)),
                _ = entry.kicked() => return Ok(Watched::Kicked),
                ev = self.control.next_event() => match ev {
                    Ok(Some(ev)) => {
                        self.session.set_progress(progress.load(Ordering::Relaxed));
                        self.session.handle_line(ev, now());
                        if self.during_transfer().await? {
                            return Ok(Watched::Aborted);
                        }
                    }
                    Ok(None) | Err(_) => return Ok(Watched::ControlLost),
                },
            }
        }
    }

    /// What the session said to a line that came during the transfer: replies go out at once;
    /// `true` when it asks for the transfer to stop.
    async fn during_transfer(&mut self) -> io::Result<bool> {
        let mut stop = false;
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Reply(r) => self.send_reply(&r).await?,
                Output::Note(n) => self.note(n),
                Output::Do(Action::AbortTransfer) => stop = true,
                Output::Do(other) => debug!(action = ?other, "unexpected action during a transfer"),
            }
        }
        Ok(stop)
    }

    fn log_transfer(
        &self,
        spec: &TransferSpec,
        progress: &AtomicU64,
        started: Instant,
        result: &str,
    ) {
        let path = spec.path.as_ref().map_or_else(
            || String::from_utf8_lossy(&spec.arg).into_owned(),
            |p| p.to_string(),
        );
        let bytes = progress.load(Ordering::Relaxed);
        let direction = direction_of(&spec.body);
        self.live
            .monitor
            .metrics
            .transfer(direction, result == "ok", bytes);
        self.entry.entry.set_running(None);
        let user = self.session.user_name().unwrap_or("-");
        let kind = match spec.body {
            Body::Download => Some(crate::hooks::EventKind::Download),
            Body::Upload => Some(crate::hooks::EventKind::Upload),
            Body::Listing { .. } => None,
        };
        if let (Some(kind), "ok") = (kind, result) {
            self.emit(kind, user, Some(path.clone()), Some(bytes));
        }
        if let (Some(xfer), Body::Download | Body::Upload) =
            (&self.shared.services.xferlog, &spec.body)
        {
            let entry = crate::xferlog::Entry {
                unix_time: crate::transfer::unix_now(),
                secs: started.elapsed().as_secs(),
                host: self.conn.peer.ip(),
                bytes,
                path: &path,
                ascii: spec.ascii,
                incoming: matches!(spec.body, Body::Upload),
                anonymous: self.home.as_ref().is_some_and(|h| h.shared),
                user,
                complete: result == "ok",
            };
            if let Err(e) = xfer.record(&entry) {
                warn!(file = %xfer.path().display(), error = %e, "cannot write the transfer log");
            }
        }
        info!(
            session = self.conn.id,
            peer = %self.conn.peer,
            user,
            verb = spec.verb,
            path,
            bytes,
            ms = started.elapsed().as_millis() as u64,
            result,
            host = self.host_name(),
            "transfer"
        );
    }
}

/// The IPv4 address for PASV replies: the configured masquerade address (a name resolved
/// now, so that it follows DNS changes), or `None` for the control connection's own.
async fn passive_announce(address: &PassiveAddress) -> Option<std::net::Ipv4Addr> {
    match address {
        PassiveAddress::Local => None,
        PassiveAddress::Fixed(ip) => Some(*ip),
        PassiveAddress::Resolve(name) => match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(addrs) => {
                let found = addrs
                    .filter_map(|a| match a.ip() {
                        std::net::IpAddr::V4(ip) => Some(ip),
                        std::net::IpAddr::V6(_) => None,
                    })
                    .next();
                if found.is_none() {
                    warn!(name = %name, "passive address has no IPv4 address; announcing the local one");
                }
                found
            }
            Err(e) => {
                warn!(name = %name, error = %e, "cannot resolve passive address; announcing the local one");
                None
            }
        },
    }
}

/// What a transfer moves, as the counters and the session table name it.
fn direction_of(body: &Body) -> crate::monitor::Direction {
    match body {
        Body::Download => crate::monitor::Direction::Download,
        Body::Upload => crate::monitor::Direction::Upload,
        Body::Listing { .. } => crate::monitor::Direction::Listing,
    }
}

/// A call to a storage backend, bounded: no answer in time is "unavailable".
async fn backend<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StorageError>>,
) -> Result<T, StorageError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(StorageError::Unavailable(format!(
            "no answer within {} s",
            limit.as_secs()
        )))
    })
}

/// Closes a connection over the limits with 421, without blocking the accept loop.
pub(crate) async fn refuse(mut stream: TcpStream, text: &'static str) {
    let r = Reply::new(ReplyCode::SERVICE_UNAVAILABLE, text).to_bytes();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&r).await;
        let _ = stream.shutdown().await;
        sleep(Duration::from_millis(50)).await;
    })
    .await;
}

/// How work run by [`Driver::watch`] ended.
enum Watched<T> {
    Done(T),
    /// The session asked for the stop (ABOR, a flood of commands).
    Aborted,
    /// The administrator ended the session.
    Kicked,
    ControlLost,
}
