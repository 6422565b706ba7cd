//! API calls the tests make again and again: add, status, logs, and waiting for a
//! status or a log line.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Daemon, wait_until};

/// POST /add; returns the status and the JSON body.
pub fn add(d: &Daemon, spec: Value) -> (u16, Value) {
    let r = d.post_json("/add", &spec);
    (r.status, r.json())
}

/// POST /add that must succeed; returns the process object.
pub fn add_ok(d: &Daemon, spec: Value) -> Value {
    let (status, body) = add(d, spec.clone());
    assert_eq!(status, 200, "add {spec} -> {body}");
    assert_eq!(body["success"], true, "add {spec} -> {body}");
    body["process"].clone()
}

/// `sh -c SCRIPT` as a process spec with the given id.
pub fn sh(id: &str, script: &str) -> Value {
    json!({"id": id, "command": "sh", "args": ["-c", script]})
}

/// GET /status/{id} -> `.process` (panics on a non-200 answer).
pub fn status_of(d: &Daemon, id: &str) -> Value {
    let r = d.get(&format!("/status/{id}"));
    assert_eq!(r.status, 200, "status {id}: {}", r.body);
    r.json()["process"].clone()
}

/// The `status` string of a process.
pub fn state_of(d: &Daemon, id: &str) -> String {
    status_of(d, id)["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Waits until the process has status `want`; returns the process object.
pub fn wait_status(d: &Daemon, id: &str, want: &str, timeout: Duration) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        last = status_of(d, id);
        last["status"] == want
    });
    assert!(
        ok,
        "{id} did not reach status {want} within {timeout:?}: {last}"
    );
    last
}

/// The whole log (GET /logs, page_size 1000) in chronological order (oldest first).
pub fn logs(d: &Daemon, id: &str) -> Vec<String> {
    let page = log_page(d, id, 1, 1000);
    let mut lines: Vec<String> = page["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs array: {page}"))
        .iter()
        .map(|l| l.as_str().expect("log line is a string").to_string())
        .collect();
    lines.reverse();
    lines
}

/// One page of GET /logs/{id} (newest first), which must answer 200.
pub fn log_page(d: &Daemon, id: &str, page: usize, page_size: usize) -> Value {
    let r = d.get(&format!("/logs/{id}?page={page}&page_size={page_size}"));
    assert_eq!(r.status, 200, "logs {id}: {}", r.body);
    r.json()
}

/// Waits until a log line of `id` contains `needle`; returns the log (oldest first).
/// The command that a "started run" line quotes is not searched: a needle
/// the child is to print is in its command too, and would match before the
/// child printed anything.
pub fn wait_log(d: &Daemon, id: &str, needle: &str, timeout: Duration) -> Vec<String> {
    let mut last = Vec::new();
    let ok = wait_until(timeout, || {
        last = logs(d, id);
        last.iter().any(|l| without_command(l).contains(needle))
    });
    assert!(
        ok,
        "{id}: no log line with {needle:?} within {timeout:?}: {last:#?}"
    );
    last
}

/// A log line without the command that a "started run N (pid P): CMD"
/// system line quotes.
fn without_command(line: &str) -> &str {
    match line.find("SYSTEM: started run ") {
        Some(at) => line[at..]
            .find("): ")
            .map_or(line, |end| &line[..at + end + 1]),
        None => line,
    }
}

/// The ids of GET /list, in order.
pub fn ids(d: &Daemon) -> Vec<String> {
    let r = d.get("/list");
    assert_eq!(r.status, 200, "GET /list: {}", r.body);
    r.json()
        .as_array()
        .unwrap_or_else(|| panic!("/list is not an array: {}", r.body))
        .iter()
        .map(|p| p["id"].as_str().unwrap_or("").to_string())
        .collect()
}
