//! Family 2, authentication: every protected route refuses every wrong credential
//! with 401 and does nothing; both header forms work; `GET /info` is open; the key
//! never lands in a file or an error message; files are 0600 and dirs 0700.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use crate::util::{self, Daemon, Options, TempDir, add_ok, sh, wait_log};
use crate::util::{Table, daemon_with_key, short};

const KEY: &str = "k3y-SECRET-123";

type Headers = &'static [(&'static str, &'static str)];

/// Every route that needs a key, from the route table itself, with its
/// `{...}` segments filled (`p` is a running process), plus a path under a
/// route that must not tell an anonymous client whether a process exists.
fn protected() -> Vec<(&'static str, String)> {
    let mut routes: Vec<(&'static str, String)> = exeio::api::routes::ROUTES
        .iter()
        .filter(|r| r.access != exeio::api::routes::Access::Open)
        .map(|r| {
            let path = r.path.replace("{id}", "p").replace("{name}", "k");
            (r.method, path)
        })
        .collect();
    routes.extend([
        ("GET", "/logs/p?page=1&page_size=10".to_string()),
        ("GET", "/logs/p?follow=true".to_string()),
        ("GET", "/status/ghost".to_string()),
    ]);
    routes
}

/// A body for the routes that take one (sent with every bad credential).
fn body_of(path: &str) -> Option<&'static str> {
    match path {
        "/add" => Some(r#"{"id":"intruder","command":"sleep","args":["1000"]}"#),
        "/input/p" => Some(r#"{"input":"hello"}"#),
        "/keys" => Some(r#"{"name":"intruder","role":"admin"}"#),
        _ => None,
    }
}

/// Credentials that must all be refused: (case, headers).
#[rustfmt::skip]
const BAD_CREDENTIALS: &[(&str, Headers)] = &[
    ("no key", &[]),
    ("wrong key", &[("exeio-api-key", "wrong")]),
    ("empty key", &[("exeio-api-key", "")]),
    ("prefix of the key", &[("exeio-api-key", "k3y-SECRET-12")]),
    ("key plus a suffix", &[("exeio-api-key", "k3y-SECRET-1234")]),
    ("key with other case", &[("exeio-api-key", "K3Y-SECRET-123")]),
    ("key with a space inside", &[("exeio-api-key", "k3y-SECRET- 123")]),
    ("bearer wrong", &[("Authorization", "Bearer wrong")]),
    ("bearer prefix", &[("Authorization", "Bearer k3y-SECRET-12")]),
    ("bearer key plus suffix", &[("Authorization", "Bearer k3y-SECRET-123x")]),
    ("bearer empty", &[("Authorization", "Bearer ")]),
    ("authorization without scheme", &[("Authorization", "k3y-SECRET-123")]),
    ("basic scheme", &[("Authorization", "Basic k3y-SECRET-123")]),
    ("key in another header", &[("X-Api-Key", "k3y-SECRET-123")]),
    ("two wrong keys", &[("exeio-api-key", "a"), ("exeio-api-key", "b")]),
];

#[test]
fn every_protected_route_refuses_every_bad_credential() {
    let d = daemon_with_key(KEY);
    let p = add_ok(&d, sh("p", "echo P-LINE; exec sleep 1000"));
    wait_log(&d, "p", "P-LINE", util::SHORT);
    let mut t = Table::new("auth");
    for &(cred, headers) in BAD_CREDENTIALS {
        for (method, path) in protected() {
            let body = body_of(&path);
            let r = util::request(d.addr(), method, &path, headers, body.map(str::as_bytes));
            let (ok, got) = match r {
                Ok(r) => {
                    let json = serde_json::from_str::<Value>(&r.body).ok();
                    let shaped = json
                        .as_ref()
                        .is_some_and(|v| v["success"] == false && v["message"].is_string());
                    let leak = r.body.contains("SECRET") || r.body.contains("P-LINE");
                    (
                        r.status == 401 && shaped && !leak,
                        format!("{} leak={leak} {}", r.status, short(&r.body)),
                    )
                }
                Err(e) => (false, e),
            };
            let name = format!("{cred}: {method} {path}");
            t.row(&name, "401 JSON, no key in it", &got, ok);
        }
    }
    // Routing comes first: an unknown path is 404 and a wrong method 405
    // (with Allow) for anyone; /info lists every route anyway.
    for (method, path, want) in [
        ("GET", "/nope", 404),
        ("GET", "/add", 405),
        ("POST", "/info", 405),
    ] {
        let r = util::request(d.addr(), method, path, &[], None);
        let got = r
            .as_ref()
            .map(|r| (r.status, r.header("allow").map(str::to_owned)));
        let ok = got
            .as_ref()
            .is_ok_and(|(s, allow)| *s == want && (want == 404 || allow.is_some()));
        t.row(
            &format!("{method} {path} without a key"),
            &want.to_string(),
            &format!("{got:?}"),
            ok,
        );
    }
    // Query-string keys are not credentials either.
    let r = util::request(d.addr(), "GET", &format!("/list?api_key={KEY}"), &[], None);
    let status = r.as_ref().map(|r| r.status).unwrap_or(0);
    t.row(
        "key in the query string",
        "401",
        &status.to_string(),
        status == 401,
    );

    // Nothing any of those requests asked for happened.
    let alive = util::pid_alive(d.pid());
    t.row("shutdown refused", "exeio alive", &alive.to_string(), alive);
    let list = d.get("/list").json();
    let ids: Vec<&str> = list
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    t.row(
        "add refused",
        "list = [p]",
        &format!("{ids:?}"),
        ids == ["p"],
    );
    let now = util::status_of(&d, "p");
    let same = now["pid"] == p["pid"] && now["status"] == "running";
    t.row(
        "stop/restart/remove refused",
        "p untouched",
        &now["pid"].to_string(),
        same,
    );
    let logs = util::logs(&d, "p");
    let kept = logs.iter().any(|l| l.contains("P-LINE"));
    t.row("clear-log refused", "P-LINE kept", &kept.to_string(), kept);
    t.finish();
}

#[test]
fn both_header_forms_work_and_info_is_open() {
    let d = daemon_with_key(KEY);
    let bearer = format!("Bearer {KEY}");
    let good: [(&str, (&str, &str)); 4] = [
        ("exeio-api-key header", ("exeio-api-key", KEY)),
        ("header name upper case", ("EXEIO-API-KEY", KEY)),
        ("Authorization: Bearer", ("Authorization", &bearer)),
        ("authorization lower case", ("authorization", &bearer)),
    ];
    let mut t = Table::new("auth");
    for (i, (name, header)) in good.iter().enumerate() {
        let headers = [*header];
        let id = format!("form-{i}");
        let spec = json!({"id": id, "command": "sleep", "args": ["1000"]}).to_string();
        let add = util::request(d.addr(), "POST", "/add", &headers, Some(spec.as_bytes()));
        let list = util::request(d.addr(), "GET", "/list", &headers, None);
        let status = util::request(d.addr(), "GET", &format!("/status/{id}"), &headers, None);
        let codes: Vec<u16> = [add, list, status]
            .iter()
            .map(|r| r.as_ref().map(|r| r.status).unwrap_or(0))
            .collect();
        t.row(
            name,
            "add/list/status 200",
            &format!("{codes:?}"),
            codes == [200; 3],
        );
    }
    let open: [(&str, &str, Headers); 3] = [
        ("GET /info without a key", "/info", &[]),
        (
            "GET /info with a wrong key",
            "/info",
            &[("exeio-api-key", "wrong")],
        ),
        ("GET /info?x=1 without a key", "/info?x=1", &[]),
    ];
    for (name, path, headers) in open {
        let r = util::request(d.addr(), "GET", path, headers, None);
        let (ok, got) = match r {
            Ok(r) => {
                let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                let ok = r.status == 200 && v["name"] == "exeio" && !r.body.contains("SECRET");
                (ok, format!("{} {}", r.status, short(&r.body)))
            }
            Err(e) => (false, e),
        };
        t.row(name, "200 name=exeio, no key", &got, ok);
    }
    t.finish();
}

/// Files under `root` whose bytes contain `needle`.
fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    util::tree(root)
        .into_iter()
        .map(|rel| root.join(rel))
        .filter(|p| p.is_file())
        .filter(|p| fs::read(p).is_ok_and(|b| util::find(&b, needle.as_bytes()).is_some()))
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn the_key_never_reaches_a_file_or_a_message() {
    let mut d = daemon_with_key(KEY);
    add_ok(
        &d,
        sh("talker", "echo hello; echo oops >&2; exec sleep 1000"),
    );
    add_ok(&d, sh("quitter", "exit 3"));
    wait_log(&d, "talker", "oops", util::SHORT);
    // Errors of every kind, one with a part of the key in the request.
    let tries: [(&str, &str, &str); 4] = [
        (
            "POST",
            "/add",
            r#"{"id":"bad id","command":"/nonexistent/x"}"#,
        ),
        ("POST", "/add", r#"{"id":"talker","command":"sleep"}"#),
        ("GET", "/status/k3y-SECRET-12", ""),
        ("POST", "/input/quitter", r#"{"input":"x"}"#),
    ];
    let mut t = Table::new("auth");
    for (method, path, body) in tries {
        let r = d.request(method, path, Some(body.as_bytes()));
        let msg = r.message();
        let leak = msg.contains(KEY);
        t.row(
            &format!("error message of {method} {path}"),
            "no key in it",
            &format!("{} {msg:?}", r.status),
            !leak,
        );
    }
    // Refused attempts (a prefix, the key plus a suffix) must not be logged verbatim.
    for &(_, headers) in BAD_CREDENTIALS {
        let _ = util::request(d.addr(), "GET", "/list", headers, None);
    }
    let status = d.stop();
    t.row(
        "graceful stop",
        "exit 0",
        &status.to_string(),
        status.success(),
    );
    let found = files_containing(d.tmp(), KEY);
    t.row(
        "key in files after the run",
        "none",
        &format!("{found:?}"),
        found.is_empty(),
    );
    t.finish();
}

#[test]
fn children_do_not_inherit_the_key_from_the_environment() {
    let opts = Options {
        env: vec![("EXEIO_API_KEY".into(), KEY.into())],
        no_key: true,
        ..Options::default()
    };
    let mut d = Daemon::start_opts(TempDir::new(), opts);
    d.key = KEY.to_string();
    add_ok(
        &d,
        sh(
            "envdump",
            "echo \"env-key=[$EXEIO_API_KEY]\"; exec sleep 1000",
        ),
    );
    let lines = wait_log(&d, "envdump", "STDOUT: env-key=", util::SHORT);
    let line = lines
        .iter()
        .find(|l| l.contains("STDOUT: env-key="))
        .cloned();
    let clean = line.as_deref().is_some_and(|l| l.ends_with("env-key=[]"));
    let mut t = Table::new("auth");
    t.row(
        "EXEIO_API_KEY not passed to children",
        "env-key=[] in the child's log",
        &format!("{line:?}"),
        clean,
    );
    d.stop();
    let found = files_containing(d.tmp(), KEY);
    t.row(
        "key in files (env key)",
        "none",
        &format!("{found:?}"),
        found.is_empty(),
    );
    t.finish();
}

/// (path, mode) of every entry under `root`, the root included.
fn modes(root: &Path) -> Vec<(String, bool, u32)> {
    let mut out = vec![(root.display().to_string(), true, util::mode_of(root))];
    for rel in util::tree(root) {
        let p = root.join(rel);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue; // a temp file that went away
        };
        out.push((
            p.display().to_string(),
            m.is_dir(),
            m.permissions().mode() & 0o7777,
        ));
    }
    out
}

fn check_modes(t: &mut Table, d: &Daemon, when: &str) {
    for root in [d.config_dir(), d.data_dir()] {
        for (path, is_dir, mode) in modes(&root) {
            let want = if is_dir { 0o700 } else { 0o600 };
            t.row(
                &format!("{when}: {path}"),
                &format!("{want:o}"),
                &format!("{mode:o}"),
                mode == want,
            );
        }
    }
}

#[test]
fn files_are_0600_and_dirs_0700() {
    // A generated key, a saved process, a rotated log, a run history: every
    // kind of file exeio makes.
    let opts = Options {
        no_key: true,
        ..Options::default()
    };
    let mut d = Daemon::start_opts(TempDir::new(), opts);
    // The key line follows the listening line, which is all the fixture waits for.
    let mut key = None;
    util::wait_until(util::SHORT, || {
        key = d
            .stdout_lines()
            .iter()
            .find_map(|l| l.strip_prefix("API Key: ").map(str::to_string));
        key.is_some()
    });
    let key = key.expect("a generated key is printed once");
    d.key = key.clone();
    let script = "i=0; while [ $i -lt 400 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxx; \
                  i=$((i+1)); done; exec sleep 1000";
    let mut spec = sh("rot", script);
    spec["save_for_next_run"] = json!(true);
    spec["log_max_bytes"] = json!(4096);
    spec["log_backups"] = json!(2);
    add_ok(&d, spec);
    let rotated = d.logs_dir().join("rot.log.1");
    assert!(
        util::wait_until(util::SHORT, || rotated.exists()),
        "rot.log never rotated"
    );
    assert_eq!(d.post("/stop/rot", "").status, 200);
    // A saved job's run history: <data-dir>/runs/job.json.
    add_ok(
        &d,
        json!({"id": "job", "command": "true", "periodic": true, "period_seconds": 3600,
               "save_for_next_run": true}),
    );
    let history = d.data_dir().join("runs").join("job.json");
    assert!(
        util::wait_until(util::SHORT, || history.exists()),
        "no run history written"
    );
    let mut t = Table::new("auth");
    check_modes(&mut t, &d, "running");
    let status = d.stop();
    t.row(
        "graceful stop",
        "exit 0",
        &status.to_string(),
        status.success(),
    );
    check_modes(&mut t, &d, "after shutdown");
    let found = files_containing(&d.data_dir(), &key);
    t.row(
        "generated key in data files",
        "none",
        &format!("{found:?}"),
        found.is_empty(),
    );
    t.finish();
}
