//! Family 1, bad input: every malformed or invalid request is refused with the
//! right status and a message naming the problem, and changes nothing (no new file
//! anywhere under the daemon's dirs, `/list` unchanged, no other process touched).

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, Daemon, add_ok, ids, sh, wait_log, wait_status};
use crate::util::{Table, daemon_with_key, short};

const KEY: &str = "k3y-SECRET-123";

/// (case, method, path) rows.
type Routes = &'static [(&'static str, &'static str, &'static str)];

/// POST /add bodies that must get 400: (case, body, text the message must contain).
#[rustfmt::skip]
const ADD_400: &[(&str, &str, &str)] = &[
    ("malformed: truncated", r#"{"id":"a","command":"#, "json"),
    ("malformed: not json", "not json at all", "json"),
    ("malformed: empty body", "", "json"),
    ("malformed: null", "null", "json"),
    ("malformed: trailing garbage", r#"{"id":"a","command":"true"} x"#, "json"),
    ("wrong type: id number", r#"{"id":1,"command":"true"}"#, "expected a string"),
    ("wrong type: command array", r#"{"id":"a","command":["true"]}"#, "expected a string"),
    ("wrong type: args string", r#"{"id":"a","command":"true","args":"-x"}"#, "expected a sequence"),
    ("wrong type: args of numbers", r#"{"id":"a","command":"true","args":[1]}"#, "expected a string"),
    ("wrong type: auto_restart string", r#"{"id":"a","command":"true","auto_restart":"yes"}"#, "expected a boolean"),
    ("wrong type: period_seconds string", r#"{"id":"a","command":"true","periodic":true,"period_seconds":"5"}"#, "expected u64"),
    ("wrong type: env value number", r#"{"id":"a","command":"true","env":{"A":1}}"#, "expected a string"),
    ("wrong type: working_dir number", r#"{"id":"a","command":"true","working_dir":5}"#, "expected a string"),
    ("wrong type: stop_timeout negative", r#"{"id":"a","command":"true","stop_timeout_seconds":-1}"#, "expected u64"),
    ("missing: id", r#"{"command":"true"}"#, "missing field `id`"),
    ("missing: command", r#"{"id":"a"}"#, "missing field `command`"),
    ("missing: everything", "{}", "missing field"),
    ("unknown field: colour", r#"{"id":"a","command":"true","colour":"red"}"#, "colour"),
    ("unknown field: typo autorestart", r#"{"id":"a","command":"true","autorestart":true}"#, "autorestart"),
    ("empty id", r#"{"id":"","command":"true"}"#, "id"),
    ("whitespace id", r#"{"id":"  ","command":"true"}"#, "id"),
    ("empty command", r#"{"id":"a","command":""}"#, "command"),
    ("whitespace command", r#"{"id":"a","command":" \t "}"#, "command"),
    ("id with slash", r#"{"id":"a/b","command":"true"}"#, "id"),
    ("id dot-dot", r#"{"id":"..","command":"true"}"#, "id"),
    ("id dot-dot slash", r#"{"id":"../escape","command":"true"}"#, "id"),
    ("id absolute path", r#"{"id":"/tmp/escape","command":"true"}"#, "id"),
    ("id with NUL", r#"{"id":"a\u0000b","command":"true"}"#, "id"),
    ("id with space", r#"{"id":"a b","command":"true"}"#, "id"),
    ("id non-ascii", r#"{"id":"caf\u00e9","command":"true"}"#, "id"),
    ("id with backslash", r#"{"id":"a\\b","command":"true"}"#, "id"),
    ("id leading dot", r#"{"id":".hidden","command":"true"}"#, "id"),
    ("id 65 chars", r#"{"id":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","command":"true"}"#, "64"),
    ("id exeio (reserved)", r#"{"id":"exeio","command":"true"}"#, "exeio"),
    ("id audit (reserved)", r#"{"id":"audit","command":"true"}"#, "audit log"),
    ("period_seconds 0", r#"{"id":"a","command":"true","periodic":true,"period_seconds":0}"#, "period_seconds"),
    ("period_seconds -1", r#"{"id":"a","command":"true","periodic":true,"period_seconds":-1}"#, "-1"),
    ("period_seconds 10^12", r#"{"id":"a","command":"true","periodic":true,"period_seconds":1000000000000}"#, "period_seconds"),
    ("period_seconds float", r#"{"id":"a","command":"true","periodic":true,"period_seconds":1.5}"#, "1.5"),
    ("periodic without period", r#"{"id":"a","command":"true","periodic":true}"#, "period_seconds"),
    ("stop_signal BOGUS", r#"{"id":"a","command":"true","stop_signal":"BOGUS"}"#, "stop_signal"),
    ("stop_signal empty", r#"{"id":"a","command":"true","stop_signal":""}"#, "stop_signal"),
    ("restart_policy unknown", r#"{"id":"a","command":"true","restart_policy":"sometimes"}"#, "sometimes"),
    ("command not found", r#"{"id":"a","command":"/nonexistent/exeio-no-such-cmd"}"#, "os error"),
    ("working_dir missing", r#"{"id":"a","command":"true","working_dir":"/nonexistent/exeio-dir"}"#, "os error"),
];

#[test]
fn bad_add_bodies_are_400_and_change_nothing() {
    let d = Daemon::start();
    add_ok(&d, sh("keep", "sleep 1000"));
    // Its log file appears with its first line: wait for it, or the first row
    // would see it as new.
    wait_log(&d, "keep", "started run", util::SHORT);
    // The add is audited by the logger thread, which creates audit.log.
    let audit = d.logs_dir().join("audit.log");
    assert!(util::wait_until(util::SHORT, || audit.exists()));
    let mut t = Table::new("input");
    for &(name, body, needle) in ADD_400 {
        // Each row is compared with the state just before it, so one wrong
        // answer does not spill into the rows after it.
        let list_before = ids(&d);
        let tree_before = util::tree(d.tmp());
        let r = d.post("/add", body);
        let msg = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        let names_it = msg.to_lowercase().contains(&needle.to_lowercase());
        let created = util::new_paths(&tree_before, &util::tree(d.tmp()));
        let list = ids(&d);
        let got = format!(
            "{} message={msg:?} new files={created:?} list={list:?}",
            r.status
        );
        let ok = r.status == 400 && names_it && created.is_empty() && list == list_before;
        t.row(
            name,
            &format!("400 naming {needle:?}, nothing created"),
            &got,
            ok,
        );
        for id in list.iter().filter(|id| !list_before.contains(id)) {
            d.post(&format!("/remove/{id}"), "");
        }
        for p in &created {
            let _ = std::fs::remove_file(d.tmp().join(p));
        }
    }
    t.finish();
}

#[test]
fn boundary_ids_are_accepted() {
    let d = Daemon::start();
    let mut t = Table::new("input");
    let long = "y".repeat(64);
    for (name, id) in [("id 64 chars", long.as_str()), ("id ._- chars", "A.b_c-9")] {
        let r = d.post_json("/add", &sh(id, "sleep 1000"));
        t.row(
            name,
            "200",
            &format!("{} {}", r.status, short(&r.body)),
            r.status == 200,
        );
    }
    t.finish();
}

#[test]
fn duplicate_id_is_409_and_keeps_the_original() {
    let d = Daemon::start();
    let first = add_ok(&d, sh("dup", "sleep 1000"));
    let mut t = Table::new("input");
    for (name, body) in [
        ("duplicate id, same spec", sh("dup", "sleep 1000")),
        ("duplicate id, other command", sh("dup", "echo other")),
    ] {
        let r = d.post_json("/add", &body);
        let now = util::status_of(&d, "dup");
        let same = now["pid"] == first["pid"] && now["args"] == first["args"];
        let got = format!("{} {} same process={same}", r.status, short(&r.body));
        t.row(
            name,
            "409, original untouched",
            &got,
            r.status == 409 && same,
        );
    }
    t.finish();
}

/// Every per-id endpoint, with an id nobody added: (case, method, path).
#[rustfmt::skip]
const UNKNOWN_ID: &[(&str, &str, &str)] = &[
    ("start unknown", "POST", "/start/ghost"),
    ("restart unknown", "POST", "/restart/ghost"),
    ("stop unknown", "POST", "/stop/ghost"),
    ("remove unknown", "POST", "/remove/ghost"),
    ("status unknown", "GET", "/status/ghost"),
    ("logs unknown", "GET", "/logs/ghost"),
    ("logs page unknown", "GET", "/logs/ghost?page=2&page_size=10"),
    ("logs follow unknown", "GET", "/logs/ghost?follow=true"),
    ("input unknown", "POST", "/input/ghost"),
    ("clear-log unknown", "POST", "/clear-log/ghost"),
];

#[rustfmt::skip]
const WRONG_METHOD: &[(&str, &str, &str)] = &[
    ("GET /add", "GET", "/add"),
    ("POST /list", "POST", "/list"),
    ("PUT /status/x", "PUT", "/status/x"),
    ("DELETE /stop/x", "DELETE", "/stop/x"),
    ("GET /start/x", "GET", "/start/x"),
    ("GET /restart-all", "GET", "/restart-all"),
    ("GET /stop-all", "GET", "/stop-all"),
    ("GET /shutdown", "GET", "/shutdown"),
    ("POST /info", "POST", "/info"),
    ("POST /metrics", "POST", "/metrics"),
    ("POST /logs/x", "POST", "/logs/x"),
    ("GET /input/x", "GET", "/input/x"),
    ("PATCH /clear-log/x", "PATCH", "/clear-log/x"),
];

#[rustfmt::skip]
const UNKNOWN_PATH: &[(&str, &str, &str)] = &[
    ("root with a method it lacks", "PUT", "/ui/x/y"),
    ("nope", "GET", "/nope"),
    ("trailing slash", "GET", "/list/"),
    ("upper case", "GET", "/LIST"),
    ("add with id", "POST", "/add/x"),
    ("stop without id", "POST", "/stop"),
    ("two segments", "POST", "/stop/a/b"),
    ("info with id", "GET", "/info/x"),
    ("double slash", "GET", "//list"),
    ("deep path", "GET", "/a/b/c/d/e/f"),
];

#[test]
fn unknown_ids_methods_and_paths() {
    let d = daemon_with_key(KEY);
    let mut t = Table::new("input");
    let families: [(&str, Routes, u16); 3] = [
        ("unknown id: ", UNKNOWN_ID, 404),
        ("wrong method: ", WRONG_METHOD, 405),
        ("unknown path: ", UNKNOWN_PATH, 404),
    ];
    for (prefix, table, want) in families {
        for &(name, method, path) in table {
            let body = (method == "POST").then_some(&br#"{"input":"x"}"#[..]);
            let got = match util::request(d.addr(), method, path, &[("exeio-api-key", KEY)], body) {
                Ok(r) => {
                    let json_err = serde_json::from_str::<Value>(&r.body)
                        .is_ok_and(|v| v["success"] == false && v["message"].is_string());
                    (
                        r.status,
                        format!("{} {}", r.status, short(&r.body)),
                        json_err,
                    )
                }
                Err(e) => (0, e, false),
            };
            let name = format!("{prefix}{name}");
            t.row(
                &name,
                &format!("{want} + JSON error"),
                &got.1,
                got.0 == want && got.2,
            );
        }
    }
    t.finish();
}

/// How an oversized body is sent.
#[derive(Clone, Copy)]
enum Big {
    /// Only the head, with this Content-Length; the body never comes.
    Declared(&'static str),
    /// Chunked, no length, streamed until the server answers (at most 4 MiB).
    Streamed,
}

/// Declared or streamed bodies over 1 MiB: (case, method, path, send the key,
/// how, expected status). A refused request must not make exeio read (or
/// allocate for) the body it declared.
#[rustfmt::skip]
const OVERSIZED: &[(&str, &str, &str, bool, Big, u16)] = &[
    ("add: Content-Length 2000000, head only", "POST", "/add", true, Big::Declared("2000000"), 413),
    ("add: Content-Length 1 MiB + 1, head only", "POST", "/add", true, Big::Declared("1048577"), 413),
    ("input: Content-Length 2000000, head only", "POST", "/input/keep", true, Big::Declared("2000000"), 413),
    ("add: chunked stream over 1 MiB", "POST", "/add", true, Big::Streamed, 413),
    ("input: chunked stream over 1 MiB", "POST", "/input/keep", true, Big::Streamed, 413),
    ("add: Content-Length u64::MAX, head only", "POST", "/add", true, Big::Declared("18446744073709551615"), 413),
];

/// A declared length far beyond memory, body never sent: refused at once, and
/// exeio must not try to allocate (or read) what was declared.
#[rustfmt::skip]
const HUGE_LENGTH: &[(&str, &str, &str, bool, Big, u16)] = &[
    ("add: Content-Length 10^15, head only", "POST", "/add", true, Big::Declared("1000000000000000"), 413),
    ("no key: add with Content-Length 10^15", "POST", "/add", false, Big::Declared("1000000000000000"), 401),
    ("list with Content-Length 10^15 (a body no buffer could hold: 413)", "GET", "/list", true, Big::Declared("1000000000000000"), 413),
    ("unknown path with Content-Length 10^15", "POST", "/nope", true, Big::Declared("1000000000000000"), 404),
];

fn send_big(
    addr: &str,
    method: &str,
    path: &str,
    key: bool,
    how: Big,
) -> Result<(u16, String, Duration), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let began = Instant::now();
    let framing = match how {
        Big::Declared(n) => format!("Content-Length: {n}"),
        Big::Streamed => "Transfer-Encoding: chunked".to_string(),
    };
    let auth = if key {
        format!("exeio-api-key: {KEY}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         {auth}Content-Type: application/json\r\n{framing}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let writer = match how {
        Big::Declared(_) => None,
        Big::Streamed => {
            let mut w = s.try_clone().map_err(|e| e.to_string())?;
            Some(thread::spawn(move || {
                let chunk = vec![b'a'; 64 * 1024];
                for _ in 0..64 {
                    let sent = write!(w, "{:x}\r\n", chunk.len())
                        .and_then(|_| w.write_all(&chunk))
                        .and_then(|_| w.write_all(b"\r\n"));
                    if sent.is_err() {
                        break;
                    }
                }
            }))
        }
    };
    // The server's own body timeout is 10 s: an answer well before it proves
    // that it did not wait for the declared body.
    let resp = util::read_response(&mut s, Instant::now() + Duration::from_secs(8));
    let took = began.elapsed();
    drop(s);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let r = resp?;
    Ok((r.status, r.body, took))
}

/// Runs a table of oversized requests; a row that kills exeio is judged, then
/// the next rows get a fresh run.
fn oversized(table: &[(&str, &str, &str, bool, Big, u16)], watch: Duration) {
    let mut d = daemon_with_key(KEY);
    add_ok(&d, sh("keep", "cat"));
    let mut t = Table::new("input");
    for &(name, method, path, key, how, want) in table {
        let pid = d.pid();
        let got = send_big(d.addr(), method, path, key, how);
        // A crash after the answer (while dropping the unread body) takes a
        // moment to show: watch for it before judging the row.
        let died = util::wait_until(watch, || !util::pid_alive(pid));
        let alive = !died
            && util::request(d.addr(), "GET", "/info", &[], None).is_ok_and(|r| r.status == 200);
        let (ok, text) = match &got {
            Ok((status, body, took)) => (
                *status == want && alive,
                format!("{status} in {took:?} {} exeio alive={alive}", short(body)),
            ),
            Err(e) => (false, format!("{e}; exeio alive={alive}")),
        };
        t.row(
            name,
            &format!("{want} before the body, exeio alive"),
            &text,
            ok,
        );
        if !alive {
            d.wait_exit(util::SHORT);
            d.start_again();
            add_ok(&d, sh("keep", "cat"));
        }
    }
    t.finish();
}

#[test]
fn oversized_bodies_are_413_without_reading_them() {
    oversized(OVERSIZED, Duration::from_secs(1));
}

#[test]
fn a_huge_declared_length_does_not_kill_exeio() {
    oversized(HUGE_LENGTH, Duration::from_secs(2));
}

/// Bodies that are JSON but not an object (serde would read a struct from an
/// array, field by field) and other bad /input bodies: (case, path, body, status).
#[rustfmt::skip]
const NOT_AN_OBJECT: &[(&str, &str, &str, u16)] = &[
    ("add: JSON array [id, command]", "/add", r#"["arr","true"]"#, 400),
    ("add: JSON array of one", "/add", r#"["arr"]"#, 400),
    ("input: JSON array [text]", "/input/cat", r#"["x"]"#, 400),
];

#[rustfmt::skip]
const INPUT_BODIES: &[(&str, &str, &str, u16)] = &[
    ("input: valid (control)", "/input/cat", r#"{"input":"hello"}"#, 200),
    ("input: wrong type", "/input/cat", r#"{"input":1}"#, 400),
    ("input: unknown field", "/input/cat", r#"{"input":"x","extra":1}"#, 400),
    ("input: missing input", "/input/cat", "{}", 400),
    ("input: not JSON", "/input/cat", "hello", 400),
    ("input: to a stopped process", "/input/done", r#"{"input":"x"}"#, 409),
];

fn bodies(table: &[(&str, &str, &str, u16)]) {
    let d = Daemon::start();
    add_ok(&d, sh("cat", "exec cat"));
    add_ok(&d, sh("done", "exit 0"));
    wait_status(&d, "done", "stopped", util::SHORT);
    let mut t = Table::new("input");
    for &(name, path, body, want) in table {
        let before = ids(&d);
        let r = d.post(path, body);
        let after = ids(&d);
        let got = format!("{} {} list={after:?}", r.status, short(&r.body));
        t.row(
            name,
            &format!("{want}, list unchanged"),
            &got,
            r.status == want && after == before,
        );
    }
    t.finish();
}

#[test]
fn input_bodies_are_checked() {
    bodies(INPUT_BODIES);
}

#[test]
fn bodies_that_are_not_json_objects_are_400() {
    bodies(NOT_AN_OBJECT);
}

/// Paths that try to reach another process, the supervisor's log or a file
/// outside the logs dir: (case, method, path, expected status).
#[rustfmt::skip]
const TRICKS: &[(&str, &str, &str, u16)] = &[
    ("status ..%2Fexeio", "GET", "/status/..%2Fexeio", 404),
    ("logs %2e%2e%2fapi-key", "GET", "/logs/%2e%2e%2fapi-key", 404),
    ("logs ..%2F..%2Fconfig%2Fapi-key", "GET", "/logs/..%2F..%2Fconfig%2Fapi-key", 404),
    ("logs a?page=1/../../x", "GET", "/logs/a?page=1/../../x", 400),
    ("logs victim?page=1/../../x", "GET", "/logs/victim?page=1/../../x", 400),
    ("status a%00b", "GET", "/status/a%00b", 404),
    ("status victim%00", "GET", "/status/victim%00", 404),
    ("logs exeio (supervisor log)", "GET", "/logs/exeio", 404),
    ("logs %65xeio (encoded exeio)", "GET", "/logs/%65xeio", 404),
    ("logs victim%2F..%2Fexeio", "GET", "/logs/victim%2F..%2Fexeio", 404),
    ("logs double-encoded dots", "GET", "/logs/%252e%252e%252fapi-key", 404),
    ("logs %2e%2e", "GET", "/logs/%2e%2e", 404),
    ("logs victim%3Fpage=1", "GET", "/logs/victim%3Fpage=1", 404),
    ("logs victim%2Flog", "GET", "/logs/victim%2Flog", 404),
    ("status victim%20", "GET", "/status/victim%20", 404),
    ("status victim/../other", "GET", "/status/victim/../other", 404),
    ("status bad escape %zz", "GET", "/status/%zz", 404),
    ("status truncated escape %2", "GET", "/status/victim%2", 404),
    ("clear-log ..%2Fapi-key", "POST", "/clear-log/..%2Fapi-key", 404),
    ("clear-log ..%2F..%2Fconfig%2Fapi-key", "POST", "/clear-log/..%2F..%2Fconfig%2Fapi-key", 404),
    ("stop victim%2F..", "POST", "/stop/victim%2F..", 404),
    ("remove .%2Fvictim", "POST", "/remove/.%2Fvictim", 404),
    ("input victim%00", "POST", "/input/victim%00", 404),
];

const MARKER: &str = "MARKER-CONTENT-7f3a";

#[test]
fn path_tricks_reach_no_other_process_or_file() {
    let d = daemon_with_key(KEY);
    let victim = add_ok(&d, sh("victim", "echo VICTIM-LINE; exec sleep 1000"));
    wait_log(&d, "victim", "VICTIM-LINE", util::SHORT);
    let markers = [
        d.data_dir().join("api-key.log"),
        d.data_dir().join("api-key"),
        d.config_dir().join("api-key.log"),
        d.config_dir().join("api-key"),
    ];
    for m in &markers {
        std::fs::write(m, format!("{MARKER}\n")).expect("write marker file");
    }
    let mut t = Table::new("input");
    for &(name, method, path, want) in TRICKS {
        let body = (method == "POST").then_some(&br#"{"input":"x"}"#[..]);
        let got = util::request(d.addr(), method, path, &[("exeio-api-key", KEY)], body);
        let (ok, text) = match got {
            Ok(r) => {
                let leak = [MARKER, KEY, "VICTIM-LINE"]
                    .into_iter()
                    .find(|s| r.body.contains(s));
                (
                    r.status == want && leak.is_none(),
                    format!("{} leak={leak:?} {}", r.status, short(&r.body)),
                )
            }
            Err(e) => (false, e),
        };
        t.row(name, &format!("{want}, nothing leaked"), &text, ok);
    }
    let intact = markers
        .iter()
        .all(|m| std::fs::read_to_string(m).is_ok_and(|s| s.contains(MARKER)));
    t.row(
        "marker files intact",
        "unchanged",
        &format!("{intact}"),
        intact,
    );
    let now = wait_status(&d, "victim", "running", util::SHORT);
    let same = now["pid"] == victim["pid"];
    t.row(
        "victim untouched",
        "same pid, running",
        &format!("{}", now["pid"]),
        same,
    );
    let lines = util::logs(&d, "victim");
    let kept = lines.iter().any(|l| l.contains("VICTIM-LINE"));
    t.row(
        "victim log intact",
        "VICTIM-LINE kept",
        &format!("{kept}"),
        kept,
    );
    t.finish();
}
