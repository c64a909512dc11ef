//! One FTP session: the control connection, data connections in the mode that works, and the
//! operations built on them. Each wait has the session's timeout; each command and reply goes to
//! the connection log.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use wharf_proto::client::hash::{self, HashCommand, HashFeat, HashReply};
use wharf_proto::entry::{self, Entry, MlsxLine};
use wharf_proto::{HashAlgorithm, Reply, ReplyCode, ReplyParser, hostport};

use crate::error::{Error, Result};
use crate::log::{LogLine, LogSink};
use crate::tls::{self, TlsSettings};
use wharf_net::Stream;
use wharf_net::copy::{self, CopyError, CopyOptions, Throttle, Unlimited};

/// How data connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataMode {
    /// Passive first (EPSV, then PASV); active when the passive connection cannot be made.
    #[default]
    Auto,
    /// Passive only: EPSV, then PASV when the server refuses EPSV.
    Passive,
    /// Active only: EPRT, then PORT when the server refuses EPRT.
    Active,
}

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

/// What the server announced in its FEAT reply (RFC 2389) that the client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub mlst: bool,
    pub rest_stream: bool,
    pub size: bool,
    pub mdtm: bool,
    pub utf8: bool,
    pub epsv: bool,
    /// The HASH line: its algorithms and the one selected.
    pub hash: HashFeat,
    /// The `X` hash commands listed (`XSHA256` and its kin), as ProFTPD and Wharf list them.
    pub x_hash: Vec<HashAlgorithm>,
}

impl Features {
    /// Whether a FEAT reply lists `feature` (its first word).
    fn lists(reply: &Reply, feature: &str) -> bool {
        let n = reply.lines.len();
        reply
            .lines
            .iter()
            .take(n.saturating_sub(1))
            .skip(1)
            .any(|line| {
                String::from_utf8_lossy(line)
                    .split_whitespace()
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case(feature))
            })
    }

    fn parse(reply: &Reply) -> Features {
        let mut f = Features::default();
        let n = reply.lines.len();
        for line in reply.lines.iter().take(n.saturating_sub(1)).skip(1) {
            if let Some(hash) = HashFeat::parse(line) {
                f.hash = hash;
                continue;
            }
            if let Some(x) = hash::x_feat(line) {
                f.x_hash.push(x);
                continue;
            }
            let text = String::from_utf8_lossy(line).trim().to_ascii_uppercase();
            let mut words = text.split_whitespace();
            match words.next() {
                Some("MLST") => f.mlst = true,
                Some("REST") => f.rest_stream |= words.next() == Some("STREAM"),
                Some("SIZE") => f.size = true,
                Some("MDTM") => f.mdtm = true,
                Some("UTF8") => f.utf8 = true,
                Some("EPSV") => f.epsv = true,
                _ => {}
            }
        }
        f
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
/// The slowest rate (bytes a second) a server is expected to hash a file at, for the wait
/// for its reply.
const HASH_RATE: u64 = 20 * 1000 * 1000;
/// Size of the buffer data is copied through.
const BUF_SIZE: usize = 256 * 1024;

/// A logged-in (or about to be) FTP session.
pub struct Client {
    control: Stream,
    /// This session's TLS configuration (its own session cache), for the control connection
    /// and its data connections.
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// PROT P accepted: data connections are TLS too.
    protect_data: bool,
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
    /// TYPE A wanted (true) or TYPE I; and what the server was last told.
    ascii: bool,
    type_sent: Option<bool>,
    /// What this session learned about the server's data modes, so each costs one try only.
    epsv_refused: bool,
    eprt_refused: bool,
    /// PASV announces an address we cannot reach: use the control connection's instead.
    pasv_use_peer: bool,
    /// MFMT is not a command here (500/502): setting times goes straight to MDTM.
    mfmt_refused: bool,
    /// Replies read other than 421 (which says a command was not carried out): a caller that
    /// lost the session tells from it whether the server did anything.
    replies: u64,
    /// The last transfer command got its 1xx: data may have moved (an upload that broke after
    /// this changed the server's file; one that broke before did not).
    data_started: bool,
    /// In automatic mode, passive failed and active worked: go straight to active from now on.
    passive_failed: bool,
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
        let mut client = Client {
            control: Stream::Plain(control),
            tls_config: None,
            protect_data: false,
            tls_info: None,
            parser: ReplyParser::new(),
            peer,
            local,
            options,
            features: Features::default(),
            name: None,
            host_reply: None,
            welcome: Reply::new(ReplyCode(0), ""),
            home: None,
            ascii: false,
            type_sent: None,
            epsv_refused: false,
            eprt_refused: false,
            pasv_use_peer: false,
            mfmt_refused: false,
            replies: 0,
            data_started: false,
            passive_failed: false,
            broken: false,
            feat_reply: None,
            first_bytes: Vec::new(),
        };
        if client.options.tls.as_ref().is_some_and(|t| t.implicit) {
            client.handshake().await?;
            // Implicit FTPS protects data connections from the start; PROT P below confirms it.
            client.protect_data = true;
        }
        // 120 "ready in nnn minutes" may come first; a server that never gets ready is cut off.
        for _ in 0..10 {
            let reply = match client.read_reply("the welcome message").await {
                Err(Error::Protocol(e)) => return Err(client.not_ftp(e)),
                r => r?,
            };
            match reply.code {
                ReplyCode(120) => continue,
                ReplyCode::READY => {
                    client.welcome = reply;
                    return Ok(client);
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

    /// AUTH TLS and the handshake, when the options ask for explicit TLS and the control
    /// connection is not TLS yet. `login` calls it; the troubleshooter calls it to report apart.
    pub async fn secure(&mut self) -> Result<()> {
        if self.options.tls.is_none() || self.control.is_tls() {
            return Ok(());
        }
        let reply = self.command("AUTH", Some(b"TLS")).await?;
        if reply.code != ReplyCode::AUTH_OK {
            return Err(refused("AUTH", Some(b"TLS"), reply));
        }
        if self.parser.has_pending() {
            // Bytes behind the 234 came in clear: read as TLS replies they could be forged
            // (a man in the middle answering USER with 230).
            self.broken = true;
            return Err(Error::Protocol(
                "the server sent more after 234 AUTH TLS, in clear: refusing to go on".into(),
            ));
        }
        self.handshake().await
    }

    /// The TLS handshake on the control connection.
    async fn handshake(&mut self) -> Result<()> {
        let Some(settings) = self.options.tls.clone() else {
            return Ok(());
        };
        self.log_status("Initializing TLS...");
        let Stream::Plain(tcp) = std::mem::replace(&mut self.control, Stream::Gone) else {
            return Err(Error::Tls("the control connection is not plain TCP".into()));
        };
        let config = settings.session_config();
        self.tls_config = Some(config.clone());
        let connector = tokio_rustls::TlsConnector::from(config);
        let result = timeout(
            self.options.timeout,
            connector.connect(settings.name.clone(), tcp),
        )
        .await;
        let stream = match result {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.broken = true;
                let e = tls::handshake_error(e);
                self.log_status(format!("TLS handshake failed: {e}"));
                return Err(e);
            }
            Err(_) => {
                self.broken = true;
                self.log_status("TLS handshake failed: no answer in time");
                return Err(Error::Tls(format!(
                    "no TLS handshake within {} s",
                    self.options.timeout.as_secs()
                )));
            }
        };
        let stream = Stream::from(stream);
        let facts = stream.tls_facts().unwrap_or_else(|| wharf_net::TlsFacts {
            version: "?".into(),
            suite: "?".into(),
            resumed: false,
        });
        let (version, suite) = (facts.version, facts.suite);
        let unverified = settings
            .last_certificate()
            .and_then(|seen| seen.verdict.err());
        match unverified {
            Some(why) => self.log_status(format!(
                "{version}, {suite}; certificate NOT verified ({why}): going on unverified"
            )),
            None => self.log_status(format!("{version}, {suite}; certificate verified")),
        }
        self.log_status("TLS connection established.");
        self.tls_info = Some((version, suite));
        self.control = stream;
        Ok(())
    }

    /// Forgets the TLS sessions of this session, so that the next data connection makes a new
    /// one instead of resuming the control connection's: the troubleshooter's test of whether
    /// the server requires reuse.
    pub fn forget_tls_sessions(&mut self) {
        if let (Some(settings), Some(_)) = (&self.options.tls, &self.tls_config) {
            self.tls_config = Some(settings.session_config());
        }
    }

    /// Version and cipher suite of the control connection, once it is TLS.
    pub fn tls_info(&self) -> Option<&(String, String)> {
        self.tls_info.as_ref()
    }

    /// The server's answer to HOST, when it was sent (see [`Client::choose_host`]).
    pub fn host_reply(&self) -> Option<&Reply> {
        self.host_reply.as_ref()
    }

    /// HOST (RFC 7151) with the URL's name, before AUTH and USER, when the server's FEAT lists
    /// HOST: on a server with virtual hosts, the customer's site. A 504 (a name it does not
    /// serve) is said and the login goes on to its default host.
    pub async fn choose_host(&mut self) -> Result<()> {
        let Some(name) = self.name.clone() else {
            return Ok(());
        };
        if self.host_reply.is_some()
            || self.control.is_tls() && !self.options.tls.as_ref().is_some_and(|t| t.implicit)
        {
            return Ok(());
        }
        let feat = self.command("FEAT", None).await?;
        if feat.code != ReplyCode::SYSTEM_STATUS || !Features::lists(&feat, "HOST") {
            return Ok(());
        }
        let reply = self.command("HOST", Some(name.as_bytes())).await?;
        if reply.code == ReplyCode::PARAMETER_NOT_IMPLEMENTED {
            self.options.log(LogLine::Status(format!(
                "The server does not serve {name} (504): logging in to its default host"
            )));
        }
        self.host_reply = Some(reply);
        Ok(())
    }

    /// Logs in with USER/PASS (after HOST and AUTH TLS when asked for), then reads FEAT, turns
    /// UTF-8 on where offered, and over TLS asks for protected data connections (PBSZ 0,
    /// PROT P).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        self.choose_host().await?;
        self.secure().await?;
        let reply = self.command("USER", Some(user.as_bytes())).await?;
        match reply.code {
            ReplyCode::LOGGED_IN => {}
            ReplyCode::NEED_PASSWORD => {
                let reply = self.command("PASS", Some(password.as_bytes())).await?;
                if !matches!(reply.code, ReplyCode::LOGGED_IN | ReplyCode::SUPERFLUOUS) {
                    return Err(refused("PASS", None, reply));
                }
            }
            _ => return Err(refused("USER", Some(user.as_bytes()), reply)),
        }
        let feat = self.command("FEAT", None).await?;
        self.feat_reply = Some(feat.clone());
        if feat.code == ReplyCode::SYSTEM_STATUS {
            self.features = Features::parse(&feat);
        } else if feat.code == ReplyCode::SERVICE_UNAVAILABLE {
            return Err(refused("FEAT", None, feat));
        }
        if self.features.utf8 {
            // Answered 200 or refused; names are sent as bytes either way.
            let reply = self.command("OPTS", Some(b"UTF8 ON")).await?;
            if reply.code == ReplyCode::SERVICE_UNAVAILABLE {
                return Err(refused("OPTS", Some(b"UTF8 ON"), reply));
            }
        }
        if self.control.is_tls() {
            self.simple("PBSZ", Some(b"0")).await?;
            // Data in clear is not what a TLS session asked for: a refusal ends it.
            self.simple("PROT", Some(b"P")).await?;
            self.protect_data = true;
        }
        Ok(())
    }

    /// Under PROT P, the TLS handshake on a data connection (after the server's 1xx reply, which
    /// is when servers start theirs), resuming the control connection's session.
    async fn protect(&mut self, data: TcpStream) -> Result<Stream> {
        let (settings, config) = match (&self.options.tls, &self.tls_config, self.protect_data) {
            (Some(s), Some(c), true) => (s.clone(), c.clone()),
            _ => return Ok(Stream::Plain(data)),
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match timeout(
            self.options.timeout,
            connector.connect(settings.name.clone(), data),
        )
        .await
        {
            Ok(Ok(s)) => {
                let s = Stream::from(s);
                if !s.tls_facts().is_some_and(|f| f.resumed) {
                    self.log_status("TLS session of the data connection was not resumed");
                }
                Ok(s)
            }
            Ok(Err(e)) => Err(tls::handshake_error(e)),
            Err(_) => Err(Error::Timeout(
                "in the TLS handshake of the data connection".into(),
            )),
        }
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

    /// How this server is asked for a file's hash: the strongest algorithm that HASH or an `X`
    /// command offers (FEAT), `None` when it offers none.
    pub fn hash_command(&self) -> Option<HashCommand> {
        hash::choose(&self.features.hash.offered, &self.features.x_hash)
    }

    /// The server's hash of `path`, in the strongest algorithm it offers; `None` when it
    /// offers no hash command.
    pub async fn remote_hash(&mut self, path: &[u8]) -> Result<Option<(HashAlgorithm, Vec<u8>)>> {
        let Some(how) = self.hash_command() else {
            return Ok(None);
        };
        let digest = self.hash_with(how, path, None).await?;
        Ok(Some((how.algorithm(), digest)))
    }

    /// The server's hash of the whole of `path` (`len` bytes, when known) by `how`: `OPTS
    /// HASH` first when the session's algorithm is another.
    ///
    /// The server reads the whole file before its one reply, so the wait for it is longer
    /// than the session's timeout: that, plus the time to read `len` bytes at 20 MB/s (a slow
    /// disk, an object store), or ten timeouts when the size is not known.
    pub async fn hash_with(
        &mut self,
        how: HashCommand,
        path: &[u8],
        len: Option<u64>,
    ) -> Result<Vec<u8>> {
        let usual = self.options.timeout;
        self.options.timeout = match len {
            Some(len) => usual + Duration::from_secs(len / HASH_RATE),
            None => usual * 10,
        };
        let result = self.hash_inner(how, path).await;
        self.options.timeout = usual;
        result
    }

    async fn hash_inner(&mut self, how: HashCommand, path: &[u8]) -> Result<Vec<u8>> {
        let algorithm = how.algorithm();
        let not_understood = |verb: &str, reply: &Reply| {
            Error::Protocol(format!(
                "{verb}: reply not understood: {} {}",
                reply.code,
                reply.text()
            ))
        };
        match how {
            HashCommand::Hash(_) => {
                if self.features.hash.selected != Some(algorithm) {
                    let arg = format!("HASH {}", algorithm.name());
                    self.simple("OPTS", Some(arg.as_bytes())).await?;
                    self.features.hash.selected = Some(algorithm);
                }
                let reply = self.simple("HASH", Some(path)).await?;
                let text = reply.lines.last().map_or(&[][..], |l| l);
                let parsed =
                    HashReply::parse(text).ok_or_else(|| not_understood("HASH", &reply))?;
                if parsed.algorithm != algorithm || parsed.start != 0 {
                    return Err(Error::Protocol(format!(
                        "HASH: asked for {} of the whole file, the server answered {} of bytes {}-{}",
                        algorithm.name(),
                        parsed.algorithm.name(),
                        parsed.start,
                        parsed.end
                    )));
                }
                Ok(parsed.digest)
            }
            HashCommand::X(_) => {
                let verb = how.verb();
                let reply = self.simple(verb, Some(path)).await?;
                let text = reply.lines.last().map_or(&[][..], |l| l);
                hash::parse_x_reply(text, algorithm).ok_or_else(|| not_understood(verb, &reply))
            }
        }
    }

    /// The FEAT reply itself (None before login).
    pub fn feat_reply(&self) -> Option<&Reply> {
        self.feat_reply.as_ref()
    }

    /// Lists the current directory over one data method, without any fallback, and reports
    /// what happened at each stage: for diagnosis.
    pub async fn probe_listing(&mut self, method: DataMethod) -> Probe {
        let started = Instant::now();
        let mut probe = Probe {
            method,
            setup_reply: None,
            announced: None,
            data_addr: None,
            announced_error: None,
            used_control_address: false,
            data_tls_resumed: None,
            result: Ok(0),
            elapsed: Duration::ZERO,
        };
        probe.result = self.probe_inner(method, &mut probe).await;
        probe.elapsed = started.elapsed();
        probe
    }

    async fn probe_inner(&mut self, method: DataMethod, probe: &mut Probe) -> Result<usize> {
        self.ensure_type().await?;
        let verb = if self.features.mlst { "MLSD" } else { "LIST" };
        let stream = match method {
            DataMethod::Epsv | DataMethod::Pasv => {
                let reply = self.command(method.name(), None).await?;
                probe.setup_reply = Some(reply.clone());
                let addr = self.passive_addr(method, reply)?;
                if method == DataMethod::Pasv {
                    probe.announced = Some(addr);
                }
                let attempt = self.connect_passive(addr).await;
                probe.data_addr = Some(attempt.addr);
                probe.used_control_address = attempt.announced_error.is_some();
                probe.announced_error = attempt.announced_error;
                let stream = attempt.stream?;
                if !self.start_transfer(verb, None, None).await? {
                    return Ok(0);
                }
                stream
            }
            DataMethod::Eprt | DataMethod::Port => {
                let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
                    .await
                    .map_err(Error::Network)?;
                let addr = listener.local_addr().map_err(Error::Network)?;
                probe.data_addr = Some(addr);
                let arg = match (method, addr) {
                    (DataMethod::Port, SocketAddr::V4(v4)) => hostport::format_host_port(v4),
                    (DataMethod::Port, SocketAddr::V6(_)) => {
                        return Err(Error::Protocol("PORT cannot carry an IPv6 address".into()));
                    }
                    _ => hostport::format_eprt(addr),
                };
                let reply = self.command(method.name(), Some(arg.as_bytes())).await?;
                probe.setup_reply = Some(reply.clone());
                if !reply.code.is_completion() {
                    return Err(refused(method.name(), Some(arg.as_bytes()), reply));
                }
                // Servers that connect before they answer stay silent while they try.
                match self.start_transfer(verb, None, None).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(0),
                    Err(Error::Timeout(_)) => {
                        return Err(Error::DataConnect {
                            addr,
                            source: io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!(
                                    "the server did not connect back (active mode): no reply to {verb} within {} s while it tried",
                                    self.options.timeout.as_secs()
                                ),
                            ),
                        });
                    }
                    Err(e) => return Err(e),
                }
                self.accept_data(listener, addr, verb, None).await?
            }
        };
        let mut data = match self.protect(stream).await {
            Ok(s) => s,
            Err(e) => return Err(self.after_broken_transfer(e, verb, None).await),
        };
        if let Some(facts) = data.tls_facts() {
            probe.data_tls_resumed = Some(facts.resumed);
        }
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match self.data_io(data.read(&mut buf)).await {
                Ok(n) => n,
                Err(e) => {
                    drop(data);
                    return Err(self.after_broken_transfer(e, verb, None).await);
                }
            };
            if n == 0 {
                break;
            }
            total += n;
            if total > PROBE_LISTING_LIMIT {
                // Enough to know the data path works; the rest of a huge (or endless) listing
                // is not read, so the session's final reply is not awaited either.
                self.broken = true;
                return Ok(total);
            }
        }
        drop(data);
        self.finish_transfer(verb, None).await?;
        Ok(total)
    }

    /// TYPE A (true) or TYPE I (false, the default) for the following transfers.
    pub fn set_ascii(&mut self, ascii: bool) {
        self.ascii = ascii;
    }

    /// True when transfers use TYPE A.
    pub fn is_ascii(&self) -> bool {
        self.ascii
    }

    /// Writes a `Status:` line to the connection log.
    pub fn log_status(&self, message: impl Into<String>) {
        self.options.log(LogLine::Status(message.into()));
    }

    /// Sends one command and reads its reply, whatever the code. The argument is bytes (paths
    /// are not always UTF-8) and may not contain CR or LF.
    pub async fn command(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<Reply> {
        self.send(verb, arg).await?;
        self.read_reply(&describe(verb, arg)).await
    }

    /// Sends a command and checks that the reply is a completion (2xx).
    pub async fn simple(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<Reply> {
        let reply = self.command(verb, arg).await?;
        if reply.code.is_completion() {
            Ok(reply)
        } else {
            Err(refused(verb, arg, reply))
        }
    }

    pub async fn mkdir(&mut self, path: &[u8]) -> Result<()> {
        self.simple("MKD", Some(path)).await.map(drop)
    }

    pub async fn rmdir(&mut self, path: &[u8]) -> Result<()> {
        self.simple("RMD", Some(path)).await.map(drop)
    }

    pub async fn delete(&mut self, path: &[u8]) -> Result<()> {
        self.simple("DELE", Some(path)).await.map(drop)
    }

    pub async fn cwd(&mut self, path: &[u8]) -> Result<()> {
        self.simple("CWD", Some(path)).await.map(drop)
    }

    /// RNFR + RNTO.
    pub async fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        let reply = self.command("RNFR", Some(from)).await?;
        if reply.code != ReplyCode::PENDING_FURTHER_INFO {
            return Err(refused("RNFR", Some(from), reply));
        }
        self.simple("RNTO", Some(to)).await.map(drop)
    }

    /// The current directory, from PWD's 257 reply (RFC 959 quoting: `""` is one quote).
    pub async fn pwd(&mut self) -> Result<Vec<u8>> {
        let reply = self.simple("PWD", None).await?;
        let text = reply.lines.last().cloned().unwrap_or_default();
        parse_257(&text).ok_or_else(|| Error::Protocol("PWD reply without a quoted path".into()))
    }

    /// True when `path` is a directory the server lets us enter (CWD there and back).
    pub async fn is_dir(&mut self, path: &[u8]) -> Result<bool> {
        let home = match self.home.clone() {
            Some(h) => h,
            None => {
                let h = self.pwd().await?;
                self.home = Some(h.clone());
                h
            }
        };
        let reply = self.command("CWD", Some(path)).await?;
        if !reply.code.is_completion() {
            if reply.code == ReplyCode::SERVICE_UNAVAILABLE {
                return Err(refused("CWD", Some(path), reply));
            }
            return Ok(false);
        }
        self.cwd(&home).await?;
        Ok(true)
    }

    /// The size of a file (SIZE, RFC 3659), `None` when the server cannot tell.
    pub async fn size(&mut self, path: &[u8]) -> Result<Option<u64>> {
        self.ensure_type().await?;
        let reply = self.command("SIZE", Some(path)).await?;
        match reply.code {
            ReplyCode::FILE_STATUS => {
                let text = String::from_utf8_lossy(reply.lines.last().map_or(&[][..], |l| l));
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::Protocol(format!("SIZE reply {text:?} is not a number")))
            }
            ReplyCode::SERVICE_UNAVAILABLE => Err(refused("SIZE", Some(path), reply)),
            _ => Ok(None),
        }
    }

    /// The facts of one path (MLST, RFC 3659 §7), `None` when the server does not offer MLST or
    /// refuses it for this path (no such file: 550).
    pub async fn mlst(&mut self, path: &[u8]) -> Result<Option<Entry>> {
        Ok(self.mlst_line(path).await?.as_deref().and_then(mlst_entry))
    }

    /// MLST's facts line for `path` (`type=file;size=12; name`), as sent; `None` as for
    /// [`Client::mlst`].
    pub async fn mlst_line(&mut self, path: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.features.mlst {
            return Ok(None);
        }
        let reply = self.command("MLST", Some(path)).await?;
        if reply.code == ReplyCode::SERVICE_UNAVAILABLE {
            return Err(refused("MLST", Some(path), reply));
        }
        if !reply.code.is_completion() {
            return Ok(None);
        }
        // 250-Listing / " facts; name" / 250 End: the entry is the line starting with a space.
        Ok(reply
            .lines
            .iter()
            .find_map(|line| line.strip_prefix(b" ").map(<[u8]>::to_vec)))
    }

    /// The modification time of a file (MDTM, RFC 3659 §3), seconds since the epoch (UTC);
    /// `None` when the server cannot tell.
    pub async fn mdtm(&mut self, path: &[u8]) -> Result<Option<i64>> {
        let reply = self.command("MDTM", Some(path)).await?;
        match reply.code {
            ReplyCode::FILE_STATUS => {
                let text = reply.lines.last().cloned().unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                Ok(wharf_proto::UtcTime::parse_timeval(text.trim().as_bytes())
                    .map(wharf_proto::UtcTime::to_unix))
            }
            ReplyCode::SERVICE_UNAVAILABLE => Err(refused("MDTM", Some(path), reply)),
            _ => Ok(None),
        }
    }

    /// Sets the modification time of a file: MFMT (the draft every current server follows),
    /// else the two-argument MDTM that vsftpd takes. False when the server does neither.
    pub async fn set_mtime(&mut self, path: &[u8], unix: i64) -> Result<bool> {
        let stamp = wharf_proto::UtcTime::from_unix(unix).to_timeval();
        let mut arg = stamp.clone().into_bytes();
        arg.push(b' ');
        arg.extend_from_slice(path);
        for verb in ["MFMT", "MDTM"] {
            if verb == "MFMT" && self.mfmt_refused {
                continue;
            }
            let reply = self.command(verb, Some(&arg)).await?;
            if reply.code == ReplyCode::SERVICE_UNAVAILABLE {
                return Err(refused(verb, Some(&arg), reply));
            }
            // MFMT answers 213; vsftpd's MDTM answers 213 too, others 200 or 253.
            if reply.code.is_completion() {
                return Ok(true);
            }
            if verb == "MFMT" {
                self.mfmt_refused = matches!(
                    reply.code,
                    ReplyCode::SYNTAX_ERROR | ReplyCode::NOT_IMPLEMENTED
                );
                if !self.mfmt_refused {
                    return Ok(false);
                }
            }
        }
        Ok(false)
    }

    /// Lists a directory (empty `path`: the current one): MLSD where FEAT offers MLST, else
    /// LIST parsed in Unix or DOS form. `.` and `..` are left out.
    pub async fn list(&mut self, path: &[u8]) -> Result<Vec<Entry>> {
        let arg = (!path.is_empty()).then_some(path);
        // LIST takes `ls` options on most servers: a name starting with `-` must not be one.
        let dashed;
        let list_arg = match arg {
            Some(p) if p.starts_with(b"-") => {
                dashed = [&b"./"[..], p].concat();
                Some(&dashed[..])
            }
            other => other,
        };
        if self.features.mlst {
            match self.read_listing("MLSD", arg).await {
                Ok(raw) => {
                    let entries = raw
                        .split(|&b| b == b'\n')
                        .filter_map(entry::parse_mlsx_line)
                        .filter_map(|line| match line {
                            MlsxLine::Entry(e) => Some(e),
                            MlsxLine::SelfOrParent => None,
                        })
                        .collect();
                    self.log_status("Directory listing successful");
                    return Ok(entries);
                }
                Err(e)
                    if matches!(
                        e.reply_code(),
                        Some(ReplyCode::SYNTAX_ERROR | ReplyCode::NOT_IMPLEMENTED)
                    ) =>
                {
                    self.features.mlst = false;
                }
                Err(e) => return Err(e),
            }
        }
        let raw = self.read_listing("LIST", list_arg).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let entries = raw
            .split(|&b| b == b'\n')
            .filter_map(|line| entry::parse_list_line(line, now))
            .filter(|e| e.name != b"." && e.name != b"..")
            .collect();
        self.log_status("Directory listing successful");
        Ok(entries)
    }

    /// The raw bytes of a listing command (`LIST`, `NLST` or `MLSD`) of `path` (empty: the
    /// current directory), unparsed: what a load generator or a debugging user wants.
    pub async fn listing(&mut self, verb: &str, path: &[u8]) -> Result<Vec<u8>> {
        let arg = (!path.is_empty()).then_some(path);
        self.read_listing(verb, arg).await
    }

    /// Downloads `path` into `out`, from byte `offset` on (REST) when it is not zero.
    /// Returns the bytes received (after TYPE A conversion: the bytes written).
    pub async fn retrieve<W: AsyncWrite + Unpin>(
        &mut self,
        path: &[u8],
        offset: u64,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        if offset > 0 && self.ascii {
            return Err(Error::Usage(
                "resuming is not possible in ASCII mode (offsets differ)".into(),
            ));
        }
        self.ensure_type().await?;
        let started = Instant::now();
        let rest = (offset > 0).then_some(offset);
        let Some(mut data) = self.open_data("RETR", Some(path), rest).await? else {
            return Err(Error::Protocol(
                "RETR completed without a data connection".into(),
            ));
        };
        let n = match self.copy_in(&mut data, out, progress).await {
            Ok(n) => n,
            Err(e) => {
                data.set_zero_linger();
                drop(data);
                return Err(self.after_broken_transfer(e, "RETR", Some(path)).await);
            }
        };
        drop(data);
        self.finish_transfer("RETR", Some(path)).await?;
        self.log_transfer(n, started);
        Ok(n)
    }

    /// Downloads `len` bytes of `path` from byte `offset` on (REST + RETR) into `out`, then
    /// closes the data connection and waits for the server's reply to the cut-short transfer
    /// (426 or 226 both end it). Binary only. Returns the bytes written (`len` unless the file
    /// ended first).
    pub async fn retrieve_range<W: AsyncWrite + Unpin>(
        &mut self,
        path: &[u8],
        offset: u64,
        len: u64,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        if self.ascii {
            return Err(Error::Usage(
                "a byte range cannot be fetched in ASCII mode".into(),
            ));
        }
        self.ensure_type().await?;
        let rest = (offset > 0).then_some(offset);
        let Some(mut data) = self.open_data("RETR", Some(path), rest).await? else {
            return Err(Error::Protocol(
                "RETR completed without a data connection".into(),
            ));
        };
        let mut buf = vec![0u8; BUF_SIZE];
        let mut got = 0u64;
        let copied: Result<()> = async {
            while got < len {
                let want = usize::try_from(len - got)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let chunk = buf.get_mut(..want).unwrap_or_default();
                let n = self.data_io(data.read(chunk)).await?;
                if n == 0 {
                    return Ok(());
                }
                copy::pace(self.throttle(), n as u64).await;
                out.write_all(buf.get(..n).unwrap_or_default())
                    .await
                    .map_err(Error::local)?;
                got += n as u64;
                progress.advance(n as u64);
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            data.set_zero_linger();
            drop(data);
            return Err(self.after_broken_transfer(e, "RETR", Some(path)).await);
        }
        if let Err(e) = out.flush().await {
            data.set_zero_linger();
            drop(data);
            return Err(self
                .after_broken_transfer(Error::local(e), "RETR", Some(path))
                .await);
        }
        if got < len {
            // The file ended before the range did: an ordinary end of transfer.
            drop(data);
            self.finish_transfer("RETR", Some(path)).await?;
            return Ok(got);
        }
        // The range is complete: cut the data connection. The server's reply to that (426,
        // 451 or, if it had sent everything already, 226) ends the transfer.
        data.set_zero_linger();
        drop(data);
        let wait = self.options.timeout.min(Duration::from_secs(10));
        self.broken = true;
        for _ in 0..10 {
            match timeout(wait, self.read_reply("RETR (range complete)")).await {
                Ok(Ok(reply)) if reply.code.is_preliminary() => continue,
                Ok(Ok(_)) => {
                    self.broken = false;
                    break;
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(got)
    }

    /// Uploads everything `input` yields to `path`, as `how` says.
    pub async fn store<R: AsyncRead + Unpin>(
        &mut self,
        path: &[u8],
        how: Store,
        input: &mut R,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let (verb, rest) = match how {
            Store::Replace => ("STOR", None),
            Store::Resume(offset) => ("STOR", Some(offset)),
            Store::Append => ("APPE", None),
        };
        if rest.is_some() && self.ascii {
            return Err(Error::Usage(
                "resuming is not possible in ASCII mode (offsets differ)".into(),
            ));
        }
        self.ensure_type().await?;
        let started = Instant::now();
        let Some(mut data) = self.open_data(verb, Some(path), rest).await? else {
            return Err(Error::Protocol(format!(
                "{verb} completed without a data connection"
            )));
        };
        let n = match self.copy_out(input, &mut data, progress).await {
            Ok(n) => n,
            Err(e) => {
                // A reset, not a FIN: the server must not take the partial file as complete.
                data.set_zero_linger();
                drop(data);
                return Err(self.after_broken_transfer(e, verb, Some(path)).await);
            }
        };
        // FIN (after TLS close_notify) tells the server the file is complete; then it replies.
        let _ = wharf_net::close::shutdown(&mut data, self.options.timeout).await;
        // The server answers with its close_notify (and, over TLS 1.3, may have sent fresh
        // session tickets for the next data connection): read up to it.
        wharf_net::close::drain(&mut data, wharf_net::close::DRAIN_LIMIT).await;
        drop(data);
        self.finish_transfer(verb, Some(path)).await?;
        self.log_transfer(n, started);
        Ok(n)
    }

    /// Closes the control connection without QUIT (for a session that is out of step).
    pub async fn close(&mut self) {
        self.broken = true;
        let _ = timeout(Duration::from_secs(1), self.control.shutdown()).await;
    }

    /// QUIT, ignoring what happens: the session is over either way.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT", None).await;
    }

    async fn ensure_type(&mut self) -> Result<()> {
        if self.type_sent != Some(self.ascii) {
            let arg: &[u8] = if self.ascii { b"A" } else { b"I" };
            self.simple("TYPE", Some(arg)).await?;
            self.type_sent = Some(self.ascii);
        }
        Ok(())
    }

    async fn read_listing(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<Vec<u8>> {
        // Some servers answer a listing of an empty directory with 226 and no data connection.
        let Some(mut data) = self.open_data(verb, arg, None).await? else {
            return Ok(Vec::new());
        };
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.data_io(data.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(buf.get(..n).unwrap_or_default());
            if raw.len() > MAX_LISTING {
                return Err(Error::Protocol(format!(
                    "listing larger than {MAX_LISTING} bytes"
                )));
            }
        }
        drop(data);
        self.finish_transfer(verb, arg).await?;
        Ok(raw)
    }

    async fn copy_in<W: AsyncWrite + Unpin>(
        &self,
        data: &mut Stream,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let r = copy::receive(
            data,
            out,
            &self.copy_options(),
            self.throttle(),
            &mut |wire, _| progress.advance(wire),
        )
        .await;
        r.map_err(|e| self.copy_error(e))
    }

    async fn copy_out<R: AsyncRead + Unpin>(
        &self,
        input: &mut R,
        data: &mut Stream,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let r = copy::send(
            input,
            data,
            &self.copy_options(),
            self.throttle(),
            &mut |_, local| progress.advance(local),
        )
        .await;
        r.map_err(|e| self.copy_error(e))
    }

    fn throttle(&self) -> &dyn Throttle {
        match &self.options.throttle {
            Some(t) => &**t,
            None => &Unlimited,
        }
    }

    fn copy_options(&self) -> CopyOptions {
        CopyOptions {
            ascii: self.ascii,
            buffer: BUF_SIZE,
            // A TLS download cut without close_notify is a broken one.
            require_close_notify: true,
            ..CopyOptions::new(self.options.timeout)
        }
    }

    /// A failed copy as the client reports it: the network, a stall, or the local file.
    fn copy_error(&self, e: CopyError) -> Error {
        match e {
            CopyError::Wire(e) => Error::Network(e),
            CopyError::Truncated => Error::Network(io::Error::from(io::ErrorKind::UnexpectedEof)),
            CopyError::Stalled => Error::Timeout(format!(
                "on the data connection: nothing moved for {} s",
                self.options.timeout.as_secs()
            )),
            CopyError::Local(e) => Error::local(e),
        }
    }

    /// One read or write of a data connection, bounded by the timeout (a stalled transfer).
    async fn data_io<T>(&self, op: impl Future<Output = io::Result<T>>) -> Result<T> {
        match timeout(self.options.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Network(e)),
            Err(_) => Err(Error::Timeout(format!(
                "on the data connection: nothing moved for {} s",
                self.options.timeout.as_secs()
            ))),
        }
    }

    /// The reply that ends a transfer: 226 or 250 (after a few further 1xx at most).
    async fn finish_transfer(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<()> {
        for _ in 0..10 {
            let reply = self.read_reply(&describe(verb, arg)).await?;
            if reply.code.is_preliminary() {
                continue;
            }
            if reply.code.is_completion() {
                return Ok(());
            }
            return Err(refused(verb, arg, reply));
        }
        self.broken = true;
        Err(Error::Protocol(format!(
            "{}: the server keeps sending preliminary replies",
            describe(verb, arg)
        )))
    }

    /// After a transfer broke on our side or on the data connection: the server's final reply
    /// tells why (a 451/552 beats "connection reset") and puts the session back in step. When
    /// it does not come soon, the session is out of step.
    async fn after_broken_transfer(&mut self, e: Error, verb: &str, arg: Option<&[u8]>) -> Error {
        let wait = self.options.timeout.min(Duration::from_secs(5));
        let what = describe(verb, arg);
        loop {
            match timeout(wait, self.read_reply(&what)).await {
                Ok(Ok(reply)) if reply.code.is_preliminary() => continue,
                Ok(Ok(reply)) => {
                    let server_said_why = reply.code.is_negative()
                        && matches!(e, Error::Network(_) | Error::Timeout(_));
                    return if server_said_why {
                        refused(verb, arg, reply)
                    } else {
                        e
                    };
                }
                Ok(Err(_)) | Err(_) => {
                    self.broken = true;
                    return e;
                }
            }
        }
    }

    fn log_transfer(&self, bytes: u64, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            format_rate(bytes as f64 / secs)
        } else {
            "-".into()
        };
        self.log_status(format!(
            "File transfer successful, transferred {bytes} bytes in {secs:.3} seconds ({rate})"
        ));
    }

    /// Makes a data connection in the mode the options and this session's experience say, and
    /// starts `verb` on it (after REST `rest`). Returns once the server said 125/150.
    /// `None` when the server completed the command without a data connection.
    async fn open_data(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        rest: Option<u64>,
    ) -> Result<Option<Stream>> {
        let opened = self.open_tcp_data(verb, arg, rest).await?;
        match opened {
            Some(tcp) => match self.protect(tcp).await {
                Ok(s) => Ok(Some(s)),
                Err(e) => Err(self.after_broken_transfer(e, verb, arg).await),
            },
            None => Ok(None),
        }
    }

    async fn open_tcp_data(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        rest: Option<u64>,
    ) -> Result<Option<TcpStream>> {
        let mode = self.options.mode;
        let try_passive = match mode {
            DataMode::Passive => true,
            DataMode::Active => false,
            DataMode::Auto => !self.passive_failed,
        };
        if !try_passive {
            return self.active_open(verb, arg, rest).await;
        }
        match self.passive_open(verb, arg, rest).await {
            Err(e) if mode == DataMode::Auto && e.is_data_connection_failure() => {
                self.log_status(format!("Passive mode failed ({e}); trying active mode"));
                let stream = self.active_open(verb, arg, rest).await?;
                // Only now is active known to work; a passing passive failure alone does not
                // send every later transfer of the session to active mode.
                self.passive_failed = true;
                Ok(stream)
            }
            other => other,
        }
    }

    async fn passive_open(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        rest: Option<u64>,
    ) -> Result<Option<TcpStream>> {
        let addr = self.enter_passive().await?;
        let attempt = self.connect_passive(addr).await;
        let stream = attempt.stream?;
        if attempt.announced_error.is_some() {
            // The server's address worked where the announced one did not: keep using it.
            self.pasv_use_peer = true;
        }
        let started = self.start_transfer(verb, arg, rest).await?;
        Ok(started.then_some(stream))
    }

    /// EPSV, or PASV when the server refuses EPSV; the address to connect to.
    async fn enter_passive(&mut self) -> Result<SocketAddr> {
        if !self.epsv_refused {
            let reply = self.command("EPSV", None).await?;
            if reply.code == ReplyCode::EXTENDED_PASSIVE {
                return self.passive_addr(DataMethod::Epsv, reply);
            }
            if !reply.code.is_negative() || reply.code == ReplyCode::SERVICE_UNAVAILABLE {
                return Err(refused("EPSV", None, reply));
            }
            self.epsv_refused = true;
            if self.peer.is_ipv6() {
                // PASV cannot carry an IPv6 address.
                return Err(refused("EPSV", None, reply));
            }
        }
        let reply = self.command("PASV", None).await?;
        let announced = self.passive_addr(DataMethod::Pasv, reply)?;
        if self.pasv_use_peer {
            return Ok(SocketAddr::new(self.peer.ip(), announced.port()));
        }
        Ok(announced)
    }

    /// The address a 229 (EPSV: the server's own, with the port given) or 227 (PASV: as
    /// announced) reply names; any other reply is a refusal.
    fn passive_addr(&self, method: DataMethod, reply: Reply) -> Result<SocketAddr> {
        let text = reply.lines.last().map_or(&[][..], |l| l);
        match (method, reply.code) {
            (DataMethod::Epsv, ReplyCode::EXTENDED_PASSIVE) => hostport::parse_epsv_reply(text)
                .map(|port| SocketAddr::new(self.peer.ip(), port))
                .map_err(|e| Error::Protocol(format!("EPSV reply: {e}"))),
            (DataMethod::Pasv, ReplyCode::PASSIVE) => hostport::parse_pasv_reply(text)
                .map(SocketAddr::V4)
                .map_err(|e| Error::Protocol(format!("PASV reply: {e}"))),
            _ => Err(refused(method.name(), None, reply)),
        }
    }

    /// Connects to a passive address. One that differs from the server's is not connected to:
    /// the server's own address is used with the announced port (a server must not steer the
    /// client to another host: a NAT misconfiguration, or a hostile server aiming it at a local
    /// service — curl's CVE-2020-8284). With `trust_pasv_address` a plausible one is tried
    /// briefly first, so that the server's own address can still be tried before its passive
    /// listener gives up on us.
    async fn connect_passive(&self, announced: SocketAddr) -> PassiveAttempt {
        let peer_ip = self.peer.ip();
        let server_addr = SocketAddr::new(peer_ip, announced.port());
        if announced.ip() == peer_ip {
            return PassiveAttempt {
                stream: self.connect_data(announced, self.options.timeout).await,
                addr: announced,
                announced_error: None,
            };
        }
        let class = address_class(announced.ip(), peer_ip);
        let why = if !self.options.trust_pasv_address {
            format!(
                "not connected to: {class}, not the server's (--trust-pasv-address to allow it)"
            )
        } else if plausible_data_address(announced.ip(), peer_ip) {
            let wait = self.options.timeout.min(Duration::from_secs(10));
            match self.connect_data(announced, wait).await {
                Ok(stream) => {
                    return PassiveAttempt {
                        stream: Ok(stream),
                        addr: announced,
                        announced_error: None,
                    };
                }
                Err(e) => e.to_string(),
            }
        } else {
            format!("not tried: {class}")
        };
        self.log_status(format!(
            "Server sent passive reply with address {} ({why}); using the server address {peer_ip} instead",
            announced.ip()
        ));
        PassiveAttempt {
            stream: self.connect_data(server_addr, self.options.timeout).await,
            addr: server_addr,
            announced_error: Some(why),
        }
    }

    async fn connect_data(&self, addr: SocketAddr, wait: Duration) -> Result<TcpStream> {
        match timeout(wait, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(source)) => Err(Error::DataConnect { addr, source }),
            Err(_) => Err(Error::DataConnect {
                addr,
                source: io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
            }),
        }
    }

    async fn active_open(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        rest: Option<u64>,
    ) -> Result<Option<TcpStream>> {
        let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
            .await
            .map_err(Error::Network)?;
        let addr = listener.local_addr().map_err(Error::Network)?;
        if !self.eprt_refused {
            let eprt = hostport::format_eprt(addr);
            let reply = self.command("EPRT", Some(eprt.as_bytes())).await?;
            if reply.code.is_completion() {
            } else if matches!(
                reply.code,
                ReplyCode::SYNTAX_ERROR | ReplyCode::NOT_IMPLEMENTED
            ) && addr.is_ipv4()
            {
                self.eprt_refused = true;
            } else {
                // Refused for a reason PORT would share, or IPv6, which PORT cannot carry.
                return Err(refused("EPRT", Some(eprt.as_bytes()), reply));
            }
        }
        if self.eprt_refused {
            let SocketAddr::V4(v4) = addr else {
                return Err(Error::Protocol(
                    "the server refuses EPRT, and PORT cannot carry an IPv6 address".into(),
                ));
            };
            let port = hostport::format_host_port(v4);
            self.simple("PORT", Some(port.as_bytes())).await?;
        }
        if !self.start_transfer(verb, arg, rest).await? {
            return Ok(None);
        }
        self.accept_data(listener, addr, verb, arg).await.map(Some)
    }

    /// Waits for the server's active-mode connection to `listener` (bound at `addr`).
    async fn accept_data(
        &mut self,
        listener: TcpListener,
        addr: SocketAddr,
        verb: &str,
        arg: Option<&[u8]>,
    ) -> Result<TcpStream> {
        // The server connects after the 1xx reply (or before it; the backlog holds it). Some
        // servers say 150 first and 425 when their connection fails: watch the control too.
        let deadline = Instant::now() + self.options.timeout;
        let what = describe(verb, arg);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Accept first: a server connects before it sends data and its 226, so when both
            // are ready the connection is taken and the 226 stays for `finish_transfer`.
            let waited = tokio::select! {
                biased;
                accepted = timeout(left, listener.accept()) => Waited::Accept(accepted),
                reply = self.read_reply(&what) => Waited::Reply(reply),
            };
            match waited {
                Waited::Accept(Ok(Ok((stream, from)))) if from.ip() == self.peer.ip() => {
                    return Ok(stream);
                }
                Waited::Accept(Ok(Ok((_, from)))) => {
                    // Someone else raced for our port: not the server, never take its data.
                    self.log_status(format!(
                        "Refused a data connection from {from}: not the server"
                    ));
                }
                Waited::Accept(Ok(Err(e))) => {
                    // The 150 is read; its 226/425 is still to come.
                    self.broken = true;
                    return Err(Error::Network(e));
                }
                Waited::Accept(Err(_)) => {
                    // The server may still answer 425 later: this session is out of step.
                    self.broken = true;
                    return Err(Error::DataConnect {
                        addr,
                        source: io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the server did not connect back (active mode)",
                        ),
                    });
                }
                Waited::Reply(Ok(reply)) if reply.code.is_preliminary() => {}
                Waited::Reply(Ok(reply)) if reply.code.is_completion() => {
                    return Err(Error::Protocol(format!(
                        "{what}: the server said {} before it connected",
                        reply.code
                    )));
                }
                Waited::Reply(Ok(reply)) => return Err(refused(verb, arg, reply)),
                Waited::Reply(Err(e)) => return Err(e),
            }
        }
    }

    /// REST (when resuming), then the transfer command. `Ok(true)` once the server says
    /// 125/150; `Ok(false)` when it completed the command at once (no data connection used).
    async fn start_transfer(
        &mut self,
        verb: &str,
        arg: Option<&[u8]>,
        rest: Option<u64>,
    ) -> Result<bool> {
        if let Some(offset) = rest {
            let offset = offset.to_string();
            let reply = self.command("REST", Some(offset.as_bytes())).await?;
            if reply.code != ReplyCode::PENDING_FURTHER_INFO {
                return Err(refused("REST", Some(offset.as_bytes()), reply));
            }
        }
        self.data_started = false;
        let reply = self.command(verb, arg).await?;
        if reply.code.is_preliminary() {
            self.data_started = true;
            Ok(true)
        } else if reply.code.is_completion() {
            Ok(false)
        } else {
            Err(refused(verb, arg, reply))
        }
    }

    async fn send(&mut self, verb: &str, arg: Option<&[u8]>) -> Result<()> {
        let mut line = Vec::with_capacity(verb.len() + arg.map_or(0, <[u8]>::len) + 3);
        line.extend_from_slice(verb.as_bytes());
        if let Some(arg) = arg {
            if arg.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(Error::Usage(format!(
                    "{verb}: the argument contains CR, LF or NUL, which FTP cannot send (nothing was sent)"
                )));
            }
            line.push(b' ');
            line.extend_from_slice(arg);
        }
        line.extend_from_slice(b"\r\n");
        self.options.log(LogLine::Command(describe(verb, arg)));
        let result = match timeout(self.options.timeout, self.control.write_all(&line)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Network(e)),
            Err(_) => Err(Error::Timeout(format!("sending {verb}"))),
        };
        self.broken |= result.is_err();
        result
    }

    async fn read_reply(&mut self, waiting_for: &str) -> Result<Reply> {
        let result = self.read_reply_inner(waiting_for).await;
        match &result {
            Ok(reply) if reply.code == ReplyCode::SERVICE_UNAVAILABLE => self.broken = true,
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

/// One way of making a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMethod {
    Epsv,
    Pasv,
    Eprt,
    Port,
}

impl DataMethod {
    pub const ALL: [DataMethod; 4] = [
        DataMethod::Epsv,
        DataMethod::Pasv,
        DataMethod::Eprt,
        DataMethod::Port,
    ];

    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            DataMethod::Epsv => "EPSV",
            DataMethod::Pasv => "PASV",
            DataMethod::Eprt => "EPRT",
            DataMethod::Port => "PORT",
        }
    }

    pub fn is_passive(self) -> bool {
        matches!(self, DataMethod::Epsv | DataMethod::Pasv)
    }
}

/// What [`Client::probe_listing`] saw.
#[derive(Debug)]
pub struct Probe {
    pub method: DataMethod,
    /// The reply to EPSV, PASV, EPRT or PORT.
    pub setup_reply: Option<Reply>,
    /// The address a PASV reply announced.
    pub announced: Option<SocketAddr>,
    /// Where the data connection went (passive) or was expected at (active).
    pub data_addr: Option<SocketAddr>,
    /// Why the announced PASV address failed, when it differs from the server's and failed.
    pub announced_error: Option<String>,
    /// The server's own address was used instead of the announced one.
    pub used_control_address: bool,
    /// Under PROT P: the data connection's TLS (`Some(true)` when it resumed the control
    /// connection's session).
    pub data_tls_resumed: Option<bool>,
    /// Bytes of listing received, or what went wrong.
    pub result: Result<usize>,
    pub elapsed: Duration,
}

/// How [`Client::connect_passive`] went.
struct PassiveAttempt {
    stream: Result<TcpStream>,
    /// Where the connection went (or was last tried).
    addr: SocketAddr,
    /// Why the announced address was not used, when the server's own was used instead.
    announced_error: Option<String>,
}

/// What the active-mode wait saw first.
enum Waited<A> {
    Accept(A),
    Reply(Result<Reply>),
}

/// What kind of address a PASV reply announced, next to the server's: for the log and the
/// troubleshooter.
pub fn address_class(announced: IpAddr, peer: IpAddr) -> &'static str {
    match announced {
        a if a.is_unspecified() => "an unspecified address",
        a if a.is_ipv4() != peer.is_ipv4() => "an address of the other IP family",
        a if a.is_loopback() => "a loopback address",
        IpAddr::V4(v4) if v4.is_link_local() => "a link-local address",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "a link-local address",
        a if is_local_address(a) => "a private address",
        _ => "a public address",
    }
}

/// Whether a PASV address that differs from the server's is worth trying: not when it is
/// unspecified, or loopback / private / link-local while the server is not (the address of a
/// server behind NAT, as seen from inside).
fn plausible_data_address(announced: IpAddr, peer: IpAddr) -> bool {
    !announced.is_unspecified() && (!is_local_address(announced) || is_local_address(peer))
}

/// Loopback, private (RFC 1918, IPv6 unique local) or link-local: an address that means
/// something only inside one network.
pub(crate) fn is_local_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// How a command shows in the log and in errors: the password masked.
fn describe(verb: &str, arg: Option<&[u8]>) -> String {
    match arg {
        _ if verb.eq_ignore_ascii_case("PASS") => "PASS ****".into(),
        Some(arg) => format!("{verb} {}", String::from_utf8_lossy(arg)),
        None => verb.to_string(),
    }
}

fn refused(verb: &str, arg: Option<&[u8]>, reply: Reply) -> Error {
    Error::Refused {
        command: describe(verb, arg),
        reply,
    }
}

/// The entry of an MLST facts line. MLST gives the path as asked: its last component is the
/// name.
pub fn mlst_entry(line: &[u8]) -> Option<Entry> {
    match entry::parse_mlsx_line(line)? {
        MlsxLine::Entry(mut e) => {
            if let Some(i) = e.name.iter().rposition(|&b| b == b'/') {
                e.name.drain(..=i);
            }
            Some(e)
        }
        MlsxLine::SelfOrParent => None,
    }
}

/// The quoted path of a 257 reply.
fn parse_257(text: &[u8]) -> Option<Vec<u8>> {
    let start = text.iter().position(|&b| b == b'"')? + 1;
    let mut out = Vec::new();
    let mut i = start;
    while let Some(&b) = text.get(i) {
        if b == b'"' {
            if text.get(i + 1) == Some(&b'"') {
                out.push(b'"');
                i += 2;
                continue;
            }
            return Some(out);
        }
        out.push(b);
        i += 1;
    }
    None
}

/// `12.3 MB/s`, decimal units as network rates are given.
pub fn format_rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 5] = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
    let mut v = bytes_per_sec;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwd_quoting() {
        assert_eq!(parse_257(b"\"/a\"\"b\" is current").unwrap(), b"/a\"b");
        assert_eq!(parse_257(b"no quotes"), None);
    }

    #[test]
    fn feat_parsing() {
        let reply = Reply::multi(
            ReplyCode::SYSTEM_STATUS,
            vec![
                b"Features:".to_vec(),
                b" MLST type*;size*;".to_vec(),
                b" REST STREAM".to_vec(),
                b" SIZE".to_vec(),
                b" UTF8".to_vec(),
                b"End".to_vec(),
            ],
        );
        let f = Features::parse(&reply);
        assert!(f.mlst && f.rest_stream && f.size && f.utf8 && !f.mdtm);
        assert_eq!(f.hash, HashFeat::default());
        assert!(f.x_hash.is_empty());
    }

    #[test]
    fn feat_hash_lines() {
        use HashAlgorithm::*;
        // FEAT's lines → (HASH's algorithms, its selected one, X verbs) and the command chosen
        type Case = (
            &'static [&'static [u8]],
            &'static [HashAlgorithm],
            Option<HashAlgorithm>,
            &'static [HashAlgorithm],
            Option<HashCommand>,
        );
        let cases: &[Case] = &[
            // Wharf
            (
                &[
                    b" HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32",
                    b" XCRC",
                    b" XMD5",
                    b" XSHA1",
                    b" XSHA256",
                    b" XSHA512",
                ],
                &[Sha1, Sha256, Sha512, Md5, Crc32],
                Some(Sha256),
                &[Crc32, Md5, Sha1, Sha256, Sha512],
                Some(HashCommand::Hash(Sha512)),
            ),
            // ProFTPD's mod_digest
            (
                &[
                    b" HASH SHA-1*;SHA-256;SHA-512;MD5;CRC32",
                    b" XCRC",
                    b" XMD5",
                    b" XSHA",
                    b" XSHA1",
                    b" XSHA256",
                    b" XSHA512",
                ],
                &[Sha1, Sha256, Sha512, Md5, Crc32],
                Some(Sha1),
                &[Crc32, Md5, Sha1, Sha256, Sha512],
                Some(HashCommand::Hash(Sha512)),
            ),
            // Only the older commands, and weak ones
            (
                &[b" XMD5", b" XCRC"],
                &[],
                None,
                &[Md5, Crc32],
                Some(HashCommand::X(Md5)),
            ),
            // vsftpd: none
            (&[b" EPSV", b" SIZE"], &[], None, &[], None),
        ];
        for (lines, offered, selected, x, chosen) in cases {
            let mut all = vec![b"Features:".to_vec()];
            all.extend(lines.iter().map(|l| l.to_vec()));
            all.push(b"End".to_vec());
            let f = Features::parse(&Reply::multi(ReplyCode::SYSTEM_STATUS, all));
            assert_eq!(f.hash.offered, *offered, "{lines:?}");
            assert_eq!(f.hash.selected, *selected, "{lines:?}");
            assert_eq!(f.x_hash, *x, "{lines:?}");
            assert_eq!(
                hash::choose(&f.hash.offered, &f.x_hash),
                *chosen,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn masked_password() {
        assert_eq!(describe("PASS", Some(b"secret")), "PASS ****");
        assert_eq!(describe("RETR", Some(b"a b")), "RETR a b");
    }
}
