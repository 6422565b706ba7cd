//! `GET`/`PUT /notify` and `POST /notify/test/{name}` (admin, SPEC 4d):
//! thin handlers over `notify::Hub` (the targets never pass through the
//! supervisor), and their OpenAPI schemas.

use serde_json::{Value, json};

use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::notify::{Kind, Replace, Untestable};

fn json(v: Value) -> Answer {
    Answer::Json(serde_json::to_vec(&v).unwrap_or_default())
}

/// `GET /notify`: every target, secrets left out.
pub fn list(api: &Api, _: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    Ok(json(
        json!({"success": true, "targets": api.notify.hub.list()}),
    ))
}

/// `PUT /notify`: the whole list, validated; a secret exeio made is shown
/// in this reply only.
pub fn put(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let body = api.body(ex)?;
    let made = api.notify.replace(&body).map_err(|e| match e {
        Replace::Invalid(f) => ApiError::Invalid(f),
        Replace::Save(m) => ApiError::Internal(m),
    })?;
    let n = api.notify.hub.targets().len();
    let mut reply = json!({
        "success": true,
        "message": format!("{n} notification target(s) saved"),
        "targets": api.notify.hub.list(),
    });
    if !made.is_empty() {
        reply["secrets"] = made
            .into_iter()
            .map(|(name, s)| (name, Value::String(s)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        reply["message"] = json!(format!(
            "{n} notification target(s) saved; the new secrets are shown this once"
        ));
    }
    Ok(json(reply))
}

/// `POST /notify/test/{name}`: queue a `test` event for one target.
pub fn test(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let _ = api.body(ex)?;
    let name = args.params.first().map(String::as_str).unwrap_or("");
    match api.notify.test(name) {
        Ok(()) => {}
        Err(Untestable::Unknown) => {
            return Err(ApiError::NotFound(format!(
                "no notification target named '{name}' (GET /notify lists them)"
            )));
        }
        Err(Untestable::Off(why)) => {
            return Err(ApiError::Conflict(format!(
                "notification target '{name}' is turned off ({why}); nothing was sent: \
                 PUT /notify (exeio notify set) turns it on again"
            )));
        }
    }
    Ok(json(json!({
        "success": true,
        "message": format!("a test notification to '{name}' is queued"),
    })))
}

fn target_props() -> Value {
    let events: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    json!({
        "name": {"$ref": "#/components/schemas/ProcessId"},
        "webhook": {"type": "string", "description": "An http:// or https:// URL (exactly one of webhook or command)"},
        "command": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "events": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": events}},
        "ids": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "Process ids, 'prefix*', or '*' (the default)"},
    })
}

/// The body of `PUT /notify`.
pub fn put_schema() -> Value {
    let mut props = target_props();
    props["secret"] = json!({"type": "string", "description": "whsec_ + base64 of 24-64 bytes; made when absent"});
    json!({
        "type": "array",
        "maxItems": crate::notify::targets::MAX_TARGETS,
        "items": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": props},
    })
}

/// The reply of `GET`/`PUT /notify`.
pub fn list_schema() -> Value {
    let mut props = target_props();
    props["enabled"] = json!({"type": "boolean"});
    props["reason"] = json!({"type": "string", "description": "Why it is off (a 410)"});
    json!({
        "type": "object",
        "required": ["success", "targets"],
        "properties": {
            "success": {"type": "boolean"},
            "message": {"type": "string"},
            "targets": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "events", "ids", "enabled"],
                "properties": props,
            }},
            "secrets": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Secrets exeio made, shown this once"},
        },
    })
}
