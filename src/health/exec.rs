//! `exec` probes: a command run like the process (its user, working dir and
//! environment; `child::spawn_probe`), in a process group of its own.
//!
//! The worker waits on the command's pidfd and its output pipes until it
//! exits or the timeout passes. Either way the whole group is SIGKILLed
//! (a daemon the command forked dies with it) and the command is reaped
//! before the check reports: no probe process or zombie outlives its check.
//! Its last stderr line goes into the message (`exit 1: <line>`).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Outcome, timed_out};
use crate::spec::ProcessSpec;
use crate::sys;

/// The tail of stderr kept, for its last line.
const STDERR_TAIL: usize = 4096;
/// The longest last-line shown in a message.
const MAX_LINE: usize = 200;
/// Without a pidfd (kernels before 5.3): how often the exit is looked for.
const POLL_EXIT: Duration = Duration::from_millis(20);

pub fn run(spec: &ProcessSpec, argv: &[String], timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let child = match crate::child::spawn_probe(spec, argv) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let pid = child.pid;
    let mut pipes = [
        Some(File::from(child.stdout)),
        Some(File::from(child.stderr)),
    ];
    for p in pipes.iter().flatten() {
        sys::set_nonblocking(p);
    }
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let status = loop {
        if let Some(status) = exited(pid) {
            break Some(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, p) in pipes.iter().enumerate() {
            if let Some(f) = p {
                fds.push(f.as_fd());
                which.push(i);
            }
        }
        let wait = match &child.pidfd {
            Some(fd) => {
                fds.push(fd.as_fd());
                left
            }
            None => left.min(POLL_EXIT),
        };
        let Ok(ready) = sys::wait_readable(&fds, Some(wait)) else {
            break None;
        };
        for (slot, &i) in which.iter().enumerate() {
            if ready[slot] {
                read_some(&mut pipes[i], &mut buf, (i == 1).then_some(&mut tail));
            }
        }
    };
    // The group goes, whatever its leader did; then the leader is reaped.
    let _ = crate::child::signal_group(pid, nix::libc::SIGKILL);
    read_some(&mut pipes[1], &mut buf, Some(&mut tail));
    reap(pid);
    match status {
        None => Outcome::failed(timed_out(Duration::from_secs(timeout.as_secs()))),
        Some(WaitStatus::Exited(_, 0)) => Outcome::ok("exit 0"),
        Some(WaitStatus::Exited(_, code)) => {
            Outcome::failed(with_line(format!("exit {code}"), &tail))
        }
        Some(WaitStatus::Signaled(_, sig, _)) => {
            Outcome::failed(with_line(format!("killed by signal {}", sig as i32), &tail))
        }
        Some(other) => Outcome::failed(format!("{other:?}")),
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

/// Read what a pipe has; keep stderr's tail.
fn read_some(pipe: &mut Option<File>, buf: &mut [u8], tail: Option<&mut Vec<u8>>) {
    let Some(f) = pipe else {
        return;
    };
    let mut tail = tail;
    loop {
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
