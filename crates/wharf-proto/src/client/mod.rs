//! What a client reads and sends that the server side does not share: for now, asking a server
//! for a file's hash (HASH or the older `X` commands) and reading its answer.

pub mod hash;
