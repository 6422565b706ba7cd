//! `exeio deploy`, `exeio releases`, `exeio rollback` (SPEC 4c) end to end:
//! the real binary as a client against a real daemon. A directory packed
//! by the CLI and a tar.gz made by GNU tar go up, a release that is not
//! healthy is rolled back by exeio and the CLI says so (exit 1), rollback
//! by hand, bad input refused before or by the server, the progress bar
//! only on a terminal. Only loopback; only processes started here.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{cli, client_cmd, code, ok, stderr, stdout, url};
use crate::util::*;

/// A deploy waits for the health gate: more than `SHORT` when it fails.
const GATE: Duration = Duration::from_secs(60);

/// A release of the test service: `run.sh` prints its version and sleeps;
/// the probe (`test -f ok`, in the release dir) passes only if `healthy`.
pub(crate) fn release(dir: &Path, version: &str, healthy: bool) {
    fs::create_dir_all(dir.join("conf")).unwrap();
    let run = dir.join("run.sh");
    fs::write(
        &run,
        "#!/bin/sh\necho \"serving $(cat VERSION) from $EXEIO_RELEASE_DIR\"\nexec sleep 600\n",
    )
    .unwrap();
    fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("VERSION"), version).unwrap();
    fs::write(dir.join("conf/app.toml"), "x = 1\n").unwrap();
    symlink("conf/app.toml", dir.join("app.toml")).unwrap();
    if healthy {
        fs::write(dir.join("ok"), "").unwrap();
    }
}

/// The service: started from its release, gated on its probe.
pub(crate) fn service(id: &str) -> Value {
    json!({
        "id": id,
        "command": "{release}/run.sh",
        "health": {"exec": ["test", "-f", "ok"], "period_seconds": 1},
        "deploy": {"healthy_timeout_seconds": 3, "keep": 5},
    })
}

/// `exeio deploy ID PATH`, given the time a failing gate takes.
fn deploy(d: &Daemon, id: &str, path: &Path, extra: &[&str]) -> Output {
    let u = url(d);
    let p = path.display().to_string();
    let mut args = vec!["deploy", id, p.as_str()];
    args.extend_from_slice(extra);
    run_to_end(
        client_cmd(d.tmp(), &args, &["--url", &u, "--key", KEY]),
        GATE,
    )
}

/// The release name of `... deployed release NAME (...)` or `rolled back
/// to release NAME`.
fn named(out: &str) -> String {
    let rest = out
        .split("release ")
        .nth(1)
        .unwrap_or_else(|| panic!("no release named in {out:?}"));
    rest.split_whitespace().next().unwrap_or("").to_owned()
}

fn releases(d: &Daemon, id: &str) -> Value {
    let r = d.get(&format!("/releases/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn deploy_a_dir_then_a_tarball_a_bad_release_rolls_back_and_rollback_by_hand() {
    let d = Daemon::start();
    add_ok(&d, service("web"));
    let src = d.tmp().join("src");

    // 1. A directory, packed by the CLI.
    release(&src.join("v1"), "v1", true);
    let o = deploy(&d, "web", &src.join("v1"), &[]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("web: deployed release ") && out.contains("(the first release)"),
        "{out}"
    );
    let r1 = named(&out);
    assert!(!stderr(&o).contains("MB/s"), "no bar off a terminal");
    wait_log(&d, "web", "serving v1 from ", SHORT);
    let live = d.data_dir().join("releases/web").join(&r1);
    assert_eq!(
        fs::read_link(live.join("app.toml")).unwrap(),
        Path::new("conf/app.toml"),
        "a link went up as a link"
    );
    let mode = fs::metadata(live.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "the mode went up");

    // 2. A tar.gz made by GNU tar (./ entries), sent as it is.
    release(&src.join("v2"), "v2", true);
    let tgz = d.tmp().join("v2.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&tgz)
        .arg("-C")
        .arg(src.join("v2"))
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success());
    let o = deploy(&d, "web", &tgz, &[]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    let r2 = named(&out);
    assert!(out.contains(&format!("(previous: {r1})")), "{out}");
    wait_log(&d, "web", "serving v2 from ", SHORT);

    // 3. A release that never gets healthy: rolled back, exit 1, the reason.
    release(&src.join("v3"), "v3", false);
    let o = deploy(&d, "web", &src.join("v3"), &[]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("did not become healthy") && err.contains(&format!("rolled back to {r2}")),
        "{err}"
    );
    let v = releases(&d, "web");
    assert_eq!(v["current"], r2.as_str(), "{v}");
    assert_eq!(v["releases"][0]["outcome"], "rolled_back", "{v}");

    // The table: newest first, the current one marked.
    let table = ok(&d, &["releases", "web"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("  RELEASE") && lines[0].contains("OUTCOME"));
    assert!(lines[1].contains("rolled back"), "{table}");
    assert!(lines[2].starts_with(&format!("* {r2} ")), "{table}");
    assert!(lines[3].starts_with(&format!("  {r1} ")), "{table}");

    // 4. Rollback by hand: to the last good one, then to a named one.
    let out = ok(&d, &["rollback", "web"]);
    assert!(
        out.contains(&format!("rolled back to release {r1}")),
        "{out}"
    );
    assert_eq!(releases(&d, "web")["current"], r1.as_str());
    wait_log(&d, "web", "serving v1 from ", SHORT);
    let out = ok(&d, &["rollback", "web", &r2]);
    assert_eq!(named(&out), r2, "{out}");
    assert_eq!(releases(&d, "web")["current"], r2.as_str());

    // --json: the API's answer as is.
    let o = deploy(&d, "web", &src.join("v1"), &["--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["previous"], r2.as_str(), "{v}");
}

#[test]
fn bad_input_is_refused_with_its_reason_and_nothing_is_deployed() {
    let d = Daemon::start();
    add_ok(&d, service("web"));
    let src = d.tmp().join("src");
    release(&src.join("v1"), "v1", true);

    // Not a directory nor an archive: refused before anything is sent.
    let notes = d.tmp().join("notes.txt");
    fs::write(&notes, "hi").unwrap();
    let o = deploy(&d, "web", &notes, &[]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("neither a directory nor a .tar.gz"),
        "{}",
        stderr(&o)
    );

    // A socket in the tree: named.
    let odd = src.join("odd");
    release(&odd, "odd", true);
    let _sock = std::os::unix::net::UnixListener::bind(odd.join("app.sock")).unwrap();
    let o = deploy(&d, "web", &odd, &[]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("app.sock"), "{}", stderr(&o));

    // A link out of the release: the server refuses it, naming the entry.
    let out = src.join("escape");
    release(&out, "escape", true);
    symlink("../../../etc/passwd", out.join("conf/passwd")).unwrap();
    let o = deploy(&d, "web", &out, &[]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("conf/passwd"), "{}", stderr(&o));

    // An unknown process: exit 4.
    let o = deploy(&d, "nope", &src.join("v1"), &[]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));

    // A key that is not admin: refused (403).
    let made = ok(&d, &["keys", "add", "ci", "--role", "operate"]);
    let u = url(&d);
    let p = src.join("v1").display().to_string();
    let o = run_to_end(
        client_cmd(
            d.tmp(),
            &["deploy", "web", &p],
            &["--url", &u, "--key", made.trim()],
        ),
        GATE,
    );
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).to_lowercase().contains("admin"),
        "{}",
        stderr(&o)
    );
    let o = cli(&d, &["rollback", "web"]);
    assert_eq!(code(&o), 1, "nothing to go back to: {}", stdout(&o));

    let v = releases(&d, "web");
    assert!(v["current"].is_null(), "{v}");
    let p = status_of(&d, "web");
    assert!(p["pid"].is_null() && p["release"].is_null(), "{p}");
}

/// On a terminal (`script` gives the client a pty), the bar shows the bytes
/// and the rate on stderr; the outcome stays on stdout.
#[test]
fn the_progress_bar_shows_on_a_terminal() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("script (util-linux) not found: skipped");
        return;
    }
    let d = Daemon::start();
    add_ok(&d, service("web"));
    let dir = d.tmp().join("v1");
    release(&dir, "v1", true);
    // Some bulk, so that there is something to show.
    let mut noise = vec![0u8; 4 << 20];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = ((i * 2_654_435_761) >> 13) as u8;
    }
    fs::write(dir.join("blob.bin"), &noise).unwrap();
    let line = format!(
        "{} deploy --url {} --key {KEY} web {}",
        env!("CARGO_BIN_EXE_exeio"),
        url(&d),
        dir.display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qefc", &line, "/dev/null"])
        .env("HOME", d.tmp().join("home"))
        .env_remove("EXEIO_API_KEY");
    let o = run_to_end(cmd, GATE);
    let all = stdout(&o);
    assert_eq!(code(&o), 0, "{all}{}", stderr(&o));
    assert!(all.contains("MB/s") && all.contains("100%"), "{all}");
    assert!(all.contains("[########################]"), "{all}");
    assert!(all.contains("web: deployed release "), "{all}");
}

/// The README's Deploy block, run as written (another port than 8000):
/// three deploys (the CLI, curl, a broken one rolled back) and a rollback
/// by hand leave release 1 live and serving.
#[test]
fn the_readme_deploy_example_runs_as_written() {
    let d = Daemon::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let block = crate::ops::readme_block("## Deploy", "sh").replace("8000", &port.to_string());
    assert!(block.contains("exeio deploy site build/"), "{block}");
    let work = d.tmp().join("work");
    fs::create_dir_all(&work).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_exeio")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = std::process::Command::new("bash");
    sh.args(["-euo", "pipefail", "-c", &block])
        .current_dir(&work)
        .env("PATH", path)
        .env("EXEIO_URL", url(&d))
        .env("EXEIO_API_KEY", KEY)
        .env("HOME", d.tmp().join("home"))
        .env("XDG_CONFIG_HOME", d.tmp().join("xdg-config"))
        .env_remove("EXEIO_CACERT");
    let o = run_to_end(sh, Duration::from_secs(180));
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("release 3 was rolled back"), "{out}\n{err}");
    assert!(err.contains("did not become healthy"), "{err}");
    let v = releases(&d, "site");
    let list = v["releases"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    assert_eq!(list[0]["outcome"], "rolled_back", "{v}");
    assert_eq!(v["current"], list[2]["release"], "release 1 is live: {v}");
    let page = http(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/index.html",
        &[],
        None,
    );
    assert_eq!(page.body.trim(), "version 1", "{}", page.body);
    println!("--- stdout\n{out}--- stderr\n{err}");
    println!("--- log\n{}", logs(&d, "site").join("\n"));
}
