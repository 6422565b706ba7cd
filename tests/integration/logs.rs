//! Process logs: every byte before the exit record, STDOUT/STDERR tags, paging newest
//! first, stdin input, clear-log, rotation without loss, and the follow stream.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

fn page_lines(page: &Value) -> Vec<String> {
    page["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("no logs array: {page}"))
        .iter()
        .map(|l| l.as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn output_written_just_before_exit_is_all_logged_first() {
    let d = Daemon::start();
    for i in 0..5 {
        let id = format!("fast{i}");
        add_ok(
            &d,
            json!({"id": id, "command": "printf", "args": ["a\nb\nlast-no-newline"]}),
        );
        wait_status(&d, &id, "stopped", SHORT);
        // No waiting here: the output must be in before the exit is recorded.
        let log = logs(&d, &id);
        let lines = ["STDOUT: a", "STDOUT: b", "STDOUT: last-no-newline"];
        for line in lines {
            assert!(log.iter().any(|l| l.ends_with(line)), "{line:?}: {log:#?}");
        }
        // The SYSTEM exit line (written by exeio's logger thread) comes after them.
        let log = wait_log(&d, &id, "exited with code 0", SHORT);
        let at = |s: &str| log.iter().position(|l| l.ends_with(s));
        let exit = log.iter().position(|l| l.contains("exited with code 0"));
        for line in lines {
            assert!(at(line) < exit, "{line:?}: {log:#?}");
        }
        // The run's "started run" line, queued before the child's thread
        // exists, comes before its first output.
        let started = log
            .iter()
            .position(|l| l.contains("SYSTEM: started run 1 "));
        assert!(started.is_some() && started < at("STDOUT: a"), "{log:#?}");
        assert!(at("STDOUT: a") < at("STDOUT: b"));
        assert!(at("STDOUT: b") < at("STDOUT: last-no-newline"));
    }
}

#[test]
fn a_burst_of_output_is_complete() {
    let d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "burst", "command": "seq", "args": ["1", "5000"]}),
    );
    wait_status(&d, "burst", "stopped", SHORT);
    wait_log(&d, "burst", "exited with code 0", SHORT);
    let page = log_page(&d, "burst", 1, 1000);
    let total = page["total_lines"].as_u64().unwrap_or(0);
    assert!((5002..=5010).contains(&total), "total_lines {total}");
    let newest = page_lines(&page);
    assert!(
        newest[0].contains("exited with code 0"),
        "{:?}",
        &newest[..3]
    );
    assert!(newest.iter().any(|l| l.ends_with("STDOUT: 5000")));
    let last = log_page(&d, "burst", total.div_ceil(1000) as usize, 1000);
    let oldest = page_lines(&last);
    assert!(
        oldest.iter().any(|l| l.ends_with("STDOUT: 1")),
        "{oldest:?}"
    );
}

#[test]
fn stdout_and_stderr_are_tagged_and_timestamped() {
    let d = Daemon::start();
    add_ok(&d, sh("tags", "echo out-line; echo err-line >&2"));
    wait_status(&d, "tags", "stopped", SHORT);
    let log = logs(&d, "tags");
    assert!(
        log.iter().any(|l| l.ends_with("] STDOUT: out-line")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.ends_with("] STDERR: err-line")),
        "{log:#?}"
    );
    assert!(log.iter().all(|l| has_timestamp(l)), "{log:#?}");
}

#[test]
fn pages_are_newest_first() {
    let d = Daemon::start();
    let script = "i=1; while [ $i -le 120 ]; do echo line$i; i=$((i+1)); done";
    add_ok(&d, sh("pages", script));
    wait_status(&d, "pages", "stopped", SHORT);
    wait_log(&d, "pages", "exited with code 0", SHORT);
    let all = log_page(&d, "pages", 1, 1000);
    let all_lines = page_lines(&all);
    let total = all["total_lines"].as_u64().unwrap() as usize;
    let system = all_lines.iter().filter(|l| l.contains("SYSTEM: ")).count();
    assert!(system >= 2, "want start and exit lines: {all_lines:#?}");
    assert_eq!(total, 120 + system, "{all_lines:#?}");
    assert_eq!(all_lines.len(), total);
    assert!(total <= 150, "too many SYSTEM lines for the page maths");

    let p1 = log_page(&d, "pages", 1, 50);
    assert_eq!(p1["page"], 1);
    assert_eq!(p1["page_size"], 50);
    assert_eq!(p1["total_lines"], total);
    assert_eq!(page_lines(&p1).len(), 50);
    assert!(page_lines(&p1)[0].contains("exited with code 0"));
    let p2 = page_lines(&log_page(&d, "pages", 2, 50));
    let p3 = log_page(&d, "pages", 3, 50);
    assert_eq!(p3["page"], 3);
    let p3 = page_lines(&p3);
    assert_eq!(p3.len(), total - 100);
    let p4 = page_lines(&log_page(&d, "pages", 4, 50));
    assert!(p4.is_empty(), "{p4:?}");

    let joined: Vec<String> = [page_lines(&p1), p2, p3].concat();
    assert_eq!(joined, all_lines);
    let numbers: Vec<u32> = joined
        .iter()
        .filter_map(|l| l.split("STDOUT: line").nth(1))
        .map(|n| n.parse().unwrap())
        .collect();
    let expected: Vec<u32> = (1..=120).rev().collect();
    assert_eq!(numbers, expected);

    let capped = log_page(&d, "pages", 1, 5000);
    assert_eq!(capped["page_size"], 1000);
}

#[test]
fn input_reaches_stdin_and_needs_a_running_process() {
    let d = Daemon::start();
    add_ok(&d, sh("echoer", "read x; echo got:$x"));
    let r = d.post_json("/input/echoer", &json!({"input": "hello"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["success"], true);
    wait_log(&d, "echoer", "STDOUT: got:hello", SHORT);
    wait_status(&d, "echoer", "stopped", SHORT);
    let r = d.post_json("/input/echoer", &json!({"input": "late"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["success"], false);

    add_ok(&d, sh("loop", "while read x; do echo \"got:$x\"; done"));
    for (body, want) in [
        (json!({"input": "x"}), 200),
        (json!({"text": "x"}), 400),
        (json!({"input": 5}), 400),
    ] {
        let r = d.post_json("/input/loop", &body);
        assert_eq!(r.status, want, "{body}: {}", r.body);
    }
    assert_eq!(d.post("/input/loop", "{oops").status, 400);
    let r = d.post_json("/input/loop", &json!({"input": "second line"}));
    assert_eq!(r.status, 200);
    wait_log(&d, "loop", "STDOUT: got:second line", SHORT);
}

#[test]
fn clear_log_empties_it_and_logging_goes_on() {
    let d = Daemon::start();
    add_ok(
        &d,
        sh(
            "c",
            "echo before-clear; read x; echo after-clear; sleep 1000",
        ),
    );
    wait_log(&d, "c", "STDOUT: before-clear", SHORT);
    let r = d.post("/clear-log/c", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let page = log_page(&d, "c", 1, 1000);
    let lines = page_lines(&page);
    assert!(
        !lines.iter().any(|l| l.contains("before-clear")),
        "{lines:#?}"
    );
    assert!(page["total_lines"].as_u64().unwrap() <= 1, "{page}");
    let file = std::fs::read_to_string(d.logs_dir().join("c.log")).unwrap();
    assert!(!file.contains("before-clear"), "{file}");
    assert_eq!(d.post_json("/input/c", &json!({"input": "go"})).status, 200);
    let log = wait_log(&d, "c", "STDOUT: after-clear", SHORT);
    // No NUL bytes or holes left by a writer at an old offset.
    let file = std::fs::read(d.logs_dir().join("c.log")).unwrap();
    assert!(!file.contains(&0), "{log:#?}");
}

#[test]
fn rotation_keeps_every_line() {
    let d = Daemon::start();
    let script = "i=1; while [ $i -le 150 ]; do \
                  echo rot-line-$i-padding-padding-padding-padding-padding; i=$((i+1)); done";
    let mut spec = sh("rot", script);
    spec["log_max_bytes"] = json!(4096);
    spec["log_backups"] = json!(5);
    add_ok(&d, spec);
    wait_status(&d, "rot", "stopped", SHORT);
    let base = d.logs_dir().join("rot.log");
    let backup = d.logs_dir().join("rot.log.1");
    assert!(backup.exists(), "no rotation to {}", backup.display());
    let mut text = std::fs::read_to_string(&base).unwrap();
    for n in 1..=5 {
        if let Ok(t) = std::fs::read_to_string(d.logs_dir().join(format!("rot.log.{n}"))) {
            text.push_str(&t);
        }
    }
    assert!(!d.logs_dir().join("rot.log.6").exists());
    for i in 1..=150 {
        let needle = format!("STDOUT: rot-line-{i}-");
        assert_eq!(text.matches(&needle).count(), 1, "{needle:?} in {text}");
    }
}

/// Reads the follow stream until `want` lines `STDOUT: followN` with N > `after` arrive.
fn follow(d: &Daemon, id: &str, after: u64, want: usize) -> Vec<u64> {
    let mut s = TcpStream::connect(d.addr()).expect("connect");
    s.set_read_timeout(Some(SHORT)).unwrap();
    let key = d.key.clone();
    let path = format!("/logs/{id}?follow=true");
    write_head(&mut s, "GET", &path, &[("exeio-api-key", &key)], None);
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read follow head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    assert!(chunked, "follow stream is not chunked: {head}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut text, mut seen) = (String::new(), Vec::new());
    while seen.len() < want && Instant::now() < deadline {
        let mut size = String::new();
        r.read_line(&mut size).expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        assert!(size > 0, "stream ended early");
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk).expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk[..size]));
        while let Some(nl) = text.find('\n') {
            let line: String = text.drain(..=nl).collect();
            if let Some(n) = line.trim_end().split("STDOUT: follow").nth(1) {
                let n: u64 = n.parse().expect("follow number");
                if n > after {
                    seen.push(n);
                }
            }
        }
    }
    seen
}

#[test]
fn follow_streams_new_lines() {
    let d = Daemon::start();
    let script = "i=0; while true; do echo follow$i; i=$((i+1)); sleep 0.2; done";
    add_ok(&d, sh("f", script));
    let log = wait_log(&d, "f", "STDOUT: follow1", SHORT);
    let before = log
        .iter()
        .filter_map(|l| l.split("STDOUT: follow").nth(1))
        .filter_map(|n| n.parse::<u64>().ok())
        .max()
        .unwrap();
    let seen = follow(&d, "f", before, 3);
    assert!(seen.len() >= 3, "only {seen:?} after follow{before}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // The server is fine after the client went away.
    assert_eq!(state_of(&d, "f"), "running");
    assert_eq!(d.post("/stop/f", "").status, 200);
}

#[test]
fn sighup_reopens_log_files() {
    let d = Daemon::start();
    add_ok(&d, sh("hup", "while read x; do echo \"got:$x\"; done"));
    assert_eq!(
        d.post_json("/input/hup", &json!({"input": "before"}))
            .status,
        200
    );
    wait_log(&d, "hup", "STDOUT: got:before", SHORT);
    let file = d.logs_dir().join("hup.log");
    let moved = d.logs_dir().join("hup.log.moved");
    std::fs::rename(&file, &moved).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reopened = wait_until(SHORT, || {
        let r = d.post_json("/input/hup", &json!({"input": "after"}));
        assert_eq!(r.status, 200, "exeio died on SIGHUP? {}", r.body);
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("STDOUT: got:after"))
    });
    assert!(reopened, "no new hup.log after SIGHUP");
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(old.contains("STDOUT: got:before"), "{old}");
    assert_eq!(state_of(&d, "hup"), "running");
}

#[test]
fn sighup_reopens_the_audit_log() {
    let d = Daemon::start();
    let file = d.logs_dir().join("audit.log");
    let moved = d.logs_dir().join("audit.log.moved");
    assert_eq!(d.post("/stop-all", "").status, 200);
    assert!(
        wait_until(SHORT, || std::fs::read_to_string(&file)
            .is_ok_and(|t| t.contains("POST /stop-all 200"))),
        "no audit line"
    );
    // logrotate's `create`: rename, then SIGHUP; later lines go to a new file.
    std::fs::rename(&file, &moved).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let reopened = wait_until(SHORT, || {
        assert_eq!(d.post("/restart-all", "").status, 200);
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("POST /restart-all 200"))
    });
    assert!(reopened, "no new audit.log after SIGHUP");
    let old = std::fs::read_to_string(&moved).unwrap();
    assert!(old.contains("POST /stop-all 200"), "{old}");
}

#[test]
fn invalid_utf8_and_long_lines_are_kept() {
    let d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "bytes", "command": "printf", "args": ["\\377\\376bad-utf8\\n"]}),
    );
    wait_status(&d, "bytes", "stopped", SHORT);
    let log = logs(&d, "bytes");
    assert!(log.iter().any(|l| l.contains("bad-utf8")), "{log:#?}");

    let script = "head -c 200000 /dev/zero | tr '\\0' x; echo; echo next";
    add_ok(&d, sh("long", script));
    wait_status(&d, "long", "stopped", SHORT);
    let log = logs(&d, "long");
    assert!(
        log.iter().any(|l| l.ends_with("STDOUT: next")),
        "no next line"
    );
    let xs: usize = log
        .iter()
        .filter_map(|l| l.split_once("] STDOUT: "))
        .filter(|(_, text)| text.bytes().all(|b| b == b'x'))
        .map(|(_, text)| text.len())
        .sum();
    assert_eq!(xs, 200_000, "bytes of a long line were lost");
}

/// SYSTEM lines of a log, in order, without their time stamps.
fn system_lines(d: &Daemon, id: &str) -> Vec<String> {
    let text = std::fs::read_to_string(d.logs_dir().join(format!("{id}.log"))).unwrap();
    text.lines()
        .filter_map(|l| l.split_once("SYSTEM: ").map(|(_, m)| m.to_string()))
        .collect()
}

#[test]
fn every_stopping_line_comes_before_its_exit_line() {
    let d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "cycle", "command": "sleep", "args": ["1000"]}),
    );
    for i in 0..200 {
        assert_eq!(d.post("/stop/cycle", "").status, 200, "stop {i}");
        assert_eq!(d.post("/start/cycle", "").status, 200, "start {i}");
    }
    // The logger thread writes the last lines after the replies: wait for them.
    let mut lines = Vec::new();
    wait_until(SHORT, || {
        lines = system_lines(&d, "cycle");
        lines.iter().filter(|l| *l == "stopped manually").count() == 200
    });
    let kills: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("killed by signal"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(kills.len(), 200, "{lines:#?}");
    for i in kills {
        assert!(
            lines[i - 1].starts_with("stopping (manual stop)"),
            "line {i}: {:?} before {:?}",
            lines[i - 1],
            lines[i]
        );
        assert_eq!(lines[i + 1], "stopped manually");
    }
}

/// How long counting may take, and whether GET /list waits for it, is the
/// bench's (`--only paging`: a 1 GiB log); here, that lines are counted
/// through a backup and a sparse file while the list keeps answering.
#[test]
fn counting_a_big_log_never_holds_up_the_list() {
    let d = Daemon::start();
    // 64 MiB (sparse: counting it still reads all of it) and a backup.
    let path = d.logs_dir().join("big.log");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    std::fs::write(
        d.logs_dir().join("big.log.1"),
        "[2026-01-01 00:00:00] STDOUT: old\n".repeat(1000),
    )
    .unwrap();
    add_ok(
        &d,
        json!({"id": "big", "command": "sleep", "args": ["1000"]}),
    );
    let addr = d.addr().to_string();
    let paging = std::thread::spawn(move || {
        http(
            &addr,
            "GET",
            "/logs/big?page=1&page_size=5",
            &[("exeio-api-key", "test")],
            None,
        )
        .status
    });
    while !paging.is_finished() {
        assert_eq!(d.get("/list").status, 200);
    }
    assert_eq!(paging.join().unwrap(), 200);
    assert!(log_page(&d, "big", 1, 1)["total_lines"].as_u64() >= Some(1001));
}
