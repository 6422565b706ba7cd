//! What the supervisor shows: the published `View` (rebuilt for the
//! processes that changed, once per loop turn, before any reply goes out)
//! and the events of the event stream.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Entry, Supervisor};
use crate::lifecycle::{Now, Proc, RunRecord, State, Status};
use crate::logs::LogFile;
use crate::procfs::Usage;
use crate::spec::{ProcessId, ProcessSpec};
use crate::timefmt::rfc3339;
use crate::view::{ProcView, StoreHealth, View};

/// A process's published copy.
pub(super) fn view_of(
    p: &Proc,
    spec: Arc<ProcessSpec>,
    log: &Arc<LogFile>,
    usage: &Arc<Usage>,
    runs: &Arc<Vec<RunRecord>>,
    now: Now,
    save_error: Option<String>,
) -> ProcView {
    let next_run = p.next_run_at();
    let job = p.job.as_ref();
    ProcView {
        spec,
        status: p.status(),
        pid: p.pid(),
        started: p.started(),
        next_run,
        next_run_wall: match (p.state.clone(), job) {
            (State::Backoff { until }, _) => Some(now.wall_of(until)),
            (_, Some(j)) => next_run.and(j.next_wall()),
            _ => None,
        },
        run_count: p.run_count,
        restart_count: p.streak,
        restarts_total: p.restarts_total,
        exits: p.exits,
        last_run: p.last_run,
        last_exit: p.last_exit,
        last_result: job.and_then(|j| j.last_result),
        last_success: job.and_then(|j| j.last_success),
        error: p.error.clone(),
        save_error,
        log: log.clone(),
        usage: usage.clone(),
        runs: runs.clone(),
        waiting_for: p.waiting_for().to_vec(),
        health: p.health(),
        health_message: p.health.as_ref().and_then(|h| h.message.clone()),
        health_checked_at: p.health.as_ref().and_then(|h| h.checked_at),
        health_checks: p
            .health
            .as_ref()
            .map(|h| h.checks.iter().cloned().collect())
            .unwrap_or_default(),
        health_counts: p
            .health
            .as_ref()
            .map_or((0, 0), |h| (h.checks_ok, h.checks_failed)),
    }
}

impl Supervisor {
    /// Publish a new view if anything changed.
    pub(super) fn publish(&mut self, now: Now) {
        if !self.changed {
            return;
        }
        self.changed = false;
        let save_error = self.store.failed.as_ref().map(|(_, e)| e.clone());
        let unsaved = self.store.acked < self.store.wanted;
        for e in self.procs.values_mut() {
            let mine = (unsaved && e.proc.spec.save_for_next_run)
                .then(|| save_error.clone())
                .flatten();
            if e.dirty || mine != e.view.save_error {
                e.view = Arc::new(refresh(e, now, mine));
                e.dirty = false;
            }
        }
        let store = StoreHealth {
            error: save_error,
            pending: unsaved,
            retry_at: self.store.retry_at.map(|t| now.wall_of(t)),
        };
        self.s.published.store(View {
            procs: self.procs.values().map(|e| e.view.clone()).collect(),
            store,
        });
    }

    /// Emit a `state` event if the status of `id` changed from `before`.
    /// `by_exit`: the change is the exit of the current run, whose status
    /// the event carries (any other change has `"exit": null`, not the
    /// exit of an earlier run).
    pub(super) fn note_state(&mut self, id: &ProcessId, before: Status, by_exit: bool, now: Now) {
        let Some(e) = self.procs.get(id) else {
            return;
        };
        let after = e.proc.status();
        if after == before {
            return;
        }
        self.alert_state(id, before, after);
        let exit = match (after, e.proc.last_exit) {
            (Status::Running, _) | (_, None) => Value::Null,
            _ if !by_exit => Value::Null,
            (_, Some((status, _))) => {
                serde_json::to_value(crate::lifecycle::ExitInfo::from(status)).unwrap_or_default()
            }
        };
        let data = json!({
            "from": before.name(),
            "to": after.name(),
            "pid": e.proc.pid(),
            "exit": exit,
            "at": rfc3339(now.wall),
        });
        self.emit("state", id, data);
    }

    /// Publish an event about `id`; `data` gets the id added.
    pub(super) fn emit(&self, kind: &str, id: &ProcessId, mut data: Value) {
        if let Value::Object(m) = &mut data {
            m.insert("id".into(), Value::String(id.to_string()));
            if !m.contains_key("at") {
                m.insert(
                    "at".into(),
                    Value::String(rfc3339(std::time::SystemTime::now())),
                );
            }
        }
        self.s.events.publish(kind, &data);
    }
}

fn refresh(e: &Entry, now: Now, save_error: Option<String>) -> ProcView {
    view_of(
        &e.proc,
        e.proc.spec.clone(),
        &e.log,
        &e.usage,
        &e.runs,
        now,
        save_error,
    )
}
