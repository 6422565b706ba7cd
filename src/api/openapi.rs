//! `GET /openapi.json`: the API as an OpenAPI 3.0.3 document, built from
//! the route table (paths, methods, roles, parameters, bodies, replies and
//! the statuses each route can give) and the component schemas of
//! `openapi/schemas.rs`, which follow `spec::validate` and `api::render`
//! field by field.

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use super::routes::{Access, Body, QueryKind, ROUTES, Reply, Route};
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::{Exchange, Response};

mod schemas;
use schemas::schemas;

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

#[cfg(test)]
mod tests {
    use super::schemas::config_properties;
    use super::*;
    use crate::spec;

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
