//! Hardening suite (issue 5): bad input, authentication, hostile clients, faults
//! and a request fuzzer, each family a table of named cases run against the real
//! `exeio` binary (the `util::Daemon` fixture of the integration suite).
//!
//! Every row is asserted with its name in the failure message. Waiting is always
//! a poll with a deadline, never a bare sleep; only processes this suite started
//! are ever signalled, by pid. Run with
//! `cargo test --test hardening -- --test-threads=2`; `EXEIO_FUZZ_CASES=100000`
//! (and `EXEIO_FUZZ_SEED`) make the fuzzer run longer by hand.

#[path = "../integration/util/mod.rs"]
mod util;

mod support;

mod auth;
mod faults;
mod fuzz;
mod hostile;
mod input;
