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
        // The run's first line, before any output is read.
        self.log.drain_through_start();
        let mut output = Output {
            pipes: [Some(File::from(out)), Some(File::from(err))],
            buf: Vec::new(),
            grown: [false; 2],
            pump: None,
        };
        let mut stdin = Some(File::from(inp));
        for p in output.pipes.iter().flatten().chain(stdin.iter()) {
            sys::set_nonblocking(p);
        }
        let mut exited_at: Option<Instant> = None;
        let mut last_data = Instant::now();
        let mut dirty = false;
        let mut health = LogHealth::default();
        let mut held_open = false;
        loop {
            if output.pipes.iter().all(Option::is_none) && exited_at.is_some() {
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
                output.pipes[OUT]
                    .as_ref()
                    .map(|f| (f.as_fd(), PollFlags::POLLIN, OUT)),
                output.pipes[ERR]
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
                    output.flush();
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
                        // Queued lines go after the output the child wrote
                        // before they were queued: read the pipes dry (what
                        // they hold now, no more), write it, then the lines.
                        // Such output made its pipe readable in this same
                        // poll (the bell rang after it was written); a pipe
                        // that was not has nothing to read first.
                        let readable = |p: usize| revents.iter().any(|&(j, r)| j == p && r);
                        for i in [OUT, ERR].into_iter().filter(|&i| readable(i)) {
                            let mut budget = BIG_PIPE as usize;
                            while budget > 0 {
                                match output.read(i, &self.log, self.label) {
                                    Some(n) if n > 0 => budget = budget.saturating_sub(n),
                                    _ => break,
                                }
                            }
                        }
                        output.flush();
                        dirty = false;
                        self.log.drain();
                        self.log.retry();
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
                        if let Some(n) = output.read(i, &self.log, self.label)
                            && n > 0
                        {
                            dirty = true;
                            last_data = Instant::now();
                        }
                    }
                    _ => unreachable!("a slot of the poll set"),
                }
            }
        }
        drop(stdin);
        self.close_input();
        if let Some(pump) = &mut output.pump {
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

/// The child's stdout and stderr, and the pump that turns them into lines.
struct Output {
    pipes: [Option<File>; 2],
    /// The read buffer: allocated only once the child writes something.
    buf: Vec<u8>,
    grown: [bool; 2],
    /// Made on the first output: until its child writes, this thread
    /// keeps no buffers.
    pump: Option<Pump>,
}

impl Output {
    /// One read from pipe `i` into the log: the bytes read, `Some(0)` at
    /// its end (it is closed), `None` when it has nothing now.
    fn read(&mut self, i: usize, log: &Arc<LogFile>, label: Option<u64>) -> Option<usize> {
        let file = self.pipes[i].as_mut()?;
        if self.buf.is_empty() {
            self.buf = vec![0; READ_CHUNK];
        }
        match file.read(&mut self.buf) {
            Ok(0) => {
                self.pipes[i] = None;
                Some(0)
            }
            Ok(n) => {
                let stream = if i == OUT {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                };
                self.pump
                    .get_or_insert_with(|| Pump::new(log.clone(), label))
                    .feed(stream, &self.buf[..n]);
                if n == self.buf.len() && !self.grown[i] {
                    self.grown[i] = true;
                    sys::grow_pipe(file, BIG_PIPE);
                }
                Some(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(_) => {
                self.pipes[i] = None;
                Some(0)
            }
        }
    }

    /// Write the lines made so far.
    fn flush(&mut self) {
        if let Some(pump) = &mut self.pump {
            pump.flush();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogConfig;
    use crate::protocol::Event;
    use std::time::Duration;

    /// Each line of the log after its `[YYYY-MM-DD HH:MM:SS] ` stamp. A
    /// line still being written (no newline yet) is left out: the test
    /// reads while the thread writes.
    fn bodies(log: &LogFile) -> Vec<String> {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        whole.lines().map(|l| l[22..].to_owned()).collect()
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The owner rule of `logs`, on a child's thread fed through pipes the
    /// test holds: the run's first line comes before its output; a line
    /// queued during the run comes after the output written before it
    /// (here 400 KB still in the pipe, more than one read); the exit line
    /// comes after the last output byte.
    #[test]
    fn a_run_log_keeps_the_order_of_output_and_queued_lines() {
        let dir = std::env::temp_dir().join(format!("exeio-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let new_log = |name: &str| Arc::new(LogFile::new(dir.join(name), LogConfig::default()));
        let log = new_log("p.log");
        let (logger, _logger_thread) =
            Logger::start(new_log("exeio.log"), new_log("audit.log")).unwrap();
        let link = Arc::new(Link::new().unwrap());
        // A real child for the exit status (the thread waits with WNOWAIT).
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let (out_r, out_w) = std::io::pipe().unwrap();
        let (err_r, err_w) = std::io::pipe().unwrap();
        let (_in_r, in_w) = std::io::pipe().unwrap();
        let (exit_r, exit_w) = std::io::pipe().unwrap();
        let mut out_w = File::from(OwnedFd::from(out_w));
        sys::grow_pipe(&out_w, 1 << 20);
        let mut err_w = File::from(OwnedFd::from(err_w));

        // As `child::spawn` does: attach, then queue the first line.
        let bell = link.clone();
        log.attach(Arc::new(move || bell.ring()));
        logger.started(&log, "started run 1".into());
        let n = 50_000;
        let text: String = (0..n).map(|i| format!("o {i:05}\n")).collect();
        assert!(text.len() > 2 * READ_CHUNK);
        out_w.write_all(text.as_bytes()).unwrap();
        err_w.write_all(b"e 1\n").unwrap();
        logger.system(&log, "stopping".into());

        let (tx, rx) = crossbeam_channel::unbounded();
        let watcher = Watcher {
            pid: child.id(),
            log: log.clone(),
            link,
            label: None,
            id: ProcessId::parse("p").unwrap(),
            generation: 1,
            tx,
            logger,
        };
        let exit_fd = ExitFd::Pipe(OwnedFd::from(exit_r));
        let thread = std::thread::spawn(move || {
            watcher.run(out_r.into(), err_r.into(), in_w.into(), exit_fd)
        });
        wait_for("the queued line", || {
            bodies(&log).contains(&"SYSTEM: stopping".to_owned())
        });
        out_w.write_all(b"after\nlast, no newline").unwrap();
        drop((out_w, err_w, exit_w)); // the exit, as the thread sees it
        let got = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(matches!(got, Msg::Event(Event::Exited { .. })));
        thread.join().unwrap();
        child.wait().unwrap(); // the thread only looked (WNOWAIT)

        let lines = bodies(&log);
        let pos = |l: &str| {
            lines
                .iter()
                .position(|x| x == l)
                .unwrap_or_else(|| panic!("{l:?} in {lines:?}"))
        };
        assert_eq!(lines[0], "SYSTEM: started run 1");
        let stop = pos("SYSTEM: stopping");
        let outs: Vec<&String> = lines[1..stop]
            .iter()
            .filter(|l| l.starts_with("STDOUT: o "))
            .collect();
        assert_eq!(
            outs.len(),
            n,
            "all the output written before the line precedes it"
        );
        assert!(pos("STDERR: e 1") < stop);
        assert_eq!(
            lines[stop + 1..stop + 3],
            ["STDOUT: after", "STDOUT: last, no newline"]
        );
        assert_eq!(lines[stop + 3], "SYSTEM: exited with code 3");
        assert_eq!(lines.len(), stop + 4);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
