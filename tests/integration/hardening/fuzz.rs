//! Family 5, fuzzing: random requests (method, path, headers, body) from a small
//! deterministic PRNG, through routing, auth and validation of the real binary.
//! Every request must get a status in `ALLOWED` (never a 500, never no answer),
//! a JSON body (except metrics and log streams), 401 whenever the key is missing
//! or wrong; exeio must never die and must create nothing outside its logs dir
//! but `processes.json`.
//!
//! `EXEIO_FUZZ_CASES` (default 2000) and `EXEIO_FUZZ_SEED` make longer or other
//! runs by hand; a failure prints the seed and the case number to replay it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::util::short;
use crate::util::{self, Daemon};

const KEY: &str = "k3y-SECRET-123";
const ALLOWED: &[u16] = &[200, 400, 401, 403, 404, 405, 408, 409, 413, 415, 431, 503];
const DEFAULT_CASES: usize = 2000;
const DEFAULT_SEED: u64 = 0x5eed_e7e1_0f00_d001;

/// xorshift64*: small, deterministic, good enough to pick from tables.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    /// A token of `[A-Za-z0-9._~-]` and `%XX` escapes (some of them bytes that
    /// matter: `/`, `.`, NUL, `?`, non-UTF-8).
    fn token(&mut self, max: usize) -> String {
        const SAFE: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-";
        const ESC: &[&str] = &[
            "%2F", "%2e", "%00", "%3F", "%25", "%ff", "%C3%A9", "%20", "%zz", "%",
        ];
        let n = 1 + self.below(max);
        let mut s = String::new();
        for _ in 0..n {
            if self.chance(8) {
                let e = ESC[self.below(ESC.len())];
                s.push_str(e);
            } else {
                s.push(*self.pick(SAFE) as char);
            }
        }
        s
    }

    /// Printable ASCII for header values (no CR/LF).
    fn printable(&mut self, max: usize) -> String {
        let n = self.below(max + 1);
        (0..n)
            .map(|_| (0x20 + self.below(0x5f) as u8) as char)
            .collect()
    }
}

/// One generated request, and what the generator knows about it.
struct Case {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    chunked: bool,
    authorized: bool,
}

impl Case {
    fn describe(&self) -> String {
        let body = self
            .body
            .as_ref()
            .map(|b| short(&String::from_utf8_lossy(b)))
            .unwrap_or_else(|| "none".into());
        format!(
            "{} {} headers={:?} chunked={} body={body}",
            self.method, self.path, self.headers, self.chunked
        )
    }
}

/// Every route with the method it takes; `{id}` is filled in.
#[rustfmt::skip]
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/add"), ("POST", "/add"), ("POST", "/add"), ("POST", "/start/{id}"),
    ("POST", "/restart/{id}"), ("POST", "/stop/{id}"), ("POST", "/remove/{id}"),
    ("POST", "/restart-all"), ("POST", "/stop-all"), ("GET", "/list"), ("GET", "/status/{id}"),
    ("GET", "/logs/{id}"), ("POST", "/input/{id}"), ("POST", "/clear-log/{id}"), ("GET", "/info"),
    ("GET", "/metrics"),
];
/// Ids the generated specs mostly use, so that adds collide and later calls find them.
const LIVE_IDS: &[&str] = &["fz-a", "fz-b", "fz-c", "fz-d"];
#[rustfmt::skip]
const NAMES: &[&str] = &[
    "add",
    "start",
    "restart",
    "stop",
    "remove",
    "restart-all",
    "stop-all",
    "list",
    "status",
    "logs",
    "input",
    "clear-log",
    "info",
    "metrics",
    "shutdown",
    "",
];
#[rustfmt::skip]
const IDS: &[&str] = &[
    "fz-a",
    "fz-b",
    "fz-c",
    "ghost",
    "exeio",
    "..",
    ".x",
    "a%2Fb",
    "..%2F..%2Fconfig%2Fapi-key",
    "fz-a%00",
    "%66z-a",
    "x-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];
#[rustfmt::skip]
const QUERIES: &[&str] = &[
    "page=1",
    "page=2&page_size=5",
    "page=0",
    "page=-1",
    "page=abc",
    "page_size=99999999999999999999",
    "follow=true",
    "follow=false",
    "follow=1",
    "x=y",
    "page=1/../../x",
    "&&",
    "=",
    "page",
];

fn gen_path(rng: &mut Rng) -> String {
    let name = if rng.chance(5) {
        rng.token(10)
    } else {
        rng.pick(NAMES).to_string()
    };
    let mut path = format!("/{name}");
    if rng.chance(60) {
        let id = if rng.chance(15) {
            rng.token(70)
        } else {
            rng.pick(IDS).to_string()
        };
        path.push('/');
        path.push_str(&id);
    }
    if rng.chance(5) {
        path.push('/');
        path.push_str(&rng.token(5));
    }
    if rng.chance(3) {
        path = format!("/{path}");
    }
    if rng.chance(30) {
        let n = 1 + rng.below(3);
        let q: Vec<&str> = (0..n).map(|_| *rng.pick(QUERIES)).collect();
        path.push('?');
        path.push_str(&q.join("&"));
    }
    path
}

/// A random JSON value, `depth` levels at most.
fn any_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(*rng.pick(&[0i64, 1, -1, 5, 4096, 1_000_000_000_000, i64::MIN])),
        3 => json!(*rng.pick(&[1.5f64, -0.0, 1e300])),
        4 => json!(rng.token(12)),
        5 => json!(rng.printable(20)),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| any_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            let mut m = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                m.insert(rng.token(6), any_json(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// A plausible value for a field of a process spec (sometimes of the wrong type).
fn field_value(rng: &mut Rng, field: &str) -> Value {
    if rng.chance(15) {
        return any_json(rng, 2);
    }
    match field {
        "id" => json!(rng.pick(&[
            "fz-a", "fz-b", "fz-c", "", " ", "..", "a/b", ".x", "exeio", "fz\u{0}a", "é"
        ])),
        "command" => json!(rng.pick(&[
            "true",
            "false",
            "echo",
            "sleep",
            "/bin/echo",
            "/nonexistent/cmd",
            "",
            " ",
            "/",
            "./x"
        ])),
        "args" => json!(
            (0..rng.below(3))
                .map(|_| rng
                    .pick(&["1000", "0.2", "-1", "abc", "hi", ""])
                    .to_string())
                .collect::<Vec<_>>()
        ),
        "working_dir" => json!(rng.pick(&["/", "/nonexistent", "", ".", "/tmp"])),
        "env" => rng
            .pick(&[
                json!({"A": "1"}),
                json!({"PATH": ""}),
                json!({"": "x"}),
                json!({"A=B": "c"}),
                json!({}),
            ])
            .clone(),
        "restart_policy" => json!(rng.pick(&["always", "on-failure", "never", "sometimes"])),
        "max_restarts" => json!(rng.pick(&[0i64, 1, 3, -1, 4_294_967_296])),
        "period_seconds" => json!(rng.pick(&[
            json!(1),
            json!(2),
            json!(0),
            json!(-1),
            json!(1_000_000_000_000u64),
            json!(3600),
            json!(1.5),
            json!("5")
        ])),
        "stop_signal" => {
            json!(rng.pick(&["TERM", "KILL", "INT", "USR1", "BOGUS", "9", "SIGHUP", ""]))
        }
        "stop_timeout_seconds" => json!(rng.pick(&[0i64, 1, 2, 3601, -1])),
        "log_max_bytes" => json!(rng.pick(&[json!(4096), json!(100), json!(0), json!(1e20)])),
        "log_backups" => json!(rng.pick(&[0i64, 1, 101])),
        _ => json!(rng.chance(50)),
    }
}

#[rustfmt::skip]
const FIELDS: &[&str] = &[
    "args",
    "working_dir",
    "env",
    "auto_restart",
    "save_for_next_run",
    "periodic",
    "period_seconds",
    "restart_policy",
    "max_restarts",
    "stop_signal",
    "stop_timeout_seconds",
    "log_max_bytes",
    "log_backups",
];

fn gen_spec(rng: &mut Rng) -> Value {
    let mut m = serde_json::Map::new();
    if rng.chance(90) {
        let id = if rng.chance(75) {
            json!(rng.pick(LIVE_IDS))
        } else {
            field_value(rng, "id")
        };
        m.insert("id".into(), id);
    }
    if rng.chance(90) {
        let command = if rng.chance(70) {
            json!(rng.pick(&["true", "echo", "sleep"]))
        } else {
            field_value(rng, "command")
        };
        m.insert("command".into(), command);
    }
    for f in FIELDS {
        if rng.chance(20) {
            m.insert(f.to_string(), field_value(rng, f));
        }
    }
    if rng.chance(5) {
        m.insert(rng.token(8), any_json(rng, 1));
    }
    Value::Object(m)
}

fn gen_body(rng: &mut Rng, path: &str) -> Vec<u8> {
    let structured = match path.split('/').nth(1).unwrap_or("") {
        "add" => gen_spec(rng),
        "input" => json!({"input": rng.printable(40)}),
        _ => any_json(rng, 2),
    };
    match rng.below(10) {
        0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
        1 => {
            let mut b = structured.to_string().into_bytes();
            b.truncate(rng.below(b.len() + 1));
            b
        }
        2 => any_json(rng, 3).to_string().into_bytes(),
        _ => structured.to_string().into_bytes(),
    }
}

fn gen_case(rng: &mut Rng) -> Case {
    let (method, path) = if rng.chance(70) {
        // A real route with a likely id: gets past routing into the supervisor.
        let (m, template) = *rng.pick(ROUTES);
        let id = if rng.chance(80) {
            rng.pick(LIVE_IDS).to_string()
        } else {
            rng.pick(IDS).to_string()
        };
        let mut path = template.replace("{id}", &id);
        if path.starts_with("/logs/") && rng.chance(40) {
            path.push('?');
            let q = *rng.pick(QUERIES);
            path.push_str(q);
        }
        (m.to_string(), path)
    } else {
        let method = match rng.below(20) {
            0..=8 => "GET".to_string(),
            9..=16 => "POST".to_string(),
            17 => rng
                .pick(&["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
                .to_string(),
            _ => (0..1 + rng.below(8))
                .map(|_| (b'A' + rng.below(26) as u8) as char)
                .collect(),
        };
        (method, gen_path(rng))
    };
    let mut headers = Vec::new();
    let mut authorized = false;
    match rng.below(20) {
        0..=14 => {
            authorized = true;
            if rng.chance(50) {
                headers.push(("exeio-api-key".to_string(), KEY.to_string()));
            } else {
                headers.push(("Authorization".to_string(), format!("Bearer {KEY}")));
            }
        }
        15 | 16 => {}
        _ => {
            let bad = rng.pick(&[
                "wrong",
                "",
                "k3y-SECRET-12",
                "k3y-SECRET-1234",
                "K3Y-SECRET-123",
            ]);
            let name = rng.pick(&["exeio-api-key", "Authorization", "X-Api-Key"]);
            let value = if *name == "Authorization" {
                format!("Bearer {bad}")
            } else {
                bad.to_string()
            };
            headers.push((name.to_string(), value));
        }
    }
    // Shutting down is not fuzzed: a shutdown request must lack the key.
    if path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/')
        .starts_with("shutdown")
    {
        headers.clear();
        authorized = false;
    }
    if rng.chance(20) {
        let ct = rng.pick(&[
            "application/json",
            "text/plain",
            "",
            "multipart/form-data; boundary=x",
        ]);
        headers.push(("Content-Type".to_string(), ct.to_string()));
    }
    for _ in 0..(if rng.chance(20) { 1 + rng.below(3) } else { 0 }) {
        let name = format!("X-Fuzz-{}", rng.token(6).replace('%', "p"));
        headers.push((name, rng.printable(200)));
    }
    let body = (method == "POST" && rng.chance(85) || rng.chance(5)).then(|| gen_body(rng, &path));
    if body.is_some() && rng.chance(5) {
        headers.push(("Expect".to_string(), "100-continue".to_string()));
    }
    let chunked = body.is_some() && rng.chance(10);
    Case {
        method,
        path,
        headers,
        body,
        chunked,
        authorized,
    }
}

/// What is wrong with the answer to `case`, if anything.
fn verdict(case: &Case, resp: &util::Response) -> Option<String> {
    if !ALLOWED.contains(&resp.status) {
        return Some(format!("status {} not in {ALLOWED:?}", resp.status));
    }
    if !case.authorized {
        // Routing comes first (from the route table), then the key.
        use exeio::api::routes::{Access, Miss, find};
        let path = case.path.split('?').next().unwrap_or("");
        // HEAD is routed as GET (SPEC 3).
        let method = if case.method == "HEAD" {
            "GET"
        } else {
            &case.method
        };
        let want = match find(method, path) {
            Ok((route, _)) if route.access == Access::Open => None,
            Ok(_) => Some(401),
            Err(Miss::NotFound) => Some(404),
            Err(Miss::Method(_)) => Some(405),
        };
        if let Some(want) = want
            && resp.status != want
            && resp.status != 400
        {
            return Some(format!(
                "status {} without a valid key (want {want})",
                resp.status
            ));
        }
    }
    if case.method == "HEAD" {
        return None;
    }
    let ctype = resp.header("content-type").unwrap_or("");
    if resp.status == 200
        && (ctype.starts_with("text/html")
            || ctype.starts_with("text/css")
            || ctype.starts_with("text/javascript"))
    {
        let p = case.path.split('?').next().unwrap_or("");
        let ok = p == "/" || p.starts_with("/ui/");
        return (!ok).then(|| format!("{ctype} answer to {p}"));
    }
    if ctype.starts_with("text/plain") && resp.status == 200 {
        let p = case.path.as_str();
        let ok = p.starts_with("/metrics") || (p.starts_with("/logs/") && p.contains("follow="));
        return (!ok).then(|| format!("text/plain answer to {p}"));
    }
    match serde_json::from_str::<Value>(&resp.body) {
        Err(e) => Some(format!("body is not JSON ({e}): {}", short(&resp.body))),
        Ok(v) if resp.status != 200 && !(v["success"] == false && v["message"].is_string()) => {
            Some(format!("error body without success=false/message: {v}"))
        }
        Ok(_) => None,
    }
}

/// New paths under the daemon's dirs that are neither in the logs dir nor the saved config.
fn stray_paths(d: &Daemon, before: &std::collections::BTreeSet<PathBuf>) -> Vec<PathBuf> {
    let logs = d.logs_dir();
    let logs_rel = logs.strip_prefix(d.tmp()).unwrap_or(&logs).to_path_buf();
    let saved = Path::new("config").join("processes.json");
    util::new_paths(before, &util::tree(d.tmp()))
        .into_iter()
        .filter(|p| !p.starts_with(&logs_rel) && *p != saved)
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            }
        })
        .unwrap_or(default)
}

#[test]
fn random_requests_always_get_a_sane_answer() {
    let cases = env_number("EXEIO_FUZZ_CASES", DEFAULT_CASES as u64) as usize;
    let seed = env_number("EXEIO_FUZZ_SEED", DEFAULT_SEED).max(1);
    let d = util::daemon_with_key(KEY);
    let before = util::tree(d.tmp());
    let mut rng = Rng(seed);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut died = None;
    for i in 0..cases {
        let case = gen_case(&mut rng);
        let bytes = util::encode(
            &case.method,
            &case.path,
            &case.headers,
            case.body.as_deref(),
            case.chunked,
        );
        match util::exchange(d.addr(), &bytes, util::EXCHANGE) {
            Ok(resp) => {
                *statuses.entry(resp.status).or_default() += 1;
                if let Some(why) = verdict(&case, &resp) {
                    failures.push(format!("case #{i}: {why}\n      {}", case.describe()));
                }
            }
            Err(e) => {
                let alive = util::pid_alive(d.pid());
                failures.push(format!(
                    "case #{i}: no answer ({e}); exeio alive={alive}\n      {}",
                    case.describe()
                ));
                if !alive {
                    died = Some(i);
                    break;
                }
            }
        }
    }
    let alive = util::pid_alive(d.pid());
    let info = util::request(d.addr(), "GET", "/info", &[], None)
        .map(|r| r.status)
        .unwrap_or(0);
    let stray = stray_paths(&d, &before);
    println!(
        "fuzz | {cases} cases, seed {seed:#x} | statuses {statuses:?} | {} failures",
        failures.len()
    );
    let shown: Vec<&String> = failures.iter().take(20).collect();
    assert!(
        failures.is_empty() && died.is_none() && alive && info == 200 && stray.is_empty(),
        "fuzz (seed {seed:#x}, {cases} cases): died at {died:?}, alive={alive}, GET /info={info}, \
         stray files {stray:?}, {} failing cases, first ones:\n  {}",
        failures.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}
