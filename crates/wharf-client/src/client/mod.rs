//! One FTP session: the control connection, data connections in the mode that works, and the
//! operations built on them. Each wait has the session's timeout; each command and reply goes to
//! the connection log.
//!
//! This is the driver of `wharf_proto::client` (its module documentation has the contract): the
//! decisions (which data-connection command to send, what a reply teaches, what FEAT and 257
//! say, how a command is encoded) are made there; the sockets, TLS and timeouts are here.
//!
//! - `mod.rs`: the session, its settings, sending commands and reading replies;
//! - `login.rs`: HOST, AUTH TLS and the handshakes, USER/PASS, FEAT, PBSZ/PROT;
//! - `data.rs`: making data connections, passive or active, as the strategy says;
//! - `transfer.rs`: downloads, uploads and listings over them;
//! - `probe.rs`: one data method tried alone, for the troubleshooter;
//! - `ops.rs`: the commands without a data connection (directories, sizes, times, renames).

mod data;
mod hash;
mod login;
mod ops;
mod probe;
mod transfer;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wharf_proto::client::{ClientCommand, DataStrategy, Family};
use wharf_proto::{ProtLevel, Reply, ReplyCode, ReplyParser, TransferType};

use crate::error::{Error, Result};
use crate::log::{LogLine, LogSink};
use crate::tls::TlsSettings;
use wharf_net::Stream;
use wharf_net::copy::Throttle;

pub use ops::{format_rate, mlst_entry};
pub use probe::Probe;
pub(crate) use wharf_proto::client::is_local_address;
pub use wharf_proto::client::{DataMethod, DataMode, Features, address_class};

/// Settings of a session.
#[derive(Clone)]
pub struct Options {
    /// Limit on each wait: connecting, each reply, each read or write of a data connection.
    pub timeout: Duration,
    pub mode: DataMode,
    /// Where the connection log goes; `None` keeps it off.
    pub log: Option<LogSink>,
    /// FTPS: `None` for plain FTP.
    pub tls: Option<TlsSettings>,
    /// Connect to a PASV address that differs from the server's own (off: the server's own
    /// address is used with the announced port, and nothing else is ever connected to).
    pub trust_pasv_address: bool,
    /// Paces every data connection of the sessions that share it (`--limit-rate`); `None` is
    /// no limit.
    pub throttle: Option<std::sync::Arc<dyn Throttle>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(30),
            mode: DataMode::Auto,
            log: None,
            tls: None,
            trust_pasv_address: false,
            throttle: None,
        }
    }
}

impl Options {
    /// Sends a line to the connection log, if there is one.
    pub fn log(&self, line: LogLine) {
        if let Some(sink) = &self.log {
            sink(&line);
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .field("log", &self.log.is_some())
            .finish()
    }
}

/// How an upload treats what the server already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// STOR: create or replace.
    Replace,
    /// REST offset + STOR: write from `offset` on (RFC 3659 REST STREAM).
    Resume(u64),
    /// APPE: append to what is there.
    Append,
}

/// Told about bytes as they move, for progress bars.
pub trait Progress: Send + Sync {
    /// The size of everything to transfer, when known.
    fn set_total(&self, _total: u64) {}
    /// `bytes` more are done.
    fn advance(&self, bytes: u64);
    /// `bytes` were already there before this run (a resumed file): they count toward the
    /// total but not toward the rate or the time left.
    fn resumed(&self, _bytes: u64) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}

/// Bytes of a listing a probe reads before it counts the data path as working.
const PROBE_LISTING_LIMIT: usize = 1024 * 1024;
/// Largest listing read into memory (a directory of millions of entries is still far below).
const MAX_LISTING: usize = 512 * 1024 * 1024;
/// Size of the buffer data is copied through.
const BUF_SIZE: usize = 256 * 1024;

/// A logged-in (or about to be) FTP session.
pub struct Client {
    control: Stream,
    /// This session's TLS configuration (its own session cache), for the control connection
    /// and its data connections.
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Private once PROT P was accepted (or from the start with implicit TLS): data
    /// connections are TLS too.
    data_protection: ProtLevel,
    /// Version and cipher suite of the control connection's TLS.
    tls_info: Option<(String, String)>,
    parser: ReplyParser,
    /// The server's address: passive connections go there, active ones must come from there.
    peer: SocketAddr,
    /// Our end of the control connection: active-mode listeners bind to this address.
    local: SocketAddr,
    options: Options,
    features: Features,
    welcome: Reply,
    /// The directory the server put us in at login, to come back to after probing with CWD.
    home: Option<Vec<u8>>,
    /// The TYPE wanted for the next transfer, and what the server was last told (TYPE is
    /// sent only when they differ).
    transfer_type: TransferType,
    type_sent: Option<TransferType>,
    /// Which data-connection command to send, and what this session learned about the
    /// server's data modes, so that each refusal costs one try only.
    data: DataStrategy,
    /// How this server takes a new modification time.
    set_time: SetTime,
    /// Replies read other than 421 (which says a command was not carried out): a caller that
    /// lost the session tells from it whether the server did anything.
    replies: u64,
    /// The last transfer command got its 1xx: data may have moved (an upload that broke after
    /// this changed the server's file; one that broke before did not).
    data_started: bool,
    /// The FEAT reply, as the server sent it.
    feat_reply: Option<Reply>,
    /// The control connection is out of step (a reply may still be on its way, or the
    /// connection failed): the session must not be used for another command.
    broken: bool,
    /// The first bytes the server sent (up to 64): what answered, when it is not FTP.
    first_bytes: Vec<u8>,
    /// The server's name as the URL gave it (not an address): sent with HOST where FEAT lists
    /// HOST, and in TLS (SNI).
    name: Option<String>,
    /// The server's answer to HOST, when it was sent.
    host_reply: Option<Reply>,
}

/// How a server takes a new modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetTime {
    /// MFMT first, then the two-argument MDTM.
    Mfmt,
    /// MFMT is not a command here (500/502): straight to MDTM.
    MdtmOnly,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Resolves `host`, connects to the first address that answers and reads the welcome
    /// message (waiting through a 120 "ready in a moment").
    pub async fn connect(host: &str, port: u16, options: Options) -> Result<Client> {
        let limit = options.timeout;
        let log = |line: LogLine| options.log(line);
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                log(LogLine::Status(format!("Resolving address of {host}")));
                match timeout(limit, tokio::net::lookup_host((host, port))).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    Ok(Err(source)) => {
                        return Err(Error::Resolve {
                            host: host.to_string(),
                            source,
                        });
                    }
                    Err(_) => return Err(Error::Timeout(format!("resolving {host}"))),
                }
            }
        };
        let mut last_error = Error::Resolve {
            host: host.to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        };
        let mut control = None;
        for addr in addrs {
            log(LogLine::Status(format!("Connecting to {addr}...")));
            match timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    control = Some(stream);
                    break;
                }
                Ok(Err(source)) => {
                    log(LogLine::Status(format!(
                        "Connection attempt failed: {source}"
                    )));
                    last_error = Error::Connect { addr, source };
                }
                Err(_) => {
                    log(LogLine::Status(format!(
                        "Connection attempt timed out after {} s",
                        limit.as_secs()
                    )));
                    last_error = Error::Timeout(format!("connecting to {addr}"));
                }
            }
        }
        let Some(control) = control else {
            return Err(last_error);
        };
        let mut client = Client::from_stream(control, options).await?;
        client.set_name(host);
        Ok(client)
    }

    /// The server's name as the user gave it: a name (not an address) is sent with HOST where
    /// the server offers it.
    pub fn set_name(&mut self, host: &str) {
        self.name = host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_err()
            .then(|| host.to_string());
    }

    /// Reads the welcome message on a control connection made elsewhere (the troubleshooter
    /// connects by itself to tell refused from filtered).
    pub async fn from_stream(control: TcpStream, options: Options) -> Result<Client> {
        let log = |line: LogLine| options.log(line);
        let _ = control.set_nodelay(true);
        // Keepalive so that a NAT or firewall does not forget the control connection while a
        // long transfer keeps it silent.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(15));
        let _ = socket2::SockRef::from(&control).set_tcp_keepalive(&keepalive);
        // A connection reset right after it was made is no longer connected.
        let gone = |e: io::Error| {
            if e.kind() == io::ErrorKind::NotConnected {
                Error::Network(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "the connection was reset",
                ))
            } else {
                Error::Network(e)
            }
        };
        let peer = control.peer_addr().map_err(gone)?;
        let local = control.local_addr().map_err(gone)?;
        log(LogLine::Status(
            "Connection established, waiting for welcome message...".into(),
        ));
        let mode = options.mode;
        let mut client = Client {
            control: Stream::Plain(control),
            tls_config: None,
            data_protection: ProtLevel::Clear,
            tls_info: None,
            parser: ReplyParser::new(),
            peer,
            local,
            options,
            features: Features::default(),
            name: None,
            host_reply: None,
            // No code yet: `read_welcome` puts the 220 here before the client is handed out.
            welcome: Reply::new(ReplyCode(0), ""),
            home: None,
            transfer_type: TransferType::Image,
            type_sent: None,
            data: DataStrategy::new(mode, Family::of(peer.ip())),
            set_time: SetTime::Mfmt,
            replies: 0,
            data_started: false,
            broken: false,
            feat_reply: None,
            first_bytes: Vec::new(),
        };
        if client.options.tls.as_ref().is_some_and(|t| t.implicit) {
            client.handshake().await?;
            // Implicit FTPS protects data connections from the start; PROT P below confirms it.
            client.data_protection = ProtLevel::Private;
        }
        client.read_welcome().await?;
        Ok(client)
    }

    /// The 220 that opens a session.
    async fn read_welcome(&mut self) -> Result<()> {
        // 120 "ready in nnn minutes" may come first; a server that never gets ready is cut off.
        for _ in 0..10 {
            let reply = match self.read_reply("the welcome message").await {
                Err(Error::Protocol(e)) => return Err(self.not_ftp(e)),
                r => r?,
            };
            match reply.code {
                code if code.is_ready_soon() => continue,
                ReplyCode::READY => {
                    self.welcome = reply;
                    return Ok(());
                }
                _ => {
                    return Err(Error::Refused {
                        command: "the connection".into(),
                        reply,
                    });
                }
            }
        }
        Err(Error::Protocol(
            "the server keeps answering 120 (not ready)".into(),
        ))
    }

    /// The welcome was not an FTP reply: say what answered, as far as its first bytes tell
    /// (SSH, HTTP, mail, TLS), and point to `wharf check`.
    fn not_ftp(&self, parse_error: String) -> Error {
        let (host, port) = (self.peer.ip().to_string(), self.peer.port());
        let what = crate::check::name_service(&self.first_bytes, &host, port)
            .map(|(name, advice)| format!("{name} answers there: {advice}"))
            .unwrap_or(parse_error);
        Error::Protocol(format!(
            "{} does not answer as an FTP server: {what}; `wharf check {host}:{port}` tells more",
            self.peer
        ))
    }

    /// False when the control connection is out of step after an error (a timeout, a broken
    /// connection, a transfer whose final reply never came): open a new session instead.
    pub fn in_step(&self) -> bool {
        !self.broken
    }

    /// Replies the server has sent so far, not counting 421 (a command it did not carry out).
    pub fn replies(&self) -> u64 {
        self.replies
    }

    /// Whether the last transfer got as far as the server's 1xx (so data may have moved).
    pub fn data_started(&self) -> bool {
        self.data_started
    }

    /// The server's address (the control connection's peer).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Our end of the control connection, as this machine sees it (before any NAT).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The welcome (220) reply.
    pub fn welcome(&self) -> &Reply {
        &self.welcome
    }

    /// What FEAT announced.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The FEAT reply itself (None before login).
    pub fn feat_reply(&self) -> Option<&Reply> {
        self.feat_reply.as_ref()
    }

    /// TYPE A (true) or TYPE I (false, the default) for the following transfers.
    pub fn set_ascii(&mut self, ascii: bool) {
        self.transfer_type = if ascii {
            TransferType::Ascii
        } else {
            TransferType::Image
        };
    }

    /// True when transfers use TYPE A.
    pub fn is_ascii(&self) -> bool {
        self.transfer_type == TransferType::Ascii
    }

    /// Writes a `Status:` line to the connection log.
    pub fn log_status(&self, message: impl Into<String>) {
        self.options.log(LogLine::Status(message.into()));
    }

    /// Sends one command and reads its reply, whatever the code. The argument is bytes (paths
    /// are not always UTF-8) and may not contain CR or LF. The raw path, for what a user types;
    /// the client's own commands are typed.
    pub async fn command(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<Reply> {
        self.run(&ClientCommand::Raw { verb, arg }).await
    }

    /// Sends a command and checks that the reply is a completion (2xx).
    pub async fn simple(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<Reply> {
        self.run_ok(&ClientCommand::Raw { verb, arg }).await
    }

    /// Closes the control connection without QUIT (for a session that is out of step).
    pub async fn close(&mut self) {
        self.broken = true;
        let _ = timeout(Duration::from_secs(1), self.control.shutdown()).await;
    }

    /// QUIT, ignoring what happens: the session is over either way.
    pub async fn quit(mut self) {
        let _ = self.run(&ClientCommand::Quit).await;
    }

    /// Sends `command` and reads its reply, whatever the code.
    async fn run(&mut self, command: &ClientCommand<'_>) -> Result<Reply> {
        self.send(command).await?;
        self.read_reply(&command.describe()).await
    }

    /// Sends `command`; any reply but a completion (2xx) is a refusal.
    async fn run_ok(&mut self, command: &ClientCommand<'_>) -> Result<Reply> {
        let reply = self.run(command).await?;
        if reply.code.is_completion() {
            Ok(reply)
        } else {
            Err(refused(command, reply))
        }
    }

    async fn send(&mut self, command: &ClientCommand<'_>) -> Result<()> {
        let mut line = Vec::new();
        command
            .encode(&mut line)
            .map_err(|e| Error::Usage(e.to_string()))?;
        self.options.log(LogLine::Command(command.describe()));
        let result = match timeout(self.options.timeout, self.control.write_all(&line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Network(e)),
            Err(_) => Err(Error::Timeout(format!("sending {}", command.verb()))),
        };
        self.broken |= result.is_err();
        result
    }

    async fn read_reply(&mut self, waiting_for: &str) -> Result<Reply> {
        let result = self.read_reply_inner(waiting_for).await;
        match &result {
            Ok(reply) if reply.code.closes_session() => self.broken = true,
            Err(_) => self.broken = true,
            Ok(_) => self.replies += 1,
        }
        result
    }

    /// Cancel-safe: bytes read are in `self.parser` before any await point gives up.
    async fn read_reply_inner(&mut self, waiting_for: &str) -> Result<Reply> {
        let mut buf = [0u8; 4096];
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.log_reply(&reply);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(Error::Protocol(e.to_string())),
            }
            let read = timeout(self.options.timeout, self.control.read(&mut buf)).await;
            match read {
                Ok(Ok(0)) => return Err(Error::Closed),
                Ok(Ok(n)) => {
                    let got = buf.get(..n).unwrap_or_default();
                    if self.first_bytes.is_empty() {
                        self.first_bytes = got.iter().take(64).copied().collect();
                    }
                    self.parser.feed(got);
                }
                Ok(Err(e)) => return Err(Error::Network(e)),
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "waiting {} s for the reply to {waiting_for}",
                        self.options.timeout.as_secs()
                    )));
                }
            }
        }
    }

    fn log_reply(&self, reply: &Reply) {
        let Some(sink) = &self.options.log else {
            return;
        };
        let n = reply.lines.len();
        for (i, line) in reply.lines.iter().enumerate() {
            let text = String::from_utf8_lossy(line);
            let shown = if n <= 1 || i == n - 1 {
                format!("{} {text}", reply.code)
            } else if i == 0 {
                format!("{}-{text}", reply.code)
            } else {
                text.into_owned()
            };
            sink(&LogLine::Response(shown));
        }
    }
}

/// The server said no to `command`.
fn refused(command: &ClientCommand<'_>, reply: Reply) -> Error {
    Error::Refused {
        command: command.describe(),
        reply,
    }
}
