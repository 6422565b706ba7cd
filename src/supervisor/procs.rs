//! The table of processes: adding one (`insert`), forgetting one, keeping
//! a job's run records, and giving memory back once many are gone.

use std::sync::Arc;

use crate::lifecycle::{Now, Proc, RunRecord, Want};
use crate::logs::{LogConfig, LogFile};
use crate::procfs::Usage;
use crate::protocol::Target;
use crate::spec::{ProcessId, ProcessSpec};

use super::{Entry, Supervisor, publish};

impl Supervisor {
    /// Once half the processes (of at least 16) are gone, give the memory
    /// they used back to the system: after 1,000 removed, the heap would
    /// otherwise stay at its size with 1,000. Halving steps: a few trims
    /// for any number of removals.
    pub(super) fn release_memory(&mut self) {
        if self.peak >= 16 && self.procs.len() * 2 <= self.peak {
            crate::sys::trim_heap();
            self.peak = self.procs.len();
        }
    }

    pub(super) fn insert(&mut self, spec: ProcessSpec, want: Want) {
        let path = self.s.logs_dir.join(format!("{}.log", spec.id));
        let cfg = LogConfig {
            max_bytes: spec.log_max_bytes,
            backups: spec.log_backups,
        };
        let usage = Arc::new(Usage::new(
            self.s.cgroups.as_ref().map(|c| c.stats_dir(&spec.id)),
        ));
        let log = Arc::new(LogFile::new(path, cfg));
        let proc = Proc::new(spec.clone(), want);
        let runs = Arc::new(Vec::new());
        let view = Arc::new(publish::view_of(
            &proc,
            Arc::new(spec.clone()),
            &log,
            &usage,
            &runs,
            Now::read(),
            None,
        ));
        let entry = Entry {
            proc,
            log,
            link: None,
            usage,
            probing: Arc::default(),
            runs,
            runs_version: 0,
            scheduled_saved: None,
            view,
            dirty: true,
        };
        self.procs.insert(spec.id, Box::new(entry));
        self.peak = self.peak.max(self.procs.len());
        self.changed = true;
    }

    pub(super) fn forget(&mut self, id: &ProcessId) {
        let Some(e) = self.procs.remove(id) else {
            return;
        };
        self.alerts.forget(id);
        if e.proc.spec.save_for_next_run {
            self.dirty_store();
        }
        if let Some(cg) = &self.s.cgroups {
            cg.remove(id);
        }
        if e.runs_version > 0 {
            self.s.persister.delete(
                Target::Runs(id.clone()),
                self.runs_path(id),
                e.runs_version + 1,
            );
        }
        self.changed = true;
        self.sys(format!("removed process '{id}'"));
        self.emit("removed", id, serde_json::json!({}));
    }

    /// Keep a job's run record (and save the history of a saved job).
    pub(super) fn record(&mut self, id: &ProcessId, record: RunRecord) {
        self.alert_run(id, &record);
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        let keep = e.proc.spec.job.history.max(1) as usize;
        let mut runs = Vec::with_capacity(keep.min(e.runs.len() + 1));
        runs.extend(
            e.runs
                .iter()
                .skip((e.runs.len() + 1).saturating_sub(keep))
                .cloned(),
        );
        runs.push(record.clone());
        e.runs = Arc::new(runs);
        self.save_runs(id);
        let data = serde_json::to_value(&record).unwrap_or_default();
        self.emit("run", id, data);
    }
}
