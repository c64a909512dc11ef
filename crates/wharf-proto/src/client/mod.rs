//! The client's protocol core: the commands it sends, the data-connection decisions it makes
//! and what it reads out of replies, with no sockets and no clock.
//!
//! # The driving contract
//! The driver (`wharf-client`'s `Client`) owns the control connection, every data connection
//! and listener, and the timeouts. This module decides; the driver does.
//!
//! **Commands.** Every command is a [`ClientCommand`]. The driver encodes it with
//! [`ClientCommand::encode`] and writes the line only when that succeeds (a name holding CR, LF
//! or NUL is refused before anything is sent, so it can never smuggle in a second command). It
//! logs [`ClientCommand::describe`], which masks the password. It feeds what the server sends to
//! a [`ReplyParser`](crate::ReplyParser) and judges each reply by a named class of
//! [`ReplyCode`](crate::ReplyCode) (`is_transient`, `is_unknown_command`, `closes_session`,
//! `is_data_connection_failure`, …), never by a bare number.
//!
//! **Data connections.** A session keeps one [`DataStrategy`], made from the [`DataMode`] and
//! the control connection's [`Family`]. For each data connection the driver:
//!
//! 1. asks [`DataStrategy::next`] for the method to send first;
//! 2. sends it (for EPRT/PORT after binding a listener on the control connection's local
//!    address) and reads the reply;
//! 3. tells the reply to [`DataStrategy::on_reply`] and does what the [`Next`] says:
//!    [`Next::Use`] goes on with this method, [`Next::Fallback`] goes back to 2 with the method
//!    it names, [`Next::GiveUp`] reports the refusal as it is;
//! 4. for PASV, connects where [`PassiveTarget::choose`] and [`DataStrategy::pasv_destination`]
//!    say; when the server's own address worked in place of an announced one, it calls
//!    [`DataStrategy::passive_worked_with_peer_address`];
//! 5. when the data connection cannot be made (a failed connect, no connection back in active
//!    mode, or a 425 to the transfer command) calls [`DataStrategy::on_connect_failed`] and
//!    again does what the [`Next`] says (a fallback from passive to active is said in the log);
//! 6. once the transfer command got its 1xx (or completed without a data connection), calls
//!    [`DataStrategy::on_worked`].
//!
//! Invariants: on an IPv6 session no PASV or PORT ever comes out (they cannot carry the
//! address); what a session learned holds for its later transfers, so a refused command costs
//! one try per session; a fallback only ever goes forward in the order EPSV, PASV, EPRT, PORT,
//! so the loop of steps 2–5 ends.
//!
//! ```
//! use wharf_proto::ReplyCode;
//! use wharf_proto::client::{ClientCommand, DataMethod, DataMode, DataStrategy, Family, Next};
//!
//! let mut data = DataStrategy::new(DataMode::Auto, Family::V4);
//! assert_eq!(data.next(), DataMethod::Epsv);
//! // The server does not know EPSV: PASV, for this transfer and the later ones.
//! assert_eq!(
//!     data.on_reply(DataMethod::Epsv, ReplyCode::SYNTAX_ERROR),
//!     Next::Fallback(DataMethod::Pasv)
//! );
//! assert_eq!(data.on_reply(DataMethod::Pasv, ReplyCode::PASSIVE), Next::Use);
//! // The connection to the PASV address fails: active mode for this transfer...
//! assert_eq!(data.on_connect_failed(DataMethod::Pasv), Next::Fallback(DataMethod::Eprt));
//! assert_eq!(data.on_reply(DataMethod::Eprt, ReplyCode::OK), Next::Use);
//! // ...and, once it worked, for the rest of the session.
//! data.on_worked(DataMethod::Eprt);
//! assert_eq!(data.next(), DataMethod::Eprt);
//!
//! let mut line = Vec::new();
//! ClientCommand::Pass(b"secret").encode(&mut line).unwrap();
//! assert_eq!(line, b"PASS secret\r\n");
//! assert_eq!(ClientCommand::Pass(b"secret").describe(), "PASS ****");
//! assert!(ClientCommand::Dele(b"a\r\nRMD b").encode(&mut line).is_err());
//! ```

mod address;
mod command;
mod feat;
pub mod hash;
mod strategy;

pub use address::{PassiveTarget, Unused, address_class, is_local_address, plausible_data_address};
pub use command::{ClientCommand, EncodeError};
pub use feat::{Features, parse_257};
pub use strategy::{DataMethod, DataMode, DataStrategy, Family, Next};
