//! `GET /health/{id}`: a process's health and its last checks, newest
//! first, from the published view (what `exeio health ID` prints).

use serde_json::json;

use super::procs::path_id;
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::timefmt::rfc3339;

pub fn checks(api: &Api, _: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    let view = api.published.load();
    let p = view.one(id.as_str())?;
    let checks: Vec<_> = p
        .health_checks
        .iter()
        .rev()
        .map(|c| {
            json!({
                "at": rfc3339(c.at),
                "ok": c.ok,
                "message": c.message,
                "took_seconds": (c.took.as_secs_f64() * 1000.0).round() / 1000.0,
            })
        })
        .collect();
    let (ok, failed) = p.health_counts;
    let body = json!({
        "success": true,
        "id": id.as_str(),
        "health": p.health.name(),
        "health_message": p.health_message,
        "health_checked_at": p.health_checked_at.map(rfc3339),
        "probe": p.spec.health.as_ref().map(|h| h.to_request()),
        "checks_ok": ok,
        "checks_failed": failed,
        "checks": checks,
    });
    Ok(Answer::Json(serde_json::to_vec(&body).unwrap_or_default()))
}
