//! Configuration: the TOML file, the command-line overrides, and the [`Settings`] built from both,
//! once, into plain values. Every error names the field it is about.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::{AnonymousAccess, Permissions, Secret, UserEntry, UserLimits};
pub use wharf_proto::server::TlsMode;

/// A configuration error: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
    /// The line of the config file, when known (see [`line_of`]).
    pub line: Option<usize>,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
            line: None,
        }
    }

    /// `FILE:LINE: field: message` (or `FILE: …` without a line) for an error about `file`,
    /// whose text is `text`; the line is looked up from the field when the error has none.
    pub fn located(&self, file: &Path, text: Option<&str>) -> String {
        let line = self
            .line
            .or_else(|| text.and_then(|t| line_of(t, &self.field)));
        if self.field.starts_with("--") {
            return self.to_string();
        }
        match line {
            Some(l) => format!("{}:{l}: {self}", file.display()),
            None => format!("{}: {self}", file.display()),
        }
    }
}

/// Limits and timeouts, as the `[limits]` table spells them. Defaults follow vsftpd's.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Sessions at once, in all (vsftpd `max_clients`).
    pub max_sessions: usize,
    /// Sessions at once from one IP address (vsftpd `max_per_ip`).
    pub max_sessions_per_ip: usize,
    /// A session with no command for this long is closed with 421.
    #[serde(deserialize_with = "secs")]
    pub idle_timeout: Duration,
    /// A data connection with no progress for this long is aborted.
    #[serde(deserialize_with = "secs")]
    pub data_timeout: Duration,
    /// How long a passive listener waits for the client's connection.
    #[serde(deserialize_with = "secs")]
    pub accept_timeout: Duration,
    /// How long an active-mode connection attempt may take.
    #[serde(deserialize_with = "secs")]
    pub connect_timeout: Duration,
    /// Failed logins before the session is closed.
    pub max_login_failures: u32,
    /// A failed login is answered no sooner than this after PASS arrived.
    #[serde(rename = "failed_login_delay_ms", deserialize_with = "millis")]
    pub failed_login_delay: Duration,
    /// On shutdown, how long running transfers may go on.
    #[serde(deserialize_with = "secs")]
    pub shutdown_grace: Duration,
    /// How long a login check or a storage call may take before the backend counts as
    /// unavailable (421 for a login, 451 otherwise): a hung user database or object store
    /// must not hold sessions, and their places in the limits, forever.
    #[serde(deserialize_with = "secs")]
    pub backend_timeout: Duration,
    /// Failed logins from one address within `ban_window` that ban it (0: no bans).
    pub ban_after_failures: u32,
    #[serde(deserialize_with = "secs")]
    pub ban_window: Duration,
    /// The first ban's length; a repeat within a day doubles it.
    #[serde(deserialize_with = "secs")]
    pub ban_time: Duration,
    /// Defaults of the per-user limits (each `[[user]]` may set its own; none: no limit).
    pub max_sessions_per_user: Option<u32>,
    pub download_rate: Option<u64>,
    pub upload_rate: Option<u64>,
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
    pub max_file_size: Option<u64>,
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
            backend_timeout: Duration::from_secs(30),
            ban_after_failures: 10,
            ban_window: Duration::from_secs(600),
            ban_time: Duration::from_secs(900),
            max_sessions_per_user: None,
            download_rate: None,
            upload_rate: None,
            quota_bytes: None,
            quota_files: None,
            max_file_size: None,
        }
    }
}

impl Limits {
    /// The ban settings, as the guard takes them.
    pub fn ban_policy(&self) -> crate::guard::BanPolicy {
        crate::guard::BanPolicy {
            after_failures: self.ban_after_failures,
            window: self.ban_window,
            time: self.ban_time,
        }
    }
}

fn secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl Limits {
    /// Zero and absurd values, named by their key.
    fn validate(&self) -> Result<(), ConfigError> {
        // Upper bound: a timeout of a year is as good as none, and larger values would overflow
        // the clock arithmetic.
        const MAX: Duration = Duration::from_secs(366 * 86_400);
        for (name, d) in [
            ("limits.idle_timeout", self.idle_timeout),
            ("limits.data_timeout", self.data_timeout),
            ("limits.accept_timeout", self.accept_timeout),
            ("limits.connect_timeout", self.connect_timeout),
            ("limits.shutdown_grace", self.shutdown_grace),
            ("limits.backend_timeout", self.backend_timeout),
            ("limits.failed_login_delay_ms", self.failed_login_delay),
            ("limits.ban_window", self.ban_window),
            ("limits.ban_time", self.ban_time),
        ] {
            if d > MAX {
                return Err(ConfigError::new(
                    name,
                    format!("must be at most {} seconds", MAX.as_secs()),
                ));
            }
        }
        for (name, zero) in [
            ("limits.max_sessions", self.max_sessions == 0),
            ("limits.max_sessions_per_ip", self.max_sessions_per_ip == 0),
            ("limits.idle_timeout", self.idle_timeout.is_zero()),
            ("limits.data_timeout", self.data_timeout.is_zero()),
            ("limits.accept_timeout", self.accept_timeout.is_zero()),
            ("limits.connect_timeout", self.connect_timeout.is_zero()),
            ("limits.backend_timeout", self.backend_timeout.is_zero()),
            ("limits.max_login_failures", self.max_login_failures == 0),
            (
                "limits.ban_window",
                self.ban_after_failures > 0 && self.ban_window.is_zero(),
            ),
            (
                "limits.ban_time",
                self.ban_after_failures > 0 && self.ban_time.is_zero(),
            ),
            (
                "limits.max_sessions_per_user",
                self.max_sessions_per_user == Some(0),
            ),
            ("limits.download_rate", self.download_rate == Some(0)),
            ("limits.upload_rate", self.upload_rate == Some(0)),
            ("limits.quota_bytes", self.quota_bytes == Some(0)),
            ("limits.quota_files", self.quota_files == Some(0)),
            ("limits.max_file_size", self.max_file_size == Some(0)),
        ] {
            if zero {
                return Err(ConfigError::new(name, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// Active mode, as the `[active]` table spells it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActiveSettings {
    /// Source port of active-mode data connections (20 classically; needs privilege).
    pub source_port: Option<u16>,
    /// Allow PORT/EPRT to addresses other than the client's (FXP; opens bounce attacks).
    pub allow_foreign_address: bool,
    /// Allow PORT/EPRT to ports below 1024.
    pub allow_privileged_ports: bool,
}

/// The address announced in PASV replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassiveAddress {
    /// The control connection's local address.
    Local,
    /// A fixed IPv4 address (NAT: the public one).
    Fixed(Ipv4Addr),
    /// A name, resolved at each PASV so that a dynamic DNS name follows address changes.
    Resolve(String),
}

impl PassiveAddress {
    /// As the admin wrote it.
    pub fn shown(&self) -> String {
        match self {
            PassiveAddress::Local => "the control connection's local address".to_string(),
            PassiveAddress::Fixed(ip) => ip.to_string(),
            PassiveAddress::Resolve(name) => name.clone(),
        }
    }

    fn parse(text: Option<&str>) -> Result<PassiveAddress, String> {
        match text.map(str::trim) {
            None => Ok(PassiveAddress::Local),
            Some("") => Err("must not be empty".into()),
            Some(t) => Ok(match t.parse::<Ipv4Addr>() {
                Ok(ip) => PassiveAddress::Fixed(ip),
                Err(_) => PassiveAddress::Resolve(t.to_string()),
            }),
        }
    }
}

/// Passive mode.
#[derive(Debug, Clone)]
pub struct PassiveSettings {
    /// The passive port range; `None`: the kernel's ephemeral range.
    pub ports: Option<RangeInclusive<u16>>,
    pub address: PassiveAddress,
    /// Accept passive data connections from any address (off: only the control peer's).
    pub allow_foreign_peer: bool,
    /// Passive listeners one client address may hold open at once.
    pub max_per_address: u32,
}

/// FTPS: where the certificate is and what is required. The certificate itself is loaded into
/// [`crate::Services`].
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Data connections must resume the control connection's TLS session.
    pub require_session_reuse: bool,
    /// Uploads must end with a TLS close_notify to be complete.
    pub require_close_notify: bool,
    /// Where `cert` came from, for errors: `--tls-cert` or `tls.cert`.
    pub cert_field: &'static str,
}

/// Everything a server is configured with, parsed and checked once: plain values. The live
/// objects built from them are in [`crate::Services`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The served directory (canonical): the home of every user without one of its own.
    pub root: PathBuf,
    pub listen: Vec<SocketAddr>,
    /// For each of `listen`, in order: `Some` when connections there start with a PROXY
    /// protocol header, accepted only from these networks.
    pub listen_proxy: Vec<Option<ProxyFrom>>,
    /// Implicit-TLS listeners (TLS from the first byte; port 990 in production).
    pub listen_implicit: Vec<SocketAddr>,
    pub passive: PassiveSettings,
    pub active: ActiveSettings,
    pub limits: Limits,
    pub banner: String,
    /// `None`: TLS off.
    pub tls: Option<TlsSettings>,
    pub users: Vec<UserEntry>,
    /// The user database's URL (`[users] db`, `--users-db`).
    pub users_db: Option<String>,
    /// The admin listener (`[admin]`, `--admin`).
    pub admin: Option<AdminSettings>,
    /// The event hooks (`[[hook]]`).
    pub hooks: Vec<crate::hooks::Hook>,
    /// Sources of users beyond the file and the database, and their order (`[auth]`).
    pub auth: AuthSettings,
    /// Addresses that may log in at all (`[access]`).
    pub access: crate::identity::rules::AddressRules,
    /// Virtual hosts (`[[host]]`), chosen by HOST or the TLS name; none: one host serves
    /// every name.
    pub hosts: Vec<HostSettings>,
    /// `[acme]`, when some host has `acme = true`.
    pub acme: Option<AcmeSettings>,
    pub anonymous: Option<AnonymousAccess>,
    pub log: LogSettings,
    /// Where files are: `None` on the local file system (under `root` and the users' homes),
    /// or in an S3-compatible bucket (`[storage] backend = "s3"`), where `root` and the homes
    /// name key prefixes.
    pub storage: Option<crate::storage::S3Settings>,
    /// The config file, if any (one of the server's own files).
    pub config_file: Option<PathBuf>,
    /// The user to run as once started as root.
    pub run_as: String,
    /// Stay root instead.
    pub allow_root: bool,
}

/// The TOML file. Unknown fields are errors, so a typo is reported rather than ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file this was read from (set by [`FileConfig::load`]): one of the server's own files.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    /// `[[listener]]` tables: control listeners with settings of their own (PROXY protocol).
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerSection>,
    pub anonymous: Option<bool>,
    /// Write access for anonymous (and command-line users).
    pub write: Option<bool>,
    pub banner: Option<String>,
    /// Started as root, the server switches to this user once its listeners are bound
    /// (default `nobody`).
    pub run_as: Option<String>,
    /// Keep running as root (no switch).
    pub allow_root: Option<bool>,
    #[serde(default)]
    pub passive: PassiveSection,
    #[serde(default)]
    pub active: ActiveSettings,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
    /// The `[users]` table: the user database.
    #[serde(default, rename = "users")]
    pub users_table: UsersSection,
    #[serde(default)]
    pub admin: AdminSection,
    /// `[[hook]]` tables: commands or URLs run after events.
    #[serde(default, rename = "hook")]
    pub hooks: Vec<crate::hooks::HookSection>,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub storage: StorageSection,
    /// `[auth]`: the order of the sources of users, the external hook, LDAP.
    #[serde(default)]
    pub auth: AuthSection,
    /// `[access]`: server-wide address rules.
    #[serde(default)]
    pub access: AccessSection,
    /// `[[host]]` tables: virtual hosts.
    #[serde(default, rename = "host")]
    pub hosts: Vec<HostSection>,
    /// `[acme]`: certificates by ACME for hosts with `acme = true`.
    pub acme: Option<AcmeSection>,
}

/// A `[[host]]` table: a customer's site on a shared address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// The names it answers to: exact (`ftp.customer-a.example`) or one-label wildcards
    /// (`*.customer-a.example`). The first is the host's name in users, logs and metrics.
    pub names: Vec<String>,
    /// The home of its users without one of their own.
    pub root: Option<PathBuf>,
    /// Its 220 greeting (the reply to HOST, and the banner of an implicit-TLS connection
    /// that names it).
    pub banner: Option<String>,
    /// Its certificate and key (PEM), served to clients that name it (SNI).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Anonymous logins on this host, into its root (default false).
    pub anonymous: Option<bool>,
    /// Its certificate obtained and renewed by ACME (`[acme]`), instead of `cert`/`key`.
    pub acme: Option<bool>,
}

/// The `[acme]` table: certificates for hosts with `acme = true` (RFC 8555, HTTP-01).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// The ACME directory URL (default: Let's Encrypt's production directory).
    pub directory: Option<String>,
    /// Contact URLs for the account (`mailto:admin@example.com`).
    pub contact: Option<Vec<String>>,
    /// The CA's terms of service, agreed to (must be true).
    pub terms_agreed: Option<bool>,
    /// A PEM file of CAs for the directory's own HTTPS (a private or test CA); default: the
    /// system's.
    pub ca: Option<PathBuf>,
    /// The directory where the account key and the certificates are kept (made 0700).
    pub state: Option<PathBuf>,
    /// Where HTTP-01 challenges are answered: a listener (default `0.0.0.0:80`) …
    pub http_listen: Option<String>,
    /// … or files written under `WEBROOT/.well-known/acme-challenge/` for a web server already
    /// on port 80.
    pub webroot: Option<PathBuf>,
    /// Renew when this many days are left (default: a third of the certificate's lifetime).
    pub renew_days: Option<u64>,
    /// Seconds between looks at the certificates (default 3600).
    pub check_secs: Option<u64>,
    /// With the users on PostgreSQL: the key (32 bytes, base64; the same on every node) that
    /// seals the private keys the nodes share through the database.
    pub shared_key: Option<String>,
}

/// The key that seals private keys kept in the database (never shown).
#[derive(Clone, PartialEq, Eq)]
pub struct SharedKey(pub [u8; 32]);

impl std::fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedKey(..)")
    }
}

/// Where HTTP-01 challenges are answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeChallenge {
    Listen(SocketAddr),
    Webroot(PathBuf),
}

/// `[acme]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub directory: String,
    pub contact: Vec<String>,
    pub ca: Option<PathBuf>,
    pub state: PathBuf,
    pub challenge: AcmeChallenge,
    pub renew_days: Option<u64>,
    pub check: Duration,
    /// Certificates, account and challenges shared through the user database, keys sealed
    /// with this.
    pub shared_key: Option<SharedKey>,
}

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl AcmeSection {
    fn check(&self) -> Result<AcmeSettings, ConfigError> {
        if self.terms_agreed != Some(true) {
            return Err(ConfigError::new(
                "acme.terms_agreed",
                "set terms_agreed = true to agree to the CA's terms of service",
            ));
        }
        let directory = self
            .directory
            .clone()
            .unwrap_or_else(|| LETS_ENCRYPT.into());
        if !directory.starts_with("https://") {
            return Err(ConfigError::new("acme.directory", "an https:// URL"));
        }
        let state = self.state.clone().ok_or_else(|| {
            ConfigError::new(
                "acme.state",
                "give a directory for the account and certificates (e.g. /var/lib/wharf/acme)",
            )
        })?;
        let challenge = match (&self.http_listen, &self.webroot) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "acme.webroot",
                    "give http_listen or webroot, not both",
                ));
            }
            (None, Some(w)) => AcmeChallenge::Webroot(w.clone()),
            (Some(l), None) => AcmeChallenge::Listen(parse_listen("acme.http_listen", l)?),
            (None, None) => AcmeChallenge::Listen(SocketAddr::from(([0, 0, 0, 0], 80))),
        };
        let check = Duration::from_secs(self.check_secs.unwrap_or(3600).max(1));
        let shared_key = match &self.shared_key {
            None => None,
            Some(text) => {
                let bytes = data_encoding::BASE64
                    .decode(text.trim().as_bytes())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        ConfigError::new(
                            "acme.shared_key",
                            "32 bytes in base64 (make one with `head -c 32 /dev/urandom | base64`)",
                        )
                    })?;
                Some(SharedKey(bytes))
            }
        };
        Ok(AcmeSettings {
            shared_key,
            directory,
            contact: self.contact.clone().unwrap_or_default(),
            ca: self.ca.clone(),
            state,
            challenge,
            renew_days: self.renew_days,
            check,
        })
    }
}

/// A virtual host, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// Lower case; wildcards as `*.suffix`.
    pub names: Vec<String>,
    pub root: PathBuf,
    pub banner: Option<String>,
    pub cert: Option<(PathBuf, PathBuf)>,
    pub anonymous: bool,
    /// Its certificate comes from ACME.
    pub acme: bool,
}

impl HostSettings {
    /// The host's own name (its first).
    pub fn id(&self) -> &str {
        self.names.first().map_or("", String::as_str)
    }

    /// Whether `name` (lower case) is exactly one of the names.
    fn is_named(&self, name: &str) -> bool {
        !name.starts_with("*.") && self.names.iter().any(|n| n == name)
    }

    /// Whether a wildcard of this host covers `name`: `*.a.example` covers `x.a.example`, not
    /// `a.example` nor `y.x.a.example`.
    fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| {
            n.strip_prefix("*.").is_some_and(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
        })
    }
}

/// A host name as written in HOST or SNI: lower case, without a trailing dot.
pub fn normalize_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl Settings {
    /// The virtual host serving `name` (exact names first, then wildcards); `None`: none of
    /// them.
    pub fn host_named(&self, name: &str) -> Option<&HostSettings> {
        let name = normalize_host(name);
        self.hosts
            .iter()
            .find(|h| h.is_named(&name))
            .or_else(|| self.hosts.iter().find(|h| h.covers(&name)))
    }

    /// The certificates of the hosts that have one.
    /// With ACME, those whose certificate is in the state directory already (a start or a
    /// reload uses it; none is ordered while it is valid).
    pub fn host_certs(&self) -> Vec<crate::tls::HostCert> {
        self.hosts
            .iter()
            .filter_map(|h| {
                let files = match (&h.cert, &self.acme) {
                    (Some((cert, key)), _) => Some((cert.clone(), key.clone())),
                    (None, Some(a)) if h.acme => {
                        let (cert, key) = crate::acme::cert_files(&a.state, h.id());
                        (cert.is_file() && key.is_file()).then_some((cert, key))
                    }
                    _ => None,
                };
                files.map(|(cert, key)| crate::tls::HostCert {
                    names: h.names.clone(),
                    cert,
                    key,
                    acme: h.acme,
                })
            })
            .collect()
    }

    /// The host whose own name is `id`.
    pub fn host_by_id(&self, id: &str) -> Option<&HostSettings> {
        self.hosts.iter().find(|h| h.id() == id)
    }
}

/// Checks a host name of a `[[host]]` table: letters, digits, `-` and `.`, at most one leading
/// `*.`.
fn check_host_name(name: &str) -> Result<String, String> {
    let n = normalize_host(name);
    let bare = n.strip_prefix("*.").unwrap_or(&n);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(n)
    } else {
        Err(format!("`{name}` is not a host name (or *.name)"))
    }
}

/// The `[auth]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Sources asked in turn: `file`, `database`, `external`, `ldap` (default: that order).
    pub order: Option<Vec<String>>,
    pub external: Option<crate::identity::external::ExternalSection>,
    pub ldap: Option<crate::identity::ldap::LdapSection>,
}

/// `[auth]`, checked.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Empty: the default order.
    pub order: Vec<crate::identity::SourceKind>,
    pub external: Option<crate::identity::external::ExternalSettings>,
    pub ldap: Option<crate::identity::ldap::LdapSettings>,
}

/// The `[access]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    #[serde(default)]
    pub allowed_addresses: Vec<String>,
    #[serde(default)]
    pub denied_addresses: Vec<String>,
}

impl AuthSection {
    fn check(&self) -> Result<AuthSettings, ConfigError> {
        use crate::identity::SourceKind;
        let external = self
            .external
            .as_ref()
            .map(|e| {
                e.check()
                    .map_err(|(f, m)| ConfigError::new(format!("auth.external.{f}"), m))
            })
            .transpose()?;
        let ldap = self
            .ldap
            .as_ref()
            .map(|l| {
                l.check()
                    .map_err(|(f, m)| ConfigError::new(format!("auth.ldap.{f}"), m))
            })
            .transpose()?;
        let mut order = Vec::new();
        for name in self.order.iter().flatten() {
            let kind = SourceKind::parse(name).ok_or_else(|| {
                ConfigError::new(
                    "auth.order",
                    format!("unknown source `{name}` (file, database, external, ldap)"),
                )
            })?;
            if order.contains(&kind) {
                return Err(ConfigError::new(
                    "auth.order",
                    format!("`{name}` is named twice"),
                ));
            }
            let configured = match kind {
                SourceKind::External => external.is_some(),
                SourceKind::Ldap => ldap.is_some(),
                _ => true,
            };
            if !configured {
                return Err(ConfigError::new(
                    "auth.order",
                    format!("`{name}` is named but [auth.{name}] is not configured"),
                ));
            }
            order.push(kind);
        }
        if self.order.is_some() {
            for (kind, on) in [
                (SourceKind::External, external.is_some()),
                (SourceKind::Ldap, ldap.is_some()),
            ] {
                if on && !order.contains(&kind) {
                    return Err(ConfigError::new(
                        "auth.order",
                        format!("[auth.{}] is configured but not in the order", kind.name()),
                    ));
                }
            }
        }
        Ok(AuthSettings {
            order,
            external,
            ldap,
        })
    }
}

/// The `[storage]` table: where files are kept.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `local` (the default) or `s3`.
    pub backend: Option<String>,
    /// S3: `http(s)://HOST:PORT` of an S3-compatible store (none: AWS, by region).
    pub endpoint: Option<String>,
    /// S3: the region (default `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// S3: the key prefix all homes lie under.
    pub prefix: Option<String>,
    /// S3: credentials; without them, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` from
    /// the environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for StorageSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("StorageSection")
            .field("backend", &self.backend)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl StorageSection {
    /// The S3 settings, `None` for the local file system.
    fn check(&self) -> Result<Option<crate::storage::S3Settings>, ConfigError> {
        match self.backend.as_deref().unwrap_or("local") {
            "local" => {
                let s3_only = [
                    ("storage.endpoint", self.endpoint.is_some()),
                    ("storage.region", self.region.is_some()),
                    ("storage.bucket", self.bucket.is_some()),
                    ("storage.prefix", self.prefix.is_some()),
                    ("storage.access_key_id", self.access_key_id.is_some()),
                    (
                        "storage.secret_access_key",
                        self.secret_access_key.is_some(),
                    ),
                ];
                match s3_only.iter().find(|(_, set)| *set) {
                    Some((field, _)) => Err(ConfigError::new(
                        *field,
                        "is for backend = \"s3\" only (the backend is the local file system)",
                    )),
                    None => Ok(None),
                }
            }
            "s3" => {
                let bucket = self
                    .bucket
                    .clone()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        ConfigError::new("storage.bucket", "backend = \"s3\" needs a bucket")
                    })?;
                if let Some(e) = &self.endpoint
                    && !(e.starts_with("http://") || e.starts_with("https://"))
                {
                    return Err(ConfigError::new(
                        "storage.endpoint",
                        format!("`{e}` is not an http:// or https:// URL"),
                    ));
                }
                let prefix = self.prefix.as_deref().unwrap_or("").trim_matches('/');
                if prefix.split('/').any(|part| {
                    matches!(part, "." | "..") || (part.is_empty() && !prefix.is_empty())
                }) {
                    return Err(ConfigError::new(
                        "storage.prefix",
                        format!("`{prefix}` has an empty, `.` or `..` part"),
                    ));
                }
                if self.access_key_id.is_some() != self.secret_access_key.is_some() {
                    return Err(ConfigError::new(
                        if self.access_key_id.is_some() {
                            "storage.secret_access_key"
                        } else {
                            "storage.access_key_id"
                        },
                        "access_key_id and secret_access_key go together",
                    ));
                }
                let region = self
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".to_string());
                Ok(Some(crate::storage::S3Settings {
                    endpoint: self.endpoint.clone(),
                    region,
                    bucket,
                    prefix: prefix.to_string(),
                    access_key_id: self.access_key_id.clone(),
                    secret_access_key: self.secret_access_key.clone(),
                }))
            }
            other => Err(ConfigError::new(
                "storage.backend",
                format!("`{other}` is not local or s3"),
            )),
        }
    }
}

/// The `[users]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersSection {
    /// `sqlite:PATH` (created when missing) or `postgres://USER@HOST/DB`: users beside those of
    /// the file.
    pub db: Option<String>,
}

/// The `[admin]` table: the admin listener (HTTP: health, metrics, the API).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// ADDRESS:PORT; no listener without it.
    pub listen: Option<String>,
    /// The hash of the API token (`wharf passwd`); without it the server makes a token at
    /// start and prints it once (on a loopback listener only).
    pub token_hash: Option<String>,
    /// HTTPS with this certificate and key (PEM). Without them, a listener on a non-loopback
    /// address uses the server's own (`[tls]`), or refuses to start.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Plain HTTP on a non-loopback address (a trusted management network): allowed only when
    /// set, and warned about at every start.
    pub plain_http: Option<bool>,
    /// `/metrics` counts sessions by virtual host too (default false: a line per host, which
    /// thousands of hosts make long).
    pub metrics_by_host: Option<bool>,
}

/// The admin listener, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub token_hash: Option<String>,
    /// HTTPS: the certificate and key; `None`: plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP although the address is not loopback (`plain_http = true`).
    pub plain_on_network: bool,
    /// Sessions by host in `/metrics`.
    pub metrics_by_host: bool,
}

/// The `[log]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `text` (default) or `json`: one JSON object a line.
    pub format: Option<String>,
    /// A transfer log in the xferlog format, appended to.
    pub xferlog: Option<PathBuf>,
}

/// How the server logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Option<LogFormat> {
        match text {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Logging settings.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    pub format: LogFormat,
    pub xferlog: Option<PathBuf>,
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

/// A `[[listener]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// ADDRESS:PORT.
    pub address: String,
    /// Connections start with a PROXY protocol header (v1 or v2): a load balancer in front.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Where headers may come from: `CIDR` networks (`10.0.0.0/8`, `::1/128`, or a bare address).
    /// Required with `proxy_protocol`.
    #[serde(default)]
    pub proxy_from: Vec<String>,
}

/// The networks a PROXY protocol header is taken from. A connection from anywhere else, or one
/// from there without a header, is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFrom(pub Vec<Cidr>);

impl ProxyFrom {
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// An IP network: an address and how many leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (all its bits).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let written: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR network"))?;
        let max: u8 = if written.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&b| b <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        let addr = written.to_canonical();
        // An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) is the IPv4 network it maps.
        let bits = if written.is_ipv6() && addr.is_ipv4() {
            bits.checked_sub(96).ok_or_else(|| {
                format!("{text:?}: an IPv4-mapped network needs a prefix of 96 bits or more")
            })?
        } else {
            bits
        };
        Ok(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let bits = u32::from(self.bits);
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let Some(shift) = 32u32.checked_sub(bits) else {
                    return false;
                };
                let mask = u32::MAX.checked_shl(shift).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let Some(shift) = 128u32.checked_sub(bits) else {
                    return false;
                };
                let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveSection {
    pub ports: Option<String>,
    pub address: Option<String>,
    /// Accept passive data connections from any address (off: only the control peer's).
    pub allow_foreign_peer: Option<bool>,
    /// Passive listeners one client address may hold open at once (default: a third of the
    /// range, at least 1), so that one address cannot take the whole range.
    pub max_per_address: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    pub name: String,
    pub password_hash: String,
    pub home: Option<PathBuf>,
    pub permissions: Option<Vec<String>>,
    pub max_sessions: Option<u32>,
    pub download_rate: Option<u64>,
    pub upload_rate: Option<u64>,
    pub quota_bytes: Option<u64>,
    pub quota_files: Option<u64>,
    pub max_file_size: Option<u64>,
    /// Networks this user may log in from (any, when empty).
    #[serde(default)]
    pub allowed_addresses: Vec<String>,
    /// Networks this user may not log in from.
    #[serde(default)]
    pub denied_addresses: Vec<String>,
    /// The base32 secret of the user's one-time codes (`wharf users totp` makes one).
    pub totp_secret: Option<String>,
    /// The virtual host this user belongs to (one of a `[[host]]`'s names); none: the default
    /// host.
    pub host: Option<String>,
}

impl Limits {
    /// The per-user limits every user gets unless its `[[user]]` says otherwise.
    pub fn user_defaults(&self) -> UserLimits {
        UserLimits {
            max_sessions: self.max_sessions_per_user,
            download_rate: self.download_rate,
            upload_rate: self.upload_rate,
            quota_bytes: self.quota_bytes,
            quota_files: self.quota_files,
            max_file_size: self.max_file_size,
        }
    }
}

impl UserSection {
    /// This user's limits over `defaults`; a 0 is an error naming its field.
    fn limits(&self, i: usize, defaults: UserLimits) -> Result<UserLimits, ConfigError> {
        for (name, zero) in [
            ("max_sessions", self.max_sessions == Some(0)),
            ("download_rate", self.download_rate == Some(0)),
            ("upload_rate", self.upload_rate == Some(0)),
            ("quota_bytes", self.quota_bytes == Some(0)),
            ("quota_files", self.quota_files == Some(0)),
            ("max_file_size", self.max_file_size == Some(0)),
        ] {
            if zero {
                return Err(ConfigError::new(
                    format!("user[{i}].{name}"),
                    "must be greater than 0 (leave it out for no limit)",
                ));
            }
        }
        let own = UserLimits {
            max_sessions: self.max_sessions,
            download_rate: self.download_rate,
            upload_rate: self.upload_rate,
            quota_bytes: self.quota_bytes,
            quota_files: self.quota_files,
            max_file_size: self.max_file_size,
        };
        Ok(own.or(defaults))
    }
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(path.display().to_string(), format!("cannot read: {e}"))
        })?;
        let mut file = FileConfig::parse(&text)?;
        file.source = Some(path.to_path_buf());
        Ok(file)
    }

    /// Parses config text; the error names the offending key.
    pub fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let (field, line) = match e.span() {
                Some(span) => (
                    key_at(text, span.start),
                    Some(text.get(..span.start).unwrap_or(text).matches('\n').count() + 1),
                ),
                None => (String::from("config"), None),
            };
            ConfigError {
                line,
                ..ConfigError::new(field, message)
            }
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
    /// `text` or `json`.
    pub log_format: Option<String>,
    pub run_as: Option<String>,
    pub allow_root: bool,
    /// The user database's URL.
    pub users_db: Option<String>,
    /// The admin listener, ADDRESS:PORT.
    pub admin: Option<String>,
}

/// The default control listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2121";

/// Parses `A-B` into a port range.
/// The default cap of passive listeners per client address: a third of the range (of the
/// kernel's ephemeral range without one), at least 1 — a 10-port range serves at least four
/// addresses at once.
fn default_passive_per_address(range: Option<&RangeInclusive<u16>>) -> u32 {
    let ports = match range {
        Some(r) => u32::from(*r.end()) - u32::from(*r.start()) + 1,
        None => 28_232, // Linux's default 32768-60999
    };
    (ports / 3).max(1)
}

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
    if a < 1024 {
        return Err(format!(
            "`{text}` includes ports below 1024: they belong to other services, and the server cannot listen on them once it runs as an unprivileged user (every PASV would fail); use ports above 1023, such as 50000-50100"
        ));
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
    // The same words as the user database's (one vocabulary).
    crate::userdb::parse_permissions(&list.join(",")).map_err(|m| ConfigError::new(field, m))
}

/// The `[[host]]` tables, checked: names well formed and each on one host only, a root each, a
/// certificate with its key.
fn build_hosts(sections: &[HostSection], s3: bool) -> Result<Vec<HostSettings>, ConfigError> {
    let mut hosts: Vec<HostSettings> = Vec::new();
    for (i, h) in sections.iter().enumerate() {
        let field = |f: &str| format!("host[{i}].{f}");
        if h.names.is_empty() {
            return Err(ConfigError::new(field("names"), "give at least one name"));
        }
        let mut names = Vec::new();
        for n in &h.names {
            let n = check_host_name(n).map_err(|m| ConfigError::new(field("names"), m))?;
            if names.contains(&n) || hosts.iter().any(|o| o.names.contains(&n)) {
                return Err(ConfigError::new(
                    field("names"),
                    format!("`{n}` is named twice"),
                ));
            }
            names.push(n);
        }
        if names[0].starts_with("*.") {
            return Err(ConfigError::new(
                field("names"),
                "the first name is the host's own: give an exact name first",
            ));
        }
        let root = match &h.root {
            None => return Err(ConfigError::new(field("root"), "give the host's directory")),
            Some(r) if s3 => r.clone(),
            Some(r) => check_dir(&field("root"), r)?,
        };
        let cert = match (&h.cert, &h.key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::new(field("key"), "give the key too")),
            (None, Some(_)) => {
                return Err(ConfigError::new(field("cert"), "give the certificate too"));
            }
        };
        hosts.push(HostSettings {
            names,
            root,
            banner: h.banner.clone(),
            cert,
            anonymous: h.anonymous.unwrap_or(false),
            acme: h.acme.unwrap_or(false),
        });
        if let Some(h) = hosts.last().filter(|h| h.acme) {
            if h.cert.is_some() {
                return Err(ConfigError::new(
                    field("acme"),
                    "acme = true or cert/key, not both",
                ));
            }
            if h.id().len() > 240 {
                return Err(ConfigError::new(
                    field("names"),
                    "an ACME host's first name must be at most 240 characters (it names its files)",
                ));
            }
            if let Some(w) = h.names.iter().find(|n| n.starts_with("*.")) {
                return Err(ConfigError::new(
                    field("names"),
                    format!(
                        "`{w}`: a wildcard needs DNS-01, and ACME here answers HTTP-01: name each host"
                    ),
                ));
            }
        }
    }
    Ok(hosts)
}

fn check_dir(field: &str, dir: &Path) -> Result<PathBuf, ConfigError> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (create it, or correct the path)"
        } else {
            ""
        };
        ConfigError::new(field, format!("`{}`: {e}{hint}", dir.display()))
    })?;
    if !meta.is_dir() {
        return Err(ConfigError::new(
            field,
            format!("`{}` is not a directory", dir.display()),
        ));
    }
    if let Err(e) = std::fs::read_dir(dir) {
        return Err(ConfigError::new(
            field,
            format!(
                "`{}` cannot be read: {e} (give the server's user read and search rights)",
                dir.display()
            ),
        ));
    }
    std::fs::canonicalize(dir)
        .map_err(|e| ConfigError::new(field, format!("`{}`: {e}", dir.display())))
}

/// The line (1-based) of `field` in a config text, for error messages: `user[2].home` is the
/// `home` key of the third `[[user]]` table, `passive.ports` the `ports` key of `[passive]`,
/// `listen` a top-level key; a table itself (`user[2]`) is its header line. `None` for a field
/// of the command line, or one the text does not spell out (a default).
pub fn line_of(text: &str, field: &str) -> Option<usize> {
    if field.starts_with("--") {
        return None;
    }
    // (table, index among tables of that name, key)
    let (table, index, key) = match field.split_once('.') {
        Some((t, k)) => match t.split_once('[') {
            Some((name, rest)) => (
                Some(name),
                rest.trim_end_matches(']').parse::<usize>().ok()?,
                Some(k),
            ),
            None => (Some(t), 0, Some(k)),
        },
        None => match field.split_once('[') {
            Some((name, rest)) => (
                Some(name),
                rest.trim_end_matches(']').parse::<usize>().ok()?,
                None,
            ),
            None => (None, 0, Some(field)),
        },
    };
    let key_of = |line: &str| -> Option<String> {
        let l = line.trim();
        if l.starts_with('#') || l.starts_with('[') {
            return None;
        }
        l.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
    };
    let header_of = |line: &str| -> Option<String> {
        let l = line.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    let mut current: Option<String> = None;
    let mut seen = 0usize;
    let mut in_target = table.is_none();
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = header_of(line) {
            let matches = table == Some(h.as_str());
            if matches {
                if seen == index {
                    if key.is_none() {
                        return Some(i + 1);
                    }
                    in_target = true;
                } else {
                    in_target = false;
                }
                seen += 1;
            } else {
                in_target = false;
            }
            current = Some(h);
            continue;
        }
        let top = current.is_none();
        if in_target && (table.is_some() || top) && key_of(line).as_deref() == key {
            return Some(i + 1);
        }
    }
    None
}

impl Settings {
    /// Builds the configuration from the file (if any) and the command line.
    pub fn build(file: FileConfig, cli: Overrides) -> Result<Settings, ConfigError> {
        let (root_field, root) = match (&cli.root, &file.root) {
            (Some(r), _) => ("--root", r.clone()),
            (None, Some(r)) => ("root", r.clone()),
            (None, None) => ("--root", PathBuf::from(".")),
        };
        // On S3 the root and the homes are key prefixes, not directories of this machine.
        let storage = file.storage.check()?;
        let root = match &storage {
            None => check_dir(root_field, &root)?,
            Some(_) if file.root.is_none() && cli.root.is_none() => PathBuf::from("/"),
            Some(_) => root,
        };

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
        let mut listen = if !cli.listen.is_empty() {
            cli.listen
                .iter()
                .map(|l| parse_listen("--listen", l))
                .collect::<Result<Vec<_>, _>>()?
        } else if let Some(l) = file_listen {
            l
        } else if file.listeners.is_empty() {
            vec![parse_listen("listen", DEFAULT_LISTEN)?]
        } else {
            Vec::new()
        };
        let mut listen_proxy = vec![None; listen.len()];
        for (i, l) in file.listeners.iter().enumerate() {
            let field = |name: &str| format!("listener[{}].{name}", i + 1);
            let addr = parse_listen(&field("address"), &l.address)?;
            if listen.contains(&addr) {
                return Err(ConfigError::new(
                    field("address"),
                    format!(
                        "{addr} is already a listener (listen, --listen or another [[listener]])"
                    ),
                ));
            }
            listen.push(addr);
            let from = l
                .proxy_from
                .iter()
                .map(|c| Cidr::parse(c).map_err(|m| ConfigError::new(field("proxy_from"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            listen_proxy.push(match (l.proxy_protocol, from.is_empty()) {
                (true, true) => {
                    return Err(ConfigError::new(
                        field("proxy_from"),
                        "proxy_protocol needs the load balancers' networks (proxy_from = [\"10.0.0.0/8\"]): a header from anyone else would let them pick their address",
                    ));
                }
                (true, false) => Some(ProxyFrom(from)),
                (false, true) => None,
                (false, false) => {
                    return Err(ConfigError::new(
                        field("proxy_from"),
                        "proxy_from without proxy_protocol = true",
                    ));
                }
            });
        }

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
        let max_per_address = match file.passive.max_per_address {
            Some(0) => {
                return Err(ConfigError::new(
                    "passive.max_per_address",
                    "must be at least 1",
                ));
            }
            Some(n) => n,
            None => default_passive_per_address(passive_ports.as_ref()),
        };
        let (address_field, address) = match (&cli.passive_address, &file.passive.address) {
            (Some(a), _) => ("--passive-address", Some(a.as_str())),
            (None, a) => ("passive.address", a.as_deref()),
        };
        let passive_address =
            PassiveAddress::parse(address).map_err(|m| ConfigError::new(address_field, m))?;
        if let PassiveAddress::Resolve(name) = &passive_address {
            use std::net::ToSocketAddrs;
            let v4 = (name.as_str(), 0)
                .to_socket_addrs()
                .map(|mut a| a.any(|a| a.is_ipv4()));
            match v4 {
                Ok(true) => {}
                Ok(false) => {
                    return Err(ConfigError::new(
                        address_field,
                        format!(
                            "`{name}` has no IPv4 address (PASV announces one; give the public IPv4 address)"
                        ),
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::new(
                        address_field,
                        format!(
                            "`{name}` does not resolve: {e} (give the public IPv4 address, or a name in DNS)"
                        ),
                    ));
                }
            }
        }

        let limits = file.limits.clone();
        limits.validate()?;
        let defaults = limits.user_defaults();

        let write = cli.write || file.write.unwrap_or(false);
        let hosts = build_hosts(&file.hosts, storage.is_some())?;
        let mut users = Vec::new();
        for spec in &cli.users {
            let (name, password) = spec
                .split_once(':')
                .filter(|(n, _)| !n.is_empty())
                .ok_or_else(|| ConfigError::new("--user", "expected NAME:PASSWORD"))?;
            if users.iter().any(|e: &UserEntry| e.name == name) {
                return Err(ConfigError::new(
                    "--user",
                    format!("user `{name}` is given twice"),
                ));
            }
            let hash = crate::auth::hash_password(password.as_bytes())
                .map_err(|m| ConfigError::new("--user", m))?;
            users.push(UserEntry {
                name: name.to_string(),
                secret: Secret::Hash(hash),
                home: root.clone(),
                permissions: Permissions::from_write_flag(write),
                limits: defaults,
                rules: Default::default(),
                totp: None,
                host: None,
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
            crate::auth::check_hash(&u.password_hash)
                .map_err(|m| ConfigError::new(field("password_hash"), m))?;
            let host = match &u.host {
                None => None,
                Some(name) => {
                    let n = normalize_host(name);
                    let found = hosts.iter().find(|h| h.is_named(&n)).ok_or_else(|| {
                        ConfigError::new(
                            field("host"),
                            format!("`{name}` is not a name of any [[host]]"),
                        )
                    })?;
                    Some(found.id().to_string())
                }
            };
            if let Some(first) = users
                .iter()
                .position(|e: &UserEntry| e.name == u.name && e.host == host)
            {
                return Err(ConfigError::new(
                    field("name"),
                    format!(
                        "user `{}` is defined twice (first as {})",
                        u.name,
                        if first < cli.users.len() {
                            "--user".to_string()
                        } else {
                            format!("user[{}]", first - cli.users.len())
                        }
                    ),
                ));
            }
            let host_root = host
                .as_deref()
                .and_then(|id| hosts.iter().find(|h| h.id() == id))
                .map(|h| h.root.clone());
            let home = match &u.home {
                Some(h) if storage.is_some() => h.clone(),
                Some(h) => check_dir(&field("home"), h)?,
                None => host_root.unwrap_or_else(|| root.clone()),
            };
            let permissions = match &u.permissions {
                Some(list) => parse_permissions(&field("permissions"), list)?,
                None => Permissions::READ_ONLY,
            };
            let rules = crate::identity::rules::AddressRules::parse(
                &u.allowed_addresses,
                &u.denied_addresses,
            )
            .map_err(|m| ConfigError::new(field("allowed_addresses"), m))?;
            let totp = u
                .totp_secret
                .as_deref()
                .map(crate::identity::totp::TotpSecret::parse)
                .transpose()
                .map_err(|m| ConfigError::new(field("totp_secret"), m))?;
            users.push(UserEntry {
                name: u.name.clone(),
                secret: Secret::Hash(u.password_hash.clone()),
                home,
                permissions,
                limits: u.limits(i, defaults)?,
                rules,
                totp,
                host,
            });
        }
        let (users_db, db_field) = match &cli.users_db {
            Some(url) => (Some(url.clone()), "--users-db"),
            None => (file.users_table.db.clone(), "users.db"),
        };
        if let Some(url) = &users_db {
            crate::userdb::check_url(url).map_err(|e| ConfigError::new(db_field, e.to_string()))?;
        }
        let (tls, listen_implicit) = build_tls(&file.tls, &cli)?;
        let acme = match (&file.acme, hosts.iter().position(|h| h.acme)) {
            (Some(a), _) => Some(a.check()?),
            (None, Some(i)) => {
                return Err(ConfigError::new(
                    format!("host[{i}].acme"),
                    "needs an [acme] table (terms_agreed, state, and where challenges are answered)",
                ));
            }
            (None, None) => None,
        };
        if let Some(a) = &acme {
            let postgres = users_db
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
            if postgres && a.shared_key.is_none() {
                return Err(ConfigError::new(
                    "acme.shared_key",
                    "with the users on PostgreSQL the nodes share their certificates: give the same shared_key to every node (`head -c 32 /dev/urandom | base64`)",
                ));
            }
            if a.shared_key.is_some() && users_db.is_none() {
                return Err(ConfigError::new(
                    "acme.shared_key",
                    "certificates are shared through the user database: give [users] db",
                ));
            }
        }
        if tls.is_none() {
            if let Some(i) = hosts.iter().position(|h| h.cert.is_some() || h.acme) {
                return Err(ConfigError::new(
                    format!("host[{i}].cert"),
                    "a host's certificate needs TLS on: give [tls] cert and key (the default \
                     certificate, for clients that name no host)",
                ));
            }
        }
        let admin_listen = match (&cli.admin, &file.admin.listen) {
            (Some(a), _) => Some(parse_listen("--admin", a)?),
            (None, Some(a)) => Some(parse_listen("admin.listen", a)?),
            (None, None) => None,
        };
        if let Some(h) = &file.admin.token_hash {
            crate::auth::check_hash(h).map_err(|m| ConfigError::new("admin.token_hash", m))?;
        }
        let admin = match admin_listen {
            Some(listen) => Some(admin_settings(&file.admin, listen, tls.as_ref())?),
            None => None,
        };
        let mut hooks = Vec::new();
        for (i, h) in file.hooks.iter().enumerate() {
            hooks.push(
                h.check()
                    .map_err(|(f, m)| ConfigError::new(format!("hook[{i}].{f}"), m))?,
            );
        }
        let auth = file.auth.check()?;
        let access = crate::identity::rules::AddressRules::parse(
            &file.access.allowed_addresses,
            &file.access.denied_addresses,
        )
        .map_err(|m| ConfigError::new("access", m))?;
        // Anonymous: on only when no user is given, unless asked for explicitly.
        let anonymous_on = cli.anonymous
            || file.anonymous.unwrap_or(
                users.is_empty()
                    && users_db.is_none()
                    && auth.external.is_none()
                    && auth.ldap.is_none(),
            );
        let anonymous = anonymous_on.then(|| AnonymousAccess {
            home: root.clone(),
            permissions: Permissions::from_write_flag(write),
            limits: defaults,
        });

        let parse_format = |field: &str, text: &Option<String>| -> Result<_, ConfigError> {
            text.as_deref()
                .map(|f| {
                    LogFormat::parse(f).ok_or_else(|| {
                        ConfigError::new(field, format!("`{f}` is not text or json"))
                    })
                })
                .transpose()
        };
        let file_format = parse_format("log.format", &file.log.format)?;
        let format = parse_format("--log-format", &cli.log_format)?
            .or(file_format)
            .unwrap_or_default();
        let log = LogSettings {
            format,
            xferlog: file.log.xferlog.clone(),
        };

        Ok(Settings {
            root,
            listen,
            listen_proxy,
            listen_implicit,
            passive: PassiveSettings {
                ports: passive_ports,
                address: passive_address,
                allow_foreign_peer: file.passive.allow_foreign_peer.unwrap_or(false),
                max_per_address,
            },
            active: ActiveSettings {
                source_port: cli.active_source_port.or(file.active.source_port),
                ..file.active
            },
            limits,
            banner: file
                .banner
                .unwrap_or_else(|| "Wharf FTP server ready.".to_string()),
            tls,
            users,
            users_db,
            admin,
            hooks,
            auth,
            access,
            hosts,
            acme,
            anonymous,
            log,
            storage,
            config_file: file.source.clone(),
            run_as: cli
                .run_as
                .clone()
                .or(file.run_as.clone())
                .unwrap_or_else(|| "nobody".to_string()),
            allow_root: cli.allow_root || file.allow_root.unwrap_or(false),
        })
    }
}

impl Settings {
    /// The files the server itself uses, which no command may reach
    /// ([`crate::own_files::OwnFiles`]).
    pub fn own_files(&self) -> Vec<crate::own_files::OwnFile> {
        use crate::own_files::{OwnFile, sqlite_files};
        let mut out = Vec::new();
        if let Some(p) = &self.config_file {
            out.push(OwnFile::new(p, "the config file"));
        }
        if let Some(db) = self.sqlite_path() {
            out.extend(sqlite_files(&db));
        }
        if let Some(t) = &self.tls {
            out.push(OwnFile::new(&t.cert, "the TLS certificate"));
            out.push(OwnFile::new(&t.key, "the TLS private key"));
        }
        if let Some(x) = &self.log.xferlog {
            out.push(OwnFile::new(x, "the transfer log"));
        }
        if let Some((cert, key)) = self.admin.as_ref().and_then(|a| a.tls.as_ref()) {
            out.push(OwnFile::new(cert, "the admin listener's certificate"));
            out.push(OwnFile::new(key, "the admin listener's private key"));
        }
        for h in &self.hosts {
            if let Some((cert, key)) = &h.cert {
                out.push(OwnFile::new(cert, "a host's TLS certificate"));
                out.push(OwnFile::new(key, "a host's TLS private key"));
            }
            if let (true, Some(a)) = (h.acme, &self.acme) {
                let (cert, key) = crate::acme::cert_files(&a.state, h.id());
                out.push(OwnFile::new(
                    crate::acme::temporary(&cert),
                    "a host's ACME certificate (being written)",
                ));
                out.push(OwnFile::new(
                    crate::acme::temporary(&key),
                    "a host's ACME private key (being written)",
                ));
                out.push(OwnFile::new(cert, "a host's ACME certificate"));
                out.push(OwnFile::new(key, "a host's ACME private key"));
            }
        }
        if let Some(a) = &self.acme {
            out.push(OwnFile::new(
                crate::acme::account_file(&a.state),
                "the ACME account key",
            ));
        }
        out
    }

    /// The SQLite user database's file, if the user database is one.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        crate::userdb::sqlite_file(self.users_db.as_deref()?)
    }
}

/// The admin listener's settings. Off loopback it needs a configured token hash (a token made
/// at start is printed where anyone reading the logs sees it) and HTTPS — its own certificate,
/// else the server's — unless `plain_http` says the network is trusted.
fn admin_settings(
    section: &AdminSection,
    listen: SocketAddr,
    server_tls: Option<&TlsSettings>,
) -> Result<AdminSettings, ConfigError> {
    let own = match (&section.cert, &section.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::new("admin.key", "admin.cert needs admin.key")),
        (None, Some(_)) => {
            return Err(ConfigError::new("admin.cert", "admin.key needs admin.cert"));
        }
    };
    let loopback = listen.ip().to_canonical().is_loopback();
    let plain_http = section.plain_http.unwrap_or(false);
    if loopback {
        return Ok(AdminSettings {
            listen,
            token_hash: section.token_hash.clone(),
            tls: own,
            plain_on_network: false,
            metrics_by_host: section.metrics_by_host.unwrap_or(false),
        });
    }
    if section.token_hash.is_none() {
        return Err(ConfigError::new(
            "admin.token_hash",
            format!(
                "the admin listener {listen} is not on loopback: set the hash of its token (make one with `wharf passwd`), a token shown at start is not enough there"
            ),
        ));
    }
    let tls = own.or_else(|| server_tls.map(|t| (t.cert.clone(), t.key.clone())));
    if tls.is_none() && !plain_http {
        return Err(ConfigError::new(
            "admin.listen",
            format!(
                "the admin listener {listen} is not on loopback and has no certificate: give admin.cert and admin.key (or the server's [tls]), set plain_http = true for a trusted management network, or listen on 127.0.0.1"
            ),
        ));
    }
    Ok(AdminSettings {
        listen,
        token_hash: section.token_hash.clone(),
        plain_on_network: tls.is_none(),
        tls,
        metrics_by_host: section.metrics_by_host.unwrap_or(false),
    })
}

/// The TLS part of the configuration: certificate and key (both or neither), the mode
/// (`required` by default once a certificate is given), and the implicit listeners.
fn build_tls(
    file: &TlsSection,
    cli: &Overrides,
) -> Result<(Option<TlsSettings>, Vec<SocketAddr>), ConfigError> {
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
    Ok((
        Some(TlsSettings {
            mode: mode.unwrap_or(TlsMode::Required),
            cert,
            key,
            require_session_reuse: file.require_session_reuse.unwrap_or(true),
            require_close_notify: file.require_close_notify.unwrap_or(true),
            cert_field,
        }),
        implicit,
    ))
}

#[cfg(test)]
mod line_tests {
    use super::line_of;

    #[test]
    fn fields_are_found_on_their_lines() {
        let text = "listen = [\"127.0.0.1:21\"]\n\n[passive]\nports = \"1-2\"\n\n[[user]]\nname = \"a\"\nhome = \"/x\"\n\n[[user]]\n# comment\nname = \"b\"\nhome = \"/y\"\n";
        assert_eq!(line_of(text, "listen"), Some(1));
        assert_eq!(line_of(text, "passive.ports"), Some(4));
        assert_eq!(line_of(text, "user[0].home"), Some(8));
        assert_eq!(line_of(text, "user[1].name"), Some(12));
        assert_eq!(line_of(text, "user[1].home"), Some(13));
        assert_eq!(line_of(text, "user[1]"), Some(10));
        assert_eq!(line_of(text, "user[1].permissions"), None);
        assert_eq!(line_of(text, "--root"), None);
        assert_eq!(line_of(text, "name"), None, "not a top-level key");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_networks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let one = Cidr::parse("127.0.0.3").unwrap();
        assert!(one.contains("::ffff:127.0.0.3".parse().unwrap()));
        assert!(!one.contains("127.0.0.4".parse().unwrap()));
        let any = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(any.contains("192.0.2.1".parse().unwrap()));
        let six = Cidr::parse("2001:db8::/32").unwrap();
        assert!(six.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!six.contains("2001:db9::1".parse().unwrap()));
        // IPv4-mapped forms are the IPv4 networks they map, never "everything".
        let mapped = Cidr::parse("::ffff:10.0.0.1").unwrap();
        assert!(mapped.contains("10.0.0.1".parse().unwrap()));
        assert!(!mapped.contains("10.0.0.2".parse().unwrap()));
        assert!(!mapped.contains("192.0.2.1".parse().unwrap()));
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert!(mapped.contains("10.9.9.9".parse().unwrap()));
        assert!(!mapped.contains("11.0.0.1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "nonsense",
            "10.0.0.0/x",
            "",
            "::ffff:10.0.0.0/64",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

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

    /// Off loopback the admin listener needs a configured token hash and HTTPS (its own
    /// certificate or the server's), unless plain HTTP is asked for by name.
    #[test]
    fn admin_off_loopback_needs_a_token_hash_and_tls() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        let hash = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
        let build = |admin: &str| {
            Settings::build(
                FileConfig::parse(&format!("root = '{root}'\n[admin]\n{admin}")).unwrap(),
                Overrides::default(),
            )
            .map(|s| s.admin.unwrap())
        };
        let e = build("listen = '0.0.0.0:8021'\n").unwrap_err();
        assert_eq!(e.field, "admin.token_hash");
        let e = build(&format!("listen = '[::]:8021'\ntoken_hash = '{hash}'\n")).unwrap_err();
        assert_eq!(e.field, "admin.listen");
        assert!(e.to_string().contains("plain_http = true"), "{e}");
        let a = build(&format!(
            "listen = '0.0.0.0:8021'\ntoken_hash = '{hash}'\nplain_http = true\n"
        ))
        .unwrap();
        assert!(a.plain_on_network && a.tls.is_none());
        let a = build(&format!(
            "listen = '10.0.0.1:8021'\ntoken_hash = '{hash}'\ncert = 'a.crt'\nkey = 'a.key'\n"
        ))
        .unwrap();
        assert_eq!(a.tls, Some(("a.crt".into(), "a.key".into())));
        assert!(!a.plain_on_network);
        // Loopback: as before, a token made at start is fine, and plain HTTP.
        let a = build("listen = '127.0.0.1:8021'\n").unwrap();
        assert!(a.tls.is_none() && !a.plain_on_network && a.token_hash.is_none());
        let a = build("listen = '[::ffff:127.0.0.1]:8021'\n").unwrap();
        assert!(!a.plain_on_network);
        let e = build("listen = '127.0.0.1:8021'\ncert = 'a.crt'\n").unwrap_err();
        assert_eq!(e.field, "admin.key");
    }

    #[test]
    fn build_validates_fields() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_string_lossy().to_string();
        let build = |toml: &str| {
            Settings::build(FileConfig::parse(toml).unwrap(), Overrides::default())
                .and_then(|s| crate::Services::new(&s).map(|_| ()))
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
            "root = '{root}'\n[[user]]\nname='a'\npassword_hash='$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/'\npermissions=['fly']\n"
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
            Settings::build(FileConfig::parse(toml).unwrap(), Overrides::default())
                .and_then(|s| crate::Services::new(&s).map(|_| ()))
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
        let c = Settings::build(
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
        assert!(
            parse_port_range("1-1024")
                .unwrap_err()
                .contains("below 1024")
        );
        assert!(parse_port_range("1023-2000").is_err());
        assert_eq!(parse_port_range("1024-1030"), Ok(1024..=1030));
        assert!(parse_port_range("1-70000").is_err());
    }
}
