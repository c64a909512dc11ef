//! What the admin listener shows: counters for Prometheus, and the table of live sessions
//! (who, from where, since when, the transfer running now) with a way to end one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// The result of a login, as counted.
#[derive(Debug, Clone, Copy)]
pub enum LoginCount {
    Ok = 0,
    Rejected = 1,
    Unavailable = 2,
    Banned = 3,
}

const LOGIN_RESULTS: [&str; 4] = ["ok", "rejected", "unavailable", "banned"];
const DIRECTIONS: [&str; 3] = ["download", "upload", "listing"];
const RESULTS: [&str; 2] = ["ok", "failed"];

/// What a transfer moves, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Download = 0,
    Upload = 1,
    Listing = 2,
}

/// Counters since the server started.
pub struct Metrics {
    logins: [AtomicU64; 4],
    transfers: [[AtomicU64; 2]; 3],
    bytes: [AtomicU64; 3],
    /// Replies by code, 100 to 599.
    replies: Box<[AtomicU64]>,
    passive: AtomicI64,
    /// Open passive listeners by client address (for the per-address cap).
    passive_by_address: Mutex<HashMap<IpAddr, u32>>,
    /// PASV/EPSV refused: the address at its cap, the range used up.
    passive_refused: [AtomicU64; 2],
    /// Admin API requests with a wrong or missing token.
    admin_refused: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            logins: Default::default(),
            transfers: Default::default(),
            bytes: Default::default(),
            replies: (100..600).map(|_| AtomicU64::new(0)).collect(),
            passive: AtomicI64::new(0),
            passive_by_address: Mutex::default(),
            passive_refused: Default::default(),
            admin_refused: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub fn login(&self, result: LoginCount) {
        self.logins[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn transfer(&self, direction: Direction, ok: bool, bytes: u64) {
        let d = direction as usize;
        self.transfers[d][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
        self.bytes[d].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn reply(&self, code: u16) {
        if let Some(c) = usize::from(code)
            .checked_sub(100)
            .and_then(|i| self.replies.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A passive listener for a client at `ip`, which may hold at most `cap` at once: a seat
    /// that counts until the returned guard goes, or `Err(held)` when the address holds its
    /// cap already (counted as refused).
    pub fn passive_seat(self: &Arc<Self>, ip: IpAddr, cap: u32) -> Result<PassiveCount, u32> {
        let ip = ip.to_canonical();
        {
            let mut by = self
                .passive_by_address
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let held = by.entry(ip).or_default();
            if *held >= cap {
                let held = *held;
                drop(by);
                self.passive_refused(PassiveRefusal::AddressCap);
                return Err(held);
            }
            *held += 1;
        }
        self.passive.fetch_add(1, Ordering::Relaxed);
        Ok(PassiveCount(self.clone(), ip))
    }

    /// A PASV/EPSV that found no passive port.
    pub fn passive_refused(&self, why: PassiveRefusal) {
        self.passive_refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An admin request with a wrong or missing token.
    pub fn admin_refused(&self) {
        self.admin_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text format.
    pub fn render(&self, sessions: usize, bans: usize) -> String {
        let mut out = String::new();
        let mut section = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        };
        section(
            "wharf_sessions",
            "gauge",
            "Control connections open now.",
            vec![format!("wharf_sessions {sessions}")],
        );
        section(
            "wharf_logins_total",
            "counter",
            "Logins by result.",
            LOGIN_RESULTS
                .iter()
                .zip(&self.logins)
                .map(|(r, n)| {
                    format!(
                        "wharf_logins_total{{result=\"{r}\"}} {}",
                        n.load(Ordering::Relaxed)
                    )
                })
                .collect(),
        );
        let mut lines = Vec::new();
        for (d, row) in DIRECTIONS.iter().zip(&self.transfers) {
            for (r, n) in RESULTS.iter().zip(row) {
                lines.push(format!(
                    "wharf_transfers_total{{direction=\"{d}\",result=\"{r}\"}} {}",
                    n.load(Ordering::Relaxed)
                ));
            }
        }
        section(
            "wharf_transfers_total",
            "counter",
            "Transfers by direction and result.",
            lines,
        );
        section(
            "wharf_bytes_total",
            "counter",
            "Bytes moved on data connections, by direction.",
            DIRECTIONS
                .iter()
                .zip(&self.bytes)
                .map(|(d, n)| {
                    format!(
                        "wharf_bytes_total{{direction=\"{d}\"}} {}",
                        n.load(Ordering::Relaxed)
                    )
                })
                .collect(),
        );
        section(
            "wharf_replies_total",
            "counter",
            "Replies sent, by code.",
            self.replies
                .iter()
                .enumerate()
                .filter_map(|(i, n)| {
                    let n = n.load(Ordering::Relaxed);
                    (n > 0).then(|| format!("wharf_replies_total{{code=\"{}\"}} {n}", i + 100))
                })
                .collect(),
        );
        section(
            "wharf_passive_ports_in_use",
            "gauge",
            "Passive listeners open now.",
            vec![format!(
                "wharf_passive_ports_in_use {}",
                self.passive.load(Ordering::Relaxed).max(0)
            )],
        );
        section(
            "wharf_passive_refused_total",
            "counter",
            "PASV/EPSV answered 425: the client address at its cap of passive listeners, or the range used up.",
            PASSIVE_REFUSALS
                .iter()
                .zip(&self.passive_refused)
                .map(|(why, n)| {
                    format!(
                        "wharf_passive_refused_total{{reason=\"{why}\"}} {}",
                        n.load(Ordering::Relaxed)
                    )
                })
                .collect(),
        );
        section(
            "wharf_admin_auth_failures_total",
            "counter",
            "Admin API requests refused for a wrong or missing token.",
            vec![format!(
                "wharf_admin_auth_failures_total {}",
                self.admin_refused.load(Ordering::Relaxed)
            )],
        );
        section(
            "wharf_bans",
            "gauge",
            "Addresses banned now.",
            vec![format!("wharf_bans {bans}")],
        );
        out
    }
}

/// Why a PASV/EPSV got no port.
#[derive(Debug, Clone, Copy)]
pub enum PassiveRefusal {
    AddressCap = 0,
    RangeFull = 1,
}

const PASSIVE_REFUSALS: [&str; 2] = ["address_cap", "range_full"];

/// One open passive listener of a client address, counted while it lives.
pub struct PassiveCount(Arc<Metrics>, IpAddr);

impl Drop for PassiveCount {
    fn drop(&mut self) {
        self.0.passive.fetch_sub(1, Ordering::Relaxed);
        let mut by = self
            .0
            .passive_by_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(held) = by.get_mut(&self.1) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                by.remove(&self.1);
            }
        }
    }
}

/// The transfer a session runs now.
#[derive(Debug, Clone)]
pub struct Running {
    pub verb: &'static str,
    pub path: String,
    pub direction: Direction,
    pub started: Instant,
}

/// One live session, as the admin listener sees it.
pub struct SessionEntry {
    pub id: u64,
    pub peer: SocketAddr,
    pub since: SystemTime,
    user: Mutex<Option<String>>,
    /// The virtual host chosen (its own name), if any.
    host: Mutex<Option<String>>,
    running: Mutex<Option<Running>>,
    /// Bytes of the running transfer so far.
    pub bytes: AtomicU64,
    kick: tokio::sync::Notify,
    kicked: AtomicBool,
}

impl SessionEntry {
    pub fn user(&self) -> Option<String> {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn host(&self) -> Option<String> {
        self.host.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_host(&self, host: Option<&str>) {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = host.map(str::to_string);
    }

    pub fn set_user(&self, user: Option<&str>) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = user.map(str::to_string);
    }

    pub fn running(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_running(&self, running: Option<Running>) {
        self.bytes.store(0, Ordering::Relaxed);
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = running;
    }

    /// Asks the session to end (421 to the client).
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::Relaxed);
        // A permit is kept when the session is not waiting right now.
        self.kick.notify_one();
    }

    /// Completes when the session is asked to end.
    pub async fn kicked(&self) {
        if self.kicked.load(Ordering::Relaxed) {
            return;
        }
        self.kick.notified().await;
    }
}

/// Sessions open in this process, whichever server they belong to (systemd's `STATUS=`).
static OPEN: AtomicU64 = AtomicU64::new(0);

/// The sessions open in this process now.
pub fn open_sessions() -> u64 {
    OPEN.load(Ordering::Relaxed)
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<u64, Arc<SessionEntry>>>,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SessionEntry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; it leaves the table when the returned handle is dropped.
    pub fn open(self: &Arc<Self>, id: u64, peer: SocketAddr) -> SessionHandle {
        let entry = Arc::new(SessionEntry {
            id,
            peer,
            since: SystemTime::now(),
            user: Mutex::new(None),
            host: Mutex::new(None),
            running: Mutex::new(None),
            bytes: AtomicU64::new(0),
            kick: tokio::sync::Notify::new(),
            kicked: AtomicBool::new(false),
        });
        self.map().insert(id, entry.clone());
        OPEN.fetch_add(1, Ordering::Relaxed);
        SessionHandle {
            table: self.clone(),
            entry,
        }
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Every session, oldest first.
    pub fn list(&self) -> Vec<Arc<SessionEntry>> {
        let mut all: Vec<_> = self.map().values().cloned().collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// Asks session `id` to end; `false` when there is none.
    pub fn kick(&self, id: u64) -> bool {
        match self.map().get(&id) {
            Some(e) => {
                e.kick();
                true
            }
            None => false,
        }
    }
}

/// A session's place in the table.
pub struct SessionHandle {
    table: Arc<Sessions>,
    pub entry: Arc<SessionEntry>,
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        self.table.map().remove(&self.entry.id);
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters and the sessions, shared by the server and its admin listener.
#[derive(Default)]
pub struct Monitor {
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<Sessions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let m = Arc::new(Metrics::default());
        m.login(LoginCount::Ok);
        m.login(LoginCount::Banned);
        m.transfer(Direction::Upload, true, 10);
        m.transfer(Direction::Download, false, 5);
        m.reply(226);
        m.reply(226);
        m.reply(99);
        m.reply(700);
        let p = m.passive_seat("127.0.0.1".parse().unwrap(), 2).unwrap();
        let q = m
            .passive_seat("::ffff:127.0.0.1".parse().unwrap(), 2)
            .unwrap();
        // The same address, mapped or not: at its cap of 2.
        assert_eq!(
            m.passive_seat("127.0.0.1".parse().unwrap(), 2).err(),
            Some(2)
        );
        assert!(m.passive_seat("127.0.0.2".parse().unwrap(), 2).is_ok());
        drop(q);
        let text = m.render(3, 1);
        for line in [
            "wharf_sessions 3",
            "wharf_logins_total{result=\"ok\"} 1",
            "wharf_logins_total{result=\"banned\"} 1",
            "wharf_transfers_total{direction=\"upload\",result=\"ok\"} 1",
            "wharf_transfers_total{direction=\"download\",result=\"failed\"} 1",
            "wharf_bytes_total{direction=\"upload\"} 10",
            "wharf_replies_total{code=\"226\"} 2",
            "wharf_passive_ports_in_use 1",
            "wharf_passive_refused_total{reason=\"address_cap\"} 1",
            "wharf_passive_refused_total{reason=\"range_full\"} 0",
            "wharf_bans 1",
            "# TYPE wharf_logins_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        drop(p);
        assert!(m.render(0, 0).contains("wharf_passive_ports_in_use 0\n"));
    }

    #[tokio::test]
    async fn a_kick_before_the_wait_is_not_lost() {
        let table = Arc::new(Sessions::default());
        let h = table.open(7, "127.0.0.1:1".parse().unwrap());
        assert_eq!(table.len(), 1);
        assert!(table.kick(7));
        assert!(!table.kick(8));
        tokio::time::timeout(std::time::Duration::from_secs(1), h.entry.kicked())
            .await
            .unwrap();
        drop(h);
        assert!(table.is_empty());
    }
}
