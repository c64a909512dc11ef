//! Accepted logins of a remote source (the hook, LDAP), remembered for a while.
//!
//! An entry is keyed by an HMAC of the user name, under a secret made when the process starts,
//! and holds an HMAC of the name, password, host, client address and TLS state: no password is
//! kept, and a different password never matches (nor a login from another address or without
//! TLS, which the source might have refused). One entry per user: a login with another password asks the source,
//! and its answer replaces the entry (accepted) or drops it (refused, unknown).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Found;

/// What a cached answer is keyed by.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    pub user: &'a str,
    pub password: &'a [u8],
    pub host: Option<&'a str>,
    pub ip: std::net::IpAddr,
    pub tls: bool,
}

/// Entries at most; beyond, new ones are not remembered until old ones expire.
const MAX_ENTRIES: usize = 100_000;

pub struct AnswerCache {
    ttl: Duration,
    key: ring::hmac::Key,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("ttl", &self.ttl)
            .finish()
    }
}

struct Entry {
    proof: [u8; 32],
    found: Found,
    until: Instant,
}

impl AnswerCache {
    /// A cache keeping answers for `ttl` (zero: none kept).
    pub fn new(ttl: Duration) -> Result<AnswerCache, String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
        Ok(AnswerCache {
            ttl,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        for p in parts {
            // Each part with its length: ("ab","c") and ("a","bc") differ.
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn keys(&self, l: &Login<'_>) -> ([u8; 32], [u8; 32]) {
        let host = l.host.unwrap_or("").as_bytes();
        let ip = l.ip.to_canonical().to_string();
        let tls: &[u8] = if l.tls { b"tls" } else { b"plain" };
        (
            self.mac(&[b"user", l.user.as_bytes()]),
            self.mac(&[
                b"login",
                l.user.as_bytes(),
                l.password,
                host,
                ip.as_bytes(),
                tls,
            ]),
        )
    }

    /// The remembered answer for this login, if the same password was accepted within the
    /// time.
    pub fn get(&self, login: &Login<'_>) -> Option<Found> {
        if self.ttl.is_zero() {
            return None;
        }
        let (id, proof) = self.keys(login);
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&id)?;
        // Every byte compared, whatever differs first.
        let same = e.proof.iter().zip(proof).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
        (same && e.until > Instant::now()).then(|| e.found.clone())
    }

    /// Remembers an accepted login (replacing the user's entry).
    pub fn put(&self, login: &Login<'_>, found: &Found) {
        if self.ttl.is_zero() {
            return;
        }
        let (id, proof) = self.keys(login);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let now = Instant::now();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            id,
            Entry {
                proof,
                found: found.clone(),
                until: now + self.ttl,
            },
        );
    }

    /// Forgets the user (its source refused it or no longer knows it).
    pub fn forget(&self, user: &str) {
        let id = self.mac(&[b"user", user.as_bytes()]);
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Account, Permissions, UserLimits};

    fn at<'a>(user: &'a str, password: &'a [u8], host: Option<&'a str>) -> Login<'a> {
        Login {
            user,
            password,
            host,
            ip: "127.0.0.1".parse().unwrap(),
            tls: false,
        }
    }

    fn found() -> Found {
        Found {
            account: Account {
                name: "alice".into(),
                home: "/srv".into(),
                permissions: Permissions::READ_ONLY,
                anonymous: false,
                limits: UserLimits::default(),
            },
            rules: Default::default(),
            totp: None,
            host: None,
        }
    }

    #[test]
    fn only_the_same_password_hits_and_a_refusal_forgets() {
        let c = AnswerCache::new(Duration::from_secs(60)).unwrap();
        c.put(&at("alice", b"old", None), &found());
        assert!(c.get(&at("alice", b"old", None)).is_some());
        assert!(c.get(&at("alice", b"new", None)).is_none());
        assert!(c.get(&at("alice", b"old", Some("ftp.b.example"))).is_none());
        let mut elsewhere = at("alice", b"old", None);
        elsewhere.ip = "127.0.0.2".parse().unwrap();
        assert!(c.get(&elsewhere).is_none(), "another address");
        let mut tls = at("alice", b"old", None);
        tls.tls = true;
        assert!(c.get(&tls).is_none(), "TLS or not");
        assert!(c.get(&at("bob", b"old", None)).is_none());
        // The new password accepted: the old one no longer hits.
        c.put(&at("alice", b"new", None), &found());
        assert!(c.get(&at("alice", b"old", None)).is_none());
        assert!(c.get(&at("alice", b"new", None)).is_some());
        c.forget("alice");
        assert!(c.get(&at("alice", b"new", None)).is_none());
        assert!(c.is_empty());
        // Length-prefixed parts: a name/password split elsewhere is another key.
        c.put(&at("ali", b"cenew", None), &found());
        assert!(c.get(&at("alice", b"new", None)).is_none());
    }

    #[test]
    fn zero_time_keeps_nothing_and_entries_expire() {
        let none = AnswerCache::new(Duration::ZERO).unwrap();
        none.put(&at("alice", b"pw", None), &found());
        assert!(none.get(&at("alice", b"pw", None)).is_none());
        let short = AnswerCache::new(Duration::from_millis(30)).unwrap();
        short.put(&at("alice", b"pw", None), &found());
        assert!(short.get(&at("alice", b"pw", None)).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(short.get(&at("alice", b"pw", None)).is_none());
    }
}
