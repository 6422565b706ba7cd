//! `exeio apply` end to end: the real binary as a client against a real
//! daemon, applying files and directories of configs, and refused when a
//! process cannot start.

use std::fs;
use std::path::Path;

use serde_json::{Value, json};

use crate::client::{cli, code, ok, stderr};
use crate::util::*;

fn write_json(dir: &Path, name: &str, v: Value) {
    fs::write(dir.join(name), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn pids(d: &Daemon, ids: &[&str]) -> Vec<i32> {
    ids.iter().map(|id| pid_of(&status_of(d, id))).collect()
}

#[test]
fn apply_a_directory_changes_only_what_changed() {
    let d = Daemon::start();
    let conf = d.tmp().join("conf.d");
    fs::create_dir_all(&conf).unwrap();
    let saved = |id: &str, script: &str| json!({"id": id, "command": "sh", "args": ["-c", script], "save_for_next_run": true});
    write_json(&conf, "a.json", saved("a", "sleep 60"));
    write_json(
        &conf,
        "b.json",
        json!([saved("b1", "sleep 61"), saved("b2", "sleep 62")]),
    );
    fs::write(conf.join("README.txt"), "not a config").unwrap();
    let dir = conf.to_str().unwrap();

    let out = ok(&d, &["apply", "-f", dir]);
    assert!(out.contains("added:     a, b1, b2"), "{out}");
    let ids = ["a", "b1", "b2"];
    let before = pids(&d, &ids);

    // nothing changed: all unchanged, nothing restarted
    let out = ok(&d, &["apply", "-f", dir]);
    assert!(out.contains("unchanged: a, b1, b2"), "{out}");
    assert!(
        !out.contains("restarted:") && !out.contains("added:"),
        "{out}"
    );
    assert_eq!(pids(&d, &ids), before, "no restart");

    // a changed command, as a dry run: reported, not done
    write_json(&conf, "a.json", saved("a", "sleep 70"));
    let out = ok(&d, &["apply", "-f", dir, "--dry-run"]);
    assert!(
        out.contains("updated:   a") && out.contains("restarted: a"),
        "{out}"
    );
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(pids(&d, &ids), before);
    assert_eq!(status_of(&d, "a")["args"][1], "sleep 60");

    // for real: only a restarts
    let out = ok(&d, &["apply", "-f", dir]);
    assert!(
        out.contains("restarted: a") && out.contains("unchanged: b1, b2"),
        "{out}"
    );
    let after = pids(&d, &ids);
    assert_ne!(after[0], before[0]);
    assert_eq!(after[1..], before[1..]);
    assert_eq!(status_of(&d, "a")["args"][1], "sleep 70");

    // --prune removes a saved process the files lack
    add_ok(
        &d,
        json!({"id": "extra", "command": "sleep", "args": ["60"], "save_for_next_run": true}),
    );
    let out = ok(&d, &["apply", "-f", dir, "--prune"]);
    assert!(out.contains("removed:   extra"), "{out}");
    assert_eq!(d.get("/status/extra").status, 404);
    assert_eq!(pids(&d, &ids), after);

    // a bad entry changes nothing, and the error names its file
    write_json(
        &conf,
        "c.json",
        json!([{"id": "c", "command": "true", "bogus": 1}]),
    );
    let o = cli(&d, &["apply", "-f", dir]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("c.json[0]") && stderr(&o).contains("bogus"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.get("/status/c").status, 404);

    // an entry that cannot start: nothing applied, the error names it and
    // its file, exit 1 (with --json too)
    write_json(
        &conf,
        "c.json",
        json!([saved("d", "sleep 60"), {"id": "c", "command": "/nonexistent/exeio-nope"}]),
    );
    for json_flag in [None, Some("--json")] {
        let mut args = vec!["apply", "-f", dir];
        args.extend(json_flag);
        let o = cli(&d, &args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("nothing applied")
                && err.contains("process 'c'")
                && err.contains("os error")
                && err.contains("c.json[1]"),
            "{args:?}: {err}"
        );
        assert_eq!(d.get("/status/d").status, 404, "nothing added");
        assert_eq!(pids(&d, &ids), after, "nothing restarted");
    }
    fs::remove_file(conf.join("c.json")).unwrap();

    // one file holding {"processes": [...]}
    let one = d.tmp().join("one.json");
    fs::write(
        &one,
        json!({"processes": [saved("solo", "sleep 60")]}).to_string(),
    )
    .unwrap();
    let out = ok(&d, &["apply", one.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["added"], json!(["solo"]));
}
