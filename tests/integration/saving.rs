//! Nothing the user saved is lost silently (issue "Correct to the last
//! detail", point 2): a config dir that is full makes the reply say the
//! change is not saved, `/status` and `/info` show it, and the save lands
//! by itself once there is room again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::util::{self, Daemon, Options, TempDir, add_ok, wait_status, wait_until};

/// A 1 MiB tmpfs mounted for the test; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mount a tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    /// Fill it up with one file; the file's path.
    fn fill(&self) -> PathBuf {
        let filler = self.0.join("filler");
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn info_saved(d: &Daemon) -> Value {
    d.get("/info").json()["saved"].clone()
}

fn saved_file(d: &Daemon) -> Value {
    serde_json::from_str(&fs::read_to_string(d.processes_json()).unwrap_or_default())
        .unwrap_or(Value::Null)
}

fn entry<'a>(file: &'a Value, id: &str) -> Option<&'a Value> {
    file["processes"]
        .as_array()?
        .iter()
        .find(|p| p["spec"]["id"] == id)
}

#[test]
fn a_full_config_dir_is_said_and_the_save_lands_when_space_returns() {
    let tmp = TempDir::new();
    let tmpfs = Tmpfs::mount(&tmp.path().join("config"));
    let mut d = Daemon::start_opts(tmp, Options::default());
    let saved = |id: &str| json!({"id": id, "command": "sleep", "args": ["1000"], "save_for_next_run": true});
    add_ok(&d, saved("before"));
    assert!(entry(&saved_file(&d), "before").is_some());

    let filler = tmpfs.fill();
    let r = d.post_json("/add", &saved("added-while-full"));
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["saved"], false, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not saved"),
        "{body}"
    );
    let r = d.post("/stop/before", "");
    assert_eq!(r.json()["saved"], false, "{}", r.body);
    let p = util::status_of(&d, "added-while-full");
    assert!(
        p["error"].as_str().is_some_and(|e| e.contains("not saved")),
        "{p}"
    );
    let info = info_saved(&d);
    assert_eq!(info["ok"], false, "{info}");
    assert!(
        info["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space")),
        "{info}"
    );

    // Room again: the retry lands without any further request.
    fs::remove_file(filler).unwrap();
    assert!(
        wait_until(util::LONG, || info_saved(&d)["ok"] == true),
        "the save never landed: {}",
        info_saved(&d)
    );
    let file = saved_file(&d);
    assert!(entry(&file, "added-while-full").is_some(), "{file}");
    assert_eq!(
        entry(&file, "before").unwrap()["manually_stopped"],
        true,
        "{file}"
    );
    assert_eq!(
        util::status_of(&d, "added-while-full")["error"],
        Value::Null
    );

    // And a new exeio finds everything as the user left it.
    d.restart();
    wait_status(&d, "added-while-full", "running", util::SHORT);
    assert_eq!(util::state_of(&d, "before"), "manually_stopped");
    d.stop();
    drop(tmpfs);
}
