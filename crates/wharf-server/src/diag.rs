//! What the server remembers of data connections that failed, so that `SITE DIAG` — on the same
//! session or a later one — can say what the server saw: a checker's own timeout is shorter
//! than the server's accept timeout, so the session that failed is often gone when the
//! question is asked.
//!
//! Kept per client address and user name (another user behind the same address sees nothing),
//! for ten minutes, at most a few records each and a bounded number of clients: memory does not
//! grow with what clients do.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wharf_proto::diag::{DataFailure, DataRecord};

/// How long a record is kept.
const KEEP: Duration = Duration::from_secs(600);
/// Records kept per client (newest).
const PER_CLIENT: usize = 4;
/// Clients remembered at once; beyond, new ones are not recorded until old ones expire.
const CLIENTS: usize = 10_000;

type Key = (IpAddr, Box<str>);

/// The records of all clients.
#[derive(Default)]
pub(crate) struct DataWatch {
    clients: Mutex<HashMap<Key, VecDeque<Seen>>>,
    /// When the table, full, was last swept of expired records (at most once a second).
    swept: Mutex<Option<Instant>>,
}

struct Seen {
    session: u64,
    at: Instant,
    verb: &'static str,
    what: What,
}

enum What {
    /// A passive listener waiting for its connection now.
    Waiting {
        port: u16,
    },
    Failed(DataFailure),
}

impl DataWatch {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Key, VecDeque<Seen>>) -> R) -> R {
        f(&mut self.clients.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn push(&self, key: Key, seen: Seen) {
        let now = seen.at;
        let may_sweep = {
            let mut last = self.swept.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if due {
                *last = Some(now);
            }
            due
        };
        self.with(|clients| {
            if clients.len() >= CLIENTS && !clients.contains_key(&key) {
                // Full: expired records go (a sweep at most once a second); if none has, one
                // client's records make room. A flood of new addresses costs some knowledge,
                // not memory or time.
                if may_sweep {
                    clients.retain(|_, list| {
                        list.retain(|s| now.duration_since(s.at) < KEEP);
                        !list.is_empty()
                    });
                }
                if clients.len() >= CLIENTS {
                    let victim = clients.keys().next().cloned();
                    if let Some(victim) = victim {
                        clients.remove(&victim);
                    }
                }
            }
            let list = clients.entry(key).or_default();
            list.push_front(seen);
            list.truncate(PER_CLIENT);
        });
    }

    /// A data connection that was not made.
    pub(crate) fn failed(
        &self,
        ip: IpAddr,
        user: &str,
        session: u64,
        verb: &'static str,
        failure: DataFailure,
    ) {
        let seen = Seen {
            session,
            at: Instant::now(),
            verb,
            what: What::Failed(failure),
        };
        self.push((ip, user.into()), seen);
    }

    /// A passive listener opened: it waits for its connection until the returned guard says
    /// how that ended (by default, dropped unused: nobody connected).
    pub(crate) fn waiting(
        self: &Arc<Self>,
        ip: IpAddr,
        user: &str,
        session: u64,
        verb: &'static str,
        port: u16,
    ) -> Waiting {
        let at = Instant::now();
        let seen = Seen {
            session,
            at,
            verb,
            what: What::Waiting { port },
        };
        let key: Key = (ip, user.into());
        self.push(key.clone(), seen);
        Waiting {
            watch: self.clone(),
            key,
            session,
            port,
            at,
            settled: false,
        }
    }

    /// The records of a client, newest first, expired ones dropped.
    pub(crate) fn report(&self, ip: IpAddr, user: &str) -> Vec<DataRecord> {
        let now = Instant::now();
        self.with(|clients| {
            let key: Key = (ip, user.into());
            let Some(list) = clients.get_mut(&key) else {
                return Vec::new();
            };
            list.retain(|s| now.duration_since(s.at) < KEEP);
            let out = list
                .iter()
                .map(|s| {
                    let age = now.duration_since(s.at).as_secs();
                    // A wait in progress is now; `secs` says how long it has lasted.
                    let (failure, ago) = match s.what {
                        What::Waiting { port } => {
                            (DataFailure::PassiveWaiting { port, secs: age }, 0)
                        }
                        What::Failed(f) => (f, age),
                    };
                    DataRecord {
                        failure,
                        ago,
                        verb: s.verb.to_string(),
                    }
                })
                .collect();
            if list.is_empty() {
                clients.remove(&key);
            }
            out
        })
    }
}

/// A passive listener waiting (see [`DataWatch::waiting`]).
pub(crate) struct Waiting {
    watch: Arc<DataWatch>,
    key: Key,
    session: u64,
    port: u16,
    at: Instant,
    settled: bool,
}

impl Waiting {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// How long the listener has been waiting.
    pub(crate) fn age(&self) -> Duration {
        self.at.elapsed()
    }

    /// The connection came: nothing to remember.
    pub(crate) fn connected(mut self) {
        self.settle(None);
    }

    /// It did not come, for this reason.
    pub(crate) fn failed(mut self, failure: DataFailure) {
        self.settle(Some(failure));
    }

    /// Replaces the waiting record by `failure`, or removes it.
    fn settle(&mut self, failure: Option<DataFailure>) {
        self.settled = true;
        let session = self.session;
        self.watch.with(|clients| {
            let Some(list) = clients.get_mut(&self.key) else {
                return;
            };
            let mine = list
                .iter()
                .position(|s| s.session == session && matches!(s.what, What::Waiting { .. }));
            match (mine, failure) {
                (Some(i), Some(f)) => {
                    if let Some(s) = list.get_mut(i) {
                        s.what = What::Failed(f);
                        // "ago" counts from the failure, not from the PASV.
                        s.at = Instant::now();
                    }
                }
                (Some(i), None) => {
                    list.remove(i);
                }
                (None, _) => {}
            }
            if list.is_empty() {
                clients.remove(&self.key);
            }
        });
    }
}

impl Drop for Waiting {
    /// Dropped unsettled: the listener closed unused, nobody connected.
    fn drop(&mut self) {
        if !self.settled {
            let failure = DataFailure::PassiveUnused {
                port: self.port,
                secs: self.at.elapsed().as_secs(),
            };
            self.settle(Some(failure));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_makes_room_for_a_new_client() {
        let watch = DataWatch::default();
        let failure = DataFailure::PassiveTimeout { port: 1, secs: 1 };
        for n in 0..CLIENTS as u32 {
            watch.failed(IpAddr::from(n.to_be_bytes()), "u", 1, "RETR", failure);
        }
        let newcomer: IpAddr = "2001:db8::9".parse().unwrap();
        watch.failed(newcomer, "u", 2, "RETR", failure);
        watch.failed(newcomer, "u", 3, "RETR", failure);
        assert_eq!(watch.with(|c| c.len()), CLIENTS);
        assert_eq!(watch.report(newcomer, "u").len(), 2);
    }

    #[test]
    fn records_are_per_client_and_user_newest_first_and_bounded() {
        let watch = Arc::new(DataWatch::default());
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let waiting = watch.waiting(ip, "alice", 1, "EPSV", 50003);
        let r = watch.report(ip, "alice");
        assert!(matches!(
            r[0].failure,
            DataFailure::PassiveWaiting { port: 50003, .. }
        ));
        assert!(watch.report(ip, "bob").is_empty());
        assert!(
            watch
                .report("192.0.2.3".parse().unwrap(), "alice")
                .is_empty()
        );
        waiting.connected();
        assert!(watch.report(ip, "alice").is_empty());
        drop(watch.waiting(ip, "alice", 1, "PASV", 50004));
        let r = watch.report(ip, "alice");
        assert!(matches!(
            r[..],
            [DataRecord {
                failure: DataFailure::PassiveUnused { port: 50004, .. },
                ..
            }]
        ));
        watch
            .waiting(ip, "alice", 1, "PASV", 50005)
            .failed(DataFailure::PassiveTimeout {
                port: 50005,
                secs: 60,
            });
        assert_eq!(
            watch.report(ip, "alice")[0].failure,
            DataFailure::PassiveTimeout {
                port: 50005,
                secs: 60
            }
        );
        for port in 0..10 {
            watch.failed(
                ip,
                "alice",
                2,
                "RETR",
                DataFailure::PassiveTimeout { port, secs: 60 },
            );
        }
        let r = watch.report(ip, "alice");
        assert_eq!(r.len(), PER_CLIENT);
        assert_eq!(
            r[0].failure,
            DataFailure::PassiveTimeout { port: 9, secs: 60 }
        );
    }
}
