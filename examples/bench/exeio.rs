//! The exeio under test: finds (and builds) the release binary, starts it on
//! a free loopback port with its own temporary dirs, reads /proc for it, and
//! stops it on drop (SIGTERM, then SIGKILL after a grace period). Everything
//! the benchmark starts is owned by a value here, so a panic cleans up too.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::http::Conn;

pub const KEY: &str = "bench";

/// The release binary: `$EXEIO_BIN`, or `cargo build --release --bin exeio`
/// (a no-op when it is up to date) and `<target>/release/exeio`.
pub fn locate_binary(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("EXEIO_BIN").map(PathBuf::from)) {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{} is not a file", p.display()))
        };
    }
    let manifest = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // This example lives in <target>/<profile>/examples/bench.
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_owned()))
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| Path::new(manifest).join("target"));
    // What we ship: the fully static binary of the README. Fall back to the
    // ordinary release build where the static one cannot be made.
    eprintln!("bench: building the static release binary ({STATIC_TARGET}, +crt-static)");
    let built = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "exeio",
            "--target",
            STATIC_TARGET,
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(manifest)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let static_bin = target.join(STATIC_TARGET).join("release").join("exeio");
    if built.success() && static_bin.is_file() {
        return Ok(static_bin);
    }
    eprintln!("bench: static build failed; cargo build --release --bin exeio");
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "exeio"])
        .current_dir(manifest)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo build --release --bin exeio failed: {status}"
        ));
    }
    let bin = target.join("release").join("exeio");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "built, but {} is missing; set EXEIO_BIN",
            bin.display()
        ))
    }
}

const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var_os("EXEIO_BENCH_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("exeio-bench-{}-{tag}-{n}", std::process::id()));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

pub struct Exeio {
    child: Child,
    pub pid: i32,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// Config dir, stderr file and (unless given) the data dir.
    _dir: TempDir,
}

impl Exeio {
    /// Start exeio; `data_dir` None means a fresh one.
    pub fn start(bin: &Path, data_dir: Option<&Path>) -> Result<Exeio, String> {
        Exeio::start_with(bin, data_dir, &[])
    }

    /// `start` with more daemon flags (`--head-timeout 10`, ...).
    pub fn start_with(
        bin: &Path,
        data_dir: Option<&Path>,
        extra: &[&str],
    ) -> Result<Exeio, String> {
        let dir = TempDir::new("run")?;
        let data_dir = data_dir
            .map(Path::to_owned)
            .unwrap_or_else(|| dir.0.join("data"));
        let stderr_path = dir.0.join("stderr");
        let stderr = fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", "0", "--api-key", KEY])
            .arg("--config-dir")
            .arg(dir.0.join("config"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .env_remove("EXEIO_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        // If the benchmark dies without unwinding, exeio (and through its
        // own PDEATHSIG, its children) goes with it. The main thread spawns
        // it and outlives it.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id() as i32;
        let stdout = child.stdout.take().expect("piped");
        // A thread reads the listening line, then drains stdout until exit.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut me = Exeio {
            child,
            pid,
            addr: "127.0.0.1:1".parse().expect("literal"),
            data_dir,
            _dir: dir,
        };
        let first = rx.recv_timeout(Duration::from_secs(15));
        let line = match first {
            Ok(Some(Ok(line))) => line,
            _ => {
                std::thread::sleep(Duration::from_millis(100));
                let err = fs::read_to_string(&stderr_path).unwrap_or_default();
                return Err(format!("exeio did not start: {}", err.trim()));
            }
        };
        me.addr = line
            .strip_prefix("exeio listening on http://")
            .or_else(|| line.strip_prefix("exeio listening on https://"))
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| format!("unexpected first line from exeio: {line:?}"))?;
        Ok(me)
    }

    pub fn conn(&self) -> Conn {
        Conn::new(self.addr, KEY)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// VmRSS in KiB.
    pub fn rss_kib(&self) -> Result<u64, String> {
        status_field(self.pid, "VmRSS:")
    }

    /// VmHWM (peak RSS since start) in KiB.
    pub fn hwm_kib(&self) -> Result<u64, String> {
        status_field(self.pid, "VmHWM:")
    }

    pub fn threads(&self) -> Result<u64, String> {
        status_field(self.pid, "Threads:")
    }

    /// Open file descriptors.
    pub fn fds(&self) -> Result<u64, String> {
        fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count() as u64)
            .map_err(|e| format!("/proc/{}/fd: {e}", self.pid))
    }

    /// (threads, fds, RSS KiB) now.
    pub fn footprint(&self) -> Result<Footprint, String> {
        Ok(Footprint {
            threads: self.threads()?,
            fds: self.fds()?,
            rss_kib: self.rss_kib()?,
        })
    }

    /// Wait (at most `timeout`) until exeio's threads and fds are within
    /// `slack` of `base`; the footprint then (or at the deadline) and when.
    pub fn settle(
        &self,
        base: &Footprint,
        slack: u64,
        timeout: Duration,
    ) -> Result<(Footprint, Duration), String> {
        let t0 = Instant::now();
        loop {
            let now = self.footprint()?;
            if (now.threads <= base.threads + slack && now.fds <= base.fds + slack)
                || t0.elapsed() >= timeout
            {
                return Ok((now, t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sample RSS and threads every few ms on a thread of its own, until
    /// `Watch::finish`, to catch their peaks.
    pub fn watch(&self) -> Result<Watch, String> {
        let hwm = self.hwm_kib()?;
        let stop = Arc::new(AtomicBool::new(false));
        let pid = self.pid;
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut rss, mut threads) = (0u64, 0u64);
            while !flag.load(Ordering::Relaxed) {
                rss = rss.max(status_field(pid, "VmRSS:").unwrap_or(0));
                threads = threads.max(status_field(pid, "Threads:").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(2));
            }
            (rss, threads)
        });
        Ok(Watch {
            pid,
            hwm,
            stop,
            thread,
        })
    }

    /// CPU time of each thread (ns, from schedstat), utime+stime of the
    /// whole process (clock ticks, from stat) and context switches summed
    /// over the threads.
    pub fn cpu(&self) -> Result<CpuSample, String> {
        let mut sample = CpuSample::default();
        let tasks = fs::read_dir(format!("/proc/{}/task", self.pid)).map_err(|e| e.to_string())?;
        for task in tasks.flatten() {
            let p = task.path();
            let tid: i32 = task.file_name().to_string_lossy().parse().unwrap_or(0);
            if let Ok(s) = fs::read_to_string(p.join("schedstat")) {
                let ns = s.split_whitespace().next().and_then(|v| v.parse().ok());
                sample.threads.push((tid, ns.unwrap_or(0)));
            }
            if let Ok(s) = fs::read_to_string(p.join("status")) {
                let mut name = String::new();
                let mut switches = 0;
                for l in s.lines() {
                    if let Some(n) = l.strip_prefix("Name:") {
                        name = n.trim().to_owned();
                    }
                    if l.starts_with("voluntary_ctxt_switches:")
                        || l.starts_with("nonvoluntary_ctxt_switches:")
                    {
                        let n = l
                            .split_whitespace()
                            .nth(1)
                            .and_then(|v| v.parse::<u64>().ok());
                        switches += n.unwrap_or(0);
                    }
                }
                sample.switches += switches;
                sample.named.push((tid, name, switches));
            }
        }
        let stat =
            fs::read_to_string(format!("/proc/{}/stat", self.pid)).map_err(|e| e.to_string())?;
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        sample.ticks = tick(11) + tick(12);
        Ok(sample)
    }
}

/// What exeio holds at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Footprint {
    pub threads: u64,
    pub fds: u64,
    pub rss_kib: u64,
}

/// A running sampler of exeio's RSS and thread count (`Exeio::watch`).
pub struct Watch {
    pid: i32,
    hwm: u64,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl Watch {
    /// (peak RSS in KiB, peak threads). VmHWM catches a peak between
    /// samples when it rose past its value at the start.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let (rss, threads) = self.thread.join().unwrap_or((0, 0));
        let hwm = status_field(self.pid, "VmHWM:").unwrap_or(0);
        let rss = if hwm > self.hwm { rss.max(hwm) } else { rss };
        (rss, threads)
    }
}

#[derive(Default)]
pub struct CpuSample {
    /// (tid, ns on CPU)
    pub threads: Vec<(i32, u64)>,
    pub ticks: u64,
    pub switches: u64,
    /// (tid, thread name, context switches)
    pub named: Vec<(i32, String, u64)>,
}

impl CpuSample {
    /// (ns used since `earlier` by the threads alive now, threads that
    /// exited in between: their last slice is not counted).
    pub fn since(&self, earlier: &CpuSample) -> (u64, usize) {
        let before = |tid| earlier.threads.iter().find(|t| t.0 == tid).map(|t| t.1);
        let ns = self
            .threads
            .iter()
            .map(|&(tid, ns)| ns.saturating_sub(before(tid).unwrap_or(0)))
            .sum();
        let gone = earlier
            .threads
            .iter()
            .filter(|e| !self.threads.iter().any(|t| t.0 == e.0))
            .count();
        (ns, gone)
    }

    /// Context switches since `earlier` of the threads alive at both
    /// samples, summed by thread name, most first.
    pub fn switches_by_name(&self, earlier: &CpuSample) -> Vec<(String, u64)> {
        let mut by: Vec<(String, u64)> = Vec::new();
        for (tid, name, n) in &self.named {
            let Some(e) = earlier.named.iter().find(|e| e.0 == *tid) else {
                continue;
            };
            let d = n.saturating_sub(e.2);
            match by.iter_mut().find(|b| &b.0 == name) {
                Some(b) => b.1 += d,
                None => by.push((name.clone(), d)),
            }
        }
        by.sort_by_key(|b| std::cmp::Reverse(b.1));
        by
    }
}

pub(crate) fn status_field(pid: i32, name: &str) -> Result<u64, String> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
}

impl Drop for Exeio {
    fn drop(&mut self) {
        // Graceful first: exeio stops its children (sleep dies on TERM).
        let pid = Pid::from_raw(self.pid);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    eprintln!(
                        "bench: exeio (pid {}) ignored SIGTERM for 20 s; killing it",
                        self.pid
                    );
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        // `self._dir` is removed after this, once exeio is gone.
    }
}

/// Poll `f` every `every` until it yields `Some`, for at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(every);
    }
}
