//! Messages into the supervisor thread, and what it answers.
//!
//! Everything that reaches the supervisor comes through one channel of `Msg`:
//! requests from HTTP threads (each with a `bounded(1)` reply sender), exits
//! from child threads, save results from the persister, and signals. Reads
//! never come here: the supervisor publishes a `View` after every change and
//! HTTP threads read that (`view.rs`).

use std::time::SystemTime;

use crossbeam_channel::Sender;
use serde_json::Value;

use crate::error::ApiError;
use crate::policy::ExitStatus;
use crate::spec::{ProcessId, ProcessSpec};

/// One message on the supervisor channel.
pub enum Msg {
    Call(Call, Sender<Outcome>),
    Event(Event),
    /// SIGTERM / SIGINT: the same path as `POST /shutdown`, without a reply.
    Shutdown,
    /// SIGHUP: reopen every log file.
    ReopenLogs,
}

/// What an HTTP request asks the supervisor to do.
#[derive(Debug)]
pub enum Call {
    Add(Box<ProcessSpec>),
    Update(Box<ProcessSpec>),
    Apply(Box<Apply>),
    Start(ProcessId),
    Restart(ProcessId),
    Stop(ProcessId),
    Remove(ProcessId),
    RunNow(ProcessId),
    RestartAll,
    StopAll,
    Input(ProcessId, Vec<u8>),
    /// `POST /signal/{id}`: this signal (number, name) to the process's group.
    Signal(ProcessId, i32, &'static str),
    Shutdown,
}

/// `POST /apply`: the whole desired configuration.
#[derive(Debug)]
pub struct Apply {
    pub processes: Vec<ProcessSpec>,
    pub prune: bool,
    pub dry_run: bool,
}

/// Facts reported to the supervisor.
#[derive(Debug)]
pub enum Event {
    /// The child's output is drained and its exit logged; it is a zombie
    /// waiting to be reaped by the supervisor.
    Exited {
        id: ProcessId,
        generation: u64,
        status: ExitStatus,
        at: SystemTime,
    },
    /// Health checks answered: take them from `health::Answers`.
    ProbesAnswered,
    /// The persister wrote (or failed to write) `version` of `target`.
    Saved {
        target: Target,
        version: u64,
        result: Result<(), String>,
    },
}

/// Which file the persister writes (`persist`), as its `Saved` event says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `<config-dir>/processes.json`.
    Processes,
    /// `<data-dir>/runs/<id>.json`: a job's run history.
    Runs(ProcessId),
}

/// What the supervisor answers a `Call` with.
pub type Outcome = Result<Done, ApiError>;

/// A request carried out.
#[derive(Debug, Default)]
pub struct Done {
    pub message: String,
    /// The processes to show in the reply (`process`, or `processes` when
    /// `many`), rendered from the view published before the reply.
    pub ids: Vec<ProcessId>,
    pub many: bool,
    /// More fields for the reply body (`restarted`, the apply plan, ...).
    pub extra: Vec<(&'static str, Value)>,
    /// Refused for the field named here (a 400 that still carries the
    /// other fields: an apply's plan and why it failed).
    pub refused: Option<String>,
}

impl Done {
    pub fn one(message: String, id: &ProcessId) -> Done {
        Done {
            message,
            ids: vec![id.clone()],
            ..Done::default()
        }
    }

    pub fn message(message: String) -> Done {
        Done {
            message,
            ..Done::default()
        }
    }
}
