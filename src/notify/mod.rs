//! Notifications (SPEC 4d): events about processes sent to webhooks and
//! commands, from an outbox on disk, retried on the Standard Webhooks
//! schedule.
//!
//! ```text
//! supervisor ─Notice (try_send, bounded)─▶ dispatcher thread ─Job─▶ senders ×2
//! HTTP (POST /notify/test) ─┘               │ outbox files          │ webhook / command
//!                                           ◀──────── Outcome ──────┘
//! ```
//!
//! The supervisor only hands a `Notice` to `Notifier::send`, which never
//! blocks (a full queue drops the notice and counts it). The dispatcher
//! owns the queue: it writes each notification to `<data-dir>/notify-queue/`
//! (fsynced) before its first attempt, keeps the times of the next
//! attempts (`plan.rs`, pure), and hands due attempts to a small pool of
//! sender threads (`send.rs`). Targets live in `Hub`, shared with the HTTP
//! threads (`GET`/`PUT /notify`) and saved in `<config-dir>/notify.json`.
//!
//! The dispatcher and its senders start only once they have work: at boot
//! if there are targets or queued notifications, else at the first
//! `PUT /notify` (or notice) that finds a target. Until then a notice is
//! dropped, as the dispatcher would drop it with no target to route it to;
//! once started they run until exeio exits.

mod dispatch;
mod outbox;
pub mod plan;
mod send;
pub mod targets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use crossbeam_channel::{Sender, TrySendError, bounded};
use serde_json::{Value, json};

use crate::logger::Logger;
use crate::spec::FieldError;
use crate::timefmt::rfc3339;

pub use plan::StormWatch;
pub use targets::Target;

/// Notices waiting for the dispatcher; more are dropped (and counted).
const QUEUE: usize = 1024;
/// Longest message carried (a spawn error can be long).
const MAX_MESSAGE: usize = 2048;

/// The types of event (SPEC 4d).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Gave up restarting, or could not start.
    Failed,
    /// Failed its health checks (sent by the health checks).
    Unhealthy,
    /// A scheduled or periodic run failed or timed out.
    JobFailed,
    /// Restarted over `max_memory_bytes`, or killed by the kernel's OOM killer.
    Oom,
    /// A deploy failed (sent by deploys).
    DeployFailed,
    /// Restarted 5 times within 60 s.
    RestartStorm,
    /// `POST /notify/test/{name}`.
    Test,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Failed,
        Kind::Unhealthy,
        Kind::JobFailed,
        Kind::Oom,
        Kind::DeployFailed,
        Kind::RestartStorm,
        Kind::Test,
    ];
    /// What a target without `events` gets.
    pub const ALERTS: [Kind; 6] = [
        Kind::Failed,
        Kind::Unhealthy,
        Kind::JobFailed,
        Kind::Oom,
        Kind::DeployFailed,
        Kind::RestartStorm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Failed => "process.failed",
            Kind::Unhealthy => "process.unhealthy",
            Kind::JobFailed => "job.failed",
            Kind::Oom => "process.oom",
            Kind::DeployFailed => "deploy.failed",
            Kind::RestartStorm => "process.restart_storm",
            Kind::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One event to tell the targets about.
#[derive(Clone, Debug)]
pub struct Notice {
    pub kind: Kind,
    /// The process it is about (none for `test`).
    pub id: Option<String>,
    pub message: String,
    pub details: Value,
    pub at: SystemTime,
    /// Only this target (`test`); otherwise every target that wants it.
    pub only: Option<String>,
}

impl Notice {
    pub fn new(kind: Kind, id: &str, message: String, details: Value) -> Notice {
        Notice {
            kind,
            id: Some(id.to_owned()),
            message,
            details,
            at: SystemTime::now(),
            only: None,
        }
    }

    /// The JSON body: the same for every target and every attempt.
    pub fn body(&self, host: &str) -> String {
        let mut message = self.message.clone();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        json!({
            "type": self.kind.name(),
            "timestamp": rfc3339(self.at),
            "data": {
                "id": self.id,
                "message": message,
                "host": host,
                "details": self.details,
            },
        })
        .to_string()
    }
}

/// The targets and the counters, shared by the HTTP threads and the
/// dispatcher.
pub struct Hub {
    path: PathBuf,
    targets: Mutex<Vec<Target>>,
    /// Results by (target, result), for `/metrics`.
    counts: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Notices dropped because the dispatcher's queue was full.
    lost: AtomicU64,
    host: String,
}

/// Result labels of `exeio_notifications_total`.
pub const RESULTS: [&str; 3] = ["delivered", "failed", "dropped"];

impl Hub {
    fn has_targets(&self) -> bool {
        !self
            .targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    pub fn targets(&self) -> Vec<Target> {
        self.targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GET /notify`: every target, without secrets.
    pub fn list(&self) -> Vec<Value> {
        self.targets().iter().map(targets::shown).collect()
    }

    /// `PUT /notify`: validate and save the whole list; the secrets exeio
    /// made are returned to show once.
    pub fn replace(&self, body: &[u8]) -> Result<Vec<(String, String)>, Replace> {
        let mut now = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let (new, made) = targets::parse_put(body, &now).map_err(Replace::Invalid)?;
        targets::save(&self.path, &new).map_err(Replace::Save)?;
        *now = new;
        Ok(made)
    }

    /// A receiver answered 410: deliver nothing more to `name` until a PUT.
    fn disable(&self, name: &str, reason: String) -> Result<(), String> {
        let mut now = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = now.iter_mut().find(|t| t.name == name) else {
            return Ok(());
        };
        t.disabled = Some(reason);
        targets::save(&self.path, &now)
    }

    fn count(&self, target: &str, result: &'static str, n: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((target.to_owned(), result))
            .or_default() += n;
    }

    /// (target, result, count) for `/metrics`: every target has a row of
    /// each result.
    pub fn counts(&self) -> Vec<(String, &'static str, u64)> {
        let mut all = self
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for t in self.targets() {
            for r in RESULTS {
                all.entry((t.name.clone(), r)).or_default();
            }
        }
        all.into_iter().map(|((t, r), n)| (t, r, n)).collect()
    }

    /// Notices lost to a full queue.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Why a `PUT /notify` failed.
pub enum Replace {
    Invalid(FieldError),
    Save(String),
}

/// The dispatcher and its senders, started on first need.
struct Threads {
    /// The dispatcher's queue, once it runs.
    tx: OnceLock<Sender<Notice>>,
    /// Held while starting, so the threads start once.
    starting: Mutex<()>,
    queue: PathBuf,
    logger: Logger,
}

impl Threads {
    /// The dispatcher's queue, starting the threads if they are not running.
    fn start(&self, hub: &Arc<Hub>) -> Result<&Sender<Notice>, String> {
        if let Some(tx) = self.tx.get() {
            return Ok(tx);
        }
        let _once = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = self.tx.get() {
            return Ok(tx);
        }
        let (tx, rx) = bounded(QUEUE);
        dispatch::start(hub.clone(), self.queue.clone(), rx, self.logger.clone())
            .map_err(|e| format!("cannot start the notification threads: {e}"))?;
        Ok(self.tx.get_or_init(|| tx))
    }
}

/// The sending end: the supervisor's and the HTTP threads'. Never blocks.
#[derive(Clone)]
pub struct Notifier {
    threads: Arc<Threads>,
    pub hub: Arc<Hub>,
}

impl Notifier {
    pub fn send(&self, notice: Notice) {
        let tx = match self.threads.tx.get() {
            Some(tx) => tx,
            // Not running: no target was ever configured, so no target
            // wants it (the dispatcher would route it to none).
            None if !self.hub.has_targets() => return,
            // A target has just been configured and its PUT is starting
            // the threads (or failed to): start them here, or lose it.
            None => match self.threads.start(&self.hub) {
                Ok(tx) => tx,
                Err(e) => {
                    self.hub.lost.fetch_add(1, Ordering::Relaxed);
                    self.threads.logger.supervisor(format!("notify: {e}"));
                    return;
                }
            },
        };
        match tx.try_send(notice) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.hub.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `PUT /notify`: `Hub::replace`, then start the threads if there is
    /// now a target.
    pub fn replace(&self, body: &[u8]) -> Result<Vec<(String, String)>, Replace> {
        let made = self.hub.replace(body)?;
        if self.hub.has_targets() {
            self.threads
                .start(&self.hub)
                .map_err(|e| Replace::Save(format!("the targets were saved, but {e}")))?;
        }
        Ok(made)
    }

    /// `POST /notify/test/{name}`: queue a `test` event for one target.
    /// A target a 410 turned off is refused rather than tested: alerts do
    /// not reach it, so a test that did would mislead.
    pub fn test(&self, name: &str) -> Result<(), Untestable> {
        match self.hub.targets().into_iter().find(|t| t.name == name) {
            None => return Err(Untestable::Unknown),
            Some(t) => {
                if let Some(why) = t.disabled {
                    return Err(Untestable::Off(why));
                }
            }
        }
        self.send(Notice {
            kind: Kind::Test,
            id: None,
            message: format!("a test notification to '{name}'"),
            details: json!({}),
            at: SystemTime::now(),
            only: Some(name.to_owned()),
        });
        Ok(())
    }

    /// Shutdown: end the command targets still running (`send.rs`).
    pub fn stop_commands(&self, grace: std::time::Duration) {
        send::stop_commands(grace);
    }
}

/// Why `POST /notify/test/{name}` sends nothing.
pub enum Untestable {
    /// No target of that name.
    Unknown,
    /// Turned off by a 410 (the reason), until a `PUT /notify`.
    Off(String),
}

/// Where notify keeps its files.
pub struct Places {
    /// `<config-dir>/notify.json`.
    pub config: PathBuf,
    /// `<data-dir>/notify-queue`.
    pub queue: PathBuf,
}

/// Load the targets, and start the dispatcher and its senders if there
/// are targets or queued notifications (daemon start-up only; else the
/// first target starts them). A `notify.json` that does not parse stops
/// the start.
pub fn start(places: Places, logger: Logger) -> Result<Notifier, String> {
    let targets = targets::load(&places.config)?;
    let hub = Arc::new(Hub {
        path: places.config,
        targets: Mutex::new(targets),
        counts: Mutex::new(BTreeMap::new()),
        lost: AtomicU64::new(0),
        host: hostname(),
    });
    let needed = hub.has_targets() || outbox::holds_any(&places.queue);
    let threads = Arc::new(Threads {
        tx: OnceLock::new(),
        starting: Mutex::new(()),
        queue: places.queue,
        logger,
    });
    if needed {
        threads.start(&hub)?;
    }
    Ok(Notifier { threads, hub })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_follows_the_spec() {
        let mut n = Notice::new(
            Kind::Oom,
            "web",
            "x".repeat(5000),
            json!({"reason": "kernel"}),
        );
        n.at = SystemTime::UNIX_EPOCH;
        let v: Value = serde_json::from_str(&n.body("box")).unwrap();
        assert_eq!(v["type"], "process.oom");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(v["data"]["id"], "web");
        assert_eq!(v["data"]["host"], "box");
        assert_eq!(v["data"]["details"]["reason"], "kernel");
        assert_eq!(v["data"]["message"].as_str().unwrap().len(), MAX_MESSAGE);
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
    }
}
