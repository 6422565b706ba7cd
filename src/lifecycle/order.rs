//! Start and stop order (SPEC 4b `depends_on`): the graph of dependencies
//! and every decision made on it.
//!
//! Pure, like the rest of `lifecycle`: the supervisor hands in what it knows
//! of the processes (their dependencies, whether they have a probe, what
//! they are doing) and carries out the answer.
//! - `check`: unknown ids, cycles, and `healthy` on a process without a
//!   probe, each an error naming the processes (400 on add, update, apply).
//! - `unmet`: the conditions of a process that do not hold yet, as
//!   `"db (healthy)"` (its `waiting_for`).
//! - `ready_to_stop` and `stop_levels`: dependents stop before their
//!   dependencies (stop-all, shutdown).
//! - `dependents`: who needs a process (remove is 409 while anyone does).
//!
//! And the transitions of a start that waits for its dependencies, each an
//! input of `Proc::step`: `Input::Hold` (the spawn is held: status
//! `waiting`, `State::Held`), `Input::Release` (the conditions hold: spawn
//! now) and `Input::Halt` (exeio shuts down, but this process's stop signal
//! waits for its dependents to exit).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::{Effect, Proc, State};
use crate::policy::ExitStatus;
use crate::spec::{Condition, DependsOn, ProcessId};

/// What the order needs to know of one process's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub deps: &'a DependsOn,
    /// It has a `health` probe (so `healthy` can come true).
    pub has_probe: bool,
}

/// A configuration the order refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderError {
    /// `process` depends on ids that do not exist.
    Unknown {
        process: ProcessId,
        missing: Vec<ProcessId>,
    },
    /// A cycle, as the path around it (`a -> b -> a`).
    Cycle(Vec<ProcessId>),
    /// `process` needs `dependency` healthy, and it has no probe.
    NoProbe {
        process: ProcessId,
        dependency: ProcessId,
    },
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::Unknown { process, missing } => {
                let names: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
                write!(
                    f,
                    "depends_on: process '{process}' depends on unknown process{} {}",
                    if missing.len() == 1 { "" } else { "es" },
                    names.join(", ")
                )
            }
            OrderError::Cycle(path) => {
                let names: Vec<&str> = path.iter().map(ProcessId::as_str).collect();
                write!(f, "depends_on: a dependency cycle: {}", names.join(" -> "))
            }
            OrderError::NoProbe {
                process,
                dependency,
            } => write!(
                f,
                "depends_on: process '{process}' needs '{dependency}' healthy, \
                 but '{dependency}' has no health probe"
            ),
        }
    }
}

impl std::error::Error for OrderError {}

/// Check the graph where it touches `changed` (the processes added or
/// updated): their dependencies exist and, where `healthy` is asked of
/// them, have a probe; a changed process that others need healthy keeps
/// its probe; no cycle goes through a changed process. (What was there
/// before and is unchanged was checked when it came.)
pub fn check(
    nodes: &BTreeMap<ProcessId, Node<'_>>,
    changed: &[ProcessId],
) -> Result<(), OrderError> {
    let changed_set: BTreeSet<&ProcessId> = changed.iter().collect();
    for id in changed {
        let Some(node) = nodes.get(id) else { continue };
        let missing: Vec<ProcessId> = node
            .deps
            .keys()
            .filter(|d| !nodes.contains_key(*d))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(OrderError::Unknown {
                process: id.clone(),
                missing,
            });
        }
    }
    for (id, node) in nodes {
        for (dep, cond) in node.deps {
            let touches = changed_set.contains(id) || changed_set.contains(dep);
            if touches
                && *cond == Condition::Healthy
                && nodes.get(dep).is_some_and(|d| !d.has_probe)
            {
                return Err(OrderError::NoProbe {
                    process: id.clone(),
                    dependency: dep.clone(),
                });
            }
        }
    }
    for id in changed {
        if let Some(path) = cycle_from(nodes, id) {
            return Err(OrderError::Cycle(path));
        }
    }
    Ok(())
}

/// A cycle through `start`, if there is one: the path `start -> ... -> start`.
fn cycle_from(nodes: &BTreeMap<ProcessId, Node<'_>>, start: &ProcessId) -> Option<Vec<ProcessId>> {
    // Depth first, iterative (a deep chain must not overflow the stack).
    let mut path: Vec<ProcessId> = vec![start.clone()];
    let mut iters = vec![nodes.get(start)?.deps.keys()];
    let mut seen: BTreeSet<ProcessId> = BTreeSet::new();
    while let Some(it) = iters.last_mut() {
        match it.next() {
            Some(next) if next == start => {
                path.push(start.clone());
                return Some(path);
            }
            Some(next) => {
                if seen.insert(next.clone())
                    && let Some(n) = nodes.get(next)
                {
                    path.push(next.clone());
                    iters.push(n.deps.keys());
                }
            }
            None => {
                iters.pop();
                path.pop();
            }
        }
    }
    None
}

/// The processes that depend on `id`.
pub fn dependents<'a>(
    nodes: impl IntoIterator<Item = (&'a ProcessId, &'a DependsOn)>,
    id: &ProcessId,
) -> Vec<ProcessId> {
    nodes
        .into_iter()
        .filter(|(_, deps)| deps.contains_key(id))
        .map(|(d, _)| d.clone())
        .collect()
}

/// What a dependent needs to know of a dependency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Status `running`.
    pub running: bool,
    /// Health `healthy`.
    pub healthy: bool,
    /// Its latest run exited 0, and no run is going or about to start.
    pub succeeded: bool,
}

impl Facts {
    pub fn meets(self, cond: Condition) -> bool {
        match cond {
            Condition::Started => self.running,
            Condition::Healthy => self.running && self.healthy,
            Condition::CompletedSuccessfully => self.succeeded,
        }
    }
}

/// The conditions of `deps` that do not hold, as `"db (healthy)"`. A
/// dependency that is not there (`facts` gives `None`: an unsaved process
/// gone with a restart of exeio) meets none, and says so: `"db (healthy):
/// there is no process 'db'"`, not a wait that looks as if it could end.
pub fn unmet(deps: &DependsOn, facts: impl Fn(&ProcessId) -> Option<Facts>) -> Vec<String> {
    deps.iter()
        .filter_map(|(id, cond)| match facts(id) {
            Some(f) if f.meets(*cond) => None,
            Some(_) => Some(format!("{id} ({cond})")),
            None => Some(format!("{id} ({cond}): there is no process '{id}'")),
        })
        .collect()
}

/// What the stop order needs to know of one process.
#[derive(Clone, Copy, Debug)]
pub struct Stopping<'a> {
    pub deps: &'a DependsOn,
    /// A child of it is alive, and it is being stopped (its stop is queued
    /// or its stop signal was sent): its dependencies wait for it.
    pub busy: bool,
}

/// Of the processes whose stop is queued, those that may get their stop
/// signal now: no process that depends on them is still busy. Should
/// nothing be ready while nothing else is busy either (a cycle, which
/// `check` keeps out, or saved files edited by hand), all of them are: a
/// stop-all or a shutdown always ends.
pub fn ready_to_stop(
    queued: &BTreeSet<ProcessId>,
    nodes: &BTreeMap<ProcessId, Stopping<'_>>,
) -> Vec<ProcessId> {
    let mut held: BTreeSet<&ProcessId> = BTreeSet::new();
    for (id, node) in nodes {
        if node.busy {
            for dep in node.deps.keys().filter(|d| *d != id) {
                held.insert(dep);
            }
        }
    }
    let ready: Vec<ProcessId> = queued
        .iter()
        .filter(|id| !held.contains(id))
        .cloned()
        .collect();
    let others_busy = nodes.iter().any(|(id, n)| n.busy && !queued.contains(id));
    if ready.is_empty() && !others_busy {
        return queued.iter().cloned().collect();
    }
    ready
}

/// The order in which a set of processes stops: each level once every
/// level before it has exited (dependents first; within a level, in
/// parallel). Processes in a cycle come last, together.
pub fn stop_levels(nodes: &BTreeMap<ProcessId, &DependsOn>) -> Vec<Vec<ProcessId>> {
    let mut left: BTreeSet<&ProcessId> = nodes.keys().collect();
    let mut levels = Vec::new();
    while !left.is_empty() {
        let needed: BTreeSet<&ProcessId> = left
            .iter()
            .flat_map(|id| nodes[*id].keys())
            .filter(|d| left.contains(d))
            .collect();
        let mut level: Vec<ProcessId> = left
            .iter()
            .filter(|id| !needed.contains(*id))
            .map(|id| (*id).clone())
            .collect();
        if level.is_empty() {
            level = left.iter().map(|id| (*id).clone()).collect();
        }
        for id in &level {
            left.remove(id);
        }
        levels.push(level);
    }
    levels
}

impl Proc {
    /// What a dependent sees of this process.
    pub fn facts(&self) -> Facts {
        let running = matches!(self.state, State::Running { .. });
        let ended = matches!(
            self.state,
            State::Idle | State::Backoff { .. } | State::Failed { .. }
        );
        Facts {
            running,
            healthy: running && self.is_healthy(),
            succeeded: ended && matches!(self.last_exit, Some((ExitStatus::Code(0), _))),
        }
    }

    /// Health as dependents see it.
    fn is_healthy(&self) -> bool {
        self.health() == super::Health::Healthy
    }

    /// The unmet conditions a held start waits for (empty otherwise).
    pub fn waiting_for(&self) -> &[String] {
        match &self.state {
            State::Held { waiting_for, .. } => waiting_for,
            _ => &[],
        }
    }

    /// A spawn is due but `waiting_for` does not hold yet: hold it.
    pub(super) fn hold(&mut self, waiting_for: Vec<String>) -> Vec<Effect> {
        let (after_backoff, was_held) = match &self.state {
            State::Backoff { .. } => (true, false),
            State::Held { after_backoff, .. } => (*after_backoff, true),
            _ => (false, false),
        };
        let line = format!("waiting for {}", waiting_for.join(", "));
        self.state = State::Held {
            waiting_for,
            after_backoff,
        };
        if was_held {
            vec![]
        } else {
            vec![Effect::Log(line)]
        }
    }

    /// The conditions of a held start may have changed: `unmet` is what
    /// does not hold now. Spawn once it is empty.
    pub(super) fn release(&mut self, unmet: Vec<String>) -> Vec<Effect> {
        let State::Held { waiting_for, .. } = &mut self.state else {
            return vec![];
        };
        if !unmet.is_empty() {
            *waiting_for = unmet;
            return vec![];
        }
        let all: Vec<String> = (self.spec.depends_on.iter())
            .map(|(id, cond)| format!("{id} ({cond})"))
            .collect();
        let line = format!("dependencies ready ({}): starting", all.join(", "));
        vec![Effect::Log(line), Effect::Spawn]
    }

    /// exeio shuts down: nothing of this process starts any more, but its
    /// stop signal waits for its dependents (`Input::Shutdown` comes later).
    pub(super) fn halt(&mut self) -> Vec<Effect> {
        self.halt_want();
        if matches!(self.state, State::Backoff { .. } | State::Held { .. }) {
            self.state = State::Idle;
        }
        vec![]
    }
}

#[cfg(test)]
mod tests;
