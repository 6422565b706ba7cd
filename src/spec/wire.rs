//! The wire form of a process: `AddRequest`, the body of `POST /add` (and
//! of `POST /update`, `POST /apply` and `processes.json`); reading one from
//! JSON with errors that name the field (`parse_add`, `request`,
//! `parse_object`, `json_error`); and `ProcessSpec::to_request`, the way
//! back from a validated spec to its wire form.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DeployRequest, FieldError, HealthRequest, Overlap, ProcessSpec, depends, validate};
use crate::policy::RestartPolicy;

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
    /// A file of `KEY=value` lines read at each spawn (over `env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    pub depends_on: Option<BTreeMap<String, String>>,
    pub health: Option<HealthRequest>,
    /// N copies `ID-1`..`ID-N` managed as one (`instances`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    /// Deploys of releases (SPEC 4c).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployRequest>,
}

impl ProcessSpec {
    /// The wire form, as saved in `processes.json`: every field explicit
    /// (a group's: its configuration as given).
    pub fn to_request(&self) -> AddRequest {
        if let Some(i) = self.instances.as_deref().filter(|i| i.number == 0) {
            return (*i.template).clone();
        }
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
            env_file: self
                .env_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
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
            max_memory_bytes: self.max_memory_bytes,
            depends_on: depends::to_wire(&self.depends_on),
            health: self.health.as_ref().map(|h| h.to_request()),
            instances: None,
            deploy: self.deploy.as_ref().map(|d| d.to_request()),
        }
    }
}

/// Parse and validate a `POST /add` body.
pub fn parse_add(body: &[u8]) -> Result<ProcessSpec, FieldError> {
    let req: AddRequest = match parse_object(body) {
        Ok(req) => req,
        Err(e) if e.field.is_empty() => match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(v) if v.is_object() => request(v)?,
            _ => return Err(e),
        },
        Err(e) => return Err(e),
    };
    validate(req)
}

/// A configuration object as an `AddRequest`; a wrong value is named by
/// its field (serde says "unknown variant" without saying where).
pub fn request(v: serde_json::Value) -> Result<AddRequest, FieldError> {
    match serde_json::from_value::<AddRequest>(v.clone()) {
        Ok(req) => Ok(req),
        Err(e) => {
            let mut err = json_error(&e);
            if err.field.is_empty()
                && let Some(field) = blame(&v)
            {
                err.message = format!(
                    "{field}: {}",
                    err.message.trim_start_matches("invalid JSON: ")
                );
                err.field = field;
            }
            Err(err)
        }
    }
}

/// The first field of `v` whose value alone does not deserialize.
fn blame(v: &serde_json::Value) -> Option<String> {
    let obj = v.as_object()?;
    obj.iter().find_map(|(k, val)| {
        let mut one = serde_json::Map::new();
        one.insert("id".into(), "a".into());
        one.insert("command".into(), "a".into());
        one.insert(k.clone(), val.clone());
        serde_json::from_value::<AddRequest>(serde_json::Value::Object(one))
            .is_err()
            .then(|| k.clone())
    })
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
