//! What a user asks for: the validated description of one supervised process.
//!
//! Pure: parsing and validation only, no I/O. `AddRequest` is the wire form of
//! `POST /add` (and of `processes.json`); `validate` turns it into a
//! `ProcessSpec` that the rest of exeio can trust.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::RestartPolicy;

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

/// A process id: 1-64 chars of `[A-Za-z0-9._-]`, not starting with `.`, not `exeio`.
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

/// The body of `POST /add`, and one entry of `processes.json`.
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
    pub restart_policy: RestartPolicy,
    pub max_restarts: Option<u32>,
    pub stop_signal: StopSignal,
    pub stop_timeout_seconds: u64,
    pub log_max_bytes: u64,
    pub log_backups: u32,
}

impl ProcessSpec {
    pub fn is_periodic(&self) -> bool {
        self.period_seconds.is_some()
    }

    /// The wire form, as saved in `processes.json`.
    pub fn to_request(&self) -> AddRequest {
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
            restart_policy: (!self.is_periodic()).then_some(self.restart_policy),
            max_restarts: self.max_restarts,
            stop_signal: Some(self.stop_signal.name().to_owned()),
            stop_timeout_seconds: Some(self.stop_timeout_seconds),
            log_max_bytes: Some(self.log_max_bytes),
            log_backups: Some(self.log_backups),
        }
    }
}

/// Parse and validate a `POST /add` body.
pub fn parse_add(body: &[u8]) -> Result<ProcessSpec, String> {
    let req: AddRequest = parse_object(body)?;
    validate(req)
}

/// Deserialize a JSON object. serde would also fill a struct from an array
/// (by position): a body must be an object.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err("invalid JSON: the body must be a JSON object ({...})".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))
}

pub fn validate(req: AddRequest) -> Result<ProcessSpec, String> {
    let id = ProcessId::parse(&req.id)?;
    if req.command.trim().is_empty() {
        return Err("command must not be empty".into());
    }
    if req.command.contains('\0') {
        return Err("command must not contain NUL".into());
    }
    let args = req.args.unwrap_or_default();
    if args.iter().any(|a| a.contains('\0')) {
        return Err("args must not contain NUL".into());
    }
    let working_dir = match req.working_dir {
        Some(dir) if dir.contains('\0') => return Err("working_dir must not contain NUL".into()),
        Some(dir) if dir.trim().is_empty() => return Err("working_dir must not be empty".into()),
        Some(dir) => Some(PathBuf::from(dir)),
        None => None,
    };
    let env = req.env.unwrap_or_default();
    for (k, v) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(format!("env name {k:?} is invalid (empty, '=' or NUL)"));
        }
    }
    let periodic = req.periodic.unwrap_or(false);
    let period_seconds = match (periodic, req.period_seconds) {
        (false, _) => None,
        (true, None) => return Err("period_seconds is required when periodic is true".into()),
        (true, Some(0)) => return Err("period_seconds must be greater than 0".into()),
        (true, Some(p)) if p > MAX_PERIOD_SECONDS => {
            return Err(format!(
                "period_seconds must be at most {MAX_PERIOD_SECONDS} (one year)"
            ));
        }
        (true, Some(p)) => Some(p),
    };
    let auto_restart = req.auto_restart.unwrap_or(false);
    let restart_policy = if periodic {
        RestartPolicy::Never
    } else {
        req.restart_policy.unwrap_or(if auto_restart {
            RestartPolicy::Always
        } else {
            RestartPolicy::Never
        })
    };
    let stop_signal = match req.stop_signal {
        Some(name) => StopSignal::parse(&name)?,
        None => StopSignal::parse("TERM")?,
    };
    let stop_timeout_seconds = req
        .stop_timeout_seconds
        .unwrap_or(DEFAULT_STOP_TIMEOUT_SECONDS);
    if stop_timeout_seconds > MAX_STOP_TIMEOUT_SECONDS {
        return Err(format!(
            "stop_timeout_seconds must be at most {MAX_STOP_TIMEOUT_SECONDS}"
        ));
    }
    let log_max_bytes = req.log_max_bytes.unwrap_or(DEFAULT_LOG_MAX_BYTES);
    if log_max_bytes < MIN_LOG_MAX_BYTES {
        return Err(format!(
            "log_max_bytes must be at least {MIN_LOG_MAX_BYTES}"
        ));
    }
    let log_backups = req.log_backups.unwrap_or(DEFAULT_LOG_BACKUPS);
    if log_backups > MAX_LOG_BACKUPS {
        return Err(format!("log_backups must be at most {MAX_LOG_BACKUPS}"));
    }
    Ok(ProcessSpec {
        id,
        command: req.command,
        args,
        working_dir,
        env,
        auto_restart,
        save_for_next_run: req.save_for_next_run.unwrap_or(false),
        period_seconds,
        restart_policy,
        max_restarts: req.max_restarts,
        stop_signal,
        stop_timeout_seconds,
        log_max_bytes,
        log_backups,
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
    pub fn parse(s: &str) -> Result<StopSignal, String> {
        let up = s.trim().to_ascii_uppercase();
        let bare = up.strip_prefix("SIG").unwrap_or(&up);
        SIGNALS
            .iter()
            .find(|(name, num)| *name == bare || num.to_string() == bare)
            .map(|&(_, num)| StopSignal(num))
            .ok_or_else(|| {
                let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
                format!("stop_signal {s:?} is not one of {}", names.join(", "))
            })
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
        parse_add(json.as_bytes())
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
        assert_eq!(StopSignal::parse("kill").unwrap().number(), 9);
        assert_eq!(StopSignal::parse("15").unwrap().name(), "TERM");
    }

    #[test]
    fn round_trip_through_the_wire_form() {
        let s =
            req(r#"{"id":"a","command":"x","env":{"A":"1"},"max_restarts":3,"stop_signal":"INT"}"#)
                .unwrap();
        assert_eq!(validate(s.to_request()).unwrap(), s);
    }
}
