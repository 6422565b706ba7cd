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
mod tests {
    use super::*;
    use crate::spec::parse_add;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn proc(json: &str) -> Proc {
        Proc::new(parse_add(json.as_bytes()).unwrap(), State::Stopped)
    }

    fn exited(p: &Proc, status: ExitStatus) -> Input {
        Input::Exited {
            generation: p.generation(),
            status,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn logs(fx: &[Effect]) -> String {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Log(l) => Some(l.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("|")
    }

    #[test]
    fn crash_goes_to_backoff_then_restarts_on_the_deadline() {
        let t0 = Instant::now();
        let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
        assert_eq!(p.step(Input::Start, t0).unwrap(), vec![Effect::Spawn]);
        p.spawned(10, t0, SystemTime::UNIX_EPOCH);
        assert_eq!(p.status(), "running");
        let fx = p.step(exited(&p, ExitStatus::Code(3)), t0 + S(1)).unwrap();
        assert_eq!(
            logs(&fx),
            "restarting in 22s after crash with exit code 3 (restart #1)"
        );
        assert_eq!(p.state, State::Backoff { until: t0 + S(23) });
        assert_eq!(p.streak, 1);
        assert_eq!(p.next_run_in(t0 + S(3)), Some(S(20)));
        assert_eq!(p.step(Input::Tick, t0 + S(22)).unwrap(), vec![]);
        assert_eq!(
            p.step(Input::Tick, t0 + S(23)).unwrap(),
            vec![Effect::Spawn]
        );
    }

    #[test]
    fn policies_never_and_on_failure() {
        let t0 = Instant::now();
        let mut p = proc(r#"{"id":"a","command":"x"}"#);
        p.spawned(10, t0, SystemTime::UNIX_EPOCH);
        assert_eq!(p.step(exited(&p, ExitStatus::Code(1)), t0).unwrap(), vec![]);
        assert_eq!(p.state, State::Stopped);
        let mut p = proc(r#"{"id":"a","command":"x","restart_policy":"on-failure"}"#);
        p.spawned(10, t0, SystemTime::UNIX_EPOCH);
        p.step(exited(&p, ExitStatus::Code(0)), t0).unwrap();
        assert_eq!(p.state, State::Stopped);
        p.spawned(11, t0, SystemTime::UNIX_EPOCH);
        let fx = p.step(exited(&p, ExitStatus::Signal(9)), t0).unwrap();
        assert!(logs(&fx).contains("after external kill signal 9"));
    }

    #[test]
    fn manual_stop_escalates_and_never_restarts() {
        let t0 = Instant::now();
        let mut p =
            proc(r#"{"id":"a","command":"x","auto_restart":true,"stop_timeout_seconds":3}"#);
        p.spawned(42, t0, SystemTime::UNIX_EPOCH);
        let fx = p.step(Input::Stop, t0 + S(1)).unwrap();
        assert!(fx.contains(&Effect::Signal {
            pgid: 42,
            signal: 15
        }));
        assert_eq!(p.deadline(), Some(t0 + S(4)));
        assert_eq!(p.step(Input::Tick, t0 + S(2)).unwrap(), vec![]);
        let fx = p.step(Input::Tick, t0 + S(4)).unwrap();
        assert!(fx.contains(&Effect::Signal {
            pgid: 42,
            signal: 9
        }));
        assert_eq!(p.deadline(), None, "SIGKILL is sent once");
        // the exit (even a crash code) after a manual stop is not a restart
        let fx = p.step(exited(&p, ExitStatus::Code(1)), t0 + S(5)).unwrap();
        assert!(!fx.contains(&Effect::Spawn));
        assert!(fx.contains(&Effect::Persist));
        assert_eq!(p.state, State::ManuallyStopped);
    }

    #[test]
    fn stop_cancels_a_pending_restart() {
        let t0 = Instant::now();
        let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
        p.spawned(1, t0, SystemTime::UNIX_EPOCH);
        p.step(exited(&p, ExitStatus::Code(1)), t0).unwrap();
        p.step(Input::Stop, t0).unwrap();
        assert_eq!(p.state, State::ManuallyStopped);
        assert_eq!(p.deadline(), None);
        assert_eq!(p.step(Input::Tick, t0 + S(100)).unwrap(), vec![]);
    }

    #[test]
    fn commands_while_stopping_upgrade_and_stale_exits_are_ignored() {
        let t0 = Instant::now();
        let mut p = proc(r#"{"id":"a","command":"x"}"#);
        p.spawned(7, t0, SystemTime::UNIX_EPOCH);
        let stale = exited(&p, ExitStatus::Code(0));
        p.step(Input::Restart, t0).unwrap();
        p.step(Input::Remove, t0).unwrap();
        assert!(matches!(
            p.state,
            State::Stopping {
                then: Then::Remove,
                ..
            }
        ));
        assert_eq!(
            p.step(Input::Start, t0),
            Err(Conflict("process 'a' is already stopping".into()))
        );
        let fx = p.step(stale, t0).unwrap();
        assert!(fx.contains(&Effect::Forget));
        // an exit of an older generation changes nothing
        let mut q = proc(r#"{"id":"b","command":"x"}"#);
        q.spawned(1, t0, SystemTime::UNIX_EPOCH);
        let old = exited(&q, ExitStatus::Code(0));
        q.step(Input::Restart, t0).unwrap();
        q.step(exited(&q, ExitStatus::Code(0)), t0).unwrap();
        q.spawned(2, t0, SystemTime::UNIX_EPOCH);
        assert_eq!(q.step(old, t0).unwrap(), vec![]);
        assert_eq!(q.pid(), Some(2));
    }

    #[test]
    fn gives_up_after_max_restarts() {
        let t0 = Instant::now();
        let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true,"max_restarts":1}"#);
        p.spawned(1, t0, SystemTime::UNIX_EPOCH);
        p.step(exited(&p, ExitStatus::Code(1)), t0).unwrap();
        p.step(Input::Tick, t0 + S(22)).unwrap();
        p.spawned(2, t0 + S(22), SystemTime::UNIX_EPOCH);
        let fx = p.step(exited(&p, ExitStatus::Code(1)), t0 + S(23)).unwrap();
        assert_eq!(logs(&fx), "gave up after 1 consecutive restarts");
        assert_eq!(p.state, State::Failed);
    }

    #[test]
    fn spawn_failure_backs_off_instead_of_busy_looping() {
        let t0 = Instant::now();
        let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
        let fx = p.spawn_failed("gone".into(), t0);
        assert!(logs(&fx).contains("failed to start: gone"));
        assert_eq!(p.state, State::Backoff { until: t0 + S(22) });
        let mut q = proc(r#"{"id":"b","command":"x"}"#);
        q.spawn_failed("gone".into(), t0);
        assert_eq!(q.state, State::Failed);
    }

    #[test]
    fn periodic_runs_on_a_fixed_grid() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = proc(r#"{"id":"a","command":"x","periodic":true,"period_seconds":10}"#);
        p.spawned(1, t0, SystemTime::UNIX_EPOCH);
        p.step(exited(&p, ExitStatus::Code(0)), t0 + S(2)).unwrap();
        assert_eq!(p.state, State::Waiting { until: t0 + S(10) });
        assert_eq!(
            p.step(Input::Tick, t0 + S(10)).unwrap(),
            vec![Effect::Spawn]
        );
        // the spawn lands 5 ms late; the next slot is still t0 + 20 s
        p.spawned(2, t0 + S(10) + ms(5), SystemTime::UNIX_EPOCH);
        assert_eq!(p.deadline(), Some(t0 + S(20)));
        // a tick while the run is still going is skipped and logged
        let fx = p.step(Input::Tick, t0 + S(20)).unwrap();
        assert!(logs(&fx).contains("skipped periodic run"));
        assert_eq!(p.deadline(), Some(t0 + S(30)));
        p.step(exited(&p, ExitStatus::Code(1)), t0 + S(25)).unwrap();
        assert_eq!(p.state, State::Waiting { until: t0 + S(30) });
        assert_eq!(p.run_count, 2);
    }
}
