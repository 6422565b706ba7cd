//! Health probes (SPEC 4b): http/tcp/exec/log probes against servers the
//! tests run, the health states, liveness restarts, and the faults (a server
//! that never answers, one that floods, a probe command that forks a
//! daemon, a bad pattern, a removed process).
//!
//! Periods are 1 s and restarts use `backoff_seconds: [0.2]` without the
//! rapid-exit penalty, so each test takes a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

mod hang;
mod observe;

/// What the test server answers.
pub(super) const OK: u8 = 0;
pub(super) const BUSY: u8 = 1;
/// Accept, read the request, never answer.
pub(super) const HANG: u8 = 2;
/// A status line that never ends.
const FLOOD: u8 = 3;

/// A local HTTP server whose answer the test sets.
pub(super) struct Server {
    addr: String,
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicUsize>,
    /// Bytes of the last flood written before the reader hung up, and
    /// whether it did.
    flooded: Arc<AtomicUsize>,
    flood_cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub(super) fn start(mode: u8) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let s = Server {
            addr,
            mode: Arc::new(AtomicU8::new(mode)),
            hits: Arc::default(),
            flooded: Arc::default(),
            flood_cut: Arc::default(),
            stop: Arc::default(),
        };
        let (mode, hits, flooded, cut, stop) = (
            s.mode.clone(),
            s.hits.clone(),
            s.flooded.clone(),
            s.flood_cut.clone(),
            s.stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                hits.fetch_add(1, Ordering::SeqCst);
                let m = mode.load(Ordering::SeqCst);
                let (flooded, cut) = (flooded.clone(), cut.clone());
                std::thread::spawn(move || serve(conn, m, &flooded, &cut));
            }
        });
        s
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}/healthz", self.addr)
    }

    pub(super) fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    pub(super) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(mut conn: TcpStream, mode: u8, flooded: &AtomicUsize, cut: &AtomicBool) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    match mode {
        OK => {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
        BUSY => {
            let _ = conn.write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy");
        }
        HANG => {
            // Held until the prober hangs up.
            let _ = r.read(&mut [0u8; 16]);
        }
        _ => {
            let _ = conn.write_all(b"HTTP/1.1 200 ");
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0;
            conn.set_write_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            while conn.write_all(&chunk).is_ok() {
                sent += chunk.len();
                if sent > 1 << 30 {
                    return;
                }
            }
            flooded.store(sent, Ordering::SeqCst);
            cut.store(true, Ordering::SeqCst);
        }
    }
}

/// A service (`sleep`) with `health` and fast restarts.
pub(super) fn service(id: &str, health: Value) -> Value {
    json!({
        "id": id, "command": "sh", "args": ["-c", "exec sleep 600"],
        "auto_restart": true, "backoff_seconds": [0.2], "rapid_exit_penalty_seconds": 0,
        "stop_timeout_seconds": 2, "health": health
    })
}

fn health_of(d: &Daemon, id: &str) -> Value {
    status_of(d, id)
}

/// Waits until `id` has health `want`; its process object.
pub(super) fn wait_health(d: &Daemon, id: &str, want: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        last = health_of(d, id);
        last["health"] == want
    });
    assert!(ok, "{id} not {want} within {timeout:?}: {last}");
    last
}

#[test]
fn an_http_probe_makes_it_healthy_then_unhealthy_and_restarts_it() {
    let srv = Server::start(OK);
    let d = Daemon::start();
    let p = add_ok(
        &d,
        service(
            "web",
            json!({"http": srv.url(), "period_seconds": 1, "timeout_seconds": 1, "failure_threshold": 2}),
        ),
    );
    assert_eq!(p["health"], "starting", "{p}");
    assert_eq!(p["health_probe"]["http"], srv.url(), "{p}");
    let p = wait_health(&d, "web", "healthy", SHORT);
    assert!(p["health_checked_at"].is_string(), "{p}");
    let pid = p["pid"].as_i64().unwrap();
    srv.set(BUSY);
    // Unhealthy, the liveness stop, then a restart through the backoff
    // (too quick to poll for: the log and the events tell).
    let log = wait_log(&d, "web", "restarting in 0.2s after a liveness stop", SHORT);
    let text = log.join("\n");
    assert!(
        text.contains("health: healthy -> unhealthy after 2 failed checks in a row (HTTP 503)"),
        "{text}"
    );
    assert!(
        text.contains("liveness: unhealthy: 2 failed checks in a row; stopping it to restart"),
        "{text}"
    );
    srv.set(OK);
    let mut last = Value::Null;
    assert!(
        wait_until(SHORT, || {
            last = status_of(&d, "web");
            last["run_count"] == 2 && last["health"] == "healthy"
        }),
        "restarted and healthy again: {last}"
    );
    assert_ne!(last["pid"].as_i64().unwrap(), pid);
    assert_eq!(last["restarts_total"], 1, "{last}");
    // The last failure stays shown.
    assert_eq!(last["health_message"], "HTTP 503", "{last}");
    // The transitions are events.
    let events = health_events(&d, 4);
    let seen: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}>{}",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            "starting>healthy",
            "healthy>unhealthy",
            "unhealthy>starting",
            "starting>healthy"
        ],
        "{events:?}"
    );
    assert_eq!(events[1]["message"], "HTTP 503");
    assert_eq!(events[1]["id"], "web");
    assert!(events[1]["at"].is_string());
}

/// The first `n` `health` events, replayed from the start of the ring.
fn health_events(d: &Daemon, n: usize) -> Vec<Value> {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let head = format!(
        "GET /events?since=0 HTTP/1.1\r\nHost: x\r\nexeio-api-key: {}\r\n\r\n",
        d.key
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (mut found, mut kind, mut line) = (Vec::new(), String::new(), String::new());
    let deadline = Instant::now() + SHORT;
    while found.len() < n && Instant::now() < deadline {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let l = line.trim_end();
        if let Some(k) = l.strip_prefix("event: ") {
            kind = k.to_owned();
        } else if let Some(data) = l.strip_prefix("data: ")
            && kind == "health"
        {
            found.push(serde_json::from_str(data).unwrap());
        }
    }
    found
}

#[test]
fn with_restart_policy_never_it_keeps_running_unhealthy() {
    let srv = Server::start(OK);
    let d = Daemon::start();
    let mut spec = service(
        "web",
        json!({"http": srv.url(), "period_seconds": 1, "failure_threshold": 1}),
    );
    spec["restart_policy"] = json!("never");
    add_ok(&d, spec);
    let pid = wait_health(&d, "web", "healthy", SHORT)["pid"].clone();
    srv.set(BUSY);
    wait_log(
        &d,
        "web",
        "restart_policy is never: it keeps running, unhealthy",
        SHORT,
    );
    let p = status_of(&d, "web");
    assert_eq!(p["health"], "unhealthy", "{p}");
    assert_eq!(p["status"], "running", "{p}");
    assert_eq!(p["pid"], pid, "{p}");
    // It comes back on its own.
    srv.set(OK);
    wait_health(&d, "web", "healthy", SHORT);
    assert_eq!(status_of(&d, "web")["run_count"], 1);
}

#[test]
fn not_healthy_within_the_start_timeout_is_restarted() {
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let d = Daemon::start();
    add_ok(
        &d,
        service(
            "slow",
            json!({"tcp": addr, "period_seconds": 1, "start_timeout_seconds": 1}),
        ),
    );
    let log = wait_log(
        &d,
        "slow",
        "liveness: not healthy within start_timeout_seconds (1s); stopping it to restart",
        SHORT,
    );
    assert!(
        wait_until(SHORT, || status_of(&d, "slow")["run_count"] == 2),
        "{log:#?}"
    );
    let p = status_of(&d, "slow");
    assert_eq!(p["health"], "starting", "{p}");
}

#[test]
fn an_exec_probe_reports_its_last_stderr_line() {
    let d = Daemon::start();
    let mut spec = service(
        "db",
        json!({"exec": ["sh", "-c", "echo checking >&2; echo \"no server on $PROBE_PORT\" >&2; exit 1"], "period_seconds": 1}),
    );
    spec["env"] = json!({"PROBE_PORT": "5432"});
    add_ok(&d, spec);
    let mut last = Value::Null;
    assert!(
        wait_until(SHORT, || {
            last = status_of(&d, "db");
            last["health_message"] == "exit 1: no server on 5432"
        }),
        "{last}"
    );
    assert_eq!(last["health"], "starting", "{last}");
}

#[test]
fn an_exec_probe_that_times_out_is_killed_with_its_group() {
    let tmp = TempDir::new();
    let pidfile = tmp.path().join("grandchild.pid");
    let d = Daemon::start();
    let script = format!("sleep 300 & echo $! > {}; sleep 300", pidfile.display());
    add_ok(
        &d,
        service(
            "hung",
            json!({"exec": ["sh", "-c", script], "period_seconds": 1, "timeout_seconds": 1}),
        ),
    );
    let mut last = Value::Null;
    assert!(
        wait_until(SHORT, || {
            last = status_of(&d, "hung");
            last["health_message"] == "timed out after 1 s"
        }),
        "{last}"
    );
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(SHORT, || !std::path::Path::new(&format!(
            "/proc/{grandchild}"
        ))
        .exists()),
        "the probe's grandchild {grandchild} is gone (killed with its group, reaped by init)"
    );
    // No probe process is left a zombie of exeio: its only children are
    // the service and at most the probe in flight.
    let zombies: Vec<_> = all_procs()
        .into_iter()
        .filter(|p| p.ppid == d.pid() && p.state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "{zombies:?}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let srv = Server::start(HANG);
    let d = Daemon::start();
    add_ok(
        &d,
        service(
            "web",
            json!({"http": srv.url(), "period_seconds": 1, "timeout_seconds": 1}),
        ),
    );
    let mut last = Value::Null;
    assert!(
        wait_until(SHORT, || {
            last = status_of(&d, "web");
            last["health_message"] == "timed out after 1 s"
        }),
        "{last}"
    );
    // The API answered all along, and the process is untouched.
    assert_eq!(last["status"], "running", "{last}");
}

#[test]
fn a_flooding_server_is_cut_at_the_cap() {
    let srv = Server::start(FLOOD);
    let d = Daemon::start();
    add_ok(
        &d,
        service(
            "web",
            json!({"http": srv.url(), "period_seconds": 1, "timeout_seconds": 2}),
        ),
    );
    // Its status line starts `HTTP/1.1 200`: healthy, read no further.
    wait_health(&d, "web", "healthy", SHORT);
    assert!(
        wait_until(SHORT, || srv.flood_cut.load(Ordering::SeqCst)),
        "the prober hung up on the flood"
    );
    let sent = srv.flooded.load(Ordering::SeqCst);
    assert!(sent < 64 << 20, "the flood was cut early: {sent} bytes");
}

#[test]
fn a_log_probe_matches_a_line_of_the_current_run() {
    let d = Daemon::start();
    add_ok(
        &d,
        json!({
            "id": "app", "command": "sh",
            "args": ["-c", "echo starting; read x; echo ready on port 8080; exec sleep 600"],
            "health": {"log": "ready on port \\d+"}
        }),
    );
    // Not before the line.
    assert_eq!(status_of(&d, "app")["health"], "starting");
    let r = d.post_json("/input/app", &json!({"input": "go"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let p = wait_health(&d, "app", "healthy", SHORT);
    assert_eq!(p["status"], "running", "{p}");
    wait_log(&d, "app", "health: starting -> healthy (log matched", SHORT);
}

#[test]
fn a_bad_probe_is_400_naming_the_field_and_changes_nothing() {
    let d = Daemon::start();
    for (health, field) in [
        (json!({"log": "ready ("}), "health.log"),
        (json!({"http": "https://a/"}), "health.http"),
        (json!({"tcp": "localhost"}), "health.tcp"),
        (json!({"exec": []}), "health.exec"),
        (json!({"tcp": "a:1", "http": "http://a/"}), "health"),
        (
            json!({"tcp": "a:1", "period_seconds": 0}),
            "health.period_seconds",
        ),
    ] {
        let (status, body) = add(&d, service("x", health.clone()));
        assert_eq!(status, 400, "{health} -> {body}");
        assert_eq!(body["field"], field, "{health} -> {body}");
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    let (status, body) = add(&d, service("x", json!({"tcp": "a:1", "nope": 1})));
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nope"), "{body}");
    assert!(ids(&d).is_empty());
}

#[test]
fn probes_of_a_removed_process_stop_at_once() {
    let srv = Server::start(OK);
    let d = Daemon::start();
    add_ok(
        &d,
        service("web", json!({"http": srv.url(), "period_seconds": 1})),
    );
    wait_health(&d, "web", "healthy", SHORT);
    assert!(wait_until(SHORT, || srv.hits() >= 2));
    let r = d.post("/remove/web", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let hits = srv.hits();
    // Three periods: no check comes (one in flight at the remove may land).
    let more = wait_until(Duration::from_secs(3), || srv.hits() > hits + 1);
    assert!(!more, "checks went on: {} -> {}", hits, srv.hits());
}
