//! Making data connections: the session's `DataStrategy` says which command to send and what a
//! reply or a failed connection means; this file sends, connects, listens and accepts.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use wharf_proto::client::{ClientCommand, DataMethod, Next, PassiveTarget, Unused};
use wharf_proto::{Reply, ReplyCode, hostport};

use super::{Client, refused};
use crate::error::{Error, Result};
use wharf_net::Stream;

/// How [`Client::connect_passive`] went.
pub(super) struct PassiveAttempt {
    pub(super) stream: Result<TcpStream>,
    /// Where the connection went (or was last tried).
    pub(super) addr: SocketAddr,
    /// Why the announced address was not used, when the server's own was used instead.
    pub(super) announced_error: Option<String>,
}

/// What the active-mode wait saw first.
enum Waited<A> {
    Accept(A),
    Reply(Result<Reply>),
}

/// A data method that did not carry the transfer: the error to report, and what the strategy
/// says to do next.
struct Failed {
    error: Error,
    next: Next,
}

impl Failed {
    /// A failure no other method would mend (the control connection broke, a reply made no
    /// sense, a local socket could not be had).
    fn give_up(error: Error) -> Failed {
        Failed {
            error,
            next: Next::GiveUp,
        }
    }
}

impl Client {
    /// Makes a data connection in the mode the options and this session's experience say, and
    /// starts `command` on it (after REST `rest`). Returns once the server said 125/150.
    /// `None` when the server completed the command without a data connection.
    pub(super) async fn open_data(
        &mut self,
        command: &ClientCommand<'_>,
        rest: Option<u64>,
    ) -> Result<Option<Stream>> {
        let opened = self.open_tcp_data(command, rest).await?;
        match opened {
            Some(tcp) => match self.protect(tcp).await {
                Ok(s) => Ok(Some(s)),
                Err(e) => Err(self.after_broken_transfer(e, command).await),
            },
            None => Ok(None),
        }
    }

    /// Tries the methods the strategy names, in its order, until one carries the command.
    async fn open_tcp_data(
        &mut self,
        command: &ClientCommand<'_>,
        rest: Option<u64>,
    ) -> Result<Option<TcpStream>> {
        let mut method = self.data.next();
        loop {
            let tried = if method.is_passive() {
                self.passive_open(method, command, rest).await
            } else {
                self.active_open(method, command, rest).await
            };
            match tried {
                Ok(stream) => {
                    self.data.on_worked(method);
                    return Ok(stream);
                }
                Err(Failed {
                    error,
                    next: Next::Fallback(next),
                }) => {
                    if method.is_passive() && !next.is_passive() {
                        self.log_status(format!(
                            "Passive mode failed ({error}); trying active mode"
                        ));
                    }
                    method = next;
                }
                Err(Failed { error, .. }) => return Err(error),
            }
        }
    }

    /// What the strategy makes of an error after `method`'s command was accepted: a data
    /// connection that could not be made may leave another method; anything else ends here.
    fn failed(&self, method: DataMethod, error: Error) -> Failed {
        let next = if error.is_data_connection_failure() {
            self.data.on_connect_failed(method)
        } else {
            Next::GiveUp
        };
        Failed { error, next }
    }

    /// Sends `method`'s command (EPSV, PASV, EPRT or PORT) and tells the strategy the reply.
    async fn set_up(
        &mut self,
        method: DataMethod,
        command: &ClientCommand<'_>,
    ) -> Result<Reply, Failed> {
        let reply = self.run(command).await.map_err(Failed::give_up)?;
        match self.data.on_reply(method, reply.code) {
            Next::Use => Ok(reply),
            next => Err(Failed {
                error: refused(command, reply),
                next,
            }),
        }
    }

    async fn passive_open(
        &mut self,
        method: DataMethod,
        command: &ClientCommand<'_>,
        rest: Option<u64>,
    ) -> Result<Option<TcpStream>, Failed> {
        let setup = match method {
            DataMethod::Epsv => ClientCommand::Epsv,
            _ => ClientCommand::Pasv,
        };
        let reply = self.set_up(method, &setup).await?;
        let announced = self.passive_addr(method, reply).map_err(Failed::give_up)?;
        let addr = self.data.pasv_destination(announced, self.peer.ip());
        let attempt = self.connect_passive(addr).await;
        let stream = attempt.stream.map_err(|e| self.failed(method, e))?;
        if attempt.announced_error.is_some() {
            // The server's address worked where the announced one did not: keep using it.
            self.data.passive_worked_with_peer_address();
        }
        match self.start_transfer(command, rest).await {
            Ok(started) => Ok(started.then_some(stream)),
            Err(e) => Err(self.failed(method, e)),
        }
    }

    /// The address a 229 (EPSV: the server's own, with the port given) or 227 (PASV: as
    /// announced) reply names; any other reply is a refusal.
    pub(super) fn passive_addr(&self, method: DataMethod, reply: Reply) -> Result<SocketAddr> {
        let text = reply.lines.last().map_or(&[][..], |l| l);
        match (method, reply.code) {
            (DataMethod::Epsv, ReplyCode::EXTENDED_PASSIVE) => hostport::parse_epsv_reply(text)
                .map(|port| SocketAddr::new(self.peer.ip(), port))
                .map_err(|e| Error::Protocol(format!("EPSV reply: {e}"))),
            (DataMethod::Pasv, ReplyCode::PASSIVE) => hostport::parse_pasv_reply(text)
                .map(SocketAddr::V4)
                .map_err(|e| Error::Protocol(format!("PASV reply: {e}"))),
            _ => {
                let command = match method {
                    DataMethod::Epsv => ClientCommand::Epsv,
                    _ => ClientCommand::Pasv,
                };
                Err(refused(&command, reply))
            }
        }
    }

    /// Connects to a passive address as [`PassiveTarget::choose`] says: one that differs from
    /// the server's is connected to only with `trust_pasv_address`, and then briefly, so that
    /// the server's own address can still be tried before its passive listener gives up on us.
    pub(super) async fn connect_passive(&self, announced: SocketAddr) -> PassiveAttempt {
        let peer_ip = self.peer.ip();
        let server_addr = SocketAddr::new(peer_ip, announced.port());
        let target =
            PassiveTarget::choose(announced.ip(), peer_ip, self.options.trust_pasv_address);
        let why = match target {
            PassiveTarget::Announced => {
                return PassiveAttempt {
                    stream: self.connect_data(announced, self.options.timeout).await,
                    addr: announced,
                    announced_error: None,
                };
            }
            PassiveTarget::AnnouncedThenServer => {
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
            }
            PassiveTarget::Server(Unused::Untrusted { class }) => format!(
                "not connected to: {class}, not the server's (--trust-pasv-address to allow it)"
            ),
            PassiveTarget::Server(Unused::Implausible { class }) => format!("not tried: {class}"),
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
        method: DataMethod,
        command: &ClientCommand<'_>,
        rest: Option<u64>,
    ) -> Result<Option<TcpStream>, Failed> {
        let (listener, addr) = self.listen().await.map_err(Failed::give_up)?;
        let setup = match (method, addr) {
            (DataMethod::Port, SocketAddr::V4(v4)) => ClientCommand::Port(v4),
            (DataMethod::Port, SocketAddr::V6(_)) => {
                return Err(Failed::give_up(Error::Protocol(
                    "the server refuses EPRT, and PORT cannot carry an IPv6 address".into(),
                )));
            }
            _ => ClientCommand::Eprt(addr),
        };
        self.set_up(method, &setup).await?;
        match self.start_transfer(command, rest).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => return Err(self.failed(method, e)),
        }
        match self.accept_data(listener, addr, command).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e) => Err(self.failed(method, e)),
        }
    }

    /// A listener for an active-mode connection, on our end of the control connection's
    /// address (the server connects back to where it sees us).
    pub(super) async fn listen(&self) -> Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))
            .await
            .map_err(Error::Network)?;
        let addr = listener.local_addr().map_err(Error::Network)?;
        Ok((listener, addr))
    }

    /// Waits for the server's active-mode connection to `listener` (bound at `addr`).
    pub(super) async fn accept_data(
        &mut self,
        listener: TcpListener,
        addr: SocketAddr,
        command: &ClientCommand<'_>,
    ) -> Result<TcpStream> {
        // The server connects after the 1xx reply (or before it; the backlog holds it). Some
        // servers say 150 first and 425 when their connection fails: watch the control too.
        let deadline = Instant::now() + self.options.timeout;
        let what = command.describe();
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
                Waited::Reply(Ok(reply)) => return Err(refused(command, reply)),
                Waited::Reply(Err(e)) => return Err(e),
            }
        }
    }

    /// REST (when resuming), then the transfer command. `Ok(true)` once the server says
    /// 125/150; `Ok(false)` when it completed the command at once (no data connection used).
    pub(super) async fn start_transfer(
        &mut self,
        command: &ClientCommand<'_>,
        rest: Option<u64>,
    ) -> Result<bool> {
        if let Some(offset) = rest {
            let rest = ClientCommand::Rest(offset);
            let reply = self.run(&rest).await?;
            if reply.code != ReplyCode::PENDING_FURTHER_INFO {
                return Err(refused(&rest, reply));
            }
        }
        self.data_started = false;
        let reply = self.run(command).await?;
        if reply.code.is_preliminary() {
            self.data_started = true;
            Ok(true)
        } else if reply.code.is_completion() {
            Ok(false)
        } else {
            Err(refused(command, reply))
        }
    }
}
