//! Family 4, faults: children that ignore SIGTERM or leave a grandchild holding
//! their pipes, exeio itself SIGKILLed (idle or in the middle of saving), long
//! restart loops, and dirs exeio cannot create. Nothing may hang, leak, orphan a
//! child or leave a `processes.json` that does not parse.

use std::fs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{
    self, Daemon, SHORT, TempDir, add_ok, children_of, group_members, pid_alive, pid_of, sh,
    status_of, wait_log, wait_status, wait_until, zombie_children_of,
};
use crate::util::{Leftovers, Table};

#[test]
fn child_ignoring_sigterm_is_sigkilled_after_the_grace_period() {
    let d = Daemon::start();
    let mut spec = sh("stubborn", "trap '' TERM; echo ready; sleep 1000");
    spec["stop_timeout_seconds"] = json!(1);
    let pid = pid_of(&add_ok(&d, spec));
    wait_log(&d, "stubborn", "ready", SHORT);
    let _left = Leftovers(group_members(pid));
    let began = Instant::now();
    let r = d.post("/stop/stubborn", "");
    let took = began.elapsed();
    let mut t = Table::new("faults");
    let got = format!("{} after {took:?}", r.status);
    let ok =
        r.status == 200 && took >= Duration::from_millis(900) && took < Duration::from_secs(15);
    t.row("stop of a TERM-ignoring child", "200 after ~1 s", &got, ok);
    let p = status_of(&d, "stubborn");
    t.row(
        "its exit",
        "manually_stopped, signal 9",
        &format!("{} {}", p["status"], p["last_exit"]),
        p["status"] == "manually_stopped" && p["last_exit"]["signal"] == 9,
    );
    let gone = wait_until(SHORT, || group_members(pid).is_empty());
    t.row(
        "its process group",
        "empty",
        &format!("{:?}", group_members(pid)),
        gone,
    );
    let logged = util::logs(&d, "stubborn")
        .iter()
        .any(|l| l.contains("killed by signal 9"));
    t.row("its log", "killed by signal 9", &logged.to_string(), logged);
    t.finish();
}

#[test]
fn a_grandchild_holding_the_pipes_hangs_neither_exit_nor_stop() {
    let d = Daemon::start();
    let mut t = Table::new("faults");

    // The child exits at once; its background sleep keeps stdout/stderr open.
    let began = Instant::now();
    let pid = pid_of(&add_ok(&d, sh("holder", "sleep 1000 & exit 0")));
    let mut left = Leftovers(group_members(pid));
    let ok = wait_until(SHORT, || status_of(&d, "holder")["status"] == "stopped");
    let p = status_of(&d, "holder");
    t.row(
        "exit with a grandchild holding the pipes",
        "stopped, code 0, within 10 s",
        &format!(
            "{} {} after {:?}",
            p["status"],
            p["last_exit"],
            began.elapsed()
        ),
        ok && p["last_exit"]["code"] == 0,
    );
    let said = wait_until(SHORT, || {
        util::logs(&d, "holder")
            .iter()
            .any(|l| l.contains("held open"))
    });
    t.row(
        "its log",
        "says the pipes were held open",
        &said.to_string(),
        said,
    );
    left.0.extend(group_members(pid));

    // A running child whose grandchild left the group (setsid): stop must not
    // wait for the pipes to close.
    let script = "setsid sleep 1000 & echo \"gc=$!\"; exec sleep 1000";
    let pid = pid_of(&add_ok(&d, sh("escaper", script)));
    let lines = wait_log(&d, "escaper", "STDOUT: gc=", SHORT);
    let gc: Option<i32> = lines
        .iter()
        .find_map(|l| l.split("STDOUT: gc=").nth(1))
        .and_then(|v| v.trim().parse().ok());
    left.0.extend(gc);
    left.0.extend(group_members(pid));
    let holding = gc.is_some_and(pid_alive);
    t.row(
        "grandchild in its own session",
        "alive, pid known",
        &format!("{gc:?}"),
        holding,
    );
    let began = Instant::now();
    let r = d.post("/stop/escaper", "");
    let took = began.elapsed();
    t.row(
        "stop with a grandchild in another session holding the pipes",
        "200 within 10 s",
        &format!("{} after {took:?} (grandchild {gc:?})", r.status),
        r.status == 200 && took < Duration::from_secs(10),
    );
    let p = status_of(&d, "escaper");
    t.row(
        "its status",
        "manually_stopped",
        &p["status"].to_string(),
        p["status"] == "manually_stopped",
    );
    let r = d.get("/logs/escaper");
    t.row(
        "its log is readable",
        "200",
        &r.status.to_string(),
        r.status == 200,
    );
    t.finish();
}

#[test]
fn sigkill_of_exeio_leaves_no_orphan_child() {
    let mut d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "plain", "command": "sleep", "args": ["1000"]}),
    );
    add_ok(&d, sh("shell", "exec sleep 1000"));
    add_ok(&d, sh("stubborn", "trap '' TERM HUP INT; exec sleep 1000"));
    let mut restarting = sh("restarting", "exec sleep 1000");
    restarting["auto_restart"] = json!(true);
    add_ok(&d, restarting);
    let mut periodic = sh("periodic", "exec sleep 1000");
    periodic["periodic"] = json!(true);
    periodic["period_seconds"] = json!(3600);
    add_ok(&d, periodic);
    let list = d.get("/list").json();
    let pids: Vec<(String, i32)> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|p| (p["id"].as_str().unwrap_or("").to_string(), pid_of(p)))
        .collect();
    let _left = Leftovers(pids.iter().map(|(_, p)| *p).collect());
    d.kill9();
    let mut t = Table::new("faults");
    for (id, pid) in &pids {
        let dead = wait_until(SHORT, || !pid_alive(*pid));
        t.row(
            &format!("child {id} after kill -9 of exeio"),
            "gone",
            &format!("pid {pid} alive={}", !dead),
            dead,
        );
    }
    d.start_again();
    let r = d.get("/list");
    t.row(
        "exeio starts again on the same dirs",
        "200",
        &r.status.to_string(),
        r.status == 200,
    );
    t.finish();
}

/// Adds and removes saved processes as fast as the API allows until told to stop
/// or a request fails (exeio was killed). Counts completed saves; notes pids.
fn churn(
    addr: String,
    round: usize,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    pids: Arc<Mutex<Vec<i32>>>,
) {
    let headers = [("exeio-api-key", util::KEY)];
    for i in 0..200 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let spec = json!({"id": format!("r{round}-s{i}"), "command": "sleep", "args": ["1000"],
                          "save_for_next_run": true, "stop_timeout_seconds": 1});
        let Ok(r) = util::request(
            &addr,
            "POST",
            "/add",
            &headers,
            Some(spec.to_string().as_bytes()),
        ) else {
            return;
        };
        if let Some(pid) = serde_json::from_str::<Value>(&r.body)
            .ok()
            .and_then(|v| v["process"]["pid"].as_i64())
        {
            pids.lock().unwrap().push(pid as i32);
        }
        done.fetch_add(1, Ordering::SeqCst);
        if i >= 3 {
            let path = format!("/remove/r{round}-s{}", i - 3);
            if util::request(&addr, "POST", &path, &headers, None).is_err() {
                return;
            }
            done.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn sigkill_during_rapid_saves_leaves_a_parsable_processes_json() {
    let mut d = Daemon::start();
    let mut t = Table::new("faults");
    let all_pids = Arc::new(Mutex::new(Vec::new()));
    for (round, kill_at) in [(1, 25usize), (2, 100), (3, 170)] {
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (addr, done, stop, pids) = (
                d.addr().to_string(),
                done.clone(),
                stop.clone(),
                all_pids.clone(),
            );
            thread::spawn(move || churn(addr, round, done, stop, pids))
        };
        let reached = wait_until(Duration::from_secs(120), || {
            done.load(Ordering::SeqCst) >= kill_at
        });
        d.kill9();
        stop.store(true, Ordering::SeqCst);
        let _ = worker.join();
        let saves = done.load(Ordering::SeqCst);
        let name = format!("round {round}: kill -9 after {saves} saves");
        let file = d.processes_json();
        let parsed = match fs::read(&file) {
            Err(_) => Ok("no file".to_string()),
            Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| format!("does not parse: {e}: {:?}", String::from_utf8_lossy(&bytes)))
                .and_then(|v| match v["processes"].as_array() {
                    Some(a) => Ok(format!("{} saved", a.len())),
                    None => Err(format!("no processes array: {v}")),
                }),
        };
        let ok = reached && parsed.is_ok();
        let got = match &parsed {
            Ok(s) | Err(s) => s.clone(),
        };
        t.row(&name, "processes.json parses (or none)", &got, ok);
        d.start_again();
        let r = d.get("/list");
        let aside: Vec<String> = fs::read_dir(d.config_dir())
            .map(|es| {
                es.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.contains("corrupt"))
                    .collect()
            })
            .unwrap_or_default();
        t.row(
            &format!("round {round}: exeio starts again"),
            "200, nothing moved aside",
            &format!("{} moved aside: {aside:?}", r.status),
            r.status == 200 && aside.is_empty(),
        );
    }
    d.stop();
    let pids = all_pids.lock().unwrap().clone();
    let _left = Leftovers(pids.clone());
    let orphans: Vec<i32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    let none = wait_until(SHORT, || pids.iter().all(|p| !pid_alive(*p)));
    t.row(
        "children of the killed runs",
        "all gone",
        &format!("alive: {orphans:?}"),
        none,
    );
    t.finish();
}

#[test]
fn restart_and_start_cycles_leak_nothing() {
    let d = Daemon::start_with(&[], &[util::QUICK_IDLE_THREADS]);
    let mut cyc = json!({"id": "cyc", "command": "sleep", "args": ["1000"]});
    cyc["stop_timeout_seconds"] = json!(5);
    add_ok(&d, cyc);
    add_ok(&d, json!({"id": "once", "command": "true"}));
    let pid = d.pid();
    let start_once = || -> u16 {
        let code = d.post("/start/once", "").status;
        wait_until(SHORT, || status_of(&d, "once")["is_running"] == false);
        code
    };
    for _ in 0..20 {
        d.post("/restart/cyc", "");
        start_once();
    }
    let base = util::quiet_usage(pid, Duration::from_secs(2));
    let mut t = Table::new("faults");
    let (mut restarts, mut bad) = (0, Vec::new());
    let began = Instant::now();
    while restarts < 200 && began.elapsed() < Duration::from_secs(45) {
        let r = d.post("/restart/cyc", "");
        if r.status != 200 {
            bad.push(format!("#{restarts}: {} {}", r.status, r.body));
        }
        restarts += 1;
    }
    t.row(
        &format!("{restarts} × POST /restart in {:?}", began.elapsed()),
        "all 200",
        &format!("{} failed {bad:?}", bad.len()),
        bad.is_empty(),
    );
    let (mut starts, mut bad) = (0, Vec::new());
    let began = Instant::now();
    while starts < 200 && began.elapsed() < Duration::from_secs(30) {
        let code = start_once();
        if code != 200 {
            bad.push(format!("#{starts}: {code}"));
        }
        starts += 1;
    }
    t.row(
        &format!("{starts} × exit + POST /start in {:?}", began.elapsed()),
        "all 200",
        &format!("{} failed {bad:?}", bad.len()),
        bad.is_empty(),
    );
    let no_zombie = wait_until(SHORT, || zombie_children_of(pid) == 0);
    t.row(
        "zombie children",
        "0",
        &zombie_children_of(pid).to_string(),
        no_zombie,
    );
    let live = children_of(pid);
    t.row(
        "live children",
        "1 (cyc)",
        &format!("{live:?}"),
        live.len() == 1,
    );
    let run_count = status_of(&d, "cyc")["run_count"].as_u64().unwrap_or(0);
    t.row(
        "cyc run_count",
        &format!(">= {}", restarts + 1),
        &run_count.to_string(),
        run_count > restarts,
    );
    let (ok, now) = util::settle(pid, base, (5, 5, 2048), Duration::from_secs(40));
    t.row(
        "threads, fds, RSS after the cycles",
        &format!(
            "<= {} threads, {} fds, {} KiB (baseline + 5, + 5, + 2 MiB)",
            base.threads + 5,
            base.fds + 5,
            base.rss_kib + 2048
        ),
        &format!(
            "{} threads, {} fds, {} KiB",
            now.threads, now.fds, now.rss_kib
        ),
        ok,
    );
    wait_status(&d, "cyc", "running", SHORT);
    t.finish();
}

#[test]
fn unusable_dirs_give_one_clear_error_line() {
    let tmp = TempDir::new();
    let file = tmp.path().join("file");
    fs::write(&file, "not a dir\n").expect("write file");
    let logs_file_data = tmp.path().join("data-with-file-logs");
    fs::create_dir_all(&logs_file_data).expect("mkdir");
    fs::write(logs_file_data.join("logs"), "not a dir\n").expect("write logs file");
    let ok_config = tmp.path().join("config");
    let ok_data = tmp.path().join("data");
    let cases = [
        (
            "config dir under a regular file",
            file.join("config"),
            ok_data.clone(),
        ),
        (
            "data dir under a regular file",
            ok_config.clone(),
            file.join("data"),
        ),
        (
            "config dir is a regular file",
            file.clone(),
            ok_data.clone(),
        ),
        (
            "logs dir is a regular file",
            ok_config.clone(),
            logs_file_data.clone(),
        ),
    ];
    let mut t = Table::new("faults");
    for (name, config, data) in cases {
        let mut cmd = util::exeio_command(tmp.path());
        cmd.args(["--port", "0", "--api-key", "x", "--config-dir"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data);
        let out = util::run_to_end(cmd, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let ok = !out.status.success()
            && lines.len() == 1
            && lines[0].starts_with("exeio: error:")
            && !stdout.contains("listening");
        t.row(
            name,
            "non-zero exit, one `exeio: error:` line",
            &format!("{} {stderr:?}", out.status),
            ok,
        );
    }
    t.finish();
}

/// The logs dir stops taking writes mid-run (as root no chmod stops us, so a
/// regular file takes the dir's place and rotation cannot rename into it):
/// exeio keeps supervising, says so in /status and exeio.log, loses no line,
/// and recovers when the dir is back.
#[test]
fn an_unwritable_log_dir_mid_run_is_reported_and_recovered_from() {
    let d = Daemon::start();
    let mut spec = sh(
        "w",
        "i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.01; done",
    );
    spec["log_max_bytes"] = json!(4096);
    add_ok(&d, spec);
    wait_log(&d, "w", "line-5", SHORT);
    let logs = d.logs_dir();
    let away = d.data_dir().join("logs.away");
    fs::rename(&logs, &away).expect("move the logs dir away");
    fs::write(&logs, b"not a dir").expect("a file where the logs dir was");
    let reported = wait_until(SHORT, || !status_of(&d, "w")["error"].is_null());
    let status = status_of(&d, "w");
    assert!(reported, "no error in /status: {status}");
    assert_eq!(status["status"], "running", "supervision goes on: {status}");
    // exeio keeps answering and supervising meanwhile
    add_ok(&d, sh("other", "exec sleep 1000"));
    assert_eq!(status_of(&d, "other")["status"], "running");
    fs::remove_file(&logs).expect("remove the file");
    fs::rename(&away, &logs).expect("put the logs dir back");
    let recovered = wait_until(SHORT, || status_of(&d, "w")["error"].is_null());
    assert!(recovered, "error never cleared: {}", status_of(&d, "w"));
    let exeio_log = fs::read_to_string(logs.join("exeio.log")).unwrap_or_default();
    assert!(
        exeio_log.contains("cannot write the log of 'w'"),
        "exeio.log: {exeio_log}"
    );
    let back = wait_until(SHORT, || {
        fs::read_to_string(logs.join("exeio.log"))
            .unwrap_or_default()
            .contains("the log of 'w' is writable again")
    });
    assert!(back, "recovery not in exeio.log");
    // no line lost across the outage: the numbers are contiguous
    let mut numbers: Vec<u64> = Vec::new();
    for entry in fs::read_dir(&logs).expect("logs dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("w.log") {
            let text = fs::read_to_string(&path).unwrap_or_default();
            numbers.extend(
                text.lines()
                    .filter_map(|l| l.split("STDOUT: line-").nth(1))
                    .filter_map(|n| n.parse::<u64>().ok()),
            );
        }
    }
    numbers.sort_unstable();
    let kept = numbers.len() as u64;
    let (first, last) = (numbers[0], numbers[numbers.len() - 1]);
    // rotation keeps only log_backups files: the oldest lines may be dropped
    // by design, but within what is kept there is no gap
    assert_eq!(kept, last - first + 1, "gap in lines {first}..={last}");
}
