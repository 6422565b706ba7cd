//! What a process reports of itself: its status (SPEC 5) and its exits
//! counted by how they ended. Derived from the state machine in `mod.rs`.

/// Status names of SPEC 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Running,
    Stopped,
    Waiting,
    Backoff,
    Stopping,
    Failed,
    ManuallyStopped,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Running,
        Status::Stopped,
        Status::Waiting,
        Status::Backoff,
        Status::Stopping,
        Status::Failed,
        Status::ManuallyStopped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Waiting => "waiting",
            Status::Backoff => "backoff",
            Status::Stopping => "stopping",
            Status::Failed => "failed",
            Status::ManuallyStopped => "manually_stopped",
        }
    }
}

/// Exits counted by how they ended (metrics counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exits {
    pub success: u64,
    pub failure: u64,
    pub signal: u64,
}
