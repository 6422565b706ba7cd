//! Live figures of a child from /proc: resident memory and CPU use. Read by
//! HTTP workers (never the supervisor) when they render a process object.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::{Answer, Snapshot};

/// Figures are re-read at most this often per pid: `GET /list` in a tight
/// loop must not cost three /proc reads per process per request.
const FRESH_FOR: Duration = Duration::from_millis(500);
const CACHE_MAX: usize = 4096;

type Figures = (Option<f64>, Option<u64>);

static CACHE: Mutex<Option<HashMap<u32, (Instant, Figures)>>> = Mutex::new(None);

/// Fill `cpu_percent` and `rss_bytes` of running processes.
pub fn fill(list: &mut [Snapshot]) {
    for s in list {
        if let Some(pid) = s.pid {
            (s.cpu_percent, s.rss_bytes) = figures(pid);
        }
    }
}

fn figures(pid: u32) -> Figures {
    let now = Instant::now();
    let cached = {
        let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        cache.as_ref().and_then(|c| c.get(&pid).copied())
    };
    if let Some((at, f)) = cached
        && now.duration_since(at) < FRESH_FOR
    {
        return f;
    }
    let f = (cpu_percent(pid), rss_bytes(pid));
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() >= CACHE_MAX {
        map.retain(|_, (at, _)| now.duration_since(*at) < FRESH_FOR);
    }
    map.insert(pid, (now, f));
    f
}

pub fn fill_answer(a: &mut Answer) {
    match a {
        Answer::Done {
            process: Some(p), ..
        }
        | Answer::Process(p) => fill(std::slice::from_mut(p)),
        Answer::Many { processes, .. } | Answer::List(processes) => fill(processes),
        _ => {}
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    if n > 0 { n as f64 } else { 100.0 }
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// Average CPU use over the process's life, in percent of one core.
pub fn cpu_percent(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let start: f64 = f.get(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let hz = ticks_per_second();
    let alive = uptime - start / hz;
    if alive <= 0.0 {
        return Some(0.0);
    }
    Some((((utime + stime) / hz) / alive * 1000.0).round() / 10.0)
}
