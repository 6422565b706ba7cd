//! `POST /apply`: the supervisor's reconciliation with a whole
//! configuration. A `Plan` sorts each entry into added, updated (restarted
//! or not), removed (`prune`, and a group's surplus copies) and unchanged;
//! `dry_run` answers with the plan and changes nothing. All or nothing for
//! the adds: if one cannot start, nothing is applied and the reply names
//! the first failed entry (`processes[i]`). Called by `commands::call`.

use crossbeam_channel::Sender;
use serde_json::{Value, json};

use super::Supervisor;
use super::replies::{Kind, Pending, Waiter};
use crate::error::ApiError;
use crate::lifecycle::{Input, Now, Want};
use crate::protocol::{Apply, Done, Outcome};
use crate::spec::{ProcessId, ProcessSpec};

impl Supervisor {
    /// `POST /apply`: reconcile with a whole configuration.
    pub(super) fn apply_config(&mut self, a: Apply, now: Now, reply: Sender<Outcome>) {
        let mut plan = Plan {
            order: super::group::entries(&a.processes),
            ..Plan::default()
        };
        for spec in &a.processes {
            match self.procs.get(&spec.id) {
                None => plan.added.push(spec.id.clone()),
                Some(e) if e.proc.want == Want::Removed => {
                    let err = ApiError::Conflict(format!(
                        "process '{}' is being removed: apply again once it is gone",
                        spec.id
                    ));
                    self.pending.push(Pending::ready(reply, Err(err), false));
                    return;
                }
                Some(e) if *e.proc.spec == *spec => plan.unchanged.push(spec.id.clone()),
                Some(e) => {
                    plan.updated.push(spec.id.clone());
                    if e.proc.spec.needs_restart_for(spec) && e.proc.has_child() {
                        plan.restarted.push(spec.id.clone());
                    }
                }
            }
        }
        if a.prune {
            let wanted: std::collections::HashSet<&ProcessId> =
                a.processes.iter().map(|s| &s.id).collect();
            plan.removed = self
                .procs
                .values()
                .filter(|e| e.proc.spec.save_for_next_run && !wanted.contains(&e.proc.spec.id))
                .filter(|e| e.proc.want != Want::Removed)
                .map(|e| e.proc.spec.id.clone())
                .collect();
        }
        // Copies beyond a group's new count go, prune or not (`group`).
        plan.removed
            .extend(self.surplus_copies(&a.processes, &plan.removed));
        let specs: Vec<&ProcessSpec> = a.processes.iter().collect();
        // A pruned process that stays needed is a 409, as for /remove.
        let order_ok = plan
            .removed
            .iter()
            .try_for_each(|id| self.needed_by(id, &plan.removed, &specs))
            .and_then(|()| {
                self.check_order(&specs, &plan.removed, |id| {
                    plan.order
                        .iter()
                        .find(|(x, _)| x == id)
                        .map(|(_, i)| format!("processes[{i}]"))
                        .unwrap_or_default()
                })
            });
        if let Err(e) = order_ok {
            self.pending.push(Pending::ready(reply, Err(e), false));
            return;
        }
        if a.dry_run {
            let mut done = Done::message(format!("dry run: {}", plan.summary()));
            done.extra = plan.fields(true);
            self.pending.push(Pending::ready(reply, Ok(done), false));
            return;
        }
        // All or nothing: what is added must be able to start. Its spawn's
        // checks come before anything changes.
        plan.failed = a
            .processes
            .iter()
            .filter(|s| plan.added.contains(&s.id))
            .filter_map(|s| Some((s.id.clone(), self.check_start(s).err()?.to_string())))
            .collect();
        if !plan.failed.is_empty() {
            let done = Done {
                message: plan.refusal(),
                many: true,
                extra: plan.fields(false),
                refused: plan.refused(),
                ..Done::default()
            };
            self.pending.push(Pending::ready(reply, Ok(done), false));
            return;
        }
        let saves = a.processes.iter().any(|s| s.save_for_next_run) || !plan.removed.is_empty();
        // Adds first: should a spawn still fail, undoing the adds before it
        // undoes the whole apply.
        let (adds, others): (Vec<_>, Vec<_>) = a
            .processes
            .into_iter()
            .partition(|s| plan.added.contains(&s.id));
        let mut added = Vec::new();
        for spec in adds {
            let id = spec.id.clone();
            if let Err(e) = self.add_one(spec, now) {
                plan.failed.push((id, e.to_string()));
                for id in &added {
                    let _ = self.user_step(id, Input::Remove, now);
                }
                let waiter = Waiter {
                    watched: self.watch(&added),
                    kind: Kind::Remove,
                    many: true,
                    message: plan.refusal(),
                    extra: plan.fields(false),
                    refused: plan.refused(),
                };
                self.pending.push(Pending::wait(reply, waiter, saves));
                return;
            }
            added.push(id);
        }
        for spec in others {
            let id = spec.id.clone();
            if plan.updated.contains(&id)
                && let Err(e) = self.update_one(spec, now)
            {
                plan.restarted.retain(|x| *x != id);
                plan.failed.push((id, e.to_string()));
            }
        }
        for id in plan.removed.clone() {
            let _ = self.user_step(&id, Input::Remove, now);
        }
        let watched: Vec<ProcessId> = plan
            .restarted
            .iter()
            .chain(&plan.removed)
            .cloned()
            .collect();
        let waiter = Waiter {
            watched: self.watch(&watched),
            kind: Kind::Restart,
            many: true,
            message: format!("applied: {}", plan.summary()),
            extra: plan.fields(false),
            refused: plan.refused(),
        };
        self.pending.push(Pending::wait(reply, waiter, saves));
    }
}

/// What an apply does.
#[derive(Default)]
struct Plan {
    added: Vec<ProcessId>,
    updated: Vec<ProcessId>,
    restarted: Vec<ProcessId>,
    removed: Vec<ProcessId>,
    unchanged: Vec<ProcessId>,
    /// Processes that cannot start, and why.
    failed: Vec<(ProcessId, String)>,
    /// Each id and the index of its entry in the request (the copies of a
    /// group share their entry's).
    order: Vec<(ProcessId, usize)>,
}

impl Plan {
    fn summary(&self) -> String {
        format!(
            "{} added, {} updated ({} restarted), {} removed, {} unchanged{}",
            self.added.len(),
            self.updated.len(),
            self.restarted.len(),
            self.removed.len(),
            self.unchanged.len(),
            if self.failed.is_empty() {
                String::new()
            } else {
                format!(", {} failed", self.failed.len())
            }
        )
    }

    /// The entry an apply with failures is refused for (`processes[i]`).
    fn refused(&self) -> Option<String> {
        let (id, _) = self.failed.first()?;
        let (_, i) = self.order.iter().find(|(x, _)| x == id)?;
        Some(format!("processes[{i}]"))
    }

    /// The message of an apply refused because of `failed`.
    fn refusal(&self) -> String {
        let why: Vec<String> = self
            .failed
            .iter()
            .map(|(id, e)| format!("process '{id}': {e}"))
            .collect();
        format!("nothing applied: {}", why.join("; "))
    }

    fn fields(&self, dry_run: bool) -> Vec<(&'static str, Value)> {
        let ids =
            |v: &[ProcessId]| Value::from(v.iter().map(|i| i.to_string()).collect::<Vec<_>>());
        vec![
            ("added", ids(&self.added)),
            ("updated", ids(&self.updated)),
            ("restarted", ids(&self.restarted)),
            ("removed", ids(&self.removed)),
            ("unchanged", ids(&self.unchanged)),
            (
                "failed",
                Value::from(
                    self.failed
                        .iter()
                        .map(|(id, e)| json!({"id": id.to_string(), "error": e}))
                        .collect::<Vec<_>>(),
                ),
            ),
            ("dry_run", Value::Bool(dry_run)),
        ]
    }
}
