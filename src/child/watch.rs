//! A child's thread: it pumps the child's output into its log, feeds its
//! stdin, writes the SYSTEM lines queued for the log, and reports the exit
//! once the pipes are drained (see `child` for the whole picture).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use super::Link;
use crate::logger::Logger;
use crate::logs::{LogFile, Op, Pump, Stream};
use crate::policy::ExitStatus;
use crate::protocol::{Event, Msg};
use crate::spec::ProcessId;
use crate::sys;

/// Read size. Allocated only once a child writes something.
const READ_CHUNK: usize = 128 * 1024;
/// A pipe that fills a whole read is grown to this, for floods.
const BIG_PIPE: i32 = 1024 * 1024;
/// After the child exits: stop waiting for pipe EOF after this long without data...
const DRAIN_IDLE: Duration = Duration::from_millis(250);
/// ...or this long in all (a grandchild may flood the inherited pipe).
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// What becomes readable when the child exits: a pidfd, or (kernels before
/// 5.3) a pipe closed by a small waiter thread.
pub(super) enum ExitFd {
    PidFd(OwnedFd),
    Pipe(OwnedFd),
}

impl ExitFd {
    pub(super) fn open(pid: u32) -> ExitFd {
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
pub(super) struct Watcher {
    pub(super) pid: u32,
    pub(super) log: Arc<LogFile>,
    pub(super) link: Arc<Link>,
    pub(super) label: Option<u64>,
    pub(super) id: ProcessId,
    pub(super) generation: u64,
    pub(super) tx: Sender<Msg>,
    pub(super) logger: Logger,
}

/// Slots of the poll set.
const OUT: usize = 0;
const ERR: usize = 1;
const EXIT: usize = 2;
const BELL: usize = 3;
const IN: usize = 4;

impl Watcher {
    pub(super) fn run(self, out: OwnedFd, err: OwnedFd, inp: OwnedFd, exit_fd: ExitFd) {
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
        // Made on the first output, with the read buffer: until its child
        // writes (or a line is logged), this thread does not touch the heap,
        // so it has no malloc cache.
        let mut pump: Option<Pump> = None;
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
                // Polled even with nothing to write: POLLERR says the child
                // closed its stdin, so input is refused (409) from then on.
                stdin.as_ref().map(|f| {
                    let events = if want_out {
                        PollFlags::POLLOUT
                    } else {
                        PollFlags::empty()
                    };
                    (f.as_fd(), events, IN)
                }),
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
                    if let Some(pump) = &mut pump {
                        pump.flush();
                    }
                    dirty = false;
                    health.check(&self.log, &self.logger, &self.id);
                }
                continue;
            }
            let mut revents = [(BELL, false); 5];
            let mut stdin_gone = false;
            for (r, (f, &i)) in revents.iter_mut().zip(fds[..n].iter().zip(&which)) {
                *r = (i, f.revents().is_some_and(|r| !r.is_empty()));
                stdin_gone |= i == IN
                    && f.revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP));
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
                        if let Some(pump) = &mut pump {
                            pump.flush();
                        }
                        dirty = false;
                        self.log.drain();
                    }
                    IN if stdin_gone => {
                        self.close_input();
                        stdin = None;
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
                                pump.get_or_insert_with(|| {
                                    // The lines queued before this run's
                                    // output (its "started run" line, which
                                    // the logger thread has usually written
                                    // by now) go first.
                                    self.log.drain();
                                    Pump::new(self.log.clone(), self.label)
                                })
                                .feed(stream, &buf[..n]);
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
        if let Some(pump) = &mut pump {
            pump.finish();
        }
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
