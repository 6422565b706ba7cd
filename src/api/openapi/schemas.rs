//! The component schemas of the OpenAPI document: a process configuration
//! (`Config`, `ConfigUpdate`, `Apply`, with its `health` and `deploy`
//! objects) and the objects the API replies with (`Process`, `Run`,
//! `LogPage`, `Info`, ...), field by field as `spec::validate` checks them
//! and `api::render` writes them.

use serde_json::{Value, json};

use super::refs;
use crate::spec;

/// The fields of a process configuration, with types, defaults and limits
/// as `spec::validate` checks them.
pub(super) fn config_properties() -> Value {
    let seconds = |max: f64| json!({"type": "number", "minimum": 0, "maximum": max});
    json!({
        "id": refs("ProcessId"),
        "command": {"type": "string", "minLength": 1, "pattern": "\\S", "description": "Looked up in PATH; no shell"},
        "args": {"type": "array", "items": {"type": "string"}, "default": [], "nullable": true},
        "working_dir": {"type": "string", "minLength": 1, "pattern": "\\S", "nullable": true, "description": "Must exist"},
        "env": {"type": "object", "additionalProperties": {"type": "string"}, "nullable": true},
        "env_file": {"type": "string", "pattern": "^/", "nullable": true, "description": "An absolute path to a file of KEY=value lines, read at each start; its values override env"},
        "auto_restart": {"type": "boolean", "default": false, "nullable": true},
        "save_for_next_run": {"type": "boolean", "default": false, "nullable": true},
        "periodic": {"type": "boolean", "default": false, "nullable": true},
        "period_seconds": {"type": "integer", "minimum": 1, "maximum": spec::MAX_PERIOD_SECONDS, "nullable": true, "description": "Required when periodic"},
        "schedule": {"type": "string", "nullable": true, "description": "Cron: 5 fields, or 6 with seconds first; @daily etc. Excludes periodic"},
        "timezone": {"type": "string", "nullable": true, "description": "IANA zone of the schedule (default: the system's)"},
        "catch_up": {"type": "boolean", "nullable": true, "default": false},
        "catch_up_window_seconds": {"type": "integer", "minimum": 1, "maximum": spec::MAX_PERIOD_SECONDS, "nullable": true, "default": 86400},
        "restart_policy": {"type": "string", "enum": ["always", "on-failure", "never"], "nullable": true},
        "max_restarts": {"type": "integer", "minimum": 0, "maximum": 4294967295u64, "nullable": true},
        "stop_signal": {"type": "string", "nullable": true, "default": "TERM", "enum": crate::spec::StopSignal::accepted()},
        "stop_timeout_seconds": {"type": "integer", "minimum": 0, "maximum": spec::MAX_STOP_TIMEOUT_SECONDS, "default": 10, "nullable": true},
        "log_max_bytes": {"type": "integer", "minimum": 4096, "default": 52428800, "nullable": true},
        "log_backups": {"type": "integer", "minimum": 0, "maximum": 100, "default": 5, "nullable": true},
        "backoff_seconds": {"type": "array", "minItems": 1, "maxItems": 100, "items": seconds(spec::MAX_BACKOFF_SECONDS), "nullable": true},
        "backoff_reset_seconds": {"type": "number", "minimum": 0, "maximum": spec::MAX_BACKOFF_SECONDS, "default": 300, "nullable": true},
        "rapid_exit_penalty_seconds": {"type": "number", "minimum": 0, "maximum": spec::MAX_BACKOFF_SECONDS, "default": 20, "nullable": true},
        "user": {"type": "string", "nullable": true, "description": "A name or uid (exeio must be root to switch)"},
        "group": {"type": "string", "nullable": true},
        "overlap": {"type": "string", "enum": ["skip", "queue", "replace"], "nullable": true},
        "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": spec::MAX_PERIOD_SECONDS, "nullable": true},
        "history": {"type": "integer", "minimum": 0, "maximum": 10000, "default": 50, "nullable": true},
        "max_memory_bytes": {"type": "integer", "minimum": spec::MIN_MEMORY_BYTES, "nullable": true, "description": "Restart after 3 samples in a row (5 s apart) above this"},
        "depends_on": {"type": "object", "nullable": true, "maxProperties": 64,
            "additionalProperties": {"type": "string", "enum": ["started", "healthy", "completed_successfully"]},
            "description": "Process id -> condition. The process starts only once each holds (status waiting meanwhile)."},
        "health": health_schema(),
        "instances": {"type": "integer", "minimum": 1, "maximum": crate::spec::instances::MAX_INSTANCES, "nullable": true,
            "description": "Run N copies ID-1..ID-N managed as one; {instance} in command, args, working_dir, env values, env_file and the health target, and EXEIO_INSTANCE in the env, give each its number. Not for periodic or scheduled jobs"},
        "deploy": deploy_schema()
    })
}

/// `deploy` (SPEC 4c): releases kept, the build step, the timeouts.
fn deploy_schema() -> Value {
    let secs = |default: u64| json!({"type": "integer", "minimum": 1, "maximum": spec::deploy::MAX_DEPLOY_TIMEOUT_SECONDS, "default": default, "nullable": true});
    json!({
        "type": "object", "nullable": true, "additionalProperties": false,
        "description": "Deploys of releases (POST /deploy/{id}); {release} in command, args, working_dir and env values is the live release's dir",
        "properties": {
            "keep": {"type": "integer", "minimum": 1, "maximum": spec::deploy::MAX_KEEP, "default": 5, "nullable": true, "description": "Successful releases kept (failed ones use no slot)"},
            "build": {"type": "array", "minItems": 1, "items": {"type": "string"}, "nullable": true, "description": "Run in the new release before the switch, e.g. [\"npm\", \"ci\"]; its output goes to the process log"},
            "build_timeout_seconds": secs(600),
            "healthy_timeout_seconds": secs(60)
        }
    })
}

/// `health` (SPEC 4b): exactly one probe and its timing.
fn health_schema() -> Value {
    let secs = |min: u64, max: u64, default: u64| json!({"type": "integer", "minimum": min, "maximum": max, "default": default, "nullable": true});
    let count = |default: u32| json!({"type": "integer", "minimum": 1, "maximum": spec::health::MAX_THRESHOLD, "default": default, "nullable": true});
    json!({
        "type": "object", "nullable": true, "additionalProperties": false,
        "description": "A health probe: exactly one of http, tcp, exec, log",
        "properties": {
            "http": {"type": "string", "pattern": "^http://\\S+$", "description": "GET; 2xx or 3xx is healthy; redirects are not followed"},
            "tcp": {"type": "string", "pattern": "^\\S+:[0-9]+$", "description": "host:port; a connection is accepted"},
            "exec": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "Exit 0; runs as the process's user, in its working_dir and env"},
            "log": {"type": "string", "minLength": 1, "maxLength": spec::health::MAX_LOG_PATTERN, "description": "Readiness only: a regex an output line of the current run matches"},
            "period_seconds": secs(1, spec::MAX_PERIOD_SECONDS, 10),
            "timeout_seconds": secs(1, spec::health::MAX_PROBE_TIMEOUT_SECONDS, 2),
            "initial_delay_seconds": secs(0, spec::MAX_PERIOD_SECONDS, 0),
            "failure_threshold": count(3),
            "success_threshold": count(1),
            "start_timeout_seconds": secs(1, spec::MAX_PERIOD_SECONDS, 60)
        }
    })
}

pub(super) fn schemas() -> Value {
    let nullable = |t: &str| json!({"type": t, "nullable": true});
    let time = json!({"type": "string", "format": "date-time"});
    let time_or_null = json!({"type": "string", "format": "date-time", "nullable": true});
    let mut update = config_properties();
    let exit = json!({"type": "object", "properties": {
        "code": {"type": "integer"}, "signal": {"type": "integer"}
    }});
    let mut last_exit = exit.clone();
    last_exit["properties"]["at"] = time.clone();
    last_exit["nullable"] = json!(true);
    if let Value::Object(p) = &mut update {
        p.remove("id");
        p.insert("id".into(), refs("ProcessId"));
    }
    json!({
        "ProcessId": {
            "type": "string", "minLength": 1, "maxLength": spec::MAX_ID_LEN,
            "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]*$",
            "description": "Letters, digits, . _ -; not starting with '.'; not 'exeio'"
        },
        "Config": {
            "type": "object", "additionalProperties": false,
            "required": ["id", "command"],
            "properties": config_properties()
        },
        "ConfigUpdate": {
            "type": "object", "additionalProperties": false,
            "required": ["command"],
            "description": "A whole configuration; its id, if given, must be the one in the path",
            "properties": update
        },
        "Apply": {
            "type": "object", "additionalProperties": false, "required": ["processes"],
            "properties": {
                "processes": {"type": "array", "items": refs("Config")},
                "prune": {"type": "boolean", "default": false},
                "dry_run": {"type": "boolean", "default": false}
            }
        },
        "ApplyPlan": {
            "type": "object", "required": ["success", "message", "added", "updated", "restarted", "removed", "unchanged"],
            "properties": {
                "success": {"type": "boolean"},
                "message": {"type": "string"},
                "added": {"type": "array", "items": {"type": "string"}},
                "updated": {"type": "array", "items": {"type": "string"}},
                "restarted": {"type": "array", "items": {"type": "string"}},
                "removed": {"type": "array", "items": {"type": "string"}},
                "unchanged": {"type": "array", "items": {"type": "string"}},
                "failed": {"type": "array", "items": {"type": "object"}, "description": "Entries that cannot start, with why: then the reply is a 400 with this plan and nothing is applied"},
                "dry_run": {"type": "boolean"},
                "processes": {"type": "array", "items": refs("Process")}
            }
        },
        "Error": {
            "type": "object", "required": ["success", "message"],
            "properties": {
                "success": {"type": "boolean", "enum": [false]},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The field of the body that is wrong"}
            }
        },
        "Info": {
            "type": "object", "required": ["success", "name", "version", "uptime_seconds", "endpoints"],
            "properties": {
                "success": {"type": "boolean"},
                "name": {"type": "string"},
                "version": {"type": "string"},
                "uptime_seconds": {"type": "integer"},
                "started_at": time.clone(),
                "tls": {"type": "boolean"},
                "isolation": {"type": "string", "enum": ["cgroup", "process-group"]},
                "saved": {"type": "object", "properties": {
                    "ok": {"type": "boolean"}, "pending": {"type": "boolean"},
                    "error": nullable("string"), "retry_at": time_or_null.clone()
                }},
                "endpoints": {"type": "array", "items": {"type": "string"}}
            }
        },
        "LogPage": {
            "type": "object", "required": ["success", "page", "page_size", "total_lines", "logs"],
            "properties": {
                "success": {"type": "boolean"},
                "page": {"type": "integer"},
                "page_size": {"type": "integer"},
                "total_lines": {"type": "integer", "description": "Lines of all streams"},
                "logs": {"type": "array", "items": {"type": "string"}}
            }
        },
        "Run": {
            "type": "object", "required": ["run", "trigger", "ended_at", "result", "skipped_before"],
            "properties": {
                "run": {"type": "integer"},
                "trigger": {"type": "string", "enum": ["schedule", "manual", "catch_up", "start"]},
                "scheduled_at": time_or_null.clone(),
                "started_at": time_or_null.clone(),
                "ended_at": time.clone(),
                "duration_seconds": nullable("number"),
                "exit": {"type": "object", "nullable": true, "properties": {"code": {"type": "integer"}, "signal": {"type": "integer"}}},
                "result": {"type": "string", "enum": ["ok", "failed", "timed_out", "replaced", "spawn_error"]},
                "skipped_before": {"type": "integer"},
                "error": {"type": "string"}
            }
        },
        "Process": {
            "type": "object",
            "required": ["id", "command", "args", "status", "waiting_for", "is_running", "pid", "run_count", "restart_count", "log_file"],
            "properties": {
                "id": {"type": "string"},
                "command": {"type": "string"},
                "args": {"type": "array", "items": {"type": "string"}},
                "working_dir": nullable("string"),
                "env": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Values are shown to admin keys only; to read and operate keys each value is \"<hidden>\"."},
                "env_file": {"type": "string"},
                "status": {"type": "string", "enum": ["running", "stopped", "waiting", "backoff", "stopping", "failed", "manually_stopped"]},
                "is_running": {"type": "boolean"},
                "pid": nullable("integer"),
                "auto_restart": {"type": "boolean"},
                "restart_policy": {"type": "string", "enum": ["always", "on-failure", "never"]},
                "max_restarts": nullable("integer"),
                "save_for_next_run": {"type": "boolean"},
                "periodic": {"type": "boolean"},
                "period_seconds": nullable("integer"),
                "schedule": {"type": "string"},
                "timezone": {"type": "string"},
                "catch_up": {"type": "boolean"},
                "catch_up_window_seconds": {"type": "integer"},
                "stop_signal": {"type": "string"},
                "stop_timeout_seconds": {"type": "integer"},
                "backoff_seconds": {"type": "array", "items": {"type": "number"}, "nullable": true},
                "backoff_reset_seconds": {"type": "number"},
                "rapid_exit_penalty_seconds": {"type": "number"},
                "user": nullable("string"),
                "group": nullable("string"),
                "log_max_bytes": {"type": "integer"},
                "log_backups": {"type": "integer"},
                "overlap": {"type": "string", "enum": ["skip", "queue", "replace"]},
                "timeout_seconds": {"type": "integer"},
                "history": {"type": "integer"},
                "depends_on": {"type": "object", "additionalProperties": {"type": "string", "enum": ["started", "healthy", "completed_successfully"]}},
                "waiting_for": {"type": "array", "items": {"type": "string"}, "description": "While status is waiting for dependencies: the unmet conditions, as \"db (healthy)\". Empty otherwise (also for a job waiting for its next run)."},
                "run_count": {"type": "integer"},
                "restart_count": {"type": "integer"},
                "restarts_total": {"type": "integer"},
                "last_run": time_or_null.clone(),
                "last_exit": last_exit,
                "last_result": {"type": "string", "enum": ["ok", "failed", "timed_out", "replaced", "spawn_error"]},
                "next_run_in_seconds": nullable("number"),
                "next_run_at": time_or_null.clone(),
                "uptime_seconds": nullable("number"),
                "cpu_percent": nullable("number"),
                "rss_bytes": nullable("integer"),
                "log_file": {"type": "string"},
                "error": nullable("string"),
                "health_probe": {"type": "object", "description": "The probe configured (the config's health)"},
                "health": {"type": "string", "enum": ["none", "starting", "healthy", "unhealthy"]},
                "health_message": nullable("string"),
                "health_checked_at": time_or_null,
                "instance_of": {"type": "string", "description": "A copy of this group (instances)"},
                "instance": {"type": "integer", "description": "This copy's number (1..instances)"},
                "instances": {"type": "integer", "description": "How many copies its group has"},
                "release": {"type": "string", "nullable": true, "description": "The live release (SPEC 4c), null when none was deployed"}
            }
        }
    })
}
