//! `exec` probes: a command run like the process (its user, working dir and
//! environment; `child::spawn_probe`), in a process group of its own.
//!
//! A pool worker only starts the command (`start`) and hands it to the one
//! `Waiter` thread, which waits for every command in flight at once (their
//! pidfds and output pipes, in one poll) until each exits or its timeout
//! passes. So a probe that hangs holds no worker: a thousand of them cost
//! one thread, and each is counted at its own deadline. Either way the
//! whole group is SIGKILLed (a daemon the command forked dies with it) and
//! the command is reaped before the check reports: no probe process or
//! zombie outlives its check. Its last stderr line goes into the message
//! (`exit 1: <line>`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::handover::Handover;
use super::{Outcome, timed_out};
use crate::spec::ProcessSpec;
use crate::sys;

/// The tail of stderr kept, for its last line.
const STDERR_TAIL: usize = 4096;
/// The longest last-line shown in a message.
const MAX_LINE: usize = 200;
/// Without a pidfd (kernels before 5.3): how often exits are looked for.
const POLL_EXIT: Duration = Duration::from_millis(20);
/// Commands in flight at most (3 fds each); more wait in the hand-over
/// queue, and a full queue makes the workers wait.
const MAX_IN_FLIGHT: usize = 1024;
/// Reads of one pipe per turn: a command that floods its output cannot
/// keep the waiter from the others.
const READS_PER_TURN: usize = 16;

/// A started check command.
pub struct Running {
    pid: u32,
    pidfd: Option<OwnedFd>,
    pipes: [Option<File>; 2],
    tail: Vec<u8>,
    deadline: Instant,
    timeout: Duration,
    /// Told the outcome, once.
    pub report: Option<Box<dyn FnOnce(Outcome) + Send>>,
}

/// Start `argv` for `spec`'s check; the outcome at once if it cannot start.
pub fn start(spec: &ProcessSpec, argv: &[String], timeout: Duration) -> Result<Running, Outcome> {
    let deadline = Instant::now() + timeout;
    let child =
        crate::child::spawn_probe(spec, argv).map_err(|e| Outcome::failed(e.to_string()))?;
    let pipes = [
        Some(File::from(child.stdout)),
        Some(File::from(child.stderr)),
    ];
    for p in pipes.iter().flatten() {
        sys::set_nonblocking(p);
    }
    Ok(Running {
        pid: child.pid,
        pidfd: child.pidfd,
        pipes,
        tail: Vec::new(),
        deadline,
        timeout,
        report: None,
    })
}

impl Running {
    /// Exited (`status`) or out of time (`None`): kill the group, reap,
    /// report.
    fn finish(mut self, status: Option<WaitStatus>, buf: &mut [u8]) {
        let _ = crate::child::signal_group(self.pid, nix::libc::SIGKILL);
        read_some(&mut self.pipes[1], buf, Some(&mut self.tail));
        reap(self.pid);
        let outcome = match status {
            None => Outcome::failed(timed_out(Duration::from_secs(self.timeout.as_secs()))),
            Some(WaitStatus::Exited(_, 0)) => Outcome::ok("exit 0"),
            Some(WaitStatus::Exited(_, code)) => {
                Outcome::failed(with_line(format!("exit {code}"), &self.tail))
            }
            Some(WaitStatus::Signaled(_, sig, _)) => Outcome::failed(with_line(
                format!("killed by signal {}", sig as i32),
                &self.tail,
            )),
            Some(other) => Outcome::failed(format!("{other:?}")),
        };
        if let Some(report) = self.report.take() {
            report(outcome);
        }
    }
}

/// The thread that waits for every check command in flight.
pub struct Waiter(Handover<Running>);

impl Waiter {
    pub fn start() -> io::Result<Waiter> {
        Handover::start("probe-exec", wait_all).map(Waiter)
    }

    /// Hand a started command over (waits while the waiter is full).
    pub fn watch(&self, r: Running) {
        if let Err(e) = self.0.send(r) {
            e.finish(None, &mut [0u8; 512]);
        }
    }
}

fn wait_all(rx: &Receiver<Running>, bell: &OwnedFd) {
    let mut live: Vec<Running> = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut open = true;
    loop {
        while open && live.len() < MAX_IN_FLIGHT {
            match rx.try_recv() {
                Ok(r) => live.push(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && live.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut i = 0;
        while i < live.len() {
            let status = exited(live[i].pid);
            if status.is_some() || live[i].deadline <= now {
                live.swap_remove(i).finish(status, &mut buf);
            } else {
                i += 1;
            }
        }
        let mut fds = vec![bell.as_fd()];
        let mut slots = Vec::new();
        let mut poll_exits = false;
        for (i, r) in live.iter().enumerate() {
            for (k, p) in r.pipes.iter().enumerate() {
                if let Some(f) = p {
                    fds.push(f.as_fd());
                    slots.push((i, k));
                }
            }
            match &r.pidfd {
                Some(fd) => {
                    fds.push(fd.as_fd());
                    slots.push((i, 2));
                }
                None => poll_exits = true,
            }
        }
        let nearest = live.iter().map(|r| r.deadline).min();
        let mut wait = nearest.map(|d| d.saturating_duration_since(Instant::now()));
        if poll_exits {
            wait = Some(wait.map_or(POLL_EXIT, |w| w.min(POLL_EXIT)));
        }
        let ready = sys::wait_readable(&fds, wait).unwrap_or_default();
        drop(fds);
        if ready.first() == Some(&true) {
            sys::eventfd_clear(bell);
        }
        let hits: Vec<(usize, usize)> = slots
            .iter()
            .zip(ready.iter().skip(1))
            .filter(|(s, r)| **r && s.1 < 2)
            .map(|(s, _)| *s)
            .collect();
        for (i, k) in hits {
            let r = &mut live[i];
            read_some(&mut r.pipes[k], &mut buf, (k == 1).then_some(&mut r.tail));
        }
    }
}

/// Has `pid` exited? Looked at without reaping it (its group id stays
/// taken until the group is killed).
fn exited(pid: u32) -> Option<WaitStatus> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match nix::sys::wait::waitid(nix::sys::wait::Id::Pid(Pid::from_raw(pid as i32)), flags) {
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(s) => Some(s),
    }
}

/// Reap `pid` (after its group was killed).
fn reap(pid: u32) {
    while let Err(nix::errno::Errno::EINTR) = waitpid(Pid::from_raw(pid as i32), None) {}
}

/// Read what a pipe has (a few reads at most); keep stderr's tail.
fn read_some(pipe: &mut Option<File>, buf: &mut [u8], tail: Option<&mut Vec<u8>>) {
    let Some(f) = pipe else {
        return;
    };
    let mut tail = tail;
    for _ in 0..READS_PER_TURN {
        match f.read(buf) {
            Ok(0) => {
                *pipe = None;
                return;
            }
            Ok(n) => {
                if let Some(t) = tail.as_deref_mut() {
                    t.extend_from_slice(&buf[..n]);
                    if t.len() > STDERR_TAIL {
                        t.drain(..t.len() - STDERR_TAIL);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                *pipe = None;
                return;
            }
        }
    }
}

/// `exit 1: <last stderr line>`.
fn with_line(head: String, tail: &[u8]) -> String {
    let text = String::from_utf8_lossy(tail);
    match text.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => {
            let line: String = line.chars().take(MAX_LINE).collect();
            format!("{head}: {line}")
        }
        None => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stderr_line() {
        assert_eq!(
            with_line("exit 1".into(), b"a\nno server\n\n"),
            "exit 1: no server"
        );
        assert_eq!(with_line("exit 2".into(), b""), "exit 2");
    }
}
