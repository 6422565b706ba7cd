//! Scale: a thousand processes through their whole life (add, list, idle,
//! stop, remove, and what exeio keeps afterwards), and the `exeio` binary
//! as its own client (`ls`, `apply -f DIR`).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::exeio::{Exeio, KEY, TempDir, wait_for};
use crate::workloads::{MIB, POOL_IDLE, add_sleepers, ms, running, sleeper};
use crate::{Metric, Options, Target, Unit, group, metric, name, quantile};

/// N `sleep` processes (default 1,000): added one after another on one
/// keep-alive connection, listed, left idle, stopped, removed.
pub fn thousand(bin: &Path, opts: &Options) -> Result<Vec<Metric>, String> {
    let n = opts.thousand;
    let ex = Exeio::start(bin, None)?;
    {
        // Warm up the spawn path, then let the connection's thread go.
        let mut conn = ex.conn();
        conn.ok("POST", "/add", Some(&sleeper("warmup")))?;
        conn.ok("POST", "/remove/warmup", None)?;
    }
    thread::sleep(POOL_IDLE);
    let base = ex.footprint()?;

    let mut conn = ex.conn();
    conn.ok("GET", "/list", None)?;
    let t0 = Instant::now();
    add_sleepers(&mut conn, "k", n)?;
    let added = t0.elapsed();
    wait_for(
        &format!("{n} processes running"),
        Duration::from_secs(60),
        Duration::from_millis(10),
        || Ok((running(&mut conn)? >= n).then_some(())),
    )?;
    let all_running = t0.elapsed();

    let mut body = Vec::new();
    let list: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            match conn.send("GET", "/list", None, &mut body) {
                Ok(200) => Ok(ms(t.elapsed())),
                Ok(s) => Err(format!("GET /list: HTTP {s}")),
                Err(e) => Err(format!("GET /list: {e}")),
            }
        })
        .collect::<Result<_, _>>()?;
    let list_bytes = body.len();
    drop(conn);

    // Idle: no client, the pool threads gone.
    thread::sleep(POOL_IDLE);
    let loaded = ex.footprint()?;
    let before = ex.cpu()?;
    thread::sleep(Duration::from_secs(opts.idle_seconds));
    let after = ex.cpu()?;
    let (cpu_ns, _) = after.since(&before);
    let scale = 30.0 / opts.idle_seconds as f64;

    let mut conn = ex.conn();
    let t = Instant::now();
    conn.ok("POST", "/stop-all", None)?;
    let stop_all = t.elapsed();
    wait_for(
        "every process stopped",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || Ok((running(&mut conn)? == 0).then_some(())),
    )?;
    let all_stopped = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        conn.ok("POST", &format!("/remove/k-{i}"), None)?;
    }
    let removed = t.elapsed();
    drop(conn);
    thread::sleep(POOL_IDLE);
    let (end, _) = ex.settle(&base, 0, Duration::from_secs(20))?;

    let k = |s: &str| name(s.replace("{n}", &group(n as f64)));
    Ok(vec![
        metric(
            k("add {n} (sequential, 1 conn)"),
            ms(added),
            Unit::Ms,
            Target::AtMost(1500.0),
        ),
        metric(
            k("  until all {n} report running"),
            ms(all_running),
            Unit::Ms,
            Target::None,
        ),
        metric(
            k("GET /list of {n}, p50"),
            quantile(&list, 0.5),
            Unit::Ms,
            Target::AtMost(5.0),
        ),
        metric(
            "  its size",
            list_bytes as f64 / 1024.0,
            Unit::KiB,
            Target::None,
        ),
        metric(
            k("RSS, {n} running"),
            loaded.rss_kib as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(24.0),
        ),
        metric(
            k("  threads, {n} running"),
            loaded.threads as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            k("  fds, {n} running"),
            loaded.fds as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            k("CPU over 30 s, {n} idle children"),
            cpu_ns as f64 / 1e6 * scale,
            Unit::Ms,
            Target::AtMost(0.0),
        ),
        metric(
            "  context switches in 30 s",
            after.switches.saturating_sub(before.switches) as f64 * scale,
            Unit::Count,
            Target::AtMost(0.0),
        ),
        metric(
            "POST /stop-all",
            ms(stop_all),
            Unit::Ms,
            Target::AtMost(2000.0),
        ),
        metric(
            "  until none reports running",
            ms(all_stopped),
            Unit::Ms,
            Target::None,
        ),
        metric(
            k("  remove {n} (sequential)"),
            ms(removed),
            Unit::Ms,
            Target::None,
        ),
        metric(
            "threads after removing all",
            end.threads as f64,
            Unit::Count,
            Target::AtMost(base.threads as f64),
        ),
        metric(
            "  threads before adding",
            base.threads as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "fds after removing all",
            end.fds as f64,
            Unit::Count,
            Target::AtMost(base.fds as f64),
        ),
        metric(
            "  fds before adding",
            base.fds as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "RSS after removing all, over before",
            (end.rss_kib as f64 - base.rss_kib as f64) * 1024.0 / MIB,
            Unit::MiB,
            Target::AtMost(2.0),
        ),
        metric(
            "  RSS before adding",
            base.rss_kib as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::None,
        ),
        metric(
            "  RSS after removing all",
            end.rss_kib as f64 * 1024.0 / MIB,
            Unit::MiB,
            Target::None,
        ),
    ])
}

const CLI_PROCS: usize = 100;

/// `exeio apply -f DIR` of 100 processes (first, then unchanged), then
/// `exeio ls` of them, 20 times.
pub fn cli(bin: &Path) -> Result<Vec<Metric>, String> {
    let ex = Exeio::start(bin, None)?;
    let dir = TempDir::new("apply")?;
    for i in 0..CLI_PROCS {
        let spec = json!({"id": format!("cli-{i}"), "command": "sleep", "args": ["100000"]});
        fs::write(dir.0.join(format!("cli-{i:03}.json")), spec.to_string())
            .map_err(|e| e.to_string())?;
    }
    let url = format!("http://{}", ex.addr);
    let client = |args: &[&str]| -> Result<(f64, String), String> {
        let t = Instant::now();
        let out = Command::new(bin)
            .args(["--url", &url, "--key", KEY])
            .args(args)
            .env_remove("EXEIO_URL")
            .env_remove("EXEIO_API_KEY")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("exeio {}: {e}", args.join(" ")))?;
        let took = ms(t.elapsed());
        if !out.status.success() {
            return Err(format!(
                "exeio {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((took, String::from_utf8_lossy(&out.stdout).into_owned()))
    };
    let dir_arg = dir.0.to_string_lossy().into_owned();
    let (first, out) = client(&["apply", "-f", &dir_arg, "--json"])?;
    let added = plan_count(&out, "added");
    if added != Some(CLI_PROCS) {
        return Err(format!("the first apply added {added:?}: {out}"));
    }
    let mut conn = ex.conn();
    wait_for(
        "100 processes running",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || Ok((running(&mut conn)? >= CLI_PROCS).then_some(())),
    )?;
    let (again, out) = client(&["apply", "-f", &dir_arg, "--json"])?;
    let unchanged = plan_count(&out, "unchanged");
    if unchanged != Some(CLI_PROCS) {
        return Err(format!(
            "the second apply left {unchanged:?} unchanged: {out}"
        ));
    }
    let mut ls = Vec::with_capacity(20);
    for _ in 0..20 {
        let (t, out) = client(&["ls"])?;
        // A header and a line per process.
        if out.lines().count() != CLI_PROCS + 1 {
            return Err(format!("exeio ls printed {} lines", out.lines().count()));
        }
        ls.push(t);
    }
    Ok(vec![
        metric(
            "exeio ls, 100 processes, p50 of 20",
            quantile(&ls, 0.5),
            Unit::Ms,
            Target::None,
        ),
        metric("exeio apply -f DIR, 100 new", first, Unit::Ms, Target::None),
        metric(
            "exeio apply -f DIR, 100 unchanged",
            again,
            Unit::Ms,
            Target::None,
        ),
    ])
}

/// The length of the list `key` in `exeio apply --json`'s answer.
fn plan_count(out: &str, key: &str) -> Option<usize> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v[key].as_array().map(Vec::len))
}
