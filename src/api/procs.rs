//! Handlers of the process endpoints. Reads render the published view;
//! changes parse their input and send one `Call` to the supervisor.

use serde::Deserialize;
use serde_json::{Value, json};

use super::current::Current;
use super::render::{self, Clock};
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::http::request::query_pairs;
use crate::protocol::{Apply, Call};
use crate::spec::{self, AddRequest, FieldError, ProcessId, ProcessSpec};

/// The id in the path. An id that is not valid cannot name a process: 404.
pub fn path_id(args: &Args) -> Result<ProcessId, ApiError> {
    let raw = args.params.first().map(String::as_str).unwrap_or("");
    ProcessId::parse(raw).map_err(|_| ApiError::unknown_process(raw))
}

pub fn list(api: &Api, _: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let view = api.published.load();
    let now = Clock::now();
    Ok(Answer::Json(render::list_body(
        view.procs.iter().map(|p| &**p),
        &now,
        args.shown(),
        &Current::all(&api.deployer.data_dir),
    )))
}

pub fn status(api: &Api, _: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    let view = api.published.load();
    let copies = view.copies(id.as_str());
    if view.get(id.as_str()).is_none() && !copies.is_empty() {
        let now = Clock::now();
        return Ok(Answer::Json(render::group_body(
            id.as_str(),
            &copies,
            &now,
            args.shown(),
            &Current::all(&api.deployer.data_dir),
        )));
    }
    let p = view
        .get(id.as_str())
        .ok_or_else(|| ApiError::unknown_process(id.as_str()))?;
    Ok(Answer::Json(render::status_body(
        p,
        &Clock::now(),
        args.shown(),
        &Current::one(&api.deployer.data_dir, id.as_str()),
    )))
}

/// `GET /runs/{id}?limit=N`: a job's runs, newest first.
pub fn runs(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    let mut limit = 50usize;
    for (k, v) in query_pairs(ex.query()) {
        if k == "limit" {
            limit = v
                .and_then(|v| v.parse().ok())
                .filter(|&n| n >= 1)
                .ok_or_else(|| ApiError::BadRequest("limit must be a positive integer".into()))?;
        }
    }
    let view = api.published.load();
    let p = view.one(id.as_str())?;
    if !p.spec.is_job() {
        return Err(ApiError::Conflict(format!(
            "process '{id}' is not a periodic or scheduled job: it has no runs"
        )));
    }
    let runs: Vec<_> = p.runs.iter().rev().take(limit).collect();
    Ok(Answer::Json(
        serde_json::to_vec(&json!({"success": true, "runs": runs})).unwrap_or_default(),
    ))
}

fn call_by_id(
    api: &Api,
    ex: &mut Exchange<'_>,
    args: &Args,
    call: fn(ProcessId) -> Call,
) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    skip_body(api, ex)?;
    api.ask(call(id)).map(Answer::Done)
}

pub fn start(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    call_by_id(api, ex, args, Call::Start)
}

pub fn stop(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    call_by_id(api, ex, args, Call::Stop)
}

pub fn restart(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    call_by_id(api, ex, args, Call::Restart)
}

pub fn remove(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    call_by_id(api, ex, args, Call::Remove)
}

pub fn run_now(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    call_by_id(api, ex, args, Call::RunNow)
}

pub fn restart_all(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    skip_body(api, ex)?;
    api.ask(Call::RestartAll).map(Answer::Done)
}

pub fn stop_all(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    skip_body(api, ex)?;
    api.ask(Call::StopAll).map(Answer::Done)
}

/// Endpoints that take no body still read a small one (a client may send
/// `{}`), so the connection can be kept alive.
fn skip_body(api: &Api, ex: &mut Exchange<'_>) -> Result<(), ApiError> {
    if ex.declares_more_than(64 * 1024) {
        return Err(ApiError::PayloadTooLarge);
    }
    api.body(ex).map(|_| ())
}

pub fn input(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        input: String,
    }
    let id = path_id(args)?;
    let body = api.body(ex)?;
    let input: Input = spec::parse_object(&body).map_err(ApiError::Invalid)?;
    let mut bytes = input.input.into_bytes();
    bytes.push(b'\n');
    api.ask(Call::Input(id, bytes)).map(Answer::Done)
}

pub fn add(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let body = api.body(ex)?;
    let spec = spec::parse_add(&body).map_err(ApiError::Invalid)?;
    api.ask(Call::Add(Box::new(spec))).map(Answer::Done)
}

/// `POST /update/{id}`: a whole configuration; its `id` must match or be absent.
pub fn update(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    let body = api.body(ex)?;
    let mut value: Value = parse_json_object(&body)?;
    match value.get("id") {
        None => {
            value["id"] = Value::String(id.to_string());
        }
        Some(Value::String(s)) if s == id.as_str() => {}
        Some(other) => {
            return Err(ApiError::Invalid(FieldError {
                field: "id".into(),
                message: format!("the body's id {other} is not the id in the path ('{id}')"),
            }));
        }
    }
    let req: AddRequest = spec::request(value).map_err(ApiError::Invalid)?;
    let spec = spec::validate(req).map_err(ApiError::Invalid)?;
    api.ask(Call::Update(Box::new(spec))).map(Answer::Done)
}

/// `POST /apply`: validated all or nothing before anything changes.
pub fn apply(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        processes: Vec<Value>,
        #[serde(default)]
        prune: bool,
        #[serde(default)]
        dry_run: bool,
    }
    let body = api.body(ex)?;
    let b: Body = spec::parse_object(&body).map_err(ApiError::Invalid)?;
    let mut processes: Vec<ProcessSpec> = Vec::with_capacity(b.processes.len());
    for (i, v) in b.processes.into_iter().enumerate() {
        let name = v
            .get("id")
            .and_then(Value::as_str)
            .map(|id| format!("processes[{i}] (id '{id}')"))
            .unwrap_or_else(|| format!("processes[{i}]"));
        let req: AddRequest = spec::request(v)
            .map_err(|e| ApiError::Invalid(e.within(&format!("processes[{i}]"))))
            .map_err(|e| prefix(e, &name))?;
        let spec = spec::validate(req)
            .map_err(|e| ApiError::Invalid(e.within(&format!("processes[{i}]"))))
            .map_err(|e| prefix(e, &name))?;
        if processes.iter().any(|p| p.id == spec.id) {
            return Err(ApiError::Invalid(FieldError {
                field: format!("processes[{i}].id"),
                message: format!("{name}: the id '{}' appears twice", spec.id),
            }));
        }
        processes.push(spec);
    }
    let call = Call::Apply(Box::new(Apply {
        processes,
        prune: b.prune,
        dry_run: b.dry_run,
    }));
    // A process that cannot start refuses the whole apply: a 400 like that
    // of POST /add, naming the entry, with the plan that was refused.
    Ok(Answer::Done(api.ask(call)?))
}

/// Name the entry in the message of an apply error.
fn prefix(e: ApiError, name: &str) -> ApiError {
    match e {
        ApiError::Invalid(f) => ApiError::Invalid(FieldError {
            message: format!("{name}: {}", f.message),
            field: f.field,
        }),
        other => other,
    }
}

fn parse_json_object(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = spec::parse_object(body).map_err(ApiError::Invalid)?;
    Ok(v)
}
