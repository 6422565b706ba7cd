//! The `deploy.build` step (SPEC 4c): a command run in the new release
//! before the switch, as the process would run (its user, environment),
//! in a process group of its own, within `build_timeout_seconds`.
//!
//! Run on the thread of the deploy (the request's connection thread, which
//! outlives the command, so PDEATHSIG holds): one `poll` on the command's
//! pidfd and both output pipes until it exits or its time is up. Either way
//! its whole group is SIGKILLed (nothing it started outlives the step) and
//! it is reaped before the step reports. Each output line goes to `line`
//! (the flow queues it for the process log's owner); the last stderr line
//! goes into the failure message.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::logs::Stream;
use crate::spec::ProcessSpec;
use crate::sys;

/// Without a pidfd (kernels before 5.3): how often the exit is looked for.
const POLL_EXIT: Duration = Duration::from_millis(20);
/// Longest output line passed on (longer ones are cut). Blank lines are left out.
const MAX_LINE: usize = 4096;

/// Why the build did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// It could not start (not found, bad directory, unknown user).
    Spawn(String),
    /// It exited non-zero or was killed: `exit 1: <last stderr line>`.
    Failed(String),
    /// Still running after the timeout: its group was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Spawn(e) => write!(f, "the build could not start: {e}"),
            BuildError::Failed(e) => write!(f, "the build failed ({e})"),
            BuildError::TimedOut(t) => write!(
                f,
                "the build timed out after {} s (its process group was killed)",
                t.as_secs()
            ),
        }
    }
}

impl std::error::Error for BuildError {}

/// Run `argv` as `spec` says (its `working_dir` is the new release), each
/// output line to `line`. Ok when it exits 0 within `timeout`.
pub fn run(
    spec: &ProcessSpec,
    argv: &[String],
    timeout: Duration,
    line: &mut dyn FnMut(Stream, &str),
) -> Result<(), BuildError> {
    let deadline = Instant::now() + timeout;
    let child =
        crate::child::spawn_probe(spec, argv).map_err(|e| BuildError::Spawn(e.to_string()))?;
    let mut pipes = [
        Some(Lines::new(File::from(child.stdout), Stream::Stdout)),
        Some(Lines::new(File::from(child.stderr), Stream::Stderr)),
    ];
    for p in pipes.iter().flatten() {
        sys::set_nonblocking(&p.file);
    }
    let pid = child.pid;
    let mut buf = vec![0u8; 16 * 1024];
    let status = loop {
        if let Some(s) = exited(pid) {
            break Some(s);
        }
        let now = Instant::now();
        if now >= deadline {
            break None;
        }
        let mut wait = deadline - now;
        let mut fds = Vec::new();
        if let Some(fd) = &child.pidfd {
            fds.push(fd.as_fd());
        } else {
            wait = wait.min(POLL_EXIT);
        }
        for p in pipes.iter().flatten() {
            fds.push(p.file.as_fd());
        }
        let _ = sys::wait_readable(&fds, Some(wait));
        drop(fds);
        for p in &mut pipes {
            read_some(p, &mut buf, line);
        }
    };
    // Whatever the command started dies with it, then its last words.
    let _ = crate::child::signal_group(pid, nix::libc::SIGKILL);
    for p in &mut pipes {
        read_some(p, &mut buf, line);
        if let Some(l) = p {
            l.finish(line);
        }
    }
    while let Err(nix::errno::Errno::EINTR) =
        nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None)
    {}
    let tail = pipes[1]
        .as_ref()
        .map(|l| l.last.clone())
        .unwrap_or_default();
    match status {
        None => Err(BuildError::TimedOut(timeout)),
        Some(WaitStatus::Exited(_, 0)) => Ok(()),
        Some(WaitStatus::Exited(_, code)) => {
            Err(BuildError::Failed(with_line(format!("exit {code}"), &tail)))
        }
        Some(WaitStatus::Signaled(_, sig, _)) => Err(BuildError::Failed(with_line(
            format!("killed by signal {}", sig as i32),
            &tail,
        ))),
        Some(other) => Err(BuildError::Failed(format!("{other:?}"))),
    }
}

/// Has `pid` exited? Looked at without reaping it (its group id stays
/// taken until the group is killed).
fn exited(pid: u32) -> Option<WaitStatus> {
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
        Ok(WaitStatus::StillAlive) | Err(_) => None,
        Ok(s) => Some(s),
    }
}

/// One output pipe, cut into lines.
struct Lines {
    file: File,
    stream: Stream,
    carry: Vec<u8>,
    /// The last whole non-empty line (for stderr's message).
    last: String,
}

impl Lines {
    fn new(file: File, stream: Stream) -> Lines {
        Lines {
            file,
            stream,
            carry: Vec::new(),
            last: String::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8], line: &mut dyn FnMut(Stream, &str)) {
        self.carry.extend_from_slice(bytes);
        while let Some(n) = self.carry.iter().position(|&b| b == b'\n') {
            let text: Vec<u8> = self.carry.drain(..=n).collect();
            self.emit(&text[..n], line);
        }
        if self.carry.len() > MAX_LINE {
            let text = std::mem::take(&mut self.carry);
            self.emit(&text, line);
        }
    }

    fn emit(&mut self, text: &[u8], line: &mut dyn FnMut(Stream, &str)) {
        let cut = &text[..text.len().min(MAX_LINE)];
        let s = String::from_utf8_lossy(cut);
        let s = s.trim_end_matches('\r');
        if !s.trim().is_empty() {
            self.last = s.to_owned();
            line(self.stream, s);
        }
    }

    fn finish(&mut self, line: &mut dyn FnMut(Stream, &str)) {
        let text = std::mem::take(&mut self.carry);
        if !text.is_empty() {
            self.emit(&text, line);
        }
    }
}

/// Read what a pipe has now (a few reads at most).
fn read_some(pipe: &mut Option<Lines>, buf: &mut [u8], line: &mut dyn FnMut(Stream, &str)) {
    let Some(p) = pipe else { return };
    for _ in 0..16 {
        match p.file.read(buf) {
            Ok(0) => {
                p.finish(line);
                *pipe = None;
                return;
            }
            Ok(n) => p.feed(&buf[..n], line),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// `exit 1: <last stderr line>`.
fn with_line(head: String, last: &str) -> String {
    match last.trim() {
        "" => head,
        l => format!("{head}: {}", l.chars().take(200).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_into_lines() {
        let (r, _w) = std::io::pipe().unwrap();
        let mut l = Lines::new(File::from(std::os::fd::OwnedFd::from(r)), Stream::Stderr);
        let mut got = Vec::new();
        let mut sink = |s: Stream, t: &str| got.push((s, t.to_owned()));
        l.feed(b"npm ci\r\nerr", &mut sink);
        l.feed(b"or: no\n\n", &mut sink);
        l.finish(&mut sink);
        assert_eq!(
            got,
            [
                (Stream::Stderr, "npm ci".into()),
                (Stream::Stderr, "error: no".into())
            ]
        );
        assert_eq!(l.last, "error: no");
        assert_eq!(with_line("exit 1".into(), &l.last), "exit 1: error: no");
        assert_eq!(with_line("exit 2".into(), " "), "exit 2");
    }
}
