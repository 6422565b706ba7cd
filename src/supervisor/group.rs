//! Groups of copies (`instances: N`, SPEC 4d), above the per-process state
//! machine: each copy `ID-n` is an ordinary process (its own log, pid,
//! restart count, backoff and probe); a group is only its copies, found by
//! their `spec.instances` (no table of its own to keep in step).
//!
//! `group_call` is where a request's id is resolved, once, before
//! `commands` sees it: a request to `ID` goes to every copy (start, stop,
//! restart, remove, run, signal), `POST /update/ID` scales and reconfigures
//! the group, and a request to one copy is that copy's own, except what
//! would make it differ from its group (update, remove: 409, the group's
//! to do). An id is taken by a process or by a group: adding `web` with
//! instances beside `web-2`, or `web-2` beside the group `web`, is a 409.
//! Called by `commands::call` on the supervisor thread.

use std::collections::BTreeMap;

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use super::Supervisor;
use super::replies::{Kind, Pending, Waiter};
use crate::error::ApiError;
use crate::lifecycle::{Facts, Input, Now, Stopping, Want};
use crate::protocol::{Call, Done, Outcome};
use crate::spec::instances::copies;
use crate::spec::{ProcessId, ProcessSpec};

impl Supervisor {
    /// The copies of group `group` that are not being removed, by number
    /// (empty: `group` names no group).
    pub(super) fn copies_of(&self, group: &ProcessId) -> Vec<ProcessId> {
        let prefix = format!("{group}-");
        let mut found: Vec<(u32, ProcessId)> = self
            .procs
            .range::<ProcessId, _>((std::ops::Bound::Excluded(group), std::ops::Bound::Unbounded))
            .skip_while(|(id, _)| !id.as_str().starts_with(&prefix))
            .take_while(|(id, _)| id.as_str().starts_with(&prefix))
            .filter(|(_, e)| e.proc.want != Want::Removed)
            .filter_map(|(id, e)| {
                let i = e.proc.spec.instances.as_deref()?;
                (i.group == *group).then(|| (i.number, id.clone()))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// Why `id` cannot be given to a new process or group: a process or a
    /// group has it.
    fn taken(&self, id: &ProcessId) -> Option<String> {
        if let Some(e) = self.procs.get(id) {
            if e.proc.want == Want::Removed {
                return Some(format!(
                    "'{id}' is still being removed: try again once it is gone"
                ));
            }
            return Some(match e.proc.spec.instances.as_deref() {
                Some(i) => format!("'{id}' is instance {} of the group '{}'", i.number, i.group),
                None => format!("a process with id '{id}' already exists"),
            });
        }
        let n = self.copies_of(id).len();
        (n > 0).then(|| format!("'{id}' is a group of {n} instances"))
    }

    /// What dependents see of group `id`: every copy must meet the
    /// condition (`None`: no such group).
    pub(super) fn group_facts(&self, id: &ProcessId) -> Option<Facts> {
        let copies = self.copies_of(id);
        let facts: Vec<Facts> = copies.iter().map(|c| self.procs[c].proc.facts()).collect();
        (!facts.is_empty()).then(|| Facts {
            running: facts.iter().all(|f| f.running),
            healthy: facts.iter().all(|f| f.healthy),
            succeeded: facts.iter().all(|f| f.succeeded),
        })
    }

    /// Of the copies `ready` to stop (stop-all, shutdown), hold those whose
    /// group a busy dependent names: a dependent of `db` holds `db-1`..`db-N`
    /// as it holds a process `db` (`lifecycle::ready_to_stop` knows ids only).
    pub(super) fn hold_copies(
        &self,
        ready: Vec<ProcessId>,
        nodes: &BTreeMap<ProcessId, Stopping<'_>>,
    ) -> Vec<ProcessId> {
        ready
            .into_iter()
            .filter(|id| {
                let Some(i) = self
                    .procs
                    .get(id)
                    .and_then(|e| e.proc.spec.instances.as_deref())
                else {
                    return true;
                };
                !nodes
                    .iter()
                    .any(|(other, n)| n.busy && other != id && n.deps.contains_key(&i.group))
            })
            .collect()
    }

    /// Resolve the id of `call`. `None`: answered here (a group's request,
    /// or a request refused for a copy); `Some`: the call, for `commands`.
    pub(super) fn group_call(&mut self, call: Call, reply: &Sender<Outcome>) -> Option<Call> {
        let now = Now::read();
        let answer = match call {
            Call::Add(spec) if spec.instances.is_some() => {
                return self.add_group(*spec, now, reply);
            }
            // A plain duplicate is `commands`' 409; a copy or a group is said here.
            Call::Add(spec) if self.is_copy(&spec.id) || self.group_id(&spec.id).is_some() => {
                let why = self.taken(&spec.id).unwrap_or_default();
                Err(ApiError::Conflict(format!(
                    "cannot add '{}': {why}",
                    spec.id
                )))
            }
            Call::Update(spec) => return self.update_group(*spec, now, reply),
            Call::Apply(mut a) => match self.expand_apply(&mut a.processes) {
                Ok(()) => return Some(Call::Apply(a)),
                Err(e) => Err(e),
            },
            Call::Remove(id) if self.is_copy(&id) => Err(ApiError::Conflict(format!(
                "{}: remove the group, or scale it down with POST /update/{} (instances)",
                self.taken(&id).unwrap_or_default(),
                self.group_of(&id).unwrap_or_default()
            ))),
            Call::Input(id, bytes) => match self.group_id(&id) {
                Some(n) => Err(ApiError::Conflict(format!(
                    "'{id}' is a group of {n} instances: input goes to one of them ({id}-1..{id}-{n})"
                ))),
                None => return Some(Call::Input(id, bytes)),
            },
            Call::Signal(id, number, name) => match self.group_id(&id) {
                Some(_) => self.signal_group(&id, number, name),
                None => return Some(Call::Signal(id, number, name)),
            },
            call => {
                let (id, input, kind, verb) = match &call {
                    Call::Start(id) => (id, Input::Start, Kind::Start, "started"),
                    Call::Stop(id) => (id, Input::Stop, Kind::Stop, "stopped"),
                    Call::Restart(id) => (id, Input::Restart, Kind::Restart, "restarted"),
                    Call::Remove(id) => (id, Input::Remove, Kind::Remove, "removed"),
                    Call::RunNow(id) => (id, Input::RunNow, Kind::Start, "run started"),
                    _ => return Some(call),
                };
                if self.group_id(id).is_none() {
                    return Some(call);
                }
                let id = id.clone();
                return self.group_request(&id, input, kind, verb, now, reply);
            }
        };
        self.pending
            .push(Pending::ready(reply.clone(), answer, false));
        None
    }

    /// `POST /apply`: each entry with `instances` becomes its copies, which
    /// the apply then adds, updates or leaves as any process (and
    /// `surplus_copies` removes those beyond the new count). An entry may
    /// not turn a process into a group or back, nor name one copy.
    fn expand_apply(&self, processes: &mut Vec<ProcessSpec>) -> Result<(), ApiError> {
        let mut out = Vec::with_capacity(processes.len());
        for (i, spec) in std::mem::take(processes).into_iter().enumerate() {
            let id = &spec.id;
            let field = |m: String| {
                ApiError::Invalid(crate::spec::FieldError {
                    field: format!("processes[{i}].id"),
                    message: format!("processes[{i}] (id '{id}'): {m}"),
                })
            };
            if let Some(g) = self.group_of(id) {
                return Err(field(format!(
                    "{}: apply the group '{g}' instead",
                    self.taken(id).unwrap_or_default()
                )));
            }
            let is_group = self.group_id(id).is_some();
            match (
                spec.instances.is_some(),
                is_group,
                self.procs.contains_key(id),
            ) {
                (true, _, true) => {
                    return Err(field(format!(
                        "'{id}' is a single process: to run it as instances, remove it first"
                    )));
                }
                (false, true, _) => {
                    return Err(field(format!(
                        "{}: its configuration keeps instances (1-64)",
                        self.taken(id).unwrap_or_default()
                    )));
                }
                (true, ..) => {
                    let copies = copies(&spec);
                    if let Some(why) = copies
                        .iter()
                        .filter(|c| {
                            !self.procs.get(&c.id).is_some_and(|e| {
                                e.proc
                                    .spec
                                    .instances
                                    .as_ref()
                                    .is_some_and(|x| x.group == *id)
                            })
                        })
                        .find_map(|c| self.taken(&c.id))
                    {
                        return Err(field(why));
                    }
                    out.extend(copies);
                }
                (false, ..) => out.push(spec),
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = out.iter().find(|s| !seen.insert(s.id.clone())) {
            return Err(ApiError::Invalid(crate::spec::FieldError {
                field: "processes".into(),
                message: format!(
                    "the id '{}' appears twice (a process and a copy of a group)",
                    dup.id
                ),
            }));
        }
        *processes = out;
        Ok(())
    }

    /// The copies of the groups in `processes` beyond their new count (not
    /// already in `removed`).
    pub(super) fn surplus_copies(
        &self,
        processes: &[ProcessSpec],
        removed: &[ProcessId],
    ) -> Vec<ProcessId> {
        let mut out = Vec::new();
        for s in processes {
            let Some(i) = s.instances.as_deref().filter(|i| i.number == 1) else {
                continue;
            };
            for id in self.copies_of(&i.group) {
                let beyond = self.procs[&id]
                    .proc
                    .spec
                    .instances
                    .as_ref()
                    .is_some_and(|x| x.number > i.count);
                if beyond && !removed.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// `Some(number of copies)` if `id` is a group (and not a process).
    fn group_id(&self, id: &ProcessId) -> Option<usize> {
        if self.procs.contains_key(id) {
            return None;
        }
        let n = self.copies_of(id).len();
        (n > 0).then_some(n)
    }

    fn is_copy(&self, id: &ProcessId) -> bool {
        self.group_of(id).is_some()
    }

    fn group_of(&self, id: &ProcessId) -> Option<String> {
        let i = self.procs.get(id)?.proc.spec.instances.as_deref()?;
        Some(i.group.to_string())
    }

    /// A request to every copy of `group`. Copies it does not apply to
    /// (start of a running copy) are left as they are; if it applies to
    /// none, the first refusal is the answer.
    fn group_request(
        &mut self,
        group: &ProcessId,
        input: Input,
        kind: Kind,
        verb: &str,
        now: Now,
        reply: &Sender<Outcome>,
    ) -> Option<Call> {
        let ids = self.copies_of(group);
        if input == Input::Remove
            && let Err(e) = self.needed_by(group, &[], &[])
        {
            self.pending
                .push(Pending::ready(reply.clone(), Err(e), false));
            return None;
        }
        let saves = ids
            .iter()
            .any(|id| self.procs[id].proc.spec.save_for_next_run);
        let mut refused = Vec::new();
        for id in &ids {
            if let Err(e) = self.user_step(id, input.clone(), now) {
                refused.push(e);
            }
        }
        if refused.len() == ids.len() {
            let first = refused.swap_remove(0);
            self.pending
                .push(Pending::ready(reply.clone(), Err(first), false));
            return None;
        }
        let mut message = format!("group '{group}' ({} instances) {verb}", ids.len());
        if !refused.is_empty() {
            let why: Vec<String> = refused.iter().map(ToString::to_string).collect();
            message = format!("{message}; left as they were: {}", why.join("; "));
        }
        let waiter = Waiter {
            watched: self.watch(&ids),
            kind,
            many: true,
            message,
            extra: Vec::new(),
            refused: None,
        };
        self.pending
            .push(Pending::wait(reply.clone(), waiter, saves));
        None
    }

    fn signal_group(&mut self, group: &ProcessId, number: i32, name: &'static str) -> Outcome {
        let ids = self.copies_of(group);
        let mut sent = Vec::new();
        let mut first_err = None;
        for id in &ids {
            match self.signal_process(id, number, name) {
                Ok(_) => sent.push(id.clone()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if sent.is_empty() => Err(e),
            _ => Ok(Done {
                message: format!(
                    "sent SIG{name} to {} of the {} instances of '{group}'",
                    sent.len(),
                    ids.len()
                ),
                ids: sent,
                many: true,
                ..Done::default()
            }),
        }
    }

    /// `POST /add` of a configuration with `instances`: every copy starts,
    /// or none stays.
    fn add_group(&mut self, spec: ProcessSpec, now: Now, reply: &Sender<Outcome>) -> Option<Call> {
        let answer = self.add_copies(spec, now);
        let saves = answer.as_ref().is_ok_and(|(_, saves)| *saves);
        self.pending
            .push(Pending::ready(reply.clone(), answer.map(|(d, _)| d), saves));
        None
    }

    fn add_copies(&mut self, spec: ProcessSpec, now: Now) -> Result<(Done, bool), ApiError> {
        let group = spec.id.clone();
        let all = copies(&spec);
        let n = all.len();
        let clash = std::iter::once(&group)
            .chain(all.iter().map(|c| &c.id))
            .find_map(|id| self.taken(id));
        if let Some(why) = clash {
            return Err(ApiError::Conflict(format!(
                "cannot add '{group}' with {n} instances ({group}-1..{group}-{n}): {why}"
            )));
        }
        let mut changed: Vec<&ProcessSpec> = vec![&spec];
        changed.extend(all.iter());
        self.check_order(&changed, &[], |_| String::new())?;
        let saves = spec.save_for_next_run;
        let mut added: Vec<ProcessId> = Vec::new();
        for copy in all {
            let id = copy.id.clone();
            if let Err(e) = self.add_one(copy, now) {
                for id in &added {
                    let _ = self.user_step(id, Input::Remove, now);
                }
                return Err(e);
            }
            added.push(id);
        }
        let kept = if saves {
            "saved for the next start of exeio"
        } else {
            "not saved: gone when exeio stops (save_for_next_run is false)"
        };
        let mut done = Done {
            message: format!(
                "group '{group}' added: {n} instances ({group}-1..{group}-{n}); {kept}"
            ),
            ids: added,
            many: true,
            ..Done::default()
        };
        done.extra.push(("saved", Value::Bool(saves)));
        Ok((done, saves))
    }

    /// `POST /update/{id}`: a group's new configuration (scaled up or down:
    /// the highest numbers go, stopped gracefully), or a refusal for what
    /// would turn a group into a process, a process into a group, or make
    /// one copy differ from its group. Anything else goes to `commands`.
    fn update_group(
        &mut self,
        new: ProcessSpec,
        now: Now,
        reply: &Sender<Outcome>,
    ) -> Option<Call> {
        let id = new.id.clone();
        let answer = if let Some(g) = self.group_of(&id) {
            Err(ApiError::Conflict(format!(
                "{}: update the group with POST /update/{g}",
                self.taken(&id).unwrap_or_default()
            )))
        } else if self.procs.contains_key(&id) && new.instances.is_some() {
            Err(ApiError::Conflict(format!(
                "'{id}' is a single process: to run it as instances, remove it and add it again with instances"
            )))
        } else if self.group_id(&id).is_none() {
            return Some(Call::Update(Box::new(new)));
        } else if new.instances.is_none() {
            Err(ApiError::Conflict(format!(
                "{}: its configuration keeps instances (1-64); to make it a single process, remove it and add it again",
                self.taken(&id).unwrap_or_default()
            )))
        } else {
            return self.rescale(new, now, reply);
        };
        self.pending
            .push(Pending::ready(reply.clone(), answer, false));
        None
    }

    fn rescale(&mut self, new: ProcessSpec, now: Now, reply: &Sender<Outcome>) -> Option<Call> {
        let group = new.id.clone();
        let old = self.copies_of(&group);
        let want = copies(&new);
        let unchanged = old.len() == want.len()
            && old
                .iter()
                .zip(&want)
                .all(|(id, w)| *self.procs[id].proc.spec == *w);
        let refuse = |s: &mut Supervisor, e: ApiError| {
            s.pending.push(Pending::ready(reply.clone(), Err(e), false));
            None
        };
        if unchanged {
            let mut done = Done::message(format!("group '{group}' unchanged"));
            done.extra.push(("restarted", Value::Bool(false)));
            self.pending
                .push(Pending::ready(reply.clone(), Ok(done), false));
            return None;
        }
        if let Some(why) = want
            .iter()
            .filter(|c| !old.contains(&c.id))
            .find_map(|c| self.taken(&c.id))
        {
            let e = ApiError::Conflict(format!("cannot scale '{group}': {why}"));
            return refuse(self, e);
        }
        let mut changed: Vec<&ProcessSpec> = vec![&new];
        changed.extend(want.iter());
        let gone: Vec<ProcessId> = old.iter().skip(want.len()).cloned().collect();
        if let Err(e) = self.check_order(&changed, &gone, |_| String::new()) {
            return refuse(self, e);
        }
        let saves = new.save_for_next_run || self.procs[&old[0]].proc.spec.save_for_next_run;
        let (mut restarted, mut added, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for copy in want {
            let id = copy.id.clone();
            let result = if old.contains(&id) {
                if *self.procs[&id].proc.spec == copy {
                    continue;
                }
                self.update_one(copy, now).map(|r| {
                    if r {
                        restarted.push(id.clone());
                    }
                })
            } else {
                self.add_one(copy, now).map(|()| added.push(id.clone()))
            };
            if let Err(e) = result {
                failed.push(format!("{id}: {e}"));
            }
        }
        for id in &gone {
            let _ = self.user_step(id, Input::Remove, now);
        }
        let mut message = format!(
            "group '{group}' updated: {} instances ({} added, {} removed, {} restarted)",
            old.len() - gone.len() + added.len(),
            added.len(),
            gone.len(),
            restarted.len()
        );
        if !failed.is_empty() {
            message = format!("{message}; failed: {}", failed.join("; "));
        }
        let watched: Vec<ProcessId> = restarted
            .iter()
            .chain(&gone)
            .chain(&added)
            .cloned()
            .collect();
        let waiter = Waiter {
            watched: self.watch(&watched),
            kind: Kind::Restart,
            many: true,
            message,
            extra: vec![
                ("restarted", Value::Bool(!restarted.is_empty())),
                (
                    "added",
                    json!(added.iter().map(ToString::to_string).collect::<Vec<_>>()),
                ),
                (
                    "removed",
                    json!(gone.iter().map(ToString::to_string).collect::<Vec<_>>()),
                ),
            ],
            refused: None,
        };
        self.pending
            .push(Pending::wait(reply.clone(), waiter, saves));
        None
    }
}

/// Each spec of an expanded apply with the index of the request's entry it
/// came from: a group's copies (consecutive, from 1) share one.
pub(super) fn entries(specs: &[ProcessSpec]) -> Vec<(ProcessId, usize)> {
    let mut entry = 0;
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let copy_after_first = s.instances.as_ref().is_some_and(|x| x.number > 1);
            if i > 0 && !copy_after_first {
                entry += 1;
            }
            (s.id.clone(), entry)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_add;

    #[test]
    fn the_copies_of_an_apply_entry_share_its_index() {
        let one = |j: &str| parse_add(j.as_bytes()).unwrap();
        let mut specs = vec![one(r#"{"id":"a","command":"x"}"#)];
        specs.extend(copies(&one(r#"{"id":"g","command":"x","instances":3}"#)));
        specs.push(one(r#"{"id":"b","command":"x"}"#));
        specs.extend(copies(&one(r#"{"id":"h","command":"x","instances":1}"#)));
        let got: Vec<(String, usize)> = entries(&specs)
            .into_iter()
            .map(|(id, i)| (id.to_string(), i))
            .collect();
        let want = [
            ("a", 0),
            ("g-1", 1),
            ("g-2", 1),
            ("g-3", 1),
            ("b", 2),
            ("h-1", 3),
        ];
        let want: Vec<(String, usize)> = want.iter().map(|(id, i)| (id.to_string(), *i)).collect();
        assert_eq!(got, want);
    }
}
