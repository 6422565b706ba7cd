//! Integration tests: every test runs the real `exeio` binary in a private temp dir
//! (see `util::Daemon`) and drives it over HTTP with a raw `TcpStream` client.
//!
//! Waiting is always `util::wait_until(deadline, predicate)`, never a bare sleep.
//! Run with `cargo test --test integration -- --test-threads=2` on a small machine.

mod util;

mod api;
mod cli;
mod client;
mod lifecycle;
mod logs;
mod periodic;
mod persistence;
mod restart;
mod shutdown;
