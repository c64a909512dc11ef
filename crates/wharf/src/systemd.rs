//! systemd integration without a library: the notify protocol (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=`, `WATCHDOG=1`: one datagram each to `NOTIFY_SOCKET`), socket
//! activation (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`: listening sockets from fd 3 on),
//! and whether stderr is the journal (`JOURNAL_STREAM`), where the journal adds its own
//! timestamps.
//!
//! Socket names (`FileDescriptorName=` in the socket unit): `ftp` (control connections, plain
//! or explicit TLS; also the default name systemd gives, the socket unit's), `ftps` (implicit
//! TLS).

use std::net::TcpListener;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where the service manager listens for our state, if it does.
pub struct Notify {
    sock: UnixDatagram,
    to: SocketAddr,
    /// STOPPING=1 was sent: the status stays "Stopping".
    stopping: std::sync::atomic::AtomicBool,
}

impl Notify {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket); `None` without one.
    pub fn from_env() -> Option<Notify> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        let to = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name).ok()?,
            None => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
        };
        Some(Notify {
            sock: UnixDatagram::unbound().ok()?,
            to,
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Sends one state message (`KEY=VALUE` lines); a failure is logged, never fatal.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.to) {
            tracing::warn!(error = %e, "cannot tell the service manager: {state}");
        }
    }

    /// `READY=1` with the status line.
    pub fn ready(&self) {
        self.send(&format!("READY=1\nSTATUS={}", status()));
    }

    /// A reload starts: `RELOADING=1` with the monotonic clock, as `Type=notify-reload` wants.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=Reloading the configuration"
        ));
    }

    pub fn stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.send("STOPPING=1\nSTATUS=Stopping: running transfers may finish");
    }

    /// Tells the status every few seconds when it changed, and pets the watchdog when the
    /// unit has one (`WATCHDOG_USEC`, for this process) at half its interval.
    pub async fn keep_telling(self: std::sync::Arc<Self>) {
        let watchdog = watchdog_interval();
        let every = watchdog.map_or(Duration::from_secs(5), |w| {
            (w / 2).min(Duration::from_secs(5))
        });
        let mut last = String::new();
        loop {
            tokio::time::sleep(every).await;
            let now = status();
            let mut msg = String::new();
            if watchdog.is_some() {
                msg.push_str("WATCHDOG=1\n");
            }
            let stopping = self.stopping.load(std::sync::atomic::Ordering::Relaxed);
            if now != last && !stopping {
                msg.push_str(&format!("STATUS={now}\n"));
                last = now;
            }
            if !msg.is_empty() {
                self.send(msg.trim_end());
            }
        }
    }
}

/// The status line: sessions open now.
fn status() -> String {
    match wharf_server::monitor::open_sessions() {
        1 => "Serving; 1 session".to_string(),
        n => format!("Serving; {n} sessions"),
    }
}

/// `WATCHDOG_USEC`, when it is meant for this process (`WATCHDOG_PID` unset or ours).
fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Whether stderr is the journal (`JOURNAL_STREAM` names stderr's device and inode): log lines
/// then go without a timestamp of their own.
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse() == Ok(st.st_dev) && ino.parse() == Ok(st.st_ino)
}

/// Listening sockets handed over by the service manager, by role.
#[derive(Default)]
pub struct Activated {
    /// `ftp`: control listeners (plain, or explicit TLS).
    pub ftp: Vec<TcpListener>,
    /// `ftps`: implicit-TLS listeners.
    pub ftps: Vec<TcpListener>,
    /// `acme`: where ACME's HTTP-01 challenges are answered (port 80), instead of
    /// `[acme] http_listen`.
    pub acme: Option<TcpListener>,
}

/// The sockets of socket activation, when `LISTEN_PID` is this process; `Ok(None)` without
/// any. (The variables stay: a child has another PID, and the sockets are close-on-exec.)
pub fn activated() -> Result<Option<Activated>, String> {
    let Ok(pid) = std::env::var("LISTEN_PID") else {
        return Ok(None);
    };
    if pid.trim() != std::process::id().to_string() {
        return Ok(None);
    }
    let count: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .ok_or("LISTEN_FDS is not a number")?;
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    let mut out = Activated::default();
    for fd in 3..3 + count {
        let name = names.next().unwrap_or("");
        let listener = take_listener(fd)?;
        match name {
            "ftp" | "" | "wharf.socket" => out.ftp.push(listener),
            "ftps" => out.ftps.push(listener),
            "acme" if out.acme.is_none() => out.acme = Some(listener),
            "acme" => return Err("two sockets are named `acme`: give one".into()),
            other => {
                return Err(format!(
                    "socket {fd} is named `{other}`: the names are `ftp` (control connections), `ftps` (implicit TLS) and `acme` (ACME's HTTP-01 challenges) (FileDescriptorName= in the socket unit)"
                ));
            }
        }
    }
    if out.ftp.is_empty() && out.ftps.is_empty() {
        return Err("socket activation handed over no socket".into());
    }
    Ok(Some(out))
}

/// The listening TCP socket at `fd`, which the service manager passed to this process.
#[allow(unsafe_code)]
fn take_listener(fd: i32) -> Result<TcpListener, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: under socket activation (LISTEN_PID is this process) fds 3 .. 3+LISTEN_FDS are
    // open and this process's to own; each is taken once, here, and nothing else uses them.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let sock = socket2::Socket::from(owned);
    let tcp =
        matches!(sock.domain(), Ok(d) if d == socket2::Domain::IPV4 || d == socket2::Domain::IPV6);
    let listening = tcp
        && sock.r#type().ok() == Some(socket2::Type::STREAM)
        && sock.is_listener().unwrap_or(false);
    if !listening {
        return Err(format!(
            "socket {fd} from the service manager is not a listening TCP socket (ListenStream= in the socket unit)"
        ));
    }
    sock.set_cloexec(true)
        .map_err(|e| format!("socket {fd}: {e}"))?;
    sock.set_nonblocking(true)
        .map_err(|e| format!("socket {fd}: {e}"))?;
    Ok(sock.into())
}
