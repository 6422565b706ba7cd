//! The last request wins, and no request answers a success it did not have
//! (issue "Correct to the last detail", point 1).

use std::thread;

use serde_json::json;

use crate::util::{
    self, Daemon, add_ok, pid_alive, pid_of, sh, state_of, status_of, wait_log, wait_status,
    wait_until,
};

/// Adds a process that ignores SIGTERM, so a stop takes its whole grace
/// period, and waits until its trap is set: a TERM sent before that would
/// end it at once.
fn add_stubborn(d: &Daemon, id: &str, grace: u64) -> serde_json::Value {
    let mut spec = sh(id, "trap '' TERM; echo deaf; while :; do sleep 0.2; done");
    spec["stop_timeout_seconds"] = json!(grace);
    spec["auto_restart"] = json!(true);
    let added = add_ok(d, spec);
    wait_log(d, id, "deaf", util::SHORT);
    added
}

#[test]
fn a_stop_during_a_slow_restart_wins() {
    let d = Daemon::start();
    let old = pid_of(&add_stubborn(&d, "s", 3));
    let addr = d.addr().to_string();
    let restart = thread::spawn(move || {
        util::http(
            &addr,
            "POST",
            "/restart/s",
            &[("exeio-api-key", "test")],
            Some(b""),
        )
    });
    assert!(wait_until(util::SHORT, || state_of(&d, "s") == "stopping"));
    let stop = d.post("/stop/s", "");
    assert_eq!(stop.status, 200, "{}", stop.body);
    assert_eq!(stop.json()["process"]["status"], "manually_stopped");
    let restart = restart.join().unwrap();
    assert_eq!(
        restart.status, 409,
        "the restart was overridden: {}",
        restart.body
    );
    assert!(
        restart.message().contains("manually_stopped"),
        "{}",
        restart.body
    );
    assert!(!pid_alive(old));
    assert_eq!(state_of(&d, "s"), "manually_stopped");
}

#[test]
fn stop_all_during_restart_all_leaves_nothing_running() {
    let d = Daemon::start();
    for i in 0..10 {
        add_stubborn(&d, &format!("s{i}"), 2);
    }
    let addr = d.addr().to_string();
    let restart_all = thread::spawn(move || {
        util::http(
            &addr,
            "POST",
            "/restart-all",
            &[("exeio-api-key", "test")],
            Some(b""),
        )
    });
    assert!(wait_until(util::SHORT, || state_of(&d, "s9") == "stopping"));
    let stop_all = d.post("/stop-all", "");
    assert_eq!(stop_all.status, 200, "{}", stop_all.body);
    let _ = restart_all.join().unwrap();
    let list = d.get("/list").json();
    let running: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] != "manually_stopped")
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(running.is_empty(), "still up after stop-all: {running:?}");
}

/// A request refused with 409 changes nothing: not even a stop-all's stop
/// queued for the process (it waits for a dependent that is slow to exit).
#[test]
fn a_refused_start_does_not_cancel_a_queued_stop() {
    let d = Daemon::start();
    add_ok(&d, sh("db", "exec sleep 1000"));
    // Ignores TERM and exits once the test says so.
    let go = d.tmp().join("go");
    let mut slow = sh(
        "slow",
        &format!(
            "trap '' TERM; echo deaf; while [ ! -e '{}' ]; do sleep 0.1; done",
            go.display()
        ),
    );
    slow["stop_timeout_seconds"] = json!(60);
    slow["depends_on"] = json!({"db": "started"});
    add_ok(&d, slow);
    wait_log(&d, "slow", "deaf", util::SHORT);
    let addr = d.addr().to_string();
    let stop_all = thread::spawn(move || {
        util::http(
            &addr,
            "POST",
            "/stop-all",
            &[("exeio-api-key", "test")],
            Some(b""),
        )
    });
    assert!(wait_until(util::SHORT, || state_of(&d, "slow") == "stopping"));
    assert_eq!(state_of(&d, "db"), "running", "its stop waits for 'slow'");
    let r = d.post("/start/db", "");
    assert_eq!(r.status, 409, "{}", r.body);
    std::fs::write(&go, "").unwrap();
    let stop_all = stop_all.join().unwrap();
    assert_eq!(stop_all.status, 200, "{}", stop_all.body);
    assert_eq!(state_of(&d, "slow"), "manually_stopped");
    assert_eq!(
        state_of(&d, "db"),
        "manually_stopped",
        "the refused start cancelled the stop-all's stop of db"
    );
}

#[test]
fn a_restart_during_a_slow_remove_is_refused() {
    let d = Daemon::start();
    add_stubborn(&d, "r", 2);
    let addr = d.addr().to_string();
    let remove = thread::spawn(move || {
        util::http(
            &addr,
            "POST",
            "/remove/r",
            &[("exeio-api-key", "test")],
            Some(b""),
        )
    });
    assert!(wait_until(util::SHORT, || state_of(&d, "r") == "stopping"));
    let r = d.post("/restart/r", "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("being removed"), "{}", r.body);
    assert_eq!(d.post("/start/r", "").status, 409);
    assert_eq!(d.post("/stop/r", "").status, 409);
    assert_eq!(remove.join().unwrap().status, 200);
    assert_eq!(d.get("/status/r").status, 404);
}

/// A command that works until the test deletes it.
fn deletable(d: &Daemon, id: &str) -> std::path::PathBuf {
    let script = d.tmp().join(format!("{id}.sh"));
    std::fs::write(&script, "#!/bin/sh\necho up\nexec sleep 1000\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    add_ok(
        d,
        json!({"id": id, "command": script.display().to_string(), "auto_restart": true}),
    );
    // Deleted only once the shell has read it.
    util::wait_log(d, id, "STDOUT: up", util::SHORT);
    script
}

#[test]
fn a_restart_whose_spawn_fails_is_a_400_with_the_os_error() {
    let d = Daemon::start();
    let script = deletable(&d, "gone");
    std::fs::remove_file(&script).unwrap();
    let r = d.post("/restart/gone", "");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("No such file"), "{}", r.body);
    let p = status_of(&d, "gone");
    assert!(
        p["error"]
            .as_str()
            .is_some_and(|e| e.contains("No such file")),
        "{p}"
    );
}

#[test]
fn a_failed_start_changes_nothing() {
    let d = Daemon::start();
    let script = deletable(&d, "gone");
    assert_eq!(d.post("/stop/gone", "").status, 200);
    let before = status_of(&d, "gone");
    std::fs::remove_file(&script).unwrap();
    let r = d.post("/start/gone", "");
    assert_eq!(r.status, 400, "{}", r.body);
    let after = status_of(&d, "gone");
    for field in [
        "status",
        "restart_count",
        "run_count",
        "next_run_in_seconds",
        "pid",
    ] {
        assert_eq!(
            after[field], before[field],
            "{field} changed: {before} -> {after}"
        );
    }
    assert_eq!(after["status"], "manually_stopped");
    // The same from a stopped state: a restart of a down process.
    let r = d.post("/restart/gone", "");
    assert_eq!(r.status, 400);
    assert_eq!(state_of(&d, "gone"), "manually_stopped");
}

#[test]
fn input_is_all_or_nothing_and_big_inputs_are_delivered() {
    let d = Daemon::start();
    // `cat` echoes what it reads: 200 KiB in one input arrive whole.
    add_ok(&d, json!({"id": "cat", "command": "cat"}));
    let big = "x".repeat(200 * 1024);
    let r = d.post_json("/input/cat", &json!({"input": big}));
    assert_eq!(r.status, 200, "{}", r.message());
    let lines = util::wait_log(&d, "cat", "STDOUT: xxxx", util::SHORT);
    assert!(
        wait_until(util::SHORT, || {
            let total: usize = util::logs(&d, "cat")
                .iter()
                .filter_map(|l| l.split_once("STDOUT: ").map(|(_, t)| t.len()))
                .sum();
            total == big.len()
        }),
        "not all of the input reached cat: {} lines",
        lines.len()
    );
    // A process that never reads: inputs are queued until the queue is
    // full, then refused whole; nothing half-delivered.
    add_ok(&d, sh("deaf", "exec sleep 1000"));
    let chunk = "y".repeat(512 * 1024);
    let mut accepted = 0;
    let refusal = loop {
        let r = d.post_json("/input/deaf", &json!({"input": chunk}));
        if r.status != 200 {
            break r;
        }
        accepted += 1;
        assert!(accepted < 10, "never refused");
    };
    assert_eq!(refusal.status, 503, "{}", refusal.body);
    assert!(
        refusal.message().contains("still waiting"),
        "{}",
        refusal.body
    );
    assert_eq!(
        d.post_json("/input/deaf", &json!({"input": "z"})).status,
        200,
        "a small one still fits"
    );
    let stopped = add_ok(&d, sh("quits", "exit 0"));
    let _ = stopped;
    wait_status(&d, "quits", "stopped", util::SHORT);
    assert_eq!(
        d.post_json("/input/quits", &json!({"input": "z"})).status,
        409
    );
}
