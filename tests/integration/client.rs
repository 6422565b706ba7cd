//! The `exeio COMMAND` client end to end: the real binary as a client against real
//! daemons (`util::Daemon`), checking its output, its exit codes (0, 1, 2, 3, 4) and
//! what it changed through the API. Only loopback; only processes started here are
//! signalled, by pid.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use serde_json::{Value, json};

use crate::util::*;

pub(crate) fn url(d: &Daemon) -> String {
    format!("http://{}", d.addr())
}

/// The client with the test environment (HOME and XDG in the daemon's temp dir, no
/// EXEIO_* from outside); `args[0]` is the command, the globals go right after it.
pub(crate) fn client_cmd(tmp: &Path, args: &[&str], globals: &[&str]) -> Command {
    let mut cmd = exeio_command(tmp);
    cmd.env_remove("EXEIO_URL").env_remove("NO_COLOR");
    cmd.arg(args[0]).args(globals).args(&args[1..]);
    cmd
}

/// `exeio ARGS --url http://ADDR --key test`, run to its end.
pub(crate) fn cli(d: &Daemon, args: &[&str]) -> Output {
    let u = url(d);
    run_to_end(
        client_cmd(d.tmp(), args, &["--url", &u, "--key", KEY]),
        SHORT,
    )
}

pub(crate) fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs and asserts exit 0; returns stdout.
pub(crate) fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = cli(d, args);
    assert_eq!(
        code(&o),
        0,
        "{args:?}: stdout {:?} stderr {:?}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

pub(crate) fn sleeper(id: &str) -> Value {
    sh(id, "sleep 60")
}

fn list(d: &Daemon) -> Vec<Value> {
    let r = d.get("/list");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

#[test]
fn ls_is_a_plain_table_off_a_terminal_and_json_is_the_api_s() {
    let d = Daemon::start();
    let web = add_ok(&d, sleeper("web"));
    add_ok(&d, sh("once", "exit 3"));
    wait_status(&d, "once", "stopped", SHORT);
    let out = ok(&d, &["ls"]);
    assert!(
        !out.contains('\x1b'),
        "no escape codes off a terminal: {out:?}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "STATUS", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "RSS", "NEXT", "RUN",
            "LAST", "EXIT", "SAVED"
        ]
    );
    assert!(
        lines[1].starts_with("once ") && lines[1].contains(" stopped "),
        "{out}"
    );
    assert!(lines[1].contains("code 3"), "{out}");
    let pid = pid_of(&web).to_string();
    assert!(
        lines[2].starts_with("web ") && lines[2].contains(&pid),
        "{out}"
    );
    // Columns line up: STATUS starts at the same place in every line.
    let at = lines[0].find("STATUS").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[at..].starts_with(|c: char| c.is_alphabetic()))
    );
    assert!(
        lines.iter().all(|l| !l.ends_with(' ')),
        "no trailing spaces"
    );

    // --json: the API's GET /list as it is.
    let json_out = ok(&d, &["ls", "--json"]);
    let v: Value = serde_json::from_str(&json_out).expect("ls --json is JSON");
    let api = list(&d);
    let ids = |a: &[Value]| {
        a.iter()
            .map(|p| (p["id"].clone(), p["pid"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(v.as_array().unwrap()), ids(&api));
    assert_eq!(
        v.as_array().unwrap()[0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        api[0].as_object().unwrap().keys().collect::<Vec<_>>()
    );
    // the client flags may also come first
    let u = url(&d);
    let mut cmd = exeio_command(d.tmp());
    cmd.args(["--json", "--url", &u, "--key", KEY, "status", "web"]);
    let o = run_to_end(cmd, SHORT);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["process"]["id"],
        "web"
    );
}

#[test]
fn exit_codes_and_error_messages() {
    let d = Daemon::start();
    add_ok(&d, sleeper("web"));
    // 1: the server's message on stderr (a duplicate add is a 409)
    let o = cli(&d, &["add", "web", "--", "sleep", "1"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.starts_with("exeio: error: ") && err.contains("already exists"),
        "{err:?}"
    );
    assert!(stdout(&o).is_empty());
    // 2: usage errors, with no request sent
    for bad in [
        &["ls", "--bogus"][..],
        &["add", "x", "--restart", "sometimes", "--", "true"],
        &["logs", "web", "-n", "many"],
        &["stop"],
    ] {
        let o = cli(&d, bad);
        assert_eq!(code(&o), 2, "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("exeio: error: "),
            "{bad:?}: {}",
            stderr(&o)
        );
    }
    assert!(list(&d).len() == 1, "nothing was added");
    // 0 and 3: status of a running and of a stopped process (LSB)
    assert_eq!(code(&cli(&d, &["status", "web"])), 0);
    ok(&d, &["stop", "web"]);
    let o = cli(&d, &["status", "web"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stdout(&o).contains("manually_stopped"), "{}", stdout(&o));
    assert!(
        stderr(&o).is_empty(),
        "not running is not an error: {}",
        stderr(&o)
    );
    // 4: an unknown id
    for args in [
        &["status", "nope"][..],
        &["stop", "nope"],
        &["logs", "nope"],
        &["rm", "nope"],
    ] {
        let o = cli(&d, args);
        assert_eq!(code(&o), 4, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no process with id 'nope'"),
            "{}",
            stderr(&o)
        );
    }
    // 1: nobody listening, named by URL
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let o = run_to_end(
        client_cmd(d.tmp(), &["ls"], &["--url", &dead, "--key", KEY]),
        SHORT,
    );
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains(&dead), "{}", stderr(&o));
    // 1 with a hint: no key anywhere
    let u = url(&d);
    let o = run_to_end(client_cmd(d.tmp(), &["ls"], &["--url", &u]), SHORT);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no key was sent"), "{}", stderr(&o));
}

#[test]
fn add_with_flags_then_status() {
    let d = Daemon::start();
    let out = ok(
        &d,
        &[
            "add",
            "web",
            "--env",
            "GREETING=hello",
            "-e",
            "B=2",
            "--restart",
            "on-failure",
            "--max-restarts",
            "4",
            "--stop-signal",
            "INT",
            "--stop-timeout",
            "3",
            "--log-max-bytes",
            "1M",
            "--log-backups",
            "2",
            "--backoff",
            "0.5,1",
            "--backoff-reset",
            "60",
            "--rapid-exit-penalty",
            "0",
            "--save",
            "--cwd",
            "/tmp",
            "--",
            "sh",
            "-c",
            "echo $GREETING from $(pwd); sleep 60",
        ],
    );
    assert!(out.contains("process 'web' added and started"), "{out}");
    let p = status_of(&d, "web");
    assert_eq!(
        p["args"],
        json!(["-c", "echo $GREETING from $(pwd); sleep 60"])
    );
    assert_eq!(p["env"], json!({"GREETING": "hello", "B": "2"}));
    assert_eq!(p["restart_policy"], "on-failure");
    assert_eq!(p["max_restarts"], 4);
    assert_eq!(p["stop_signal"], "INT");
    assert_eq!(p["stop_timeout_seconds"], 3);
    assert_eq!(p["log_max_bytes"], 1 << 20);
    assert_eq!(p["log_backups"], 2);
    assert_eq!(p["backoff_seconds"], json!([0.5, 1.0]));
    assert_eq!(p["backoff_reset_seconds"], 60.0);
    assert_eq!(p["rapid_exit_penalty_seconds"], 0.0);
    assert_eq!(p["save_for_next_run"], true);
    assert_eq!(p["working_dir"], "/tmp");
    wait_log(&d, "web", "hello from /tmp", SHORT);

    let out = ok(&d, &["status", "web"]);
    for want in [
        "id:",
        "web",
        "status:",
        "running",
        "B=2 GREETING=hello",
        "on-failure",
    ] {
        assert!(out.contains(want), "status lacks {want:?}: {out}");
    }
    let pid_line = out.lines().find(|l| l.starts_with("pid:")).unwrap_or("");
    assert!(pid_line.ends_with(&pid_of(&p).to_string()), "{out}");

    // a periodic job from flags; then run and runs
    ok(
        &d,
        &[
            "add",
            "tick",
            "--periodic",
            "3600",
            "--history",
            "5",
            "--",
            "sh",
            "-c",
            "echo tick",
        ],
    );
    let p = status_of(&d, "tick");
    assert_eq!(
        (p["periodic"].clone(), p["period_seconds"].clone()),
        (json!(true), json!(3600))
    );
    wait_until(SHORT, || state_of(&d, "tick") == "waiting");
    ok(&d, &["run", "tick"]);
    let mut runs = String::new();
    let two = wait_until(SHORT, || {
        runs = ok(&d, &["runs", "tick", "-n", "5"]);
        runs.lines().count() == 3
    });
    assert!(two, "two runs: {runs}");
    assert!(runs.starts_with("RUN"), "{runs}");
    assert!(
        runs.lines().nth(1).unwrap().contains("manual"),
        "newest first: {runs}"
    );

    // add -f FILE (the id on the command line fills a file without one)
    let file = d.tmp().join("spec.json");
    fs::write(&file, r#"{"command": "sleep", "args": ["60"]}"#).unwrap();
    ok(&d, &["add", "from-file", "-f", file.to_str().unwrap()]);
    assert_eq!(state_of(&d, "from-file"), "running");
}

#[test]
fn start_stop_restart_rm_take_several_ids() {
    let d = Daemon::start();
    let a = pid_of(&add_ok(&d, sleeper("a")));
    let b = pid_of(&add_ok(&d, sleeper("b")));
    let out = ok(&d, &["stop", "a", "b"]);
    assert!(out.contains("'a'") && out.contains("'b'"), "{out}");
    assert_eq!(
        (state_of(&d, "a"), state_of(&d, "b")),
        ("manually_stopped".into(), "manually_stopped".into())
    );
    ok(&d, &["start", "a", "b"]);
    let (a2, b2) = (pid_of(&status_of(&d, "a")), pid_of(&status_of(&d, "b")));
    assert!(a2 != a && b2 != b);
    ok(&d, &["restart", "a", "b"]);
    let (a3, b3) = (pid_of(&status_of(&d, "a")), pid_of(&status_of(&d, "b")));
    assert!(a3 != a2 && b3 != b2);
    // one unknown id in the middle: the others are still done, exit 4
    let o = cli(&d, &["stop", "a", "nope", "b"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(state_of(&d, "b"), "manually_stopped");
    ok(&d, &["rm", "a", "b"]);
    assert!(list(&d).is_empty());
}

#[test]
fn logs_last_lines_oldest_first_and_by_stream() {
    let d = Daemon::start();
    add_ok(
        &d,
        sh(
            "talk",
            "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; sleep 60",
        ),
    );
    wait_log(&d, "talk", "oops", SHORT);
    let out = ok(&d, &["logs", "talk", "-n", "3"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("STDOUT: line4"), "{out}");
    assert!(lines[1].ends_with("STDOUT: line5"), "{out}");
    assert!(lines[2].ends_with("STDERR: oops"), "{out}");
    let out = ok(&d, &["logs", "talk", "--stream", "stderr"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.trim_end().ends_with("STDERR: oops"), "{out}");
    let out = ok(&d, &["logs", "talk", "--stream", "stdout", "-n", "100"]);
    assert_eq!(out.lines().count(), 5, "{out}");
}

/// The client's stdout, line by line, through a channel.
pub(crate) fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`.
pub(crate) fn expect_line(rx: &mpsc::Receiver<String>, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + SHORT;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

#[test]
fn logs_follow_prints_lines_as_they_are_written_and_input_feeds_stdin() {
    let d = Daemon::start();
    add_ok(
        &d,
        sh("echo", "echo ready; while read l; do echo \"got $l\"; done"),
    );
    wait_log(&d, "echo", "ready", SHORT);
    let u = url(&d);
    let mut cmd = client_cmd(
        d.tmp(),
        &["logs", "echo", "-f", "-n", "1"],
        &["--url", &u, "--key", KEY],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut follower = cmd.spawn().expect("spawn the client");
    let rx = lines_of(&mut follower);
    // The tail comes first: the stream is up.
    assert!(expect_line(&rx, "ready"), "the follow did not start");
    // A line written after the client started arrives while it runs.
    let out = ok(&d, &["input", "echo", "hello", "there"]);
    assert!(out.contains("sent 12 bytes"), "{out}");
    assert!(
        expect_line(&rx, "STDOUT: got hello there"),
        "the new line did not arrive"
    );
    ok(&d, &["input", "echo", "--", "-n"]);
    assert!(
        expect_line(&rx, "STDOUT: got -n"),
        "the second line did not arrive"
    );
    assert_eq!(follower.try_wait().unwrap(), None, "still following");
    follower.kill().expect("kill the client");
    follower.wait().unwrap();
    // input to a stopped process: 409, exit 1
    ok(&d, &["stop", "echo"]);
    let o = cli(&d, &["input", "echo", "x"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

#[test]
fn keys_and_roles() {
    let d = Daemon::start();
    add_ok(&d, sleeper("web"));
    let o = cli(&d, &["keys", "add", "viewer", "--role", "read"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let key = stdout(&o).trim().to_string();
    assert_eq!(stdout(&o).lines().count(), 1, "the key alone on stdout");
    assert!(key.len() >= 32, "{key:?}");
    assert!(stderr(&o).contains("not shown again"), "{}", stderr(&o));
    let out = ok(&d, &["keys", "ls"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("viewer") && l.contains("read")),
        "{out}"
    );
    assert!(!out.contains(&key), "never the key itself");

    let u = url(&d);
    let as_viewer = |args: &[&str]| {
        run_to_end(
            client_cmd(d.tmp(), args, &["--url", &u, "--key", &key]),
            SHORT,
        )
    };
    let o = as_viewer(&["ls"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = as_viewer(&["stop", "web"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("role"), "{}", stderr(&o));
    assert_eq!(state_of(&d, "web"), "running");

    // EXEIO_API_KEY works too
    let mut cmd = client_cmd(d.tmp(), &["ls"], &["--url", &u]);
    cmd.env("EXEIO_API_KEY", &key);
    assert_eq!(code(&run_to_end(cmd, SHORT)), 0);

    ok(&d, &["keys", "revoke", "viewer"]);
    assert_eq!(code(&as_viewer(&["ls"])), 1, "a revoked key is refused");
}

#[test]
fn the_local_key_file_is_the_last_resort() {
    let tmp = TempDir::new();
    let d = Daemon::start_opts(
        tmp,
        Options {
            no_key: true,
            ..Options::default()
        },
    );
    let key_file = d.config_dir().join("api-key");
    assert!(wait_until(SHORT, || key_file.exists()), "no generated key");
    let u = url(&d);
    let conf = d.config_dir();
    let o = run_to_end(
        client_cmd(
            d.tmp(),
            &["ls"],
            &["--url", &u, "--config-dir", conf.to_str().unwrap()],
        ),
        SHORT,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("ID "), "{}", stdout(&o));
    // ...also found through XDG_CONFIG_HOME, as the daemon would look for it
    let mut cmd = client_cmd(d.tmp(), &["ls"], &["--url", &u]);
    cmd.env("XDG_CONFIG_HOME", d.tmp());
    fs::create_dir_all(d.tmp().join("exeio")).unwrap();
    fs::copy(&key_file, d.tmp().join("exeio/api-key")).unwrap();
    assert_eq!(code(&run_to_end(cmd, SHORT)), 0);
    // a wrong --key wins over the file, and fails
    let o = run_to_end(
        client_cmd(
            d.tmp(),
            &["ls"],
            &[
                "--url",
                &u,
                "--config-dir",
                conf.to_str().unwrap(),
                "--key",
                "wrong",
            ],
        ),
        SHORT,
    );
    assert_eq!(code(&o), 1);
}

#[test]
fn help_and_usage() {
    let tmp = TempDir::new();
    let run = |args: &[&str]| {
        let mut cmd = exeio_command(tmp.path());
        cmd.args(args);
        run_to_end(cmd, SHORT)
    };
    let o = run(&["help"]);
    assert_eq!(code(&o), 0);
    for c in [
        "ls",
        "status",
        "add",
        "logs",
        "apply",
        "keys",
        "--url",
        "--json",
        "Exit codes",
    ] {
        assert!(stdout(&o).contains(c), "help lacks {c}");
    }
    for args in [&["help", "add"][..], &["add", "--help"], &["logs", "-h"]] {
        let o = run(args);
        assert_eq!(code(&o), 0, "{args:?}");
        assert!(
            stdout(&o).starts_with("Usage: exeio "),
            "{args:?}: {}",
            stdout(&o)
        );
    }
    assert!(stdout(&run(&["add", "--help"])).contains("--log-max-bytes"));
    let o = run(&["logs"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("exeio help logs"), "{}", stderr(&o));
    // the daemon's flags are unchanged
    let o = run(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("--port"));
    // help starts nothing and creates no dir
    assert!(!tmp.path().join("xdg-config").exists());
}
