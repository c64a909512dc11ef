//! A connection that is plain TCP or TLS, on either side of the handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// The control connection (after AUTH TLS or on an implicit-TLS port, TLS) and data
/// connections (under PROT P, TLS), for the server and the client alike.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Lost in a failed TLS handshake: every read and write fails.
    Gone,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
            Stream::Gone => "Stream::Gone",
        })
    }
}

/// What a finished TLS handshake settled: for the log, and for the data-connection reuse check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `TLS 1.3`, `TLS 1.2`.
    pub version: String,
    /// The IANA name of the cipher suite.
    pub suite: String,
    /// The handshake resumed an earlier session.
    pub resumed: bool,
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref().0),
            Stream::Gone => None,
        }
    }

    /// Resets the connection when dropped (SO_LINGER 0), so that the peer cannot take a broken
    /// transfer for a complete one.
    pub fn set_zero_linger(&self) {
        if let Some(tcp) = self.tcp() {
            let _ = socket2::SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    /// The name a TLS client asked for (SNI), on the server's side of a handshake.
    pub fn server_name(&self) -> Option<String> {
        match self {
            Stream::Tls(s) => match &**s {
                TlsStream::Server(s) => s.get_ref().1.server_name().map(str::to_string),
                TlsStream::Client(_) => None,
            },
            _ => None,
        }
    }

    /// Version, cipher suite and resumption of a TLS connection; `None` in clear.
    pub fn tls_facts(&self) -> Option<TlsFacts> {
        match self {
            Stream::Tls(s) => Some(tls_facts(s)),
            _ => None,
        }
    }
}

/// Version, cipher suite and resumption of a finished handshake.
pub fn tls_facts(stream: &TlsStream<TcpStream>) -> TlsFacts {
    let conn: &rustls::CommonState = match stream {
        TlsStream::Client(c) => c.get_ref().1,
        TlsStream::Server(s) => s.get_ref().1,
    };
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "?".into(),
    };
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("?")
        .to_string();
    TlsFacts {
        version,
        suite,
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::server::TlsStream<TcpStream>) -> Stream {
        Stream::Tls(Box::new(TlsStream::Server(s)))
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for Stream {
    fn from(s: tokio_rustls::client::TlsStream<TcpStream>) -> Stream {
        Stream::Tls(Box::new(TlsStream::Client(s)))
    }
}

fn gone<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => gone(),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => gone(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => gone(),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => gone(),
        }
    }
}
