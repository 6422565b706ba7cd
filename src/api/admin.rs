//! Handlers around exeio itself: `/info`, browser sessions, named keys, the
//! audit log and shutdown.

use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use super::auth::{COOKIE, SESSION_LIFE};
use super::logs::{page, parse_query};
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::{Exchange, Response};
use crate::keys::{KeyError, Role};
use crate::protocol::Call;
use crate::spec;
use crate::timefmt::rfc3339;

fn json(v: serde_json::Value) -> Answer {
    Answer::Json(serde_json::to_vec(&v).unwrap_or_default())
}

pub fn info(api: &Api, _: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let view = api.published.load();
    Ok(json(json!({
        "success": true,
        "name": "exeio",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": api.started.elapsed().as_secs(),
        "started_at": rfc3339(api.started_wall),
        "tls": api.tls,
        "isolation": api.isolation,
        "saved": {
            "ok": view.store.error.is_none() && !view.store.pending,
            "pending": view.store.pending,
            "error": view.store.error,
            "retry_at": view.store.retry_at.map(rfc3339),
        },
        "endpoints": super::routes::endpoint_list(),
        "deploy": {
            "max_deploy_bytes": api.deployer.max_deploy_bytes,
            "max_release_bytes": api.deployer.max_release_bytes,
        },
    })))
}

pub fn shutdown(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let _ = api.body(ex)?;
    let answer = api.ask(Call::Shutdown).map(Answer::Done)?;
    let who = args.caller.as_ref().map_or("-", |c| c.who.name.as_str());
    crate::diag::say(&format!(
        "exeio: shutting down: POST /shutdown (key '{who}' from {}); stopping every process",
        ex.peer().ip()
    ));
    Ok(answer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    key: String,
}

/// `POST /session {"key"}`: a cookie for browsers (and `EventSource`).
pub fn login(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    // No form login: a cross-site `text/plain` or form post cannot carry
    // this type without a CORS preflight, which exeio never grants.
    let json = ex.header("content-type").is_some_and(|t| {
        let media = t.split(';').next().unwrap_or("");
        media
            .trim_matches([' ', '\t'])
            .eq_ignore_ascii_case("application/json")
    });
    if !json {
        return Ok(Answer::Reply(Response::json(
            415,
            br#"{"success":false,"message":"POST /session needs 'Content-Type: application/json'"}"#
                .to_vec(),
        )));
    }
    let body = api.body(ex)?;
    let login: Login = spec::parse_object(&body).map_err(ApiError::Invalid)?;
    let now = Instant::now();
    let Some(who) = api.keys.verify(login.key.trim()) else {
        api.throttle.failed(crate::http::group(ex.peer().ip()), now);
        return Err(ApiError::Unauthorized);
    };
    let (name, role) = (who.name.clone(), who.role);
    args.logged_in.set(Some(name.clone()));
    let token = api
        .sessions
        .open(who, now)
        .ok_or_else(|| ApiError::Unavailable("too many open sessions".into()))?;
    let secure = if api.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_LIFE.as_secs()
    );
    let body = json!({
        "success": true,
        "message": format!("logged in as '{name}'"),
        "name": name,
        "role": role.name(),
        "expires_in_seconds": SESSION_LIFE.as_secs(),
    });
    Ok(Answer::Reply(
        Response::json(200, serde_json::to_vec(&body).unwrap_or_default())
            .with_header("Set-Cookie", cookie)
            .with_header("Cache-Control", "no-store"),
    ))
}

/// `GET /session`: the name and role of the session cookie's holder, so a
/// reloaded page knows what to show. Only a cookie counts (a key header is
/// no session): 401 without a valid one. Open, so that a page without a
/// session is not counted as a failed authentication.
pub fn session(_: &Api, _: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    match &args.caller {
        Some(c) if c.by_cookie => Ok(Answer::Reply(
            Response::json(
                200,
                serde_json::to_vec(&json!({
                    "success": true,
                    "name": c.who.name,
                    "role": c.who.role.name(),
                }))
                .unwrap_or_default(),
            )
            .with_header("Cache-Control", "no-store"),
        )),
        _ => Err(ApiError::Unauthorized),
    }
}

pub fn logout(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let _ = api.body(ex)?;
    let closed = ex
        .header("cookie")
        .and_then(super::auth::session_cookie)
        .is_some_and(|t| api.sessions.close(t));
    let secure = if api.tls { "; Secure" } else { "" };
    let body = json!({
        "success": true,
        "message": if closed { "logged out" } else { "no session to end" },
    });
    Ok(Answer::Reply(
        Response::json(200, serde_json::to_vec(&body).unwrap_or_default()).with_header(
            "Set-Cookie",
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"),
        ),
    ))
}

pub fn keys(api: &Api, _: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    Ok(json(json!({"success": true, "keys": api.keys.list()})))
}

pub fn create_key(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewKey {
        name: String,
        role: String,
    }
    let body = api.body(ex)?;
    let k: NewKey = spec::parse_object(&body).map_err(ApiError::Invalid)?;
    let role = Role::parse(&k.role).ok_or_else(|| {
        ApiError::Invalid(spec::FieldError {
            field: "role".into(),
            message: format!("role must be read, operate or admin, not {:?}", k.role),
        })
    })?;
    let key = api.keys.create(&k.name, role).map_err(key_error)?;
    Ok(json(json!({
        "success": true,
        "message": format!("key '{}' created: it is shown this once", k.name),
        "name": k.name,
        "role": role.name(),
        "key": key,
    })))
}

pub fn revoke_key(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let _ = api.body(ex)?;
    let name = args.params.first().map(String::as_str).unwrap_or("");
    api.keys.revoke(name).map_err(key_error)?;
    Ok(json(json!({
        "success": true,
        "message": format!("key '{name}' revoked"),
    })))
}

fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::Invalid(m) => ApiError::Invalid(spec::FieldError {
            field: "name".into(),
            message: m,
        }),
        KeyError::Exists(n) => ApiError::Conflict(format!("a key named '{n}' already exists")),
        KeyError::NotFound(n) => ApiError::NotFound(format!("no key named '{n}'")),
        KeyError::Failed(m) => ApiError::Internal(m),
    }
}

/// `GET /audit?page=&page_size=`: newest first, like a log page.
pub fn audit(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let q = parse_query(ex.query())?;
    let log = api.audit_log.clone();
    page(ex, &log, &q, "logs")
}
