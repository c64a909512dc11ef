//! The I/O of the way in: resolving, connecting, what the service says first, the TLS handshake
//! seen, and fresh sessions when one is out of step. Each returns facts for the judges.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::judge_banner::FirstBytes;
use super::judge_connect::Resolved;
use super::judge_tls::{Certificate, Handshake};
use crate::client::{Client, Options};
use crate::error::Error;
use crate::tls::TlsSettings;

/// Resolves the host (an address is one already): the facts and the addresses to try.
pub(crate) async fn resolve(host: &str, port: u16, wait: Duration) -> (Resolved, Vec<SocketAddr>) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return (Resolved::Address(ip), vec![SocketAddr::new(ip, port)]);
    }
    match timeout(wait, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(a)) => {
            let addrs: Vec<SocketAddr> = a.collect();
            (Resolved::Names(addrs.clone()), addrs)
        }
        Ok(Err(e)) => (Resolved::Failed(e), Vec::new()),
        Err(_) => (Resolved::TimedOut, Vec::new()),
    }
}

/// A TCP connection to the control port: `None` when it timed out (filtered).
pub(crate) async fn connect(
    addr: SocketAddr,
    wait: Duration,
) -> Option<std::io::Result<TcpStream>> {
    timeout(wait, TcpStream::connect(addr)).await.ok()
}

/// Looks at what the service on the control port says before it is asked anything (without
/// taking it from the stream). A service that says nothing within the timeout is sent one line
/// (`HELP`), as a person at a telnet prompt would: a web server answers it with HTTP, a TLS
/// server (an implicit FTPS port) with an alert; silence even then means a proxy or filter
/// holding the connection.
pub(crate) async fn first_bytes(control: &TcpStream, wait: Duration) -> FirstBytes {
    let mut buf = [0u8; 256];
    match timeout(wait, control.peek(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => FirstBytes::Nothing,
        Ok(Ok(n)) => FirstBytes::Sent(buf.get(..n).unwrap_or_default().to_vec()),
        Err(_) => {
            // Silence: ask, once.
            let _ = control.try_write(b"HELP\r\n");
            let answer = timeout(Duration::from_secs(3).min(wait), control.peek(&mut buf))
                .await
                .map(|r| r.unwrap_or(0));
            match answer {
                Ok(n) if n > 0 => {
                    FirstBytes::AnsweredHelp(buf.get(..n).unwrap_or_default().to_vec())
                }
                Ok(_) => FirstBytes::ClosedOnHelp,
                Err(_) => FirstBytes::Silent,
            }
        }
    }
}

/// What the control connection's TLS handshake showed, for [`super::judge_tls::handshake`].
pub(crate) fn handshake(client: &Client, settings: &TlsSettings, started: Instant) -> Handshake {
    let (version, suite) = client
        .tls_info()
        .cloned()
        .unwrap_or_else(|| ("?".into(), "?".into()));
    let certificate = settings.last_certificate().map(|seen| Certificate {
        summary: seen
            .chain
            .first()
            .and_then(|c| crate::x509::summarize(c.as_ref())),
        verdict: seen.verdict,
        name_matches: seen.name_matches,
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Handshake {
        version,
        suite,
        name: settings.server_name(),
        certificate,
        now,
        elapsed: started.elapsed(),
    }
}

/// A TCP connection and the welcome message (the TLS handshake first on an implicit port).
async fn open(peer: SocketAddr, options: &Options) -> Result<Client, Error> {
    let stream = match timeout(options.timeout, TcpStream::connect(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(Error::Connect { addr: peer, source }),
        Err(_) => return Err(Error::Timeout(format!("connecting to {peer}"))),
    };
    Client::from_stream(stream, options.clone()).await
}

/// A new session to `peer`, logged in.
pub(crate) async fn reopen(
    peer: SocketAddr,
    options: &Options,
    user: &str,
    password: &str,
) -> Result<Client, Error> {
    let mut c = open(peer, options).await?;
    c.login(user, password).await?;
    Ok(c)
}

/// Connects, and runs AUTH TLS and the handshake (or the implicit handshake): the cipher suite.
pub(crate) async fn handshake_only(peer: SocketAddr, options: &Options) -> Result<String, Error> {
    let mut client = open(peer, options).await?;
    client.secure().await?;
    let suite = client
        .tls_info()
        .map_or_else(|| "?".to_string(), |(_, suite)| suite.clone());
    client.quit().await;
    Ok(suite)
}

/// Who the check logs in as: to open a fresh session when one is out of step.
pub(crate) struct Account<'a> {
    pub options: &'a Options,
    pub user: &'a str,
    pub password: &'a str,
}

impl Account<'_> {
    /// Makes `client` usable: a session left out of step (a timeout, a broken transfer, a
    /// reply still on its way) is closed and a new one opened to the same address, so that no
    /// late reply is read as the answer to the next command.
    pub(crate) async fn ready(&self, client: &mut Client) -> Result<(), Error> {
        if client.in_step() {
            return Ok(());
        }
        let peer = client.peer_addr();
        client.close().await;
        *client = reopen(peer, self.options, self.user, self.password).await?;
        Ok(())
    }

    /// A new session of this account to `peer`.
    pub(crate) async fn reopen(&self, peer: SocketAddr) -> Result<Client, Error> {
        reopen(peer, self.options, self.user, self.password).await
    }
}
