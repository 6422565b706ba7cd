//! The life of one supervised process: every state transition lives here.
//!
//! Pure: `Proc::step(input, now, wall)` changes the state and returns the
//! effects the supervisor must carry out (spawn, signal, log, persist,
//! forget). Time is an input, so the whole machine is tested without sleeping.

use std::time::{Duration, Instant, SystemTime};

use crate::policy::{self, AfterExit, ExitStatus};
use crate::spec::ProcessSpec;

const SIGKILL: i32 = 9;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Then {
    Stop,
    Restart,
    Remove,
    Shutdown,
}

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Never started, exited with no restart pending, or stopped by shutdown.
    Stopped,
    ManuallyStopped,
    /// Could not start, or gave up restarting.
    Failed,
    Running {
        generation: u64,
        pid: u32,
        started: Instant,
        /// Periodic: the next slot on the fixed-rate grid.
        next_tick: Option<Instant>,
    },
    Stopping {
        generation: u64,
        pid: u32,
        started: Instant,
        kill_at: Instant,
        escalated: bool,
        then: Then,
    },
    Backoff {
        until: Instant,
    },
    /// Periodic, between runs.
    Waiting {
        until: Instant,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Start,
    Stop,
    Restart,
    Remove,
    Shutdown,
    Exited {
        generation: u64,
        status: ExitStatus,
        at: SystemTime,
    },
    Tick,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Spawn a run now; report back with `spawned` or `spawn_failed`.
    Spawn,
    /// Send `signal` to the process group `pgid`.
    Signal { pgid: u32, signal: i32 },
    /// A SYSTEM line for the process's log.
    Log(String),
    /// The saved configuration changed.
    Persist,
    /// The process is gone: drop it.
    Forget,
}

/// Why a command cannot be carried out in the current state.
#[derive(Debug, PartialEq, Eq)]
pub struct Conflict(pub String);

/// The supervisor's record of one process.
#[derive(Clone, Debug)]
pub struct Proc {
    pub spec: ProcessSpec,
    pub state: State,
    pub run_count: u64,
    /// Consecutive restarts (reset by a long run or a manual start).
    pub streak: u32,
    pub last_run: Option<SystemTime>,
    pub last_exit: Option<(ExitStatus, SystemTime)>,
    pub error: Option<String>,
    generation: u64,
    /// Periodic: the slot the latest run was scheduled for.
    slot: Option<Instant>,
}

type Step = Result<Vec<Effect>, Conflict>;

impl Proc {
    pub fn new(spec: ProcessSpec, state: State) -> Proc {
        Proc {
            spec,
            state,
            run_count: 0,
            streak: 0,
            last_run: None,
            last_exit: None,
            error: None,
            generation: 0,
            slot: None,
        }
    }

    pub fn status(&self) -> &'static str {
        match self.state {
            State::Stopped => "stopped",
            State::ManuallyStopped => "manually_stopped",
            State::Failed => "failed",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::Waiting { .. } => "waiting",
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
        match self.state {
            State::Running { next_tick, .. } => next_tick,
            State::Stopping {
                kill_at, escalated, ..
            } => (!escalated).then_some(kill_at),
            State::Backoff { until } | State::Waiting { until } => Some(until),
            _ => None,
        }
    }

    /// Time until the next run, for backoff and periodic waits.
    pub fn next_run_in(&self, now: Instant) -> Option<Duration> {
        match self.state {
            State::Backoff { until } | State::Waiting { until } => {
                Some(until.saturating_duration_since(now))
            }
            _ => None,
        }
    }

    pub fn step(&mut self, input: Input, now: Instant) -> Step {
        use State::*;
        let stop_sig = self.spec.stop_signal.number();
        let grace = Duration::from_secs(self.spec.stop_timeout_seconds);
        match (self.state.clone(), input) {
            (Running { .. } | Stopping { .. }, Input::Start) => Err(Conflict(format!(
                "process '{}' is already {}",
                self.spec.id,
                self.status()
            ))),
            (_, Input::Start) => {
                let persist = self.state == ManuallyStopped;
                self.streak = 0;
                self.slot = None;
                let mut fx = vec![Effect::Spawn];
                if persist {
                    fx.push(Effect::Persist);
                }
                Ok(fx)
            }

            (
                Running {
                    generation,
                    pid,
                    started,
                    ..
                },
                Input::Stop | Input::Restart | Input::Remove | Input::Shutdown,
            ) => {
                let then = then_of(input);
                self.state = Stopping {
                    generation,
                    pid,
                    started,
                    kill_at: now + grace,
                    escalated: false,
                    then,
                };
                Ok(vec![
                    Effect::Log(format!(
                        "stopping ({}): sending SIG{} to the process group",
                        reason_of(then),
                        self.spec.stop_signal.name()
                    )),
                    Effect::Signal {
                        pgid: pid,
                        signal: stop_sig,
                    },
                ])
            }
            (
                Stopping { then: old, .. },
                Input::Stop | Input::Restart | Input::Remove | Input::Shutdown,
            ) => {
                let new = then_of(input).max(old);
                if let Stopping { then, .. } = &mut self.state {
                    *then = new;
                }
                Ok(vec![])
            }

            (ManuallyStopped, Input::Stop) => Ok(vec![]),
            (_, Input::Stop) => {
                self.state = ManuallyStopped;
                Ok(vec![
                    Effect::Log("stopped manually".into()),
                    Effect::Persist,
                ])
            }
            (_, Input::Restart) => {
                let persist = self.state == ManuallyStopped;
                self.streak = 0;
                self.slot = None;
                let mut fx = vec![Effect::Log("restarting (manual)".into()), Effect::Spawn];
                if persist {
                    fx.push(Effect::Persist);
                }
                Ok(fx)
            }
            (_, Input::Remove) => Ok(vec![
                Effect::Log("removed".into()),
                Effect::Forget,
                Effect::Persist,
            ]),
            (Backoff { .. } | Waiting { .. }, Input::Shutdown) => {
                self.state = Stopped;
                Ok(vec![])
            }
            (_, Input::Shutdown) => Ok(vec![]),

            (
                Running {
                    generation: g,
                    started,
                    ..
                },
                Input::Exited {
                    generation,
                    status,
                    at,
                },
            ) if g == generation => {
                Ok(self.after_run(status, at, now, now.duration_since(started)))
            }
            (
                Stopping {
                    generation: g,
                    then,
                    ..
                },
                Input::Exited {
                    generation,
                    status,
                    at,
                },
            ) if g == generation => {
                self.last_exit = Some((status, at));
                match then {
                    Then::Stop => {
                        self.state = ManuallyStopped;
                        Ok(vec![
                            Effect::Log("stopped manually".into()),
                            Effect::Persist,
                        ])
                    }
                    Then::Restart => {
                        self.state = Stopped;
                        self.streak = 0;
                        self.slot = None;
                        Ok(vec![Effect::Spawn])
                    }
                    Then::Remove => {
                        self.state = Stopped;
                        Ok(vec![
                            Effect::Log("removed".into()),
                            Effect::Forget,
                            Effect::Persist,
                        ])
                    }
                    Then::Shutdown => {
                        self.state = Stopped;
                        Ok(vec![Effect::Log("stopped for supervisor shutdown".into())])
                    }
                }
            }
            (_, Input::Exited { .. }) => Ok(vec![]),

            (
                Running {
                    next_tick: Some(t), ..
                },
                Input::Tick,
            ) if t <= now => {
                let period = self.period();
                let slot = self.slot.unwrap_or(now);
                let (next, missed) = policy::next_periodic_run(slot, period, now);
                self.slot = Some(next - period);
                if let Running { next_tick, .. } = &mut self.state {
                    *next_tick = Some(next);
                }
                Ok(vec![Effect::Log(format!(
                    "skipped periodic run: previous run still running ({missed} slot(s) skipped)"
                ))])
            }
            (
                Stopping {
                    pid,
                    kill_at,
                    escalated: false,
                    ..
                },
                Input::Tick,
            ) if kill_at <= now => {
                if let Stopping { escalated, .. } = &mut self.state {
                    *escalated = true;
                }
                Ok(vec![
                    Effect::Log(format!(
                        "did not stop within {}s: sending SIGKILL to the process group",
                        grace.as_secs()
                    )),
                    Effect::Signal {
                        pgid: pid,
                        signal: SIGKILL,
                    },
                ])
            }
            (Backoff { until } | Waiting { until }, Input::Tick) if until <= now => {
                if matches!(self.state, Waiting { .. }) {
                    self.slot = Some(until);
                }
                Ok(vec![Effect::Spawn])
            }
            (_, Input::Tick) => Ok(vec![]),
        }
    }

    /// The supervisor spawned a run.
    pub fn spawned(&mut self, pid: u32, now: Instant, wall: SystemTime) {
        self.generation += 1;
        self.run_count += 1;
        self.last_run = Some(wall);
        self.error = None;
        let next_tick = self.spec.period_seconds.map(|_| {
            let slot = *self.slot.get_or_insert(now);
            slot + self.period()
        });
        self.state = State::Running {
            generation: self.generation,
            pid,
            started: now,
            next_tick,
        };
    }

    /// The supervisor could not spawn a run: same path as a failed run,
    /// so a restart keeps its backoff and never busy-loops.
    pub fn spawn_failed(&mut self, error: String, now: Instant) -> Vec<Effect> {
        let mut fx = vec![Effect::Log(format!("failed to start: {error}"))];
        self.error = Some(error);
        if self.spec.is_periodic() {
            let slot = self.slot.unwrap_or(now);
            let (next, _) = policy::next_periodic_run(slot, self.period(), now);
            self.slot = Some(next);
            self.state = State::Waiting { until: next };
            return fx;
        }
        let decision = policy::after_exit(
            self.spec.restart_policy,
            self.spec.max_restarts,
            self.streak,
            ExitStatus::Code(127),
            Duration::ZERO,
        );
        fx.extend(self.apply(decision, "after failing to start".into(), now));
        if self.state == State::Stopped {
            self.state = State::Failed;
        }
        fx
    }

    fn after_run(
        &mut self,
        status: ExitStatus,
        at: SystemTime,
        now: Instant,
        ran: Duration,
    ) -> Vec<Effect> {
        self.last_exit = Some((status, at));
        if self.spec.is_periodic() {
            let slot = self.slot.unwrap_or(now);
            let mut next = slot + self.period();
            if next <= now {
                next = policy::next_periodic_run(slot, self.period(), now).0;
            }
            self.state = State::Waiting { until: next };
            return vec![];
        }
        let decision = policy::after_exit(
            self.spec.restart_policy,
            self.spec.max_restarts,
            self.streak,
            status,
            ran,
        );
        if ran >= policy::MIN_UPTIME {
            self.streak = 0;
        }
        self.apply(decision, status.restart_reason(), now)
    }

    fn apply(&mut self, decision: AfterExit, reason: String, now: Instant) -> Vec<Effect> {
        match decision {
            AfterExit::Stay => {
                self.state = State::Stopped;
                vec![]
            }
            AfterExit::Restart { attempt, delay } => {
                self.streak = attempt;
                self.state = State::Backoff { until: now + delay };
                vec![Effect::Log(format!(
                    "restarting in {}s {reason} (restart #{attempt})",
                    delay.as_secs()
                ))]
            }
            AfterExit::GiveUp { restarts } => {
                self.state = State::Failed;
                let why = format!("gave up after {restarts} consecutive restarts");
                self.error = Some(why.clone());
                vec![Effect::Log(why)]
            }
        }
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.spec.period_seconds.unwrap_or(1))
    }
}

fn then_of(input: Input) -> Then {
    match input {
        Input::Restart => Then::Restart,
        Input::Remove => Then::Remove,
        Input::Shutdown => Then::Shutdown,
        _ => Then::Stop,
    }
}

fn reason_of(then: Then) -> &'static str {
    match then {
        Then::Stop => "manual stop",
        Then::Restart => "manual restart",
        Then::Remove => "remove",
        Then::Shutdown => "supervisor shutdown",
    }
}

#[cfg(test)]
mod tests;
