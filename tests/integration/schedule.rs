//! Calendar schedules, run history, timeouts, overlap and catch-up (issue
//! "A cron replacement", SPEC 4a). The seconds field keeps them quick.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::util::{self, Daemon, add, add_ok, status_of, wait_status, wait_until};

fn job(id: &str, script: &str, schedule: &str) -> Value {
    json!({"id": id, "command": "sh", "args": ["-c", script], "schedule": schedule, "timezone": "UTC"})
}

/// GET /runs/{id} (newest first).
fn runs(d: &Daemon, id: &str) -> Vec<Value> {
    let r = d.get(&format!("/runs/{id}"));
    assert_eq!(r.status, 200, "runs {id}: {}", r.body);
    r.json()["runs"].as_array().cloned().unwrap_or_default()
}

fn wait_runs(d: &Daemon, id: &str, n: usize, timeout: Duration) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = wait_until(timeout, || {
        last = runs(d, id);
        last.len() >= n
    });
    assert!(
        ok,
        "{id}: fewer than {n} runs within {timeout:?}: {last:#?}"
    );
    last
}

#[test]
fn a_seconds_schedule_runs_on_its_times_and_keeps_a_history() {
    let d = Daemon::start();
    let p = add_ok(&d, job("even", "echo tick", "*/2 * * * * *"));
    assert_eq!(
        p["status"], "waiting",
        "a calendar job waits for its time: {p}"
    );
    assert_eq!(p["run_count"], 0);
    let next = p["next_run_at"].as_str().unwrap().to_string();
    assert!(next.ends_with("+00:00"), "RFC 3339 with offset: {next}");
    let rs = wait_runs(&d, "even", 2, util::LONG);
    for r in &rs {
        assert_eq!(r["trigger"], "schedule", "{r}");
        assert_eq!(r["result"], "ok", "{r}");
        assert_eq!(r["exit"]["code"], 0);
        let at = r["scheduled_at"].as_str().unwrap();
        let secs: u32 = at[17..19].parse().unwrap();
        assert_eq!(secs % 2, 0, "scheduled on an even second: {at}");
        assert!(r["duration_seconds"].as_f64().is_some());
    }
    assert!(
        rs[0]["run"].as_u64() > rs[1]["run"].as_u64(),
        "newest first"
    );
    let limited = d.get("/runs/even?limit=1").json();
    assert_eq!(limited["runs"].as_array().unwrap().len(), 1);
    let s = wait_status(&d, "even", "waiting", util::SHORT);
    assert_eq!(s["last_result"], "ok");
}

#[test]
fn bad_schedules_are_400_naming_the_field() {
    let d = Daemon::start();
    for (spec, field, words) in [
        (job("a", "true", "61 * * * *"), "schedule", "position 1"),
        (job("a", "true", "* * *"), "schedule", "fields"),
        (
            json!({"id": "a", "command": "true", "schedule": "* * * * *", "periodic": true, "period_seconds": 5}),
            "schedule",
            "exclude",
        ),
        (
            json!({"id": "a", "command": "true", "schedule": "* * * * *", "timezone": "Mars/Base"}),
            "timezone",
            "Mars/Base",
        ),
        (
            json!({"id": "a", "command": "true", "timezone": "UTC"}),
            "timezone",
            "schedule",
        ),
        (
            json!({"id": "a", "command": "true", "catch_up": true}),
            "catch_up",
            "schedule",
        ),
    ] {
        let (status, body) = add(&d, spec.clone());
        assert_eq!(status, 400, "{spec} -> {body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(body["message"].as_str().unwrap().contains(words), "{body}");
    }
    let (status, body) = add(
        &d,
        job("a", "true", "@daily").tap_command("/no/such/program"),
    );
    assert_eq!(status, 400, "a missing program is refused at add: {body}");
    assert!(util::ids(&d).is_empty());
}

trait TapCommand {
    fn tap_command(self, command: &str) -> Value;
}

impl TapCommand for Value {
    fn tap_command(mut self, command: &str) -> Value {
        self["command"] = json!(command);
        self["args"] = json!([]);
        self
    }
}

#[test]
fn a_failed_run_is_a_result_not_a_state() {
    let d = Daemon::start();
    add_ok(&d, job("fails", "exit 3", "* * * * * *"));
    let rs = wait_runs(&d, "fails", 1, util::LONG);
    assert_eq!(rs[0]["result"], "failed");
    assert_eq!(rs[0]["exit"]["code"], 3);
    let p = wait_status(&d, "fails", "waiting", util::SHORT);
    assert_eq!(p["last_result"], "failed");
    assert!(p["next_run_at"].is_string());
}

#[test]
fn overlap_skip_queue_replace_and_timeouts() {
    let d = Daemon::start();
    // A run of 2 s on a schedule of every second: the tick at 1 s is skipped.
    let mut skip = job("skip", "sleep 2", "* * * * * *");
    skip["overlap"] = json!("skip");
    let mut replace = job(
        "replace",
        "trap 'exit 9' TERM; sleep 30 & wait",
        "*/2 * * * * *",
    );
    replace["overlap"] = json!("replace");
    let mut slow = job("slow", "sleep 30", "* * * * * *");
    slow["timeout_seconds"] = json!(1);
    slow["overlap"] = json!("queue");
    for spec in [skip, replace, slow] {
        add_ok(&d, spec);
    }
    let rs = wait_runs(&d, "skip", 2, util::LONG);
    assert!(rs[0]["skipped_before"].as_u64() >= Some(1), "{rs:#?}");
    let rs = wait_runs(&d, "replace", 1, util::LONG);
    assert_eq!(rs[0]["result"], "replaced", "{rs:#?}");
    let rs = wait_runs(&d, "slow", 1, util::LONG);
    assert_eq!(rs[0]["result"], "timed_out", "{rs:#?}");
    let log = util::logs(&d, "slow");
    assert!(log.iter().any(|l| l.contains("run timed out")), "{log:#?}");
}

#[test]
fn run_now_is_a_manual_run_under_the_overlap_policy() {
    let d = Daemon::start();
    add_ok(&d, job("later", "echo now", "0 0 1 1 *"));
    let r = d.post("/run/later", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let rs = wait_runs(&d, "later", 1, util::SHORT);
    assert_eq!(rs[0]["trigger"], "manual");
    add_ok(&d, job("busy", "sleep 30", "0 0 1 1 *"));
    assert_eq!(d.post("/run/busy", "").status, 200);
    let r = d.post("/run/busy", "");
    assert_eq!(r.status, 409, "skip while running: {}", r.body);
    add_ok(&d, util::sh("service", "exec sleep 100"));
    assert_eq!(d.post("/run/service", "").status, 409, "not a job");
    assert_eq!(d.get("/runs/service").status, 409);
    // Periodic jobs keep runs too.
    add_ok(
        &d,
        json!({"id": "per", "command": "true", "periodic": true, "period_seconds": 3600}),
    );
    let rs = wait_runs(&d, "per", 1, util::SHORT);
    assert_eq!(rs[0]["trigger"], "start");
}

/// Wait until the wall clock has passed `t`.
fn wait_past(t: SystemTime) {
    assert!(wait_until(util::LONG, || SystemTime::now() > t));
}

#[test]
fn history_survives_a_restart_and_catch_up_runs_a_missed_time_once() {
    let mut d = Daemon::start();
    let mut caught = job("caught", "echo run", "*/2 * * * * *");
    caught["save_for_next_run"] = json!(true);
    caught["catch_up"] = json!(true);
    let mut missed = job("missed", "echo run", "*/2 * * * * *");
    missed["save_for_next_run"] = json!(true);
    add_ok(&d, caught);
    add_ok(&d, missed);
    wait_runs(&d, "caught", 1, util::LONG);
    wait_runs(&d, "missed", 1, util::LONG);
    let before = runs(&d, "missed").len();
    d.stop();
    // Let at least one even second pass while exeio is down.
    let down = SystemTime::now();
    wait_past(down + Duration::from_secs(3));
    d.start_again();
    // Wait for the catch-up run itself: a second scheduled run may have
    // come before the stop (on a busy machine), so a count of runs is no sign.
    let mut rs = Vec::new();
    let caught_up = wait_until(util::SHORT, || {
        rs = runs(&d, "caught");
        rs.iter().any(|r| r["trigger"] == "catch_up")
    });
    assert!(caught_up, "no catch-up run: {rs:#?}");
    let catch: Vec<&Value> = rs.iter().filter(|r| r["trigger"] == "catch_up").collect();
    assert_eq!(catch.len(), 1, "{rs:#?}");
    let at = catch[0]["scheduled_at"].as_str().unwrap();
    let secs = exeio::timefmt::parse_rfc3339(at).unwrap();
    let down_secs = down.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(
        secs >= down_secs,
        "the missed time, {at}, came while exeio was down"
    );
    let after = runs(&d, "missed");
    assert!(after.len() >= before, "history kept across the restart");
    assert!(
        after.iter().all(|r| r["trigger"] != "catch_up"),
        "no catch_up without it: {after:#?}"
    );
    assert!(status_of(&d, "caught")["run_count"].as_u64() >= Some(2));
}
