//! HTTP workers: body cap → auth → route → one `Call` to the supervisor →
//! reply. Thin: no process state here. Slow reads (log pages, follow
//! streams) run on the worker or on a thread of their own, never on the
//! supervisor thread.

use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, bounded};
use serde_json::{Value, json};
use tiny_http::{Header, Request, Response, Server};

use crate::auth::ApiKey;
use crate::conn::Connection;
use crate::error::ApiError;
use crate::follow;
use crate::logs::LogFile;
use crate::procfs;
use crate::protocol::{Answer, Call, Msg};
use crate::routes::{self, Endpoint};
use crate::spec;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024 * 1024;
const WORKER_STACK: usize = 256 * 1024;
/// tiny_http reads bodies up to this size before handing the request over.
const EAGER_BODY: usize = 1024;
/// At most this many slow requests at once; more get a 503.
const MAX_SLOW: usize = 512;
/// Largest declared body we let tiny_http drain (into one buffer) on drop.
const MAX_DRAINED_BODY: usize = 64 * 1024 * 1024;
/// A client must send its body within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a quick call may take before the client gets a 503.
const QUICK_REPLY: Duration = Duration::from_secs(30);
/// Stop-like calls wait for the exit: the longest grace period plus slack.
const SLOW_REPLY: Duration = Duration::from_secs(spec::MAX_STOP_TIMEOUT_SECONDS + 60);

/// tiny_http drains an unread body when the request is dropped, into one
/// buffer of the declared size: a huge declared length would abort the
/// process. For a length no buffer should hold, answer on the socket
/// ourselves and never drop the request (it is leaked: a few hundred bytes
/// and tiny_http's thread for that connection, the price of not aborting).
fn refuse_unbufferable_body(req: Request, routed: &Result<Endpoint, ApiError>) -> Option<Request> {
    match req.body_length() {
        Some(n) if n > MAX_DRAINED_BODY => {}
        _ => return Some(req),
    }
    let conn = req.remote_addr().and_then(|peer| Connection::find(*peer));
    let Some(conn) = conn else { return Some(req) };
    let e = match routed {
        Err(e) => e.clone(),
        Ok(_) => ApiError::PayloadTooLarge,
    };
    let (status, body) = routes::error_body(&e);
    conn.answer_and_close(status, &body.to_string());
    std::mem::forget(req);
    None
}

/// Shared by all workers.
pub struct Api {
    pub server: Arc<Server>,
    pub key: ApiKey,
    pub tx: Sender<Msg>,
    pub started: Instant,
    pub stopping: AtomicBool,
    /// Requests running on threads of their own.
    pub slow: AtomicUsize,
}

pub fn start_workers(api: Arc<Api>, n: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let api = api.clone();
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .stack_size(WORKER_STACK)
                .spawn(move || worker(api))
        })
        .collect()
}

/// Wake every worker and let them end.
pub fn stop_workers(api: &Api, workers: Vec<JoinHandle<()>>) {
    api.stopping.store(true, Ordering::SeqCst);
    for _ in 0..workers.len() {
        api.server.unblock();
    }
    for w in workers {
        let _ = w.join();
    }
}

fn worker(api: Arc<Api>) {
    loop {
        let req = match api.server.recv() {
            Ok(req) => req,
            Err(_) if api.stopping.load(Ordering::SeqCst) => return,
            Err(_) => continue, // an accept error: keep serving
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| handle(&api, req)));
        if outcome.is_err() {
            // The request was dropped during the panic: tiny_http answered 500.
            crate::diag::warn("a request handler panicked; the request got a 500");
        }
    }
}

fn handle(api: &Arc<Api>, req: Request) {
    let method = req.method().as_str().to_owned();
    let url = req.url().to_owned();
    let routed = if routes::is_public(&method, &url) || authorized(api, &req) {
        routes::route(&method, &url)
    } else {
        Err(ApiError::Unauthorized)
    };
    let Some(req) = refuse_unbufferable_body(req, &routed) else {
        return;
    };
    let body_on_socket = body_on_socket(&req);
    let waits = matches!(
        routed,
        Ok(Endpoint::Stop(_)
            | Endpoint::Restart(_)
            | Endpoint::Remove(_)
            | Endpoint::StopAll
            | Endpoint::RestartAll)
    );
    if !body_on_socket && !waits {
        return answer(api, req, routed);
    }
    // A body still on the socket (read, or drained by tiny_http when the
    // request is dropped), or a reply that waits for a process to exit: a
    // thread of its own, so no client can hold a worker.
    if api.slow.fetch_add(1, Ordering::SeqCst) >= MAX_SLOW {
        api.slow.fetch_sub(1, Ordering::SeqCst);
        return respond_err(
            req,
            &ApiError::Unavailable("too many requests in progress".into()),
        );
    }
    let (api2, slot) = (api.clone(), api.clone());
    let spawned = std::thread::Builder::new()
        .name("http-slow".into())
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let _slot = SlowSlot(slot);
            if body_on_socket
                && let Some(conn) = req.remote_addr().and_then(|p| Connection::find(*p))
            {
                conn.set_read_timeout(BODY_TIMEOUT);
            }
            answer(&api2, req, routed);
        });
    if spawned.is_err() {
        crate::diag::warn("cannot start a thread for a slow request");
    }
}

fn answer(api: &Api, req: Request, routed: Result<Endpoint, ApiError>) {
    match routed {
        Ok(endpoint) => serve(api, req, endpoint),
        Err(e) => respond_err(req, &e),
    }
}

/// Does the body still have to come off the socket? tiny_http has already
/// read small bodies; a larger or chunked one is read by us or drained by
/// tiny_http when the request is dropped.
fn body_on_socket(req: &Request) -> bool {
    match req.body_length() {
        Some(n) => n > EAGER_BODY,
        None => req
            .headers()
            .iter()
            .any(|h| h.field.equiv("Transfer-Encoding")),
    }
}

/// Releases a slow-request slot when its thread ends, panics included.
struct SlowSlot(Arc<Api>);

impl Drop for SlowSlot {
    fn drop(&mut self) {
        self.0.slow.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(api: &Api, mut req: Request, endpoint: Endpoint) {
    let call = match endpoint {
        Endpoint::Info => {
            let body = json!({
                "success": true,
                "name": "exeio",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": api.started.elapsed().as_secs(),
                "endpoints": routes::ENDPOINTS,
            });
            return respond(req, 200, &body);
        }
        Endpoint::Add => match read_body(&mut req)
            .and_then(|b| spec::parse_add(&b).map_err(ApiError::BadRequest))
        {
            Ok(spec) => Call::Add(Box::new(spec)),
            Err(e) => return respond_err(req, &e),
        },
        Endpoint::Input(ref id) => match read_body(&mut req).and_then(|b| parse_input(&b)) {
            Ok(text) => Call::Input(id.clone(), text),
            Err(e) => return respond_err(req, &e),
        },
        Endpoint::Start(ref id) => Call::Start(id.clone()),
        Endpoint::Restart(ref id) => Call::Restart(id.clone()),
        Endpoint::Stop(ref id) => Call::Stop(id.clone()),
        Endpoint::Remove(ref id) => Call::Remove(id.clone()),
        Endpoint::RestartAll => Call::RestartAll,
        Endpoint::StopAll => Call::StopAll,
        Endpoint::List | Endpoint::Metrics => Call::List,
        Endpoint::Status(ref id) => Call::Status(id.clone()),
        Endpoint::Logs { ref id, .. } | Endpoint::Follow(ref id) | Endpoint::ClearLog(ref id) => {
            Call::Log(id.clone())
        }
        Endpoint::Shutdown => Call::Shutdown,
    };
    let answer = match ask(api, call) {
        Ok(a) => a,
        Err(e) => return respond_err(req, &e),
    };
    match (endpoint, answer) {
        (
            Endpoint::Logs {
                page, page_size, ..
            },
            Answer::Log(log),
        ) => logs_page(req, &log, page, page_size),
        (Endpoint::Follow(_), Answer::Log(log)) => follow::start(req, log, api.server_port()),
        (Endpoint::ClearLog(id), Answer::Log(log)) => match log.clear() {
            Ok(()) => respond(
                req,
                200,
                &json!({"success": true, "message": format!("log of '{id}' cleared")}),
            ),
            Err(e) => respond_err(
                req,
                &ApiError::Internal(format!("cannot clear the log of '{id}': {e}")),
            ),
        },
        (Endpoint::Metrics, Answer::List(mut list)) => {
            procfs::fill(&mut list);
            let text = routes::metrics(&list);
            let header = Header::from_bytes("Content-Type", "text/plain; version=0.0.4")
                .expect("static header");
            let _ = req.respond(Response::from_string(text).with_header(header));
        }
        (_, mut answer) => {
            procfs::fill_answer(&mut answer);
            respond_bytes(req, 200, routes::answer_body(&answer));
        }
    }
}

impl Api {
    fn server_port(&self) -> u16 {
        self.server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .unwrap_or(0)
    }
}

fn ask(api: &Api, call: Call) -> Result<Answer, ApiError> {
    let wait = match call {
        Call::Stop(_) | Call::Restart(_) | Call::Remove(_) | Call::StopAll | Call::RestartAll => {
            SLOW_REPLY
        }
        _ => QUICK_REPLY,
    };
    let (tx, rx) = bounded(1);
    api.tx
        .send(Msg::Call(call, tx))
        .map_err(|_| ApiError::Unavailable("exeio is shutting down".into()))?;
    match rx.recv_timeout(wait) {
        Ok(reply) => reply,
        Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ApiError::Unavailable(
            "the supervisor did not answer in time".into(),
        )),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
            Err(ApiError::Unavailable("exeio is shutting down".into()))
        }
    }
}

fn authorized(api: &Api, req: &Request) -> bool {
    req.headers().iter().any(|h| {
        let value = h.value.as_str();
        if h.field.equiv("exeio-api-key") {
            api.key.matches(value.trim())
        } else if h.field.equiv("Authorization") {
            value
                .trim()
                .strip_prefix("Bearer ")
                .is_some_and(|k| api.key.matches(k.trim()))
        } else {
            false
        }
    })
}

/// Read at most `MAX_BODY` bytes; a larger declared or streamed body is 413
/// without being read into memory.
fn read_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    if req.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut body = Vec::new();
    req.as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(body)
}

fn parse_input(body: &[u8]) -> Result<String, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Input {
        input: String,
    }
    spec::parse_object::<Input>(body)
        .map(|i| i.input)
        .map_err(ApiError::BadRequest)
}

fn logs_page(req: Request, log: &LogFile, page: usize, page_size: usize) {
    match log.page(page, page_size) {
        Ok(p) => respond(
            req,
            200,
            &json!({
                "success": true,
                "page": page,
                "page_size": page_size,
                "total_lines": p.total_lines,
                "logs": p.lines,
            }),
        ),
        Err(e) => respond_err(
            req,
            &ApiError::Internal(format!("cannot read the log: {e}")),
        ),
    }
}

fn respond_err(req: Request, e: &ApiError) {
    let (status, body) = routes::error_body(e);
    respond(req, status, &body);
}

fn respond(req: Request, status: u16, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{\"success\":false}".to_vec());
    respond_bytes(req, status, bytes);
}

fn respond_bytes(req: Request, status: u16, bytes: Vec<u8>) {
    let header = Header::from_bytes("Content-Type", "application/json").expect("static header");
    let _ = req.respond(
        Response::from_data(bytes)
            .with_status_code(status)
            .with_header(header),
    );
}
