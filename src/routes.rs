//! Pure routing: (method, url) → `Endpoint`, and replies → (status, JSON).
//! The one place where an `ApiError` becomes an HTTP status.

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::protocol::{Answer, Snapshot};
use crate::spec::ProcessId;

pub const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Info,
    Add,
    Start(ProcessId),
    Restart(ProcessId),
    Stop(ProcessId),
    Remove(ProcessId),
    RestartAll,
    StopAll,
    List,
    Status(ProcessId),
    Logs {
        id: ProcessId,
        page: usize,
        page_size: usize,
    },
    Follow(ProcessId),
    Input(ProcessId),
    ClearLog(ProcessId),
    Metrics,
    Shutdown,
}

/// Every route, for `GET /info`.
pub const ENDPOINTS: &[&str] = &[
    "POST /add",
    "POST /start/{id}",
    "POST /restart/{id}",
    "POST /stop/{id}",
    "POST /remove/{id}",
    "POST /restart-all",
    "POST /stop-all",
    "GET /list",
    "GET /status/{id}",
    "GET /logs/{id}?page=1&page_size=50",
    "GET /logs/{id}?follow=true",
    "POST /input/{id}",
    "POST /clear-log/{id}",
    "GET /info",
    "GET /metrics",
    "POST /shutdown",
];

pub fn is_public(method: &str, url: &str) -> bool {
    method == "GET" && url.split('?').next() == Some("/info")
}

/// Route a request. Unknown paths are 404, known paths with the wrong method 405.
pub fn route(method: &str, url: &str) -> Result<Endpoint, ApiError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut segs = path.strip_prefix('/').unwrap_or(path).splitn(2, '/');
    let name = segs.next().unwrap_or("");
    let id = segs.next();
    let want = |m: &str| -> Result<(), ApiError> {
        if method == m {
            Ok(())
        } else {
            Err(ApiError::MethodNotAllowed(format!(
                "{path} takes {m}, not {method}"
            )))
        }
    };
    let with_id = |m: &str, f: fn(ProcessId) -> Endpoint| -> Result<Endpoint, ApiError> {
        let raw = id.ok_or_else(|| not_found(path))?;
        want(m)?;
        Ok(f(path_id(raw)?))
    };
    match (name, id) {
        ("info", None) => want("GET").map(|_| Endpoint::Info),
        ("add", None) => want("POST").map(|_| Endpoint::Add),
        ("list", None) => want("GET").map(|_| Endpoint::List),
        ("metrics", None) => want("GET").map(|_| Endpoint::Metrics),
        ("restart-all", None) => want("POST").map(|_| Endpoint::RestartAll),
        ("stop-all", None) => want("POST").map(|_| Endpoint::StopAll),
        ("shutdown", None) => want("POST").map(|_| Endpoint::Shutdown),
        ("start", _) => with_id("POST", Endpoint::Start),
        ("restart", _) => with_id("POST", Endpoint::Restart),
        ("stop", _) => with_id("POST", Endpoint::Stop),
        ("remove", _) => with_id("POST", Endpoint::Remove),
        ("status", _) => with_id("GET", Endpoint::Status),
        ("input", _) => with_id("POST", Endpoint::Input),
        ("clear-log", _) => with_id("POST", Endpoint::ClearLog),
        ("logs", Some(raw)) => {
            want("GET")?;
            let id = path_id(raw)?;
            logs_query(id, query)
        }
        _ => Err(not_found(path)),
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::NotFound(format!("no such endpoint: {path} (GET /info lists them)"))
}

/// A percent-decoded id from a path. An id that is not valid cannot name a
/// process: 404, and it never reaches a file name.
fn path_id(raw: &str) -> Result<ProcessId, ApiError> {
    let decoded = percent_decode(raw).ok_or_else(|| ApiError::unknown_process(raw))?;
    ProcessId::parse(&decoded).map_err(|_| ApiError::unknown_process(&decoded))
}

fn logs_query(id: ProcessId, query: &str) -> Result<Endpoint, ApiError> {
    let mut page = 1;
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut follow = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).unwrap_or_default();
        match k {
            "page" => page = positive(k, &v)?,
            "page_size" => page_size = positive(k, &v)?.min(MAX_PAGE_SIZE),
            "follow" => follow = matches!(v.as_str(), "true" | "1" | "yes"),
            _ => {}
        }
    }
    Ok(if follow {
        Endpoint::Follow(id)
    } else {
        Endpoint::Logs {
            id,
            page,
            page_size,
        }
    })
}

fn positive(name: &str, v: &str) -> Result<usize, ApiError> {
    match v.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a positive integer, got {v:?}"
        ))),
    }
}

/// Decode `%XX` escapes; `None` if malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn status_of(e: &ApiError) -> u16 {
    match e {
        ApiError::BadRequest(_) => 400,
        ApiError::Unauthorized => 401,
        ApiError::NotFound(_) => 404,
        ApiError::MethodNotAllowed(_) => 405,
        ApiError::Conflict(_) => 409,
        ApiError::PayloadTooLarge => 413,
        ApiError::Internal(_) => 500,
        ApiError::Unavailable(_) => 503,
    }
}

pub fn error_body(e: &ApiError) -> (u16, Value) {
    (
        status_of(e),
        json!({"success": false, "message": e.to_string()}),
    )
}

/// JSON bytes for an answer (`Answer::Log` is turned into a page by the
/// caller). Serialized straight from the snapshots, without a `Value` tree:
/// `GET /list` is the hottest path.
pub fn answer_body(a: &Answer) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        success: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        process: Option<&'a Snapshot>,
        #[serde(skip_serializing_if = "Option::is_none")]
        processes: Option<&'a [Snapshot]>,
    }
    fn body<'a>(
        message: Option<&'a str>,
        process: Option<&'a Snapshot>,
        processes: Option<&'a [Snapshot]>,
    ) -> Body<'a> {
        Body {
            success: true,
            message,
            process,
            processes,
        }
    }
    let bytes = match a {
        Answer::List(list) => serde_json::to_vec(list),
        Answer::Done { message, process } => {
            serde_json::to_vec(&body(Some(message), process.as_deref(), None))
        }
        Answer::Many { message, processes } => {
            serde_json::to_vec(&body(Some(message), None, Some(processes)))
        }
        Answer::Process(p) => serde_json::to_vec(&body(None, Some(p), None)),
        Answer::Log(_) => serde_json::to_vec(&body(None, None, None)),
    };
    bytes
        .unwrap_or_else(|_| br#"{"success":false,"message":"cannot serialize the reply"}"#.to_vec())
}

/// Prometheus text for `GET /metrics`.
pub fn metrics(list: &[Snapshot]) -> String {
    let mut s = String::new();
    let mut family =
        |name: &str, help: &str, kind: &str, value: &dyn Fn(&Snapshot) -> Option<f64>| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for p in list {
                if let Some(v) = value(p) {
                    s.push_str(&format!("{name}{{id=\"{}\"}} {v}\n", p.id));
                }
            }
        };
    family(
        "exeio_process_up",
        "1 if the process is running",
        "gauge",
        &|p| Some(if p.is_running { 1.0 } else { 0.0 }),
    );
    family(
        "exeio_process_runs_total",
        "runs started",
        "counter",
        &|p| Some(p.run_count as f64),
    );
    family(
        "exeio_process_restarts",
        "consecutive restarts",
        "gauge",
        &|p| Some(f64::from(p.restart_count)),
    );
    family(
        "exeio_process_cpu_percent",
        "CPU use since start",
        "gauge",
        &|p| p.cpu_percent,
    );
    family(
        "exeio_process_rss_bytes",
        "resident memory",
        "gauge",
        &|p| p.rss_bytes.map(|r| r as f64),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ProcessId {
        ProcessId::parse(s).unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/list"), Ok(Endpoint::List));
        assert_eq!(route("POST", "/stop/web"), Ok(Endpoint::Stop(id("web"))));
        assert_eq!(route("POST", "/stop/we%62"), Ok(Endpoint::Stop(id("web"))));
        assert_eq!(
            route("GET", "/logs/a?page=2&page_size=5000"),
            Ok(Endpoint::Logs {
                id: id("a"),
                page: 2,
                page_size: 1000
            })
        );
        assert_eq!(
            route("GET", "/logs/a?follow=true"),
            Ok(Endpoint::Follow(id("a")))
        );
        assert!(is_public("GET", "/info?x=1"));
        assert!(!is_public("POST", "/info"));
    }

    #[test]
    fn errors() {
        let code = |m, u| route(m, u).map_err(|e| status_of(&e)).err();
        assert_eq!(code("GET", "/add"), Some(405));
        assert_eq!(code("POST", "/list"), Some(405));
        assert_eq!(code("GET", "/nope"), Some(404));
        assert_eq!(code("POST", "/stop"), Some(404));
        assert_eq!(code("POST", "/stop/a/b"), Some(404));
        assert_eq!(code("POST", "/stop/%2e%2e"), Some(404));
        assert_eq!(code("POST", "/stop/a%2Fb"), Some(404));
        assert_eq!(code("POST", "/stop/%zz"), Some(404));
        assert_eq!(code("GET", "/logs/a?page=0"), Some(400));
        assert_eq!(code("GET", "/logs/a?page_size=x"), Some(400));
        assert_eq!(code("GET", "/list/"), Some(404));
    }
}
