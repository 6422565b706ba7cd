//! The supervisor thread: the one owner of every process and of what is saved.
//!
//! It blocks in `select!` on its channel and on the nearest deadline
//! (backoff, job times, stop grace periods, a save retry), feeds each
//! message or deadline into `lifecycle::Proc::step`, carries out the effects
//! (spawn, signal, queue a log line, save, forget), publishes a new `View`,
//! and only then replies, so a client that reads after a reply sees its
//! effect. It never waits on a file: log lines go to each log's writer,
//! saves to the persister thread. Its only system calls are spawning,
//! signalling, reaping and cgroup files.
//!
//! Here: the loop. `effects` feeds inputs to a process and carries out its
//! effects, `procs` adds and forgets processes, `save` hands what is saved
//! to the persister, `commands` answers requests, `replies` holds back
//! replies until what they wait for has happened, `publish` builds the view
//! and the events.

mod alerts;
mod apply;
mod commands;
mod effects;
mod group;
mod health;
mod order;
mod procs;
mod publish;
mod release;
mod replies;
mod save;
mod signal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, at, never, select};

use crate::child::{self, Link, cgroup::Cgroups};
use crate::events::Bus;
use crate::lifecycle::{Input, Now, Proc, RunRecord, Want};
use crate::logger::Logger;
use crate::logs::LogFile;
use crate::persist::Persister;
use crate::procfs::Usage;
use crate::protocol::{Event, Msg};
use crate::spec::ProcessId;
use crate::store::{Loaded, RunsFile, Store};
use crate::view::{ProcView, Published};

use replies::Pending;

/// Messages handled in one turn of the loop at most.
const MAX_BATCH: usize = 64;

/// The longest a failed save waits before it is tried again.
const MAX_SAVE_RETRY: Duration = Duration::from_secs(30);

struct Entry {
    proc: Proc,
    log: Arc<LogFile>,
    link: Option<Arc<Link>>,
    usage: Arc<Usage>,
    /// The run whose health checks are wanted (0: none); queued checks of
    /// another run, or of a removed process, are skipped by the pool.
    probing: Arc<std::sync::atomic::AtomicU64>,
    /// Finished runs of a job, oldest first.
    runs: Arc<Vec<RunRecord>>,
    runs_version: u64,
    /// The last scheduled time in the saved runs file.
    scheduled_saved: Option<SystemTime>,
    /// The published copy; rebuilt when `dirty`.
    view: Arc<ProcView>,
    dirty: bool,
}

/// What the supervisor was given at start.
pub struct Setup {
    pub tx: Sender<Msg>,
    pub rx: Receiver<Msg>,
    pub logger: Logger,
    pub logs_dir: PathBuf,
    pub runs_dir: PathBuf,
    pub store: Store,
    pub persister: Persister,
    pub published: Arc<Published>,
    pub events: Arc<Bus>,
    pub cgroups: Option<Arc<Cgroups>>,
    pub notifier: crate::notify::Notifier,
    /// The pool that runs health checks.
    pub probes: crate::health::Probes,
    /// `<data-dir>`: where releases live (SPEC 4c, `deploy`).
    pub data_dir: PathBuf,
}

/// The state of `processes.json`: what is wanted on disk and what is there.
#[derive(Default)]
struct StoreState {
    /// Bumped at every change of what is saved.
    wanted: u64,
    /// The version handed to the persister last.
    sent: u64,
    /// The newest version known to be on disk.
    acked: u64,
    /// The newest version that failed, and why.
    failed: Option<(u64, String)>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
}

pub struct Supervisor {
    /// Boxed: a B-tree node holds many entries, most of them empty room.
    procs: BTreeMap<ProcessId, Box<Entry>>,
    s: Setup,
    store: StoreState,
    pending: Vec<Pending>,
    shutting_down: bool,
    /// Something the view shows changed since the last publish.
    changed: bool,
    /// The most processes there were since the heap was last trimmed.
    peak: usize,
    /// Restart storms and memory samples (notifications).
    alerts: alerts::Alerts,
    /// Stops (stop-all, shutdown) waiting for dependents to exit first.
    stop_queue: BTreeMap<ProcessId, Input>,
    /// When to take the health answers that came (see `health::Answers`).
    answers_due: Option<Instant>,
}

impl Supervisor {
    pub fn new(s: Setup) -> Supervisor {
        Supervisor {
            procs: BTreeMap::new(),
            s,
            store: StoreState::default(),
            pending: Vec::new(),
            shutting_down: false,
            changed: true,
            peak: 0,
            alerts: alerts::Alerts::default(),
            stop_queue: BTreeMap::new(),
            answers_due: None,
        }
    }

    /// Start the saved processes and publish the first view (before the
    /// HTTP server answers anyone).
    pub fn start_saved(&mut self, saved: Loaded, runs: BTreeMap<ProcessId, RunsFile>) {
        let now = Now::read();
        let mut runs = runs;
        for s in saved.processes {
            let id = s.spec.id.clone();
            // Deploy (SPEC 4c): one that uses {release} waits for a deploy.
            let waits = self.waits_for_release(&s.spec);
            let want = if s.manually_stopped {
                Want::Down
            } else {
                Want::UP
            };
            self.insert(s.spec, want);
            let e = self.procs.get_mut(&id).expect("inserted");
            if waits {
                e.proc.error = Some(crate::deploy::resolve::NO_RELEASE.to_owned());
            }
            e.proc.run_count = s.run_count;
            if let Some(file) = runs.remove(&id) {
                let history = file.runs;
                e.proc.run_count = e.proc.run_count.max(history.last().map_or(0, |r| r.run));
                e.runs = Arc::new(history);
                let last = file.last_scheduled_at.as_deref().and_then(parse_time);
                if let Some(job) = &mut e.proc.job {
                    job.last_scheduled = last;
                }
                e.scheduled_saved = last;
            }
            if want.is_up() && !waits {
                self.sys(format!("starting saved process '{id}'"));
                let fx = self.procs.get_mut(&id).expect("inserted").proc.revive(now);
                self.apply(&id, fx, now);
            }
        }
        self.publish(Now::read());
    }

    /// Serve until shutdown has stopped every child.
    pub fn run(mut self) {
        loop {
            if self.changed {
                let now = Now::read();
                self.deliver_stops(now);
                self.release_held(now);
            }
            self.flush_store(Instant::now());
            self.publish(Now::read());
            self.answer_pending(Instant::now());
            self.release_memory();
            if self.shutting_down && !self.procs.values().any(|e| e.proc.has_child()) {
                break;
            }
            let deadline = self
                .procs
                .values()
                .filter_map(|e| e.proc.deadline())
                .chain(self.store.retry_at)
                .chain(self.answers_due)
                .chain(self.pending.iter().filter_map(Pending::deadline))
                .chain(self.alerts.deadline())
                .min();
            let timer = deadline.map(at).unwrap_or_else(never);
            select! {
                recv(self.s.rx) -> msg => match msg {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break, // every sender is gone: nothing more can happen
                },
                recv(timer) -> _ => {}
            }
            // What else is already queued (health answers come in bursts)
            // goes in the same turn: one deadline scan and one publish.
            for _ in 0..MAX_BATCH {
                match self.s.rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.fire_deadlines(Now::read());
        }
        // Run numbers go on after a restart of exeio: save them now.
        if self.procs.values().any(|e| e.proc.spec.save_for_next_run) {
            self.dirty_store();
        }
        self.store.retry_at = None;
        self.flush_store(Instant::now());
        self.publish(Now::read());
        self.answer_pending(Instant::now() + Duration::from_secs(3600));
        self.sys("all processes stopped; supervisor exits".into());
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Call(call, reply) => self.call(call, reply),
            Msg::Event(Event::Exited {
                id,
                generation,
                status,
                at,
            }) => {
                let now = Now::read();
                self.exited_alerts(&id, generation);
                let Some(e) = self.procs.get_mut(&id) else {
                    return;
                };
                if e.proc.generation() != generation || !e.proc.has_child() {
                    return;
                }
                if let Some(pid) = e.proc.pid() {
                    if let Some(cg) = &self.s.cgroups {
                        let _ = cg.kill(&id);
                    }
                    e.usage.ended(child::reap(pid));
                }
                e.link = None;
                self.step(
                    &id,
                    Input::Exited {
                        generation,
                        status,
                        at,
                    },
                    now,
                );
            }
            Msg::Event(Event::ProbesAnswered) => self.probes_answered(),
            Msg::Event(Event::Saved {
                target,
                version,
                result,
            }) => self.saved(target, version, result),
            Msg::Shutdown => self.begin_shutdown(),
            Msg::ReopenLogs => {
                let logs: Vec<_> = self.procs.values().map(|e| e.log.clone()).collect();
                self.s.logger.reopen(&logs);
            }
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.sys("shutting down: stopping every process (dependents first)".into());
        let now = Now::read();
        let ids: Vec<ProcessId> = self.procs.keys().cloned().collect();
        for e in self.procs.values_mut() {
            let _ = e.proc.step(Input::Halt, now);
            e.dirty = true;
        }
        self.changed = true;
        self.queue_stops(ids, Input::Shutdown, now);
    }

    fn fire_deadlines(&mut self, now: Now) {
        let due: Vec<ProcessId> = self
            .procs
            .iter()
            .filter(|(_, e)| e.proc.deadline().is_some_and(|d| d <= now.at))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.step(&id, Input::Tick, now);
        }
        if self.answers_due.is_some_and(|t| t <= now.at) {
            self.take_answers();
        }
        if self.store.retry_at.is_some_and(|t| t <= now.at) {
            self.store.retry_at = None;
            self.store.sent = 0; // send again
        }
        self.sample_memory(now);
    }

    /// A line in exeio.log.
    fn sys(&self, line: String) {
        self.s.logger.supervisor(line);
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let secs = crate::timefmt::parse_rfc3339(s)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}
