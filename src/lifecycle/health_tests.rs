//! Unit tests of health decisions: time is an input, nothing sleeps.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::lifecycle::{Input, Want};
use crate::policy::ExitStatus;
use crate::spec::parse_add;

const S: fn(u64) -> Duration = Duration::from_secs;

struct Clock(Instant);

impl Clock {
    fn at(&self, d: Duration) -> Now {
        Now {
            at: self.0 + d,
            wall: SystemTime::UNIX_EPOCH + S(1_800_000_000) + d,
        }
    }
}

/// A running service with `health` (JSON) and `extra` fields, started at 0.
fn service(health: &str, extra: &str) -> (Proc, Clock) {
    let json =
        format!(r#"{{"id":"web","command":"x","auto_restart":true,"health":{health}{extra}}}"#);
    let mut p = Proc::new(parse_add(json.as_bytes()).unwrap(), Want::UP);
    let c = Clock(Instant::now());
    p.step(Input::Spawned { pid: 100 }, c.at(S(0))).unwrap();
    (p, c)
}

/// Tick at `d` and return the check handed out, if any.
fn due(p: &mut Proc, c: &Clock, d: Duration) -> (Vec<Effect>, Option<u64>) {
    let fx = p.step(Input::Tick, c.at(d)).unwrap();
    let seq = fx.iter().find_map(|e| match e {
        Effect::Probe { seq, .. } => Some(*seq),
        _ => None,
    });
    (fx, seq)
}

fn answer(p: &mut Proc, c: &Clock, d: Duration, seq: u64, ok: bool) -> Vec<Effect> {
    let r = ProbeResult {
        generation: p.generation(),
        seq: Some(seq),
        ok,
        message: if ok { "HTTP 200" } else { "HTTP 503" }.into(),
        at: c.at(d).wall,
        took: Duration::from_millis(3),
    };
    p.step(Input::Probed(r), c.at(d)).unwrap()
}

/// Check at each `d` (seconds), answering `ok`; the effects of the last.
fn checks(p: &mut Proc, c: &Clock, times: &[u64], ok: bool) -> Vec<Effect> {
    let mut last = Vec::new();
    for &t in times {
        let (_, seq) = due(p, c, S(t));
        let seq = seq.unwrap_or_else(|| panic!("no check due at {t}s"));
        last = answer(p, c, S(t), seq, ok);
    }
    last
}

fn logs(fx: &[Effect]) -> String {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Log(l) => Some(l.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn stops(fx: &[Effect]) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Signal { signal: 15, .. }))
}

const HTTP: &str =
    r#"{"http":"http://127.0.0.1:1/","period_seconds":10,"initial_delay_seconds":5}"#;

#[test]
fn a_run_starts_starting_and_one_success_makes_it_healthy() {
    let (mut p, c) = service(HTTP, "");
    assert_eq!(p.health(), Health::Starting);
    // First check after the initial delay plus this id's place in the period.
    let first = p.deadline().unwrap() - c.0;
    assert!(first >= S(5) && first < S(15), "{first:?}");
    assert_eq!(due(&mut p, &c, first - Duration::from_millis(1)).1, None);
    let (_, seq) = due(&mut p, &c, first);
    let fx = answer(&mut p, &c, first, seq.unwrap(), true);
    assert_eq!(p.health(), Health::Healthy);
    assert!(logs(&fx).contains("starting -> healthy"), "{fx:?}");
    // The next check one period later.
    assert_eq!(p.deadline(), Some(c.0 + first + S(10)));
}

#[test]
fn failures_before_healthy_only_set_the_message() {
    let (mut p, c) = service(HTTP, "");
    let fx = checks(&mut p, &c, &[20, 30, 40, 50], false);
    assert_eq!(p.health(), Health::Starting);
    assert!(fx.is_empty());
    let h = p.health.as_ref().unwrap();
    assert_eq!(h.message.as_deref(), Some("HTTP 503"));
    assert_eq!((h.checks_ok, h.checks_failed), (0, 4));
    assert_eq!(h.checks.len(), 4);
}

#[test]
fn thresholds_count_in_a_row() {
    let (mut p, c) = service(
        r#"{"tcp":"a:1","period_seconds":1,"success_threshold":2,"failure_threshold":3}"#,
        "",
    );
    checks(&mut p, &c, &[1, 2], true);
    assert_eq!(p.health(), Health::Healthy);
    // Two failures, a success, two failures: never three in a row.
    checks(&mut p, &c, &[3, 4], false);
    checks(&mut p, &c, &[5], true);
    checks(&mut p, &c, &[6, 7], false);
    assert_eq!(p.health(), Health::Healthy);
    let fx = checks(&mut p, &c, &[8], false);
    assert_eq!(p.health(), Health::Unhealthy);
    assert!(
        logs(&fx).contains("healthy -> unhealthy after 3 failed checks"),
        "{fx:?}"
    );
    assert!(logs(&fx).contains("liveness: unhealthy"), "{fx:?}");
    assert!(stops(&fx), "a liveness stop: {fx:?}");
    assert!(p.is_stopping());
}

#[test]
fn a_liveness_stop_restarts_through_the_backoff_and_counts_as_a_failure() {
    let (mut p, c) = service(
        r#"{"tcp":"a:1","period_seconds":1,"failure_threshold":1}"#,
        r#","restart_policy":"on-failure","max_restarts":1"#,
    );
    checks(&mut p, &c, &[1], true);
    checks(&mut p, &c, &[2], false);
    assert!(p.is_stopping());
    // It exits 0 on SIGTERM: for on-failure, still a failure.
    let fx = p
        .step(
            Input::Exited {
                generation: p.generation(),
                status: ExitStatus::Code(0),
                at: SystemTime::UNIX_EPOCH,
            },
            c.at(S(3)),
        )
        .unwrap();
    assert!(
        logs(&fx).contains("restarting in 22s after a liveness stop (restart #1)"),
        "{fx:?}"
    );
    assert_eq!(p.health(), Health::Starting);
    // The restart runs a new check schedule; the second liveness stop gives up.
    p.step(Input::Tick, c.at(S(25))).unwrap();
    p.step(Input::Spawned { pid: 101 }, c.at(S(25))).unwrap();
    assert_eq!(p.health(), Health::Starting);
    checks(&mut p, &c, &[26], true);
    checks(&mut p, &c, &[27], false);
    let fx = p
        .step(
            Input::Exited {
                generation: p.generation(),
                status: ExitStatus::Signal(15),
                at: SystemTime::UNIX_EPOCH,
            },
            c.at(S(28)),
        )
        .unwrap();
    assert!(
        logs(&fx).contains("gave up after 1 consecutive restarts"),
        "{fx:?}"
    );
    assert_eq!(p.status(), crate::lifecycle::Status::Failed);
}

#[test]
fn never_keeps_it_running_unhealthy() {
    let (mut p, c) = service(
        r#"{"tcp":"a:1","period_seconds":1,"failure_threshold":2}"#,
        r#","restart_policy":"never""#,
    );
    checks(&mut p, &c, &[1], true);
    let fx = checks(&mut p, &c, &[2, 3], false);
    assert_eq!(p.health(), Health::Unhealthy);
    assert!(!stops(&fx), "{fx:?}");
    assert!(logs(&fx).contains("restart_policy is never"), "{fx:?}");
    assert_eq!(p.status(), crate::lifecycle::Status::Running);
    // Checks go on; a success makes it healthy again.
    checks(&mut p, &c, &[4], true);
    assert_eq!(p.health(), Health::Healthy);
}

#[test]
fn not_healthy_within_the_start_timeout_is_a_liveness_stop() {
    let (mut p, c) = service(
        r#"{"tcp":"a:1","period_seconds":1,"start_timeout_seconds":3}"#,
        "",
    );
    checks(&mut p, &c, &[1, 2], false);
    let fx = p.step(Input::Tick, c.at(S(3))).unwrap();
    assert!(
        logs(&fx).contains("liveness: not healthy within start_timeout_seconds (3s)"),
        "{fx:?}"
    );
    assert!(stops(&fx));
    // Healthy in time: no stop at the start timeout.
    let (mut p, c) = service(
        r#"{"tcp":"a:1","period_seconds":1,"start_timeout_seconds":3}"#,
        "",
    );
    checks(&mut p, &c, &[1], true);
    checks(&mut p, &c, &[2, 3], false);
    assert!(!p.is_stopping());
}

#[test]
fn stale_and_unasked_answers_are_ignored() {
    let (mut p, c) = service(r#"{"tcp":"a:1","period_seconds":1}"#, "");
    let (_, seq) = due(&mut p, &c, S(1));
    let seq = seq.unwrap();
    // A check in flight: the next due time hands out no second one.
    assert_eq!(due(&mut p, &c, S(2)).1, None);
    // An answer to another check, or about an older run, changes nothing.
    assert!(answer(&mut p, &c, S(2), seq + 1, true).is_empty());
    let mut old = ProbeResult {
        generation: p.generation() - 1,
        seq: Some(seq),
        ok: true,
        message: "ok".into(),
        at: SystemTime::UNIX_EPOCH,
        took: Duration::ZERO,
    };
    assert!(
        p.step(Input::Probed(old.clone()), c.at(S(2)))
            .unwrap()
            .is_empty()
    );
    assert_eq!(p.health(), Health::Starting);
    old.generation += 1;
    p.step(Input::Probed(old), c.at(S(2))).unwrap();
    assert_eq!(p.health(), Health::Healthy);
}

#[test]
fn a_stopped_or_removed_process_checks_no_more() {
    let (mut p, c) = service(r#"{"tcp":"a:1","period_seconds":1}"#, "");
    let (_, seq) = due(&mut p, &c, S(1));
    p.step(Input::Remove, c.at(S(1))).unwrap();
    assert!(answer(&mut p, &c, S(1), seq.unwrap(), true).is_empty());
    let d = p.deadline().unwrap();
    // The only deadline left is the stop grace.
    assert_eq!(d, c.0 + S(1) + S(10));
    let (fx, seq) = due(&mut p, &c, S(5));
    assert_eq!(seq, None, "{fx:?}");
}

#[test]
fn a_log_probe_is_readiness_only() {
    let (mut p, c) = service(r#"{"log":"ready"}"#, "");
    assert_eq!(p.deadline(), Some(c.0 + S(60)), "only the start timeout");
    let r = ProbeResult {
        generation: p.generation(),
        seq: None,
        ok: true,
        message: "matched: ready".into(),
        at: SystemTime::UNIX_EPOCH,
        took: Duration::ZERO,
    };
    p.step(Input::Probed(r), c.at(S(2))).unwrap();
    assert_eq!(p.health(), Health::Healthy);
    assert_eq!(p.deadline(), None);
}

#[test]
fn processes_started_apart_check_in_the_same_slots() {
    let c = Clock(Instant::now());
    let period = S(10);
    let mut slots = std::collections::BTreeSet::new();
    for i in 0..1000u64 {
        // Started 7 ms apart: their checks still fall into the 100 slots.
        let now = c.at(Duration::from_millis(7 * i));
        let first = first_check(&format!("s-{i}"), period, S(2), now);
        assert!(first >= S(2) && first < S(12), "{first:?}");
        let wall = now.wall + first;
        let ms = wall
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        slots.insert(ms % 10_000);
    }
    assert!(slots.iter().all(|ms| ms % 100 == 0), "{slots:?}");
    assert!(slots.len() > 90, "{}", slots.len());
}

#[test]
fn offsets_spread_over_the_period() {
    let period = S(10);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..500 {
        let o = offset(&format!("svc-{i}"), period);
        assert!(o < period);
        seen.insert(o.as_secs());
    }
    assert_eq!(seen.len(), 10, "every second of the period is used");
}

#[test]
fn a_new_probe_on_a_running_process_starts_over_and_keeps_its_counts() {
    let (mut p, c) = service(r#"{"tcp":"a:1","period_seconds":1}"#, "");
    checks(&mut p, &c, &[1], true);
    assert_eq!(p.health(), Health::Healthy);
    let json = r#"{"id":"web","command":"x","auto_restart":true,"health":{"tcp":"b:2","period_seconds":1}}"#;
    p.reconfigure(parse_add(json.as_bytes()).unwrap(), c.at(S(5)));
    assert_eq!(p.health(), Health::Starting);
    assert_eq!(p.health.as_ref().unwrap().checks_ok, 1);
    let first = p.deadline().unwrap();
    assert!(
        first >= c.0 + S(5) && first < c.0 + S(6),
        "checked from now"
    );
    // No probe any more: health none, no deadline.
    let json = r#"{"id":"web","command":"x","auto_restart":true}"#;
    p.reconfigure(parse_add(json.as_bytes()).unwrap(), c.at(S(6)));
    assert_eq!(p.health(), Health::None);
    assert_eq!(p.deadline(), None);
}
