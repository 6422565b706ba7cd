//! The command line: help, version, bad flags, start-up errors (port in use, second
//! instance, unusable config dir), where the API key comes from, and dir permissions.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use crate::util::*;

fn run(tmp: &TempDir, args: &[&str]) -> Output {
    let mut cmd = exeio_command(tmp.path());
    cmd.args(args);
    run_to_end(cmd, SHORT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Asserts exactly one non-empty stderr line of the form `exeio: error: ...`; returns it.
fn one_error_line(out: &Output) -> String {
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "want one stderr line, got {stderr:?}");
    assert!(lines[0].starts_with("exeio: error: "), "{stderr:?}");
    lines[0].to_string()
}

fn key_lines(d: &Daemon) -> Vec<String> {
    d.stdout_lines()
        .into_iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("api key"))
        .collect()
}

/// Waits for the last start-up line (`Config file: ...`).
fn wait_banner(d: &Daemon) -> Vec<String> {
    let done = wait_until(SHORT, || {
        d.stdout_lines()
            .iter()
            .any(|l| l.starts_with("Config file: "))
    });
    assert!(done, "no 'Config file:' line: {:?}", d.stdout_lines());
    d.stdout_lines()
}

#[test]
fn help_and_version() {
    let tmp = TempDir::new();
    for flag in ["--help", "-h"] {
        let out = run(&tmp, &[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = text(&out.stdout);
        for option in [
            "--port",
            "--host",
            "--api-key",
            "--config-dir",
            "--data-dir",
        ] {
            assert!(stdout.contains(option), "{flag} lacks {option}: {stdout}");
        }
    }
    for flag in ["--version", "-V"] {
        let out = run(&tmp, &[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        let stdout = text(&out.stdout);
        assert!(
            stdout.contains(env!("CARGO_PKG_VERSION")),
            "{flag}: {stdout:?}"
        );
    }
    // Neither starts anything nor creates a dir.
    assert!(!tmp.path().join("xdg-config").exists());
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let tmp = TempDir::new();
    for args in [
        &["--bogus"][..],
        &["--port", "not-a-port"],
        &["--port", "70000"],
        &["--port"],
        &["stray-argument"],
    ] {
        let out = run(&tmp, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        one_error_line(&out);
    }
    let out = run(&tmp, &["--bogus"]);
    assert!(one_error_line(&out).contains("--bogus"));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let tmp = TempDir::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let mut args = dir_args(tmp.path());
    args[1] = port.clone();
    args.extend(["--api-key".to_string(), KEY.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&tmp, &args);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(line.contains(&port), "{line}");
    assert!(line.to_ascii_lowercase().contains("in use"), "{line}");
}

#[test]
fn a_second_instance_names_the_first() {
    let d = Daemon::start();
    let mut cmd = exeio_command(d.tmp());
    cmd.args(dir_args(d.tmp())).args(["--api-key", KEY]);
    let out = run_to_end(cmd, SHORT);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(line.contains(&format!("pid {}", d.pid())), "{line}");
    // The first one is unharmed.
    assert_eq!(d.get("/list").status, 200);
    let lock = std::fs::read_to_string(d.config_dir().join("exeio.lock")).unwrap();
    assert_eq!(lock.trim(), d.pid().to_string(), "lock file content");
}

#[test]
fn a_generated_key_is_stored_0600_and_reused_silently() {
    let opts = Options {
        no_key: true,
        ..Options::default()
    };
    let mut d = Daemon::start_opts(TempDir::new(), opts);
    let banner = wait_banner(&d);
    assert!(banner[0].starts_with("exeio listening on http://127.0.0.1:"));
    let shown: Vec<String> = banner
        .iter()
        .filter_map(|l| l.strip_prefix("API Key: "))
        .map(str::to_string)
        .collect();
    assert_eq!(shown.len(), 1, "{banner:?}");
    let key = shown[0].clone();
    assert!(key.len() >= 32, "key too short: {key:?}");
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()), "{key:?}");
    let file = d.config_dir().join("api-key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    assert_eq!(mode_of(&file), 0o600);
    let logs = d.logs_dir().display().to_string();
    assert!(
        banner.contains(&format!("Logs directory: {logs}")),
        "{banner:?}"
    );

    assert_eq!(d.get("/list").status, 401, "the fixture key must not work");
    d.key = key.clone();
    assert_eq!(d.get("/list").status, 200);

    d.restart();
    let banner = wait_banner(&d);
    assert!(
        !banner.iter().any(|l| l.contains(&key)),
        "key printed again: {banner:?}"
    );
    let from = key_lines(&d);
    assert_eq!(from.len(), 1, "{banner:?}");
    assert!(from[0].contains(&file.display().to_string()), "{from:?}");
    assert_eq!(d.get("/list").status, 200, "the stored key is reused");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
}

#[test]
fn the_start_up_note_names_every_open_path() {
    use exeio::api::routes::{Access, ROUTES};
    let d = Daemon::start();
    let banner = wait_banner(&d);
    let note = banner
        .iter()
        .find(|l| l.starts_with("NOTE: "))
        .unwrap_or_else(|| panic!("no NOTE line: {banner:?}"));
    let named: Vec<&str> = note
        .split_once("(all but ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{note}"))
        .split(", ")
        .collect();
    let mut open: Vec<&str> = ROUTES
        .iter()
        .filter(|r| r.access == Access::Open)
        .map(|r| r.path)
        .collect();
    open.dedup();
    assert_eq!(named, open, "{note}");
    for path in ["/info", "/openapi.json"] {
        let r = request(d.addr(), "GET", path, &[], None).unwrap();
        assert_eq!(r.status, 200, "{path} without a key");
    }
}

#[test]
fn the_key_can_come_from_the_environment() {
    let opts = Options {
        no_key: true,
        env: vec![("EXEIO_API_KEY".into(), "env-key-123".into())],
        ..Options::default()
    };
    let mut d = Daemon::start_opts(TempDir::new(), opts);
    let banner = wait_banner(&d);
    assert_eq!(
        key_lines(&d),
        vec!["API key: from EXEIO_API_KEY".to_string()]
    );
    assert!(
        !banner.iter().any(|l| l.contains("env-key-123")),
        "{banner:?}"
    );
    assert_eq!(d.get("/list").status, 401);
    d.key = "env-key-123".into();
    assert_eq!(d.get("/list").status, 200);
    assert!(
        !d.config_dir().join("api-key").exists(),
        "a key was generated anyway"
    );
}

#[test]
fn the_key_can_come_from_a_file_or_the_flag() {
    let tmp = TempDir::new();
    let key_file = tmp.path().join("key.txt");
    std::fs::write(&key_file, "file-key-456\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let opts = Options {
        no_key: true,
        args: vec!["--api-key-file".into(), key_file.display().to_string()],
        ..Options::default()
    };
    let mut d = Daemon::start_opts(tmp, opts);
    wait_banner(&d);
    let want = format!("API key: from file {}", key_file.display());
    assert_eq!(key_lines(&d), vec![want]);
    d.key = "file-key-456".into();
    assert_eq!(
        d.get("/list").status,
        200,
        "trailing newline must be trimmed"
    );
    d.key = "file-key-45".into();
    assert_eq!(d.get("/list").status, 401);

    let d = Daemon::start();
    wait_banner(&d);
    assert_eq!(key_lines(&d), vec!["API key: from --api-key".to_string()]);
    assert!(!d.stdout_lines().iter().any(|l| l.contains(": test")));
}

#[test]
fn dirs_are_created_0700() {
    let d = Daemon::start();
    for dir in [d.config_dir(), d.data_dir(), d.logs_dir()] {
        assert!(dir.is_dir(), "{} missing", dir.display());
        assert_eq!(mode_of(&dir), 0o700, "{}", dir.display());
    }
    // Files are 0600: the process log, exeio's own log, the saved config, the lock.
    let mut spec = serde_json::json!({"id": "f", "command": "true"});
    spec["save_for_next_run"] = true.into();
    add_ok(&d, spec);
    wait_status(&d, "f", "stopped", SHORT);
    for file in [
        d.logs_dir().join("f.log"),
        d.logs_dir().join("exeio.log"),
        d.processes_json(),
        d.config_dir().join("exeio.lock"),
    ] {
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
    let banner = wait_banner(&d);
    let config = d.config_dir().join("processes.json").display().to_string();
    assert!(
        banner.contains(&format!("Config file: {config}")),
        "{banner:?}"
    );
}

#[test]
fn default_dirs_follow_xdg_then_home() {
    let opts = Options {
        no_dirs: true,
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    let banner = wait_banner(&d);
    let config = d.tmp().join("xdg-config/exeio");
    let logs = d.tmp().join("xdg-data/exeio/logs");
    let want = format!("Config file: {}", config.join("processes.json").display());
    assert!(banner.contains(&want), "{banner:?}");
    assert!(banner.contains(&format!("Logs directory: {}", logs.display())));
    assert_eq!(mode_of(&config), 0o700);
    assert_eq!(mode_of(&logs), 0o700);
    drop(d);

    let opts = Options {
        no_dirs: true,
        env_remove: vec!["XDG_CONFIG_HOME".into(), "XDG_DATA_HOME".into()],
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    let banner = wait_banner(&d);
    let home = d.tmp().join("home");
    let config = home.join(".config/exeio/processes.json");
    let logs = home.join(".local/share/exeio/logs");
    assert!(banner.contains(&format!("Config file: {}", config.display())));
    assert!(banner.contains(&format!("Logs directory: {}", logs.display())));
    assert!(logs.is_dir());
}

#[test]
fn an_unusable_config_dir_is_one_clear_line() {
    let tmp = TempDir::new();
    let blocker = tmp.path().join("config");
    std::fs::write(&blocker, "a file, not a dir").unwrap();
    let mut args = dir_args(tmp.path());
    args.extend(["--api-key".to_string(), KEY.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&tmp, &args);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(line.contains(&blocker.display().to_string()), "{line}");
    assert_eq!(
        std::fs::read_to_string(&blocker).unwrap(),
        "a file, not a dir"
    );
    // Same for the data dir.
    let tmp = TempDir::new();
    std::fs::write(tmp.path().join("data"), "x").unwrap();
    let mut args = dir_args(tmp.path());
    args.extend(["--api-key".to_string(), KEY.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&tmp, &args);
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out);
}
