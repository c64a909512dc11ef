//! The external auth hook (`[auth.external]`): a control panel's URL (a POST of JSON) or a
//! command (the same JSON on its stdin, no shell) that answers with the account, a refusal, or
//! "not one of mine". The contract is in `docs/AUTHENTICATION.md`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rules::AddressRules;
use super::totp::{TotpSecret, split_code};
use super::{Answer, Found, Request};
use crate::auth::{Account, Permissions, Rejection, UserLimits};

/// The largest answer read (a hook that sends more is broken).
const MAX_ANSWER: usize = 64 * 1024;

/// `[auth.external]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSection {
    /// `http://` or `https://` URL that is POSTed the login.
    pub url: Option<String>,
    /// A program and its arguments, given the login on stdin.
    pub command: Option<Vec<String>>,
    /// Milliseconds an answer may take (default 5000): then the login gets 421.
    pub timeout_ms: Option<u64>,
    /// Seconds an accepted login is remembered (default 0: every login asks). This is how long
    /// a password changed in the panel may still work here.
    pub cache_secs: Option<u64>,
    /// A PEM file of CAs for an https:// URL (default: the system's).
    pub ca: Option<PathBuf>,
}

/// Where the hook is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Url(String),
    Command(Vec<String>),
}

/// `[auth.external]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalSettings {
    pub target: Target,
    pub timeout: Duration,
    pub cache: Duration,
    pub ca: Option<PathBuf>,
}

impl ExternalSection {
    /// Checks the table; the error names the field.
    pub fn check(&self) -> Result<ExternalSettings, (&'static str, String)> {
        let target = match (&self.url, &self.command) {
            (Some(u), None) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(("url", format!("`{u}`: give an http:// or https:// URL")));
                }
                if u.split("://")
                    .nth(1)
                    .is_some_and(|r| r.split('/').next().is_some_and(|a| a.contains('@')))
                {
                    return Err(("url", "no credentials in the URL, please".into()));
                }
                Target::Url(u.clone())
            }
            (None, Some(c)) if c.first().is_some_and(|p| !p.is_empty()) => {
                Target::Command(c.clone())
            }
            (None, Some(_)) => return Err(("command", "give the program to run".into())),
            _ => return Err(("url", "give either `url` or `command`".into())),
        };
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(5000));
        if timeout.is_zero() {
            return Err(("timeout_ms", "must be above 0".into()));
        }
        if self.ca.is_some() && !matches!(&target, Target::Url(u) if u.starts_with("https://")) {
            return Err(("ca", "only for an https:// url".into()));
        }
        Ok(ExternalSettings {
            target,
            timeout,
            cache: Duration::from_secs(self.cache_secs.unwrap_or(0)),
            ca: self.ca.clone(),
        })
    }
}

/// The account part of a hook's answer (`status` = `ok`), also what LDAP maps to.
#[derive(Debug, Default, Deserialize)]
struct HookAnswer {
    status: String,
    /// The user's name as the panel spells it (`Alice` typed, `alice` known), if it differs.
    name: Option<String>,
    /// The virtual host the account belongs to: required to log in on a `[[host]]`.
    host: Option<String>,
    home: Option<String>,
    permissions: Option<Vec<String>>,
    max_sessions: Option<u32>,
    download_rate: Option<u64>,
    upload_rate: Option<u64>,
    quota_bytes: Option<u64>,
    quota_files: Option<u64>,
    max_file_size: Option<u64>,
    #[serde(default)]
    allowed_addresses: Vec<String>,
    #[serde(default)]
    denied_addresses: Vec<String>,
    #[serde(default)]
    disabled: bool,
    totp_secret: Option<String>,
}

/// The hook, ready: its HTTP client is made once and keeps its connections.
pub struct External {
    settings: ExternalSettings,
    http: Option<reqwest::Client>,
}

impl std::fmt::Debug for External {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("External")
            .field("target", &self.settings.target)
            .finish()
    }
}

impl External {
    pub fn new(settings: ExternalSettings) -> Result<External, String> {
        let http = match &settings.target {
            Target::Url(_) => Some(http_client(&settings)?),
            Target::Command(_) => None,
        };
        Ok(External { settings, http })
    }

    pub fn settings(&self) -> &ExternalSettings {
        &self.settings
    }

    /// What the hook says of this login. A refusal is a refusal; a timeout, an error status,
    /// a broken answer: [`Answer::Unavailable`] (421 and a logged error, never a login).
    pub async fn ask(&self, r: &Request<'_>) -> Answer {
        // A password that is not UTF-8 cannot go into JSON as it is (a lossy copy could match
        // another): refused, as LDAP refuses it.
        let Ok(password) = std::str::from_utf8(r.password) else {
            return Answer::Refused(Rejection::WrongPassword);
        };
        let mut body = serde_json::json!({
            "user": r.user,
            "password": password,
            "client": r.ip.to_canonical().to_string(),
            "host": r.host,
            "tls": r.tls,
        });
        if let Some((before, code)) = split_code(r.password) {
            body["password_before_code"] = String::from_utf8_lossy(before).into();
            body["code"] = code.into();
        }
        let json = body.to_string();
        let answer = tokio::time::timeout(self.settings.timeout, self.exchange(&json)).await;
        let text = match answer {
            Err(_) => {
                return Answer::Unavailable(format!(
                    "the auth hook did not answer within {} ms",
                    self.settings.timeout.as_millis()
                ));
            }
            Ok(Err(e)) => return Answer::Unavailable(format!("auth hook: {e}")),
            Ok(Ok(Reply::Unknown)) => return Answer::Unknown,
            Ok(Ok(Reply::Refused)) => return Answer::Refused(Rejection::WrongPassword),
            Ok(Ok(Reply::Json(t))) => t,
        };
        match serde_json::from_slice::<HookAnswer>(&text) {
            Ok(a) => account_of(r.user, a, r.defaults, r.root),
            Err(e) => Answer::Unavailable(format!(
                "auth hook: the answer is not the JSON expected: {e}"
            )),
        }
    }

    async fn exchange(&self, json: &str) -> Result<Reply, String> {
        match (&self.settings.target, &self.http) {
            (Target::Url(url), Some(http)) => {
                let mut resp = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(json.to_string())
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {}", chain(&e)))?;
                let status = resp.status().as_u16();
                match status {
                    // Not one of the panel's users, or refused (the body does not matter).
                    404 => return Ok(Reply::Unknown),
                    401 | 403 => return Ok(Reply::Refused),
                    200 => {}
                    s => return Err(format!("{url} answered HTTP {s}")),
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                    body.extend_from_slice(&chunk);
                    if body.len() > MAX_ANSWER {
                        return Err(format!("{url}: an answer over {MAX_ANSWER} bytes"));
                    }
                }
                Ok(Reply::Json(body))
            }
            (Target::Command(argv), _) => {
                let mut child = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::null())
                    // One that outlives the timeout is stopped with it.
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("cannot run `{}`: {e}", argv[0]))?;
                if let Some(mut stdin) = child.stdin.take() {
                    // A command that does not read it all is its own business.
                    let _ = stdin.write_all(json.as_bytes()).await;
                    let _ = stdin.write_all(b"\n").await;
                }
                let mut out = Vec::new();
                if let Some(stdout) = child.stdout.take() {
                    stdout
                        .take(MAX_ANSWER as u64 + 1)
                        .read_to_end(&mut out)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                let status = child.wait().await.map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err(format!("`{}` {status}", argv[0]));
                }
                if out.len() > MAX_ANSWER {
                    return Err(format!("`{}` printed over {MAX_ANSWER} bytes", argv[0]));
                }
                Ok(Reply::Json(out))
            }
            (Target::Url(_), None) => Err("no HTTP client".into()),
        }
    }
}

enum Reply {
    Unknown,
    Refused,
    Json(Vec<u8>),
}

/// An error with its causes (reqwest's own text says little: "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The HTTP client of an https:// or http:// hook: the certificate checked against the system's
/// CAs or `ca`; connections kept for the next login.
fn http_client(s: &ExternalSettings) -> Result<reqwest::Client, String> {
    let config = crate::tls::client_config(s.ca.as_deref())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured((*config).clone())
        .connect_timeout(s.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent("wharf")
        // Passwords go to the hook's URL only, never through a proxy from the environment.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot make the HTTP client: {}", chain(&e)))
}

/// The answer of a hook as a source's answer.
fn account_of(user: &str, a: HookAnswer, defaults: UserLimits, root: &std::path::Path) -> Answer {
    match a.status.as_str() {
        "unknown" => return Answer::Unknown,
        "refused" => return Answer::Refused(Rejection::WrongPassword),
        "ok" => {}
        other => {
            return Answer::Unavailable(format!(
                "auth hook: status {other:?} (ok, refused or unknown)"
            ));
        }
    }
    if a.disabled {
        return Answer::Refused(Rejection::Disabled);
    }
    let home = match a.home {
        None => root.to_path_buf(),
        Some(h) if h.starts_with('/') => PathBuf::from(h),
        Some(h) => {
            return Answer::Unavailable(format!("auth hook: home {h:?} is not an absolute path"));
        }
    };
    let name = match a.name {
        Some(n) if n.eq_ignore_ascii_case(user) => n,
        Some(n) => {
            return Answer::Unavailable(format!(
                "auth hook: name {n:?} is not the user's ({user:?}) but for its case"
            ));
        }
        None => user.to_string(),
    };
    let permissions = match &a.permissions {
        None => Permissions::READ_ONLY,
        Some(p) => match crate::userdb::parse_permissions(&p.join(",")) {
            Ok(p) => p,
            Err(e) => return Answer::Unavailable(format!("auth hook: {e}")),
        },
    };
    let rules = match AddressRules::parse(&a.allowed_addresses, &a.denied_addresses) {
        Ok(r) => r,
        Err(e) => return Answer::Unavailable(format!("auth hook: {e}")),
    };
    let totp = match a.totp_secret.as_deref().map(TotpSecret::parse).transpose() {
        Ok(t) => t,
        Err(e) => return Answer::Unavailable(format!("auth hook: totp_secret: {e}")),
    };
    let limits = UserLimits {
        max_sessions: a.max_sessions,
        download_rate: a.download_rate,
        upload_rate: a.upload_rate,
        quota_bytes: a.quota_bytes,
        quota_files: a.quota_files,
        max_file_size: a.max_file_size,
    };
    Answer::Account(Box::new(Found {
        account: Account {
            name,
            home,
            permissions,
            anonymous: false,
            limits: limits.or(defaults),
        },
        rules,
        totp,
        host: a.host.as_deref().map(crate::config::normalize_host),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Answer {
        account_of(
            "alice",
            serde_json::from_str(json).unwrap(),
            UserLimits {
                max_sessions: Some(3),
                ..UserLimits::default()
            },
            std::path::Path::new("/srv/ftp"),
        )
    }

    #[test]
    fn answers_map_to_accounts() {
        let Answer::Account(f) = answer(
            r#"{"status":"ok","home":"/srv/a","permissions":["read","write"],"upload_rate":1000,
                "allowed_addresses":["10.0.0.0/8"],"totp_secret":"JBSWY3DPEHPK3PXP"}"#,
        ) else {
            panic!("not an account");
        };
        assert_eq!(f.account.name, "alice");
        assert_eq!(f.account.home, PathBuf::from("/srv/a"));
        assert!(f.account.permissions.write && !f.account.permissions.delete);
        assert_eq!(f.account.limits.upload_rate, Some(1000));
        assert_eq!(
            f.account.limits.max_sessions,
            Some(3),
            "the server's default"
        );
        assert_eq!(f.rules.allowed.len(), 1);
        assert!(f.totp.is_some());
        let Answer::Account(f) = answer(r#"{"status":"ok"}"#) else {
            panic!("not an account");
        };
        assert_eq!(f.account.home, PathBuf::from("/srv/ftp"));
        assert_eq!(f.account.permissions, Permissions::READ_ONLY);
        assert!(matches!(answer(r#"{"status":"unknown"}"#), Answer::Unknown));
        let Answer::Account(f) = answer(r#"{"status":"ok","name":"Alice"}"#) else {
            panic!("not an account");
        };
        assert_eq!(f.account.name, "Alice", "the panel's spelling");
        assert!(matches!(
            answer(r#"{"status":"refused"}"#),
            Answer::Refused(Rejection::WrongPassword)
        ));
        assert!(matches!(
            answer(r#"{"status":"ok","disabled":true}"#),
            Answer::Refused(Rejection::Disabled)
        ));
        for broken in [
            r#"{"status":"yes"}"#,
            r#"{"status":"ok","permissions":["fly"]}"#,
            r#"{"status":"ok","denied_addresses":["nowhere"]}"#,
            r#"{"status":"ok","totp_secret":"x"}"#,
            r#"{"status":"ok","home":"srv/a"}"#,
            r#"{"status":"ok","name":"mallory"}"#,
        ] {
            assert!(matches!(answer(broken), Answer::Unavailable(_)), "{broken}");
        }
    }

    #[test]
    fn sections_are_checked() {
        let s = |t: &str| toml::from_str::<ExternalSection>(t).unwrap().check();
        assert!(s(r#"url = "https://panel.example/login""#).is_ok());
        assert!(s(r#"command = ["/usr/bin/check"]"#).is_ok());
        assert_eq!(s("").unwrap_err().0, "url");
        assert_eq!(s(r#"url = "ftp://x""#).unwrap_err().0, "url");
        assert_eq!(s(r#"url = "https://u:p@x/""#).unwrap_err().0, "url");
        assert_eq!(s(r#"command = [""]"#).unwrap_err().0, "command");
        assert_eq!(
            s("url = \"http://x/\"\ntimeout_ms = 0").unwrap_err().0,
            "timeout_ms"
        );
        assert_eq!(
            s("command = [\"c\"]\nca = \"/etc/ca.pem\"").unwrap_err().0,
            "ca"
        );
        let ok = s("url = \"http://x/\"\ncache_secs = 60").unwrap();
        assert_eq!(ok.cache, Duration::from_secs(60));
        assert_eq!(ok.timeout, Duration::from_secs(5));
    }
}
