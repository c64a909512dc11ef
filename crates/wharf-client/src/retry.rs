//! The one retry policy of every transfer: single files, tree copies and the ranges of a
//! segmented download decide with it whether a failure gets another try, and after what pause.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Whether another try may succeed where `e` failed: the network or a timeout, or a reply that
/// says the failure is transient (421, 425, 426, 450, 451). A refusal (5xx), a local error or
/// a usage error will fail again.
pub fn is_transient(e: &Error) -> bool {
    match e.reply_code() {
        Some(code) => code.is_transient(),
        None => e.kind() == ErrorKind::Network,
    }
}

/// The pause before try number `attempt` (1-based) of a broken transfer: 1, 2, 4 … 30 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs((1u64 << attempt.saturating_sub(1).min(5)).min(30))
}

/// Times a worker may be refused a session for one job before the job counts as failed.
const SESSION_TRIES: u32 = 4;

/// How often a broken transfer is tried again, and after what pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Further tries after a transient failure (`--retry N`), each on a new session after a
    /// pause of 1, 2, 4 … 30 s, resumed from where the last one stopped.
    pub retries: u32,
    /// Without `retries`: a transfer whose session broke still gets one more try at once, on a
    /// new session. A tree copy has this (one dropped session among several should not fail a
    /// file); a single transfer reports the break instead.
    pub once_after_lost_session: bool,
}

impl RetryPolicy {
    /// `retries` further tries of a single transfer (or a range).
    pub fn new(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            once_after_lost_session: false,
        }
    }

    /// The policy of a pool of sessions: as [`RetryPolicy::new`], and one more try after a
    /// lost session when no retries were asked for.
    pub fn for_pool(retries: u32) -> RetryPolicy {
        RetryPolicy {
            retries,
            once_after_lost_session: true,
        }
    }

    /// Whether failure `e` of a transfer that was already tried again `retried` times gets
    /// another try, and the pause before it. `session_lost`: the session can no longer be
    /// used (it broke, or the server closed it).
    pub fn again(&self, e: &Error, retried: u32, session_lost: bool) -> Option<Duration> {
        if self.retries > 0 {
            return (is_transient(e) && retried < self.retries).then(|| backoff(retried + 1));
        }
        let once = self.once_after_lost_session
            && session_lost
            && retried == 0
            && e.kind() != ErrorKind::Local;
        once.then_some(Duration::ZERO)
    }

    /// Tries in all at most, for "try 2 of 3".
    pub fn tries(&self) -> u32 {
        self.retries.max(u32::from(self.once_after_lost_session)) + 1
    }

    /// The pause before a worker asks again for a session the server refused, the
    /// `refusals`-th time in a row (1, 2, 4 s), or `None` when the job has been refused
    /// `attempts` times and counts as failed.
    pub fn session_wait(attempts: u32, refusals: u32) -> Option<Duration> {
        (attempts < SESSION_TRIES)
            .then(|| Duration::from_secs(1 << refusals.min(3).saturating_sub(1)))
    }

    /// The message for another try: `NAME: WHY; trying again in 2 s (try 2 of 4)`.
    pub fn message(&self, what: &str, e: &Error, retried: u32, wait: Duration) -> String {
        format!(
            "{what}: {e}; trying again in {} s (try {} of {})",
            wait.as_secs(),
            retried + 1,
            self.tries()
        )
    }

    /// Runs `attempt` once, and again as the policy allows after each failure (a failure of
    /// a single transfer counts its session as lost). Each later try gets `true` (resume);
    /// `say` hears the message of each.
    pub async fn run<T, F, Fut>(&self, what: &str, say: &dyn Fn(&str), mut attempt: F) -> Result<T>
    where
        F: FnMut(bool) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut retried = 0u32;
        loop {
            match attempt(retried > 0).await {
                Err(e) => match self.again(&e, retried, true) {
                    Some(wait) => {
                        retried += 1;
                        say(&self.message(what, &e, retried, wait));
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                ok => return ok,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_proto::{Reply, ReplyCode};

    fn refused(code: u16) -> Error {
        Error::Refused {
            command: "RETR f".into(),
            reply: Reply::new(ReplyCode(code), "no"),
        }
    }

    fn lost() -> Error {
        Error::Closed
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn what_gets_another_try() {
        // (policy, error, tries already repeated, session lost) → pause in seconds
        let cases: [(RetryPolicy, Error, u32, bool, Option<u64>); 11] = [
            (RetryPolicy::new(2), refused(450), 0, false, Some(1)),
            (RetryPolicy::new(2), refused(426), 1, true, Some(2)),
            (RetryPolicy::new(2), refused(421), 2, true, None),
            (RetryPolicy::new(2), refused(550), 0, false, None),
            (RetryPolicy::new(2), refused(530), 0, false, None),
            (RetryPolicy::new(2), lost(), 0, true, Some(1)),
            (RetryPolicy::new(0), lost(), 0, true, None),
            (RetryPolicy::for_pool(0), lost(), 0, true, Some(0)),
            (RetryPolicy::for_pool(0), lost(), 1, true, None),
            (RetryPolicy::for_pool(0), refused(450), 0, false, None),
            (
                RetryPolicy::for_pool(0),
                Error::local(std::io::Error::other("disk full")),
                0,
                true,
                None,
            ),
        ];
        for (policy, e, retried, session_lost, want) in cases {
            let got = policy.again(&e, retried, session_lost).map(|d| d.as_secs());
            assert_eq!(got, want, "{policy:?} {e} after {retried}");
        }
    }

    #[test]
    fn tries_counted_for_messages() {
        assert_eq!(RetryPolicy::new(0).tries(), 1);
        assert_eq!(RetryPolicy::new(3).tries(), 4);
        assert_eq!(RetryPolicy::for_pool(0).tries(), 2);
        let m = RetryPolicy::new(2).message("f", &refused(450), 1, backoff(1));
        assert_eq!(
            m,
            "f: the server refused RETR f: 450 no; trying again in 1 s (try 2 of 3)"
        );
    }

    #[test]
    fn refused_sessions_wait_then_fail() {
        let waits: Vec<Option<u64>> = [(1, 1), (2, 2), (3, 3), (3, 9), (4, 4)]
            .iter()
            .map(|&(a, r)| RetryPolicy::session_wait(a, r).map(|d| d.as_secs()))
            .collect();
        assert_eq!(waits, [Some(1), Some(2), Some(4), Some(4), None]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn run_resumes_later_tries() {
        let said = std::sync::Mutex::new(Vec::new());
        let mut calls = Vec::new();
        let say = |m: &str| said.lock().unwrap().push(m.to_string());
        let result: Result<u8> = RetryPolicy::for_pool(0)
            .run("f", &say, |again| {
                calls.push(again);
                let first = calls.len() == 1;
                async move { if first { Err(lost()) } else { Ok(7) } }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls, [false, true]);
        let said = said.lock().unwrap();
        assert_eq!(
            *said,
            ["f: the server closed the connection; trying again in 0 s (try 2 of 2)"]
        );
    }
}
