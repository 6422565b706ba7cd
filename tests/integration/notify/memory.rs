//! `max_memory_bytes` (SPEC 4d): three samples in a row over the limit
//! (5 s apart) restart the process through the backoff table, with a
//! SYSTEM line and a `process.oom` notification.

use std::time::Duration;

use serde_json::json;

use super::{counted, put_ok};
use crate::util::Daemon;
use crate::util::{add, add_ok, status_of, wait_log};

#[test]
fn a_process_over_its_memory_limit_is_restarted_and_reported() {
    // Samples 0.5 s apart rather than 5 s: three in a row take 1.5 s.
    let d = Daemon::start_with(&[], &[("EXEIO_TEST_MEMORY_SAMPLE_MS", "500")]);
    let out = d.tmp().join("oom.json");
    put_ok(
        &d,
        &json!([{"name": "mem", "command": ["sh", "-c", format!("cat > {}", out.display())],
                 "events": ["process.oom"]}]),
    );
    // 64 MB touched (a bytes object, not calloc'ed zero pages), limit 16 MB
    add_ok(
        &d,
        json!({"id": "hog", "command": "python3",
               "args": ["-c", "import time\nb = b'x' * (64 * 1024 * 1024)\ntime.sleep(300)"],
               "max_memory_bytes": 16 * 1024 * 1024,
               // restarted after 1 s, not the 22 s of the default table
               "backoff_seconds": [1], "rapid_exit_penalty_seconds": 0}),
    );
    assert_eq!(status_of(&d, "hog")["max_memory_bytes"], 16 * 1024 * 1024);
    let lines = wait_log(
        &d,
        "hog",
        "samples in a row: restarting",
        Duration::from_secs(60),
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SYSTEM:") && l.contains("max_memory_bytes")),
        "{lines:?}"
    );
    wait_log(
        &d,
        "hog",
        "after exceeding max_memory_bytes",
        Duration::from_secs(30),
    );
    assert!(crate::util::wait_until(Duration::from_secs(30), || {
        status_of(&d, "hog")["run_count"].as_u64().unwrap_or(0) >= 2
    }));
    assert!(crate::util::wait_until(
        Duration::from_secs(20),
        || counted(&d, "mem", "delivered") >= 1
    ));
    let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(body["type"], "process.oom");
    assert_eq!(body["data"]["id"], "hog");
    assert_eq!(body["data"]["details"]["reason"], "max_memory_bytes");
    assert!(body["data"]["details"]["bytes"].as_u64().unwrap() > 16 * 1024 * 1024);
    d.post("/stop/hog", "");
}

#[test]
fn a_limit_set_by_update_applies_to_the_running_process() {
    let d = Daemon::start();
    let args = json!([
        "-c",
        "import time\nb = b'x' * (64 * 1024 * 1024)\ntime.sleep(300)"
    ]);
    let first = add_ok(&d, json!({"id": "hog", "command": "python3", "args": args}));
    let pid = first["pid"].clone();
    // the same run takes the limit: no restart, sampled from now on
    let r = d.post_json(
        "/update/hog",
        &json!({"command": "python3", "args": args, "max_memory_bytes": 16 * 1024 * 1024}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["restarted"], false, "{}", r.body);
    assert_eq!(r.json()["process"]["pid"], pid, "{}", r.body);
    wait_log(
        &d,
        "hog",
        "samples in a row: restarting",
        Duration::from_secs(60),
    );
    d.post("/stop/hog", "");
}

#[test]
fn max_memory_bytes_is_validated() {
    let d = Daemon::start();
    let (status, body) = add(
        &d,
        json!({"id": "x", "command": "true", "max_memory_bytes": 1000}),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "max_memory_bytes");
    let (status, body) = add(
        &d,
        json!({"id": "x", "command": "true", "max_memory_bytes": "1G"}),
    );
    assert_eq!(status, 400, "{body}");
}
