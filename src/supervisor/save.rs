//! What is saved: `processes.json` (handed to the persister when it
//! changed, retried with a growing delay when a save fails) and the runs
//! files of saved jobs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::protocol::Target;
use crate::spec::ProcessId;
use crate::store::{RunsFile, Saved, Store};
use crate::timefmt::rfc3339;

use super::{MAX_SAVE_RETRY, Supervisor};

impl Supervisor {
    /// Save a saved job's runs file (its history and last scheduled time).
    pub(super) fn save_runs(&mut self, id: &ProcessId) {
        let path = self.runs_path(id);
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        if !e.proc.spec.save_for_next_run {
            return;
        }
        let last = e.proc.job.as_ref().and_then(|j| j.last_scheduled);
        e.scheduled_saved = last;
        e.runs_version += 1;
        let file = RunsFile {
            last_scheduled_at: last.map(rfc3339),
            runs: (*e.runs).clone(),
        };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        self.s
            .persister
            .save(Target::Runs(id.clone()), path, bytes, e.runs_version);
    }

    pub(super) fn runs_path(&self, id: &ProcessId) -> PathBuf {
        self.s.runs_dir.join(format!("{id}.json"))
    }

    pub(super) fn dirty_store_if_saved(&mut self, id: &ProcessId) {
        if self
            .procs
            .get(id)
            .is_some_and(|e| e.proc.spec.save_for_next_run)
        {
            self.dirty_store();
        }
    }

    pub(super) fn dirty_store(&mut self) {
        self.store.wanted += 1;
        self.changed = true;
    }

    /// Hand the saved configuration to the persister if it changed (or a
    /// failed save is due again).
    pub(super) fn flush_store(&mut self, now: Instant) {
        if self.store.sent >= self.store.wanted || self.store.retry_at.is_some_and(|t| t > now) {
            return;
        }
        if self.store.sent == 0 && self.store.wanted == 0 {
            return;
        }
        let saved: Vec<Saved> = self
            .procs
            .values()
            .filter(|e| e.proc.spec.save_for_next_run)
            .map(|e| Saved {
                spec: (*e.proc.spec).clone(),
                manually_stopped: e.proc.want.is_down(),
                run_count: e.proc.run_count,
            })
            .collect();
        let bytes = Store::render(saved.iter());
        self.store.wanted = self.store.wanted.max(1);
        self.store.sent = self.store.wanted;
        self.s.persister.save(
            Target::Processes,
            self.s.store.path().to_owned(),
            bytes,
            self.store.wanted,
        );
    }

    /// The persister's report.
    pub(super) fn saved(&mut self, target: Target, version: u64, result: Result<(), String>) {
        match (target, result) {
            (Target::Processes, Ok(())) => {
                self.store.acked = self.store.acked.max(version);
                if self.store.failed.is_some() && self.store.acked >= self.store.wanted {
                    self.sys(format!("{} saved again", self.s.store.path().display()));
                    self.store.failed = None;
                    self.store.retry_delay = Duration::ZERO;
                }
                self.changed = true;
            }
            (Target::Processes, Err(err)) => {
                if self.store.failed.is_none() {
                    crate::diag::warn(&err);
                }
                self.sys(format!("{err}; retrying"));
                self.store.retry_delay = (self.store.retry_delay * 2)
                    .max(Duration::from_secs(1))
                    .min(MAX_SAVE_RETRY);
                self.store.retry_at = Some(Instant::now() + self.store.retry_delay);
                self.store.failed = Some((version, err));
                self.changed = true;
            }
            (Target::Runs(_), Ok(())) => {}
            (Target::Runs(id), Err(err)) => self.sys(format!("run history of '{id}': {err}")),
        }
    }
}
