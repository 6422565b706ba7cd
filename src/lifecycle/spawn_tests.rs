//! Unit tests of spawn results and of intent: a spawn's answer is an input,
//! a refused spawn puts back exactly what its request changed, and `want`
//! holds every ask (a pending restart, exeio's shutdown). Nothing sleeps.

use super::*;

fn spawn_failed(why: &str, refuse: bool) -> Input {
    Input::SpawnFailed {
        why: why.into(),
        refuse,
    }
}

#[test]
fn spawn_failures_back_off_and_jobs_record_them() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    let fx = p
        .step(spawn_failed("no such file", false), c.at(S(0)))
        .unwrap();
    assert!(logs(&fx).contains("failed to start: no such file"));
    assert_eq!(p.status(), Status::Backoff);
    assert_eq!(p.attempt_error.as_deref(), Some("no such file"));
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    p.step(spawn_failed("nope", false), c.at(S(0))).unwrap();
    assert_eq!(p.status(), Status::Failed);
    assert_eq!(p.state, State::Failed { why: "nope".into() });
    let mut j = proc(r#"{"id":"j","command":"x","periodic":true,"period_seconds":10}"#);
    j.step(Input::Start, c.at(S(0))).unwrap();
    let fx = j.step(spawn_failed("nope", false), c.at(S(0))).unwrap();
    let r = record(&fx).unwrap();
    assert_eq!(
        (r.result, r.trigger.as_str()),
        (RunResult::SpawnError, "start")
    );
    assert_eq!(
        j.status(),
        Status::Waiting,
        "the next run comes on schedule"
    );
}

#[test]
fn a_spawn_result_is_an_input_and_a_run_ends_a_failure() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true,"max_restarts":1}"#);
    assert_eq!(p.step(Input::Start, c.at(S(0))).unwrap(), [Effect::Spawn]);
    let fx = p.step(spawn_failed("nope", false), c.at(S(0))).unwrap();
    assert!(logs(&fx).contains("restarting in"), "{fx:?}");
    assert_eq!((p.attempts, p.error.as_deref()), (1, Some("nope")));
    assert!(spawns(&p.step(Input::Tick, c.at(S(60))).unwrap()));
    let fx = p.step(spawn_failed("nope", false), c.at(S(60))).unwrap();
    assert_eq!(
        logs(&fx),
        "failed to start: nope|gave up after 1 consecutive restarts"
    );
    assert_eq!(
        p.state,
        State::Failed {
            why: "gave up after 1 consecutive restarts".into()
        }
    );
    assert_eq!(p.status(), Status::Failed);
    assert_eq!(p.restarts_total, 1, "the failed automatic restart counts");
    // A run that starts ends the failure and its error.
    assert!(spawns(&p.step(Input::Start, c.at(S(61))).unwrap()));
    running(&mut p, &c, S(61), 7);
    assert_eq!(
        (p.pid(), p.error.as_deref(), p.attempts),
        (Some(7), None, 3)
    );
    assert_eq!(p.restarts_total, 1, "a start by hand is no restart");
}

#[test]
fn a_refused_spawn_puts_back_exactly_what_the_request_changed() {
    let c = Clock::new();
    // Backing off: a start by hand whose spawn is refused leaves the
    // backoff as it was (its time, its streak), the intent too.
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    running(&mut p, &c, S(0), 10);
    p.step(exited(&p, ExitStatus::Code(1)), c.at(S(1))).unwrap();
    let (state, intent, attempts) = (p.state.clone(), p.intent, p.attempts);
    assert_eq!((p.status(), p.streak), (Status::Backoff, 1));
    assert_eq!(p.step(Input::Start, c.at(S(2))).unwrap(), [Effect::Spawn]);
    assert_eq!((p.state.clone(), p.streak), (State::Idle, 0));
    let refused = p.step(spawn_failed("no such file", true), c.at(S(2)));
    assert_eq!(refused, Err(Conflict("no such file".into())));
    assert_eq!((p.state.clone(), p.streak, p.intent), (state, 1, intent));
    assert_eq!((p.attempts, p.attempt_error.clone()), (attempts, None));
    assert_eq!(p.want, Want::UP);

    // Stopped by hand: a refused restart leaves it stopped by hand, and
    // saves nothing (the `Persist` after the spawn is not carried out).
    let mut p = proc(r#"{"id":"b","command":"x","save_for_next_run":true}"#);
    p.step(Input::Stop, c.at(S(0))).unwrap();
    let fx = p.step(Input::Restart, c.at(S(1))).unwrap();
    assert_eq!(fx, [Effect::Spawn, Effect::Persist]);
    assert!(p.step(spawn_failed("nope", true), c.at(S(1))).is_err());
    assert_eq!((p.want, p.status()), (Want::Down, Status::ManuallyStopped));

    // Failed: still failed, for the same reason.
    let mut p = proc(r#"{"id":"f","command":"x"}"#);
    p.step(spawn_failed("gone", false), c.at(S(0))).unwrap();
    p.step(Input::Restart, c.at(S(1))).unwrap();
    assert!(
        p.step(spawn_failed("still gone", true), c.at(S(1)))
            .is_err()
    );
    assert_eq!(p.state, State::Failed { why: "gone".into() });
    assert_eq!(p.error.as_deref(), Some("gone"));

    // A job run by hand: its clock is as it was, and no run is recorded.
    let mut j = proc(r#"{"id":"j","command":"x","periodic":true,"period_seconds":10}"#);
    j.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut j, &c, S(0), 3);
    j.step(exited(&j, ExitStatus::Code(0)), c.at(S(1))).unwrap();
    let next = j.next_run_at();
    assert_eq!(j.step(Input::RunNow, c.at(S(2))).unwrap(), [Effect::Spawn]);
    assert!(j.step(spawn_failed("nope", true), c.at(S(2))).is_err());
    assert_eq!(j.job.as_ref().unwrap().pending, None);
    assert_eq!((j.next_run_at(), j.status()), (next, Status::Waiting));
    assert_eq!(j.job.as_ref().unwrap().last_result, Some(RunResult::Ok));
}

#[test]
fn a_later_input_is_never_put_back_by_an_earlier_request() {
    let c = Clock::new();
    // A stop that comes between a start and the answer to its spawn is not
    // undone by the start's refusal: the undo record went with the stop.
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    p.step(Input::Stop, c.at(S(0))).unwrap();
    p.step(Input::Start, c.at(S(1))).unwrap();
    p.step(Input::Stop, c.at(S(1))).unwrap();
    let intent = p.intent;
    let fx = p.step(spawn_failed("nope", true), c.at(S(1))).unwrap();
    assert!(logs(&fx).contains("failed to start: nope"), "{fx:?}");
    assert_eq!((p.want, p.intent), (Want::Down, intent));
    assert_eq!(p.status(), Status::ManuallyStopped);
    // Not refusable (an automatic spawn): failed, never put back.
    let mut p = proc(r#"{"id":"b","command":"x"}"#);
    p.step(Input::Start, c.at(S(0))).unwrap();
    p.step(spawn_failed("nope", false), c.at(S(0))).unwrap();
    assert_eq!(p.status(), Status::Failed);
    // A spawn held for its dependencies is a start carried out: its later
    // failure (once released) is the lifecycle's, not a refusal.
    let mut p = proc(r#"{"id":"c","command":"x"}"#);
    p.step(Input::Start, c.at(S(0))).unwrap();
    let waiting_for = vec!["db (started)".to_owned()];
    p.step(Input::Hold { waiting_for }, c.at(S(0))).unwrap();
    assert!(spawns(
        &p.step(Input::Release { unmet: vec![] }, c.at(S(1)))
            .unwrap()
    ));
    assert!(p.step(spawn_failed("nope", true), c.at(S(1))).is_ok());
    assert_eq!(p.status(), Status::Failed);
}

#[test]
fn intent_is_one_value_and_shutdown_keeps_a_manual_stop() {
    let c = Clock::new();
    // A start while the run is being stopped: up, restarting once.
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    running(&mut p, &c, S(0), 42);
    p.step(Input::Stop, c.at(S(1))).unwrap();
    assert_eq!(p.want, Want::Down);
    p.step(Input::Start, c.at(S(1))).unwrap();
    assert_eq!(p.want, Want::Up { restart_once: true });
    let fx = p
        .step(exited(&p, ExitStatus::Signal(15)), c.at(S(2)))
        .unwrap();
    assert!(spawns(&fx));
    assert_eq!(p.want, Want::UP, "once");
    // Shutdown: nothing starts, a manual stop is kept (status, save).
    let mut p = proc(r#"{"id":"b","command":"x"}"#);
    p.step(Input::Stop, c.at(S(0))).unwrap();
    p.step(Input::Shutdown, c.at(S(1))).unwrap();
    assert_eq!(p.want, Want::Halted { down: true });
    assert!(p.want.is_down() && p.halted());
    assert_eq!(p.status(), Status::ManuallyStopped);
    for request in [Input::Start, Input::Restart, Input::Stop, Input::Remove] {
        assert!(p.step(request, c.at(S(2))).is_err(), "refused while halted");
    }
    // A pending restart does not survive a shutdown.
    let mut p = proc(r#"{"id":"c","command":"x"}"#);
    running(&mut p, &c, S(0), 43);
    p.step(Input::Restart, c.at(S(1))).unwrap();
    p.step(Input::Shutdown, c.at(S(1))).unwrap();
    let fx = p
        .step(exited(&p, ExitStatus::Signal(15)), c.at(S(2)))
        .unwrap();
    assert_eq!(logs(&fx), "stopped for supervisor shutdown");
    assert!(!spawns(&fx));
    // A failed process stays failed through a shutdown; a stop ends it.
    let mut p = proc(r#"{"id":"d","command":"x"}"#);
    p.step(spawn_failed("nope", false), c.at(S(0))).unwrap();
    p.step(Input::Halt, c.at(S(1))).unwrap();
    assert_eq!(p.status(), Status::Failed);
    let mut p = proc(r#"{"id":"e","command":"x"}"#);
    p.step(spawn_failed("nope", false), c.at(S(0))).unwrap();
    p.step(Input::Stop, c.at(S(1))).unwrap();
    assert_eq!(
        (p.state.clone(), p.status()),
        (State::Idle, Status::ManuallyStopped)
    );
    assert_eq!(p.error.as_deref(), Some("nope"), "the error stays shown");
}
