//! `POST /deploy/{id}`, `POST /rollback/{id}`, `GET /releases/{id}` (SPEC
//! 4c). Thin: the deploy's body is copied to the releases dir as it
//! arrives (`Exchange::copy_body`, under `--max-deploy-bytes`; the route
//! table marks its body as streamed, so the 1 MiB cap does not apply and
//! the key and role were checked before a byte of it was read), then the
//! flow (`deploy::flow`) runs on this connection's thread. The deploy lock
//! is dropped before the answer is sent.

use serde::Deserialize;
use serde_json::{Value, json};

use super::procs::path_id;
use super::{Answer, Api, Args};
use crate::deploy::flow::{Ended, Env, storage};
use crate::deploy::upload::{Upload, parse_sha256};
use crate::error::ApiError;
use crate::http::{BodyError, CopyError, Exchange, Response};
use crate::spec::ProcessSpec;

fn env(api: &Api) -> Env<'_> {
    Env {
        tx: &api.tx,
        published: &api.published,
        events: &api.events,
        logger: &api.logger,
        notifier: &api.notify,
        deployer: &api.deployer,
    }
}

fn spec_of(api: &Api, args: &Args) -> Result<std::sync::Arc<ProcessSpec>, ApiError> {
    let id = path_id(args)?;
    api.published
        .load()
        .get(id.as_str())
        .map(|p| p.spec.clone())
        .ok_or_else(|| ApiError::unknown_process(id.as_str()))
}

pub fn deploy(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let spec = spec_of(api, args)?;
    let expected = ex
        .header("x-exeio-sha256")
        .map(parse_sha256)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let d = &api.deployer;
    if ex.declares_more_than(usize::try_from(d.max_deploy_bytes).unwrap_or(usize::MAX)) {
        // Refused before the lock, the disk or a byte of the body.
        return Err(copy_error(
            CopyError::Body(BodyError::TooLarge),
            d.max_deploy_bytes,
        ));
    }
    let ended = {
        let _lock = d.lock(&spec.id)?;
        let rel = d.releases(&spec.id)?;
        let temp = rel
            .upload_path()
            .map_err(|e| storage("make the upload file", &e))?;
        let mut upload =
            Upload::create(temp.path()).map_err(|e| storage("make the upload file", &e))?;
        ex.copy_body(&mut upload, d.max_deploy_bytes)
            .map_err(|e| copy_error(e, d.max_deploy_bytes))?;
        let (sha256, bytes) = upload
            .finish()
            .map_err(|e| storage("store the upload", &e))?;
        if bytes == 0 {
            return Err(ApiError::BadRequest(
                "the body is empty: send the release as a .tar.gz or .tar".into(),
            ));
        }
        env(api).deploy(&spec, &rel, temp, &sha256, bytes, expected.as_deref())
    }?;
    Ok(answer(ended))
}

fn copy_error(e: CopyError, cap: u64) -> ApiError {
    match e {
        CopyError::Body(BodyError::TooLarge) => ApiError::TooLarge(format!(
            "the release is larger than --max-deploy-bytes ({cap} bytes): nothing was deployed"
        )),
        CopyError::Body(BodyError::Timeout) => ApiError::Timeout,
        CopyError::Body(BodyError::Malformed(m)) => ApiError::BadRequest(format!(
            "the upload did not arrive whole ({m}): nothing was deployed"
        )),
        CopyError::Sink(e) => storage("store the upload", &e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    release: Option<String>,
}

pub fn rollback(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let spec = spec_of(api, args)?;
    let body = api.body(ex)?;
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let d = &api.deployer;
    let ended = {
        let _lock = d.lock(&spec.id)?;
        let rel = d.releases(&spec.id)?;
        env(api).rollback(&spec, &rel, req.release)
    }?;
    Ok(answer(ended))
}

pub fn releases(api: &Api, _: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let spec = spec_of(api, args)?;
    let d = &api.deployer;
    let root = d.data_dir.join("releases").join(spec.id.as_str());
    let (current, list) = if root.is_dir() {
        let rel = d.releases(&spec.id)?;
        (rel.current(), rel.list())
    } else {
        (None, Vec::new())
    };
    let body = json!({"success": true, "current": current, "releases": list});
    Ok(Answer::Json(serde_json::to_vec(&body).unwrap_or_default()))
}

/// 200 for a live release, 409 for a rolled-back one (SPEC 4c).
fn answer(ended: Ended) -> Answer {
    let (status, body) = match ended {
        Ended::Live { release, previous } => (
            200,
            json!({"success": true, "message": format!("release {release} is live and healthy"),
                   "release": release, "previous": previous}),
        ),
        Ended::RolledBack {
            message,
            release,
            back_to,
            ..
        } => (
            409,
            json!({"success": false, "message": message, "release": release,
                   "rolled_back_to": back_to.map_or(Value::Null, Value::String)}),
        ),
    };
    Answer::Reply(Response::json(
        status,
        serde_json::to_vec(&body).unwrap_or_default(),
    ))
}

/// The OpenAPI schema of a deploy's or rollback's body.
pub fn body_schema(b: super::routes::Body) -> Value {
    if b == super::routes::Body::Release {
        return json!({"type": "string", "format": "binary",
            "description": "The release: a .tar.gz or .tar, at most --max-deploy-bytes"});
    }
    json!({
        "type": "object", "additionalProperties": false,
        "properties": {"release": {"type": "string",
            "description": "Default: the newest earlier release that passed its health gate"}}
    })
}

/// The OpenAPI schema of a deploy's or rollback's answer (200; a 409 adds
/// `rolled_back_to`).
pub fn reply_schema() -> Value {
    json!({
        "type": "object", "required": ["success", "release"],
        "properties": {
            "success": {"type": "boolean"},
            "message": {"type": "string"},
            "release": {"type": "string"},
            "previous": {"type": "string", "nullable": true},
        }
    })
}

/// The OpenAPI schema of `GET /releases/{id}`.
pub fn releases_schema() -> Value {
    json!({
        "type": "object", "required": ["success", "current", "releases"],
        "properties": {
            "success": {"type": "boolean"},
            "current": {"type": "string", "nullable": true},
            "releases": {"type": "array", "items": {
                "type": "object",
                "required": ["release", "sha256", "bytes", "deployed_at", "outcome"],
                "properties": {
                    "release": {"type": "string"},
                    "sha256": {"type": "string"},
                    "bytes": {"type": "integer"},
                    "deployed_at": {"type": "string", "format": "date-time"},
                    "outcome": {"type": "string", "enum": ["pending", "succeeded", "rolled_back", "failed"]},
                }
            }},
        }
    })
}
