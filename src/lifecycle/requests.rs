//! The user's requests to one process: start, stop, restart, remove, and
//! exeio's own shutdown. Each updates `want` (the last request wins) and
//! begins what it asks for.

use super::{Cause, Conflict, Effect, Now, Proc, State, Step, Want};

impl Proc {
    pub(super) fn removed_conflict(&self) -> Step {
        Err(Conflict(format!(
            "process '{}' is being removed",
            self.spec.id
        )))
    }

    /// Start now. The supervisor undoes the whole step if the spawn fails.
    pub(super) fn start(&mut self, now: Now) -> Step {
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

    pub(super) fn restart(&mut self, now: Now) -> Step {
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

    pub(super) fn stop(&mut self, now: Now) -> Vec<Effect> {
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

    pub(super) fn remove(&mut self, now: Now) -> Vec<Effect> {
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

    pub(super) fn shutdown(&mut self, now: Now) -> Vec<Effect> {
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
    pub(super) fn begin_fresh(&mut self, now: Now) -> Vec<Effect> {
        self.streak = 0;
        self.restart_pending = false;
        self.state = State::Idle;
        let run = match &mut self.job {
            Some(job) => job.start_by_hand(&self.spec, now),
            None => true,
        };
        if run { vec![Effect::Spawn] } else { vec![] }
    }
}
