//! Unit tests of the process state machine: time is an input, nothing sleeps.

use super::*;
use crate::spec::parse_add;

const S: fn(u64) -> Duration = Duration::from_secs;

struct Clock {
    t0: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock { t0: Instant::now() }
    }

    fn at(&self, d: Duration) -> Now {
        Now {
            at: self.t0 + d,
            wall: SystemTime::UNIX_EPOCH + S(1_800_000_000) + d,
        }
    }
}

fn proc(json: &str) -> Proc {
    Proc::new(parse_add(json.as_bytes()).unwrap(), Want::UP)
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

fn spawns(fx: &[Effect]) -> bool {
    fx.contains(&Effect::Spawn)
}

fn record(fx: &[Effect]) -> Option<&RunRecord> {
    fx.iter().find_map(|e| match e {
        Effect::Record(r) => Some(r),
        _ => None,
    })
}

/// Started at `c.at(d)`.
fn running(p: &mut Proc, c: &Clock, d: Duration, pid: u32) {
    assert_eq!(p.step(Input::Spawned { pid }, c.at(d)).unwrap(), vec![]);
    assert_eq!(p.status(), Status::Running);
}

#[test]
fn crash_goes_to_backoff_then_restarts_on_the_deadline() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    assert_eq!(
        p.step(Input::Start, c.at(S(0))).unwrap(),
        vec![Effect::Spawn]
    );
    running(&mut p, &c, S(0), 10);
    let fx = p.step(exited(&p, ExitStatus::Code(3)), c.at(S(1))).unwrap();
    assert_eq!(
        logs(&fx),
        "restarting in 22s after crash with exit code 3 (restart #1)"
    );
    assert_eq!(p.status(), Status::Backoff);
    assert_eq!(p.next_run_at(), Some(c.at(S(23)).at));
    assert_eq!(p.streak, 1);
    assert!(!spawns(&p.step(Input::Tick, c.at(S(22))).unwrap()));
    assert!(spawns(&p.step(Input::Tick, c.at(S(23))).unwrap()));
    running(&mut p, &c, S(23), 11);
    assert_eq!(p.restarts_total, 1);
    assert_eq!((p.exits.failure, p.run_count), (1, 2));
}

#[test]
fn custom_backoff_restarts_at_once() {
    let c = Clock::new();
    let mut p = proc(
        r#"{"id":"a","command":"x","auto_restart":true,"backoff_seconds":[0],"rapid_exit_penalty_seconds":0}"#,
    );
    running(&mut p, &c, S(0), 10);
    let fx = p
        .step(exited(&p, ExitStatus::Signal(9)), c.at(S(1)))
        .unwrap();
    assert!(logs(&fx).contains("restarting in 0s"), "{}", logs(&fx));
    assert_eq!(p.deadline(), Some(c.at(S(1)).at), "due now");
    assert!(spawns(&p.step(Input::Tick, c.at(S(1))).unwrap()));
}

#[test]
fn policies_never_and_on_failure() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    running(&mut p, &c, S(0), 10);
    assert_eq!(
        p.step(exited(&p, ExitStatus::Code(1)), c.at(S(0))).unwrap(),
        vec![]
    );
    assert_eq!(p.status(), Status::Stopped);
    let mut p = proc(r#"{"id":"a","command":"x","restart_policy":"on-failure"}"#);
    running(&mut p, &c, S(0), 10);
    p.step(exited(&p, ExitStatus::Code(0)), c.at(S(0))).unwrap();
    assert_eq!(p.status(), Status::Stopped);
    running(&mut p, &c, S(0), 11);
    let fx = p
        .step(exited(&p, ExitStatus::Signal(9)), c.at(S(0)))
        .unwrap();
    assert!(logs(&fx).contains("after external kill signal 9"));
}

#[test]
fn manual_stop_sends_term_and_cont_escalates_and_never_restarts() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true,"stop_timeout_seconds":3}"#);
    running(&mut p, &c, S(0), 42);
    let fx = p.step(Input::Stop, c.at(S(1))).unwrap();
    let signals: Vec<i32> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Signal { pgid: 42, signal } => Some(*signal),
            _ => None,
        })
        .collect();
    assert_eq!(
        signals,
        [15, SIGCONT],
        "TERM, then CONT for a paused process"
    );
    assert_eq!(p.deadline(), Some(c.at(S(4)).at));
    assert_eq!(p.step(Input::Tick, c.at(S(2))).unwrap(), vec![]);
    let fx = p.step(Input::Tick, c.at(S(4))).unwrap();
    assert!(fx.contains(&Effect::Signal {
        pgid: 42,
        signal: SIGKILL
    }));
    assert_eq!(p.deadline(), None, "SIGKILL once, then wait for the exit");
    let fx = p
        .step(exited(&p, ExitStatus::Signal(9)), c.at(S(5)))
        .unwrap();
    assert_eq!(logs(&fx), "stopped manually");
    assert!(!spawns(&fx));
    assert_eq!(p.status(), Status::ManuallyStopped);
}

#[test]
fn the_last_request_wins() {
    let c = Clock::new();
    // restart, then stop while the old run ignores TERM: it stays down
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true}"#);
    running(&mut p, &c, S(0), 42);
    p.step(Input::Restart, c.at(S(1))).unwrap();
    assert_eq!(p.want, Want::Up { restart_once: true });
    p.step(Input::Stop, c.at(S(1))).unwrap();
    let fx = p
        .step(exited(&p, ExitStatus::Signal(9)), c.at(S(2)))
        .unwrap();
    assert!(!spawns(&fx), "the stop came last");
    assert_eq!(p.status(), Status::ManuallyStopped);

    // stop, then restart before the exit: it starts again
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    running(&mut p, &c, S(0), 42);
    p.step(Input::Stop, c.at(S(1))).unwrap();
    p.step(Input::Restart, c.at(S(1))).unwrap();
    let fx = p
        .step(exited(&p, ExitStatus::Signal(15)), c.at(S(2)))
        .unwrap();
    assert!(spawns(&fx), "the restart came last");
    assert_eq!(p.want, Want::UP);

    // every request moves the intent on: a reply can tell it was overridden
    let before = p.intent;
    p.step(Input::Stop, c.at(S(3))).unwrap();
    assert_eq!(p.intent, before + 1);
}

#[test]
fn remove_wins_over_later_requests() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    running(&mut p, &c, S(0), 42);
    p.step(Input::Remove, c.at(S(1))).unwrap();
    assert!(p.step(Input::Restart, c.at(S(1))).is_err());
    assert!(p.step(Input::Start, c.at(S(1))).is_err());
    let fx = p
        .step(exited(&p, ExitStatus::Signal(15)), c.at(S(2)))
        .unwrap();
    assert!(fx.contains(&Effect::Forget));
    // an idle process is forgotten at once
    let mut p = proc(r#"{"id":"b","command":"x"}"#);
    assert_eq!(
        p.step(Input::Remove, c.at(S(0))).unwrap(),
        vec![Effect::Log("removed".into()), Effect::Forget]
    );
}

#[test]
fn a_manual_stop_of_a_saved_process_is_saved_and_shutdown_changes_no_want() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","save_for_next_run":true,"auto_restart":true}"#);
    running(&mut p, &c, S(0), 7);
    let fx = p.step(Input::Stop, c.at(S(1))).unwrap();
    assert!(fx.contains(&Effect::Persist));
    p.step(exited(&p, ExitStatus::Signal(15)), c.at(S(1)))
        .unwrap();
    let fx = p.step(Input::Start, c.at(S(2))).unwrap();
    assert!(fx.contains(&Effect::Persist) && spawns(&fx));
    running(&mut p, &c, S(2), 8);
    let fx = p.step(Input::Shutdown, c.at(S(3))).unwrap();
    assert!(!fx.contains(&Effect::Persist));
    let fx = p
        .step(exited(&p, ExitStatus::Signal(15)), c.at(S(3)))
        .unwrap();
    assert!(!spawns(&fx));
    assert_eq!(p.want, Want::Halted { down: false });
    assert!(!p.want.is_down(), "it comes back with exeio");
    assert_eq!(p.status(), Status::Stopped);
}

#[test]
fn gives_up_after_max_restarts() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","auto_restart":true,"max_restarts":1}"#);
    running(&mut p, &c, S(0), 1);
    p.step(exited(&p, ExitStatus::Code(1)), c.at(S(1))).unwrap();
    assert_eq!(p.status(), Status::Backoff);
    p.step(Input::Tick, c.at(S(100))).unwrap();
    running(&mut p, &c, S(100), 2);
    let fx = p
        .step(exited(&p, ExitStatus::Code(1)), c.at(S(101)))
        .unwrap();
    assert_eq!(logs(&fx), "gave up after 1 consecutive restarts");
    assert_eq!(p.status(), Status::Failed);
    // a manual start begins a new streak
    assert!(spawns(&p.step(Input::Start, c.at(S(200))).unwrap()));
    assert_eq!(p.streak, 0);
}

#[test]
fn stale_exits_are_ignored() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x"}"#);
    running(&mut p, &c, S(0), 1);
    let old = exited(&p, ExitStatus::Code(0));
    p.step(Input::Restart, c.at(S(1))).unwrap();
    p.step(old.clone(), c.at(S(2))).unwrap();
    running(&mut p, &c, S(2), 2);
    assert_eq!(p.step(old, c.at(S(3))).unwrap(), vec![]);
    assert_eq!(p.status(), Status::Running);
}

#[test]
fn periodic_runs_on_a_fixed_grid_and_skips_overlaps() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"j","command":"x","periodic":true,"period_seconds":10}"#);
    assert!(spawns(&p.step(Input::Start, c.at(S(0))).unwrap()));
    running(&mut p, &c, S(0), 1);
    let fx = p.step(exited(&p, ExitStatus::Code(0)), c.at(S(3))).unwrap();
    let r = record(&fx).unwrap();
    assert_eq!(
        (r.run, r.result, r.trigger.as_str()),
        (1, RunResult::Ok, "start")
    );
    assert_eq!(p.status(), Status::Waiting);
    assert_eq!(p.next_run_at(), Some(c.at(S(10)).at));
    assert!(spawns(&p.step(Input::Tick, c.at(S(10))).unwrap()));
    running(&mut p, &c, S(10), 2);
    // runs long: the tick at 20 is skipped, and counted
    let fx = p.step(Input::Tick, c.at(S(20))).unwrap();
    assert!(logs(&fx).contains("skipped"), "{}", logs(&fx));
    assert_eq!(p.next_run_at(), Some(c.at(S(30)).at));
    let fx = p
        .step(exited(&p, ExitStatus::Code(1)), c.at(S(25)))
        .unwrap();
    let r = record(&fx).unwrap();
    assert_eq!(
        (r.result, r.trigger.as_str()),
        (RunResult::Failed, "schedule")
    );
    assert_eq!(
        p.status(),
        Status::Waiting,
        "a failed run is a result, not a state"
    );
    assert!(spawns(&p.step(Input::Tick, c.at(S(30))).unwrap()));
    running(&mut p, &c, S(30), 3);
    let fx = p
        .step(exited(&p, ExitStatus::Code(0)), c.at(S(31)))
        .unwrap();
    assert_eq!(record(&fx).unwrap().skipped_before, 1, "the tick at 20");
}

#[test]
fn overlap_queue_replace_and_timeouts() {
    let c = Clock::new();
    let mut q =
        proc(r#"{"id":"q","command":"x","periodic":true,"period_seconds":10,"overlap":"queue"}"#);
    q.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut q, &c, S(0), 1);
    assert!(logs(&q.step(Input::Tick, c.at(S(10))).unwrap()).contains("queued"));
    let fx = q.step(Input::Tick, c.at(S(20))).unwrap();
    assert!(logs(&fx).contains("skipped"), "one queued run at most");
    let fx = q
        .step(exited(&q, ExitStatus::Code(0)), c.at(S(21)))
        .unwrap();
    assert!(
        spawns(&fx),
        "the queued run starts when the current one ends"
    );

    let mut r =
        proc(r#"{"id":"r","command":"x","periodic":true,"period_seconds":10,"overlap":"replace"}"#);
    r.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut r, &c, S(0), 5);
    let fx = r.step(Input::Tick, c.at(S(10))).unwrap();
    assert!(fx.contains(&Effect::Signal {
        pgid: 5,
        signal: 15
    }));
    let fx = r
        .step(exited(&r, ExitStatus::Signal(15)), c.at(S(11)))
        .unwrap();
    assert_eq!(record(&fx).unwrap().result, RunResult::Replaced);
    assert!(spawns(&fx));

    let mut t = proc(
        r#"{"id":"t","command":"x","periodic":true,"period_seconds":100,"timeout_seconds":5}"#,
    );
    t.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut t, &c, S(0), 9);
    assert_eq!(t.deadline(), Some(c.at(S(5)).at));
    let fx = t.step(Input::Tick, c.at(S(5))).unwrap();
    assert!(logs(&fx).contains("run timed out"), "{}", logs(&fx));
    let fx = t
        .step(exited(&t, ExitStatus::Signal(15)), c.at(S(6)))
        .unwrap();
    assert_eq!(record(&fx).unwrap().result, RunResult::TimedOut);
    assert!(!spawns(&fx));
    assert_eq!(t.status(), Status::Waiting);
}

#[test]
fn run_now_follows_the_overlap_policy() {
    let c = Clock::new();
    let mut j = proc(r#"{"id":"j","command":"x","periodic":true,"period_seconds":60}"#);
    j.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut j, &c, S(0), 1);
    assert!(
        j.step(Input::RunNow, c.at(S(1))).is_err(),
        "skip: still running"
    );
    j.step(exited(&j, ExitStatus::Code(0)), c.at(S(2))).unwrap();
    assert!(spawns(&j.step(Input::RunNow, c.at(S(3))).unwrap()));
    running(&mut j, &c, S(3), 2);
    let fx = j.step(exited(&j, ExitStatus::Code(0)), c.at(S(4))).unwrap();
    assert_eq!(record(&fx).unwrap().trigger, "manual");
    assert_eq!(
        j.next_run_at(),
        Some(c.at(S(60)).at),
        "the schedule is unchanged"
    );
    let mut s = proc(r#"{"id":"s","command":"x"}"#);
    assert!(s.step(Input::RunNow, c.at(S(0))).is_err(), "not a job");
}

#[test]
fn a_stopped_job_waits_for_nothing() {
    let c = Clock::new();
    let mut j = proc(r#"{"id":"j","command":"x","periodic":true,"period_seconds":10}"#);
    j.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut j, &c, S(0), 1);
    j.step(exited(&j, ExitStatus::Code(0)), c.at(S(1))).unwrap();
    j.step(Input::Stop, c.at(S(2))).unwrap();
    assert_eq!(j.status(), Status::ManuallyStopped);
    assert_eq!(j.deadline(), None);
    assert!(!spawns(&j.step(Input::Tick, c.at(S(10))).unwrap()));
}

#[test]
fn a_calendar_job_waits_for_its_time_and_catches_up_once() {
    let c = Clock::new();
    let mut j = proc(r#"{"id":"cal","command":"x","schedule":"*/10 * * * * *","timezone":"UTC"}"#);
    // Added (started): nothing runs now; the first time is the next :x0.
    assert!(!spawns(&j.step(Input::Start, c.at(S(0))).unwrap()));
    assert_eq!(j.status(), Status::Waiting);
    let first = j.next_run_at().unwrap();
    let gap = first.duration_since(c.at(S(0)).at);
    assert!(gap > Duration::ZERO && gap <= S(10), "{gap:?}");
    let due = gap + Duration::from_millis(1);
    assert!(spawns(&j.step(Input::Tick, c.at(due)).unwrap()));
    running(&mut j, &c, due, 1);
    let fx = j
        .step(exited(&j, ExitStatus::Code(0)), c.at(due + S(1)))
        .unwrap();
    let r = record(&fx).unwrap();
    assert_eq!(r.trigger, "schedule");
    assert!(r.scheduled_at.as_deref().unwrap().ends_with("0Z"), "{r:?}");
    assert_eq!(j.next_run_at(), Some(first + S(10)));
    // exeio was down for a minute: with catch_up, one run at start.
    let mut back = proc(
        r#"{"id":"cal","command":"x","schedule":"*/10 * * * * *","timezone":"UTC","catch_up":true}"#,
    );
    back.job.as_mut().unwrap().last_scheduled = j.job.as_ref().unwrap().last_scheduled;
    let fx = back.revive(c.at(due + S(60)));
    assert!(spawns(&fx), "{fx:?}");
    running(&mut back, &c, due + S(60), 2);
    let fx = back
        .step(exited(&back, ExitStatus::Code(0)), c.at(due + S(61)))
        .unwrap();
    let r = record(&fx).unwrap();
    assert_eq!((r.trigger.as_str(), r.skipped_before), ("catch_up", 5));
    // without catch_up, nothing runs at start
    let mut plain =
        proc(r#"{"id":"cal","command":"x","schedule":"*/10 * * * * *","timezone":"UTC"}"#);
    plain.job.as_mut().unwrap().last_scheduled = j.job.as_ref().unwrap().last_scheduled;
    assert!(!spawns(&plain.revive(c.at(due + S(60)))));
}

#[test]
fn three_samples_over_max_memory_restart_through_backoff_whatever_the_policy() {
    let c = Clock::new();
    let mut p = proc(r#"{"id":"a","command":"x","max_memory_bytes":2000000}"#);
    p.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut p, &c, S(0), 10);
    let sample = |p: &Proc, bytes| Input::Memory {
        generation: p.generation(),
        bytes,
    };
    // two over, one under: the count starts again
    for (t, bytes) in [(5, 3_000_000), (10, 3_000_000), (15, 1_000_000)] {
        assert!(p.step(sample(&p, bytes), c.at(S(t))).unwrap().is_empty());
    }
    // a stale run's sample counts for nothing
    let stale = Input::Memory {
        generation: p.generation() - 1,
        bytes: 9_000_000,
    };
    assert!(p.step(stale, c.at(S(16))).unwrap().is_empty());
    assert!(
        p.step(sample(&p, 3_000_000), c.at(S(20)))
            .unwrap()
            .is_empty()
    );
    assert!(
        p.step(sample(&p, 3_000_000), c.at(S(25)))
            .unwrap()
            .is_empty()
    );
    let fx = p.step(sample(&p, 3_000_000), c.at(S(30))).unwrap();
    assert!(logs(&fx).contains("over max_memory_bytes (2000000) for 3 samples in a row"));
    assert!(fx.contains(&Effect::Signal {
        pgid: 10,
        signal: 15
    }));
    assert_eq!(p.status(), Status::Stopping);
    // restart_policy is "never", yet the stop restarts it, through backoff
    let fx = p
        .step(exited(&p, ExitStatus::Signal(15)), c.at(S(31)))
        .unwrap();
    assert_eq!(p.status(), Status::Backoff);
    assert!(logs(&fx).contains("after exceeding max_memory_bytes (restart #1)"));
    // without a limit, samples do nothing
    let mut q = proc(r#"{"id":"b","command":"x"}"#);
    q.step(Input::Start, c.at(S(0))).unwrap();
    running(&mut q, &c, S(0), 11);
    for t in 1..5 {
        assert!(q.step(sample(&q, u64::MAX), c.at(S(t))).unwrap().is_empty());
    }
}

#[path = "spawn_tests.rs"]
mod spawn;
