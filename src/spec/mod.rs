//! What a user asks for: the validated description of one supervised process.
//!
//! Pure: parsing and validation only, no I/O. `AddRequest` is the wire form of
//! `POST /add` (and of `processes.json`; it and its parsing live in `wire`);
//! `validate` turns it into a `ProcessSpec` that the rest of exeio can trust.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::calendar::Calendar;
use crate::policy::{Backoff, RestartPolicy};

mod depends;
pub mod deploy;
pub mod health;
pub mod instances;
mod job;
mod signal;
mod wire;

pub use depends::{Condition, DependsOn};
pub use deploy::{DeployRequest, DeploySpec};
pub use health::{HealthRequest, HealthSpec, HttpTarget, LogPattern, Probe};
pub use instances::Instances;
pub use job::{JobSettings, Overlap};
use job::{calendar, catch_up, job_settings};
pub use signal::{StopSignal, any_signal, signal_names};
pub use wire::{AddRequest, json_error, parse_add, parse_object, request};

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

/// A validated process description.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSpec {
    pub id: ProcessId,
    pub command: String,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Read at each spawn; its values override `env` (`envfile`).
    pub env_file: Option<PathBuf>,
    pub auto_restart: bool,
    pub save_for_next_run: bool,
    /// `Some(period)` for a periodic process.
    pub period_seconds: Option<u64>,
    /// A calendar schedule (cron), for a scheduled job.
    /// Boxed: most processes have none, and a calendar is 136 bytes.
    pub schedule: Option<Box<Calendar>>,
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
    /// Restarted after 3 samples in a row above this (SPEC 4d).
    pub max_memory_bytes: Option<u64>,
    /// What must hold before this process starts (SPEC 4b).
    pub depends_on: DependsOn,
    /// A health probe (SPEC 4b). Boxed: most processes have none.
    pub health: Option<Box<HealthSpec>>,
    /// A group of copies, or one of its copies (`instances`). Boxed: most
    /// processes are alone.
    pub instances: Option<Box<Instances>>,
    /// Deploy settings (SPEC 4c). Boxed: most processes have none.
    pub deploy: Option<Box<DeploySpec>>,
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
            || self.env_file != new.env_file
            || self.working_dir != new.working_dir
            || self.user != new.user
            || self.group != new.group
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

pub fn validate(req: AddRequest) -> Result<ProcessSpec, FieldError> {
    if req.instances.is_some() {
        return instances::validate_group(req);
    }
    let id = ProcessId::parse(&req.id).map_err(|m| FieldError::new("id", m))?;
    let schedule = calendar(&req, req.periodic.unwrap_or(false))?.map(Box::new);
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
    let env_file = match req.env_file {
        Some(f) if f.contains('\0') || !f.starts_with('/') => {
            return Err(FieldError::new(
                "env_file",
                "env_file must be an absolute path",
            ));
        }
        Some(f) => Some(PathBuf::from(f)),
        None => None,
    };
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
        None => StopSignal::TERM,
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
    let depends_on = depends::depends_on(&id, req.depends_on)?;
    let mut job_settings = job_settings(job, req.overlap, req.timeout_seconds, req.history)?;
    job_settings.catch_up = catch_up_window;
    let health = match req.health {
        Some(_) if job => {
            return Err(FieldError::new(
                "health",
                "health probes are for services: a periodic or scheduled job has none",
            ));
        }
        Some(h) => Some(Box::new(health::validate(h)?)),
        None => None,
    };
    let deploy = match req.deploy {
        Some(_) if job => {
            return Err(FieldError::new(
                "deploy",
                "deploy is for services: a periodic or scheduled job has no health gate",
            ));
        }
        Some(d) => Some(Box::new(deploy::validate(d)?)),
        None => None,
    };
    Ok(ProcessSpec {
        id,
        command: req.command,
        args,
        working_dir,
        env,
        env_file,
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
        max_memory_bytes: memory_limit(req.max_memory_bytes)?,
        depends_on,
        health,
        instances: None,
        deploy,
    })
}

/// Smallest accepted `max_memory_bytes`: below this, nothing runs.
pub const MIN_MEMORY_BYTES: u64 = 1024 * 1024;

fn memory_limit(v: Option<u64>) -> Result<Option<u64>, FieldError> {
    match v {
        Some(b) if b < MIN_MEMORY_BYTES => Err(FieldError::new(
            "max_memory_bytes",
            format!("max_memory_bytes must be at least {MIN_MEMORY_BYTES} (1 MiB), got {b}"),
        )),
        _ => Ok(v),
    }
}

/// Longest accepted restart delay or reset window: one day.
pub const MAX_BACKOFF_SECONDS: f64 = 86_400.0;
const MAX_BACKOFF_STEPS: usize = 100;

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

#[cfg(test)]
mod tests;
