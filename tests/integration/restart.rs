//! Auto-restart: restart policies, the backoff delay (2 s first restart + 20 s penalty
//! for a run under 10 s), max_restarts giving up, and manual commands during backoff.
//!
//! Only `max_restarts_gives_up_and_a_stop_in_backoff_is_final` waits a real backoff
//! (2 s + a penalty cut to 1 s); every other test checks the decision (22 s)
//! without waiting it out.

use std::time::Instant;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::util::*;

fn crashing(id: &str, script: &str) -> Value {
    let mut spec = sh(id, script);
    spec["auto_restart"] = json!(true);
    spec
}

fn assert_backoff(p: &Value) {
    assert_eq!(p["status"], "backoff", "{p}");
    assert_eq!(p["is_running"], false, "{p}");
    assert_eq!(p["pid"], Value::Null, "{p}");
    let next = p["next_run_in_seconds"].as_f64();
    assert!(
        next.is_some_and(|n| (1.0..=22.0).contains(&n)),
        "next_run_in_seconds not in 1..=22: {p}"
    );
}

#[test]
fn a_crash_enters_backoff_of_two_seconds_plus_the_rapid_exit_penalty() {
    let d = Daemon::start();
    add_ok(&d, crashing("crash", "exit 3"));
    let log = wait_log(
        &d,
        "crash",
        "restarting in 22s after crash with exit code 3",
        SHORT,
    );
    let exited = log.iter().position(|l| l.contains("exited with code 3"));
    let decided = log.iter().position(|l| l.contains("restarting in 22s"));
    assert!(exited.is_some() && exited < decided, "{log:#?}");
    let p = status_of(&d, "crash");
    assert_backoff(&p);
    assert_eq!(p["restart_count"], 1, "{p}");
    assert_eq!(p["run_count"], 1, "{p}");
    assert_eq!(p["last_exit"]["code"], 3, "{p}");
    // A manual stop cancels the pending restart.
    let r = d.post("/stop/crash", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let p = status_of(&d, "crash");
    assert_eq!(p["status"], "manually_stopped", "{p}");
    assert_eq!(p["next_run_in_seconds"], Value::Null, "{p}");
}

#[test]
fn policy_always_restarts_after_a_normal_exit_and_an_external_kill() {
    let d = Daemon::start();
    add_ok(&d, crashing("ok", "exit 0"));
    wait_log(&d, "ok", "restarting in 22s after normal exit", SHORT);
    assert_backoff(&status_of(&d, "ok"));

    let pid = pid_of(&add_ok(&d, crashing("killed", "exec sleep 1000")));
    send_signal(pid, Signal::SIGKILL);
    wait_log(
        &d,
        "killed",
        "restarting in 22s after external kill signal 9",
        SHORT,
    );
    let p = status_of(&d, "killed");
    assert_backoff(&p);
    assert_eq!(p["last_exit"]["signal"], 9, "{p}");
}

#[test]
fn policies_on_failure_and_never_decide_by_exit() {
    let d = Daemon::start();
    let mut clean = crashing("clean", "exit 0");
    clean["restart_policy"] = json!("on-failure");
    add_ok(&d, clean);
    let p = wait_status(&d, "clean", "stopped", SHORT);
    assert_eq!(p["last_exit"]["code"], 0, "{p}");
    assert_eq!(p["next_run_in_seconds"], Value::Null, "{p}");

    let mut failing = crashing("failing", "exit 1");
    failing["restart_policy"] = json!("on-failure");
    add_ok(&d, failing);
    wait_log(
        &d,
        "failing",
        "restarting in 22s after crash with exit code 1",
        SHORT,
    );
    assert_backoff(&status_of(&d, "failing"));

    let mut never = crashing("never", "exit 3");
    never["restart_policy"] = json!("never");
    add_ok(&d, never);
    let p = wait_status(&d, "never", "stopped", SHORT);
    assert_eq!(p["last_exit"]["code"], 3, "{p}");

    add_ok(&d, sh("plain", "exit 3"));
    let p = wait_status(&d, "plain", "stopped", SHORT);
    assert_eq!(p["last_exit"]["code"], 3, "{p}");

    for id in ["clean", "never", "plain"] {
        let log = logs(&d, id);
        assert!(
            !log.iter().any(|l| l.contains("restarting")),
            "{id}: {log:#?}"
        );
        assert_eq!(status_of(&d, id)["run_count"], 1);
    }
}

#[test]
fn max_restarts_gives_up_and_a_stop_in_backoff_is_final() {
    let d = Daemon::start();
    // The first delay as configured (2 s) and a rapid-exit penalty of 1 s:
    // real deadlines, short ones.
    let short = |id: &str, script: &str| {
        let mut spec = crashing(id, script);
        spec["rapid_exit_penalty_seconds"] = json!(1);
        spec
    };
    // b: stopped by hand while in backoff; its 3 s deadline passes before a gives up.
    add_ok(&d, short("b", "echo run-b; exit 3"));
    wait_log(&d, "b", "restarting in 3s", SHORT);
    assert_eq!(d.post("/stop/b", "").status, 200);
    assert_eq!(state_of(&d, "b"), "manually_stopped");

    let mut a = short("a", "echo run-a; exit 3");
    a["max_restarts"] = json!(1);
    add_ok(&d, a);
    wait_log(
        &d,
        "a",
        "restarting in 3s after crash with exit code 3",
        SHORT,
    );
    assert_eq!(state_of(&d, "a"), "backoff");
    let p = wait_status(&d, "a", "failed", LONG);
    assert_eq!(p["run_count"], 2, "{p}");
    assert_eq!(p["restart_count"], 1, "{p}");
    assert_eq!(p["last_exit"]["code"], 3, "{p}");
    assert_eq!(p["next_run_in_seconds"], Value::Null, "{p}");
    let log = wait_log(&d, "a", "gave up after 1 consecutive restarts", SHORT);
    assert!(log.iter().any(|l| l.contains("started run 2")), "{log:#?}");
    let runs = log.iter().filter(|l| l.ends_with("STDOUT: run-a")).count();
    assert_eq!(runs, 2, "{log:#?}");

    let b = status_of(&d, "b");
    assert_eq!(b["status"], "manually_stopped", "{b}");
    assert_eq!(b["run_count"], 1, "{b}");
    let log = logs(&d, "b");
    let runs = log.iter().filter(|l| l.ends_with("STDOUT: run-b")).count();
    assert_eq!(runs, 1, "b ran again after a manual stop: {log:#?}");

    // A failed process can be started by hand.
    let r = d.post("/start/a", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(SHORT, || status_of(&d, "a")["run_count"] == 3));
}

#[test]
fn restart_during_backoff_runs_at_once() {
    let d = Daemon::start();
    let wd = d.tmp().join("wd");
    std::fs::create_dir_all(&wd).unwrap();
    let mut spec = crashing(
        "flaky",
        "if [ -e marker ]; then echo second-run; exec sleep 1000; fi; touch marker; exit 3",
    );
    spec["working_dir"] = json!(wd.display().to_string());
    add_ok(&d, spec);
    wait_log(&d, "flaky", "restarting in 22s", SHORT);
    assert_eq!(state_of(&d, "flaky"), "backoff");
    let asked = Instant::now();
    let r = d.post("/restart/flaky", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let p = wait_status(&d, "flaky", "running", SHORT);
    assert!(
        asked.elapsed().as_secs() < 10,
        "restart waited out the backoff"
    );
    assert_eq!(p["run_count"], 2, "{p}");
    assert!(pid_alive(pid_of(&p)));
    wait_log(&d, "flaky", "STDOUT: second-run", SHORT);
}
