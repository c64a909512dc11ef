//! What the session asks the driver to do, and what the driver reports back.

use std::net::{Ipv4Addr, SocketAddr};

pub use crate::diag::DataFailure;

use crate::HashAlgorithm;
use crate::listing::{FactSet, FileInfo, PermFacts};
use crate::path::VPath;
use crate::reply::{Reply, ReplyCode};

use super::state::LoginResult;

/// Work for the driver. See [`Action::needs_outcome`].
#[derive(Debug)]
pub enum Action {
    /// Check the credentials (with the connection's address and TLS state, which the driver
    /// knows) and open the user's home; `host` is the name the client gave with HOST, if it
    /// did. Outcome: [`Outcome::Login`].
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
        host: Option<Vec<u8>>,
    },
    /// A storage call on the logged-in user's home. Outcome: [`Outcome::Storage`].
    Storage(StorageOp),
    /// Open a passive listener (closing any earlier one). `pasv`: the reply needs the IPv4
    /// address to announce. `tls`: data is protected (PROT P), so the connection gets its TLS
    /// handshake as soon as it arrives, whichever side speaks first (some clients start it
    /// before they send the transfer command). Outcome: [`Outcome::Passive`].
    OpenPassive { pasv: bool, tls: bool },
    /// Close the passive listener, if any. No outcome.
    ClosePassive,
    /// Discard anything buffered from the client, then run the TLS handshake on the control
    /// connection (the 234 reply is already out). `discarded`: commands the session dropped,
    /// for the log. Outcome: [`Outcome::Tls`].
    StartTls { discarded: usize },
    /// Open a file to download (or hash) from `offset`, and keep it for the transfer. With
    /// `end`, no byte from `end` on will be read (a hash of a range), so a backend may fetch
    /// less; the session checks `end` against the length itself. Outcome: [`Outcome::Opened`].
    OpenRead {
        path: VPath,
        offset: u64,
        end: Option<u64>,
    },
    /// Open a file to upload into, and keep it. Outcome: [`Outcome::Opened`].
    OpenWrite { path: VPath, mode: WriteMode },
    /// Create a new file with a name of the driver's choosing in `dir` (STOU), and keep it.
    /// Outcome: [`Outcome::Opened`] with the name.
    OpenUnique { dir: VPath },
    /// Open a directory (or a file) to list, and keep it. Outcome: [`Outcome::Opened`].
    ///
    /// With `glob`, the last component of `path` is a pattern (LIST/NLST `*.dat`): when no entry
    /// of that name exists, the entries of the parent directory that match it are listed, each
    /// name after the `glob` prefix (NLST keeps the directory part the client wrote, so that
    /// `mget` can fetch what it lists); none matching is [`FsError::NotFound`].
    OpenList { path: VPath, glob: Option<Vec<u8>> },
    /// The opened file or listing will not be used: drop it (an upload is abandoned). No outcome.
    DropOpened,
    /// Run a transfer on the opened file or listing. Outcome: [`Outcome::Transfer`].
    Transfer(Box<TransferSpec>),
    /// Hash the opened file (HASH, XSHA256 and its kin). Run like a transfer: the driver
    /// keeps reading the control connection, and stops on [`Action::AbortTransfer`]. Outcome:
    /// [`Outcome::Hashed`].
    Hash(Box<HashSpec>),
    /// The user is logged out (REIN, a new USER, AUTH): forget its home. No outcome.
    Logout,
    /// Stop the running transfer or hash (ABOR, or a flood of commands). The driver then
    /// reports [`TransferEnd::Aborted`].
    AbortTransfer,
    /// Close the control connection (after the replies before it). No outcome.
    Close,
    /// Describe this session as the server sees it (SITE DIAG): one line per fact, each
    /// `key: value`. Outcome: [`Outcome::Diagnosis`].
    Diagnose,
    /// HOST (RFC 7151) before login: choose the virtual host `name` (a domain name, or an
    /// address in brackets). Outcome: [`Outcome::Host`].
    ChooseHost { name: Vec<u8> },
}

impl Action {
    /// Whether the session waits for an [`Outcome`] of this action.
    pub fn needs_outcome(&self) -> bool {
        !matches!(
            self,
            Action::ClosePassive
                | Action::DropOpened
                | Action::Logout
                | Action::AbortTransfer
                | Action::Close
        )
    }
}

/// A storage call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOp {
    /// Facts about a path. Done: [`StorageDone::Info`].
    Stat(VPath),
    /// A path's facts and, for a directory, its entries (STAT with a path). Done:
    /// [`StorageDone::Entries`].
    StatList(VPath),
    Mkdir(VPath),
    Rmdir(VPath),
    Delete(VPath),
    /// An existing target is replaced only when `replace` (the user may delete).
    Rename {
        from: VPath,
        to: VPath,
        replace: bool,
    },
    SetMtime {
        path: VPath,
        unix_secs: i64,
    },
    /// Permission bits; never setuid, setgid or sticky.
    Chmod {
        path: VPath,
        mode: u32,
    },
}

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: a new file is written in place (a broken upload stays, for resuming); an existing
    /// one is replaced atomically when the upload completes.
    Replace,
    /// REST n + STOR: write into the existing file from offset n.
    Resume(u64),
    /// APPE: append, creating the file if needed.
    Append,
    /// STOU: a new file that must not exist.
    CreateNew,
}

/// Where the data connection of a transfer comes from (set up by PASV/EPSV or PORT/EPRT, and
/// consumed by the transfer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChannel {
    /// Accept on the passive listener the driver holds, from the control peer's address only
    /// (unless the policy allows any).
    Passive,
    /// Connect to this address (already checked against the client's).
    Active(SocketAddr),
}

/// The listing forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListForm {
    /// LIST: `ls -l` lines.
    Long,
    /// NLST: bare names.
    Names,
    /// MLSD: RFC 3659 facts.
    Machine,
}

/// What a transfer moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The opened file, to the client.
    Download,
    /// From the client, into the opened file; committed when complete.
    Upload,
    /// The opened listing, formatted as `form` says.
    Listing {
        form: ListForm,
        facts: FactSet,
        perms: PermFacts,
    },
}

/// Everything the driver needs to run one transfer.
#[derive(Debug)]
pub struct TransferSpec {
    /// RETR, STOR, APPE, STOU, LIST, NLST or MLSD: for the log.
    pub verb: &'static str,
    /// The path as the client sent it: for the log.
    pub arg: Vec<u8>,
    /// The absolute virtual path (a STOU's unique file; a listing's directory): for the log.
    pub path: Option<VPath>,
    pub data: DataChannel,
    /// Sent once the data connection is made, before any TLS handshake on it (clients such as
    /// Python's ftplib start theirs only after it).
    pub preliminary: Reply,
    pub body: Body,
    /// TYPE A: convert line endings.
    pub ascii: bool,
    /// PROT P: TLS on the data connection.
    pub protect: bool,
    /// The data connection's TLS handshake must resume a session of this control connection.
    pub require_resumed: bool,
    /// An upload over TLS must end with close_notify.
    pub require_close_notify: bool,
}

/// Everything the driver needs to hash one opened file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashSpec {
    /// HASH or the `X` verb: for the log.
    pub verb: &'static str,
    /// The path as the client sent it: for the log.
    pub arg: Vec<u8>,
    /// The absolute virtual path: for the log.
    pub path: Option<VPath>,
    pub algorithm: HashAlgorithm,
    /// The bytes `start..end` of the file; the opened file is positioned at `start`.
    pub start: u64,
    pub end: u64,
}

/// A hash that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashDone {
    /// The digest's bytes (CRC32: its four bytes, most significant first).
    pub digest: Vec<u8>,
}

/// Why a PORT/EPRT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveRefusal {
    /// Not the control connection's peer address (a client behind NAT, or a bounce attempt).
    ForeignAddress,
    /// A port below 1024.
    PrivilegedPort,
}

impl ActiveRefusal {
    pub fn name(self) -> &'static str {
        match self {
            ActiveRefusal::ForeignAddress => "a foreign address",
            ActiveRefusal::PrivilegedPort => "a privileged port",
        }
    }
}

/// Results of actions.
#[derive(Debug)]
pub enum Outcome {
    Login(LoginResult),
    Storage(Result<StorageDone, FsError>),
    /// `Err`: no port could be opened.
    Passive(Result<PassiveOpened, ()>),
    /// `Err`: the handshake failed; the connection is unusable.
    Tls(Result<(), ()>),
    Opened(Result<Opened, FsError>),
    Transfer(TransferEnd),
    /// A hash's digest, or how it ended early (as a transfer would: aborted, the control
    /// connection lost, kicked, a local read error).
    Hashed(Result<HashDone, TransferEnd>),
    /// The lines of SITE DIAG's reply.
    Diagnosis(Vec<String>),
    /// HOST: `Ok` with the host's greeting (220), `Err` with why it is not served (504).
    Host(Result<String, String>),
}

/// A storage call that worked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageDone {
    Done,
    Info(FileInfo),
    /// The entries of STAT's listing (the path's own facts for a file), and the wall-clock time
    /// (Unix seconds) that decides `ls -l`'s date form.
    Entries {
        entries: Vec<FileInfo>,
        now: i64,
    },
}

/// A passive listener is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassiveOpened {
    pub port: u16,
    /// The IPv4 address to announce in a 227 reply (asked for with `pasv`).
    pub announce: Option<Ipv4Addr>,
}

/// A file or listing is open and held by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The file's length (0 for an upload or a listing).
    pub len: u64,
    /// A listing of a directory (not of a single file).
    pub is_dir: bool,
    /// The name chosen for [`Action::OpenUnique`].
    pub name: Option<Vec<u8>>,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferEnd {
    /// All bytes moved (and an upload committed).
    Done {
        bytes: u64,
    },
    /// No data connection: nobody connected to the passive port in time, or the active
    /// connection failed.
    NoConnection,
    /// No data connection, and the driver knows why: the 425 says it, so that any client's
    /// log shows where the data connection broke.
    DataFailed(DataFailure),
    /// The driver could not set up TLS for the data connection.
    LocalSetup,
    TlsFailed,
    TlsTimedOut,
    /// The data connection's TLS did not resume the control connection's session.
    NotResumed,
    /// The data connection broke.
    Wire,
    Stalled,
    /// A TLS upload ended without close_notify.
    Truncated,
    NoSpace,
    /// The upload went over the user's quota (`true`) or file size limit; `undone` says what
    /// became of the file.
    Exceeded {
        quota: bool,
        undone: Undone,
    },
    /// Reading or writing the local file failed.
    Local,
    /// Making a complete upload visible failed.
    Commit(FsError),
    /// Stopped on [`Action::AbortTransfer`].
    Aborted,
    /// The control connection is gone: nobody to reply to.
    ControlLost,
    /// The administrator ended the session (421, then the connection is closed).
    Kicked,
}

/// A storage failure, as the protocol sees it. The one mapping to replies is
/// [`FsError::reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FsError {
    NotFound,
    PermissionDenied,
    /// The path (through `..` or a symlink) leads out of the user's root.
    OutsideRoot,
    NotAFile,
    NotADirectory,
    AlreadyExists,
    NotEmpty,
    NoSpace,
    InvalidName,
    /// A restart offset beyond the end of the file.
    BadOffset,
    /// The backend cannot do this.
    Unsupported,
    /// The backend is unreachable for now.
    Unavailable,
    /// The user's quota (bytes or files) is used up.
    QuotaExceeded,
    /// The file would be larger than the user may store.
    TooLarge,
    /// Any other failure.
    Io,
}

impl FsError {
    /// The one place where storage errors become replies.
    pub fn reply(self) -> Reply {
        let (code, text) = match self {
            FsError::NotFound => (ReplyCode::FILE_UNAVAILABLE, "No such file or directory."),
            FsError::PermissionDenied => (ReplyCode::FILE_UNAVAILABLE, "Permission denied."),
            FsError::OutsideRoot => (ReplyCode::FILE_UNAVAILABLE, "Path is outside the root."),
            FsError::NotAFile => (ReplyCode::FILE_UNAVAILABLE, "Not a plain file."),
            FsError::NotADirectory => (ReplyCode::FILE_UNAVAILABLE, "Not a directory."),
            FsError::AlreadyExists => (ReplyCode::FILE_UNAVAILABLE, "File exists."),
            FsError::NotEmpty => (ReplyCode::FILE_UNAVAILABLE, "Directory not empty."),
            FsError::NoSpace => (
                ReplyCode::INSUFFICIENT_STORAGE,
                "Insufficient storage space.",
            ),
            FsError::InvalidName => (ReplyCode::BAD_FILE_NAME, "File name not allowed."),
            FsError::QuotaExceeded => (ReplyCode::EXCEEDED_STORAGE, "Quota exceeded."),
            FsError::TooLarge => (ReplyCode::EXCEEDED_STORAGE, "File too large."),
            FsError::BadOffset => (ReplyCode(554), "Invalid REST parameter."),
            FsError::Unsupported => (
                ReplyCode::NOT_IMPLEMENTED,
                "Not supported by this server's storage.",
            ),
            FsError::Unavailable => (
                ReplyCode::LOCAL_ERROR,
                "Storage unavailable; try again later.",
            ),
            FsError::Io => (ReplyCode::LOCAL_ERROR, "Local error in processing."),
        };
        Reply::new(code, text)
    }
}

/// Something worth a line in the log that only the session sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A command was parsed and is dispatched (for a debug log).
    Command { verb: &'static str },
    /// PORT/EPRT refused (RFC 2577).
    RefusedActive {
        verb: &'static str,
        target: SocketAddr,
        reason: ActiveRefusal,
    },
    /// A passive listener nobody used was closed after the accept timeout.
    PassiveExpired,
    /// A login was refused (the name as sent).
    LoginFailed { user: Vec<u8> },
    /// The data connection must be encrypted but PROT P was not given (521).
    ClearDataRefused,
    /// A command's final reply, for the audit log: every refusal (4xx/5xx) and every change
    /// (DELE, RMD, MKD, RNFR, RNTO, SITE, MFMT). Transfers are logged by the driver.
    Outcome {
        /// The command (`?` for a line that did not parse).
        verb: &'static str,
        /// The absolute virtual path the command named, when it named one.
        path: Option<VPath>,
        code: u16,
    },
}

/// What a refused upload (over quota or size) left of its file: always the file as it was
/// before the command, said in the 552.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undone {
    /// The upload created the file: it is gone.
    Removed,
    /// A resumed or appended file: cut back to its earlier length.
    CutBack(u64),
    /// A file resumed from before its end: cut back to its earlier length `len`, the bytes from
    /// `from` on as the client sent them.
    Rewritten { from: u64, len: u64 },
    /// Nothing was changed (a replacement, or a backend that stores only at the end).
    Unchanged,
}

impl Undone {
    /// The second half of the 552's text.
    pub fn said(self) -> String {
        match self {
            Undone::Removed => "the new file was removed".to_string(),
            Undone::CutBack(n) => format!("the file was cut back to its earlier {n} bytes"),
            Undone::Rewritten { from, len } => format!(
                "the file was cut back to its earlier {len} bytes (from byte {from} on as this upload sent them)"
            ),
            Undone::Unchanged => "the file is as it was before".to_string(),
        }
    }
}
