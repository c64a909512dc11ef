//! `wharf-client`: an FTP client library (RFC 959, 2389, 2428, 3659) on tokio.
//!
//! A [`Client`] is one session: it connects, logs in, and makes data connections in the mode
//! that works — passive first (EPSV, then PASV), active (EPRT, then PORT) when the passive
//! connection cannot be made, or the one [`DataMode`] forces. A PASV reply that announces an
//! address the client cannot reach (a server behind NAT without its masquerade address set) is
//! retried with the control connection's address. FTPS — explicit (AUTH TLS) and implicit — comes
//! with [`TlsSettings`]; data connections then resume the control connection's TLS session. Every command and reply can go to a
//! connection log in the classic `Status:` / `Command:` / `Response:` form, the password masked.
//!
//! [`tree`] adds what users do with whole files: downloads through a temporary file, resume
//! (REST+RETR, REST+STOR or APPE), recursive copies both ways, several sessions at once.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wharf_client::{Client, DataMode, FtpUrl, LogLine, NoProgress, Options};
//!
//! # async fn example() -> Result<(), wharf_client::Error> {
//! let url = FtpUrl::parse("ftp://ftp.example.net/pub/README")?;
//! let options = Options {
//!     mode: DataMode::Auto,
//!     log: Some(Arc::new(|line: &LogLine| eprintln!("{line}"))),
//!     ..Options::default()
//! };
//! let mut client = Client::connect(&url.host, url.port, options).await?;
//! client.login("anonymous", "anonymous@").await?;
//! for entry in client.list(b"pub").await? {
//!     println!("{}", String::from_utf8_lossy(&entry.name));
//! }
//! let mut readme = Vec::new();
//! client.retrieve(&url.path, 0, &mut readme, &NoProgress).await?;
//! client.quit().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod bench;
pub mod check;
pub mod client;
pub mod connector;
pub mod error;
pub mod log;
pub mod mirror;
pub mod netrc;
pub mod ops;
pub mod part;
mod pool;
pub mod retry;
pub mod segments;
pub mod tls;
pub mod tree;
pub mod url;
pub mod verify;
pub use wharf_proto::x509;

pub use client::{
    Client, DataMethod, DataMode, Features, NoProgress, Options, Probe, Progress, Store,
};
pub use error::{Error, ErrorKind, Result};
pub use log::{LogLine, LogSink};
pub use tls::{SeenCertificate, TlsSettings, Trust};
pub use url::FtpUrl;
pub use wharf_net::copy::{RateLimit, Throttle};
pub use wharf_proto::FileKind;
pub use wharf_proto::entry::Entry;
