//! `GET /events`: Server-Sent Events of every change, written and flushed
//! one by one on the connection's own thread. Resumes from `Last-Event-ID`
//! (or `?since=N`), says `event: gap` when what was missed is gone (or the
//! id is not of this run), sends a `: keep-alive` comment every 15 s, and
//! ends when the client leaves, when it falls too far behind (the bus drops
//! it), or when exeio stops.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::http::request::query_pairs;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const CHECK_EVERY: Duration = Duration::from_secs(1);

pub fn events(api: &Api, ex: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    let mut since = None;
    if let Some(v) = ex.header("last-event-id") {
        since = Some(v.trim().parse::<u64>().map_err(|_| {
            ApiError::BadRequest("Last-Event-ID must be an event id (a number)".into())
        })?);
    }
    for (k, v) in query_pairs(ex.query()) {
        if k == "since" {
            since = Some(v.and_then(|v| v.parse().ok()).ok_or_else(|| {
                ApiError::BadRequest("since must be an event id (a number)".into())
            })?);
        }
    }
    let sub = api.events.subscribe(since);
    let headers = [
        ("Cache-Control", "no-cache".to_owned()),
        ("X-Accel-Buffering", "no".to_owned()),
    ];
    let Ok(mut stream) = ex.stream(200, "text/event-stream", &headers) else {
        return Ok(Answer::Streamed);
    };
    let mut out = String::from("retry: 2000\n\n");
    if sub.gap {
        out.push_str(&format!(
            "event: gap\ndata: {{\"since\":{},\"message\":\"events after this id are gone, or it is not an id of this run of exeio: reload the state\"}}\n\n",
            since.unwrap_or(0)
        ));
    }
    for e in &sub.replay {
        out.push_str(&e.frame);
    }
    let mut last_sent = Instant::now();
    loop {
        if !out.is_empty() {
            if stream.send(out.as_bytes()).is_err() {
                return Ok(Answer::Streamed);
            }
            out.clear();
            last_sent = Instant::now();
        }
        match sub.queue.recv_timeout(CHECK_EVERY) {
            Ok(e) => {
                out.push_str(&e.frame);
                for e in sub.queue.try_iter().take(64) {
                    out.push_str(&e.frame);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if stream.client_gone(Duration::ZERO) || api.stopping.load(Ordering::Relaxed) {
                    stream.finish();
                    return Ok(Answer::Streamed);
                }
                if last_sent.elapsed() >= KEEP_ALIVE {
                    out.push_str(": keep-alive\n\n");
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = stream.send(
                    b"event: dropped\ndata: {\"message\":\"this client fell behind; reconnect with Last-Event-ID\"}\n\n",
                );
                stream.finish();
                return Ok(Answer::Streamed);
            }
        }
    }
}
