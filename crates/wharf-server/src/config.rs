//! Configuration: the TOML file, the command-line overrides, and the validated [`ServerConfig`]
//! built from both. Every error names the field it is about.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{
    AnonymousAccess, Authenticator, HashScheme, Permissions, Secret, UserEntry, UserStore,
};
use crate::tls::{Tls, TlsMode};

/// A configuration error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Limits and timeouts. Defaults follow vsftpd's.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Sessions at once, in all (vsftpd `max_clients`).
    pub max_sessions: usize,
    /// Sessions at once from one IP address (vsftpd `max_per_ip`).
    pub max_sessions_per_ip: usize,
    /// A session with no command for this long is closed with 421.
    pub idle_timeout: Duration,
    /// A data connection with no progress for this long is aborted.
    pub data_timeout: Duration,
    /// How long a passive listener waits for the client's connection.
    pub accept_timeout: Duration,
    /// How long an active-mode connection attempt may take.
    pub connect_timeout: Duration,
    /// Failed logins before the session is closed.
    pub max_login_failures: u32,
    /// A failed login is answered no sooner than this after PASS arrived.
    pub failed_login_delay: Duration,
    /// On shutdown, how long running transfers may go on.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: 2000,
            max_sessions_per_ip: 50,
            idle_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(300),
            accept_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(60),
            max_login_failures: 3,
            failed_login_delay: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Everything a running server needs, validated.
pub struct ServerConfig {
    /// The served directory (canonical): the home of every user without one of its own.
    pub root: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// The passive port range; `None` lets the OS choose.
    pub passive_ports: Option<RangeInclusive<u16>>,
    /// Announced in PASV replies instead of the control connection's local address. A name is
    /// resolved again at every PASV, so a dynamic DNS name follows address changes.
    pub passive_address: Option<String>,
    pub active_source_port: Option<u16>,
    /// Relaxations of the RFC 2577 protections. Each is logged at start-up when on.
    pub allow_foreign_active: bool,
    pub allow_low_active_ports: bool,
    pub allow_foreign_passive: bool,
    pub limits: Limits,
    pub auth: Arc<dyn Authenticator>,
    /// Password checks running at once: a crowd of logins cannot take all memory or CPU.
    pub auth_slots: tokio::sync::Semaphore,
    /// Open home directories, shared by the sessions of the same home: one descriptor and one
    /// allocation for a thousand sessions of one user, not one each.
    pub homes: crate::storage::HomeCache,
    pub banner: String,
    /// FTPS: `None` when no certificate is configured (TLS off).
    pub tls: Option<Arc<Tls>>,
    /// Implicit-TLS listeners (TLS from the first byte; port 990 in production).
    pub listen_implicit: Vec<SocketAddr>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("passive_ports", &self.passive_ports)
            .field("passive_address", &self.passive_address)
            .field("limits", &self.limits)
            .field("tls", &self.tls)
            .field("listen_implicit", &self.listen_implicit)
            .finish_non_exhaustive()
    }
}

/// The TOML file. Unknown fields are errors, so a typo is reported rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub root: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub anonymous: Option<bool>,
    /// Write access for anonymous (and command-line users).
    pub write: Option<bool>,
    pub banner: Option<String>,
    #[serde(default)]
    pub passive: PassiveSection,
    #[serde(default)]
    pub active: ActiveSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
    #[serde(default)]
    pub tls: TlsSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// `off`, `optional` or `required` (default: `required` when a certificate is given).
    pub mode: Option<String>,
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Implicit-TLS listeners, `ADDRESS:PORT`.
    pub listen_implicit: Option<Vec<String>>,
    /// Data connections must resume the control connection's TLS session (default on).
    pub require_session_reuse: Option<bool>,
    /// Uploads must end with a TLS close_notify to be complete (default on).
    pub require_close_notify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSection {
    pub ports: Option<String>,
    pub address: Option<String>,
    /// Accept passive data connections from any address (off: only the control peer's).
    pub allow_foreign_peer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveSection {
    pub source_port: Option<u16>,
    /// Allow PORT/EPRT to addresses other than the client's (FXP; opens bounce attacks).
    pub allow_foreign_address: Option<bool>,
    /// Allow PORT/EPRT to ports below 1024.
    pub allow_privileged_ports: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<usize>,
    pub idle_timeout: Option<u64>,
    pub data_timeout: Option<u64>,
    pub accept_timeout: Option<u64>,
    pub connect_timeout: Option<u64>,
    pub max_login_failures: Option<u32>,
    pub failed_login_delay_ms: Option<u64>,
    pub shutdown_grace: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    pub name: String,
    pub password_hash: String,
    pub home: Option<PathBuf>,
    pub permissions: Option<Vec<String>>,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        FileConfig::parse(&text)
    }

    /// Parses config text; the error names the offending key.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let field = match e.span() {
                Some(span) => key_at(text, span.start),
                None => String::from("config"),
            };
            ConfigError::new(field, message)
        })
    }
}

/// The dotted key at a byte offset of a TOML text, for error messages: the table header above
/// the offset plus the key on its line.
fn key_at(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..).unwrap_or_default();
    let line = line.lines().next().unwrap_or_default();
    let key = line.split('=').next().unwrap_or_default().trim();
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match (table, key.is_empty() || key.starts_with('[')) {
        (Some(t), false) => format!("{t}.{key}"),
        (Some(t), true) => t,
        (None, false) => key.to_string(),
        (None, true) => String::from("config"),
    }
}

/// Options from the command line; each set one wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub listen: Vec<String>,
    pub write: bool,
    /// `NAME:PASSWORD` pairs.
    pub users: Vec<String>,
    pub anonymous: bool,
    pub passive_ports: Option<String>,
    pub passive_address: Option<String>,
    pub active_source_port: Option<u16>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `off`, `optional` or `required`.
    pub tls_mode: Option<String>,
    pub listen_implicit: Vec<String>,
}

/// The default control listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2121";

/// Parses `A-B` into a port range.
pub fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = text
        .split_once('-')
        .ok_or("expected a range such as 50000-50100")?;
    let a: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("`{a}` is not a port number"))?;
    let b: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("`{b}` is not a port number"))?;
    if a == 0 || a > b {
        return Err(format!("`{text}` is empty or starts at 0"));
    }
    Ok(a..=b)
}

fn parse_listen(field: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::new(
            field,
            format!("`{text}` is not ADDRESS:PORT (IPv6 as [::1]:2121)"),
        )
    })
}

fn parse_permissions(field: &str, list: &[String]) -> Result<Permissions, ConfigError> {
    let mut p = Permissions::default();
    for item in list {
        match item.as_str() {
            "read" => p.read = true,
            "write" => p.write = true,
            "delete" => p.delete = true,
            "mkdir" => p.mkdir = true,
            "rename" => p.rename = true,
            "all" => p = Permissions::ALL,
            other => {
                return Err(ConfigError::new(
                    field,
                    format!(
                        "unknown permission `{other}` (read, write, delete, mkdir, rename, all)"
                    ),
                ));
            }
        }
    }
    Ok(p)
}

fn check_dir(field: &str, dir: &Path) -> Result<PathBuf, ConfigError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| ConfigError::new(field, format!("`{}`: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(ConfigError::new(
            field,
            format!("`{}` is not a directory", dir.display()),
        ));
    }
    std::fs::canonicalize(dir)
        .map_err(|e| ConfigError::new(field, format!("`{}`: {e}", dir.display())))
}

impl ServerConfig {
    /// Builds the configuration from the file (if any) and the command line.
    pub fn build(file: FileConfig, cli: Overrides) -> Result<ServerConfig, ConfigError> {
        let (root_field, root) = match (&cli.root, &file.root) {
            (Some(r), _) => ("--root", r.clone()),
            (None, Some(r)) => ("root", r.clone()),
            (None, None) => ("--root", PathBuf::from(".")),
        };
        let root = check_dir(root_field, &root)?;

        // The file's fields are checked even where a flag overrides them: a bad file is an error.
        let file_listen = match &file.listen {
            Some(list) if list.is_empty() => {
                return Err(ConfigError::new(
                    "listen",
                    "needs at least one ADDRESS:PORT",
                ));
            }
            Some(list) => Some(
                list.iter()
                    .map(|l| parse_listen("listen", l))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let listen = if !cli.listen.is_empty() {
            cli.listen
                .iter()
                .map(|l| parse_listen("--listen", l))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            file_listen.unwrap_or(vec![parse_listen("listen", DEFAULT_LISTEN)?])
        };

        let file_ports = match &file.passive.ports {
            Some(r) => Some(parse_port_range(r).map_err(|m| ConfigError::new("passive.ports", m))?),
            None => None,
        };
        let passive_ports = match &cli.passive_ports {
            Some(r) => {
                Some(parse_port_range(r).map_err(|m| ConfigError::new("--passive-ports", m))?)
            }
            None => file_ports,
        };
        let passive_address = cli.passive_address.clone().or(file.passive.address.clone());
        if passive_address
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            return Err(ConfigError::new("passive.address", "must not be empty"));
        }

        let write = cli.write || file.write.unwrap_or(false);
        let mut users = Vec::new();
        for spec in &cli.users {
            let (name, password) = spec
                .split_once(':')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| ConfigError::new("--user", "expected NAME:PASSWORD"))?;
            let hash = crate::auth::hash_password(password.as_bytes())
                .map_err(|m| ConfigError::new("--user", m))?;
            users.push(UserEntry {
                name: name.to_string(),
                secret: Secret::Hash(hash),
                home: root.clone(),
                permissions: Permissions::from_write_flag(write),
            });
        }
        for (i, u) in file.users.iter().enumerate() {
            let field = |f: &str| format!("user[{i}].{f}");
            if u.name.is_empty() || u.name.contains(char::is_whitespace) {
                return Err(ConfigError::new(
                    field("name"),
                    "must be non-empty without spaces",
                ));
            }
            if HashScheme::of(&u.password_hash).is_none() {
                return Err(ConfigError::new(
                    field("password_hash"),
                    "not a supported hash ($argon2id$ from `wharf passwd`, bcrypt $2b$/$2y$, SHA-crypt $6$/$5$)",
                ));
            }
            let home = match &u.home {
                Some(h) => check_dir(&field("home"), h)?,
                None => root.clone(),
            };
            let permissions = match &u.permissions {
                Some(list) => parse_permissions(&field("permissions"), list)?,
                None => Permissions::READ_ONLY,
            };
            users.push(UserEntry {
                name: u.name.clone(),
                secret: Secret::Hash(u.password_hash.clone()),
                home,
                permissions,
            });
        }
        // Anonymous: on only when no user is given, unless asked for explicitly.
        let anonymous_on = cli.anonymous || file.anonymous.unwrap_or(users.is_empty());
        let anonymous = anonymous_on.then(|| AnonymousAccess {
            home: root.clone(),
            permissions: Permissions::from_write_flag(write),
        });

        let defaults = Limits::default();
        let l = &file.limits;
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        let limits = Limits {
            max_sessions: l.max_sessions.unwrap_or(defaults.max_sessions),
            max_sessions_per_ip: l
                .max_sessions_per_ip
                .unwrap_or(defaults.max_sessions_per_ip),
            idle_timeout: secs(l.idle_timeout, defaults.idle_timeout),
            data_timeout: secs(l.data_timeout, defaults.data_timeout),
            accept_timeout: secs(l.accept_timeout, defaults.accept_timeout),
            connect_timeout: secs(l.connect_timeout, defaults.connect_timeout),
            max_login_failures: l.max_login_failures.unwrap_or(defaults.max_login_failures),
            failed_login_delay: l
                .failed_login_delay_ms
                .map_or(defaults.failed_login_delay, Duration::from_millis),
            shutdown_grace: secs(l.shutdown_grace, defaults.shutdown_grace),
        };
        // Upper bound: a timeout of a year is as good as none, and larger values would overflow
        // the clock arithmetic.
        const MAX_SECS: u64 = 366 * 86_400;
        for (name, v) in [
            ("limits.idle_timeout", l.idle_timeout),
            ("limits.data_timeout", l.data_timeout),
            ("limits.accept_timeout", l.accept_timeout),
            ("limits.connect_timeout", l.connect_timeout),
            ("limits.shutdown_grace", l.shutdown_grace),
            (
                "limits.failed_login_delay_ms",
                l.failed_login_delay_ms.map(|ms| ms / 1000),
            ),
        ] {
            if v.is_some_and(|v| v > MAX_SECS) {
                return Err(ConfigError::new(
                    name,
                    format!("must be at most {MAX_SECS} seconds"),
                ));
            }
        }
        for (name, zero) in [
            ("limits.max_sessions", limits.max_sessions == 0),
            (
                "limits.max_sessions_per_ip",
                limits.max_sessions_per_ip == 0,
            ),
            ("limits.idle_timeout", limits.idle_timeout.is_zero()),
            ("limits.data_timeout", limits.data_timeout.is_zero()),
            ("limits.accept_timeout", limits.accept_timeout.is_zero()),
            ("limits.connect_timeout", limits.connect_timeout.is_zero()),
            ("limits.max_login_failures", limits.max_login_failures == 0),
        ] {
            if zero {
                return Err(ConfigError::new(name, "must be greater than 0"));
            }
        }

        let (tls, listen_implicit) = build_tls(&file.tls, &cli)?;

        Ok(ServerConfig {
            root: root.clone(),
            listen,
            passive_ports,
            passive_address,
            active_source_port: cli.active_source_port.or(file.active.source_port),
            allow_foreign_active: file.active.allow_foreign_address.unwrap_or(false),
            allow_low_active_ports: file.active.allow_privileged_ports.unwrap_or(false),
            allow_foreign_passive: file.passive.allow_foreign_peer.unwrap_or(false),
            limits,
            auth: Arc::new(UserStore::new(users, anonymous)),
            homes: crate::storage::HomeCache::default(),
            auth_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            banner: file
                .banner
                .unwrap_or_else(|| "Wharf FTP server ready.".to_string()),
            tls,
            listen_implicit,
        })
    }
}

/// The TLS part of the configuration: certificate and key (both or neither), the mode
/// (`required` by default once a certificate is given), and the implicit listeners.
fn build_tls(
    file: &TlsSection,
    cli: &Overrides,
) -> Result<(Option<Arc<Tls>>, Vec<SocketAddr>), ConfigError> {
    let parse_mode = |field: &str, text: &Option<String>| -> Result<_, ConfigError> {
        text.as_deref()
            .map(|m| {
                TlsMode::parse(m).ok_or_else(|| {
                    ConfigError::new(field, format!("`{m}` is not off, optional or required"))
                })
            })
            .transpose()
    };
    let file_mode = parse_mode("tls.mode", &file.mode)?;
    let cli_mode = parse_mode("--tls", &cli.tls_mode)?;
    let cert = cli.tls_cert.clone().or(file.cert.clone());
    let key = cli.tls_key.clone().or(file.key.clone());
    let file_implicit = match &file.listen_implicit {
        Some(list) => list
            .iter()
            .map(|l| parse_listen("tls.listen_implicit", l))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let implicit = if cli.listen_implicit.is_empty() {
        file_implicit
    } else {
        cli.listen_implicit
            .iter()
            .map(|l| parse_listen("--listen-implicit", l))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mode = cli_mode.or(file_mode);
    // Errors name where the value came from: the flag, or the file's key.
    let (cert_field, key_field) = (
        if cli.tls_cert.is_some() {
            "--tls-cert"
        } else {
            "tls.cert"
        },
        if cli.tls_key.is_some() {
            "--tls-key"
        } else {
            "tls.key"
        },
    );
    let (cert, key) = match (cert, key, mode) {
        (_, _, Some(TlsMode::Off)) => {
            if !implicit.is_empty() {
                let field = if cli.listen_implicit.is_empty() {
                    "tls.listen_implicit"
                } else {
                    "--listen-implicit"
                };
                return Err(ConfigError::new(field, "needs TLS, but TLS is off"));
            }
            return Ok((None, Vec::new()));
        }
        (Some(c), Some(k), _) => (c, k),
        (None, None, None) if implicit.is_empty() => return Ok((None, Vec::new())),
        (None, _, _) => {
            return Err(ConfigError::new(
                cert_field,
                "TLS needs a certificate: --tls-cert FILE and --tls-key FILE (PEM; `wharf cert NAME` makes one for development)",
            ));
        }
        (Some(_), None, _) => {
            return Err(ConfigError::new(
                key_field,
                "TLS needs the certificate's private key: --tls-key FILE (PEM)",
            ));
        }
    };
    let mode = mode.unwrap_or(TlsMode::Required);
    let tls = Tls::new(
        mode,
        &cert,
        &key,
        file.require_session_reuse.unwrap_or(true),
        file.require_close_notify.unwrap_or(true),
    )
    .map_err(|m| ConfigError::new(cert_field, m))?;
    Ok((Some(Arc::new(tls)), implicit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_is_named() {
        let e = FileConfig::parse("[passive]\nportz = \"1-2\"\n").unwrap_err();
        assert_eq!(e.field, "passive.portz");
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn wrong_type_is_named() {
        let e = FileConfig::parse("[limits]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert_eq!(e.field, "limits.idle_timeout");
        let e = FileConfig::parse("anonymous = 3\n").unwrap_err();
        assert_eq!(e.field, "anonymous");
    }

    #[test]
    fn build_validates_fields() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        let build = |toml: &str| {
            ServerConfig::build(FileConfig::parse(toml).unwrap(), Overrides::default()).map(|_| ())
        };
        let e = build(&format!("root = '{root}'\n[passive]\nports = '9-3'\n")).unwrap_err();
        assert_eq!(e.field, "passive.ports");
        let e = build(&format!("root = '{root}'\nlisten = ['nope']\n")).unwrap_err();
        assert_eq!(e.field, "listen");
        let e = build("root = '/does/not/exist'\n").unwrap_err();
        assert_eq!(e.field, "root");
        let e = build(&format!(
            "root = '{root}'\n[[user]]\nname='a'\npassword_hash='plain'\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "user[0].password_hash");
        let e = build(&format!(
            "root = '{root}'\n[[user]]\nname='a'\npassword_hash='$6$x$y'\npermissions=['fly']\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "user[0].permissions");
        let e = build(&format!(
            "root = '{root}'\n[limits]\nidle_timeout = 18446744073709551615\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "limits.idle_timeout");
        let e = build(&format!("root = '{root}'\n[limits]\nmax_sessions = 0\n")).unwrap_err();
        assert_eq!(e.field, "limits.max_sessions");
        build(&format!(
            "root = '{root}'\n[passive]\nports = '50000-50100'\n"
        ))
        .unwrap();
    }

    #[test]
    fn tls_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        let build = |toml: &str| {
            ServerConfig::build(FileConfig::parse(toml).unwrap(), Overrides::default()).map(|_| ())
        };
        let e = build(&format!("root = '{root}'\n[tls]\nmode = 'maybe'\n")).unwrap_err();
        assert_eq!(e.field, "tls.mode");
        let e = build(&format!("root = '{root}'\n[tls]\nmode = 'required'\n")).unwrap_err();
        assert_eq!(e.field, "tls.cert");
        let e = build(&format!(
            "root = '{root}'\n[tls]\nmode = 'off'\nlisten_implicit = ['127.0.0.1:990']\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "tls.listen_implicit");
        let e = build(&format!(
            "root = '{root}'\n[tls]\ncert = '/nonexistent.pem'\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "tls.key");
        let e = build(&format!(
            "root = '{root}'\n[tls]\ncert = '/nonexistent.pem'\nkey = '/nonexistent.key'\n"
        ))
        .unwrap_err();
        assert_eq!(e.field, "tls.cert");
        assert!(e.message.contains("/nonexistent.pem"), "{}", e.message);
        // No certificate, no TLS settings: TLS is off.
        let c = ServerConfig::build(
            FileConfig::parse(&format!("root = '{root}'\n")).unwrap(),
            Overrides::default(),
        )
        .unwrap();
        assert!(c.tls.is_none());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("50000-50010"), Ok(50000..=50010));
        assert!(parse_port_range("5").is_err());
        assert!(parse_port_range("0-5").is_err());
        assert!(parse_port_range("7-5").is_err());
        assert!(parse_port_range("1-70000").is_err());
    }
}
