//! `wharf-server`: the Wharf FTP server on tokio.
//!
//! The protocol is decided by `wharf-proto`'s sans-IO session; this crate is the shell around
//! it. [`run`] accepts connections ([`server`]), decides who each is from ([`conn::ConnInfo`]),
//! enforces the limits and spawns a driver per session, which performs what the session asks:
//! logins through an [`Authenticator`], files through a [`StorageProvider`] (the local file
//! system jailed with `openat2`, [`LocalFs`], or [`MemFs`] in memory), data connections and
//! transfers through one engine ([`transfer`]). [`Settings`] are plain values parsed once;
//! [`Services`] are the live objects built from them.
//!
//! ```no_run
//! use wharf_server::config::{FileConfig, Overrides, Settings};
//! use wharf_server::Services;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cli = Overrides { root: Some("/srv/ftp".into()), listen: vec!["127.0.0.1:2121".into()], ..Overrides::default() };
//! let settings = Settings::build(FileConfig::default(), cli)?;
//! let services = Services::new(&settings)?;
//! let listeners = settings.listen.iter().map(|a| wharf_server::bind(*a)).collect::<Result<Vec<_>, _>>()?;
//! wharf_server::run(settings, services, listeners, Vec::new(), async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

pub mod acme;
pub mod admin;
pub mod auth;
pub mod config;
pub mod config_keys;
pub mod conn;
mod diag;
mod driver;
pub mod guard;
mod hash;
pub mod hooks;
pub mod identity;
pub mod monitor;
pub mod own_files;
mod server;
pub mod services;
pub mod storage;
pub mod tls;
pub mod transfer;
pub mod userdb;
pub mod users;
pub mod xferlog;

pub use auth::{Account, AuthError, Authenticator, Credentials, Permissions, Rejection};
pub use config::{ConfigError, Settings};
pub use identity::UserStore;
pub use server::{Reload, bind, bind_std, run, run_reloadable};
pub use services::Services;
pub use storage::{LocalFs, MemFs, MemProvider, Storage, StorageError, StorageProvider};
