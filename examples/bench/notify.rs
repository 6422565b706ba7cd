//! Notifications (SPEC 4d): what 1,000 notifications queued while the
//! receiver is down cost exeio (RSS, CPU, time to queue them on disk), and
//! how soon a process's failure reaches a webhook when the receiver is up
//! (from the SIGKILL of its child to the POST's arrival).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::exeio::{Exeio, wait_for};
use crate::{Metric, Target, Unit, metric, quantile};

const QUEUED: usize = 1000;
const TRIALS: usize = 30;

pub fn notify(bin: &Path) -> Result<Vec<Metric>, String> {
    let mut out = queued(bin)?;
    out.extend(latency(bin)?);
    Ok(out)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }) as f64
}

/// 1,000 `test` notifications to a target nobody listens on.
fn queued(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let targets = json!([{"name": "down", "webhook": format!("http://127.0.0.1:{port}/x")}]);
    conn.ok("PUT", "/notify", Some(&targets.to_string()))?;
    thread::sleep(Duration::from_millis(500));
    let rss0 = ex.rss_kib()?;
    let cpu0 = ex.cpu()?;
    let t0 = Instant::now();
    for _ in 0..QUEUED {
        conn.ok("POST", "/notify/test/down", None)?;
    }
    let dir = ex.data_dir.join("notify-queue").join("down");
    let failed = |conn: &mut crate::http::Conn| -> Result<u64, String> {
        let mut body = Vec::new();
        conn.send("GET", "/metrics", None, &mut body)
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&body);
        Ok(text
            .lines()
            .find_map(|l| {
                l.strip_prefix("exeio_notifications_total{target=\"down\",result=\"failed\"} ")
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    };
    // Every one on disk and tried once (connection refused).
    wait_for(
        "1,000 first attempts",
        Duration::from_secs(120),
        Duration::from_millis(20),
        || Ok((failed(&mut conn)? >= QUEUED as u64).then_some(())),
    )?;
    let took = t0.elapsed();
    let on_disk = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if on_disk != QUEUED {
        return Err(format!("{on_disk} files queued, not {QUEUED}"));
    }
    let cpu1 = ex.cpu()?;
    let rss1 = ex.rss_kib()?;
    let cpu_ms = (cpu1.ticks - cpu0.ticks) as f64 / ticks_per_second() * 1000.0;
    Ok(vec![
        metric(
            "1,000 queued (receiver down): time to queue and try each once",
            took.as_secs_f64() * 1000.0,
            Unit::Ms,
            Target::None,
        ),
        metric(
            "1,000 queued: exeio CPU (requests, fsynced files, attempts)",
            cpu_ms,
            Unit::Ms,
            Target::None,
        ),
        metric(
            "1,000 queued: exeio RSS",
            rss1 as f64 / 1024.0,
            Unit::MiB,
            Target::None,
        ),
        metric(
            "1,000 queued: RSS growth",
            rss1.saturating_sub(rss0) as f64,
            Unit::KiB,
            Target::None,
        ),
    ])
}

/// A webhook receiver on a thread: every POST's arrival time and body.
fn receiver() -> Result<(u16, mpsc::Receiver<(Instant, Value)>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || serve(sock, tx));
        }
    });
    Ok((port, rx))
}

fn serve(sock: TcpStream, tx: mpsc::Sender<(Instant, Value)>) {
    let _ = sock.set_nodelay(true);
    let mut w = match sock.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut r = BufReader::new(sock);
    loop {
        let mut len = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let at = Instant::now();
        let _ = w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if tx.send((at, v)).is_err() {
            return;
        }
    }
}

/// From a child's SIGKILL (its process gives up: `max_restarts` 0) to the
/// `process.failed` webhook's arrival.
fn latency(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let (port, arrivals) = receiver()?;
    let targets = json!([{"name": "up", "webhook": format!("http://127.0.0.1:{port}/hook"),
                          "events": ["process.failed"]}]);
    conn.ok("PUT", "/notify", Some(&targets.to_string()))?;
    let mut ms = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let id = format!("fails-{i}");
        let spec = json!({"id": id, "command": "sleep", "args": ["100000"],
                          "auto_restart": true, "max_restarts": 0});
        let added = conn.ok("POST", "/add", Some(&spec.to_string()))?;
        let pid = added["process"]["pid"]
            .as_i64()
            .ok_or_else(|| format!("no pid: {added}"))?;
        let t0 = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (at, v) = arrivals
                .recv_timeout(left)
                .map_err(|_| format!("no webhook for {id} within 20 s"))?;
            if v["data"]["id"] == id.as_str() {
                ms.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                break;
            }
        }
        conn.ok("POST", &format!("/remove/{id}"), None)?;
    }
    Ok(vec![
        metric(
            "failure -> webhook arrival, p50",
            quantile(&ms, 0.5),
            Unit::Ms,
            Target::AtMost(5.0),
        ),
        metric(
            "failure -> webhook arrival, p95",
            quantile(&ms, 0.95),
            Unit::Ms,
            Target::None,
        ),
    ])
}
