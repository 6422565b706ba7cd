//! Machine-readable exeio (issue 12): Prometheus metrics that `promtool`
//! accepts, counters that never go down, and the event stream (order,
//! increasing ids, resuming without loss or repeats, slow readers dropped).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use crate::util::{self, Daemon, add_ok, sh, wait_status, wait_until};

/// One sample of `/metrics`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_pass_promtool_and_counters_only_go_up() {
    let d = Daemon::start();
    add_ok(&d, sh("web", "exec sleep 1000"));
    let mut crash = sh("crash", "sleep 0.2; exit 1");
    crash["auto_restart"] = json!(true);
    crash["backoff_seconds"] = json!([0.1]);
    crash["rapid_exit_penalty_seconds"] = json!(0);
    add_ok(&d, crash);
    add_ok(
        &d,
        json!({"id": "job", "command": "true", "periodic": true, "period_seconds": 3600}),
    );
    wait_status(&d, "job", "waiting", util::SHORT);
    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(r.body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{}",
        r.body
    );
    let text = r.body;
    assert_eq!(sample(&text, r#"exeio_process_up{id="web"}"#), Some(1.0));
    assert_eq!(
        sample(&text, r#"exeio_process_state{id="web",state="running"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"exeio_process_state{id="web",state="stopped"}"#),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            r#"exeio_job_last_success_timestamp_seconds{id="job"}"#
        )
        .is_some()
    );
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n > 3.0));
    assert!(text.contains(&format!(
        "exeio_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // Restarts pile up; the counters never go down between scrapes.
    let series = [
        r#"exeio_process_restarts_total{id="crash"}"#,
        r#"exeio_process_runs_total{id="crash"}"#,
        r#"exeio_process_exits_total{id="crash",outcome="failure"}"#,
        r#"exeio_process_cpu_seconds_total{id="web"}"#,
        r#"exeio_http_requests_total{code="200"}"#,
    ];
    let mut last = vec![0.0; series.len()];
    let began = Instant::now();
    while last[0] < 3.0 && began.elapsed() < util::LONG {
        let text = d.get("/metrics").body;
        for (i, s) in series.iter().enumerate() {
            let v = sample(&text, s).unwrap_or_else(|| panic!("no {s}"));
            assert!(v >= last[i], "{s} went down: {} -> {v}", last[i]);
            last[i] = v;
        }
    }
    assert!(
        last[0] >= 3.0,
        "the crashing process was restarted: {last:?}"
    );
}

/// A reader of `/events`: the (id, event, data) of each event.
struct Events {
    r: BufReader<TcpStream>,
}

impl Events {
    fn open(d: &Daemon, last_id: Option<u64>) -> Events {
        let mut s = TcpStream::connect(d.addr()).unwrap();
        s.set_read_timeout(Some(util::LONG)).unwrap();
        let mut head = format!(
            "GET /events HTTP/1.1\r\nHost: x\r\nexeio-api-key: {}\r\n",
            d.key
        );
        if let Some(id) = last_id {
            head.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type") {
                assert!(line.contains("text/event-stream"), "{line}");
            }
        }
        Events { r }
    }

    /// The next event (chunk framing and comments skipped), within 40 s;
    /// `gap` has no id (0).
    fn next(&mut self) -> (u64, String, Value) {
        let (mut id, mut event, mut data) = (0, String::new(), Value::Null);
        let mut line = String::new();
        let deadline = Instant::now() + util::LONG;
        loop {
            assert!(
                Instant::now() < deadline,
                "no event within {:?}",
                util::LONG
            );
            line.clear();
            let n = self.r.read_line(&mut line).expect("an event in time");
            assert!(n > 0, "the stream ended");
            let l = line.trim_end();
            if let Some(v) = l.strip_prefix("id: ") {
                id = v.parse().unwrap();
            } else if let Some(v) = l.strip_prefix("event: ") {
                event = v.to_string();
            } else if let Some(v) = l.strip_prefix("data: ") {
                data = serde_json::from_str(v).unwrap();
            } else if l.is_empty() && (id > 0 || event == "gap") {
                return (id, event, data);
            }
        }
    }

    /// Events until one for `id` reaches status `to`; all of them.
    fn until_state(&mut self, id: &str, to: &str) -> Vec<(u64, String, Value)> {
        let mut seen = Vec::new();
        loop {
            let e = self.next();
            let done = e.1 == "state" && e.2["id"] == id && e.2["to"] == to;
            seen.push(e);
            if done {
                return seen;
            }
        }
    }
}

fn transitions(events: &[(u64, String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, kind, data)| match kind.as_str() {
            "state" => format!(
                "{}:{}>{}",
                data["id"].as_str().unwrap(),
                data["from"].as_str().unwrap(),
                data["to"].as_str().unwrap()
            ),
            other => format!("{}:{other}", data["id"].as_str().unwrap_or("")),
        })
        .collect()
}

#[test]
fn events_come_in_order_with_increasing_ids_and_resume_without_loss() {
    let d = Daemon::start();
    let mut ev = Events::open(&d, None);
    let mut spec = sh("e", "read x; exit 1");
    spec["auto_restart"] = json!(true);
    spec["backoff_seconds"] = json!([0.3]);
    spec["rapid_exit_penalty_seconds"] = json!(0);
    add_ok(&d, spec);
    let mut all = ev.until_state("e", "running");
    assert_eq!(
        d.post_json("/input/e", &json!({"input": "crash"})).status,
        200
    );
    all.extend(ev.until_state("e", "backoff"));
    all.extend(ev.until_state("e", "running"));
    assert_eq!(d.post("/stop/e", "").status, 200);
    all.extend(ev.until_state("e", "manually_stopped"));
    let seen = transitions(&all);
    assert_eq!(
        seen,
        [
            "e:added",
            "e:stopped>running",
            "e:running>backoff",
            "e:backoff>running",
            "e:running>stopping",
            "e:stopping>manually_stopped"
        ],
        "{all:#?}"
    );
    let ids: Vec<u64> = all.iter().map(|e| e.0).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "increasing ids: {ids:?}"
    );
    let crash = &all[2].2;
    assert_eq!(crash["exit"]["code"], 1, "{crash}");
    assert!(crash["at"].is_string());
    // Gone while things happen; back with Last-Event-ID: every missed
    // event once, then new ones.
    let last = *ids.last().unwrap();
    drop(ev);
    assert_eq!(d.post("/start/e", "").status, 200);
    assert_eq!(d.post("/remove/e", "").status, 200);
    let mut again = Events::open(&d, Some(last));
    let missed: Vec<_> = (0..3).map(|_| again.next()).collect();
    assert_eq!(missed[0].0, last + 1, "nothing lost");
    assert_eq!(
        transitions(&missed),
        [
            "e:manually_stopped>running",
            "e:running>stopping",
            "e:removed"
        ],
        "{missed:#?}"
    );
    add_ok(&d, sh("f", "exec sleep 1000"));
    let (id, kind, data) = again.next();
    assert_eq!(
        (id, kind.as_str(), data["id"].as_str()),
        (last + 4, "added", Some("f")),
        "no repeat"
    );
}

#[test]
fn ids_go_on_across_restarts_and_an_id_not_in_the_ring_is_a_gap() {
    let mut d = Daemon::start();
    let mut ev = Events::open(&d, None);
    add_ok(&d, sh("a", "exec sleep 1000"));
    let last = ev.until_state("a", "running").last().unwrap().0;
    drop(ev);
    // Up to date: no gap, the next event.
    let mut now = Events::open(&d, Some(last));
    add_ok(&d, sh("b", "exec sleep 1000"));
    let (id, kind, _) = now.next();
    assert_eq!((id, kind.as_str()), (last + 1, "added"));
    drop(now);
    // Newer than the newest: not an id of this run.
    let mut ahead = Events::open(&d, Some(last + 1000));
    add_ok(&d, sh("c", "exec sleep 1000"));
    assert_eq!(ahead.next().1, "gap", "an id ahead of the last one");
    drop(ahead);
    // After a restart the ids go on, and the old run's events are gone.
    d.restart();
    let mut again = Events::open(&d, Some(last));
    add_ok(&d, sh("d", "exec sleep 1000"));
    assert_eq!(
        again.next().1,
        "gap",
        "the events of the earlier run are gone"
    );
    let (id, kind, data) = again.next();
    assert_eq!((kind.as_str(), data["id"].as_str()), ("added", Some("d")));
    assert!(
        id > last + 1,
        "ids go on across a restart: {id} after {last}"
    );
}

#[test]
fn a_state_event_carries_only_the_exit_of_the_current_run() {
    let d = Daemon::start();
    let mut ev = Events::open(&d, None);
    add_ok(&d, sh("x", "exec sleep 1000"));
    let mut all = ev.until_state("x", "running");
    for _ in 0..2 {
        assert_eq!(d.post("/stop/x", "").status, 200);
        all.extend(ev.until_state("x", "manually_stopped"));
        assert_eq!(d.post("/start/x", "").status, 200);
        all.extend(ev.until_state("x", "running"));
    }
    let exits: Vec<String> = all
        .iter()
        .filter(|(_, kind, _)| kind == "state")
        .map(|(_, _, data)| format!("{}>{} {}", data["from"], data["to"], data["exit"]))
        .collect();
    let stop = r#""running">"stopping" null"#;
    let stopped = r#""stopping">"manually_stopped" {"signal":15}"#;
    let start = r#""manually_stopped">"running" null"#;
    assert_eq!(
        exits,
        [
            r#""stopped">"running" null"#,
            stop,
            stopped,
            start,
            stop,
            stopped,
            start
        ],
        "{all:#?}"
    );
}

#[test]
fn a_reader_that_falls_behind_is_dropped_and_exeio_goes_on() {
    let d = Daemon::start_with(&["--write-timeout", "2"], &[]);
    for i in 0..40 {
        add_ok(&d, sh(&format!("p{i}"), "exec sleep 1000"));
    }
    // Subscribe with a tiny receive window, then never read.
    let mut s = util::connect_small("127.0.0.5", d.addr(), Some(2048)).unwrap();
    s.write_all(
        format!(
            "GET /events HTTP/1.1\r\nHost: x\r\nexeio-api-key: {}\r\n\r\n",
            d.key
        )
        .as_bytes(),
    )
    .unwrap();
    let subscribers = |d: &Daemon| sample(&d.get("/metrics").body, "exeio_events_subscribers");
    assert!(wait_until(util::SHORT, || subscribers(&d) == Some(1.0)));
    // Thousands of events: restart everything a few times.
    let mut rounds = 0;
    while subscribers(&d) != Some(0.0) && rounds < 200 {
        assert_eq!(d.post("/restart-all", "").status, 200);
        rounds += 1;
    }
    assert_eq!(
        subscribers(&d),
        Some(0.0),
        "never dropped after {rounds} rounds of 40 restarts"
    );
    assert_eq!(d.get("/list").status, 200);
    drop(s);
}
