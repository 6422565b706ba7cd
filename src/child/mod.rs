//! Child processes: spawn, signal, reap, and the one thread each child gets.
//!
//! Called by the supervisor thread only (PR_SET_PDEATHSIG fires when the
//! *spawning thread* exits, and the supervisor thread lives as long as any
//! child). The start itself is in `exec` and `clone`, cgroups in `cgroup`.
//!
//! Each child gets one thread (`watch`). It polls the child's stdout and
//! stderr, a pidfd (readable at the exit), a doorbell rung when there is
//! something for it, and the child's stdin while input is queued. It is the
//! only writer of the child's log while the child lives: output lines, and
//! the SYSTEM lines the supervisor queues, in order. At the exit it drains
//! the pipes (bounded, in case a grandchild holds them), writes the exit
//! line, hands the log back, and only then reports `Event::Exited`.

pub mod cgroup;
mod clone;
mod exec;

pub use clone::reserve_slots;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::logger::Logger;
use crate::logs::{LogFile, Op, Pump, Stream};
use crate::policy::ExitStatus;
use crate::protocol::{Event, Msg};
use crate::spec::{ProcessId, ProcessSpec};
use crate::sys;

/// Stack of a child thread: it only moves bytes; buffers live on the heap.
const THREAD_STACK: usize = 32 * 1024;
/// Read size. Allocated only once a child writes something.
const READ_CHUNK: usize = 128 * 1024;
/// A pipe that fills a whole read is grown to this, for floods.
const BIG_PIPE: i32 = 1024 * 1024;
/// After the child exits: stop waiting for pipe EOF after this long without data...
const DRAIN_IDLE: Duration = Duration::from_millis(250);
/// ...or this long in all (a grandchild may flood the inherited pipe).
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Input queued for a child and not yet read by it.
pub const MAX_QUEUED_INPUT: usize = 2 << 20;

/// What the supervisor keeps of a running child.
pub struct Running {
    pub pid: u32,
    pub link: Arc<Link>,
}

/// Shared by the supervisor and a child's thread: queued input and the
/// doorbell that wakes the thread.
pub struct Link {
    stdin: Mutex<Stdin>,
    bell: OwnedFd,
}

#[derive(Default)]
struct Stdin {
    queued: VecDeque<u8>,
    closed: bool,
}

/// Why input was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    /// Not enough room: this many bytes are still queued.
    Full { queued: usize },
    /// The child closed its stdin.
    Closed,
}

impl Link {
    fn new() -> io::Result<Link> {
        Ok(Link {
            stdin: Mutex::new(Stdin::default()),
            bell: sys::eventfd()?,
        })
    }

    pub fn ring(&self) {
        sys::eventfd_ring(&self.bell);
    }

    /// Queue `bytes` for the child's stdin, all or nothing. Never blocks.
    pub fn input(&self, bytes: &[u8]) -> Result<(), InputError> {
        let mut s = self.stdin.lock().unwrap_or_else(PoisonError::into_inner);
        if s.closed {
            return Err(InputError::Closed);
        }
        if s.queued.len() + bytes.len() > MAX_QUEUED_INPUT {
            return Err(InputError::Full {
                queued: s.queued.len(),
            });
        }
        s.queued.extend(bytes);
        drop(s);
        self.ring();
        Ok(())
    }
}

/// Why a run could not be started (the text goes into a 400 and `error`).
#[derive(Debug)]
pub enum SpawnError {
    /// `working_dir` is missing (with the OS error) or not a directory.
    WorkingDir {
        dir: std::path::PathBuf,
        source: Option<io::Error>,
    },
    /// `user`/`group` cannot be used.
    User(String),
    /// The process's cgroup could not be prepared.
    Cgroup { id: ProcessId, source: io::Error },
    /// `execve` (or what precedes it in the child) failed.
    Exec { command: String, source: io::Error },
    /// No thread (or no doorbell) for the child: a resource limit.
    Watcher(io::Error),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::WorkingDir { dir, source: None } => {
                write!(f, "working_dir {}: not a directory", dir.display())
            }
            SpawnError::WorkingDir {
                dir,
                source: Some(e),
            } => write!(f, "working_dir {}: {e}", dir.display()),
            SpawnError::User(m) => f.write_str(m),
            SpawnError::Cgroup { id, source } => {
                write!(f, "cannot prepare the cgroup of '{id}': {source}")
            }
            SpawnError::Exec { command, source } => write!(f, "cannot start {command:?}: {source}"),
            SpawnError::Watcher(e) => write!(f, "cannot start a thread for the child: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::WorkingDir {
                source: Some(e), ..
            }
            | SpawnError::Cgroup { source: e, .. }
            | SpawnError::Exec { source: e, .. }
            | SpawnError::Watcher(e) => Some(e),
            _ => None,
        }
    }
}

/// How a child is started, beyond its spec.
pub struct Start<'a> {
    pub spec: &'a ProcessSpec,
    pub log: Arc<LogFile>,
    /// `RUN#n` label of output lines (jobs).
    pub label: Option<u64>,
    pub run_number: u64,
    /// The child's cgroup, to join before exec.
    pub cgroup: Option<cgroup::Target>,
    pub generation: u64,
    pub tx: Sender<Msg>,
    pub logger: Logger,
}

/// Could `spec` be started now? (Its working dir, user and program, as a
/// spawn would find them; for a job that does not run when it is added.)
pub fn check(spec: &ProcessSpec) -> Result<(), SpawnError> {
    check_dir(spec)?;
    if let Some(user) = &spec.user {
        crate::users::resolve(user, spec.group.as_deref()).map_err(SpawnError::User)?;
    }
    exec::find_program(&spec.command, &spec.env).map_err(|source| SpawnError::Exec {
        command: spec.command.clone(),
        source,
    })
}

fn check_dir(spec: &ProcessSpec) -> Result<(), SpawnError> {
    if let Some(dir) = &spec.working_dir {
        let bad = |source| SpawnError::WorkingDir {
            dir: dir.clone(),
            source,
        };
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(bad(None)),
            Err(e) => return Err(bad(Some(e))),
        }
    }
    Ok(())
}

/// Spawn a run in its own process group (and cgroup) with piped stdio, and
/// start its thread. The error says why, for a 400.
pub fn spawn(s: Start<'_>) -> Result<Running, SpawnError> {
    let spec = s.spec;
    check_dir(spec)?;
    let ids = match &spec.user {
        Some(user) => {
            Some(crate::users::resolve(user, spec.group.as_deref()).map_err(SpawnError::User)?)
        }
        None => None,
    };
    let mut env = spec.env.clone();
    if let Some(ids) = &ids {
        for k in ["USER", "LOGNAME"] {
            env.entry(k.into()).or_insert_with(|| ids.name.clone());
        }
        env.entry("HOME".into())
            .or_insert_with(|| ids.home.to_string_lossy().into_owned());
    }
    let link = Arc::new(Link::new().map_err(SpawnError::Watcher)?);
    let started = exec::start(exec::Plan {
        program: &spec.command,
        args: &spec.args,
        env: &env,
        drop_env: crate::keys::KEY_ENV,
        cwd: spec.working_dir.as_deref(),
        ids: ids.as_ref(),
        cgroup: s
            .cgroup
            .as_ref()
            .map(|t| (t.dir.as_ref().map(AsRawFd::as_raw_fd), t.procs.as_raw_fd())),
    })
    .map_err(|source| SpawnError::Exec {
        command: spec.command.clone(),
        source,
    })?;
    let pid = started.pid;
    let exit_fd = match started.pidfd {
        Some(fd) => ExitFd::PidFd(fd),
        None => ExitFd::open(pid),
    };
    let waker_link = link.clone();
    s.log.attach(Arc::new(move || waker_link.ring()));
    let started_line = format!(
        "started run {} (pid {pid}): {}",
        s.run_number,
        command_line(spec)
    );
    s.logger.system(&s.log, started_line);
    let watcher = Watcher {
        pid,
        log: s.log.clone(),
        link: link.clone(),
        label: s.label,
        id: spec.id.clone(),
        generation: s.generation,
        tx: s.tx,
        logger: s.logger,
    };
    let (out, err, inp) = (started.stdout, started.stderr, started.stdin);
    let thread = std::thread::Builder::new()
        .name(format!("child-{}", spec.id))
        .stack_size(THREAD_STACK)
        .spawn(move || watcher.run(out, err, inp, exit_fd));
    if let Err(e) = thread {
        // No thread, no watcher: kill and reap here rather than leak a child.
        s.log.detach();
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = reap(pid);
        return Err(SpawnError::Watcher(e));
    }
    Ok(Running { pid, link })
}

fn command_line(spec: &ProcessSpec) -> String {
    let mut s = spec.command.clone();
    for a in &spec.args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Send `signal` to the process group `pgid`. A group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let sig = Signal::try_from(signal).map_err(io::Error::from)?;
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reap an exited child (its thread has seen the exit); the CPU time it
/// and the children it waited for used. Kill what is left of its process
/// group first (the unreaped zombie still holds the pid and the group id,
/// so no recycled pid is hit); its cgroup, if any, is the caller's.
pub fn reap(pid: u32) -> Duration {
    let _ = signal_group(pid, nix::libc::SIGKILL);
    sys::reap(pid)
}

/// What becomes readable when the child exits: a pidfd, or (kernels before
/// 5.3) a pipe closed by a small waiter thread.
enum ExitFd {
    PidFd(OwnedFd),
    Pipe(OwnedFd),
}

impl ExitFd {
    fn open(pid: u32) -> ExitFd {
        if let Some(fd) = sys::pidfd_open(pid) {
            return ExitFd::PidFd(fd);
        }
        let (r, w) = std::io::pipe().expect("pipe for exit notification");
        let _ = std::thread::Builder::new()
            .stack_size(16 * 1024)
            .spawn(move || {
                let _ = waitid(
                    Id::Pid(Pid::from_raw(pid as i32)),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
                );
                drop(w);
            });
        ExitFd::Pipe(OwnedFd::from(r))
    }

    fn fd(&self) -> &OwnedFd {
        match self {
            ExitFd::PidFd(fd) | ExitFd::Pipe(fd) => fd,
        }
    }
}

/// A child's thread.
struct Watcher {
    pid: u32,
    log: Arc<LogFile>,
    link: Arc<Link>,
    label: Option<u64>,
    id: ProcessId,
    generation: u64,
    tx: Sender<Msg>,
    logger: Logger,
}

/// Slots of the poll set.
const OUT: usize = 0;
const ERR: usize = 1;
const EXIT: usize = 2;
const BELL: usize = 3;
const IN: usize = 4;

impl Watcher {
    fn run(self, out: OwnedFd, err: OwnedFd, inp: OwnedFd, exit_fd: ExitFd) {
        let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.watch(out, err, inp, &exit_fd)
        }));
        if watched.is_err() {
            // A bug in the pump must not lose the child: still report its exit.
            self.log.detach();
            let status = exit_status(self.pid); // blocks until the exit
            self.report(status);
        }
    }

    fn report(&self, status: ExitStatus) {
        let _ = self.tx.send(Msg::Event(Event::Exited {
            id: self.id.clone(),
            generation: self.generation,
            status,
            at: SystemTime::now(),
        }));
    }

    /// Pump output until the child exits and its pipes are drained, then
    /// log the exit, hand the log back, and report.
    fn watch(&self, out: OwnedFd, err: OwnedFd, inp: OwnedFd, exit_fd: &ExitFd) {
        let mut pump = Pump::new(self.log.clone(), self.label);
        let mut pipes = [Some(File::from(out)), Some(File::from(err))];
        let mut stdin = Some(File::from(inp));
        for p in pipes.iter().flatten().chain(stdin.iter()) {
            sys::set_nonblocking(p);
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut grown = [false; 2];
        let mut exited_at: Option<Instant> = None;
        let mut last_data = Instant::now();
        let mut dirty = false;
        let mut health = LogHealth::default();
        let mut held_open = false;
        self.log.drain();
        loop {
            if pipes.iter().all(Option::is_none) && exited_at.is_some() {
                break;
            }
            if let Some(t) = exited_at {
                let now = Instant::now();
                if now.duration_since(t) >= DRAIN_MAX || now.duration_since(last_data) >= DRAIN_IDLE
                {
                    held_open = true;
                    break;
                }
            }
            let timeout = if dirty {
                PollTimeout::ZERO
            } else if exited_at.is_some() {
                let left = DRAIN_IDLE.saturating_sub(last_data.elapsed());
                PollTimeout::try_from(left.as_millis().max(1) as u64).unwrap_or(PollTimeout::MAX)
            } else {
                PollTimeout::NONE
            };
            let want_out = stdin.is_some() && self.has_input();
            // A fixed set on the stack: an idle child's thread allocates nothing.
            let bell = self.link.bell.as_fd();
            let mut fds: [PollFd; 5] =
                std::array::from_fn(|_| PollFd::new(bell, PollFlags::POLLIN));
            let mut which = [BELL; 5];
            let mut n = 0;
            let wanted = [
                pipes[OUT]
                    .as_ref()
                    .map(|f| (f.as_fd(), PollFlags::POLLIN, OUT)),
                pipes[ERR]
                    .as_ref()
                    .map(|f| (f.as_fd(), PollFlags::POLLIN, ERR)),
                exited_at
                    .is_none()
                    .then(|| (exit_fd.fd().as_fd(), PollFlags::POLLIN, EXIT)),
                Some((bell, PollFlags::POLLIN, BELL)),
                stdin
                    .as_ref()
                    .filter(|_| want_out)
                    .map(|f| (f.as_fd(), PollFlags::POLLOUT, IN)),
            ];
            for (fd, events, slot) in wanted.into_iter().flatten() {
                fds[n] = PollFd::new(fd, events);
                which[n] = slot;
                n += 1;
            }
            let ready = match poll(&mut fds[..n], timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            };
            if ready == 0 {
                if dirty {
                    pump.flush();
                    dirty = false;
                    health.check(&self.log, &self.logger, &self.id);
                }
                continue;
            }
            let mut revents = [(BELL, false); 5];
            for (r, (f, &i)) in revents.iter_mut().zip(fds[..n].iter().zip(&which)) {
                *r = (i, f.revents().is_some_and(|r| !r.is_empty()));
            }
            let revents = &revents[..n];
            for &(i, ready) in revents {
                if !ready {
                    continue;
                }
                match i {
                    EXIT => {
                        exited_at = Some(Instant::now());
                        last_data = Instant::now();
                    }
                    BELL => {
                        sys::eventfd_clear(&self.link.bell);
                        // Output read so far goes before the queued lines.
                        pump.flush();
                        dirty = false;
                        self.log.drain();
                    }
                    IN => {
                        if !self.feed_stdin(stdin.as_ref().expect("polled")) {
                            stdin = None;
                        }
                    }
                    OUT | ERR => {
                        let stream = if i == OUT {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        };
                        if buf.is_empty() {
                            buf = vec![0; READ_CHUNK];
                        }
                        let file = pipes[i].as_mut().expect("polled pipe is open");
                        match file.read(&mut buf) {
                            Ok(0) => pipes[i] = None,
                            Ok(n) => {
                                pump.feed(stream, &buf[..n]);
                                dirty = true;
                                last_data = Instant::now();
                                if n == buf.len() && !grown[i] {
                                    grown[i] = true;
                                    sys::grow_pipe(file, BIG_PIPE);
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => pipes[i] = None,
                        }
                    }
                    _ => unreachable!("a slot of the poll set"),
                }
            }
        }
        drop(stdin);
        self.close_input();
        pump.finish();
        health.check(&self.log, &self.logger, &self.id);
        if held_open {
            self.log.post(Op::Line(
                "output pipes still held open by another process after the exit; stopped reading"
                    .into(),
            ));
        }
        let status = exit_status(self.pid);
        self.log.post(Op::Line(status.describe()));
        self.log.detach();
        if self.log.retry() {
            self.logger.retry(&self.log);
        }
        self.report(status);
    }

    fn has_input(&self) -> bool {
        !self
            .link
            .stdin
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queued
            .is_empty()
    }

    /// Write queued input as far as the pipe takes it. False once the
    /// child has closed its stdin.
    fn feed_stdin(&self, f: &File) -> bool {
        let mut s = self
            .link
            .stdin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !s.queued.is_empty() {
            let (front, _) = s.queued.as_slices();
            let mut w = f;
            match w.write(front) {
                Ok(n) => {
                    s.queued.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    s.queued.clear();
                    s.closed = true;
                    return false;
                }
            }
        }
        true
    }

    fn close_input(&self) {
        let mut s = self
            .link
            .stdin
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.closed = true;
        s.queued.clear();
    }
}

/// Tells exeio.log when a process's log stops taking writes, and when it
/// recovers (the error itself is also in the process's `/status`).
#[derive(Default)]
struct LogHealth {
    failing: bool,
}

impl LogHealth {
    fn check(&mut self, log: &LogFile, logger: &Logger, id: &ProcessId) {
        match (log.last_error(), self.failing) {
            (Some(err), false) => {
                self.failing = true;
                logger.supervisor(format!(
                    "cannot write the log of '{id}' ({}): {err}; output is held back and retried",
                    log.path().display()
                ));
            }
            (None, true) => {
                self.failing = false;
                logger.supervisor(format!("the log of '{id}' is writable again"));
            }
            _ => {}
        }
    }
}

/// The exit status of an exited, not yet reaped child (WNOWAIT: the
/// supervisor reaps it).
fn exit_status(pid: u32) -> ExitStatus {
    loop {
        let id = Id::Pid(Pid::from_raw(pid as i32));
        match waitid(id, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(WaitStatus::Exited(_, code)) => return ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return ExitStatus::Signal(sig as i32),
            Err(nix::errno::Errno::EINTR) => {}
            _ => return ExitStatus::Code(-1),
        }
    }
}
