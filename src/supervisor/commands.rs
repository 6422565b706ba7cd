//! The supervisor's answers to requests: add, update, start, stop,
//! restart, remove, run, input, the -all variants and shutdown (`apply` has
//! a module of its own).
//!
//! A request the user makes from a down state (start, restart of a stopped
//! process, add, run) is all or nothing: if its spawn fails, the process
//! puts back what the request changed (`lifecycle::spawn`; an added one is
//! dropped) and the reply is a 400 with the OS error.

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use super::Supervisor;
use super::replies::{Kind, Pending, Waiter, Watched};
use crate::child::InputError;
use crate::error::ApiError;
use crate::lifecycle::{Input, Now, Want};
use crate::logs::{LogConfig, Op};
use crate::protocol::{Call, Done, Outcome};
use crate::spec::{ProcessId, ProcessSpec};

impl Supervisor {
    pub(super) fn call(&mut self, call: Call, reply: Sender<Outcome>) {
        if self.shutting_down {
            let _ = reply.send(Err(ApiError::Unavailable("exeio is shutting down".into())));
            return;
        }
        // A group's id, or a copy's, is resolved first (`group`).
        let Some(call) = self.group_call(call, &reply) else {
            return;
        };
        let now = Now::read();
        match call {
            Call::Add(spec) => self.add(*spec, now, reply),
            Call::Update(spec) => self.update(*spec, now, reply),
            Call::Apply(a) => self.apply_config(*a, now, reply),
            Call::Start(id) => self.request(&id, Input::Start, Kind::Start, "started", now, reply),
            Call::Restart(id) => {
                self.request(&id, Input::Restart, Kind::Restart, "restarted", now, reply)
            }
            Call::Stop(id) => self.request(&id, Input::Stop, Kind::Stop, "stopped", now, reply),
            Call::Remove(id) => match self.needed_by(&id, &[], &[]) {
                Err(e) => self.pending.push(Pending::ready(reply, Err(e), false)),
                Ok(()) => self.request(&id, Input::Remove, Kind::Remove, "removed", now, reply),
            },
            Call::RunNow(id) => {
                self.request(&id, Input::RunNow, Kind::Start, "run started", now, reply)
            }
            Call::StopAll => self.all(Input::Stop, Kind::Stop, "stopped all processes", now, reply),
            Call::RestartAll => self.all(
                Input::Restart,
                Kind::Restart,
                "restarted all processes",
                now,
                reply,
            ),
            Call::Input(id, bytes) => {
                let answer = self.input(&id, &bytes);
                self.pending.push(Pending::ready(reply, answer, false));
            }
            Call::Signal(id, number, name) => {
                let answer = self.signal_process(&id, number, name);
                self.pending.push(Pending::ready(reply, answer, false));
            }
            Call::Shutdown => {
                let _ = reply.send(Ok(Done::message("shutting down".into())));
                self.begin_shutdown();
            }
        }
    }

    /// Step `id` with a request of the user's; undone if its spawn fails.
    pub(super) fn user_step(
        &mut self,
        id: &ProcessId,
        input: Input,
        now: Now,
    ) -> Result<(), ApiError> {
        let status = self.procs.get(id).map(|e| e.proc.status());
        let health = self.procs.get(id).map(|e| e.proc.health());
        self.user_step_quiet(id, input, now)?;
        if let Some(status) = status {
            self.note_state(id, status, false, now);
        }
        if let Some(health) = health {
            self.note_health(id, health, now);
        }
        Ok(())
    }

    /// `user_step` without the state event (the caller sends it).
    fn user_step_quiet(&mut self, id: &ProcessId, input: Input, now: Now) -> Result<(), ApiError> {
        let e = self
            .procs
            .get_mut(id)
            .ok_or_else(|| ApiError::unknown_process(id.as_str()))?;
        if e.proc.want == Want::Removed {
            return Err(ApiError::Conflict(format!(
                "process '{id}' is being removed"
            )));
        }
        let fx = e
            .proc
            .step(input, now)
            .map_err(|c| ApiError::Conflict(c.0))?;
        e.dirty = true;
        self.changed = true;
        // A spawn that fails refuses the request: the process has put back
        // what the request changed (see `lifecycle::spawn`).
        self.apply_effects(id, fx, now, true)
            .map_err(ApiError::BadRequest)?;
        // The user's latest request wins over a queued stop-all; a refused
        // one changes nothing, the queued stop included.
        self.stop_queue.remove(id);
        Ok(())
    }

    fn request(
        &mut self,
        id: &ProcessId,
        input: Input,
        kind: Kind,
        verb: &str,
        now: Now,
        reply: Sender<Outcome>,
    ) {
        let saves = self
            .procs
            .get(id)
            .is_some_and(|e| e.proc.spec.save_for_next_run);
        let run_now = input == Input::RunNow;
        if let Err(e) = self.user_step(id, input, now) {
            self.pending.push(Pending::ready(reply, Err(e), false));
            return;
        }
        let message = format!("process '{id}' {verb}");
        match self.procs.get(id) {
            Some(e) if e.proc.is_stopping() => {
                let waiter = Waiter {
                    watched: vec![Watched {
                        id: id.clone(),
                        intent: e.proc.intent,
                        attempts: e.proc.attempts,
                    }],
                    kind,
                    many: false,
                    message,
                    extra: Vec::new(),
                    refused: None,
                };
                self.pending.push(Pending::wait(reply, waiter, saves));
            }
            Some(e) if run_now && e.proc.job.as_ref().is_some_and(|j| j.queued.is_some()) => {
                let done = Done::one(
                    format!("job '{id}' is running: the run starts when the current one ends"),
                    id,
                );
                self.pending.push(Pending::ready(reply, Ok(done), saves));
            }
            Some(e) if !e.proc.waiting_for().is_empty() => {
                let waiting = e.proc.waiting_for().join(", ");
                let done = Done::one(format!("{message}: waiting for {waiting}"), id);
                self.pending.push(Pending::ready(reply, Ok(done), saves));
            }
            Some(_) => {
                let done = Done::one(message, id);
                self.pending.push(Pending::ready(reply, Ok(done), saves));
            }
            None => {
                let done = Done::message(message);
                self.pending.push(Pending::ready(reply, Ok(done), saves));
            }
        }
    }

    fn all(&mut self, input: Input, kind: Kind, message: &str, now: Now, reply: Sender<Outcome>) {
        let ids: Vec<ProcessId> = self
            .procs
            .iter()
            .filter(|(_, e)| e.proc.want != Want::Removed)
            .map(|(id, _)| id.clone())
            .collect();
        let mut watched = Vec::new();
        let saves = ids
            .iter()
            .any(|id| self.procs[id].proc.spec.save_for_next_run);
        if input == Input::Stop {
            // Dependents first: each stop goes once its dependents are down.
            self.queue_stops(ids.clone(), input.clone(), now);
        }
        for id in ids {
            if input != Input::Stop {
                self.step(&id, input.clone(), now);
            }
            if let Some(e) = self.procs.get(&id) {
                watched.push(Watched {
                    id: id.clone(),
                    intent: e.proc.intent,
                    attempts: e.proc.attempts,
                });
            }
        }
        let waiter = Waiter {
            watched,
            kind,
            many: true,
            message: message.to_owned(),
            extra: Vec::new(),
            refused: None,
        };
        self.pending.push(Pending::wait(reply, waiter, saves));
    }

    fn add(&mut self, spec: ProcessSpec, now: Now, reply: Sender<Outcome>) {
        let id = spec.id.clone();
        if self.procs.contains_key(&id) {
            let e = ApiError::Conflict(format!("a process with id '{id}' already exists"));
            self.pending.push(Pending::ready(reply, Err(e), false));
            return;
        }
        let saves = spec.save_for_next_run;
        if let Err(e) = self.check_order(&[&spec], &[], |_| String::new()) {
            self.pending.push(Pending::ready(reply, Err(e), false));
            return;
        }
        let verb = if self.waits_for_release(&spec) {
            "added: stopped, no release deployed yet (its first deploy starts it)"
        } else if crate::lifecycle::runs_at_start(&spec) {
            "added and started"
        } else {
            "added: it runs on its schedule"
        };
        // A saved process that needs an unsaved one would wait for it for
        // ever after a restart of exeio: say so now.
        let unsaved: Vec<String> = spec
            .depends_on
            .keys()
            .filter(|d| {
                saves
                    && self
                        .procs
                        .get(*d)
                        .is_some_and(|e| !e.proc.spec.save_for_next_run)
            })
            .map(|d| format!("'{d}'"))
            .collect();
        let kept = &if !unsaved.is_empty() {
            format!(
                "saved for the next start of exeio, but it depends on {}, not saved: \
                 after a restart of exeio it waits until that is added again",
                unsaved.join(", ")
            )
        } else if saves {
            "saved for the next start of exeio".to_owned()
        } else {
            "not saved: gone when exeio stops (save_for_next_run is false)".to_owned()
        };
        let answer = self.add_one(spec, now).map(|()| {
            let waiting = self.procs.get(&id).map(|e| e.proc.waiting_for().join(", "));
            let said = match waiting.filter(|w| !w.is_empty()) {
                Some(w) => format!("process '{id}' added: waiting for {w}; {kept}"),
                None => format!("process '{id}' {verb}; {kept}"),
            };
            let mut done = Done::one(said, &id);
            done.extra.push(("saved", serde_json::Value::Bool(saves)));
            done
        });
        self.pending.push(Pending::ready(reply, answer, saves));
    }

    /// Insert and start `spec`; if the spawn fails, it is as if never added.
    pub(super) fn add_one(&mut self, spec: ProcessSpec, now: Now) -> Result<(), ApiError> {
        let id = spec.id.clone();
        let saves = spec.save_for_next_run;
        if self.waits_for_release(&spec) {
            self.add_waiting_for_release(spec, now);
            return Ok(());
        }
        let held = !crate::lifecycle::order::unmet(&spec.depends_on, |dep| {
            self.procs.get(dep).map(|e| e.proc.facts())
        })
        .is_empty();
        if !crate::lifecycle::runs_at_start(&spec) || held {
            // Nothing starts now, so check what a start would need.
            self.check_start(&spec)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        }
        self.insert(spec, Want::UP);
        let status = self.procs[&id].proc.status();
        if let Err(e) = self.user_step_quiet(&id, Input::Start, now) {
            self.procs.remove(&id);
            // The spawn made its (empty) cgroup before it failed.
            if let Some(cg) = &self.s.cgroups {
                cg.remove(&id);
            }
            return Err(e);
        }
        if saves {
            self.dirty_store();
        }
        self.sys(format!("added process '{id}'"));
        self.emit("added", &id, json!({}));
        self.note_state(&id, status, false, now);
        Ok(())
    }

    /// Take a new configuration for `id`; true if a restart was started.
    pub(super) fn update_one(&mut self, new: ProcessSpec, now: Now) -> Result<bool, ApiError> {
        let id = new.id.clone();
        let e = self
            .procs
            .get_mut(&id)
            .ok_or_else(|| ApiError::unknown_process(id.as_str()))?;
        if e.proc.want == Want::Removed {
            return Err(ApiError::Conflict(format!(
                "process '{id}' is being removed"
            )));
        }
        let old = e.proc.spec.clone();
        let restart = old.needs_restart_for(&new) && e.proc.has_child();
        let saves = old.save_for_next_run || new.save_for_next_run;
        let log_cfg = LogConfig {
            max_bytes: new.log_max_bytes,
            backups: new.log_backups,
        };
        if (old.log_max_bytes, old.log_backups) != (log_cfg.max_bytes, log_cfg.backups) {
            self.s.logger.post(&e.log, Op::Configure(log_cfg));
        }
        e.proc.reconfigure(new, now);
        e.dirty = true;
        self.changed = true;
        let line = if restart {
            "configuration updated: restarting to apply it"
        } else {
            "configuration updated (no restart needed)"
        };
        self.s.logger.system(&e.log, line.into());
        if saves {
            self.dirty_store();
        }
        self.emit("updated", &id, json!({ "restarted": restart }));
        if !restart && old.max_memory_bytes != self.procs[&id].proc.spec.max_memory_bytes {
            self.watch_memory(&id, now);
        }
        if restart {
            self.user_step(&id, Input::Restart, now)?;
        }
        Ok(restart)
    }

    fn update(&mut self, new: ProcessSpec, now: Now, reply: Sender<Outcome>) {
        let id = new.id.clone();
        let Some(e) = self.procs.get(&id) else {
            let e = ApiError::unknown_process(id.as_str());
            self.pending.push(Pending::ready(reply, Err(e), false));
            return;
        };
        if *e.proc.spec == new {
            let mut done = Done::one(format!("process '{id}' unchanged"), &id);
            done.extra.push(("restarted", Value::Bool(false)));
            self.pending.push(Pending::ready(reply, Ok(done), false));
            return;
        }
        let saves = e.proc.spec.save_for_next_run || new.save_for_next_run;
        if let Err(e) = self.check_order(&[&new], &[], |_| String::new()) {
            self.pending.push(Pending::ready(reply, Err(e), false));
            return;
        }
        match self.update_one(new, now) {
            Err(e) => self.pending.push(Pending::ready(reply, Err(e), false)),
            Ok(true) => {
                let e = &self.procs[&id];
                let waiter = Waiter {
                    watched: vec![Watched {
                        id: id.clone(),
                        intent: e.proc.intent,
                        attempts: e.proc.attempts,
                    }],
                    kind: Kind::Restart,
                    many: false,
                    message: format!("process '{id}' updated and restarted"),
                    extra: vec![("restarted", Value::Bool(true))],
                    refused: None,
                };
                self.pending.push(Pending::wait(reply, waiter, saves));
            }
            Ok(false) => {
                let mut done = Done::one(format!("process '{id}' updated"), &id);
                done.extra.push(("restarted", Value::Bool(false)));
                self.pending.push(Pending::ready(reply, Ok(done), saves));
            }
        }
    }

    /// What a held reply watches of these processes.
    pub(super) fn watch(&self, ids: &[ProcessId]) -> Vec<Watched> {
        ids.iter()
            .filter_map(|id| {
                self.procs.get(id).map(|e| Watched {
                    id: id.clone(),
                    intent: e.proc.intent,
                    attempts: e.proc.attempts,
                })
            })
            .collect()
    }

    fn input(&mut self, id: &ProcessId, bytes: &[u8]) -> Outcome {
        let e = self
            .procs
            .get(id)
            .ok_or_else(|| ApiError::unknown_process(id.as_str()))?;
        let link = match (&e.link, e.proc.status()) {
            (Some(link), crate::lifecycle::Status::Running) => link,
            (_, status) => {
                return Err(ApiError::Conflict(format!(
                    "process '{id}' is {}: input needs a running process",
                    status.name()
                )));
            }
        };
        match link.input(bytes) {
            Ok(()) => Ok(Done::message(format!(
                "sent {} bytes to '{id}'",
                bytes.len()
            ))),
            Err(InputError::Full { queued }) => Err(ApiError::Unavailable(format!(
                "stdin of '{id}' is full: {queued} bytes sent earlier are still waiting for the process to read them"
            ))),
            Err(InputError::Closed) => Err(ApiError::Conflict(format!(
                "process '{id}' has closed its stdin"
            ))),
        }
    }
}
