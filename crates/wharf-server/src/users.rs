//! What the sessions of one user share while they run: their count (`max_sessions`), the bytes
//! of their uploads in progress (counted against the quota before they land), their turn to
//! hash a file (one hash at a time), and their rate limits (one bucket per user and direction,
//! shared by all of its sessions).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use wharf_net::copy::{RateLimit, Throttle, Unlimited};

use crate::auth::Account;
use crate::services::{AccountThrottles, Throttles};

/// The live sessions of each user.
#[derive(Debug, Default)]
pub struct Seats {
    users: Mutex<HashMap<String, Arc<UserState>>>,
}

/// One user's shared state.
#[derive(Debug, Default)]
pub struct UserState {
    sessions: Mutex<u32>,
    /// Bytes written by this user's uploads in progress.
    pub inflight: AtomicU64,
    /// Net bytes this user's completed uploads added to its home (a replaced file's size
    /// subtracted) since this state was made: an upload compares it with its value when the
    /// upload opened, to see what landed meanwhile.
    pub committed: std::sync::atomic::AtomicI64,
    /// HASH and the `X` commands of all of this user's sessions run one at a time: a user
    /// cannot keep several CPUs busy hashing large files.
    pub hashing: HashTurn,
}

/// One permit: whoever holds it hashes (see [`UserState::hashing`]).
#[derive(Debug, Clone)]
pub struct HashTurn(pub Arc<tokio::sync::Semaphore>);

impl Default for HashTurn {
    fn default() -> HashTurn {
        HashTurn(Arc::new(tokio::sync::Semaphore::new(1)))
    }
}

/// A session's place among its user's sessions; released on drop.
#[derive(Debug)]
pub struct Seat {
    seats: Arc<Seats>,
    name: String,
    pub state: Arc<UserState>,
}

impl Seats {
    /// A seat for a session of `name`, unless it already has `max` sessions.
    pub fn take(self: &Arc<Self>, name: &str, max: Option<u32>) -> Option<Seat> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let state = users.entry(name.to_string()).or_default().clone();
        let mut sessions = state.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if max.is_some_and(|m| *sessions >= m) {
            return None;
        }
        *sessions += 1;
        drop(sessions);
        Some(Seat {
            seats: self.clone(),
            name: name.to_string(),
            state,
        })
    }

    /// Sessions of `name` now.
    pub fn count(&self, name: &str) -> u32 {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users
            .get(name)
            .map_or(0, |s| *s.sessions.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut users = self.seats.users.lock().unwrap_or_else(|p| p.into_inner());
        let mut sessions = self
            .state
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *sessions = sessions.saturating_sub(1);
        if *sessions == 0 {
            drop(sessions);
            users.remove(&self.name);
        }
    }
}

/// Per-user rate limits: one [`RateLimit`] per user, direction and rate, shared by all of the
/// user's sessions (a reload that changes a rate starts a new bucket for new logins).
#[derive(Default)]
pub struct UserRates {
    buckets: Mutex<HashMap<(String, bool, u64), Weak<RateLimit>>>,
}

impl UserRates {
    fn bucket(&self, name: &str, upload: bool, rate: Option<u64>) -> Arc<dyn Throttle> {
        let Some(rate) = rate else {
            return Arc::new(Unlimited);
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets.retain(|_, w| w.strong_count() > 0);
        let key = (name.to_string(), upload, rate);
        if let Some(b) = buckets.get(&key).and_then(Weak::upgrade) {
            return b;
        }
        let b = Arc::new(RateLimit::new(rate));
        buckets.insert(key, Arc::downgrade(&b));
        b
    }
}

impl Throttles for UserRates {
    fn for_account(&self, account: &Account) -> AccountThrottles {
        AccountThrottles {
            download: self.bucket(&account.name, false, account.limits.download_rate),
            upload: self.bucket(&account.name, true, account.limits.upload_rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn seats_count_and_free() {
        let seats = Arc::new(Seats::default());
        let a = seats.take("alice", Some(2)).unwrap();
        let b = seats.take("alice", Some(2)).unwrap();
        assert!(seats.take("alice", Some(2)).is_none());
        assert!(seats.take("bob", Some(2)).is_some(), "per user");
        a.state.inflight.fetch_add(5, Ordering::Relaxed);
        assert_eq!(b.state.inflight.load(Ordering::Relaxed), 5, "shared");
        drop(a);
        assert_eq!(seats.count("alice"), 1);
        assert!(seats.take("alice", Some(2)).is_some());
        drop(b);
    }
}
