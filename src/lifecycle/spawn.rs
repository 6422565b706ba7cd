//! The answers to a spawn (`Input::Spawned`, `Input::SpawnFailed`), and a
//! process taken back or changed: `revive` at exeio's start, `reconfigure`
//! on a new configuration.
//!
//! A failed spawn goes one of two ways. Asked for by a request of the
//! user's that the supervisor refuses whole (`refuse`: a start, a restart
//! or a run of a stopped process answers 400), the request's undo record
//! puts back exactly what it changed, and nothing else is touched. Any
//! other (a restart after backoff, a job's time, a start released by its
//! dependencies, a restart after a stop) fails like a run that failed at
//! once: backoff, or `failed`, so it never busy-loops.

use std::sync::Arc;
use std::time::Duration;

use super::{Conflict, Effect, Job, Now, Proc, State, Step};
use crate::policy::{self, ExitStatus};
use crate::spec::ProcessSpec;

impl Proc {
    /// The supervisor spawned a run.
    pub(super) fn spawned(&mut self, pid: u32, now: Now) -> Vec<Effect> {
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
        self.state = State::Running {
            generation: self.generation,
            pid,
            started: now.at,
        };
        if let Some(job) = &mut self.job {
            job.start_run(self.run_count, &self.spec, now);
        }
        self.health_run_started(now);
        vec![]
    }

    /// The supervisor could not spawn a run (see the module doc).
    pub(super) fn spawn_failed(&mut self, error: String, refuse: bool, now: Now) -> Step {
        if let Some(undo) = self.undo.take().filter(|_| refuse) {
            self.put_back(*undo);
            return Err(Conflict(error));
        }
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
            return Ok(fx);
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
            self.state = State::Failed { why: error };
        }
        Ok(fx)
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
        if !self.want.is_up() {
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
