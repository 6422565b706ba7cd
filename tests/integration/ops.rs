//! What a new user stumbled on (issue 21, point 8), each against the real
//! binary: messages that say what to do, `ls` that agrees with the
//! dashboard, the README's quick start and logrotate recipe as written.
//! Only loopback; only processes started here are signalled, by pid.

use std::fs;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::client::{code, ok, stderr, stdout};
use crate::util::*;

fn readme() -> String {
    fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The first fenced block of `lang` after the line `heading` in the README.
pub(crate) fn readme_block(heading: &str, lang: &str) -> String {
    let text = readme();
    let from = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let open = format!("```{lang}\n");
    let start = from + text[from..].find(&open).expect("a block") + open.len();
    let len = text[start..].find("```").expect("a closed block");
    text[start..start + len]
        .lines()
        .map(|l| l.trim_start_matches("  "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn ls_restarts_is_the_dashboards_restart_count_and_saved_is_shown() {
    let d = Daemon::start();
    let flag = d.tmp().join("ran-once");
    let script = format!(
        "test -f {0} || {{ touch {0}; exit 1; }}; exec sleep 60",
        flag.display()
    );
    let mut spec = sh("flaky", &script);
    spec["auto_restart"] = json!(true);
    spec["backoff_seconds"] = json!([0]);
    spec["rapid_exit_penalty_seconds"] = json!(0);
    add_ok(&d, spec);
    assert!(wait_until(
        LONG,
        || status_of(&d, "flaky")["restarts_total"] == 1 && state_of(&d, "flaky") == "running"
    ));
    // A restart by hand starts the streak over: the dashboard shows 0.
    assert_eq!(d.post("/restart/flaky", "").status, 200);
    let p = wait_status(&d, "flaky", "running", SHORT);
    assert_eq!(p["restart_count"], 0, "{p}");
    assert_eq!(p["restarts_total"], 1, "{p}");
    add_ok(
        &d,
        json!({"id": "kept", "command": "sleep", "args": ["60"], "save_for_next_run": true}),
    );
    let out = ok(&d, &["ls"]);
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header[5], "RESTARTS", "{out}");
    assert_eq!(header.last(), Some(&"SAVED"), "{out}");
    let row = |id: &str| -> Vec<String> {
        let l = lines.iter().find(|l| l.starts_with(id)).unwrap();
        l.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(row("flaky")[5], "0", "RESTARTS is restart_count: {out}");
    assert_eq!(row("flaky").last().unwrap(), "no", "{out}");
    assert_eq!(row("kept").last().unwrap(), "yes", "{out}");
}

#[test]
fn the_add_reply_says_whether_the_process_is_saved() {
    let d = Daemon::start();
    let r = d.post_json(
        "/add",
        &json!({"id": "a", "command": "sleep", "args": ["60"], "save_for_next_run": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["saved"], true, "{}", r.body);
    assert!(
        r.message().contains("saved for the next start"),
        "{}",
        r.body
    );
    let out = ok(&d, &["add", "b", "--", "sleep", "60"]);
    assert!(out.contains("not saved"), "{out}");
    let r = d.get("/status/b");
    assert_eq!(r.json()["process"]["save_for_next_run"], false);
}

#[test]
fn a_command_not_found_names_the_path_searched() {
    let d = Daemon::start();
    let (status, body) = add(
        &d,
        json!({"id": "x", "command": "no-such-command-21", "env": {"PATH": "/nowhere:/usr/bin"}}),
    );
    assert_eq!(status, 400, "{body}");
    let m = body["message"].as_str().unwrap();
    assert!(m.contains("not found in PATH (/nowhere:/usr/bin)"), "{m}");
    // A path is not looked up in PATH: the OS error as it is.
    let (status, body) = add(&d, json!({"id": "y", "command": "/no/such/file"}));
    assert_eq!(status, 400);
    assert!(
        !body["message"].as_str().unwrap().contains("PATH"),
        "{body}"
    );
}

#[test]
fn input_to_a_process_that_closed_its_stdin_is_409() {
    let d = Daemon::start();
    add_ok(&d, sh("deaf", "exec 0<&-; echo closed; exec sleep 60"));
    wait_log(&d, "deaf", "closed", SHORT);
    let r = d.post_json("/input/deaf", &json!({"input": "hello"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("closed its stdin"), "{}", r.body);
    // A process that keeps its stdin still takes input.
    add_ok(&d, sh("ear", "read l; echo got $l; exec sleep 60"));
    let r = d.post_json("/input/ear", &json!({"input": "hi"}));
    assert_eq!(r.status, 200, "{}", r.body);
    wait_log(&d, "ear", "got hi", SHORT);
}

#[test]
fn apply_names_the_field_at_fault() {
    let d = Daemon::start();
    let body = json!({"processes": [
        {"id": "good", "command": "true"},
        {"id": "bad", "command": "true", "restart_policy": "sometimes"},
    ]});
    let r = d.post_json("/apply", &body);
    assert_eq!(r.status, 400, "{}", r.body);
    let v = r.json();
    assert_eq!(v["field"], "processes[1].restart_policy", "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("restart_policy") && m.contains("'bad'"), "{m}");
    assert!(ids(&d).is_empty(), "nothing applied");
    // The same for /add and /update.
    let r = d.post_json(
        "/add",
        &json!({"id": "x", "command": "true", "overlap": "never"}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "overlap", "{}", r.body);
}

#[test]
fn the_daemon_says_when_it_shuts_down_and_why() {
    let mut d = Daemon::start();
    d.signal(Signal::SIGTERM);
    assert!(d.wait_exit(LONG).is_some_and(|s| s.success()));
    let out = d.stdout_lines().join("\n");
    assert!(out.contains("shutting down: received SIGTERM"), "{out}");
    assert!(out.contains("exeio: stopped"), "{out}");

    let mut d = Daemon::start();
    assert_eq!(d.post("/shutdown", "").status, 200);
    assert!(d.wait_exit(LONG).is_some_and(|s| s.success()));
    let out = d.stdout_lines().join("\n");
    assert!(
        out.contains("shutting down: POST /shutdown (key 'admin' from 127.0.0.1)"),
        "{out}"
    );
}

#[test]
fn bad_daemon_flags_and_unknown_commands_are_named() {
    let tmp = TempDir::new();
    let run = |args: &[&str]| {
        let mut cmd = exeio_command(tmp.path());
        cmd.args(args);
        run_to_end(cmd, SHORT)
    };
    let o = run(&["-P", "99999"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--port"), "{}", stderr(&o));
    let o = run(&["updte", "web"]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(e.contains("unknown command \"updte\""), "{e}");
    assert!(e.contains("ls, status, health, add"), "{e}");
}

#[test]
fn the_logrotate_recipe_leaves_exeio_s_own_rotation_alone() {
    let recipe = readme_block("- **logrotate**", "text");
    assert!(recipe.contains("postrotate"), "{recipe}");
    assert!(
        !recipe.contains("compress"),
        "exeio pages plain files: {recipe}"
    );
    assert!(
        !recipe.contains('*'),
        "no wildcard over audit.log: {recipe}"
    );
    assert!(!recipe.contains("audit.log"), "{recipe}");
    // A newer logrotate can check it (when installed).
    if let Ok(o) = std::process::Command::new("logrotate")
        .arg("--version")
        .output()
        && o.status.success()
    {
        let tmp = TempDir::new();
        let logs = tmp.path().join("logs");
        fs::create_dir_all(&logs).unwrap();
        let conf = recipe
            .replace("/var/lib/exeio/data/logs", &logs.display().to_string())
            .replace("create 0600 exeio exeio", "create 0600")
            .replace("systemctl reload exeio", "true");
        fs::write(logs.join("web-server.log"), "x\n").unwrap();
        fs::write(tmp.path().join("conf"), conf).unwrap();
        let o = std::process::Command::new("logrotate")
            .args(["-f", "-s"])
            .arg(tmp.path().join("state"))
            .arg(tmp.path().join("conf"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(logs.join("web-server.log.1").exists());
    }
}

/// The quick start's curl block, pasted as it is (only the port changed):
/// the key comes from where exeio said it saved it.
#[test]
fn the_quick_start_works_as_pasted() {
    let opts = Options {
        no_key: true,
        no_dirs: true,
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    assert!(wait_until(SHORT, || d
        .stdout_lines()
        .iter()
        .any(|l| l.contains("generated and saved to"))));
    let said = d.stdout_lines().join("\n");
    let saved_at = said
        .split("generated and saved to ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_owned();
    let key = fs::read_to_string(&saved_at).unwrap().trim().to_owned();
    let block = readme_block("## Quick start", "sh")
        .replace("http://localhost:8080", &format!("http://{}", d.addr()))
        .replace("\"8000\"", "\"0\"");
    assert!(block.contains("working_dir"), "{block}");
    let mut sh = std::process::Command::new("bash");
    sh.args(["-euo", "pipefail", "-c", &block])
        .env("HOME", d.tmp().join("home"))
        .env("XDG_CONFIG_HOME", d.tmp().join("xdg-config"));
    let o = run_to_end(sh, LONG);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let mut d = d;
    d.key = key;
    let p = wait_status(&d, "web-server", "running", SHORT);
    assert_eq!(p["working_dir"], "/tmp/www", "{p}");
    assert!(stdout(&o).contains("\"success\":true"), "{}", stdout(&o));
    assert_eq!(d.post("/remove/web-server", "").status, 200);
}

#[test]
fn signal_reaches_the_group_without_a_restart() {
    let d = Daemon::start();
    let p = add_ok(
        &d,
        sh(
            "reload",
            "trap 'echo reloaded' HUP; echo ready; while :; do sleep 1; done",
        ),
    );
    wait_log(&d, "reload", "STDOUT: ready", SHORT);
    let r = d.post_json("/signal/reload", &json!({"signal": "HUP"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.message().contains("SIGHUP"), "{}", r.body);
    wait_log(&d, "reload", "STDOUT: reloaded", SHORT);
    let lines = wait_log(&d, "reload", "sent SIGHUP to the process group", SHORT);
    assert!(lines.iter().any(|l| l.contains("SYSTEM: sent SIGHUP")));
    let now = status_of(&d, "reload");
    assert_eq!(now["status"], "running");
    assert_eq!(now["pid"], p["pid"], "the same run: no restart");
    assert_eq!(now["run_count"], 1);
    // By number, and in lower case.
    for sig in ["sigwinch", "28"] {
        let r = d.post_json("/signal/reload", &json!({"signal": sig}));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.message().contains("SIGWINCH"), "{}", r.body);
    }
    // Unknown signal: 400 naming the field; unknown id: 404.
    let r = d.post_json("/signal/reload", &json!({"signal": "BOGUS"}));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "signal");
    let r = d.post_json("/signal/nope", &json!({"signal": "HUP"}));
    assert_eq!(r.status, 404, "{}", r.body);
    // Not running: 409.
    assert_eq!(d.post("/stop/reload", "").status, 200);
    let r = d.post_json("/signal/reload", &json!({"signal": "HUP"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("manually_stopped"), "{}", r.body);
}

#[test]
fn env_file_is_read_at_each_spawn_over_env() {
    let d = Daemon::start();
    let file = d.tmp().join("web.env");
    fs::write(
        &file,
        "# secrets\nGREETING=from-file\nexport SHARED='file'\n",
    )
    .unwrap();
    let mut spec = sh("envy", "echo \"$GREETING $SHARED $ONLY\"; exec sleep 60");
    spec["env"] = json!({"SHARED": "env", "ONLY": "env"});
    spec["env_file"] = json!(file.display().to_string());
    let p = add_ok(&d, spec);
    assert_eq!(p["env_file"], file.display().to_string());
    wait_log(&d, "envy", "STDOUT: from-file file env", SHORT);
    // Read again at the next start.
    fs::write(&file, "GREETING=changed\n").unwrap();
    assert_eq!(d.post("/restart/envy", "").status, 200);
    wait_log(&d, "envy", "STDOUT: changed env env", SHORT);

    // Unreadable or malformed at add: 400, nothing added.
    let missing = d.tmp().join("missing.env");
    let mut spec = sh("nope", "true");
    spec["env_file"] = json!(missing.display().to_string());
    let (status, body) = add(&d, spec.clone());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("env_file"),
        "{body}"
    );
    fs::write(&missing, "A=1\nthis is not a variable\n").unwrap();
    let (status, body) = add(&d, spec.clone());
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("line 2"),
        "{body}"
    );
    spec["env_file"] = json!("relative.env");
    let (status, body) = add(&d, spec);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "env_file", "{body}");
    assert_eq!(ids(&d), ["envy"]);
}

#[test]
fn apply_dir_is_the_source_of_truth_at_start() {
    let tmp = TempDir::new();
    let dir = tmp.path().join("processes.d");
    fs::create_dir_all(&dir).unwrap();
    let web = |arg: &str| {
        json!({"id": "web", "command": "sleep", "args": [arg], "save_for_next_run": true})
            .to_string()
    };
    fs::write(dir.join("web.json"), web("60")).unwrap();
    fs::write(
        dir.join("jobs.json"),
        json!([{"id": "tick", "command": "true", "periodic": true, "period_seconds": 3600}])
            .to_string(),
    )
    .unwrap();
    fs::write(dir.join("README.txt"), "not a config").unwrap();
    let opts = Options {
        args: vec!["--apply-dir".into(), dir.display().to_string()],
        ..Options::default()
    };
    let said = |d: &Daemon, what: &str| {
        wait_until(SHORT, || {
            d.stdout_lines()
                .iter()
                .any(|l| l.starts_with("--apply-dir") && l.contains(what))
        })
    };
    let mut d = Daemon::start_opts(tmp, opts.clone());
    assert!(said(&d, "2 added"), "{:?}", d.stdout_lines());
    assert_eq!(ids(&d), ["tick", "web"]);
    wait_status(&d, "web", "running", SHORT);

    // The directory wins over what was saved: web changes, tick comes back.
    fs::write(dir.join("web.json"), web("61")).unwrap();
    d.restart();
    assert!(
        said(&d, "1 added, 1 updated (1 restarted)"),
        "{:?}",
        d.stdout_lines()
    );
    assert_eq!(status_of(&d, "web")["args"], json!(["61"]));

    // A bad file stops the start, naming the file and the field.
    fs::write(
        dir.join("zz-bad.json"),
        r#"{"id": "bad", "command": "true", "restart_policy": "sometimes"}"#,
    )
    .unwrap();
    let status = d.stop();
    assert!(status.success());
    let tmp2 = TempDir::new();
    let e = match Daemon::try_start(tmp2, opts) {
        Ok(_) => panic!("started with a bad --apply-dir"),
        Err(e) => e,
    };
    assert_ne!(e.code, Some(0));
    assert!(
        e.stderr.contains("zz-bad.json") && e.stderr.contains("restart_policy"),
        "{}",
        e.stderr
    );
}

#[test]
fn the_systemd_unit_applies_its_config_dir() {
    let unit = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/exeio.service"
    ))
    .unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(
        exec.contains("--apply-dir /etc/exeio/processes.d"),
        "{exec}"
    );
    assert!(unit.contains("install -d") && unit.contains("/etc/exeio/processes.d"));
}
