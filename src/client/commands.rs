//! The client's commands on one host: each sends its request(s) and renders
//! the answer (or, with `--json`, prints the API's JSON as is, one answer a
//! line). `logs`, `apply` and `status` have modules of their own. Called by
//! `client::run`, in parallel when there are several hosts.

use serde_json::{Value, json};

use super::args::{AddFrom, Command};
use super::http::{Client, Received, encode};
use super::status::status;
use super::table::{self, Align, Style, Table, cell};
use super::{Ctx, Failure, Report, apply, logs, ops};

/// Run `command` on `ctx.client`.
pub fn run(command: &Command, ctx: &Ctx<'_>) -> Report {
    let mut r = Report::default();
    let c = ctx.client;
    let done = match command {
        Command::Help(_) => Ok(()),
        Command::Ls => ls(ctx, &mut r),
        Command::Status(id) => status(ctx, id, &mut r),
        Command::Health(id) => super::health::health(ctx, id, &mut r),
        Command::Add(from) => add(ctx, from, &mut r),
        Command::Each(verb, ids) => {
            for id in ids {
                let got = c.post(&format!("/{}/{}", verb.path(), encode(id)), None);
                if let Err(f) = said(ctx, got, &mut r) {
                    r.fail(f);
                }
            }
            Ok(())
        }
        Command::Logs(a) => logs::logs(ctx, a, &mut r),
        Command::Input { id, text } => {
            let got = c.post(
                &format!("/input/{}", encode(id)),
                Some(&json!({"input": text})),
            );
            said(ctx, got, &mut r)
        }
        Command::Run(id) => said(ctx, c.post(&format!("/run/{}", encode(id)), None), &mut r),
        Command::Runs { id, limit } => runs(ctx, id, *limit, &mut r),
        Command::Apply(a) => apply::apply(ctx, a, &mut r),
        Command::KeysLs => keys(ctx, &mut r),
        Command::KeysAdd { name, role } => {
            let got = c.post("/keys", Some(&json!({"name": name, "role": role})));
            keys_add(ctx, got, name, role, &mut r)
        }
        Command::KeysRevoke(name) => said(
            ctx,
            c.post(&format!("/keys/{}/revoke", encode(name)), None),
            &mut r,
        ),
        Command::Shutdown => said(ctx, c.post("/shutdown", None), &mut r),
        Command::Update { id, from } => ops::update(ctx, id, from, &mut r),
        Command::Post { path, body } => ops::post(ctx, path, body.as_ref(), &mut r),
        Command::FollowAll { lines, stream } => ops::follow_all(ctx, *lines, stream.as_deref()),
        Command::Audit { page, lines } => ops::audit(ctx, *page, *lines, &mut r),
        Command::Events { since } => ops::events(ctx, *since),
        Command::Info => ops::info(ctx, &mut r),
        Command::Notify(n) => super::notify::run(ctx, n, &mut r),
        Command::Deploy { id, path } => super::deploy::deploy(ctx, id, path, &mut r),
        Command::Releases(id) => super::deploy::releases(ctx, id, &mut r),
        Command::Rollback { id, release } => {
            super::deploy::rollback(ctx, id, release.as_deref(), &mut r)
        }
    };
    if let Err(f) = done {
        r.fail(f);
    }
    r
}

/// The new key alone on stdout (`KEY=$(exeio keys add ...)`), a note on stderr.
fn keys_add(
    ctx: &Ctx<'_>,
    got: Result<Received, Failure>,
    name: &str,
    role: &str,
    r: &mut Report,
) -> Result<(), Failure> {
    let reply = got?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    r.out.push_str(v["key"].as_str().unwrap_or(""));
    r.out.push('\n');
    eprintln_note(&format!(
        "key '{name}' ({role}) created: store it now, it is not shown again"
    ));
    Ok(())
}

pub(super) fn eprintln_note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The body as one line (the API's JSON is compact already).
pub fn json_line(reply: &Received) -> String {
    let mut s = reply.text().replace('\n', " ");
    s.push('\n');
    s
}

/// Print the answer's `message` (or its JSON).
pub(super) fn said(
    ctx: &Ctx<'_>,
    got: Result<Received, Failure>,
    r: &mut Report,
) -> Result<(), Failure> {
    let reply = got?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    let msg = v["message"].as_str().unwrap_or("done");
    r.out.push_str(msg);
    if let Some(pid) = v["process"]["pid"].as_u64() {
        r.out.push_str(&format!(" (pid {pid})"));
    }
    r.out.push('\n');
    Ok(())
}

/// `GET /list`.
pub fn list(c: &Client) -> Result<Vec<Value>, Failure> {
    match c.get("/list")?.json()? {
        Value::Array(a) => Ok(a),
        other => Err(Failure::Other(format!(
            "GET /list did not answer an array: {other}"
        ))),
    }
}

fn ls(ctx: &Ctx<'_>, r: &mut Report) -> Result<(), Failure> {
    if ctx.json {
        let reply = ctx.client.get("/list")?;
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let procs = list(ctx.client)?;
    r.out = ls_table(procs.iter().map(|p| (None, p)), ctx.style, now_unix());
    Ok(())
}

/// One table over several hosts (a HOST column), and the failures by host.
pub fn ls_many(
    clients: &[Client],
    lists: Vec<Result<Vec<Value>, Failure>>,
    style: Style,
) -> (String, Vec<(usize, Failure)>) {
    let mut rows: Vec<(Option<&str>, &Value)> = Vec::new();
    let mut errors = Vec::new();
    for (i, got) in lists.iter().enumerate() {
        match got {
            Ok(procs) => rows.extend(procs.iter().map(|p| (Some(clients[i].url.as_str()), p))),
            Err(f) => errors.push((i, f.clone())),
        }
    }
    (ls_table(rows.into_iter(), style, now_unix()), errors)
}

pub(super) fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The table of `ls`; a HOST column when any row has a host.
pub fn ls_table<'a>(
    procs: impl Iterator<Item = (Option<&'a str>, &'a Value)>,
    style: Style,
    now: f64,
) -> String {
    let procs: Vec<_> = procs.collect();
    let with_host = procs.iter().any(|(h, _)| h.is_some());
    let mut cols = vec![
        ("ID", Align::Left),
        ("STATUS", Align::Left),
        ("HEALTH", Align::Left),
        ("PID", Align::Right),
        ("UPTIME", Align::Right),
        ("RESTARTS", Align::Right),
        ("CPU", Align::Right),
        ("RSS", Align::Right),
        ("NEXT RUN", Align::Right),
        ("LAST EXIT", Align::Left),
        ("SAVED", Align::Left),
    ];
    if with_host {
        cols.insert(0, ("HOST", Align::Left));
    }
    let mut t = Table::new(&cols);
    for (host, p) in procs {
        let status = p["status"].as_str().unwrap_or("?");
        let dash = || "-".to_owned();
        let mut row = vec![
            cell(p["id"].as_str().unwrap_or("?")),
            (status.to_owned(), style.status(status)),
            super::health::cell_of(p, style),
            cell(p["pid"].as_u64().map_or_else(dash, |n| n.to_string())),
            cell(
                p["uptime_seconds"]
                    .as_f64()
                    .map_or_else(dash, table::duration),
            ),
            // restart_count, as the dashboard shows (restarts in a row);
            // `status` also gives restarts_total.
            cell(p["restart_count"].as_u64().unwrap_or(0).to_string()),
            cell(
                p["cpu_percent"]
                    .as_f64()
                    .map_or_else(dash, |c| format!("{c:.1}%")),
            ),
            cell(p["rss_bytes"].as_u64().map_or_else(dash, table::size)),
            cell(
                p["next_run_in_seconds"]
                    .as_f64()
                    .map_or_else(dash, table::duration),
            ),
            cell(last_exit(&p["last_exit"], now)),
            cell(if p["save_for_next_run"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            }),
        ];
        if let Some(h) = host {
            row.insert(0, cell(h));
        }
        t.row(row);
    }
    t.render()
}

/// `code 0, 5m ago` / `signal 9, 12s ago` / `-`.
pub fn last_exit(e: &Value, now: f64) -> String {
    let what = if let Some(c) = e["code"].as_i64() {
        format!("code {c}")
    } else if let Some(s) = e["signal"].as_i64() {
        format!("signal {s}")
    } else {
        return "-".into();
    };
    match e["at"].as_str().and_then(unix_seconds) {
        Some(at) => format!("{what}, {} ago", table::duration((now - at).max(0.0))),
        None => what,
    }
}

/// Seconds since the epoch of an RFC 3339 time.
fn unix_seconds(t: &str) -> Option<f64> {
    let ts: jiff::Timestamp = t.parse().ok()?;
    Some(ts.as_millisecond() as f64 / 1000.0)
}

fn add(ctx: &Ctx<'_>, from: &AddFrom, r: &mut Report) -> Result<(), Failure> {
    let body = match from {
        AddFrom::Flags(m) => Value::Object(m.clone()),
        AddFrom::File { path, id } => {
            let mut m = super::ops::read_object(path)?;
            match (id, m.get("id")) {
                (Some(id), Some(Value::String(inner))) if inner != id => {
                    return Err(Failure::Usage(format!(
                        "the id {id:?} is not the file's id {inner:?}"
                    )));
                }
                (Some(id), _) => {
                    m.insert("id".into(), Value::String(id.clone()));
                }
                (None, _) => {}
            }
            Value::Object(m)
        }
    };
    said(ctx, ctx.client.post("/add", Some(&body)), r)
}

fn runs(ctx: &Ctx<'_>, id: &str, limit: usize, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx
        .client
        .get(&format!("/runs/{}?limit={limit}", encode(id)))?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    r.out = runs_table(
        v["runs"].as_array().map(Vec::as_slice).unwrap_or(&[]),
        ctx.style,
    );
    Ok(())
}

/// RUN TRIGGER STARTED DURATION EXIT RESULT, newest first (as the API gives).
pub fn runs_table(runs: &[Value], style: Style) -> String {
    let mut t = Table::new(&[
        ("RUN", Align::Right),
        ("TRIGGER", Align::Left),
        ("STARTED", Align::Left),
        ("DURATION", Align::Right),
        ("EXIT", Align::Left),
        ("RESULT", Align::Left),
    ]);
    for run in runs {
        let started = run["started_at"]
            .as_str()
            .or_else(|| run["scheduled_at"].as_str())
            .map_or_else(|| "-".into(), table::time);
        let exit = if let Some(c) = run["exit"]["code"].as_i64() {
            format!("code {c}")
        } else if let Some(s) = run["exit"]["signal"].as_i64() {
            format!("signal {s}")
        } else {
            "-".into()
        };
        let result = run["result"].as_str().unwrap_or("?");
        let mut shown = result.to_owned();
        if let Some(n) = run["skipped_before"].as_u64().filter(|n| *n > 0) {
            shown.push_str(&format!(" ({n} skipped before)"));
        }
        t.row(vec![
            cell(
                run["run"]
                    .as_u64()
                    .map_or_else(|| "?".into(), |n| n.to_string()),
            ),
            cell(run["trigger"].as_str().unwrap_or("?")),
            cell(started),
            cell(
                run["duration_seconds"]
                    .as_f64()
                    .map_or_else(|| "-".into(), table::short_duration),
            ),
            cell(exit),
            (shown, style.result(result)),
        ]);
    }
    t.render()
}

fn keys(ctx: &Ctx<'_>, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx.client.get("/keys")?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("ROLE", Align::Left),
        ("CREATED", Align::Left),
        ("LAST USED", Align::Left),
    ]);
    for k in v["keys"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let time = |f: &str| k[f].as_str().map_or_else(|| "-".into(), table::time);
        t.row(vec![
            cell(k["name"].as_str().unwrap_or("?")),
            cell(k["role"].as_str().unwrap_or("?")),
            cell(time("created_at")),
            cell(time("last_used_at")),
        ]);
    }
    r.out = t.render();
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `/list` entry with every field set (also `status`'s tests).
    pub(in crate::client) fn proc(id: &str, status: &str) -> Value {
        json!({
            "id": id, "command": "sh", "args": ["-c", "echo 'hi there'"], "status": status,
            "is_running": status == "running", "pid": if status == "running" { json!(4242) } else { Value::Null },
            "uptime_seconds": if status == "running" { json!(192.5) } else { Value::Null },
            "restart_count": 1, "restarts_total": 3, "cpu_percent": 1.25, "rss_bytes": 5_242_880,
            "next_run_in_seconds": null, "restart_policy": "always", "save_for_next_run": true,
            "last_exit": {"code": 1, "at": "2025-01-01T00:00:00Z"},
            "env": {"A": "1"}, "log_file": "/l/web.log", "periodic": false, "run_count": 4,
            "health": "healthy", "health_message": "HTTP 503",
        })
    }

    #[test]
    fn ls_table_has_every_column_and_no_colour_off_a_tty() {
        let now = unix_seconds("2025-01-01T00:05:00Z").unwrap();
        let procs = [proc("web", "running"), proc("worker-long-name", "backoff")];
        let out = ls_table(procs.iter().map(|p| (None, p)), Style::default(), now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "ID                STATUS   HEALTH    PID  UPTIME  RESTARTS   CPU     RSS  NEXT RUN  LAST EXIT          SAVED"
        );
        assert_eq!(
            lines[1],
            "web               running  healthy  4242   3m12s         1  1.2%  5.0MiB         -  code 1, 5m00s ago  yes"
        );
        assert!(lines[2].starts_with("worker-long-name  backoff  healthy     -       -         1"));
        assert!(!out.contains('\x1b'));
        let out = ls_table(
            procs.iter().map(|p| (Some("http://h:1"), p)),
            Style::default(),
            now,
        );
        assert!(out.starts_with("HOST        ID "), "{out}");
    }

    #[test]
    fn runs_rows() {
        let runs = [
            json!({"run": 2, "trigger": "manual", "started_at": "2025-01-01T00:00:00Z",
                           "duration_seconds": 0.5, "exit": {"code": 0}, "result": "ok",
                           "skipped_before": 0}),
        ];
        let out = runs_table(&runs, Style::default());
        assert_eq!(
            out,
            "RUN  TRIGGER  STARTED              DURATION  EXIT    RESULT\n\
             \x20 2  manual   2025-01-01 00:00:00      0.5s  code 0  ok\n"
        );
    }
}
