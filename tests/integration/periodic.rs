//! Periodic processes: runs at a fixed rate, `waiting` between runs, `RUN#N` tags,
//! skipped ticks while a run is still going, and a manual stop that ends the schedule.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

fn periodic(id: &str, script: &str, period: u64) -> Value {
    let mut spec = sh(id, script);
    spec["periodic"] = json!(true);
    spec["period_seconds"] = json!(period);
    spec
}

fn run_count(d: &Daemon, id: &str) -> u64 {
    status_of(d, id)["run_count"].as_u64().unwrap_or(0)
}

#[test]
fn runs_every_period_and_waits_in_between() {
    let d = Daemon::start();
    let p = add_ok(&d, periodic("tick", "echo tick", 1));
    assert_eq!(p["periodic"], true);
    assert_eq!(p["run_count"], 1, "the first run starts at once: {p}");
    assert!(
        wait_until(LONG, || run_count(&d, "tick") >= 3),
        "fewer than 3 runs: {}",
        status_of(&d, "tick")
    );
    let p = wait_status(&d, "tick", "waiting", SHORT);
    let next = p["next_run_in_seconds"].as_f64();
    assert!(
        next.is_some_and(|n| (0.0..=1.0).contains(&n)),
        "next_run_in_seconds not in 0..=1: {p}"
    );
    assert_eq!(p["is_running"], false);
    assert_eq!(p["last_exit"]["code"], 0, "{p}");
    let log = wait_log(&d, "tick", "started run 3 ", SHORT);
    for n in 1..=3 {
        let tagged = format!("] RUN#{n} STDOUT: tick");
        assert!(
            log.iter().any(|l| l.contains(&tagged)),
            "no {tagged:?}: {log:#?}"
        );
        let started = format!("started run {n} ");
        assert!(log.iter().any(|l| l.contains(&started)), "no {started:?}");
    }
    assert!(log.iter().all(|l| has_timestamp(l)), "{log:#?}");
}

#[test]
fn a_tick_during_a_long_run_is_skipped_and_logged() {
    let d = Daemon::start();
    add_ok(&d, periodic("slow", "sleep 3", 1));
    wait_log(
        &d,
        "slow",
        "skipped periodic run: previous run still running",
        SHORT,
    );
    let p = status_of(&d, "slow");
    assert_eq!(p["status"], "running", "{p}");
    assert_eq!(
        p["run_count"], 1,
        "a skipped tick must not start a run: {p}"
    );
}

#[test]
fn stop_ends_the_schedule() {
    let d = Daemon::start();
    add_ok(&d, periodic("tick", "echo tick", 1));
    assert!(wait_until(LONG, || run_count(&d, "tick") >= 2));
    let r = d.post("/stop/tick", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let p = status_of(&d, "tick");
    assert_eq!(p["status"], "manually_stopped", "{p}");
    assert_eq!(p["next_run_in_seconds"], Value::Null, "{p}");
    let runs = p["run_count"].as_u64().unwrap();
    // Three periods pass without a run.
    let ran_again = wait_until(Duration::from_secs(3), || run_count(&d, "tick") != runs);
    assert!(!ran_again, "a stopped periodic process ran again");
    assert_eq!(state_of(&d, "tick"), "manually_stopped");
    // Start resumes the schedule.
    assert_eq!(d.post("/start/tick", "").status, 200);
    assert!(wait_until(LONG, || run_count(&d, "tick") >= runs + 2));
}

#[test]
fn periodic_needs_a_positive_period() {
    let d = Daemon::start();
    for spec in [
        json!({"id": "p", "command": "true", "periodic": true}),
        json!({"id": "p", "command": "true", "periodic": true, "period_seconds": 0}),
        json!({"id": "p", "command": "true", "periodic": true, "period_seconds": -5}),
    ] {
        let (status, body) = add(&d, spec.clone());
        assert_eq!(status, 400, "{spec}: {body}");
    }
    assert_eq!(d.get("/list").json(), json!([]));
}
