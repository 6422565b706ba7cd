//! The supervisor thread: the one owner of every process and of the store.
//!
//! It blocks in `select!` on its channel and on the nearest deadline (backoff,
//! periodic tick, stop grace period), feeds each message or deadline into
//! `lifecycle::Proc::step`, carries out the effects (spawn, signal, log line,
//! persist, forget) and replies. It never reads or writes a log file: SYSTEM
//! lines go to the logger thread. Its only I/O is spawning, signalling,
//! reaping, a non-blocking write to a child's stdin, and the atomic store save.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, at, never, select};

use crate::child::{self, InputError, Reporter};
use crate::error::ApiError;
use crate::lifecycle::{Effect, Input, Proc, State};
use crate::logger::Logger;
use crate::logs::{LogConfig, LogFile};
use crate::protocol::{Answer, Call, Event, LastExit, Msg, Reply, Snapshot};
use crate::spec::{ProcessId, ProcessSpec};
use crate::store::{Loaded, Store};
use crate::timefmt::rfc3339;

struct Entry {
    proc: Proc,
    log: Arc<LogFile>,
    stdin: Option<File>,
}

/// A reply held back until the processes it names are no longer stopping.
struct Waiter {
    ids: Vec<ProcessId>,
    message: String,
    many: bool,
    reply: Sender<Reply>,
}

pub struct Supervisor {
    procs: BTreeMap<ProcessId, Entry>,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    logger: Logger,
    logs_dir: PathBuf,
    store: Store,
    waiters: Vec<Waiter>,
    store_dirty: bool,
    shutting_down: bool,
}

impl Supervisor {
    pub fn new(
        tx: Sender<Msg>,
        rx: Receiver<Msg>,
        logger: Logger,
        logs_dir: PathBuf,
        store: Store,
    ) -> Supervisor {
        Supervisor {
            procs: BTreeMap::new(),
            tx,
            rx,
            logger,
            logs_dir,
            store,
            waiters: Vec::new(),
            store_dirty: false,
            shutting_down: false,
        }
    }

    /// Start the saved processes, then serve until shutdown has stopped every child.
    pub fn run(mut self, saved: Loaded) {
        let now = Instant::now();
        for s in saved.processes {
            let id = s.spec.id.clone();
            let state = if s.manually_stopped {
                State::ManuallyStopped
            } else {
                State::Stopped
            };
            self.insert(s.spec, state);
            if !s.manually_stopped {
                self.sys(format!("starting saved process '{id}'"));
                self.apply(&id, vec![Effect::Spawn], now);
            }
        }
        loop {
            self.flush_store();
            self.answer_waiters();
            if self.shutting_down && !self.procs.values().any(|e| e.proc.has_child()) {
                break;
            }
            let deadline = self.procs.values().filter_map(|e| e.proc.deadline()).min();
            let timer = deadline.map(at).unwrap_or_else(never);
            select! {
                recv(self.rx) -> msg => match msg {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break, // every sender is gone: nothing more can happen
                },
                recv(timer) -> _ => {}
            }
            self.fire_deadlines(Instant::now());
        }
        self.flush_store();
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
                ..
            }) => {
                let now = Instant::now();
                let Some(e) = self.procs.get_mut(&id) else {
                    return;
                };
                if e.proc.generation() != generation || !e.proc.has_child() {
                    return;
                }
                if let Some(pid) = e.proc.pid() {
                    child::reap(pid);
                }
                e.stdin = None;
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
            Msg::Shutdown => self.begin_shutdown(),
            Msg::ReopenLogs => {
                let logs: Vec<_> = self.procs.values().map(|e| e.log.clone()).collect();
                self.logger.reopen(logs);
            }
        }
    }

    fn call(&mut self, call: Call, reply: Sender<Reply>) {
        if self.shutting_down {
            let _ = reply.send(Err(ApiError::Unavailable("exeio is shutting down".into())));
            return;
        }
        let now = Instant::now();
        let answer = match call {
            Call::Add(spec) => self.add(*spec, now),
            Call::List => Ok(Answer::List(
                self.procs.values().map(|e| snapshot(e, now)).collect(),
            )),
            Call::Status(id) => self
                .entry(&id)
                .map(|e| Answer::Process(Box::new(snapshot(e, now)))),
            Call::Log(id) => self.entry(&id).map(|e| Answer::Log(e.log.clone())),
            Call::Start(id) => self.start(&id, now),
            Call::Input(id, text) => self.input(&id, text),
            Call::Stop(id) => {
                return self.command(vec![id], Input::Stop, "stopped", false, reply, now);
            }
            Call::Restart(id) => {
                return self.command(vec![id], Input::Restart, "restarted", false, reply, now);
            }
            Call::Remove(id) => {
                return self.command(vec![id], Input::Remove, "removed", false, reply, now);
            }
            Call::StopAll => {
                let ids = self.procs.keys().cloned().collect();
                return self.command(ids, Input::Stop, "stopped all processes", true, reply, now);
            }
            Call::RestartAll => {
                let ids = self.procs.keys().cloned().collect();
                return self.command(
                    ids,
                    Input::Restart,
                    "restarted all processes",
                    true,
                    reply,
                    now,
                );
            }
            Call::Shutdown => {
                let _ = reply.send(Ok(Answer::Done {
                    message: "shutting down".into(),
                    process: None,
                }));
                self.begin_shutdown();
                return;
            }
        };
        let _ = reply.send(answer);
    }

    fn entry(&self, id: &ProcessId) -> Result<&Entry, ApiError> {
        self.procs
            .get(id)
            .ok_or_else(|| ApiError::unknown_process(id.as_str()))
    }

    fn add(&mut self, spec: ProcessSpec, now: Instant) -> Reply {
        let id = spec.id.clone();
        if self.procs.contains_key(&id) {
            return Err(ApiError::Conflict(format!(
                "a process with id '{id}' already exists"
            )));
        }
        let saved = spec.save_for_next_run;
        self.insert(spec, State::Stopped);
        if let Err(e) = self.try_spawn(&id, now) {
            // The add succeeds only if the spawn does: forget it entirely.
            self.procs.remove(&id);
            return Err(ApiError::BadRequest(e));
        }
        if saved {
            self.store_dirty = true;
        }
        self.sys(format!("added process '{id}'"));
        let e = &self.procs[&id];
        Ok(Answer::Done {
            message: format!("process '{id}' added and started"),
            process: Some(Box::new(snapshot(e, now))),
        })
    }

    fn start(&mut self, id: &ProcessId, now: Instant) -> Reply {
        self.entry(id)?;
        let fx = {
            let e = self.procs.get_mut(id).expect("checked");
            e.proc
                .step(Input::Start, now)
                .map_err(|c| ApiError::Conflict(c.0))?
        };
        let spawned = self.apply(id, fx, now);
        let e = &self.procs[id];
        match spawned {
            Some(Err(err)) => Err(ApiError::BadRequest(err)),
            _ => Ok(Answer::Done {
                message: format!("process '{id}' started"),
                process: Some(Box::new(snapshot(e, now))),
            }),
        }
    }

    fn input(&mut self, id: &ProcessId, mut text: String) -> Reply {
        let e = self.entry(id)?;
        let stdin = match (&e.proc.state, &e.stdin) {
            (State::Running { .. }, Some(stdin)) => stdin,
            _ => {
                return Err(ApiError::Conflict(format!(
                    "process '{id}' is {}: input needs a running process",
                    e.proc.status()
                )));
            }
        };
        text.push('\n');
        match child::write_input(stdin, text.as_bytes()) {
            Ok(()) => Ok(Answer::Done {
                message: format!("sent {} bytes to '{id}'", text.len()),
                process: None,
            }),
            Err(InputError::Full { free }) => Err(ApiError::Unavailable(format!(
                "stdin of '{id}' is full ({free} bytes free, {} needed): the process is not reading its input",
                text.len()
            ))),
            Err(InputError::Closed) => Err(ApiError::Conflict(format!(
                "process '{id}' has closed its stdin"
            ))),
            Err(InputError::Io(err)) => Err(ApiError::Internal(format!(
                "writing to stdin of '{id}': {err}"
            ))),
        }
    }

    /// Stop / restart / remove one or many processes; the reply waits until
    /// none of them is still stopping.
    fn command(
        &mut self,
        ids: Vec<ProcessId>,
        input: Input,
        message: &str,
        many: bool,
        reply: Sender<Reply>,
        now: Instant,
    ) {
        for id in &ids {
            let fx = match self.procs.get_mut(id) {
                None if !many => {
                    let _ = reply.send(Err(ApiError::unknown_process(id.as_str())));
                    return;
                }
                None => continue,
                Some(e) => e.proc.step(input, now),
            };
            match fx {
                Ok(fx) => {
                    self.apply(id, fx, now);
                }
                Err(c) if !many => {
                    let _ = reply.send(Err(ApiError::Conflict(c.0)));
                    return;
                }
                Err(_) => {}
            }
        }
        let message = if many {
            message.to_owned()
        } else {
            format!("process '{}' {message}", ids[0])
        };
        self.waiters.push(Waiter {
            ids,
            message,
            many,
            reply,
        });
    }

    fn answer_waiters(&mut self) {
        let now = Instant::now();
        let procs = &self.procs;
        self.waiters.retain(|w| {
            let busy = w
                .ids
                .iter()
                .any(|id| procs.get(id).is_some_and(|e| e.proc.is_stopping()));
            if busy {
                return true;
            }
            let snaps: Vec<Snapshot> = w
                .ids
                .iter()
                .filter_map(|id| procs.get(id).map(|e| snapshot(e, now)))
                .collect();
            let answer = if w.many {
                Answer::Many {
                    message: w.message.clone(),
                    processes: snaps,
                }
            } else {
                Answer::Done {
                    message: w.message.clone(),
                    process: snaps.into_iter().next().map(Box::new),
                }
            };
            let _ = w.reply.send(Ok(answer));
            false
        });
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.sys("shutting down: stopping every process".into());
        let now = Instant::now();
        let ids: Vec<ProcessId> = self.procs.keys().cloned().collect();
        for id in ids {
            self.step(&id, Input::Shutdown, now);
        }
    }

    fn fire_deadlines(&mut self, now: Instant) {
        let due: Vec<ProcessId> = self
            .procs
            .iter()
            .filter(|(_, e)| e.proc.deadline().is_some_and(|d| d <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.step(&id, Input::Tick, now);
        }
    }

    fn step(&mut self, id: &ProcessId, input: Input, now: Instant) {
        if let Some(e) = self.procs.get_mut(id)
            && let Ok(fx) = e.proc.step(input, now)
        {
            self.apply(id, fx, now);
        }
    }

    /// Carry out effects in order. Returns the outcome of a spawn, if one was asked.
    fn apply(
        &mut self,
        id: &ProcessId,
        effects: Vec<Effect>,
        now: Instant,
    ) -> Option<Result<(), String>> {
        let mut spawned = None;
        for fx in effects {
            let Some(e) = self.procs.get_mut(id) else {
                break;
            };
            match fx {
                Effect::Log(line) => self.logger.system(&e.log, line),
                Effect::Signal { pgid, signal } => {
                    if let Err(err) = child::signal_group(pgid, signal) {
                        self.sys(format!("cannot signal '{id}' (pgid {pgid}): {err}"));
                    }
                }
                Effect::Persist => self.store_dirty |= e.proc.spec.save_for_next_run,
                Effect::Forget => {
                    self.store_dirty |= e.proc.spec.save_for_next_run;
                    self.procs.remove(id);
                    self.sys(format!("removed process '{id}'"));
                }
                Effect::Spawn if self.shutting_down => {}
                Effect::Spawn => spawned = Some(self.spawn(id, now)),
            }
        }
        spawned
    }

    /// Spawn a run of `id`; on failure the lifecycle decides (backoff, failed).
    fn spawn(&mut self, id: &ProcessId, now: Instant) -> Result<(), String> {
        let result = self.try_spawn(id, now);
        if let Err(err) = &result {
            let e = self.procs.get_mut(id).expect("spawn of a known process");
            let fx = e.proc.spawn_failed(err.clone(), now);
            self.apply(id, fx, now);
        }
        result
    }

    /// Spawn a run of `id`, changing nothing if it fails.
    fn try_spawn(&mut self, id: &ProcessId, now: Instant) -> Result<(), String> {
        let e = self.procs.get_mut(id).expect("spawn of a known process");
        let run_number = e.proc.run_count + 1;
        let label = e.proc.spec.is_periodic().then_some(run_number);
        let reporter = Reporter {
            id: id.clone(),
            generation: e.proc.generation() + 1,
            tx: self.tx.clone(),
            logger: self.logger.clone(),
        };
        match child::spawn(&e.proc.spec, e.log.clone(), label, run_number, reporter) {
            Ok(sp) => {
                e.proc.spawned(sp.pid, now, SystemTime::now());
                e.stdin = Some(sp.stdin);
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    fn insert(&mut self, spec: ProcessSpec, state: State) {
        let path = self.logs_dir.join(format!("{}.log", spec.id));
        let cfg = LogConfig {
            max_bytes: spec.log_max_bytes,
            backups: spec.log_backups,
        };
        let entry = Entry {
            log: Arc::new(LogFile::new(path, cfg)),
            stdin: None,
            proc: Proc::new(spec.clone(), state),
        };
        self.procs.insert(spec.id, entry);
    }

    fn flush_store(&mut self) {
        if !self.store_dirty {
            return;
        }
        self.store_dirty = false;
        let saved = self
            .procs
            .values()
            .filter(|e| e.proc.spec.save_for_next_run)
            .map(|e| (&e.proc.spec, e.proc.state == State::ManuallyStopped));
        if let Err(err) = self.store.save(saved) {
            let msg = format!("cannot save {}: {err}", self.store.path().display());
            crate::diag::warn(&msg);
            self.sys(msg);
        }
    }

    /// A line in exeio.log.
    fn sys(&self, line: String) {
        self.logger.supervisor(line);
    }
}

fn snapshot(e: &Entry, now: Instant) -> Snapshot {
    let p = &e.proc;
    let spec = &p.spec;
    Snapshot {
        id: spec.id.to_string(),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec
            .working_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        env: spec.env.clone(),
        status: p.status(),
        is_running: matches!(p.state, State::Running { .. }),
        pid: p.pid(),
        auto_restart: spec.auto_restart,
        restart_policy: spec.restart_policy.name(),
        max_restarts: spec.max_restarts,
        save_for_next_run: spec.save_for_next_run,
        periodic: spec.is_periodic(),
        period_seconds: spec.period_seconds,
        stop_signal: spec.stop_signal.name(),
        stop_timeout_seconds: spec.stop_timeout_seconds,
        run_count: p.run_count,
        restart_count: p.streak,
        last_run: p.last_run.map(rfc3339),
        last_exit: p.last_exit.map(|(status, at)| {
            let (code, signal) = match status {
                crate::policy::ExitStatus::Code(c) => (Some(c), None),
                crate::policy::ExitStatus::Signal(s) => (None, Some(s)),
            };
            LastExit {
                code,
                signal,
                at: rfc3339(at),
            }
        }),
        next_run_in_seconds: p.next_run_in(now).map(|d| round3(d.as_secs_f64())),
        uptime_seconds: p
            .started()
            .map(|s| round3(now.duration_since(s).as_secs_f64())),
        cpu_percent: None,
        rss_bytes: None,
        log_file: e.log.path().to_string_lossy().into_owned(),
        error: p.error.clone().or_else(|| e.log.last_error()),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
