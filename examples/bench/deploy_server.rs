//! Deploys, the server side (SPEC 4c; `--only deploy-server`; the CLI's
//! end-to-end deploy is the `deploy` workload's):
//! - a 100 MiB release of incompressible bytes (a .tar.gz) uploaded over
//!   loopback and extracted: MB/s from the first byte sent to the answer,
//!   and exeio's RSS growth meanwhile (sampled every 5 ms). The release's
//!   build is `false`, so the answer (422) comes right after the upload,
//!   the sha256, the extraction, the fsyncs and the commit: no restart or
//!   health gate is timed.
//! - a bad release rolled back: the app (a python TCP listener) is
//!   unreachable while exeio stops it, starts the bad release (which exits
//!   at once), sees it fail, switches back and starts the good one again.
//!   That window, less a plain restart's window (the app's own stop and
//!   start), is what the rollback adds.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::exeio::{Exeio, wait_for};
use crate::{Metric, Target, Unit, metric};

const RELEASE_MIB: usize = 100;

pub fn deploy_server(bin: &Path) -> Result<Vec<Metric>, String> {
    let mut out = upload(bin)?;
    out.extend(rollback(bin)?);
    Ok(out)
}

fn tarball(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).expect("in memory");
    }
    b.into_inner()
        .and_then(|gz| gz.finish())
        .expect("in memory")
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn upload(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start_with(bin, None, &["--max-deploy-bytes", "300000000"])?;
    let mut conn = ex.conn();
    let spec = json!({"id": "app", "command": "sh", "args": ["{release}/run.sh"],
                      "deploy": {"build": ["false"]}});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    let seed = Instant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9;
    let body = tarball(&[
        ("run.sh", b"exec sleep 1000\n", 0o755),
        ("payload", &noise(RELEASE_MIB << 20, seed), 0o644),
    ]);
    thread::sleep(Duration::from_millis(300));
    let rss0 = ex.rss_kib()?;
    let peak = Arc::new(AtomicU64::new(rss0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), ex.pid);
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_of(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t0 = Instant::now();
    let mut reply = Vec::new();
    let status = conn
        .send("POST", "/deploy/app", Some(&body), &mut reply)
        .map_err(|e| format!("POST /deploy: {e}"))?;
    let took = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    if status != 422 {
        return Err(format!(
            "POST /deploy answered {status}, not the build's 422: {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    let mb = body.len() as f64 / 1e6;
    let growth = peak.load(Ordering::Relaxed).saturating_sub(rss0) as f64 / 1024.0;
    Ok(vec![
        metric(
            "100 MiB release uploaded + extracted",
            mb / took,
            Unit::PerSec,
            Target::AtLeast(150.0),
        ),
        metric(
            "exeio RSS growth during it",
            growth,
            Unit::MiB,
            Target::AtMost(8.0),
        ),
    ])
}

fn rss_of(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The longest time `port` refused connections while `action` ran.
fn outage(port: u16, action: impl FnOnce() -> Result<(), String>) -> Result<f64, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let longest = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, longest) = (stop.clone(), longest.clone());
        thread::spawn(move || {
            let mut down_since: Option<Instant> = None;
            while !stop.load(Ordering::Relaxed) {
                let up = TcpStream::connect(("127.0.0.1", port)).is_ok();
                match (up, down_since) {
                    (false, None) => down_since = Some(Instant::now()),
                    (true, Some(t)) => {
                        longest.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        down_since = None;
                    }
                    _ => {}
                }
                thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let r = action();
    // the app is back before the answer; give the watcher a moment to see it
    thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    r.map(|()| longest.load(Ordering::Relaxed) as f64 / 1000.0)
}

fn rollback(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let spec = json!({"id": "app", "command": "sh", "args": ["{release}/run.sh"],
                      "stop_timeout_seconds": 2,
                      "health": {"tcp": format!("127.0.0.1:{port}"), "period_seconds": 1},
                      "deploy": {"healthy_timeout_seconds": 5}});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    let serve = format!(
        "exec python3 -c 'import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind((\"127.0.0.1\",{port}))\ns.listen(64)\nwhile True: s.accept()[0].close()'\n"
    );
    let good = tarball(&[("run.sh", serve.as_bytes(), 0o755)]);
    let mut reply = Vec::new();
    let status = conn
        .send("POST", "/deploy/app", Some(&good), &mut reply)
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!(
            "first deploy: {status} {}",
            String::from_utf8_lossy(&reply)
        ));
    }
    wait_for(
        "the app listening",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || {
            Ok(TcpStream::connect(("127.0.0.1", port))
                .is_ok()
                .then_some(()))
        },
    )?;
    let plain = outage(port, || {
        conn.ok("POST", "/restart/app", None).map(|_| ())?;
        wait_for(
            "the app back",
            Duration::from_secs(10),
            Duration::from_millis(1),
            || {
                Ok(TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then_some(()))
            },
        )
    })?;
    let bad = tarball(&[("run.sh", b"echo bad release >&2; exit 1\n", 0o755)]);
    let rolled = outage(port, || {
        let mut reply = Vec::new();
        let status = conn
            .send("POST", "/deploy/app", Some(&bad), &mut reply)
            .map_err(|e| e.to_string())?;
        if status != 409 {
            return Err(format!(
                "bad deploy: {status} {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        Ok(())
    })?;
    let _ = std::io::stderr().flush();
    Ok(vec![
        metric(
            "app down during a plain restart",
            plain,
            Unit::Ms,
            Target::None,
        ),
        metric(
            "app down during a bad deploy + rollback",
            rolled,
            Unit::Ms,
            Target::None,
        ),
        metric(
            "what the rollback adds (difference)",
            rolled - plain,
            Unit::Ms,
            Target::AtMost(50.0),
        ),
    ])
}
