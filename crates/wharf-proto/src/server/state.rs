//! The session's state, in types: each holds only what its state needs.

use std::net::SocketAddr;
use std::time::Instant;

use crate::path::VPath;
use crate::{HashAlgorithm, ProtLevel};

use super::policy::Permissions;

/// A logged-in user as the protocol sees it: a name and rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub permissions: Permissions,
}

/// What the driver found for USER/PASS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginResult {
    Ok(User),
    /// Wrong name or password (which, the client is never told).
    Rejected,
    /// The user database or the storage backend cannot be reached: the session ends with 421,
    /// never a login.
    Unavailable,
    /// The credentials were right but the home cannot be opened.
    HomeUnavailable,
    /// The client's address may not log in now (banned after failed logins, or too many logins
    /// of it waiting): 421, and the session ends, without the password looked at.
    AddressRefused,
    /// The user has as many sessions as it may (530; the session may log in as another).
    TooManySessions,
}

/// Login progress.
#[derive(Debug)]
pub(super) enum Login {
    Fresh,
    NeedPassword(Vec<u8>),
    LoggedIn(User),
}

/// What one command left for the very next one: REST's offset or RNFR's path. Taken at the
/// start of every command, so it never outlives the command after it.
#[derive(Debug, Default)]
pub(super) enum Pending {
    #[default]
    None,
    Rest(u64),
    RenameFrom(VPath),
}

/// How the next transfer gets its data connection. Set by PASV/EPSV/PORT/EPRT, consumed by the
/// transfer command that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DataPlan {
    None,
    /// The driver holds a listener; it is closed when `expires` passes unused.
    Passive {
        expires: Instant,
    },
    Active(SocketAddr),
}

/// The control connection's protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Security {
    Plain,
    /// After AUTH TLS or on an implicit-TLS port: PBSZ seen (RFC 4217: before PROT), and the
    /// data protection level.
    Tls {
        pbsz: bool,
        prot: ProtLevel,
    },
}

impl Security {
    pub(super) fn prot(self) -> ProtLevel {
        match self {
            Security::Plain => ProtLevel::Clear,
            Security::Tls { prot, .. } => prot,
        }
    }
}

/// What the session is waiting for.
#[derive(Debug)]
pub(super) enum Step {
    /// A command, since `since` (the idle timeout counts from there).
    Idle { since: Instant },
    /// The result of [`super::Action::Login`]; a failure is answered at `answer_at`.
    Login { name: Box<[u8]>, answer_at: Instant },
    /// A refused login, answered at `answer_at` (the same time after PASS whoever the user).
    LoginRefused { answer_at: Instant },
    /// A storage call's result, and what to do with it.
    Storage(Then),
    /// A passive listener.
    Passive { pasv: bool },
    /// The control connection's TLS handshake.
    Tls,
    /// A file or listing to be opened for a transfer.
    Open(Box<Prepared>),
    /// A running transfer.
    Transfer(Running),
    /// A file to be opened for a hash command.
    OpenHash(Box<HashPlan>),
    /// A running hash: ABOR, STAT and queued commands as during a transfer.
    Hash(Running, Box<HashPlan>),
    /// The driver's description of the session (SITE DIAG).
    Diagnose,
    /// The driver's answer to HOST `name`.
    Host { name: Vec<u8> },
    /// The connection is to be closed; nothing more happens.
    Closed,
}

/// What a storage call's result is for.
#[derive(Debug)]
pub(super) enum Then {
    Cwd(VPath),
    Rnfr(VPath),
    Mkd(VPath),
    Mlst(VPath),
    Size,
    Mdtm,
    StatPath,
    /// MFMT: the reply repeats the time and the path as sent.
    Mfmt(Box<(String, Vec<u8>)>),
    /// A transfer command came before PORT/PASV: a path that is wrong is 550 (the file is
    /// what is wrong), a path that is right is 425.
    NoDataPlan(Expect),
    /// Success is this reply.
    Done {
        code: crate::ReplyCode,
        text: &'static str,
    },
}

/// What a path must be for its transfer command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// RETR: a plain file.
    File,
    /// The directory of an upload or of a LIST pattern.
    Dir,
    /// LIST/NLST/MLSD of a name: anything that exists.
    Any,
}

/// A transfer command waiting for its file or listing.
#[derive(Debug)]
pub(super) struct Prepared {
    pub verb: &'static str,
    pub arg: Vec<u8>,
    pub kind: PreparedKind,
}

#[derive(Debug)]
pub(super) enum PreparedKind {
    Download,
    Upload,
    Unique,
    Listing(super::action::ListForm),
}

/// What a hash command asked for, until its reply.
#[derive(Debug)]
pub(super) struct HashPlan {
    /// HASH or the `X` verb: for STAT and the log.
    pub verb: &'static str,
    /// The path as the client sent it: HASH's reply repeats it.
    pub arg: Vec<u8>,
    pub algorithm: HashAlgorithm,
    pub form: HashForm,
    /// The bytes `start..end`: as asked (an `X` command's range), then, once the file is
    /// open, the range hashed (the whole file when none was asked).
    pub range: Option<(u64, u64)>,
}

/// The reply form of a hash command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HashForm {
    /// `213 SHA-256 0-12 <hex> <path>` (draft-bryan-ftpext-hash).
    Draft,
    /// `250 <HEX>`, as ProFTPD answers XSHA256 and its kin.
    X,
}

/// A running transfer (or hash).
#[derive(Debug)]
pub(super) struct Running {
    pub verb: &'static str,
    /// Bytes moved so far, as the driver last said.
    pub progress: u64,
    /// ABOR asked for the stop.
    pub aborting: bool,
    /// Too many commands arrived during the transfer: the session closes after it.
    pub flooded: bool,
}
