//! The life of one supervised process: every state transition lives in this
//! module (those only jobs have in `job.rs`; the status a process reports,
//! derived from its state, in `status.rs`).
//!
//! Pure: `Proc::step(input, now)` changes the state and returns the effects
//! the supervisor must carry out (spawn, signal, kill, log, persist, record,
//! forget). Time is an input, so the whole machine is tested without sleeping.
//!
//! Two things are kept apart (STYLE 16, after s6): what the user last asked
//! for (`want`: up, down, removed, plus a pending restart) and what the
//! process is doing (`state`). Every request updates `want`; every
//! transition reads it. So the last request wins: a stop that arrives while
//! a restart waits for the old run to exit simply cancels the restart.
//!
//! Jobs (periodic, later scheduled) keep a clock of their next run in `job`
//! (see `job.rs`); between runs they are `Idle`, and their status reads
//! `waiting`.
//!
//! A start whose dependencies (`depends_on`) do not hold yet is `Held`
//! (see `order.rs`); its status reads `waiting` too, with `waiting_for`
//! naming what it waits for (a job between runs has none).

mod health;
mod job;
pub mod order;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use health::{CHECKS_KEPT, Check, Health, HealthState, ProbeResult};
pub use job::{ExitInfo, Job, RunRecord, RunResult, Trigger, runs_at_start};
pub use order::{Facts, Node, OrderError, Stopping, dependents, ready_to_stop, stop_levels};
pub use status::{Exits, Status};

use crate::policy::{self, AfterExit, ExitStatus};
use crate::spec::ProcessSpec;

const SIGKILL: i32 = 9;
const SIGCONT: i32 = 18;
/// Samples in a row over `max_memory_bytes` that restart a process.
pub const MEMORY_SAMPLES: u8 = 3;

/// The clock, read once per supervisor turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn read() -> Now {
        Now {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of a monotonic instant near now.
    pub fn wall_of(&self, t: Instant) -> SystemTime {
        if t >= self.at {
            self.wall + (t - self.at)
        } else {
            self.wall - (self.at - t)
        }
    }
}

/// What the user last asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Running (a service), or scheduled (a job).
    Up,
    /// Stopped by hand: stays down until started again.
    Down,
    /// Being removed: forgotten once its run has stopped.
    Removed,
}

/// Why a run is being stopped (for its SYSTEM line and its run record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Stop,
    Restart,
    Remove,
    Shutdown,
    /// A job run over its `timeout_seconds`.
    Timeout,
    /// A job run stopped to make way for the next (overlap `replace`).
    Replace,
    /// Over `max_memory_bytes`: restarted through the backoff table.
    Memory,
    /// Failed its health probe, or not healthy in time (SPEC 4b).
    Liveness,
}

impl Cause {
    fn phrase(self) -> &'static str {
        match self {
            Cause::Stop => "manual stop",
            Cause::Restart => "restart",
            Cause::Remove => "remove",
            Cause::Shutdown => "supervisor shutdown",
            Cause::Timeout => "run timed out",
            Cause::Replace => "replaced by the next run",
            Cause::Memory => "over max_memory_bytes",
            Cause::Liveness => "liveness check failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// No child and nothing pending.
    Idle,
    Running {
        generation: u64,
        pid: u32,
        started: Instant,
    },
    Stopping {
        generation: u64,
        pid: u32,
        started: Instant,
        kill_at: Instant,
        escalated: bool,
        cause: Cause,
    },
    /// An automatic restart is pending.
    Backoff { until: Instant },
    /// A start waits for its dependencies (`order.rs`).
    Held {
        waiting_for: Vec<String>,
        /// It was an automatic restart (it counts as one when it spawns).
        after_backoff: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Start,
    Stop,
    Restart,
    Remove,
    /// Run a job now, under its overlap policy.
    RunNow,
    Shutdown,
    Exited {
        generation: u64,
        status: ExitStatus,
        at: SystemTime,
    },
    /// A deadline may have passed.
    Tick,
    /// A sample of the memory the current run uses (`max_memory_bytes`).
    Memory {
        generation: u64,
        bytes: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Spawn a run now; report back with `spawned` or `spawn_failed`.
    Spawn,
    /// Send `signal` to the process group `pgid`.
    Signal { pgid: u32, signal: i32 },
    /// A SYSTEM line for the process's log.
    Log(String),
    /// What is saved of this process changed.
    Persist,
    /// A job run ended: keep its record.
    Record(RunRecord),
    /// The process is gone: drop it.
    Forget,
    /// Run health check number `seq` of run `generation` on the probe
    /// pool; the answer comes back to `Proc::probed`.
    Probe { generation: u64, seq: u64 },
}

/// Why a request cannot be carried out in the current state.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict(pub String);

/// The supervisor's record of one process.
#[derive(Clone, Debug)]
pub struct Proc {
    /// Shared with the published view: one copy per configuration.
    pub spec: Arc<ProcessSpec>,
    pub state: State,
    pub want: Want,
    /// Start again as soon as the current run has stopped.
    pub restart_pending: bool,
    /// exeio is shutting down: nothing starts any more.
    pub halted: bool,
    /// Gave up restarting, or could not start: `failed` while idle.
    pub failed: bool,
    pub run_count: u64,
    /// Consecutive automatic restarts (reset by a long run or a manual start).
    pub streak: u32,
    /// Automatic restarts ever made (a counter).
    pub restarts_total: u64,
    pub exits: Exits,
    pub last_run: Option<SystemTime>,
    pub last_exit: Option<(ExitStatus, SystemTime)>,
    pub error: Option<String>,
    /// Bumped by every request of the user; a reply to a request that a
    /// later one overrode says so.
    pub intent: u64,
    /// Spawn attempts so far, and the error of the latest if it failed.
    pub attempts: u64,
    pub attempt_error: Option<String>,
    /// Jobs only.
    /// Boxed: most processes are services, and a job's state is 200 bytes.
    pub job: Option<Box<Job>>,
    /// Processes with a probe only (SPEC 4b); boxed: most have none.
    pub health: Option<Box<HealthState>>,
    generation: u64,
    /// Memory samples in a row above `max_memory_bytes` (this run).
    over_memory: u8,
}

type Step = Result<Vec<Effect>, Conflict>;

impl Proc {
    pub fn new(spec: ProcessSpec, want: Want) -> Proc {
        let spec = Arc::new(spec);
        let job = spec.is_job().then(Box::<Job>::default);
        let health = spec.health.is_some().then(Box::<HealthState>::default);
        Proc {
            spec,
            state: State::Idle,
            want,
            restart_pending: false,
            halted: false,
            failed: false,
            run_count: 0,
            streak: 0,
            restarts_total: 0,
            exits: Exits::default(),
            last_run: None,
            last_exit: None,
            error: None,
            intent: 0,
            attempts: 0,
            attempt_error: None,
            job,
            health,
            generation: 0,
            over_memory: 0,
        }
    }

    /// The health of this process (`none` without a probe).
    pub fn health(&self) -> Health {
        self.health.as_ref().map_or(Health::None, |h| h.health)
    }

    pub fn status(&self) -> Status {
        match self.state {
            State::Running { .. } => Status::Running,
            State::Stopping { .. } => Status::Stopping,
            State::Backoff { .. } => Status::Backoff,
            State::Held { .. } => Status::Waiting,
            State::Idle => match self.want {
                Want::Down => Status::ManuallyStopped,
                _ if self.failed => Status::Failed,
                Want::Up if self.job.is_some() && !self.halted => Status::Waiting,
                _ => Status::Stopped,
            },
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    pub fn started(&self) -> Option<Instant> {
        match self.state {
            State::Running { started, .. } | State::Stopping { started, .. } => Some(started),
            _ => None,
        }
    }

    /// Generation of the current run; exits of older runs are stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_stopping(&self) -> bool {
        matches!(self.state, State::Stopping { .. })
    }

    /// Is a child of this process alive (running or being stopped)?
    pub fn has_child(&self) -> bool {
        self.pid().is_some()
    }

    /// When this process next needs a `Tick`.
    pub fn deadline(&self) -> Option<Instant> {
        let own = match self.state {
            State::Stopping {
                kill_at, escalated, ..
            } => (!escalated).then_some(kill_at),
            State::Backoff { until } => Some(until),
            _ => None,
        };
        let job = self.job.as_ref().and_then(|j| j.deadline(self));
        [own, job, self.health_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the next run starts: a pending restart, or a job's next time.
    pub fn next_run_at(&self) -> Option<Instant> {
        match self.state {
            State::Backoff { until } => Some(until),
            _ => self.job.as_ref().and_then(|j| j.next_tick(self)),
        }
    }

    pub fn step(&mut self, input: Input, now: Now) -> Step {
        match input {
            Input::Start => self.start(now),
            Input::Stop => Ok(self.stop(now)),
            Input::Restart => self.restart(now),
            Input::Remove => Ok(self.remove(now)),
            Input::RunNow => self.run_now(now),
            Input::Shutdown => Ok(self.shutdown(now)),
            Input::Exited {
                generation,
                status,
                at,
            } => Ok(self.exited(generation, status, at, now)),
            Input::Tick => Ok(self.tick(now)),
            Input::Memory { generation, bytes } => Ok(self.memory(generation, bytes, now)),
        }
    }

    fn removed_conflict(&self) -> Step {
        Err(Conflict(format!(
            "process '{}' is being removed",
            self.spec.id
        )))
    }

    /// Start now. The supervisor undoes the whole step if the spawn fails.
    fn start(&mut self, now: Now) -> Step {
        match (&self.state, self.want) {
            (_, Want::Removed) => self.removed_conflict(),
            (State::Running { .. }, _) => Err(Conflict(format!(
                "process '{}' is already running",
                self.spec.id
            ))),
            (State::Stopping { .. }, _) => {
                // Started while being stopped: start again once it has.
                self.intent += 1;
                self.set_want(Want::Up);
                self.restart_pending = true;
                Ok(self.persist_if_saved())
            }
            _ => {
                self.intent += 1;
                let fx = self.set_want(Want::Up);
                Ok([self.begin_fresh(now), fx].concat())
            }
        }
    }

    fn restart(&mut self, now: Now) -> Step {
        if self.want == Want::Removed {
            return self.removed_conflict();
        }
        self.intent += 1;
        let persist = self.set_want(Want::Up);
        match self.state {
            State::Running { .. } => {
                self.restart_pending = true;
                let mut fx = self.begin_stop(Cause::Restart, now);
                fx.extend(persist);
                Ok(fx)
            }
            State::Stopping { .. } => {
                self.restart_pending = true;
                Ok(persist)
            }
            State::Idle | State::Backoff { .. } | State::Held { .. } => {
                Ok([self.begin_fresh(now), persist].concat())
            }
        }
    }

    fn stop(&mut self, now: Now) -> Vec<Effect> {
        if self.want == Want::Removed {
            return vec![];
        }
        self.intent += 1;
        self.restart_pending = false;
        let changed = self.want != Want::Down;
        let persist = self.set_want(Want::Down);
        if let Some(job) = &mut self.job {
            job.queued = None;
        }
        let mut fx = match self.state {
            State::Running { .. } => self.begin_stop(Cause::Stop, now),
            State::Stopping { .. } => vec![],
            State::Backoff { .. } | State::Held { .. } | State::Idle => {
                self.state = State::Idle;
                if changed {
                    vec![Effect::Log("stopped manually".into())]
                } else {
                    vec![]
                }
            }
        };
        fx.extend(persist);
        fx
    }

    fn remove(&mut self, now: Now) -> Vec<Effect> {
        self.intent += 1;
        self.want = Want::Removed;
        self.restart_pending = false;
        match self.state {
            State::Running { .. } => self.begin_stop(Cause::Remove, now),
            State::Stopping { .. } => vec![],
            State::Idle | State::Backoff { .. } | State::Held { .. } => {
                self.state = State::Idle;
                vec![Effect::Log("removed".into()), Effect::Forget]
            }
        }
    }

    fn shutdown(&mut self, now: Now) -> Vec<Effect> {
        self.halted = true;
        self.restart_pending = false;
        match self.state {
            State::Running { .. } => self.begin_stop(Cause::Shutdown, now),
            State::Backoff { .. } | State::Held { .. } => {
                self.state = State::Idle;
                vec![]
            }
            _ => vec![],
        }
    }

    /// Set `want`, asking for a save when a saved process's want changed.
    fn set_want(&mut self, want: Want) -> Vec<Effect> {
        let changed = self.want != want;
        self.want = want;
        if changed {
            self.persist_if_saved()
        } else {
            vec![]
        }
    }

    fn persist_if_saved(&self) -> Vec<Effect> {
        if self.spec.save_for_next_run {
            vec![Effect::Persist]
        } else {
            vec![]
        }
    }

    /// Started by the user: the restart streak starts over, a job's
    /// schedule counts from now; a spawn unless it is a calendar job (which
    /// waits for its time: `POST /run` runs it now).
    fn begin_fresh(&mut self, now: Now) -> Vec<Effect> {
        self.streak = 0;
        self.restart_pending = false;
        self.state = State::Idle;
        let run = match &mut self.job {
            Some(job) => job.start_by_hand(&self.spec, now),
            None => true,
        };
        if run { vec![Effect::Spawn] } else { vec![] }
    }

    /// Send the stop signal (then SIGCONT, so a paused process can act on
    /// it) and start the grace period.
    fn begin_stop(&mut self, cause: Cause, now: Now) -> Vec<Effect> {
        let State::Running {
            generation,
            pid,
            started,
        } = self.state
        else {
            return vec![];
        };
        self.state = State::Stopping {
            generation,
            pid,
            started,
            kill_at: now.at + Duration::from_secs(self.spec.stop_timeout_seconds),
            escalated: false,
            cause,
        };
        self.health_run_ended(false);
        vec![
            Effect::Log(format!(
                "stopping ({}): sending SIG{} to the process group",
                cause.phrase(),
                self.spec.stop_signal.name()
            )),
            Effect::Signal {
                pgid: pid,
                signal: self.spec.stop_signal.number(),
            },
            Effect::Signal {
                pgid: pid,
                signal: SIGCONT,
            },
        ]
    }

    fn tick(&mut self, now: Now) -> Vec<Effect> {
        let mut fx = Vec::new();
        if let State::Stopping {
            pid,
            kill_at,
            escalated: false,
            ..
        } = self.state
            && kill_at <= now.at
        {
            if let State::Stopping { escalated, .. } = &mut self.state {
                *escalated = true;
            }
            fx.push(Effect::Log(format!(
                "did not stop within {}s: sending SIGKILL to the process group",
                self.spec.stop_timeout_seconds
            )));
            fx.push(Effect::Signal {
                pgid: pid,
                signal: SIGKILL,
            });
        }
        if let State::Backoff { until } = self.state
            && until <= now.at
        {
            fx.push(Effect::Spawn);
        }
        if self.job.is_some() {
            fx.extend(self.job_tick(now));
        }
        if self.health.is_some() {
            fx.extend(self.health_tick(now));
        }
        fx
    }

    fn exited(
        &mut self,
        generation_: u64,
        status: ExitStatus,
        at: SystemTime,
        now: Now,
    ) -> Vec<Effect> {
        let (started, cause) = match self.state {
            State::Running {
                generation,
                started,
                ..
            } if generation == generation_ => (started, None),
            State::Stopping {
                generation,
                started,
                cause,
                ..
            } if generation == generation_ => (started, Some(cause)),
            _ => return vec![], // a stale exit
        };
        self.last_exit = Some((status, at));
        match status {
            ExitStatus::Code(0) => self.exits.success += 1,
            ExitStatus::Code(_) => self.exits.failure += 1,
            ExitStatus::Signal(_) => self.exits.signal += 1,
        }
        self.state = State::Idle;
        self.health_run_ended(true);
        let ran = now.at.saturating_duration_since(started);
        let mut fx = Vec::new();
        if let Some(job) = &mut self.job {
            fx.push(Effect::Record(job.finish_run(status, cause, at, ran)));
        }
        if self.halted {
            fx.push(Effect::Log("stopped for supervisor shutdown".into()));
            return fx;
        }
        match self.want {
            Want::Removed => {
                fx.extend([Effect::Log("removed".into()), Effect::Forget]);
                return fx;
            }
            Want::Down => {
                fx.push(Effect::Log("stopped manually".into()));
                return fx;
            }
            Want::Up => {}
        }
        if std::mem::take(&mut self.restart_pending) {
            fx.extend(self.begin_fresh(now));
            return fx;
        }
        if let Some(job) = &mut self.job {
            if let Some(next) = job.queued.take() {
                job.pending = Some(next);
                fx.push(Effect::Spawn);
            }
            return fx;
        }
        if ran >= self.spec.backoff.reset {
            self.streak = 0;
        }
        // A stop over the memory limit restarts whatever the policy says; a
        // liveness stop counts as a failure, however the run ended.
        let (policy, judged, reason) = match cause {
            Some(Cause::Memory) => (
                policy::RestartPolicy::Always,
                status,
                "after exceeding max_memory_bytes".to_owned(),
            ),
            Some(Cause::Liveness) if status.success() => (
                self.spec.restart_policy,
                ExitStatus::Signal(self.spec.stop_signal.number()),
                "after a liveness stop".to_owned(),
            ),
            Some(Cause::Liveness) => (
                self.spec.restart_policy,
                status,
                "after a liveness stop".to_owned(),
            ),
            _ => (self.spec.restart_policy, status, status.restart_reason()),
        };
        let decision = policy::after_exit(
            policy,
            self.spec.max_restarts,
            &self.spec.backoff,
            self.streak,
            judged,
            ran,
        );
        fx.extend(self.decide(decision, reason, now));
        fx
    }

    /// Three samples in a row above `max_memory_bytes` stop the run; its
    /// exit restarts it through the backoff table (see `exited`).
    fn memory(&mut self, generation_: u64, bytes: u64, now: Now) -> Vec<Effect> {
        let (Some(limit), State::Running { generation, .. }) =
            (self.spec.max_memory_bytes, &self.state)
        else {
            return vec![];
        };
        if *generation != generation_ {
            return vec![];
        }
        if bytes <= limit {
            self.over_memory = 0;
            return vec![];
        }
        self.over_memory += 1;
        if self.over_memory < MEMORY_SAMPLES {
            return vec![];
        }
        self.over_memory = 0;
        let mut fx = vec![Effect::Log(format!(
            "using {bytes} bytes, over max_memory_bytes ({limit}) for {MEMORY_SAMPLES} samples in a row: restarting"
        ))];
        fx.extend(self.begin_stop(Cause::Memory, now));
        fx
    }

    fn decide(&mut self, decision: AfterExit, reason: String, now: Now) -> Vec<Effect> {
        match decision {
            AfterExit::Stay => vec![],
            AfterExit::Restart { attempt, delay } => {
                self.streak = attempt;
                self.state = State::Backoff {
                    until: now.at + delay,
                };
                vec![Effect::Log(format!(
                    "restarting in {} {reason} (restart #{attempt})",
                    seconds(delay)
                ))]
            }
            AfterExit::GiveUp { restarts } => {
                self.failed = true;
                let why = format!("gave up after {restarts} consecutive restarts");
                self.error = Some(why.clone());
                vec![Effect::Log(why)]
            }
        }
    }

    /// The supervisor spawned a run.
    pub fn spawned(&mut self, pid: u32, now: Now) {
        if self.is_restart() {
            self.restarts_total += 1;
        }
        self.generation += 1;
        self.over_memory = 0;
        self.run_count += 1;
        self.attempts += 1;
        self.attempt_error = None;
        self.last_run = Some(now.wall);
        self.error = None;
        self.failed = false;
        self.state = State::Running {
            generation: self.generation,
            pid,
            started: now.at,
        };
        if let Some(job) = &mut self.job {
            job.start_run(self.run_count, &self.spec, now);
        }
        self.health_run_started(now);
    }

    /// The supervisor could not spawn a run that was not the user's own
    /// request (a restart after backoff, a job's time, a restart after a
    /// stop): the same path as a failed run, so it never busy-loops.
    pub fn spawn_failed(&mut self, error: String, now: Now) -> Vec<Effect> {
        self.attempts += 1;
        self.attempt_error = Some(error.clone());
        let mut fx = vec![Effect::Log(format!("failed to start: {error}"))];
        self.error = Some(error.clone());
        let was_backoff = self.is_restart();
        self.state = State::Idle;
        if let Some(job) = &mut self.job {
            fx.push(Effect::Record(job.spawn_error(
                self.run_count + 1,
                error,
                now,
            )));
            return fx;
        }
        if was_backoff {
            self.restarts_total += 1;
        }
        let decision = policy::after_exit(
            self.spec.restart_policy,
            self.spec.max_restarts,
            &self.spec.backoff,
            self.streak,
            ExitStatus::Code(127),
            Duration::ZERO,
        );
        fx.extend(self.decide(decision, "after failing to start".into(), now));
        if self.state == State::Idle {
            self.failed = true;
        }
        fx
    }

    /// Is the spawn about to happen an automatic restart?
    fn is_restart(&self) -> bool {
        matches!(
            self.state,
            State::Backoff { .. }
                | State::Held {
                    after_backoff: true,
                    ..
                }
        )
    }

    /// A saved process coming back at exeio's start.
    pub fn revive(&mut self, now: Now) -> Vec<Effect> {
        if self.want != Want::Up {
            return vec![];
        }
        let mut fx = self.begin_fresh(now);
        if let Some(job) = &mut self.job
            && fx.is_empty()
            && job.catch_up(&self.spec, now)
        {
            fx.push(Effect::Log(
                "catching up a run missed while exeio was down".into(),
            ));
            fx.push(Effect::Spawn);
        }
        fx
    }

    /// Take a new configuration. The caller has already stopped the run if
    /// the change needs a restart (`ProcessSpec::needs_restart_for`).
    pub fn reconfigure(&mut self, spec: ProcessSpec, now: Now) {
        let was_job = self.job.is_some();
        let new_probe = self.health_reconfigure(&spec);
        self.spec = Arc::new(spec);
        if new_probe && matches!(self.state, State::Running { .. }) {
            self.health_run_started(now); // checked with the new probe from now
        }
        match (was_job, self.spec.is_job()) {
            (false, true) => {
                let mut job = Job::default();
                job.start_by_hand(&self.spec, now);
                self.job = Some(Box::new(job));
            }
            (true, false) => self.job = None,
            (true, true) => {
                let job = self.job.as_mut().expect("a job");
                job.rescheduled(&self.spec, now);
            }
            (false, false) => {}
        }
    }
}

/// `2s`, `0.5s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{}s", s as u64)
    } else {
        format!("{}s", (s * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests;
