//! The workloads of issue 6 other than the log ones (see `logs.rs`). Each run
//! starts its own exeio and returns its figures; the `Exeio` guard stops it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::exeio::{Exeio, KEY, wait_for};
use crate::http::Conn;
use crate::logs::{self, PagingLog};
use crate::{Metric, Options, Target, Unit, metric, quantile};
use crate::{edge, jobs, observe, scale};

/// State kept across the runs of one workload (the paging log is built once).
pub enum Context {
    None,
    Paging(PagingLog),
}

impl Context {
    pub fn new(workload: &str, opts: &Options, _bin: &Path) -> Result<Context, String> {
        Ok(match workload {
            "paging" => Context::Paging(PagingLog::build(opts.size_mb)?),
            _ => Context::None,
        })
    }
}

pub fn run(
    workload: &str,
    ctx: &mut Context,
    opts: &Options,
    bin: &Path,
) -> Result<Vec<Metric>, String> {
    match (workload, ctx) {
        ("idle", _) => idle(bin),
        ("spawn", _) => spawn(bin),
        ("exit", _) => exit(bin),
        ("restart", _) => restart(bin, opts.trials),
        ("logcap", _) => logs::logcap(bin),
        ("paging", Context::Paging(log)) => logs::paging(bin, log),
        ("api", _) => api(bin, opts.api_seconds),
        ("idlecpu", _) => idle_cpu(bin, opts.idle_seconds),
        ("periodic", _) => periodic(bin, opts.periodic_runs),
        ("events", _) => observe::events(bin, opts.trials),
        ("thousand", _) => scale::thousand(bin, opts),
        ("edge", _) => edge::edge(bin, opts),
        ("cron", _) => jobs::cron(bin, opts),
        ("cli", _) => scale::cli(bin),
        ("notify", _) => crate::notify::notify(bin),
        ("health", _) => crate::health::health(bin, opts),
        ("order", _) => crate::order::order(bin),
        ("deploy-server", _) => crate::deploy_server::deploy_server(bin),
        ("deploy", _) => crate::deploy::deploy(bin),
        (w, _) => Err(format!("no workload {w}")),
    }
}

pub fn sleeper(id: &str) -> String {
    json!({"id": id, "command": "sleep", "args": ["100000"]}).to_string()
}

/// Add `n` `sleep 100000` processes named `{prefix}-{i}`, one after another.
pub fn add_sleepers(conn: &mut Conn, prefix: &str, n: usize) -> Result<(), String> {
    for i in 0..n {
        conn.ok("POST", "/add", Some(&sleeper(&format!("{prefix}-{i}"))))?;
    }
    Ok(())
}

/// How many processes GET /list reports as running.
pub fn running(conn: &mut Conn) -> Result<usize, String> {
    let list = conn.ok("GET", "/list", None)?;
    let list = list.as_array().ok_or("GET /list is not an array")?;
    Ok(list.iter().filter(|p| p["status"] == "running").count())
}

pub fn wait_running(conn: &mut Conn, n: usize) -> Result<(), String> {
    wait_for(
        &format!("{n} processes running"),
        Duration::from_secs(30),
        Duration::from_millis(20),
        || Ok((running(conn)? >= n).then_some(())),
    )
}

pub const MIB: f64 = 1024.0 * 1024.0;

/// exeio's idle HTTP pool threads end after 10 s without work; wait this
/// long before a measurement that must not see them.
pub const POOL_IDLE: Duration = Duration::from_millis(11_000);

/// RSS with no processes, then the increase per `sleep` child with 100.
fn idle(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    conn.ok("GET", "/list", None)?;
    thread::sleep(Duration::from_millis(1000));
    let cold = ex.rss_kib()?;
    // Warm up once (add and remove one process) so that the per-child figure
    // is the marginal cost of a child, not the first touch of the spawn path.
    conn.ok("POST", "/add", Some(&sleeper("idle-warmup")))?;
    conn.ok("POST", "/remove/idle-warmup", None)?;
    thread::sleep(Duration::from_millis(500));
    let rss0 = ex.rss_kib()?;
    add_sleepers(&mut conn, "idle", 100)?;
    wait_running(&mut conn, 100)?;
    thread::sleep(Duration::from_millis(1000));
    let rss100 = ex.rss_kib()?;
    let threads = ex.threads()?;
    Ok(vec![
        metric(
            "RSS, no processes",
            cold as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(3.0),
        ),
        metric(
            "RSS, after one add+remove",
            rss0 as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::None,
        ),
        metric(
            "RSS, 100 sleep children",
            rss100 as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::None,
        ),
        metric(
            "RSS increase per child",
            (rss100 as f64 - rss0 as f64) / 100.0,
            Unit::KiB,
            Target::AtMost(12.0),
        ),
        metric(
            "threads, 100 children",
            threads as f64,
            Unit::Count,
            Target::None,
        ),
    ])
}

/// POST /add 100 processes, until GET /list reports all 100 running.
fn spawn(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    conn.ok("GET", "/list", None)?; // connect outside the timing
    let t0 = Instant::now();
    add_sleepers(&mut conn, "spawn", 100)?;
    let added = t0.elapsed();
    wait_for(
        "100 processes running",
        Duration::from_secs(30),
        Duration::ZERO,
        || Ok((running(&mut conn)? >= 100).then_some(())),
    )?;
    let all = t0.elapsed();
    Ok(vec![
        metric(
            "add+start 100, all running",
            ms(all),
            Unit::Ms,
            Target::AtMost(60.0),
        ),
        metric("100 POST /add answered", ms(added), Unit::Ms, Target::None),
    ])
}

/// SIGKILL a child, poll GET /status until it is no longer running; 50 trials.
fn exit(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let mut lat = Vec::with_capacity(50);
    let mut body = Vec::new();
    for i in 0..50 {
        let id = format!("exit-{i}");
        let added = conn.ok("POST", "/add", Some(&sleeper(&id)))?;
        let pid = added["process"]["pid"]
            .as_i64()
            .ok_or_else(|| format!("POST /add gave no pid: {added}"))?;
        let path = format!("/status/{id}");
        let t0 = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| format!("kill {pid}: {e}"))?;
        loop {
            let status = conn
                .send("GET", &path, None, &mut body)
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("GET {path}: HTTP {status}"));
            }
            // Cheap check on the raw body; no JSON parse in the loop.
            if !contains(&body, b"\"status\":\"running\"") {
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(format!("{id} still running 10 s after SIGKILL"));
            }
        }
        lat.push(ms(t0.elapsed()));
        conn.ok("POST", &format!("/remove/{id}"), None)?;
    }
    Ok(vec![
        metric(
            "SIGKILL -> not running, p50",
            quantile(&lat, 0.5),
            Unit::Ms,
            Target::AtMost(5.0),
        ),
        metric(
            "SIGKILL -> not running, p99",
            quantile(&lat, 0.99),
            Unit::Ms,
            Target::AtMost(20.0),
        ),
    ])
}

/// A `sleep` restarted at once after every exit (`backoff_seconds: [0]`,
/// no rapid-exit penalty): SIGKILL it, poll GET /status until a new pid
/// runs; `trials` times.
fn restart(bin: &Path, trials: usize) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let spec = json!({"id": "rs", "command": "sleep", "args": ["100000"],
                      "auto_restart": true, "backoff_seconds": [0],
                      "rapid_exit_penalty_seconds": 0});
    let added = conn.ok("POST", "/add", Some(&spec.to_string()))?;
    let mut pid = added["process"]["pid"]
        .as_i64()
        .ok_or_else(|| format!("POST /add gave no pid: {added}"))?;
    let mut lat = Vec::with_capacity(trials);
    let mut body = Vec::new();
    for _ in 0..trials {
        let t0 = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| format!("kill {pid}: {e}"))?;
        pid = loop {
            let status = conn
                .send("GET", "/status/rs", None, &mut body)
                .map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("GET /status/rs: HTTP {status}"));
            }
            if contains(&body, b"\"status\":\"running\"") {
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                let now = v["process"]["pid"].as_i64().unwrap_or(pid);
                if now != pid {
                    break now;
                }
            }
            if t0.elapsed() > Duration::from_secs(10) {
                return Err(format!("no new pid running 10 s after SIGKILL of {pid}"));
            }
        };
        lat.push(ms(t0.elapsed()));
    }
    Ok(vec![
        metric(
            "SIGKILL -> new pid running, p50",
            quantile(&lat, 0.5),
            Unit::Ms,
            Target::AtMost(5.0),
        ),
        metric(
            "SIGKILL -> new pid running, p99",
            quantile(&lat, 0.99),
            Unit::Ms,
            Target::None,
        ),
    ])
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// GET /list and GET /status/{id}, 10 processes, 8 keep-alive connections.
fn api(bin: &Path, seconds: u64) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    add_sleepers(&mut conn, "api", 10)?;
    wait_running(&mut conn, 10)?;
    let mut out = Vec::new();
    for (path, names) in [
        (
            "/list",
            [
                "GET /list, 8 conns",
                "GET /list latency p50",
                "GET /list latency p99",
                "GET /list failed requests",
            ],
        ),
        (
            "/status/api-3",
            [
                "GET /status/{id}, 8 conns",
                "GET /status latency p50",
                "GET /status latency p99",
                "GET /status failed requests",
            ],
        ),
    ] {
        let (mut lat, errors, elapsed) = load(ex.addr, path, 8, seconds)?;
        lat.sort_unstable();
        let pct = |q: f64| {
            let rank = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len().max(1));
            lat.get(rank - 1).copied().unwrap_or(0) as f64 / 1000.0
        };
        out.extend([
            metric(
                names[0],
                lat.len() as f64 / elapsed,
                Unit::PerSec,
                Target::AtLeast(40_000.0),
            ),
            metric(names[1], pct(0.5), Unit::Ms, Target::None),
            metric(names[2], pct(0.99), Unit::Ms, Target::AtMost(0.5)),
            metric(names[3], errors as f64, Unit::Count, Target::AtMost(0.0)),
        ]);
    }
    Ok(out)
}

/// `GET path` in a loop from `conns` keep-alive connections for `seconds`:
/// (latencies in µs, failed requests, seconds elapsed).
fn load(
    addr: std::net::SocketAddr,
    path: &'static str,
    conns: usize,
    seconds: u64,
) -> Result<(Vec<u32>, u64, f64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut c = Conn::new(addr, KEY);
                let mut body = Vec::new();
                let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
                let mut errors = 0u64;
                // Warm up the connection outside the measurement.
                let _ = c.send("GET", path, None, &mut body);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match c.send("GET", path, None, &mut body) {
                        Ok(200) => lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let t0 = Instant::now();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (lat, e) = w.join().map_err(|_| "a load thread panicked")?;
        all.extend(lat);
        errors += e;
    }
    Ok((all, errors, t0.elapsed().as_secs_f64()))
}

/// exeio's own CPU time while 100 children sleep and nobody calls it.
fn idle_cpu(bin: &Path, seconds: u64) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    {
        let mut conn = ex.conn();
        add_sleepers(&mut conn, "cpu", 100)?;
        wait_running(&mut conn, 100)?;
    } // the connection closes before the window
    // Idle connection threads end after 10 s: let them go before the window.
    thread::sleep(POOL_IDLE);
    let before = ex.cpu()?;
    thread::sleep(Duration::from_secs(seconds));
    let after = ex.cpu()?;
    let (ns, gone) = after.since(&before);
    // Scale to the 30 s of the target if a shorter window was asked for.
    let scale = 30.0 / seconds as f64;
    let hz = 100.0; // USER_HZ on Linux
    let mut out = vec![
        metric(
            "CPU over 30 s, 100 idle children",
            ns as f64 / 1e6 * scale,
            Unit::Ms,
            Target::AtMost(2.0),
        ),
        metric(
            "  same, from utime+stime (10 ms ticks)",
            after.ticks.saturating_sub(before.ticks) as f64 * 1000.0 / hz * scale,
            Unit::Ms,
            Target::None,
        ),
        metric(
            "  context switches in 30 s",
            after.switches.saturating_sub(before.switches) as f64 * scale,
            Unit::Count,
            Target::None,
        ),
    ];
    if gone > 0 {
        out.push(metric(
            "  threads that exited (time not counted)",
            gone as f64,
            Unit::Count,
            Target::None,
        ));
    }
    Ok(out)
}

/// A 1 s periodic job that prints its own start time; drift of each start
/// from run 1's start + k seconds.
fn periodic(bin: &Path, runs: usize) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let spec = json!({"id": "tick", "command": "date", "args": ["+%s%N"],
                      "periodic": true, "period_seconds": 1});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    let page = format!("/logs/tick?page=1&page_size={}", (runs * 6).min(1000));
    let starts =
        wait_for(
            &format!("{runs} periodic runs"),
            Duration::from_secs(runs as u64 + 15),
            Duration::from_millis(500),
            || {
                let v = conn.ok("GET", &page, None)?;
                let starts = run_starts(&v);
                Ok((starts.len() >= runs
                    && (1..=runs as u64).all(|n| starts.iter().any(|s| s.0 == n)))
                .then_some(starts))
            },
        )?;
    let t = |n: u64| {
        starts
            .iter()
            .find(|s| s.0 == n)
            .map(|s| s.1)
            .expect("checked")
    };
    let t0 = t(1);
    let drift: Vec<f64> = (1..=runs as u64)
        .map(|n| (t(n) as f64 - (t0 as f64 + (n - 1) as f64 * 1e9)) / 1e6)
        .collect();
    let worst = drift.iter().fold(0f64, |a, d| a.max(d.abs()));
    let skipped = conn
        .ok("GET", &page, None)?
        .get("logs")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter(|x| x.as_str().is_some_and(|s| s.contains("skipped")))
                .count()
        })
        .unwrap_or(0);
    Ok(vec![
        metric(
            "worst start drift, 1 s period",
            worst,
            Unit::Ms,
            Target::AtMost(50.0),
        ),
        metric(
            "drift of the last run",
            drift.last().copied().unwrap_or(0.0),
            Unit::Ms,
            Target::None,
        ),
        metric("skipped ticks", skipped as f64, Unit::Count, Target::None),
    ])
}

/// (run number, start in ns since the epoch) from `[ts] RUN#N STDOUT: NANOS`.
fn run_starts(page: &Value) -> Vec<(u64, u128)> {
    let Some(lines) = page["logs"].as_array() else {
        return Vec::new();
    };
    lines
        .iter()
        .filter_map(|l| {
            let l = l.as_str()?;
            let rest = &l[l.find("RUN#")? + 4..];
            let (n, rest) = rest.split_once(' ')?;
            let nanos = rest.strip_prefix("STDOUT: ")?.trim();
            Some((n.parse().ok()?, nanos.parse().ok()?))
        })
        .collect()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
