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
//! Here: the loop and effects. `commands` answers requests, `replies` holds
//! back replies until what they wait for has happened, `publish` builds the
//! view and the events.

mod alerts;
mod commands;
mod health;
mod order;
mod publish;
mod replies;
mod signal;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, at, never, select};

use crate::child::{self, Link, SpawnError, cgroup::Cgroups};
use crate::events::Bus;
use crate::lifecycle::{Effect, Input, Now, Proc, RunRecord, Want};
use crate::logger::Logger;
use crate::logs::{LogConfig, LogFile};
use crate::persist::Persister;
use crate::procfs::Usage;
use crate::protocol::{Event, Msg, Target};
use crate::spec::{ProcessId, ProcessSpec};
use crate::store::{Loaded, RunsFile, Saved, Store};
use crate::timefmt::rfc3339;
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
            let want = if s.manually_stopped {
                Want::Down
            } else {
                Want::Up
            };
            self.insert(s.spec, want);
            let e = self.procs.get_mut(&id).expect("inserted");
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
            if want == Want::Up {
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
            e.proc.halt();
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

    /// Feed `input` to a process (not a user's request: nothing to undo).
    fn step(&mut self, id: &ProcessId, input: Input, now: Now) {
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        let before = e.proc.status();
        let health = e.proc.health();
        let by_exit = matches!(input, Input::Exited { .. });
        if let Ok(fx) = e.proc.step(input, now) {
            e.dirty = true;
            self.changed = true;
            self.apply(id, fx, now);
        }
        self.note_state(id, before, by_exit, now);
        self.note_health(id, health, now);
        // A calendar job that catches up after a restart needs its last
        // scheduled time on disk.
        if let Some(e) = self.procs.get(id)
            && e.proc.spec.job.catch_up.is_some()
            && e.proc.job.as_ref().and_then(|j| j.last_scheduled) != e.scheduled_saved
        {
            self.save_runs(id);
        }
    }

    /// Carry out effects in order. A spawn that fails is handed to the
    /// lifecycle (backoff, failed), unless `undoable`, when the error comes
    /// back at once and the rest is not done: the caller undoes the request.
    fn apply_effects(
        &mut self,
        id: &ProcessId,
        effects: Vec<Effect>,
        now: Now,
        undoable: bool,
    ) -> Result<(), String> {
        for fx in effects {
            let Some(e) = self.procs.get_mut(id) else {
                break;
            };
            e.dirty = true;
            self.changed = true;
            match fx {
                Effect::Log(line) => self.s.logger.system(&e.log, line),
                Effect::Signal { pgid, signal } => {
                    if signal == nix::libc::SIGKILL
                        && let Some(cg) = &self.s.cgroups
                    {
                        let _ = cg.kill(id);
                    }
                    if let Err(err) = child::signal_group(pgid, signal) {
                        self.sys(format!("cannot signal '{id}' (pgid {pgid}): {err}"));
                    }
                }
                Effect::Persist => self.dirty_store_if_saved(id),
                Effect::Record(record) => self.record(id, record),
                Effect::Forget => self.forget(id),
                Effect::Probe { generation, seq } => self.probe(id, generation, seq, now),
                Effect::Spawn if self.shutting_down => {}
                Effect::Spawn if !self.unmet_of(id).is_empty() => {
                    let unmet = self.unmet_of(id);
                    let e = self.procs.get_mut(id).expect("a known process");
                    let fx = e.proc.hold(unmet);
                    self.apply_effects(id, fx, now, undoable)?;
                }
                Effect::Spawn => {
                    if let Err(err) = self.spawn(id, now) {
                        let err = err.to_string();
                        if undoable {
                            return Err(err);
                        }
                        let e = self.procs.get_mut(id).expect("spawn of a known process");
                        let fx = e.proc.spawn_failed(err, now);
                        self.apply_effects(id, fx, now, false)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, id: &ProcessId, effects: Vec<Effect>, now: Now) {
        let _ = self.apply_effects(id, effects, now, false);
    }

    /// Spawn a run of `id`, changing nothing if it fails.
    fn spawn(&mut self, id: &ProcessId, now: Now) -> Result<(), SpawnError> {
        let cgroup = match &self.s.cgroups {
            Some(cg) => Some(cg.prepare(id).map_err(|source| SpawnError::Cgroup {
                id: id.clone(),
                source,
            })?),
            None => None,
        };
        let generation = self.procs[id].proc.generation() + 1;
        self.arm_log_probe(id, generation);
        let e = self.procs.get_mut(id).expect("spawn of a known process");
        let automatic = matches!(e.proc.state, crate::lifecycle::State::Backoff { .. });
        let run_number = e.proc.run_count + 1;
        let running = child::spawn(child::Start {
            spec: &e.proc.spec,
            log: e.log.clone(),
            label: e.proc.spec.is_job().then_some(run_number),
            run_number,
            cgroup,
            generation,
            tx: self.s.tx.clone(),
            logger: self.s.logger.clone(),
        })
        .inspect_err(|_| e.log.lines.disarm())?;
        e.proc.spawned(running.pid, now);
        e.usage.started(running.pid);
        e.link = Some(running.link);
        self.spawned_alerts(id, automatic, now);
        Ok(())
    }

    /// Once half the processes (of at least 16) are gone, give the memory
    /// they used back to the system: after 1,000 removed, the heap would
    /// otherwise stay at its size with 1,000. Halving steps: a few trims
    /// for any number of removals.
    fn release_memory(&mut self) {
        if self.peak >= 16 && self.procs.len() * 2 <= self.peak {
            crate::sys::trim_heap();
            self.peak = self.procs.len();
        }
    }

    fn insert(&mut self, spec: ProcessSpec, want: Want) {
        let path = self.s.logs_dir.join(format!("{}.log", spec.id));
        let cfg = LogConfig {
            max_bytes: spec.log_max_bytes,
            backups: spec.log_backups,
        };
        let usage = Arc::new(Usage::new(
            self.s.cgroups.as_ref().map(|c| c.stats_dir(&spec.id)),
        ));
        let log = Arc::new(LogFile::new(path, cfg));
        let proc = Proc::new(spec.clone(), want);
        let runs = Arc::new(Vec::new());
        let view = Arc::new(publish::view_of(
            &proc,
            Arc::new(spec.clone()),
            &log,
            &usage,
            &runs,
            Now::read(),
            None,
        ));
        let entry = Entry {
            proc,
            log,
            link: None,
            usage,
            probing: Arc::default(),
            runs,
            runs_version: 0,
            scheduled_saved: None,
            view,
            dirty: true,
        };
        self.procs.insert(spec.id, Box::new(entry));
        self.peak = self.peak.max(self.procs.len());
        self.changed = true;
    }

    fn forget(&mut self, id: &ProcessId) {
        let Some(e) = self.procs.remove(id) else {
            return;
        };
        self.alerts.forget(id);
        if e.proc.spec.save_for_next_run {
            self.dirty_store();
        }
        if let Some(cg) = &self.s.cgroups {
            cg.remove(id);
        }
        if e.runs_version > 0 {
            self.s.persister.delete(
                Target::Runs(id.clone()),
                self.runs_path(id),
                e.runs_version + 1,
            );
        }
        self.changed = true;
        self.sys(format!("removed process '{id}'"));
        self.emit("removed", id, serde_json::json!({}));
    }

    /// Keep a job's run record (and save the history of a saved job).
    fn record(&mut self, id: &ProcessId, record: RunRecord) {
        self.alert_run(id, &record);
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        let keep = e.proc.spec.job.history.max(1) as usize;
        let mut runs = Vec::with_capacity(keep.min(e.runs.len() + 1));
        runs.extend(
            e.runs
                .iter()
                .skip((e.runs.len() + 1).saturating_sub(keep))
                .cloned(),
        );
        runs.push(record.clone());
        e.runs = Arc::new(runs);
        self.save_runs(id);
        let data = serde_json::to_value(&record).unwrap_or_default();
        self.emit("run", id, data);
    }

    /// Save a saved job's runs file (its history and last scheduled time).
    fn save_runs(&mut self, id: &ProcessId) {
        let path = self.runs_path(id);
        let Some(e) = self.procs.get_mut(id) else {
            return;
        };
        if !e.proc.spec.save_for_next_run {
            return;
        }
        let last = e.proc.job.as_ref().and_then(|j| j.last_scheduled);
        e.scheduled_saved = last;
        e.runs_version += 1;
        let file = RunsFile {
            last_scheduled_at: last.map(rfc3339),
            runs: (*e.runs).clone(),
        };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        self.s
            .persister
            .save(Target::Runs(id.clone()), path, bytes, e.runs_version);
    }

    fn runs_path(&self, id: &ProcessId) -> PathBuf {
        self.s.runs_dir.join(format!("{id}.json"))
    }

    fn dirty_store_if_saved(&mut self, id: &ProcessId) {
        if self
            .procs
            .get(id)
            .is_some_and(|e| e.proc.spec.save_for_next_run)
        {
            self.dirty_store();
        }
    }

    fn dirty_store(&mut self) {
        self.store.wanted += 1;
        self.changed = true;
    }

    /// Hand the saved configuration to the persister if it changed (or a
    /// failed save is due again).
    fn flush_store(&mut self, now: Instant) {
        if self.store.sent >= self.store.wanted || self.store.retry_at.is_some_and(|t| t > now) {
            return;
        }
        if self.store.sent == 0 && self.store.wanted == 0 {
            return;
        }
        let saved: Vec<Saved> = self
            .procs
            .values()
            .filter(|e| e.proc.spec.save_for_next_run)
            .map(|e| Saved {
                spec: (*e.proc.spec).clone(),
                manually_stopped: e.proc.want == Want::Down,
                run_count: e.proc.run_count,
            })
            .collect();
        let bytes = Store::render(saved.iter());
        self.store.wanted = self.store.wanted.max(1);
        self.store.sent = self.store.wanted;
        self.s.persister.save(
            Target::Processes,
            self.s.store.path().to_owned(),
            bytes,
            self.store.wanted,
        );
    }

    /// The persister's report.
    fn saved(&mut self, target: Target, version: u64, result: Result<(), String>) {
        match (target, result) {
            (Target::Processes, Ok(())) => {
                self.store.acked = self.store.acked.max(version);
                if self.store.failed.is_some() && self.store.acked >= self.store.wanted {
                    self.sys(format!("{} saved again", self.s.store.path().display()));
                    self.store.failed = None;
                    self.store.retry_delay = Duration::ZERO;
                }
                self.changed = true;
            }
            (Target::Processes, Err(err)) => {
                if self.store.failed.is_none() {
                    crate::diag::warn(&err);
                }
                self.sys(format!("{err}; retrying"));
                self.store.retry_delay = (self.store.retry_delay * 2)
                    .max(Duration::from_secs(1))
                    .min(MAX_SAVE_RETRY);
                self.store.retry_at = Some(Instant::now() + self.store.retry_delay);
                self.store.failed = Some((version, err));
                self.changed = true;
            }
            (Target::Runs(_), Ok(())) => {}
            (Target::Runs(id), Err(err)) => self.sys(format!("run history of '{id}': {err}")),
        }
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
