//! Start order (`depends_on`, SPEC 4b): validation, a start that waits for its
//! dependencies (`waiting`, `waiting_for`) and goes as soon as they hold,
//! remove refused while others depend, and stop-all / shutdown stopping
//! dependents before their dependencies.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

fn with_deps(mut spec: Value, deps: Value) -> Value {
    spec["depends_on"] = deps;
    spec
}

fn sleeper(id: &str) -> Value {
    json!({"id": id, "command": "sleep", "args": ["1000"]})
}

/// Nothing changes for `for_`: the status stays `status`.
fn stays(d: &Daemon, id: &str, status: &str, for_: Duration) {
    let left = wait_until(for_, || state_of(d, id) != status);
    assert!(!left, "{id} left {status}: {}", status_of(d, id));
}

#[test]
fn bad_dependencies_are_400_naming_them() {
    let d = Daemon::start();
    add_ok(&d, sleeper("db"));
    let cases = [
        (json!({"ghost": "started"}), "unknown process 'ghost'"),
        (json!({"web": "started"}), "'web' depends on itself"),
        (json!({"db": "ready"}), "\"ready\""),
        (json!({"db": "healthy"}), "'db' has no health probe"),
        (json!({"../x": "started"}), "../x"),
    ];
    for (deps, needle) in cases {
        let (status, body) = add(&d, with_deps(sleeper("web"), deps.clone()));
        assert_eq!(status, 400, "{deps} -> {body}");
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{deps} -> {msg}");
    }
    assert_eq!(ids(&d), ["db"], "nothing was added");

    // A cycle made by an update: a -> b, then b -> a.
    add_ok(&d, with_deps(sleeper("a"), json!({"db": "started"})));
    add_ok(&d, with_deps(sleeper("b"), json!({"a": "started"})));
    let r = d.post_json(
        "/update/a",
        &with_deps(sleeper("a"), json!({"b": "started"})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("cycle: a -> b -> a"), "{}", r.body);
    assert_eq!(status_of(&d, "a")["depends_on"], json!({"db": "started"}));

    // Apply checks the whole set (with what is there): a cycle inside it,
    // and an id that exists nowhere.
    let r = d.post_json(
        "/apply",
        &json!({"processes": [
            with_deps(sleeper("x"), json!({"y": "started"})),
            with_deps(sleeper("y"), json!({"z": "started"})),
            with_deps(sleeper("z"), json!({"x": "started"})),
        ]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.message().contains("cycle: x -> y -> z -> x"),
        "{}",
        r.body
    );
    let r = d.post_json(
        "/apply",
        &json!({"processes": [sleeper("x"), with_deps(sleeper("y"), json!({"nope": "started", "x": "started"}))]}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("unknown process 'nope'"), "{}", r.body);
    assert_eq!(ids(&d), ["a", "b", "db"], "nothing was applied");
}

#[test]
fn a_dependent_waits_for_a_migration_to_complete() {
    let d = Daemon::start();
    add_ok(&d, sh("migrate", "sleep 1; exit 0"));
    let web = add_ok(
        &d,
        with_deps(sleeper("web"), json!({"migrate": "completed_successfully"})),
    );
    assert_eq!(web["status"], "waiting", "{web}");
    assert_eq!(
        web["waiting_for"],
        json!(["migrate (completed_successfully)"])
    );
    assert_eq!(web["pid"], Value::Null);
    let listed = d.get("/list").json();
    let w = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "web")
        .unwrap();
    assert_eq!(
        w["waiting_for"],
        json!(["migrate (completed_successfully)"])
    );
    let web = wait_status(&d, "web", "running", SHORT);
    assert_eq!(web["waiting_for"], json!([]));
    let migrate = status_of(&d, "migrate");
    assert_eq!(migrate["last_exit"]["code"], 0);
    let log = wait_log(&d, "web", "started run 1", SHORT);
    assert!(
        log.iter()
            .any(|l| l.contains("SYSTEM: waiting for migrate (completed_successfully)")),
        "{log:#?}"
    );
}

#[test]
fn a_failed_migration_keeps_dependents_waiting_until_it_succeeds() {
    let d = Daemon::start();
    let flag = d.tmp().join("fixed");
    let script = format!("test -e '{}'", flag.display());
    add_ok(&d, sh("migrate", &script));
    add_ok(
        &d,
        with_deps(sleeper("web"), json!({"migrate": "completed_successfully"})),
    );
    wait_status(&d, "migrate", "stopped", SHORT);
    assert_eq!(status_of(&d, "migrate")["last_exit"]["code"], 1);
    stays(&d, "web", "waiting", Duration::from_millis(1500));
    std::fs::write(&flag, "").unwrap();
    let r = d.post("/start/migrate", "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_status(&d, "web", "running", SHORT);
}

#[test]
fn a_dependency_the_user_stopped_is_not_started_its_dependents_wait() {
    let d = Daemon::start();
    add_ok(&d, sleeper("db"));
    assert_eq!(d.post("/stop/db", "").status, 200);
    let web = add_ok(&d, with_deps(sleeper("web"), json!({"db": "started"})));
    assert_eq!(web["status"], "waiting");
    assert_eq!(web["waiting_for"], json!(["db (started)"]));
    stays(&d, "web", "waiting", Duration::from_millis(1500));
    assert_eq!(state_of(&d, "db"), "manually_stopped");
    // Restarting the dependent does not start the dependency either.
    let r = d.post("/restart/web", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["process"]["status"], "waiting", "{}", r.body);
    assert!(
        r.message().ends_with("waiting for db (started)"),
        "{}",
        r.body
    );
    assert_eq!(state_of(&d, "db"), "manually_stopped");
    // The user starts it: the dependent follows.
    assert_eq!(d.post("/start/db", "").status, 200);
    wait_status(&d, "web", "running", SHORT);
    // A dependency that fails later does not stop its dependents.
    let db = pid_of(&status_of(&d, "db"));
    send_signal(db, nix::sys::signal::Signal::SIGKILL);
    wait_status(&d, "db", "stopped", SHORT);
    assert_eq!(state_of(&d, "web"), "running");
}

#[test]
fn apply_starts_a_set_in_order_whatever_the_order_of_the_list() {
    let d = Daemon::start();
    let r = d.post_json(
        "/apply",
        &json!({"processes": [
            with_deps(sleeper("worker"), json!({"web": "started"})),
            with_deps(sleeper("web"), json!({"db": "started", "migrate": "completed_successfully"})),
            sh("migrate", "sleep 1"),
            sleeper("db"),
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(state_of(&d, "worker"), "waiting");
    assert_eq!(
        status_of(&d, "worker")["waiting_for"],
        json!(["web (started)"])
    );
    assert_eq!(state_of(&d, "db"), "running");
    wait_status(&d, "worker", "running", SHORT);
    let started = |id: &str| status_of(&d, id)["last_run"].as_str().unwrap().to_owned();
    assert!(started("web") <= started("worker"));
    assert_eq!(status_of(&d, "migrate")["last_exit"]["code"], 0);
}

#[test]
fn a_spawn_that_fails_later_shows_as_failed_with_its_error() {
    let d = Daemon::start();
    let dir = d.tmp().join("site");
    std::fs::create_dir_all(&dir).unwrap();
    // The migration removes the web app's directory, then succeeds.
    add_ok(
        &d,
        sh("migrate", &format!("sleep 1; rm -rf '{}'", dir.display())),
    );
    let mut web = with_deps(sleeper("web"), json!({"migrate": "completed_successfully"}));
    web["working_dir"] = json!(dir.display().to_string());
    assert_eq!(add_ok(&d, web)["status"], "waiting");
    let p = wait_status(&d, "web", "failed", SHORT);
    let err = p["error"].as_str().unwrap_or("");
    assert!(err.contains("site"), "{p}");
}

#[test]
fn remove_of_a_needed_process_is_409_naming_its_dependents() {
    let d = Daemon::start();
    let saved = |mut v: Value| {
        v["save_for_next_run"] = json!(true);
        v
    };
    add_ok(&d, saved(sleeper("db")));
    add_ok(
        &d,
        saved(with_deps(sleeper("web"), json!({"db": "started"}))),
    );
    add_ok(
        &d,
        saved(with_deps(sleeper("worker"), json!({"db": "started"}))),
    );
    let r = d.post("/remove/db", "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("'web', 'worker'"), "{}", r.body);
    assert_eq!(state_of(&d, "db"), "running");
    // Apply with prune keeps it too, unless its dependents go with it.
    let r = d.post_json(
        "/apply",
        &json!({"processes": [saved(with_deps(sleeper("web"), json!({"db": "started"})))], "prune": true}),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.message().contains("'db' is needed by 'web'"),
        "{}",
        r.body
    );
    assert_eq!(ids(&d), ["db", "web", "worker"]);
    assert_eq!(d.post("/remove/web", "").status, 200);
    assert_eq!(d.post("/remove/worker", "").status, 200);
    let r = d.post("/remove/db", "");
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A process that, on SIGTERM, waits `delay` seconds, then appends `id` to `file`.
/// A process that, on SIGTERM, waits `delay` then appends its id to
/// `file`; it prints "ready" once its trap is set (see `wait_ready`).
fn recorder(id: &str, file: &Path, delay: &str) -> Value {
    let script = format!(
        "trap 'sleep {delay}; echo {id} >> \"{}\"; exit 0' TERM; echo ready; sleep 1000 & wait",
        file.display()
    );
    sh(id, &script)
}

/// Running is not enough: a TERM that comes before the recorder's trap is
/// set ends it without a line (seen under load), so wait for its "ready".
fn wait_ready(d: &Daemon, id: &str) {
    assert!(
        wait_until(SHORT, || logs(d, id).iter().any(|l| l.ends_with("ready"))),
        "{id} never set its trap: {:#?}",
        logs(d, id)
    );
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn stop_all_stops_dependents_first() {
    let d = Daemon::start();
    let file = d.tmp().join("stopped");
    add_ok(&d, recorder("db", &file, "0"));
    add_ok(
        &d,
        with_deps(recorder("web", &file, "0.5"), json!({"db": "started"})),
    );
    add_ok(
        &d,
        with_deps(recorder("worker", &file, "1"), json!({"web": "started"})),
    );
    for id in ["db", "web", "worker"] {
        wait_ready(&d, id);
    }
    let r = d.post("/stop-all", "");
    assert_eq!(r.status, 200, "{}", r.body);
    // The reply comes once every process has stopped.
    assert_eq!(lines(&file), ["worker", "web", "db"]);
    for id in ["db", "web", "worker"] {
        assert_eq!(state_of(&d, id), "manually_stopped");
    }
    let log = logs(&d, "db");
    assert!(
        log.iter().any(|l| l.contains("sending SIGTERM")),
        "{log:#?}"
    );
}

#[test]
fn shutdown_stops_dependents_first_and_still_ends() {
    let mut d = Daemon::start();
    let file = d.tmp().join("stopped");
    add_ok(&d, recorder("db", &file, "0"));
    add_ok(
        &d,
        with_deps(recorder("web", &file, "0.5"), json!({"db": "started"})),
    );
    // A dependent that ignores TERM: killed after its own grace, then db goes.
    let mut stuck = with_deps(
        sh("stuck", "trap '' TERM; sleep 1000 & wait; sleep 1000"),
        json!({"db": "started"}),
    );
    stuck["stop_timeout_seconds"] = json!(1);
    add_ok(&d, stuck);
    wait_ready(&d, "db");
    wait_ready(&d, "web");
    wait_status(&d, "stuck", "running", SHORT);
    let status = d.stop();
    assert!(status.success(), "{status}");
    assert_eq!(lines(&file), ["web", "db"]);
}

#[test]
fn saved_processes_start_in_order_when_exeio_starts() {
    let mut d = Daemon::start();
    let done = d.tmp().join("migrated");
    let seen = d.tmp().join("seen");
    let mut migrate = sh("migrate", &format!("sleep 2; touch '{}'", done.display()));
    migrate["save_for_next_run"] = json!(true);
    let mut web = sh(
        "web",
        &format!(
            "if [ -e '{}' ]; then echo after >> '{}'; else echo before >> '{}'; fi; exec sleep 1000",
            done.display(),
            seen.display(),
            seen.display()
        ),
    );
    web["save_for_next_run"] = json!(true);
    web["depends_on"] = json!({"migrate": "completed_successfully"});
    add_ok(&d, migrate);
    add_ok(&d, web);
    wait_status(&d, "web", "running", SHORT);
    // Its line written (running is not yet written, on a busy machine).
    assert!(
        wait_until(SHORT, || lines(&seen).len() == 1),
        "{:?}",
        lines(&seen)
    );
    d.stop();
    std::fs::remove_file(&done).unwrap();
    d.start_again();
    assert_eq!(state_of(&d, "web"), "waiting");
    wait_status(&d, "web", "running", SHORT);
    assert!(
        wait_until(SHORT, || lines(&seen).len() == 2),
        "{:?}",
        lines(&seen)
    );
    assert_eq!(lines(&seen), ["after", "after"]);
}

#[test]
fn a_healthy_condition_waits_for_the_probe() {
    let d = Daemon::start();
    let flag = d.tmp().join("ready");
    let mut db = sh(
        "db",
        &format!(
            "while [ ! -e '{}' ]; do sleep 0.1; done; echo ready; exec sleep 1000",
            flag.display()
        ),
    );
    db["health"] = json!({"log": "^ready$"});
    add_ok(&d, db);
    let web = add_ok(&d, with_deps(sleeper("web"), json!({"db": "healthy"})));
    assert_eq!(web["waiting_for"], json!(["db (healthy)"]), "{web}");
    // Running is not enough.
    assert_eq!(state_of(&d, "db"), "running");
    stays(&d, "web", "waiting", Duration::from_millis(1500));
    std::fs::write(&flag, "").unwrap();
    wait_status(&d, "web", "running", SHORT);
    assert_eq!(status_of(&d, "db")["health"], "healthy");
}

/// The README's "Start order" example, applied with the CLI as written.
#[test]
fn the_readme_start_order_example_is_true() {
    let d = Daemon::start();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/specs/start-order.json"
    );
    let out = crate::client::ok(&d, &["apply", "-f", file]);
    assert!(out.contains("added:     db, migrate, web, worker"), "{out}");
    let ls = crate::client::ok(&d, &["ls"]);
    let row = |id: &str| {
        ls.lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("db"), ["db", "running", "starting"], "{ls}");
    for id in ["migrate", "web", "worker"] {
        assert_eq!(row(id), [id, "waiting", "-"], "{ls}");
    }
    let status = crate::client::cli(&d, &["status", "web"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("waiting for: db (healthy), migrate (completed_successfully)\n"),
        "{text}"
    );
    wait_status(&d, "worker", "running", LONG);
    assert_eq!(state_of(&d, "web"), "running");
    assert_eq!(status_of(&d, "migrate")["last_exit"]["code"], 0);
    assert_eq!(status_of(&d, "db")["health"], "healthy");
    let log = logs(&d, "web");
    assert!(
        log.iter().any(|l| l.ends_with(
            "SYSTEM: dependencies ready (db (healthy), migrate (completed_successfully)): starting"
        )),
        "{log:#?}"
    );
}

#[test]
fn an_automatic_restart_waits_for_its_dependencies_too() {
    let d = Daemon::start();
    add_ok(&d, sleeper("db"));
    let mut web = with_deps(sleeper("web"), json!({"db": "started"}));
    web["auto_restart"] = json!(true);
    web["backoff_seconds"] = json!([1]);
    web["rapid_exit_penalty_seconds"] = json!(0);
    let web = add_ok(&d, web);
    assert_eq!(web["status"], "running");
    assert_eq!(d.post("/stop/db", "").status, 200);
    send_signal(pid_of(&web), nix::sys::signal::Signal::SIGKILL);
    wait_status(&d, "web", "backoff", SHORT);
    // After its delay (1 s) it does not start: db is down.
    let p = wait_status(&d, "web", "waiting", SHORT);
    assert_eq!(p["waiting_for"], json!(["db (started)"]));
    assert_eq!(d.post("/start/db", "").status, 200);
    let p = wait_status(&d, "web", "running", SHORT);
    assert_eq!(p["restarts_total"], 1, "{p}");
}

#[test]
fn restart_all_starts_dependents_once_their_dependencies_are_back() {
    let d = Daemon::start();
    let mut db = sh("db", "sleep 2; echo ready; exec sleep 1000");
    db["health"] = json!({"log": "^ready$"});
    add_ok(&d, db);
    add_ok(&d, with_deps(sleeper("web"), json!({"db": "healthy"})));
    wait_status(&d, "web", "running", SHORT);
    let r = d.post("/restart-all", "");
    assert_eq!(r.status, 200, "{}", r.body);
    // web came back before db was healthy again: it waits for it.
    let p = status_of(&d, "web");
    assert_eq!(p["status"], "waiting", "{p}");
    assert_eq!(p["waiting_for"], json!(["db (healthy)"]));
    wait_status(&d, "web", "running", SHORT);
    assert_eq!(status_of(&d, "db")["health"], "healthy");
}

#[test]
fn a_saved_process_that_needs_an_unsaved_one_says_so() {
    let mut d = Daemon::start();
    let mut db = sleeper("db");
    db["save_for_next_run"] = json!(false);
    add_ok(&d, db);
    let mut web = with_deps(sleeper("web"), json!({"db": "started"}));
    web["save_for_next_run"] = json!(true);
    let (status, body) = add(&d, web);
    assert_eq!(status, 200, "{body}");
    let m = body["message"].as_str().unwrap();
    assert!(m.contains("depends on 'db', not saved"), "{m}");
    // after a restart of exeio, db is gone: web's wait says why it lasts
    d.restart();
    assert!(wait_until(Duration::from_secs(10), || state_of(&d, "web") == "waiting"));
    let w = status_of(&d, "web");
    assert_eq!(
        w["waiting_for"],
        json!(["db (started): there is no process 'db'"]),
        "{w}"
    );
    // adding it again releases the wait
    add_ok(&d, sleeper("db"));
    assert!(wait_until(Duration::from_secs(10), || state_of(&d, "web") == "running"));
}
