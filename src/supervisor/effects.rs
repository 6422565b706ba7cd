//! Feeding an input to a process (`step`) and carrying out the effects its
//! state machine returns: spawn (whose answer is the next input), signal,
//! log, save, record, forget, probe.

use crate::child::{self, SpawnError};
use crate::lifecycle::{Effect, Input, Now, State};
use crate::spec::ProcessId;

use super::Supervisor;

impl Supervisor {
    /// Feed `input` to a process (not a user's request: nothing to undo).
    pub(super) fn step(&mut self, id: &ProcessId, input: Input, now: Now) {
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        let before = e.proc.status();
        let health = e.proc.health();
        let by_exit = matches!(input, Input::Exited { .. });
        if let Ok(fx) = e.proc.step(input, now) {
            e.dirty = true;
            self.changed = true;
            self.apply(id, fx, now);
        }
        self.note_state(id, before, by_exit, now);
        self.note_health(id, health, now);
        // A calendar job that catches up after a restart needs its last
        // scheduled time on disk.
        if let Some(e) = self.procs.get(id)
            && e.proc.spec.job.catch_up.is_some()
            && e.proc.job.as_ref().and_then(|j| j.last_scheduled) != e.scheduled_saved
        {
            self.save_runs(id);
        }
    }

    /// Carry out effects in order. A spawn's answer goes back to the
    /// process as an input. If `undoable` (a request of the user's), a spawn
    /// that fails refuses the request: the process puts back what the
    /// request changed, the error comes back at once and the rest is not
    /// done. Otherwise the failure is the lifecycle's (backoff, failed).
    pub(super) fn apply_effects(
        &mut self,
        id: &ProcessId,
        effects: Vec<Effect>,
        now: Now,
        undoable: bool,
    ) -> Result<(), String> {
        for fx in effects {
            let Some(e) = self.procs.get_mut(id) else {
                break;
            };
            e.dirty = true;
            self.changed = true;
            match fx {
                Effect::Log(line) => self.s.logger.system(&e.log, line),
                Effect::Signal { pgid, signal } => {
                    if signal == nix::libc::SIGKILL
                        && let Some(cg) = &self.s.cgroups
                    {
                        let _ = cg.kill(id);
                    }
                    if let Err(err) = child::signal_group(pgid, signal) {
                        self.sys(format!("cannot signal '{id}' (pgid {pgid}): {err}"));
                    }
                }
                Effect::Persist => self.dirty_store_if_saved(id),
                Effect::Record(record) => self.record(id, record),
                Effect::Forget => self.forget(id),
                Effect::Probe { generation, seq } => self.probe(id, generation, seq, now),
                Effect::Spawn if self.shutting_down => {}
                Effect::Spawn if !self.unmet_of(id).is_empty() => {
                    let waiting_for = self.unmet_of(id);
                    let e = self.procs.get_mut(id).expect("a known process");
                    let fx = e.proc.step(Input::Hold { waiting_for }, now);
                    self.apply_effects(id, fx.unwrap_or_default(), now, undoable)?;
                }
                Effect::Spawn => self.spawn_and_answer(id, now, undoable)?,
            }
        }
        Ok(())
    }

    /// Spawn a run and feed the answer to the process (`Input::Spawned`,
    /// `Input::SpawnFailed`). `refuse`: a failure refuses the user's request
    /// that asked for the spawn (the process puts back what the request
    /// changed) and comes back as the error.
    fn spawn_and_answer(&mut self, id: &ProcessId, now: Now, refuse: bool) -> Result<(), String> {
        let automatic = matches!(self.procs[id].proc.state, State::Backoff { .. });
        let (input, error) = match self.spawn(id) {
            Ok(pid) => (Input::Spawned { pid }, None),
            Err(err) => {
                let why = err.to_string();
                (
                    Input::SpawnFailed {
                        why: why.clone(),
                        refuse,
                    },
                    Some(why),
                )
            }
        };
        let e = self.procs.get_mut(id).expect("spawn of a known process");
        let fx = e.proc.step(input, now).map_err(|refused| refused.0)?;
        self.apply_effects(id, fx, now, false)?;
        match error {
            None => {
                self.spawned_alerts(id, automatic, now);
                Ok(())
            }
            // Failed rather than put back (no undo record): refused all the same.
            Some(why) if refuse => Err(why),
            Some(_) => Ok(()),
        }
    }

    pub(super) fn apply(&mut self, id: &ProcessId, effects: Vec<Effect>, now: Now) {
        let _ = self.apply_effects(id, effects, now, false);
    }

    /// Spawn a run of `id` (its pid), changing nothing if it fails.
    fn spawn(&mut self, id: &ProcessId) -> Result<u32, SpawnError> {
        // Deploy (SPEC 4c): the live release, read now, in the run's spec.
        let released =
            crate::deploy::resolve::for_spawn(&self.procs[id].proc.spec, &self.s.data_dir)
                .map_err(|_| SpawnError::NoRelease)?;
        let cgroup = match &self.s.cgroups {
            Some(cg) => Some(cg.prepare(id).map_err(|source| SpawnError::Cgroup {
                id: id.clone(),
                source,
            })?),
            None => None,
        };
        let generation = self.procs[id].proc.generation() + 1;
        self.arm_log_probe(id, generation);
        let e = self.procs.get_mut(id).expect("spawn of a known process");
        let run_number = e.proc.run_count + 1;
        let running = child::spawn(child::Start {
            spec: released.as_ref().unwrap_or(&e.proc.spec),
            log: e.log.clone(),
            label: e.proc.spec.is_job().then_some(run_number),
            run_number,
            cgroup,
            generation,
            tx: self.s.tx.clone(),
            logger: self.s.logger.clone(),
        })
        .inspect_err(|_| e.log.lines.disarm())?;
        e.usage.started(running.pid);
        e.link = Some(running.link);
        Ok(running.pid)
    }
}
