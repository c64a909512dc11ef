#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed step panics the test
//! Integration tests for `wharf serve`: one binary (link time), a module per area. The command
//! and transfer tests run twice: against the local file system and against MemFs.
//! Every server listens on loopback, port 0.

mod acme;
mod admin;
mod backend;
mod bench;
mod check;
mod client;
mod clients;
mod commands;
mod faults;
mod hash;
mod hooks;
mod identity;
mod interop;
mod limits;
mod operations;
mod own_files;
mod package;
mod power;
mod proxy;
mod s3;
mod security;
mod systemd;
mod tls;
mod transfers;
mod userdb;
mod verify;
mod vhosts;

use wharf_testkit::{Server, ServerBuilder};

pub const BIN: &str = env!("CARGO_BIN_EXE_wharf");

/// A builder for `wharf serve` with a short failed-login delay, so tests stay quick.
pub fn server() -> ServerBuilder {
    Server::builder(BIN)
}

/// A writable anonymous server.
pub fn writable() -> Server {
    server().arg("-w").start()
}
