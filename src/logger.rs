//! The logger thread: writes SYSTEM lines on behalf of the supervisor, so the
//! supervisor thread never touches a log file (a slow or full disk cannot
//! stall supervision). Lines are written in the order they were sent.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::logs::LogFile;

enum Job {
    System(Arc<LogFile>, String),
    Supervisor(String),
    Reopen(Vec<Arc<LogFile>>),
}

/// The supervisor's handle to the logger thread. Dropping every handle ends
/// the thread after it has written what was queued.
#[derive(Clone)]
pub struct Logger {
    tx: Sender<Job>,
}

impl Logger {
    /// Start the logger thread; `exeio_log` is `<logs>/exeio.log`.
    pub fn start(exeio_log: Arc<LogFile>) -> std::io::Result<(Logger, JoinHandle<()>)> {
        let (tx, rx) = unbounded();
        let handle = std::thread::Builder::new()
            .name("logger".into())
            .stack_size(128 * 1024)
            .spawn(move || run(rx, exeio_log))?;
        Ok((Logger { tx }, handle))
    }

    /// A SYSTEM line in a process's log.
    pub fn system(&self, log: &Arc<LogFile>, line: String) {
        let _ = self.tx.send(Job::System(log.clone(), line));
    }

    /// A line in exeio.log.
    pub fn supervisor(&self, line: String) {
        let _ = self.tx.send(Job::Supervisor(line));
    }

    /// Reopen these logs and exeio.log (SIGHUP).
    pub fn reopen(&self, logs: Vec<Arc<LogFile>>) {
        let _ = self.tx.send(Job::Reopen(logs));
    }
}

fn run(rx: Receiver<Job>, exeio_log: Arc<LogFile>) {
    for job in rx {
        match job {
            Job::System(log, line) => log.system(&line),
            Job::Supervisor(line) => exeio_log.system(&line),
            Job::Reopen(logs) => {
                for log in logs {
                    log.reopen();
                }
                exeio_log.reopen();
                exeio_log.system("log files reopened (SIGHUP)");
            }
        }
    }
}
