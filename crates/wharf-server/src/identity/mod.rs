//! Where logins are checked: the users of the config file, the user database, an external
//! hook and an LDAP directory, asked in a configured order ([`UserStore`]), with address rules
//! and one-time codes on top.
//!
//! Each source answers *unknown* (the next one is asked), *refused* (530, no other is asked) or
//! with an account. The file and the database hand over a hash, checked here in the fair
//! password queue; the hook and the directory check the password themselves and never hold a
//! slot of that queue while they are waited on. An empty password is refused before any
//! source; the server-wide rules (`[access]`) before any source too, a file or database user's
//! own rules before its hash is checked, and a remote answer's rules as soon as it arrives.

pub mod cache;
pub mod external;
pub mod ldap;
pub mod rules;
pub mod totp;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::auth::{
    Account, AnonymousAccess, AuthError, Authenticator, Credentials, DbUsers, QUICK_PASSWORD,
    Rejection, Secret, UserEntry, UserLimits, hash_password, is_anonymous_name, is_quick,
    verify_hash,
};
use crate::storage::BoxFuture;
use cache::AnswerCache;
use rules::AddressRules;
use totp::{TotpSecret, UsedCodes, split_code};

/// A source of users, as `[auth] order` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// `[[user]]` tables and `--user`.
    File,
    /// `[users] db`.
    Database,
    /// `[auth.external]`.
    External,
    /// `[auth.ldap]`.
    Ldap,
}

impl SourceKind {
    pub const ALL: [SourceKind; 4] = [
        SourceKind::File,
        SourceKind::Database,
        SourceKind::External,
        SourceKind::Ldap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Database => "database",
            SourceKind::External => "external",
            SourceKind::Ldap => "ldap",
        }
    }

    pub fn parse(text: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// What a remote source is asked.
#[derive(Debug)]
pub struct Request<'a> {
    pub user: &'a str,
    /// As typed (with a one-time code at its end, if the user has one).
    pub password: &'a [u8],
    pub ip: IpAddr,
    /// The host name the client gave with HOST, if it did.
    pub host: Option<&'a str>,
    pub tls: bool,
    /// The server's per-user limits, for those an answer leaves open.
    pub defaults: UserLimits,
    /// The server's root, the home of an account without one.
    pub root: &'a Path,
}

/// What one source says of a login.
#[derive(Debug)]
pub enum Answer {
    /// Not one of this source's users.
    Unknown,
    /// This source's user, refused.
    Refused(Rejection),
    /// Accepted, with the account.
    Account(Box<Found>),
    /// The source cannot answer: 421, never a login.
    Unavailable(String),
}

/// An accepted login: the account and what still applies to it.
#[derive(Debug, Clone)]
pub struct Found {
    pub account: Account,
    pub rules: AddressRules,
    pub totp: Option<TotpSecret>,
    /// The virtual host the source says the account belongs to (the hook's `host`).
    pub host: Option<String>,
}

/// A remote source with its cache.
#[derive(Debug)]
struct Remote<S> {
    source: S,
    cache: AnswerCache,
}

impl<S> Remote<S> {
    fn new(source: S, ttl: std::time::Duration) -> Result<Remote<S>, String> {
        Ok(Remote {
            source,
            cache: AnswerCache::new(ttl)?,
        })
    }
}

/// The sources beyond the built-in ones, and the rules over all (from `[auth]`, `[access]`).
#[derive(Debug, Default)]
pub struct Extra {
    /// The order sources are asked in; empty: file, database, external, LDAP.
    pub order: Vec<SourceKind>,
    pub access: AddressRules,
    pub external: Option<external::External>,
    pub ldap: Option<ldap::Ldap>,
    /// The virtual hosts: their roots and anonymous access.
    pub hosts: Vec<crate::config::HostSettings>,
}

/// Every source of users, in order, with the rules and codes over them.
#[derive(Debug)]
pub struct UserStore {
    order: Vec<SourceKind>,
    users: Arc<Vec<UserEntry>>,
    anonymous: Option<AnonymousAccess>,
    /// Users in a database.
    db: Option<DbUsers>,
    external: Option<Remote<external::External>>,
    ldap: Option<Remote<ldap::Ldap>>,
    access: AddressRules,
    /// Verified against when the user is unknown, so that unknown and known users cost the same.
    dummy: Option<Arc<str>>,
    /// Password checks running at once: a crowd of logins cannot take all memory or CPU
    /// (Argon2 takes ~19 MiB each).
    slots: Arc<tokio::sync::Semaphore>,
    /// How many slots there are.
    slot_count: usize,
    /// One-time codes used, when there is no database to keep them.
    used_codes: UsedCodes,
    /// The server's root and per-user limits, for remote accounts.
    root: PathBuf,
    defaults: UserLimits,
    /// The virtual hosts: a login for one sees only its users, and its root.
    hosts: Vec<crate::config::HostSettings>,
}

impl UserStore {
    pub fn new(users: Vec<UserEntry>, anonymous: Option<AnonymousAccess>) -> UserStore {
        UserStore::with_db(users, anonymous, None)
    }

    /// With users in a database too.
    pub fn with_db(
        users: Vec<UserEntry>,
        anonymous: Option<AnonymousAccess>,
        db: Option<DbUsers>,
    ) -> UserStore {
        let root = db.as_ref().map_or_else(PathBuf::new, |d| d.home.clone());
        let defaults = db.as_ref().map_or_else(UserLimits::default, |d| d.defaults);
        // An unknown user's password is checked against a real user's hash (same scheme, same
        // cost), so that both take the same time; with only database users, against a hash
        // made now with the defaults new users get.
        let dummy = users
            .first()
            .map(|u| match &u.secret {
                Secret::Hash(h) => Arc::from(h.as_str()),
            })
            .or_else(|| {
                db.as_ref()
                    .and_then(|_| hash_password(b"unknown user").ok())
                    .map(Arc::from)
            });
        let slot_count = std::thread::available_parallelism().map_or(2, |n| n.get());
        UserStore {
            order: SourceKind::ALL.to_vec(),
            users: Arc::new(users),
            anonymous,
            db,
            external: None,
            ldap: None,
            access: AddressRules::default(),
            dummy,
            slots: Arc::new(tokio::sync::Semaphore::new(slot_count)),
            slot_count,
            used_codes: UsedCodes::default(),
            root,
            defaults,
            hosts: Vec::new(),
        }
    }

    /// With the hook, the directory, the order and the server-wide rules; `root` and
    /// `defaults` are what remote accounts get where their answer is silent.
    pub fn with_extra(
        mut self,
        extra: Extra,
        root: PathBuf,
        defaults: UserLimits,
    ) -> Result<UserStore, String> {
        if !extra.order.is_empty() {
            self.order = extra.order;
        }
        self.access = extra.access;
        self.external = match extra.external {
            Some(e) => {
                let ttl = e.settings().cache;
                Some(Remote::new(e, ttl)?)
            }
            None => None,
        };
        self.ldap = match extra.ldap {
            Some(l) => {
                let ttl = l.settings().cache;
                Some(Remote::new(l, ttl)?)
            }
            None => None,
        };
        self.root = root;
        self.defaults = defaults;
        self.hosts = extra.hosts;
        Ok(self)
    }

    pub fn has_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Whether a remote source (hook, directory) is asked: then the logins of one address go
    /// one at a time, so that a flood reaches the source no faster than bans count it.
    pub fn has_remote(&self) -> bool {
        self.external.is_some() || self.ldap.is_some()
    }

    /// A fair slot for one hash check (the driver's queue, when it gave one).
    async fn fair_slot(&self, c: &Credentials) -> Result<Option<crate::guard::Slot>, AuthError> {
        match &c.queue {
            Some(guard) => guard
                .check_slot(c.conn.peer.ip())
                .await
                .map(Some)
                .map_err(|_| AuthError::AddressRefused),
            None => Ok(None),
        }
    }

    /// Checks `password` against `hash` (the dummy's when `None`), in the hash slots.
    async fn check_hash(
        &self,
        hash: Option<Arc<str>>,
        password: Vec<u8>,
    ) -> Result<bool, AuthError> {
        let hash = hash.or_else(|| self.dummy.clone());
        let _slot = self.slots.acquire().await.ok();
        // SHA-crypt's cost grows with the password's length (a PASS line may be 4 KiB): only a
        // short one is checked here. And only when no other check runs: in a crowd of logins,
        // checks on the session threads held up everyone's I/O (10,000 logins at once: 1,465
        // clients timed out, none with the pool).
        let alone = self.slots.available_permits() + 1 == self.slot_count;
        let quick =
            alone && password.len() <= QUICK_PASSWORD && hash.as_deref().is_some_and(is_quick);
        let check = move || hash.is_some_and(|h| verify_hash(&h, &password));
        if quick {
            Ok(check())
        } else {
            tokio::task::spawn_blocking(check)
                .await
                .map_err(|e| AuthError::Unavailable(format!("password check failed: {e}")))
        }
    }

    /// A file or database user: its rules, then its hash (and code), then whether it may log
    /// in.
    async fn local(&self, c: &Credentials, local: Local) -> Result<Account, AuthError> {
        let ip = c.conn.peer.ip();
        if let Err(rule) = local.rules.check(ip) {
            return Err(AuthError::Rejected(Rejection::AddressRule(format!(
                "{rule} of the user"
            ))));
        }
        let (password, code) = match &local.totp {
            Some(_) => match split_code(&c.password) {
                Some((p, code)) => (p.to_vec(), Some(code.to_string())),
                // No code: the hash is still checked (the same time), then refused.
                None => (c.password.clone(), None),
            },
            None => (c.password.clone(), None),
        };
        // The fair slot only for the hash (not for the code's record in the database).
        let matched = {
            let _fair = self.fair_slot(c).await?;
            self.check_hash(Some(local.hash), password).await?
        };
        if !matched {
            return Err(AuthError::Rejected(Rejection::WrongPassword));
        }
        if !local.enabled {
            return Err(AuthError::Rejected(Rejection::Disabled));
        }
        if let Some(secret) = &local.totp {
            self.second_factor(c, &local.account.name, secret, code.as_deref())
                .await?;
        }
        Ok(local.account)
    }

    /// The code after the password: right, of now (or a step of skew), and not used from
    /// another address.
    async fn second_factor(
        &self,
        c: &Credentials,
        user: &str,
        secret: &TotpSecret,
        code: Option<&str>,
    ) -> Result<(), AuthError> {
        let Some(code) = code else {
            return Err(AuthError::Rejected(Rejection::MissingCode));
        };
        let now = unix_now();
        let Some(step) = secret.verify(code, now) else {
            return Err(AuthError::Rejected(Rejection::WrongCode));
        };
        let ip = c.conn.peer.ip();
        let fresh = match &self.db {
            Some(d) => {
                d.db.take_code(user, step, ip, now / totp::STEP)
                    .await
                    .map_err(|e| AuthError::Unavailable(e.to_string()))?
            }
            None => self.used_codes.take(user, step, ip, now / totp::STEP),
        };
        if fresh {
            Ok(())
        } else {
            Err(AuthError::Rejected(Rejection::CodeReused))
        }
    }

    /// A remote answer: its rules and code.
    async fn remote(&self, c: &Credentials, found: Found) -> Result<Account, AuthError> {
        // The source has checked the password by now: this refusal counts as a failure (else
        // how bans behave would tell a right password from a wrong one).
        if let Err(rule) = found.rules.check(c.conn.peer.ip()) {
            return Err(AuthError::Rejected(Rejection::AddressRuleAfterPassword(
                format!("{rule} of the user"),
            )));
        }
        if let Some(secret) = &found.totp {
            let code = split_code(&c.password).map(|(_, code)| code);
            self.second_factor(c, &found.account.name, secret, code)
                .await?;
        }
        Ok(found.account)
    }

    /// Asks a remote source (or its cache).
    async fn ask<S: Ask>(remote: &Remote<S>, r: &Request<'_>) -> Answer {
        let key = cache::Login {
            user: r.user,
            password: r.password,
            host: r.host,
            ip: r.ip,
            tls: r.tls,
        };
        if let Some(found) = remote.cache.get(&key) {
            return Answer::Account(Box::new(found));
        }
        let answer = remote.source.ask(r).await;
        match &answer {
            Answer::Account(found) => remote.cache.put(&key, found),
            Answer::Refused(_) | Answer::Unknown => remote.cache.forget(r.user),
            Answer::Unavailable(_) => {}
        }
        answer
    }
}

/// A remote source.
pub trait Ask: Send + Sync {
    fn ask<'a>(&'a self, r: &'a Request<'a>) -> BoxFuture<'a, Answer>;
}

impl Ask for external::External {
    fn ask<'a>(&'a self, r: &'a Request<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(external::External::ask(self, r))
    }
}

impl Ask for ldap::Ldap {
    fn ask<'a>(&'a self, r: &'a Request<'a>) -> BoxFuture<'a, Answer> {
        Box::pin(ldap::Ldap::ask(self, r))
    }
}

/// A file or database user, found.
struct Local {
    hash: Arc<str>,
    account: Account,
    enabled: bool,
    rules: AddressRules,
    totp: Option<TotpSecret>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator for UserStore {
    fn one_login_per_address(&self) -> bool {
        self.has_remote()
    }

    fn authenticate(&self, c: Credentials) -> BoxFuture<'_, Result<Account, AuthError>> {
        Box::pin(async move {
            let ip = c.conn.peer.ip();
            if let Err(rule) = self.access.check(ip) {
                return Err(AuthError::Rejected(Rejection::AddressRule(format!(
                    "{rule} of [access]"
                ))));
            }
            // A login for a virtual host: its users only, its root for those without a home.
            let host = match &c.vhost {
                Some(id) => match self.hosts.iter().find(|h| h.id() == id) {
                    Some(h) => Some(h),
                    None => {
                        return Err(AuthError::Unavailable(format!(
                            "host `{id}` is no longer configured"
                        )));
                    }
                },
                None => None,
            };
            let root = host.map_or(&self.root, |h| &h.root);
            if let (true, Some(h)) = (is_anonymous_name(&c.user), host) {
                if h.anonymous {
                    return Ok(Account {
                        name: "anonymous".into(),
                        home: h.root.clone(),
                        permissions: crate::auth::Permissions::READ_ONLY,
                        anonymous: true,
                        limits: self.defaults,
                    });
                }
            } else if is_anonymous_name(&c.user) {
                if let Some(anon) = &self.anonymous {
                    return Ok(Account {
                        name: "anonymous".into(),
                        home: anon.home.clone(),
                        permissions: anon.permissions,
                        anonymous: true,
                        limits: anon.limits,
                    });
                }
            }
            if c.password.is_empty() {
                return Err(AuthError::Rejected(Rejection::EmptyPassword));
            }
            let name = std::str::from_utf8(&c.user).ok();
            let mut has_local = false;
            for kind in &self.order {
                match kind {
                    SourceKind::File => {
                        has_local |= !self.users.is_empty();
                        let Some(e) = self
                            .users
                            .iter()
                            .find(|u| u.name.as_bytes() == c.user && u.host == c.vhost)
                        else {
                            continue;
                        };
                        let Secret::Hash(hash) = &e.secret;
                        let local = Local {
                            hash: Arc::from(hash.as_str()),
                            account: Account {
                                name: e.name.clone(),
                                home: e.home.clone(),
                                permissions: e.permissions,
                                anonymous: false,
                                limits: e.limits,
                            },
                            enabled: true,
                            rules: e.rules.clone(),
                            totp: e.totp.clone(),
                        };
                        return self.local(&c, local).await;
                    }
                    SourceKind::Database => {
                        let (Some(users), Some(name)) = (&self.db, name) else {
                            continue;
                        };
                        has_local = true;
                        let user = match users.db.find(name).await {
                            // A user of another host is not one of this host's.
                            Ok(Some(user)) if user.host == c.vhost => user,
                            Ok(_) => continue,
                            Err(e) => return Err(AuthError::Unavailable(e.to_string())),
                        };
                        let local = Local {
                            hash: Arc::from(user.password_hash.as_str()),
                            account: Account {
                                home: user.home.clone().map_or_else(
                                    || host.map_or_else(|| users.home.clone(), |h| h.root.clone()),
                                    PathBuf::from,
                                ),
                                name: user.name.clone(),
                                permissions: user.permissions,
                                anonymous: false,
                                limits: user.limits.or(users.defaults),
                            },
                            enabled: user.enabled,
                            rules: user.rules.clone(),
                            // A secret that cannot be read refuses the login (421) rather
                            // than dropping the second factor.
                            totp: user
                                .totp_secret
                                .as_deref()
                                .map(TotpSecret::parse)
                                .transpose()
                                .map_err(|e| {
                                    AuthError::Unavailable(format!(
                                        "user `{}`: totp_secret in the database: {e}",
                                        user.name
                                    ))
                                })?,
                        };
                        let account = self.local(&c, local).await?;
                        // The login time is written off the login's path, and at most once a
                        // minute per user (a busy account's logins cost the database no write).
                        let now = unix_now() as i64;
                        if user.last_login.is_none_or(|t| now - t >= 60) {
                            let (db, name) = (users.db.clone(), user.name.clone());
                            tokio::spawn(async move { db.logged_in(&name).await });
                        }
                        return Ok(account);
                    }
                    SourceKind::External | SourceKind::Ldap => {
                        let Some(name) = name else { continue };
                        let request = Request {
                            user: name,
                            password: &c.password,
                            ip,
                            host: c.vhost.as_deref().or(c.host.as_deref()),
                            tls: c.tls,
                            defaults: self.defaults,
                            root,
                        };
                        // A virtual host's logins go to LDAP only where its settings name the
                        // host (a directory serves the default host unless told otherwise).
                        if let (SourceKind::Ldap, Some(id), Some(l)) = (kind, &c.vhost, &self.ldap)
                        {
                            if !l.source.settings().hosts.contains(id) {
                                continue;
                            }
                        }
                        let answer = match (kind, &self.external, &self.ldap) {
                            (SourceKind::External, Some(e), _) => Self::ask(e, &request).await,
                            (SourceKind::Ldap, _, Some(l)) => Self::ask(l, &request).await,
                            _ => continue,
                        };
                        match answer {
                            Answer::Unknown => continue,
                            Answer::Refused(why) => return Err(AuthError::Rejected(why)),
                            Answer::Unavailable(why) => {
                                return Err(AuthError::Unavailable(format!(
                                    "{}: {why}",
                                    kind.name()
                                )));
                            }
                            // The hook must say the account is this host's: one that knows
                            // nothing of hosts must not let a customer into another's files.
                            Answer::Account(found)
                                if *kind == SourceKind::External
                                    && c.vhost.is_some()
                                    && found.host != c.vhost =>
                            {
                                return Err(AuthError::Rejected(Rejection::OtherHost));
                            }
                            Answer::Account(found) => return self.remote(&c, *found).await,
                        }
                    }
                }
            }
            // Nobody knows the name: with a file or database, a hash is checked all the same,
            // so that the time does not tell.
            if has_local {
                let _fair = self.fair_slot(&c).await?;
                self.check_hash(None, c.password.clone()).await?;
            }
            Err(AuthError::Rejected(Rejection::UnknownUser))
        })
    }
}

#[cfg(test)]
mod tests;
