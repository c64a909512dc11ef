//! One data method tried alone, without fallback, each stage reported: for the troubleshooter.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use wharf_proto::Reply;
use wharf_proto::client::{ClientCommand, DataMethod};

use super::{Client, PROBE_LISTING_LIMIT, refused};
use crate::error::{Error, Result};

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

impl Client {
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
        let listing = if self.features.mlst {
            ClientCommand::Mlsd(None)
        } else {
            ClientCommand::List(None)
        };
        let opened = if method.is_passive() {
            self.probe_passive(method, &listing, probe).await?
        } else {
            self.probe_active(method, &listing, probe).await?
        };
        let Some(stream) = opened else {
            return Ok(0);
        };
        let mut data = match self.protect(stream).await {
            Ok(s) => s,
            Err(e) => return Err(self.after_broken_transfer(e, &listing).await),
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
                    return Err(self.after_broken_transfer(e, &listing).await);
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
        self.finish_transfer(&listing).await?;
        Ok(total)
    }

    /// EPSV or PASV, the connection, and the listing command: the data connection, or `None`
    /// when the server completed the listing without one.
    async fn probe_passive(
        &mut self,
        method: DataMethod,
        listing: &ClientCommand<'_>,
        probe: &mut Probe,
    ) -> Result<Option<TcpStream>> {
        let setup = match method {
            DataMethod::Epsv => ClientCommand::Epsv,
            _ => ClientCommand::Pasv,
        };
        let reply = self.run(&setup).await?;
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
        Ok(self.start_transfer(listing, None).await?.then_some(stream))
    }

    /// EPRT or PORT, the listing command, and the server's connection back.
    async fn probe_active(
        &mut self,
        method: DataMethod,
        listing: &ClientCommand<'_>,
        probe: &mut Probe,
    ) -> Result<Option<TcpStream>> {
        let (listener, addr) = self.listen().await?;
        probe.data_addr = Some(addr);
        let setup = match (method, addr) {
            (DataMethod::Port, SocketAddr::V4(v4)) => ClientCommand::Port(v4),
            (DataMethod::Port, SocketAddr::V6(_)) => {
                return Err(Error::Protocol("PORT cannot carry an IPv6 address".into()));
            }
            _ => ClientCommand::Eprt(addr),
        };
        let reply = self.run(&setup).await?;
        probe.setup_reply = Some(reply.clone());
        if !reply.code.is_completion() {
            return Err(refused(&setup, reply));
        }
        // Servers that connect before they answer stay silent while they try.
        match self.start_transfer(listing, None).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(Error::Timeout(_)) => {
                return Err(Error::DataConnect {
                    addr,
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the server did not connect back (active mode): no reply to {} within {} s while it tried",
                            listing.verb(),
                            self.options.timeout.as_secs()
                        ),
                    ),
                });
            }
            Err(e) => return Err(e),
        }
        self.accept_data(listener, addr, listing).await.map(Some)
    }
}
