//! The clock and the run records of a job (a periodic or scheduled process).
//!
//! Pure, like the rest of `lifecycle`: `Proc::step` calls in here to learn
//! when the next run is due, what to do when it comes while a run is still
//! going (the overlap policy), whether a run is over its time, and to turn a
//! finished run into its record.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Cause, Conflict, Effect, Now, Proc, State, Step, Want};
use crate::policy::{self, ExitStatus};
use crate::spec::{Overlap, ProcessSpec};
use crate::timefmt::rfc3339;

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Its scheduled time came (the time it was due).
    Schedule(SystemTime),
    /// `POST /run`.
    Manual,
    /// A time missed while exeio was down.
    CatchUp(SystemTime),
    /// Added, started, restarted, or exeio started.
    Start,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Schedule(_) => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp(_) => "catch_up",
            Trigger::Start => "start",
        }
    }

    fn scheduled_at(self) -> Option<SystemTime> {
        match self {
            Trigger::Schedule(t) | Trigger::CatchUp(t) => Some(t),
            _ => None,
        }
    }
}

/// How a job run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Ok,
    Failed,
    TimedOut,
    Replaced,
    SpawnError,
}

impl RunResult {
    pub fn name(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Failed => "failed",
            RunResult::TimedOut => "timed_out",
            RunResult::Replaced => "replaced",
            RunResult::SpawnError => "spawn_error",
        }
    }
}

/// How a run exited, as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signal: Option<i32>,
}

impl From<ExitStatus> for ExitInfo {
    fn from(s: ExitStatus) -> ExitInfo {
        match s {
            ExitStatus::Code(c) => ExitInfo {
                code: Some(c),
                signal: None,
            },
            ExitStatus::Signal(n) => ExitInfo {
                code: None,
                signal: Some(n),
            },
        }
    }
}

/// One finished run of a job (`GET /runs/{id}`), kept across restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run: u64,
    pub trigger: String,
    pub scheduled_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: String,
    pub duration_seconds: Option<f64>,
    pub exit: Option<ExitInfo>,
    pub result: RunResult,
    /// Times skipped (overlap) since the previous run started.
    pub skipped_before: u64,
    /// Why it could not start (spawn errors).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The run in progress.
#[derive(Clone, Debug)]
struct Run {
    number: u64,
    trigger: Trigger,
    started: SystemTime,
    deadline: Option<Instant>,
    skipped_before: u64,
}

/// What happens to a run that comes due while one is going.
pub(super) enum OnOverlap {
    Skip,
    Queued,
    Replace,
}

#[derive(Clone, Debug, Default)]
pub struct Job {
    /// When the next scheduled run is due (periodic: a slot of the
    /// fixed-rate grid), and the wall-clock time it stands for (a calendar
    /// time). Ignored while the job is not wanted up.
    next: Option<(Instant, SystemTime)>,
    /// The last scheduled time that came (for catch-up after a restart).
    pub last_scheduled: Option<SystemTime>,
    /// A run to start as soon as the current one ends.
    pub queued: Option<Trigger>,
    /// What the run about to be spawned is for.
    pub pending: Option<Trigger>,
    /// Runs skipped since the current one started.
    pub skipped: u64,
    run: Option<Run>,
    pub last_result: Option<RunResult>,
    pub last_success: Option<SystemTime>,
}

/// What a request of the user's changes of a job's clock (put back if its
/// spawn is refused).
#[derive(Clone, Debug)]
pub(super) struct Clock {
    next: Option<(Instant, SystemTime)>,
    queued: Option<Trigger>,
    pending: Option<Trigger>,
}

impl Job {
    pub(super) fn next_tick(&self, p: &Proc) -> Option<Instant> {
        p.want
            .is_up()
            .then_some(self.next)
            .flatten()
            .map(|(at, _)| at)
    }

    pub(super) fn clock(&self) -> Clock {
        Clock {
            next: self.next,
            queued: self.queued,
            pending: self.pending,
        }
    }

    pub(super) fn set_clock(&mut self, c: Clock) {
        (self.next, self.queued, self.pending) = (c.next, c.queued, c.pending);
    }

    /// The wall-clock time of the next scheduled run.
    pub fn next_wall(&self) -> Option<SystemTime> {
        self.next.map(|(_, wall)| wall)
    }

    pub(super) fn deadline(&self, p: &Proc) -> Option<Instant> {
        let timeout = match p.state {
            State::Running { .. } => self.run.as_ref().and_then(|r| r.deadline),
            _ => None,
        };
        match (self.next_tick(p), timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Started by hand (or added, or revived): count the schedule from
    /// now, and (periodic jobs) run now. True if a run is to start.
    pub(super) fn start_by_hand(&mut self, spec: &ProcessSpec, now: Now) -> bool {
        self.queued = None;
        self.next = first_after(spec, now);
        let run = runs_at_start(spec);
        self.pending = run.then_some(Trigger::Start);
        run
    }

    /// At exeio's start: a calendar time missed while it was down, if
    /// within the catch-up window, runs once now. True if it does.
    pub(super) fn catch_up(&mut self, spec: &ProcessSpec, now: Now) -> bool {
        let (Some(cal), Some(window), Some(since)) =
            (&spec.schedule, spec.job.catch_up, self.last_scheduled)
        else {
            return false;
        };
        let (last, n) = cal.missed(since, now.wall, 100_000);
        let Some(last) = last else {
            return false;
        };
        if now.wall.duration_since(last).unwrap_or_default() > window {
            return false;
        }
        self.skipped += n - 1;
        self.last_scheduled = Some(last);
        self.pending = Some(Trigger::CatchUp(last));
        true
    }

    /// The configuration changed: count the schedule from now.
    pub(super) fn rescheduled(&mut self, spec: &ProcessSpec, now: Now) {
        self.next = first_after(spec, now);
    }

    /// If the next scheduled time has come, move the schedule past now and
    /// return the trigger of the run that is due.
    pub(super) fn due(&mut self, spec: &ProcessSpec, want: Want, now: Now) -> Option<Trigger> {
        let (at, wall) = self.next?;
        if !want.is_up() || at > now.at {
            return None;
        }
        if let Some(cal) = &spec.schedule {
            let (_, missed) = cal.missed(wall, now.wall, 10_000);
            self.skipped += missed;
            self.next = cal
                .next_after(wall.max(now.wall))
                .map(|t| (instant_of(t, now), t));
        } else {
            let period = Duration::from_secs(spec.period_seconds?);
            let (next, missed) = policy::next_periodic_run(at, period, now.at);
            self.next = Some((next, now.wall_of(next)));
            self.skipped += missed;
        }
        self.last_scheduled = Some(wall);
        Some(Trigger::Schedule(wall))
    }

    /// A run came due while one is going.
    pub(super) fn overlap(&mut self, due: Trigger, policy: Overlap) -> OnOverlap {
        match policy {
            Overlap::Skip => {
                self.skipped += 1;
                OnOverlap::Skip
            }
            Overlap::Queue if self.queued.is_none() => {
                self.queued = Some(due);
                OnOverlap::Queued
            }
            Overlap::Queue => {
                self.skipped += 1;
                OnOverlap::Skip
            }
            Overlap::Replace => {
                let already = self.queued.replace(due).is_some();
                if already {
                    OnOverlap::Queued
                } else {
                    OnOverlap::Replace
                }
            }
        }
    }

    /// Is the current run past its timeout? (True once per run.)
    pub(super) fn timed_out(&mut self, now: Now) -> bool {
        let Some(run) = &mut self.run else {
            return false;
        };
        if run.deadline.is_some_and(|d| d <= now.at) {
            run.deadline = None;
            return true;
        }
        false
    }

    pub(super) fn start_run(&mut self, number: u64, spec: &ProcessSpec, now: Now) {
        self.run = Some(Run {
            number,
            trigger: self.pending.take().unwrap_or(Trigger::Start),
            started: now.wall,
            deadline: spec.job.timeout.map(|t| now.at + t),
            skipped_before: std::mem::take(&mut self.skipped),
        });
    }

    pub(super) fn finish_run(
        &mut self,
        status: ExitStatus,
        cause: Option<Cause>,
        ended: SystemTime,
        ran: Duration,
    ) -> RunRecord {
        let result = match (cause, status) {
            (Some(Cause::Timeout), _) => RunResult::TimedOut,
            (Some(Cause::Replace), _) => RunResult::Replaced,
            (_, ExitStatus::Code(0)) => RunResult::Ok,
            _ => RunResult::Failed,
        };
        self.last_result = Some(result);
        if result == RunResult::Ok {
            self.last_success = Some(ended);
        }
        let run = self.run.take();
        RunRecord {
            run: run.as_ref().map_or(0, |r| r.number),
            trigger: run.as_ref().map_or("start", |r| r.trigger.name()).into(),
            scheduled_at: run
                .as_ref()
                .and_then(|r| r.trigger.scheduled_at())
                .map(rfc3339),
            started_at: run.as_ref().map(|r| rfc3339(r.started)),
            ended_at: rfc3339(ended),
            duration_seconds: Some((ran.as_secs_f64() * 1000.0).round() / 1000.0),
            exit: Some(status.into()),
            result,
            skipped_before: run.map_or(0, |r| r.skipped_before),
            error: None,
        }
    }

    pub(super) fn spawn_error(&mut self, number: u64, error: String, now: Now) -> RunRecord {
        let trigger = self.pending.take().unwrap_or(Trigger::Start);
        self.last_result = Some(RunResult::SpawnError);
        RunRecord {
            run: number,
            trigger: trigger.name().into(),
            scheduled_at: trigger.scheduled_at().map(rfc3339),
            started_at: None,
            ended_at: rfc3339(now.wall),
            duration_seconds: None,
            exit: None,
            result: RunResult::SpawnError,
            skipped_before: std::mem::take(&mut self.skipped),
            error: Some(error),
        }
    }
}

/// The transitions that only jobs have: a run asked for by hand, and a
/// schedule or run timeout coming due.
impl Proc {
    pub(super) fn run_now(&mut self, now: Now) -> Step {
        if self.job.is_none() {
            return Err(Conflict(format!(
                "process '{}' is not a periodic or scheduled job: use POST /start or /restart",
                self.spec.id
            )));
        }
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        match self.state {
            State::Idle | State::Backoff { .. } | State::Held { .. } | State::Failed { .. } => {
                let undo = self.undo_record();
                let job = self.job.as_mut().expect("a job");
                job.pending = Some(Trigger::Manual);
                Ok(self.spawning(undo, vec![Effect::Spawn]))
            }
            State::Running { .. } | State::Stopping { .. } => {
                let overlap = self.spec.job.overlap;
                let job = self.job.as_mut().expect("a job");
                match job.overlap(Trigger::Manual, overlap) {
                    OnOverlap::Skip => Err(Conflict(format!(
                        "job '{}' is still running and its overlap policy is skip",
                        self.spec.id
                    ))),
                    OnOverlap::Queued => Ok(vec![Effect::Log(
                        "manual run queued: it starts when the current run ends".into(),
                    )]),
                    OnOverlap::Replace => Ok(self.begin_stop(Cause::Replace, now)),
                }
            }
        }
    }

    /// A job's schedule or run timeout came due.
    pub(super) fn job_tick(&mut self, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        let running = matches!(self.state, State::Running { .. });
        let job = self.job.as_mut().expect("a job");
        if running && job.timed_out(now) {
            fx.extend(self.begin_stop(Cause::Timeout, now));
            return fx;
        }
        let (spec, want) = (&self.spec, self.want);
        let job = self.job.as_mut().expect("a job");
        let Some(due) = job.due(spec, want, now) else {
            return fx;
        };
        match self.state {
            State::Idle | State::Backoff { .. } | State::Held { .. } | State::Failed { .. } => {
                job.pending = Some(due);
                fx.push(Effect::Spawn);
            }
            State::Running { .. } | State::Stopping { .. } => {
                match job.overlap(due, spec.job.overlap) {
                    OnOverlap::Skip => fx.push(Effect::Log(format!(
                        "skipped periodic run: previous run still running ({} skipped since it started)",
                        job.skipped
                    ))),
                    OnOverlap::Queued => fx.push(Effect::Log(
                        "scheduled run queued: it starts when the current run ends".into(),
                    )),
                    OnOverlap::Replace => fx.extend(self.begin_stop(Cause::Replace, now)),
                }
            }
        }
        fx
    }
}

/// Periodic jobs run when started; calendar jobs wait for their time.
pub fn runs_at_start(spec: &ProcessSpec) -> bool {
    spec.schedule.is_none()
}

/// The first scheduled time after a start by hand at `now`.
fn first_after(spec: &ProcessSpec, now: Now) -> Option<(Instant, SystemTime)> {
    if let Some(cal) = &spec.schedule {
        return cal.next_after(now.wall).map(|t| (instant_of(t, now), t));
    }
    spec.period_seconds.map(|p| {
        let period = Duration::from_secs(p);
        (now.at + period, now.wall + period)
    })
}

/// The monotonic instant of a wall-clock time near `now`.
fn instant_of(t: SystemTime, now: Now) -> Instant {
    match t.duration_since(now.wall) {
        Ok(ahead) => now.at + ahead,
        Err(e) => now.at.checked_sub(e.duration()).unwrap_or(now.at),
    }
}
