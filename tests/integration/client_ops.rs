//! The client's everyday commands (issue 21): a certificate error that says
//! what to do, `EXEIO_CACERT`, and a command for every endpoint. The real
//! binary as a client against real daemons; only loopback.

use std::process::Stdio;

use serde_json::json;

use crate::client::{cli, client_cmd, code, expect_line, lines_of, ok, stderr, stdout, url};
use crate::client_tls::self_signed;
use crate::util::*;

#[test]
fn a_certificate_error_says_what_to_do_and_exeio_cacert_is_read() {
    let tmp = TempDir::new();
    if self_signed(tmp.path(), "server").is_none() {
        eprintln!("openssl not found: skipped");
        return;
    }
    let file = |n: &str| tmp.path().join(n).display().to_string();
    let opts = Options {
        args: vec![
            "--tls-cert".into(),
            file("server.pem"),
            "--tls-key".into(),
            file("server.key"),
        ],
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    let u = format!("https://{}", d.addr());
    let o = run_to_end(
        client_cmd(d.tmp(), &["ls"], &["--url", &u, "--key", KEY]),
        SHORT,
    );
    assert_eq!(code(&o), 1);
    let e = stderr(&o);
    assert!(
        e.contains("--cacert FILE") && e.contains("EXEIO_CACERT"),
        "{e}"
    );
    assert!(e.contains("self-signed"), "{e}");
    assert!(!e.contains("CaUsedAsEndEntity"), "{e}");
    let mut cmd = client_cmd(d.tmp(), &["ls"], &["--url", &u, "--key", KEY]);
    cmd.env("EXEIO_CACERT", file("server.pem"));
    let o = run_to_end(cmd, SHORT);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ID "), "{}", stdout(&o));
}

#[test]
fn update_changes_only_the_fields_given() {
    let d = Daemon::start();
    ok(
        &d,
        &[
            "add",
            "web",
            "-e",
            "A=1",
            "--restart",
            "always",
            "--",
            "sleep",
            "60",
        ],
    );
    let before = status_of(&d, "web");
    let out = ok(&d, &["update", "web", "-e", "B=2", "--stop-timeout", "3"]);
    assert!(out.contains("updated and restarted"), "{out}");
    let p = status_of(&d, "web");
    assert_eq!(p["env"], json!({"A": "1", "B": "2"}), "{p}");
    assert_eq!(p["stop_timeout_seconds"], 3);
    assert_eq!(p["restart_policy"], "always", "kept");
    assert_eq!(p["args"], json!(["60"]), "kept");
    assert_ne!(p["pid"], before["pid"], "env changed: restarted");
    // Nothing that needs a restart: none.
    let out = ok(&d, &["update", "web", "--restart", "never"]);
    assert!(
        out.contains("updated") && !out.contains("restarted"),
        "{out}"
    );
    // A new command after --, and a whole config from a file.
    ok(&d, &["update", "web", "--", "sleep", "61"]);
    assert_eq!(status_of(&d, "web")["args"], json!(["61"]));
    let file = d.tmp().join("web.json");
    std::fs::write(&file, r#"{"command": "sleep", "args": ["62"]}"#).unwrap();
    ok(&d, &["update", "web", "-f", file.to_str().unwrap()]);
    let p = status_of(&d, "web");
    assert_eq!(p["args"], json!(["62"]));
    assert_eq!(p["env"], json!({}), "a file is the whole config");
    // Unknown id: exit 4.
    assert_eq!(code(&cli(&d, &["update", "nope", "--no-save"])), 4);
}

#[test]
fn every_config_field_has_a_flag_catch_up_included() {
    let d = Daemon::start();
    let env = d.tmp().join("job.env");
    std::fs::write(&env, "X=1\n").unwrap();
    ok(
        &d,
        &[
            "add",
            "nightly",
            "--schedule",
            "30 2 * * *",
            "--timezone",
            "UTC",
            "--catch-up",
            "--catch-up-window",
            "3600",
            "--env-file",
            env.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    let p = status_of(&d, "nightly");
    assert_eq!(p["catch_up"], true, "{p}");
    assert_eq!(p["catch_up_window_seconds"], 3600, "{p}");
    assert_eq!(p["env_file"], env.to_str().unwrap(), "{p}");
    // Every field of the wire form has an add flag (the help names it).
    let help = ok(&d, &["help", "add"]);
    for flag in [
        "--cwd",
        "--env",
        "--env-file",
        "--restart",
        "--auto-restart",
        "--save",
        "--periodic",
        "--schedule",
        "--timezone",
        "--catch-up",
        "--catch-up-window",
        "--max-restarts",
        "--stop-signal",
        "--stop-timeout",
        "--log-max-bytes",
        "--log-backups",
        "--backoff",
        "--backoff-reset",
        "--rapid-exit-penalty",
        "--user",
        "--group",
        "--overlap",
        "--timeout",
        "--history",
    ] {
        assert!(help.contains(flag), "{flag} missing from: {help}");
    }
}

#[test]
fn a_command_for_every_endpoint() {
    let d = Daemon::start();
    add_ok(
        &d,
        sh(
            "p",
            "trap 'echo hup' HUP; echo one; echo two; while :; do sleep 1; done",
        ),
    );
    wait_log(&d, "p", "STDOUT: two", SHORT);
    let out = ok(&d, &["signal", "p", "HUP"]);
    assert!(out.contains("sent SIGHUP to 'p'"), "{out}");
    wait_log(&d, "p", "STDOUT: hup", SHORT);
    assert_eq!(code(&cli(&d, &["signal", "p", "NOPE"])), 1);

    // logs --page and --since
    let out = ok(&d, &["logs", "p", "--page", "1", "-n", "2"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    let out = ok(&d, &["logs", "p", "--since", "1h"]);
    assert!(
        out.contains("STDOUT: one") && out.contains("STDOUT: hup"),
        "{out}"
    );
    let out = ok(&d, &["logs", "p", "--since", "2999-01-01"]);
    assert_eq!(out, "", "nothing after a future time");

    let out = ok(&d, &["clear-log", "p"]);
    assert!(out.contains("p"), "{out}");
    assert!(logs(&d, "p").iter().all(|l| !l.contains("STDOUT: one")));

    let out = ok(&d, &["info"]);
    assert!(
        out.contains("version:") && out.contains("POST /signal/{id}"),
        "{out}"
    );
    let out = ok(&d, &["audit", "-n", "100"]);
    assert!(out.contains("POST /signal/p 200"), "{out}");

    let out = ok(&d, &["restart-all"]);
    assert!(out.contains("restarted all"), "{out}");
    let out = ok(&d, &["stop-all"]);
    assert!(out.contains("stopped all"), "{out}");
    assert_eq!(state_of(&d, "p"), "manually_stopped");
}

#[test]
fn events_print_one_line_each_and_logs_f_follows_every_process() {
    let d = Daemon::start();
    let u = url(&d);
    let mut cmd = client_cmd(d.tmp(), &["events"], &["--url", &u, "--key", KEY]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut events = cmd.spawn().expect("spawn the client");
    let rx = lines_of(&mut events);
    // The client connects in its own time: add probes until one is seen.
    let connected = (0..30).any(|i| {
        let id = format!("probe-{i}");
        add_ok(&d, sh(&id, "true"));
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        std::iter::from_fn(|| {
            let left = until.checked_duration_since(std::time::Instant::now())?;
            rx.recv_timeout(left).ok()
        })
        .any(|l| l.contains(&format!("  {id}  added  #")))
    });
    assert!(connected, "the events client never showed an event");
    add_ok(&d, sh("a", "echo from-a; exec sleep 60"));
    add_ok(&d, sh("b", "echo from-b; exec sleep 60"));
    assert!(expect_line(&rx, "  a  added  #"), "no added line");
    assert!(
        expect_line(&rx, "  b  stopped -> running (pid "),
        "no state line"
    );
    events.kill().unwrap();
    events.wait().unwrap();

    wait_log(&d, "b", "from-b", SHORT);
    let mut cmd = client_cmd(d.tmp(), &["logs", "-f"], &["--url", &u, "--key", KEY]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut follow = cmd.spawn().expect("spawn the client");
    let rx = lines_of(&mut follow);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + SHORT;
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(SHORT) {
            // `ID | line`, the ids padded to one width.
            let Some((id, rest)) = l.split_once(" | ") else {
                continue;
            };
            for (want, word) in [("a", "from-a"), ("b", "from-b")] {
                if id.trim_end() == want && rest.contains(word) && !seen.contains(&want) {
                    seen.push(want);
                }
            }
        }
    }
    assert_eq!(seen.len(), 2, "both processes' lines, prefixed: {seen:?}");
    // A line written now arrives too.
    let out = ok(
        &d,
        &[
            "update",
            "a",
            "--",
            "sh",
            "-c",
            "echo again-a; exec sleep 60",
        ],
    );
    assert!(out.contains("restarted"), "{out}");
    assert!(expect_line(&rx, "again-a"), "a new line arrives");
    // A process added after it started is followed too.
    add_ok(&d, sh("c", "echo from-c; exec sleep 60"));
    assert!(
        expect_line(&rx, "from-c"),
        "a process added later is followed"
    );
    follow.kill().unwrap();
    follow.wait().unwrap();
}

/// Every `exeio COMMAND` line of the README's shell examples names a
/// command the client has (or is the daemon with flags), and parses.
#[test]
fn the_readme_s_cli_lines_are_real_commands() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut in_sh = false;
    let mut checked = 0;
    let tmp = TempDir::new();
    for line in readme.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = t == "```sh";
            continue;
        }
        let Some(rest) = t.strip_prefix("exeio ").filter(|_| in_sh) else {
            continue;
        };
        let cmd = rest.split_whitespace().next().unwrap_or("");
        if cmd.starts_with('-') {
            continue; // the daemon
        }
        // `exeio help CMD` knows it: exit 0.
        let mut c = exeio_command(tmp.path());
        c.args(["help", cmd]);
        let o = run_to_end(c, SHORT);
        assert_eq!(code(&o), 0, "README line {t:?}: {}", stderr(&o));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} lines found");
}
