//! Deploy and rollback from the dashboard (SPEC 4c): `tests/browser/deploy.py`
//! drives the page in headless Chromium (file picker, outcome, the release
//! under the name, rollback's confirmation, a read-only key's view) against
//! a daemon with a process that takes releases. Needs what the dashboard's
//! browser test needs (python3, selenium, chromium, chromedriver).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::client_deploy::{release, service};
use crate::util::*;

fn tarball(dir: &Path, out: &Path) {
    let ok = Command::new("tar")
        .arg("czf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .status()
        .expect("tar");
    assert!(ok.success());
}

#[test]
fn deploy_and_rollback_from_the_dashboard() {
    let d = Daemon::start();
    add_ok(&d, service("web"));
    let r = d.post_json("/keys", &json!({"name": "viewer", "role": "read"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let readonly = r.json()["key"].as_str().expect("the new key").to_string();
    let mut paths = Vec::new();
    for (name, healthy) in [("good", true), ("second", true), ("bad", false)] {
        let dir = d.tmp().join(name);
        release(&dir, name, healthy);
        let out = d.tmp().join(format!("{name}.tar.gz"));
        tarball(&dir, &out);
        paths.push(out.display().to_string());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/deploy.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(["--url", &format!("http://{}", d.addr())])
        .args(["--key", &d.key, "--readonly-key", &readonly])
        .args([
            "--good", &paths[0], "--second", &paths[1], "--bad", &paths[2],
        ])
        .env("PYTHONUNBUFFERED", "1");
    let o = run_to_end(cmd, Duration::from_secs(300));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "the browser test failed:\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    println!("{out}");
    // What was clicked reached exeio: three deploys and a rollback.
    let v = d.get("/releases/web").json();
    assert_eq!(v["releases"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["current"], v["releases"][2]["release"], "{v}");
    assert_eq!(status_of(&d, "web")["release"], v["current"], "{v}");
}
