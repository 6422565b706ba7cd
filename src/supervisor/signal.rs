//! `POST /signal/{id}`: a signal of the user's to a running process's group
//! (reload, rotate a log), with a SYSTEM line. No state changes: what the
//! process does with the signal (even exit) is handled as any exit is.
//! Called by `commands` on the supervisor thread.

use super::Supervisor;
use crate::child;
use crate::error::ApiError;
use crate::lifecycle::Status;
use crate::protocol::{Done, Outcome};
use crate::spec::ProcessId;

impl Supervisor {
    pub(super) fn signal_process(&mut self, id: &ProcessId, number: i32, name: &str) -> Outcome {
        let e = self
            .procs
            .get(id)
            .ok_or_else(|| ApiError::unknown_process(id.as_str()))?;
        let pid = match (e.proc.status(), e.proc.pid()) {
            (Status::Running, Some(pid)) => pid,
            (status, _) => {
                return Err(ApiError::Conflict(format!(
                    "process '{id}' is {}: a signal needs a running process",
                    status.name()
                )));
            }
        };
        child::signal_group(pid, number)
            .map_err(|err| ApiError::Internal(format!("cannot signal '{id}': {err}")))?;
        self.s.logger.system(
            &e.log,
            format!("sent SIG{name} to the process group (pgid {pid}) on request"),
        );
        Ok(Done::one(
            format!("sent SIG{name} to '{id}' (pid {pid})"),
            id,
        ))
    }
}
