//! Unit tests of the session, a command family at a time: the rules that transcripts show only
//! from outside (timers, queues, what happens on a driver's mistake).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::command::LineEvent;

fn session(policy: Policy) -> (Session, Instant) {
    let now = Instant::now();
    let mut s = Session::new(
        Arc::new(policy),
        "::ffff:127.0.0.1".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
        false,
        now,
    );
    s.start(now);
    drain(&mut s);
    (s, now)
}

fn line(s: &mut Session, text: &str, now: Instant) {
    s.handle_line(LineEvent::Line(text.as_bytes().to_vec()), now);
}

/// Every output until the session waits: replies as their codes, actions by name.
fn drain(s: &mut Session) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(o) = s.poll_output() {
        v.push(match o {
            Output::Reply(r) => r.code.0.to_string(),
            Output::Do(a) => format!("{a:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap()
                .to_string(),
            // The audit notes have a test of their own.
            Output::Note(Note::Command { .. } | Note::Outcome { .. }) => continue,
            Output::Note(n) => format!("note:{n:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap()
                .to_string(),
        });
    }
    v
}

fn logged_in(policy: Policy) -> (Session, Instant) {
    let (mut s, now) = session(policy);
    line(&mut s, "USER alice", now);
    line(&mut s, "PASS pw", now);
    drain(&mut s);
    let user = User {
        name: "alice".into(),
        permissions: Permissions::ALL,
    };
    s.handle_outcome(Outcome::Login(LoginResult::Ok(user)), now);
    assert_eq!(drain(&mut s), ["230"]);
    (s, now)
}

/// The audit notes of a session: every refusal and every change, with the absolute path.
fn audit_notes(s: &mut Session) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Note(Note::Outcome { verb, path, code }) = o {
            v.push(match path {
                Some(p) => format!("{verb} {p} {code}"),
                None => format!("{verb} {code}"),
            });
        }
    }
    v
}

#[test]
fn refusals_and_changes_are_noted_with_absolute_paths() {
    let (mut s, now) = session(Policy::default());
    line(&mut s, "PWD", now);
    line(&mut s, "FROB", now);
    assert_eq!(audit_notes(&mut s), ["PWD 530", "? 500"]);
    line(&mut s, "USER alice", now);
    line(&mut s, "PASS pw", now);
    drain(&mut s);
    let user = User {
        name: "alice".into(),
        permissions: Permissions {
            delete: false,
            ..Permissions::ALL
        },
    };
    s.handle_outcome(Outcome::Login(LoginResult::Ok(user)), now);
    audit_notes(&mut s);
    line(&mut s, "CWD pub", now);
    s.handle_outcome(
        Outcome::Storage(Ok(StorageDone::Info(crate::listing::FileInfo {
            name: b"pub".to_vec(),
            kind: crate::listing::FileKind::Dir,
            size: 0,
            mtime: 0,
            mode: 0o755,
            nlink: 1,
        }))),
        now,
    );
    line(&mut s, "DELE a.bin", now);
    line(&mut s, "MKD new", now);
    s.handle_outcome(Outcome::Storage(Ok(StorageDone::Done)), now);
    line(&mut s, "RMD gone", now);
    s.handle_outcome(Outcome::Storage(Err(FsError::NotFound)), now);
    line(&mut s, "NOOP", now);
    assert_eq!(
        audit_notes(&mut s),
        [
            "DELE /pub/a.bin 550",
            "MKD /pub/new 257",
            "RMD /pub/gone 550"
        ]
    );
}

#[test]
fn peer_addresses_are_canonical() {
    let (s, _) = session(Policy::default());
    assert_eq!(s.peer().to_string(), "127.0.0.1");
}

#[test]
fn failed_login_waits_for_its_time_and_reads_nothing_meanwhile() {
    let (mut s, t0) = session(Policy::default());
    line(&mut s, "USER bob", t0);
    line(&mut s, "PASS x", t0);
    assert_eq!(drain(&mut s), ["331", "Login"]);
    assert!(
        !s.wants_input(),
        "no commands while the password is checked"
    );
    let t1 = t0 + Duration::from_millis(300);
    s.handle_outcome(Outcome::Login(LoginResult::Rejected), t1);
    assert_eq!(drain(&mut s), ["note:LoginFailed"]);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    assert!(!s.wants_input());
    s.handle_timeout(t0 + Duration::from_millis(999));
    assert!(drain(&mut s).is_empty(), "not yet");
    s.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(drain(&mut s), ["530"]);
    assert!(s.is_idle());
}

#[test]
fn idle_timeout_counts_from_the_last_reply() {
    let (mut s, t0) = logged_in(Policy::default());
    let t1 = t0 + Duration::from_secs(200);
    line(&mut s, "NOOP", t1);
    assert_eq!(drain(&mut s), ["200"]);
    assert_eq!(s.poll_timeout(), Some(t1 + Duration::from_secs(300)));
    s.handle_timeout(t0 + Duration::from_secs(300));
    assert!(drain(&mut s).is_empty(), "the timer moved with the command");
    s.handle_timeout(t1 + Duration::from_secs(300));
    assert_eq!(drain(&mut s), ["421", "Close"]);
    assert!(s.is_closed());
}

#[test]
fn commands_during_a_transfer_queue_and_a_flood_closes() {
    let (mut s, now) = logged_in(Policy::default());
    line(&mut s, "EPSV", now);
    drain(&mut s);
    s.handle_outcome(
        Outcome::Passive(Ok(PassiveOpened {
            port: 50000,
            announce: None,
        })),
        now,
    );
    line(&mut s, "RETR readme.txt", now);
    assert_eq!(drain(&mut s), ["229", "OpenRead"]);
    s.handle_outcome(
        Outcome::Opened(Ok(Opened {
            len: 6,
            is_dir: false,
            name: None,
        })),
        now,
    );
    assert_eq!(drain(&mut s), ["Transfer"]);
    assert!(s.wants_input() && !s.is_idle());
    for _ in 0..MAX_QUEUED {
        line(&mut s, "NOOP", now);
    }
    assert!(drain(&mut s).is_empty());
    line(&mut s, "NOOP", now);
    assert_eq!(drain(&mut s), ["AbortTransfer"]);
    line(&mut s, "ABOR", now);
    assert!(drain(&mut s).is_empty(), "already stopping");
    s.handle_outcome(Outcome::Transfer(TransferEnd::Aborted), now);
    assert_eq!(drain(&mut s), ["421", "Close"]);
    assert!(!s.has_queued(), "a closed session runs nothing more");
}

#[test]
fn queued_commands_run_after_the_transfer_in_order() {
    let (mut s, now) = logged_in(Policy::default());
    line(&mut s, "PORT 127,0,0,1,200,10", now);
    line(&mut s, "LIST", now);
    drain(&mut s);
    s.handle_outcome(
        Outcome::Opened(Ok(Opened {
            len: 0,
            is_dir: true,
            name: None,
        })),
        now,
    );
    assert_eq!(drain(&mut s), ["Transfer"]);
    line(&mut s, "TYPE A", now);
    line(&mut s, "PWD", now);
    s.handle_outcome(Outcome::Transfer(TransferEnd::Done { bytes: 10 }), now);
    assert_eq!(drain(&mut s), ["226"]);
    assert!(s.run_queued(now));
    assert_eq!(drain(&mut s), ["200"]);
    assert!(s.run_queued(now));
    assert_eq!(drain(&mut s), ["257"]);
    assert!(!s.run_queued(now));
}

#[test]
fn an_outcome_nobody_asked_for_is_a_local_error_not_a_panic() {
    let (mut s, now) = logged_in(Policy::default());
    s.handle_outcome(Outcome::Tls(Ok(())), now);
    assert_eq!(drain(&mut s), ["451"]);
    assert!(s.is_idle());
}

#[test]
fn shutdown_waits_for_a_busy_session() {
    let (mut s, now) = logged_in(Policy::default());
    line(&mut s, "SIZE readme.txt", now);
    assert_eq!(drain(&mut s), ["Storage"]);
    s.handle_shutdown();
    assert!(drain(&mut s).is_empty());
    s.handle_outcome(Outcome::Storage(Err(FsError::NotFound)), now);
    assert_eq!(drain(&mut s), ["550"]);
    s.handle_shutdown();
    assert_eq!(drain(&mut s), ["421", "Close"]);
}

#[test]
fn auth_drops_commands_queued_in_clear() {
    let policy = Policy {
        tls: TlsPolicy {
            mode: TlsMode::Optional,
            ..TlsPolicy::default()
        },
        ..Policy::default()
    };
    let (mut s, now) = logged_in(policy);
    line(&mut s, "PORT 127,0,0,1,200,10", now);
    line(&mut s, "RETR readme.txt", now);
    drain(&mut s);
    s.handle_outcome(
        Outcome::Opened(Ok(Opened {
            len: 6,
            is_dir: false,
            name: None,
        })),
        now,
    );
    drain(&mut s);
    line(&mut s, "AUTH TLS", now);
    line(&mut s, "DELE readme.txt", now);
    s.handle_outcome(Outcome::Transfer(TransferEnd::Done { bytes: 6 }), now);
    drain(&mut s);
    assert!(s.run_queued(now));
    let out: Vec<Output> = std::iter::from_fn(|| s.poll_output())
        .filter(|o| !matches!(o, Output::Note(_)))
        .collect();
    assert!(
        matches!(&out[..], [Output::Reply(r), Output::Do(Action::StartTls { discarded: 1 })] if r.code.0 == 234),
        "{out:?}"
    );
    assert!(!s.has_queued(), "DELE sent in clear never runs");
}

#[test]
fn rest_lasts_one_command_and_reaches_retr() {
    let (mut s, now) = logged_in(Policy::default());
    line(&mut s, "PORT 127,0,0,1,200,10", now);
    line(&mut s, "REST 100", now);
    line(&mut s, "RETR a", now);
    let out: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Do(Action::OpenRead { offset: 100, .. }))),
        "{out:?}"
    );
}

#[test]
fn leaving_a_login_tells_the_driver() {
    let (mut s, now) = logged_in(Policy::default());
    line(&mut s, "REIN", now);
    assert_eq!(drain(&mut s), ["Logout", "220"]);
    line(&mut s, "USER a", now);
    assert_eq!(drain(&mut s), ["331"], "nobody was logged in");
}

/// A user name with control bytes (NUL, CR, LF, ESC, DEL), or longer than any account's, is
/// answered 501 and goes no further: the following PASS has no name to check.
#[test]
fn user_names_with_control_bytes_or_too_long_are_refused() {
    let (mut s, now) = session(Policy::default());
    let long = "a".repeat(handlers::MAX_USER_NAME + 1);
    for name in [
        &b"ad\0min"[..],
        b"admin\r",
        b"ad\nmin",
        b"\x1b[31mroot",
        b"root\x7f",
        long.as_bytes(),
    ] {
        let mut cmd = b"USER ".to_vec();
        cmd.extend_from_slice(name);
        s.handle_line(LineEvent::Line(cmd), now);
        assert_eq!(drain(&mut s), ["501"], "{name:?}");
        line(&mut s, "PASS pw", now);
        assert_eq!(drain(&mut s), ["503"], "no login follows {name:?}");
    }
    let fine = "a".repeat(handlers::MAX_USER_NAME);
    line(&mut s, &format!("USER {fine}"), now);
    assert_eq!(drain(&mut s), ["331"]);
    line(&mut s, "USER alice@example.net", now);
    assert_eq!(drain(&mut s), ["331"]);
}

/// A session hashing `readme.txt` (6 bytes) with XCRC.
fn hashing() -> (Session, Instant) {
    let (mut s, now) = logged_in(Policy::default());
    line(&mut s, "XCRC readme.txt", now);
    assert_eq!(drain(&mut s), ["OpenRead"]);
    s.handle_outcome(
        Outcome::Opened(Ok(Opened {
            len: 6,
            is_dir: false,
            name: None,
        })),
        now,
    );
    assert_eq!(drain(&mut s), ["Hash"]);
    assert!(s.wants_input() && !s.is_idle(), "read like a transfer");
    (s, now)
}

#[test]
fn a_hash_ends_as_a_transfer_would() {
    // A flood stops it and closes the session, as during a transfer.
    let (mut s, now) = hashing();
    for _ in 0..=MAX_QUEUED {
        line(&mut s, "NOOP", now);
    }
    assert_eq!(drain(&mut s), ["AbortTransfer"]);
    s.handle_outcome(Outcome::Hashed(Err(TransferEnd::Aborted)), now);
    assert_eq!(drain(&mut s), ["421", "Close"]);
    // Kicked: 421 and close; the control connection lost: close without a word.
    let (mut s, now) = hashing();
    s.handle_outcome(Outcome::Hashed(Err(TransferEnd::Kicked)), now);
    assert_eq!(drain(&mut s), ["421", "Close"]);
    let (mut s, now) = hashing();
    s.handle_outcome(Outcome::Hashed(Err(TransferEnd::ControlLost)), now);
    assert_eq!(drain(&mut s), ["Close"]);
    // Shutdown waits for the hash, as for a transfer.
    let (mut s, now) = hashing();
    s.handle_shutdown();
    assert!(drain(&mut s).is_empty());
    s.handle_outcome(
        Outcome::Hashed(Ok(HashDone {
            digest: vec![0xaf, 0x08, 0x3b, 0x2d],
        })),
        now,
    );
    assert_eq!(drain(&mut s), ["250"]);
    // A transfer's outcome is not a hash's: a local error, never a panic.
    let (mut s, now) = hashing();
    s.handle_outcome(Outcome::Transfer(TransferEnd::Done { bytes: 6 }), now);
    assert_eq!(drain(&mut s), ["451"]);
}
