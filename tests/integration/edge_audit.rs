//! Audit that a flood cannot flush (SPEC 3a "Audit volume"): keyless 401s
//! and 429s are summarised per address, at most one line a minute; every
//! authenticated state change, and a request to an unknown path that would
//! change state, still gets its line.

use std::fs;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::util::{self, Daemon, connect_from, wait_until};

fn audit_lines(d: &Daemon) -> Vec<String> {
    fs::read_to_string(d.logs_dir().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.get(22..).unwrap_or("").to_string())
        .collect()
}

/// `n` pipelined keyless `GET /list` from `from`: every answer a 401.
fn keyless_flood(d: &Daemon, from: &str, n: usize) {
    let mut s = connect_from(from, d.addr()).unwrap();
    let one = b"GET /list HTTP/1.1\r\nHost: x\r\n\r\n";
    let all: Vec<u8> = one.iter().copied().cycle().take(one.len() * n).collect();
    let mut reader = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || s.write_all(&all).map(|_| s));
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let end = Instant::now() + Duration::from_secs(120);
    let needle = b"HTTP/1.1 401 ";
    let count = |b: &[u8]| b.windows(needle.len()).filter(|w| w == needle).count();
    while count(&got) < n && Instant::now() < end {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    assert_eq!(count(&got), n, "every keyless request got its 401");
    drop(writer.join());
}

#[test]
fn a_keyless_flood_is_one_line_and_authenticated_changes_keep_theirs() {
    let d = Daemon::start();
    for _ in 0..3 {
        keyless_flood(&d, "127.0.0.8", 1000);
    }
    // An authenticated state change from the same address, and a request to
    // an unknown path that would change state.
    let add = util::encode(
        "POST",
        "/add",
        &[("exeio-api-key".into(), d.key.clone())],
        Some(util::sh("p", "exec sleep 1000").to_string().as_bytes()),
        false,
    );
    let r = util::exchange_from(Some("127.0.0.8"), d.addr(), &add, util::EXCHANGE).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = util::http(d.addr(), "POST", "/no/such/thing", &[], None);
    assert_eq!(r.status, 404);
    let mut lines = Vec::new();
    let complete = wait_until(Duration::from_secs(30), || {
        lines = audit_lines(&d);
        lines.iter().any(|l| l.contains("POST /add 200"))
            && lines.iter().any(|l| l.contains("POST /no/such/thing 404"))
    });
    assert!(complete, "{lines:?}");
    let flood: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("127.0.0.8 - GET /list 401"))
        .collect();
    assert_eq!(flood.len(), 1, "3,000 keyless 401s: one line, {lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.8 admin POST /add 200 ")),
        "{lines:?}"
    );
    assert!(lines.len() <= 4, "{lines:?}");
}
