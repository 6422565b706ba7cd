//! What HTTP threads read: an immutable snapshot of every process that the
//! supervisor publishes after each change (`Published::store`). Readers take
//! an `Arc` to the current `View` and never cross into the supervisor, so
//! `GET /list` costs no round trip. The supervisor stays the only writer of
//! process state; a `View` is a copy, rebuilt only for the processes that
//! changed.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Instant, SystemTime};

use crate::lifecycle::{Check, Exits, Health, RunRecord, RunResult, Status};
use crate::logs::LogFile;
use crate::policy::ExitStatus;
use crate::procfs::Usage;
use crate::spec::{ProcessId, ProcessSpec};

/// One process, as of the last change.
#[derive(Debug)]
pub struct ProcView {
    pub spec: Arc<ProcessSpec>,
    pub status: Status,
    pub pid: Option<u32>,
    /// When the current run started.
    pub started: Option<Instant>,
    /// When the next run starts (a pending restart or a job's next time).
    pub next_run: Option<Instant>,
    /// The wall clock of `next_run`, fixed when published.
    pub next_run_wall: Option<SystemTime>,
    pub run_count: u64,
    pub restart_count: u32,
    pub restarts_total: u64,
    pub exits: Exits,
    pub last_run: Option<SystemTime>,
    pub last_exit: Option<(ExitStatus, SystemTime)>,
    pub last_result: Option<RunResult>,
    pub last_success: Option<SystemTime>,
    /// A spawn error, or why restarts stopped.
    pub error: Option<String>,
    /// Why this process's saved configuration is not saved yet.
    pub save_error: Option<String>,
    pub log: Arc<LogFile>,
    pub usage: Arc<Usage>,
    /// Finished runs of a job, oldest first.
    pub runs: Arc<Vec<RunRecord>>,
    /// The unmet conditions of a start held for its dependencies.
    pub waiting_for: Vec<String>,
    /// Health probes (SPEC 4b): `Health::None` without a probe.
    pub health: Health,
    pub health_message: Option<String>,
    pub health_checked_at: Option<SystemTime>,
    /// The last checks, oldest first, and the checks ever made.
    pub health_checks: Vec<Check>,
    pub health_counts: (u64, u64),
}

impl ProcView {
    pub fn id(&self) -> &ProcessId {
        &self.spec.id
    }
}

/// Every process, sorted by id, and the health of the saved configuration.
#[derive(Debug, Default)]
pub struct View {
    pub procs: Vec<Arc<ProcView>>,
    pub store: StoreHealth,
}

#[derive(Clone, Debug, Default)]
pub struct StoreHealth {
    /// The last save failed with this; retried.
    pub error: Option<String>,
    /// Changes not yet on disk.
    pub pending: bool,
    pub retry_at: Option<SystemTime>,
}

impl View {
    pub fn get(&self, id: &str) -> Option<&Arc<ProcView>> {
        self.procs
            .binary_search_by(|p| p.spec.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.procs[i])
    }

    /// The copies of group `group` (`instances`), by number; empty if
    /// `group` names no group. Copies `group-N` sort together.
    pub fn copies(&self, group: &str) -> Vec<&Arc<ProcView>> {
        let prefix = format!("{group}-");
        let start = self
            .procs
            .partition_point(|p| p.spec.id.as_str() < prefix.as_str());
        let mut copies: Vec<&Arc<ProcView>> = self.procs[start..]
            .iter()
            .take_while(|p| p.spec.id.as_str().starts_with(&prefix))
            .filter(|p| {
                p.spec
                    .instances
                    .as_ref()
                    .is_some_and(|i| i.group.as_str() == group)
            })
            .collect();
        copies.sort_by_key(|p| p.spec.instances.as_ref().map_or(0, |i| i.number));
        copies
    }

    /// The one process `id` for a read that is about one process (a log,
    /// runs, health): 404 if unknown, 400 naming the copies for a group.
    pub fn one(&self, id: &str) -> Result<&Arc<ProcView>, crate::error::ApiError> {
        if let Some(p) = self.get(id) {
            return Ok(p);
        }
        let copies = self.copies(id);
        match (copies.first(), copies.last()) {
            (Some(first), Some(last)) => Err(crate::error::ApiError::BadRequest(format!(
                "'{id}' is a group of {} instances ({}..{}): name one of them",
                copies.len(),
                first.id(),
                last.id()
            ))),
            _ => Err(crate::error::ApiError::unknown_process(id)),
        }
    }
}

/// The current `View`, swapped by the supervisor, read by everyone.
#[derive(Default)]
pub struct Published {
    view: RwLock<Arc<View>>,
}

impl Published {
    pub fn load(&self) -> Arc<View> {
        self.view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn store(&self, view: View) {
        *self.view.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(view);
    }
}
