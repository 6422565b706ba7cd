//! CPU and memory of supervised processes, read from /proc (or from the
//! process's cgroup, which counts everything it started) and cached with a
//! bounded age: a figure is at most `MAX_AGE` old, and however many clients
//! ask, each process costs at most one read per `MAX_AGE`. Nothing is read
//! for a process nobody asks about.
//!
//! The supervisor creates one `Usage` per process and tells it which pid
//! runs; HTTP threads read it when they render a process or `/metrics`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::child::cgroup;
use crate::sys;

/// Oldest figure served.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Figures of one supervised process.
pub struct Usage {
    /// Its cgroup, when it has one.
    cgroup: Option<PathBuf>,
    /// The pid running now (0: none).
    pid: AtomicU32,
    /// CPU of runs that ended (process-group mode only), in microseconds.
    done_cpu_us: AtomicU64,
    /// Served figures: when sampled (µs since `epoch()`), CPU µs, RSS, and
    /// percent × 100 over the last sampling interval.
    at_us: AtomicU64,
    cpu_us: AtomicU64,
    rss: AtomicU64,
    pct: AtomicU64,
    /// Held by the one reader that refreshes.
    refreshing: Mutex<()>,
}

/// Shown as its name only: the figures change under the reader (`View`'s
/// `Debug` prints it).
impl std::fmt::Debug for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Usage")
    }
}

/// Figures as served.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figures {
    pub cpu_seconds: f64,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn micros_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_micros() as u64 + 1
}

impl Usage {
    pub fn new(cgroup: Option<PathBuf>) -> Usage {
        Usage {
            cgroup,
            pid: AtomicU32::new(0),
            done_cpu_us: AtomicU64::new(0),
            at_us: AtomicU64::new(0),
            cpu_us: AtomicU64::new(0),
            rss: AtomicU64::new(0),
            pct: AtomicU64::new(0),
            refreshing: Mutex::new(()),
        }
    }

    /// A run started (supervisor).
    pub fn started(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
        self.at_us.store(0, Ordering::Relaxed);
    }

    /// A run ended, having used `cpu` (supervisor, from the reaped status).
    pub fn ended(&self, cpu: Duration) {
        self.pid.store(0, Ordering::Relaxed);
        if self.cgroup.is_none() {
            self.done_cpu_us
                .fetch_add(cpu.as_micros() as u64, Ordering::Relaxed);
        }
        self.rss.store(0, Ordering::Relaxed);
        self.pct.store(0, Ordering::Relaxed);
    }

    /// Current figures, refreshed if older than `MAX_AGE`.
    pub fn read(&self, now: Instant) -> Figures {
        let at = self.at_us.load(Ordering::Relaxed);
        let now_us = micros_since_epoch(now);
        if (at == 0 || now_us.saturating_sub(at) >= MAX_AGE.as_micros() as u64)
            && let Ok(_one) = self.refreshing.try_lock()
        {
            self.refresh(now_us, at);
        }
        let cpu = self
            .cpu_us
            .load(Ordering::Relaxed)
            .max(self.done_cpu_us.load(Ordering::Relaxed));
        Figures {
            cpu_seconds: cpu as f64 / 1e6,
            cpu_percent: self.pct.load(Ordering::Relaxed) as f64 / 100.0,
            rss_bytes: self.rss.load(Ordering::Relaxed),
        }
    }

    fn refresh(&self, now_us: u64, then_us: u64) {
        let pid = self.pid.load(Ordering::Relaxed);
        let done = self.done_cpu_us.load(Ordering::Relaxed);
        let (cpu, rss) = match &self.cgroup {
            Some(dir) => {
                let cpu = cgroup::cpu_usage(dir).map_or(0, |d| d.as_micros() as u64);
                let rss = if pid == 0 {
                    0
                } else {
                    cgroup::pids_in(dir)
                        .iter()
                        .take(256)
                        .filter_map(|&p| rss_bytes(p))
                        .sum()
                };
                (cpu, rss)
            }
            None if pid == 0 => (done, 0),
            None => (
                done + cpu_time(pid).map_or(0, |d| d.as_micros() as u64),
                rss_bytes(pid).unwrap_or(0),
            ),
        };
        let before = self.cpu_us.swap(cpu, Ordering::Relaxed);
        if then_us > 0 && now_us > then_us && pid != 0 {
            let pct = cpu.saturating_sub(before) as f64 / (now_us - then_us) as f64 * 100.0;
            self.pct
                .store((pct * 100.0).round() as u64, Ordering::Relaxed);
        }
        self.rss.store(rss, Ordering::Relaxed);
        self.at_us.store(now_us, Ordering::Relaxed);
    }
}

pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * sys::page_size())
}

/// Most processes of one tree summed by `tree_rss`.
const MAX_TREE: usize = 256;

/// The summed RSS of `pid` and its descendants (at most `MAX_TREE`
/// processes), through each thread's `children` list: a few small reads
/// per process of the tree. For `max_memory_bytes` without a cgroup.
pub fn tree_rss(pid: u32) -> u64 {
    let mut todo = vec![pid];
    let (mut seen, mut sum) = (0, 0);
    while let Some(p) = todo.pop() {
        if seen >= MAX_TREE {
            break;
        }
        seen += 1;
        sum += rss_bytes(p).unwrap_or(0);
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(list) = std::fs::read_to_string(t.path().join("children")) {
                todo.extend(
                    list.split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    sum
}

/// CPU time (user + system) of a process and of the children it waited for.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = stat_fields(&stat)?;
    let ticks: f64 = [11, 12, 13, 14]
        .iter()
        .map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0))
        .sum();
    Some(Duration::from_secs_f64(
        ticks / sys::clock_ticks_per_second(),
    ))
}

/// The fields of /proc/PID/stat after the command name (which may hold
/// spaces and parentheses).
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(
        stat.get(stat.rfind(')')? + 2..)?
            .split_whitespace()
            .collect(),
    )
}

/// exeio's own figures for `/metrics` (`process_*`).
pub struct OwnFigures {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
    pub threads: u64,
}

pub fn own() -> OwnFigures {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f = stat_fields(&stat).unwrap_or_default();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = sys::clock_ticks_per_second();
    let boot = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    OwnFigures {
        cpu_seconds: (num(11) + num(12)) / hz,
        rss_bytes: rss_bytes(std::process::id()).unwrap_or(0),
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds: sys::fd_limit().unwrap_or(0),
        start_time_seconds: boot + num(19) / hz,
        threads: num(17) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "42 (a) b) (c) S 1 42 42 0 -1 0 0 0 0 0 7 3 2 1 20 0 1 0 555 0 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!(f[0], "S");
        assert_eq!((f[11], f[12], f[13], f[14]), ("7", "3", "2", "1"));
    }

    #[test]
    fn figures_are_cached_and_counted_for_this_process() {
        let u = Usage::new(None);
        u.started(std::process::id());
        let t0 = Instant::now();
        let a = u.read(t0);
        assert!(a.rss_bytes > 0);
        // within MAX_AGE nothing is read again
        u.rss.store(1, Ordering::Relaxed);
        assert_eq!(u.read(t0 + Duration::from_millis(10)).rss_bytes, 1);
        assert!(u.read(t0 + MAX_AGE * 2).rss_bytes > 1);
        u.ended(Duration::from_secs(3));
        assert!(u.read(t0 + MAX_AGE * 4).cpu_seconds >= 3.0);
    }

    #[test]
    fn a_tree_counts_its_descendants() {
        use std::os::unix::process::CommandExt;
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = sh.id();
        let kids = || {
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .count()
        };
        let end = Instant::now() + Duration::from_secs(10);
        while kids() < 2 && Instant::now() < end {
            std::thread::yield_now();
        }
        let (alone, tree) = (rss_bytes(pid).unwrap(), tree_rss(pid));
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = sh.kill();
        let _ = sh.wait();
        assert!(tree > alone, "sh {alone} B, its tree {tree} B");
    }
}
