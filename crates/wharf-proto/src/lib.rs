//! `wharf-proto`: the sans-IO core of Wharf's FTP implementation.
//!
//! It parses commands and replies, formats replies (RFC 959 multi-line form), encodes and decodes
//! the data-connection addresses of PORT, PASV, EPRT and EPSV, formats `ls -l` and RFC 3659 MLSx
//! listings, normalises paths inside a user's jail, and converts TYPE A line endings. It never
//! touches a socket, a file or a clock, so server and client share it and it can be fuzzed.
//!
//! ```
//! use wharf_proto::{Command, LineBuffer, LineEvent, Reply, ReplyCode, VPath};
//!
//! let mut lines = LineBuffer::new();
//! lines.buffer_mut().extend_from_slice(b"CWD docs\r\nRETR ../notes.txt\r\n");
//! let Some(LineEvent::Line(line)) = lines.next_line() else { unreachable!() };
//! let Ok(Command::Cwd(arg)) = Command::parse(&line) else { unreachable!() };
//! let cwd = VPath::root().join(&arg).unwrap();
//! assert_eq!(cwd.to_bytes(), b"/docs");
//!
//! let reply = Reply::new(ReplyCode::FILE_ACTION_OK, "Directory changed.");
//! assert_eq!(reply.to_bytes(), b"250 Directory changed.\r\n");
//! ```

pub mod ascii;
pub mod client;
pub mod command;
pub mod diag;
pub mod entry;
#[doc(hidden)]
pub mod fuzz;
pub mod glob;
pub mod hash;
pub mod hostport;
pub mod listing;
pub mod path;
pub mod proxy;
pub mod reply;
pub mod server;
pub mod time;
pub mod x509;

#[cfg(test)]
mod robustness;

pub use command::{Command, LineBuffer, LineEvent, ParseError, ProtLevel, TransferType};
pub use hash::HashAlgorithm;
pub use listing::{FileInfo, FileKind};
pub use path::{PathError, VPath};
pub use reply::{Reply, ReplyCode, ReplyParser};
pub use time::UtcTime;
