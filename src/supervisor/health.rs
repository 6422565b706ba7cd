//! Health checks, from the supervisor's side: hand a due check to the probe
//! pool, feed its answer to the process, arm a `log` probe's line hook at
//! each spawn, and publish `health` events. The decisions are in
//! `lifecycle::health`; the I/O in `crate::health`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::json;

use super::Supervisor;
use crate::health::Check;
use crate::lifecycle::{Health, Input, Now, ProbeResult, State};
use crate::logs::LineWatch;
use crate::spec::{Probe, ProcessId};
use crate::timefmt::rfc3339;

impl Supervisor {
    /// `Effect::Probe`: run check `seq` of run `generation` on the pool.
    pub(super) fn probe(&mut self, id: &ProcessId, generation: u64, seq: u64, now: Now) {
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        e.probing.store(generation, Ordering::Relaxed);
        // An exec probe runs like the process: in its live release (SPEC 4c).
        let spec = match crate::deploy::live_dir(&self.s.data_dir, id.as_str()) {
            Some(dir) => Arc::new(crate::deploy::resolve::with_release(&e.proc.spec, &dir)),
            None => e.proc.spec.clone(),
        };
        let check = Check {
            id: id.clone(),
            generation,
            seq,
            spec,
            wanted: Arc::downgrade(&e.probing),
        };
        if self.s.probes.submit(check).is_err() {
            let _ = e.proc.step(Input::ProbeRefused { seq }, now);
            self.sys(format!(
                "health check of '{id}' skipped: the probe queue is full"
            ));
        }
    }

    /// Answers came: take them in a moment, with those that follow.
    pub(super) fn probes_answered(&mut self) {
        self.answers_due
            .get_or_insert_with(|| Instant::now() + crate::health::ANSWER_WINDOW);
    }

    /// Feed every answer that came to its process.
    pub(super) fn take_answers(&mut self) {
        self.answers_due = None;
        for (id, result) in self.s.probes.answers.take() {
            self.probed(&id, result);
        }
    }

    /// An answer from the pool (or a `log` match).
    fn probed(&mut self, id: &ProcessId, result: ProbeResult) {
        let now = Now::read();
        let Some(e) = self.procs.get_mut(id) else {
            return; // removed: its answers are dropped
        };
        let before = e.proc.status();
        let health = e.proc.health();
        let fx = e.proc.step(Input::Probed(result), now).unwrap_or_default();
        e.dirty = true;
        self.changed = true;
        self.apply(id, fx, now);
        self.note_state(id, before, false, now);
        self.note_health(id, health, now);
    }

    /// Before a spawn of a process with a `log` probe: watch the lines of
    /// the coming run (`generation`). Armed before the child can write.
    pub(super) fn arm_log_probe(&self, id: &ProcessId, generation: u64) {
        let Some(e) = self.procs.get(id) else {
            return;
        };
        let Some(Probe::Log(pattern)) = e.proc.spec.health.as_deref().map(|h| &h.probe) else {
            e.log.lines.disarm();
            return;
        };
        let (answers, id) = (self.s.probes.answers.clone(), id.clone());
        let source = pattern.source.clone();
        e.log.lines.arm(LineWatch {
            regex: pattern.regex.clone(),
            report: Box::new(move |line: String| {
                let shown: String = line.chars().take(200).collect();
                let result = ProbeResult {
                    generation,
                    seq: None,
                    ok: true,
                    message: format!("log matched /{source}/: {shown}"),
                    at: std::time::SystemTime::now(),
                    took: std::time::Duration::ZERO,
                };
                answers.post(id, result);
            }),
        });
    }

    /// Emit a `health` event if the health of `id` changed from `before`
    /// (and stop the checks of a run that ended).
    pub(super) fn note_health(&mut self, id: &ProcessId, before: Health, now: Now) {
        let Some(e) = self.procs.get(id) else {
            return;
        };
        if !matches!(e.proc.state, State::Running { .. }) {
            e.probing.store(0, Ordering::Relaxed);
        }
        let after = e.proc.health();
        if after == before {
            return;
        }
        let message = e.proc.health.as_ref().and_then(|h| h.message.clone());
        let data = json!({
            "from": before.name(),
            "to": after.name(),
            "message": message,
            "at": rfc3339(now.wall),
        });
        self.emit("health", id, data);
        if after == Health::Unhealthy {
            let why = message.unwrap_or_else(|| "its health check failed".into());
            self.alert(
                crate::notify::Kind::Unhealthy,
                id,
                format!("process '{id}' is unhealthy: {why}"),
                json!({"from": before.name(), "message": why}),
            );
        }
    }
}
