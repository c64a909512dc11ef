//! Authentication: the [`Authenticator`] trait and the built-in [`UserStore`] (users from the
//! command line and the config file, and anonymous).

use std::path::PathBuf;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use serde::Deserialize;

/// What a logged-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub mkdir: bool,
    pub rename: bool,
}

impl Permissions {
    pub const READ_ONLY: Permissions = Permissions {
        read: true,
        write: false,
        delete: false,
        mkdir: false,
        rename: false,
    };
    pub const ALL: Permissions = Permissions {
        read: true,
        write: true,
        delete: true,
        mkdir: true,
        rename: true,
    };

    /// Read-only, or everything when `write` is set (the `-w` flag).
    pub fn from_write_flag(write: bool) -> Permissions {
        if write {
            Permissions::ALL
        } else {
            Permissions::READ_ONLY
        }
    }
}

/// A logged-in user: its name, its jail and its rights.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
    pub permissions: Permissions,
    pub anonymous: bool,
}

/// Checks credentials. Blocking (hash verification is CPU-bound): sessions call it on the
/// blocking pool. An implementation must take about the same time for unknown users as for known
/// ones, and must never log the password.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, user: &[u8], password: &[u8]) -> Option<Account>;
}

/// How a user's password is checked.
#[derive(Debug, Clone)]
pub enum Secret {
    /// A PHC/MCF hash string: `$argon2id$…`, `$2b$…`/`$2y$…` (bcrypt), `$6$…`/`$5$…` (SHA-crypt).
    Hash(String),
}

/// A configured user.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub name: String,
    pub secret: Secret,
    pub home: PathBuf,
    pub permissions: Permissions,
}

/// Anonymous access, when enabled.
#[derive(Debug, Clone)]
pub struct AnonymousAccess {
    pub home: PathBuf,
    pub permissions: Permissions,
}

/// The built-in user store.
#[derive(Debug)]
pub struct UserStore {
    users: Vec<UserEntry>,
    anonymous: Option<AnonymousAccess>,
    /// Verified against when the user is unknown, so that unknown and known users cost the same.
    dummy: Option<String>,
}

/// Which hash scheme a stored hash uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashScheme {
    Argon2,
    Bcrypt,
    ShaCrypt,
}

impl HashScheme {
    pub fn of(hash: &str) -> Option<HashScheme> {
        if hash.starts_with("$argon2") {
            Some(HashScheme::Argon2)
        } else if ["$2a$", "$2b$", "$2x$", "$2y$"]
            .iter()
            .any(|p| hash.starts_with(p))
        {
            Some(HashScheme::Bcrypt)
        } else if hash.starts_with("$6$") || hash.starts_with("$5$") {
            Some(HashScheme::ShaCrypt)
        } else {
            None
        }
    }
}

/// Checks `password` against a stored hash. Unknown schemes and malformed hashes never match.
pub fn verify_hash(hash: &str, password: &[u8]) -> bool {
    match HashScheme::of(hash) {
        Some(HashScheme::Argon2) => Argon2::default().verify_password(password, hash).is_ok(),
        Some(HashScheme::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        Some(HashScheme::ShaCrypt) => sha_crypt::ShaCrypt::default()
            .verify_password(password, hash)
            .is_ok(),
        None => false,
    }
}

/// Makes a new Argon2id hash (default parameters, random salt), as `wharf passwd` prints.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

impl UserStore {
    pub fn new(users: Vec<UserEntry>, anonymous: Option<AnonymousAccess>) -> UserStore {
        // An unknown user's password is checked against a real user's hash (same scheme, same
        // cost), so that both take the same time.
        let dummy = users.first().map(|u| match &u.secret {
            Secret::Hash(h) => h.clone(),
        });
        UserStore {
            users,
            anonymous,
            dummy,
        }
    }

    pub fn has_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }
}

/// Whether `user` is one of the anonymous login names.
pub fn is_anonymous_name(user: &[u8]) -> bool {
    user.eq_ignore_ascii_case(b"anonymous") || user.eq_ignore_ascii_case(b"ftp")
}

impl Authenticator for UserStore {
    fn authenticate(&self, user: &[u8], password: &[u8]) -> Option<Account> {
        if is_anonymous_name(user) {
            if let Some(anon) = &self.anonymous {
                return Some(Account {
                    name: "anonymous".into(),
                    home: anon.home.clone(),
                    permissions: anon.permissions,
                    anonymous: true,
                });
            }
        }
        match self.users.iter().find(|u| u.name.as_bytes() == user) {
            Some(entry) => {
                let Secret::Hash(hash) = &entry.secret;
                verify_hash(hash, password).then(|| Account {
                    name: entry.name.clone(),
                    home: entry.home.clone(),
                    permissions: entry.permissions,
                    anonymous: false,
                })
            }
            None => {
                if let Some(dummy) = &self.dummy {
                    let _ = verify_hash(dummy, password);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, hash: String) -> UserEntry {
        UserEntry {
            name: name.into(),
            secret: Secret::Hash(hash),
            home: "/tmp".into(),
            permissions: Permissions::READ_ONLY,
        }
    }

    #[test]
    fn argon2_round_trip() {
        let h = hash_password(b"s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_hash(&h, b"s3cret"));
        assert!(!verify_hash(&h, b"wrong"));
    }

    #[test]
    fn imported_hashes() {
        let b = bcrypt::hash("pw", 4).unwrap();
        assert!(verify_hash(&b, b"pw"));
        assert!(!verify_hash(&b, b"px"));
        // `openssl passwd -6 -salt saltsalt pw`
        let six = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
        assert!(verify_hash(six, b"pw"));
        assert!(!verify_hash(six, b"px"));
        assert!(!verify_hash("plaintext", b"plaintext"));
        assert!(!verify_hash("$argon2id$garbage", b""));
    }

    #[test]
    fn store_known_unknown_anonymous() {
        let store = UserStore::new(
            vec![user("alice", hash_password(b"pw").unwrap())],
            Some(AnonymousAccess {
                home: "/srv".into(),
                permissions: Permissions::READ_ONLY,
            }),
        );
        assert_eq!(store.authenticate(b"alice", b"pw").unwrap().name, "alice");
        assert!(store.authenticate(b"alice", b"nope").is_none());
        assert!(store.authenticate(b"bob", b"pw").is_none());
        assert!(
            store
                .authenticate(b"ftp", b"me@example.net")
                .unwrap()
                .anonymous
        );
        let closed = UserStore::new(vec![], None);
        assert!(closed.authenticate(b"anonymous", b"x").is_none());
    }
}
