//! No orphan, even after `kill -9` of exeio (issue "Correct to the last
//! detail", point 6): each process has a cgroup, a stop or an exit ends
//! the whole cgroup, and a new exeio sweeps what a killed one left.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;

use crate::util::{
    self, Daemon, Options, TempDir, add_ok, pid_alive, sh, wait_log, wait_status, wait_until,
};

/// A child that starts a `setsid` daemon and a double-forked one, prints
/// their pids, then runs `tail` (`exec sleep 1000`, or `exit 0`).
fn escaper(id: &str, tail: &str) -> serde_json::Value {
    sh(
        id,
        &format!(
            "setsid sleep 1001 & echo \"setsid=$!\"; \
             sh -c 'sleep 1002 & echo \"forked=$!\"'; echo ready; {tail}"
        ),
    )
}

/// The pids the escaper printed.
fn escaped(d: &Daemon, id: &str) -> Vec<i32> {
    let lines = wait_log(d, id, "STDOUT: ready", util::SHORT);
    lines
        .iter()
        .filter_map(|l| {
            let (_, v) = l
                .split_once("setsid=")
                .or_else(|| l.split_once("forked="))?;
            v.trim().parse().ok()
        })
        .collect()
}

fn all_dead(pids: &[i32]) -> bool {
    wait_until(util::SHORT, || pids.iter().all(|&p| !pid_alive(p)))
}

#[test]
fn escaped_grandchildren_end_with_a_stop_and_with_an_exit() {
    let d = Daemon::start();
    assert_eq!(d.get("/info").json()["isolation"], "cgroup");
    add_ok(&d, escaper("stopped", "exec sleep 1000"));
    let pids = escaped(&d, "stopped");
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| pid_alive(p)));
    assert_eq!(d.post("/stop/stopped", "").status, 200);
    assert!(all_dead(&pids), "survived a stop: {pids:?}");

    add_ok(&d, escaper("exits", "exit 0"));
    let pids = escaped(&d, "exits");
    wait_status(&d, "exits", "stopped", util::SHORT);
    assert!(all_dead(&pids), "survived their parent's exit: {pids:?}");
}

#[test]
fn a_new_exeio_sweeps_what_a_killed_one_left() {
    let mut d = Daemon::start();
    let mut spec = escaper("left", "exec sleep 1000");
    spec["save_for_next_run"] = json!(true);
    let main = util::pid_of(&add_ok(&d, spec));
    let pids = escaped(&d, "left");
    d.kill9();
    assert!(wait_until(util::SHORT, || !pid_alive(main)), "PDEATHSIG");
    assert!(
        pids.iter().all(|&p| pid_alive(p)),
        "the escapers outlive a SIGKILLed exeio"
    );
    d.start_again();
    assert!(all_dead(&pids), "a new exeio did not sweep them: {pids:?}");
    // exeio.log is written by the logger thread: wait for the line.
    let log = || std::fs::read_to_string(d.logs_dir().join("exeio.log")).unwrap_or_default();
    assert!(
        wait_until(util::SHORT, || log().contains("left by an earlier exeio")),
        "{}",
        log()
    );
    // The saved process itself is back, in a clean cgroup.
    wait_status(&d, "left", "running", util::SHORT);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_saved_server_gets_its_port_back_after_kill_9_of_exeio() {
    let port = free_port();
    let mut d = Daemon::start();
    let mut spec = sh(
        "web",
        &format!("python3 -m http.server {port} --bind 127.0.0.1; echo server-ended"),
    );
    spec["save_for_next_run"] = json!(true);
    spec["auto_restart"] = json!(true);
    add_ok(&d, spec);
    let serving = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(
        wait_until(util::LONG, serving),
        "python3 -m http.server never listened"
    );
    d.kill9();
    d.start_again();
    let p = wait_status(&d, "web", "running", util::SHORT);
    assert!(
        wait_until(util::LONG, serving),
        "the port did not come back"
    );
    // Still the same run a moment later: not in a crash loop on "Address in use".
    assert!(!wait_until(Duration::from_secs(2), || util::state_of(
        &d, "web"
    ) != "running"));
    assert_eq!(util::status_of(&d, "web")["pid"], p["pid"]);
}

/// exeio's base cgroup, from its start-up line; `None` without cgroups.
fn base_cgroup(d: &Daemon) -> Option<std::path::PathBuf> {
    let mut line = None;
    wait_until(util::SHORT, || {
        line = d
            .stdout_lines()
            .into_iter()
            .find(|l| l.starts_with("Process isolation: "));
        line.is_some()
    });
    let rest = line?
        .strip_prefix("Process isolation: cgroup (")?
        .to_string();
    Some(rest.split_once("): ")?.0.into())
}

#[test]
fn a_failed_add_leaves_no_cgroup() {
    let d = Daemon::start();
    let Some(base) = base_cgroup(&d) else {
        eprintln!("skipped: exeio runs without cgroups here");
        return;
    };
    let bad = [
        json!({"id": "nouser", "command": "true", "user": "exeio-no-such-user"}),
        json!({"id": "noprog", "command": "/nonexistent/exeio-no-such-program"}),
    ];
    for spec in bad {
        let id = spec["id"].as_str().unwrap().to_string();
        assert_eq!(d.post_json("/add", &spec).status, 400, "{spec}");
        let dir = base.join(format!("p-{id}"));
        assert!(!dir.exists(), "{} left after a failed add", dir.display());
    }
    // A good one still gets its group.
    add_ok(&d, sh("good", "exec sleep 1000"));
    assert!(base.join("p-good").is_dir());
}

/// A base-group name of no exeio (`exeio-` and 16 hex digits).
fn stray_name(n: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("exeio-{:08x}{:08x}", std::process::id(), nanos ^ n)
}

#[test]
fn a_start_removes_empty_bases_beside_its_own_and_an_idle_exeio_makes_its_own_again() {
    let first = Daemon::start();
    let Some(base) = base_cgroup(&first) else {
        eprintln!("skipped: exeio runs without cgroups here");
        return;
    };
    let parent = base.parent().unwrap().to_path_buf();
    // Left by SIGKILLed exeio instances: an empty base, and one that still
    // has a group in it (rmdir refuses it).
    let empty = parent.join(stray_name(1));
    let full = parent.join(stray_name(2));
    std::fs::create_dir(&empty).unwrap();
    std::fs::create_dir_all(full.join("p-left")).unwrap();
    let second = Daemon::start();
    let gone = wait_until(util::SHORT, || !empty.exists());
    let kept = full.join("p-left").is_dir();
    let _ = std::fs::remove_dir(full.join("p-left"));
    let _ = std::fs::remove_dir(&full);
    assert!(gone, "{} still there", empty.display());
    assert!(kept, "a base with a group in it was removed");
    // The first exeio had no process, so its base was empty and went too
    // (unless yet another exeio took it first); its next process makes it again.
    assert!(
        wait_until(util::SHORT, || !base.exists()),
        "{}",
        base.display()
    );
    let p = util::pid_of(&add_ok(&first, sh("again", "exec sleep 1000")));
    let procs = std::fs::read_to_string(base.join("p-again/cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == p.to_string()),
        "pid {p} not in {procs:?}"
    );
    assert_eq!(second.get("/info").json()["isolation"], "cgroup");
}

#[test]
fn without_cgroups_process_groups_are_used_and_said() {
    let opts = Options {
        args: vec!["--no-cgroups".into()],
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    assert_eq!(d.get("/info").json()["isolation"], "process-group");
    assert!(
        wait_until(util::SHORT, || d
            .stdout_lines()
            .iter()
            .any(|l| l.starts_with("Process isolation: process groups"))),
        "{:?}",
        d.stdout_lines()
    );
    // The group still ends with a stop (its members; not a setsid escaper).
    add_ok(&d, sh("g", "sleep 1003 & echo \"kid=$!\"; exec sleep 1000"));
    let lines = wait_log(&d, "g", "STDOUT: kid=", util::SHORT);
    let kid: i32 = lines
        .iter()
        .find_map(|l| l.split_once("STDOUT: kid=")?.1.trim().parse().ok())
        .unwrap();
    assert_eq!(d.post("/stop/g", "").status, 200);
    assert!(wait_until(util::SHORT, || !pid_alive(kid)));
}
