//! One control connection: reads commands, dispatches them through one `match`, and runs
//! transfers while it keeps reading the control connection (for ABOR and STAT).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};
use wharf_proto::command::{HELP_VERBS, Opts, Site};
use wharf_proto::hostport::{self, EpsvArg};
use wharf_proto::listing::{self, Fact, MlsxRole, PermFacts};
use wharf_proto::{
    Command, FileInfo, FileKind, LineBuffer, LineEvent, ProtLevel, Reply, ReplyCode, TransferType,
    VPath,
};

use crate::auth::{Account, Permissions};
use crate::config::ServerConfig;
use crate::data::{self, DataSetup, Source, TransferError};
use crate::storage::{Storage, StorageError, Upload, WriteMode};
use crate::tls::{self, MaybeTls, TlsMode};

/// The value of a `Result<T, Reply>`, or: send the reply and end the command.
macro_rules! or_reply {
    ($session:ident, $result:expr) => {
        match $result {
            Ok(v) => v,
            Err(r) => return $session.send(r).await,
        }
    };
}

/// A command's work: boxed, and sized to that command (see [`Session::dispatch`]).
type CommandFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Flow>> + Send + 'a>>;

/// What the session does after a command.
enum Flow {
    Continue,
    Close,
}

/// Login progress. The user's storage exists only once logged in.
enum Login {
    Fresh,
    NeedPassword(Vec<u8>),
    LoggedIn(User),
}

struct User {
    account: Account,
    storage: Arc<dyn Storage>,
}

/// What one command left for the very next one: REST's offset or RNFR's path. Taken at the
/// start of every command, so it never outlives the command after it.
#[derive(Default)]
enum Pending {
    #[default]
    None,
    Rest(u64),
    RenameFrom(VPath),
}

/// The control connection: the socket (TLS after AUTH TLS or on the implicit listener), the line
/// buffer, and a reused output buffer.
struct Control {
    /// `None` only after a failed TLS handshake, which ends the session.
    stream: Option<MaybeTls>,
    lines: LineBuffer,
    out: Vec<u8>,
    write_timeout: Duration,
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
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            if stream.read_buf(buf).await? == 0 {
                return Ok(None);
            }
            self.drain_past_urgent_mark();
        }
    }

    fn is_tls(&self) -> bool {
        self.stream.as_ref().is_some_and(MaybeTls::is_tls)
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
        let Some(MaybeTls::Plain(tcp)) = self.stream.take() else {
            return Err(io::Error::other("TLS is already active"));
        };
        let tls = tokio::time::timeout(limit, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let shown = tls::describe(&tls);
        self.stream = Some(MaybeTls::Tls(Box::new(tls)));
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
        let Some(MaybeTls::Plain(stream)) = &self.stream else {
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
    async fn send(&mut self, reply: &Reply) -> io::Result<()> {
        self.out.clear();
        reply.encode(&mut self.out);
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let write = async {
            stream.write_all(&self.out).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client does not read replies",
            )),
        }
    }
}

/// What a transfer command moves.
enum Payload {
    Download(Source),
    Upload(Upload),
}

pub(crate) struct Session {
    config: Arc<ServerConfig>,
    control: Control,
    /// The client's address (IPv4-mapped addresses canonicalised), for PORT/EPRT and passive
    /// peer checks.
    peer: SocketAddr,
    /// Our end of the control connection: the address passive listeners bind to and active
    /// connections leave from.
    local: SocketAddr,
    login: Login,
    cwd: VPath,
    transfer_type: TransferType,
    data: DataSetup,
    /// After `EPSV ALL` only EPSV may set up data connections (RFC 2428 §4).
    epsv_all: bool,
    pending: Pending,
    facts: Vec<Fact>,
    failed_logins: u32,
    shutdown: watch::Receiver<bool>,
    /// Commands that arrived while a transfer ran, run after it.
    queued: VecDeque<LineEvent>,
    /// This session's TLS acceptor (its own session cache and ticket key), made when the control
    /// connection goes TLS; data connections under PROT P use it too.
    tls: Option<tls::SessionTls>,
    /// Came in on an implicit-TLS listener: the handshake comes before the banner.
    implicit_tls: bool,
    /// PBSZ seen (RFC 4217: before PROT).
    pbsz: bool,
    prot: ProtLevel,
}

fn reply(code: ReplyCode, text: impl AsRef<[u8]>) -> Reply {
    Reply::new(code, text)
}

fn not_logged_in() -> Reply {
    reply(ReplyCode::NOT_LOGGED_IN, "Please login with USER and PASS.")
}

fn denied() -> Reply {
    reply(ReplyCode::FILE_UNAVAILABLE, "Permission denied.")
}

impl Session {
    pub(crate) fn new(
        stream: TcpStream,
        config: Arc<ServerConfig>,
        shutdown: watch::Receiver<bool>,
        implicit_tls: bool,
    ) -> io::Result<Session> {
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        let peer = canon(stream.peer_addr()?);
        let local = canon(stream.local_addr()?);
        // Urgent data stays in the stream, so `IAC IP IAC DM ABOR` (and ftplib's ABOR sent
        // wholly as urgent data) arrives intact.
        socket2::SockRef::from(&stream).set_out_of_band_inline(true)?;
        stream.set_nodelay(true)?;
        let write_timeout = config.limits.data_timeout;
        Ok(Session {
            config,
            control: Control {
                stream: Some(MaybeTls::Plain(stream)),
                lines: LineBuffer::new(),
                out: Vec::new(),
                write_timeout,
            },
            peer,
            local,
            login: Login::Fresh,
            cwd: VPath::root(),
            transfer_type: TransferType::Image,
            data: DataSetup::None,
            epsv_all: false,
            pending: Pending::None,
            facts: Fact::ALL.into_iter().filter(|f| f.is_default()).collect(),
            failed_logins: 0,
            shutdown,
            queued: VecDeque::new(),
            tls: None,
            implicit_tls,
            pbsz: implicit_tls,
            // Implicit TLS: data is protected from the start (what clients of port 990 expect).
            prot: if implicit_tls {
                ProtLevel::Private
            } else {
                ProtLevel::Clear
            },
        })
    }

    fn user_name(&self) -> &str {
        match &self.login {
            Login::LoggedIn(u) => &u.account.name,
            _ => "-",
        }
    }

    /// Runs the session to its end; `hold` is released after it. A plain function returning an
    /// `async move` block: an `async fn` would keep a second copy of the session in its future
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
            info!(peer = %self.peer, "session opened");
            let result = self.serve().await;
            if let Err(e) = &result {
                debug!(peer = %self.peer, error = %e, "control connection error");
            }
            info!(
                peer = %self.peer,
                user = self.user_name(),
                secs = started.elapsed().as_secs(),
                "session closed"
            );
            drop(hold);
        }
    }

    async fn serve(&mut self) -> io::Result<()> {
        if self.implicit_tls {
            let acceptor = self.acceptor()?;
            let shown = Box::pin(
                self.control
                    .start_tls(&acceptor.control, self.config.limits.accept_timeout),
            )
            .await?;
            debug!(peer = %self.peer, tls = %shown, "implicit TLS established");
        }
        let banner = reply(ReplyCode::READY, self.config.banner.clone());
        self.control.send(&banner).await?;
        loop {
            if *self.shutdown.borrow() {
                let r = reply(ReplyCode::SERVICE_UNAVAILABLE, "Server shutting down.");
                return self.control.send(&r).await;
            }
            let event = match self.queued.pop_front() {
                Some(ev) => ev,
                None => match self.wait_for_command().await? {
                    Some(ev) => ev,
                    None => return Ok(()),
                },
            };
            let flow = match event {
                LineEvent::TooLong => {
                    self.pending = Pending::None;
                    let r = reply(ReplyCode::SYNTAX_ERROR, "Command line too long.");
                    self.control.send(&r).await?;
                    Flow::Continue
                }
                LineEvent::Line(line) => match Command::parse(&line) {
                    Ok(cmd) => {
                        debug!(peer = %self.peer, verb = cmd.verb(), "command");
                        self.dispatch(cmd).await?
                    }
                    Err(e) => {
                        self.pending = Pending::None;
                        self.control.send(&e.reply()).await?;
                        Flow::Continue
                    }
                },
            };
            if let Flow::Close = flow {
                return Ok(());
            }
        }
    }

    /// Waits for the next command while idle: also closes an unused passive listener when it
    /// expires, and ends the session on idle timeout or shutdown. `Ok(None)`: end the session.
    ///
    /// This is the future an idle session sits in, so it is kept small: one timer for whichever
    /// deadline comes first, and the rare replies boxed.
    async fn wait_for_command(&mut self) -> io::Result<Option<LineEvent>> {
        let idle_deadline = Instant::now() + self.config.limits.idle_timeout;
        loop {
            let passive_expiry = match &self.data {
                DataSetup::Passive { expires, .. } => Some(*expires),
                _ => None,
            };
            let wake = passive_expiry.map_or(idle_deadline, |t| t.min(idle_deadline));
            let Session {
                control, shutdown, ..
            } = self;
            let closing = tokio::select! {
                ev = control.next_event() => return ev,
                _ = sleep_until(wake) => {
                    if Instant::now() < idle_deadline {
                        debug!(peer = %self.peer, "passive listener expired unused");
                        self.data = DataSetup::None;
                        continue;
                    }
                    "Timeout: closing control connection."
                }
                // The guard `wait_for` returns is not Send: drop it inside the inner future.
                _ = async { drop(shutdown.wait_for(|&v| v).await) } => "Server shutting down.",
            };
            let r = reply(ReplyCode::SERVICE_UNAVAILABLE, closing);
            Box::pin(self.control.send(&r)).await?;
            return Ok(None);
        }
    }

    async fn send(&mut self, r: Reply) -> io::Result<Flow> {
        self.control.send(&r).await?;
        Ok(Flow::Continue)
    }

    /// The logged-in user, or the 530 reply to send.
    fn user(&self) -> Result<(&Account, Arc<dyn Storage>), Reply> {
        match &self.login {
            Login::LoggedIn(u) => Ok((&u.account, u.storage.clone())),
            _ => Err(not_logged_in()),
        }
    }

    /// Checks login and one permission; resolves a path argument.
    fn authorize(
        &self,
        need: impl Fn(&Permissions) -> bool,
        arg: Option<&[u8]>,
    ) -> Result<(Arc<dyn Storage>, VPath), Reply> {
        let (account, storage) = self.user()?;
        if !need(&account.permissions) {
            return Err(denied());
        }
        let path = match arg {
            Some(a) => self
                .cwd
                .join(a)
                .map_err(|e| reply(ReplyCode::FILE_UNAVAILABLE, format!("Invalid path: {e}.")))?,
            None => self.cwd.clone(),
        };
        Ok((storage, path))
    }

    /// The one dispatch point: every command is one arm. Each arm's future is boxed on its own,
    /// so a command takes only the memory its own work needs, and only while it runs: an idle
    /// session's task stays small, and so do hundreds of sessions waiting at once in PASS while
    /// their passwords are hashed (one future for all commands would be the size of the largest,
    /// a transfer's).
    fn dispatch(&mut self, cmd: Command) -> CommandFuture<'_> {
        let pending = std::mem::take(&mut self.pending);
        let logged_in = matches!(self.login, Login::LoggedIn(_));
        let allowed_before_login = matches!(
            cmd,
            Command::User(_)
                | Command::Pass(_)
                | Command::Auth
                | Command::Pbsz(_)
                | Command::Prot(_)
                | Command::Ccc
                | Command::Acct
                | Command::Quit
                | Command::Rein
                | Command::Feat
                | Command::Syst
                | Command::Help(_)
                | Command::Noop
                | Command::Opts(_)
                | Command::Host(_)
                | Command::Abor
                | Command::Stat(None)
        );
        if !logged_in && !allowed_before_login {
            return Box::pin(self.send(not_logged_in()));
        }
        match cmd {
            Command::Auth => Box::pin(self.cmd_auth()),
            Command::Pbsz(_) => Box::pin(async move {
                if !self.control.is_tls() {
                    return self
                        .send(reply(ReplyCode::BAD_SEQUENCE, "PBSZ needs AUTH TLS first."))
                        .await;
                }
                self.pbsz = true;
                // TLS has no protection buffer: whatever was asked, the size is 0 (RFC 4217 §9).
                self.send(reply(ReplyCode::SECURITY_OK, "PBSZ=0")).await
            }),
            Command::Prot(level) => Box::pin(self.cmd_prot(level)),
            Command::Ccc => Box::pin(async move {
                self.send(reply(
                    ReplyCode::POLICY_DENIED,
                    "CCC refused: the control connection stays encrypted.",
                ))
                .await
            }),
            Command::User(name) => Box::pin(self.cmd_user(name)),
            Command::Pass(pw) => Box::pin(self.cmd_pass(pw)),
            Command::Acct => Box::pin(async move {
                self.send(reply(ReplyCode::SUPERFLUOUS, "Account not needed."))
                    .await
            }),
            Command::Quit => Box::pin(async move {
                self.control
                    .send(&reply(ReplyCode::CLOSING, "Goodbye."))
                    .await?;
                Ok(Flow::Close)
            }),
            Command::Rein => Box::pin(async move {
                self.start_over();
                self.send(reply(ReplyCode::READY, "Ready for new user."))
                    .await
            }),
            Command::Host(_) => Box::pin(async move {
                if matches!(self.login, Login::Fresh) {
                    self.send(reply(ReplyCode::READY, "Host accepted.")).await
                } else {
                    self.send(reply(
                        ReplyCode::BAD_SEQUENCE,
                        "HOST must come before USER.",
                    ))
                    .await
                }
            }),
            Command::Cwd(arg) => Box::pin(async move { self.cmd_cwd(&arg).await }),
            Command::Cdup => Box::pin(async move {
                // At the root, CDUP stays there, as in a chroot.
                self.cwd = self.cwd.parent();
                self.send(reply(ReplyCode::OK, "Directory successfully changed."))
                    .await
            }),
            Command::Pwd => Box::pin(async move {
                let mut text = listing_quote(&self.cwd.to_bytes());
                text.extend_from_slice(b" is the current directory.");
                self.send(Reply::new(ReplyCode::PATH_CREATED, text)).await
            }),
            Command::Port(addr) => Box::pin(self.cmd_port(SocketAddr::V4(addr), "PORT")),
            Command::Eprt(addr) => Box::pin(self.cmd_port(addr, "EPRT")),
            Command::Pasv => Box::pin(self.cmd_pasv()),
            Command::Epsv(arg) => Box::pin(self.cmd_epsv(arg)),
            Command::Type(t) => Box::pin(async move {
                self.transfer_type = t;
                let text = match t {
                    TransferType::Ascii => "Switching to ASCII mode.",
                    TransferType::Image => "Switching to Binary mode.",
                };
                self.send(reply(ReplyCode::OK, text)).await
            }),
            Command::Stru => {
                Box::pin(
                    async move { self.send(reply(ReplyCode::OK, "Structure set to F.")).await },
                )
            }
            Command::Mode => Box::pin(self.send(reply(ReplyCode::OK, "Mode set to S."))),
            Command::Allo => Box::pin(async move {
                self.send(reply(ReplyCode::SUPERFLUOUS, "ALLO command ignored."))
                    .await
            }),
            Command::Rest(offset) => Box::pin(async move {
                if self.transfer_type == TransferType::Ascii && offset > 0 {
                    return self
                        .send(reply(
                            ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                            "REST not supported in ASCII mode.",
                        ))
                        .await;
                }
                self.pending = Pending::Rest(offset);
                self.send(reply(
                    ReplyCode::PENDING_FURTHER_INFO,
                    format!("Restart position accepted ({offset})."),
                ))
                .await
            }),
            Command::Retr(arg) => Box::pin(async move {
                let offset = match pending {
                    Pending::Rest(n) => n,
                    _ => 0,
                };
                self.cmd_retr(&arg, offset).await
            }),
            Command::Stor(arg) => Box::pin(async move {
                let mode = match pending {
                    Pending::Rest(n) if n > 0 => WriteMode::Resume(n),
                    _ => WriteMode::Replace,
                };
                self.cmd_store(&arg, mode, "STOR").await
            }),
            Command::Appe(arg) => {
                Box::pin(async move { self.cmd_store(&arg, WriteMode::Append, "APPE").await })
            }
            Command::Stou => Box::pin(async move {
                let name = format!("wharf.{}", crate::storage::random_hex(6));
                self.cmd_store(name.as_bytes(), WriteMode::CreateNew, "STOU")
                    .await
            }),
            Command::Rnfr(arg) => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.rename, Some(&arg)));
                let p = path.clone();
                match blocking(move || storage.stat(&p)).await {
                    Ok(_) => {
                        self.pending = Pending::RenameFrom(path);
                        self.send(reply(ReplyCode::PENDING_FURTHER_INFO, "Ready for RNTO."))
                            .await
                    }
                    Err(e) => self.send(e.reply()).await,
                }
            }),
            Command::Rnto(arg) => Box::pin(async move {
                let Pending::RenameFrom(from) = pending else {
                    return self
                        .send(reply(ReplyCode::BAD_SEQUENCE, "RNFR required first."))
                        .await;
                };
                let (storage, to) = or_reply!(self, self.authorize(|p| p.rename, Some(&arg)));
                // Replacing an existing target destroys it: only for users who may delete.
                let replace = self
                    .user()
                    .map(|(a, _)| a.permissions.delete)
                    .unwrap_or(false);
                let r = blocking(move || storage.rename(&from, &to, replace)).await;
                self.done(r, ReplyCode::FILE_ACTION_OK, "Rename successful.")
                    .await
            }),
            Command::Abor => Box::pin(async move {
                // Nothing is running (a running transfer handles ABOR itself).
                self.data = DataSetup::None;
                self.send(reply(
                    ReplyCode::DATA_OPEN_NO_TRANSFER,
                    "No transfer to abort.",
                ))
                .await
            }),
            Command::Dele(arg) => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.delete, Some(&arg)));
                let r = blocking(move || storage.delete(&path)).await;
                self.done(r, ReplyCode::FILE_ACTION_OK, "Delete operation successful.")
                    .await
            }),
            Command::Rmd(arg) => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.delete, Some(&arg)));
                if path.is_root() || self.cwd.components().count() >= 1 && self.cwd == path {
                    return self.send(denied()).await;
                }
                let r = blocking(move || storage.rmdir(&path)).await;
                self.done(
                    r,
                    ReplyCode::FILE_ACTION_OK,
                    "Remove directory operation successful.",
                )
                .await
            }),
            Command::Mkd(arg) => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.mkdir, Some(&arg)));
                let p = path.clone();
                match blocking(move || storage.mkdir(&p)).await {
                    Ok(()) => {
                        let mut text = listing_quote(&path.to_bytes());
                        text.extend_from_slice(b" created.");
                        self.send(Reply::new(ReplyCode::PATH_CREATED, text)).await
                    }
                    Err(e) => self.send(e.reply()).await,
                }
            }),
            Command::List(arg) => Box::pin(self.cmd_list(arg, ListForm::Long)),
            Command::Nlst(arg) => Box::pin(self.cmd_list(arg, ListForm::Names)),
            Command::Mlsd(arg) => Box::pin(self.cmd_list(arg, ListForm::Machine)),
            Command::Mlst(arg) => Box::pin(self.cmd_mlst(arg)),
            Command::Site(site) => Box::pin(self.cmd_site(site)),
            Command::Syst => Box::pin(async move {
                self.send(reply(ReplyCode::SYSTEM_TYPE, "UNIX Type: L8"))
                    .await
            }),
            Command::Stat(None) => Box::pin(async move {
                let lines = vec![
                    b"Wharf FTP server status:".to_vec(),
                    format!("     Connected to {}", self.peer.ip()).into_bytes(),
                    format!("     Logged in as {}", self.user_name()).into_bytes(),
                    format!(
                        "     TYPE: {}",
                        if self.transfer_type == TransferType::Ascii {
                            "ASCII"
                        } else {
                            "BINARY"
                        }
                    )
                    .into_bytes(),
                    b"     No data connection".to_vec(),
                    b"End of status".to_vec(),
                ];
                self.send(Reply::multi(ReplyCode::SYSTEM_STATUS, lines))
                    .await
            }),
            Command::Stat(Some(arg)) => Box::pin(async move { self.cmd_stat_path(&arg).await }),
            Command::Help(None) => Box::pin(async move {
                let mut lines = vec![b"The following commands are recognized.".to_vec()];
                for row in HELP_VERBS.chunks(8) {
                    let mut line = String::new();
                    for verb in row {
                        line.push_str(&format!(" {verb:<5}"));
                    }
                    lines.push(line.into_bytes());
                }
                lines.push(b"Help OK.".to_vec());
                self.send(Reply::multi(ReplyCode::HELP, lines)).await
            }),
            Command::Help(Some(verb)) => Box::pin(async move {
                let upper = verb.to_ascii_uppercase();
                if HELP_VERBS.iter().any(|v| v.as_bytes() == upper.as_slice()) {
                    let mut text = upper;
                    text.extend_from_slice(b" is supported.");
                    self.send(Reply::new(ReplyCode::HELP, text)).await
                } else {
                    self.send(reply(ReplyCode::NOT_IMPLEMENTED, "Unknown command."))
                        .await
                }
            }),
            Command::Noop => Box::pin(self.send(reply(ReplyCode::OK, "NOOP ok."))),
            Command::Feat => Box::pin(async move {
                let mut lines = vec![b"Features:".to_vec()];
                let tls_on = self.tls_mode() != TlsMode::Off;
                if tls_on {
                    lines.push(b" AUTH TLS".to_vec());
                }
                for f in [" EPRT", " EPSV", " HOST", " MDTM", " MFMT"] {
                    lines.push(f.as_bytes().to_vec());
                }
                lines.push(listing::mlst_feat_line(&self.facts).into_bytes());
                if tls_on {
                    lines.push(b" PBSZ".to_vec());
                    lines.push(b" PROT".to_vec());
                }
                for f in [" REST STREAM", " SIZE", " TVFS", " UTF8"] {
                    lines.push(f.as_bytes().to_vec());
                }
                lines.push(b"End".to_vec());
                self.send(Reply::multi(ReplyCode::SYSTEM_STATUS, lines))
                    .await
            }),
            Command::Opts(Opts::Utf8(_)) => Box::pin(async move {
                // Names are passed as the bytes they are stored as; UTF-8 clients see UTF-8.
                self.send(reply(ReplyCode::OK, "Always in UTF8 mode."))
                    .await
            }),
            Command::Opts(Opts::Mlst(list)) => Box::pin(async move {
                let (facts, text) = listing::parse_mlst_opts(&list);
                self.facts = facts;
                self.send(reply(ReplyCode::OK, text)).await
            }),
            Command::Size(arg) => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.read, Some(&arg)));
                match blocking(move || storage.stat(&path)).await {
                    Ok(info) if info.kind == FileKind::File => {
                        self.send(reply(ReplyCode::FILE_STATUS, info.size.to_string()))
                            .await
                    }
                    Ok(_) => {
                        self.send(reply(ReplyCode::FILE_UNAVAILABLE, "Not a plain file."))
                            .await
                    }
                    Err(e) => self.send(e.reply()).await,
                }
            }),
            Command::Mdtm(arg) => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.read, Some(&arg)));
                match blocking(move || storage.stat(&path)).await {
                    Ok(info) if info.kind == FileKind::File => {
                        let t = wharf_proto::UtcTime::from_unix(info.mtime).to_timeval();
                        self.send(reply(ReplyCode::FILE_STATUS, t)).await
                    }
                    Ok(_) => {
                        self.send(reply(ReplyCode::FILE_UNAVAILABLE, "Not a plain file."))
                            .await
                    }
                    Err(e) => self.send(e.reply()).await,
                }
            }),
            Command::Mfmt { time, path: arg } => Box::pin(async move {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.write, Some(&arg)));
                let secs = time.to_unix();
                match blocking(move || storage.set_mtime(&path, secs)).await {
                    Ok(()) => {
                        let mut text = format!("Modify={}; ", time.to_timeval()).into_bytes();
                        text.extend_from_slice(&arg);
                        self.send(Reply::new(ReplyCode::FILE_STATUS, text)).await
                    }
                    Err(e) => self.send(e.reply()).await,
                }
            }),
        }
    }

    /// Replies `ok` for success, the storage error's reply otherwise.
    async fn done(
        &mut self,
        r: Result<(), StorageError>,
        code: ReplyCode,
        text: &str,
    ) -> io::Result<Flow> {
        match r {
            Ok(()) => self.send(reply(code, text)).await,
            Err(e) => self.send(e.reply()).await,
        }
    }

    /// Back to the state after the banner (REIN, and a new TLS session after AUTH): no user,
    /// root directory, binary type, no data connection set up. TLS stays as it is.
    fn start_over(&mut self) {
        self.login = Login::Fresh;
        self.cwd = VPath::root();
        self.transfer_type = TransferType::Image;
        self.data = DataSetup::None;
        self.epsv_all = false;
    }

    fn tls_mode(&self) -> TlsMode {
        self.config.tls.as_ref().map_or(TlsMode::Off, |t| t.mode)
    }

    /// This session's TLS acceptors, made on first use.
    fn acceptor(&mut self) -> io::Result<tls::SessionTls> {
        if let Some(a) = &self.tls {
            return Ok(a.clone());
        }
        let Some(tls) = &self.config.tls else {
            return Err(io::Error::other("TLS is not configured"));
        };
        let a = tls.session_acceptors()?;
        self.tls = Some(a.clone());
        Ok(a)
    }

    /// AUTH TLS: 234, then the handshake. A failed handshake ends the session (the connection
    /// is in no state to carry replies). Afterwards the session starts over, as after REIN.
    async fn cmd_auth(&mut self) -> io::Result<Flow> {
        if self.tls_mode() == TlsMode::Off {
            return self
                .send(reply(
                    ReplyCode::NOT_IMPLEMENTED,
                    "AUTH not available: TLS is not configured on this server.",
                ))
                .await;
        }
        if self.control.is_tls() {
            return self
                .send(reply(ReplyCode::BAD_SEQUENCE, "Already using TLS."))
                .await;
        }
        let acceptor = self.acceptor()?;
        self.send(reply(ReplyCode::AUTH_OK, "AUTH TLS successful."))
            .await?;
        // Commands pipelined behind AUTH (in the line buffer, or queued while a transfer ran)
        // were sent in clear: none may run as if it came over TLS.
        if self.control.lines.has_pending() || !self.queued.is_empty() {
            warn!(peer = %self.peer, "discarded commands pipelined after AUTH TLS");
        }
        self.queued.clear();
        self.pending = Pending::None;
        match self
            .control
            .start_tls(&acceptor.control, self.config.limits.accept_timeout)
            .await
        {
            Ok(shown) => {
                debug!(peer = %self.peer, tls = %shown, "TLS established");
                self.start_over();
                self.pbsz = false;
                self.prot = ProtLevel::Clear;
                Ok(Flow::Continue)
            }
            Err(e) => {
                info!(peer = %self.peer, error = %e, "TLS handshake failed");
                Ok(Flow::Close)
            }
        }
    }

    async fn cmd_prot(&mut self, level: ProtLevel) -> io::Result<Flow> {
        if !self.control.is_tls() {
            return self
                .send(reply(ReplyCode::BAD_SEQUENCE, "PROT needs AUTH TLS first."))
                .await;
        }
        if !self.pbsz {
            // RFC 4217 §9: PBSZ comes first.
            return self
                .send(reply(ReplyCode::BAD_SEQUENCE, "PROT needs PBSZ 0 first."))
                .await;
        }
        match level {
            ProtLevel::Private => {
                self.prot = ProtLevel::Private;
                self.send(reply(ReplyCode::SECURITY_OK, "Protection set to Private."))
                    .await
            }
            ProtLevel::Clear if self.tls_mode() == TlsMode::Required => {
                self.send(reply(
                    ReplyCode::POLICY_DENIED,
                    "PROT C refused: data connections must be encrypted (PROT P).",
                ))
                .await
            }
            ProtLevel::Clear => {
                self.prot = ProtLevel::Clear;
                self.send(reply(ReplyCode::SECURITY_OK, "Protection set to Clear."))
                    .await
            }
            ProtLevel::Unsupported => {
                self.send(reply(
                    ReplyCode::PROT_LEVEL_UNSUPPORTED,
                    "PROT S and E are not supported with TLS; use C or P.",
                ))
                .await
            }
        }
    }

    async fn cmd_user(&mut self, name: Vec<u8>) -> io::Result<Flow> {
        if self.tls_mode() == TlsMode::Required && !self.control.is_tls() {
            // Refused before any password is sent or checked.
            self.login = Login::Fresh;
            return self
                .send(reply(
                    ReplyCode::NOT_LOGGED_IN,
                    "TLS required: use AUTH TLS before USER.",
                ))
                .await;
        }
        // The same reply for every name, known or not (RFC 2577).
        self.login = Login::NeedPassword(name);
        self.data = DataSetup::None;
        self.send(reply(
            ReplyCode::NEED_PASSWORD,
            "Please specify the password.",
        ))
        .await
    }

    async fn cmd_pass(&mut self, password: Vec<u8>) -> io::Result<Flow> {
        let name = match std::mem::replace(&mut self.login, Login::Fresh) {
            Login::NeedPassword(name) => name,
            Login::Fresh => {
                return self
                    .send(reply(ReplyCode::BAD_SEQUENCE, "Login with USER first."))
                    .await;
            }
            logged_in @ Login::LoggedIn(_) => {
                self.login = logged_in;
                return self
                    .send(reply(ReplyCode::LOGGED_IN, "Already logged in."))
                    .await;
            }
        };
        // A failed login is answered at a fixed time after PASS arrived, whoever the user, so
        // neither the delay nor the hash check tells known names from unknown ones.
        let answer_at = Instant::now() + self.config.limits.failed_login_delay;
        let auth = self.config.auth.clone();
        let user = name.clone();
        // Hash checks are costly (Argon2: ~19 MiB each): at most a few at once, whoever asks.
        let config = self.config.clone();
        let account = {
            let _slot = config.auth_slots.acquire().await.ok();
            tokio::task::spawn_blocking(move || auth.authenticate(&user, &password))
                .await
                .ok()
                .flatten()
        };
        let shown = String::from_utf8_lossy(&name).into_owned();
        let Some(account) = account else {
            sleep_until(answer_at).await;
            self.failed_logins += 1;
            warn!(peer = %self.peer, user = %shown, "login failed");
            self.control
                .send(&reply(ReplyCode::NOT_LOGGED_IN, "Login incorrect."))
                .await?;
            if self.failed_logins >= self.config.limits.max_login_failures {
                return Ok(Flow::Close);
            }
            return Ok(Flow::Continue);
        };
        let home = account.home.clone();
        // Most logins find their home open already: no blocking thread needed for it.
        let opened = match self.config.homes.get(&home) {
            Some(fs) => Ok(Ok(fs)),
            None => {
                let config = self.config.clone();
                tokio::task::spawn_blocking(move || config.homes.open(&home)).await
            }
        };
        match opened {
            Ok(Ok(fs)) => {
                info!(peer = %self.peer, user = %account.name, "login");
                self.login = Login::LoggedIn(User {
                    account,
                    storage: fs,
                });
                self.cwd = VPath::root();
                self.send(reply(ReplyCode::LOGGED_IN, "Login successful."))
                    .await
            }
            other => {
                warn!(user = %account.name, home = %account.home.display(), result = ?other.map(|r| r.map(|_| ())), "home directory unavailable");
                self.send(reply(
                    ReplyCode::NOT_LOGGED_IN,
                    "Home directory unavailable.",
                ))
                .await
            }
        }
    }

    async fn cmd_cwd(&mut self, arg: &[u8]) -> io::Result<Flow> {
        let (storage, path) = or_reply!(self, self.authorize(|_| true, Some(arg)));
        let p = path.clone();
        match blocking(move || storage.stat(&p)).await {
            Ok(info) if info.kind == FileKind::Dir => {
                self.cwd = path;
                self.send(reply(
                    ReplyCode::FILE_ACTION_OK,
                    "Directory successfully changed.",
                ))
                .await
            }
            Ok(_) => {
                self.send(reply(ReplyCode::FILE_UNAVAILABLE, "Not a directory."))
                    .await
            }
            Err(e) => self.send(e.reply()).await,
        }
    }

    /// PORT and EPRT: RFC 2577's bounce protection happens here, before anything connects.
    async fn cmd_port(&mut self, addr: SocketAddr, verb: &str) -> io::Result<Flow> {
        if self.epsv_all {
            return self
                .send(reply(
                    ReplyCode::BAD_SEQUENCE,
                    format!("{verb} not allowed after EPSV ALL."),
                ))
                .await;
        }
        if addr.is_ipv4() != self.peer.is_ipv4() {
            let text = if self.peer.is_ipv4() {
                "Network protocol not supported, use (1)"
            } else {
                "Network protocol not supported, use (2)"
            };
            return self
                .send(reply(ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED, text))
                .await;
        }
        if !self.config.allow_foreign_active && addr.ip().to_canonical() != self.peer.ip() {
            warn!(peer = %self.peer, target = %addr, "refused {verb} to a foreign address");
            return self
                .send(reply(
                    ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                    format!("Illegal {verb}: the address must be your own."),
                ))
                .await;
        }
        if !self.config.allow_low_active_ports && addr.port() < 1024 {
            warn!(peer = %self.peer, target = %addr, "refused {verb} to a privileged port");
            return self
                .send(reply(
                    ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                    format!("Illegal {verb}: port must be 1024 or above."),
                ))
                .await;
        }
        self.data = DataSetup::Active(addr);
        self.send(reply(
            ReplyCode::OK,
            format!("{verb} command successful. Consider using EPSV."),
        ))
        .await
    }

    /// Opens a passive listener, closing any earlier one first.
    fn open_passive(&mut self) -> io::Result<u16> {
        self.data = DataSetup::None;
        let listener = data::bind_passive(self.local.ip(), self.config.passive_ports.as_ref())?;
        let port = listener.local_addr()?.port();
        self.data = DataSetup::Passive {
            listener,
            expires: Instant::now() + self.config.limits.accept_timeout,
        };
        Ok(port)
    }

    async fn cmd_pasv(&mut self) -> io::Result<Flow> {
        if self.epsv_all {
            return self
                .send(reply(
                    ReplyCode::BAD_SEQUENCE,
                    "PASV not allowed after EPSV ALL.",
                ))
                .await;
        }
        if !self.local.is_ipv4() {
            // PASV cannot carry an IPv6 address; this makes clients move on to EPSV.
            return self
                .send(reply(
                    ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                    "PASV needs IPv4; use EPSV.",
                ))
                .await;
        }
        let announce = self.passive_announce_address().await;
        match self.open_passive() {
            Ok(port) => {
                let text = hostport::pasv_reply_text(SocketAddrV4::new(announce, port));
                self.send(reply(ReplyCode::PASSIVE, text)).await
            }
            Err(e) => {
                warn!(error = %e, "cannot open passive listener");
                self.send(reply(
                    ReplyCode::CANT_OPEN_DATA,
                    "No passive port available.",
                ))
                .await
            }
        }
    }

    /// The IPv4 address for PASV replies: the configured masquerade address (a name resolved
    /// now, so that it follows DNS changes) or the control connection's local address.
    async fn passive_announce_address(&self) -> std::net::Ipv4Addr {
        let local = match self.local.ip() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        let Some(name) = &self.config.passive_address else {
            return local;
        };
        if let Ok(ip) = name.parse::<std::net::Ipv4Addr>() {
            return ip;
        }
        match tokio::net::lookup_host((name.as_str(), 0)).await {
            Ok(addrs) => {
                let found = addrs.filter_map(|a| match a.ip() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                });
                if let Some(ip) = found.into_iter().next() {
                    return ip;
                }
                warn!(name = %name, "passive address has no IPv4 address; announcing the local one");
                local
            }
            Err(e) => {
                warn!(name = %name, error = %e, "cannot resolve passive address; announcing the local one");
                local
            }
        }
    }

    async fn cmd_epsv(&mut self, arg: EpsvArg) -> io::Result<Flow> {
        let family = if self.local.is_ipv4() { 1 } else { 2 };
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                self.send(reply(ReplyCode::OK, "EPSV ALL ok.")).await
            }
            EpsvArg::Protocol(p) if p != family => {
                self.send(reply(
                    ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                    format!("Network protocol not supported, use ({family})"),
                ))
                .await
            }
            EpsvArg::Any | EpsvArg::Protocol(_) => match self.open_passive() {
                Ok(port) => {
                    self.send(reply(
                        ReplyCode::EXTENDED_PASSIVE,
                        hostport::epsv_reply_text(port),
                    ))
                    .await
                }
                Err(e) => {
                    warn!(error = %e, "cannot open passive listener");
                    self.send(reply(
                        ReplyCode::CANT_OPEN_DATA,
                        "No passive port available.",
                    ))
                    .await
                }
            },
        }
    }

    async fn cmd_retr(&mut self, arg: &[u8], offset: u64) -> io::Result<Flow> {
        let (storage, path) = or_reply!(self, self.authorize(|p| p.read, Some(arg)));
        // Path and permission first: a bad path is 550 whether or not a data connection is set up.
        if matches!(self.data, DataSetup::None) {
            return self
                .send(reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first."))
                .await;
        }
        // Opened on this thread, as uploads are written on it: an open and an fstat cost
        // microseconds, less than a round trip through the blocking pool (500 clients fetching
        // small files: 8% less server CPU). A stalled file system stalls this worker for it.
        let opened = open_for_download(storage.as_ref(), &path, offset);
        let (file, len) = match opened {
            Ok(v) => v,
            Err(e) => return self.send(e.reply()).await,
        };
        let mode = if self.transfer_type == TransferType::Ascii {
            "ASCII"
        } else {
            "BINARY"
        };
        let mut text = format!("Opening {mode} mode data connection for ").into_bytes();
        text.extend_from_slice(arg);
        text.extend_from_slice(format!(" ({len} bytes).").as_bytes());
        let payload = Payload::Download(Source::File(file));
        self.transfer(
            "RETR",
            arg,
            payload,
            Reply::new(ReplyCode::FILE_STATUS_OK, text),
        )
        .await
    }

    async fn cmd_store(&mut self, arg: &[u8], mode: WriteMode, verb: &str) -> io::Result<Flow> {
        let (storage, path) = or_reply!(self, self.authorize(|p| p.write, Some(arg)));
        // Path and permission first: a bad path is 550 whether or not a data connection is set up.
        if matches!(self.data, DataSetup::None) {
            return self
                .send(reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first."))
                .await;
        }
        let upload = match blocking(move || storage.open_write(&path, mode)).await {
            Ok(u) => u,
            Err(e) => return self.send(e.reply()).await,
        };
        let preliminary = if mode == WriteMode::CreateNew {
            let mut t = b"FILE: ".to_vec();
            t.extend_from_slice(arg);
            Reply::new(ReplyCode::FILE_STATUS_OK, t)
        } else {
            reply(ReplyCode::FILE_STATUS_OK, "Ok to send data.")
        };
        self.transfer(verb, arg, Payload::Upload(upload), preliminary)
            .await
    }

    async fn cmd_list(&mut self, arg: Option<Vec<u8>>, form: ListForm) -> io::Result<Flow> {
        let (storage, path) = or_reply!(self, self.authorize(|p| p.read, arg.as_deref()));
        // Path and permission first: a bad path is 550 whether or not a data connection is set up.
        if matches!(self.data, DataSetup::None) {
            return self
                .send(reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first."))
                .await;
        }
        let perms = self.perm_facts();
        let facts = self.facts.clone();
        let now = unix_now();
        let built = blocking(move || {
            let info = storage.stat(&path)?;
            let mut out = Vec::new();
            match (info.kind, form) {
                (FileKind::Dir, _) => {
                    let entries = storage.list(&path)?;
                    if form == ListForm::Machine {
                        let cur = FileInfo {
                            name: b".".to_vec(),
                            ..info
                        };
                        listing::push_mlsx_entry(&mut out, &cur, &facts, perms, MlsxRole::Current);
                        out.extend_from_slice(b"\r\n");
                    }
                    for e in &entries {
                        push_entry(&mut out, e, form, &facts, perms, now);
                    }
                }
                (_, ListForm::Machine) => return Err(StorageError::NotADirectory),
                _ => push_entry(&mut out, &info, form, &facts, perms, now),
            }
            Ok(out)
        })
        .await;
        let bytes = match built {
            Ok(b) => b,
            Err(StorageError::NotADirectory) if form == ListForm::Machine => {
                return self
                    .send(reply(ReplyCode::PARAMETER_SYNTAX_ERROR, "Not a directory."))
                    .await;
            }
            Err(e) => return self.send(e.reply()).await,
        };
        let verb = match form {
            ListForm::Long => "LIST",
            ListForm::Names => "NLST",
            ListForm::Machine => "MLSD",
        };
        let prelim = reply(
            ReplyCode::FILE_STATUS_OK,
            "Here comes the directory listing.",
        );
        self.transfer(
            verb,
            arg.as_deref().unwrap_or(b"."),
            Payload::Download(Source::Bytes(bytes)),
            prelim,
        )
        .await
    }

    fn perm_facts(&self) -> PermFacts {
        match &self.login {
            Login::LoggedIn(u) => {
                let p = u.account.permissions;
                PermFacts {
                    read: p.read,
                    write: p.write,
                    delete: p.delete,
                    mkdir: p.mkdir,
                    rename: p.rename,
                }
            }
            _ => PermFacts::default(),
        }
    }

    async fn cmd_mlst(&mut self, arg: Option<Vec<u8>>) -> io::Result<Flow> {
        let (storage, path) = or_reply!(self, self.authorize(|p| p.read, arg.as_deref()));
        let p = path.clone();
        match blocking(move || storage.stat(&p)).await {
            Ok(info) => {
                let info = FileInfo {
                    name: path.to_bytes(),
                    ..info
                };
                let mut entry = b" ".to_vec();
                listing::push_mlsx_entry(
                    &mut entry,
                    &info,
                    &self.facts,
                    self.perm_facts(),
                    MlsxRole::Entry,
                );
                let mut first = b"Listing ".to_vec();
                first.extend_from_slice(&path.to_bytes());
                let r = Reply::multi(
                    ReplyCode::FILE_ACTION_OK,
                    vec![first, entry, b"End".to_vec()],
                );
                self.send(r).await
            }
            Err(e) => self.send(e.reply()).await,
        }
    }

    async fn cmd_stat_path(&mut self, arg: &[u8]) -> io::Result<Flow> {
        let (storage, path) = or_reply!(self, self.authorize(|p| p.read, Some(arg)));
        let now = unix_now();
        let built = blocking(move || {
            let info = storage.stat(&path)?;
            let entries = if info.kind == FileKind::Dir {
                storage.list(&path)?
            } else {
                vec![info]
            };
            let mut lines = vec![b"Status follows:".to_vec()];
            for e in &entries {
                let mut l = Vec::new();
                listing::push_list_line(&mut l, e, now);
                l.truncate(l.len().saturating_sub(2));
                lines.push(l);
            }
            lines.push(b"End of status".to_vec());
            Ok(lines)
        })
        .await;
        match built {
            Ok(lines) => self.send(Reply::multi(ReplyCode::FILE_STATUS, lines)).await,
            Err(e) => self.send(e.reply()).await,
        }
    }

    async fn cmd_site(&mut self, site: Site) -> io::Result<Flow> {
        match site {
            Site::Help => {
                let lines = vec![
                    b"SITE commands:".to_vec(),
                    b" CHMOD HELP".to_vec(),
                    b"End".to_vec(),
                ];
                self.send(Reply::multi(ReplyCode::HELP, lines)).await
            }
            Site::Chmod { mode, path: arg } => {
                let (storage, path) = or_reply!(self, self.authorize(|p| p.write, Some(&arg)));
                let r = blocking(move || storage.chmod(&path, mode)).await;
                self.done(r, ReplyCode::OK, "SITE CHMOD command ok.").await
            }
            Site::Unknown(_) => {
                self.send(reply(ReplyCode::SYNTAX_ERROR, "Unknown SITE command."))
                    .await
            }
        }
    }

    /// Runs one transfer: connects the data channel, sends the preliminary reply, moves the bytes
    /// while still reading the control connection, and sends the final reply.
    async fn transfer(
        &mut self,
        verb: &str,
        arg: &[u8],
        payload: Payload,
        preliminary: Reply,
    ) -> io::Result<Flow> {
        let started = Instant::now();
        if self.tls_mode() == TlsMode::Required && self.prot != ProtLevel::Private {
            self.data = DataSetup::None;
            return self
                .send(reply(
                    ReplyCode::PROTECTION_REFUSED,
                    "Data connections must be encrypted: use PBSZ 0 and PROT P.",
                ))
                .await;
        }
        let limits = &self.config.limits;
        let stream = match std::mem::take(&mut self.data) {
            DataSetup::None => {
                return self
                    .send(reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first."))
                    .await;
            }
            DataSetup::Passive { listener, expires } => {
                if Instant::now() >= expires {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "passive listener expired",
                    ))
                } else {
                    let deadline = Instant::now() + limits.accept_timeout;
                    data::accept_passive(
                        listener,
                        self.peer.ip(),
                        self.config.allow_foreign_passive,
                        deadline,
                    )
                    .await
                }
            }
            DataSetup::Active(target) => {
                data::connect_active(
                    target,
                    self.local.ip(),
                    self.config.active_source_port,
                    limits.connect_timeout,
                )
                .await
            }
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "data connection failed");
                return self
                    .send(reply(
                        ReplyCode::CANT_OPEN_DATA,
                        "Failed to establish data connection.",
                    ))
                    .await;
            }
        };
        self.control.send(&preliminary).await?;
        let stream = match self.protect_data(stream).await {
            Ok(s) => s,
            Err(r) => return self.send(r).await,
        };

        let ascii = self.transfer_type == TransferType::Ascii;
        let data_timeout = self.config.limits.data_timeout;
        let require_close_notify = self
            .config
            .tls
            .as_ref()
            .is_some_and(|t| t.require_close_notify);
        let progress = AtomicU64::new(0);
        let (upload, work) = match payload {
            Payload::Download(source) => (None, Either::Send(source)),
            Payload::Upload(upload) => match upload.file.try_clone() {
                Ok(f) => (Some(upload), Either::Receive(f)),
                Err(e) => {
                    warn!(error = %e, "cannot use upload file");
                    return self
                        .send(reply(ReplyCode::LOCAL_ERROR, "Local error in processing."))
                        .await;
                }
            },
        };
        // Boxed so that it can be dropped (closing the data connection) before the final reply.
        let mut fut = Box::pin(async {
            match work {
                Either::Send(source) => {
                    data::send(stream, source, ascii, data_timeout, &progress).await
                }
                Either::Receive(file) => {
                    data::receive(
                        stream,
                        file,
                        ascii,
                        data_timeout,
                        require_close_notify,
                        &progress,
                    )
                    .await
                }
            }
        });
        let outcome = loop {
            tokio::select! {
                r = &mut fut => break Outcome::Finished(r),
                ev = self.control.next_event() => match ev {
                    Ok(Some(LineEvent::Line(line))) => match Command::parse(&line) {
                        Ok(Command::Abor) => break Outcome::Aborted,
                        Ok(Command::Stat(None)) => {
                            let n = progress.load(Ordering::Relaxed);
                            let lines = vec![
                                b"Status:".to_vec(),
                                format!(" {verb} in progress, {n} bytes transferred").into_bytes(),
                                b"End of status".to_vec(),
                            ];
                            self.control.send(&Reply::multi(ReplyCode::FILE_STATUS, lines)).await?;
                        }
                        _ if self.queued.len() >= MAX_QUEUED => break Outcome::Flooded,
                        _ => self.queued.push_back(LineEvent::Line(line)),
                    },
                    Ok(Some(_)) if self.queued.len() >= MAX_QUEUED => break Outcome::Flooded,
                    Ok(Some(other)) => self.queued.push_back(other),
                    Ok(None) | Err(_) => break Outcome::ControlLost,
                },
            }
        };
        // Dropping the future closes the data connection; dropping an uncommitted upload removes
        // a replacement's temporary file, so the old file stays as it was.
        drop(fut);
        let bytes = progress.load(Ordering::Relaxed);
        let shown = String::from_utf8_lossy(arg).into_owned();
        let user = self.user_name().to_string();
        let log = |result: &str| {
            info!(
                peer = %self.peer, user = %user, verb, path = %shown, bytes,
                ms = started.elapsed().as_millis() as u64, result, "transfer"
            );
        };
        match outcome {
            Outcome::Finished(Ok(_)) => {
                if let Some(upload) = upload {
                    if let Err(e) = blocking(move || upload.commit(bytes)).await {
                        log("commit failed");
                        return self.send(e.reply()).await;
                    }
                }
                log("ok");
                self.send(reply(ReplyCode::CLOSING_DATA, "Transfer complete."))
                    .await
            }
            Outcome::Finished(Err(e)) => {
                drop(upload);
                let r = match &e {
                    TransferError::Data(_) => reply(
                        ReplyCode::TRANSFER_ABORTED,
                        "Connection closed; transfer aborted.",
                    ),
                    TransferError::Stalled => reply(
                        ReplyCode::TRANSFER_ABORTED,
                        "Data connection stalled; transfer aborted.",
                    ),
                    TransferError::Truncated => reply(
                        ReplyCode::TRANSFER_ABORTED,
                        "Data connection closed without TLS close_notify; upload incomplete.",
                    ),
                    TransferError::Local(err) if is_no_space(err) => reply(
                        ReplyCode::INSUFFICIENT_STORAGE,
                        "Insufficient storage space.",
                    ),
                    TransferError::Local(_) => {
                        reply(ReplyCode::LOCAL_ERROR, "Local error in processing.")
                    }
                };
                log(&e.to_string());
                self.send(r).await
            }
            Outcome::Aborted => {
                drop(upload);
                log("aborted");
                self.control
                    .send(&reply(ReplyCode::TRANSFER_ABORTED, "Transfer aborted."))
                    .await?;
                self.send(reply(ReplyCode::CLOSING_DATA, "ABOR successful."))
                    .await
            }
            Outcome::ControlLost => {
                drop(upload);
                log("control connection lost");
                Ok(Flow::Close)
            }
            Outcome::Flooded => {
                drop(upload);
                log("too many pipelined commands");
                let r = reply(
                    ReplyCode::SERVICE_UNAVAILABLE,
                    "Too many commands during a transfer.",
                );
                self.control.send(&r).await?;
                Ok(Flow::Close)
            }
        }
    }
}

impl Session {
    /// Under PROT P, runs the TLS handshake on a data connection (the 150 reply is already
    /// sent: clients such as Python's ftplib start the handshake only after it) and, when
    /// required, checks that it resumed this session's TLS session. The error is the final reply.
    async fn protect_data(&mut self, stream: TcpStream) -> Result<MaybeTls, Reply> {
        if self.prot != ProtLevel::Private {
            return Ok(MaybeTls::Plain(stream));
        }
        let require_reuse = self.config.tls.as_ref().is_some_and(|t| t.require_reuse);
        let acceptor = self.acceptor().map_err(|e| {
            warn!(error = %e, "no TLS for the data connection");
            reply(ReplyCode::LOCAL_ERROR, "Local error in processing.")
        })?;
        let limit = self.config.limits.accept_timeout;
        let tls = match tokio::time::timeout(limit, acceptor.data.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(peer = %self.peer, error = %e, "TLS handshake on the data connection failed");
                return Err(reply(
                    ReplyCode::CANT_OPEN_DATA,
                    "TLS handshake on the data connection failed.",
                ));
            }
            Err(_) => {
                return Err(reply(
                    ReplyCode::CANT_OPEN_DATA,
                    "TLS handshake on the data connection timed out.",
                ));
            }
        };
        if require_reuse && !tls::resumed(&tls) {
            warn!(peer = %self.peer, "data connection did not resume the control connection's TLS session");
            return Err(reply(
                ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                "TLS session reuse required: the data connection must resume the control connection's TLS session.",
            ));
        }
        Ok(MaybeTls::Tls(Box::new(tls)))
    }
}

enum Either {
    Send(Source),
    Receive(std::fs::File),
}

enum Outcome {
    Finished(Result<u64, TransferError>),
    Aborted,
    ControlLost,
    /// More commands pipelined during the transfer than the session keeps.
    Flooded,
}

/// Commands kept while a transfer runs (to run after it); more close the session, so a client
/// cannot grow the queue without bound.
const MAX_QUEUED: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListForm {
    Long,
    Names,
    Machine,
}

fn push_entry(
    out: &mut Vec<u8>,
    e: &FileInfo,
    form: ListForm,
    facts: &[Fact],
    perms: PermFacts,
    now: i64,
) {
    match form {
        ListForm::Long => listing::push_list_line(out, e, now),
        ListForm::Names => listing::push_nlst_line(out, &e.name),
        ListForm::Machine => {
            listing::push_mlsx_entry(out, e, facts, perms, MlsxRole::Entry);
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn listing_quote(path: &[u8]) -> Vec<u8> {
    wharf_proto::reply::quote_path(path)
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() || code == rustix::io::Errno::DQUOT.raw_os_error())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Opens a file to send from `offset`: the file, positioned, and its length.
fn open_for_download(
    storage: &dyn Storage,
    path: &VPath,
    offset: u64,
) -> Result<(std::fs::File, u64), StorageError> {
    let mut file = storage.open_read(path)?;
    let len = file.metadata()?.len();
    if offset > len {
        return Err(StorageError::BadOffset);
    }
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
    Ok((file, len))
}

/// Runs a blocking storage call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StorageError::Io(io::Error::other(e))))
}

/// Closes a connection over the limits with 421, without blocking the accept loop.
pub(crate) async fn refuse(mut stream: TcpStream, text: &'static str) {
    let r = reply(ReplyCode::SERVICE_UNAVAILABLE, text).to_bytes();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = stream.write_all(&r).await;
        let _ = stream.shutdown().await;
        sleep(Duration::from_millis(50)).await;
    })
    .await;
}
