//! Routing writes to logs, and the logger thread.
//!
//! The owner rule is in `logs`: while a process runs, its child's thread
//! writes its log; otherwise the logger thread does. The supervisor and the
//! HTTP threads only queue lines (or a clear, or a reopen) through a
//! `Logger` and wake that owner, so none of them ever waits on a file.
//! exeio.log and audit.log are always written by the logger thread.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, unbounded};

use crate::logs::{LogFile, Op, Post};

/// Lines that could not be written (disk full, dir gone) are tried again
/// this often until they are.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The handle every part of exeio uses to write to logs. Dropping every
/// handle ends the logger thread after it has written what was queued.
#[derive(Clone)]
pub struct Logger {
    tx: Sender<Arc<LogFile>>,
    exeio_log: Arc<LogFile>,
    audit_log: Arc<LogFile>,
}

impl Logger {
    /// Start the logger thread; `exeio_log` is `<logs>/exeio.log`,
    /// `audit_log` `<logs>/audit.log`.
    pub fn start(
        exeio_log: Arc<LogFile>,
        audit_log: Arc<LogFile>,
    ) -> std::io::Result<(Logger, JoinHandle<()>)> {
        let (tx, rx) = unbounded();
        let handle = std::thread::Builder::new()
            .name("logger".into())
            .stack_size(128 * 1024)
            .spawn(move || run(rx))?;
        Ok((
            Logger {
                tx,
                exeio_log,
                audit_log,
            },
            handle,
        ))
    }

    /// Queue `op` for `log`'s writer and wake it.
    pub fn post(&self, log: &Arc<LogFile>, op: Op) {
        match log.post(op) {
            Post::Wake(wake) => wake(),
            Post::Drain => {
                let _ = self.tx.send(log.clone());
            }
            Post::Nothing => {}
        }
    }

    /// `log` holds lines it could not write: try them again until it can
    /// (a child's thread that ends hands its log's retries over here).
    pub fn retry(&self, log: &Arc<LogFile>) {
        let _ = self.tx.send(log.clone());
    }

    /// Give back a log whose child's thread never started (the spawn
    /// failed after `attach`): what is queued is the logger thread's now.
    pub fn release(&self, log: &Arc<LogFile>) {
        if let Post::Drain = log.release() {
            let _ = self.tx.send(log.clone());
        }
    }

    /// A SYSTEM line in a process's log.
    pub fn system(&self, log: &Arc<LogFile>, line: String) {
        self.post(log, Op::Line(line));
    }

    /// A run's first line in a process's log (see `Op::Started`).
    pub fn started(&self, log: &Arc<LogFile>, line: String) {
        self.post(log, Op::Started(line));
    }

    /// A line in exeio.log.
    pub fn supervisor(&self, line: String) {
        self.post(&self.exeio_log, Op::Line(line));
    }

    /// A line in audit.log.
    pub fn audit(&self, line: String) {
        self.post(&self.audit_log, Op::Raw(line));
    }

    /// Reopen these logs, exeio.log and audit.log (SIGHUP).
    pub fn reopen(&self, logs: &[Arc<LogFile>]) {
        for log in logs {
            self.post(log, Op::Reopen);
        }
        self.post(&self.exeio_log, Op::Reopen);
        self.post(&self.audit_log, Op::Reopen);
        self.supervisor("log files reopened (SIGHUP)".into());
    }
}

fn run(rx: Receiver<Arc<LogFile>>) {
    let mut failing: Vec<Arc<LogFile>> = Vec::new();
    loop {
        let wait = if failing.is_empty() {
            Duration::MAX
        } else {
            RETRY_EVERY
        };
        match rx.recv_timeout(wait) {
            Ok(log) => {
                log.drain_unowned();
                if log.retry_unowned() && !failing.iter().any(|f| Arc::ptr_eq(f, &log)) {
                    failing.push(log);
                }
            }
            Err(RecvTimeoutError::Timeout) => failing.retain(|log| log.retry_unowned()),
            Err(RecvTimeoutError::Disconnected) => {
                for log in failing {
                    log.retry_unowned();
                }
                return;
            }
        }
    }
}
