//! Health probes (SPEC 4b): how soon a failing service is found and back,
//! what 1,000 HTTP probes cost exeio, and exec probes that time out while
//! forking a grandchild (no zombie, no leftover, each counted in time).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::exeio::{Exeio, KEY, wait_for};
use crate::workloads::{MIB, POOL_IDLE, ms, running};
use crate::{Metric, Options, Target, Unit, group, metric, name, quantile};

pub fn health(bin: &Path, opts: &Options) -> Result<Vec<Metric>, String> {
    let mut out = detection(bin)?;
    out.extend(thousand_probes(bin, opts)?);
    out.extend(exec_timeouts(bin, opts)?);
    Ok(out)
}

/// A local HTTP server answering 200, or 503 while `busy`.
struct Server {
    addr: String,
    busy: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
}

impl Server {
    fn start() -> Result<Server, String> {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = l.local_addr().map_err(|e| e.to_string())?.to_string();
        let busy = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let (b, h) = (busy.clone(), hits.clone());
        thread::spawn(move || {
            for conn in l.incoming().flatten() {
                h.fetch_add(1, Ordering::Relaxed);
                let code = if b.load(Ordering::Relaxed) {
                    "503 Busy"
                } else {
                    "200 OK"
                };
                thread::spawn(move || answer(conn, code));
            }
        });
        Ok(Server { addr, busy, hits })
    }
}

fn answer(mut conn: TcpStream, code: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = write!(conn, "HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n");
}

/// The `/events` stream, read line by line.
struct Events(BufReader<TcpStream>);

impl Events {
    fn open(ex: &Exeio) -> Result<Events, String> {
        let mut s = TcpStream::connect(ex.addr).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET /events HTTP/1.1\r\nHost: x\r\nexeio-api-key: {KEY}\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        Ok(Events(BufReader::new(s)))
    }

    /// Read until an event of `kind` whose data satisfies `f`; when it came.
    fn until(&mut self, kind: &str, f: impl Fn(&Value) -> bool) -> Result<Instant, String> {
        let (mut line, mut current) = (String::new(), String::new());
        loop {
            line.clear();
            if self.0.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("the event stream ended".into());
            }
            let l = line.trim_end();
            if let Some(k) = l.strip_prefix("event: ") {
                current = k.to_owned();
            } else if let Some(d) = l.strip_prefix("data: ")
                && current == kind
                && serde_json::from_str::<Value>(d).is_ok_and(|v| f(&v))
            {
                return Ok(Instant::now());
            }
        }
    }
}

/// From the moment the server starts answering 503 to `unhealthy` (period
/// 1 s, threshold 3, timeout 1 s), and to the restarted service running.
fn detection(bin: &Path) -> Result<Vec<Metric>, String> {
    let srv = Server::start()?;
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let spec = json!({
        "id": "web", "command": "sleep", "args": ["100000"], "auto_restart": true,
        "rapid_exit_penalty_seconds": 0,
        "health": {"http": format!("http://{}/healthz", srv.addr), "period_seconds": 1,
                   "timeout_seconds": 1, "failure_threshold": 3}
    });
    let mut events = Events::open(&ex)?;
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    events.until("health", |d| d["to"] == "healthy")?;
    // Flip at a random point of the period.
    thread::sleep(Duration::from_millis(
        300 + u64::from(Instant::now().elapsed().subsec_nanos() % 700),
    ));
    let t0 = Instant::now();
    srv.busy.store(true, Ordering::Relaxed);
    let unhealthy = events.until("health", |d| d["to"] == "unhealthy")?;
    srv.busy.store(false, Ordering::Relaxed);
    let back = events.until("state", |d| d["to"] == "running")?;
    let healthy = events.until("health", |d| d["to"] == "healthy")?;
    Ok(vec![
        metric(
            "503 -> unhealthy (period 1 s x 3 + timeout 1 s)",
            ms(unhealthy - t0),
            Unit::Ms,
            Target::AtMost(3.0 * 1000.0 + 1000.0 + 100.0),
        ),
        metric(
            "  -> running again (backoff 2 s)",
            ms(back - t0),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "  -> healthy again",
            ms(healthy - t0),
            Unit::Ms,
            Target::None,
        ),
    ])
}

/// N sleepers, each with an HTTP probe every 10 s against one local server,
/// against the same N without probes: exeio's CPU, RSS and threads.
fn thousand_probes(bin: &Path, opts: &Options) -> Result<Vec<Metric>, String> {
    let n = opts.thousand;
    let srv = Server::start()?;
    let url = format!("http://{}/healthz", srv.addr);
    let mut figures = Vec::new();
    for probed in [false, true] {
        let ex = Exeio::start(bin, None)?;
        let mut conn = ex.conn();
        for i in 0..n {
            let mut spec = json!({"id": format!("s-{i}"), "command": "sleep", "args": ["100000"]});
            if probed {
                spec["health"] = json!({"http": url, "period_seconds": 10});
            }
            conn.ok("POST", "/add", Some(&spec.to_string()))?;
        }
        wait_for(
            "all running",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || Ok((running(&mut conn)? >= n).then_some(())),
        )?;
        drop(conn);
        thread::sleep(POOL_IDLE);
        let hits0 = srv.hits.load(Ordering::Relaxed);
        let before = ex.cpu()?;
        let t = Instant::now();
        thread::sleep(Duration::from_secs(opts.idle_seconds));
        let after = ex.cpu()?;
        let secs = t.elapsed().as_secs_f64();
        let (ns, _) = after.since(&before);
        let checks = (srv.hits.load(Ordering::Relaxed) - hits0) as f64 / secs;
        let fp = ex.footprint()?;
        let healthy = if probed {
            let list = ex.conn().ok("GET", "/list", None)?;
            list.as_array()
                .map_or(0, |l| l.iter().filter(|p| p["health"] == "healthy").count())
        } else {
            0
        };
        figures.push((ns as f64 / 1e9 / secs * 100.0, fp, checks, healthy));
    }
    let (cpu0, fp0, _, _) = figures[0];
    let (cpu1, fp1, checks, healthy) = figures[1];
    let k = |s: &str| name(s.replace("{n}", &group(n as f64)));
    Ok(vec![
        metric(
            k("{n} HTTP probes / 10 s: exeio CPU, % of a core"),
            cpu1,
            Unit::Percent,
            Target::AtMost(1.0),
        ),
        metric(
            k("  the same {n} without probes"),
            cpu0,
            Unit::Percent,
            Target::None,
        ),
        metric(
            "  RSS over the same without probes",
            (fp1.rss_kib as f64 - fp0.rss_kib as f64) * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(4.0),
        ),
        metric(
            "  threads with probes (without)",
            fp1.threads as f64,
            Unit::Count,
            Target::AtMost(fp0.threads as f64 + 4.0),
        ),
        metric(
            "  checks answered per second",
            checks,
            Unit::Count,
            Target::None,
        ),
        metric(
            k("  healthy of {n}"),
            healthy as f64,
            Unit::Count,
            Target::AtLeast(n as f64),
        ),
    ])
}

/// 500 processes with an exec probe every second (10,000 checks in 20 s);
/// a tenth of them time out (1 s) while forking a grandchild. Then every process is removed: no zombie of exeio and no
/// probe process may be left, and each timeout took at most 1.2 s.
fn exec_timeouts(bin: &Path, opts: &Options) -> Result<Vec<Metric>, String> {
    let procs = 500usize;
    let hanging = procs / 10;
    let seconds = opts.idle_seconds.max(10);
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let marker = format!(
        "{}.{}",
        40 + std::process::id() % 50,
        std::process::id() % 1000
    );
    for i in 0..procs {
        let probe = if i < hanging {
            json!(["sh", "-c", format!("sleep {marker} & sleep {marker}")])
        } else {
            json!(["true"])
        };
        let spec = json!({
            "id": format!("e-{i}"), "command": "sleep", "args": ["100000"],
            "health": {"exec": probe, "period_seconds": 1, "timeout_seconds": 1,
                       "start_timeout_seconds": 3600}
        });
        conn.ok("POST", "/add", Some(&spec.to_string()))?;
    }
    thread::sleep(Duration::from_secs(seconds));
    // The checks made, and how long each timeout took (the last 10 of each).
    let mut took = Vec::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    for i in 0..procs {
        let h = conn.ok("GET", &format!("/health/e-{i}"), None)?;
        ok += h["checks_ok"].as_u64().unwrap_or(0);
        failed += h["checks_failed"].as_u64().unwrap_or(0);
        for c in h["checks"].as_array().into_iter().flatten() {
            if c["message"] == "timed out after 1 s" {
                took.push(c["took_seconds"].as_f64().unwrap_or(f64::NAN) * 1000.0);
            }
        }
    }
    for i in 0..procs {
        conn.ok("POST", &format!("/remove/e-{i}"), None)?;
    }
    wait_for(
        "every process removed",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let l = conn.ok("GET", "/list", None)?;
            Ok(l.as_array().is_some_and(|a| a.is_empty()).then_some(()))
        },
    )?;
    // Checks in flight at the remove end at their timeout (1 s).
    thread::sleep(Duration::from_millis(1500));
    let (zombies, leftovers) = scan(ex.pid, &marker);
    Ok(vec![
        metric(
            name(format!(
                "exec checks in {seconds} s ({procs} procs, {hanging} time out)"
            )),
            (ok + failed) as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  of them timed out",
            failed as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  a timeout counted after (max of the last 10 each)",
            took.iter().copied().fold(0.0, f64::max),
            Unit::Ms,
            Target::AtMost(1200.0),
        ),
        metric(
            "  p50 of those",
            quantile(&took, 0.5),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "  zombies of exeio afterwards",
            zombies as f64,
            Unit::Count,
            Target::AtMost(0.0),
        ),
        metric(
            "  probe processes left afterwards",
            leftovers as f64,
            Unit::Count,
            Target::AtMost(0.0),
        ),
    ])
}

/// (zombie children of `pid`, processes whose command line has `marker`).
fn scan(pid: i32, marker: &str) -> (usize, usize) {
    let (mut zombies, mut left) = (0, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        let mut f = after.split_whitespace();
        let (state, ppid) = (f.next().unwrap_or(""), f.next().unwrap_or(""));
        if state == "Z" && ppid == pid.to_string() {
            zombies += 1;
        }
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(marker) {
            left += 1;
        }
    }
    (zombies, left)
}
