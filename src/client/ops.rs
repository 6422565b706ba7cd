//! The client's commands for every endpoint that had none (issue 21):
//! `update`, `clear-log`, `stop-all`, `restart-all`, `signal`, `audit`,
//! `events` (one line an event), `info`, `logs -f` of every process and
//! `logs --page/--since`. Called by `commands::run`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

use super::args::{LogsArgs, Since, UpdateFrom};
use super::commands::{json_line, said};
use super::http::encode;
use super::table;
use super::{Ctx, Failure, Report};

/// The fields of a process object that are its configuration (what
/// `POST /update` takes); the job-only ones go only with a job.
const CONFIG_FIELDS: &[&str] = &[
    "command",
    "args",
    "working_dir",
    "env",
    "env_file",
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
    "backoff_seconds",
    "backoff_reset_seconds",
    "rapid_exit_penalty_seconds",
    "user",
    "group",
    "schedule",
    "timezone",
    "catch_up",
    "catch_up_window_seconds",
    "overlap",
    "timeout_seconds",
    "history",
];
const JOB_ONLY: &[&str] = &["overlap", "timeout_seconds", "history"];

/// The configuration in a process object (nulls left out).
pub fn config_of(p: &Value) -> Map<String, Value> {
    let job = p["periodic"] == Value::Bool(true) || !p["schedule"].is_null();
    CONFIG_FIELDS
        .iter()
        .filter(|f| job || !JOB_ONLY.contains(f))
        .filter_map(|f| {
            let v = p.get(*f)?;
            (!v.is_null()).then(|| ((*f).to_owned(), v.clone()))
        })
        .collect()
}

/// `changes` over `current`; `env` adds to the current `env`.
pub fn merged(mut current: Map<String, Value>, changes: &Map<String, Value>) -> Map<String, Value> {
    for (k, v) in changes {
        match (k.as_str(), current.get_mut(k), v) {
            ("env", Some(Value::Object(now)), Value::Object(more)) => {
                now.extend(more.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => {
                current.insert(k.clone(), v.clone());
            }
        }
    }
    current
}

pub fn update(ctx: &Ctx<'_>, id: &str, from: &UpdateFrom, r: &mut Report) -> Result<(), Failure> {
    let path = format!("/update/{}", encode(id));
    let body = match from {
        UpdateFrom::File(file) => Value::Object(read_object(file)?),
        UpdateFrom::Flags(changes) => {
            let now = ctx.client.get(&format!("/status/{}", encode(id)))?.json()?;
            // A group (instances) shows its configuration as given.
            let current = match now["group"]["config"].as_object() {
                Some(config) => config.clone(),
                None => config_of(&now["process"]),
            };
            Value::Object(merged(current, changes))
        }
    };
    said(ctx, ctx.client.post(&path, Some(&body)), r)
}

/// A JSON object from a file (`-`: stdin).
pub fn read_object(file: &std::path::Path) -> Result<Map<String, Value>, Failure> {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::Other(format!("cannot read stdin: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Failure::Other(format!("cannot read {}: {e}", file.display())))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Failure::Other(format!("{}: not a JSON object: {e}", file.display())))
}

pub fn post(
    ctx: &Ctx<'_>,
    path: &str,
    body: Option<&Value>,
    r: &mut Report,
) -> Result<(), Failure> {
    said(ctx, ctx.client.post(path, body), r)
}

pub fn info(ctx: &Ctx<'_>, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx.client.get("/info")?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    let s = |k: &str| v[k].as_str().unwrap_or("?").to_owned();
    let mut items = vec![
        ("name", s("name")),
        ("version", s("version")),
        (
            "uptime",
            v["uptime_seconds"]
                .as_f64()
                .map_or_else(|| "?".into(), table::duration),
        ),
        (
            "started",
            v["started_at"]
                .as_str()
                .map_or_else(|| "?".into(), table::time),
        ),
        (
            "tls",
            if v["tls"] == Value::Bool(true) {
                "on"
            } else {
                "off"
            }
            .into(),
        ),
        ("isolation", s("isolation")),
    ];
    let saved = &v["saved"];
    if !saved.is_null() {
        let state = if saved["ok"] == Value::Bool(true) {
            "ok".to_owned()
        } else {
            format!(
                "not yet{}",
                saved["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        };
        items.push(("saved", state));
    }
    let endpoints: Vec<&str> = v["endpoints"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    items.push(("endpoints", endpoints.len().to_string()));
    r.out = table::pairs(&items);
    for e in endpoints {
        r.out.push_str(&format!("  {e}\n"));
    }
    Ok(())
}

pub fn audit(ctx: &Ctx<'_>, page: usize, lines: usize, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx
        .client
        .get(&format!("/audit?page={page}&page_size={lines}"))?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    r.out = oldest_first(&v["logs"]);
    Ok(())
}

fn oldest_first(newest_first: &Value) -> String {
    let mut out = String::new();
    for l in newest_first
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .rev()
    {
        out.push_str(l.as_str().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// `logs ID --page N` (a page of `-n` lines, newest first in the API,
/// printed oldest first) or `--since` (every line from then, through as many
/// pages as it takes; then `-f` follows).
pub fn page_or_since(
    ctx: &Ctx<'_>,
    a: &LogsArgs,
    stream: &str,
    r: &mut Report,
) -> Result<bool, Failure> {
    let id = encode(&a.id);
    if let Some(page) = a.page {
        let size = a.lines.clamp(1, 1000);
        let reply = ctx
            .client
            .get(&format!("/logs/{id}?page={page}&page_size={size}{stream}"))?;
        if ctx.json {
            r.out.push_str(&json_line(&reply));
        } else {
            r.out = oldest_first(&reply.json()?["logs"]);
        }
        return Ok(true);
    }
    let Some(since) = &a.since else {
        return Ok(false);
    };
    let from = cutoff(since, SystemTime::now());
    let mut newest_first: Vec<String> = Vec::new();
    'pages: for page in 1.. {
        let reply = ctx
            .client
            .get(&format!("/logs/{id}?page={page}&page_size=1000{stream}"))?;
        let v = reply.json()?;
        let lines = v["logs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for l in lines.iter().filter_map(Value::as_str) {
            if line_time(l).is_some_and(|t| t < from.as_str()) {
                break 'pages;
            }
            newest_first.push(l.to_owned());
        }
        if lines.len() < 1000 {
            break;
        }
    }
    let out: String = newest_first
        .iter()
        .rev()
        .map(|l| format!("{l}\n"))
        .collect();
    super::print(&out);
    Ok(!a.follow)
}

/// The `YYYY-MM-DD HH:MM:SS` (UTC) lines from `since` on start with.
pub fn cutoff(since: &Since, now: SystemTime) -> String {
    match since {
        Since::At(t) => t.clone(),
        Since::Ago(d) => {
            let at = now.checked_sub(*d).unwrap_or(SystemTime::UNIX_EPOCH);
            jiff::Timestamp::try_from(at)
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default()
        }
    }
}

/// The time of a log line (`[2026-12-07 10:00:00] STDOUT: ...`).
fn line_time(line: &str) -> Option<&str> {
    let t = line.strip_prefix('[')?.get(..19)?;
    (line.as_bytes().get(20) == Some(&b']')).then_some(t)
}

/// How often `logs -f` without an id looks for processes added since it
/// started.
const LIST_EVERY: Duration = Duration::from_secs(2);

/// `logs -f` without an id: every process's follow stream at once, each
/// line prefixed with its id; `/list` is read again every `LIST_EVERY`, so
/// a process added later is followed too (and one removed and added
/// again). Runs until stdout closes, a stream breaks or exeio is gone.
pub fn follow_all(ctx: &Ctx<'_>, lines: usize, stream: Option<&str>) -> Result<(), Failure> {
    let stream = stream.map(|s| format!("&stream={s}")).unwrap_or_default();
    let host = ctx.label.map(|h| format!("{h}: ")).unwrap_or_default();
    let followed: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    // The first stream that broke, or stdout closed (`None` inside).
    let ended: Mutex<Option<Result<(), Failure>>> = Mutex::new(None);
    let mut width = 0;
    std::thread::scope(|s| {
        loop {
            let ids: Vec<String> = match super::commands::list(ctx.client) {
                Ok(procs) => procs
                    .iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_owned))
                    .collect(),
                Err(e) => return Err(e),
            };
            width = ids.iter().map(String::len).fold(width, usize::max);
            for id in ids {
                if !followed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id.clone())
                {
                    continue;
                }
                let path = format!(
                    "/logs/{}?follow=true&tail={}{stream}",
                    encode(&id),
                    lines.min(1000)
                );
                let prefix = format!("{host}{id:<width$} | ");
                let (followed, ended) = (&followed, &ended);
                s.spawn(move || {
                    let r = ctx
                        .client
                        .stream(&path)
                        .and_then(|body| super::logs::copy_lines(ctx, body, &prefix));
                    followed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    let end = match r {
                        Ok(false) => return, // removed: followed again if added again
                        Ok(true) => Ok(()),
                        Err(e) => Err(e),
                    };
                    ended
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(end);
                });
            }
            let next = Instant::now() + LIST_EVERY;
            while Instant::now() < next {
                if let Some(end) = ended.lock().unwrap_or_else(PoisonError::into_inner).take() {
                    return end;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}

/// `events`: the server-sent events, one line each, as they come.
pub fn events(ctx: &Ctx<'_>, since: Option<u64>) -> Result<(), Failure> {
    let path = match since {
        Some(n) => format!("/events?since={n}"),
        None => "/events".to_owned(),
    };
    let body = ctx.client.stream(&path)?;
    let mut reader = BufReader::new(body);
    let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(Failure::Connect {
                    url: ctx.client.url.clone(),
                    message: format!("the event stream broke: {e}"),
                });
            }
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            if !data.is_empty() || !kind.is_empty() {
                let v: Value = serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
                let text = if ctx.json {
                    format!("{}\n", json!({"id": id, "event": kind, "data": v}))
                } else {
                    format!("{}\n", event_line(&id, &kind, &v))
                };
                let mut out = std::io::stdout().lock();
                if out
                    .write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            id.clear();
            kind.clear();
            data.clear();
        } else if let Some(v) = l.strip_prefix("id:") {
            id = v.trim().to_owned();
        } else if let Some(v) = l.strip_prefix("event:") {
            kind = v.trim().to_owned();
        } else if let Some(v) = l.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
}

/// One event as a line: `TIME  ID  what happened  #EVENT-ID`.
pub fn event_line(id: &str, kind: &str, v: &Value) -> String {
    let at = v["at"].as_str().map_or_else(|| "-".into(), table::time);
    let who = v["id"].as_str().unwrap_or("-");
    let what = match kind {
        "state" => {
            let mut s = format!(
                "{} -> {}",
                v["from"].as_str().unwrap_or("?"),
                v["to"].as_str().unwrap_or("?")
            );
            if let Some(pid) = v["pid"].as_u64() {
                s.push_str(&format!(" (pid {pid})"));
            }
            if let Some(c) = v["exit"]["code"].as_i64() {
                s.push_str(&format!(", exit code {c}"));
            } else if let Some(sig) = v["exit"]["signal"].as_i64() {
                s.push_str(&format!(", killed by signal {sig}"));
            }
            s
        }
        "run" => format!(
            "run {} {}",
            v["run"]
                .as_u64()
                .map_or_else(|| "?".into(), |n| n.to_string()),
            v["result"].as_str().unwrap_or("?")
        ),
        "updated" if v["restarted"] == Value::Bool(true) => "updated (restarted)".into(),
        "gap" | "dropped" => v["message"].as_str().unwrap_or(kind).to_owned(),
        other => other.to_owned(),
    };
    format!("{at}  {who}  {what}  #{id}")
}

/// The help of the commands of this module.
pub fn help(topic: &str) -> Option<&'static str> {
    Some(match topic {
        "update" => {
            "Usage: exeio update ID [FLAGS] [-- COMMAND ARGS...]\n\
             \x20      exeio update ID -f FILE      (a whole JSON config; - reads stdin)\n\n\
             The flags (those of 'exeio help add', plus --no-auto-restart, --no-save,\n\
             --no-catch-up) change those fields of the current config; -e adds to its\n\
             env. A new command goes after --. The process restarts only if what it\n\
             is started with changed (command, args, env, env_file, working dir, user).\n"
        }
        "signal" => {
            "Usage: exeio signal ID SIGNAL\n\n\
             Send SIGNAL (HUP, SIGUSR1, winch, or a number) to the process's group,\n\
             without a restart: reload a config, reopen a log.\n"
        }
        "clear-log" => {
            "Usage: exeio clear-log ID\n\nEmpty the process's log (and its rotated files).\n"
        }
        "stop-all" | "restart-all" => {
            "Usage: exeio stop-all | exeio restart-all\n\nStop, or restart, every process.\n"
        }
        "audit" => {
            "Usage: exeio audit [-n N] [--page N]\n\n\
             The audit log (admin key): N lines (default 50) of page N (1 = the newest),\n\
             oldest first.\n"
        }
        "events" => {
            "Usage: exeio events [--since EVENT-ID]\n\n\
             Every change (added, removed, updated, state, run) as it happens, one line\n\
             each: TIME  ID  WHAT  #EVENT-ID. --since replays what came after that\n\
             event. --json prints each event as a JSON object. Ctrl-C ends it.\n"
        }
        "info" => {
            "Usage: exeio info\n\nexeio's name, version, uptime, TLS, isolation and endpoints.\n"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn update_keeps_the_current_config_and_adds_env() {
        let p = json!({"id": "web", "command": "sleep", "args": ["9"], "env": {"A": "1"},
                       "periodic": false, "period_seconds": null, "overlap": "skip",
                       "status": "running", "pid": 7, "restart_policy": "always"});
        let cur = config_of(&p);
        assert!(!cur.contains_key("overlap") && !cur.contains_key("pid"));
        assert!(!cur.contains_key("period_seconds"));
        let mut changes = Map::new();
        changes.insert("env".into(), json!({"B": "2"}));
        changes.insert("restart_policy".into(), json!("never"));
        let m = Value::Object(merged(cur, &changes));
        assert_eq!(m["env"], json!({"A": "1", "B": "2"}));
        assert_eq!(m["restart_policy"], "never");
        assert_eq!(m["args"], json!(["9"]));
    }

    #[test]
    fn since_cutoffs_and_line_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 600);
        assert_eq!(
            cutoff(&Since::Ago(Duration::from_secs(600)), now),
            "1970-01-02 00:00:00"
        );
        assert_eq!(
            line_time("[2026-12-07 10:00:00] STDOUT: x"),
            Some("2026-12-07 10:00:00")
        );
        assert_eq!(line_time("garbage"), None);
    }

    #[test]
    fn events_read_as_lines() {
        let v = json!({"id": "web", "from": "running", "to": "backoff", "pid": null,
                       "exit": {"code": 1}, "at": "2026-12-07T10:00:00Z"});
        assert_eq!(
            event_line("42", "state", &v),
            "2026-12-07 10:00:00  web  running -> backoff, exit code 1  #42"
        );
        let v = json!({"id": "web", "at": "2026-12-07T10:00:00Z"});
        assert_eq!(
            event_line("43", "added", &v),
            "2026-12-07 10:00:00  web  added  #43"
        );
    }
}
