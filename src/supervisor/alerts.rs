//! What the supervisor tells the notifier (SPEC 4d), and the memory samples
//! of `max_memory_bytes`.
//!
//! Events: `process.failed` (a process turns `failed`), `job.failed` (a
//! run record that failed, timed out or could not start),
//! `process.restart_storm` (`notify::StormWatch`), `process.oom` (the
//! lifecycle stops a run over its limit, or the kernel's OOM killer killed
//! a process of its cgroup), `process.unhealthy` (sent by `health.rs` when
//! a process turns unhealthy). `alert` is the one way out, never blocking;
//! deploys will send `deploy.failed` through it too.
//!
//! Memory: each running process with `max_memory_bytes` has a sampling
//! deadline every `SAMPLE_EVERY`, which the loop sleeps until like any
//! other. A sample is taken on this thread: one read of the cgroup's
//! `memory.current`, or a few small /proc reads per process of its tree
//! (`procfs::tree_rss`); the bench measures it. The decision is the
//! lifecycle's (`Input::Memory`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Supervisor;
use crate::child::cgroup;
use crate::lifecycle::{Cause, Input, Now, RunRecord, RunResult, State, Status};
use crate::notify::{Kind, Notice, StormWatch};
use crate::spec::ProcessId;

/// How often a process with `max_memory_bytes` is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// `SAMPLE_EVERY`, or the milliseconds of `EXEIO_TEST_MEMORY_SAMPLE_MS`:
/// the test of a limit sets it short rather than wait three samples of 5 s.
fn sample_every() -> Duration {
    static EVERY: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
        std::env::var("EXEIO_TEST_MEMORY_SAMPLE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(SAMPLE_EVERY, Duration::from_millis)
    });
    *EVERY
}

#[derive(Default)]
pub(super) struct Alerts {
    storms: StormWatch,
    watched: BTreeMap<ProcessId, Watch>,
}

/// One run watched for memory.
struct Watch {
    generation: u64,
    pid: u32,
    /// The next sample, if it has a limit.
    next: Option<Instant>,
    /// Its cgroup, and the OOM kills counted there when the run started.
    cgroup: Option<PathBuf>,
    oom_kills: u64,
}

impl Alerts {
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.watched.values().filter_map(|w| w.next).min()
    }

    pub(super) fn forget(&mut self, id: &ProcessId) {
        self.storms.forget(id);
        self.watched.remove(id);
    }
}

impl Supervisor {
    /// Hand an event to the notifier (never blocks).
    pub fn alert(&self, kind: Kind, id: &ProcessId, message: String, details: Value) {
        self.s
            .notifier
            .send(Notice::new(kind, id.as_str(), message, details));
    }

    /// A process turned `failed`.
    pub(super) fn alert_state(&self, id: &ProcessId, before: Status, after: Status) {
        if after != Status::Failed || before == Status::Failed {
            return;
        }
        let Some(e) = self.procs.get(id) else {
            return;
        };
        let why = e.proc.error.clone().unwrap_or_else(|| "failed".into());
        let exit = e
            .proc
            .last_exit
            .map(|(s, _)| crate::lifecycle::ExitInfo::from(s));
        self.alert(
            Kind::Failed,
            id,
            format!("process '{id}' failed: {why}"),
            json!({"error": why, "last_exit": exit, "restarts": e.proc.streak}),
        );
    }

    /// A job's run ended: a failure, a timeout or a spawn error is news.
    pub(super) fn alert_run(&self, id: &ProcessId, r: &RunRecord) {
        let what = match r.result {
            RunResult::Failed => "failed",
            RunResult::TimedOut => "timed out",
            RunResult::SpawnError => "could not start",
            RunResult::Ok | RunResult::Replaced => return,
        };
        let mut message = format!("run #{} of '{id}' {what}", r.run);
        if let Some(e) = &r.error {
            message.push_str(&format!(": {e}"));
        } else if let Some(x) = &r.exit {
            match (x.code, x.signal) {
                (Some(c), _) => message.push_str(&format!(" (exit code {c})")),
                (_, Some(s)) => message.push_str(&format!(" (signal {s})")),
                _ => {}
            }
        }
        let details = serde_json::to_value(r).unwrap_or_default();
        self.alert(Kind::JobFailed, id, message, details);
    }

    /// A run of `id` started; `automatic`: a restart after backoff.
    pub(super) fn spawned_alerts(&mut self, id: &ProcessId, automatic: bool, now: Now) {
        let Some(e) = self.procs.get(id) else {
            return;
        };
        if automatic && self.alerts.storms.restarted(id, now.at) {
            let n = crate::notify::plan::STORM_RESTARTS;
            let window = crate::notify::plan::STORM_WINDOW.as_secs();
            self.alert(
                Kind::RestartStorm,
                id,
                format!("process '{id}' restarted {n} times within {window}s"),
                json!({
                    "restarts": n,
                    "window_seconds": window,
                    "restarts_total": e.proc.restarts_total,
                    "last_exit": e.proc.last_exit.map(|(s, _)| crate::lifecycle::ExitInfo::from(s)),
                }),
            );
        }
        self.watch_memory(id, now);
    }

    /// Watch the current run of `id` for memory (its limit, if any, and
    /// kernel OOM kills): at each spawn, and when `update` changes
    /// `max_memory_bytes` (which takes effect at once, not at the next
    /// start). A run already watched keeps its OOM-kill count.
    pub(super) fn watch_memory(&mut self, id: &ProcessId, now: Now) {
        let Some(e) = self.procs.get(id) else {
            return;
        };
        let (Some(pid), generation) = (e.proc.pid(), e.proc.generation()) else {
            self.alerts.watched.remove(id);
            return;
        };
        let dir = self.s.cgroups.as_ref().map(|c| c.stats_dir(id));
        let limit = e.proc.spec.max_memory_bytes;
        if limit.is_none() && dir.is_none() {
            self.alerts.watched.remove(id);
            return;
        }
        let oom_kills = match self.alerts.watched.get(id) {
            Some(w) if w.generation == generation => w.oom_kills,
            _ => dir.as_deref().and_then(cgroup::oom_kills).unwrap_or(0),
        };
        self.alerts.watched.insert(
            id.clone(),
            Watch {
                generation,
                pid,
                next: limit.map(|_| now.at + sample_every()),
                cgroup: dir,
                oom_kills,
            },
        );
    }

    /// The run `generation` of `id` exited: report an OOM kill the kernel
    /// made in its group since the last look.
    pub(super) fn exited_alerts(&mut self, id: &ProcessId, generation: u64) {
        if self
            .alerts
            .watched
            .get(id)
            .is_some_and(|w| w.generation == generation)
        {
            self.check_kernel_oom(id);
            self.alerts.watched.remove(id);
        }
    }

    fn check_kernel_oom(&mut self, id: &ProcessId) {
        let Some(w) = self.alerts.watched.get_mut(id) else {
            return;
        };
        let Some(now) = w.cgroup.as_deref().and_then(cgroup::oom_kills) else {
            return;
        };
        if now <= w.oom_kills {
            return;
        }
        let killed = now - w.oom_kills;
        w.oom_kills = now;
        let Some(e) = self.procs.get(id) else {
            return;
        };
        let line = format!("the kernel's OOM killer killed {killed} process(es) of this run");
        self.s.logger.system(&e.log, line.clone());
        self.alert(
            Kind::Oom,
            id,
            format!("process '{id}': {line}"),
            json!({"reason": "kernel", "killed": killed}),
        );
    }

    /// Take the memory samples that are due.
    pub(super) fn sample_memory(&mut self, now: Now) {
        let due: Vec<ProcessId> = self
            .alerts
            .watched
            .iter()
            .filter(|(_, w)| w.next.is_some_and(|t| t <= now.at))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.check_kernel_oom(&id);
            let Some(w) = self.alerts.watched.get_mut(&id) else {
                continue;
            };
            w.next = Some(now.at + sample_every());
            let bytes = match &w.cgroup {
                Some(dir) => cgroup::memory_current(dir).unwrap_or_else(|| {
                    cgroup::pids_in(dir)
                        .iter()
                        .take(256)
                        .filter_map(|&p| crate::procfs::rss_bytes(p))
                        .sum()
                }),
                None => crate::procfs::tree_rss(w.pid),
            };
            let generation = w.generation;
            let before = self.procs.get(&id).map(|e| e.proc.is_stopping());
            self.step(&id, Input::Memory { generation, bytes }, now);
            let Some(e) = self.procs.get(&id) else {
                continue;
            };
            let stopped = matches!(
                e.proc.state,
                State::Stopping {
                    cause: Cause::Memory,
                    ..
                }
            );
            if stopped && before == Some(false) {
                let limit = e.proc.spec.max_memory_bytes.unwrap_or(0);
                if let Some(w) = self.alerts.watched.get_mut(&id) {
                    w.next = None;
                }
                self.alert(
                    Kind::Oom,
                    &id,
                    format!(
                        "process '{id}' used {bytes} bytes, over its max_memory_bytes ({limit}), \
                         for {} samples in a row: restarting",
                        crate::lifecycle::MEMORY_SAMPLES
                    ),
                    json!({"reason": "max_memory_bytes", "bytes": bytes, "limit": limit}),
                );
            }
        }
    }
}
