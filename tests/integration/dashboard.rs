//! The dashboard: `GET /` and its assets (the script modules app.js
//! imports, too) are open and carry the security headers, `GET /session` names the holder of a session cookie, and
//! `tests/browser/dashboard.py` drives the page in a real headless Chromium
//! against a live exeio (log in, live table, a click that stops, live logs,
//! output shown as text, roles, no console errors).
//!
//! The browser test needs python3 with selenium, and Debian's chromium and
//! chromium-driver; without them it fails saying what to install.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;

use crate::util::*;

const BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

fn header<'a>(r: &'a Response, name: &str, what: &str) -> &'a str {
    r.header(name)
        .unwrap_or_else(|| panic!("{what}: no {name} header in {:?}", r.headers))
}

fn assert_guarded(r: &Response, what: &str) {
    let csp = header(r, "Content-Security-Policy", what);
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{what}: {directive} not in {csp}");
    }
    assert!(!csp.contains("unsafe-"), "{what}: {csp}");
    assert_eq!(header(r, "X-Frame-Options", what), "DENY");
    assert_eq!(header(r, "Referrer-Policy", what), "no-referrer");
    assert_eq!(header(r, "X-Content-Type-Options", what), "nosniff");
}

/// The `/ui/...` URLs the page refers to.
fn asset_urls(html: &str) -> Vec<String> {
    html.match_indices("\"/ui/")
        .map(|(i, _)| {
            let rest = &html[i + 1..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

#[test]
fn the_page_and_its_assets_need_no_key_and_carry_the_headers() {
    let d = Daemon::start();
    let page = http(d.addr(), "GET", "/", &[], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        header(&page, "Content-Type", "/"),
        "text/html; charset=utf-8"
    );
    assert_eq!(header(&page, "Cache-Control", "/"), "no-cache");
    assert_guarded(&page, "/");
    assert!(page.body.contains("<title>exeio</title>"), "{}", page.body);

    let mut urls = asset_urls(&page.body);
    assert_eq!(urls.len(), 2, "{urls:?}");
    let mut total = page.body.len();
    // The page's two assets, then every module a script imports.
    let mut i = 0;
    while i < urls.len() {
        let url = &urls[i].clone();
        i += 1;
        assert!(url.contains("?v="), "{url} has no version");
        let r = http(d.addr(), "GET", url, &[], None);
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        assert_guarded(&r, url);
        assert_eq!(
            header(&r, "Cache-Control", url),
            "public, max-age=31536000, immutable"
        );
        let kind = header(&r, "Content-Type", url);
        assert!(
            kind.starts_with("text/javascript") || kind.starts_with("text/css"),
            "{url}: {kind}"
        );
        total += r.body.len();
        for (at, _) in r.body.match_indices(" from './") {
            let rest = &r.body[at + 9..];
            let import = format!("/ui/{}", &rest[..rest.find('\'').unwrap()]);
            if !urls.contains(&import) {
                urls.push(import);
            }
        }
    }
    assert!(urls.len() > 3, "app.js imports no module: {urls:?}");
    assert!(total < 150 * 1024, "the dashboard is {total} bytes");

    let missing = http(d.addr(), "GET", "/ui/nope.js", &[], None);
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_guarded(&missing, "/ui/nope.js");
    assert_eq!(http(d.addr(), "POST", "/", &[], None).status, 405);
}

#[test]
fn get_session_names_the_cookie_holder_only() {
    let d = Daemon::start();
    let none = http(d.addr(), "GET", "/session", &[], None);
    assert_eq!(none.status, 401, "{}", none.body);
    // A key is no session (and GET /session is no oracle for keys).
    for key in [KEY, "wrong"] {
        let r = http(d.addr(), "GET", "/session", &[("exeio-api-key", key)], None);
        assert_eq!(r.status, 401, "{key}: {}", r.body);
    }
    let login = http(
        d.addr(),
        "POST",
        "/session",
        &[("Content-Type", "application/json")],
        Some(json!({"key": KEY}).to_string().as_bytes()),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = header(&login, "Set-Cookie", "POST /session")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let who = http(d.addr(), "GET", "/session", &[("Cookie", &cookie)], None);
    assert_eq!(who.status, 200, "{}", who.body);
    let v = who.json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["role"], "admin", "{v}");
    assert_eq!(v["name"], login.json()["name"], "{v}");
    let bye = http(
        d.addr(),
        "POST",
        "/session/logout",
        &[("Cookie", &cookie), ("X-Exeio-CSRF", "1")],
        Some(b"{}"),
    );
    assert_eq!(bye.status, 200, "{}", bye.body);
    let after = http(d.addr(), "GET", "/session", &[("Cookie", &cookie)], None);
    assert_eq!(after.status, 401, "{}", after.body);
}

/// What the browser test needs that is not installed, with how to install it.
fn missing_browser_tools() -> Vec<String> {
    let mut missing = Vec::new();
    match Command::new("python3")
        .args(["-c", "import selenium"])
        .stdin(Stdio::null())
        .output()
    {
        Err(_) => missing.push("python3 (apt-get install -y python3 python3-pip)".to_string()),
        Ok(o) if !o.status.success() => {
            missing.push("selenium for python3 (python3 -m pip install selenium)".to_string())
        }
        Ok(_) => {}
    }
    for (var, path, package) in [
        ("EXEIO_CHROMIUM", "/usr/bin/chromium", "chromium"),
        (
            "EXEIO_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        ),
    ] {
        let path = std::env::var(var).unwrap_or_else(|_| path.to_string());
        if !Path::new(&path).exists() {
            missing.push(format!("{path} (apt-get install -y {package})"));
        }
    }
    missing
}

/// Run `cmd` in its own process group; kill the group (python, chromedriver,
/// chromium) if it outlives `timeout`. Returns (success, stdout, stderr).
fn run_group(mut cmd: Command, timeout: Duration) -> (bool, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn python3");
    let read = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait python3") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) => (s.success(), out, err),
        None => (
            false,
            out,
            format!("{err}\n(killed: still running after {timeout:?})"),
        ),
    }
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let missing = missing_browser_tools();
    assert!(
        missing.is_empty(),
        "the dashboard's browser test needs {}; install them (CI's .ci/run does) and run again",
        missing.join(", ")
    );
    let d = Daemon::start();
    let r = d.post_json("/keys", &json!({"name": "viewer", "role": "read"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let readonly = r.json()["key"].as_str().expect("the new key").to_string();

    // The processes tests/browser/dashboard.py expects (see its docstring).
    for spec in [
        sh("echo", r#"while read l; do echo "got $l"; done"#),
        sh("victim", "exec sleep 100000"),
        sh(
            "xss",
            "echo '<script>alert(1)</script>'; echo '<img src=x onerror=alert(2)>' >&2; \
             exec sleep 100000",
        ),
        sh(
            "chatty",
            r#"i=1; while [ $i -le 450 ]; do echo "line $i"; i=$((i+1)); done; exec sleep 100000"#,
        ),
        sh("blinker", "read x; exit 3"),
    ] {
        add_ok(&d, spec);
    }
    wait_log(&d, "chatty", "line 450", SHORT);
    wait_log(&d, "xss", "onerror", SHORT);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let shot = d.tmp().join("failure.png");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(["--url", &format!("http://{}", d.addr())])
        .args(["--key", &d.key, "--readonly-key", &readonly])
        .arg("--screenshot-on-failure")
        .arg(&shot)
        .env("PYTHONUNBUFFERED", "1");
    let (ok, out, err) = run_group(cmd, BROWSER_TIMEOUT);
    assert!(
        ok,
        "the browser test failed:\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    println!("{out}");

    // What was clicked reached exeio.
    assert_eq!(state_of(&d, "victim"), "manually_stopped");
    assert_eq!(d.get("/status/from-form").status, 404);
}
