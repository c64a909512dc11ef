//! Authentication: the [`Authenticator`] trait, what a login offers and gets, and password
//! hashes. The built-in authenticator over every source of users is
//! [`crate::identity::UserStore`].

use std::path::PathBuf;
use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
pub use wharf_proto::server::Permissions;

use crate::conn::ConnInfo;
use crate::storage::BoxFuture;

/// Limits of one user, beyond the server's: `None` is no limit. Rates are bytes per second,
/// shared by all of the user's sessions; quota and file size are enforced while an upload runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Sessions logged in as this user at once.
    pub max_sessions: Option<u32>,
    pub download_rate: Option<u64>,
    pub upload_rate: Option<u64>,
    /// Bytes the home may hold.
    pub quota_bytes: Option<u64>,
    /// Files the home may hold.
    pub quota_files: Option<u64>,
    /// The largest file an upload may make.
    pub max_file_size: Option<u64>,
}

impl UserLimits {
    /// These limits, with `defaults` for those left open.
    pub fn or(self, defaults: UserLimits) -> UserLimits {
        UserLimits {
            max_sessions: self.max_sessions.or(defaults.max_sessions),
            download_rate: self.download_rate.or(defaults.download_rate),
            upload_rate: self.upload_rate.or(defaults.upload_rate),
            quota_bytes: self.quota_bytes.or(defaults.quota_bytes),
            quota_files: self.quota_files.or(defaults.quota_files),
            max_file_size: self.max_file_size.or(defaults.max_file_size),
        }
    }
}

/// A logged-in user: its name, its home (as the storage provider understands it: a directory
/// for the local file system), its rights and its limits.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
    pub permissions: Permissions,
    pub anonymous: bool,
    pub limits: UserLimits,
}

/// What a client offers to log in.
#[derive(Debug)]
pub struct Credentials {
    pub user: Vec<u8>,
    pub password: Vec<u8>,
    /// Where the connection comes from (the real client behind a proxy).
    pub conn: ConnInfo,
    /// The control connection is TLS.
    pub tls: bool,
    /// The host name the client gave with HOST (or the TLS name that chose a host), if any.
    pub host: Option<String>,
    /// The virtual host (`[[host]]`, by its own name) the login is for; `None`: the default.
    pub vhost: Option<String>,
    /// The server's fair password queue: a hash is checked only with a slot of it (a remote
    /// source is waited on without one). `None`: no queue (tests, embedders).
    pub queue: Option<Arc<crate::guard::Guard>>,
}

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown user, wrong password, or an account that may not log in (which, the client is
    /// never told; the log is).
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// The user database cannot answer: the client gets 421, never a login.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The client's address was banned while its login waited for the password queue.
    #[error("address refused")]
    AddressRefused,
}

/// Why a login was rejected: for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    UnknownUser,
    WrongPassword,
    /// The account exists but is disabled.
    Disabled,
    /// No password: refused before any source is asked (an empty password is an
    /// unauthenticated bind to many directories).
    EmptyPassword,
    /// The client's address is not allowed: the rule, as the audit line names it. Checked
    /// before the password (not counted towards a ban).
    AddressRule(String),
    /// The same, from a rule that came with a remote source's answer, after it checked the
    /// password: counted like a wrong password.
    AddressRuleAfterPassword(String),
    /// The user has a one-time code and none followed the password.
    MissingCode,
    WrongCode,
    /// The code was used already, from another address.
    CodeReused,
    /// The source's account is not one of the chosen virtual host's.
    OtherHost,
}

impl Rejection {
    /// Whether this counts as a failed login towards a ban: a refusal by an address rule does
    /// not (no password was tried).
    pub fn counts_as_failure(&self) -> bool {
        !matches!(self, Rejection::AddressRule(_))
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::UnknownUser => f.write_str("unknown user"),
            Rejection::WrongPassword => f.write_str("wrong password"),
            Rejection::Disabled => f.write_str("account disabled"),
            Rejection::EmptyPassword => f.write_str("empty password"),
            Rejection::AddressRule(rule) | Rejection::AddressRuleAfterPassword(rule) => {
                write!(f, "address rule: {rule}")
            }
            Rejection::MissingCode => f.write_str("no one-time code after the password"),
            Rejection::WrongCode => f.write_str("wrong one-time code"),
            Rejection::CodeReused => f.write_str("one-time code already used from another address"),
            Rejection::OtherHost => f.write_str("the account is not this host's"),
        }
    }
}

/// Checks credentials. An implementation must take about the same time for unknown users as for
/// known ones, must never log the password, and runs costly work (hashing) off the async
/// threads.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, credentials: Credentials) -> BoxFuture<'_, Result<Account, AuthError>>;

    /// Whether the logins of one address must go one at a time (a remote source is asked, and
    /// must see no more attempts than bans allow).
    fn one_login_per_address(&self) -> bool {
        false
    }
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
    pub limits: UserLimits,
    /// Addresses this user may (not) log in from.
    pub rules: crate::identity::rules::AddressRules,
    /// The one-time code secret, when the user has a second factor.
    pub totp: Option<crate::identity::totp::TotpSecret>,
    /// The virtual host the user belongs to (its own name); `None`: the default host.
    pub host: Option<String>,
}

/// Anonymous access, when enabled.
#[derive(Debug, Clone)]
pub struct AnonymousAccess {
    pub home: PathBuf,
    pub permissions: Permissions,
    pub limits: UserLimits,
}

/// Users in a database, and what they get when their row leaves it open.
#[derive(Debug, Clone)]
pub struct DbUsers {
    pub db: Arc<crate::userdb::UserDb>,
    /// The home of users without one of their own (the server's root).
    pub home: PathBuf,
    /// The server's per-user limits, for the limits a row leaves empty.
    pub defaults: UserLimits,
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

/// Whether a stored hash is well formed in full — scheme, parameters, salt and the hash itself —
/// without computing it: a truncated or mangled hash would otherwise be accepted at start-up and
/// match no password ever. The error says what is wrong.
pub fn check_hash(hash: &str) -> Result<(), String> {
    const CRYPT64: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let crypt64 = |s: &str| s.bytes().all(|b| CRYPT64.contains(&b));
    match HashScheme::of(hash) {
        None => Err("not a supported hash ($argon2id$ from `wharf passwd`, bcrypt $2b$/$2y$, SHA-crypt $6$/$5$)".into()),
        Some(HashScheme::Argon2) => {
            let parsed = argon2::PasswordHash::new(hash).map_err(|e| format!("Argon2 hash: {e}"))?;
            argon2::Algorithm::try_from(parsed.algorithm.as_str())
                .map_err(|e| format!("Argon2 hash: {e}"))?;
            argon2::Params::try_from(&parsed).map_err(|e| format!("Argon2 hash: {e}"))?;
            if parsed.salt.is_none() {
                return Err("Argon2 hash: no salt".into());
            }
            match &parsed.hash {
                Some(h) if h.len() >= 16 => Ok(()),
                Some(_) => Err("Argon2 hash: the hash is too short (truncated?)".into()),
                None => Err("Argon2 hash: no hash after the salt (truncated?)".into()),
            }
        }
        Some(HashScheme::Bcrypt) => {
            // $2b$NN$ then 22 characters of salt and 31 of hash.
            let rest = hash.get(4..).unwrap_or_default();
            let (cost, body) = rest.split_once('$').unwrap_or(("", ""));
            let cost: u32 = cost
                .parse()
                .map_err(|_| "bcrypt hash: the cost is not a number".to_string())?;
            if !(4..=31).contains(&cost) {
                return Err(format!("bcrypt hash: cost {cost} is not within 4-31"));
            }
            if body.len() != 53 || !crypt64(body) {
                return Err(format!(
                    "bcrypt hash: expected 53 characters of salt and hash after the cost, found {} (truncated?)",
                    body.len()
                ));
            }
            Ok(())
        }
        Some(HashScheme::ShaCrypt) => {
            // $6$[rounds=N$]salt$hash: 86 characters of hash for SHA-512, 43 for SHA-256.
            let want = if hash.starts_with("$6$") { 86 } else { 43 };
            let mut fields: Vec<&str> = hash.get(3..).unwrap_or_default().split('$').collect();
            if let Some(rounds) = fields.first().and_then(|f| f.strip_prefix("rounds=")) {
                let n: u32 = rounds
                    .parse()
                    .map_err(|_| "SHA-crypt hash: rounds= is not a number".to_string())?;
                if !(1000..=999_999_999).contains(&n) {
                    return Err(format!("SHA-crypt hash: rounds={n} is not within 1000-999999999"));
                }
                fields.remove(0);
            }
            match fields.as_slice() {
                [salt, h] if !salt.is_empty() && salt.len() <= 16 && h.len() == want && crypt64(h) => {
                    Ok(())
                }
                [_, h] => Err(format!(
                    "SHA-crypt hash: expected {want} characters of hash, found {} (truncated?)",
                    h.len()
                )),
                _ => Err("SHA-crypt hash: expected $salt$hash after the scheme".into()),
            }
        }
    }
}

/// The longest password checked on the session's thread (see [`is_quick`]): SHA-crypt hashes
/// the password several times per round, so a long one costs many times the 1 ms.
pub(crate) const QUICK_PASSWORD: usize = 64;

/// Whether checking a password against `hash` is quick enough to do on the session's own
/// thread: SHA-crypt at up to its default 5000 rounds (about 1 ms). Handing it to the blocking
/// pool and back cost two thread wake-ups per login, which sequential logins waited for; Argon2
/// and bcrypt (tens of milliseconds) still go there, as does any check while another runs.
pub fn is_quick(hash: &str) -> bool {
    if HashScheme::of(hash) != Some(HashScheme::ShaCrypt) {
        return false;
    }
    match hash.get(3..).and_then(|rest| rest.strip_prefix("rounds=")) {
        None => true,
        Some(rest) => rest
            .split('$')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n <= 5000),
    }
}

/// Checks `password` against a stored hash. Unknown schemes and malformed hashes never match.
pub fn verify_hash(hash: &str, password: &[u8]) -> bool {
    match HashScheme::of(hash) {
        Some(HashScheme::Argon2) => argon2_verify(hash, password),
        Some(HashScheme::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
        Some(HashScheme::ShaCrypt) => sha_crypt::ShaCrypt::default()
            .verify_password(password, hash)
            .is_ok(),
        None => false,
    }
}

/// Argon2's working memory (19 MiB with the default parameters), kept for the next check:
/// allocated afresh each time, the allocator keeps what was freed, and a server's resident
/// memory grew by that much per login thread and never came back. At most [`POOLED`] buffers
/// are kept (as many as checks run at once); a check beyond them allocates and frees its own.
static ARGON2_MEMORY: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());
const POOLED: usize = 4;

/// Argon2 verification in memory from [`ARGON2_MEMORY`]; the same result as the argon2 crate's
/// `verify_password`.
fn argon2_verify(hash: &str, password: &[u8]) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let mut memory = ARGON2_MEMORY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
        .unwrap_or_default();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let expected = expected.as_bytes();
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt.as_ref(),
        &mut out,
        memory.get_mut(..blocks).unwrap_or_default(),
    );
    {
        let mut pool = ARGON2_MEMORY.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOLED {
            pool.push(memory);
        }
    }
    // Constant time: every byte compared.
    computed.is_ok()
        && out
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Makes a new Argon2id hash (default parameters, random salt), as `wharf passwd` prints.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    Argon2::default()
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Whether `user` is one of the anonymous login names.
pub fn is_anonymous_name(user: &[u8]) -> bool {
    user.eq_ignore_ascii_case(b"anonymous") || user.eq_ignore_ascii_case(b"ftp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let h = hash_password(b"s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_hash(&h, b"s3cret"));
        assert!(!verify_hash(&h, b"wrong"));
        // Pooled memory gives the crate's own answer, for other variants and parameters too.
        for (alg, m, t, p) in [
            (argon2::Algorithm::Argon2id, 64, 1, 1),
            (argon2::Algorithm::Argon2i, 256, 3, 2),
            (argon2::Algorithm::Argon2d, 128, 2, 4),
        ] {
            let params = argon2::Params::new(m, t, p, None).unwrap();
            let other = Argon2::new(alg, argon2::Version::V0x13, params)
                .hash_password(b"pw")
                .unwrap()
                .to_string();
            assert!(verify_hash(&other, b"pw"), "{other}");
            assert!(!verify_hash(&other, b"px"), "{other}");
            assert!(
                Argon2::default()
                    .verify_password(b"pw", other.as_str())
                    .is_ok()
            );
        }
        assert!(verify_hash(&h, b"s3cret"), "after smaller parameters");
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
        for good in [&hash_password(b"pw").unwrap(), &b, six] {
            assert_eq!(check_hash(good), Ok(()), "{good}");
        }
        let truncated = |h: &str| h.get(..h.len() - 5).unwrap().to_string();
        // Argon2's hash is base64 of any length from 16 bytes on, so only a cut that leaves
        // an impossible base64 length (41 characters) is certain to be caught: a cut of 5 is
        // sometimes a valid shorter hash.
        let argon2 = hash_password(b"pw").unwrap();
        for bad in [
            argon2.get(..argon2.len() - 2).unwrap().to_string(),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ".to_string(),
            "$argon2id$garbage".to_string(),
            truncated(&b),
            "$2b$99$".to_string() + &b[7..],
            truncated(six),
            "$6$saltsalt".to_string(),
            "$6$rounds=10$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/".to_string(),
            "plaintext".to_string(),
        ] {
            assert!(check_hash(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_default_sha_crypt_is_checked_on_the_session_thread() {
        let six = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";
        assert!(is_quick(six));
        assert!(is_quick("$5$rounds=5000$salt$x"));
        assert!(is_quick("$6$rounds=1000$salt$x"));
        assert!(!is_quick("$6$rounds=5001$salt$x"));
        assert!(!is_quick("$6$rounds=656000$salt$x"));
        assert!(!is_quick("$6$rounds=lots$salt$x"));
        assert!(!is_quick(&hash_password(b"pw").unwrap()));
        assert!(!is_quick(&bcrypt::hash("pw", 4).unwrap()));
        assert!(!is_quick("plaintext"));
    }
}
