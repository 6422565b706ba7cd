//! Releases on disk (SPEC 4c), without the deploy route: `{release}`,
//! `EXEIO_RELEASE_DIR` and the default `working_dir` resolved at each spawn
//! from a `releases/<id>/current` laid out by hand; a process that uses
//! `{release}` added stopped until there is one; boot recovery removing
//! what an interrupted deploy left (and the log saying so).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::util::{Daemon, Options, TempDir, wait_until};
use crate::util::{add, status_of, wait_log, wait_status};

const R1: &str = "20261207T100000Z-aaaaaaaaaaaa";
const R2: &str = "20261207T110000Z-bbbbbbbbbbbb";
const WAIT: Duration = Duration::from_secs(15);

/// `<data>/releases/<id>/<name>/` holding `hello` (its name), recorded as
/// succeeded in the metadata file, and `current` pointing at it.
fn lay_release(data: &Path, id: &str, name: &str) -> PathBuf {
    let root = data.join("releases").join(id);
    let dir = root.join(name);
    fs::create_dir_all(dir.join("srv")).unwrap();
    fs::write(dir.join("hello"), name).unwrap();
    let meta = root.join("releases.json");
    let mut v: serde_json::Value = fs::read(&meta)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"releases": []}));
    v["releases"].as_array_mut().unwrap().push(json!({
        "release": name, "sha256": "00", "bytes": 1,
        "deployed_at": "2026-12-07T10:00:00Z", "outcome": "succeeded"
    }));
    fs::write(&meta, v.to_string()).unwrap();
    let tmp = root.join("current.new");
    std::os::unix::fs::symlink(name, &tmp).unwrap();
    fs::rename(&tmp, root.join("current")).unwrap();
    dir
}

fn start_in(tmp: TempDir) -> Daemon {
    Daemon::start_opts(tmp, Options::default())
}

fn printer(id: &str) -> serde_json::Value {
    json!({
        "id": id,
        "command": "sh",
        "args": ["-c", "echo arg={release}; echo env=$EXEIO_RELEASE_DIR; echo var=$MINE; echo pwd=$(pwd -P); cat {release}/hello; echo; sleep 300"],
        "env": {"MINE": "{release}/srv"}
    })
}

#[test]
fn release_placeholders_resolve_to_the_live_dir_at_each_spawn() {
    let tmp = TempDir::new();
    let data = tmp.path().join("data");
    let one = lay_release(&data, "web", R1);
    let d = start_in(tmp);
    let (status, body) = add(&d, printer("web"));
    assert_eq!(status, 200, "{body}");
    let one = one.display().to_string();
    for line in [
        format!("arg={one}"),
        format!("env={one}"),
        format!("var={one}/srv"),
        format!("pwd={one}"),
        R1.to_owned(),
    ] {
        wait_log(&d, "web", &line, WAIT);
    }
    // A new release made live by hand: the next spawn uses it, read then.
    let two = lay_release(&d.data_dir(), "web", R2).display().to_string();
    let r = d.post("/restart/web", "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_log(&d, "web", &format!("env={two}"), WAIT);
    wait_log(&d, "web", &format!("pwd={two}"), WAIT);
}

#[test]
fn a_process_using_release_is_added_stopped_until_there_is_one() {
    let d = Daemon::start();
    let (status, body) = add(&d, printer("app"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("no release deployed yet"),
        "{body}"
    );
    let p = status_of(&d, "app");
    assert_eq!(p["status"], "stopped", "{p}");
    assert_eq!(p["error"], "no release deployed yet", "{p}");
    // Saved, it comes back the same after a restart of exeio.
    let mut saved = printer("kept");
    saved["save_for_next_run"] = json!(true);
    assert_eq!(add(&d, saved).0, 200);
    let mut d = d;
    d.restart();
    let p = status_of(&d, "kept");
    assert_eq!(
        (p["status"].as_str(), p["error"].as_str()),
        (Some("stopped"), Some("no release deployed yet")),
        "{p}"
    );
    let r = d.post("/start/kept", "");
    assert!(r.status >= 400, "{} {}", r.status, r.body);
    assert!(r.body.contains("no release deployed yet"), "{}", r.body);
    // A process without {release} is not held back.
    let (status, body) = add(
        &d,
        json!({"id": "plain", "command": "sleep", "args": ["300"]}),
    );
    assert_eq!(status, 200, "{body}");
    wait_status(&d, "plain", "running", WAIT);
    // Once a release is live, a start (what a deploy does) runs it.
    let dir = lay_release(&d.data_dir(), "kept", R1);
    let r = d.post("/start/kept", "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_log(&d, "kept", &format!("env={}", dir.display()), WAIT);
    let p = wait_status(&d, "kept", "running", WAIT);
    assert!(p["error"].is_null(), "{p}");
}

#[test]
fn boot_recovery_removes_leftovers_and_says_so() {
    let tmp = TempDir::new();
    let data = tmp.path().join("data");
    lay_release(&data, "web", R1);
    let root = data.join("releases/web");
    fs::create_dir_all(root.join(".incoming-0123abcd/sub")).unwrap();
    fs::write(root.join(".incoming-0123abcd/sub/f"), "x").unwrap();
    fs::write(root.join(".upload-4567ef"), "partial body").unwrap();
    std::os::unix::fs::symlink(R2, root.join("current.tmp")).unwrap();
    // Renamed into place but never recorded: an interrupted commit.
    fs::create_dir_all(root.join(R2)).unwrap();
    let d = start_in(tmp);
    for gone in [".incoming-0123abcd", ".upload-4567ef", "current.tmp", R2] {
        assert!(
            fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} is still there"
        );
    }
    assert_eq!(fs::read_link(root.join("current")).unwrap(), Path::new(R1));
    let log = || fs::read_to_string(d.logs_dir().join("exeio.log")).unwrap_or_default();
    let said = wait_until(WAIT, || {
        let l = log();
        l.contains("deploy recovery: web: removed leftover .incoming-0123abcd")
            && l.contains(&format!("removed {R2} (committed but never recorded)"))
    });
    assert!(said, "exeio.log: {}", log());
}

#[test]
fn another_user_can_reach_its_release() {
    if !nix::unistd::geteuid().is_root()
        || !fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("nobody:"))
    {
        return; // needs root and a `nobody` user (CI runs as root)
    }
    let tmp = TempDir::new();
    let data = tmp.path().join("data");
    lay_release(&data, "svc", R1);
    // The temp dir itself must be traversable for `nobody`.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let d = start_in(tmp);
    let mut spec = printer("svc");
    spec["user"] = json!("nobody");
    let (status, body) = add(&d, spec);
    assert_eq!(status, 200, "{body}");
    wait_log(&d, "svc", R1, WAIT);
    for dir in [d.data_dir(), d.data_dir().join("releases")] {
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o711, "{}", dir.display());
    }
}
