#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step panics the test
//! Golden transcripts: each file in `tests/transcripts/` is one scenario, run against the
//! sans-IO server session with no sockets and a virtual clock.
//!
//! Lines of a transcript:
//! - `% key[=value]`: a policy or world setting, before the first command (`tls=required`,
//!   `tls=optional`, `implicit`, `write`, `max_failures=N`, `delay=MS`, `idle=S`, `accept=S`,
//!   `caps=-mtime,-chmod,-append`, `foreign_active`, `low_ports`, `ipv6`).
//! - `> LINE`: the client sends LINE. Actions the session asks for are carried out by a small
//!   scripted world (an in-memory tree: `/readme.txt`, `/pub/`, `/pub/a.bin`; users `alice`/`pw`
//!   with every right and anonymous) unless an `=` line scripted the outcome.
//! - `< TEXT`: the next reply line on the wire is exactly TEXT (without CRLF).
//! - `! SUMMARY`: the next action asked for since the last `>` is SUMMARY.
//! - `= OUTCOME`: the outcome of the next action that needs one (`login rejected`,
//!   `login unavailable`, `login refused`, `login home`, `passive fail`, `tls fail`, `storage NotFound`,
//!   `opened NotFound`, `transfer wire`, `transfer noconnection`, `transfer notresumed`, …;
//!   `hashed HEX` or `hashed local` ends a running hash).
//! - `~ N`: N milliseconds pass (then timers fire; `!` lines after it see their actions).
//! - `* LINE`: the client sends LINE while the running transfer (or hash) still runs (it ends
//!   only on `= transfer …` / `= hashed …`, or on ABOR).
//! - `. closed` / `. open`: the session is closed / still open.
//! - `#`: a comment.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_proto::server::{
    Action, Capabilities, DataChannel, FsError, HashDone, LoginResult, Opened, Outcome, Output,
    PassiveOpened, Permissions, Policy, Session, StorageDone, StorageOp, TlsMode, TransferEnd,
    User, WriteMode,
};
use wharf_proto::{FileInfo, FileKind, LineEvent, VPath};

#[derive(Clone)]
enum Node {
    Dir,
    File(u64),
}

struct World {
    tree: BTreeMap<Vec<u8>, Node>,
    anon_write: bool,
    /// A transfer is running and waits for its scripted end.
    transfer_running: bool,
}

impl World {
    fn new() -> World {
        let mut tree = BTreeMap::new();
        tree.insert(b"/".to_vec(), Node::Dir);
        tree.insert(b"/readme.txt".to_vec(), Node::File(6));
        tree.insert(b"/pub".to_vec(), Node::Dir);
        tree.insert(b"/pub/a.bin".to_vec(), Node::File(1000));
        World {
            tree,
            anon_write: false,
            transfer_running: false,
        }
    }

    fn info(&self, p: &VPath) -> Result<FileInfo, FsError> {
        let key = p.to_bytes();
        let node = self.tree.get(&key).ok_or(FsError::NotFound)?;
        let (kind, size) = match node {
            Node::Dir => (FileKind::Dir, 4096),
            Node::File(n) => (FileKind::File, *n),
        };
        Ok(FileInfo {
            name: p.file_name().unwrap_or(b"/").to_vec(),
            kind,
            size,
            mtime: 1_700_000_000,
            mode: if kind == FileKind::Dir { 0o755 } else { 0o644 },
            nlink: 1,
        })
    }

    fn children(&self, p: &VPath) -> Vec<FileInfo> {
        let mut prefix = p.to_bytes();
        if !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        self.tree
            .keys()
            .filter(|k| k.starts_with(&prefix) && k.len() > prefix.len())
            .filter(|k| !k[prefix.len()..].contains(&b'/'))
            .map(|k| self.info(&VPath::root().join(k).unwrap()).unwrap())
            .collect()
    }

    fn storage(&mut self, op: StorageOp) -> Result<StorageDone, FsError> {
        match op {
            StorageOp::Stat(p) => self.info(&p).map(StorageDone::Info),
            StorageOp::StatList(p) => {
                let info = self.info(&p)?;
                let entries = if info.kind == FileKind::Dir {
                    self.children(&p)
                } else {
                    vec![info]
                };
                Ok(StorageDone::Entries {
                    entries,
                    now: 1_700_000_000,
                })
            }
            StorageOp::Mkdir(p) => {
                self.info(&p.parent())?;
                if self.tree.contains_key(&p.to_bytes()) {
                    return Err(FsError::AlreadyExists);
                }
                self.tree.insert(p.to_bytes(), Node::Dir);
                Ok(StorageDone::Done)
            }
            StorageOp::Rmdir(p) => {
                if !matches!(self.info(&p)?.kind, FileKind::Dir) {
                    return Err(FsError::NotADirectory);
                }
                if !self.children(&p).is_empty() {
                    return Err(FsError::NotEmpty);
                }
                self.tree.remove(&p.to_bytes());
                Ok(StorageDone::Done)
            }
            StorageOp::Delete(p) => {
                if !matches!(self.info(&p)?.kind, FileKind::File) {
                    return Err(FsError::NotAFile);
                }
                self.tree.remove(&p.to_bytes());
                Ok(StorageDone::Done)
            }
            StorageOp::Rename { from, to, replace } => {
                let node = self
                    .tree
                    .get(&from.to_bytes())
                    .cloned()
                    .ok_or(FsError::NotFound)?;
                if self.tree.contains_key(&to.to_bytes()) && !replace {
                    return Err(FsError::AlreadyExists);
                }
                self.tree.remove(&from.to_bytes());
                self.tree.insert(to.to_bytes(), node);
                Ok(StorageDone::Done)
            }
            StorageOp::SetMtime { path, .. } | StorageOp::Chmod { path, .. } => {
                self.info(&path).map(|_| StorageDone::Done)
            }
        }
    }

    fn resolve(&mut self, action: &Action) -> Option<Outcome> {
        Some(match action {
            Action::Login { user, password, .. } => {
                Outcome::Login(match (user.as_slice(), password.as_slice()) {
                    (b"alice", b"pw") => LoginResult::Ok(User {
                        name: "alice".into(),
                        permissions: Permissions::ALL,
                    }),
                    (b"anonymous" | b"ftp", _) => LoginResult::Ok(User {
                        name: "anonymous".into(),
                        permissions: Permissions::from_write_flag(self.anon_write),
                    }),
                    _ => LoginResult::Rejected,
                })
            }
            Action::Storage(op) => Outcome::Storage(self.storage(op.clone())),
            Action::OpenPassive { .. } => Outcome::Passive(Ok(PassiveOpened {
                port: 50000,
                announce: None,
            })),
            Action::StartTls { .. } => Outcome::Tls(Ok(())),
            Action::Diagnose => Outcome::Diagnosis(vec![
                "client-address: 127.0.0.1".into(),
                "last-data-failure: none".into(),
            ]),
            // The transcripts' server serves ftp.example.net and no other name.
            Action::ChooseHost { name } => Outcome::Host(if name == b"ftp.example.net" {
                Ok("Host accepted.".into())
            } else {
                Err(format!(
                    "{} is not served here.",
                    String::from_utf8_lossy(name)
                ))
            }),
            Action::OpenRead { path, offset, .. } => {
                Outcome::Opened(self.info(path).and_then(|i| {
                    if i.kind != FileKind::File {
                        return Err(FsError::NotAFile);
                    }
                    if *offset > i.size {
                        return Err(FsError::BadOffset);
                    }
                    Ok(Opened {
                        len: i.size,
                        is_dir: false,
                        name: None,
                    })
                }))
            }
            Action::OpenWrite { path, .. } => Outcome::Opened(match self.info(&path.parent()) {
                Ok(_) => {
                    self.tree.entry(path.to_bytes()).or_insert(Node::File(0));
                    Ok(Opened {
                        len: 0,
                        is_dir: false,
                        name: None,
                    })
                }
                Err(e) => Err(e),
            }),
            Action::OpenUnique { dir } => {
                let name = b"wharf.000000000001".to_vec();
                self.tree
                    .insert(dir.join(&name).unwrap().to_bytes(), Node::File(0));
                Outcome::Opened(Ok(Opened {
                    len: 0,
                    is_dir: false,
                    name: Some(name),
                }))
            }
            Action::OpenList { path, glob } => {
                let literal = self.info(path);
                let r = match (literal, glob) {
                    (Err(FsError::NotFound), Some(_)) => {
                        let pattern = path.file_name().unwrap_or_default();
                        let any = self
                            .children(&path.parent())
                            .iter()
                            .any(|e| wharf_proto::glob::matches(pattern, &e.name));
                        if any {
                            Ok(true)
                        } else {
                            Err(FsError::NotFound)
                        }
                    }
                    (r, _) => r.map(|i| i.kind == FileKind::Dir),
                };
                Outcome::Opened(r.map(|is_dir| Opened {
                    len: 0,
                    is_dir,
                    name: None,
                }))
            }
            Action::Transfer(_) | Action::Hash(_) => {
                self.transfer_running = true;
                return None;
            }
            Action::ClosePassive
            | Action::DropOpened
            | Action::Logout
            | Action::AbortTransfer
            | Action::Close => {
                return None;
            }
        })
    }
}

fn summary(a: &Action) -> String {
    match a {
        Action::Login { user, .. } => format!("Login {}", String::from_utf8_lossy(user)),
        Action::Storage(op) => format!("Storage {op:?}").replace('"', ""),
        Action::OpenPassive { pasv, tls } => {
            format!("OpenPassive pasv={pasv}{}", if *tls { " tls" } else { "" })
        }
        Action::ClosePassive => "ClosePassive".into(),
        Action::StartTls { discarded } => format!("StartTls discarded={discarded}"),
        Action::OpenRead {
            path,
            offset,
            end: None,
        } => format!("OpenRead {path} {offset}"),
        Action::OpenRead {
            path,
            offset,
            end: Some(end),
        } => format!("OpenRead {path} {offset} end={end}"),
        Action::Hash(spec) => format!(
            "Hash {} {} {} {}-{}",
            spec.verb,
            spec.path.as_ref().unwrap(),
            spec.algorithm.name(),
            spec.start,
            spec.end
        ),
        Action::OpenWrite { path, mode } => format!("OpenWrite {path} {mode:?}"),
        Action::OpenUnique { dir } => format!("OpenUnique {dir}"),
        Action::OpenList { path, glob: None } => format!("OpenList {path}"),
        Action::OpenList {
            path,
            glob: Some(prefix),
        } => format!(
            "OpenList {path} glob prefix={}",
            String::from_utf8_lossy(prefix)
        ),
        Action::DropOpened => "DropOpened".into(),
        Action::Logout => "Logout".into(),
        Action::Transfer(spec) => {
            let data = match spec.data {
                DataChannel::Passive => "passive".to_string(),
                DataChannel::Active(a) => format!("active {a}"),
            };
            format!(
                "Transfer {} {} {data} ascii={} protect={} resumed={}",
                spec.verb,
                String::from_utf8_lossy(&spec.arg),
                spec.ascii,
                spec.protect,
                spec.require_resumed
            )
        }
        Action::AbortTransfer => "AbortTransfer".into(),
        Action::Close => "Close".into(),
        Action::Diagnose => "Diagnose".into(),
        Action::ChooseHost { name } => format!("ChooseHost {}", String::from_utf8_lossy(name)),
    }
}

fn fs_error(name: &str) -> FsError {
    match name {
        "NotFound" => FsError::NotFound,
        "PermissionDenied" => FsError::PermissionDenied,
        "OutsideRoot" => FsError::OutsideRoot,
        "AlreadyExists" => FsError::AlreadyExists,
        "NoSpace" => FsError::NoSpace,
        "Unavailable" => FsError::Unavailable,
        "Io" => FsError::Io,
        other => panic!("unknown FsError {other}"),
    }
}

fn scripted(spec: &str) -> Outcome {
    let (kind, arg) = spec.split_once(' ').unwrap_or((spec, ""));
    match (kind, arg) {
        ("login", "rejected") => Outcome::Login(LoginResult::Rejected),
        ("login", "unavailable") => Outcome::Login(LoginResult::Unavailable),
        ("login", "refused") => Outcome::Login(LoginResult::AddressRefused),
        ("login", "home") => Outcome::Login(LoginResult::HomeUnavailable),
        ("passive", "fail") => Outcome::Passive(Err(())),
        ("passive", ip) => Outcome::Passive(Ok(PassiveOpened {
            port: 50000,
            announce: Some(ip.parse().unwrap()),
        })),
        ("tls", "fail") => Outcome::Tls(Err(())),
        ("storage", e) => Outcome::Storage(Err(fs_error(e))),
        ("opened", e) => Outcome::Opened(Err(fs_error(e))),
        ("hashed", "local") => Outcome::Hashed(Err(TransferEnd::Local)),
        ("hashed", hex) => Outcome::Hashed(Ok(HashDone {
            digest: (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect(),
        })),
        ("transfer", end) => Outcome::Transfer(match end {
            "done" => TransferEnd::Done { bytes: 1 },
            "noconnection" => TransferEnd::NoConnection,
            "tlsfailed" => TransferEnd::TlsFailed,
            "notresumed" => TransferEnd::NotResumed,
            "wire" => TransferEnd::Wire,
            "stalled" => TransferEnd::Stalled,
            "truncated" => TransferEnd::Truncated,
            "nospace" => TransferEnd::NoSpace,
            "commit" => TransferEnd::Commit(FsError::NoSpace),
            other => panic!("unknown transfer end {other}"),
        }),
        _ => panic!("unknown outcome {spec}"),
    }
}

struct Run {
    session: Option<Session>,
    world: World,
    policy: Policy,
    implicit: bool,
    ipv6: bool,
    start: Instant,
    now: Instant,
    replies: VecDeque<String>,
    actions: VecDeque<String>,
    scripted: VecDeque<Outcome>,
    /// A transfer waits for its end: the outcome comes from a script line or ABOR.
    in_transfer: bool,
    /// The running work is a hash (ABOR ends it with a hash's outcome).
    in_hash: bool,
}

impl Run {
    fn push_reply(&mut self, r: &wharf_proto::Reply) {
        let wire = String::from_utf8_lossy(&r.to_bytes()).into_owned();
        for line in wire.split("\r\n").filter(|l| !l.is_empty()) {
            self.replies.push_back(line.to_string());
        }
    }

    /// The first scripted outcome of the kind `action` produces. A transfer scripted to fail
    /// before its data connection (no connection) ends without the preliminary reply; one
    /// scripted to fail later runs first, and ends when its `=` line comes.
    fn take_scripted(&mut self, action: &Action) -> Option<Outcome> {
        let fits = |o: &Outcome| {
            matches!(
                (action, o),
                (Action::Login { .. }, Outcome::Login(_))
                    | (Action::Storage(_), Outcome::Storage(_))
                    | (Action::OpenPassive { .. }, Outcome::Passive(_))
                    | (Action::StartTls { .. }, Outcome::Tls(_))
                    | (
                        Action::OpenRead { .. }
                            | Action::OpenWrite { .. }
                            | Action::OpenUnique { .. }
                            | Action::OpenList { .. },
                        Outcome::Opened(_),
                    )
                    | (
                        Action::Transfer(_),
                        Outcome::Transfer(TransferEnd::NoConnection | TransferEnd::LocalSetup),
                    )
            )
        };
        let i = self.scripted.iter().position(fits)?;
        self.scripted.remove(i)
    }

    fn session(&mut self) -> &mut Session {
        if self.session.is_none() {
            let (peer, local) = if self.ipv6 {
                ("::1", "::1")
            } else {
                ("127.0.0.1", "127.0.0.1")
            };
            let mut s = Session::new(
                Arc::new(self.policy.clone()),
                peer.parse().unwrap(),
                local.parse().unwrap(),
                self.implicit,
                self.now,
            );
            s.start(self.now);
            self.session = Some(s);
            self.drain();
        }
        self.session.as_mut().unwrap()
    }

    fn drain(&mut self) {
        loop {
            let Some(out) = self.session.as_mut().unwrap().poll_output() else {
                // The driver runs what a transfer queued once the session is idle again.
                let s = self.session.as_mut().unwrap();
                if !self.in_transfer && s.has_queued() && s.run_queued(self.now) {
                    continue;
                }
                return;
            };
            match out {
                Output::Reply(r) => self.push_reply(&r),
                Output::Note(_) => {}
                Output::Do(action) => {
                    self.actions.push_back(summary(&action));
                    if matches!(action, Action::AbortTransfer) {
                        self.in_transfer = false;
                        let now = self.now;
                        let aborted = if self.in_hash {
                            Outcome::Hashed(Err(TransferEnd::Aborted))
                        } else {
                            Outcome::Transfer(TransferEnd::Aborted)
                        };
                        self.session.as_mut().unwrap().handle_outcome(aborted, now);
                        continue;
                    }
                    if !action.needs_outcome() {
                        continue;
                    }
                    let outcome = match self.take_scripted(&action) {
                        Some(o) => Some(o),
                        None => {
                            let o = self.world.resolve(&action);
                            if let (None, Action::Transfer(spec)) = (&o, &action) {
                                // The driver sends the preliminary reply once the data
                                // connection is made.
                                self.push_reply(&spec.preliminary);
                            }
                            o
                        }
                    };
                    match outcome {
                        Some(o) => {
                            let now = self.now;
                            self.session.as_mut().unwrap().handle_outcome(o, now);
                        }
                        None => {
                            self.in_transfer = true;
                            self.in_hash = matches!(action, Action::Hash(_));
                        }
                    }
                }
            }
        }
    }
}

fn run_transcript(name: &str, text: &str) {
    let start = Instant::now();
    let mut run = Run {
        session: None,
        world: World::new(),
        policy: Policy {
            failed_login_delay: Duration::from_millis(1000),
            ..Policy::default()
        },
        implicit: false,
        ipv6: false,
        start,
        now: start,
        replies: VecDeque::new(),
        actions: VecDeque::new(),
        scripted: VecDeque::new(),
        in_transfer: false,
        in_hash: false,
    };
    for (no, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", no + 1);
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (tag, rest) = line.split_at(1);
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        match tag {
            "%" => {
                assert!(run.session.is_none(), "{at}: settings come first");
                let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
                let p = &mut run.policy;
                match key {
                    "tls" => {
                        p.tls.mode = TlsMode::parse(value).unwrap();
                        p.tls.require_reuse = true;
                        p.tls.require_close_notify = true;
                    }
                    "implicit" => run.implicit = true,
                    "write" => run.world.anon_write = true,
                    "max_failures" => p.max_login_failures = value.parse().unwrap(),
                    "delay" => p.failed_login_delay = Duration::from_millis(value.parse().unwrap()),
                    "idle" => p.idle_timeout = Duration::from_secs(value.parse().unwrap()),
                    "accept" => p.accept_timeout = Duration::from_secs(value.parse().unwrap()),
                    "foreign_active" => p.allow_foreign_active = true,
                    "low_ports" => p.allow_low_active_ports = true,
                    "ipv6" => run.ipv6 = true,
                    "caps" => {
                        let mut c = Capabilities::ALL;
                        for cap in value.split(',') {
                            match cap {
                                "-mtime" => c.set_mtime = false,
                                "-chmod" => c.chmod = false,
                                "-append" => c.append = false,
                                other => panic!("{at}: unknown capability {other}"),
                            }
                        }
                        p.capabilities = c;
                    }
                    other => panic!("{at}: unknown setting {other}"),
                }
            }
            ">" | "*" => {
                run.session();
                if tag == ">" {
                    assert!(
                        run.replies.is_empty(),
                        "{at}: replies not checked before this command: {:?}",
                        run.replies
                    );
                    run.actions.clear();
                }
                let now = run.now;
                run.session()
                    .handle_line(LineEvent::Line(rest.as_bytes().to_vec()), now);
                run.drain();
            }
            "<" => {
                run.session();
                let got = run.replies.pop_front();
                assert_eq!(got.as_deref(), Some(rest), "{at}");
            }
            "!" => {
                let got = run.actions.pop_front();
                assert_eq!(got.as_deref(), Some(rest), "{at}");
            }
            "=" => {
                let outcome = scripted(rest);
                if run.in_transfer && matches!(outcome, Outcome::Transfer(_) | Outcome::Hashed(_)) {
                    run.in_transfer = false;
                    let now = run.now;
                    run.session().handle_outcome(outcome, now);
                    run.drain();
                } else {
                    run.scripted.push_back(outcome);
                }
            }
            "~" => {
                run.session();
                run.actions.clear();
                let ms: u64 = rest.parse().unwrap();
                run.now += Duration::from_millis(ms);
                let now = run.now;
                let due = run.session().poll_timeout().is_some_and(|t| t <= now);
                if due {
                    run.session().handle_timeout(now);
                    run.drain();
                }
            }
            "." => {
                let closed = run.session().is_closed();
                assert_eq!(closed, rest == "closed", "{at}: session {rest}?");
            }
            _ => panic!("{at}: unknown line {line:?}"),
        }
    }
    assert!(
        run.replies.is_empty(),
        "{name}: replies not checked at the end: {:?}",
        run.replies
    );
    let _ = run.start;
}

#[test]
fn golden_transcripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ftp"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 10,
        "transcripts missing in {}",
        dir.display()
    );
    let mut failed = Vec::new();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if std::panic::catch_unwind(|| run_transcript(&name, &text)).is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed transcripts: {failed:?}");
}

#[test]
fn write_modes_are_distinct() {
    // The harness prints modes with Debug; keep the names the transcripts use stable.
    assert_eq!(format!("{:?}", WriteMode::Resume(5)), "Resume(5)");
}
