//! Log workloads: capture (2,000,000 lines through exeio vs. straight to a
//! file, then every line checked in the log file) and paging (page 1 and
//! page 100 of a log built on disk before exeio starts).

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::exeio::{Exeio, TempDir, wait_for};
use crate::workloads::ms;
use crate::{Metric, Target, Unit, metric, quantile};

const LINES: u64 = 2_000_000;
/// 59 characters; with the newline each line is 60 bytes.
const PAYLOAD: &str = "exeio-log-capture-benchmark-line-0123456789-abcdefghijklmno";

const _: () = assert!(PAYLOAD.len() == 59);

fn child_command() -> String {
    format!("yes {PAYLOAD} | head -n {LINES}")
}

/// One child prints 2,000,000 lines of 60 bytes and exits.
pub fn logcap(bin: &Path) -> Result<Vec<Metric>, String> {
    // Bare: the same child straight into a file.
    let tmp = TempDir::new("bare")?;
    let bare_file = tmp.0.join("bare.out");
    let t = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("{} > '{}'", child_command(), bare_file.display()))
        .status()
        .map_err(|e| format!("sh: {e}"))?;
    let bare = t.elapsed();
    if !st.success() {
        return Err(format!("the bare child failed: {st}"));
    }
    let bare_len = fs::metadata(&bare_file).map_err(|e| e.to_string())?.len();
    if bare_len != LINES * 60 {
        return Err(format!(
            "the bare child wrote {bare_len} bytes, not {}",
            LINES * 60
        ));
    }
    drop(tmp);

    let ex = Exeio::start(bin, None)?;
    let mut conn = ex.conn();
    // A large log_max_bytes keeps every line in one file (no rotation).
    let spec = json!({"id": "logcap", "command": "sh", "args": ["-c", child_command()],
                      "log_max_bytes": 4u64 << 30});
    conn.ok("GET", "/list", None)?;
    let t0 = Instant::now();
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    wait_for(
        "the child to exit",
        Duration::from_secs(120),
        Duration::from_millis(5),
        || {
            let v = conn.ok("GET", "/status/logcap", None)?;
            Ok(
                (v["process"]["is_running"] == false && v["process"]["status"] != "stopping")
                    .then_some(()),
            )
        },
    )?;
    let total = wait_for(
        "total_lines to reach 2,000,002",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || {
            let v = conn.ok("GET", "/logs/logcap?page=1&page_size=1", None)?;
            let n = v["total_lines"].as_u64().unwrap_or(0);
            Ok((n >= LINES + 2).then_some(n))
        },
    )?;
    let through = t0.elapsed();

    let log = ex.logs_dir().join("logcap.log");
    let check = check_log(&log)?;
    conn.ok("POST", "/remove/logcap", None)?;
    let _ = fs::remove_file(&log);
    let bad = (LINES - check.good.min(LINES)) + check.damaged;
    let mut out = vec![
        metric(
            "2,000,000 lines captured",
            LINES as f64 / through.as_secs_f64(),
            Unit::PerSec,
            Target::AtLeast(3e6),
        ),
        metric(
            "  time through exeio / to a file",
            through.as_secs_f64() / bare.as_secs_f64(),
            Unit::Times,
            Target::AtMost(2.5),
        ),
        metric("  time through exeio", ms(through), Unit::Ms, Target::None),
        metric(
            "  time straight to a file",
            ms(bare),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "  lines lost or damaged",
            bad as f64,
            Unit::Count,
            Target::AtMost(0.0),
        ),
    ];
    if total != check.lines {
        out.push(metric(
            "  total_lines minus lines in file",
            total as f64 - check.lines as f64,
            Unit::Count,
            Target::AtMost(0.0),
        ));
    }
    if check.good > LINES {
        return Err(format!(
            "{} payload lines in the log, more than {LINES} written",
            check.good
        ));
    }
    Ok(out)
}

struct Check {
    lines: u64,
    good: u64,
    damaged: u64,
}

/// Every line `[YYYY-MM-DD HH:MM:SS] STDOUT: PAYLOAD` or a SYSTEM line.
fn check_log(path: &Path) -> Result<Check, String> {
    let f = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::with_capacity(256);
    let mut c = Check {
        lines: 0,
        good: 0,
        damaged: 0,
    };
    let mut first_bad: Option<String> = None;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        c.lines += 1;
        let l = line.strip_suffix(b"\n").unwrap_or(&line);
        let ok_ts = l.len() > 22 && timestamp_ok(&l[..22]);
        let rest = if ok_ts { &l[22..] } else { l };
        if ok_ts && rest.strip_prefix(b"STDOUT: ") == Some(PAYLOAD.as_bytes()) {
            c.good += 1;
        } else if ok_ts && rest.starts_with(b"SYSTEM: ") {
        } else {
            c.damaged += 1;
            first_bad.get_or_insert_with(|| String::from_utf8_lossy(l).into_owned());
        }
    }
    if let Some(b) = first_bad {
        eprintln!("bench: logcap: first damaged line: {b:?}");
    }
    Ok(c)
}

/// `[2026-11-26 20:31:02] ` (22 bytes).
fn timestamp_ok(t: &[u8]) -> bool {
    let pattern = b"[dddd-dd-dd dd:dd:dd] ";
    t.len() == pattern.len()
        && t.iter().zip(pattern).all(|(&c, &p)| {
            if p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        })
}

/// A large log written in exeio's format before exeio starts, shared by the
/// runs of the paging workload and deleted afterwards.
pub struct PagingLog {
    dir: TempDir,
    bytes: u64,
    lines: u64,
}

impl PagingLog {
    pub fn build(size_mb: u64) -> Result<PagingLog, String> {
        let dir = TempDir::new("paging")?;
        let logs = dir.0.join("data").join("logs");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&logs)
            .map_err(|e| e.to_string())?;
        let path = logs.join("pg.log");
        let want = size_mb << 20;
        eprintln!(
            "bench: paging: writing a {size_mb} MiB log to {}",
            path.display()
        );
        let t = Instant::now();
        let f = fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let (mut bytes, mut lines) = (0u64, 0u64);
        let mut buf = String::with_capacity(128);
        while bytes < want {
            buf.clear();
            let s = lines / 10_000; // ~10,000 lines per logged second
            use std::fmt::Write as _;
            let _ = writeln!(
                buf,
                "[2026-01-01 {:02}:{:02}:{:02}] STDOUT: paging benchmark line {:012} ................",
                (s / 3600) % 24,
                (s / 60) % 60,
                s % 60,
                lines
            );
            w.write_all(buf.as_bytes()).map_err(|e| e.to_string())?;
            bytes += buf.len() as u64;
            lines += 1;
        }
        w.flush().map_err(|e| e.to_string())?;
        eprintln!(
            "bench: paging: {lines} lines in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        Ok(PagingLog { dir, bytes, lines })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.0.join("data")
    }
}

/// GET /logs/pg page 1 and page 100 (page_size 50), 100 times each, after a
/// first request (which may count the file's lines) that is left out.
pub fn paging(bin: &Path, log: &PagingLog) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, Some(&log.data_dir()))?;
    let mut conn = ex.conn();
    let spec = json!({"id": "pg", "command": "sleep", "args": ["100000"],
                      "log_max_bytes": log.bytes + (4u64 << 30)});
    conn.ok("POST", "/add", Some(&spec.to_string()))?;
    // GET /list from another connection while the first page counts the
    // whole log: the count must never hold it up.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lister = {
        let (done, mut c) = (done.clone(), ex.conn());
        std::thread::spawn(move || -> Result<f64, String> {
            let mut slowest: f64 = 0.0;
            let mut body = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                match c.send("GET", "/list", None, &mut body) {
                    Ok(200) => slowest = slowest.max(ms(t.elapsed())),
                    Ok(s) => return Err(format!("GET /list: HTTP {s}")),
                    Err(e) => return Err(format!("GET /list: {e}")),
                }
            }
            Ok(slowest)
        })
    };
    let t = Instant::now();
    let first = conn.ok("GET", "/logs/pg?page=1&page_size=50", None);
    let first_ms = ms(t.elapsed());
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let list_slowest = lister
        .join()
        .map_err(|_| "the GET /list thread panicked".to_owned())??;
    let first = first?;
    let total = first["total_lines"].as_u64().unwrap_or(0);
    let got = first["logs"].as_array().map(Vec::len).unwrap_or(0);
    if got != 50 || total < log.lines {
        return Err(format!(
            "page 1 has {got} lines and total_lines {total}; the file has {} lines",
            log.lines
        ));
    }
    let mut body = Vec::new();
    let mut time = |page: u32| -> Result<Vec<f64>, String> {
        let path = format!("/logs/pg?page={page}&page_size=50");
        (0..100)
            .map(|_| {
                let t = Instant::now();
                match conn.send("GET", &path, None, &mut body) {
                    Ok(200) => Ok(ms(t.elapsed())),
                    Ok(s) => Err(format!("GET {path}: HTTP {s}")),
                    Err(e) => Err(format!("GET {path}: {e}")),
                }
            })
            .collect()
    };
    let p1 = time(1)?;
    let p100 = time(100)?;
    // The same page from a new connection each time, as curl does it.
    let fresh: Vec<f64> = (0..20)
        .map(|_| {
            let mut c = ex.conn();
            let t = Instant::now();
            c.ok("GET", "/logs/pg?page=1&page_size=50", None)
                .map(|_| ms(t.elapsed()))
        })
        .collect::<Result<_, _>>()?;
    // Page 100 must hold the lines 4,951-5,000 from the end.
    let v = conn.ok("GET", "/logs/pg?page=100&page_size=50", None)?;
    let n100 = v["logs"].as_array().map(Vec::len).unwrap_or(0);
    if n100 != 50 {
        return Err(format!("page 100 has {n100} lines, not 50"));
    }
    conn.ok("POST", "/remove/pg", None)?;
    // Names carry the log size; leaked once per run, which is fine here.
    let name = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mib = log.bytes >> 20;
    Ok(vec![
        metric(
            name(format!("page 1 of {mib} MiB, p50")),
            quantile(&p1, 0.5),
            Unit::Ms,
            Target::AtMost(5.0),
        ),
        metric("page 1, p99", quantile(&p1, 0.99), Unit::Ms, Target::None),
        metric(
            name(format!("page 100 of {mib} MiB, p50")),
            quantile(&p100, 0.5),
            Unit::Ms,
            Target::AtMost(5.0),
        ),
        metric(
            "page 100, p99",
            quantile(&p100, 0.99),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "page 1, new connection each, p50",
            quantile(&fresh, 0.5),
            Unit::Ms,
            Target::None,
        ),
        metric("first request (left out)", first_ms, Unit::Ms, Target::None),
        metric(
            "  slowest GET /list meanwhile",
            list_slowest,
            Unit::Ms,
            Target::AtMost(1000.0),
        ),
    ])
}
