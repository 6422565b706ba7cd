//! Notifications (SPEC 4d): webhooks against a real local receiver
//! (`receiver.py`, which checks every signature with the Standard Webhooks
//! reference library from PyPI), retries with one webhook-id, 410, the
//! outbox across a `kill -9`, command targets, restart storms, secrets.
//! `memory` has `max_memory_bytes`; `ends`, command targets at shutdown.

mod cli;
mod ends;
mod memory;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Daemon, http, wait_until};
use crate::util::{add_ok, status_of, wait_status};

const RECEIVER: &str = include_str!("receiver.py");

/// A webhook receiver (python3 + standardwebhooks), killed on drop.
pub struct Receiver {
    child: Child,
    pub port: u16,
    got: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    /// Answers with `plan` (comma-separated statuses; the last repeats),
    /// on `port` (0: any).
    pub fn start(secret: &str, plan: &str, port: u16) -> Receiver {
        let mut child = Command::new("python3")
            .args(["-c", RECEIVER, secret, plan, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port: u16 = first.trim().parse().unwrap_or_else(|_| {
            panic!("receiver did not start (pip install standardwebhooks): {first:?}")
        });
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        Receiver { child, port, got }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn got(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }

    /// Wait until at least `n` requests arrived; all of them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let ok = wait_until(timeout, || self.got().len() >= n);
        assert!(ok, "the receiver got {:?}, wanted {n}", self.got());
        self.got()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn put_notify(d: &Daemon, targets: &Value) -> (u16, Value) {
    let r = d.request("PUT", "/notify", Some(targets.to_string().as_bytes()));
    (r.status, r.json())
}

/// PUT that must succeed; returns the reply.
pub fn put_ok(d: &Daemon, targets: &Value) -> Value {
    let (status, body) = put_notify(d, targets);
    assert_eq!(status, 200, "PUT /notify {targets} -> {body}");
    body
}

/// The value of `exeio_notifications_total{target,result}`.
pub fn counted(d: &Daemon, target: &str, result: &str) -> u64 {
    let text = d.get("/metrics").body;
    let needle = format!("exeio_notifications_total{{target=\"{target}\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn exeio_log(d: &Daemon) -> String {
    std::fs::read_to_string(d.logs_dir().join("exeio.log")).unwrap_or_default()
}

/// A loopback port nobody listens on (for now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_webhook_is_signed_and_retried_with_the_same_id() {
    let d = Daemon::start();
    // the receiver needs the secret exeio makes: start on a port first
    let port = free_port();
    let reply = put_ok(
        &d,
        &json!([{"name": "ops", "webhook": format!("http://127.0.0.1:{port}/hook")}]),
    );
    let secret = reply["secrets"]["ops"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{reply}");
    let rx = Receiver::start(&secret, "500,200", port);
    // the secret is never shown again
    let listed = d.get("/notify");
    assert_eq!(listed.status, 200);
    assert!(!listed.body.contains("whsec_"), "{}", listed.body);
    let t = &listed.json()["targets"][0];
    assert_eq!(t["enabled"], true);
    assert_eq!(t["events"].as_array().unwrap().len(), 6, "{t}");
    assert_eq!(t["ids"], json!(["*"]));
    let file = d.config_dir().join("notify.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let r = d.post("/notify/test/ops", "");
    assert_eq!(r.status, 200, "{}", r.body);
    // a 500, then (about 5 s later) the same notification again
    let got = rx.wait_for(2, Duration::from_secs(30));
    assert_eq!(got[0]["status"], 500);
    assert_eq!(got[1]["status"], 200);
    assert_eq!(got[0]["id"], got[1]["id"], "one webhook-id across retries");
    for g in &got {
        assert_eq!(g["verified"], true, "standardwebhooks verifies: {g}");
        assert_eq!(g["body"]["type"], "test");
    }
    assert!(got[0]["body"]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(wait_until(Duration::from_secs(5), || counted(
        &d,
        "ops",
        "delivered"
    ) == 1));
    assert_eq!(counted(&d, "ops", "failed"), 1);

    // a process that gives up is a process.failed
    add_ok(
        &d,
        json!({"id": "dies", "command": "sh", "args": ["-c", "exit 3"],
               "auto_restart": true, "max_restarts": 0}),
    );
    wait_status(&d, "dies", "failed", Duration::from_secs(10));
    let got = rx.wait_for(3, Duration::from_secs(30));
    let failed = &got[2];
    assert_eq!(failed["body"]["type"], "process.failed", "{failed}");
    assert_eq!(failed["body"]["data"]["id"], "dies");
    assert_eq!(failed["verified"], true);
    assert_ne!(failed["id"], got[0]["id"], "one id per event");
    assert!(
        failed["body"]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("gave up"),
        "{failed}"
    );
}

#[test]
fn a_410_turns_the_target_off_until_a_put() {
    let d = Daemon::start();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let rx = Receiver::start(secret, "410", 0);
    let targets = json!([{"name": "gone", "webhook": rx.url(), "secret": secret}]);
    let reply = put_ok(&d, &targets);
    assert!(
        reply.get("secrets").is_none(),
        "a given secret is not shown: {reply}"
    );
    assert_eq!(d.post("/notify/test/gone", "").status, 200);
    rx.wait_for(1, Duration::from_secs(20));
    let off = wait_until(Duration::from_secs(10), || {
        d.get("/notify").json()["targets"][0]["enabled"] == false
    });
    assert!(off, "{}", d.get("/notify").body);
    let t = d.get("/notify").json()["targets"][0].clone();
    assert!(t["reason"].as_str().unwrap().contains("410"), "{t}");
    assert!(wait_until(Duration::from_secs(10), || exeio_log(&d)
        .contains("target 'gone' turned off")));
    // it stays off across a restart of exeio, and nothing more is sent to it
    let mut d = d;
    d.restart();
    assert_eq!(d.get("/notify").json()["targets"][0]["enabled"], false);
    // a test to it is refused, saying why, rather than sent where alerts are not
    let r = d.post("/notify/test/gone", "");
    assert_eq!(r.status, 409, "{}", r.body);
    let m = r.json()["message"].as_str().unwrap().to_owned();
    assert!(m.contains("turned off") && m.contains("410"), "{m}");
    assert_eq!(rx.got().len(), 1, "a test went to a turned-off target");
    // a PUT turns it on again
    put_ok(&d, &targets);
    assert_eq!(d.get("/notify").json()["targets"][0]["enabled"], true);
    assert_eq!(d.post("/notify/test/gone", "").status, 200);
    let got = rx.wait_for(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "nothing sent while it was off: {got:?}");
}

#[test]
fn the_outbox_survives_kill_9() {
    let mut d = Daemon::start();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let port = free_port();
    put_ok(
        &d,
        &json!([{"name": "later", "webhook": format!("http://127.0.0.1:{port}/x"), "secret": secret}]),
    );
    assert_eq!(d.post("/notify/test/later", "").status, 200);
    // the first attempt failed (nobody listens): it waits on disk
    let queue = d.data_dir().join("notify-queue").join("later");
    let queued = || -> Vec<String> {
        std::fs::read_dir(&queue)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(wait_until(Duration::from_secs(10), || counted(
        &d, "later", "failed"
    ) == 1));
    let files = queued();
    assert_eq!(files.len(), 1, "{files:?}");
    let msg_id = files[0].trim_end_matches(".json").to_owned();
    d.kill9();
    let rx = Receiver::start(secret, "200", port);
    d.start_again();
    let got = rx.wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0]["id"], msg_id.as_str(), "the same webhook-id");
    assert_eq!(got[0]["verified"], true);
    assert!(wait_until(Duration::from_secs(10), || queued().is_empty()));
}

#[test]
fn command_targets_get_the_body_on_stdin_and_jobs_that_fail_are_sent() {
    let d = Daemon::start();
    let out = d.tmp().join("alerts");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "cat > {dir}/$EXEIO_ID.$EXEIO_EVENT.json; sleep 30 & exit 0",
        dir = out.display()
    );
    put_ok(
        &d,
        &json!([{"name": "page", "command": ["sh", "-c", script],
                 "events": ["job.failed"], "ids": ["nightly*"]}]),
    );
    // a periodic job whose run fails, and one whose id is not wanted
    add_ok(
        &d,
        json!({"id": "nightly-report", "command": "sh", "args": ["-c", "exit 2"],
               "periodic": true, "period_seconds": 3600}),
    );
    add_ok(
        &d,
        json!({"id": "other", "command": "sh", "args": ["-c", "exit 2"],
               "periodic": true, "period_seconds": 3600}),
    );
    let file = out.join("nightly-report.job.failed.json");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some()),
        "no job.failed from the command target"
    );
    let body: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(body["type"], "job.failed");
    assert_eq!(body["data"]["id"], "nightly-report");
    assert_eq!(body["data"]["details"]["exit"]["code"], 2, "{body}");
    assert!(wait_until(Duration::from_secs(10), || counted(
        &d,
        "page",
        "delivered"
    ) == 1));
    assert!(
        !out.join("other.job.failed.json").exists(),
        "filtered by id"
    );
    // the group of the command was killed after it (its `sleep 30`)
    let leftover = Command::new("pgrep")
        .args(["-f", "^sleep 30$"])
        .output()
        .unwrap();
    let mine: Vec<String> = String::from_utf8_lossy(&leftover.stdout)
        .lines()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| e.contains("EXEIO_EVENT=job.failed"))
        })
        .map(str::to_owned)
        .collect();
    assert!(mine.is_empty(), "a command's group outlived it: {mine:?}");
}

#[test]
fn a_crash_loop_is_one_restart_storm_alert() {
    let d = Daemon::start();
    let out = d.tmp().join("storms");
    put_ok(
        &d,
        &json!([{"name": "pager", "command": ["sh", "-c", format!("cat >> {}; echo >> {}", out.display(), out.display())],
                 "events": ["process.restart_storm"]}]),
    );
    add_ok(
        &d,
        json!({"id": "loop", "command": "sh", "args": ["-c", "exit 1"], "auto_restart": true,
               "backoff_seconds": [0.1], "rapid_exit_penalty_seconds": 0}),
    );
    // 20 restarts within a few seconds: one alert, not four
    assert!(wait_until(Duration::from_secs(30), || status_of(
        &d, "loop"
    )["restarts_total"]
        .as_u64()
        .unwrap_or(0)
        >= 20));
    assert!(wait_until(Duration::from_secs(10), || counted(
        &d,
        "pager",
        "delivered"
    ) >= 1));
    d.post("/stop/loop", "");
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let alerts: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 1, "{text}");
    assert_eq!(alerts[0]["type"], "process.restart_storm");
    assert_eq!(alerts[0]["data"]["id"], "loop");
    assert_eq!(counted(&d, "pager", "delivered"), 1);
}

#[test]
fn bad_lists_change_nothing_and_only_admins_manage_targets() {
    let d = Daemon::start();
    put_ok(&d, &json!([{"name": "a", "command": ["true"]}]));
    for (body, field) in [
        (json!([{"name": "b"}]), "targets[0].webhook"),
        (
            json!([{"name": "b", "webhook": "http://x/", "command": ["y"]}]),
            "targets[0].webhook",
        ),
        (
            json!([{"name": "b", "webhook": "ftp://x/"}]),
            "targets[0].webhook",
        ),
        (
            json!([{"name": "b", "command": ["y"]}, {"name": "b", "command": ["z"]}]),
            "targets[1].name",
        ),
        (
            json!([{"name": "b", "command": ["y"], "events": ["nope"]}]),
            "targets[0].events",
        ),
        (
            json!([{"name": "b", "webhook": "http://x/", "secret": "whsec_short"}]),
            "targets[0].secret",
        ),
    ] {
        let (status, reply) = put_notify(&d, &body);
        assert_eq!(status, 400, "{body} -> {reply}");
        assert_eq!(reply["field"], field, "{body} -> {reply}");
    }
    let listed = d.get("/notify").json();
    assert_eq!(listed["targets"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["targets"][0]["name"], "a");
    assert_eq!(d.post("/notify/test/nope", "").status, 404);
    // an operate key may not read or change targets
    let r = d.post_json("/keys", &json!({"name": "ops", "role": "operate"}));
    let key = r.json()["key"].as_str().unwrap().to_owned();
    let r = http(d.addr(), "GET", "/notify", &[("exeio-api-key", &key)], None);
    assert_eq!(r.status, 403);
    let r = http(
        d.addr(),
        "PUT",
        "/notify",
        &[("exeio-api-key", &key)],
        Some(b"[]"),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn a_process_that_turns_unhealthy_is_sent_once() {
    let d = Daemon::start();
    let out = d.tmp().join("alerts");
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "cat > {dir}/$EXEIO_ID.$EXEIO_EVENT.json",
        dir = out.display()
    );
    put_ok(
        &d,
        &json!([{"name": "page", "command": ["sh", "-c", script],
                 "events": ["process.unhealthy"]}]),
    );
    // healthy while the file exists; never restarted, so it stays unhealthy
    let flag = d.tmp().join("ok");
    std::fs::write(&flag, "").unwrap();
    add_ok(
        &d,
        json!({"id": "api", "command": "sleep", "args": ["1000"], "restart_policy": "never",
               "health": {"exec": ["test", "-e", flag.to_str().unwrap()],
                          "period_seconds": 1, "failure_threshold": 1}}),
    );
    assert!(
        wait_until(
            Duration::from_secs(20),
            || d.get("/status/api").json()["process"]["health"] == "healthy"
        ),
        "{}",
        d.get("/status/api").json()
    );
    let file = out.join("api.process.unhealthy.json");
    assert!(!file.exists(), "nothing sent while healthy");
    std::fs::remove_file(&flag).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some()),
        "no process.unhealthy from the command target"
    );
    let body: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(body["type"], "process.unhealthy", "{body}");
    assert_eq!(body["data"]["id"], "api", "{body}");
    assert_eq!(body["data"]["details"]["from"], "healthy", "{body}");
    assert!(wait_until(Duration::from_secs(10), || counted(
        &d,
        "page",
        "delivered"
    ) == 1));
}

/// The names of the daemon's notification threads (`notify`,
/// `notify-send-N`), sorted.
fn notify_threads(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("notify"))
        .collect();
    names.sort();
    names
}

/// `notify_threads` once it is `want` (a new thread names itself once it
/// runs: read at once, its name may still be the parent's), or at 10 s.
fn notify_threads_become(d: &Daemon, want: &[&str]) -> Vec<String> {
    let mut names = notify_threads(d);
    wait_until(Duration::from_secs(10), || {
        names = notify_threads(d);
        names == want
    });
    names
}

#[test]
fn the_notification_threads_start_with_the_first_target() {
    let mut d = Daemon::start();
    let running = ["notify", "notify-send-0", "notify-send-1"];
    // no target: no threads, and a process that cannot start goes unreported
    let (status, _) = crate::util::add(&d, json!({"id": "bad", "command": "/nonexistent/x"}));
    assert_eq!(status, 400);
    assert_eq!(d.post("/notify/test/ops", "").status, 404);
    assert_eq!(put_ok(&d, &json!([]))["targets"], json!([]));
    assert!(notify_threads(&d).is_empty(), "{:?}", notify_threads(&d));
    // the first target starts them, and is sent to
    let out = d.tmp().join("test.json");
    put_ok(
        &d,
        &json!([{"name": "ops", "command": ["sh", "-c", format!("cat > {}", out.display())]}]),
    );
    assert_eq!(notify_threads_become(&d, &running), running);
    assert_eq!(d.post("/notify/test/ops", "").status, 200);
    assert!(wait_until(Duration::from_secs(10), || counted(
        &d,
        "ops",
        "delivered"
    ) == 1));
    let body: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(body["type"], "test");
    assert_eq!(d.get("/notify").json()["targets"][0]["name"], "ops");
    // a notification queued on disk starts them at boot without a target
    let port = free_port();
    put_ok(
        &d,
        &json!([{"name": "later", "webhook": format!("http://127.0.0.1:{port}/x")}]),
    );
    assert_eq!(d.post("/notify/test/later", "").status, 200);
    assert!(wait_until(Duration::from_secs(10), || counted(
        &d, "later", "failed"
    ) == 1));
    put_ok(&d, &json!([]));
    let queue = d.data_dir().join("notify-queue").join("later");
    // Queued items only: a rewrite after a failed try passes through a
    // `.json.tmp` file for a moment.
    let queued = || {
        std::fs::read_dir(&queue).map_or(0, |r| {
            r.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
    };
    assert_eq!(queued(), 1);
    d.kill9();
    d.start_again();
    assert_eq!(notify_threads_become(&d, &running), running);
    // ... which drops it, its target being gone (as before)
    assert!(wait_until(Duration::from_secs(10), || queued() == 0));
    // no target and an empty outbox: none at boot
    d.kill9();
    d.start_again();
    assert!(notify_threads(&d).is_empty(), "{:?}", notify_threads(&d));
}
