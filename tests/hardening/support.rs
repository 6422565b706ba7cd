//! What the hardening families need beyond the shared `util` fixture: a raw HTTP
//! exchange that never panics (any bytes, a deadline, interim 1xx answers skipped,
//! a log stream cut after its head), a daemon with a chosen key, a snapshot of a
//! directory tree, `/proc` figures of a pid, and a collector that runs every row of
//! a table before failing with all the rows that went wrong.

use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::{self, Daemon, Options, Response, TempDir};

/// Deadline of one raw exchange unless a test says otherwise.
pub const EXCHANGE: Duration = Duration::from_secs(30);

/// A daemon whose key is `key` (passed with `--api-key`), for the auth family.
pub fn daemon_with_key(key: &str) -> Daemon {
    let opts = Options {
        args: vec!["--api-key".into(), key.into()],
        no_key: true,
        ..Options::default()
    };
    let mut d = Daemon::start_opts(TempDir::new(), opts);
    d.key = key.to_string();
    d
}

/// The bytes of one HTTP/1.1 request with `Connection: close`. `body` goes with a
/// `Content-Length` unless `chunked`, when it is sent as one chunk.
pub fn encode(
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    chunked: bool,
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut out = Vec::new();
    match (body, chunked) {
        (Some(b), true) => {
            head.push_str("Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(head.as_bytes());
            if !b.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        }
        (Some(b), false) => {
            head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(b);
        }
        (None, _) => {
            head.push_str("\r\n");
            out.extend_from_slice(head.as_bytes());
        }
    }
    out
}

/// Sends `bytes` on a fresh connection and reads one response (see `read_response`).
/// A failed write is not an error by itself: the server may answer before it has
/// read everything (a 401 or 413), so the response is read anyway.
pub fn exchange(addr: &str, bytes: &[u8], timeout: Duration) -> Result<Response, String> {
    let deadline = Instant::now() + timeout;
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_write_timeout(Some(timeout));
    let wrote = s.write_all(bytes);
    read_response(&mut s, deadline).map_err(|e| format!("{e} (write: {wrote:?})"))
}

/// `exchange` of a request built by `encode` with `&str` headers.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    exchange(addr, &encode(method, path, &headers, body, false), EXCHANGE)
}

/// Reads one response before `deadline`: interim `1xx` answers are skipped, a body
/// with a `Content-Length` is read to its length, a chunked `text/plain` body (a
/// log follow stream, which never ends) is cut right after the head, anything
/// else is read to EOF.
pub fn read_response(s: &mut TcpStream, deadline: Instant) -> Result<Response, String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let resp = util::parse_response(&buf);
            if (100..200).contains(&resp.status) {
                buf.drain(..end + 4);
                continue;
            }
            let body_len = buf.len() - end - 4;
            let chunked = resp
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
            let stream = chunked
                && resp
                    .header("content-type")
                    .is_some_and(|v| v.starts_with("text/plain"));
            let length: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
            if stream || length.is_some_and(|n| body_len >= n) {
                return Ok(resp);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no complete response in time; got {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timed out reading the response; got {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            Err(e) if buf.is_empty() => return Err(format!("read: {e}")),
            Err(_) => break,
        }
    }
    if find(&buf, b"\r\n\r\n").is_none() {
        return Err(format!(
            "connection closed without a response; got {:?}",
            String::from_utf8_lossy(&buf)
        ));
    }
    Ok(util::parse_response(&buf))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Every path under `root` (relative, recursive, symlinks not followed).
pub fn tree(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.insert(p.strip_prefix(root).unwrap_or(&p).to_path_buf());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Paths in `after` that are not in `before`.
pub fn new_paths(before: &BTreeSet<PathBuf>, after: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    after.difference(before).cloned().collect()
}

/// Thread count, open fds and resident memory of a pid, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub threads: usize,
    pub fds: usize,
    pub rss_kib: u64,
}

pub fn usage(pid: i32) -> Usage {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    Usage {
        threads: field("Threads:") as usize,
        fds,
        rss_kib: field("VmRSS:"),
    }
}

/// Thread names of `pid` with their counts, for failure messages.
pub fn thread_names(pid: i32) -> String {
    let mut names: std::collections::BTreeMap<String, usize> = Default::default();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let comm = fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            *names.entry(comm.trim().to_string()).or_default() += 1;
        }
    }
    format!("{names:?}")
}

/// Polls until the usage of `pid` is within the slack of `base`; returns the last
/// reading and whether it got there before `timeout`.
pub fn settle(
    pid: i32,
    base: Usage,
    slack: (usize, usize, u64),
    timeout: Duration,
) -> (bool, Usage) {
    let mut last = usage(pid);
    let ok = util::wait_until(timeout, || {
        last = usage(pid);
        last.threads <= base.threads.saturating_add(slack.0)
            && last.fds <= base.fds.saturating_add(slack.1)
            && last.rss_kib <= base.rss_kib.saturating_add(slack.2)
    });
    (ok, last)
}

/// Usage of `pid` once it has not changed for `quiet` (idle pool threads of the
/// HTTP server retire after a few seconds).
pub fn quiet_usage(pid: i32, quiet: Duration) -> Usage {
    let mut last = usage(pid);
    let mut since = Instant::now();
    util::wait_until(Duration::from_secs(40), || {
        let now = usage(pid);
        if (now.threads, now.fds) != (last.threads, last.fds) {
            (last, since) = (now, Instant::now());
        }
        since.elapsed() >= quiet
    });
    last
}

/// Signals pids this test started (through exeio) on drop, if still alive: a
/// failed assertion must not leave a `sleep 1000` behind.
#[derive(Default)]
pub struct Leftovers(pub Vec<i32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if util::pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Runs every row of a table, then fails once with every row that went wrong.
/// Each row also prints `case | expected | got` (shown with `--nocapture`).
#[derive(Default)]
pub struct Table {
    family: &'static str,
    failures: Vec<String>,
    rows: usize,
}

impl Table {
    pub fn new(family: &'static str) -> Table {
        Table {
            family,
            ..Table::default()
        }
    }

    /// Records one row: `ok` is the verdict, `got` what was observed.
    pub fn row(&mut self, name: &str, expected: &str, got: &str, ok: bool) {
        self.rows += 1;
        let verdict = if ok { "ok" } else { "FAIL" };
        println!("{} | {name} | {expected} | {got} | {verdict}", self.family);
        if !ok {
            self.failures
                .push(format!("case {name:?}: expected {expected}, got {got}"));
        }
    }

    pub fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} cases failed:\n  {}",
            self.family,
            self.failures.len(),
            self.rows,
            self.failures.join("\n  ")
        );
    }
}

/// A short, printable form of a body for failure messages.
pub fn short(s: &str) -> String {
    let mut t: String = s.chars().take(300).collect();
    if s.chars().count() > 300 {
        t.push('…');
    }
    format!("{t:?}")
}
