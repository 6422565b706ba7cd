//! The health of a process with a probe (SPEC 4b): what it is, and what a
//! check result or a passing deadline does to it.
//!
//! Pure, like the rest of `lifecycle`: the supervisor asks `Proc` when the
//! next check is due (`deadline`), gets `Effect::Probe` when it is, and feeds
//! each result back as `Input::Probed`. A run starts `starting`;
//! `success_threshold` successes in a row make it `healthy`; once healthy,
//! `failure_threshold` failures in a row make it `unhealthy`. Not healthy
//! within `start_timeout`, or unhealthy, is a liveness failure: the run is
//! stopped and restarted through the same backoff as any exit (see
//! `Proc::liveness_stop` in `mod.rs`), unless the policy is `never`.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

/// Checks kept per process for `GET /health/{id}`.
pub const CHECKS_KEPT: usize = 10;

/// The health of a process (`health` in the process object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Health {
    /// No probe.
    None,
    /// Running, not yet healthy (or not running).
    Starting,
    Healthy,
    Unhealthy,
}

impl Health {
    pub const ALL: [Health; 4] = [
        Health::None,
        Health::Starting,
        Health::Healthy,
        Health::Unhealthy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Health::None => "none",
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One finished check.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub at: SystemTime,
    pub ok: bool,
    /// What failed (`HTTP 503`), or what passed (`HTTP 200`).
    pub message: String,
    pub took: Duration,
}

/// What a process with a probe knows of its health.
#[derive(Clone, Debug)]
#[allow(dead_code)] // the counters are read by the decisions (next commit)
pub struct HealthState {
    pub health: Health,
    /// The last failure.
    pub message: Option<String>,
    pub checked_at: Option<SystemTime>,
    /// Successes and failures in a row.
    pub(super) oks: u32,
    pub(super) fails: u32,
    /// The run these counts are about.
    pub(super) generation: u64,
    /// The next check, while a run is going.
    pub(super) next_check: Option<Instant>,
    /// A check handed out and not yet answered (its number).
    pub(super) in_flight: Option<u64>,
    /// Numbers checks, so a late answer is told from the current one.
    pub(super) seq: u64,
    /// Not healthy by then: a liveness stop.
    pub(super) start_deadline: Option<Instant>,
    /// The newest last.
    pub checks: VecDeque<Check>,
    pub checks_ok: u64,
    pub checks_failed: u64,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            health: Health::Starting,
            message: None,
            checked_at: None,
            oks: 0,
            fails: 0,
            generation: 0,
            next_check: None,
            in_flight: None,
            seq: 0,
            start_deadline: None,
            checks: VecDeque::new(),
            checks_ok: 0,
            checks_failed: 0,
        }
    }
}
