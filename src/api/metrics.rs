//! `GET /metrics`: Prometheus text exposition (version 0.0.4) by the
//! conventions: counters end in `_total` and never go down while exeio
//! runs, states are one-hot, units are seconds and bytes, and exeio's own
//! figures use the reserved `process_*` names.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use super::render::Clock;
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::{Exchange, Response};
use crate::lifecycle::{Health, Status};
use crate::procfs;
use crate::view::ProcView;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn metrics(api: &Api, _: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let view = api.published.load();
    let now = Clock::now();
    let procs: Vec<(&ProcView, procfs::Figures)> = view
        .procs
        .iter()
        .map(|p| (&**p, p.usage.read(now.at)))
        .collect();
    let mut s = String::with_capacity(1024 + procs.len() * 1200);
    let unix = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let mut family =
        |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(s, "{name}{{{labels}}} {v}");
            }
        };
    let id = |p: &ProcView| format!("id=\"{}\"", p.id());
    family(
        "exeio_process_up",
        "gauge",
        "1 if the process is running.",
        &mut procs
            .iter()
            .map(|(p, _)| (id(p), f64::from(u8::from(p.status == Status::Running)))),
    );
    family(
        "exeio_process_state",
        "gauge",
        "The status of the process: 1 for the current one.",
        &mut procs.iter().flat_map(|(p, _)| {
            Status::ALL.iter().map(move |st| {
                (
                    format!("id=\"{}\",state=\"{}\"", p.id(), st.name()),
                    f64::from(u8::from(p.status == *st)),
                )
            })
        }),
    );
    family(
        "exeio_process_restarts_total",
        "counter",
        "Automatic restarts.",
        &mut procs.iter().map(|(p, _)| (id(p), p.restarts_total as f64)),
    );
    family(
        "exeio_process_runs_total",
        "counter",
        "Runs started.",
        &mut procs.iter().map(|(p, _)| (id(p), p.run_count as f64)),
    );
    family(
        "exeio_process_exits_total",
        "counter",
        "Runs ended, by how: exit code 0, another code, or a signal.",
        &mut procs.iter().flat_map(|(p, _)| {
            [
                ("success", p.exits.success),
                ("failure", p.exits.failure),
                ("signal", p.exits.signal),
            ]
            .into_iter()
            .map(move |(o, n)| (format!("id=\"{}\",outcome=\"{o}\"", p.id()), n as f64))
        }),
    );
    family(
        "exeio_process_cpu_seconds_total",
        "counter",
        "CPU time used, user and system (with everything it started, under cgroups).",
        &mut procs.iter().map(|(p, f)| (id(p), f.cpu_seconds)),
    );
    family(
        "exeio_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the running process.",
        &mut procs
            .iter()
            .filter(|(p, _)| p.pid.is_some())
            .map(|(p, f)| (id(p), f.rss_bytes as f64)),
    );
    family(
        "exeio_process_start_time_seconds",
        "gauge",
        "Start of the current run, seconds since the epoch.",
        &mut procs.iter().filter_map(|(p, _)| {
            let started = p.started?;
            let wall = now.wall - now.at.saturating_duration_since(started);
            Some((id(p), unix(wall)))
        }),
    );
    family(
        "exeio_job_last_success_timestamp_seconds",
        "gauge",
        "When the last run of a job that succeeded ended, seconds since the epoch.",
        &mut procs
            .iter()
            .filter_map(|(p, _)| Some((id(p), unix(p.last_success?)))),
    );
    family(
        "exeio_process_healthy",
        "gauge",
        "1 if the process's health probe finds it healthy (processes with a probe only).",
        &mut procs
            .iter()
            .filter(|(p, _)| p.health != Health::None)
            .map(|(p, _)| (id(p), f64::from(u8::from(p.health == Health::Healthy)))),
    );
    family(
        "exeio_process_health_checks_total",
        "counter",
        "Health checks answered, by result.",
        &mut procs
            .iter()
            .filter(|(p, _)| p.health != Health::None)
            .flat_map(|(p, _)| {
                let (ok, failed) = p.health_counts;
                [("ok", ok), ("failed", failed)]
                    .into_iter()
                    .map(move |(r, n)| (format!("id=\"{}\",result=\"{r}\"", p.id()), n as f64))
            }),
    );
    let own = procfs::own();
    for (name, kind, help, v) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "CPU time of exeio itself.",
            own.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of exeio.",
            own.rss_bytes as f64,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors of exeio.",
            own.open_fds as f64,
        ),
        (
            "process_max_fds",
            "gauge",
            "The limit on open file descriptors.",
            own.max_fds as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start of exeio, seconds since the epoch.",
            own.start_time_seconds,
        ),
        (
            "exeio_threads",
            "gauge",
            "Threads of exeio.",
            own.threads as f64,
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    let _ = writeln!(
        s,
        "# HELP exeio_http_requests_total HTTP requests answered, by status code.\n\
         # TYPE exeio_http_requests_total counter"
    );
    for (code, n) in api.counts.seen() {
        let code = if code == 0 {
            "other".to_owned()
        } else {
            code.to_string()
        };
        let _ = writeln!(s, "exeio_http_requests_total{{code=\"{code}\"}} {n}");
    }
    let e = &api.edge;
    for (name, kind, help, v) in [
        (
            "exeio_http_connections_open",
            "gauge",
            "Connections being served.",
            e.open.load(Ordering::Relaxed),
        ),
        (
            "exeio_http_connections_total",
            "counter",
            "Connections accepted.",
            e.accepted.load(Ordering::Relaxed),
        ),
        (
            "exeio_http_connections_refused_total",
            "counter",
            "Connections closed at once: a connection cap was reached.",
            e.refused.load(Ordering::Relaxed),
        ),
        (
            "exeio_http_accept_errors_total",
            "counter",
            "Failed accepts (fds exhausted, ...), each retried.",
            e.accept_errors.load(Ordering::Relaxed),
        ),
        (
            "exeio_http_thread_errors_total",
            "counter",
            "Connection threads that could not be started.",
            e.thread_errors.load(Ordering::Relaxed),
        ),
        (
            "exeio_events_subscribers",
            "gauge",
            "Clients of the event stream.",
            api.events.subscribers() as u64,
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    let _ = writeln!(
        s,
        "# HELP exeio_notifications_total Notification attempts by target and result \
         (delivered, failed: an attempt to be retried or that turned the target off, \
         dropped: over the queue cap, out of attempts, or its target gone).\n\
         # TYPE exeio_notifications_total counter"
    );
    for (target, result, n) in api.notify.hub.counts() {
        let _ = writeln!(
            s,
            "exeio_notifications_total{{target=\"{target}\",result=\"{result}\"}} {n}"
        );
    }
    let _ = writeln!(
        s,
        "# HELP exeio_notifications_lost_total Events not queued: the notifier was too far behind.\n\
         # TYPE exeio_notifications_lost_total counter\nexeio_notifications_lost_total {}",
        api.notify.hub.lost()
    );
    let _ = writeln!(
        s,
        "# HELP exeio_deploys_total Deploys and rollbacks by process and outcome \
         (succeeded, rolled_back: the previous release serves again, failed).\n\
         # TYPE exeio_deploys_total counter"
    );
    for (id, outcome, n) in api.deployer.counts() {
        let _ = writeln!(
            s,
            "exeio_deploys_total{{id=\"{id}\",outcome=\"{outcome}\"}} {n}"
        );
    }
    let _ = writeln!(
        s,
        "# HELP exeio_build_info The version of exeio.\n# TYPE exeio_build_info gauge\n\
         exeio_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    Ok(Answer::Reply(Response {
        status: 200,
        content_type: CONTENT_TYPE,
        headers: Vec::new(),
        body: s.into_bytes(),
    }))
}
