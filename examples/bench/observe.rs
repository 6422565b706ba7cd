//! Observing exeio: how soon a child's exit reaches a `GET /events`
//! subscriber, and what a `GET /metrics` scrape costs with 100 and 1,000
//! processes.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::exeio::{Exeio, KEY};
use crate::http::Conn;
use crate::workloads::{add_sleepers, ms, wait_running};
use crate::{Metric, Target, Unit, metric, name, quantile};

/// One server-sent event, stamped when its first line was read.
pub struct Event {
    pub at: Instant,
    pub kind: String,
    pub data: Value,
}

/// A `GET /events` subscription read on a thread of its own. HTTP/1.0, so
/// the stream comes unchunked and ends with the connection.
pub struct Subscription {
    pub events: mpsc::Receiver<Event>,
    sock: TcpStream,
    reader: Option<JoinHandle<()>>,
}

impl Subscription {
    pub fn open(addr: SocketAddr) -> Result<Subscription, String> {
        let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        write!(
            sock,
            "GET /events HTTP/1.0\r\nHost: {addr}\r\nexeio-api-key: {KEY}\r\n\r\n"
        )
        .map_err(|e| format!("GET /events: {e}"))?;
        let mut r = BufReader::new(sock.try_clone().map_err(|e| e.to_string())?);
        let mut line = String::new();
        r.read_line(&mut line)
            .map_err(|e| format!("GET /events: {e}"))?;
        if line.split_whitespace().nth(1) != Some("200") {
            return Err(format!("GET /events: {:?}", line.trim_end()));
        }
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) => return Err("GET /events: closed in the headers".into()),
                Ok(_) if line.trim_end().is_empty() => break,
                Ok(_) => {}
                Err(e) => return Err(format!("GET /events: {e}")),
            }
        }
        let (tx, events) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut line = String::new();
            let (mut at, mut kind, mut data) = (None, String::new(), String::new());
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l.is_empty() {
                    if let Some(at) = at.take()
                        && !kind.is_empty()
                    {
                        let data = serde_json::from_str(&data).unwrap_or(Value::Null);
                        let e = Event {
                            at,
                            kind: std::mem::take(&mut kind),
                            data,
                        };
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    kind.clear();
                    data.clear();
                    continue;
                }
                at.get_or_insert_with(Instant::now);
                if let Some(k) = l.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = l.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
        });
        Ok(Subscription {
            events,
            sock,
            reader: Some(reader),
        })
    }

    /// The next event that `want` accepts, within `timeout`.
    pub fn next(
        &self,
        timeout: Duration,
        mut want: impl FnMut(&Event) -> bool,
    ) -> Result<Event, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if want(&e) => return Ok(e),
                Ok(_) => {}
                Err(_) => return Err(format!("no such event within {timeout:?}")),
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.sock.shutdown(Shutdown::Both);
        if let Some(t) = self.reader.take() {
            let _ = t.join();
        }
    }
}

fn is_state(e: &Event, id: &str) -> bool {
    e.kind == "state" && e.data["id"] == id
}

/// SIGKILL a child (restarted at once), time until its `state` event
/// arrives on the stream; `trials` times. Then GET /metrics at 100 and
/// 1,000 processes.
pub fn events(bin: &Path, trials: usize) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    let sub = Subscription::open(ex.addr)?;
    let spec = json!({"id": "ev", "command": "sleep", "args": ["100000"],
                      "auto_restart": true, "backoff_seconds": [0],
                      "rapid_exit_penalty_seconds": 0});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    let wait = Duration::from_secs(10);
    let running = |sub: &Subscription| -> Result<i32, String> {
        let e = sub.next(wait, |e| is_state(e, "ev") && e.data["to"] == "running")?;
        e.data["pid"]
            .as_i64()
            .map(|p| p as i32)
            .ok_or_else(|| format!("a running event without a pid: {}", e.data))
    };
    let mut pid = running(&sub)?;
    let mut lat = Vec::with_capacity(trials);
    for _ in 0..trials {
        let t0 = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGKILL).map_err(|e| format!("kill {pid}: {e}"))?;
        let e = sub.next(wait, |e| is_state(e, "ev") && e.data["from"] == "running")?;
        lat.push(ms(e.at.saturating_duration_since(t0)));
        if e.data["exit"]["signal"] != 9 {
            return Err(format!("the exit event does not say signal 9: {}", e.data));
        }
        pid = running(&sub)?;
    }
    drop(sub);
    conn.ok("POST", "/remove/ev", None)?;

    let mut out = vec![
        metric(
            "SIGKILL -> state event on /events, p50",
            quantile(&lat, 0.5),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "SIGKILL -> state event on /events, p99",
            quantile(&lat, 0.99),
            Unit::Ms,
            Target::None,
        ),
    ];
    add_sleepers(&mut conn, "m", 100)?;
    wait_running(&mut conn, 100)?;
    out.extend(scrape(&mut conn, 100)?);
    add_sleepers(&mut conn, "n", 900)?;
    wait_running(&mut conn, 1000)?;
    out.extend(scrape(&mut conn, 1000)?);
    Ok(out)
}

/// GET /metrics 20 times on one keep-alive connection (after one left out).
fn scrape(conn: &mut Conn, procs: usize) -> Result<Vec<Metric>, String> {
    let mut body = Vec::new();
    let mut get = |body: &mut Vec<u8>| -> Result<f64, String> {
        let t = Instant::now();
        match conn.send("GET", "/metrics", None, body) {
            Ok(200) => Ok(ms(t.elapsed())),
            Ok(s) => Err(format!("GET /metrics: HTTP {s}")),
            Err(e) => Err(format!("GET /metrics: {e}")),
        }
    };
    get(&mut body)?;
    let lat: Vec<f64> = (0..20).map(|_| get(&mut body)).collect::<Result<_, _>>()?;
    let lines = body.iter().filter(|&&b| b == b'\n').count();
    Ok(vec![
        metric(
            name(format!("GET /metrics, {procs} processes, p50")),
            quantile(&lat, 0.5),
            Unit::Ms,
            Target::None,
        ),
        metric(
            name(format!("  its size ({lines} lines)")),
            body.len() as f64 / 1024.0,
            Unit::KiB,
            Target::None,
        ),
    ])
}
