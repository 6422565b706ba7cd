//! Running health checks (SPEC 4b): a small, bounded pool of threads that
//! starts the checks of `http`, `tcp` and `exec` probes and reports each
//! answer to the supervisor as a message on its channel. `exec` commands,
//! once started by a worker, are waited for by one more thread, all at once
//! (`exec::Waiter`), and `http`/`tcp` connections are carried by another
//! (`net::Dialer`): a command or a target that hangs holds no worker.
//!
//! The supervisor owns the times and the decisions (`lifecycle::health`):
//! it hands a `Check` to `Probes::submit` when one is due and feeds each
//! answer (announced by `Event::ProbesAnswered`) to the process as
//! `lifecycle::Input::Probed`. Nothing here decides or
//! sleeps: a worker blocks only on its queue or on one check, which its
//! timeout bounds. The queue is bounded too: when it is full the check is
//! refused at once (`submit` says so) and the supervisor skips it (logged
//! in exeio.log; the next check comes at its time), so a backlog of checks
//! never blocks the supervisor.
//! `log` probes need no worker: the child's thread matches lines as it
//! writes them (`logs::LineHook`).

mod exec;
mod handover;
mod net;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::lifecycle::ProbeResult;
use crate::protocol::{Event, Msg};
use crate::spec::{Probe, ProcessId, ProcessSpec};

/// Workers: checks run in parallel at most this many at once.
pub const THREADS: usize = 4;
/// Checks waiting for a worker at most.
pub const QUEUE: usize = 1024;
/// A worker's stack: a check's buffers live on the heap; name resolution
/// (getaddrinfo) is the deepest call.
const STACK: usize = 256 * 1024;

/// One check to run.
pub struct Check {
    pub id: ProcessId,
    pub generation: u64,
    pub seq: u64,
    /// The process as configured (its probe, and for `exec` its user,
    /// working dir and environment).
    pub spec: Arc<ProcessSpec>,
    /// The run whose checks the supervisor still wants (gone: the process
    /// was removed): a check that waited in the queue past that is skipped.
    pub wanted: Weak<AtomicU64>,
}

impl Check {
    fn is_wanted(&self) -> bool {
        self.wanted
            .upgrade()
            .is_some_and(|w| w.load(Ordering::Relaxed) == self.generation)
    }
}

/// What one check found.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// `HTTP 200`, `HTTP 503`, `connection refused`, `timed out after 2 s`,
    /// `exit 1: <last stderr line>`.
    pub message: String,
}

impl Outcome {
    fn ok(message: impl Into<String>) -> Outcome {
        Outcome {
            ok: true,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> Outcome {
        Outcome {
            ok: false,
            message: message.into(),
        }
    }
}

/// `timed out after 2 s`.
pub fn timed_out(timeout: Duration) -> String {
    format!("timed out after {} s", timeout.as_secs())
}

/// Answers on their way to the supervisor. They are handed over in
/// batches: the first answer into an empty inbox sends one message, and
/// the supervisor takes all that came by then (a little later: see
/// `ANSWER_WINDOW`), so a thousand checks do not wake it a thousand times.
pub struct Answers {
    inbox: Mutex<Vec<(ProcessId, ProbeResult)>>,
    tx: Sender<Msg>,
}

/// How long the supervisor lets answers gather after the first.
pub const ANSWER_WINDOW: Duration = Duration::from_millis(20);

impl Answers {
    pub fn post(&self, id: ProcessId, result: ProbeResult) {
        let mut inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
        inbox.push((id, result));
        if inbox.len() == 1 {
            drop(inbox);
            let _ = self.tx.send(Msg::Event(Event::ProbesAnswered));
        }
    }

    /// Everything posted so far.
    pub fn take(&self) -> Vec<(ProcessId, ProbeResult)> {
        std::mem::take(&mut *self.inbox.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The supervisor's handle on the pool.
pub struct Probes {
    queue: Sender<Check>,
    pub answers: Arc<Answers>,
}

impl Probes {
    /// Start the workers; answers go to `results`.
    pub fn start(threads: usize, results: Sender<Msg>) -> io::Result<Probes> {
        let (queue, rx) = bounded(QUEUE);
        let waiter = Arc::new(exec::Waiter::start()?);
        let dialer = Arc::new(net::Dialer::start()?);
        let answers = Arc::new(Answers {
            inbox: Mutex::new(Vec::new()),
            tx: results,
        });
        for n in 0..threads.max(1) {
            let (rx, results) = (rx.clone(), answers.clone());
            let (waiter, dialer) = (waiter.clone(), dialer.clone());
            std::thread::Builder::new()
                .name(format!("probe-{n}"))
                .stack_size(STACK)
                .spawn(move || work(rx, results, waiter, dialer))?;
        }
        Ok(Probes { queue, answers })
    }

    /// Queue a check; never blocks. Refused (and handed back) when the
    /// queue is full or the pool is gone.
    pub fn submit(&self, check: Check) -> Result<(), Check> {
        self.queue.try_send(check).map_err(|e| match e {
            TrySendError::Full(c) | TrySendError::Disconnected(c) => c,
        })
    }
}

/// A worker: run checks until the supervisor drops the pool. A check is
/// only started here, and reported by the waiter (`exec`) or the dialer.
fn work(
    rx: Receiver<Check>,
    results: Arc<Answers>,
    waiter: Arc<exec::Waiter>,
    dialer: Arc<net::Dialer>,
) {
    while let Ok(check) = rx.recv() {
        if !check.is_wanted() {
            continue; // removed or stopped while queued: its answer is moot
        }
        let started = Instant::now();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&check)))
            .unwrap_or_else(|_| {
                Ran::Done(Outcome::failed("the probe failed unexpectedly (a bug)"))
            });
        let report = reporter(&check, started, results.clone());
        match ran {
            Ran::Done(outcome) => report(outcome),
            Ran::Started(mut running) => {
                running.report = Some(Box::new(report));
                waiter.watch(running);
            }
            Ran::Dialing(mut dial) => {
                dial.report = Some(Box::new(report));
                dialer.watch(dial);
            }
        }
    }
}

/// What tells the supervisor a check's outcome.
fn reporter(
    check: &Check,
    started: Instant,
    results: Arc<Answers>,
) -> impl FnOnce(Outcome) + Send + 'static {
    let (id, generation, seq) = (check.id.clone(), check.generation, check.seq);
    move |outcome: Outcome| {
        let result = ProbeResult {
            generation,
            seq: Some(seq),
            ok: outcome.ok,
            message: outcome.message,
            at: SystemTime::now(),
            took: started.elapsed(),
        };
        results.post(id, result);
    }
}

/// A check done, a command started (`exec`) for the waiter, or a
/// connection started (`http`, `tcp`) for the dialer.
pub enum Ran {
    Done(Outcome),
    Started(exec::Running),
    Dialing(net::Dial),
}

/// Run one check (start it, for `exec`).
pub fn run(check: &Check) -> Ran {
    let Some(health) = check.spec.health.as_deref() else {
        return Ran::Done(Outcome::failed("no probe"));
    };
    Ran::Done(match &health.probe {
        Probe::Http(target) => match net::start_http(target, health.timeout) {
            Ok(dial) => return Ran::Dialing(dial),
            Err(outcome) => outcome,
        },
        Probe::Tcp(addr) => match net::start_tcp(addr, health.timeout) {
            Ok(dial) => return Ran::Dialing(dial),
            Err(outcome) => outcome,
        },
        Probe::Exec(argv) => match exec::start(&check.spec, argv, health.timeout) {
            Ok(running) => return Ran::Started(running),
            Err(outcome) => outcome,
        },
        Probe::Log(_) => Outcome::failed("a log probe is not run by the pool"),
    })
}
