//! The HTTP API: what each request goes through, in order, on its
//! connection's thread.
//!
//! ```text
//! locked-out address? 429 ─ route (table) 404/405 ─ key or session 401 ─ role 403
//!   ─ CSRF header for cookie callers 403 ─ handler ─ reply ─ audit line
//! ```
//!
//! Handlers are thin: reads render the published `View` (no round trip to
//! the supervisor); changes send one `Call` and wait for its reply. This is
//! the one place where an `ApiError` becomes an HTTP status (`status_of`).

mod admin;
mod audit;
mod auth;
mod current;
mod deploy;
mod events;
mod health;
mod logs;
mod metrics;
mod notify;
pub mod openapi;
mod ops;
mod procs;
mod render;
pub mod routes;
mod ui;

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Sender, bounded};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::events::Bus;
use crate::http::{BodyError, EdgeStats, Exchange, Response, Service};
use crate::keys::Keys;
use crate::logger::Logger;
use crate::logs::LogFile;
use crate::protocol::{Call, Done, Msg};
use crate::spec;
use crate::view::Published;

pub use auth::{Caller, Sessions, Throttle};
use render::Shown;
use routes::{Access, Miss};

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024 * 1024;
/// How long a request may wait for the supervisor before a 503.
const QUICK_REPLY: Duration = Duration::from_secs(30);
/// Stop-like requests wait for the exit: the longest grace period plus slack.
const SLOW_REPLY: Duration = Duration::from_secs(spec::MAX_STOP_TIMEOUT_SECONDS + 60);

/// Shared by every connection thread.
pub struct Api {
    pub tx: Sender<Msg>,
    pub published: Arc<Published>,
    pub keys: Arc<Keys>,
    pub sessions: Sessions,
    pub throttle: Throttle,
    pub logger: Logger,
    pub audit_log: Arc<LogFile>,
    pub events: Arc<Bus>,
    pub edge: Arc<EdgeStats>,
    pub counts: Counts,
    pub started: Instant,
    pub started_wall: SystemTime,
    pub tls: bool,
    /// How process trees are kept: "cgroup" or "process-group".
    pub isolation: &'static str,
    /// Set at shutdown: streams end.
    pub stopping: AtomicBool,
    /// Notification targets and the way to the dispatcher (SPEC 4d).
    pub notify: crate::notify::Notifier,
    /// Keyless refusals, summarised per address (`audit`).
    pub audit_summary: audit::Summary,
    /// Deploys (SPEC 4c): caps, per-process locks, counts.
    pub deployer: Arc<crate::deploy::flow::Deployer>,
}

/// The decoded `{...}` segments of the path, and the caller.
pub struct Args {
    pub params: Vec<String>,
    pub caller: Option<Caller>,
    /// The name of the key a handler authenticated by itself (`POST
    /// /session`), for the audit line.
    pub logged_in: Cell<Option<String>>,
}

impl Args {
    /// What this caller may see of a process.
    pub fn shown(&self) -> Shown {
        Shown::to(self.caller.as_ref().map(|c| c.who.role))
    }
}

/// What a handler produced.
pub enum Answer {
    /// 200 with this JSON.
    Json(Vec<u8>),
    Reply(Response),
    /// A request carried out by the supervisor.
    Done(Done),
    /// The handler wrote the reply itself (a stream).
    Streamed,
}

impl Service for Api {
    fn serve(&self, ex: &mut Exchange<'_>) {
        let started = Instant::now();
        let mut name = None;
        let mut audited = false;
        let mut shown = Shown::EnvNames;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handle(ex, &mut name, &mut shown, &mut audited)
        }));
        let outcome = outcome.unwrap_or_else(|_| {
            // Audited like any fault; the connection thread lives on.
            audited = true;
            Err(ApiError::Internal("the request handler failed".into()))
        });
        let response = match outcome {
            Ok(Answer::Json(body)) => Some(Response::json(200, body)),
            Ok(Answer::Reply(r)) => Some(r),
            Ok(Answer::Done(done)) => {
                let status = match done.refused {
                    Some(_) => status_of(&ApiError::BadRequest(String::new())),
                    None => 200,
                };
                Some(Response::json(status, self.done_body(done, shown)))
            }
            Ok(Answer::Streamed) => None,
            Err(e) => Some(error_response(&e)),
        };
        // The audit line is queued before the reply is sent: a client that
        // has its answer finds its line ahead of any later request's.
        let status = response.as_ref().map_or_else(|| ex.status(), |r| r.status);
        self.count_and_audit(ex, status, name.as_deref(), audited, started);
        if let Some(r) = response {
            ex.respond(r);
        }
    }
}

impl Api {
    /// Count the reply's status and write its audit line, if it has one.
    fn count_and_audit(
        &self,
        ex: &Exchange<'_>,
        status: u16,
        name: Option<&str>,
        audited: bool,
        started: Instant,
    ) {
        self.counts.count(status);
        let keyless =
            matches!(auth::presented(|n| ex.header(n)), auth::Presented::Nothing) && name.is_none();
        // Refusals that prove nothing about the caller: at most one line
        // per address and minute, with a count (SPEC 3a "Audit volume").
        // (404 and 405 come before any key is looked at; a failed login is
        // a failed authentication, its own line, bounded by the throttle.)
        let summarised = matches!(status, 404 | 405 | 429)
            || (keyless && status == 401 && ex.path() != "/session");
        if summarised && (audited || matches!(status, 401 | 429)) {
            let group = crate::http::group(ex.peer().ip());
            if let Some(hidden) = self.audit_summary.note(group, Instant::now()) {
                let more = match hidden {
                    0 => String::new(),
                    n => format!(" (+{n} like it from this address, not logged one by one)"),
                };
                self.audit(ex.peer(), None, ex, status, started.elapsed(), &more);
            }
        } else if audited || matches!(status, 401 | 403 | 429) {
            self.audit(ex.peer(), name, ex, status, started.elapsed(), "");
        }
    }
    fn handle(
        &self,
        ex: &mut Exchange<'_>,
        name: &mut Option<String>,
        shown: &mut Shown,
        audited: &mut bool,
    ) -> Result<Answer, ApiError> {
        let now = Instant::now();
        let ip = crate::http::group(ex.peer().ip());
        if let Some(secs) = self.throttle.locked(ip, now) {
            return Err(ApiError::Throttled(secs));
        }
        // HEAD is answered for every GET route (the exchange sends no body).
        let method = match ex.method() {
            "HEAD" => "GET",
            m => m,
        };
        let route = routes::find(method, ex.path()).map_err(|m| match m {
            Miss::NotFound => ApiError::NotFound(format!(
                "no such endpoint: {} (GET /info lists them)",
                ex.path()
            )),
            Miss::Method(allow) => ApiError::MethodNotAllowed(allow),
        });
        // An unknown path or method that would change state is audited.
        *audited = !matches!(method, "GET" | "OPTIONS");
        let (route, params) = route?;
        *audited = route.changes_state();
        let caller = self.identify(ex, now);
        if let Some(c) = &caller {
            *name = Some(c.who.name.clone());
            ex.authenticated();
        }
        if let Access::Key(needed) = route.access {
            let Some(c) = &caller else {
                // Only a wrong key counts: a request without one guesses
                // nothing, and must not lock out whoever shares its address.
                if matches!(auth::presented(|n| ex.header(n)), auth::Presented::Key(_)) {
                    self.throttle.failed(ip, now);
                }
                return Err(ApiError::Unauthorized);
            };
            if c.who.role < needed {
                return Err(ApiError::Forbidden(format!(
                    "the key '{}' has the role {}; {} {} needs {}",
                    c.who.name,
                    c.who.role.name(),
                    route.method,
                    route.path,
                    needed.name()
                )));
            }
            if c.by_cookie && route.changes_state() && ex.header("x-exeio-csrf") != Some("1") {
                return Err(ApiError::Forbidden(
                    "a request made with the session cookie must carry the header 'X-Exeio-CSRF: 1'"
                        .into(),
                ));
            }
        }
        if !route.body.streamed() && ex.declares_more_than(MAX_BODY) {
            // Refused before a byte of it is read; the connection closes.
            return Err(ApiError::PayloadTooLarge);
        }
        let args = Args {
            params,
            caller,
            logged_in: Cell::new(None),
        };
        *shown = args.shown();
        let answer = (route.handler)(self, ex, &args);
        if let Some(n) = args.logged_in.take() {
            *name = Some(n);
        }
        answer
    }

    /// The caller, if it presented a valid key or session.
    fn identify(&self, ex: &Exchange<'_>, now: Instant) -> Option<Caller> {
        match auth::presented(|n| ex.header(n)) {
            auth::Presented::Nothing => None,
            auth::Presented::Key(k) => self.keys.verify(k).map(|who| Caller {
                who,
                by_cookie: false,
            }),
            auth::Presented::Session(t) => {
                self.sessions.check(t, &self.keys, now).map(|who| Caller {
                    who,
                    by_cookie: true,
                })
            }
        }
    }

    /// Send a request to the supervisor and wait for its reply.
    pub fn ask(&self, call: Call) -> Result<Done, ApiError> {
        let wait = match call {
            Call::Stop(_)
            | Call::Restart(_)
            | Call::Remove(_)
            | Call::StopAll
            | Call::RestartAll
            | Call::Update(_)
            | Call::Apply(_)
            | Call::RunNow(_)
            | Call::Start(_) => SLOW_REPLY,
            _ => QUICK_REPLY,
        };
        let (tx, rx) = bounded(1);
        self.tx
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

    /// The JSON of a carried-out request, with its processes as published.
    fn done_body(&self, done: Done, shown: Shown) -> Vec<u8> {
        let view = self.published.load();
        let now = render::Clock::now();
        let mut body = serde_json::Map::new();
        body.insert("success".into(), Value::Bool(done.refused.is_none()));
        body.insert("message".into(), Value::String(done.message));
        if let Some(field) = done.refused {
            body.insert("field".into(), Value::String(field));
        }
        let current = current::Current::all(&self.deployer.data_dir);
        let procs: Vec<Value> = done
            .ids
            .iter()
            .filter_map(|id| view.get(id.as_str()))
            .map(|p| render::process_value(p, &now, shown, &current))
            .collect();
        if done.many {
            body.insert("processes".into(), Value::Array(procs));
        } else if !done.ids.is_empty() {
            body.insert(
                "process".into(),
                procs.into_iter().next().unwrap_or(Value::Null),
            );
        }
        for (k, v) in done.extra {
            body.insert(k.into(), v);
        }
        serde_json::to_vec(&Value::Object(body)).unwrap_or_default()
    }

    fn audit(
        &self,
        peer: SocketAddr,
        name: Option<&str>,
        ex: &Exchange<'_>,
        status: u16,
        took: Duration,
        more: &str,
    ) {
        let line = format!(
            "{} {} {} {} {status} {}ms{more}",
            peer.ip(),
            name.unwrap_or("-"),
            ex.method(),
            ex.path(),
            took.as_millis()
        );
        self.logger.audit(line);
    }

    /// The whole body, within the cap and the body timeout.
    fn body(&self, ex: &mut Exchange<'_>) -> Result<Vec<u8>, ApiError> {
        ex.read_body(MAX_BODY).map_err(|e| match e {
            BodyError::TooLarge => ApiError::PayloadTooLarge,
            BodyError::Timeout => ApiError::Timeout,
            BodyError::Malformed(m) => ApiError::BadRequest(format!("cannot read the body: {m}")),
        })
    }
}

/// Requests answered, by status, for `/metrics`.
#[derive(Default)]
pub struct Counts {
    by_status: [AtomicU64; STATUSES.len() + 1],
}

const STATUSES: [u16; 18] = [
    200, 400, 401, 403, 404, 405, 408, 409, 413, 429, 431, 500, 503, 505, 204, 304, 422, 507,
];

impl Counts {
    fn count(&self, status: u16) {
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len());
        self.by_status[i].fetch_add(1, Ordering::Relaxed);
    }

    /// (status, count) of every status seen ("other" as 0).
    pub fn seen(&self) -> Vec<(u16, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    STATUSES.get(i).copied().unwrap_or(0),
                    n.load(Ordering::Relaxed),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// The HTTP status of an error: the one mapping.
pub fn status_of(e: &ApiError) -> u16 {
    match e {
        ApiError::BadRequest(_) | ApiError::Invalid(_) => 400,
        ApiError::Unauthorized => 401,
        ApiError::Forbidden(_) => 403,
        ApiError::NotFound(_) => 404,
        ApiError::MethodNotAllowed(_) => 405,
        ApiError::Timeout => 408,
        ApiError::Conflict(_) => 409,
        ApiError::PayloadTooLarge | ApiError::TooLarge(_) => 413,
        ApiError::Unprocessable(_) => 422,
        ApiError::InsufficientStorage(_) => 507,
        ApiError::Throttled(_) => 429,
        ApiError::Internal(_) => 500,
        ApiError::Unavailable(_) => 503,
    }
}

pub fn error_response(e: &ApiError) -> Response {
    let mut body = json!({"success": false, "message": e.to_string()});
    if let ApiError::Invalid(f) = e
        && !f.field.is_empty()
    {
        body["field"] = Value::String(f.field.clone());
    }
    let r = Response::json(status_of(e), serde_json::to_vec(&body).unwrap_or_default());
    match e {
        ApiError::MethodNotAllowed(allow) => r.with_header("Allow", allow.join(", ")),
        ApiError::Throttled(s) => r.with_header("Retry-After", s.to_string()),
        ApiError::Unavailable(_) => r.with_header("Retry-After", "1"),
        ApiError::Unauthorized => r.with_header("WWW-Authenticate", "Bearer"),
        _ => r,
    }
}
