//! Everything a peer can send goes through these parsers; none may panic, whatever the bytes.
//! A deterministic generator stands in for a fuzzer here (no extra toolchain needed), biased
//! towards the bytes that matter: digits, separators, CR/LF, IAC, NUL, and known verbs.

use crate::VPath;
use crate::command::{Command, LineBuffer};
use crate::hostport;
use crate::reply::ReplyParser;
use crate::time::UtcTime;

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"USER ",
            b"PORT ",
            b"EPRT ",
            b"EPSV ",
            b"TYPE ",
            b"REST ",
            b"MFMT ",
            b"SITE CHMOD ",
            b"OPTS ",
            b"LIST -",
            b"|",
            b",",
            b"(",
            b")",
            b"..",
            b"/",
            b"\r\n",
            b"\n",
            b"\r",
            b"\xff",
            b"\xff\xf4",
            b"\xff\xfb",
            b"\0",
            b"255",
            b"65536",
            b"99999999999999999999",
            b"20241301",
            b" ",
            b"-",
            b"ALL",
            b"2",
            b"1",
            b"type=",
            b";",
            b"=",
            b"Nov",
            b"12:30",
            b"01:49PM",
            b"<DIR>",
            b" -> ",
            b"drwxr-xr-x",
        ];
        let len = (self.next() % max as u64) as usize;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.next() % 3 == 0 {
                out.extend_from_slice(PIECES[(self.next() % PIECES.len() as u64) as usize]);
            } else {
                out.push(self.next() as u8);
            }
        }
        out
    }
}

#[test]
fn parsers_never_panic() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut lines = LineBuffer::new();
    let mut replies = ReplyParser::new();
    for _ in 0..200_000 {
        let input = g.bytes(64);
        let _ = Command::parse(&input);
        let _ = hostport::parse_port(&input);
        let _ = hostport::parse_eprt(&input);
        let _ = hostport::parse_epsv_arg(&input);
        let _ = hostport::parse_pasv_reply(&input);
        let _ = hostport::parse_epsv_reply(&input);
        let _ = UtcTime::parse_timeval(&input);
        let _ = VPath::root().join(&input);
        let _ = crate::listing::parse_mlst_opts(&input);
        let _ = crate::entry::parse_mlsx_line(&input);
        let _ = crate::entry::parse_list_line(&input, i64::from(input.len() as u32) << 24);
        lines.buffer_mut().extend_from_slice(&input);
        while lines.next_line().is_some() {}
        replies.feed(&input);
        while let Ok(Some(_)) = replies.next_reply() {}
        if replies.next_reply().is_err() {
            replies = ReplyParser::new();
        }
    }
}

/// A whole server session under random commands, random outcomes of its actions and random
/// time: it never panics, and whatever it is fed, it asks for at most one action at a time.
#[test]
fn a_session_never_panics() {
    use crate::command::{HELP_VERBS, LineEvent};
    use crate::server::{
        Action, FsError, LoginResult, Opened, Outcome, Output, PassiveOpened, Permissions, Policy,
        Session, StorageDone, TlsMode, TlsPolicy, TransferEnd, User,
    };
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let mut g = Gen(0x2545_F491_4F6C_DD1D);
    for run in 0..200u64 {
        let policy = Policy {
            tls: TlsPolicy {
                mode: match run % 3 {
                    0 => TlsMode::Off,
                    1 => TlsMode::Optional,
                    _ => TlsMode::Required,
                },
                require_reuse: true,
                require_close_notify: true,
            },
            ..Policy::default()
        };
        let mut now = Instant::now();
        let peer = if run % 2 == 0 { "127.0.0.1" } else { "::1" };
        let mut s = Session::new(
            Arc::new(policy),
            peer.parse()
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            peer.parse()
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
            run % 5 == 0,
            now,
        );
        s.start(now);
        for _ in 0..300 {
            // Drive it as a driver would, answering each action with a random outcome.
            let mut waiting = 0;
            while let Some(out) = s.poll_output() {
                let Output::Do(action) = out else { continue };
                if !action.needs_outcome() {
                    continue;
                }
                waiting += 1;
                assert!(waiting < 1000, "an endless chain of actions");
                let pick = g.next() % 4;
                let outcome = match action {
                    Action::Login { .. } => Outcome::Login(match pick {
                        0 => LoginResult::Rejected,
                        1 => LoginResult::Unavailable,
                        2 => LoginResult::HomeUnavailable,
                        _ => LoginResult::Ok(User {
                            name: "u".into(),
                            permissions: Permissions::ALL,
                        }),
                    }),
                    Action::Storage(_) => Outcome::Storage(match pick {
                        0 => Err(FsError::NotFound),
                        1 => Ok(StorageDone::Done),
                        2 => Ok(StorageDone::Entries {
                            entries: Vec::new(),
                            now: 0,
                        }),
                        _ => Ok(StorageDone::Info(crate::FileInfo {
                            name: b"x".to_vec(),
                            kind: crate::FileKind::Dir,
                            size: 0,
                            mtime: 0,
                            mode: 0o755,
                            nlink: 1,
                        })),
                    }),
                    Action::OpenPassive { .. } => Outcome::Passive(if pick == 0 {
                        Err(())
                    } else {
                        Ok(PassiveOpened {
                            port: 50000,
                            announce: None,
                        })
                    }),
                    Action::StartTls { .. } => {
                        Outcome::Tls(if pick == 0 { Err(()) } else { Ok(()) })
                    }
                    Action::Transfer(_) => Outcome::Transfer(match pick {
                        0 => TransferEnd::Wire,
                        1 => TransferEnd::NoConnection,
                        _ => TransferEnd::Done { bytes: 1 },
                    }),
                    _ => Outcome::Opened(if pick == 0 {
                        Err(FsError::NotFound)
                    } else {
                        Ok(Opened {
                            len: 10,
                            is_dir: pick == 1,
                            name: Some(b"n".to_vec()),
                        })
                    }),
                };
                // Sometimes the wrong outcome, as a buggy driver would send.
                let outcome = if g.next() % 50 == 0 {
                    Outcome::Tls(Ok(()))
                } else {
                    outcome
                };
                s.handle_outcome(outcome, now);
            }
            if s.is_closed() {
                break;
            }
            now += Duration::from_millis(g.next() % 5000);
            match g.next() % 20 {
                0 => s.handle_timeout(now),
                1 => s.handle_shutdown(),
                2 => s.handle_line(LineEvent::TooLong, now),
                3 => {
                    s.run_queued(now);
                }
                _ => {
                    let verb = HELP_VERBS[(g.next() % HELP_VERBS.len() as u64) as usize];
                    let mut line = verb.as_bytes().to_vec();
                    line.push(b' ');
                    line.extend_from_slice(&g.bytes(24));
                    s.handle_line(LineEvent::Line(line), now);
                }
            }
        }
    }
}
