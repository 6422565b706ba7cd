//! Processes that use `{release}` (SPEC 4c), as the supervisor adds them:
//! before the first deploy such a process is added `stopped` (wanted up,
//! not started; the same at boot), its `error` saying "no release deployed
//! yet"; the deploy that follows starts it with
//! an ordinary `Input::Start` (the spawn reads the live release then, in
//! `effects::spawn` through `deploy::resolve::for_spawn`).

use serde_json::json;

use super::Supervisor;
use crate::child::SpawnError;
use crate::deploy::resolve;
use crate::lifecycle::{Now, Want};
use crate::spec::ProcessSpec;

impl Supervisor {
    /// Whether `spec` waits for its first deploy (uses `{release}`, none live).
    pub(super) fn waits_for_release(&self, spec: &ProcessSpec) -> bool {
        resolve::waits_for_release(spec, &self.s.data_dir)
    }

    /// `child::check` of what a spawn would run now: with the live release
    /// in place of `{release}`; nothing to check while none is deployed
    /// (the process is added stopped, waiting for it).
    pub(super) fn check_start(&self, spec: &ProcessSpec) -> Result<(), SpawnError> {
        match resolve::for_spawn(spec, &self.s.data_dir) {
            Ok(Some(released)) => crate::child::check(&released),
            Ok(None) => crate::child::check(spec),
            Err(_) => Ok(()),
        }
    }

    /// Add `spec` stopped, waiting for its first deploy.
    pub(super) fn add_waiting_for_release(&mut self, spec: ProcessSpec, now: Now) {
        let id = spec.id.clone();
        let saves = spec.save_for_next_run;
        // Wanted up but not started: `stopped`, not `manually_stopped`.
        self.insert(spec, Want::Up);
        let e = self.procs.get_mut(&id).expect("inserted");
        e.proc.error = Some(resolve::NO_RELEASE.to_owned());
        let status = e.proc.status();
        if saves {
            self.dirty_store();
        }
        self.sys(format!(
            "added process '{id}': stopped, {} (its first deploy starts it)",
            resolve::NO_RELEASE
        ));
        self.emit("added", &id, json!({}));
        self.note_state(&id, status, false, now);
    }
}
