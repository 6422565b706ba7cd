//! What a user asks for: the validated description of one supervised process.
//!
//! Pure: parsing and validation only, no I/O. `AddRequest` is the wire form of
//! `POST /add` (and of `processes.json`); `validate` turns it into a
//! `ProcessSpec` that the rest of exeio can trust.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calendar::{Calendar, CalendarError};
use crate::policy::{Backoff, RestartPolicy};

/// Longest accepted id; ids become file names.
pub const MAX_ID_LEN: usize = 64;
/// Longest accepted period: one year.
pub const MAX_PERIOD_SECONDS: u64 = 365 * 24 * 3600;
/// Longest accepted grace period before SIGKILL.
pub const MAX_STOP_TIMEOUT_SECONDS: u64 = 3600;
const DEFAULT_STOP_TIMEOUT_SECONDS: u64 = 10;
const DEFAULT_LOG_MAX_BYTES: u64 = 50 * 1024 * 1024;
const DEFAULT_LOG_BACKUPS: u32 = 5;
const MIN_LOG_MAX_BYTES: u64 = 4096;
const MAX_LOG_BACKUPS: u32 = 100;

/// A process id: 1-64 chars of `[A-Za-z0-9._-]`, not starting with `.`, not
/// `exeio` or `audit` (an id names `<logs>/<id>.log`, and those two are exeio's own).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId(String);

impl ProcessId {
    pub fn parse(s: &str) -> Result<ProcessId, String> {
        if s.is_empty() {
            return Err("id must not be empty".into());
        }
        if s.len() > MAX_ID_LEN {
            return Err(format!("id is longer than {MAX_ID_LEN} characters"));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "id {:?} contains {:?}: only A-Z a-z 0-9 . _ - are allowed",
                s, bad
            ));
        }
        if s.starts_with('.') {
            return Err(format!("id {s:?} must not start with '.'"));
        }
        if s == "exeio" {
            return Err("id \"exeio\" is reserved for the supervisor's own log".into());
        }
        if s == "audit" {
            return Err("id \"audit\" is reserved for exeio's audit log (audit.log)".into());
        }
        Ok(ProcessId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The body of `POST /add` and `POST /update`, one entry of `POST /apply`
/// and of `processes.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddRequest {
    pub id: String,
    pub command: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_restart: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_for_next_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_backups: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_seconds: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_reset_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rapid_exit_penalty_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up_window_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<Overlap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<u32>,
}

/// A validated process description.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSpec {
    pub id: ProcessId,
    pub command: String,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub auto_restart: bool,
    pub save_for_next_run: bool,
    /// `Some(period)` for a periodic process.
    pub period_seconds: Option<u64>,
    /// A calendar schedule (cron), for a scheduled job.
    pub schedule: Option<Calendar>,
    pub restart_policy: RestartPolicy,
    pub max_restarts: Option<u32>,
    pub stop_signal: StopSignal,
    pub stop_timeout_seconds: u64,
    pub log_max_bytes: u64,
    pub log_backups: u32,
    pub backoff: Backoff,
    /// Run as this user (a name or a uid) and group.
    pub user: Option<String>,
    pub group: Option<String>,
    /// For periodic and scheduled jobs.
    pub job: JobSettings,
}

/// What a job does when its next time comes while a run is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Skip the new run (logged and counted).
    #[default]
    Skip,
    /// Start one run as soon as the current one ends.
    Queue,
    /// Stop the current run (stop signal, then SIGKILL), then start.
    Replace,
}

impl Overlap {
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Replace => "replace",
        }
    }
}

/// Settings of periodic and scheduled jobs (defaults for other processes).
#[derive(Clone, Debug, PartialEq)]
pub struct JobSettings {
    pub overlap: Overlap,
    pub timeout: Option<Duration>,
    /// Run records kept.
    pub history: u32,
    /// Scheduled jobs: run once at start for a time missed while exeio was
    /// down, if within this window.
    pub catch_up: Option<Duration>,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            overlap: Overlap::Skip,
            timeout: None,
            history: DEFAULT_HISTORY,
            catch_up: None,
        }
    }
}

impl ProcessSpec {
    pub fn is_periodic(&self) -> bool {
        self.period_seconds.is_some()
    }

    /// Runs on a schedule (each run is a new run; never auto-restarted).
    pub fn is_job(&self) -> bool {
        self.is_periodic() || self.schedule.is_some()
    }

    /// Does going from `self` to `new` need a restart of a running process?
    /// (What the process is started with changed; schedule, policy, limits
    /// and log settings apply without one.)
    pub fn needs_restart_for(&self, new: &ProcessSpec) -> bool {
        self.command != new.command
            || self.args != new.args
            || self.env != new.env
            || self.working_dir != new.working_dir
            || self.user != new.user
            || self.group != new.group
    }

    /// The wire form, as saved in `processes.json`: every field explicit.
    pub fn to_request(&self) -> AddRequest {
        let job = self.is_job();
        AddRequest {
            id: self.id.to_string(),
            command: self.command.clone(),
            args: Some(self.args.clone()),
            working_dir: self
                .working_dir
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            auto_restart: Some(self.auto_restart),
            save_for_next_run: Some(self.save_for_next_run),
            periodic: Some(self.is_periodic()),
            period_seconds: self.period_seconds,
            schedule: self.schedule.as_ref().map(|c| c.expr().to_owned()),
            timezone: self
                .schedule
                .as_ref()
                .and_then(|c| c.zone_name().map(str::to_owned)),
            catch_up: self.schedule.as_ref().map(|_| self.job.catch_up.is_some()),
            catch_up_window_seconds: self.job.catch_up.map(|w| w.as_secs()),
            restart_policy: (!job).then_some(self.restart_policy),
            max_restarts: self.max_restarts,
            stop_signal: Some(self.stop_signal.name().to_owned()),
            stop_timeout_seconds: Some(self.stop_timeout_seconds),
            log_max_bytes: Some(self.log_max_bytes),
            log_backups: Some(self.log_backups),
            backoff_seconds: self
                .backoff
                .steps
                .as_ref()
                .map(|s| s.iter().map(Duration::as_secs_f64).collect()),
            backoff_reset_seconds: (!job).then_some(self.backoff.reset.as_secs_f64()),
            rapid_exit_penalty_seconds: (!job).then_some(self.backoff.penalty.as_secs_f64()),
            user: self.user.clone(),
            group: self.group.clone(),
            overlap: job.then_some(self.job.overlap),
            timeout_seconds: self.job.timeout.map(|t| t.as_secs()),
            history: job.then_some(self.job.history),
        }
    }
}

/// A request that does not validate: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The offending field ("" when the body as a whole is wrong).
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The same error, placed inside a larger document (`processes[3]`).
    pub fn within(self, prefix: &str) -> FieldError {
        let field = if self.field.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}.{}", self.field)
        };
        FieldError {
            field,
            message: self.message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parse and validate a `POST /add` body.
pub fn parse_add(body: &[u8]) -> Result<ProcessSpec, FieldError> {
    let req: AddRequest = parse_object(body)?;
    validate(req)
}

/// Deserialize a JSON object. serde would also fill a struct from an array
/// (by position): a body must be an object. An unknown field is named.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(FieldError::new(
            "",
            "invalid JSON: the body must be a JSON object ({...})",
        ));
    }
    serde_json::from_slice(body).map_err(|e| json_error(&e))
}

/// A serde error as a `FieldError`, naming the field where serde does.
pub fn json_error(e: &serde_json::Error) -> FieldError {
    let text = e.to_string();
    let named = |marker: &str| {
        let rest = text.split_once(marker)?.1;
        Some(rest.split('`').next()?.to_owned())
    };
    let field = named("unknown field `")
        .or_else(|| named("missing field `"))
        .unwrap_or_default();
    FieldError::new(&field, format!("invalid JSON: {text}"))
}

pub fn validate(req: AddRequest) -> Result<ProcessSpec, FieldError> {
    let id = ProcessId::parse(&req.id).map_err(|m| FieldError::new("id", m))?;
    let schedule = calendar(&req, req.periodic.unwrap_or(false))?;
    let catch_up_window = catch_up(&req, schedule.is_some())?;
    if req.command.trim().is_empty() {
        return Err(FieldError::new("command", "command must not be empty"));
    }
    if req.command.contains('\0') {
        return Err(FieldError::new("command", "command must not contain NUL"));
    }
    let args = req.args.unwrap_or_default();
    if args.iter().any(|a| a.contains('\0')) {
        return Err(FieldError::new("args", "args must not contain NUL"));
    }
    let working_dir = match req.working_dir {
        Some(dir) if dir.contains('\0') => {
            return Err(FieldError::new(
                "working_dir",
                "working_dir must not contain NUL",
            ));
        }
        Some(dir) if dir.trim().is_empty() => {
            return Err(FieldError::new(
                "working_dir",
                "working_dir must not be empty",
            ));
        }
        Some(dir) => Some(PathBuf::from(dir)),
        None => None,
    };
    let env = req.env.unwrap_or_default();
    for (k, v) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(FieldError::new(
                "env",
                format!("env name {k:?} is invalid (empty, '=' or NUL)"),
            ));
        }
    }
    let periodic = req.periodic.unwrap_or(false);
    let period_seconds = match (periodic, req.period_seconds) {
        (false, _) => None,
        (true, None) => {
            return Err(FieldError::new(
                "period_seconds",
                "period_seconds is required when periodic is true",
            ));
        }
        (true, Some(0)) => {
            return Err(FieldError::new(
                "period_seconds",
                "period_seconds must be greater than 0",
            ));
        }
        (true, Some(p)) if p > MAX_PERIOD_SECONDS => {
            return Err(FieldError::new(
                "period_seconds",
                format!("period_seconds must be at most {MAX_PERIOD_SECONDS} (one year)"),
            ));
        }
        (true, Some(p)) => Some(p),
    };
    let job = periodic || schedule.is_some();
    let auto_restart = req.auto_restart.unwrap_or(false);
    let restart_policy = if job {
        RestartPolicy::Never
    } else {
        req.restart_policy.unwrap_or(if auto_restart {
            RestartPolicy::Always
        } else {
            RestartPolicy::Never
        })
    };
    let stop_signal = match req.stop_signal {
        Some(name) => StopSignal::parse(&name).map_err(|m| FieldError::new("stop_signal", m))?,
        None => StopSignal(15),
    };
    let stop_timeout_seconds = req
        .stop_timeout_seconds
        .unwrap_or(DEFAULT_STOP_TIMEOUT_SECONDS);
    if stop_timeout_seconds > MAX_STOP_TIMEOUT_SECONDS {
        return Err(FieldError::new(
            "stop_timeout_seconds",
            format!("stop_timeout_seconds must be at most {MAX_STOP_TIMEOUT_SECONDS}"),
        ));
    }
    let log_max_bytes = req.log_max_bytes.unwrap_or(DEFAULT_LOG_MAX_BYTES);
    if log_max_bytes < MIN_LOG_MAX_BYTES {
        return Err(FieldError::new(
            "log_max_bytes",
            format!("log_max_bytes must be at least {MIN_LOG_MAX_BYTES}"),
        ));
    }
    let log_backups = req.log_backups.unwrap_or(DEFAULT_LOG_BACKUPS);
    if log_backups > MAX_LOG_BACKUPS {
        return Err(FieldError::new(
            "log_backups",
            format!("log_backups must be at most {MAX_LOG_BACKUPS}"),
        ));
    }
    let backoff = backoff(
        req.backoff_seconds,
        req.backoff_reset_seconds,
        req.rapid_exit_penalty_seconds,
    )?;
    for (field, v) in [("user", &req.user), ("group", &req.group)] {
        if let Some(v) = v
            && (v.trim().is_empty() || v.contains(['\0', ':', '\n']))
        {
            return Err(FieldError::new(
                field,
                format!("{field} must be a name or a numeric id"),
            ));
        }
    }
    if req.group.is_some() && req.user.is_none() {
        return Err(FieldError::new("group", "group needs a user"));
    }
    let mut job_settings = job_settings(job, req.overlap, req.timeout_seconds, req.history)?;
    job_settings.catch_up = catch_up_window;
    Ok(ProcessSpec {
        id,
        command: req.command,
        args,
        working_dir,
        env,
        auto_restart,
        save_for_next_run: req.save_for_next_run.unwrap_or(false),
        period_seconds,
        schedule,
        restart_policy,
        max_restarts: req.max_restarts,
        stop_signal,
        stop_timeout_seconds,
        log_max_bytes,
        log_backups,
        backoff,
        user: req.user,
        group: req.group,
        job: job_settings,
    })
}

/// Longest accepted restart delay or reset window: one day.
pub const MAX_BACKOFF_SECONDS: f64 = 86_400.0;
const MAX_BACKOFF_STEPS: usize = 100;
const DEFAULT_HISTORY: u32 = 50;
const DEFAULT_CATCH_UP_WINDOW: u64 = 86_400;
const MAX_HISTORY: u32 = 10_000;

fn seconds(field: &str, v: f64) -> Result<Duration, FieldError> {
    if !v.is_finite() || !(0.0..=MAX_BACKOFF_SECONDS).contains(&v) {
        return Err(FieldError::new(
            field,
            format!("{field} must be between 0 and {MAX_BACKOFF_SECONDS} seconds, got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn backoff(
    steps: Option<Vec<f64>>,
    reset: Option<f64>,
    penalty: Option<f64>,
) -> Result<Backoff, FieldError> {
    let steps = match steps {
        None => None,
        Some(s) if s.is_empty() => {
            return Err(FieldError::new(
                "backoff_seconds",
                "backoff_seconds needs at least one delay (the last one repeats)",
            ));
        }
        Some(s) if s.len() > MAX_BACKOFF_STEPS => {
            return Err(FieldError::new(
                "backoff_seconds",
                format!("backoff_seconds takes at most {MAX_BACKOFF_STEPS} delays"),
            ));
        }
        Some(s) => Some(
            s.into_iter()
                .map(|v| seconds("backoff_seconds", v))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let defaults = Backoff::default();
    Ok(Backoff {
        steps,
        reset: match reset {
            Some(v) => seconds("backoff_reset_seconds", v)?,
            None => defaults.reset,
        },
        penalty: match penalty {
            Some(v) => seconds("rapid_exit_penalty_seconds", v)?,
            None => defaults.penalty,
        },
    })
}

/// `schedule` and `timezone`: a calendar schedule, or none.
fn calendar(req: &AddRequest, periodic: bool) -> Result<Option<Calendar>, FieldError> {
    match (&req.schedule, &req.timezone) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(FieldError::new("timezone", "timezone goes with a schedule")),
        (Some(_), _) if periodic => Err(FieldError::new(
            "schedule",
            "schedule and periodic exclude each other: a job runs on a calendar or every N seconds",
        )),
        (Some(expr), zone) => {
            Calendar::parse(expr, zone.as_deref())
                .map(Some)
                .map_err(|e| match e {
                    CalendarError::Schedule(m) => FieldError::new("schedule", m),
                    CalendarError::Timezone(m) => FieldError::new("timezone", m),
                })
        }
    }
}

/// `catch_up` and its window (scheduled jobs only).
fn catch_up(req: &AddRequest, scheduled: bool) -> Result<Option<Duration>, FieldError> {
    if !scheduled {
        for (field, given) in [
            ("catch_up", req.catch_up.is_some()),
            (
                "catch_up_window_seconds",
                req.catch_up_window_seconds.is_some(),
            ),
        ] {
            if given {
                return Err(FieldError::new(
                    field,
                    format!("{field} applies only to jobs with a schedule"),
                ));
            }
        }
        return Ok(None);
    }
    let window = req
        .catch_up_window_seconds
        .unwrap_or(DEFAULT_CATCH_UP_WINDOW);
    if window == 0 || window > MAX_PERIOD_SECONDS {
        return Err(FieldError::new(
            "catch_up_window_seconds",
            format!("catch_up_window_seconds must be between 1 and {MAX_PERIOD_SECONDS}"),
        ));
    }
    Ok(req
        .catch_up
        .unwrap_or(false)
        .then(|| Duration::from_secs(window)))
}

fn job_settings(
    job: bool,
    overlap: Option<Overlap>,
    timeout: Option<u64>,
    history: Option<u32>,
) -> Result<JobSettings, FieldError> {
    if !job {
        for (field, given) in [
            ("overlap", overlap.is_some()),
            ("timeout_seconds", timeout.is_some()),
            ("history", history.is_some()),
        ] {
            if given {
                return Err(FieldError::new(
                    field,
                    format!("{field} applies only to periodic or scheduled jobs"),
                ));
            }
        }
    }
    let timeout = match timeout {
        Some(0) => {
            return Err(FieldError::new(
                "timeout_seconds",
                "timeout_seconds must be greater than 0",
            ));
        }
        Some(t) if t > MAX_PERIOD_SECONDS => {
            return Err(FieldError::new(
                "timeout_seconds",
                format!("timeout_seconds must be at most {MAX_PERIOD_SECONDS}"),
            ));
        }
        t => t.map(Duration::from_secs),
    };
    let history = history.unwrap_or(DEFAULT_HISTORY);
    if history > MAX_HISTORY {
        return Err(FieldError::new(
            "history",
            format!("history must be at most {MAX_HISTORY}"),
        ));
    }
    Ok(JobSettings {
        overlap: overlap.unwrap_or_default(),
        timeout,
        history,
        catch_up: None,
    })
}

/// A signal a process may be stopped with, by name ("TERM", "SIGINT", "9").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopSignal(i32);

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("TERM", 15),
    ("WINCH", 28),
];

impl StopSignal {
    /// Exactly these: `TERM`, `SIGTERM` or `15` (and so on for each).
    pub fn parse(s: &str) -> Result<StopSignal, String> {
        let bare = s.strip_prefix("SIG").unwrap_or(s);
        SIGNALS
            .iter()
            .find(|(name, num)| *name == bare || (bare == s && num.to_string() == s))
            .map(|&(_, num)| StopSignal(num))
            .ok_or_else(|| {
                let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                format!("stop_signal {s:?} is not one of {}", names.join(", "))
            })
    }

    /// Every accepted spelling (for the API document).
    pub fn accepted() -> Vec<String> {
        SIGNALS
            .iter()
            .flat_map(|(name, num)| [name.to_string(), format!("SIG{name}"), num.to_string()])
            .collect()
    }

    pub fn number(self) -> i32 {
        self.0
    }

    pub fn name(self) -> &'static str {
        SIGNALS
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
            .unwrap_or("TERM")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<ProcessSpec, String> {
        parse_add(json.as_bytes()).map_err(|e| format!("{}: {}", e.field, e.message))
    }

    #[test]
    fn ids() {
        for good in ["a", "web-server", "A.b_c-9", &"x".repeat(64)] {
            assert!(ProcessId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "é",
            "a\0b",
            "exeio",
            "audit",
            &"x".repeat(65),
        ] {
            assert!(ProcessId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults() {
        let s = req(r#"{"id":"a","command":"sleep"}"#).unwrap();
        assert_eq!(s.args, Vec::<String>::new());
        assert_eq!(s.restart_policy, RestartPolicy::Never);
        assert_eq!(s.stop_signal.number(), 15);
        assert_eq!(s.stop_timeout_seconds, 10);
        assert_eq!(s.log_max_bytes, 50 * 1024 * 1024);
        assert_eq!(s.log_backups, 5);
        let s = req(r#"{"id":"a","command":"sleep","auto_restart":true}"#).unwrap();
        assert_eq!(s.restart_policy, RestartPolicy::Always);
    }

    #[test]
    fn seed_body_with_nulls_is_accepted() {
        let s = req(
            r#"{"id":"my-process","command":"node","args":["server.js"],"working_dir":"/app",
            "auto_restart":true,"save_for_next_run":true,"periodic":false,"period_seconds":null}"#,
        )
        .unwrap();
        assert_eq!(s.period_seconds, None);
    }

    #[test]
    fn rejects() {
        let unknown = req(r#"{"id":"a","command":"x","colour":1}"#).unwrap_err();
        assert!(unknown.contains("colour"), "{unknown}");
        assert!(req(r#"{"id":"a"}"#).unwrap_err().contains("command"));
        assert!(req(r#"{"id":"a","command":"  "}"#).is_err());
        assert!(req(r#"{"id":"a","command":"x","args":"y"}"#).is_err());
        assert!(req(r#"{"id":"a","command":"x","periodic":true}"#).is_err());
        assert!(req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":0}"#).is_err());
        assert!(req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":-1}"#).is_err());
        assert!(
            req(r#"{"id":"a","command":"x","periodic":true,"period_seconds":99999999999}"#)
                .is_err()
        );
        assert!(req(r#"{"id":"a","command":"x","stop_signal":"BOGUS"}"#).is_err());
        assert!(req(r#"{"id":"a","command":"x","restart_policy":"sometimes"}"#).is_err());
        assert!(req("{not json").is_err());
        assert!(req(r#"["a","sleep"]"#).unwrap_err().contains("object"));
    }

    #[test]
    fn periodic_never_restarts() {
        let s = req(
            r#"{"id":"a","command":"x","periodic":true,"period_seconds":5,"auto_restart":true}"#,
        )
        .unwrap();
        assert_eq!(s.restart_policy, RestartPolicy::Never);
        assert_eq!(s.period_seconds, Some(5));
    }

    #[test]
    fn signals() {
        assert_eq!(StopSignal::parse("SIGINT").unwrap().number(), 2);
        assert_eq!(StopSignal::parse("KILL").unwrap().number(), 9);
        assert_eq!(StopSignal::parse("9").unwrap().number(), 9);
        for bad in ["kill", " TERM", "SIG15", "SIGSIGTERM", ""] {
            assert!(StopSignal::parse(bad).is_err(), "{bad:?}");
        }
        for ok in StopSignal::accepted() {
            assert!(StopSignal::parse(&ok).is_ok(), "{ok}");
        }
        assert_eq!(StopSignal::parse("15").unwrap().name(), "TERM");
    }

    #[test]
    fn restart_timing_and_user_fields() {
        let s = req(r#"{"id":"a","command":"x","backoff_seconds":[0.1,0.5,1],
            "backoff_reset_seconds":60,"rapid_exit_penalty_seconds":0,"user":"nobody"}"#)
        .unwrap();
        assert_eq!(
            s.backoff.steps,
            Some(vec![
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_secs(1)
            ])
        );
        assert_eq!(s.backoff.reset, Duration::from_secs(60));
        assert_eq!(s.backoff.penalty, Duration::ZERO);
        assert_eq!(s.user.as_deref(), Some("nobody"));
        let d = req(r#"{"id":"a","command":"x"}"#).unwrap();
        assert_eq!(d.backoff, Backoff::default());
        for (bad, field) in [
            (r#""backoff_seconds":[]"#, "backoff_seconds"),
            (r#""backoff_seconds":[-1]"#, "backoff_seconds"),
            (r#""backoff_seconds":[1e9]"#, "backoff_seconds"),
            (r#""backoff_reset_seconds":-5"#, "backoff_reset_seconds"),
            (
                r#""rapid_exit_penalty_seconds":-0.5"#,
                "rapid_exit_penalty_seconds",
            ),
            (r##""user":"""##, "user"),
            (r#""group":"wheel""#, "group"),
            (r#""overlap":"queue""#, "overlap"),
            (r#""history":5"#, "history"),
            (
                r#""periodic":true,"period_seconds":5,"timeout_seconds":0"#,
                "timeout_seconds",
            ),
            (r#""colour":1"#, "colour"),
        ] {
            let e =
                parse_add(format!(r#"{{"id":"a","command":"x",{bad}}}"#).as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{bad}: {}", e.message);
        }
        let j = req(
            r#"{"id":"a","command":"x","periodic":true,"period_seconds":5,
            "overlap":"replace","timeout_seconds":3,"history":7}"#,
        )
        .unwrap();
        assert_eq!(j.job.overlap, Overlap::Replace);
        assert_eq!(j.job.timeout, Some(Duration::from_secs(3)));
        assert_eq!(j.job.history, 7);
        assert_eq!(validate(j.to_request()).unwrap(), j);
    }

    #[test]
    fn what_needs_a_restart() {
        let a = req(r#"{"id":"a","command":"x","args":["1"]}"#).unwrap();
        let policy = req(r#"{"id":"a","command":"x","args":["1"],"auto_restart":true,
            "log_backups":2,"stop_timeout_seconds":3}"#)
        .unwrap();
        assert!(!a.needs_restart_for(&policy));
        for other in [
            r#"{"id":"a","command":"y","args":["1"]}"#,
            r#"{"id":"a","command":"x","args":["2"]}"#,
            r#"{"id":"a","command":"x","args":["1"],"env":{"A":"1"}}"#,
            r#"{"id":"a","command":"x","args":["1"],"working_dir":"/"}"#,
            r#"{"id":"a","command":"x","args":["1"],"user":"root"}"#,
        ] {
            assert!(a.needs_restart_for(&req(other).unwrap()), "{other}");
        }
    }

    #[test]
    fn round_trip_through_the_wire_form() {
        let s =
            req(r#"{"id":"a","command":"x","env":{"A":"1"},"max_restarts":3,"stop_signal":"INT"}"#)
                .unwrap();
        assert_eq!(validate(s.to_request()).unwrap(), s);
    }
}
