//! Login protection that outlives a reload: bans of addresses that fail too many logins, and a
//! fair queue for password checks.
//!
//! - **Bans.** `ban_after_failures` failed logins from one address within `ban_window` ban it
//!   for `ban_time`, doubled on each repeat within a day; a banned address is refused at connect
//!   with 421, and a login of it already waiting is refused without its hash being computed.
//! - **Fair queue.** Password checks are CPU- and memory-bound (Argon2: 19 MiB each), so only a
//!   few run at once (one per CPU). Waiting checks queue per address and free slots go
//!   round-robin over the addresses waiting, those without failed logins in the ban window
//!   first; addresses with failures hold at most all slots but one. One address flooding with
//!   wrong passwords waits behind itself, and a login from a clean address finds a slot at once
//!   or as soon as one check ends.
//!   An address has at most one check waiting per session, so the session limits bound the
//!   queue.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How bans are decided (the `[limits]` keys of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BanPolicy {
    /// Failed logins that ban an address; 0: no bans.
    pub after_failures: u32,
    pub window: Duration,
    /// The first ban's length; each repeat within a day doubles it (at most a week).
    pub time: Duration,
}

impl Default for BanPolicy {
    fn default() -> BanPolicy {
        BanPolicy {
            after_failures: 10,
            window: Duration::from_secs(600),
            time: Duration::from_secs(900),
        }
    }
}

/// Why a login may not go on to its password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is banned.
    Banned,
    /// The server is shutting down its login queue (never while it runs).
    Closed,
}

#[derive(Debug, Default)]
struct Record {
    /// Failures within the window, oldest first.
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
    /// Bans so far, and when the last one started: repeats within a day double the time.
    bans: u32,
    last_ban: Option<Instant>,
    /// When the shared ban list (the user database) last showed this ban, or this node last
    /// wrote it there: a ban the list no longer shows after that was lifted on another node.
    shared_seen: Option<Instant>,
}

/// Bans and the fair queue of one server.
#[derive(Debug)]
pub struct Guard {
    policy: Mutex<BanPolicy>,
    records: Mutex<HashMap<IpAddr, Record>>,
    gate: Arc<FairGate>,
    /// One login at a time per address, when a remote source (a hook, a directory) is asked.
    turns: Mutex<HashMap<IpAddr, Arc<tokio::sync::Mutex<()>>>>,
}

/// What became of a failed login for the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Counted,
    /// This failure banned the address, for this long.
    Banned(Duration),
}

impl Guard {
    /// `slots`: password checks at once.
    pub fn new(policy: BanPolicy, slots: usize) -> Guard {
        Guard {
            policy: Mutex::new(policy),
            records: Mutex::new(HashMap::new()),
            gate: Arc::new(FairGate::new(slots.max(1))),
            turns: Mutex::new(HashMap::new()),
        }
    }

    /// A reload's new policy (bans in force stay).
    pub fn set_policy(&self, policy: BanPolicy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    fn policy(&self) -> BanPolicy {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Until when `ip` is banned, if it is.
    pub fn banned(&self, ip: IpAddr, now: Instant) -> Option<Instant> {
        self.records()
            .get(&ip)
            .and_then(|r| r.banned_until)
            .filter(|&until| until > now)
    }

    /// Addresses banned now.
    pub fn ban_count(&self, now: Instant) -> usize {
        self.records()
            .values()
            .filter(|r| r.banned_until.is_some_and(|u| u > now))
            .count()
    }

    /// The addresses banned now, with how long each ban has left, longest first.
    pub fn bans(&self, now: Instant) -> Vec<(IpAddr, Duration)> {
        let mut out: Vec<(IpAddr, Duration)> = self
            .records()
            .iter()
            .filter_map(|(ip, r)| {
                let until = r.banned_until.filter(|&u| u > now)?;
                Some((*ip, until.duration_since(now)))
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Lifts the ban of `ip` and forgets its failures; `false` when it was not banned.
    pub fn lift(&self, ip: IpAddr, now: Instant) -> bool {
        let mut records = self.records();
        let banned = records
            .get(&ip)
            .is_some_and(|r| r.banned_until.is_some_and(|u| u > now));
        if banned {
            records.remove(&ip);
        }
        banned
    }

    /// Takes in the bans of the shared list (every node's), fetched starting at `fetched_at`:
    /// each is in force here until its end (or a longer ban of this node's). A ban this node had
    /// from the list, or wrote to it, before `fetched_at` and that the list no longer shows was
    /// lifted elsewhere: it is lifted here too.
    pub fn import_bans(&self, bans: &[(IpAddr, Instant)], fetched_at: Instant) {
        let mut records = self.records();
        for (ip, until) in bans {
            let r = records.entry(ip.to_canonical()).or_default();
            if r.banned_until.is_none_or(|u| u < *until) {
                r.banned_until = Some(*until);
            }
            r.shared_seen = Some(fetched_at);
        }
        let listed: std::collections::HashSet<IpAddr> =
            bans.iter().map(|(ip, _)| ip.to_canonical()).collect();
        records.retain(|ip, r| {
            let lifted = r.banned_until.is_some_and(|u| u > fetched_at)
                && r.shared_seen.is_some_and(|t| t < fetched_at)
                && !listed.contains(ip);
            !lifted
        });
    }

    /// This node's ban of `ip` is in the shared list now.
    pub fn mark_shared(&self, ip: IpAddr, at: Instant) {
        if let Some(r) = self.records().get_mut(&ip.to_canonical()) {
            r.shared_seen = Some(at);
        }
    }

    /// Whether `ip` failed a login within the ban window (its checks wait behind others').
    fn is_suspect(&self, ip: IpAddr, now: Instant) -> bool {
        let window = self.policy().window;
        self.records().get(&ip).is_some_and(|r| {
            r.failures
                .back()
                .is_some_and(|&t| now.duration_since(t) < window)
        })
    }

    /// Counts a failed login of `ip`; may ban it. Failures are counted with bans off too: they
    /// decide the order of password checks.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Failure {
        let policy = self.policy();
        let mut records = self.records();
        // Forget what is old, so the table stays as large as the recent offenders only.
        if records.len() > 10_000 {
            records.retain(|_, r| {
                r.banned_until.is_some_and(|u| u > now)
                    || r.failures
                        .back()
                        .is_some_and(|&t| now.duration_since(t) < policy.window)
                    || r.last_ban
                        .is_some_and(|t| now.duration_since(t) < Duration::from_secs(86_400))
            });
        }
        let r = records.entry(ip).or_default();
        while r
            .failures
            .front()
            .is_some_and(|&t| now.duration_since(t) >= policy.window)
        {
            r.failures.pop_front();
        }
        r.failures.push_back(now);
        if policy.after_failures == 0 {
            // No ban to decide: keep the latest failures only.
            while r.failures.len() > 16 {
                r.failures.pop_front();
            }
            return Failure::Counted;
        }
        if r.failures.len() < policy.after_failures as usize {
            return Failure::Counted;
        }
        r.failures.clear();
        // Still suspect while banned and after: one recent failure stays on record.
        r.failures.push_back(now);
        let repeat = r
            .last_ban
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(86_400));
        r.bans = if repeat { r.bans.saturating_add(1) } else { 1 };
        let factor = 1u32 << (r.bans - 1).min(16);
        let time = policy
            .time
            .saturating_mul(factor)
            .min(Duration::from_secs(7 * 86_400));
        r.banned_until = Some(now + time);
        r.last_ban = Some(now);
        // A new ban: not in the shared list until this node writes it there (an earlier ban's
        // mark would let the next look lift this one).
        r.shared_seen = None;
        Failure::Banned(time)
    }

    /// The turn of `ip` for one login: its logins go one after the other, so that each
    /// failure is counted (and may ban) before the next is tried. Used when the logins go to
    /// a remote source, which then sees no more attempts than the ban policy allows.
    pub async fn turn(&self, ip: IpAddr) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            if turns.len() > 1024 {
                // Addresses nobody holds or waits for.
                turns.retain(|_, t| Arc::strong_count(t) > 1);
            }
            turns.entry(ip.to_canonical()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// A slot for one password check of `ip`: at once if one is free and nobody waits, else in
    /// turn. Refused when `ip` is banned (also if banned while it waited).
    pub async fn check_slot(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        if self.banned(ip, Instant::now()).is_some() {
            return Err(Refusal::Banned);
        }
        let suspect = self.is_suspect(ip, Instant::now());
        let slot = self.gate.acquire(ip, suspect).await?;
        if self.banned(ip, Instant::now()).is_some() {
            return Err(Refusal::Banned);
        }
        Ok(slot)
    }
}

/// A password-check slot; the next waiter gets it when this is dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Option<Arc<FairGate>>,
    suspect: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release(self.suspect);
        }
    }
}

/// The password-check slots. Addresses with failed logins in the ban window are *suspect*:
/// they wait behind addresses without, and together hold at most all slots but one, so a
/// client with a clean record finds a slot at once or after one check ends.
#[derive(Debug)]
struct FairGate {
    slots: usize,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    free: usize,
    /// Slots held by suspect addresses.
    suspect_running: usize,
    /// Addresses with waiters, in turn order.
    turn: VecDeque<IpAddr>,
    waiting: HashMap<IpAddr, Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    suspect: bool,
    queue: VecDeque<oneshot::Sender<Slot>>,
}

impl FairGate {
    fn new(slots: usize) -> FairGate {
        FairGate {
            slots,
            state: Mutex::new(GateState {
                free: slots,
                suspect_running: 0,
                turn: VecDeque::new(),
                waiting: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slots suspect addresses may hold at once.
    fn suspect_cap(&self) -> usize {
        self.slots.saturating_sub(1).max(1)
    }

    async fn acquire(self: &Arc<Self>, ip: IpAddr, suspect: bool) -> Result<Slot, Refusal> {
        let rx = {
            let mut st = self.lock();
            let (tx, rx) = oneshot::channel();
            let GateState { turn, waiting, .. } = &mut *st;
            let w = waiting.entry(ip).or_default();
            // Waiters that gave up (their session ended) go.
            w.queue.retain(|tx| !tx.is_closed());
            w.suspect = suspect;
            w.queue.push_back(tx);
            if !turn.contains(&ip) {
                turn.push_back(ip);
            }
            self.grant(&mut st);
            rx
        };
        rx.await.map_err(|_| Refusal::Closed)
    }

    fn release(self: &Arc<Self>, suspect: bool) {
        let mut st = self.lock();
        st.free += 1;
        if suspect {
            st.suspect_running = st.suspect_running.saturating_sub(1);
        }
        self.grant(&mut st);
    }

    /// Hands free slots to waiters: the first clean address in turn order, else the first
    /// suspect one while suspects hold fewer than their cap; each address served goes to the
    /// back of the turn.
    fn grant(self: &Arc<Self>, st: &mut GateState) {
        while st.free > 0 {
            let suspects_may = st.suspect_running < self.suspect_cap();
            let pick = st
                .turn
                .iter()
                .position(|ip| st.waiting.get(ip).is_some_and(|w| !w.suspect))
                .or_else(|| {
                    suspects_may
                        .then(|| st.turn.iter().position(|ip| st.waiting.contains_key(ip)))
                        .flatten()
                });
            let Some(i) = pick else {
                return;
            };
            let Some(ip) = st.turn.remove(i) else {
                return;
            };
            let Some(w) = st.waiting.get_mut(&ip) else {
                continue;
            };
            let suspect = w.suspect;
            let next = w.queue.pop_front();
            if w.queue.is_empty() {
                st.waiting.remove(&ip);
            } else {
                st.turn.push_back(ip);
            }
            let Some(tx) = next else {
                continue;
            };
            let slot = Slot {
                gate: Some(self.clone()),
                suspect,
            };
            match tx.send(slot) {
                Ok(()) => {
                    st.free -= 1;
                    if suspect {
                        st.suspect_running += 1;
                    }
                }
                // Gave up meanwhile: the slot stays free (without releasing it again from
                // here, under the lock).
                Err(mut slot) => slot.gate = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn shared_bans_come_in_and_lifts_elsewhere_go_out() {
        let g = Guard::new(BanPolicy::default(), 1);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        g.import_bans(&[(a, t0 + Duration::from_secs(60))], t0);
        assert!(g.banned(a, t0).is_some());
        // This node's own ban, written to the list after the next fetch began: kept although
        // that fetch does not show it.
        let policy = BanPolicy {
            after_failures: 1,
            ..BanPolicy::default()
        };
        g.set_policy(policy);
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(g.failed(b, t1), Failure::Banned(_)));
        g.mark_shared(b, t1 + Duration::from_millis(20));
        g.import_bans(
            &[(a, t0 + Duration::from_secs(60))],
            t1 + Duration::from_millis(10),
        );
        assert!(
            g.banned(b, t1).is_some(),
            "a ban written after the fetch began is kept"
        );
        // Later fetches without a: lifted on another node, lifted here.
        let t2 = t1 + Duration::from_secs(2);
        g.import_bans(&[(b, t2 + Duration::from_secs(60))], t2);
        assert!(g.banned(a, t2).is_none());
        assert!(g.banned(b, t2).is_some());
        // Banned again after its shared ban ended, before (or without) the write: the list
        // not showing it yet does not lift it.
        let t3 = t2 + Duration::from_secs(3600);
        assert!(matches!(g.failed(b, t3), Failure::Banned(_)));
        g.import_bans(&[], t3 + Duration::from_secs(1));
        assert!(g.banned(b, t3 + Duration::from_secs(1)).is_some());
    }

    #[test]
    fn failures_ban_and_repeats_double() {
        let g = Guard::new(
            BanPolicy {
                after_failures: 3,
                window: Duration::from_secs(60),
                time: Duration::from_secs(100),
            },
            1,
        );
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert_eq!(g.failed(a, t0), Failure::Counted);
        assert_eq!(g.failed(a, t0 + Duration::from_secs(70)), Failure::Counted);
        assert_eq!(
            g.failed(a, t0 + Duration::from_secs(71)),
            Failure::Counted,
            "the first failure is out of the window"
        );
        assert_eq!(
            g.failed(a, t0 + Duration::from_secs(72)),
            Failure::Banned(Duration::from_secs(100))
        );
        assert!(g.banned(a, t0 + Duration::from_secs(100)).is_some());
        assert!(g.banned(ip("192.0.2.2"), t0).is_none());
        assert!(g.banned(a, t0 + Duration::from_secs(173)).is_none());
        let t1 = t0 + Duration::from_secs(200);
        g.failed(a, t1);
        g.failed(a, t1);
        assert_eq!(g.failed(a, t1), Failure::Banned(Duration::from_secs(200)));
        assert_eq!(g.ban_count(t1), 1);
    }

    #[tokio::test]
    async fn slots_go_round_robin_over_addresses() {
        let g = Arc::new(Guard::new(BanPolicy::default(), 1));
        let (flood, other) = (ip("192.0.2.9"), ip("192.0.2.1"));
        let first = g.check_slot(flood).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (who, i) in [(flood, 1), (flood, 2), (flood, 3), (other, 4)] {
            let (g, order) = (g.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = g.check_slot(who).await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [1, 4, 2, 3],
            "the other address goes second"
        );
    }

    /// An address with failed logins holds at most all slots but one, and waits behind clean
    /// addresses.
    #[tokio::test]
    async fn clean_addresses_go_before_suspect_ones() {
        let g = Arc::new(Guard::new(
            BanPolicy {
                after_failures: 0,
                ..BanPolicy::default()
            },
            2,
        ));
        let (flood, other) = (ip("192.0.2.9"), ip("192.0.2.1"));
        g.failed(flood, Instant::now());
        let held = g.check_slot(flood).await.unwrap();
        // The second slot is not for the suspect address...
        let waiting = {
            let g = g.clone();
            tokio::spawn(async move { g.check_slot(flood).await.map(drop) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // ...but a clean one gets it at once.
        let clean = tokio::time::timeout(Duration::from_secs(1), g.check_slot(other))
            .await
            .expect("a clean address waited")
            .unwrap();
        drop(held);
        waiting.await.unwrap().unwrap();
        drop(clean);
    }

    #[tokio::test]
    async fn banned_while_waiting_is_refused() {
        let g = Arc::new(Guard::new(
            BanPolicy {
                after_failures: 1,
                ..BanPolicy::default()
            },
            1,
        ));
        let a = ip("192.0.2.7");
        let held = g.check_slot(a).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..20 {
            let g = g.clone();
            waiting.push(tokio::spawn(async move { g.check_slot(a).await.map(drop) }));
            tokio::task::yield_now().await;
        }
        // Banned while they wait: each is refused when its turn comes, without a check.
        assert!(matches!(g.failed(a, Instant::now()), Failure::Banned(_)));
        drop(held);
        for w in waiting {
            assert_eq!(w.await.unwrap(), Err(Refusal::Banned));
        }
        assert_eq!(g.check_slot(a).await.unwrap_err(), Refusal::Banned);
        // The slot is free again for others.
        drop(g.check_slot(ip("192.0.2.8")).await.unwrap());
    }
}
