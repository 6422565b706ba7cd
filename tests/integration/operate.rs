//! What an operator coming from pm2 or supervisord needs (issue "The exeio
//! command", points 2 to 6, through the API): update in place, apply,
//! tail-style logs, restart timing, running as another user, and hygiene.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;

use serde_json::{Value, json};

use crate::util::{
    self, Daemon, Options, TempDir, add_ok, pid_of, sh, status_of, wait_log, wait_status,
    wait_until,
};

fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": "sleep", "args": ["1000"]})
}

#[test]
fn update_restarts_only_when_what_it_runs_changed() {
    let d = Daemon::start();
    let old = pid_of(&add_ok(&d, sleeper("u")));
    // Policy, limits and log settings: no restart.
    let r = d.post_json(
        "/update/u",
        &json!({"command": "sleep", "args": ["1000"], "auto_restart": true, "stop_timeout_seconds": 3, "log_backups": 2}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["restarted"], false);
    assert_eq!(pid_of(&body["process"]), old);
    assert_eq!(body["process"]["restart_policy"], "always");
    assert_eq!(body["process"]["stop_timeout_seconds"], 3);
    // The same again: unchanged.
    let r = d.post_json(
        "/update/u",
        &json!({"id": "u", "command": "sleep", "args": ["1000"], "auto_restart": true, "stop_timeout_seconds": 3, "log_backups": 2}),
    );
    assert_eq!(r.json()["restarted"], false);
    assert!(r.message().contains("unchanged"), "{}", r.body);
    // What it runs: a restart, with a new pid.
    let r = d.post_json("/update/u", &json!({"command": "sleep", "args": ["999"]}));
    let body = r.json();
    assert_eq!(body["restarted"], true, "{body}");
    assert_ne!(pid_of(&body["process"]), old);
    assert_eq!(body["process"]["args"], json!(["999"]));
    // A mismatched id, a bad field, an unknown process.
    let r = d.post_json("/update/u", &json!({"id": "other", "command": "sleep"}));
    assert_eq!((r.status, r.json()["field"].clone()), (400, json!("id")));
    let r = d.post_json(
        "/update/u",
        &json!({"command": "sleep", "stop_signal": "NOPE"}),
    );
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("stop_signal"))
    );
    assert_eq!(
        d.post_json("/update/ghost", &json!({"command": "true"}))
            .status,
        404
    );
    assert_eq!(
        status_of(&d, "u")["args"],
        json!(["999"]),
        "nothing changed by the bad ones"
    );
}

#[test]
fn apply_reconciles_all_or_nothing() {
    let d = Daemon::start();
    let saved = |id: &str, arg: &str| json!({"id": id, "command": "sleep", "args": [arg], "save_for_next_run": true});
    let plan = |r: &util::Response, key: &str| -> Vec<String> {
        r.json()[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {}", r.body))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let r = d.post_json(
        "/apply",
        &json!({"processes": [saved("a", "100"), saved("b", "100")]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(plan(&r, "added"), ["a", "b"]);
    let a = pid_of(&status_of(&d, "a"));
    // One bad entry: 400 naming it, and nothing changes.
    let r = d.post_json(
        "/apply",
        &json!({"processes": [saved("a", "200"), {"id": "c", "command": "x", "periodic": true}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["field"],
        "processes[1].period_seconds",
        "{}",
        r.body
    );
    assert!(r.message().contains("processes[1] (id 'c')"), "{}", r.body);
    assert_eq!(pid_of(&status_of(&d, "a")), a);
    assert_eq!(d.get("/status/c").status, 404);
    // A dry run says what would happen and does nothing.
    let r = d.post_json(
        "/apply",
        &json!({"processes": [saved("a", "200")], "prune": true, "dry_run": true}),
    );
    assert_eq!(plan(&r, "updated"), ["a"]);
    assert_eq!(plan(&r, "restarted"), ["a"]);
    assert_eq!(plan(&r, "removed"), ["b"]);
    assert_eq!(pid_of(&status_of(&d, "a")), a);
    // For real, with prune.
    let r = d.post_json(
        "/apply",
        &json!({"processes": [saved("a", "200")], "prune": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(plan(&r, "restarted"), ["a"]);
    assert_eq!(plan(&r, "removed"), ["b"]);
    assert_ne!(pid_of(&status_of(&d, "a")), a);
    assert_eq!(d.get("/status/b").status, 404);
    let r = d.post_json("/apply", &json!({"processes": [saved("a", "200")]}));
    assert_eq!(plan(&r, "unchanged"), ["a"]);
    // An entry that cannot start: a 400 naming it, like POST /add, with the
    // refused plan; nothing changes (no add, no update, no restart).
    let a = pid_of(&status_of(&d, "a"));
    let nostart = json!({"id": "nostart", "command": "/nonexistent/exeio-no-such-program"});
    let r = d.post_json(
        "/apply",
        &json!({"processes": [saved("a", "300"), saved("n", "100"), nostart]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let body = r.json();
    assert_eq!(body["success"], false);
    assert_eq!(body["field"], "processes[2]", "{body}");
    assert_eq!(body["failed"][0]["id"], "nostart", "{body}");
    assert!(
        r.message().contains("nothing applied") && r.message().contains("nostart"),
        "{}",
        r.body
    );
    assert!(
        r.message().contains("os error"),
        "the spawn error: {}",
        r.body
    );
    assert_eq!(pid_of(&status_of(&d, "a")), a);
    assert_eq!(status_of(&d, "a")["args"], json!(["200"]));
    for id in ["n", "nostart"] {
        assert_eq!(d.get(&format!("/status/{id}")).status, 404, "{id}");
    }
    let saved = std::fs::read_to_string(d.processes_json()).unwrap();
    assert!(
        saved.contains("\"a\"") && !saved.contains("\"n\""),
        "nothing saved: {saved}"
    );
}

#[test]
fn apply_undoes_its_adds_when_a_spawn_fails_after_the_checks() {
    let d = Daemon::start();
    // Found and executable, so it passes the checks, but exec fails.
    let bad = d.tmp().join("not-a-program");
    std::fs::write(&bad, b"\x7fELF\x02\x01\x01\x00not really").unwrap();
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = d.post_json(
        "/apply",
        &json!({"processes": [
            {"id": "first", "command": "sleep", "args": ["1000"], "save_for_next_run": true},
            {"id": "late", "command": bad.to_str().unwrap()},
        ]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "processes[1]", "{}", r.body);
    assert!(r.message().contains("nothing applied"), "{}", r.body);
    for id in ["first", "late"] {
        assert_eq!(d.get(&format!("/status/{id}")).status, 404, "{id} is left");
    }
    let saved = std::fs::read_to_string(d.processes_json()).unwrap_or_default();
    assert!(!saved.contains("\"first\""), "{saved}");
}

/// The lines of a follow stream, read until `n` have arrived.
fn follow_lines(d: &Daemon, query: &str, n: usize) -> (BufReader<TcpStream>, Vec<String>) {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(util::SHORT)).unwrap();
    util::write_head(
        &mut s,
        "GET",
        &format!("/logs/t?follow=true&{query}"),
        &[("exeio-api-key", "test")],
        None,
    );
    let mut r = BufReader::new(s);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut in_body = false;
    // The head at least: exeio sends it once the follow has its place in
    // the log, so a line written after this returns is followed.
    while !in_body || lines.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let l = line.trim_end().to_string();
        if !in_body {
            in_body = l.is_empty();
            continue;
        }
        if l.starts_with('[') {
            lines.push(l);
        }
    }
    (r, lines)
}

#[test]
fn tail_and_stream_filters_and_a_follow_that_ends_with_its_process() {
    let d = Daemon::start();
    add_ok(
        &d,
        sh(
            "t",
            "for i in 1 2 3 4 5; do echo out-$i; echo err-$i >&2; done; exec cat",
        ),
    );
    wait_log(&d, "t", "err-5", util::SHORT);
    let all = wait_log(&d, "t", "out-5", util::SHORT);
    // stdout and stderr are two pipes: their lines interleave as exeio
    // reads them, so the tail is compared with the log itself.
    let (_, lines) = follow_lines(&d, "tail=3", 3);
    assert_eq!(lines, all[all.len() - 3..], "the last 3, oldest first");
    let (_, lines) = follow_lines(&d, "tail=2&stream=stdout", 2);
    assert!(
        lines[0].ends_with("STDOUT: out-4") && lines[1].ends_with("STDOUT: out-5"),
        "{lines:#?}"
    );
    // Pages filter too.
    let page = d.get("/logs/t?page=1&page_size=3&stream=stderr").json();
    let got: Vec<&str> = page["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(got.iter().all(|l| l.contains("STDERR: err-")), "{got:#?}");
    assert!(got[0].ends_with("err-5") && got[2].ends_with("err-3"));
    let page2 = d.get("/logs/t?page=2&page_size=3&stream=stderr").json();
    assert!(
        page2["logs"][0].as_str().unwrap().ends_with("err-2"),
        "{page2}"
    );
    assert_eq!(d.get("/logs/t?stream=nope").status, 400);
    // A follow with no tail, then a new line, then the process is removed:
    // the stream ends cleanly.
    let (mut r, _) = follow_lines(&d, "tail=0", 0);
    assert_eq!(
        d.post_json("/input/t", &json!({"input": "live"})).status,
        200
    );
    let mut line = String::new();
    while !line.contains("STDOUT: live") {
        line.clear();
        assert_ne!(r.read_line(&mut line).unwrap(), 0, "the follow ended early");
    }
    assert_eq!(d.post("/remove/t", "").status, 200);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut r, &mut rest);
    assert!(
        rest.ends_with("0\r\n\r\n"),
        "the chunked stream ends cleanly: {rest:?}"
    );
}

#[test]
fn a_zero_backoff_restarts_a_crash_at_once() {
    let d = Daemon::start();
    let mut spec = sh("fast", "read x; exit 1");
    spec["auto_restart"] = json!(true);
    spec["backoff_seconds"] = json!([0]);
    spec["rapid_exit_penalty_seconds"] = json!(0);
    let first = pid_of(&add_ok(&d, spec));
    assert_eq!(
        d.post_json("/input/fast", &json!({"input": "x"})).status,
        200
    );
    let mut p = Value::Null;
    assert!(wait_until(util::SHORT, || {
        p = status_of(&d, "fast");
        p["pid"].as_i64().is_some_and(|pid| pid as i32 != first) && p["status"] == "running"
    }));
    assert_eq!(p["restart_count"], 1);
    // The SYSTEM line is written by the log's owner, maybe just after the
    // status changed: poll for it.
    wait_log(&d, "fast", "restarting in 0s", util::SHORT);
    // The seed table by default: 22 s after a quick crash. The line says
    // the delay exactly; the countdown, read some time after the crash on a
    // busy machine, is only far from 0.
    let mut seed = sh("seed", "exit 1");
    seed["auto_restart"] = json!(true);
    add_ok(&d, seed);
    let p = wait_status(&d, "seed", "backoff", util::SHORT);
    assert!(p["next_run_in_seconds"].as_f64() > Some(10.0), "{p}");
    wait_log(&d, "seed", "restarting in 22s", util::SHORT);
}

#[test]
fn a_process_runs_as_the_user_it_names() {
    let d = Daemon::start();
    let mut spec = sh(
        "who",
        "echo \"$(id -u):$(id -g):$HOME:$USER:$LOGNAME\"; exec sleep 1000",
    );
    spec["user"] = json!("nobody");
    let p = add_ok(&d, spec);
    let lines = wait_log(&d, "who", "STDOUT: ", util::SHORT);
    let line = lines.iter().find(|l| l.contains("STDOUT: ")).unwrap();
    assert!(
        line.ends_with(":nobody:nobody") && line.contains("STDOUT: 65534:"),
        "{line}"
    );
    assert_eq!(util::uid_of(pid_of(&p)), Some(65534));
    let log = d.logs_dir().join("who.log");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&log).unwrap().uid(),
        0,
        "the log stays exeio's"
    );
    let (status, body) = util::add(
        &d,
        json!({"id": "x", "command": "true", "user": "no-such-user-xyz"}),
    );
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("no such user"),
        "{body}"
    );
    let (status, _) = util::add(
        &d,
        json!({"id": "y", "command": "true", "user": "nobody", "group": "no-such-group-xyz"}),
    );
    assert_eq!(status, 400);
}

#[test]
fn as_an_unprivileged_user_another_user_is_refused_with_the_reason() {
    let nobody = 65534;
    let tmp = TempDir::new();
    let ok = std::process::Command::new("chown")
        .args(["-R", &format!("{nobody}:{nobody}")])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let opts = Options {
        run_as: Some((nobody, 10_000)),
        ..Options::default()
    };
    let d = Daemon::start_opts(tmp, opts);
    let (status, body) = util::add(&d, json!({"id": "r", "command": "true", "user": "root"}));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not as root"),
        "{body}"
    );
}

#[test]
fn children_inherit_only_stdin_stdout_and_stderr() {
    // exeio itself started with an extra open fd (as from a shell's `10<file`).
    let extra = std::fs::File::open("/etc/hostname").unwrap();
    let opts = Options {
        fd10: Some(std::os::fd::AsRawFd::as_raw_fd(&extra)),
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    add_ok(
        &d,
        sh(
            "fds",
            "ls /proc/self/fd | tr '\\n' ' '; echo; exec sleep 1000",
        ),
    );
    let lines = wait_log(&d, "fds", "STDOUT: ", util::SHORT);
    let line = lines.iter().find(|l| l.contains("STDOUT: ")).unwrap();
    let fds: Vec<&str> = line
        .split("STDOUT: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    // 0, 1, 2 and the one `ls` opens to read the directory.
    assert_eq!(fds.len(), 4, "{fds:?}");
    assert!(!fds.contains(&"10"), "fd 10 leaked: {fds:?}");
    drop(extra);
}

#[test]
fn run_numbers_go_on_across_restarts_of_exeio() {
    let mut d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "job", "command": "true", "periodic": true, "period_seconds": 3600, "save_for_next_run": true}),
    );
    assert_eq!(d.post("/run/job", "").status, 200);
    assert!(wait_until(
        util::SHORT,
        || status_of(&d, "job")["run_count"] == 2
    ));
    d.restart();
    let p = wait_status(&d, "job", "waiting", util::SHORT);
    assert_eq!(p["run_count"], 3, "the run at start is run 3: {p}");
    let log = util::logs(&d, "job");
    let starts: Vec<&String> = log.iter().filter(|l| l.contains("started run")).collect();
    assert_eq!(starts.len(), 3, "{log:#?}");
    assert!(starts[2].contains("started run 3 "), "{starts:#?}");
}

#[test]
fn a_key_made_on_a_start_that_failed_is_shown_at_the_next() {
    let tmp = TempDir::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let mut cmd = util::exeio_command(tmp.path());
    cmd.args(util::dir_args(tmp.path()).into_iter().skip(2))
        .args(["--port", &port]);
    let out = util::run_to_end(cmd, util::SHORT);
    assert!(!out.status.success(), "the port is taken");
    drop(busy);
    let opts = Options {
        no_key: true,
        ..Options::default()
    };
    let d = Daemon::start_opts(tmp, opts);
    assert!(
        wait_until(util::SHORT, || d
            .stdout_lines()
            .iter()
            .any(|l| l.starts_with("API Key: "))),
        "{:?}",
        d.stdout_lines()
    );
}
