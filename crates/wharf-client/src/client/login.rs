//! Getting a session ready: HOST, AUTH TLS and the handshakes, USER/PASS, FEAT, PBSZ/PROT.

use tokio::net::TcpStream;
use tokio::time::timeout;
use wharf_proto::client::ClientCommand;
use wharf_proto::{ProtLevel, Reply, ReplyCode};

use super::{Client, Features, refused};
use crate::error::{Error, Result};
use crate::log::LogLine;
use crate::tls;
use wharf_net::Stream;

impl Client {
    /// AUTH TLS and the handshake, when the options ask for explicit TLS and the control
    /// connection is not TLS yet. `login` calls it; the troubleshooter calls it to report apart.
    pub async fn secure(&mut self) -> Result<()> {
        if self.options.tls.is_none() || self.control.is_tls() {
            return Ok(());
        }
        let reply = self.run(&ClientCommand::AuthTls).await?;
        if reply.code != ReplyCode::AUTH_OK {
            return Err(refused(&ClientCommand::AuthTls, reply));
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
    pub(super) async fn handshake(&mut self) -> Result<()> {
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
        let feat = self.run(&ClientCommand::Feat).await?;
        if feat.code != ReplyCode::SYSTEM_STATUS || !Features::lists(&feat, "HOST") {
            return Ok(());
        }
        let reply = self.run(&ClientCommand::Host(name.as_bytes())).await?;
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
        let user = ClientCommand::User(user.as_bytes());
        let reply = self.run(&user).await?;
        match reply.code {
            ReplyCode::LOGGED_IN => {}
            ReplyCode::NEED_PASSWORD => {
                let pass = ClientCommand::Pass(password.as_bytes());
                let reply = self.run(&pass).await?;
                if !reply.code.is_logged_in() {
                    return Err(refused(&pass, reply));
                }
            }
            _ => return Err(refused(&user, reply)),
        }
        self.read_features().await?;
        if self.features.utf8 {
            // Answered 200 or refused; names are sent as bytes either way.
            let opts = ClientCommand::OptsUtf8On;
            let reply = self.run(&opts).await?;
            if reply.code.closes_session() {
                return Err(refused(&opts, reply));
            }
        }
        if self.control.is_tls() {
            self.run_ok(&ClientCommand::Pbsz0).await?;
            // Data in clear is not what a TLS session asked for: a refusal ends it.
            self.run_ok(&ClientCommand::Prot(ProtLevel::Private))
                .await?;
            self.data_protection = ProtLevel::Private;
        }
        Ok(())
    }

    /// FEAT: what it lists decides MLSD over LIST and OPTS UTF8; a server that does not know
    /// FEAT offers nothing beyond RFC 959.
    async fn read_features(&mut self) -> Result<()> {
        let feat = self.run(&ClientCommand::Feat).await?;
        self.feat_reply = Some(feat.clone());
        if feat.code == ReplyCode::SYSTEM_STATUS {
            self.features = Features::parse(&feat);
        } else if feat.code.closes_session() {
            return Err(refused(&ClientCommand::Feat, feat));
        }
        Ok(())
    }

    /// Under PROT P, the TLS handshake on a data connection (after the server's 1xx reply, which
    /// is when servers start theirs), resuming the control connection's session.
    pub(super) async fn protect(&mut self, data: TcpStream) -> Result<Stream> {
        let (settings, config) = match (&self.options.tls, &self.tls_config, self.data_protection) {
            (Some(s), Some(c), ProtLevel::Private) => (s.clone(), c.clone()),
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
}
