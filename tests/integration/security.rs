//! Keys, roles, sessions, throttling, the audit log and TLS (issue "Safe on
//! a network", SPEC 3a). The role table comes from the route table itself:
//! a route added without a case here fails the test.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{self, Daemon, Options, Table, TempDir, add_ok, sh, wait_status, wait_until};
use exeio::api::routes::{Access, ROUTES};

const ROLES: [&str; 3] = ["read", "operate", "admin"];

fn with_key(d: &Daemon, key: &str, method: &str, path: &str, body: Option<&str>) -> util::Response {
    util::request(
        d.addr(),
        method,
        path,
        &[("exeio-api-key", key)],
        body.map(str::as_bytes),
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn create_key(d: &Daemon, name: &str, role: &str) -> String {
    let r = d.post_json("/keys", &json!({"name": name, "role": role}));
    assert_eq!(r.status, 200, "create key {name}: {}", r.body);
    r.json()["key"].as_str().expect("the key, once").to_string()
}

/// A request of route `path` that succeeds when allowed, made for `role`
/// (each role works on targets of its own).
fn request_for(method: &str, path: &str, role: &str) -> (String, Option<String>) {
    let body = |v: Value| Some(v.to_string());
    match (method, path) {
        ("GET", "/list" | "/metrics" | "/keys" | "/audit") => (path.into(), None),
        ("GET", "/events") => ("/events?since=0".into(), None),
        ("GET", "/status/{id}") => ("/status/p".into(), None),
        ("GET", "/health/{id}") => ("/health/p".into(), None),
        ("GET", "/logs/{id}") => ("/logs/p?page=1&page_size=5".into(), None),
        ("GET", "/runs/{id}") => (format!("/runs/job-{role}"), None),
        ("POST", "/start/{id}") => (format!("/start/start-{role}"), None),
        ("POST", "/stop/{id}") => (format!("/stop/stop-{role}"), None),
        ("POST", "/restart/{id}") => (format!("/restart/restart-{role}"), None),
        ("POST", "/input/{id}") => (format!("/input/cat-{role}"), body(json!({"input": "hi"}))),
        ("POST", "/clear-log/{id}") => ("/clear-log/p".into(), None),
        ("POST", "/run/{id}") => (format!("/run/job-{role}"), None),
        ("POST", "/signal/{id}") => ("/signal/p".into(), body(json!({"signal": "WINCH"}))),
        ("POST", "/add") => (
            "/add".into(),
            body(json!({"id": format!("add-{role}"), "command": "sleep", "args": ["1000"]})),
        ),
        ("POST", "/update/{id}") => (
            format!("/update/update-{role}"),
            body(json!({"command": "sleep", "args": ["1000"], "stop_timeout_seconds": 3})),
        ),
        ("POST", "/apply") => (
            "/apply".into(),
            body(json!({"processes": [], "dry_run": true})),
        ),
        ("POST", "/remove/{id}") => (format!("/remove/remove-{role}"), None),
        ("POST", "/keys") => (
            "/keys".into(),
            body(json!({"name": format!("k-{role}"), "role": "read"})),
        ),
        ("POST", "/keys/{name}/revoke") => (format!("/keys/rv-{role}/revoke"), None),
        ("POST", "/restart-all" | "/stop-all" | "/shutdown") => (path.into(), None),
        ("GET", "/notify") => (path.into(), None),
        // (routes run in table order: the PUT makes the target the test uses)
        ("PUT", "/notify") => (
            path.into(),
            body(json!([{"name": "t", "command": ["true"]}])),
        ),
        ("POST", "/notify/test/{name}") => ("/notify/test/t".into(), None),
        // (table order again: the deploy makes the release the rollback leaves)
        ("GET", "/releases/{id}") => ("/releases/dep".into(), None),
        ("POST", "/deploy/{id}") => ("/deploy/dep".into(), Some(plain_release(role))),
        ("POST", "/rollback/{id}") => ("/rollback/dep".into(), None),
        _ => panic!("no case for {method} {path}: add one to the role table test"),
    }
}

/// A release of the deploy test's app as a plain tar: its headers and
/// contents are ASCII, so it travels as this test's text bodies do.
fn plain_release(tag: &str) -> String {
    let run = format!("echo serving {tag}\nexec sleep 1000\n");
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in [("run.sh", run.as_bytes(), 0o755), ("ok", b"yes\n", 0o644)] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, data).unwrap();
    }
    String::from_utf8(b.into_inner().unwrap()).expect("an ASCII tar")
}

/// Routes that act on everything run last, shutdown last of all.
fn order(path: &str) -> u8 {
    match path {
        "/restart-all" | "/stop-all" => 1,
        "/shutdown" => 2,
        _ => 0,
    }
}

#[test]
fn every_route_by_every_role_is_allowed_or_forbidden_as_documented() {
    let mut d = Daemon::start();
    let keys: Vec<(&str, String)> = ROLES
        .iter()
        .map(|r| (*r, create_key(&d, &format!("key-{r}"), r)))
        .collect();
    add_ok(&d, sh("p", "echo hello; exec sleep 1000"));
    // a live, healthy release, so that the admin's rollback has one to go back to
    crate::deploy::first_release(&d, "dep", json!({}));
    for role in ROLES {
        for prefix in ["stop", "restart", "remove", "update"] {
            add_ok(
                &d,
                json!({"id": format!("{prefix}-{role}"), "command": "sleep", "args": ["1000"]}),
            );
        }
        add_ok(
            &d,
            json!({"id": format!("start-{role}"), "command": "sleep", "args": ["1000"]}),
        );
        assert_eq!(d.post(&format!("/stop/start-{role}"), "").status, 200);
        add_ok(&d, json!({"id": format!("cat-{role}"), "command": "cat"}));
        add_ok(
            &d,
            json!({"id": format!("job-{role}"), "command": "true", "periodic": true, "period_seconds": 3600}),
        );
        wait_status(&d, &format!("job-{role}"), "waiting", util::SHORT);
        create_key(&d, &format!("rv-{role}"), "read");
    }
    let mut routes: Vec<_> = ROUTES
        .iter()
        .filter_map(|r| match r.access {
            Access::Key(need) => Some((r.method, r.path, need)),
            Access::Open => None,
        })
        .collect();
    routes.sort_by_key(|(_, p, _)| order(p));
    let mut t = Table::new("roles");
    for (method, path, need) in routes {
        for (role, key) in &keys {
            let (url, body) = request_for(method, path, role);
            let allowed = exeio::keys::Role::parse(role).unwrap() >= need;
            let want = if allowed { 200 } else { 403 };
            let r = with_key(&d, key, method, &url, body.as_deref());
            t.row(
                &format!("{role}: {method} {url}"),
                &want.to_string(),
                &format!("{} {}", r.status, util::short(&r.body)),
                r.status == want,
            );
        }
    }
    let exited = d.wait_exit(util::LONG);
    t.row(
        "admin's shutdown",
        "exeio exits 0",
        &format!("{exited:?}"),
        exited.is_some_and(|s| s.success()),
    );
    t.finish();
}

#[test]
fn a_revoked_key_and_its_sessions_stop_working_at_once() {
    let d = Daemon::start();
    let ops = create_key(&d, "ops", "operate");
    assert_eq!(with_key(&d, &ops, "GET", "/list", None).status, 200);
    let cookie = login(&d, &ops);
    assert_eq!(with_cookie(&d, &cookie, "GET", "/list", None).status, 200);
    let listed = d.get("/keys").json();
    assert_eq!(listed["keys"][0]["name"], "ops");
    assert_eq!(listed["keys"][0]["role"], "operate");
    assert!(listed["keys"][0]["last_used_at"].is_string(), "{listed}");
    assert!(
        !listed.to_string().contains(&ops),
        "GET /keys never shows a key"
    );
    assert_eq!(d.post("/keys/ops/revoke", "").status, 200);
    assert_eq!(with_key(&d, &ops, "GET", "/list", None).status, 401);
    assert_eq!(with_cookie(&d, &cookie, "GET", "/list", None).status, 401);
    // A new key of the same name is a new key: the old one stays dead.
    let again = create_key(&d, "ops", "read");
    assert_ne!(again, ops);
    assert_eq!(with_key(&d, &ops, "GET", "/list", None).status, 401);
    let text = fs::read_to_string(d.config_dir().join("keys.json")).unwrap();
    for key in [&ops, &again] {
        let secret = key.split_once('.').unwrap().1;
        assert!(!text.contains(secret), "keys.json holds a key in clear");
    }
    assert_eq!(util::mode_of(&d.config_dir().join("keys.json")), 0o600);
}

#[test]
fn only_admin_keys_see_environment_values() {
    let d = Daemon::start();
    let mut spec = sh("db", "exec sleep 1000");
    spec["env"] = json!({"DB_PASSWORD": "s3cret", "MODE": "prod"});
    add_ok(&d, spec);
    let hidden = json!({"DB_PASSWORD": "<hidden>", "MODE": "<hidden>"});
    let reader = create_key(&d, "watcher", "read");
    let ops = create_key(&d, "ops", "operate");
    for key in [&reader, &ops] {
        let list = with_key(&d, key, "GET", "/list", None);
        assert_eq!(list.json()[0]["env"], hidden, "{}", list.body);
        let status = with_key(&d, key, "GET", "/status/db", None);
        assert_eq!(status.json()["process"]["env"], hidden, "{}", status.body);
        assert!(!list.body.contains("s3cret") && !status.body.contains("s3cret"));
    }
    // The reply of a request an operate key may make hides them too...
    let r = with_key(&d, &ops, "POST", "/restart/db", Some(""));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["process"]["env"], hidden, "{}", r.body);
    // ...and so does a session of a read key (the dashboard).
    let cookie = login(&d, &reader);
    let r = with_cookie(&d, &cookie, "GET", "/status/db", None);
    assert_eq!(r.json()["process"]["env"], hidden, "{}", r.body);
    // An admin key, which can set them, sees them.
    let p = d.get("/status/db").json();
    assert_eq!(p["process"]["env"]["DB_PASSWORD"], "s3cret", "{p}");
}

fn login(d: &Daemon, key: &str) -> String {
    let r = util::request(
        d.addr(),
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        Some(json!({"key": key}).to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 200, "login: {}", r.body);
    let set = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';').next().unwrap().to_string()
}

fn with_cookie(
    d: &Daemon,
    cookie: &str,
    method: &str,
    path: &str,
    csrf: Option<&str>,
) -> util::Response {
    let mut headers = vec![("Cookie", cookie)];
    if let Some(v) = csrf {
        headers.push(("X-Exeio-CSRF", v));
    }
    util::request(d.addr(), method, path, &headers, None).unwrap()
}

#[test]
fn sessions_need_the_csrf_header_to_change_state_and_end_at_logout() {
    let d = Daemon::start();
    add_ok(&d, sh("p", "exec sleep 1000"));
    let cookie = login(&d, "test");
    assert!(!cookie.contains("test"), "the cookie is not the key");
    assert_eq!(
        with_cookie(&d, &cookie, "GET", "/status/p", None).status,
        200
    );
    let r = with_cookie(&d, &cookie, "POST", "/stop/p", None);
    assert_eq!(r.status, 403, "no CSRF header: {}", r.body);
    assert!(r.message().contains("X-Exeio-CSRF"), "{}", r.body);
    assert_eq!(util::state_of(&d, "p"), "running", "nothing happened");
    assert_eq!(
        with_cookie(&d, &cookie, "POST", "/stop/p", Some("1")).status,
        200
    );
    // A key is never taken from the URL.
    let r = util::request(d.addr(), "GET", "/list?key=test&api_key=test", &[], None).unwrap();
    assert_eq!(r.status, 401);
    let r = util::request(
        d.addr(),
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        Some(br#"{"key":"wrong"}"#),
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = util::request(
        d.addr(),
        "POST",
        "/session/logout",
        &[("Cookie", &cookie)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie(&d, &cookie, "GET", "/list", None).status, 401);
}

#[test]
fn the_eleventh_wrong_key_is_throttled_and_other_addresses_are_not() {
    let opts = Options {
        args: vec![
            "--auth-fail-limit".into(),
            "10".into(),
            "--auth-fail-window".into(),
            "60".into(),
        ],
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    let from = |ip: &str, key: &str| {
        let bytes = util::encode(
            "GET",
            "/list",
            &[("exeio-api-key".into(), key.into())],
            None,
            false,
        );
        util::exchange_from(Some(ip), d.addr(), &bytes, Duration::from_secs(30)).unwrap()
    };
    for i in 1..=10 {
        assert_eq!(from("127.0.0.2", "wrong").status, 401, "attempt {i}");
    }
    let r = from("127.0.0.2", "wrong");
    assert_eq!(r.status, 429, "the 11th: {}", r.body);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        from("127.0.0.2", "test").status,
        429,
        "even the right key, for now"
    );
    assert_eq!(from("127.0.0.3", "wrong").status, 401, "another address");
    assert_eq!(from("127.0.0.3", "test").status, 200, "another address");
}

/// Audit lines: `[ts] ADDR KEYNAME METHOD PATH STATUS MSms`.
fn audit_lines(d: &Daemon) -> Vec<String> {
    fs::read_to_string(d.logs_dir().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l[22..].to_string())
        .collect()
}

#[test]
fn each_audited_call_is_logged_once_and_no_file_holds_a_key() {
    let mut d = Daemon::start();
    let reader = create_key(&d, "ro", "read");
    add_ok(&d, sh("p", "exec sleep 1000"));
    assert_eq!(d.post("/stop/p", "").status, 200);
    assert_eq!(with_key(&d, &reader, "POST", "/start/p", None).status, 403);
    assert_eq!(with_key(&d, "nope", "GET", "/list", None).status, 401);
    assert_eq!(d.get("/list").status, 200, "a read is not audited");
    let want = [
        "127.0.0.1 admin POST /keys 200",
        "127.0.0.1 admin POST /add 200",
        "127.0.0.1 admin POST /stop/p 200",
        "127.0.0.1 ro POST /start/p 403",
        "127.0.0.1 - GET /list 401",
    ];
    let mut lines = Vec::new();
    wait_until(util::SHORT, || {
        lines = audit_lines(&d);
        lines.len() >= want.len()
    });
    let mut t = Table::new("audit");
    for w in want {
        let n = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{w} ")))
            .count();
        t.row(w, "exactly once", &format!("{n} in {lines:?}"), n == 1);
    }
    let shape = lines
        .iter()
        .all(|l| l.ends_with("ms") && l.split(' ').count() == 6);
    t.row(
        "line shape",
        "ADDR KEY METHOD PATH STATUS MSms",
        &format!("{lines:?}"),
        shape,
    );
    t.row(
        "nothing else",
        &want.len().to_string(),
        &lines.len().to_string(),
        lines.len() == want.len(),
    );
    let page = d.get("/audit?page=1&page_size=2").json();
    let newest = page["logs"][0].as_str().unwrap_or("").to_string();
    t.row(
        "GET /audit newest first",
        "the 401",
        &newest,
        newest.contains("GET /list 401"),
    );
    d.stop();
    for (what, key) in [("admin", "test".to_string()), ("named", reader.clone())] {
        let secret = key
            .split_once('.')
            .map_or(key.as_str(), |(_, s)| s)
            .to_string();
        let found = files_with(d.tmp(), &secret, &["api-key"]);
        t.row(
            &format!("{what} key in files"),
            "none",
            &format!("{found:?}"),
            found.is_empty(),
        );
    }
    t.finish();
}

#[test]
fn a_login_is_audited_with_the_name_of_its_key() {
    let d = Daemon::start();
    let reader = create_key(&d, "ro", "read");
    login(&d, "test");
    login(&d, &reader);
    let want = [
        "127.0.0.1 admin POST /session 200",
        "127.0.0.1 ro POST /session 200",
    ];
    let mut lines = Vec::new();
    let all = wait_until(util::SHORT, || {
        lines = audit_lines(&d);
        want.iter()
            .all(|w| lines.iter().any(|l| l.starts_with(&format!("{w} "))))
    });
    assert!(all, "want {want:?} in {lines:?}");
}

/// Files under `root` holding `needle`, but for those named in `except`.
fn files_with(root: &Path, needle: &str, except: &[&str]) -> Vec<String> {
    util::tree(root)
        .into_iter()
        .map(|rel| root.join(rel))
        .filter(|p| p.is_file())
        .filter(|p| {
            !except
                .iter()
                .any(|e| p.file_name().is_some_and(|n| n == *e))
        })
        .filter(|p| fs::read(p).is_ok_and(|b| util::find(&b, needle.as_bytes()).is_some()))
        .map(|p| p.display().to_string())
        .collect()
}

/// A self-signed certificate for 127.0.0.1 and localhost (openssl).
fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn tls_serves_https_and_plain_http_to_it_fails_cleanly() {
    let certs = TempDir::new();
    let (cert, key) = self_signed(certs.path());
    let opts = Options {
        args: vec!["--tls-cert".into(), cert.clone(), "--tls-key".into(), key],
        ..Options::default()
    };
    let d = Daemon::start_opts(TempDir::new(), opts);
    assert!(
        d.stdout_lines()[0].starts_with("exeio listening on https://"),
        "{:?}",
        d.stdout_lines()
    );
    let url = format!("https://{}", d.addr());
    let (ok, out) = curl(&["--cacert", &cert, &format!("{url}/info")]);
    assert!(ok && out.contains("\"tls\":true"), "{out}");
    // Two requests on one kept-alive TLS connection, with the key.
    let (ok, out) = curl(&[
        "--cacert",
        &cert,
        "-H",
        "exeio-api-key: test",
        &format!("{url}/list"),
        &format!("{url}/status/nope"),
    ]);
    assert!(
        ok && out.starts_with("[]") && out.contains("no process"),
        "{out}"
    );
    // Without the CA, curl refuses the self-signed certificate.
    let (ok, _) = curl(&[&format!("{url}/info")]);
    assert!(!ok);
    // Plain HTTP to the TLS port: a clear 400, and exeio stays up.
    let r = util::request(d.addr(), "GET", "/info", &[], None).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.message().contains("HTTPS"), "{}", r.body);
    let (ok, out) = curl(&["--cacert", &cert, &format!("{url}/info")]);
    assert!(ok, "still serving HTTPS: {out}");
    // A session cookie under TLS is Secure.
    let (ok, out) = curl(&[
        "--cacert",
        &cert,
        "-i",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"key":"test"}"#,
        &format!("{url}/session"),
    ]);
    assert!(ok && out.contains("; Secure"), "{out}");
}

#[test]
fn bad_tls_files_are_one_clear_error() {
    let certs = TempDir::new();
    let bogus = certs.path().join("bogus.pem");
    fs::write(&bogus, "not a certificate").unwrap();
    let b = bogus.display().to_string();
    let opts = Options {
        args: vec!["--tls-cert".into(), b.clone(), "--tls-key".into(), b],
        ..Options::default()
    };
    let Err(e) = Daemon::try_start(TempDir::new(), opts) else {
        panic!("started with a bogus certificate");
    };
    assert_ne!(e.code, Some(0));
    assert!(e.stderr.contains("certificate"), "{}", e.stderr);
}
