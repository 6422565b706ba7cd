//! `save_for_next_run`: saved processes come back after a restart of exeio, manual stops
//! and removals are saved too, and a corrupt `processes.json` is never lost.

use std::fs;

use serde_json::{Value, json};

use crate::util::*;

fn saved(id: &str) -> Value {
    json!({"id": id, "command": "sleep", "args": ["1000"], "save_for_next_run": true})
}

#[test]
fn saved_processes_come_back_with_their_config() {
    let mut d = Daemon::start();
    let wd = d.tmp().join("wd");
    fs::create_dir_all(&wd).unwrap();
    let mut spec = saved("keep");
    spec["env"] = json!({"FOO": "bar"});
    spec["working_dir"] = json!(wd.display().to_string());
    spec["auto_restart"] = json!(true);
    let old = pid_of(&add_ok(&d, spec));
    let transient = pid_of(&add_ok(&d, sleeper_unsaved()));

    let text = fs::read_to_string(d.processes_json()).expect("processes.json written");
    serde_json::from_str::<Value>(&text).expect("processes.json is JSON");
    assert!(text.contains("\"keep\""), "{text}");
    assert!(
        !text.contains("\"transient\""),
        "unsaved process saved: {text}"
    );
    assert_eq!(mode_of(&d.processes_json()), 0o600);

    d.restart();
    assert!(
        !pid_alive(old) && !pid_alive(transient),
        "children outlived exeio"
    );
    assert_eq!(ids(&d), vec!["keep".to_string()]);
    let p = wait_status(&d, "keep", "running", SHORT);
    let new = pid_of(&p);
    assert_ne!(new, old);
    assert!(pid_alive(new));
    assert_eq!(p["args"], json!(["1000"]));
    assert_eq!(p["env"], json!({"FOO": "bar"}));
    assert_eq!(p["working_dir"], wd.display().to_string().as_str());
    assert_eq!(p["auto_restart"], true);
    assert_eq!(p["save_for_next_run"], true);
    // Its log goes on in the same file.
    let two_starts = wait_until(SHORT, || {
        let log = logs(&d, "keep");
        log.iter().filter(|l| l.contains("started run")).count() == 2
    });
    assert!(two_starts, "{:#?}", logs(&d, "keep"));
}

fn sleeper_unsaved() -> Value {
    json!({"id": "transient", "command": "sleep", "args": ["1000"]})
}

#[test]
fn a_manual_stop_is_saved_until_started_again() {
    let mut d = Daemon::start();
    add_ok(&d, saved("held"));
    assert_eq!(d.post("/stop/held", "").status, 200);
    d.restart();
    let p = status_of(&d, "held");
    assert_eq!(p["status"], "manually_stopped", "{p}");
    assert_eq!(p["pid"], Value::Null);
    let r = d.post("/start/held", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(state_of(&d, "held"), "running");
    // The start is saved as well: it runs after the next restart.
    d.restart();
    let p = wait_status(&d, "held", "running", SHORT);
    assert!(pid_alive(pid_of(&p)));
}

#[test]
fn removed_processes_do_not_come_back() {
    let mut d = Daemon::start();
    add_ok(&d, saved("gone"));
    add_ok(&d, saved("stays"));
    assert_eq!(d.post("/remove/gone", "").status, 200);
    let text = fs::read_to_string(d.processes_json()).expect("processes.json");
    assert!(!text.contains("\"gone\""), "{text}");
    assert!(text.contains("\"stays\""), "{text}");
    d.restart();
    assert_eq!(ids(&d), vec!["stays".to_string()]);
    assert_eq!(d.get("/status/gone").status, 404);
}

#[test]
fn a_corrupt_processes_json_is_never_lost() {
    let tmp = TempDir::new();
    let config = tmp.path().join("config");
    fs::create_dir_all(&config).unwrap();
    let corrupt = b"{not json";
    fs::write(config.join("processes.json"), corrupt).unwrap();
    match Daemon::try_start(tmp, Options::default()) {
        Err(e) => {
            // Refused: one clear line, and the file is untouched.
            let lines: Vec<&str> = e.stderr.lines().filter(|l| !l.is_empty()).collect();
            assert_eq!(e.code, Some(1), "stderr: {}", e.stderr);
            assert!(
                lines.len() == 1 && lines[0].contains("processes.json"),
                "want one line naming processes.json: {:?}",
                e.stderr
            );
            let kept = fs::read(e.tmp.path().join("config/processes.json")).unwrap();
            assert_eq!(kept, corrupt);
        }
        Ok(mut d) => {
            // Started: the bytes were moved aside as processes.json.corrupt-*.
            let aside: Vec<_> = fs::read_dir(d.config_dir())
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("processes.json.corrupt-")
                })
                .collect();
            assert_eq!(aside.len(), 1, "no processes.json.corrupt-* file");
            assert_eq!(fs::read(aside[0].path()).unwrap(), corrupt);
            if let Ok(now) = fs::read_to_string(d.processes_json()) {
                serde_json::from_str::<Value>(&now).expect("new processes.json is JSON");
            }
            assert_eq!(d.get("/list").json(), json!([]));
            // Saving works again, and the moved-aside copy survives it.
            add_ok(&d, saved("fresh"));
            d.restart();
            assert_eq!(ids(&d), vec!["fresh".to_string()]);
            assert_eq!(fs::read(aside[0].path()).unwrap(), corrupt);
        }
    }
}
