//! Feeding an input to a process (`step`) and carrying out the effects its
//! state machine returns: spawn, signal, log, save, record, forget, probe.

use crate::child::{self, SpawnError};
use crate::lifecycle::{Effect, Input, Now};
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

    /// Carry out effects in order. A spawn that fails is handed to the
    /// lifecycle (backoff, failed), unless `undoable`, when the error comes
    /// back at once and the rest is not done: the caller undoes the request.
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
                    let unmet = self.unmet_of(id);
                    let e = self.procs.get_mut(id).expect("a known process");
                    let fx = e.proc.hold(unmet);
                    self.apply_effects(id, fx, now, undoable)?;
                }
                Effect::Spawn => {
                    if let Err(err) = self.spawn(id, now) {
                        let err = err.to_string();
                        if undoable {
                            return Err(err);
                        }
                        let e = self.procs.get_mut(id).expect("spawn of a known process");
                        let fx = e.proc.spawn_failed(err, now);
                        self.apply_effects(id, fx, now, false)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn apply(&mut self, id: &ProcessId, effects: Vec<Effect>, now: Now) {
        let _ = self.apply_effects(id, effects, now, false);
    }

    /// Spawn a run of `id`, changing nothing if it fails.
    fn spawn(&mut self, id: &ProcessId, now: Now) -> Result<(), SpawnError> {
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
        let automatic = matches!(e.proc.state, crate::lifecycle::State::Backoff { .. });
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
        e.proc.spawned(running.pid, now);
        e.usage.started(running.pid);
        e.link = Some(running.link);
        self.spawned_alerts(id, automatic, now);
        Ok(())
    }
}
