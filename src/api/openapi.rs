//! `GET /openapi.json`: the API as an OpenAPI 3.0.3 document, built from
//! the route table (paths, methods, roles, parameters, bodies, replies and
//! the statuses each route can give) and the schemas below, which follow
//! `spec::validate` and `api::render` field by field.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::routes::{Access, Body, QueryKind, ROUTES, Reply, Route};
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::{Exchange, Response};
use crate::spec;

pub fn openapi(_: &Api, _: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    let body = DOC.get_or_init(|| serde_json::to_vec(&document()).unwrap_or_default());
    Ok(Answer::Reply(
        Response::json(200, body.clone()).with_header("Cache-Control", "no-cache"),
    ))
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let ops = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        ops[r.method.to_ascii_lowercase()] = operation(r);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "exeio",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A process supervisor controlled over HTTP. Keys have a role: \
                read < operate < admin. Send a key as 'exeio-api-key: KEY' or \
                'Authorization: Bearer KEY'; browsers use the session cookie (POST /session), \
                and then state-changing requests also need 'X-Exeio-CSRF: 1'.",
            "license": {"name": "MIT"}
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "exeio-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "exeio_session"}
            },
            "schemas": schemas()
        }
    })
}

fn operation_id(r: &Route) -> String {
    let mut id = r.method.to_ascii_lowercase();
    for part in r.path.split(['/', '-', '{', '}']).filter(|p| !p.is_empty()) {
        id.push('_');
        id.push_str(part);
    }
    if r.path == "/" {
        id.push_str("_dashboard");
    }
    id
}

fn operation(r: &Route) -> Value {
    let mut op = json!({
        "operationId": operation_id(r),
        "summary": r.summary,
    });
    match r.access {
        Access::Open => op["security"] = json!([]),
        Access::Key(role) => {
            op["security"] = json!([{"apiKey": []}, {"bearer": []}, {"session": []}]);
            op["description"] = json!(format!(
                "Needs a key with the role {} or above.",
                role.name()
            ));
        }
    }
    let mut params: Vec<Value> = r
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = match name {
                "id" => json!({"$ref": "#/components/schemas/ProcessId"}),
                "name" => json!({"$ref": "#/components/schemas/ProcessId"}),
                _ => json!({"type": "string"}),
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    for q in r.query {
        let schema = match q.kind {
            QueryKind::Int(min) => json!({"type": "integer", "minimum": min}),
            QueryKind::Bool => json!({"type": "boolean"}),
            QueryKind::Words(w) => json!({"type": "string", "enum": w}),
        };
        params.push(json!({"name": q.name, "in": "query", "required": false, "description": q.about, "schema": schema}));
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(schema) = body_schema(r.body) {
        let kind = match r.body {
            Body::Release => "application/octet-stream",
            _ => "application/json",
        };
        op["requestBody"] = json!({
            "required": r.body != Body::Rollback,
            "content": {kind: {"schema": schema}}
        });
    }
    let mut responses = Map::new();
    responses.insert("200".into(), reply(r.reply));
    let mut errors: Vec<u16> = r.errors.to_vec();
    if matches!(r.access, Access::Key(_)) {
        errors.extend([401, 403, 413, 429]);
    }
    if r.body != Body::None {
        errors.extend([400, 408, 413]);
    }
    errors.sort_unstable();
    errors.dedup();
    for code in errors {
        responses.insert(
            code.to_string(),
            json!({
                "description": crate::http::reason(code),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }),
        );
    }
    op["responses"] = Value::Object(responses);
    op
}

fn refs(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn body_schema(b: Body) -> Option<Value> {
    Some(match b {
        Body::None => return None,
        Body::Notify => super::notify::put_schema(),
        Body::Config => refs("Config"),
        Body::Update => refs("ConfigUpdate"),
        Body::Apply => refs("Apply"),
        Body::Input => json!({
            "type": "object", "additionalProperties": false, "required": ["input"],
            "properties": {"input": {"type": "string", "description": "Written to stdin with a newline"}}
        }),
        Body::Login => json!({
            "type": "object", "additionalProperties": false, "required": ["key"],
            "properties": {"key": {"type": "string"}}
        }),
        Body::Signal => json!({
            "type": "object", "additionalProperties": false, "required": ["signal"],
            "properties": {"signal": {
                "type": "string",
                "description": "A signal name (HUP, SIGHUP) or number",
                "example": "HUP"
            }}
        }),
        Body::Release | Body::Rollback => super::deploy::body_schema(b),
        Body::NewKey => json!({
            "type": "object", "additionalProperties": false, "required": ["name", "role"],
            "properties": {
                "name": refs("ProcessId"),
                "role": role()
            }
        }),
    })
}

fn content(kind: &str, schema: Value) -> Value {
    json!({"description": "OK", "content": {kind: {"schema": schema}}})
}

/// A key's role.
fn role() -> Value {
    json!({"type": "string", "enum": ["read", "operate", "admin"]})
}

fn text() -> Value {
    json!({"type": "string"})
}

fn reply(r: Reply) -> Value {
    let obj = |props: Value, required: &[&str]| json!({"type": "object", "required": required, "properties": props});
    let done = |extra: Value| {
        let mut props = json!({
            "success": {"type": "boolean"},
            "message": {"type": "string"},
            "process": refs("Process"),
            "saved": {"type": "boolean", "description": "false: done, but not saved for the next run yet"}
        });
        if let (Value::Object(p), Value::Object(e)) = (&mut props, extra) {
            p.extend(e);
        }
        obj(props, &["success", "message"])
    };
    match r {
        Reply::Document => content("application/json", json!({"type": "object"})),
        Reply::Html => content("text/html; charset=utf-8", text()),
        Reply::Asset => json!({"description": "OK", "content": {
            "text/javascript; charset=utf-8": {"schema": text()},
            "text/css; charset=utf-8": {"schema": text()}
        }}),
        Reply::Info => content("application/json", refs("Info")),
        Reply::Notify => content("application/json", super::notify::list_schema()),
        Reply::Session => content(
            "application/json",
            obj(
                json!({
                    "success": {"type": "boolean"},
                    "message": {"type": "string"},
                    "name": {"type": "string"},
                    "role": role(),
                    "expires_in_seconds": {"type": "integer"}
                }),
                &["success", "name", "role"],
            ),
        ),
        Reply::Message => content(
            "application/json",
            obj(
                json!({"success": {"type": "boolean"}, "message": {"type": "string"}}),
                &["success", "message"],
            ),
        ),
        Reply::List => content(
            "application/json",
            json!({"type": "array", "items": refs("Process")}),
        ),
        // A group's id (`instances`) answers with the group and its copies.
        Reply::Process => content(
            "application/json",
            json!({"oneOf": [
                obj(
                    json!({"success": {"type": "boolean"}, "process": refs("Process")}),
                    &["success", "process"],
                ),
                obj(
                    json!({
                        "success": {"type": "boolean"},
                        "group": {"type": "object", "required": ["id", "instances", "config"], "properties": {
                            "id": {"type": "string"},
                            "instances": {"type": "integer"},
                            "config": {"type": "object", "description": "The configuration as given, with {instance}"}
                        }},
                        "processes": {"type": "array", "items": refs("Process")}
                    }),
                    &["success", "group", "processes"],
                ),
            ]}),
        ),
        Reply::Done => content(
            "application/json",
            done(
                json!({"processes": {"type": "array", "items": refs("Process"), "description": "A request to a group (instances): its copies"}}),
            ),
        ),
        Reply::Many => content(
            "application/json",
            done(json!({"processes": {"type": "array", "items": refs("Process")}})),
        ),
        Reply::Update => content(
            "application/json",
            done(json!({"restarted": {"type": "boolean"}})),
        ),
        Reply::Apply => content("application/json", refs("ApplyPlan")),
        Reply::LogPage => json!({"description": "OK", "content": {
            "application/json": {"schema": refs("LogPage")},
            "text/plain; charset=utf-8": {"schema": text()}
        }}),
        Reply::Runs => content(
            "application/json",
            obj(
                json!({"success": {"type": "boolean"}, "runs": {"type": "array", "items": refs("Run")}}),
                &["success", "runs"],
            ),
        ),
        Reply::Health => content(
            "application/json",
            obj(
                json!({
                    "success": {"type": "boolean"},
                    "id": {"type": "string"},
                    "health": {"type": "string", "enum": ["none", "starting", "healthy", "unhealthy"]},
                    "health_message": {"type": "string", "nullable": true},
                    "health_checked_at": {"type": "string", "format": "date-time", "nullable": true},
                    "probe": {"type": "object", "nullable": true},
                    "checks_ok": {"type": "integer"},
                    "checks_failed": {"type": "integer"},
                    "checks": {"type": "array", "items": {"type": "object", "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "ok": {"type": "boolean"},
                        "message": {"type": "string"},
                        "took_seconds": {"type": "number"}
                    }}}
                }),
                &["success", "id", "health", "checks"],
            ),
        ),
        Reply::Deploy => content("application/json", super::deploy::reply_schema()),
        Reply::Releases => content("application/json", super::deploy::releases_schema()),
        Reply::Metrics => content(super::metrics::CONTENT_TYPE, text()),
        Reply::Events => content("text/event-stream", text()),
        Reply::Keys => content(
            "application/json",
            obj(
                json!({"success": {"type": "boolean"}, "keys": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "role", "created_at"],
                    "properties": {
                        "name": {"type": "string"},
                        "role": role(),
                        "created_at": {"type": "string", "format": "date-time"},
                        "last_used_at": {"type": "string", "format": "date-time", "nullable": true}
                    }
                }}}),
                &["success", "keys"],
            ),
        ),
        Reply::NewKey => content(
            "application/json",
            obj(
                json!({
                    "success": {"type": "boolean"},
                    "message": {"type": "string"},
                    "name": {"type": "string"},
                    "role": role(),
                    "key": {"type": "string", "description": "Shown this once"}
                }),
                &["success", "name", "role", "key"],
            ),
        ),
    }
}

/// The fields of a process configuration, with types, defaults and limits
/// as `spec::validate` checks them.
fn config_properties() -> Value {
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

fn schemas() -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_and_nothing_else() {
        let doc = document();
        let mut documented = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push(format!("{} {path}", method.to_ascii_uppercase()));
            }
        }
        documented.sort();
        let mut table: Vec<String> = ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        table.sort();
        assert_eq!(documented, table);
    }

    #[test]
    fn keyed_routes_say_how_to_authenticate_and_what_fails() {
        let doc = document();
        let list = &doc["paths"]["/list"]["get"];
        assert_eq!(list["security"].as_array().unwrap().len(), 3);
        for code in ["200", "401", "403", "429"] {
            assert!(list["responses"][code].is_object(), "{code}");
        }
        assert_eq!(doc["paths"]["/info"]["get"]["security"], json!([]));
        let add = &doc["paths"]["/add"]["post"];
        assert_eq!(
            add["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Config"
        );
        let config = &doc["components"]["schemas"]["Config"]["properties"];
        assert_eq!(config["stop_timeout_seconds"]["maximum"], 3600);
        assert_eq!(
            doc["components"]["securitySchemes"]["apiKey"]["name"],
            "exeio-api-key"
        );
    }

    #[test]
    fn the_config_schema_has_every_field_the_api_accepts() {
        // Every field of the wire form (which denies unknown fields) is documented.
        let full = spec::parse_add(
            br#"{"id":"a","command":"x","periodic":true,"period_seconds":5,"overlap":"skip","timeout_seconds":3,"history":2}"#,
        )
        .unwrap();
        let wire = serde_json::to_value(full.to_request()).unwrap();
        let props = config_properties();
        for key in wire.as_object().unwrap().keys() {
            assert!(props.get(key).is_some(), "{key} is not in the document");
        }
        let all = [
            "backoff_seconds",
            "backoff_reset_seconds",
            "rapid_exit_penalty_seconds",
            "user",
            "group",
            "schedule",
            "timezone",
            "catch_up",
            "catch_up_window_seconds",
            "max_restarts",
            "env",
            "working_dir",
        ];
        for key in all {
            assert!(props.get(key).is_some(), "{key}");
        }
    }
}
