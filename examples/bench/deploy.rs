//! Deploys from the command-line client (SPEC 4c; `--only deploy`; the
//! server side alone, upload speed and rollback time, is `deploy-server`):
//! - a 100 MiB directory of incompressible files deployed with `exeio
//!   deploy DIR`: MB/s end to end (two packing passes, the upload, the
//!   extraction, the restart and the health gate), the client's peak RSS
//!   (it streams: a few chunks in memory whatever the size) and exeio's RSS
//!   growth meanwhile (VmRSS sampled every 5 ms);
//! - an unchanged deploy of a 10 MB release (the same directory again),
//!   end to end: from the client's spawn to its exit, the median of 3
//!   (each started just past a whole second: a release name holds the
//!   second, and exeio refuses a second release of the same sha256 and
//!   second, "already exists").
//!
//! The service is `sh run.sh` (prints `ready`, then sleeps) with a `log`
//! probe on `ready`, so the gate passes as soon as the line is written: no
//! probe period is timed.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::exeio::{Exeio, KEY, TempDir, status_field};
use crate::{Metric, Target, Unit, metric, quantile};

const BIG_MIB: usize = 100;
const SMALL_MB: usize = 10;
const UNCHANGED: usize = 3;

pub fn deploy(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let spec = json!({"id": "app", "command": "sh", "args": ["{release}/run.sh"],
                      "health": {"log": "^ready$"},
                      "deploy": {"healthy_timeout_seconds": 60, "keep": 2}});
    ex.conn().ok("POST", "/add", Some(&spec.to_string()))?;
    let dir = TempDir::new("deploy")?;
    let big = dir.0.join("big");
    release(&big, BIG_MIB, 1 << 20)?;
    let rss0 = ex.rss_kib()?;
    let (secs, cli_hwm, peak) = sampled(ex.pid, || client(bin, &ex, &big))?;
    let mut out = vec![
        metric(
            "exeio deploy DIR, 100 MiB incompressible, end to end (MB/s)",
            (BIG_MIB << 20) as f64 / 1e6 / secs,
            Unit::PerSec,
            Target::None,
        ),
        metric(
            "  the client's peak RSS",
            cli_hwm as f64 / 1024.0,
            Unit::MiB,
            Target::None,
        ),
        metric(
            "  exeio's RSS growth during it",
            peak.saturating_sub(rss0) as f64 / 1024.0,
            Unit::MiB,
            Target::AtMost(8.0),
        ),
    ];
    let small = dir.0.join("small");
    release(&small, SMALL_MB, 1_000_000)?;
    next_second();
    client(bin, &ex, &small)?; // the first time: a new release
    let mut times = Vec::new();
    for _ in 0..UNCHANGED {
        next_second(); // a release name has the second: two in one second collide
        let (secs, _) = client(bin, &ex, &small)?;
        times.push(secs * 1000.0);
    }
    out.push(metric(
        "unchanged 10 MB release, exeio deploy end to end",
        quantile(&times, 0.5),
        Unit::Ms,
        Target::None,
    ));
    Ok(out)
}

/// Sleep to just past the next whole second of the wall clock (not timed).
fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    thread::sleep(
        Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos()))
            + Duration::from_millis(5),
    );
}

/// `files` files of `size` random bytes, and the service's `run.sh`.
fn release(dir: &Path, files: usize, size: usize) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; size];
    for i in 0..files {
        getrandom::fill(&mut buf).map_err(|e| e.to_string())?;
        fs::write(dir.join(format!("blob-{i:03}.bin")), &buf).map_err(|e| e.to_string())?;
    }
    fs::write(dir.join("run.sh"), "echo ready\nexec sleep 100000\n").map_err(|e| e.to_string())
}

/// `exeio deploy app DIR`: seconds from spawn to exit, and its VmHWM (KiB,
/// the last reading before it exited).
fn client(bin: &Path, ex: &Exeio, dir: &Path) -> Result<(f64, u64), String> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg("deploy")
        .args(["--url", &format!("http://{}", ex.addr), "--key", KEY, "app"])
        .arg(dir)
        .env_remove("EXEIO_URL")
        .env_remove("EXEIO_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exeio deploy: {e}"))?;
    let pid = child.id() as i32;
    let mut hwm = 0;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if let Ok(kib) = status_field(pid, "VmHWM:") {
            hwm = kib;
        }
        thread::sleep(Duration::from_millis(2));
    };
    let secs = t0.elapsed().as_secs_f64();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("exeio deploy: {status}: {}", err.trim()));
    }
    Ok((secs, hwm))
}

/// Run `f`, sampling `pid`'s VmRSS every 5 ms; what `f` gave and the peak.
fn sampled(
    pid: i32,
    f: impl FnOnce() -> Result<(f64, u64), String>,
) -> Result<(f64, u64, u64), String> {
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = status_field(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let got = f();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let (secs, hwm) = got?;
    Ok((secs, hwm, peak.load(Ordering::Relaxed)))
}
