//! The supervisor's side of `depends_on`: it gathers what the order needs to
//! know, asks `lifecycle::order`, and carries out the answer.
//!
//! - Every spawn passes the gate (`apply_effects`): a process whose
//!   dependencies do not meet their conditions is held (`waiting`), whatever
//!   asked for the start (add, start, restart, apply, exeio's own start, an
//!   automatic restart after backoff, a job's run).
//! - After every loop turn that changed anything (an exit, a spawn, a
//!   request, a health change) the held processes are looked at again, and
//!   those whose conditions now hold are spawned (`release_held`). No timer.
//! - Stop-all and shutdown queue their stops; a process gets its stop
//!   signal once none of its dependents that are being stopped still has a
//!   child (`deliver_stops`).
//! - Configurations are checked before anything changes (`check_order`),
//!   and a process others need is not removed (`needed_by`).

use std::collections::{BTreeMap, BTreeSet};

use super::Supervisor;
use crate::error::ApiError;
use crate::lifecycle::{self, Input, Node, Now, Stopping, Want};
use crate::spec::{DependsOn, FieldError, ProcessId, ProcessSpec};

/// Does `spec` have a health probe (so `healthy` can come true)?
fn has_probe(spec: &ProcessSpec) -> bool {
    spec.health.is_some()
}

impl Supervisor {
    /// The conditions of `id` that do not hold now.
    pub(super) fn unmet_of(&self, id: &ProcessId) -> Vec<String> {
        let Some(e) = self.procs.get(id) else {
            return Vec::new();
        };
        lifecycle::order::unmet(&e.proc.spec.depends_on, |dep| {
            self.procs
                .get(dep)
                .filter(|d| d.proc.want != Want::Removed)
                .map(|d| d.proc.facts())
                .or_else(|| self.group_facts(dep))
        })
    }

    /// Spawn the held processes whose conditions now hold (and update the
    /// `waiting_for` of the others), until nothing more is released: a
    /// dependent of a process just started may start in the same turn.
    pub(super) fn release_held(&mut self, now: Now) {
        loop {
            let held: Vec<ProcessId> = self
                .procs
                .iter()
                .filter(|(_, e)| !e.proc.waiting_for().is_empty())
                .map(|(id, _)| id.clone())
                .collect();
            let mut released = false;
            for id in held {
                let unmet = self.unmet_of(&id);
                let ready = unmet.is_empty();
                let e = self.procs.get_mut(&id).expect("held");
                if e.proc.waiting_for() == unmet.as_slice() {
                    continue;
                }
                let before = e.proc.status();
                let fx = e.proc.step(Input::Release { unmet }, now);
                e.dirty = true;
                self.changed = true;
                self.apply(&id, fx.unwrap_or_default(), now);
                self.note_state(&id, before, false, now);
                released |= ready;
            }
            if !released {
                break;
            }
        }
    }

    /// 400 if the processes `changed` (added or updated to these specs),
    /// with `gone` removed, break the order: an unknown id, a cycle, or
    /// `healthy` asked of a process without a probe. `field_of` places the
    /// error in the request (`processes[2]` in an apply).
    pub(super) fn check_order(
        &self,
        changed: &[&ProcessSpec],
        gone: &[ProcessId],
        field_of: impl Fn(&ProcessId) -> String,
    ) -> Result<(), ApiError> {
        let mut nodes: BTreeMap<ProcessId, Node<'_>> = self
            .procs
            .iter()
            .filter(|(id, e)| e.proc.want != Want::Removed && !gone.contains(id))
            .map(|(id, e)| {
                let node = Node {
                    deps: &e.proc.spec.depends_on,
                    has_probe: has_probe(&e.proc.spec),
                };
                (id.clone(), node)
            })
            .collect();
        // A group (`instances`) is a node too: its copies share its depends_on.
        for e in self.procs.values() {
            if let Some(i) = e.proc.spec.instances.as_deref()
                && e.proc.want != Want::Removed
                && !gone.contains(&e.proc.spec.id)
            {
                let node = Node {
                    deps: &e.proc.spec.depends_on,
                    has_probe: has_probe(&e.proc.spec),
                };
                nodes.entry(i.group.clone()).or_insert(node);
            }
        }
        for spec in changed {
            let node = Node {
                deps: &spec.depends_on,
                has_probe: has_probe(spec),
            };
            nodes.insert(spec.id.clone(), node);
            if let Some(i) = spec.instances.as_deref().filter(|i| i.number > 0) {
                nodes.insert(i.group.clone(), node);
            }
        }
        let ids: Vec<ProcessId> = changed.iter().map(|s| s.id.clone()).collect();
        lifecycle::order::check(&nodes, &ids).map_err(|err| {
            let at = match &err {
                lifecycle::OrderError::Unknown { process, .. }
                | lifecycle::OrderError::NoProbe { process, .. } => process,
                lifecycle::OrderError::Cycle(path) => &path[0],
            };
            let field = field_of(at);
            ApiError::Invalid(FieldError {
                field: if field.is_empty() {
                    "depends_on".into()
                } else {
                    format!("{field}.depends_on")
                },
                message: err.to_string(),
            })
        })
    }

    /// 409 if processes that stay (not in `gone`) depend on `id`.
    pub(super) fn needed_by(
        &self,
        id: &ProcessId,
        gone: &[ProcessId],
        replaced: &[&ProcessSpec],
    ) -> Result<(), ApiError> {
        let deps_of = |pid: &ProcessId, own: &DependsOn| -> bool {
            match replaced.iter().find(|s| s.id == *pid) {
                Some(s) => s.depends_on.contains_key(id),
                None => own.contains_key(id),
            }
        };
        let mut users: Vec<String> = self
            .procs
            .iter()
            .filter(|(pid, e)| e.proc.want != Want::Removed && !gone.contains(pid))
            .filter(|(pid, e)| deps_of(pid, &e.proc.spec.depends_on))
            .map(|(pid, _)| format!("'{pid}'"))
            .collect();
        for s in replaced {
            if !self.procs.contains_key(&s.id) && s.depends_on.contains_key(id) {
                users.push(format!("'{}'", s.id));
            }
        }
        if users.is_empty() {
            return Ok(());
        }
        Err(ApiError::Conflict(format!(
            "process '{id}' is needed by {} (depends_on): remove {} or change {} depends_on first",
            users.join(", "),
            if users.len() == 1 { "it" } else { "them" },
            if users.len() == 1 { "its" } else { "their" },
        )))
    }

    /// Stop these processes dependents first (stop-all, shutdown).
    pub(super) fn queue_stops(&mut self, ids: Vec<ProcessId>, input: Input, now: Now) {
        for id in ids {
            self.stop_queue.insert(id, input.clone());
        }
        self.deliver_stops(now);
    }

    /// Send the queued stops that may go now (see `order::ready_to_stop`).
    pub(super) fn deliver_stops(&mut self, now: Now) {
        while !self.stop_queue.is_empty() {
            self.stop_queue.retain(|id, _| self.procs.contains_key(id));
            let queued: BTreeSet<ProcessId> = self.stop_queue.keys().cloned().collect();
            let nodes: BTreeMap<ProcessId, Stopping<'_>> = self
                .procs
                .iter()
                .map(|(id, e)| {
                    let stopping = queued.contains(id) || e.proc.is_stopping();
                    let node = Stopping {
                        deps: &e.proc.spec.depends_on,
                        busy: e.proc.has_child() && stopping,
                    };
                    (id.clone(), node)
                })
                .collect();
            let ready = lifecycle::ready_to_stop(&queued, &nodes);
            let ready = self.hold_copies(ready, &nodes);
            if ready.is_empty() {
                return;
            }
            for id in ready {
                if let Some(input) = self.stop_queue.remove(&id) {
                    self.step(&id, input, now);
                }
            }
        }
    }
}
