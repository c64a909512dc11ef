//! Users in a database: SQLite (the embedded default, one file) or PostgreSQL (one database for
//! many `wharf serve` nodes), through one code path (sqlx's `Any` driver).
//!
//! The schema (`wharf_users`) and its migrations are below; `wharf_schema` records which
//! migrations ran. Connections are made lazily: a server starts, and keeps running, while the
//! database is away — its logins get 421 until it is back.

use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

use crate::auth::{Permissions, UserLimits};
use crate::identity::rules::AddressRules;

/// The migrations, in order: each runs once per database, in a transaction. Only SQL that
/// SQLite and PostgreSQL both read (TEXT, BIGINT; times are Unix seconds; booleans 0/1).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS wharf_users (
        name TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        home TEXT,
        permissions TEXT NOT NULL,
        max_sessions BIGINT,
        download_rate BIGINT,
        upload_rate BIGINT,
        quota_bytes BIGINT,
        quota_files BIGINT,
        max_file_size BIGINT,
        enabled BIGINT NOT NULL DEFAULT 1,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_login BIGINT
    )",
    ),
    // Bans, shared by every node on this database: an address banned on one is refused on all.
    (
        2,
        "CREATE TABLE IF NOT EXISTS wharf_bans (
        address TEXT PRIMARY KEY,
        banned_until BIGINT NOT NULL,
        node TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    ),
    // A second factor and address rules per user (issue: identity sources).
    (3, "ALTER TABLE wharf_users ADD COLUMN totp_secret TEXT"),
    (
        4,
        "ALTER TABLE wharf_users ADD COLUMN allowed_addresses TEXT",
    ),
    (
        5,
        "ALTER TABLE wharf_users ADD COLUMN denied_addresses TEXT",
    ),
    // One-time codes used, so that every node refuses a code used from another address.
    (
        6,
        "CREATE TABLE IF NOT EXISTS wharf_totp_used (
        name TEXT NOT NULL,
        step BIGINT NOT NULL,
        address TEXT NOT NULL,
        used_at BIGINT NOT NULL,
        PRIMARY KEY (name, step)
    )",
    ),
    // The virtual host a user belongs to (NULL: the default host). Names stay unique across
    // hosts: customers' logins are `user@domain` or prefixed, as directory logins are.
    (7, "ALTER TABLE wharf_users ADD COLUMN host TEXT"),
    // ACME shared by the nodes of one database: certificates (keys sealed with a key from the
    // nodes' configuration, never stored here), the account (sealed too), pending HTTP-01
    // answers (any node answers a challenge), and who orders now.
    (
        8,
        "CREATE TABLE IF NOT EXISTS wharf_acme_certs (
        host TEXT PRIMARY KEY,
        chain TEXT NOT NULL,
        key_sealed TEXT NOT NULL,
        not_after BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )",
    ),
    (
        9,
        "CREATE TABLE IF NOT EXISTS wharf_acme_account (
        id BIGINT PRIMARY KEY,
        directory TEXT NOT NULL,
        credentials_sealed TEXT NOT NULL
    )",
    ),
    (
        10,
        "CREATE TABLE IF NOT EXISTS wharf_acme_tokens (
        token TEXT PRIMARY KEY,
        answer TEXT NOT NULL,
        expires BIGINT NOT NULL
    )",
    ),
    (
        11,
        "CREATE TABLE IF NOT EXISTS wharf_acme_lease (
        host TEXT PRIMARY KEY,
        node TEXT NOT NULL,
        expires BIGINT NOT NULL
    )",
    ),
];

/// A certificate kept in the database for every node: the chain (PEM), the key sealed, when it
/// expires and when it was stored (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedCert {
    pub chain: String,
    pub key_sealed: String,
    pub not_after: i64,
    pub updated_at: i64,
}

/// A user row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUser {
    pub name: String,
    pub password_hash: String,
    /// `None`: the server's root.
    pub home: Option<String>,
    pub permissions: Permissions,
    pub limits: UserLimits,
    pub enabled: bool,
    /// The base32 secret of the user's one-time codes, if it has a second factor.
    pub totp_secret: Option<String>,
    /// Addresses the user may (not) log in from.
    pub rules: AddressRules,
    /// The virtual host (a `[[host]]`'s own name); `None`: the default host.
    pub host: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login: Option<i64>,
}

impl DbUser {
    /// The user as JSON (never its password hash): for `wharf users list --json` and the admin
    /// API.
    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.limits;
        serde_json::json!({
            "name": self.name,
            "enabled": self.enabled,
            "home": self.home,
            "permissions": permissions_text(self.permissions),
            "max_sessions": l.max_sessions,
            "download_rate": l.download_rate,
            "upload_rate": l.upload_rate,
            "quota_bytes": l.quota_bytes,
            "quota_files": l.quota_files,
            "max_file_size": l.max_file_size,
            "totp": self.totp_secret.is_some(),
            "host": self.host,
            "allowed_addresses": self.rules.allowed.iter().map(crate::identity::rules::show).collect::<Vec<_>>(),
            "denied_addresses": self.rules.denied.iter().map(crate::identity::rules::show).collect::<Vec<_>>(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_login": self.last_login,
        })
    }
}

/// Why a database call failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached or answered with an error (logins get 421).
    #[error("user database unavailable: {0}")]
    Unavailable(String),
    #[error("user `{0}` already exists")]
    Exists(String),
    #[error("no user `{0}`")]
    NoSuchUser(String),
    #[error("{0}")]
    Invalid(String),
}

fn unavailable(e: sqlx::Error) -> DbError {
    DbError::Unavailable(e.to_string())
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// A user database.
pub struct UserDb {
    /// Made on first use, inside the runtime (sqlx's pool needs one).
    pool: tokio::sync::OnceCell<AnyPool>,
    /// The URL as the driver reads it.
    driver: String,
    timeout: Duration,
    kind: DbKind,
    /// The URL without its password, for logs and errors.
    shown: String,
    /// The URL as given (to tell whether a reload names the same database).
    url: String,
    /// Set once the migrations ran on this pool.
    migrated: tokio::sync::OnceCell<()>,
}

impl std::fmt::Debug for UserDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDb").field("url", &self.shown).finish()
    }
}

/// `sqlite:PATH` (created when missing) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, as the
/// driver reads it, with its kind.
fn driver_url(url: &str) -> Result<(String, DbKind), DbError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err(DbError::Invalid(
                "`sqlite:` needs a path: sqlite:/var/lib/wharf/users.db".into(),
            ));
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        // rwc: read, write, and create the file when it does not exist yet.
        return Ok((format!("sqlite://{path}{sep}mode=rwc"), DbKind::Sqlite));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_string(), DbKind::Postgres));
    }
    Err(DbError::Invalid(format!(
        "`{}` is not a user database URL (sqlite:PATH or postgres://USER@HOST/DB)",
        redact(url)
    )))
}

/// The file of a `sqlite:PATH` URL (`None` for another database).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

/// Whether `url` names a user database this server can use (no connection made).
pub fn check_url(url: &str) -> Result<(), DbError> {
    driver_url(url).map(|_| ())
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((auth, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Permissions as stored: the config file's words, comma-separated.
pub fn permissions_text(p: Permissions) -> String {
    if p == Permissions::ALL {
        return "all".into();
    }
    let mut words = Vec::new();
    for (on, word) in [
        (p.read, "read"),
        (p.write, "write"),
        (p.delete, "delete"),
        (p.mkdir, "mkdir"),
        (p.rename, "rename"),
    ] {
        if on {
            words.push(word);
        }
    }
    words.join(",")
}

/// Reads [`permissions_text`] (and `all`); an unknown word is an error.
pub fn parse_permissions(text: &str) -> Result<Permissions, String> {
    let mut p = Permissions::default();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "read" => p.read = true,
            "write" => p.write = true,
            "delete" => p.delete = true,
            "mkdir" => p.mkdir = true,
            "rename" => p.rename = true,
            "all" => p = Permissions::ALL,
            other => {
                return Err(format!(
                    "unknown permission `{other}` (read, write, delete, mkdir, rename, all)"
                ));
            }
        }
    }
    Ok(p)
}

/// A limit as stored: `None`, or a value that fits a BIGINT.
fn limit(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn unlimit<T: TryFrom<i64>>(v: Option<i64>) -> Option<T> {
    v.and_then(|n| T::try_from(n).ok())
}

fn from_row(row: &AnyRow) -> Result<DbUser, sqlx::Error> {
    let permissions: String = row.try_get("permissions")?;
    Ok(DbUser {
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        home: row.try_get("home")?,
        // A word this version does not know gives no right, rather than a failed login.
        permissions: parse_permissions(&permissions).unwrap_or_default(),
        limits: UserLimits {
            max_sessions: unlimit(row.try_get("max_sessions")?),
            download_rate: unlimit(row.try_get("download_rate")?),
            upload_rate: unlimit(row.try_get("upload_rate")?),
            quota_bytes: unlimit(row.try_get("quota_bytes")?),
            quota_files: unlimit(row.try_get("quota_files")?),
            max_file_size: unlimit(row.try_get("max_file_size")?),
        },
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        totp_secret: row.try_get("totp_secret")?,
        host: row.try_get("host")?,
        // Rules this version cannot read refuse every address, rather than none.
        rules: AddressRules::parse_text(
            row.try_get::<Option<String>, _>("allowed_addresses")?
                .as_deref(),
            row.try_get::<Option<String>, _>("denied_addresses")?
                .as_deref(),
        )
        .unwrap_or_else(|_| AddressRules {
            allowed: Vec::new(),
            denied: vec![
                crate::config::Cidr {
                    addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
                    bits: 0,
                },
                crate::config::Cidr {
                    addr: std::net::Ipv6Addr::UNSPECIFIED.into(),
                    bits: 0,
                },
            ],
        }),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_login: row.try_get("last_login")?,
    })
}

const COLUMNS: &str = "name, password_hash, home, permissions, max_sessions, download_rate, \
     upload_rate, quota_bytes, quota_files, max_file_size, enabled, totp_secret, \
     allowed_addresses, denied_addresses, host, created_at, updated_at, last_login";

impl UserDb {
    /// A database for `url`, not connected yet (no I/O here: the server makes it before it
    /// runs, and the connection comes with the first use). `timeout` bounds each wait for a
    /// connection.
    pub fn lazy(url: &str, timeout: Duration) -> Result<Arc<UserDb>, DbError> {
        let (driver, kind) = driver_url(url)?;
        Ok(Arc::new(UserDb {
            pool: tokio::sync::OnceCell::new(),
            driver,
            timeout,
            kind,
            shown: redact(url),
            url: url.to_string(),
            migrated: tokio::sync::OnceCell::new(),
        }))
    }

    /// The connection pool (no connection is made until a query needs one).
    async fn pool(&self) -> Result<&AnyPool, DbError> {
        self.pool
            .get_or_try_init(|| async {
                static DRIVERS: Once = Once::new();
                DRIVERS.call_once(sqlx::any::install_default_drivers);
                let sqlite = self.kind == DbKind::Sqlite;
                let mut options = AnyPoolOptions::new()
                    .max_connections(if sqlite { 4 } else { 8 })
                    .min_connections(0)
                    // A database that cannot hand out a connection within a few seconds is
                    // down for a client waiting at PASS (the pool keeps retrying until then).
                    .acquire_timeout(self.timeout.min(Duration::from_secs(5)));
                if sqlite {
                    // Readers do not block the writer (`wharf users` while the server runs),
                    // and a writer waits for another rather than failing at once.
                    options = options.after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout = 5000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    });
                }
                options
                    .connect_lazy(&self.driver)
                    .map_err(|e| DbError::Invalid(format!("{}: {e}", self.shown)))
            })
            .await
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL without a password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Closes the connections (SQLite then checkpoints and removes its `-wal` and `-shm`).
    pub async fn close(&self) {
        if let Some(pool) = self.pool.get() {
            pool.close().await;
        }
    }

    /// Connects and runs the migrations that have not run yet (once per pool; a failure is
    /// tried again on the next call).
    pub async fn ready(&self) -> Result<(), DbError> {
        self.migrated
            .get_or_try_init(|| self.migrate())
            .await
            .map(|_| ())
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let pool = self.pool().await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS wharf_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(pool)
        .await
        .map_err(unavailable)?;
        for (version, sql) in MIGRATIONS {
            let mut tx = pool.begin().await.map_err(unavailable)?;
            if self.kind == DbKind::Postgres {
                // Nodes starting at once migrate one after the other.
                sqlx::query("SELECT pg_advisory_xact_lock(7302101)")
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM wharf_schema WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            if done.is_some() {
                continue;
            }
            sqlx::query(*sql)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            sqlx::query("INSERT INTO wharf_schema (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            tracing::info!(db = %self.shown, version, "user database migrated");
        }
        Ok(())
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub async fn find(&self, name: &str) -> Result<Option<DbUser>, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM wharf_users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(from_row).transpose().map_err(unavailable)
    }

    pub async fn list(&self) -> Result<Vec<DbUser>, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM wharf_users ORDER BY name"
        )))
        .fetch_all(pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(from_row)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    /// Adds a user; an existing name is [`DbError::Exists`].
    pub async fn add(&self, user: &DbUser) -> Result<(), DbError> {
        // What is wrong with the input is said before the database is asked.
        check_name(&user.name)?;
        crate::auth::check_hash(&user.password_hash).map_err(DbError::Invalid)?;
        self.ready().await?;
        let pool = self.pool().await?;
        let t = now();
        // COLUMNS is a constant: nothing from outside is in the SQL text.
        let q = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO wharf_users ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        )));
        let r = bind_settings(q.bind(user.name.clone()), user)
            .bind(t)
            .bind(t)
            .bind(None::<i64>)
            .execute(pool)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(DbError::Exists(user.name.clone()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Replaces a user's settings (not its name, creation time or last login).
    pub async fn update(&self, user: &DbUser) -> Result<(), DbError> {
        crate::auth::check_hash(&user.password_hash).map_err(DbError::Invalid)?;
        self.ready().await?;
        let pool = self.pool().await?;
        let q = sqlx::query(
            "UPDATE wharf_users SET password_hash = $1, home = $2, permissions = $3, \
             max_sessions = $4, download_rate = $5, upload_rate = $6, quota_bytes = $7, \
             quota_files = $8, max_file_size = $9, enabled = $10, totp_secret = $11, \
             allowed_addresses = $12, denied_addresses = $13, host = $14, updated_at = $15 \
             WHERE name = $16",
        );
        let r = bind_settings(q, user)
            .bind(now())
            .bind(user.name.as_str())
            .execute(pool)
            .await
            .map_err(unavailable)?;
        if r.rows_affected() == 0 {
            return Err(DbError::NoSuchUser(user.name.clone()));
        }
        Ok(())
    }

    pub async fn delete(&self, name: &str) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let r = sqlx::query("DELETE FROM wharf_users WHERE name = $1")
            .bind(name)
            .execute(pool)
            .await
            .map_err(unavailable)?;
        if r.rows_affected() == 0 {
            return Err(DbError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Records a ban of `ip` until `until` (Unix seconds), made by `node`: a longer ban already
    /// there stays.
    pub async fn record_ban(
        &self,
        ip: std::net::IpAddr,
        until: i64,
        node: &str,
    ) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO wharf_bans (address, banned_until, node, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (address) DO UPDATE SET banned_until = excluded.banned_until,
                 node = excluded.node, created_at = excluded.created_at
             WHERE wharf_bans.banned_until < excluded.banned_until",
        )
        .bind(ip.to_string())
        .bind(until)
        .bind(node.to_string())
        .bind(now())
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    /// The bans in force (until later than now), with their end in Unix seconds; expired rows
    /// are removed on the way.
    pub async fn active_bans(&self) -> Result<Vec<(std::net::IpAddr, i64)>, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let now = now();
        let rows = sqlx::query("SELECT address, banned_until FROM wharf_bans")
            .fetch_all(pool)
            .await
            .map_err(unavailable)?;
        let all: Vec<(std::net::IpAddr, i64)> = rows
            .iter()
            .filter_map(|row| {
                let address: String = row.try_get(0).ok()?;
                let until: i64 = row.try_get(1).ok()?;
                Some((address.parse().ok()?, until))
            })
            .collect();
        // A write only when there is something to remove: every node reads every 2 s.
        if all.iter().any(|(_, until)| *until <= now) {
            sqlx::query("DELETE FROM wharf_bans WHERE banned_until <= $1")
                .bind(now)
                .execute(pool)
                .await
                .map_err(unavailable)?;
        }
        Ok(all.into_iter().filter(|(_, until)| *until > now).collect())
    }

    /// Lifts the ban of `ip` on every node (they drop it at their next look); whether there
    /// was one.
    pub async fn lift_ban(&self, ip: std::net::IpAddr) -> Result<bool, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query("DELETE FROM wharf_bans WHERE address = $1")
            .bind(ip.to_string())
            .execute(pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(unavailable)
    }

    /// Records the use of `name`'s one-time code of `step` from `ip`: `true` when it was
    /// unused, or used from this same address (parallel connections of one client log in with
    /// one code); `false` when another address used it. Every node sees the same record.
    pub async fn take_code(
        &self,
        name: &str,
        step: u64,
        ip: std::net::IpAddr,
        now_step: u64,
    ) -> Result<bool, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let step = i64::try_from(step).map_err(|_| DbError::Invalid("step".into()))?;
        let address = ip.to_canonical().to_string();
        let now = now();
        sqlx::query(
            "INSERT INTO wharf_totp_used (name, step, address, used_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name, step) DO NOTHING",
        )
        .bind(name)
        .bind(step)
        .bind(address.clone())
        .bind(now)
        .execute(pool)
        .await
        .map_err(unavailable)?;
        let first: Option<String> =
            sqlx::query_scalar("SELECT address FROM wharf_totp_used WHERE name = $1 AND step = $2")
                .bind(name)
                .bind(step)
                .fetch_optional(pool)
                .await
                .map_err(unavailable)?;
        // Codes older than the window can no longer be typed: their records go, now and then.
        if now_step % 4 == 0 {
            let old = i64::try_from(now_step.saturating_sub(4)).unwrap_or(0);
            let _ = sqlx::query("DELETE FROM wharf_totp_used WHERE step < $1")
                .bind(old)
                .execute(pool)
                .await;
        }
        Ok(first.as_deref() == Some(address.as_str()))
    }

    /// The certificate of `host` the nodes share, if one is stored.
    pub async fn acme_cert(&self, host: &str) -> Result<Option<SharedCert>, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let row = sqlx::query(
            "SELECT chain, key_sealed, not_after, updated_at FROM wharf_acme_certs WHERE host = $1",
        )
        .bind(host)
        .fetch_optional(pool)
        .await
        .map_err(unavailable)?;
        row.map(|r| -> Result<SharedCert, sqlx::Error> {
            Ok(SharedCert {
                chain: r.try_get(0)?,
                key_sealed: r.try_get(1)?,
                not_after: r.try_get(2)?,
                updated_at: r.try_get(3)?,
            })
        })
        .transpose()
        .map_err(unavailable)
    }

    /// Stores `host`'s new certificate for every node.
    pub async fn put_acme_cert(&self, host: &str, cert: &SharedCert) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO wharf_acme_certs (host, chain, key_sealed, not_after, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (host) DO UPDATE SET chain = excluded.chain,
                 key_sealed = excluded.key_sealed, not_after = excluded.not_after,
                 updated_at = excluded.updated_at",
        )
        .bind(host)
        .bind(cert.chain.clone())
        .bind(cert.key_sealed.clone())
        .bind(cert.not_after)
        .bind(cert.updated_at)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    /// The ACME account of `directory` (its sealed credentials), if one is stored.
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query_scalar(
            "SELECT credentials_sealed FROM wharf_acme_account WHERE id = 1 AND directory = $1",
        )
        .bind(directory)
        .fetch_optional(pool)
        .await
        .map_err(unavailable)
    }

    pub async fn put_acme_account(&self, directory: &str, sealed: &str) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO wharf_acme_account (id, directory, credentials_sealed) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET directory = excluded.directory,
                 credentials_sealed = excluded.credentials_sealed",
        )
        .bind(directory)
        .bind(sealed)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    /// Publishes an HTTP-01 answer for every node, for `secs`.
    pub async fn put_acme_token(
        &self,
        token: &str,
        answer: &str,
        secs: i64,
    ) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query(
            "INSERT INTO wharf_acme_tokens (token, answer, expires) VALUES ($1, $2, $3)
             ON CONFLICT (token) DO UPDATE SET answer = excluded.answer, expires = excluded.expires",
        )
        .bind(token)
        .bind(answer)
        .bind(now() + secs)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    pub async fn acme_token(&self, token: &str) -> Result<Option<String>, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query_scalar("SELECT answer FROM wharf_acme_tokens WHERE token = $1 AND expires > $2")
            .bind(token)
            .bind(now())
            .fetch_optional(pool)
            .await
            .map_err(unavailable)
    }

    pub async fn drop_acme_token(&self, token: &str) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query("DELETE FROM wharf_acme_tokens WHERE token = $1 OR expires <= $2")
            .bind(token)
            .bind(now())
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Takes the right to order `host`'s certificate for `secs`, unless another node holds it:
    /// whether this node has it now.
    pub async fn take_acme_lease(
        &self,
        host: &str,
        node: &str,
        secs: i64,
    ) -> Result<bool, DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        let now = now();
        let r = sqlx::query(
            "INSERT INTO wharf_acme_lease (host, node, expires) VALUES ($1, $2, $3)
             ON CONFLICT (host) DO UPDATE SET node = excluded.node, expires = excluded.expires
             WHERE wharf_acme_lease.expires <= $4 OR wharf_acme_lease.node = excluded.node",
        )
        .bind(host)
        .bind(node)
        .bind(now + secs)
        .bind(now)
        .execute(pool)
        .await
        .map_err(unavailable)?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn drop_acme_lease(&self, host: &str, node: &str) -> Result<(), DbError> {
        self.ready().await?;
        let pool = self.pool().await?;
        sqlx::query("DELETE FROM wharf_acme_lease WHERE host = $1 AND node = $2")
            .bind(host)
            .bind(node)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Records a successful login (best effort: a failure is logged, the login stands).
    pub async fn logged_in(&self, name: &str) {
        let Ok(pool) = self.pool().await else {
            return;
        };
        let r = sqlx::query("UPDATE wharf_users SET last_login = $1 WHERE name = $2")
            .bind(now())
            .bind(name)
            .execute(pool)
            .await;
        if let Err(e) = r {
            tracing::warn!(db = %self.shown, user = name, error = %e, "cannot record the login time");
        }
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a user's settings, in the order of [`COLUMNS`] after the name: password hash, home,
/// permissions, the six limits, enabled, the TOTP secret, the address rules.
fn bind_settings<'q>(q: AnyQuery<'q>, user: &DbUser) -> AnyQuery<'q> {
    q.bind(user.password_hash.clone())
        .bind(user.home.clone())
        .bind(permissions_text(user.permissions))
        .bind(limit(user.limits.max_sessions.map(u64::from)))
        .bind(limit(user.limits.download_rate))
        .bind(limit(user.limits.upload_rate))
        .bind(limit(user.limits.quota_bytes))
        .bind(limit(user.limits.quota_files))
        .bind(limit(user.limits.max_file_size))
        .bind(i64::from(user.enabled))
        .bind(user.totp_secret.clone())
        .bind(user.rules.allowed_text())
        .bind(user.rules.denied_text())
        .bind(user.host.clone())
}

/// A user name the server can take: non-empty, no spaces or control characters, not one of
/// the anonymous names, at most 128 bytes.
pub fn check_name(name: &str) -> Result<(), DbError> {
    if name.is_empty()
        || name.len() > 128
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(DbError::Invalid(format!(
            "`{name}` is not a user name (1-128 characters, no spaces)"
        )));
    }
    if crate::auth::is_anonymous_name(name.as_bytes()) {
        return Err(DbError::Invalid(format!(
            "`{name}` is the anonymous login, not a user"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            driver_url("sqlite:/tmp/u.db").unwrap(),
            ("sqlite:///tmp/u.db?mode=rwc".into(), DbKind::Sqlite)
        );
        assert_eq!(
            driver_url("sqlite:rel/u.db").unwrap().0,
            "sqlite://rel/u.db?mode=rwc"
        );
        assert!(driver_url("sqlite:").is_err());
        assert!(driver_url("mysql://x").is_err());
        assert_eq!(
            redact("postgres://wharf:s3cret@db:5432/ftp"),
            "postgres://wharf:***@db:5432/ftp"
        );
        assert_eq!(redact("postgres://wharf@db/ftp"), "postgres://wharf@db/ftp");
    }

    #[test]
    fn permissions_round_trip() {
        for p in [
            Permissions::ALL,
            Permissions::READ_ONLY,
            Permissions::default(),
        ] {
            assert_eq!(parse_permissions(&permissions_text(p)).unwrap(), p);
        }
        assert!(parse_permissions("read,fly").is_err());
        assert_eq!(parse_permissions("all").unwrap(), Permissions::ALL);
    }

    fn sample(name: &str) -> DbUser {
        DbUser {
            name: name.into(),
            password_hash: crate::auth::hash_password(b"pw").unwrap(),
            home: Some("/srv/ftp/alice".into()),
            permissions: Permissions::ALL,
            limits: UserLimits {
                max_sessions: Some(3),
                download_rate: Some(1 << 20),
                upload_rate: None,
                quota_bytes: Some(u64::MAX),
                quota_files: Some(1000),
                max_file_size: None,
            },
            enabled: true,
            totp_secret: None,
            rules: Default::default(),
            host: None,
            created_at: 0,
            updated_at: 0,
            last_login: None,
        }
    }

    #[tokio::test]
    async fn sqlite_add_find_update_delete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("users.db");
        // A missing directory is an error (the file, not the directory, is created).
        let db = UserDb::lazy(
            &format!("sqlite:{}", path.display()),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(matches!(db.ready().await, Err(DbError::Unavailable(_))));
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        db.ready().await.unwrap();
        assert!(path.exists());
        let alice = sample("alice");
        db.add(&alice).await.unwrap();
        assert!(matches!(db.add(&alice).await, Err(DbError::Exists(_))));
        let found = db.find("alice").await.unwrap().unwrap();
        assert_eq!(found.limits.quota_bytes, Some(i64::MAX as u64));
        assert_eq!(found.limits.max_sessions, Some(3));
        assert_eq!(found.home.as_deref(), Some("/srv/ftp/alice"));
        assert_eq!(found.permissions, Permissions::ALL);
        assert!(found.enabled && found.last_login.is_none() && found.created_at > 0);
        db.logged_in("alice").await;
        assert!(
            db.find("alice")
                .await
                .unwrap()
                .unwrap()
                .last_login
                .is_some()
        );
        let mut changed = found.clone();
        changed.enabled = false;
        changed.home = None;
        db.update(&changed).await.unwrap();
        let found = db.find("alice").await.unwrap().unwrap();
        assert!(!found.enabled && found.home.is_none());
        assert!(db.find("bob").await.unwrap().is_none());
        assert!(matches!(
            db.update(&sample("bob")).await,
            Err(DbError::NoSuchUser(_))
        ));
        assert!(matches!(
            db.add(&sample("anonymous")).await,
            Err(DbError::Invalid(_))
        ));
        assert!(matches!(
            db.add(&sample("a b")).await,
            Err(DbError::Invalid(_))
        ));
        let mut bad = sample("carol");
        bad.password_hash = "plain".into();
        assert!(matches!(db.add(&bad).await, Err(DbError::Invalid(_))));
        assert_eq!(db.list().await.unwrap().len(), 1);
        db.delete("alice").await.unwrap();
        assert!(matches!(
            db.delete("alice").await,
            Err(DbError::NoSuchUser(_))
        ));
        // Migrations run once: a second pool on the same file finds the schema.
        let again = UserDb::lazy(
            &format!("sqlite:{}", path.display()),
            Duration::from_secs(5),
        )
        .unwrap();
        again.ready().await.unwrap();
        assert!(again.list().await.unwrap().is_empty());
    }
}
