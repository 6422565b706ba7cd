//! Unit tests of the process state machine: time is an input, nothing sleeps.

use super::*;
use crate::spec::parse_add;

const S: fn(u64) -> Duration = Duration::from_secs;

fn proc(json: &str) -> Proc {
    Proc::new(parse_add(json.as_bytes()).unwrap(), State::Stopped)
}

fn exited(p: &Proc, status: ExitStatus) -> Input {
    Input::Exited {
        generation: p.generation(),
        status,
        at: SystemTime::UNIX_EPOCH,
    }
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

#[test]
fn crash_goes_to_backoff_then_restarts_on_the_deadline() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    assert_eq!(p.step(Input::Start, t0).unwrap(), vec![Effect::Spawn]);
    p.spawned(10, t0, SystemTime::UNIX_EPOCH);
    assert_eq!(p.status(), "running");
    let fx = p.step(exited(&p, ExitStatus::Code(3)), t0 + S(1)).unwrap();
    assert_eq!(
        logs(&fx),
        "restarting in 22s after crash with exit code 3 (restart #1)"
    );
    assert_eq!(p.state, State::Backoff { until: t0 + S(23) });
    assert_eq!(p.streak, 1);
    assert_eq!(p.next_run_in(t0 + S(3)), Some(S(20)));
    assert_eq!(p.step(Input::Tick, t0 + S(22)).unwrap(), vec![]);
    assert_eq!(
        p.step(Input::Tick, t0 + S(23)).unwrap(),
        vec![Effect::Spawn]
    );
}

#[test]
fn policies_never_and_on_failure() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    p.spawned(10, t0, SystemTime::UNIX_EPOCH);
    assert_eq!(p.step(exited(&p, ExitStatus::Code(1)), t0).unwrap(), vec![]);
    assert_eq!(p.state, State::Stopped);
    let mut p = proc(r#"{"id":"a","command":"x","restart_policy":"on-failure"}"#);
    p.spawned(10, t0, SystemTime::UNIX_EPOCH);
    p.step(exited(&p, ExitStatus::Code(0)), t0).unwrap();
    assert_eq!(p.state, State::Stopped);
    p.spawned(11, t0, SystemTime::UNIX_EPOCH);
    let fx = p.step(exited(&p, ExitStatus::Signal(9)), t0).unwrap();
    assert!(logs(&fx).contains("after external kill signal 9"));
}

#[test]
fn manual_stop_escalates_and_never_restarts() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true,"stop_timeout_seconds":3}"#);
    p.spawned(42, t0, SystemTime::UNIX_EPOCH);
    let fx = p.step(Input::Stop, t0 + S(1)).unwrap();
    assert!(fx.contains(&Effect::Signal {
        pgid: 42,
        signal: 15
    }));
    assert_eq!(p.deadline(), Some(t0 + S(4)));
    assert_eq!(p.step(Input::Tick, t0 + S(2)).unwrap(), vec![]);
    let fx = p.step(Input::Tick, t0 + S(4)).unwrap();
    assert!(fx.contains(&Effect::Signal {
        pgid: 42,
        signal: 9
    }));
    assert_eq!(p.deadline(), None, "SIGKILL is sent once");
    // the exit (even a crash code) after a manual stop is not a restart
    let fx = p.step(exited(&p, ExitStatus::Code(1)), t0 + S(5)).unwrap();
    assert!(!fx.contains(&Effect::Spawn));
    assert!(fx.contains(&Effect::Persist));
    assert_eq!(p.state, State::ManuallyStopped);
}

#[test]
fn stop_cancels_a_pending_restart() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    p.spawned(1, t0, SystemTime::UNIX_EPOCH);
    p.step(exited(&p, ExitStatus::Code(1)), t0).unwrap();
    p.step(Input::Stop, t0).unwrap();
    assert_eq!(p.state, State::ManuallyStopped);
    assert_eq!(p.deadline(), None);
    assert_eq!(p.step(Input::Tick, t0 + S(100)).unwrap(), vec![]);
}

#[test]
fn commands_while_stopping_upgrade_and_stale_exits_are_ignored() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    p.spawned(7, t0, SystemTime::UNIX_EPOCH);
    let stale = exited(&p, ExitStatus::Code(0));
    p.step(Input::Restart, t0).unwrap();
    p.step(Input::Remove, t0).unwrap();
    assert!(matches!(
        p.state,
        State::Stopping {
            then: Then::Remove,
            ..
        }
    ));
    assert_eq!(
        p.step(Input::Start, t0),
        Err(Conflict("process 'a' is already stopping".into()))
    );
    let fx = p.step(stale, t0).unwrap();
    assert!(fx.contains(&Effect::Forget));
    // an exit of an older generation changes nothing
    let mut q = proc(r#"{"id":"b","command":"x"}"#);
    q.spawned(1, t0, SystemTime::UNIX_EPOCH);
    let old = exited(&q, ExitStatus::Code(0));
    q.step(Input::Restart, t0).unwrap();
    q.step(exited(&q, ExitStatus::Code(0)), t0).unwrap();
    q.spawned(2, t0, SystemTime::UNIX_EPOCH);
    assert_eq!(q.step(old, t0).unwrap(), vec![]);
    assert_eq!(q.pid(), Some(2));
}

#[test]
fn gives_up_after_max_restarts() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true,"max_restarts":1}"#);
    p.spawned(1, t0, SystemTime::UNIX_EPOCH);
    p.step(exited(&p, ExitStatus::Code(1)), t0).unwrap();
    p.step(Input::Tick, t0 + S(22)).unwrap();
    p.spawned(2, t0 + S(22), SystemTime::UNIX_EPOCH);
    let fx = p.step(exited(&p, ExitStatus::Code(1)), t0 + S(23)).unwrap();
    assert_eq!(logs(&fx), "gave up after 1 consecutive restarts");
    assert_eq!(p.state, State::Failed);
}

#[test]
fn spawn_failure_backs_off_instead_of_busy_looping() {
    let t0 = Instant::now();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    let fx = p.spawn_failed("gone".into(), t0);
    assert!(logs(&fx).contains("failed to start: gone"));
    assert_eq!(p.state, State::Backoff { until: t0 + S(22) });
    let mut q = proc(r#"{"id":"b","command":"x"}"#);
    q.spawn_failed("gone".into(), t0);
    assert_eq!(q.state, State::Failed);
}

#[test]
fn periodic_runs_on_a_fixed_grid() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut p = proc(r#"{"id":"a","command":"x","periodic":true,"period_seconds":10}"#);
    p.spawned(1, t0, SystemTime::UNIX_EPOCH);
    p.step(exited(&p, ExitStatus::Code(0)), t0 + S(2)).unwrap();
    assert_eq!(p.state, State::Waiting { until: t0 + S(10) });
    assert_eq!(
        p.step(Input::Tick, t0 + S(10)).unwrap(),
        vec![Effect::Spawn]
    );
    // the spawn lands 5 ms late; the next slot is still t0 + 20 s
    p.spawned(2, t0 + S(10) + ms(5), SystemTime::UNIX_EPOCH);
    assert_eq!(p.deadline(), Some(t0 + S(20)));
    // a tick while the run is still going is skipped and logged
    let fx = p.step(Input::Tick, t0 + S(20)).unwrap();
    assert!(logs(&fx).contains("skipped periodic run"));
    assert_eq!(p.deadline(), Some(t0 + S(30)));
    p.step(exited(&p, ExitStatus::Code(1)), t0 + S(25)).unwrap();
    assert_eq!(p.state, State::Waiting { until: t0 + S(30) });
    assert_eq!(p.run_count, 2);
}
