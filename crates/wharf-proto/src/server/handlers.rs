//! The commands, one family at a time, and what each does with its action's outcome. Every
//! reply the server sends is chosen here (or in [`super::FsError::reply`]).

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use crate::command::{Command, HELP_VERBS, LineEvent, Opts, Site};
use crate::hostport::{self, EpsvArg};
use crate::listing::{self, FileInfo, FileKind, MlsxRole, PermFacts};
use crate::path::VPath;
use crate::reply::{Reply, ReplyCode, quote_path};
use crate::{HashAlgorithm, ProtLevel, TransferType, UtcTime};

use super::action::{
    Action, ActiveRefusal, Body, DataChannel, FsError, HashDone, HashSpec, ListForm, Note, Opened,
    Outcome, PassiveOpened, StorageDone, StorageOp, TransferEnd, TransferSpec, WriteMode,
};
use super::features;
use super::policy::{Permissions, TlsMode};
use super::state::{
    DataPlan, Expect, HashForm, HashPlan, Login, LoginResult, Pending, Prepared, PreparedKind,
    Running, Security, Step, Then,
};
use super::{MAX_QUEUED, Output, Session};

fn denied() -> Reply {
    Reply::new(ReplyCode::FILE_UNAVAILABLE, "Permission denied.")
}

impl Session {
    /// A line while idle: parse and dispatch it.
    pub(super) fn dispatch_line(&mut self, ev: LineEvent, now: Instant) {
        match ev {
            LineEvent::TooLong => {
                self.pending = Pending::None;
                self.audit_start("?");
                self.reply(ReplyCode::SYNTAX_ERROR, "Command line too long.");
            }
            LineEvent::Line(line) => match Command::parse(&line) {
                Ok(cmd) => {
                    let verb = cmd.verb();
                    self.out.push_back(Output::Note(Note::Command { verb }));
                    self.audit_start(verb);
                    self.dispatch(cmd, now);
                }
                Err(e) => {
                    self.pending = Pending::None;
                    self.audit_start("?");
                    self.send(e.reply());
                }
            },
        }
        if matches!(self.step, Step::Idle { .. }) {
            self.become_idle(now);
        }
    }

    /// The one dispatch point: every command is one arm.
    fn dispatch(&mut self, cmd: Command, now: Instant) {
        let pending = std::mem::take(&mut self.pending);
        if let Err(r) = self.gate(&cmd) {
            return self.send(r);
        }
        match cmd {
            // Login and session.
            Command::User(name) => self.cmd_user(name),
            Command::Pass(pw) => self.cmd_pass(pw, now),
            Command::Acct => self.reply(ReplyCode::SUPERFLUOUS, "Account not needed."),
            Command::Quit => self.cmd_quit(),
            Command::Rein => self.cmd_rein(),
            Command::Host(name) => self.cmd_host(name),
            // TLS.
            Command::Auth => self.cmd_auth(),
            Command::Pbsz(_) => self.cmd_pbsz(),
            Command::Prot(level) => self.cmd_prot(level),
            Command::Ccc => self.reply(
                ReplyCode::POLICY_DENIED,
                "CCC refused: the control connection stays encrypted.",
            ),
            // Navigation.
            Command::Cwd(arg) => self.storage(
                |_| true,
                Some(&arg),
                |p| (StorageOp::Stat(p.clone()), Then::Cwd(p)),
            ),
            Command::Cdup => self.cmd_cdup(),
            Command::Pwd => self.cmd_pwd(),
            // Data connections.
            Command::Port(addr) => self.cmd_port(SocketAddr::V4(addr), "PORT"),
            Command::Eprt(addr) => self.cmd_port(addr, "EPRT"),
            Command::Pasv => self.cmd_pasv(),
            Command::Epsv(arg) => self.cmd_epsv(arg),
            // Transfer parameters.
            Command::Type(t) => self.cmd_type(t),
            Command::Stru => self.reply(ReplyCode::OK, "Structure set to F."),
            Command::Mode => self.reply(ReplyCode::OK, "Mode set to S."),
            Command::Allo => self.reply(ReplyCode::SUPERFLUOUS, "ALLO command ignored."),
            Command::Rest(offset) => self.cmd_rest(offset),
            // Transfers.
            Command::Retr(arg) => self.cmd_retr(&arg, pending),
            Command::Stor(arg) => self.cmd_stor(&arg, pending),
            Command::Appe(arg) => self.cmd_store("APPE", &arg, WriteMode::Append),
            Command::Stou => self.cmd_stou(),
            Command::List(arg) => self.cmd_list(arg, ListForm::Long),
            Command::Nlst(arg) => self.cmd_list(arg, ListForm::Names),
            Command::Mlsd(arg) => self.cmd_list(arg, ListForm::Machine),
            Command::Abor => {
                // Nothing is running (a running transfer handles ABOR itself).
                self.drop_data_plan();
                self.reply(ReplyCode::DATA_OPEN_NO_TRANSFER, "No transfer to abort.");
            }
            // Files and directories.
            Command::Rnfr(arg) => self.storage(
                |p| p.rename,
                Some(&arg),
                |p| (StorageOp::Stat(p.clone()), Then::Rnfr(p)),
            ),
            Command::Rnto(arg) => self.cmd_rnto(pending, &arg),
            Command::Dele(arg) => self.storage(
                |p| p.delete,
                Some(&arg),
                |p| {
                    let ok = done(ReplyCode::FILE_ACTION_OK, "Delete operation successful.");
                    (StorageOp::Delete(p), ok)
                },
            ),
            Command::Rmd(arg) => self.cmd_rmd(&arg),
            Command::Mkd(arg) => self.storage(
                |p| p.mkdir,
                Some(&arg),
                |p| (StorageOp::Mkdir(p.clone()), Then::Mkd(p)),
            ),
            Command::Site(site) => self.cmd_site(site),
            Command::Mfmt { time, path: arg } => self.cmd_mfmt(time, arg),
            // Information.
            Command::Size(arg) => {
                self.storage(|p| p.read, Some(&arg), |p| (StorageOp::Stat(p), Then::Size))
            }
            Command::Mdtm(arg) => {
                self.storage(|p| p.read, Some(&arg), |p| (StorageOp::Stat(p), Then::Mdtm))
            }
            Command::Mlst(arg) => self.storage(
                |p| p.read,
                arg.as_deref(),
                |p| (StorageOp::Stat(p.clone()), Then::Mlst(p)),
            ),
            Command::Stat(Some(arg)) => self.storage(
                |p| p.read,
                Some(&arg),
                |p| (StorageOp::StatList(p), Then::StatPath),
            ),
            Command::Stat(None) => self.cmd_stat(),
            Command::Syst => self.reply(ReplyCode::SYSTEM_TYPE, "UNIX Type: L8"),
            Command::Help(verb) => self.cmd_help(verb),
            Command::Noop => self.reply(ReplyCode::OK, "NOOP ok."),
            Command::Feat => self.send(features::feat_reply(
                self.policy.capabilities,
                self.policy.tls.mode,
                self.facts,
                self.hash,
            )),
            Command::Opts(opts) => self.cmd_opts(opts),
            // Hashes.
            Command::Hash(arg) => {
                let algorithm = self.hash;
                self.cmd_hash("HASH", arg, algorithm, HashForm::Draft, None)
            }
            Command::XHash {
                algorithm,
                path,
                range,
            } => self.cmd_hash(algorithm.x_verb(), path, algorithm, HashForm::X, range),
        }
    }

    // ---- session ----

    fn cmd_quit(&mut self) {
        self.reply(ReplyCode::CLOSING, "Goodbye.");
        self.close();
    }

    fn cmd_rein(&mut self) {
        self.start_over();
        self.reply(ReplyCode::READY, "Ready for new user.");
    }

    /// HOST (RFC 7151): only before USER (503 after); the driver says whether the name is one
    /// this server serves (220 with the host's greeting) or not (504).
    fn cmd_host(&mut self, name: Vec<u8>) {
        match self.login {
            Login::Fresh => self.wait_for(
                Action::ChooseHost { name: name.clone() },
                Step::Host { name },
            ),
            _ => self.reply(ReplyCode::BAD_SEQUENCE, "HOST must come before USER."),
        }
    }

    fn cmd_cdup(&mut self) {
        // At the root, CDUP stays there, as in a chroot.
        self.cwd = self.cwd.parent();
        self.reply(ReplyCode::OK, "Directory successfully changed.");
    }

    fn cmd_pwd(&mut self) {
        let mut text = quote_path(&self.cwd.to_bytes());
        text.extend_from_slice(b" is the current directory.");
        self.reply(ReplyCode::PATH_CREATED, text);
    }

    fn cmd_type(&mut self, t: TransferType) {
        self.transfer_type = t;
        let text = match t {
            TransferType::Ascii => "Switching to ASCII mode.",
            TransferType::Image => "Switching to Binary mode.",
        };
        self.reply(ReplyCode::OK, text);
    }

    fn cmd_opts(&mut self, opts: Opts) {
        match opts {
            // Names are passed as the bytes they are stored as; UTF-8 clients see UTF-8.
            Opts::Utf8(_) => self.reply(ReplyCode::OK, "Always in UTF8 mode."),
            Opts::Mlst(list) => {
                let (facts, text) = listing::parse_mlst_opts(&list);
                self.facts = facts;
                self.reply(ReplyCode::OK, text);
            }
            // The draft's answer is the algorithm now in use, by its name.
            Opts::Hash(None) => self.reply(ReplyCode::OK, self.hash.name()),
            Opts::Hash(Some(name)) => match HashAlgorithm::from_name(&name) {
                Some(algorithm) => {
                    self.hash = algorithm;
                    self.reply(ReplyCode::OK, algorithm.name());
                }
                None => self.reply(
                    ReplyCode::PARAMETER_SYNTAX_ERROR,
                    "Unknown hash algorithm; FEAT lists those known.",
                ),
            },
        }
    }

    fn cmd_retr(&mut self, arg: &[u8], pending: Pending) {
        let offset = match pending {
            Pending::Rest(n) => n,
            _ => 0,
        };
        self.start_transfer("RETR", arg, PreparedKind::Download, |path| {
            Action::OpenRead {
                path,
                offset,
                end: None,
            }
        });
    }

    fn cmd_stor(&mut self, arg: &[u8], pending: Pending) {
        let mode = match pending {
            Pending::Rest(n) if n > 0 => WriteMode::Resume(n),
            _ => WriteMode::Replace,
        };
        self.cmd_store("STOR", arg, mode);
    }

    fn cmd_mfmt(&mut self, time: UtcTime, arg: Vec<u8>) {
        if !self.policy.capabilities.set_mtime {
            return self.send(FsError::Unsupported.reply());
        }
        let timeval = time.to_timeval();
        let unix_secs = time.to_unix();
        self.storage(
            |p| p.write,
            Some(&arg.clone()),
            |path| {
                (
                    StorageOp::SetMtime { path, unix_secs },
                    Then::Mfmt(Box::new((timeval, arg))),
                )
            },
        );
    }

    // ---- login ----

    fn cmd_user(&mut self, name: Vec<u8>) {
        if self.policy.tls.mode == TlsMode::Required && !self.control_is_tls() {
            // Refused before any password is sent or checked.
            self.set_login(Login::Fresh);
            return self.reply(
                ReplyCode::NOT_LOGGED_IN,
                "TLS required: use AUTH TLS before USER.",
            );
        }
        // A name no account can have (control bytes — NUL, CR, LF —, an empty or overlong one)
        // goes no further: no user store, hook or log line sees it.
        if !plausible_user_name(&name) {
            self.set_login(Login::Fresh);
            self.drop_data_plan();
            return self.reply(ReplyCode::PARAMETER_SYNTAX_ERROR, "Invalid user name.");
        }
        // The same reply for every name, known or not (RFC 2577).
        self.set_login(Login::NeedPassword(name));
        self.drop_data_plan();
        self.reply(ReplyCode::NEED_PASSWORD, "Please specify the password.");
    }

    fn cmd_pass(&mut self, password: Vec<u8>, now: Instant) {
        match std::mem::replace(&mut self.login, Login::Fresh) {
            Login::Fresh => self.reply(ReplyCode::BAD_SEQUENCE, "Login with USER first."),
            logged_in @ Login::LoggedIn(_) => {
                self.login = logged_in;
                self.reply(ReplyCode::LOGGED_IN, "Already logged in.");
            }
            Login::NeedPassword(name) => {
                // A failed login is answered at a fixed time after PASS arrived, whoever the
                // user, so neither the delay nor the hash check tells known names from unknown.
                let answer_at = now + self.policy.failed_login_delay;
                let action = Action::Login {
                    user: name.clone(),
                    password,
                    host: self.host.clone(),
                };
                self.wait_for(
                    action,
                    Step::Login {
                        name: name.into_boxed_slice(),
                        answer_at,
                    },
                );
            }
        }
    }

    fn login_outcome(&mut self, name: Vec<u8>, answer_at: Instant, r: LoginResult, now: Instant) {
        match r {
            LoginResult::Ok(user) => {
                self.login = Login::LoggedIn(user);
                self.cwd = VPath::root();
                self.reply(ReplyCode::LOGGED_IN, "Login successful.");
            }
            LoginResult::Rejected => {
                self.failed_logins += 1;
                self.out
                    .push_back(Output::Note(Note::LoginFailed { user: name }));
                if now >= answer_at {
                    self.answer_failed_login();
                } else {
                    self.step = Step::LoginRefused { answer_at };
                }
            }
            LoginResult::Unavailable => {
                self.reply(
                    ReplyCode::SERVICE_UNAVAILABLE,
                    "Service not available, try again later.",
                );
                self.close();
            }
            LoginResult::HomeUnavailable => {
                self.reply(ReplyCode::NOT_LOGGED_IN, "Home directory unavailable.");
            }
            LoginResult::TooManySessions => {
                self.reply(ReplyCode::NOT_LOGGED_IN, "Too many sessions for this user.");
            }
            LoginResult::AddressRefused => {
                self.reply(
                    ReplyCode::SERVICE_UNAVAILABLE,
                    "Too many login attempts from your address, try again later.",
                );
                self.close();
            }
        }
    }

    /// Changes the login state; leaving a login tells the driver to forget the user.
    fn set_login(&mut self, login: Login) {
        if matches!(self.login, Login::LoggedIn(_)) && !matches!(login, Login::LoggedIn(_)) {
            self.act(Action::Logout);
        }
        self.login = login;
    }

    pub(super) fn answer_failed_login(&mut self) {
        self.reply(ReplyCode::NOT_LOGGED_IN, "Login incorrect.");
        if self.failed_logins >= self.policy.max_login_failures {
            self.close();
        }
    }

    /// Back to the state after the banner (REIN, and a new TLS session after AUTH): no user,
    /// root directory, binary type, no data connection set up. TLS stays as it is.
    fn start_over(&mut self) {
        self.set_login(Login::Fresh);
        self.cwd = VPath::root();
        self.transfer_type = TransferType::Image;
        self.drop_data_plan();
        self.epsv_all = false;
        self.host = None;
        self.hash = HashAlgorithm::DEFAULT;
    }

    // ---- TLS ----

    /// AUTH TLS: 234, then the handshake. Commands pipelined behind AUTH were sent in clear:
    /// none may run as if it came over TLS.
    fn cmd_auth(&mut self) {
        if self.policy.tls.mode == TlsMode::Off {
            return self.reply(
                ReplyCode::NOT_IMPLEMENTED,
                "AUTH not available: TLS is not configured on this server.",
            );
        }
        if self.control_is_tls() {
            return self.reply(ReplyCode::BAD_SEQUENCE, "Already using TLS.");
        }
        self.reply(ReplyCode::AUTH_OK, "AUTH TLS successful.");
        let discarded = self.queued.len();
        self.queued.clear();
        self.pending = Pending::None;
        self.wait_for(Action::StartTls { discarded }, Step::Tls);
    }

    fn tls_outcome(&mut self, ok: bool) {
        if ok {
            self.start_over();
            self.security = Security::Tls {
                pbsz: false,
                prot: ProtLevel::Clear,
            };
        } else {
            // The connection is in no state to carry replies.
            self.close();
        }
    }

    fn cmd_pbsz(&mut self) {
        match &mut self.security {
            Security::Plain => self.reply(ReplyCode::BAD_SEQUENCE, "PBSZ needs AUTH TLS first."),
            Security::Tls { pbsz, .. } => {
                *pbsz = true;
                // TLS has no protection buffer: whatever was asked, the size is 0 (RFC 4217 §9).
                self.reply(ReplyCode::SECURITY_OK, "PBSZ=0");
            }
        }
    }

    fn cmd_prot(&mut self, level: ProtLevel) {
        let Security::Tls { pbsz, .. } = self.security else {
            return self.reply(ReplyCode::BAD_SEQUENCE, "PROT needs AUTH TLS first.");
        };
        if !pbsz {
            // RFC 4217 §9: PBSZ comes first.
            return self.reply(ReplyCode::BAD_SEQUENCE, "PROT needs PBSZ 0 first.");
        }
        let (set, code, text) = match level {
            ProtLevel::Private => (
                Some(ProtLevel::Private),
                ReplyCode::SECURITY_OK,
                "Protection set to Private.",
            ),
            ProtLevel::Clear if self.policy.tls.mode == TlsMode::Required => (
                None,
                ReplyCode::POLICY_DENIED,
                "PROT C refused: data connections must be encrypted (PROT P).",
            ),
            ProtLevel::Clear => (
                Some(ProtLevel::Clear),
                ReplyCode::SECURITY_OK,
                "Protection set to Clear.",
            ),
            ProtLevel::Unsupported => (
                None,
                ReplyCode::PROT_LEVEL_UNSUPPORTED,
                "PROT S and E are not supported with TLS; use C or P.",
            ),
        };
        if let Some(level) = set {
            self.security = Security::Tls {
                pbsz: true,
                prot: level,
            };
        }
        self.reply(code, text);
    }

    // ---- data connections ----

    /// PORT and EPRT: RFC 2577's bounce protection happens here, before anything connects.
    fn cmd_port(&mut self, addr: SocketAddr, verb: &'static str) {
        if self.epsv_all {
            return self.reply(
                ReplyCode::BAD_SEQUENCE,
                format!("{verb} not allowed after EPSV ALL."),
            );
        }
        if addr.is_ipv4() != self.peer.is_ipv4() {
            let text = if self.peer.is_ipv4() {
                "Network protocol not supported, use (1)"
            } else {
                "Network protocol not supported, use (2)"
            };
            return self.reply(ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED, text);
        }
        // `EPRT |2|::|port|` and `PORT 0,0,0,0,…` (lftp in active mode over IPv6): "my own
        // address", that is the control connection's peer.
        let addr = if addr.ip().is_unspecified() {
            SocketAddr::new(self.peer, addr.port())
        } else {
            addr
        };
        let refusal = if !self.policy.allow_foreign_active && addr.ip().to_canonical() != self.peer
        {
            // Most often not an attack but a client behind NAT that sends its private address
            // (a NAT without an FTP helper): the reply says so, for the client's log.
            Some((
                ActiveRefusal::ForeignAddress,
                format!(
                    "{} is not your address as this server sees it ({}): a NAT between you rewrites your address, so use passive mode",
                    addr.ip(),
                    self.peer
                ),
            ))
        } else if !self.policy.allow_low_active_ports && addr.port() < 1024 {
            Some((
                ActiveRefusal::PrivilegedPort,
                "port must be 1024 or above".to_string(),
            ))
        } else {
            None
        };
        if let Some((reason, text)) = refusal {
            self.out.push_back(Output::Note(Note::RefusedActive {
                verb,
                target: addr,
                reason,
            }));
            return self.reply(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                format!("Illegal {verb}: {text}."),
            );
        }
        self.drop_data_plan();
        self.data = DataPlan::Active(addr);
        self.reply(
            ReplyCode::OK,
            format!("{verb} command successful. Consider using EPSV."),
        );
    }

    fn cmd_pasv(&mut self) {
        if self.epsv_all {
            return self.reply(ReplyCode::BAD_SEQUENCE, "PASV not allowed after EPSV ALL.");
        }
        if !self.local.is_ipv4() {
            // PASV cannot carry an IPv6 address; this makes clients move on to EPSV.
            return self.reply(
                ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                "PASV needs IPv4; use EPSV.",
            );
        }
        self.open_passive(true);
    }

    fn cmd_epsv(&mut self, arg: EpsvArg) {
        let family = if self.local.is_ipv4() { 1 } else { 2 };
        match arg {
            EpsvArg::All => {
                self.epsv_all = true;
                self.reply(ReplyCode::OK, "EPSV ALL ok.");
            }
            EpsvArg::Protocol(p) if p != family => self.reply(
                ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                format!("Network protocol not supported, use ({family})"),
            ),
            EpsvArg::Any | EpsvArg::Protocol(_) => self.open_passive(false),
        }
    }

    /// Opens a passive listener, closing any earlier one first.
    fn open_passive(&mut self, pasv: bool) {
        self.drop_data_plan();
        let tls = self.security.prot() == ProtLevel::Private;
        self.wait_for(Action::OpenPassive { pasv, tls }, Step::Passive { pasv });
    }

    fn passive_outcome(&mut self, pasv: bool, r: Result<PassiveOpened, ()>, now: Instant) {
        let Ok(opened) = r else {
            return self.reply(ReplyCode::CANT_OPEN_DATA, "No passive port available.");
        };
        self.data = DataPlan::Passive {
            expires: now + self.policy.accept_timeout,
        };
        if pasv {
            let ip = opened.announce.unwrap_or(match self.local {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            });
            let text = hostport::pasv_reply_text(SocketAddrV4::new(ip, opened.port));
            self.reply(ReplyCode::PASSIVE, text);
        } else {
            self.reply(
                ReplyCode::EXTENDED_PASSIVE,
                hostport::epsv_reply_text(opened.port),
            );
        }
    }

    fn cmd_rest(&mut self, offset: u64) {
        if self.transfer_type == TransferType::Ascii && offset > 0 {
            return self.reply(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                "REST not supported in ASCII mode.",
            );
        }
        self.pending = Pending::Rest(offset);
        self.reply(
            ReplyCode::PENDING_FURTHER_INFO,
            format!("Restart position accepted ({offset})."),
        );
    }

    // ---- transfers ----

    fn cmd_store(&mut self, verb: &'static str, arg: &[u8], mode: WriteMode) {
        if matches!(mode, WriteMode::Append | WriteMode::Resume(_))
            && !self.policy.capabilities.append
        {
            return self.send(FsError::Unsupported.reply());
        }
        self.start_transfer(verb, arg, PreparedKind::Upload, |path| Action::OpenWrite {
            path,
            mode,
        });
    }

    fn cmd_stou(&mut self) {
        let cwd = match self.authorize(|p| p.write, None) {
            Ok((_, cwd)) => cwd,
            Err(r) => return self.send(r),
        };
        if matches!(self.data, DataPlan::None) {
            return self.reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first.");
        }
        let prepared = Prepared {
            verb: "STOU",
            arg: Vec::new(),
            kind: PreparedKind::Unique,
        };
        self.wait_for(
            Action::OpenUnique { dir: cwd },
            Step::Open(Box::new(prepared)),
        );
    }

    fn cmd_list(&mut self, arg: Option<Vec<u8>>, form: ListForm) {
        let verb = match form {
            ListForm::Long => "LIST",
            ListForm::Names => "NLST",
            ListForm::Machine => "MLSD",
        };
        let shown = arg.clone().unwrap_or_else(|| b".".to_vec());
        let path = match self.authorize(|p| p.read, arg.as_deref()) {
            Ok((_, p)) => p,
            Err(r) => return self.send(r),
        };
        // A pattern in the last component (LIST and NLST: MLSD names one directory).
        let glob = match (&arg, form) {
            (Some(a), ListForm::Long | ListForm::Names)
                if path.file_name().is_some_and(crate::glob::is_pattern) =>
            {
                // `dir/*/` names the same pattern as `dir/*`.
                let mut a = a.as_slice();
                while let [rest @ .., b'/'] = a {
                    a = rest;
                }
                let dir_part = a.iter().rposition(|&b| b == b'/');
                Some(match (form, dir_part) {
                    (ListForm::Names, Some(i)) => a.get(..=i).unwrap_or_default().to_vec(),
                    _ => Vec::new(),
                })
            }
            _ => None,
        };
        // Path and permission first: a bad path is 550 whether or not a data connection is set up.
        if matches!(self.data, DataPlan::None) {
            let (path, expect) = match glob {
                Some(_) => (path.parent(), Expect::Dir),
                None => (path, Expect::Any),
            };
            return self.wait_for(
                Action::Storage(StorageOp::Stat(path)),
                Step::Storage(Then::NoDataPlan(expect)),
            );
        }
        let prepared = Prepared {
            verb,
            arg: shown,
            kind: PreparedKind::Listing(form),
        };
        self.wait_for(
            Action::OpenList { path, glob },
            Step::Open(Box::new(prepared)),
        );
    }

    /// RETR and STOR/APPE: permission and path, a data plan, then the file is opened.
    fn start_transfer(
        &mut self,
        verb: &'static str,
        arg: &[u8],
        kind: PreparedKind,
        open: impl FnOnce(VPath) -> Action,
    ) {
        let need = |p: &Permissions| match kind {
            PreparedKind::Download => p.read,
            _ => p.write,
        };
        let path = match self.authorize(need, Some(arg)) {
            Ok((_, p)) => p,
            Err(r) => return self.send(r),
        };
        // Path and permission first: a bad path is 550 whether or not a data connection is set
        // up. Nothing is opened for that (an upload would create the file).
        if matches!(self.data, DataPlan::None) {
            let (path, expect) = match kind {
                PreparedKind::Download => (path, Expect::File),
                _ => (path.parent(), Expect::Dir),
            };
            return self.wait_for(
                Action::Storage(StorageOp::Stat(path)),
                Step::Storage(Then::NoDataPlan(expect)),
            );
        }
        let prepared = Prepared {
            verb,
            arg: arg.to_vec(),
            kind,
        };
        self.wait_for(open(path), Step::Open(Box::new(prepared)));
    }

    /// The file or listing is open: check the data-protection rule, take the data plan, and
    /// start the transfer with its preliminary reply.
    fn opened_outcome(&mut self, prepared: Prepared, r: Result<Opened, FsError>, now: Instant) {
        let opened = match r {
            Ok(o) => o,
            Err(e) => return self.send(e.reply()),
        };
        let mut arg = prepared.arg;
        let (body, preliminary) = match prepared.kind {
            PreparedKind::Download => {
                let mode = if self.transfer_type == TransferType::Ascii {
                    "ASCII"
                } else {
                    "BINARY"
                };
                let mut text = format!("Opening {mode} mode data connection for ").into_bytes();
                text.extend_from_slice(&arg);
                text.extend_from_slice(format!(" ({} bytes).", opened.len).as_bytes());
                (Body::Download, Reply::new(ReplyCode::FILE_STATUS_OK, text))
            }
            PreparedKind::Upload => (
                Body::Upload,
                Reply::new(ReplyCode::FILE_STATUS_OK, "Ok to send data."),
            ),
            PreparedKind::Unique => {
                arg = opened.name.unwrap_or_default();
                let mut text = b"FILE: ".to_vec();
                text.extend_from_slice(&arg);
                (Body::Upload, Reply::new(ReplyCode::FILE_STATUS_OK, text))
            }
            PreparedKind::Listing(form) => {
                if form == ListForm::Machine && !opened.is_dir {
                    self.act(Action::DropOpened);
                    return self.reply(ReplyCode::PARAMETER_SYNTAX_ERROR, "Not a directory.");
                }
                let body = Body::Listing {
                    form,
                    facts: self.facts,
                    perms: self.perm_facts(),
                };
                let prelim = Reply::new(
                    ReplyCode::FILE_STATUS_OK,
                    "Here comes the directory listing.",
                );
                (body, prelim)
            }
        };
        let protect = self.security.prot() == ProtLevel::Private;
        if self.policy.tls.mode == TlsMode::Required && !protect {
            self.drop_data_plan();
            self.act(Action::DropOpened);
            self.out.push_back(Output::Note(Note::ClearDataRefused));
            return self.reply(
                ReplyCode::PROTECTION_REFUSED,
                "Data connections must be encrypted: use PBSZ 0 and PROT P.",
            );
        }
        let data = match std::mem::replace(&mut self.data, DataPlan::None) {
            DataPlan::None => {
                self.act(Action::DropOpened);
                return self.reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first.");
            }
            DataPlan::Passive { expires } if now >= expires => {
                self.act(Action::ClosePassive);
                self.act(Action::DropOpened);
                return self.reply(
                    ReplyCode::CANT_OPEN_DATA,
                    "Failed to establish data connection.",
                );
            }
            DataPlan::Passive { .. } => DataChannel::Passive,
            DataPlan::Active(addr) => DataChannel::Active(addr),
        };
        let path = match (&prepared.kind, self.audit_path.clone()) {
            // STOU: the directory was authorized; the file is the unique name in it.
            (PreparedKind::Unique, Some(dir)) => dir.join(&arg).ok(),
            (_, p) => p,
        };
        let spec = TransferSpec {
            verb: prepared.verb,
            path,
            arg,
            data,
            preliminary,
            body,
            ascii: self.transfer_type == TransferType::Ascii,
            protect,
            require_resumed: protect && self.policy.tls.require_reuse,
            require_close_notify: self.policy.tls.require_close_notify,
        };
        let running = Running {
            verb: prepared.verb,
            progress: 0,
            aborting: false,
            flooded: false,
        };
        self.wait_for(Action::Transfer(Box::new(spec)), Step::Transfer(running));
    }

    /// A line during a transfer or hash: ABOR stops it, STAT reports progress, anything else
    /// waits.
    pub(super) fn line_during_transfer(&mut self, ev: LineEvent) {
        let (running, done) = match &mut self.step {
            Step::Transfer(running) => (running, "transferred"),
            Step::Hash(running, _) => (running, "hashed"),
            _ => return,
        };
        if running.aborting || running.flooded {
            return;
        }
        if let LineEvent::Line(line) = &ev {
            match Command::parse(line) {
                Ok(Command::Abor) => {
                    running.aborting = true;
                    return self.act(Action::AbortTransfer);
                }
                Ok(Command::Stat(None)) => {
                    let lines = vec![
                        b"Status:".to_vec(),
                        format!(
                            " {} in progress, {} bytes {done}",
                            running.verb, running.progress
                        )
                        .into_bytes(),
                        b"End of status".to_vec(),
                    ];
                    // Not the transfer's reply: the transfer's audit note is still to come.
                    return self
                        .out
                        .push_back(Output::Reply(Reply::multi(ReplyCode::FILE_STATUS, lines)));
                }
                _ => {}
            }
        }
        if self.queued.len() >= MAX_QUEUED {
            running.flooded = true;
            return self.act(Action::AbortTransfer);
        }
        self.queued.push_back(ev);
    }

    // ---- hashes ----

    /// HASH and the `X` commands: read permission and path as for RETR (no data connection),
    /// then the file is opened and hashed like a download.
    fn cmd_hash(
        &mut self,
        verb: &'static str,
        arg: Vec<u8>,
        algorithm: HashAlgorithm,
        form: HashForm,
        range: Option<(u64, u64)>,
    ) {
        let path = match self.authorize(|p| p.read, Some(&arg)) {
            Ok((_, p)) => p,
            Err(r) => return self.send(r),
        };
        let (offset, end) = match range {
            Some((start, end)) => (start, Some(end)),
            None => (0, None),
        };
        let plan = HashPlan {
            verb,
            arg,
            algorithm,
            form,
            range,
        };
        self.wait_for(
            Action::OpenRead { path, offset, end },
            Step::OpenHash(Box::new(plan)),
        );
    }

    /// The file to hash is open: the range must lie within it (ProFTPD answers 501 too).
    fn hash_opened(&mut self, mut plan: Box<HashPlan>, r: Result<Opened, FsError>) {
        let beyond = || {
            Reply::new(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                "The range goes beyond the end of the file.",
            )
        };
        let opened = match r {
            Ok(o) => o,
            Err(FsError::BadOffset) => return self.send(beyond()),
            Err(e) => return self.send(e.reply()),
        };
        let (start, end) = plan.range.unwrap_or((0, opened.len));
        if end > opened.len {
            self.act(Action::DropOpened);
            return self.send(beyond());
        }
        plan.range = Some((start, end));
        let spec = HashSpec {
            verb: plan.verb,
            arg: plan.arg.clone(),
            path: self.audit_path.clone(),
            algorithm: plan.algorithm,
            start,
            end,
        };
        let running = Running {
            verb: plan.verb,
            progress: 0,
            aborting: false,
            flooded: false,
        };
        self.wait_for(Action::Hash(Box::new(spec)), Step::Hash(running, plan));
    }

    /// A hash's reply: the digest in the command's form, or what a transfer that ended the same
    /// way answers (426 and 226 after ABOR).
    fn hash_outcome(
        &mut self,
        running: Running,
        plan: &HashPlan,
        r: Result<HashDone, TransferEnd>,
    ) {
        let done = match r {
            Ok(done) => done,
            Err(end) => return self.transfer_outcome(running, end),
        };
        match plan.form {
            HashForm::Draft => {
                let (start, end) = plan.range.unwrap_or_default();
                let hex = crate::hash::hex(&done.digest, false);
                let mut text =
                    format!("{} {start}-{end} {hex} ", plan.algorithm.name()).into_bytes();
                text.extend_from_slice(&plan.arg);
                self.reply(ReplyCode::FILE_STATUS, text);
            }
            HashForm::X => {
                let hex = crate::hash::hex(&done.digest, true);
                self.reply(ReplyCode::FILE_ACTION_OK, hex);
            }
        }
    }

    fn transfer_outcome(&mut self, running: Running, end: TransferEnd) {
        let (code, text) = match end {
            TransferEnd::DataFailed(why) => {
                return self.reply(ReplyCode::CANT_OPEN_DATA, why.text());
            }
            TransferEnd::Done { .. } => (ReplyCode::CLOSING_DATA, "Transfer complete."),
            TransferEnd::NoConnection => (
                ReplyCode::CANT_OPEN_DATA,
                "Failed to establish data connection.",
            ),
            TransferEnd::LocalSetup | TransferEnd::Local => {
                (ReplyCode::LOCAL_ERROR, "Local error in processing.")
            }
            TransferEnd::TlsFailed => (
                ReplyCode::CANT_OPEN_DATA,
                "TLS handshake on the data connection failed.",
            ),
            TransferEnd::TlsTimedOut => (
                ReplyCode::CANT_OPEN_DATA,
                "TLS handshake on the data connection timed out.",
            ),
            TransferEnd::NotResumed => (
                ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                "TLS session reuse required: the data connection must resume the control connection's TLS session.",
            ),
            TransferEnd::Wire => (
                ReplyCode::TRANSFER_ABORTED,
                "Connection closed; transfer aborted.",
            ),
            TransferEnd::Stalled => (
                ReplyCode::TRANSFER_ABORTED,
                "Data connection stalled; transfer aborted.",
            ),
            TransferEnd::Truncated => (
                ReplyCode::TRANSFER_ABORTED,
                "Data connection closed without TLS close_notify; upload incomplete.",
            ),
            TransferEnd::NoSpace => (
                ReplyCode::INSUFFICIENT_STORAGE,
                "Insufficient storage space.",
            ),
            TransferEnd::Exceeded { quota, undone } => {
                let limit = if quota {
                    "Quota exceeded"
                } else {
                    "File too large"
                };
                let text = format!("{limit}; {}.", undone.said());
                return self.reply(ReplyCode::EXCEEDED_STORAGE, &text);
            }
            TransferEnd::Commit(e) => return self.send(e.reply()),
            TransferEnd::Aborted if running.flooded => {
                self.reply(
                    ReplyCode::SERVICE_UNAVAILABLE,
                    "Too many commands during a transfer.",
                );
                return self.close();
            }
            TransferEnd::Aborted => {
                self.reply(ReplyCode::TRANSFER_ABORTED, "Transfer aborted.");
                (ReplyCode::CLOSING_DATA, "ABOR successful.")
            }
            TransferEnd::ControlLost => return self.close(),
            TransferEnd::Kicked => return self.kicked(),
        };
        self.reply(code, text);
    }

    // ---- files and directories ----

    fn cmd_rnto(&mut self, pending: Pending, arg: &[u8]) {
        let Pending::RenameFrom(from) = pending else {
            return self.reply(ReplyCode::BAD_SEQUENCE, "RNFR required first.");
        };
        // Replacing an existing target destroys it: only for users who may delete.
        let replace = matches!(&self.login, Login::LoggedIn(u) if u.permissions.delete);
        self.storage(
            |p| p.rename,
            Some(arg),
            |to| {
                let ok = done(ReplyCode::FILE_ACTION_OK, "Rename successful.");
                (StorageOp::Rename { from, to, replace }, ok)
            },
        );
    }

    fn cmd_rmd(&mut self, arg: &[u8]) {
        let path = match self.authorize(|p| p.delete, Some(arg)) {
            Ok((_, p)) => p,
            Err(r) => return self.send(r),
        };
        if path.is_root() || self.cwd.components().count() >= 1 && self.cwd == path {
            return self.send(denied());
        }
        let ok = done(
            ReplyCode::FILE_ACTION_OK,
            "Remove directory operation successful.",
        );
        self.wait_for(Action::Storage(StorageOp::Rmdir(path)), Step::Storage(ok));
    }

    fn cmd_site(&mut self, site: Site) {
        match site {
            Site::Help => self.send(features::site_help(self.policy.capabilities)),
            Site::Chmod { mode, path: arg } => {
                if !self.policy.capabilities.chmod {
                    return self.send(FsError::Unsupported.reply());
                }
                self.storage(
                    |p| p.write,
                    Some(&arg),
                    |path| {
                        let ok = done(ReplyCode::OK, "SITE CHMOD command ok.");
                        (StorageOp::Chmod { path, mode }, ok)
                    },
                );
            }
            Site::Diag => self.wait_for(Action::Diagnose, Step::Diagnose),
            Site::Unknown(_) => self.reply(ReplyCode::SYNTAX_ERROR, "Unknown SITE command."),
        }
    }

    // ---- information ----

    fn cmd_stat(&mut self) {
        let lines = vec![
            b"Wharf FTP server status:".to_vec(),
            format!("     Connected to {}", self.peer).into_bytes(),
            format!("     Logged in as {}", self.user_name().unwrap_or("-")).into_bytes(),
            format!(
                "     TYPE: {}",
                if self.transfer_type == TransferType::Ascii {
                    "ASCII"
                } else {
                    "BINARY"
                }
            )
            .into_bytes(),
            b"     No data connection".to_vec(),
            b"End of status".to_vec(),
        ];
        self.send(Reply::multi(ReplyCode::SYSTEM_STATUS, lines));
    }

    fn cmd_help(&mut self, verb: Option<Vec<u8>>) {
        match verb {
            None => {
                let mut lines = vec![b"The following commands are recognized.".to_vec()];
                for row in HELP_VERBS.chunks(8) {
                    let mut line = String::new();
                    for verb in row {
                        line.push_str(&format!(" {verb:<5}"));
                    }
                    lines.push(line.into_bytes());
                }
                lines.push(b"Help OK.".to_vec());
                self.send(Reply::multi(ReplyCode::HELP, lines));
            }
            Some(verb) => {
                let upper = verb.to_ascii_uppercase();
                if HELP_VERBS.iter().any(|v| v.as_bytes() == upper.as_slice()) {
                    let mut text = upper;
                    text.extend_from_slice(b" is supported.");
                    self.reply(ReplyCode::HELP, text);
                } else {
                    self.reply(ReplyCode::NOT_IMPLEMENTED, "Unknown command.");
                }
            }
        }
    }

    // ---- storage calls and their outcomes ----

    /// A command starts: its reply's audit note is about `verb`.
    fn audit_start(&mut self, verb: &'static str) {
        self.audit_verb = Some(verb);
        self.audit_path = None;
    }

    /// Checks login and one permission, resolves a path argument (none: the current directory).
    /// The path is noted for the audit log, refused or not.
    fn authorize(
        &mut self,
        need: impl Fn(&Permissions) -> bool,
        arg: Option<&[u8]>,
    ) -> Result<(Permissions, VPath), Reply> {
        let Login::LoggedIn(user) = &self.login else {
            return Err(Reply::new(
                ReplyCode::NOT_LOGGED_IN,
                "Please login with USER and PASS.",
            ));
        };
        let permissions = user.permissions;
        let path = match arg {
            Some(a) => self.cwd.join(a).map_err(|e| {
                Reply::new(ReplyCode::FILE_UNAVAILABLE, format!("Invalid path: {e}."))
            })?,
            None => self.cwd.clone(),
        };
        self.audit_path = Some(path.clone());
        if !need(&permissions) {
            return Err(denied());
        }
        Ok((permissions, path))
    }

    /// A storage command: authorize, then ask for `op` and wait for its result.
    fn storage(
        &mut self,
        need: impl Fn(&Permissions) -> bool,
        arg: Option<&[u8]>,
        op: impl FnOnce(VPath) -> (StorageOp, Then),
    ) {
        match self.authorize(need, arg) {
            Ok((_, path)) => {
                let (op, then) = op(path);
                self.wait_for(Action::Storage(op), Step::Storage(then));
            }
            Err(r) => self.send(r),
        }
    }

    fn storage_outcome(&mut self, then: Then, r: Result<StorageDone, FsError>) {
        let done = match r {
            Ok(d) => d,
            Err(e) => return self.send(e.reply()),
        };
        let info = match done {
            StorageDone::Info(info) => Some(info),
            _ => None,
        };
        match then {
            Then::Done { code, text } => self.reply(code, text),
            Then::Cwd(path) => match info {
                Some(i) if i.kind == FileKind::Dir => {
                    self.cwd = path;
                    self.reply(ReplyCode::FILE_ACTION_OK, "Directory successfully changed.");
                }
                _ => self.reply(ReplyCode::FILE_UNAVAILABLE, "Not a directory."),
            },
            Then::Rnfr(path) => {
                self.pending = Pending::RenameFrom(path);
                self.reply(ReplyCode::PENDING_FURTHER_INFO, "Ready for RNTO.");
            }
            Then::Mkd(path) => {
                let mut text = quote_path(&path.to_bytes());
                text.extend_from_slice(b" created.");
                self.reply(ReplyCode::PATH_CREATED, text);
            }
            Then::Size => match info {
                Some(i) if i.kind == FileKind::File => {
                    self.reply(ReplyCode::FILE_STATUS, i.size.to_string())
                }
                _ => self.reply(ReplyCode::FILE_UNAVAILABLE, "Not a plain file."),
            },
            Then::Mdtm => match info {
                Some(i) if i.kind == FileKind::File => {
                    let t = UtcTime::from_unix(i.mtime).to_timeval();
                    self.reply(ReplyCode::FILE_STATUS, t);
                }
                _ => self.reply(ReplyCode::FILE_UNAVAILABLE, "Not a plain file."),
            },
            Then::Mfmt(m) => {
                let (timeval, arg) = *m;
                let mut text = format!("Modify={timeval}; ").into_bytes();
                text.extend_from_slice(&arg);
                self.reply(ReplyCode::FILE_STATUS, text);
            }
            Then::Mlst(path) => {
                let Some(info) = info else {
                    return self.send(FsError::Io.reply());
                };
                let info = FileInfo {
                    name: path.to_bytes(),
                    ..info
                };
                let mut entry = b" ".to_vec();
                listing::push_mlsx_entry(
                    &mut entry,
                    &info,
                    self.facts,
                    self.perm_facts(),
                    MlsxRole::Entry,
                );
                let mut first = b"Listing ".to_vec();
                first.extend_from_slice(&path.to_bytes());
                self.send(Reply::multi(
                    ReplyCode::FILE_ACTION_OK,
                    vec![first, entry, b"End".to_vec()],
                ));
            }
            Then::StatPath => self.send(FsError::Io.reply()),
            Then::NoDataPlan(expect) => match (expect, info.map(|i| i.kind)) {
                (Expect::File, Some(kind)) if kind != FileKind::File => {
                    self.reply(ReplyCode::FILE_UNAVAILABLE, "Not a plain file.")
                }
                (Expect::Dir, Some(kind)) if kind != FileKind::Dir => {
                    self.reply(ReplyCode::FILE_UNAVAILABLE, "Not a directory.")
                }
                _ => self.reply(ReplyCode::CANT_OPEN_DATA, "Use PORT or PASV first."),
            },
        }
    }

    fn stat_path_outcome(&mut self, entries: Vec<FileInfo>, now: i64) {
        let mut lines = vec![b"Status follows:".to_vec()];
        for e in &entries {
            let mut l = Vec::new();
            listing::push_list_line(&mut l, e, now);
            l.truncate(l.len().saturating_sub(2));
            lines.push(l);
        }
        lines.push(b"End of status".to_vec());
        self.send(Reply::multi(ReplyCode::FILE_STATUS, lines));
    }

    fn perm_facts(&self) -> PermFacts {
        match &self.login {
            Login::LoggedIn(u) => {
                let p = u.permissions;
                PermFacts {
                    read: p.read,
                    write: p.write,
                    delete: p.delete,
                    mkdir: p.mkdir,
                    rename: p.rename,
                }
            }
            _ => PermFacts::default(),
        }
    }

    /// Routes an outcome to the step that waited for it. An outcome the step did not ask for is
    /// a driver bug: answered as a local error, never a panic.
    pub(super) fn outcome(&mut self, step: Step, outcome: Outcome, now: Instant) {
        match (step, outcome) {
            (Step::Login { name, answer_at }, Outcome::Login(r)) => {
                self.login_outcome(name.into_vec(), answer_at, r, now)
            }
            (
                Step::Storage(Then::StatPath),
                Outcome::Storage(Ok(StorageDone::Entries { entries, now: wall })),
            ) => self.stat_path_outcome(entries, wall),
            (Step::Storage(then), Outcome::Storage(r)) => self.storage_outcome(then, r),
            (Step::Passive { pasv }, Outcome::Passive(r)) => self.passive_outcome(pasv, r, now),
            (Step::Tls, Outcome::Tls(r)) => self.tls_outcome(r.is_ok()),
            (Step::Open(prepared), Outcome::Opened(r)) => self.opened_outcome(*prepared, r, now),
            (Step::Transfer(running), Outcome::Transfer(end)) => {
                self.transfer_outcome(running, end)
            }
            (Step::OpenHash(plan), Outcome::Opened(r)) => self.hash_opened(plan, r),
            (Step::Hash(running, plan), Outcome::Hashed(r)) => self.hash_outcome(running, &plan, r),
            (Step::Diagnose, Outcome::Diagnosis(lines)) => self.send(diagnosis(lines)),
            (Step::Host { name }, Outcome::Host(Ok(greeting))) => {
                self.host = Some(name);
                self.reply(ReplyCode::READY, greeting);
            }
            (Step::Host { .. }, Outcome::Host(Err(why))) => {
                self.reply(ReplyCode::PARAMETER_NOT_IMPLEMENTED, why)
            }
            (Step::Closed, _) => self.step = Step::Closed,
            (_, _) => self.send(FsError::Io.reply()),
        }
    }
}

/// SITE DIAG's reply: each fact on a line of its own, indented (a line of a multi-line reply
/// must not look like a reply's last line), and nothing that would break the reply.
fn diagnosis(lines: Vec<String>) -> Reply {
    let mut out = Vec::with_capacity(lines.len() + 2);
    out.push(b"Diagnosis of this session, as the server sees it:".to_vec());
    for line in lines {
        let clean: Vec<u8> = line
            .bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b })
            .collect();
        let mut indented = Vec::with_capacity(clean.len() + 1);
        indented.push(b' ');
        indented.extend_from_slice(&clean);
        out.push(indented);
    }
    out.push(b"End of diagnosis.".to_vec());
    Reply::multi(ReplyCode::OK, out)
}

/// Success of a storage call is this reply.
fn done(code: ReplyCode, text: &'static str) -> Then {
    Then::Done { code, text }
}

/// The longest user name taken (bytes): longer than any directory's or panel's names.
pub const MAX_USER_NAME: usize = 256;

/// Whether `name` could be an account's: 1 to [`MAX_USER_NAME`] bytes, none of them a control
/// byte (below 0x20, or DEL).
pub fn plausible_user_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= MAX_USER_NAME && !name.iter().any(|&b| b < 0x20 || b == 0x7f)
}
