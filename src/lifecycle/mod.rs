//! The life of one supervised process: every state transition lives in this
//! module. Here: the types, `step` and the deadlines; the user's requests in
//! `requests.rs`; stopping a run and its exit in `exit.rs`; the memory limit
//! in `memory.rs`; spawn results, revival and reconfiguration in `spawn.rs`;
//! the transitions only jobs have in `job.rs`; the status a process reports,
//! derived from its state, in `status.rs`.
//!
//! Pure: `Proc::step(input, now)` changes the state and returns the effects
//! the supervisor must carry out (spawn, signal, kill, log, persist, record,
//! forget). Time is an input, so the whole machine is tested without sleeping.
//! What the supervisor learns back is an input too: the result of a spawn
//! (`Spawned`, `SpawnFailed`), a check's answer, a start held for its
//! dependencies or released. Two changes come as methods instead, since
//! they bring a whole process or configuration rather than an event:
//! `revive` (a saved process at exeio's start) and `reconfigure`.
//!
//! Two things are kept apart (STYLE 16, after s6): what is asked of the
//! process (`want`: up, with or without a restart once the current run has
//! stopped; down; removed; halted by exeio's shutdown) and what the process
//! is doing (`state`: idle, running, stopping, backoff, held, failed). Every
//! request updates `want`; every transition reads it. So the last request
//! wins: a stop that arrives while a restart waits for the old run to exit
//! simply cancels the restart.
//!
//! A request of the user's that spawns (a start, a restart or a run of a
//! stopped process) is all or nothing: it keeps what it changed in an undo
//! record, and if the supervisor answers `SpawnFailed { refuse: true }`, the
//! step puts exactly that back and returns the error. Nothing else of the
//! process is touched: no copy of the whole `Proc` is ever written back.
//!
//! Jobs (periodic, later scheduled) keep a clock of their next run in `job`
//! (see `job.rs`); between runs they are `Idle`, and their status reads
//! `waiting`.
//!
//! A start whose dependencies (`depends_on`) do not hold yet is `Held`
//! (see `order.rs`); its status reads `waiting` too, with `waiting_for`
//! naming what it waits for (a job between runs has none).

mod exit;
mod health;
mod job;
mod memory;
pub mod order;
mod requests;
mod spawn;
mod status;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use health::{CHECKS_KEPT, Check, Health, HealthState, ProbeResult};
pub use job::{ExitInfo, Job, RunRecord, RunResult, Trigger, runs_at_start};
pub use order::{Facts, Node, OrderError, Stopping, dependents, ready_to_stop, stop_levels};
pub use status::{Exits, Status};

use crate::policy::ExitStatus;
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

/// What is asked of the process: by the user's last request, or by
/// exeio's shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Running (a service), or scheduled (a job). `restart_once`: start
    /// again as soon as the current run has stopped (a restart, or a start
    /// while it was being stopped).
    Up { restart_once: bool },
    /// Stopped by hand: stays down until started again.
    Down,
    /// Being removed: forgotten once its run has stopped.
    Removed,
    /// exeio is shutting down: nothing starts any more. `down`: it had been
    /// stopped by hand (its status, and what is saved of it).
    Halted { down: bool },
}

impl Want {
    /// Up, nothing pending: how a process is added or taken back.
    pub const UP: Want = Want::Up {
        restart_once: false,
    };

    pub fn is_up(self) -> bool {
        matches!(self, Want::Up { .. })
    }

    /// Stopped by hand (saved as `manually_stopped`), shutting down or not.
    pub fn is_down(self) -> bool {
        matches!(self, Want::Down | Want::Halted { down: true })
    }

    /// Is `other` the same ask, a pending restart aside? (A change saves.)
    fn same_as(self, other: Want) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
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
    /// No child: it gave up restarting, or could not start (status
    /// `failed`, unless stopped by hand since).
    Failed { why: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The answer to `Effect::Spawn`: the run started.
    Spawned {
        pid: u32,
    },
    /// The answer to `Effect::Spawn`: it could not start, because `why`.
    /// `refuse`: the spawn was asked for by a request of the user's that is
    /// to be refused (a 400) rather than failed: the step puts back what
    /// the request changed and returns `Err` with `why`.
    SpawnFailed {
        why: String,
        refuse: bool,
    },
    /// A spawn is due but these conditions of `depends_on` do not hold yet.
    Hold {
        waiting_for: Vec<String>,
    },
    /// The conditions of a held start may have changed: these still do not
    /// hold (empty: spawn now).
    Release {
        unmet: Vec<String>,
    },
    /// exeio shuts down: nothing starts any more, but the stop signal waits
    /// for the dependents (`Shutdown` comes later).
    Halt,
    /// The answer to a health check (`Effect::Probe`), or a `log` match.
    Probed(ProbeResult),
    /// Check `seq` could not be handed out (the probe queue was full).
    ProbeRefused {
        seq: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Spawn a run now; answer with `Input::Spawned`, `Input::SpawnFailed`,
    /// or `Input::Hold` if its dependencies do not hold.
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
    /// pool; the answer comes back as `Input::Probed`.
    Probe { generation: u64, seq: u64 },
}

/// Why a request cannot be carried out in the current state (or, for
/// `SpawnFailed { refuse: true }`, why its spawn failed).
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict(pub String);

/// What a request of the user's changed before the spawn it asked for, put
/// back if that spawn is refused. Kept from the request's step to the
/// answer to its spawn, which comes next (any other input drops it).
#[derive(Clone, Debug)]
struct Undo {
    state: State,
    want: Want,
    intent: u64,
    streak: u32,
    job: Option<job::Clock>,
}

/// The supervisor's record of one process.
#[derive(Clone, Debug)]
pub struct Proc {
    /// Shared with the published view: one copy per configuration.
    pub spec: Arc<ProcessSpec>,
    pub state: State,
    pub want: Want,
    pub run_count: u64,
    /// Consecutive automatic restarts (reset by a long run or a manual start).
    pub streak: u32,
    /// Automatic restarts ever made (a counter).
    pub restarts_total: u64,
    pub exits: Exits,
    pub last_run: Option<SystemTime>,
    pub last_exit: Option<(ExitStatus, SystemTime)>,
    /// The latest error (a spawn's, or giving up), until a run starts.
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
    /// The request whose spawn has not been answered yet (see `Undo`).
    undo: Option<Box<Undo>>,
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
            undo: None,
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
            State::Idle | State::Failed { .. } => match self.want {
                want if want.is_down() => Status::ManuallyStopped,
                _ if matches!(self.state, State::Failed { .. }) => Status::Failed,
                Want::Up { .. } if self.job.is_some() => Status::Waiting,
                _ => Status::Stopped,
            },
        }
    }

    /// exeio is shutting down (see `Want::Halted`).
    pub fn halted(&self) -> bool {
        matches!(self.want, Want::Halted { .. })
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
        if !matches!(input, Input::SpawnFailed { .. }) {
            self.undo = None; // the spawn it was kept for has been answered
        }
        match input {
            Input::Start => self.start(now),
            Input::Stop => self.stop(now),
            Input::Restart => self.restart(now),
            Input::Remove => self.remove(now),
            Input::RunNow => self.run_now(now),
            Input::Shutdown => Ok(self.shutdown(now)),
            Input::Exited {
                generation,
                status,
                at,
            } => Ok(self.exited(generation, status, at, now)),
            Input::Tick => Ok(self.tick(now)),
            Input::Memory { generation, bytes } => Ok(self.memory(generation, bytes, now)),
            Input::Spawned { pid } => Ok(self.spawned(pid, now)),
            Input::SpawnFailed { why, refuse } => self.spawn_failed(why, refuse, now),
            Input::Hold { waiting_for } => Ok(self.hold(waiting_for)),
            Input::Release { unmet } => Ok(self.release(unmet)),
            Input::Halt => Ok(self.halt()),
            Input::Probed(result) => Ok(self.probed(result, now)),
            Input::ProbeRefused { seq } => {
                self.probe_refused(seq);
                Ok(vec![])
            }
        }
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
