//! The HTTP surface: authentication, routing errors (404/405), input validation
//! (400/409/413) and the shape of the process object.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

/// Every route that needs the key, with a body that would be valid with it.
#[test]
fn info_is_open_and_describes_the_server() {
    let d = Daemon::start();
    for headers in [vec![], vec![("exeio-api-key", "wrong")]] {
        let r = http(d.addr(), "GET", "/info", &headers, None);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["success"], true);
        assert_eq!(v["name"], "exeio");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert!(v["uptime_seconds"].is_number(), "{v}");
        let endpoints: Vec<&str> = v["endpoints"]
            .as_array()
            .expect("endpoints array")
            .iter()
            .filter_map(|e| e.as_str())
            .collect();
        let table: Vec<String> = exeio::api::routes::ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(endpoints, table, "/info lists exactly the route table");
    }
}

#[test]
fn failed_spawns_are_400_with_the_os_error_and_leave_nothing() {
    let d = Daemon::start();
    let noexec = d.tmp().join("noexec.sh");
    std::fs::write(&noexec, "#!/bin/sh\necho hi\n").unwrap();
    let cases = [
        (
            json!({"id": "nf", "command": "/nonexistent/definitely-not-here",
                   "save_for_next_run": true}),
            "No such file or directory",
        ),
        (
            json!({"id": "nf", "command": "definitely-not-a-command-xyz"}),
            "not found in PATH (",
        ),
        (
            json!({"id": "nf", "command": noexec.display().to_string()}),
            "Permission denied",
        ),
        (
            json!({"id": "nf", "command": "sleep", "args": ["1000"],
                   "working_dir": "/nonexistent/dir"}),
            "No such file or directory",
        ),
    ];
    for (spec, os_error) in cases {
        let (status, body) = add(&d, spec.clone());
        assert_eq!(status, 400, "{spec}: {body}");
        assert_eq!(body["success"], false);
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.contains(os_error), "{spec}: {msg:?} lacks {os_error:?}");
        assert!(ids(&d).is_empty(), "{spec} left a process behind");
        assert_eq!(d.get("/status/nf").status, 404);
    }
    if let Ok(saved) = std::fs::read_to_string(d.processes_json()) {
        assert!(!saved.contains("\"nf\""), "failed add was saved: {saved}");
    }
    // The id is still free.
    let p = add_ok(
        &d,
        json!({"id": "nf", "command": "sleep", "args": ["1000"]}),
    );
    assert_eq!(p["status"], "running");
}

const FIELDS: &[&str] = &[
    "id",
    "command",
    "args",
    "working_dir",
    "env",
    "status",
    "is_running",
    "pid",
    "auto_restart",
    "restart_policy",
    "max_restarts",
    "save_for_next_run",
    "periodic",
    "period_seconds",
    "stop_signal",
    "stop_timeout_seconds",
    "run_count",
    "restart_count",
    "last_run",
    "last_exit",
    "next_run_in_seconds",
    "uptime_seconds",
    "cpu_percent",
    "rss_bytes",
    "log_file",
    "error",
];

fn assert_has_fields(p: &Value) {
    let obj = p
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {p}"));
    for f in FIELDS {
        assert!(obj.contains_key(*f), "process object lacks {f:?}: {p}");
    }
}

#[test]
fn process_object_has_every_contract_field_with_defaults() {
    let d = Daemon::start();
    let added = add_ok(&d, json!({"id": "p", "command": "sleep", "args": ["1000"]}));
    assert_has_fields(&added);
    let p = status_of(&d, "p");
    assert_has_fields(&p);
    assert_eq!(p["id"], "p");
    assert_eq!(p["command"], "sleep");
    assert_eq!(p["args"], json!(["1000"]));
    assert_eq!(p["working_dir"], Value::Null);
    assert_eq!(p["env"], json!({}));
    assert_eq!(p["status"], "running");
    assert_eq!(p["is_running"], true);
    assert!(pid_alive(pid_of(&p)));
    assert_eq!(p["auto_restart"], false);
    assert_eq!(p["restart_policy"], "never");
    assert_eq!(p["max_restarts"], Value::Null);
    assert_eq!(p["save_for_next_run"], false);
    assert_eq!(p["periodic"], false);
    assert_eq!(p["period_seconds"], Value::Null);
    assert_eq!(p["stop_signal"], "TERM");
    assert_eq!(p["stop_timeout_seconds"], 10);
    assert_eq!(p["run_count"], 1);
    assert_eq!(p["restart_count"], 0);
    let last_run = p["last_run"].as_str().unwrap_or("");
    assert!(is_rfc3339_utc(last_run), "last_run {last_run:?}");
    assert_eq!(p["last_exit"], Value::Null);
    assert_eq!(p["next_run_in_seconds"], Value::Null);
    assert!(
        p["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0),
        "{p}"
    );
    assert_eq!(p["error"], Value::Null);
    let log_file = d.logs_dir().join("p.log").display().to_string();
    assert_eq!(p["log_file"], log_file.as_str());
    // The child's thread writes its first line at once.
    assert!(wait_until(SHORT, || std::path::Path::new(&log_file).exists()));
    // rss is sampled from /proc: it becomes a positive number.
    let sampled = wait_until(SHORT, || {
        let p = status_of(&d, "p");
        p["rss_bytes"].as_u64().is_some_and(|r| r > 0) && p["cpu_percent"].is_number()
    });
    assert!(sampled, "no rss/cpu sample: {}", status_of(&d, "p"));
    // /list carries the same objects.
    let list = d.get("/list").json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_has_fields(&list[0]);
    assert_eq!(list[0]["pid"], p["pid"]);
}

#[test]
fn process_object_echoes_every_option() {
    let d = Daemon::start();
    let wd = d.tmp().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    let spec = json!({
        "id": "full", "command": "sleep", "args": ["1000"],
        "working_dir": wd.display().to_string(), "env": {"FOO": "bar"},
        "auto_restart": true, "restart_policy": "on-failure", "max_restarts": 5,
        "save_for_next_run": true, "stop_signal": "INT", "stop_timeout_seconds": 3,
        "log_max_bytes": 100000, "log_backups": 2
    });
    let p = add_ok(&d, spec);
    assert_eq!(p["working_dir"], wd.display().to_string().as_str());
    assert_eq!(p["env"], json!({"FOO": "bar"}));
    assert_eq!(p["auto_restart"], true);
    assert_eq!(p["restart_policy"], "on-failure");
    assert_eq!(p["max_restarts"], 5);
    assert_eq!(p["save_for_next_run"], true);
    assert_eq!(p["stop_signal"], "INT");
    assert_eq!(p["stop_timeout_seconds"], 3);
    // auto_restart alone defaults to "always"; periodic reads "never".
    let p = add_ok(
        &d,
        json!({"id": "ar", "command": "sleep", "args": ["1000"], "auto_restart": true}),
    );
    assert_eq!(p["restart_policy"], "always");
    let p = add_ok(
        &d,
        json!({"id": "per", "command": "true", "periodic": true, "period_seconds": 60,
               "auto_restart": true}),
    );
    assert_eq!(p["restart_policy"], "never");
    assert_eq!(p["periodic"], true);
    assert_eq!(p["period_seconds"], 60);
}

#[test]
fn metrics_are_prometheus_text_per_process() {
    let d = Daemon::start();
    add_ok(&d, json!({"id": "m", "command": "sleep", "args": ["1000"]}));
    let r = d.get("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    let ctype = r.header("content-type").unwrap_or("");
    assert!(ctype.starts_with("text/plain"), "content-type {ctype:?}");
    let samples: Vec<&str> = r
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("\"m\""))
        .collect();
    assert!(
        samples.len() >= 4,
        "want up/restarts/cpu/rss for m: {}",
        r.body
    );
    assert!(r.body.contains("# TYPE"), "{}", r.body);
}

#[test]
fn bad_log_queries_are_400() {
    let d = Daemon::start();
    add_ok(&d, json!({"id": "q", "command": "true"}));
    for q in ["page=0", "page=abc", "page_size=0", "page_size=-1"] {
        let r = d.get(&format!("/logs/q?{q}"));
        assert_eq!(r.status, 400, "{q}: {}", r.body);
    }
}

/// The README's curl examples (examples/curl-examples.sh) run as written
/// against a live exeio and leave nothing behind.
#[test]
fn the_readme_curl_examples_work() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed for this test (.ci/run installs it)");
    }
    let d = Daemon::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/curl-examples.sh");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(script)
        .env("EXEIO_URL", format!("http://{}", d.addr()))
        .env("EXEIO_API_KEY", KEY);
    let out = run_to_end(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "curl-examples.sh failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let list = d.get("/list");
    assert_eq!(list.status, 200);
    assert_eq!(list.body.trim(), "[]", "the script left processes behind");
}
