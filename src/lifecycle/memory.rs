//! The memory limit (`max_memory_bytes`): samples of what a run uses, and
//! the restart of a run that stays over it.

use super::{Cause, Effect, MEMORY_SAMPLES, Now, Proc, State};

impl Proc {
    /// Three samples in a row above `max_memory_bytes` stop the run; its
    /// exit restarts it through the backoff table (see `exited`).
    pub(super) fn memory(&mut self, generation_: u64, bytes: u64, now: Now) -> Vec<Effect> {
        let (Some(limit), State::Running { generation, .. }) =
            (self.spec.max_memory_bytes, &self.state)
        else {
            return vec![];
        };
        if *generation != generation_ {
            return vec![];
        }
        if bytes <= limit {
            self.over_memory = 0;
            return vec![];
        }
        self.over_memory += 1;
        if self.over_memory < MEMORY_SAMPLES {
            return vec![];
        }
        self.over_memory = 0;
        let mut fx = vec![Effect::Log(format!(
            "using {bytes} bytes, over max_memory_bytes ({limit}) for {MEMORY_SAMPLES} samples in a row: restarting"
        ))];
        fx.extend(self.begin_stop(Cause::Memory, now));
        fx
    }
}
