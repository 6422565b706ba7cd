//! One cgroup (v2) per supervised process, when exeio may create them (it
//! runs as root, or in a delegated subtree such as systemd's
//! `Delegate=yes`): `<exeio's cgroup>/exeio-<tag>/p-<id>`, where the tag
//! stands for the config dir, so a later exeio with the same config finds
//! what an earlier one left.
//!
//! A child starts in its cgroup (clone3 with `CLONE_INTO_CGROUP`, or on
//! older kernels it writes to the `cgroup.procs` fd prepared here before it
//! execs), so everything it ever starts is in it, `setsid` daemons included. A stop or an exit then ends the whole cgroup
//! with `cgroup.kill`, and at start exeio sweeps the groups a SIGKILLed
//! predecessor left. Without cgroups exeio falls back to process groups.
//!
//! Called by the supervisor thread (prepare, kill, remove), the daemon at
//! start (detect, sweep, remove_empty_siblings) and the stats sampler (usage).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::spec::ProcessId;

pub struct Cgroups {
    base: PathBuf,
    /// Groups made by this exeio and never killed since. Linux 6.x (its
    /// `kill_seq`) SIGKILLs a child cloned into a group that `cgroup.kill`
    /// was ever written to, so only these take clone3's `CLONE_INTO_CGROUP`;
    /// a killed one is made anew when it is empty, else its child joins
    /// through `cgroup.procs`.
    clean: Mutex<HashSet<ProcessId>>,
}

/// Where a child is to start: its cgroup's directory, when it may be cloned
/// right into it, and its `cgroup.procs`, to join otherwise.
pub struct Target {
    pub dir: Option<File>,
    pub procs: File,
}

impl Cgroups {
    /// Find the cgroup2 mount and exeio's own cgroup, and create (or find)
    /// the base group for `config_dir`. `Err`: why cgroups cannot be used.
    pub fn detect(config_dir: &Path) -> Result<Cgroups, String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let (root, mount) = cgroup2_mount(&mountinfo).ok_or("no cgroup2 file system is mounted")?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let own = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("exeio is in no cgroup2 group")?;
        let relative = own
            .strip_prefix(root.trim_end_matches('/'))
            .unwrap_or(own)
            .trim_start_matches('/');
        let tag = fnv1a(config_dir.as_os_str().as_encoded_bytes());
        let base = mount.join(relative).join(format!("exeio-{tag:016x}"));
        // Another exeio starting now may remove the new, empty base at once
        // (`remove_empty_siblings`): then make it again.
        for _ in 0..3 {
            match fs::create_dir(&base) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", base.display())),
            }
            if base.join("cgroup.kill").exists() {
                return Ok(Cgroups {
                    base,
                    clean: Mutex::new(HashSet::new()),
                });
            }
            if base.is_dir() {
                let _ = fs::remove_dir(&base);
                return Err("cgroup.kill is missing (it needs Linux 5.14 or later)".into());
            }
        }
        Err(format!(
            "cannot keep {}: it keeps vanishing",
            base.display()
        ))
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    fn dir(&self, id: &ProcessId) -> PathBuf {
        self.base.join(format!("p-{id}"))
    }

    /// Kill and remove the groups an earlier exeio left (it was SIGKILLed:
    /// its children's children survived it). One line per group.
    pub fn sweep(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.base) else {
            return Vec::new();
        };
        let mut report = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix("p-") else {
                continue;
            };
            let dir = e.path();
            let pids = pids_in(&dir);
            if !pids.is_empty() {
                let _ = kill_dir(&dir);
                wait_empty(&dir, Duration::from_secs(5));
                report.push(format!(
                    "killed {} process(es) of '{id}' left by an earlier exeio: pids {pids:?}",
                    pids.len()
                ));
            }
            let _ = fs::remove_dir(&dir);
        }
        report
    }

    /// Remove the empty `exeio-<tag>` groups beside this exeio's base: the
    /// bases of SIGKILLed exeio instances with other config dirs. rmdir
    /// refuses a group that holds a process or a child group, so the base
    /// of a live exeio with processes is never touched; that of a live
    /// exeio with none may go, and its `prepare` makes it again. How many
    /// went.
    pub fn remove_empty_siblings(&self) -> usize {
        let Some(Ok(entries)) = self.base.parent().map(fs::read_dir) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|e| is_base_name(&e.file_name().to_string_lossy()))
            .filter(|e| e.path() != self.base)
            .filter(|e| fs::remove_dir(e.path()).is_ok())
            .count()
    }

    /// Create the group at `dir`, and the base again if another exeio
    /// removed it while it was empty (see `remove_empty_siblings`).
    fn create_group(&self, dir: &Path) -> io::Result<()> {
        let mut tries = 0;
        loop {
            match fs::create_dir(dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => {
                    tries += 1;
                    fs::create_dir_all(&self.base)?;
                }
                other => return other,
            }
        }
    }

    /// The group of `id`, created if needed and emptied of anything left
    /// in it: its directory (when a child may be cloned into it) and its
    /// `cgroup.procs`.
    pub fn prepare(&self, id: &ProcessId) -> io::Result<Target> {
        let dir = self.dir(id);
        let mut clean = self.clean.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = match self.create_group(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                clean.contains(id) || {
                    if !pids_in(&dir).is_empty() {
                        kill_dir(&dir)?;
                    }
                    // Made anew if it is empty already (it usually is: the
                    // last run and what it left were killed and reaped).
                    fs::remove_dir(&dir).is_ok() && self.create_group(&dir).is_ok()
                }
            }
            Err(e) => return Err(e),
        };
        if fresh {
            clean.insert(id.clone());
        }
        Ok(Target {
            dir: if fresh { Some(File::open(&dir)?) } else { None },
            procs: OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?,
        })
    }

    /// SIGKILL everything in the group of `id`, if anything is in it.
    pub fn kill(&self, id: &ProcessId) -> io::Result<()> {
        let dir = self.dir(id);
        match fs::read_to_string(dir.join("cgroup.events")) {
            Ok(events) if !events.contains("populated 1") => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            _ => {}
        }
        self.clean
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        match kill_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Remove the group of `id` if it is empty; one still emptying (its
    /// processes were just killed) stays for `close` or the next sweep.
    /// Never waits.
    pub fn remove(&self, id: &ProcessId) {
        self.clean
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        let _ = fs::remove_dir(self.dir(id));
    }

    /// At shutdown, when every child has exited: remove every group.
    pub fn close(&self) {
        for line in self.sweep() {
            crate::diag::warn(&line);
        }
        let _ = fs::remove_dir(&self.base);
    }

    pub fn stats_dir(&self, id: &ProcessId) -> PathBuf {
        self.dir(id)
    }
}

/// The CPU time used by everything that ever ran in the group at `dir`.
pub fn cpu_usage(dir: &Path) -> Option<Duration> {
    let stat = fs::read_to_string(dir.join("cpu.stat")).ok()?;
    let usec: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("usage_usec "))?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_micros(usec))
}

/// The memory the group at `dir` uses (`memory.current`), if the memory
/// controller is on for it.
pub fn memory_current(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many processes of the group at `dir` the kernel's OOM killer
/// killed, ever (`memory.events`' `oom_kill`).
pub fn oom_kills(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("memory.events"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))?
        .trim()
        .parse()
        .ok()
}

/// The pids in the group at `dir`.
pub fn pids_in(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn kill_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))?
        .write_all(b"1")
}

/// Wait (bounded) until the group at `dir` has no process left.
fn wait_empty(dir: &Path, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let events = fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        if !events.contains("populated 1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (root of the mount, mount point) of the first cgroup2 file system.
fn cgroup2_mount(mountinfo: &str) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let f: Vec<&str> = left.split(' ').collect();
        Some((unescape(f.get(3)?), PathBuf::from(unescape(f.get(4)?))))
    })
}

/// mountinfo escapes spaces and such as `\040`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `exeio-` and 16 lowercase hex digits: the name of a base group.
fn is_base_name(name: &str) -> bool {
    name.strip_prefix("exeio-")
        .is_some_and(|t| t.len() == 16 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_a_hybrid_layout() {
        let info = "25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
            26 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
            35 25 0:31 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(("/".into(), PathBuf::from("/sys/fs/cgroup/unified")))
        );
        let escaped = "35 25 0:31 /a\\040b /mnt/c\\040g rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(escaped),
            Some(("/a b".into(), PathBuf::from("/mnt/c g")))
        );
        assert_eq!(cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }

    #[test]
    fn base_names() {
        let own = format!("exeio-{:016x}", fnv1a(b"/etc/exeio"));
        assert!(is_base_name(&own));
        for other in [
            "exeio-",
            "exeio-0123",
            "exeio-0123456789ABCDEF",
            "exeio-0123456789abcdeg",
            "exeio-0123456789abcdef0",
            "p-web",
            "system.slice",
            "myexeio-0123456789abcdef",
        ] {
            assert!(!is_base_name(other), "{other}");
        }
    }

    #[test]
    fn tags_differ_per_config_dir() {
        assert_ne!(fnv1a(b"/etc/exeio"), fnv1a(b"/tmp/exeio"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
