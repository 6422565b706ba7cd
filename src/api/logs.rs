//! `GET /logs/{id}` (a page, newest first, streamed as it is read; or a live
//! follow that starts with the last lines, like `tail -f`), `POST
//! /clear-log/{id}`, and the page reader shared with `GET /audit`.

use std::cell::RefCell;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::bounded;

use super::procs::path_id;
use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::http::request::query_pairs;
use crate::logs::{Filter, LogFile, Op};
use crate::spec::ProcessId;

pub const MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;
const DEFAULT_TAIL: usize = 10;
/// How often a follower looks for new lines (and for its client leaving).
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// The query of a log request.
pub struct LogQuery {
    pub page: usize,
    pub page_size: usize,
    pub follow: bool,
    pub tail: usize,
    pub filter: Filter,
}

pub fn parse_query(query: &str) -> Result<LogQuery, ApiError> {
    let mut q = LogQuery {
        page: 1,
        page_size: DEFAULT_PAGE_SIZE,
        follow: false,
        tail: DEFAULT_TAIL,
        filter: Filter::All,
    };
    let positive = |name: &str, v: &Option<String>, zero_ok: bool| -> Result<usize, ApiError> {
        match v.as_deref().and_then(|v| v.parse::<usize>().ok()) {
            Some(n) if n >= 1 || zero_ok => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be a {} integer, got {:?}",
                if zero_ok { "non-negative" } else { "positive" },
                v.as_deref().unwrap_or("")
            ))),
        }
    };
    for (k, v) in query_pairs(query) {
        match k {
            "page" => q.page = positive(k, &v, false)?,
            "page_size" => q.page_size = positive(k, &v, false)?.min(MAX_PAGE_SIZE),
            "tail" => q.tail = positive(k, &v, true)?.min(MAX_PAGE_SIZE),
            "follow" => {
                q.follow = match v.as_deref() {
                    Some("true" | "1" | "yes") => true,
                    Some("false" | "0" | "no" | "") => false,
                    other => {
                        return Err(ApiError::BadRequest(format!(
                            "follow must be true or false, got {:?}",
                            other.unwrap_or("")
                        )));
                    }
                }
            }
            "stream" => {
                q.filter = v.as_deref().and_then(Filter::parse).ok_or_else(|| {
                    ApiError::BadRequest("stream must be stdout, stderr or system".into())
                })?
            }
            _ => {}
        }
    }
    Ok(q)
}

/// The log of process `id`, from the published view.
fn log_of(api: &Api, id: &ProcessId) -> Result<Arc<LogFile>, ApiError> {
    api.published.load().one(id.as_str()).map(|p| p.log.clone())
}

pub fn logs(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    let q = parse_query(ex.query())?;
    let log = log_of(api, &id)?;
    if q.follow {
        return follow(api, ex, &id, log, &q);
    }
    page(ex, &log, &q, "logs")
}

/// Write a page as JSON while it is read: a 1,000-line page of long lines
/// never sits whole in memory.
pub fn page(
    ex: &mut Exchange<'_>,
    log: &LogFile,
    q: &LogQuery,
    key: &str,
) -> Result<Answer, ApiError> {
    let w = RefCell::new(ex.writer(200, "application/json"));
    let mut first = true;
    let read = log.page(
        q.page,
        q.page_size,
        q.filter,
        |total| {
            write!(
                w.borrow_mut(),
                r#"{{"success":true,"page":{},"page_size":{},"total_lines":{total},"{key}":["#,
                q.page,
                q.page_size
            )
        },
        |line| {
            let mut w = w.borrow_mut();
            if !std::mem::take(&mut first) {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, &*String::from_utf8_lossy(line))?;
            Ok(())
        },
    );
    let mut w = w.into_inner();
    match read {
        Ok(()) => {
            if w.write_all(b"]}").is_ok() {
                w.finish();
            }
            Ok(Answer::Streamed)
        }
        Err(e) if !w.started() => {
            drop(w);
            Err(ApiError::Internal(format!("cannot read the log: {e}")))
        }
        Err(_) => Ok(Answer::Streamed), // the client went away mid-page
    }
}

/// Stream new lines until the client leaves, the process is removed, or
/// exeio stops.
fn follow(
    api: &Api,
    ex: &mut Exchange<'_>,
    id: &crate::spec::ProcessId,
    log: Arc<LogFile>,
    q: &LogQuery,
) -> Result<Answer, ApiError> {
    let (tail, mut follower) = log
        .follow_tail(q.tail, q.filter)
        .map_err(|e| ApiError::Internal(format!("cannot read the log: {e}")))?;
    let headers = [
        ("Cache-Control", "no-cache".to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
    ];
    let Ok(mut stream) = ex.stream(200, "text/plain; charset=utf-8", &headers) else {
        return Ok(Answer::Streamed);
    };
    let mut out: Vec<u8> = Vec::with_capacity(8 * 1024);
    for line in tail {
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    let mut raw = Vec::new();
    loop {
        if !out.is_empty() {
            if stream.send(&out).is_err() {
                return Ok(Answer::Streamed);
            }
            out.clear();
        }
        if stream.client_gone(FOLLOW_POLL) {
            return Ok(Answer::Streamed);
        }
        let still_there = api
            .published
            .load()
            .get(id.as_str())
            .is_some_and(|p| Arc::ptr_eq(&p.log, &log));
        if !still_there || api.stopping.load(Ordering::Relaxed) {
            stream.finish();
            return Ok(Answer::Streamed);
        }
        raw.clear();
        if follower.read_new(&mut raw).is_err() {
            stream.finish();
            return Ok(Answer::Streamed);
        }
        if q.filter == Filter::All {
            out.extend_from_slice(&raw);
        } else {
            for line in raw.split_inclusive(|&b| b == b'\n') {
                if q.filter.keeps(line) {
                    out.extend_from_slice(line);
                }
            }
        }
    }
}

pub fn clear(api: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let id = path_id(args)?;
    let _ = api.body(ex)?;
    // A group's: the log of each of its copies.
    let view = api.published.load();
    let copies = view.copies(id.as_str());
    let logs: Vec<(&ProcessId, Arc<LogFile>)> = match view.get(id.as_str()) {
        Some(p) => vec![(p.id(), p.log.clone())],
        None if !copies.is_empty() => copies.iter().map(|p| (p.id(), p.log.clone())).collect(),
        None => return Err(ApiError::unknown_process(id.as_str())),
    };
    for (one, log) in &logs {
        let (tx, rx) = bounded(1);
        api.logger.post(log, Op::Clear(tx));
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ApiError::Internal(format!(
                    "cannot clear the log of '{one}': {e}"
                )));
            }
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "the log of '{one}' did not answer in time"
                )));
            }
        }
    }
    let message = match logs.len() {
        1 => format!("log of '{id}' cleared"),
        n => format!("logs of the {n} instances of '{id}' cleared"),
    };
    Ok(Answer::Json(
        serde_json::to_vec(&serde_json::json!({"success": true, "message": message}))
            .unwrap_or_default(),
    ))
}
