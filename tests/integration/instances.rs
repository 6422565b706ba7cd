//! `instances: N` (SPEC 4d): N copies `ID-1`..`ID-N` managed as one. Each copy is
//! a process of its own (log, pid, restarts) with `{instance}` and
//! `EXEIO_INSTANCE` set to its number; requests to `ID` apply to every copy,
//! requests to `ID-n` to that copy; `update` scales; the group is saved as one
//! entry and comes back as its copies.

use std::fs;

use serde_json::{Value, json};

use crate::util::*;

/// A group of `n` copies that print their number and their `{instance}` arg, then sleep.
fn group(id: &str, n: u32) -> Value {
    json!({
        "id": id,
        "command": "sh",
        "args": ["-c", "echo \"n=$EXEIO_INSTANCE port=$1\"; exec sleep 1000", "sh", "80{instance}"],
        "instances": n,
    })
}

fn add_group(d: &Daemon, spec: Value) -> Value {
    let (status, body) = add(d, spec.clone());
    assert_eq!(status, 200, "add {spec} -> {body}");
    body
}

fn pid(d: &Daemon, id: &str) -> i32 {
    pid_of(&wait_status(d, id, "running", SHORT))
}

fn list(d: &Daemon) -> Vec<Value> {
    d.get("/list").json().as_array().unwrap().clone()
}

#[test]
fn copies_run_with_their_own_number() {
    let d = Daemon::start();
    let body = add_group(&d, group("web", 3));
    let names: Vec<&str> = body["processes"]
        .as_array()
        .expect("the copies in the reply")
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1", "web-2", "web-3"], "{body}");
    assert_eq!(ids(&d), ["web-1", "web-2", "web-3"]);
    let mut pids = Vec::new();
    for n in 1..=3 {
        let id = format!("web-{n}");
        pids.push(pid(&d, &id));
        wait_log(&d, &id, &format!("n={n} port=80{n}"), SHORT);
        let p = status_of(&d, &id);
        assert_eq!(p["instance_of"], "web");
        assert_eq!(p["instance"], n);
        assert_eq!(p["instances"], 3);
        assert_eq!(p["args"][3], format!("80{n}"));
        assert!(
            p["log_file"]
                .as_str()
                .unwrap()
                .ends_with(&format!("web-{n}.log"))
        );
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three processes");
    // Metrics are per copy.
    let metrics = d.get("/metrics").body;
    for n in 1..=3 {
        assert!(
            metrics.contains(&format!("exeio_process_up{{id=\"web-{n}\"}} 1")),
            "{metrics}"
        );
    }
    // The group itself: its configuration as given, and its copies.
    let r = d.get("/status/web");
    assert_eq!(r.status, 200, "{}", r.body);
    let g = r.json();
    assert_eq!(g["group"]["instances"], 3, "{g}");
    assert_eq!(g["group"]["config"]["args"][3], "80{instance}", "{g}");
    assert_eq!(g["processes"].as_array().unwrap().len(), 3);
    // A log is one copy's: the group's id says which ones there are.
    let r = d.get("/logs/web");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("web-1..web-3"), "{}", r.body);
    // clear-log of the group clears every copy's log.
    let r = d.post("/clear-log/web", "");
    assert_eq!(r.status, 200, "{}", r.body);
    for n in 1..=3 {
        assert!(
            !logs(&d, &format!("web-{n}"))
                .iter()
                .any(|l| l.contains("port=")),
            "web-{n} not cleared"
        );
    }
}

#[test]
fn group_requests_apply_to_every_copy_and_copy_requests_to_one() {
    let d = Daemon::start();
    add_group(&d, group("w", 3));
    let before: Vec<i32> = (1..=3).map(|n| pid(&d, &format!("w-{n}"))).collect();

    // One copy restarts alone.
    let r = d.post("/restart/w-2", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let after: Vec<i32> = (1..=3).map(|n| pid(&d, &format!("w-{n}"))).collect();
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1], before[1]);
    assert_eq!(after[2], before[2]);

    // The group restarts every copy.
    let r = d.post("/restart/w", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["processes"].as_array().unwrap().len(),
        3,
        "{}",
        r.body
    );
    let again: Vec<i32> = (1..=3).map(|n| pid(&d, &format!("w-{n}"))).collect();
    for n in 0..3 {
        assert_ne!(again[n], after[n], "w-{} not restarted", n + 1);
    }

    // Stop and start the group.
    let r = d.post("/stop/w", "");
    assert_eq!(r.status, 200, "{}", r.body);
    for n in 1..=3 {
        assert_eq!(state_of(&d, &format!("w-{n}")), "manually_stopped");
        assert!(!pid_alive(again[n - 1]));
    }
    let r = d.post("/start/w", "");
    assert_eq!(r.status, 200, "{}", r.body);
    for n in 1..=3 {
        pid(&d, &format!("w-{n}"));
    }

    // What would make one copy differ from its group is the group's to do.
    let r = d.post("/remove/w-2", "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.message().contains("instance 2 of the group 'w'"),
        "{}",
        r.body
    );
    let r = d.post_json("/update/w-2", &json!({"command": "sleep", "args": ["9"]}));
    assert_eq!(r.status, 409, "{}", r.body);
    let r = d.post_json("/input/w", &json!({"input": "x"}));
    assert_eq!(r.status, 409, "{}", r.body);

    // A signal to the group goes to every copy (sleep dies of TERM).
    let r = d.post_json("/signal/w", &json!({"signal": "TERM"}));
    assert_eq!(r.status, 200, "{}", r.body);
    for n in 1..=3 {
        wait_status(&d, &format!("w-{n}"), "stopped", SHORT);
    }

    // Remove takes the whole group.
    let r = d.post("/remove/w", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(wait_until(SHORT, || ids(&d).is_empty()), "{:?}", ids(&d));
    assert_eq!(d.get("/status/w").status, 404);
}

#[test]
fn update_scales_up_and_down() {
    let d = Daemon::start();
    add_group(&d, group("s", 2));
    let one = pid(&d, "s-1");
    let two = pid(&d, "s-2");

    let mut up = group("s", 4);
    up.as_object_mut().unwrap().remove("id");
    let r = d.post_json("/update/s", &up);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["added"], json!(["s-3", "s-4"]), "{}", r.body);
    assert_eq!(ids(&d), ["s-1", "s-2", "s-3", "s-4"]);
    wait_log(&d, "s-4", "n=4 port=804", SHORT);
    // Only the count changed: the copies that were there keep running.
    assert_eq!(pid(&d, "s-1"), one);
    assert_eq!(pid(&d, "s-2"), two);
    assert_eq!(status_of(&d, "s-1")["instances"], 4);

    let r = d.post_json("/update/s", &group("s", 1));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json()["removed"],
        json!(["s-2", "s-3", "s-4"]),
        "{}",
        r.body
    );
    assert!(wait_until(SHORT, || ids(&d) == ["s-1"]), "{:?}", ids(&d));
    assert!(!pid_alive(two));
    assert_eq!(pid(&d, "s-1"), one);

    // A group stays a group.
    let r = d.post_json("/update/s", &json!({"command": "sleep", "args": ["9"]}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("keeps instances"), "{}", r.body);

    // A changed command restarts every copy with its own number.
    let mut changed = group("s", 2);
    changed["args"][3] = json!("90{instance}");
    let r = d.post_json("/update/s", &changed);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["restarted"], true, "{}", r.body);
    wait_log(&d, "s-1", "port=901", SHORT);
    wait_log(&d, "s-2", "port=902", SHORT);
    assert_ne!(pid(&d, "s-1"), one);
}

#[test]
fn ids_of_groups_and_copies_do_not_collide() {
    let d = Daemon::start();
    add_ok(
        &d,
        json!({"id": "web-2", "command": "sleep", "args": ["1000"]}),
    );
    let (status, body) = add(&d, group("web", 3));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("'web-2'"),
        "{body}"
    );
    assert_eq!(ids(&d), ["web-2"], "nothing added");

    add_group(&d, group("api", 2));
    let (status, body) = add(&d, json!({"id": "api-1", "command": "true"}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("instance 1 of the group 'api'"),
        "{body}"
    );
    let (status, body) = add(&d, json!({"id": "api", "command": "true"}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("group of 2 instances"),
        "{body}"
    );
    let (status, body) = add(&d, group("api", 2));
    assert_eq!(status, 409, "{body}");
    // A single process does not become a group by update.
    let r = d.post_json("/update/web-2", &group("web-2", 2));
    assert_eq!(r.status, 409, "{}", r.body);
}

#[test]
fn invalid_instances_are_400_naming_the_field() {
    let d = Daemon::start();
    for bad in [json!(0), json!(65), json!(-1), json!("3"), json!(2.5)] {
        let mut spec = group("bad", 1);
        spec["instances"] = bad.clone();
        let r = d.post_json("/add", &spec);
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.message().contains("instances"), "{bad}: {}", r.body);
    }
    let job = json!({"id": "job", "command": "true", "periodic": true, "period_seconds": 5, "instances": 2});
    let r = d.post_json("/add", &job);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "instances", "{}", r.body);
    // A spawn that fails leaves no copy behind.
    let r = d.post_json(
        "/add",
        &json!({"id": "nope", "command": "/no/such/binary", "instances": 3}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(wait_until(SHORT, || ids(&d).is_empty()), "{:?}", ids(&d));
}

#[test]
fn a_group_is_saved_as_one_entry_and_comes_back_as_its_copies() {
    let mut d = Daemon::start();
    let mut spec = group("keep", 3);
    spec["save_for_next_run"] = json!(true);
    add_group(&d, spec);
    for n in 1..=3 {
        pid(&d, &format!("keep-{n}"));
    }
    let r = d.post("/stop/keep-3", "");
    assert_eq!(r.status, 200, "{}", r.body);

    let saved: Value =
        serde_json::from_str(&fs::read_to_string(d.processes_json()).unwrap()).unwrap();
    let entries = saved["processes"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{saved}");
    assert_eq!(entries[0]["spec"]["id"], "keep");
    assert_eq!(entries[0]["spec"]["instances"], 3);
    assert_eq!(entries[0]["spec"]["args"][3], "80{instance}");

    d.restart();
    assert_eq!(ids(&d), ["keep-1", "keep-2", "keep-3"]);
    wait_log(&d, "keep-2", "n=2 port=802", SHORT);
    pid(&d, "keep-1");
    // The copy stopped by hand stays stopped.
    assert_eq!(state_of(&d, "keep-3"), "manually_stopped");
    assert_eq!(status_of(&d, "keep-3")["instance_of"], "keep");
}

#[test]
fn apply_and_depends_on_know_groups() {
    let d = Daemon::start();
    // An entry after a group is still named by its own index.
    let bad = json!({"id": "bad", "command": "/no/such/binary"});
    let r = d.post_json("/apply", &json!({"processes": [group("g", 2), bad]}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "processes[1]", "{}", r.body);
    assert!(ids(&d).is_empty(), "{:?}", ids(&d));
    let body = json!({"processes": [group("g", 2)]});
    let r = d.post_json("/apply", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["added"], json!(["g-1", "g-2"]), "{}", r.body);
    let r = d.post_json("/apply", &json!({"processes": [group("g", 1)]}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["removed"], json!(["g-2"]), "{}", r.body);
    assert!(wait_until(SHORT, || ids(&d) == ["g-1"]), "{:?}", ids(&d));

    // A dependent of a group waits for every copy.
    let r = d.post("/stop/g", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let app =
        json!({"id": "app", "command": "sleep", "args": ["1000"], "depends_on": {"g": "started"}});
    let (status, body) = add(&d, app);
    assert_eq!(status, 200, "{body}");
    assert_eq!(state_of(&d, "app"), "waiting");
    d.post("/start/g", "");
    wait_status(&d, "app", "running", SHORT);
    // A group others need is not removed.
    assert_eq!(d.post("/remove/g", "").status, 409);
    let _ = list(&d);
}

/// The README's example, as written: three copies, each with its number.
#[test]
fn the_readme_example_runs_as_written() {
    let d = Daemon::start();
    let config: Value = serde_json::from_str(&crate::ops::readme_block("## Instances", "json"))
        .expect("the README's example is JSON");
    add_group(&d, config);
    let text = crate::ops::readme_block("## Instances", "text");
    assert!(text.contains("worker-1, worker-2, worker-3"), "{text}");
    assert_eq!(ids(&d), ["worker-1", "worker-2", "worker-3"]);
    for n in 1..=3 {
        let line = format!("STDOUT: worker {n} listens on 90{n}");
        assert!(text.contains(&line), "{text}");
        wait_log(&d, &format!("worker-{n}"), &line, SHORT);
    }
}

/// `exeio add --instances`, `ls` shows the copies, `update --instances` scales,
/// `status` of the group shows each copy.
#[test]
fn the_cli_adds_lists_and_scales_a_group() {
    use crate::client::{cli, code, ok};
    let d = Daemon::start();
    let script = "echo \"n=$EXEIO_INSTANCE\"; exec sleep 1000";
    ok(
        &d,
        &["add", "c", "--instances", "3", "--", "sh", "-c", script],
    );
    for n in 1..=3 {
        wait_log(&d, &format!("c-{n}"), &format!("n={n}"), SHORT);
    }
    let ls = ok(&d, &["ls"]);
    for n in 1..=3 {
        assert!(ls.contains(&format!("c-{n}")), "{ls}");
    }
    let status = ok(&d, &["status", "c"]);
    assert_eq!(status.matches("running").count(), 3, "{status}");
    ok(&d, &["update", "c", "--instances", "2"]);
    assert!(
        wait_until(SHORT, || ids(&d) == ["c-1", "c-2"]),
        "{:?}",
        ids(&d)
    );
    // The group's configuration as given went back: the script is unchanged.
    assert_eq!(status_of(&d, "c-2")["args"][1], script);
    ok(&d, &["stop", "c-2"]);
    let o = cli(&d, &["status", "c"]);
    assert_eq!(code(&o), 3, "one copy is stopped");
}

/// Stop-all stops a group's dependents before its copies.
#[test]
fn stop_all_stops_the_dependents_of_a_group_first() {
    let d = Daemon::start();
    let file = d.tmp().join("stopped");
    let recorder = |id: &str, delay: &str| {
        let script = format!(
            "trap 'sleep {delay}; echo {id} >> \"{}\"; exit 0' TERM; echo ready; sleep 1000 & wait",
            file.display()
        );
        sh(id, &script)
    };
    let mut db = recorder("db-$EXEIO_INSTANCE", "0");
    db["id"] = json!("db");
    db["instances"] = json!(2);
    add_group(&d, db);
    let mut app = recorder("app", "1");
    app["depends_on"] = json!({"db": "started"});
    add_ok(&d, app);
    // running is not enough: a TERM before the trap is set loses the line
    for id in ["db-1", "db-2", "app"] {
        assert!(
            wait_until(SHORT, || logs(&d, id).iter().any(|l| l.ends_with("ready"))),
            "{id} never set its trap"
        );
    }
    let r = d.post("/stop-all", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let stopped = std::fs::read_to_string(&file).unwrap_or_default();
    let order: Vec<&str> = stopped.lines().collect();
    assert_eq!(order.first(), Some(&"app"), "{order:?}");
    assert_eq!(order.len(), 3, "{order:?}");
}
