//! The server's protocol core: one FTP control session as a value, with no sockets, no files
//! and no clock.
//!
//! # The driving contract
//! The driver (the tokio side, `wharf-server`'s `driver`) owns the control connection and the
//! resources a session uses (a passive listener, an open file, a data connection), and does only
//! what the session asks. It runs one loop:
//!
//! 1. Drain [`Session::poll_output`] until it returns `None`, in order:
//!    - [`Output::Reply`]: write it to the control connection;
//!    - [`Output::Do`]: perform the [`Action`]. Actions that produce a result
//!      ([`Action::needs_outcome`]) must be completed and their result fed back with
//!      [`Session::handle_outcome`] *before* polling again; the session emits nothing further
//!      until it has it. The others (closing a listener, dropping an opened file) are done at
//!      once.
//!    - [`Output::Note`]: something for the log.
//! 2. If [`Session::is_closed`], close the connection and stop.
//! 3. If the server is shutting down and [`Session::is_idle`], call [`Session::handle_shutdown`]
//!    and go to 1.
//! 4. If [`Session::has_queued`] (commands that arrived during a transfer), call
//!    [`Session::run_queued`] and go to 1.
//! 5. Wait for whichever comes first: a line from the client (only while
//!    [`Session::wants_input`]) → [`Session::handle_line`]; the deadline of
//!    [`Session::poll_timeout`] → [`Session::handle_timeout`]; shutdown (step 3). Then go to 1.
//!
//! A transfer ([`Action::Transfer`]) and a hash ([`Action::Hash`], which can read a large file
//! for as long) are the actions during which the driver keeps reading the control connection:
//! it reports the bytes moved so far with [`Session::set_progress`] and feeds each line to
//! [`Session::handle_line`] (the session answers STAT, queues other commands, and asks for
//! [`Action::AbortTransfer`] on ABOR or a flood); on `AbortTransfer` the driver stops the work
//! and reports [`TransferEnd::Aborted`].
//!
//! Every `handle_*` takes `now`, the only clock the session sees; timers (the idle timeout, an
//! unused passive listener, the delay before a failed login is answered) come out of
//! [`Session::poll_timeout`].
//!
//! Replies and actions come out of one ordered queue because their order is part of the
//! protocol: `234` goes out before the TLS handshake starts, `150` before data flows, `421`
//! before the connection closes.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use wharf_proto::server::{Action, LoginResult, Outcome, Output, Permissions, Policy, Session, User};
//! use wharf_proto::LineEvent;
//!
//! let now = Instant::now();
//! let mut s = Session::new(Arc::new(Policy::default()), "127.0.0.1".parse().unwrap(),
//!     "127.0.0.1".parse().unwrap(), false, now);
//! // What the driver does with each output; notes go to the log.
//! let mut next = |s: &mut Session| loop {
//!     match s.poll_output() {
//!         Some(Output::Note(_)) => continue,
//!         other => break other,
//!     }
//! };
//! s.start(now);
//! assert!(matches!(next(&mut s), Some(Output::Reply(r)) if r.code.0 == 220));
//! s.handle_line(LineEvent::Line(b"USER ftp".to_vec()), now);
//! assert!(matches!(next(&mut s), Some(Output::Reply(r)) if r.code.0 == 331));
//! s.handle_line(LineEvent::Line(b"PASS x".to_vec()), now);
//! assert!(matches!(next(&mut s), Some(Output::Do(Action::Login { .. }))));
//! let user = User { name: "anonymous".into(), permissions: Permissions::READ_ONLY };
//! s.handle_outcome(Outcome::Login(LoginResult::Ok(user)), now);
//! assert!(matches!(next(&mut s), Some(Output::Reply(r)) if r.code.0 == 230));
//! ```

mod action;
mod features;
mod handlers;
mod policy;
mod state;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub use action::{
    Action, ActiveRefusal, Body, DataChannel, DataFailure, FsError, HashDone, HashSpec, ListForm,
    Note, Opened, Outcome, PassiveOpened, StorageDone, StorageOp, TransferEnd, TransferSpec,
    Undone, WriteMode,
};
pub use features::Capabilities;
pub use policy::{Permissions, Policy, TlsMode, TlsPolicy};
pub use state::{LoginResult, User};

use crate::command::LineEvent;
use crate::listing::FactSet;
use crate::path::VPath;
use crate::reply::{Reply, ReplyCode};
use crate::{HashAlgorithm, TransferType};
use state::{DataPlan, Login, Pending, Security, Step};

/// Commands kept while a transfer runs (to run after it); more close the session, so a client
/// cannot grow the queue without bound.
pub const MAX_QUEUED: usize = 32;

/// What the session wants done next, in order.
#[derive(Debug)]
pub enum Output {
    Reply(Reply),
    Do(Action),
    Note(Note),
}

/// One control session. See the module documentation for how to drive it.
#[derive(Debug)]
pub struct Session {
    policy: Arc<Policy>,
    /// The client's address (canonical: IPv4-mapped addresses as IPv4), for the PORT/EPRT rules.
    peer: IpAddr,
    /// Our end of the control connection: what PASV/EPSV answer for, and the address family.
    local: IpAddr,
    login: Login,
    /// The name given with HOST (RFC 7151), for the login.
    host: Option<Vec<u8>>,
    /// A banner of this connection's own, instead of the policy's (see `set_banner`).
    banner: Option<String>,
    cwd: VPath,
    /// The command being answered and the path it named, for the audit note of its reply.
    audit_verb: Option<&'static str>,
    audit_path: Option<VPath>,
    transfer_type: TransferType,
    data: DataPlan,
    /// After `EPSV ALL` only EPSV may set up data connections (RFC 2428 §4).
    epsv_all: bool,
    pending: Pending,
    facts: FactSet,
    /// The algorithm of HASH, chosen with `OPTS HASH` (REIN goes back to the default).
    hash: HashAlgorithm,
    failed_logins: u32,
    security: Security,
    step: Step,
    /// Commands that arrived while a transfer ran.
    queued: Fifo<LineEvent>,
    out: Fifo<Output>,
}

impl Session {
    /// A session on a new control connection from `peer` to `local`. `implicit_tls`: the
    /// connection came in on an implicit-TLS port and the driver finished the handshake before
    /// calling [`Session::start`]; data is then protected from the start (what clients of port
    /// 990 expect).
    pub fn new(
        policy: Arc<Policy>,
        peer: IpAddr,
        local: IpAddr,
        implicit_tls: bool,
        now: Instant,
    ) -> Session {
        Session {
            policy,
            peer: peer.to_canonical(),
            local: local.to_canonical(),
            login: Login::Fresh,
            host: None,
            banner: None,
            cwd: VPath::root(),
            audit_verb: None,
            audit_path: None,
            transfer_type: TransferType::Image,
            data: DataPlan::None,
            epsv_all: false,
            pending: Pending::None,
            facts: FactSet::DEFAULT,
            hash: HashAlgorithm::DEFAULT,
            failed_logins: 0,
            security: if implicit_tls {
                Security::Tls {
                    pbsz: true,
                    prot: crate::ProtLevel::Private,
                }
            } else {
                Security::Plain
            },
            step: Step::Idle { since: now },
            queued: Fifo::default(),
            out: Fifo::default(),
        }
    }

    /// Replaces the banner before [`Session::start`] (an implicit-TLS connection whose TLS name
    /// chose a virtual host greets with that host's).
    pub fn set_banner(&mut self, banner: String) {
        self.banner = Some(banner);
    }

    /// Sends the banner.
    pub fn start(&mut self, now: Instant) {
        let banner = self
            .banner
            .take()
            .unwrap_or_else(|| self.policy.banner.clone());
        self.reply(ReplyCode::READY, banner);
        self.become_idle(now);
    }

    /// The next thing to do, in order; `None` when there is nothing until the next event.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] is due, if anything waits on time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.step {
            Step::Idle { since } => {
                let idle = *since + self.policy.idle_timeout;
                Some(match self.data {
                    DataPlan::Passive { expires } => expires.min(idle),
                    _ => idle,
                })
            }
            Step::LoginRefused { answer_at } => Some(*answer_at),
            _ => None,
        }
    }

    /// A line (or an over-long one) from the control connection.
    pub fn handle_line(&mut self, ev: LineEvent, now: Instant) {
        match &self.step {
            Step::Idle { .. } => self.dispatch_line(ev, now),
            Step::Transfer(_) | Step::Hash(..) => self.line_during_transfer(ev),
            Step::Closed => {}
            _ => self.enqueue(ev),
        }
    }

    /// Runs one command that arrived during a transfer. Returns whether there was one.
    pub fn run_queued(&mut self, now: Instant) -> bool {
        if !matches!(self.step, Step::Idle { .. }) {
            return false;
        }
        let Some(ev) = self.queued.pop_front() else {
            return false;
        };
        self.dispatch_line(ev, now);
        true
    }

    /// The result of the action the session waits for.
    pub fn handle_outcome(&mut self, outcome: Outcome, now: Instant) {
        let step = std::mem::replace(&mut self.step, Step::Idle { since: now });
        self.outcome(step, outcome, now);
        if matches!(self.step, Step::Idle { .. }) {
            self.become_idle(now);
        }
    }

    /// Time has passed [`Session::poll_timeout`]'s deadline (or not: then nothing happens).
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.step {
            Step::Idle { since } => {
                if now >= since + self.policy.idle_timeout {
                    self.reply(
                        ReplyCode::SERVICE_UNAVAILABLE,
                        "Timeout: closing control connection.",
                    );
                    self.close();
                } else if matches!(self.data, DataPlan::Passive { expires } if now >= expires) {
                    self.out.push_back(Output::Note(Note::PassiveExpired));
                    self.drop_data_plan();
                }
            }
            Step::LoginRefused { answer_at } if now >= answer_at => {
                self.step = Step::Idle { since: now };
                self.answer_failed_login();
                if matches!(self.step, Step::Idle { .. }) {
                    self.become_idle(now);
                }
            }
            _ => {}
        }
    }

    /// The administrator ends this session, whatever it is doing: 421 and close.
    pub fn handle_kick(&mut self) {
        if !matches!(self.step, Step::Closed) {
            self.kicked();
        }
    }

    pub(super) fn kicked(&mut self) {
        self.reply(
            ReplyCode::SERVICE_UNAVAILABLE,
            "Disconnected by the administrator.",
        );
        self.close();
    }

    /// The server is shutting down: an idle session says so and closes. A busy one is left to
    /// finish (the driver asks again when it is idle).
    pub fn handle_shutdown(&mut self) {
        if matches!(self.step, Step::Idle { .. }) {
            self.reply(ReplyCode::SERVICE_UNAVAILABLE, "Server shutting down.");
            self.close();
        }
    }

    /// During a transfer or hash: the bytes moved (or hashed) so far (for STAT).
    pub fn set_progress(&mut self, bytes: u64) {
        if let Step::Transfer(t) | Step::Hash(t, _) = &mut self.step {
            t.progress = bytes;
        }
    }

    /// Whether the driver should read the control connection now: while idle, and during a
    /// transfer or hash (ABOR, STAT).
    pub fn wants_input(&self) -> bool {
        matches!(
            self.step,
            Step::Idle { .. } | Step::Transfer(_) | Step::Hash(..)
        )
    }

    /// Waiting for a command (not for an action's result or a timer).
    pub fn is_idle(&self) -> bool {
        matches!(self.step, Step::Idle { .. })
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.step, Step::Closed)
    }

    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// The logged-in user's name.
    pub fn user_name(&self) -> Option<&str> {
        match &self.login {
            Login::LoggedIn(u) => Some(&u.name),
            _ => None,
        }
    }

    /// The control connection is TLS.
    pub fn control_is_tls(&self) -> bool {
        matches!(self.security, Security::Tls { .. })
    }

    /// The client's address, as the session judges PORT/EPRT by it.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    // ---- internals shared by the handlers ----

    fn reply(&mut self, code: ReplyCode, text: impl AsRef<[u8]>) {
        self.send(Reply::new(code, text));
    }

    fn send(&mut self, reply: Reply) {
        let code = reply.code.0;
        self.out.push_back(Output::Reply(reply));
        self.audit(code);
    }

    /// After a final reply: a note for the audit log when it refuses something or completes a
    /// change; the command's audit state is spent either way.
    fn audit(&mut self, code: u16) {
        if code < 200 {
            return;
        }
        let Some(verb) = self.audit_verb.take() else {
            return;
        };
        let path = self.audit_path.take();
        const CHANGES: [&str; 7] = ["DELE", "RMD", "MKD", "RNFR", "RNTO", "SITE", "MFMT"];
        if code >= 400 || CHANGES.contains(&verb) {
            self.out
                .push_back(Output::Note(Note::Outcome { verb, path, code }));
        }
    }

    fn act(&mut self, action: Action) {
        self.out.push_back(Output::Do(action));
    }

    /// Asks for an action whose result the session waits for in `step`.
    fn wait_for(&mut self, action: Action, step: Step) {
        self.act(action);
        self.step = step;
    }

    fn close(&mut self) {
        self.act(Action::Close);
        self.step = Step::Closed;
        self.queued.clear();
    }

    fn become_idle(&mut self, now: Instant) {
        self.step = Step::Idle { since: now };
    }

    fn enqueue(&mut self, ev: LineEvent) {
        // Outside a transfer the driver does not read; bounded all the same.
        if self.queued.len() < MAX_QUEUED {
            self.queued.push_back(ev);
        }
    }

    /// Forgets the data-connection plan; a passive listener is closed.
    fn drop_data_plan(&mut self) {
        if matches!(self.data, DataPlan::Passive { .. }) {
            self.act(Action::ClosePassive);
        }
        self.data = DataPlan::None;
    }
}

/// A first-in first-out queue that holds a few items at most, and no memory once drained: an
/// idle session (thousands of them wait at once) keeps no buffer.
#[derive(Debug)]
struct Fifo<T>(Vec<T>);

impl<T> Default for Fifo<T> {
    fn default() -> Fifo<T> {
        Fifo(Vec::new())
    }
}

impl<T> Fifo<T> {
    fn push_back(&mut self, item: T) {
        self.0.push(item);
    }

    fn pop_front(&mut self) -> Option<T> {
        if self.0.is_empty() {
            if self.0.capacity() > 0 {
                self.0 = Vec::new();
            }
            return None;
        }
        Some(self.0.remove(0))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn clear(&mut self) {
        self.0 = Vec::new();
    }
}
