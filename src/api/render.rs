//! The process object (SPEC 5) and run records as JSON, rendered from the
//! published view with the time of the request: borrowed fields, no copies
//! of the view. `GET /list` is the hottest path, so it serializes straight
//! into the reply buffer.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::current::Current;
use crate::keys::Role;
use crate::lifecycle::{ExitInfo, Status};
use crate::timefmt::rfc3339;
use crate::view::ProcView;

/// What a caller may see of a process. Environment values often hold
/// secrets, and keys below admin are the ones handed to monitoring and
/// to people who only operate: they see the names, each value replaced by
/// `HIDDEN`. Admin keys, which can set the environment, see it all.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shown {
    Everything,
    EnvNames,
}

/// The value shown in place of an environment value.
pub const HIDDEN: &str = "<hidden>";

impl Shown {
    pub fn to(role: Option<Role>) -> Shown {
        match role {
            Some(Role::Admin) => Shown::Everything,
            _ => Shown::EnvNames,
        }
    }
}

/// The environment, as `Shown` allows.
struct Env<'a> {
    vars: &'a BTreeMap<String, String>,
    shown: Shown,
}

impl Serialize for Env<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.vars.iter().map(|(k, v)| match self.shown {
            Shown::Everything => (k, v.as_str()),
            Shown::EnvNames => (k, HIDDEN),
        }))
    }
}

/// The time a reply is rendered at.
pub struct Clock {
    pub at: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

#[derive(Serialize)]
struct LastExit {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    at: String,
}

#[derive(Serialize)]
struct Process<'a> {
    id: &'a str,
    command: &'a str,
    args: &'a [String],
    working_dir: Option<std::borrow::Cow<'a, str>>,
    env: Env<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    env_file: Option<std::borrow::Cow<'a, str>>,
    status: &'static str,
    is_running: bool,
    pid: Option<u32>,
    auto_restart: bool,
    restart_policy: &'static str,
    max_restarts: Option<u32>,
    save_for_next_run: bool,
    periodic: bool,
    period_seconds: Option<u64>,
    stop_signal: &'static str,
    stop_timeout_seconds: u64,
    backoff_seconds: Option<Vec<f64>>,
    backoff_reset_seconds: f64,
    rapid_exit_penalty_seconds: f64,
    user: Option<&'a str>,
    group: Option<&'a str>,
    log_max_bytes: u64,
    log_backups: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catch_up_window_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlap: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<&'a str, &'static str>,
    waiting_for: &'a [String],
    run_count: u64,
    restart_count: u32,
    restarts_total: u64,
    last_run: Option<String>,
    last_exit: Option<LastExit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_result: Option<&'static str>,
    next_run_in_seconds: Option<f64>,
    next_run_at: Option<String>,
    uptime_seconds: Option<f64>,
    cpu_percent: Option<f64>,
    rss_bytes: Option<u64>,
    log_file: std::borrow::Cow<'a, str>,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_probe: Option<crate::spec::HealthRequest>,
    health: &'static str,
    health_message: Option<&'a str>,
    health_checked_at: Option<String>,
    /// A copy of a group (`instances`): the group, this copy's number, and
    /// how many the group has.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: Option<u32>,
    /// The live release (SPEC 4c), null when none was deployed.
    release: Option<&'a str>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn process<'a>(p: &'a ProcView, now: &Clock, shown: Shown, current: &'a Current) -> Process<'a> {
    let spec = &*p.spec;
    let job = spec.is_job();
    let running = p.pid.is_some();
    let figures = running.then(|| p.usage.read(now.at));
    let error = p.error.clone().or_else(|| p.log.last_error()).or_else(|| {
        p.save_error
            .clone()
            .map(|e| format!("not saved for the next run: {e}"))
    });
    Process {
        id: spec.id.as_str(),
        command: &spec.command,
        args: &spec.args,
        working_dir: spec.working_dir.as_ref().map(|d| d.to_string_lossy()),
        env: Env {
            vars: &spec.env,
            shown,
        },
        env_file: spec.env_file.as_ref().map(|f| f.to_string_lossy()),
        status: p.status.name(),
        is_running: p.status == Status::Running,
        pid: p.pid,
        auto_restart: spec.auto_restart,
        restart_policy: spec.restart_policy.name(),
        max_restarts: spec.max_restarts,
        save_for_next_run: spec.save_for_next_run,
        periodic: spec.is_periodic(),
        period_seconds: spec.period_seconds,
        stop_signal: spec.stop_signal.name(),
        stop_timeout_seconds: spec.stop_timeout_seconds,
        backoff_seconds: spec
            .backoff
            .steps
            .as_ref()
            .map(|s| s.iter().map(|d| d.as_secs_f64()).collect()),
        backoff_reset_seconds: spec.backoff.reset.as_secs_f64(),
        rapid_exit_penalty_seconds: spec.backoff.penalty.as_secs_f64(),
        user: spec.user.as_deref(),
        group: spec.group.as_deref(),
        log_max_bytes: spec.log_max_bytes,
        log_backups: spec.log_backups,
        schedule: spec.schedule.as_ref().map(|c| c.expr()),
        timezone: spec.schedule.as_ref().and_then(|c| c.zone_name()),
        catch_up: spec.schedule.as_ref().map(|_| spec.job.catch_up.is_some()),
        catch_up_window_seconds: spec.job.catch_up.map(|w| w.as_secs()),
        overlap: job.then(|| spec.job.overlap.name()),
        timeout_seconds: spec.job.timeout.map(|t| t.as_secs()),
        history: job.then_some(spec.job.history),
        max_memory_bytes: spec.max_memory_bytes,
        depends_on: spec
            .depends_on
            .iter()
            .map(|(d, c)| (d.as_str(), c.name()))
            .collect(),
        waiting_for: &p.waiting_for,
        run_count: p.run_count,
        restart_count: p.restart_count,
        restarts_total: p.restarts_total,
        last_run: p.last_run.map(rfc3339),
        last_exit: p.last_exit.map(|(status, at)| {
            let e = ExitInfo::from(status);
            LastExit {
                code: e.code,
                signal: e.signal,
                at: rfc3339(at),
            }
        }),
        last_result: p.last_result.map(|r| r.name()),
        next_run_in_seconds: p
            .next_run
            .map(|t| round3(t.saturating_duration_since(now.at).as_secs_f64())),
        next_run_at: p.next_run_wall.map(|t| match &spec.schedule {
            Some(cal) => cal.format(t),
            None => rfc3339(t),
        }),
        uptime_seconds: p
            .started
            .map(|s| round3(now.at.saturating_duration_since(s).as_secs_f64())),
        cpu_percent: figures.map(|f| f.cpu_percent),
        rss_bytes: figures.map(|f| f.rss_bytes),
        log_file: p.log.path().to_string_lossy(),
        error,
        health_probe: spec.health.as_ref().map(|h| h.to_request()),
        health: p.health.name(),
        health_message: p.health_message.as_deref(),
        health_checked_at: p.health_checked_at.map(rfc3339),
        instance_of: spec.instances.as_ref().map(|i| i.group.as_str()),
        instance: spec.instances.as_ref().map(|i| i.number),
        instances: spec.instances.as_ref().map(|i| i.count),
        release: current.of(spec.id.as_str()),
    }
}

/// `GET /status/{group}`: the group (its configuration as given, env
/// values as `shown` allows) and its copies.
pub fn group_body(
    id: &str,
    copies: &[&std::sync::Arc<ProcView>],
    now: &Clock,
    shown: Shown,
    current: &Current,
) -> Vec<u8> {
    let mut config = copies
        .first()
        .and_then(|p| p.spec.instances.as_ref())
        .map(|i| serde_json::to_value(&*i.template).unwrap_or_default())
        .unwrap_or_default();
    if shown != Shown::Everything
        && let Some(Value::Object(env)) = config.get_mut("env")
    {
        for v in env.values_mut() {
            *v = Value::String(HIDDEN.into());
        }
    }
    let body = serde_json::json!({
        "success": true,
        "group": {"id": id, "instances": copies.len(), "config": config},
        "processes": copies.iter().map(|p| process_value(p, now, shown, current)).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// `{"success":true,"process":{...}}`.
pub fn status_body(p: &ProcView, now: &Clock, shown: Shown, current: &Current) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        process: Process<'a>,
    }
    serde_json::to_vec(&Body {
        success: true,
        process: process(p, now, shown, current),
    })
    .unwrap_or_default()
}

/// The bare array of `GET /list`.
pub fn list_body<'a>(
    procs: impl Iterator<Item = &'a ProcView>,
    now: &Clock,
    shown: Shown,
    current: &'a Current,
) -> Vec<u8> {
    let all: Vec<Process<'a>> = procs.map(|p| process(p, now, shown, current)).collect();
    let mut out = Vec::with_capacity(256 + all.len() * 1024);
    let _ = serde_json::to_writer(&mut out, &all);
    out
}

/// One process object as a JSON value (replies of requests).
pub fn process_value(p: &ProcView, now: &Clock, shown: Shown, current: &Current) -> Value {
    serde_json::to_value(process(p, now, shown, current)).unwrap_or(Value::Null)
}
