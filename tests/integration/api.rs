//! The HTTP surface: authentication, routing errors (404/405), input validation
//! (400/409/413) and the shape of the process object.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

/// Every route that needs the key, with a body that would be valid with it.
const PROTECTED: &[(&str, &str, &str)] = &[
    ("GET", "/list", ""),
    ("GET", "/status/p", ""),
    ("GET", "/logs/p", ""),
    ("GET", "/logs/p?follow=true", ""),
    ("GET", "/metrics", ""),
    (
        "POST",
        "/add",
        r#"{"id":"intruder","command":"sleep","args":["1000"]}"#,
    ),
    ("POST", "/start/p", ""),
    ("POST", "/stop/p", ""),
    ("POST", "/restart/p", ""),
    ("POST", "/remove/p", ""),
    ("POST", "/restart-all", ""),
    ("POST", "/stop-all", ""),
    ("POST", "/input/p", r#"{"input":"x"}"#),
    ("POST", "/clear-log/p", ""),
    ("POST", "/shutdown", ""),
];

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
        let endpoints = v["endpoints"].as_array().expect("endpoints array");
        assert!(endpoints.len() >= 10, "{v}");
    }
}

#[test]
fn protected_routes_refuse_missing_wrong_and_partial_keys() {
    let d = Daemon::start();
    let p = add_ok(&d, json!({"id": "p", "command": "sleep", "args": ["1000"]}));
    let pid = pid_of(&p);
    let bad: &[&[(&str, &str)]] = &[
        &[],
        &[("exeio-api-key", "wrong")],
        &[("exeio-api-key", "tes")],
        &[("exeio-api-key", "testtest")],
        &[("exeio-api-key", "TEST")],
        &[("exeio-api-key", "")],
        &[("Authorization", "Bearer tes")],
        &[("Authorization", "Bearer wrong")],
        &[("Authorization", "test")],
        &[("Authorization", "Basic dGVzdA==")],
    ];
    for (method, path, body) in PROTECTED {
        for headers in bad {
            let body = (!body.is_empty()).then_some(body.as_bytes());
            let r = http(d.addr(), method, path, headers, body);
            assert_eq!(
                r.status, 401,
                "{method} {path} with {headers:?}: {}",
                r.body
            );
            assert_eq!(r.json()["success"], false, "{method} {path}: {}", r.body);
            assert!(!r.message().is_empty(), "{method} {path}: {}", r.body);
        }
    }
    // Nothing happened: no shutdown, no stop, no add.
    assert_eq!(ids(&d), vec!["p".to_string()]);
    let now = status_of(&d, "p");
    assert_eq!(now["status"], "running");
    assert_eq!(pid_of(&now), pid);
    assert!(pid_alive(pid));
}

#[test]
fn both_key_header_forms_work() {
    let d = Daemon::start();
    for headers in [
        [("exeio-api-key", "test")],
        [("Authorization", "Bearer test")],
    ] {
        let r = http(d.addr(), "GET", "/list", &headers, None);
        assert_eq!(r.status, 200, "{headers:?}: {}", r.body);
        assert_eq!(r.json(), json!([]));
    }
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let d = Daemon::start();
    add_ok(&d, json!({"id": "p", "command": "sleep", "args": ["1000"]}));
    for (method, path, want) in [
        ("GET", "/nope", 404),
        ("POST", "/nope/p", 404),
        ("GET", "/add", 405),
        ("POST", "/list", 405),
        ("GET", "/stop/p", 405),
        ("POST", "/status/p", 405),
        ("GET", "/shutdown", 405),
    ] {
        let r = d.request(method, path, None);
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["success"], false, "{method} {path}: {}", r.body);
        assert!(!r.message().is_empty(), "{method} {path}: {}", r.body);
    }
    assert_eq!(state_of(&d, "p"), "running");
}

#[test]
fn unknown_ids_are_404() {
    let d = Daemon::start();
    for (method, path, body) in [
        ("POST", "/start/ghost", ""),
        ("POST", "/stop/ghost", ""),
        ("POST", "/restart/ghost", ""),
        ("POST", "/remove/ghost", ""),
        ("GET", "/status/ghost", ""),
        ("GET", "/logs/ghost", ""),
        ("POST", "/input/ghost", r#"{"input":"x"}"#),
        ("POST", "/clear-log/ghost", ""),
    ] {
        let body = (!body.is_empty()).then_some(body.as_bytes());
        let r = d.request(method, path, body);
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["success"], false);
        assert!(r.message().contains("ghost"), "{method} {path}: {}", r.body);
    }
}

#[test]
fn bad_bodies_are_400_and_change_nothing() {
    let d = Daemon::start();
    for body in [
        r#"{"id": "m1", "#,
        "",
        "[]",
        "null",
        r#"{"id":"m2","command":"true","auto_restart":"yes"}"#,
        r#"{"id":"m3","command":"true","args":"-x"}"#,
        r#"{"id":"m4"}"#,
        r#"{"command":"true"}"#,
        r#"{"id":"m5","command":"true","restart_policy":"sometimes"}"#,
        r#"{"id":"m6","command":"true","env":{"A":1}}"#,
        r#"{"id":"m7","command":"true","stop_signal":"NOPE"}"#,
    ] {
        let r = d.post("/add", body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["success"], false, "{body}");
        assert!(!r.message().is_empty(), "{body}: {}", r.body);
    }
    assert!(ids(&d).is_empty());
}

#[test]
fn unknown_fields_are_400_naming_the_field() {
    let d = Daemon::start();
    for (body, field) in [
        (r#"{"id":"u1","command":"true","colour":"red"}"#, "colour"),
        (
            r#"{"id":"u2","command":"true","auto_restrat":true}"#,
            "auto_restrat",
        ),
    ] {
        let r = d.post("/add", body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(r.message().contains(field), "{body}: {}", r.body);
    }
    assert!(ids(&d).is_empty());
}

#[test]
fn invalid_ids_are_400() {
    let d = Daemon::start();
    let long = "a".repeat(65);
    for id in [
        "a/b",
        "..",
        ".",
        ".hidden",
        &long,
        "exeio",
        "",
        "a b",
        "../x",
        "caf\u{e9}",
        "a\\b",
    ] {
        let (status, body) = add(&d, json!({"id": id, "command": "true"}));
        assert_eq!(status, 400, "id {id:?}: {body}");
        assert_eq!(body["success"], false);
    }
    assert!(ids(&d).is_empty());
    // Ids in a path never reach outside the logs dir (<tmp>/data/logs).
    std::fs::write(d.config_dir().join("secret.log"), "SECRET-CONTENT\n").unwrap();
    for path in [
        "/status/..",
        "/logs/..%2F..%2Fconfig%2Fsecret",
        "/logs/%2e%2e%2f%2e%2e%2fconfig%2fsecret",
        "/logs/%2e%2e",
        "/status/.hidden",
    ] {
        let r = d.get(path);
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.body);
        assert!(!r.body.contains("SECRET-CONTENT"), "{path}: {}", r.body);
    }
    // The longest and most varied valid ids are accepted.
    let max = "b".repeat(64);
    for id in [max.as_str(), "A-b_c.9"] {
        let p = add_ok(&d, json!({"id": id, "command": "sleep", "args": ["1000"]}));
        assert_eq!(p["id"], id);
    }
}

#[test]
fn duplicate_ids_are_409() {
    let d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "dup", "command": "sleep", "args": ["1000"]}),
    );
    let (status, body) = add(&d, json!({"id": "dup", "command": "true"}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["success"], false);
    let p = status_of(&d, "dup");
    assert_eq!(p["command"], "sleep");
    assert_eq!(p["status"], "running");
    // Still a conflict once the first one is stopped.
    assert_eq!(d.post("/stop/dup", "").status, 200);
    let (status, _) = add(&d, json!({"id": "dup", "command": "true"}));
    assert_eq!(status, 409);
}

/// Sends a POST /add whose body is `len` bytes: a valid spec padded with spaces.
fn post_sized(d: &Daemon, id: &str, len: usize) -> Response {
    let mut body = format!(r#"{{"id":"{id}","command":"sleep","args":["1000"]}}"#).into_bytes();
    body.resize(len, b' ');
    let mut s = TcpStream::connect(d.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let key = d.key.clone();
    write_head(
        &mut s,
        "POST",
        "/add",
        &[("exeio-api-key", &key)],
        Some(body.len()),
    );
    // The server may answer 413 before reading it all: write from another thread and
    // ignore a broken pipe there.
    let mut w = s.try_clone().expect("clone socket");
    let writer = thread::spawn(move || {
        let _ = w.write_all(&body);
    });
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let _ = writer.join();
    assert!(!raw.is_empty(), "no answer to a {len}-byte body: {read:?}");
    parse_response(&raw)
}

#[test]
fn bodies_over_one_mib_are_413() {
    let d = Daemon::start();
    let r = post_sized(&d, "big", 1024 * 1024 + 1);
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["success"], false);
    let r = post_sized(&d, "huge", 8 * 1024 * 1024);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(ids(&d).is_empty());
    // Exactly 1 MiB is not over the cap.
    let r = post_sized(&d, "edge", 1024 * 1024);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ids(&d), vec!["edge".to_string()]);
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
            "No such file or directory",
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
    assert!(std::path::Path::new(&log_file).exists());
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

#[test]
fn a_chunked_body_over_one_mib_is_413() {
    let d = Daemon::start();
    let mut s = TcpStream::connect(d.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /add HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         exeio-api-key: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        d.key
    );
    let mut w = s.try_clone().expect("clone socket");
    let writer = thread::spawn(move || {
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        let _ = w.write_all(head.as_bytes());
        let _ = w.write_all(b"1\r\n{\r\n");
        for _ in 0..40 {
            if w.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
        let _ = w.write_all(b"0\r\n\r\n");
    });
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let _ = writer.join();
    assert!(
        !raw.is_empty(),
        "no answer to a chunked 2.5 MiB body: {read:?}"
    );
    assert_eq!(parse_response(&raw).status, 413);
    assert!(ids(&d).is_empty());
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
