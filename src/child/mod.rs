//! Child processes: spawn, signal, reap, and the one thread each child gets.
//!
//! The home of process calls (the start itself is in `exec`). Called by the
//! supervisor thread only (PR_SET_PDEATHSIG fires when the *spawning thread*
//! exits, and the supervisor thread lives as long as any child).
//!
//! Each child gets one thread that polls its stdout, stderr and a pidfd: it
//! pumps output into the log, notices the exit the moment it happens, drains
//! the pipes to EOF (bounded, in case a grandchild holds them open), writes
//! the exit line, and only then reports `Event::Exited`. One thread instead of
//! one per pipe: half the stacks, and the exit is ordered after the output
//! without any cross-thread handshake.

mod exec;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::logger::Logger;
use crate::logs::{LogFile, Pump, Stream};
use crate::policy::ExitStatus;
use crate::protocol::{Event, Msg};
use crate::spec::{ProcessId, ProcessSpec};

/// Stack of a child thread: it only moves bytes; buffers live on the heap.
const THREAD_STACK: usize = 32 * 1024;
/// Read size. Allocated (zeroed by the kernel, untouched until used) only
/// once a child writes something: an idle child costs no buffer.
const READ_CHUNK: usize = 128 * 1024;
/// A pipe that fills a whole read is grown to this, for floods.
const BIG_PIPE: i32 = 1024 * 1024;
/// After the child exits: stop waiting for pipe EOF after this long without data...
const DRAIN_IDLE: Duration = Duration::from_millis(250);
/// ...or this long in all (a grandchild may flood the inherited pipe).
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// A freshly spawned child, as the supervisor keeps it.
pub struct Spawned {
    pub pid: u32,
    /// Non-blocking write end of the child's stdin.
    pub stdin: File,
}

/// Everything the child thread needs to report back.
pub struct Reporter {
    pub id: ProcessId,
    /// For exeio.log: a log file that stops (or starts again) taking writes.
    pub logger: Logger,
    pub generation: u64,
    pub tx: Sender<Msg>,
}

/// Spawn `spec` in its own process group with piped stdio, and start its thread.
/// `run` labels output lines (`RUN#n`) for periodic processes.
pub fn spawn(
    spec: &ProcessSpec,
    log: Arc<LogFile>,
    run: Option<u64>,
    run_number: u64,
    reporter: Reporter,
) -> Result<Spawned, String> {
    if let Some(dir) = &spec.working_dir {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("working_dir {}: not a directory", dir.display())),
            Err(e) => return Err(format!("working_dir {}: {e}", dir.display())),
        }
    }
    let started = exec::start(
        &spec.command,
        &spec.args,
        &spec.env,
        crate::auth::KEY_ENV,
        spec.working_dir.as_deref(),
    )
    .map_err(|e| format!("cannot start {:?}: {e}", spec.command))?;
    let (pid, out, err, inp) = (started.pid, started.stdout, started.stderr, started.stdin);
    let stdin = File::from(inp);
    set_nonblocking(&stdin);
    let started_line = format!(
        "started run {run_number} (pid {pid}): {}",
        command_line(spec)
    );
    let exit_fd = ExitFd::open(pid);
    let thread = std::thread::Builder::new()
        .name(format!("child-{}", reporter.id))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            log.system(&started_line);
            let pump = Pump::new(log.clone(), run);
            let (id, generation, tx) = (
                reporter.id.clone(),
                reporter.generation,
                reporter.tx.clone(),
            );
            let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                watch(pid, out, err, exit_fd, pump, &log, reporter)
            }));
            if watched.is_err() {
                // A bug in the pump must not lose the child: still report its exit.
                let status = exit_status(pid); // blocks until the exit
                let _ = tx.send(Msg::Event(Event::Exited {
                    id,
                    generation,
                    status,
                    at: SystemTime::now(),
                }));
            }
        });
    if let Err(e) = thread {
        // No thread, no watcher: kill and reap here rather than leak a child.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid as i32), None);
        return Err(format!("cannot start a thread for the child: {e}"));
    }
    Ok(Spawned { pid, stdin })
}

fn command_line(spec: &ProcessSpec) -> String {
    let mut s = spec.command.clone();
    for a in &spec.args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Tune malloc for many mostly idle threads. One malloc arena for the whole process: exeio runs a thread per child, and
/// glibc would otherwise give each of many threads an arena of its own (RSS
/// that buys nothing here: the threads mostly sleep in poll).
pub fn lean_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // A fixed threshold: big buffers (log chunks, read buffers) are always
        // their own mappings, returned to the kernel when freed and resident
        // only where touched. The dynamic default would move them onto the
        // heap, where freed memory stays resident.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// TCP_NODELAY on the listening socket, inherited by every accepted one:
/// tiny_http writes a response's head and body separately, and Nagle plus
/// delayed ACKs would hold the body back ~40 ms on a kept-alive connection.
pub fn no_delay(listener: &std::net::TcpListener) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a valid int option value.
    unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Send `signal` to the process group `pgid`. A group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: i32) -> io::Result<()> {
    let sig = Signal::try_from(signal).map_err(io::Error::from)?;
    match killpg(Pid::from_raw(pgid as i32), sig) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reap an exited child (its thread has seen the exit). Kills what is left of
/// its process group first: nothing a stopped or exited process started
/// outlives it. Safe against pid reuse: the unreaped zombie still holds the
/// pid and the group id.
pub fn reap(pid: u32) {
    let _ = signal_group(pid, libc::SIGKILL);
    let _ = waitpid(Pid::from_raw(pid as i32), None);
}

/// Why input could not be written.
pub enum InputError {
    Full { free: usize },
    Closed,
    Io(io::Error),
}

/// Write `bytes` to a child's non-blocking stdin, all or nothing: never blocks.
pub fn write_input(stdin: &File, bytes: &[u8]) -> Result<(), InputError> {
    let fd = stdin.as_raw_fd();
    // SAFETY: plain fcntl/ioctl queries on an fd we own.
    let (cap, used) = unsafe {
        let cap = libc::fcntl(fd, libc::F_GETPIPE_SZ);
        let mut used: libc::c_int = 0;
        let r = libc::ioctl(fd, libc::FIONREAD, &mut used);
        (cap, if r == 0 { used } else { 0 })
    };
    if cap > 0 {
        let free = (cap - used).max(0) as usize;
        if bytes.len() > free {
            return Err(InputError::Full { free });
        }
    }
    let mut w = stdin;
    match w.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(InputError::Closed),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(InputError::Full { free: 0 }),
        Err(e) => Err(InputError::Io(e)),
    }
}

fn set_nonblocking(f: &impl AsRawFd) {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// What becomes readable when the child exits: a pidfd, or (kernels before
/// 5.3) a pipe written by a small waiter thread.
enum ExitFd {
    PidFd(OwnedFd),
    Pipe(OwnedFd),
}

impl ExitFd {
    fn open(pid: u32) -> ExitFd {
        // SAFETY: pidfd_open returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd >= 0 {
            // SAFETY: the kernel just gave us this fd.
            return ExitFd::PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) });
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

/// The child thread: pump output until the child exits and its pipes are
/// drained, then log the exit and report it.
fn watch(
    pid: u32,
    out: OwnedFd,
    err: OwnedFd,
    exit_fd: ExitFd,
    mut pump: Pump,
    log: &LogFile,
    rep: Reporter,
) {
    let mut pipes = [Some(File::from(out)), Some(File::from(err))];
    for p in pipes.iter().flatten() {
        set_nonblocking(p);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut grown = [false; 2];
    let mut exited_at: Option<Instant> = None;
    let mut last_data = Instant::now();
    let mut dirty = false;
    let mut log_health = LogHealth::default();
    let mut held_open = false;
    loop {
        if pipes.iter().all(Option::is_none) && exited_at.is_some() {
            break;
        }
        if let Some(t) = exited_at {
            let now = Instant::now();
            if now.duration_since(t) >= DRAIN_MAX || now.duration_since(last_data) >= DRAIN_IDLE {
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
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        let mut which: Vec<usize> = Vec::with_capacity(3);
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        if exited_at.is_none() {
            fds.push(PollFd::new(exit_fd.fd().as_fd(), PollFlags::POLLIN));
            which.push(2);
        }
        let ready = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => 0,
        };
        if ready == 0 {
            if dirty {
                pump.flush();
                dirty = false;
                log_health.check(log, &rep);
            }
            continue;
        }
        let revents: Vec<(usize, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(f, &i)| (i, f.revents().is_some_and(|r| !r.is_empty())))
            .collect();
        drop(fds);
        for (i, ready) in revents {
            if !ready {
                continue;
            }
            if i == 2 {
                exited_at = Some(Instant::now());
                last_data = Instant::now();
                continue;
            }
            let stream = if i == 0 {
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
                        grow_pipe(file);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => pipes[i] = None,
            }
        }
    }
    pump.finish();
    log_health.check(log, &rep);
    if held_open {
        log.system(
            "output pipes still held open by another process after the exit; stopped reading",
        );
    }
    let status = exit_status(pid);
    log.system(&status.describe());
    let _ = rep.tx.send(Msg::Event(Event::Exited {
        id: rep.id,
        generation: rep.generation,
        status,
        at: SystemTime::now(),
    }));
}

/// Tells exeio.log when a process's log stops taking writes, and when it
/// recovers (the error itself is also in the process's `/status`).
#[derive(Default)]
struct LogHealth {
    failing: bool,
}

impl LogHealth {
    fn check(&mut self, log: &LogFile, rep: &Reporter) {
        match (log.last_error(), self.failing) {
            (Some(err), false) => {
                self.failing = true;
                rep.logger.supervisor(format!(
                    "cannot write the log of '{}' ({}): {err}; output is held back and retried",
                    rep.id,
                    log.path().display()
                ));
            }
            (None, true) => {
                self.failing = false;
                rep.logger
                    .supervisor(format!("the log of '{}' is writable again", rep.id));
            }
            _ => {}
        }
    }
}

fn grow_pipe(f: &File) {
    // SAFETY: fcntl on an fd we own; failure (limits) is harmless.
    unsafe {
        libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, BIG_PIPE);
    }
}

/// The exit status of an exited, not yet reaped child (WNOWAIT: the
/// supervisor reaps it).
fn exit_status(pid: u32) -> ExitStatus {
    let id = Id::Pid(Pid::from_raw(pid as i32));
    match waitid(id, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
        Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => ExitStatus::Signal(sig as i32),
        _ => ExitStatus::Code(-1),
    }
}
