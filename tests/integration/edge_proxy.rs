//! Behind a reverse proxy (SPEC 3a "Client address"): `--trusted-proxy`
//! makes the rightmost untrusted `X-Forwarded-For` address the client, and
//! `--proxy-protocol` takes it from a PROXY v1/v2 header; throttling and
//! audit use it, so one client's wrong keys lock out that client only.

use std::fs;
use std::time::Duration;

use crate::util::{self, Daemon, wait_until};

fn audit(d: &Daemon) -> String {
    fs::read_to_string(d.logs_dir().join("audit.log")).unwrap_or_default()
}

/// `GET /list` with `key`, preceded by `prefix` bytes (a PROXY header) and
/// with `extra` headers.
fn list(d: &Daemon, prefix: &[u8], key: &str, extra: &[(&str, &str)]) -> u16 {
    let mut headers: Vec<(String, String)> = vec![("exeio-api-key".into(), key.into())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut bytes = prefix.to_vec();
    bytes.extend(util::encode("GET", "/list", &headers, None, false));
    util::exchange(d.addr(), &bytes, util::EXCHANGE)
        .map(|r| r.status)
        .unwrap_or(0)
}

#[test]
fn a_trusted_proxy_names_the_client_in_x_forwarded_for() {
    let d = Daemon::start_with(
        &["--trusted-proxy", "127.0.0.0/8", "--auth-fail-limit", "3"],
        &[],
    );
    // The left entry is the client's own claim: only the rightmost counts.
    let xff = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7")];
    for _ in 0..3 {
        assert_eq!(list(&d, b"", "wrong", &xff), 401);
    }
    assert_eq!(
        list(&d, b"", &d.key.clone(), &xff),
        429,
        "that client is locked out"
    );
    let other = [("X-Forwarded-For", "203.0.113.8")];
    assert_eq!(
        list(&d, b"", &d.key.clone(), &other),
        200,
        "another client behind the same proxy is not"
    );
    assert!(
        wait_until(Duration::from_secs(30), || audit(&d)
            .contains("203.0.113.7 - GET /list 401")),
        "{}",
        audit(&d)
    );
    assert!(!audit(&d).contains("6.6.6.6"));
}

#[test]
fn without_trust_x_forwarded_for_is_ignored() {
    let d = Daemon::start_with(&["--auth-fail-limit", "3"], &[]);
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        assert_eq!(list(&d, b"", "wrong", &[("X-Forwarded-For", &xff)]), 401);
    }
    assert_eq!(
        list(&d, b"", &d.key.clone(), &[]),
        429,
        "the peer itself counted"
    );
}

#[test]
fn proxy_protocol_v1_and_v2_name_the_client() {
    let d = Daemon::start_with(
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--proxy-protocol",
            "--auth-fail-limit",
            "2",
        ],
        &[],
    );
    let v1 = b"PROXY TCP4 198.51.100.4 127.0.0.1 40000 8080\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([0x21, 0x11, 0x00, 0x0c]);
    v2.extend([198, 51, 100, 5, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
    for _ in 0..2 {
        assert_eq!(list(&d, &v1, "wrong", &[]), 401);
    }
    assert_eq!(
        list(&d, &v1, &d.key.clone(), &[]),
        429,
        "198.51.100.4 locked out"
    );
    assert_eq!(
        list(&d, &v2, &d.key.clone(), &[]),
        200,
        "198.51.100.5 is not"
    );
    assert_eq!(list(&d, b"", &d.key.clone(), &[]), 0, "no header: closed");
    assert!(
        wait_until(Duration::from_secs(30), || audit(&d)
            .contains("198.51.100.4 - GET /list 401")),
        "{}",
        audit(&d)
    );
}

#[test]
fn proxy_protocol_needs_a_trusted_proxy() {
    let tmp = util::TempDir::new();
    let mut cmd = util::exeio_command(tmp.path());
    cmd.args(util::dir_args(tmp.path()));
    cmd.arg("--proxy-protocol");
    let out = util::run_to_end(cmd, Duration::from_secs(30));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--trusted-proxy"), "{err}");
}
