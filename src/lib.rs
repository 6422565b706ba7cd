//! exeio: a process supervisor controlled over an authenticated HTTP API.
//!
//! # Theory of operation
//!
//! ```text
//! signals thread ──Msg::Shutdown/ReopenLogs──┐
//! http workers ×N ──Msg::Call{reply}─────────┼─▶ supervisor thread: owns all process state, no locks;
//! child thread (1 per child) ──Event::Exited─┘   spawns children (vfork-style, child::exec), signals their groups, reaps them
//! child thread: polls stdout+stderr+pidfd ─▶ log file (append-only) ◀─ http workers page/follow it
//! supervisor ──SYSTEM lines──▶ logger thread ─▶ log files, exeio.log
//! supervisor ──non-blocking write──▶ child stdin (never blocks: all or 503)
//! ```
//!
//! Who owns what:
//! - `supervisor` owns every `lifecycle::Proc` and the `store`; all state
//!   transitions are `lifecycle::Proc::step`, pure and unit-tested.
//! - A child's thread is the only writer of its output lines; the logger thread
//!   writes SYSTEM lines; `logs::LogFile` serialises both per file.
//! - Timers (backoff, periodic ticks, stop grace periods) are deadlines in the
//!   supervisor's `select!`; no thread sleeps for them and nothing polls.

pub mod auth;
pub mod child;
pub mod cli;
pub mod conn;
pub mod cron;
pub mod daemon;
pub mod diag;
pub mod error;
pub mod follow;
pub mod http;
pub mod instance;
pub mod lifecycle;
pub mod logger;
pub mod logs;
pub mod paths;
pub mod policy;
pub mod procfs;
pub mod protocol;
pub mod routes;
pub mod signals;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod timefmt;
