//! One process through its life: spawn (own group, env, working dir), stop (TERM to the
//! group, KILL after the grace period), start, restart, remove, exits noticed, and the
//! guarantees around exeio's own death (no zombies, no orphans).

use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::util::*;

fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": "sleep", "args": ["1000"]})
}

#[test]
fn a_child_runs_in_its_own_process_group() {
    let d = Daemon::start();
    let p = add_ok(&d, sleeper("s"));
    assert_eq!(p["status"], "running");
    assert_eq!(p["is_running"], true);
    let pid = pid_of(&p);
    let stat = proc_stat(pid).expect("child in /proc");
    assert_eq!(stat.pgrp, pid, "child is not a group leader: {stat:?}");
    assert_eq!(stat.ppid, d.pid(), "child is not exeio's child: {stat:?}");
    assert_ne!(proc_stat(d.pid()).expect("exeio").pgrp, pid);
    let log = wait_log(&d, "s", &format!("started run 1 (pid {pid})"), SHORT);
    assert!(log.iter().all(|l| has_timestamp(l)), "{log:#?}");
    assert!(log[0].contains("SYSTEM: "), "{log:#?}");
}

#[test]
fn env_and_working_dir_are_applied() {
    let d = Daemon::start();
    let wd = d.tmp().join("work dir");
    std::fs::create_dir_all(&wd).unwrap();
    let mut spec = sh("e", r#"echo "foo=$FOO"; echo "home=$HOME"; pwd"#);
    spec["env"] = json!({"FOO": "bar baz"});
    spec["working_dir"] = json!(wd.display().to_string());
    add_ok(&d, spec);
    wait_status(&d, "e", "stopped", SHORT);
    let log = logs(&d, "e");
    let has = |s: &str| log.iter().any(|l| l.ends_with(s));
    assert!(has("STDOUT: foo=bar baz"), "{log:#?}");
    // The environment is added to the inherited one.
    let home = d.tmp().join("home").display().to_string();
    assert!(has(&format!("STDOUT: home={home}")), "{log:#?}");
    assert!(has(&format!("STDOUT: {}", wd.display())), "{log:#?}");
    let p = status_of(&d, "e");
    assert_eq!(p["last_exit"]["code"], 0, "{p}");
    wait_log(&d, "e", "exited with code 0", SHORT);
}

#[test]
fn stop_ends_the_process_and_its_group() {
    let d = Daemon::start();
    let pid = pid_of(&add_ok(&d, sleeper("s")));
    let r = d.post("/stop/s", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["success"], true);
    // /stop answers after the process has exited.
    assert_eq!(v["process"]["status"], "manually_stopped", "{v}");
    assert!(
        !pid_alive(pid),
        "pid {pid} still alive after /stop answered"
    );
    let p = status_of(&d, "s");
    assert_eq!(p["status"], "manually_stopped");
    assert_eq!(p["is_running"], false);
    assert_eq!(p["pid"], Value::Null);
    assert_eq!(p["last_exit"]["signal"], 15, "{p}");
    // SIGKILL is delivered asynchronously: the group empties within moments.
    assert!(
        wait_until(SHORT, || group_members(pid).is_empty()),
        "group left behind"
    );
    wait_log(&d, "s", "stopped manually", SHORT);
    // Stopping again is fine and changes nothing.
    let r = d.post("/stop/s", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(state_of(&d, "s"), "manually_stopped");
}

#[test]
fn start_after_stop_and_restart_give_new_pids() {
    let d = Daemon::start();
    let first = pid_of(&add_ok(&d, sleeper("s")));
    assert_eq!(d.post("/start/s", "").status, 409, "start of a running one");
    assert_eq!(d.post("/stop/s", "").status, 200);
    let r = d.post("/start/s", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let p = status_of(&d, "s");
    assert_eq!(p["status"], "running");
    assert_eq!(p["run_count"], 2);
    let second = pid_of(&p);
    assert_ne!(second, first);
    assert!(pid_alive(second));
    let r = d.post("/restart/s", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let p = status_of(&d, "s");
    assert_eq!(p["status"], "running");
    assert_eq!(p["run_count"], 3);
    let third = pid_of(&p);
    assert_ne!(third, second);
    assert!(pid_alive(third));
    assert!(wait_until(SHORT, || !pid_alive(second)));
    wait_log(&d, "s", &format!("started run 3 (pid {third})"), SHORT);
}

#[test]
fn restart_all_and_stop_all_act_on_every_process() {
    let d = Daemon::start();
    let a = pid_of(&add_ok(&d, sleeper("a")));
    let b = pid_of(&add_ok(&d, sleeper("b")));
    let r = d.post("/restart-all", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["processes"].as_array().map(Vec::len), Some(2), "{v}");
    let (a2, b2) = (pid_of(&status_of(&d, "a")), pid_of(&status_of(&d, "b")));
    assert!(a2 != a && b2 != b);
    assert!(wait_until(SHORT, || !pid_alive(a) && !pid_alive(b)));
    let r = d.post("/stop-all", "");
    assert_eq!(r.status, 200, "{}", r.body);
    for id in ["a", "b"] {
        assert_eq!(state_of(&d, id), "manually_stopped");
    }
    assert!(!pid_alive(a2) && !pid_alive(b2));
}

#[test]
fn remove_forgets_the_process_but_keeps_its_log() {
    let d = Daemon::start();
    let pid = pid_of(&add_ok(&d, sh("r", "echo hello-from-r; sleep 1000")));
    wait_log(&d, "r", "STDOUT: hello-from-r", SHORT);
    let r = d.post("/remove/r", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["success"], true);
    assert!(!pid_alive(pid), "removed process still runs");
    assert_eq!(d.get("/status/r").status, 404);
    assert_eq!(d.get("/list").json(), json!([]));
    let log = std::fs::read_to_string(d.logs_dir().join("r.log")).expect("log kept");
    assert!(log.contains("hello-from-r"), "{log}");
    // The id is free again.
    add_ok(&d, sleeper("r"));
}

#[test]
fn exits_are_recorded_with_code_or_signal() {
    let d = Daemon::start();
    add_ok(&d, sh("seven", "exit 7"));
    let p = wait_status(&d, "seven", "stopped", SHORT);
    assert_eq!(p["last_exit"]["code"], 7, "{p}");
    assert!(
        is_rfc3339_utc(p["last_exit"]["at"].as_str().unwrap_or("")),
        "{p}"
    );
    assert_eq!(p["is_running"], false);
    assert_eq!(p["pid"], Value::Null);
    wait_log(&d, "seven", "exited with code 7", SHORT);

    let pid = pid_of(&add_ok(&d, sleeper("victim")));
    send_signal(pid, Signal::SIGKILL);
    let p = wait_status(&d, "victim", "stopped", SHORT);
    assert_eq!(p["last_exit"]["signal"], 9, "{p}");
    assert_eq!(p["pid"], Value::Null);
    wait_log(&d, "victim", "killed by signal 9", SHORT);
}

#[test]
fn many_short_children_leave_no_zombies() {
    let d = Daemon::start();
    for i in 0..50 {
        add_ok(&d, sh(&format!("z{i}"), "exit 0"));
    }
    let done = wait_until(LONG, || {
        let list = d.get("/list").json();
        let list = list.as_array().cloned().unwrap_or_default();
        list.len() == 50 && list.iter().all(|p| p["status"] == "stopped")
    });
    assert!(done, "not all stopped: {}", d.get("/list").body);
    let reaped = wait_until(SHORT, || zombie_children_of(d.pid()) == 0);
    assert!(
        reaped,
        "{} zombie children of exeio",
        zombie_children_of(d.pid())
    );
    assert!(children_of(d.pid()).is_empty());
}

#[test]
fn stop_sends_the_configured_signal() {
    let d = Daemon::start();
    let mut spec = sh(
        "polite",
        "trap 'echo got-int; exit 0' INT; echo ready; while true; do sleep 0.1; done",
    );
    spec["stop_signal"] = json!("INT");
    add_ok(&d, spec);
    wait_log(&d, "polite", "STDOUT: ready", SHORT);
    let r = d.post("/stop/polite", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let p = status_of(&d, "polite");
    assert_eq!(p["status"], "manually_stopped", "{p}");
    assert_eq!(p["last_exit"]["code"], 0, "{p}");
    wait_log(&d, "polite", "STDOUT: got-int", SHORT);
}

/// Kills what is left of a test's process group (pids exeio started for this test).
fn kill_leftovers(pgrp: i32) {
    for pid in group_members(pgrp) {
        send_signal(pid, Signal::SIGKILL);
    }
}

#[test]
fn a_child_that_closes_its_output_still_counts_as_running() {
    let d = Daemon::start();
    let pid = pid_of(&add_ok(&d, sh("closed", "exec >&- 2>&-; exec sleep 1000")));
    let changed = wait_until(Duration::from_secs(1), || {
        state_of(&d, "closed") != "running"
    });
    assert!(
        !changed,
        "closed pipes taken for an exit: {}",
        status_of(&d, "closed")
    );
    send_signal(pid, Signal::SIGKILL);
    let p = wait_status(&d, "closed", "stopped", SHORT);
    assert_eq!(p["last_exit"]["signal"], 9, "{p}");
}

#[test]
fn stop_leaves_no_group_member_behind() {
    let d = Daemon::start();
    let mut spec = sh(
        "leak",
        "(trap '' TERM; exec sleep 1000) & echo forked; wait",
    );
    spec["stop_timeout_seconds"] = json!(1);
    let pid = pid_of(&add_ok(&d, spec));
    wait_log(&d, "leak", "STDOUT: forked", SHORT);
    assert!(wait_until(SHORT, || group_members(pid).len() == 2));
    assert_eq!(d.post("/stop/leak", "").status, 200);
    let clean = wait_until(SHORT, || group_members(pid).is_empty());
    let left = group_members(pid);
    kill_leftovers(pid);
    assert!(
        clean,
        "a TERM-ignoring group member survived /stop: {left:?}"
    );
}

#[test]
fn concurrent_adds_all_succeed() {
    let d = Daemon::start();
    let (addr, key) = (d.addr().to_string(), d.key.clone());
    let workers: Vec<_> = (0..20)
        .map(|i| {
            let (addr, key) = (addr.clone(), key.clone());
            thread::spawn(move || {
                let body = json!({"id": format!("c{i}"), "command": "sleep", "args": ["1000"]});
                let body = body.to_string();
                let headers = [("exeio-api-key", key.as_str())];
                http(&addr, "POST", "/add", &headers, Some(body.as_bytes())).status
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), 200);
    }
    let list = d.get("/list").json();
    let list = list.as_array().expect("list");
    assert_eq!(list.len(), 20);
    assert!(list.iter().all(|p| p["status"] == "running"));
}

#[test]
fn stopping_a_paused_process_sends_sigcont_after_the_stop_signal() {
    let d = Daemon::start();
    let mut spec = sleeper("paused");
    spec["stop_timeout_seconds"] = json!(30);
    let pid = pid_of(&add_ok(&d, spec));
    send_signal(pid, Signal::SIGSTOP);
    assert!(wait_until(SHORT, || proc_stat(pid).is_some_and(|s| s.state == 'T')));
    let began = std::time::Instant::now();
    assert_eq!(d.post("/stop/paused", "").status, 200);
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?}: no SIGCONT"
    );
    let lines = logs(&d, "paused");
    assert!(
        lines.iter().any(|l| l.ends_with("killed by signal 15")),
        "{lines:#?}"
    );
}

#[test]
fn a_storm_of_sighup_while_spawning_harms_no_child() {
    let d = Daemon::start();
    let pid = d.pid();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                send_signal(pid, Signal::SIGHUP);
                sent += 1;
                thread::sleep(Duration::from_micros(200));
            }
            sent
        })
    };
    for i in 0..500 {
        let spec = json!({"id": format!("c{i}"), "command": "sh", "args": ["-c", format!("echo ran-{i}")]});
        assert_eq!(add(&d, spec).0, 200, "add c{i}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = storm.join().unwrap();
    assert!(pid_alive(pid), "exeio died in the storm");
    let list = d.get("/list").json();
    for i in 0..500 {
        let id = format!("c{i}");
        let p = wait_status(&d, &id, "stopped", SHORT);
        assert_eq!(p["last_exit"]["code"], 0, "{id} did not exit 0: {p}");
        let ran = logs(&d, &id)
            .iter()
            .any(|l| l.ends_with(&format!("STDOUT: ran-{i}")));
        assert!(ran, "{id} did not run its command");
    }
    assert_eq!(list.as_array().unwrap().len(), 500);
    let exeio_log = std::fs::read_to_string(d.logs_dir().join("exeio.log")).unwrap();
    let reopened = exeio_log.matches("log files reopened (SIGHUP)").count();
    assert!(reopened > 0, "{sent} SIGHUPs sent, none acted on");
    println!("{sent} SIGHUPs during 500 spawns; {reopened} reopens");
}
