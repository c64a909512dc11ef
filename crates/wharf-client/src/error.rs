//! One error type for the client. [`Error::kind`] sorts errors into what a caller acts on: the
//! server said no, the network failed, a local file failed, or the request itself was wrong.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use wharf_proto::{Reply, ReplyCode};

/// Everything that can go wrong in a client operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered a command with a code the operation cannot go on from.
    #[error("the server refused {command}: {}", reply_line(.reply))]
    Refused { command: String, reply: Reply },
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    /// No TCP connection to the control port (every address tried; the last error kept).
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    /// The data connection could not be made (passive: we connect; active: the server does).
    #[error("data connection to {addr} failed: {source}")]
    DataConnect { addr: SocketAddr, source: io::Error },
    /// Nothing happened within the timeout.
    #[error("timed out {0}")]
    Timeout(String),
    /// The server closed the control connection.
    #[error("the server closed the connection")]
    Closed,
    /// A read or write on a connection failed.
    #[error("network error: {0}")]
    Network(#[source] io::Error),
    /// TLS could not be set up or verified (a certificate problem says what to do).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server sent something that is not FTP.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A local file or directory could not be read or written.
    #[error("{}: {source}", .path.display())]
    Local { path: PathBuf, source: io::Error },
    /// A verified transfer (`--verify`) found the file differs from the server's, or could
    /// not be verified where that was required.
    #[error("{0}")]
    Verify(String),
    /// The request cannot be carried out as asked (a bad URL, a name that cannot be sent).
    #[error("{0}")]
    Usage(String),
}

/// What kind of failure an [`Error`] is; the `wharf` binary maps these to exit codes 1, 3, 1, 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Refused,
    Network,
    Local,
    Usage,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Resolve { .. }
            | Error::Connect { .. }
            | Error::DataConnect { .. }
            | Error::Timeout(_)
            | Error::Closed
            | Error::Network(_)
            | Error::Tls(_)
            | Error::Protocol(_) => ErrorKind::Network,
            // Exit code 1, and no retry: another try moves the same bytes.
            Error::Local { .. } | Error::Verify(_) => ErrorKind::Local,
            Error::Usage(_) => ErrorKind::Usage,
        }
    }

    /// The reply code, when the server refused.
    pub fn reply_code(&self) -> Option<ReplyCode> {
        match self {
            Error::Refused { reply, .. } => Some(reply.code),
            _ => None,
        }
    }

    /// True when the server turned the session away because it has too many: 421 at any point,
    /// or the 530 "maximum number of clients" that ProFTPD answers to USER.
    pub fn is_connection_limit(&self) -> bool {
        let Error::Refused { reply, .. } = self else {
            return false;
        };
        if reply.code.closes_session() {
            return true;
        }
        let text = reply.text().to_ascii_lowercase();
        reply.code == ReplyCode::NOT_LOGGED_IN
            && (text.contains("too many") || text.contains("maximum number"))
    }

    /// True when the failure is the data connection itself (so another data mode may work):
    /// it could not be made, or the server answered 425 "can't open data connection".
    pub fn is_data_connection_failure(&self) -> bool {
        matches!(self, Error::DataConnect { .. })
            || self
                .reply_code()
                .is_some_and(ReplyCode::is_data_connection_failure)
    }

    /// A local file error whose path is filled in later with [`Error::at`].
    pub fn local(source: io::Error) -> Error {
        Error::Local {
            path: PathBuf::new(),
            source,
        }
    }

    /// Names the local path of a [`Error::Local`] that has none yet; other errors pass.
    pub fn at(self, path: &std::path::Path) -> Error {
        match self {
            Error::Local { path: p, source } if p.as_os_str().is_empty() => Error::Local {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        }
    }
}

fn reply_line(reply: &Reply) -> String {
    format!("{} {}", reply.code, reply.text().replace('\n', " / "))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
