//! The user's requests to one process: start, stop, restart, remove, and
//! exeio's own shutdown. Each updates `want` (the last request wins) and
//! begins what it asks for. A request that spawns keeps an undo record of
//! what it changed, for a spawn that fails (`spawn.rs`).

use super::{Cause, Conflict, Effect, Now, Proc, State, Step, Undo, Want};

impl Proc {
    /// A request that cannot be carried out: being removed, or exeio is
    /// shutting down (the supervisor refuses requests then, before here).
    pub(super) fn refusal(&self) -> Option<Conflict> {
        match self.want {
            Want::Removed => Some(Conflict(format!(
                "process '{}' is being removed",
                self.spec.id
            ))),
            Want::Halted { .. } => Some(Conflict("exeio is shutting down".into())),
            Want::Up { .. } | Want::Down => None,
        }
    }

    /// Start now; refused as a whole if its spawn is (`spawn_failed`).
    pub(super) fn start(&mut self, now: Now) -> Step {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        match &self.state {
            State::Running { .. } => Err(Conflict(format!(
                "process '{}' is already running",
                self.spec.id
            ))),
            State::Stopping { .. } => {
                // Started while being stopped: start again once it has.
                self.intent += 1;
                self.set_want(Want::Up { restart_once: true });
                Ok(self.persist_if_saved())
            }
            State::Idle | State::Backoff { .. } | State::Held { .. } | State::Failed { .. } => {
                let undo = self.undo_record();
                self.intent += 1;
                let persist = self.set_want(Want::UP);
                let fx = [self.begin_fresh(now), persist].concat();
                Ok(self.spawning(undo, fx))
            }
        }
    }

    pub(super) fn restart(&mut self, now: Now) -> Step {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        match self.state {
            State::Running { .. } => {
                self.intent += 1;
                let persist = self.set_want(Want::Up { restart_once: true });
                let mut fx = self.begin_stop(Cause::Restart, now);
                fx.extend(persist);
                Ok(fx)
            }
            State::Stopping { .. } => {
                self.intent += 1;
                Ok(self.set_want(Want::Up { restart_once: true }))
            }
            State::Idle | State::Backoff { .. } | State::Held { .. } | State::Failed { .. } => {
                let undo = self.undo_record();
                self.intent += 1;
                let persist = self.set_want(Want::UP);
                let fx = [self.begin_fresh(now), persist].concat();
                Ok(self.spawning(undo, fx))
            }
        }
    }

    pub(super) fn stop(&mut self, now: Now) -> Step {
        match self.want {
            Want::Removed => return Ok(vec![]),
            Want::Halted { .. } => return Err(Conflict("exeio is shutting down".into())),
            Want::Up { .. } | Want::Down => {}
        }
        self.intent += 1;
        let changed = self.want != Want::Down;
        let persist = self.set_want(Want::Down);
        if let Some(job) = &mut self.job {
            job.queued = None;
        }
        let mut fx = match self.state {
            State::Running { .. } => self.begin_stop(Cause::Stop, now),
            State::Stopping { .. } => vec![],
            State::Backoff { .. } | State::Held { .. } | State::Idle | State::Failed { .. } => {
                self.state = State::Idle;
                if changed {
                    vec![Effect::Log("stopped manually".into())]
                } else {
                    vec![]
                }
            }
        };
        fx.extend(persist);
        Ok(fx)
    }

    pub(super) fn remove(&mut self, now: Now) -> Step {
        if self.halted() {
            return Err(Conflict("exeio is shutting down".into()));
        }
        self.intent += 1;
        self.want = Want::Removed;
        Ok(match self.state {
            State::Running { .. } => self.begin_stop(Cause::Remove, now),
            State::Stopping { .. } => vec![],
            State::Idle | State::Backoff { .. } | State::Held { .. } | State::Failed { .. } => {
                self.state = State::Idle;
                vec![Effect::Log("removed".into()), Effect::Forget]
            }
        })
    }

    pub(super) fn shutdown(&mut self, now: Now) -> Vec<Effect> {
        self.halt_want();
        match self.state {
            State::Running { .. } => self.begin_stop(Cause::Shutdown, now),
            State::Backoff { .. } | State::Held { .. } => {
                self.state = State::Idle;
                vec![]
            }
            _ => vec![],
        }
    }

    /// Nothing starts any more; a manual stop is remembered (it is saved).
    pub(super) fn halt_want(&mut self) {
        if !self.halted() {
            self.want = Want::Halted {
                down: self.want.is_down(),
            };
        }
    }

    /// Set `want`, asking for a save when a saved process's want changed
    /// (a pending restart is not saved).
    fn set_want(&mut self, want: Want) -> Vec<Effect> {
        let changed = !self.want.same_as(want);
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

    /// What a request that may spawn is about to change.
    pub(super) fn undo_record(&self) -> Box<Undo> {
        Box::new(Undo {
            state: self.state.clone(),
            want: self.want,
            intent: self.intent,
            streak: self.streak,
            job: self.job.as_ref().map(|j| j.clock()),
        })
    }

    /// Keep `undo` until the spawn among `fx` is answered (none: dropped).
    pub(super) fn spawning(&mut self, undo: Box<Undo>, fx: Vec<Effect>) -> Vec<Effect> {
        if fx.contains(&Effect::Spawn) {
            self.undo = Some(undo);
        }
        fx
    }

    /// Put back what the request whose spawn failed changed.
    pub(super) fn put_back(&mut self, undo: Undo) {
        self.state = undo.state;
        self.want = undo.want;
        self.intent = undo.intent;
        self.streak = undo.streak;
        if let (Some(job), Some(clock)) = (&mut self.job, undo.job) {
            job.set_clock(clock);
        }
    }

    /// Started by the user: the restart streak starts over, a job's
    /// schedule counts from now; a spawn unless it is a calendar job (which
    /// waits for its time: `POST /run` runs it now).
    pub(super) fn begin_fresh(&mut self, now: Now) -> Vec<Effect> {
        self.streak = 0;
        if let Want::Up { restart_once } = &mut self.want {
            *restart_once = false;
        }
        self.state = State::Idle;
        let run = match &mut self.job {
            Some(job) => job.start_by_hand(&self.spec, now),
            None => true,
        };
        if run { vec![Effect::Spawn] } else { vec![] }
    }
}
