//! LDAP logins (`[auth.ldap]`): OpenLDAP, Active Directory, 389-DS. The password is checked by
//! a bind as the user — to a DN made from a template, or found by a search as a service
//! account — over `ldaps://` or `ldap://` with StartTLS (plain `ldap://` only when asked for).
//! Groups map to permissions; the home comes from an attribute or a template.
//!
//! The user name goes into a filter escaped as RFC 4515 says and into a DN as RFC 4514 says, so
//! no name can change either. An empty password never reaches a bind (it would be an
//! unauthenticated bind, which Active Directory accepts).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use serde::Deserialize;

use super::rules::AddressRules;
use super::totp::TotpSecret;
use super::{Answer, Found, Request};
use crate::auth::{Account, Permissions, Rejection};

/// `[auth.ldap]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldaps://HOST[:PORT]` or `ldap://HOST[:PORT]` (StartTLS unless `starttls = false`).
    pub url: String,
    /// StartTLS on an `ldap://` URL (default true; false sends passwords in clear: only for
    /// a directory on the same host).
    pub starttls: Option<bool>,
    /// A PEM file of CAs for the directory's certificate (default: the system's).
    pub ca: Option<PathBuf>,
    /// Bind straight to this DN, `{user}` replaced by the escaped name:
    /// `uid={user},ou=people,dc=example,dc=com`.
    pub bind_dn: Option<String>,
    /// Or search for the user under this base (as the service account) and bind to what is
    /// found.
    pub search_base: Option<String>,
    /// The service account that searches.
    pub service_dn: Option<String>,
    pub service_password: Option<String>,
    /// The attribute holding the login name (default `uid`; Active Directory:
    /// `sAMAccountName`).
    pub user_attribute: Option<String>,
    /// What a user entry must also match (default `(objectClass=*)`).
    pub user_filter: Option<String>,
    /// Where groups are searched (default: the parent of the users' branch — `dc=example,dc=com`
    /// for `ou=people,dc=example,dc=com`).
    pub group_base: Option<String>,
    /// The groups of a user: `{dn}` is its escaped DN, `{user}` its escaped name (default
    /// `(&(objectClass=groupOfNames)(member={dn}))`).
    pub group_filter: Option<String>,
    /// Group name (its `cn`) → permissions. With any, a user in none of them may not log in.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Permissions of every directory user (default `["read"]`), added to its groups'.
    pub permissions: Option<Vec<String>>,
    /// The attribute holding the home (e.g. `homeDirectory`).
    pub home_attribute: Option<String>,
    /// Or the home as a template: `/srv/ftp/{user}`.
    pub home: Option<String>,
    /// Attributes with the user's address rules and one-time code secret, if the directory
    /// keeps them.
    pub allowed_addresses_attribute: Option<String>,
    pub denied_addresses_attribute: Option<String>,
    pub totp_attribute: Option<String>,
    /// Connections kept open to the directory (default 4).
    pub pool_size: Option<usize>,
    /// Milliseconds a connection or an operation may take (default 5000): then 421.
    pub timeout_ms: Option<u64>,
    /// Seconds an accepted login is remembered (default 0).
    pub cache_secs: Option<u64>,
    /// The virtual hosts (their own names) whose logins the directory answers; default: only
    /// the default host's.
    pub hosts: Option<Vec<String>>,
}

/// How a user's DN is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locate {
    Template(String),
    Search {
        base: String,
        service_dn: String,
        service_password: String,
    },
}

/// `[auth.ldap]`, checked.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    pub url: String,
    pub starttls: bool,
    pub ca: Option<PathBuf>,
    pub locate: Locate,
    pub user_attribute: String,
    pub user_filter: String,
    pub group_base: Option<String>,
    pub group_filter: String,
    pub groups: Vec<(String, Permissions)>,
    pub permissions: Permissions,
    pub home_attribute: Option<String>,
    pub home: Option<String>,
    pub allowed_attribute: Option<String>,
    pub denied_attribute: Option<String>,
    pub totp_attribute: Option<String>,
    pub pool_size: usize,
    pub timeout: Duration,
    pub cache: Duration,
    pub hosts: Vec<String>,
}

fn permissions(list: &[String]) -> Result<Permissions, String> {
    crate::userdb::parse_permissions(&list.join(","))
}

impl LdapSection {
    /// Checks the table; the error names the field.
    pub fn check(&self) -> Result<LdapSettings, (&'static str, String)> {
        let url = self.url.trim().to_string();
        let tls_url = url.starts_with("ldaps://");
        if !tls_url && !url.starts_with("ldap://") {
            return Err(("url", format!("`{url}`: give an ldap:// or ldaps:// URL")));
        }
        let starttls = !tls_url && self.starttls.unwrap_or(true);
        if tls_url && self.starttls == Some(true) {
            return Err(("starttls", "ldaps:// is TLS already".into()));
        }
        let locate = match (&self.bind_dn, &self.search_base) {
            (Some(t), None) if t.contains("{user}") => Locate::Template(t.clone()),
            (Some(_), None) => return Err(("bind_dn", "must contain {user}".into())),
            (None, Some(base)) => match (&self.service_dn, &self.service_password) {
                (Some(dn), Some(pw)) if !pw.is_empty() => Locate::Search {
                    base: base.clone(),
                    service_dn: dn.clone(),
                    service_password: pw.clone(),
                },
                _ => {
                    return Err((
                        "service_dn",
                        "a search needs service_dn and service_password".into(),
                    ));
                }
            },
            _ => return Err(("bind_dn", "give either bind_dn or search_base".into())),
        };
        if matches!(locate, Locate::Template(_)) {
            for (field, set) in [
                ("totp_attribute", self.totp_attribute.is_some()),
                (
                    "allowed_addresses_attribute",
                    self.allowed_addresses_attribute.is_some(),
                ),
                (
                    "denied_addresses_attribute",
                    self.denied_addresses_attribute.is_some(),
                ),
            ] {
                if set {
                    return Err((
                        field,
                        "needs search_base and a service account (a user may not be able to \
                         read it, and a code must be known before the bind)"
                            .into(),
                    ));
                }
            }
        }
        let user_filter = self
            .user_filter
            .clone()
            .unwrap_or_else(|| "(objectClass=*)".into());
        if !(user_filter.starts_with('(') && user_filter.ends_with(')')) {
            return Err(("user_filter", "a filter in parentheses".into()));
        }
        let group_filter = self
            .group_filter
            .clone()
            .unwrap_or_else(|| "(&(objectClass=groupOfNames)(member={dn}))".into());
        let mut groups = Vec::new();
        for (name, list) in &self.groups {
            groups.push((name.clone(), permissions(list).map_err(|m| ("groups", m))?));
        }
        let base_permissions = match &self.permissions {
            Some(p) => permissions(p).map_err(|m| ("permissions", m))?,
            None => Permissions::READ_ONLY,
        };
        if let Some(h) = &self.home {
            if !h.starts_with('/') {
                return Err(("home", "an absolute path, e.g. /srv/ftp/{user}".into()));
            }
        }
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(5000));
        if timeout.is_zero() {
            return Err(("timeout_ms", "must be above 0".into()));
        }
        let pool_size = self.pool_size.unwrap_or(4);
        if pool_size == 0 {
            return Err(("pool_size", "must be above 0".into()));
        }
        Ok(LdapSettings {
            url,
            starttls,
            ca: self.ca.clone(),
            locate,
            user_attribute: self.user_attribute.clone().unwrap_or_else(|| "uid".into()),
            user_filter,
            group_base: self.group_base.clone(),
            group_filter,
            groups,
            permissions: base_permissions,
            home_attribute: self.home_attribute.clone(),
            home: self.home.clone(),
            allowed_attribute: self.allowed_addresses_attribute.clone(),
            denied_attribute: self.denied_addresses_attribute.clone(),
            totp_attribute: self.totp_attribute.clone(),
            pool_size,
            timeout,
            cache: Duration::from_secs(self.cache_secs.unwrap_or(0)),
            hosts: self
                .hosts
                .iter()
                .flatten()
                .map(|h| crate::config::normalize_host(h))
                .collect(),
        })
    }
}

/// A name as a filter value (RFC 4515): `*`, `(`, `)`, `\` and NUL escaped.
pub fn filter_value(name: &str) -> String {
    ldap3::ldap_escape(name).into_owned()
}

/// A name as an RDN value (RFC 4514): `,+"\<>;=` and NUL escaped, and a leading space or `#`
/// or a trailing space.
pub fn dn_value(name: &str) -> String {
    ldap3::dn_escape(name).into_owned()
}

/// The directory, with its connections.
pub struct Ldap {
    settings: LdapSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    idle: Mutex<Vec<ldap3::Ldap>>,
    open: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Ldap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ldap")
            .field("url", &self.settings.url)
            .finish()
    }
}

/// Why one exchange with the directory failed.
enum Failure {
    /// The directory cannot be reached or did not answer: 421.
    Down(String),
    /// It answered, but not as expected.
    Odd(String),
}

impl From<ldap3::LdapError> for Failure {
    fn from(e: ldap3::LdapError) -> Failure {
        match e {
            // The directory answered, with an error code: not an outage (the connection stays).
            ldap3::LdapError::LdapResult { result } => Failure::Odd(result.to_string()),
            other => Failure::Down(other.to_string()),
        }
    }
}

impl Ldap {
    pub fn new(settings: LdapSettings) -> Result<Ldap, String> {
        let tls = if settings.url.starts_with("ldaps://") || settings.starttls {
            Some(crate::tls::client_config(settings.ca.as_deref())?)
        } else {
            None
        };
        let open = tokio::sync::Semaphore::new(settings.pool_size);
        Ok(Ldap {
            settings,
            tls,
            idle: Mutex::new(Vec::new()),
            open,
        })
    }

    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    async fn connect(&self) -> Result<ldap3::Ldap, Failure> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_starttls(self.settings.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.settings.url)
            .await
            .map_err(|e| Failure::Down(format!("{}: {e}", self.settings.url)))?;
        tokio::spawn(async move {
            // Ends when the connection closes (the directory went away, or no handle is left).
            let _ = conn.drive().await;
        });
        Ok(ldap)
    }

    /// What the directory says of this login.
    pub async fn ask(&self, r: &Request<'_>) -> Answer {
        if r.password.is_empty() {
            return Answer::Refused(Rejection::EmptyPassword);
        }
        let Ok(password) = std::str::from_utf8(r.password) else {
            return Answer::Refused(Rejection::WrongPassword);
        };
        // At most pool_size exchanges at once; a connection kept from an earlier one is tried
        // first, and if the directory dropped it (a restart), one new connection is made.
        let Ok(_permit) = tokio::time::timeout(self.settings.timeout, self.open.acquire()).await
        else {
            return Answer::Unavailable("every LDAP connection stayed busy".into());
        };
        let pooled = self.idle.lock().ok().and_then(|mut v| v.pop());
        let fresh = pooled.is_none();
        let mut conn = match pooled {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(Failure::Down(e) | Failure::Odd(e)) => return Answer::Unavailable(e),
            },
        };
        let mut result = self.exchange_within(&mut conn, r, password).await;
        if matches!(result, Err(Failure::Down(_))) && !fresh {
            drop(conn);
            conn = match self.connect().await {
                Ok(c) => c,
                Err(Failure::Down(e) | Failure::Odd(e)) => return Answer::Unavailable(e),
            };
            result = self.exchange_within(&mut conn, r, password).await;
        }
        match result {
            Ok(answer) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn);
                }
                answer
            }
            Err(Failure::Down(e)) => Answer::Unavailable(format!("LDAP: {e}")),
            Err(Failure::Odd(e)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn);
                }
                Answer::Unavailable(format!("LDAP: {e}"))
            }
        }
    }

    /// [`Ldap::exchange`] with one deadline for all of it (binds, searches), not one per
    /// operation: a login never waits on the directory longer than `timeout_ms`.
    async fn exchange_within(
        &self,
        conn: &mut ldap3::Ldap,
        r: &Request<'_>,
        password: &str,
    ) -> Result<Answer, Failure> {
        tokio::time::timeout(self.settings.timeout, self.exchange(conn, r, password))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Down(format!(
                    "no answer within {} ms",
                    self.settings.timeout.as_millis()
                )))
            })
    }

    /// One login on one connection: find the DN, bind as the user, read the entry and groups.
    async fn exchange(
        &self,
        conn: &mut ldap3::Ldap,
        r: &Request<'_>,
        password: &str,
    ) -> Result<Answer, Failure> {
        let s = &self.settings;
        let t = s.timeout;
        let attrs = self.attributes();
        let user_match = format!(
            "(&{}({}={}))",
            s.user_filter,
            s.user_attribute,
            filter_value(r.user)
        );
        // In search mode, the entry as the service account reads it: the attributes a directory
        // may hide from users themselves (the code secret, the rules) are taken from it.
        let mut service_entry = None;
        let dn = match &s.locate {
            Locate::Template(template) => template.replace("{user}", &dn_value(r.user)),
            Locate::Search {
                base,
                service_dn,
                service_password,
            } => {
                let bound = conn
                    .with_timeout(t)
                    .simple_bind(service_dn, service_password)
                    .await?;
                if bound.rc != 0 {
                    return Err(Failure::Odd(format!(
                        "the service account's bind failed: {bound}"
                    )));
                }
                let found = self
                    .search(conn, base, Scope::Subtree, &user_match, &attrs)
                    .await?;
                if found.len() > 1 {
                    return Err(Failure::Odd(format!(
                        "{} entries match {user_match}",
                        found.len()
                    )));
                }
                let Some(one) = found.into_iter().next() else {
                    return Ok(Answer::Unknown);
                };
                let dn = one.dn.clone();
                service_entry = Some(one);
                dn
            }
        };
        // A user with a one-time code binds with the password before it (the code is Wharf's
        // to check); one without a code typed is refused before any bind.
        let secret = match &service_entry {
            Some(e) => self.totp_of(e)?,
            None => None,
        };
        let password = match (&secret, super::totp::split_code(password.as_bytes())) {
            (None, _) => password,
            (Some(_), Some((before, _))) => std::str::from_utf8(before).unwrap_or(password),
            (Some(_), None) => return Ok(Answer::Refused(Rejection::MissingCode)),
        };
        let bound = conn.with_timeout(t).simple_bind(&dn, password).await?;
        match bound.rc {
            0 => {}
            // invalidCredentials: a wrong password, or (a DN template) no such user.
            49 => return Ok(Answer::Refused(Rejection::WrongPassword)),
            // insufficientAccessRights, unwillingToPerform: a locked or disabled account.
            50 | 53 => return Ok(Answer::Refused(Rejection::Disabled)),
            _ => return Err(Failure::Odd(format!("the user's bind: {bound}"))),
        }
        // With a DN template, the user's own entry as the user reads it (it must match the
        // filter too); found by the service account, that entry.
        let entry = match service_entry {
            Some(e) => e,
            None => {
                let own = self
                    .search(conn, &dn, Scope::Base, &s.user_filter, &attrs)
                    .await?;
                let Some(e) = own.into_iter().next() else {
                    return Ok(Answer::Refused(Rejection::Disabled));
                };
                e
            }
        };
        let group_base = s.group_base.clone().unwrap_or_else(|| match &s.locate {
            // Beside the users' branch: ou=people,dc=x → dc=x (groups in ou=groups,dc=x).
            Locate::Search { base, .. } => {
                let up = parent(base);
                if up.is_empty() { base.clone() } else { up }
            }
            Locate::Template(_) => parent(&parent(&dn)),
        });
        let mut permissions = s.permissions;
        if !s.groups.is_empty() {
            // Groups are read as the service account when there is one (users may not read
            // them in every directory), else as the user.
            if let Locate::Search {
                service_dn,
                service_password,
                ..
            } = &s.locate
            {
                let bound = conn
                    .with_timeout(t)
                    .simple_bind(service_dn, service_password)
                    .await?;
                if bound.rc != 0 {
                    return Err(Failure::Odd(format!(
                        "the service account's bind failed: {bound}"
                    )));
                }
            }
            let filter = s
                .group_filter
                .replace("{dn}", &filter_value(&dn))
                .replace("{user}", &filter_value(r.user));
            let groups = self
                .search(conn, &group_base, Scope::Subtree, &filter, &["cn"])
                .await?;
            let names: Vec<&str> = groups
                .iter()
                .flat_map(|g| g.attrs.get("cn").into_iter().flatten())
                .map(String::as_str)
                .collect();
            let mut any = false;
            for (group, p) in &s.groups {
                if names.iter().any(|n| n.eq_ignore_ascii_case(group)) {
                    any = true;
                    permissions = union(permissions, *p);
                }
            }
            if !any {
                return Ok(Answer::Refused(Rejection::Disabled));
            }
        }
        self.found(r, &entry, permissions, secret)
    }

    /// The code secret an entry holds, if `totp_attribute` names one; one that cannot be read
    /// refuses the login rather than dropping the second factor.
    fn totp_of(&self, entry: &SearchEntry) -> Result<Option<TotpSecret>, Failure> {
        let Some(attr) = &self.settings.totp_attribute else {
            return Ok(None);
        };
        match entry.attrs.get(attr).and_then(|v| v.first()) {
            None => Ok(None),
            Some(t) => TotpSecret::parse(t)
                .map(Some)
                .map_err(|e| Failure::Odd(format!("{}: {attr}: {e}", entry.dn))),
        }
    }

    fn attributes(&self) -> Vec<&str> {
        let s = &self.settings;
        let mut attrs = vec![s.user_attribute.as_str()];
        for a in [
            &s.home_attribute,
            &s.allowed_attribute,
            &s.denied_attribute,
            &s.totp_attribute,
        ]
        .into_iter()
        .flatten()
        {
            attrs.push(a.as_str());
        }
        attrs
    }

    async fn search(
        &self,
        conn: &mut ldap3::Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, Failure> {
        let (entries, result) = conn
            .with_timeout(self.settings.timeout)
            .search(base, scope, filter, attrs.to_vec())
            .await?
            .non_error()
            .or_else(|e| match e {
                // No such object: nothing found.
                ldap3::LdapError::LdapResult { result } if result.rc == 32 => {
                    Ok((Vec::new(), result))
                }
                other => Err(other),
            })?;
        let _ = result;
        // The crate panics on an entry it cannot parse: that is a broken answer, not a crash.
        entries
            .into_iter()
            .map(|e| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(e)))
                    .map_err(|_| Failure::Odd("an entry the client cannot read".into()))
            })
            .collect()
    }

    fn found(
        &self,
        r: &Request<'_>,
        entry: &SearchEntry,
        permissions: Permissions,
        totp: Option<TotpSecret>,
    ) -> Result<Answer, Failure> {
        let s = &self.settings;
        let first = |attr: &Option<String>| -> Option<String> {
            attr.as_ref()
                .and_then(|a| entry.attrs.get(a))
                .and_then(|v| v.first().cloned())
        };
        let all = |attr: &Option<String>| -> Option<String> {
            attr.as_ref()
                .and_then(|a| entry.attrs.get(a))
                .map(|v| v.join(","))
        };
        let home = match (first(&s.home_attribute), &s.home) {
            (Some(h), _) => PathBuf::from(h),
            (None, Some(template)) => {
                // The name becomes one path component, never more.
                if r.user.is_empty()
                    || r.user == "."
                    || r.user == ".."
                    || r.user.contains(['/', '\0'])
                {
                    return Ok(Answer::Refused(Rejection::Disabled));
                }
                PathBuf::from(template.replace("{user}", r.user))
            }
            (None, None) => r.root.to_path_buf(),
        };
        let rules = AddressRules::parse_text(
            all(&s.allowed_attribute).as_deref(),
            all(&s.denied_attribute).as_deref(),
        )
        .map_err(|e| Failure::Odd(format!("{}: {e}", entry.dn)))?;
        // The name as the directory spells it (`ALICE` binds as `alice`): one name for the
        // session limits, the used codes and the logs.
        let name = entry
            .attrs
            .get(&s.user_attribute)
            .and_then(|v| v.iter().find(|n| n.eq_ignore_ascii_case(r.user.trim())))
            .cloned()
            .unwrap_or_else(|| r.user.to_string());
        Ok(Answer::Account(Box::new(Found {
            account: Account {
                name,
                home,
                permissions,
                anonymous: false,
                limits: r.defaults,
            },
            rules,
            totp,
            host: None,
        })))
    }
}

fn union(a: Permissions, b: Permissions) -> Permissions {
    Permissions {
        read: a.read || b.read,
        write: a.write || b.write,
        delete: a.delete || b.delete,
        mkdir: a.mkdir || b.mkdir,
        rename: a.rename || b.rename,
    }
}

/// The DN one level up (`uid=a,ou=people,dc=x` → `ou=people,dc=x`); escaped commas stay.
fn parent(dn: &str) -> String {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return dn[i + 1..].to_string(),
            _ => i += 1,
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_a_filter_or_a_dn() {
        assert_eq!(filter_value("alice"), "alice");
        assert_eq!(filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(filter_value("a\\b\0"), "a\\5cb\\00");
        assert_eq!(dn_value("alice"), "alice");
        assert_eq!(dn_value("a,ou=admins"), "a\\2cou\\3dadmins");
        assert_eq!(dn_value(" x "), "\\20x\\20");
        assert_eq!(dn_value("#x"), "\\23x");
        assert_eq!(parent("uid=a\\,b,ou=people,dc=x"), "ou=people,dc=x");
        assert_eq!(parent(&parent("uid=a,ou=people,dc=x")), "dc=x");
    }

    #[test]
    fn sections_are_checked() {
        let s = |t: &str| toml::from_str::<LdapSection>(t).unwrap().check();
        let ok = s(r#"url = "ldap://127.0.0.1:389"
bind_dn = "uid={user},ou=people,dc=x"
[groups]
writers = ["read", "write"]"#)
        .unwrap();
        assert!(ok.starttls, "StartTLS unless told otherwise");
        assert_eq!(ok.groups.len(), 1);
        assert_eq!(ok.user_attribute, "uid");
        assert!(
            !s("url = \"ldaps://h\"\nbind_dn = \"uid={user}\"")
                .unwrap()
                .starttls
        );
        assert_eq!(
            s("url = \"http://h\"\nbind_dn = \"uid={user}\"")
                .unwrap_err()
                .0,
            "url"
        );
        assert_eq!(
            s("url = \"ldap://h\"\nbind_dn = \"uid=x\"").unwrap_err().0,
            "bind_dn"
        );
        assert_eq!(s("url = \"ldap://h\"").unwrap_err().0, "bind_dn");
        assert_eq!(
            s("url = \"ldap://h\"\nsearch_base = \"dc=x\"")
                .unwrap_err()
                .0,
            "service_dn"
        );
        assert_eq!(
            s("url = \"ldaps://h\"\nstarttls = true\nbind_dn = \"uid={user}\"")
                .unwrap_err()
                .0,
            "starttls"
        );
        assert_eq!(
            s("url = \"ldap://h\"\nbind_dn = \"uid={user}\"\n[groups]\nx = [\"fly\"]")
                .unwrap_err()
                .0,
            "groups"
        );
        assert_eq!(
            s("url = \"ldap://h\"\nbind_dn = \"uid={user}\"\nhome = \"srv/{user}\"")
                .unwrap_err()
                .0,
            "home"
        );
    }
}
