//! exeio: a process supervisor controlled over an authenticated HTTP API.
//!
//! # Theory of operation
//!
//! ```text
//! http accept thread ─▶ connection threads (capped) ──Msg::Call{reply}───┐
//!         reads: Arc<View> published by the supervisor (no round trip)   │
//! signals thread ──Msg::Shutdown/ReopenLogs──────────────────────────────┼─▶ supervisor thread:
//! child thread (1 per child) ──Event::Exited─────────────────────────────┤   owns all process state,
//! persister thread ──Event::Saved────────────────────────────────────────┘   no locks; spawns, signals,
//!                                                                             reaps; publishes the View
//! child thread: polls stdout+stderr+pidfd+doorbell(+stdin) ─▶ its log (the log's one writer)
//! supervisor ──SYSTEM lines, input──▶ queued, doorbell rung (never waits on a file or a pipe)
//! logger thread: writes the logs that have no child thread, exeio.log, audit.log
//! ```
//!
//! Who owns what:
//! - `supervisor` owns every `lifecycle::Proc`; all state transitions are
//!   `lifecycle::Proc::step`, pure and unit-tested. It decides what is saved;
//!   the `persist` thread writes it.
//! - One owner per log file (the rule is in `logs`): its child's thread
//!   from the spawn to the exit line, else the logger thread. Everyone else
//!   queues lines (`logs::LogFile::post`) and wakes the owner. So lines of
//!   one log keep their order.
//! - Timers (backoff, job times, stop grace periods, save retries) are
//!   deadlines in the supervisor's `select!`; no thread sleeps for them and
//!   nothing polls.
//! - `http` is the edge (caps and timeouts on everything a client holds);
//!   `api` is the route table and the handlers. Raw OS calls live in `sys`
//!   and in `child::clone` (the vfork-style child). Threads are
//!   `std::thread` with an explicit small stack.
//! - The dashboard (`src/ui/`, served by `api::ui`) is static files compiled
//!   into the binary: a client of the API like any other, with a session cookie.
//! - `client` is `exeio COMMAND ...`, a separate program in the same binary:
//!   it only speaks HTTP to a running exeio and shares no state with it.

#![recursion_limit = "512"]

pub mod api;
pub mod applydir;
pub mod calendar;
pub mod child;
pub mod cli;
pub mod client;
pub mod cron;
pub mod daemon;
pub mod deploy;
pub mod diag;
pub mod envfile;
pub mod error;
pub mod events;
pub mod health;
pub mod http;
pub mod instance;
pub mod keys;
pub mod lifecycle;
pub mod logger;
pub mod logs;
pub mod notify;
pub mod paths;
pub mod persist;
pub mod policy;
pub mod procfs;
pub mod protocol;
pub mod signals;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod sys;
pub mod threads;
pub mod timefmt;
pub mod users;
pub mod view;
