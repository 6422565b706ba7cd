//! Messages into the supervisor thread, and what it answers.
//!
//! Everything that reaches the supervisor comes through one channel of `Msg`:
//! calls from HTTP workers (each with a `bounded(1)` reply sender), exits from
//! child threads, and signals. Replies are plain data (`Snapshot`), never
//! handles to process state.

use std::sync::Arc;
use std::time::SystemTime;

use crossbeam_channel::Sender;
use serde::Serialize;

use crate::error::ApiError;
use crate::logs::LogFile;
use crate::policy::ExitStatus;
use crate::spec::{ProcessId, ProcessSpec};

/// One message on the supervisor channel.
pub enum Msg {
    Call(Call, Sender<Reply>),
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
    Start(ProcessId),
    Restart(ProcessId),
    Stop(ProcessId),
    Remove(ProcessId),
    RestartAll,
    StopAll,
    List,
    Status(ProcessId),
    Input(ProcessId, String),
    /// The log handle of a process, for the HTTP worker to read or clear.
    Log(ProcessId),
    Shutdown,
}

/// Facts reported by child threads.
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
}

pub type Reply = Result<Answer, ApiError>;

pub enum Answer {
    Done {
        message: String,
        process: Option<Box<Snapshot>>,
    },
    Many {
        message: String,
        processes: Vec<Snapshot>,
    },
    List(Vec<Snapshot>),
    Process(Box<Snapshot>),
    Log(Arc<LogFile>),
}

/// How a run ended, with its wall-clock time (`last_exit` of the process object).
#[derive(Clone, Debug, Serialize)]
pub struct LastExit {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub at: String,
}

/// The process object of SPEC 5.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub command: String,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub status: &'static str,
    pub is_running: bool,
    pub pid: Option<u32>,
    pub auto_restart: bool,
    pub restart_policy: &'static str,
    pub max_restarts: Option<u32>,
    pub save_for_next_run: bool,
    pub periodic: bool,
    pub period_seconds: Option<u64>,
    pub stop_signal: &'static str,
    pub stop_timeout_seconds: u64,
    pub run_count: u64,
    pub restart_count: u32,
    pub last_run: Option<String>,
    pub last_exit: Option<LastExit>,
    pub next_run_in_seconds: Option<f64>,
    pub uptime_seconds: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    pub log_file: String,
    pub error: Option<String>,
}
