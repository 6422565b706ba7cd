//! Graceful shutdown by POST /shutdown, SIGTERM and SIGINT: every child stopped (also
//! one that ignores TERM), logs flushed, exit 0, lock released, no restarts triggered.

use nix::sys::signal::Signal;
use serde_json::json;

use crate::util::*;

/// Adds a mix of children; returns every pid, with the stubborn one's group members.
fn populate(d: &Daemon) -> Vec<i32> {
    let mut pids = Vec::new();
    pids.push(pid_of(&add_ok(
        d,
        json!({"id": "plain", "command": "sleep", "args": ["1000"]}),
    )));
    let mut restarting = sh("restarting", "echo before-shutdown; exec sleep 1000");
    restarting["auto_restart"] = json!(true);
    pids.push(pid_of(&add_ok(d, restarting)));
    let mut stubborn = sh("stubborn", "trap '' TERM; echo ready; sleep 1000");
    stubborn["stop_timeout_seconds"] = json!(1);
    let leader = pid_of(&add_ok(d, stubborn));
    wait_log(d, "stubborn", "STDOUT: ready", SHORT);
    wait_log(d, "restarting", "STDOUT: before-shutdown", SHORT);
    assert!(wait_until(SHORT, || group_members(leader).len() == 2));
    pids.extend(group_members(leader));
    pids
}

fn assert_clean_exit(d: &mut Daemon, pids: &[i32]) {
    let status = d.wait_exit(LONG).expect("exeio did not exit");
    let stderr = d.stderr_text();
    assert_eq!(status.code(), Some(0), "exit {status}; stderr: {stderr}");
    let gone = wait_until(SHORT, || pids.iter().all(|p| !pid_alive(*p)));
    assert!(gone, "children outlived the shutdown: {pids:?}");
    // Logs were flushed: output and the stop are in the file.
    let log = std::fs::read_to_string(d.logs_dir().join("restarting.log")).unwrap();
    assert!(log.contains("STDOUT: before-shutdown"), "{log}");
    assert!(
        !log.contains("restarting in"),
        "shutdown triggered a restart: {log}"
    );
    // The lock is released: a new exeio starts on the same dirs.
    d.start_again();
    assert_eq!(d.get("/info").status, 200);
}

#[test]
fn post_shutdown_answers_then_stops_everything_and_exits_0() {
    let mut d = Daemon::start();
    let pids = populate(&d);
    let r = d.post("/shutdown", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"success": true, "message": "shutting down"})
    );
    assert_clean_exit(&mut d, &pids);
}

#[test]
fn sigterm_stops_everything_and_exits_0() {
    let mut d = Daemon::start();
    let pids = populate(&d);
    d.signal(Signal::SIGTERM);
    assert_clean_exit(&mut d, &pids);
}

#[test]
fn sigint_stops_everything_and_exits_0() {
    let mut d = Daemon::start();
    let pids = populate(&d);
    d.signal(Signal::SIGINT);
    assert_clean_exit(&mut d, &pids);
}

#[test]
fn shutdown_with_nothing_running_is_quick_and_clean() {
    let mut d = Daemon::start();
    assert_eq!(d.post("/shutdown", "").status, 200);
    let status = d.wait_exit(SHORT).expect("exeio did not exit");
    assert_eq!(status.code(), Some(0));
    let exeio_log = d.logs_dir().join("exeio.log");
    assert!(
        exeio_log.exists(),
        "no supervisor log at {}",
        exeio_log.display()
    );
}
