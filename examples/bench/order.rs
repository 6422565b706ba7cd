//! Start order (issue 19, `depends_on`): a chain of 50 services in 5
//! levels of 10, each needing every service of the level below `healthy`,
//! each healthy 200 ms after its start. Timed: from `POST /apply` to all 50
//! healthy (with a periodic `exec` probe of period 1 s, and with a `log`
//! probe, which has no period), and `POST /stop-all` (dependents first, level
//! by level) until its reply, which comes once every process has exited.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::exeio::{Exeio, wait_for};
use crate::http::Conn;
use crate::{Metric, Target, Unit, metric};

const LEVELS: usize = 5;
const PER_LEVEL: usize = 10;
/// How long a service takes to become healthy after its start.
const READY_MS: u64 = 200;
/// The period of the `exec` probe (the smallest SPEC 4b allows).
const PERIOD_S: u64 = 1;

#[derive(Clone, Copy)]
enum Probe {
    /// `test -e FILE`, every `PERIOD_S`.
    Exec,
    /// A line of the current run matches: no period.
    Log,
}

/// The 50 configs: level 0 depends on nothing, level k on all of level k-1.
fn chain(dir: &Path, probe: Probe) -> Value {
    let mut procs = Vec::new();
    for level in 0..LEVELS {
        for i in 0..PER_LEVEL {
            let id = format!("s{level}-{i}");
            let ready = dir.join(format!("{id}.ready"));
            let secs = READY_MS as f64 / 1000.0;
            let (script, health) = match probe {
                Probe::Exec => (
                    format!(
                        "sleep {secs}; touch '{}'; exec sleep 100000",
                        ready.display()
                    ),
                    json!({
                        "exec": ["test", "-e", ready.display().to_string()],
                        "period_seconds": PERIOD_S,
                        "timeout_seconds": 1,
                    }),
                ),
                Probe::Log => (
                    format!("sleep {secs}; echo ready; exec sleep 100000"),
                    json!({"log": "^ready$"}),
                ),
            };
            let deps: serde_json::Map<String, Value> = if level == 0 {
                serde_json::Map::new()
            } else {
                (0..PER_LEVEL)
                    .map(|j| (format!("s{}-{j}", level - 1), json!("healthy")))
                    .collect()
            };
            procs.push(json!({
                "id": id, "command": "sh", "args": ["-c", script],
                "stop_timeout_seconds": 5,
                "health": health, "depends_on": deps,
            }));
        }
    }
    json!({"processes": procs})
}

fn healthy(conn: &mut Conn) -> Result<usize, String> {
    let list = conn.ok("GET", "/list", None)?;
    let list = list.as_array().ok_or("GET /list is not an array")?;
    Ok(list.iter().filter(|p| p["health"] == "healthy").count())
}

/// Apply the chain, wait for all healthy; returns the time in ms.
fn start_chain(exeio: &Exeio, conn: &mut Conn, probe: Probe) -> Result<f64, String> {
    let dir = exeio.data_dir.join(match probe {
        Probe::Exec => "exec",
        Probe::Log => "log",
    });
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let body = chain(&dir, probe).to_string();
    let t0 = Instant::now();
    conn.ok("POST", "/apply", Some(&body))?;
    wait_for(
        "all 50 services healthy",
        Duration::from_secs(120),
        Duration::from_millis(10),
        || Ok((healthy(conn)? == LEVELS * PER_LEVEL).then_some(())),
    )?;
    Ok(t0.elapsed().as_secs_f64() * 1000.0)
}

pub fn order(bin: &Path) -> Result<Vec<Metric>, String> {
    let mut out = Vec::new();
    let exeio = Exeio::start(bin, None)?;
    let mut conn = exeio.conn();
    let one = (READY_MS + PERIOD_S * 1000) as f64;
    let ms = start_chain(&exeio, &mut conn, Probe::Exec)?;
    out.push(metric(
        "apply -> 50 healthy (5 levels, exec probe 1 s)",
        ms,
        Unit::Ms,
        Target::AtMost(LEVELS as f64 * one + 100.0),
    ));
    let t0 = Instant::now();
    conn.ok("POST", "/stop-all", None)?;
    out.push(metric(
        "stop-all, dependents first (5 levels)",
        t0.elapsed().as_secs_f64() * 1000.0,
        Unit::Ms,
        Target::None,
    ));
    // The same chain with a probe that has no period, in a fresh exeio:
    // the cost of the order itself on top of the services' own 200 ms.
    drop(exeio);
    let exeio2 = Exeio::start(bin, None)?;
    let mut conn2 = exeio2.conn();
    let ms = start_chain(&exeio2, &mut conn2, Probe::Log)?;
    out.push(metric(
        "apply -> 50 healthy (5 levels, log probe)",
        ms,
        Unit::Ms,
        Target::None,
    ));
    out.push(metric(
        "  of which the order's cost per level",
        (ms - (LEVELS as u64 * READY_MS) as f64) / LEVELS as f64,
        Unit::Ms,
        Target::None,
    ));
    Ok(out)
}
