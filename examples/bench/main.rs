//! exeio benchmark: starts the release binary on loopback, drives it over
//! HTTP only, as a user would, and prints one table with each figure next
//! to its target (median and min-max over the runs).
//!
//! ```text
//! cargo run --release --example bench -- [--only NAME]... [--runs N]
//!     [--size-mb N] [--api-seconds N] [--idle-seconds N] [--periodic-runs N]
//!     [--trials N] [--thousand N] [--edge-requests N] [--edge-conns N]
//!     [--cron-runs N] [--bin PATH]
//! ```
//!
//! Workloads: idle, spawn, exit, restart, logcap, paging, api, idlecpu,
//! periodic, events, thousand, edge, cron, cli, health, order, notify,
//! deploy-server (`deploy_server.rs`: upload speed, rollback time), deploy
//! (`deploy.rs`: `exeio deploy` of a directory end to end). The
//! families live in `workloads.rs` (one process at a time), `logs.rs`,
//! `observe.rs` (events, metrics), `scale.rs` (a thousand processes, the
//! command-line client), `edge.rs` (clients without a key, slow or hostile;
//! `edge_owner.rs` the owner's view, `edge_tls.rs` the same over TLS),
//! `jobs.rs` (cron), `health.rs` (probes), `order.rs` (a chain of services
//! started and stopped in order) and `notify.rs` (notifications).
//! Each run of a workload gets a fresh exeio with its own temporary dirs
//! (under `$EXEIO_BENCH_DIR` or the system temp dir), removed afterwards.
//! It is not a test: it prints numbers and exits 0 unless it could not
//! measure (a missed target is reported, not an error).

mod deploy;
mod deploy_server;
mod edge;
mod edge_owner;
mod edge_tls;
mod exeio;
mod health;
mod http;
mod jobs;
mod logs;
mod notify;
mod observe;
mod order;
mod scale;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub const WORKLOADS: &[&str] = &[
    "idle",
    "spawn",
    "exit",
    "restart",
    "logcap",
    "paging",
    "api",
    "idlecpu",
    "periodic",
    "events",
    "thousand",
    "edge",
    "cron",
    "cli",
    "health",
    "order",
    "notify",
    "deploy-server",
    "deploy",
];

const USAGE: &str = "\
usage: cargo run --release --example bench -- [OPTIONS]
  --only NAME        run only this workload (repeatable, or comma-separated):
                     idle, spawn, exit, restart, logcap, paging, api, idlecpu,
                     periodic, events, thousand, edge, cron, cli, health, order,
                     notify, deploy-server, deploy
  --runs N           runs per workload (default 3)
  --size-mb N        size of the paging workload's log (default 1024)
  --api-seconds N    length of each api run, per endpoint (default 10)
  --idle-seconds N   length of each idle CPU window: idlecpu, thousand, cron
                     (default 30; idlecpu and thousand scale theirs to 30 s)
  --periodic-runs N  periodic runs measured per run (default 20)
  --trials N         trials of restart and events (default 50)
  --thousand N       processes of the thousand workload (default 1000)
  --edge-requests N  requests of edge's Content-Length flood (default 10000)
  --edge-conns N     idle connections edge holds from one address (default 5000)
  --cron-runs N      runs of the every-second job timed by cron (default 20)
  --bin PATH         exeio binary (default: $EXEIO_BIN, else cargo build --release)";

pub struct Options {
    pub only: Vec<String>,
    pub runs: usize,
    pub size_mb: u64,
    pub api_seconds: u64,
    pub idle_seconds: u64,
    pub periodic_runs: usize,
    pub trials: usize,
    pub thousand: usize,
    pub edge_requests: usize,
    pub edge_conns: usize,
    pub cron_runs: usize,
    pub bin: Option<PathBuf>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        only: Vec::new(),
        runs: 3,
        size_mb: 1024,
        api_seconds: 10,
        idle_seconds: 30,
        periodic_runs: 20,
        trials: 50,
        thousand: 1000,
        edge_requests: 10_000,
        edge_conns: 5000,
        cron_runs: 20,
        bin: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        }
        match a.as_str() {
            "--only" => {
                for w in value("--only")?.split(',') {
                    if !WORKLOADS.contains(&w) {
                        return Err(format!("unknown workload {w:?}"));
                    }
                    o.only.push(w.to_owned());
                }
            }
            "--runs" => o.runs = num("--runs", value("--runs")?)?,
            "--size-mb" => o.size_mb = num("--size-mb", value("--size-mb")?)?,
            "--api-seconds" => o.api_seconds = num("--api-seconds", value("--api-seconds")?)?,
            "--idle-seconds" => o.idle_seconds = num("--idle-seconds", value("--idle-seconds")?)?,
            "--periodic-runs" => {
                o.periodic_runs = num("--periodic-runs", value("--periodic-runs")?)?
            }
            "--trials" => o.trials = num("--trials", value("--trials")?)?,
            "--thousand" => o.thousand = num("--thousand", value("--thousand")?)?,
            "--edge-requests" => {
                o.edge_requests = num("--edge-requests", value("--edge-requests")?)?
            }
            "--edge-conns" => o.edge_conns = num("--edge-conns", value("--edge-conns")?)?,
            "--cron-runs" => o.cron_runs = num("--cron-runs", value("--cron-runs")?)?,
            "--bin" => o.bin = Some(PathBuf::from(value("--bin")?)),
            "-h" | "--help" => return Err(String::new()),
            // `cargo bench`-style harness flags, if any, are ignored.
            "--bench" => {}
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if o.runs == 0
        || o.size_mb == 0
        || o.api_seconds == 0
        || o.idle_seconds == 0
        || o.trials == 0
        || o.thousand == 0
        || o.edge_requests == 0
        || o.edge_conns == 0
        || o.cron_runs == 0
    {
        return Err(
            "--runs, --size-mb, --api-seconds, --idle-seconds, --trials, --thousand, \
                    --edge-requests, --edge-conns and --cron-runs must be > 0"
                .into(),
        );
    }
    if o.periodic_runs < 2 {
        return Err("--periodic-runs must be >= 2".into());
    }
    Ok(o)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    /// Informational: no target.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    MiB,
    KiB,
    Ms,
    Secs,
    PerSec,
    Times,
    Count,
    Percent,
}

/// One figure from one run.
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: Unit,
    pub target: Target,
}

pub fn metric(name: &'static str, value: f64, unit: Unit, target: Target) -> Metric {
    Metric {
        name,
        value,
        unit,
        target,
    }
}

/// A row name made at run time (it carries a size or a count).
pub fn name(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::MiB => format!("{v:.2} MiB"),
        Unit::KiB => format!("{v:.1} KiB"),
        Unit::Ms if v < 10.0 => format!("{v:.2} ms"),
        Unit::Ms => format!("{v:.0} ms"),
        Unit::Secs => format!("{v:.2} s"),
        Unit::PerSec => format!("{}/s", group(v)),
        Unit::Times => format!("{v:.2}x"),
        Unit::Count => group(v),
        Unit::Percent => format!("{v:.2} %"),
    }
}

/// 1234567 -> "1,234,567".
pub fn group(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

fn fmt_target(t: Target, unit: Unit) -> String {
    match t {
        Target::AtMost(x) => format!("<= {}", fmt_value(x, unit)),
        Target::AtLeast(x) => format!(">= {}", fmt_value(x, unit)),
        Target::None => String::new(),
    }
}

/// All runs of one figure.
struct Row {
    workload: &'static str,
    name: &'static str,
    unit: Unit,
    target: Target,
    values: Vec<f64>,
}

/// Sorted copy's value at quantile q (nearest rank).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(if e.is_empty() { 0 } else { 2 });
        }
    };
    let bin = match exeio::locate_binary(opts.bin.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    let selected: Vec<&'static str> = WORKLOADS
        .iter()
        .copied()
        .filter(|w| opts.only.is_empty() || opts.only.iter().any(|o| o == w))
        .collect();
    eprintln!(
        "bench: {} ({} runs each) against {}",
        selected.join(", "),
        opts.runs,
        bin.display()
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for &w in &selected {
        let mut ctx = match workloads::Context::new(w, &opts, &bin) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench: {w}: {e}");
                failures.push(format!("{w}: {e}"));
                continue;
            }
        };
        for run in 1..=opts.runs {
            let t = Instant::now();
            match workloads::run(w, &mut ctx, &opts, &bin) {
                Ok(metrics) => {
                    eprintln!(
                        "bench: {w} run {run}/{} done in {:.1} s",
                        opts.runs,
                        t.elapsed().as_secs_f64()
                    );
                    for m in metrics {
                        match rows
                            .iter_mut()
                            .find(|r| r.workload == w && r.name == m.name)
                        {
                            Some(r) => r.values.push(m.value),
                            None => rows.push(Row {
                                workload: w,
                                name: m.name,
                                unit: m.unit,
                                target: m.target,
                                values: vec![m.value],
                            }),
                        }
                    }
                }
                Err(e) => {
                    eprintln!("bench: {w} run {run}: {e}");
                    failures.push(format!("{w} run {run}: {e}"));
                }
            }
        }
        drop(ctx);
    }
    print_table(&rows, &opts, started);
    if !failures.is_empty() {
        println!("\nnot measured:");
        for f in &failures {
            println!("  {f}");
        }
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn print_table(rows: &[Row], opts: &Options, started: Instant) {
    let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!();
    println!(
        "exeio benchmark: median [min-max] of {} run(s); Linux {}, {} CPUs; took {:.0} s",
        opts.runs,
        os.trim(),
        cpus,
        started.elapsed().as_secs_f64()
    );
    let mut table = vec![[
        "workload".to_owned(),
        "measure".to_owned(),
        "median".to_owned(),
        "min-max".to_owned(),
        "target".to_owned(),
        String::new(),
    ]];
    for r in rows {
        let med = quantile(&r.values, 0.5);
        let (min, max) = r
            .values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let verdict = match r.target {
            Target::AtMost(x) if med <= x => "ok",
            Target::AtLeast(x) if med >= x => "ok",
            Target::None => "",
            _ => "MISSED",
        };
        table.push([
            r.workload.to_owned(),
            r.name.to_owned(),
            fmt_value(med, r.unit),
            format!("{} - {}", fmt_value(min, r.unit), fmt_value(max, r.unit)),
            fmt_target(r.target, r.unit),
            verdict.to_owned(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for (i, row) in table.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if (2..=3).contains(&c) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
        if i == 0 {
            println!("{}", "-".repeat(widths.iter().sum::<usize>() + 10));
        }
    }
}
