//! `wharf-net`: the parts of a data or control connection that Wharf's server and client share.
//!
//! - [`Stream`]: plain TCP or TLS (either side of the handshake), with the TLS facts the log and
//!   the session-reuse check need ([`Stream::tls_facts`]).
//! - [`close`]: ending a connection the way FTPS peers expect (close_notify, then FIN, and reading
//!   the peer's close_notify instead of meeting it with a reset).
//! - [`copy`]: one loop per direction between a local source or sink and the wire, with TYPE A
//!   line-ending conversion, a stall timeout on the wire side, a progress callback and a
//!   [`Throttle`](copy::Throttle) hook.
//! - [`digest`]: a running digest of each algorithm of HASH and the `X` commands, for a client
//!   that checks a transfer against the server's hash.
//!
//! ```
//! # async fn demo() -> Result<(), wharf_net::copy::CopyError> {
//! use wharf_net::copy::{self, CopyOptions, Unlimited};
//! let mut wire = Vec::new();
//! let opts = CopyOptions { ascii: true, ..CopyOptions::new(std::time::Duration::from_secs(5)) };
//! let mut source: &[u8] = b"one\ntwo\n";
//! let sent = copy::send(&mut source, &mut wire, &opts, &Unlimited, &mut |_, _| {}).await?;
//! assert_eq!((sent, wire.as_slice()), (8, &b"one\r\ntwo\r\n"[..]));
//! # Ok(()) }
//! ```

pub mod close;
pub mod copy;
pub mod digest;
mod stream;

pub use stream::{Stream, TlsFacts};
