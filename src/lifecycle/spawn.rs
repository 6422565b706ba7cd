//! What the supervisor reports back about a run (`spawned`,
//! `spawn_failed`), and a process taken back or changed: `revive` at
//! exeio's start, `reconfigure` on a new configuration.

use std::sync::Arc;
use std::time::Duration;

use super::{Effect, Job, Now, Proc, State, Want};
use crate::policy::{self, ExitStatus};
use crate::spec::ProcessSpec;

impl Proc {
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
