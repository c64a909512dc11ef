//! The server's rules as data ([`Policy`], the same for every session of a server), and the one
//! gate every command passes before dispatch.

use std::time::Duration;

use crate::command::Command;
use crate::reply::{Reply, ReplyCode};

use super::Session;
use super::features::Capabilities;
use super::state::Login;

/// When TLS is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// No AUTH TLS (502), no implicit listener.
    #[default]
    Off,
    /// Clients choose: clear or TLS.
    Optional,
    /// USER before AUTH TLS gets 530; data connections need PROT P (521).
    Required,
}

impl TlsMode {
    pub fn parse(text: &str) -> Option<TlsMode> {
        match text {
            "off" => Some(TlsMode::Off),
            "optional" => Some(TlsMode::Optional),
            "required" => Some(TlsMode::Required),
            _ => None,
        }
    }

    /// The name [`TlsMode::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Off => "off",
            TlsMode::Optional => "optional",
            TlsMode::Required => "required",
        }
    }
}

/// The TLS rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsPolicy {
    pub mode: TlsMode,
    /// A data connection must resume a TLS session of its control connection.
    pub require_reuse: bool,
    /// An upload over TLS must end with close_notify to count as complete.
    pub require_close_notify: bool,
}

/// What a logged-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions {
    pub read: bool,
    pub write: bool,
    pub delete: bool,
    pub mkdir: bool,
    pub rename: bool,
}

impl Permissions {
    pub const READ_ONLY: Permissions = Permissions {
        read: true,
        write: false,
        delete: false,
        mkdir: false,
        rename: false,
    };
    pub const ALL: Permissions = Permissions {
        read: true,
        write: true,
        delete: true,
        mkdir: true,
        rename: true,
    };

    /// Read-only, or everything when `write` is set (the `-w` flag).
    pub fn from_write_flag(write: bool) -> Permissions {
        if write {
            Permissions::ALL
        } else {
            Permissions::READ_ONLY
        }
    }
}

/// The rules of a server, shared by all its sessions.
#[derive(Debug, Clone)]
pub struct Policy {
    pub banner: String,
    pub tls: TlsPolicy,
    /// Relaxations of RFC 2577's bounce protection: PORT/EPRT to other hosts, and to ports
    /// below 1024.
    pub allow_foreign_active: bool,
    pub allow_low_active_ports: bool,
    /// What the storage backend can do: FEAT and the replies follow it.
    pub capabilities: Capabilities,
    /// Failed logins before the session is closed.
    pub max_login_failures: u32,
    /// A failed login is answered no sooner than this after PASS arrived.
    pub failed_login_delay: Duration,
    /// A session with no command for this long is closed with 421.
    pub idle_timeout: Duration,
    /// A passive listener waits this long for its connection.
    pub accept_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            banner: "Wharf FTP server ready.".into(),
            tls: TlsPolicy::default(),
            allow_foreign_active: false,
            allow_low_active_ports: false,
            capabilities: Capabilities::ALL,
            max_login_failures: 3,
            failed_login_delay: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(300),
            accept_timeout: Duration::from_secs(60),
        }
    }
}

/// Commands a client may send before it is logged in.
fn allowed_before_login(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::User(_)
            | Command::Pass(_)
            | Command::Auth
            | Command::Pbsz(_)
            | Command::Prot(_)
            | Command::Ccc
            | Command::Acct
            | Command::Quit
            | Command::Rein
            | Command::Feat
            | Command::Syst
            | Command::Help(_)
            | Command::Noop
            | Command::Opts(_)
            | Command::Host(_)
            | Command::Abor
            | Command::Stat(None)
    )
}

impl Session {
    /// The gate before dispatch: a command that needs a login gets 530 without one.
    pub(super) fn gate(&self, cmd: &Command) -> Result<(), Reply> {
        if !matches!(self.login, Login::LoggedIn(_)) && !allowed_before_login(cmd) {
            return Err(Reply::new(
                ReplyCode::NOT_LOGGED_IN,
                "Please login with USER and PASS.",
            ));
        }
        Ok(())
    }
}
