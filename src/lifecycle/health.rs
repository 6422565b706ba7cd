//! The health of a process with a probe (SPEC 4b): what it is, and what a
//! check result or a passing deadline does to it.
//!
//! Pure, like the rest of `lifecycle`: the supervisor asks `Proc` when the
//! next check is due (`deadline`), gets `Effect::Probe` when it is, and feeds
//! each result back as `Input::Probed` (or `Input::ProbeRefused`). A run starts `starting`;
//! `success_threshold` successes in a row make it `healthy`; once healthy,
//! `failure_threshold` failures in a row make it `unhealthy`. Not healthy
//! within `start_timeout`, or unhealthy, is a liveness failure: the run is
//! stopped and restarted through the same backoff as any exit (see
//! `Proc::liveness_failure` below), unless the policy is `never`.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use super::{Cause, Effect, Now, Proc, State};
use crate::policy::RestartPolicy;

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

/// The answer to one check, as the probe pool reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// The run it checked.
    pub generation: u64,
    /// The check's number (`Effect::Probe`); `None` for a `log` match,
    /// which is not asked for.
    pub seq: Option<u64>,
    pub ok: bool,
    pub message: String,
    pub at: SystemTime,
    pub took: Duration,
}

/// Check times are spread over the period in slots this wide: processes
/// in one slot are checked in one turn of the supervisor (and their
/// answers, which come back close together, handled in few), so the cost
/// of a check does not grow with the number of processes.
const SLOT: Duration = Duration::from_millis(100);

/// Where in its period a process checks: spread by its id over the slots
/// of the period, so that processes added together do not check together
/// (FNV-1a of the id).
pub fn offset(id: &str, period: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let slots = (period.as_millis() / SLOT.as_millis()).max(1) as u64;
    SLOT * (h % slots) as u32
}

/// How long after `now` a run started now is first checked: after the
/// initial delay, at this process's place in a period counted from the
/// wall clock, so every process checks in one of the period's slots
/// whenever it was started.
pub fn first_check(id: &str, period: Duration, delay: Duration, now: Now) -> Duration {
    let period_ms = period.as_millis().max(1);
    let wall_ms = now
        .wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let phase = (wall_ms + delay.as_millis()) % period_ms;
    let want = offset(id, period).as_millis();
    let wait = (want + period_ms - phase) % period_ms;
    delay + Duration::from_millis(wait as u64)
}

/// `2s`, `0.5s`.
fn secs(d: Duration) -> String {
    super::seconds(d)
}

/// Health transitions: checks coming due, their answers, liveness.
impl Proc {
    /// A new run: `starting`, counts from zero, the first check after the
    /// initial delay (plus this process's place in the period).
    pub(super) fn health_run_started(&mut self, now: Now) {
        let (Some(spec), Some(h)) = (self.spec.health.as_deref(), self.health.as_deref_mut())
        else {
            return;
        };
        h.health = Health::Starting;
        h.oks = 0;
        h.fails = 0;
        h.generation = self.generation;
        h.in_flight = None;
        h.next_check = (!spec.is_log()).then(|| {
            now.at + first_check(self.spec.id.as_str(), spec.period, spec.initial_delay, now)
        });
        h.start_deadline = Some(now.at + spec.start_timeout);
    }

    /// The run is ending or over: no more checks. The next run starts at
    /// `starting`.
    pub(super) fn health_run_ended(&mut self, exited: bool) {
        if let Some(h) = self.health.as_deref_mut() {
            h.next_check = None;
            h.start_deadline = None;
            h.in_flight = None;
            if exited {
                h.health = Health::Starting;
            }
        }
    }

    /// A new configuration is coming: a new probe starts its state over
    /// (its counters go on), no probe drops it. True if the probe is new.
    pub(super) fn health_reconfigure(&mut self, spec: &crate::spec::ProcessSpec) -> bool {
        let new_probe =
            spec.health.is_some() && (spec.health != self.spec.health || self.health.is_none());
        if spec.health.is_none() {
            self.health = None;
        } else if new_probe {
            let counts = self
                .health
                .as_ref()
                .map_or((0, 0), |h| (h.checks_ok, h.checks_failed));
            let mut fresh = HealthState::default();
            (fresh.checks_ok, fresh.checks_failed) = counts;
            self.health = Some(Box::new(fresh));
        }
        new_probe
    }

    /// When health next needs a `Tick`.
    pub(super) fn health_deadline(&self) -> Option<Instant> {
        let h = self.health.as_deref()?;
        if !matches!(self.state, State::Running { .. }) {
            return None;
        }
        let start = (h.health == Health::Starting)
            .then_some(h.start_deadline)
            .flatten();
        match (h.next_check, start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A deadline passed: hand out a check that is due, or stop a run that
    /// did not become healthy in time.
    pub(super) fn health_tick(&mut self, now: Now) -> Vec<Effect> {
        let State::Running { generation, .. } = self.state else {
            return vec![];
        };
        let Some(spec) = self.spec.health.clone() else {
            return vec![];
        };
        let Some(h) = self.health.as_deref_mut() else {
            return vec![];
        };
        let mut fx = Vec::new();
        if h.health == Health::Starting && h.start_deadline.is_some_and(|d| d <= now.at) {
            h.start_deadline = None;
            let why = format!(
                "not healthy within start_timeout_seconds ({})",
                secs(spec.start_timeout)
            );
            return self.liveness_failure(why, now);
        }
        if let Some(next) = h.next_check
            && next <= now.at
        {
            // The next slot of the grid after now (no burst after a stall).
            let behind = now.at - next;
            let periods = behind.as_nanos() / spec.period.as_nanos().max(1) + 1;
            h.next_check = Some(next + spec.period * periods as u32);
            if h.in_flight.is_none() {
                h.seq += 1;
                h.in_flight = Some(h.seq);
                fx.push(Effect::Probe {
                    generation,
                    seq: h.seq,
                });
            }
        }
        fx
    }

    /// The answer to a check (or a `log` match). Answers about an older run
    /// or an older check are ignored.
    pub(super) fn probed(&mut self, r: ProbeResult, now: Now) -> Vec<Effect> {
        let State::Running { generation, .. } = self.state else {
            return vec![];
        };
        let Some(spec) = self.spec.health.clone() else {
            return vec![];
        };
        let Some(h) = self.health.as_deref_mut() else {
            return vec![];
        };
        if r.generation != generation || h.generation != generation {
            return vec![];
        }
        match r.seq {
            Some(seq) if h.in_flight == Some(seq) => h.in_flight = None,
            Some(_) => return vec![],
            None if !spec.is_log() => return vec![],
            None => {}
        }
        h.checked_at = Some(r.at);
        if h.checks.len() >= CHECKS_KEPT {
            h.checks.pop_front();
        }
        h.checks.push_back(Check {
            at: r.at,
            ok: r.ok,
            message: r.message.clone(),
            took: r.took,
        });
        let from = h.health;
        if r.ok {
            h.checks_ok += 1;
            h.oks = h.oks.saturating_add(1);
            h.fails = 0;
            if from != Health::Healthy && h.oks >= spec.success_threshold {
                h.health = Health::Healthy;
                h.start_deadline = None;
                if spec.is_log() {
                    h.next_check = None;
                }
                return vec![Effect::Log(format!(
                    "health: {} -> healthy ({})",
                    from.name(),
                    r.message
                ))];
            }
            return vec![];
        }
        h.checks_failed += 1;
        h.fails = h.fails.saturating_add(1);
        h.oks = 0;
        h.message = Some(r.message.clone());
        if from != Health::Healthy || h.fails < spec.failure_threshold {
            return vec![];
        }
        h.health = Health::Unhealthy;
        let mut fx = vec![Effect::Log(format!(
            "health: healthy -> unhealthy after {} failed checks in a row ({})",
            h.fails, r.message
        ))];
        fx.extend(self.liveness_failure(
            format!(
                "unhealthy: {} failed checks in a row",
                spec.failure_threshold
            ),
            now,
        ));
        fx
    }

    /// A check could not be handed out (the probe queue was full): it is
    /// skipped, not counted; the next comes at its time.
    pub(super) fn probe_refused(&mut self, seq: u64) {
        if let Some(h) = self.health.as_deref_mut()
            && h.in_flight == Some(seq)
        {
            h.in_flight = None;
        }
    }

    /// Not healthy in time, or unhealthy: stop and restart through the
    /// backoff, unless the policy is `never` (then it keeps running).
    fn liveness_failure(&mut self, why: String, now: Now) -> Vec<Effect> {
        if let Some(h) = self.health.as_deref_mut()
            && h.health == Health::Starting
        {
            h.message.get_or_insert_with(|| why.clone());
        }
        if self.spec.restart_policy == RestartPolicy::Never {
            if let Some(h) = self.health.as_deref_mut() {
                h.health = Health::Unhealthy;
                h.start_deadline = None;
            }
            return vec![Effect::Log(format!(
                "liveness: {why}; restart_policy is never: it keeps running, unhealthy"
            ))];
        }
        let mut fx = vec![Effect::Log(format!(
            "liveness: {why}; stopping it to restart"
        ))];
        fx.extend(self.begin_stop(Cause::Liveness, now));
        fx
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
