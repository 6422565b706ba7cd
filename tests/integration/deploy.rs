//! Deploys (SPEC 4c), the flow end to end: upload, extract, build, switch,
//! restart, health gate, automatic rollback, no ping-pong, and the refusals
//! (sha256, corrupt, unsafe, over the cap, build failures, roles, a
//! concurrent deploy). `deploy_faults` has the cut uploads, the full disk
//! and the kill -9 test.
//!
//! Releases are tiny tar.gz archives made here (`tarball`). The test app is
//! `sh run.sh` in the release; its health probe is `test -f ok` in the
//! release dir, so a release without `ok` never becomes healthy.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{Daemon, add_ok, status_of, wait_until};
use crate::util::{Response, encode, exchange, request};

/// A `.tar.gz` of these files (path, content, mode).
pub fn tarball(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A release of the test app: `run.sh` prints `tag` and sleeps; `ok`
/// (the probe's file) only if `healthy`.
pub fn app(tag: &str, healthy: bool) -> Vec<u8> {
    let run = format!("echo serving {tag}\nexec sleep 1000\n");
    let mut files: Vec<(&str, &[u8], u32)> = vec![("run.sh", run.as_bytes(), 0o755)];
    if healthy {
        files.push(("ok", b"yes\n", 0o644));
    }
    tarball(&files)
}

/// The test app's config: `extra` is merged in (its `deploy` too).
pub fn app_spec(id: &str, extra: Value) -> Value {
    let mut spec = json!({
        "id": id,
        "command": "sh",
        "args": ["{release}/run.sh"],
        "health": {"exec": ["sh", "-c", "test -f ok"], "period_seconds": 1, "timeout_seconds": 2},
        "deploy": {"healthy_timeout_seconds": 4},
    });
    if let (Value::Object(s), Value::Object(e)) = (&mut spec, extra) {
        for (k, v) in e {
            s.insert(k, v);
        }
    }
    spec
}

/// `POST /deploy/{id}` with `body` and extra headers, as `key`.
pub fn deploy_as(
    d: &Daemon,
    key: Option<&str>,
    id: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Response {
    let mut h: Vec<(&str, &str)> = headers.to_vec();
    if let Some(k) = key {
        h.push(("exeio-api-key", k));
    }
    h.push(("Content-Type", "application/gzip"));
    request(d.addr(), "POST", &format!("/deploy/{id}"), &h, Some(body))
        .unwrap_or_else(|e| panic!("POST /deploy/{id}: {e}"))
}

pub fn deploy(d: &Daemon, id: &str, body: &[u8]) -> Response {
    let key = d.key.clone();
    deploy_as(d, Some(&key), id, body, &[])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn releases(d: &Daemon, id: &str) -> Value {
    let r = d.get(&format!("/releases/{id}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

pub fn root(d: &Daemon, id: &str) -> PathBuf {
    d.data_dir().join("releases").join(id)
}

/// The names in the releases dir of `id` (leftovers start with a dot).
pub fn entries(d: &Daemon, id: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root(d, id))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Leftovers of an upload or extraction.
pub fn leftovers(d: &Daemon, id: &str) -> Vec<String> {
    entries(d, id)
        .into_iter()
        .filter(|n| n.starts_with(".upload-") || n.starts_with(".incoming-") || n == "current.tmp")
        .collect()
}

/// Add the app and deploy a first, healthy release; its name.
pub fn first_release(d: &Daemon, id: &str, extra: Value) -> String {
    let p = add_ok(d, app_spec(id, extra));
    assert_eq!(p["status"], "stopped", "no release yet: {p}");
    let r = deploy(d, id, &app("A", true));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["release"].as_str().unwrap().to_owned()
}

fn log_of(d: &Daemon, id: &str) -> String {
    std::fs::read_to_string(d.logs_dir().join(format!("{id}.log"))).unwrap_or_default()
}

fn metric(d: &Daemon, line: &str) -> u64 {
    d.get("/metrics")
        .body
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn a_release_is_deployed_switched_and_started() {
    let d = Daemon::start();
    let release = first_release(&d, "app", json!({}));
    let p = status_of(&d, "app");
    assert_eq!(p["status"], "running", "{p}");
    assert_eq!(p["health"], "healthy", "{p}");
    let list = releases(&d, "app");
    assert_eq!(list["current"], release.as_str(), "{list}");
    assert_eq!(list["releases"][0]["outcome"], "succeeded", "{list}");
    let link = std::fs::read_link(root(&d, "app").join("current")).unwrap();
    assert!(link.ends_with(&release), "{link:?}");
    // the app runs in its release and says so
    assert!(wait_until(Duration::from_secs(10), || log_of(&d, "app")
        .contains("serving A")));
    // a second one, with the sha256 header: `previous` is the first
    let b = app("B", true);
    let sha = sha256_hex(&b);
    let key = d.key.clone();
    let r = deploy_as(&d, Some(&key), "app", &b, &[("X-Exeio-SHA256", &sha)]);
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["previous"], release.as_str(), "{body}");
    assert!(
        body["release"].as_str().unwrap().ends_with(&sha[..12]),
        "{body}"
    );
    assert!(wait_until(Duration::from_secs(10), || log_of(&d, "app")
        .contains("serving B")));
    assert_eq!(
        metric(&d, "exeio_deploys_total{id=\"app\",outcome=\"succeeded\"} "),
        2
    );
    assert!(leftovers(&d, "app").is_empty(), "{:?}", entries(&d, "app"));
    let audit = std::fs::read_to_string(d.logs_dir().join("audit.log")).unwrap();
    assert!(audit.contains("POST /deploy/app 200"), "{audit}");
}

#[test]
fn bad_uploads_are_400_and_change_nothing() {
    let d = Daemon::start();
    let good = first_release(&d, "app", json!({}));
    let pid = status_of(&d, "app")["pid"].clone();
    let key = d.key.clone();
    let b = app("B", true);
    // a wrong sha256
    let wrong = sha256_hex(b"something else");
    let r = deploy_as(&d, Some(&key), "app", &b, &[("X-Exeio-SHA256", &wrong)]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("sha256"), "{}", r.body);
    let r = deploy_as(&d, Some(&key), "app", &b, &[("X-Exeio-SHA256", "xyz")]);
    assert_eq!(r.status, 400, "{}", r.body);
    // not an archive, a cut gzip
    let r = deploy(&d, "app", b"this is not a tarball at all, just some text");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = deploy(&d, "app", &b[..b.len() / 2]);
    assert_eq!(r.status, 400, "{}", r.body);
    // an entry that climbs out of the release
    let r = deploy(&d, "app", &unsafe_tar("../escape.sh"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.message().contains("../escape.sh"), "{}", r.body);
    assert!(!root(&d, "escape.sh").exists());
    // nothing changed
    let list = releases(&d, "app");
    assert_eq!(list["current"], good.as_str(), "{list}");
    assert_eq!(list["releases"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(status_of(&d, "app")["pid"], pid);
    assert!(leftovers(&d, "app").is_empty(), "{:?}", entries(&d, "app"));
    // an unknown process
    let r = deploy(&d, "nope", &b);
    assert_eq!(r.status, 404, "{}", r.body);
}

/// A tar.gz with one entry named `name`, written raw (the tar crate's
/// builder refuses `..`).
fn unsafe_tar(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    h.set_size(3);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(b"hi\n");
    raw.resize(512 * 2, 0);
    raw.extend_from_slice(&[0u8; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

#[test]
fn over_the_cap_is_413_before_the_body_is_read() {
    let d = Daemon::start_with(&["--max-deploy-bytes", "4096"], &[]);
    add_ok(&d, app_spec("app", json!({})));
    let big: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let r = deploy(&d, "app", &big);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.message().contains("--max-deploy-bytes"), "{}", r.body);
    // chunked: cut when the sent bytes cross the cap
    let key = d.key.clone();
    let headers = vec![
        ("exeio-api-key".to_string(), key),
        ("Content-Type".to_string(), "application/gzip".to_string()),
    ];
    let bytes = encode("POST", "/deploy/app", &headers, Some(&big), true);
    let r = exchange(d.addr(), &bytes, Duration::from_secs(30)).unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(wait_until(Duration::from_secs(5), || leftovers(&d, "app").is_empty()));
    assert_eq!(releases(&d, "app")["releases"], json!([]));
    // every other route keeps its 1 MiB cap
    let r = d.post("/rollback/app", &" ".repeat(2 << 20));
    assert_eq!(r.status, 413, "{}", r.body);
}

#[test]
fn a_failed_or_timed_out_build_is_422_and_switches_nothing() {
    let d = Daemon::start();
    let dir = d.tmp().join("pidfile");
    let build = format!(
        "if [ -f fail ]; then echo compile error >&2; exit 3; fi; \
         if [ -f slow ]; then sleep 1000 & echo $! > {}; wait; fi; echo built",
        dir.display()
    );
    let good = first_release(
        &d,
        "app",
        json!({"deploy": {"healthy_timeout_seconds": 4, "build": ["sh", "-c", build],
                          "build_timeout_seconds": 2}}),
    );
    assert!(wait_until(Duration::from_secs(5), || log_of(&d, "app")
        .contains("[build] built")));
    let pid = status_of(&d, "app")["pid"].clone();
    let failing = tarball(&[
        ("run.sh", b"exec sleep 1000\n", 0o755),
        ("ok", b"", 0o644),
        ("fail", b"", 0o644),
    ]);
    let r = deploy(&d, "app", &failing);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.message().contains("exit 3: compile error"), "{}", r.body);
    let slow = tarball(&[
        ("run.sh", b"exec sleep 1000\n", 0o755),
        ("ok", b"", 0o644),
        ("slow", b"", 0o644),
    ]);
    let r = deploy(&d, "app", &slow);
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.message().contains("timed out"), "{}", r.body);
    // the build's background child died with its group
    let child: i32 = std::fs::read_to_string(&dir)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{child}"
        ))
        .exists()
            || std::fs::read_to_string(format!("/proc/{child}/stat"))
                .is_ok_and(|s| s.contains(") Z "))),
        "build child {child} outlived the build"
    );
    let list = releases(&d, "app");
    assert_eq!(list["current"], good.as_str(), "{list}");
    let outcomes: Vec<&str> = list["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"], "{list}");
    assert_eq!(
        status_of(&d, "app")["pid"],
        pid,
        "the old release kept running"
    );
    let log = log_of(&d, "app");
    assert!(log.contains("STDERR: [build] compile error"), "{log}");
    assert!(log.contains("SYSTEM: deploy: build started"), "{log}");
}

#[test]
fn an_unhealthy_release_is_rolled_back_with_409() {
    let d = Daemon::start();
    let good = first_release(&d, "app", json!({}));
    let r = deploy(&d, "app", &app("B", false));
    assert_eq!(r.status, 409, "{}", r.body);
    let body = r.json();
    let bad = body["release"].as_str().unwrap().to_owned();
    assert_eq!(body["rolled_back_to"], good.as_str(), "{body}");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("release {bad} did not become healthy in 4 s")),
        "{msg}"
    );
    assert!(msg.ends_with(&format!("rolled back to {good}")), "{msg}");
    let list = releases(&d, "app");
    assert_eq!(list["current"], good.as_str(), "{list}");
    assert_eq!(list["releases"][0]["outcome"], "rolled_back", "{list}");
    let p = status_of(&d, "app");
    assert_eq!(
        (p["status"].as_str(), p["health"].as_str()),
        (Some("running"), Some("healthy")),
        "{p}"
    );
    assert_eq!(
        metric(
            &d,
            "exeio_deploys_total{id=\"app\",outcome=\"rolled_back\"} "
        ),
        1
    );
    // and by hand: a rollback to a release that does not exist, then to the bad one
    let r = d.post_json(
        "/rollback/app",
        &json!({"release": "20000101T000000Z-000000000000"}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = d.post_json("/rollback/app", &json!({"nope": 1}));
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn rollback_goes_back_to_the_last_good_release() {
    let d = Daemon::start();
    let a = first_release(&d, "app", json!({}));
    let r = deploy(&d, "app", &app("B", true));
    assert_eq!(r.status, 200, "{}", r.body);
    let b = r.json()["release"].as_str().unwrap().to_owned();
    let r = d.post("/rollback/app", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["release"], a.as_str(), "{}", r.body);
    assert_eq!(r.json()["previous"], b.as_str(), "{}", r.body);
    assert_eq!(releases(&d, "app")["current"], a.as_str());
    let r = d.post_json("/rollback/app", &json!({"release": b}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(releases(&d, "app")["current"], b.as_str());
}

#[test]
fn no_ping_pong_when_the_old_release_is_unhealthy_too() {
    use crate::notify::{Receiver, put_ok};
    let d = Daemon::start();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let reply = put_ok(
        &d,
        &json!([{"name": "ops", "webhook": format!("http://127.0.0.1:{port}/hook"), "events": ["deploy.failed"]}]),
    );
    let secret = reply["secrets"]["ops"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned();
    let rx = Receiver::start(&secret, "200", port);
    let a = first_release(&d, "app", json!({}));
    // the good release goes bad while it runs (its probe's file is gone)
    std::fs::remove_file(root(&d, "app").join(&a).join("ok")).unwrap();
    let r = deploy(&d, "app", &app("B", false));
    assert_eq!(r.status, 409, "{}", r.body);
    let msg = r.message();
    assert!(
        msg.contains(&format!("rolled back to {a}, which is not healthy either")),
        "{msg}"
    );
    // it stopped there: A stays current and running
    assert_eq!(releases(&d, "app")["current"], a.as_str());
    let p = status_of(&d, "app");
    assert_eq!(p["status"], "running", "{p}");
    let got = rx.wait_for(1, Duration::from_secs(20));
    assert_eq!(got[0]["body"]["type"], "deploy.failed", "{got:?}");
    assert_eq!(got[0]["body"]["data"]["id"], "app", "{got:?}");
    assert_eq!(
        metric(&d, "exeio_deploys_total{id=\"app\",outcome=\"failed\"} "),
        1
    );
}

#[test]
fn one_deploy_at_a_time_and_only_for_admins() {
    let d = Daemon::start();
    first_release(
        &d,
        "app",
        json!({"deploy": {"healthy_timeout_seconds": 4, "build": ["sleep", "2"]}}),
    );
    // keys of each role
    let mut keys = Vec::new();
    for role in ["read", "operate"] {
        let r = d.post_json("/keys", &json!({"name": role, "role": role}));
        assert_eq!(r.status, 200, "{}", r.body);
        keys.push(r.json()["key"].as_str().unwrap().to_owned());
    }
    let before = entries(&d, "app");
    for k in &keys {
        let r = deploy_as(&d, Some(k), "app", &app("C", true), &[]);
        assert_eq!(r.status, 403, "{}", r.body);
        let r = request(
            d.addr(),
            "POST",
            "/rollback/app",
            &[("exeio-api-key", k)],
            Some(b""),
        )
        .unwrap();
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let r = request(
        d.addr(),
        "GET",
        "/releases/app",
        &[("exeio-api-key", &keys[0])],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = deploy_as(&d, None, "app", &app("C", true), &[]);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(
        entries(&d, "app"),
        before,
        "a refused upload stored nothing"
    );
    // two at once: the second is 409 while the first builds
    let addr = d.addr().to_owned();
    let key = d.key.clone();
    let first = std::thread::spawn(move || {
        request(
            &addr,
            "POST",
            "/deploy/app",
            &[("exeio-api-key", &key)],
            Some(&app("D", true)),
        )
        .unwrap()
    });
    assert!(wait_until(Duration::from_secs(10), || log_of(&d, "app")
        .matches("build started")
        .count()
        >= 2));
    let r = deploy(&d, "app", &app("E", true));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.message().contains("in progress"), "{}", r.body);
    let r = d.post("/rollback/app", "");
    assert_eq!(r.status, 409, "{}", r.body);
    let r = first.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // and the lock is free again
    let r = d.post("/rollback/app", "");
    assert_eq!(r.status, 200, "{}", r.body);
}
