//! `/proc` inspection (process state, parent, group), signals to pids the tests started,
//! file modes and the time formats the tests check.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The `pid` of a process object (panics if it is not a number).
pub fn pid_of(p: &Value) -> i32 {
    p["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {p}")) as i32
}

/// Sends `sig` to a pid this test started (directly or through exeio).
pub fn send_signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill {pid}: {e}"));
}

/// The fields of `/proc/PID/stat` the tests look at.
#[derive(Clone, Copy, Debug)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
    let after = &text[text.rfind(')')? + 1..];
    let mut f = after.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// True if the pid exists and is not a zombie (or dead).
pub fn pid_alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

pub fn all_procs() -> Vec<ProcStat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .collect()
}

/// Live (non-zombie) children of `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    all_procs()
        .into_iter()
        .filter(|s| s.ppid == pid && s.state != 'Z' && s.state != 'X')
        .map(|s| s.pid)
        .collect()
}

/// Zombie children of `pid` (exited, not reaped).
pub fn zombie_children_of(pid: i32) -> usize {
    all_procs()
        .into_iter()
        .filter(|s| s.ppid == pid && s.state == 'Z')
        .count()
}

/// Live members of process group `pgrp`.
pub fn group_members(pgrp: i32) -> Vec<i32> {
    all_procs()
        .into_iter()
        .filter(|s| s.pgrp == pgrp && s.state != 'Z' && s.state != 'X')
        .map(|s| s.pid)
        .collect()
}

/// File mode bits (`& 0o7777`).
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// True if `line` starts with `[YYYY-MM-DD HH:MM:SS] `.
pub fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() < 22 || b[0] != b'[' || b[20] != b']' || b[21] != b' ' {
        return false;
    }
    let pattern = b"dddd-dd-dd dd:dd:dd";
    pattern.iter().zip(&b[1..20]).all(|(p, c)| {
        if *p == b'd' {
            c.is_ascii_digit()
        } else {
            p == c
        }
    })
}

/// True if `s` looks like an RFC 3339 UTC time (`2026-01-02T03:04:05Z`, fractions allowed).
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let pattern = b"dddd-dd-ddTdd:dd:dd";
    let head_ok = pattern.iter().zip(&b[..19]).all(|(p, c)| {
        if *p == b'd' {
            c.is_ascii_digit()
        } else {
            p == c
        }
    });
    head_ok && (s.ends_with('Z') || s.ends_with("+00:00"))
}

/// Thread count, open fds and resident memory of a pid, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub threads: usize,
    pub fds: usize,
    pub rss_kib: u64,
}

pub fn usage(pid: i32) -> Usage {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    Usage {
        threads: field("Threads:") as usize,
        fds,
        rss_kib: field("VmRSS:"),
    }
}

/// Thread names of `pid` with their counts, for failure messages.
pub fn thread_names(pid: i32) -> String {
    let mut names: std::collections::BTreeMap<String, usize> = Default::default();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            *names.entry(comm.trim().to_string()).or_default() += 1;
        }
    }
    format!("{names:?}")
}

/// Polls until the usage of `pid` is within the slack of `base`; returns the last
/// reading and whether it got there before `timeout`.
pub fn settle(
    pid: i32,
    base: Usage,
    slack: (usize, usize, u64),
    timeout: Duration,
) -> (bool, Usage) {
    let mut last = usage(pid);
    let ok = super::wait_until(timeout, || {
        last = usage(pid);
        last.threads <= base.threads.saturating_add(slack.0)
            && last.fds <= base.fds.saturating_add(slack.1)
            && last.rss_kib <= base.rss_kib.saturating_add(slack.2)
    });
    (ok, last)
}

/// Usage of `pid` once it has not changed for `quiet` (idle pool threads of the
/// HTTP server retire after a few seconds).
pub fn quiet_usage(pid: i32, quiet: Duration) -> Usage {
    let mut last = usage(pid);
    let mut since = Instant::now();
    super::wait_until(Duration::from_secs(40), || {
        let now = usage(pid);
        if (now.threads, now.fds) != (last.threads, last.fds) {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= quiet
    });
    last
}

/// Signals pids this test started (through exeio) on drop, if still alive: a
/// failed assertion must not leave a `sleep 1000` behind.
#[derive(Default)]
pub struct Leftovers(pub Vec<i32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Every path under `root` (relative, recursive, symlinks not followed).
pub fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Paths in `after` that are not in `before`.
pub fn new_paths(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    after.difference(before).cloned().collect()
}

/// The real uid of a process.
pub fn uid_of(pid: i32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
