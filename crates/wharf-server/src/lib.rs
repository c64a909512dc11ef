//! `wharf-server`: the Wharf FTP server on tokio.
//!
//! One task per control connection runs a [`session`] that reads commands parsed by
//! `wharf-proto`, dispatches them through one `match`, and drives data connections (passive and
//! active, IPv4 and IPv6) with the RFC 2577 protections. Files are reached through the
//! [`Storage`] trait (the local file system jail, [`LocalFs`], uses `openat2(RESOLVE_BENEATH)`),
//! users through the [`Authenticator`] trait.
//!
//! ```no_run
//! use std::sync::Arc;
//! use wharf_server::config::{FileConfig, Overrides, ServerConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cli = Overrides { root: Some("/srv/ftp".into()), listen: vec!["127.0.0.1:2121".into()], ..Overrides::default() };
//! let config = Arc::new(ServerConfig::build(FileConfig::default(), cli)?);
//! let listeners = config.listen.iter().map(|a| wharf_server::bind(*a)).collect::<Result<Vec<_>, _>>()?;
//! wharf_server::run(config, listeners, Vec::new(), async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod config;
pub mod data;
mod server;
mod session;
pub mod storage;
pub mod tls;

pub use auth::{Account, Authenticator, Permissions, UserStore};
pub use config::{ConfigError, ServerConfig};
pub use server::{bind, run};
pub use storage::{LocalFs, Storage, StorageError};
