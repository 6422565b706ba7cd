//! The API as one table (STYLE 17): method, path pattern, who may call it,
//! and its handler. Routing, the role check, `/info`'s endpoint list, the
//! OpenAPI document and the tests all derive from `ROUTES`; there is no
//! second list.

use super::{
    Answer, Api, Args, admin, deploy, events, health, logs, metrics, notify, openapi, ops, procs,
    ui,
};
use crate::error::ApiError;
use crate::http::Exchange;
use crate::http::request::percent_decode;
use crate::keys::Role;

pub type Handler = fn(&Api, &mut Exchange<'_>, &Args) -> Result<Answer, ApiError>;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no key.
    Open,
    /// A key (or a session) with at least this role.
    Key(Role),
}

pub struct Route {
    pub method: &'static str,
    /// `/stop/{id}`: a `{name}` segment matches one path segment.
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
    pub summary: &'static str,
    /// What the request carries and what the reply is, for the OpenAPI
    /// document (`openapi.rs`).
    pub query: &'static [Query],
    pub body: Body,
    pub reply: Reply,
    /// Statuses of this route's own failures (401/403/429/413/... of every
    /// keyed route are added by the document).
    pub errors: &'static [u16],
}

/// A request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    None,
    /// A process configuration (`POST /add`).
    Config,
    /// A process configuration whose `id` may be left out (`POST /update`).
    Update,
    Apply,
    Input,
    Login,
    NewKey,
    /// `{"signal": NAME}` (`POST /signal/{id}`).
    Signal,
    /// The list of notification targets (`PUT /notify`).
    Notify,
    /// A release archive (`POST /deploy`): streamed to disk by its handler
    /// under its own cap, never read whole (see `Body::streamed`).
    Release,
    /// `{"release": R}`, optional (`POST /rollback`).
    Rollback,
}

impl Body {
    /// Read by the handler as it arrives, under the route's own cap: the
    /// 1 MiB cap of every other body does not apply.
    pub fn streamed(self) -> bool {
        self == Body::Release
    }
}

/// A successful reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The OpenAPI document.
    Document,
    Html,
    Asset,
    Info,
    Session,
    /// `{success, message}`.
    Message,
    /// A bare array of process objects.
    List,
    /// `{success, process}`.
    Process,
    /// `{success, message, process?}`: a request carried out.
    Done,
    /// `{success, message, processes}`.
    Many,
    Update,
    Apply,
    LogPage,
    Runs,
    /// `{success, health, checks}` (`GET /health/{id}`).
    Health,
    Metrics,
    Events,
    Keys,
    NewKey,
    /// `{success, targets, secrets?}`.
    Notify,
    /// `{success, message, release, previous}` (409: `rolled_back_to`).
    Deploy,
    /// `{success, current, releases}`.
    Releases,
}

/// A query parameter.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub name: &'static str,
    pub kind: QueryKind,
    pub about: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub enum QueryKind {
    /// An integer of at least this.
    Int(u64),
    Bool,
    Words(&'static [&'static str]),
}

impl Route {
    /// Does the request change something (audited, CSRF-checked)?
    pub fn changes_state(&self) -> bool {
        self.method == "POST" || self.method == "PUT"
    }
}

use Access::{Key, Open};
use Role::{Admin, Operate, Read};

macro_rules! route {
    ($m:literal $p:literal, $a:expr, $h:path, $s:literal, $body:ident -> $reply:ident, [$($e:literal),*] $(, $q:expr)?) => {
        Route {
            method: $m,
            path: $p,
            access: $a,
            handler: $h,
            summary: $s,
            query: route!(@q $($q)?),
            body: Body::$body,
            reply: Reply::$reply,
            errors: &[$($e),*],
        }
    };
    (@q) => { &[] };
    (@q $q:expr) => { $q };
}

const PAGE_NUMBER: Query = Query {
    name: "page",
    kind: QueryKind::Int(1),
    about: "Page number, 1 = the newest lines",
};

const PAGE_SIZE: Query = Query {
    name: "page_size",
    kind: QueryKind::Int(1),
    about: "Lines per page (at most 1000; default 50)",
};

const PAGE: &[Query] = &[PAGE_NUMBER, PAGE_SIZE];

const LOGS: &[Query] = &[
    PAGE_NUMBER,
    PAGE_SIZE,
    Query {
        name: "stream",
        kind: QueryKind::Words(&["stdout", "stderr", "system"]),
        about: "Only lines of this stream",
    },
    Query {
        name: "follow",
        kind: QueryKind::Bool,
        about: "Stream new lines as they are written (text/plain)",
    },
    Query {
        name: "tail",
        kind: QueryKind::Int(0),
        about: "With follow: the last N lines first (default 10)",
    },
];

const RUNS: &[Query] = &[Query {
    name: "limit",
    kind: QueryKind::Int(1),
    about: "At most this many runs (default 50)",
}];

const EVENTS: &[Query] = &[Query {
    name: "since",
    kind: QueryKind::Int(0),
    about: "Replay the events after this id (as Last-Event-ID)",
}];

pub static ROUTES: &[Route] = &[
    route!("GET" "/", Open, ui::index, "The dashboard (an HTML page)", None -> Html, []),
    route!("GET" "/ui/{asset}", Open, ui::file, "The dashboard's script and style sheet", None -> Asset, [404]),
    route!("GET" "/info", Open, admin::info, "Name, version, uptime, mode and endpoints", None -> Info, []),
    route!("GET" "/openapi.json", Open, openapi::openapi, "This API as an OpenAPI 3.0.3 document", None -> Document, []),
    route!("GET" "/session", Open, admin::session, "Who the session cookie belongs to (401 without one)", None -> Session, [401]),
    route!("POST" "/session", Open, admin::login, "Log in with a key (Content-Type: application/json): sets the session cookie", Login -> Session, [400, 401, 413, 415, 429, 503]),
    route!("POST" "/session/logout", Open, admin::logout, "End the session", None -> Message, [413]),
    route!("GET" "/list", Key(Read), procs::list, "Every process object", None -> List, []),
    route!("GET" "/status/{id}", Key(Read), procs::status, "One process object", None -> Process, [404]),
    route!("GET" "/logs/{id}", Key(Read), logs::logs, "A page of a process's log, newest first, or a live follow", None -> LogPage, [400, 404, 500], LOGS),
    route!("GET" "/runs/{id}", Key(Read), procs::runs, "Run history of a job, newest first", None -> Runs, [400, 404, 409], RUNS),
    route!("GET" "/health/{id}", Key(Read), health::checks, "A process's health and its last checks, newest first", None -> Health, [404]),
    route!("GET" "/metrics", Key(Read), metrics::metrics, "Prometheus metrics", None -> Metrics, []),
    route!("GET" "/events", Key(Read), events::events, "Server-sent events of every change", None -> Events, [400], EVENTS),
    route!("POST" "/start/{id}", Key(Operate), procs::start, "Start a process now", None -> Done, [400, 404, 409, 503]),
    route!("POST" "/stop/{id}", Key(Operate), procs::stop, "Stop a process (no restart)", None -> Done, [404, 409, 503]),
    route!("POST" "/restart/{id}", Key(Operate), procs::restart, "Stop, then start now", None -> Done, [400, 404, 409, 503]),
    route!("POST" "/restart-all", Key(Operate), procs::restart_all, "Restart every process", None -> Many, [503]),
    route!("POST" "/stop-all", Key(Operate), procs::stop_all, "Stop every process", None -> Many, [503]),
    route!("POST" "/input/{id}", Key(Operate), procs::input, "Write a line to a process's stdin", Input -> Done, [400, 404, 409, 503]),
    route!("POST" "/clear-log/{id}", Key(Operate), logs::clear, "Empty a process's log", None -> Message, [404, 500, 503]),
    route!("POST" "/run/{id}", Key(Operate), procs::run_now, "Run a job now", None -> Done, [400, 404, 409, 503]),
    route!("POST" "/signal/{id}", Key(Operate), ops::signal, "Send a signal to a running process's group (no restart)", Signal -> Done, [400, 404, 409, 503]),
    route!("POST" "/add", Key(Admin), procs::add, "Add a process and start it", Config -> Done, [400, 409, 503]),
    route!("POST" "/update/{id}", Key(Admin), procs::update, "Replace a process's configuration", Update -> Update, [400, 404, 409, 503]),
    route!("POST" "/apply", Key(Admin), procs::apply, "Reconcile with a whole configuration, all or nothing (400 if an entry is invalid or cannot start)", Apply -> Apply, [400, 409, 503]),
    route!("POST" "/remove/{id}", Key(Admin), procs::remove, "Stop and forget a process", None -> Done, [404, 409, 503]),
    route!("POST" "/shutdown", Key(Admin), admin::shutdown, "Stop everything and exit", None -> Done, [503]),
    route!("GET" "/keys", Key(Admin), admin::keys, "The named keys (never a key itself)", None -> Keys, []),
    route!("POST" "/keys", Key(Admin), admin::create_key, "Create a named key with a role", NewKey -> NewKey, [400, 409, 500]),
    route!("POST" "/keys/{name}/revoke", Key(Admin), admin::revoke_key, "Revoke a named key", None -> Message, [404, 500]),
    route!("GET" "/audit", Key(Admin), admin::audit, "A page of the audit log, newest first", None -> LogPage, [400, 500], PAGE),
    route!("GET" "/notify", Key(Admin), notify::list, "The notification targets (never a secret)", None -> Notify, []),
    route!("PUT" "/notify", Key(Admin), notify::put, "Replace the notification targets, all or nothing", Notify -> Notify, [400, 500]),
    route!("POST" "/notify/test/{name}", Key(Admin), notify::test, "Send a test notification to one target", None -> Message, [404]),
    route!("GET" "/releases/{id}", Key(Read), deploy::releases, "A process's releases, newest first, and the live one", None -> Releases, [404, 500]),
    route!("POST" "/deploy/{id}", Key(Admin), deploy::deploy, "Upload a release (.tar.gz or .tar; X-Exeio-SHA256 optional), switch to it, roll back if it is not healthy in time (409)", Release -> Deploy, [400, 404, 408, 409, 413, 422, 500, 503, 507]),
    route!("POST" "/rollback/{id}", Key(Admin), deploy::rollback, "Switch to an earlier release (default: the newest earlier one that passed its health gate)", Rollback -> Deploy, [400, 404, 409, 500, 503, 507]),
];

/// Why no route was found.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The path exists with these methods.
    Method(Vec<&'static str>),
}

/// The route for `method` and `path`, with its `{...}` segments decoded.
pub fn find(method: &str, path: &str) -> Result<(&'static Route, Vec<String>), Miss> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        let Some(params) = matches(route.path, path) else {
            continue;
        };
        if route.method == method {
            return Ok((route, params));
        }
        allowed.push(route.method);
    }
    if allowed.is_empty() {
        Err(Miss::NotFound)
    } else {
        allowed.dedup();
        Err(Miss::Method(allowed))
    }
}

/// The decoded `{...}` segments if `path` fits `pattern`.
fn matches(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return None;
                }
                // An undecodable segment still routes: its handler says 404.
                params.push(percent_decode(h).unwrap_or_else(|| "\u{fffd}".into()));
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// `METHOD /path` of every route, for `/info`.
pub fn endpoint_list() -> Vec<String> {
    ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// What anyone may call without a key, for the start-up note: each path
/// whose routes are all open, or `METHOD /path` for an open route that
/// shares its path with a keyed one; in table order.
pub fn open_paths() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in ROUTES.iter().filter(|r| r.access == Open) {
        let all_open = ROUTES
            .iter()
            .filter(|o| o.path == r.path)
            .all(|o| o.access == Open);
        let name = if all_open {
            r.path.to_owned()
        } else {
            format!("{} {}", r.method, r.path)
        };
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The roles a route needs, for the docs and the tests.
pub fn role_of(method: &str, path: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|r| r.method == method && r.path == path)
        .map(|r| r.access)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(m: &str, p: &str) -> Option<(&'static str, Vec<String>)> {
        find(m, p).ok().map(|(r, params)| (r.path, params))
    }

    #[test]
    fn routes_and_params() {
        assert_eq!(found("GET", "/list"), Some(("/list", vec![])));
        assert_eq!(
            found("POST", "/stop/we%62"),
            Some(("/stop/{id}", vec!["web".into()]))
        );
        assert_eq!(
            found("POST", "/keys/ci/revoke"),
            Some(("/keys/{name}/revoke", vec!["ci".into()]))
        );
        assert_eq!(find("GET", "/nope").err(), Some(Miss::NotFound));
        assert_eq!(find("POST", "/stop").err(), Some(Miss::NotFound));
        assert_eq!(find("POST", "/stop/a/b").err(), Some(Miss::NotFound));
        assert_eq!(find("POST", "/stop/").err(), Some(Miss::NotFound));
        assert_eq!(find("GET", "/list/").err(), Some(Miss::NotFound));
        assert_eq!(find("GET", "/add").err(), Some(Miss::Method(vec!["POST"])));
        assert_eq!(
            find("DELETE", "/keys").err(),
            Some(Miss::Method(vec!["GET", "POST"]))
        );
    }

    #[test]
    fn one_route_per_method_and_path() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{} {}", r.method, r.path);
            assert!(r.path.starts_with('/'));
        }
    }

    #[test]
    fn roles_follow_the_spec() {
        assert_eq!(role_of("GET", "/info"), Some(Open));
        assert_eq!(role_of("GET", "/metrics"), Some(Key(Read)));
        assert_eq!(role_of("POST", "/input/{id}"), Some(Key(Operate)));
        assert_eq!(role_of("POST", "/remove/{id}"), Some(Key(Admin)));
        assert_eq!(role_of("POST", "/session"), Some(Open));
        assert_eq!(role_of("GET", "/session"), Some(Open));
        assert_eq!(role_of("GET", "/"), Some(Open));
        assert_eq!(role_of("GET", "/ui/{asset}"), Some(Open));
        assert_eq!(role_of("GET", "/releases/{id}"), Some(Key(Read)));
        assert_eq!(role_of("POST", "/deploy/{id}"), Some(Key(Admin)));
        assert_eq!(role_of("POST", "/rollback/{id}"), Some(Key(Admin)));
        // only the deploy's body is streamed past the 1 MiB cap
        let streamed: Vec<_> = ROUTES
            .iter()
            .filter(|r| r.body.streamed())
            .map(|r| r.path)
            .collect();
        assert_eq!(streamed, ["/deploy/{id}"]);
    }

    #[test]
    fn open_paths_come_from_the_table() {
        assert_eq!(
            open_paths(),
            [
                "/",
                "/ui/{asset}",
                "/info",
                "/openapi.json",
                "/session",
                "/session/logout"
            ]
        );
    }
}
