//! The connection log: the `Status:` / `Command:` / `Response:` lines that FTP users know from
//! FileZilla, produced as events so that a caller can print, store or ignore them.

use std::fmt;
use std::sync::Arc;

/// One line of the connection log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLine {
    /// What the client is doing or what happened (`Status: Connecting to 192.0.2.7:21...`).
    Status(String),
    /// A command as sent, the password masked (`Command: PASS ****`).
    Command(String),
    /// One line of a reply as received; a multi-line reply gives one `Response` per line.
    Response(String),
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogLine::Status(s) => write!(f, "Status: {s}"),
            LogLine::Command(s) => write!(f, "Command: {s}"),
            LogLine::Response(s) => write!(f, "Response: {s}"),
        }
    }
}

/// Where log lines go. Called on the task doing the work; keep it quick.
pub type LogSink = Arc<dyn Fn(&LogLine) + Send + Sync>;
