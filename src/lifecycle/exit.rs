//! The end of a run: stopping it (the stop signal and its grace period),
//! its exit, and what follows (stay down, restart after a backoff, or give
//! up).

use std::time::{Duration, SystemTime};

use super::{Cause, Effect, Now, Proc, SIGCONT, State, Want, seconds};
use crate::policy::{self, AfterExit, ExitStatus};

impl Proc {
    /// Send the stop signal (then SIGCONT, so a paused process can act on
    /// it) and start the grace period.
    pub(super) fn begin_stop(&mut self, cause: Cause, now: Now) -> Vec<Effect> {
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

    pub(super) fn exited(
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
        match self.want {
            Want::Halted { .. } => {
                fx.push(Effect::Log("stopped for supervisor shutdown".into()));
                return fx;
            }
            Want::Removed => {
                fx.extend([Effect::Log("removed".into()), Effect::Forget]);
                return fx;
            }
            Want::Down => {
                fx.push(Effect::Log("stopped manually".into()));
                return fx;
            }
            Want::Up { restart_once: true } => {
                fx.extend(self.begin_fresh(now));
                return fx;
            }
            Want::Up {
                restart_once: false,
            } => {}
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

    pub(super) fn decide(&mut self, decision: AfterExit, reason: String, now: Now) -> Vec<Effect> {
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
                let why = format!("gave up after {restarts} consecutive restarts");
                self.error = Some(why.clone());
                self.state = State::Failed { why: why.clone() };
                vec![Effect::Log(why)]
            }
        }
    }
}
