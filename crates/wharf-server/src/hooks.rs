//! Event hooks (`[[hook]]`): after an upload, download, delete, mkdir, rename, login or failed
//! login, a command runs (the event as JSON on its stdin and in `WHARF_*` environment
//! variables) or a URL (http:// or https://, its certificate checked) gets a POST of the JSON.
//!
//! Off the session's path: an event goes into a bounded queue and the session goes on; one
//! worker runs the hooks, each bounded by its timeout. A full queue drops the event (and says
//! so in the log); a slow or dead hook delays no transfer and no login.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Upload,
    Download,
    Delete,
    Mkdir,
    Rename,
    Login,
    LoginFailed,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::Upload,
        EventKind::Download,
        EventKind::Delete,
        EventKind::Mkdir,
        EventKind::Rename,
        EventKind::Login,
        EventKind::LoginFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Upload => "upload",
            EventKind::Download => "download",
            EventKind::Delete => "delete",
            EventKind::Mkdir => "mkdir",
            EventKind::Rename => "rename",
            EventKind::Login => "login",
            EventKind::LoginFailed => "login_failed",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub user: String,
    pub client: std::net::IpAddr,
    pub session: u64,
    /// The file or directory (the new name for a rename); none for logins.
    pub path: Option<String>,
    /// Bytes moved, for uploads and downloads.
    pub bytes: Option<u64>,
    /// The virtual host of the session (its own name), if one was chosen.
    pub host: Option<String>,
}

impl Event {
    pub fn to_json(&self) -> serde_json::Value {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        serde_json::json!({
            "event": self.kind.name(),
            "time": time,
            "user": self.user,
            "client": self.client.to_string(),
            "session": self.session,
            "path": self.path,
            "bytes": self.bytes,
            "host": self.host,
        })
    }
}

/// A `[[hook]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSection {
    /// An event name, or a list of them.
    pub on: OneOrMany,
    /// A program and its arguments (no shell).
    pub command: Option<Vec<String>>,
    /// `http://` or `https://HOST[:PORT]/PATH`, POSTed the event's JSON.
    pub url: Option<String>,
    /// Milliseconds a hook may take (default 10000); then it is stopped.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Command(Vec<String>),
    /// A POST to `host:port` + `path` (with its query), over TLS for `https://` (the
    /// certificate checked against the system's CAs, or `SSL_CERT_FILE`).
    Post {
        tls: bool,
        host: String,
        port: u16,
        path: String,
    },
}

/// A hook, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub on: Vec<EventKind>,
    pub action: Action,
    pub timeout: Duration,
}

impl HookSection {
    /// Checks the table; the error names what is wrong (the caller adds the field).
    pub fn check(&self) -> Result<Hook, (&'static str, String)> {
        let names = match &self.on {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        };
        let mut on = Vec::new();
        for n in &names {
            let kind = EventKind::parse(n).ok_or_else(|| {
                let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                ("on", format!("unknown event `{n}` ({})", all.join(", ")))
            })?;
            on.push(kind);
        }
        if on.is_empty() {
            return Err(("on", "name at least one event".into()));
        }
        let action = match (&self.command, &self.url) {
            (Some(c), None) if !c.is_empty() && !c[0].is_empty() => Action::Command(c.clone()),
            (Some(_), None) => return Err(("command", "give the program to run".into())),
            (None, Some(u)) => parse_url(u).map_err(|m| ("url", m))?,
            _ => return Err(("command", "give either `command` or `url`".into())),
        };
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(10_000));
        if timeout.is_zero() {
            return Err(("timeout_ms", "must be above 0".into()));
        }
        Ok(Hook {
            on,
            action,
            timeout,
        })
    }
}

/// `http://HOST[:PORT]/PATH` or `https://…` as a POST action.
fn parse_url(u: &str) -> Result<Action, String> {
    let (tls, rest) = if let Some(r) = u.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = u.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("`{u}`: give an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{u}` has no host (and no credentials, please)"));
    }
    let default = if tls { 443 } else { 80 };
    // host, [v6], host:port, [v6]:port
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => (
            h,
            p.parse()
                .map_err(|_| format!("`{u}`: `{p}` is not a port"))?,
        ),
        _ => (authority, default),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("`{u}` has no host"));
    }
    Ok(Action::Post {
        tls,
        host,
        port,
        path,
    })
}

type TlsClient = Result<std::sync::Arc<rustls::ClientConfig>, String>;

/// The TLS client for https:// hooks: the system's CAs (or `SSL_CERT_FILE`), made once.
fn tls_client() -> TlsClient {
    static CONFIG: std::sync::OnceLock<TlsClient> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| crate::tls::client_config(None))
        .clone()
}

/// Sends the POST on `s` and reads the status: a 2xx is success.
async fn post<S>(mut s: S, host: &str, port: u16, path: &str, json: &str) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: wharf\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).await.map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(head.get(..n).unwrap_or_default());
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP reply: {line:?}"))?;
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP {code}"))
    }
}

/// Events waiting at most; beyond, new ones are dropped (and counted in the log).
const QUEUE: usize = 1024;

/// The hooks of a server, and their queue.
pub struct Hooks {
    hooks: Arc<Vec<Hook>>,
    /// Made with the first event (inside the runtime), with its worker.
    queue: std::sync::OnceLock<mpsc::Sender<Event>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("hooks", &self.hooks.len())
            .finish()
    }
}

impl Hooks {
    pub fn new(hooks: Vec<Hook>) -> Hooks {
        Hooks {
            hooks: Arc::new(hooks),
            queue: std::sync::OnceLock::new(),
        }
    }

    /// Queues `event` for the hooks that want it; never waits.
    pub fn emit(&self, event: Event) {
        if !self.hooks.iter().any(|h| h.on.contains(&event.kind)) {
            return;
        }
        let tx = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.hooks.clone(), rx));
            tx
        });
        if let Err(e) = tx.try_send(event) {
            tracing::warn!(error = %e, "hook queue full: event dropped");
        }
    }
}

/// The worker: each event, through each hook that wants it, one after the other.
async fn run(hooks: Arc<Vec<Hook>>, mut rx: mpsc::Receiver<Event>) {
    while let Some(event) = rx.recv().await {
        let json = event.to_json().to_string();
        for hook in hooks.iter().filter(|h| h.on.contains(&event.kind)) {
            let started = std::time::Instant::now();
            let r = tokio::time::timeout(hook.timeout, fire(hook, &event, &json)).await;
            let what = match &hook.action {
                Action::Command(c) => c[0].clone(),
                Action::Post {
                    tls,
                    host,
                    port,
                    path,
                } => format!(
                    "{}://{host}:{port}{path}",
                    if *tls { "https" } else { "http" }
                ),
            };
            match r {
                Ok(Ok(())) => {
                    tracing::debug!(hook = %what, event = event.kind.name(), ms = started.elapsed().as_millis() as u64, "hook ran")
                }
                Ok(Err(e)) => {
                    tracing::warn!(hook = %what, event = event.kind.name(), error = %e, "hook failed")
                }
                Err(_) => {
                    tracing::warn!(hook = %what, event = event.kind.name(), secs = hook.timeout.as_secs_f64(), "hook timed out: stopped")
                }
            }
        }
    }
}

async fn fire(hook: &Hook, event: &Event, json: &str) -> Result<(), String> {
    match &hook.action {
        Action::Command(argv) => {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env("WHARF_EVENT", event.kind.name())
                .env("WHARF_USER", &event.user)
                .env("WHARF_CLIENT", event.client.to_string())
                .env("WHARF_SESSION", event.session.to_string())
                .env("WHARF_HOST", event.host.as_deref().unwrap_or(""))
                .env("WHARF_PATH", event.path.as_deref().unwrap_or(""))
                .env(
                    "WHARF_BYTES",
                    event.bytes.map(|b| b.to_string()).unwrap_or_default(),
                )
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                // A hook that outlives its timeout is stopped with it.
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|e| format!("cannot run: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A hook that does not read its stdin is fine.
                let _ = stdin.write_all(json.as_bytes()).await;
                let _ = stdin.write_all(b"\n").await;
            }
            let status = child.wait().await.map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("exited with {status}"))
            }
        }
        Action::Post {
            tls,
            host,
            port,
            path,
        } => {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(|e| format!("connect {host}:{port}: {e}"))?;
            if !tls {
                return post(tcp, host, *port, path, json).await;
            }
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(tls_client()?);
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            post(stream, host, *port, path, json).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<Hook, (&'static str, String)> {
        toml::from_str::<HookSection>(text).unwrap().check()
    }

    #[test]
    fn hooks_are_checked() {
        let h = section("on = ['upload', 'login']\ncommand = ['/bin/true']").unwrap();
        assert_eq!(h.on, [EventKind::Upload, EventKind::Login]);
        let h = section("on = 'delete'\nurl = 'http://127.0.0.1:9000/hook?x=1'").unwrap();
        assert_eq!(
            h.action,
            Action::Post {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9000,
                path: "/hook?x=1".into()
            }
        );
        let h = section("on = 'delete'\nurl = 'https://hooks.example.net'").unwrap();
        assert_eq!(
            h.action,
            Action::Post {
                tls: true,
                host: "hooks.example.net".into(),
                port: 443,
                path: "/".into()
            }
        );
        let h = section("on = 'delete'\nurl = 'http://[::1]:8080/x'").unwrap();
        assert!(matches!(h.action, Action::Post { ref host, port: 8080, .. } if host == "::1"));
        assert_eq!(
            section("on = 'upload'\nurl = 'http://h:port/'")
                .unwrap_err()
                .0,
            "url"
        );
        assert_eq!(section("on = 'fly'\ncommand = ['x']").unwrap_err().0, "on");
        assert_eq!(section("on = 'upload'").unwrap_err().0, "command");
        assert_eq!(
            section("on = 'upload'\ncommand = []").unwrap_err().0,
            "command"
        );
        assert_eq!(
            section("on = 'upload'\nurl = 'ftp://example.net/'")
                .unwrap_err()
                .0,
            "url"
        );
        assert_eq!(
            section("on = 'upload'\ncommand = ['x']\nurl = 'http://a/'")
                .unwrap_err()
                .0,
            "command"
        );
    }
}
