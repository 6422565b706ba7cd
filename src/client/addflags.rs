//! `add`'s flags: one for every config field, each turned into that field
//! of the `POST /add` body (`--periodic SECS` also sets `periodic`). Only
//! what is given is sent, so absent fields take the server's defaults (and
//! fields the server learns later, like `schedule`, pass through). Pure;
//! called by `args` only.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::Failure;
use super::args::{AddFrom, Flag, Split, UpdateFrom, count, flag, usage};

/// `add`'s flags: (flag, config field, kind of value).
pub(super) const ADD: &[(Flag, &str, Kind)] = &[
    (flag(&["--file", "-f"], true), "", Kind::Text),
    (
        flag(&["--cwd", "--working-dir"], true),
        "working_dir",
        Kind::Text,
    ),
    (flag(&["--env", "-e"], true), "env", Kind::Env),
    (
        flag(&["--restart"], true),
        "restart_policy",
        Kind::OneOf(&["always", "on-failure", "never"]),
    ),
    (
        flag(&["--auto-restart"], false),
        "auto_restart",
        Kind::Switch,
    ),
    (flag(&["--save"], false), "save_for_next_run", Kind::Switch),
    (flag(&["--periodic"], true), "period_seconds", Kind::Count),
    (flag(&["--max-restarts"], true), "max_restarts", Kind::Count),
    (flag(&["--stop-signal"], true), "stop_signal", Kind::Text),
    (
        flag(&["--stop-timeout"], true),
        "stop_timeout_seconds",
        Kind::Count,
    ),
    (
        flag(&["--log-max-bytes"], true),
        "log_max_bytes",
        Kind::Size,
    ),
    (flag(&["--log-backups"], true), "log_backups", Kind::Count),
    (flag(&["--backoff"], true), "backoff_seconds", Kind::Seconds),
    (
        flag(&["--backoff-reset"], true),
        "backoff_reset_seconds",
        Kind::Number,
    ),
    (
        flag(&["--rapid-exit-penalty"], true),
        "rapid_exit_penalty_seconds",
        Kind::Number,
    ),
    (flag(&["--user"], true), "user", Kind::Text),
    (flag(&["--group"], true), "group", Kind::Text),
    (
        flag(&["--overlap"], true),
        "overlap",
        Kind::OneOf(&["skip", "queue", "replace"]),
    ),
    (flag(&["--timeout"], true), "timeout_seconds", Kind::Count),
    (flag(&["--history"], true), "history", Kind::Count),
    (flag(&["--schedule"], true), "schedule", Kind::Text),
    (flag(&["--timezone"], true), "timezone", Kind::Text),
    (flag(&["--env-file"], true), "env_file", Kind::Text),
    (flag(&["--catch-up"], false), "catch_up", Kind::Switch),
    (
        flag(&["--catch-up-window"], true),
        "catch_up_window_seconds",
        Kind::Count,
    ),
    (flag(&["--no-catch-up"], false), "catch_up", Kind::Off),
    (
        flag(&["--no-auto-restart"], false),
        "auto_restart",
        Kind::Off,
    ),
    (flag(&["--no-save"], false), "save_for_next_run", Kind::Off),
    (
        flag(&["--max-memory"], true),
        "max_memory_bytes",
        Kind::Size,
    ),
    (flag(&["--depends-on"], true), "depends_on", Kind::Depends),
    (flag(&["--instances"], true), "instances", Kind::Count),
];

/// How an `add` flag's value becomes JSON.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Text,
    /// `K=V`, repeatable, into an object.
    Env,
    OneOf(&'static [&'static str]),
    /// No value: `true`.
    Switch,
    /// No value: `false` (`--no-save`, for `update`).
    Off,
    /// A non-negative integer.
    Count,
    /// A byte count, with an optional K/M/G suffix (powers of 1024).
    Size,
    /// A non-negative number of seconds.
    Number,
    /// A comma-separated list of seconds.
    Seconds,
    /// `ID=CONDITION`, repeatable, into an object (`depends_on`).
    Depends,
}

/// The flags, for the command-line splitter.
pub(super) fn flags() -> Vec<&'static Flag> {
    ADD.iter().map(|(f, _, _)| f).collect()
}

/// `add ID [flags] -- CMD ARGS...` or `add [ID] -f FILE`.
pub(super) fn add(s: Split) -> Result<AddFrom, Failure> {
    let mut pos = s.positional.clone();
    if pos.len() > 1 {
        return Err(usage(format!(
            "add: unexpected argument {:?} (the command goes after --)",
            pos[1]
        )));
    }
    let id = pos.pop();
    if let Some(file) = s.value("--file") {
        if s.flags.iter().any(|(n, _)| *n != "--file") || s.rest.is_some() {
            return Err(usage(
                "add -f FILE takes no other config flags nor a command",
            ));
        }
        return Ok(AddFrom::File {
            path: PathBuf::from(file),
            id,
        });
    }
    let id = id.ok_or_else(|| usage("add needs an ID (or -f FILE)"))?;
    let mut rest = s.rest.clone().unwrap_or_default().into_iter();
    let command = rest
        .next()
        .ok_or_else(|| usage("add needs the command after --: add ID [flags] -- CMD ARGS..."))?;
    let mut body = Map::new();
    body.insert("id".into(), Value::String(id));
    body.insert("command".into(), Value::String(command));
    body.insert(
        "args".into(),
        Value::Array(rest.map(Value::String).collect()),
    );
    set_fields(&s, &mut body)?;
    Ok(AddFrom::Flags(body))
}

/// `update ID [flags] [-- CMD ARGS...]` or `update ID -f FILE`: the fields
/// the flags set (`env` adds to the current `env`), or a whole config.
pub(super) fn update(s: Split) -> Result<(String, UpdateFrom), Failure> {
    let mut pos = s.positional.clone();
    if pos.len() > 1 {
        return Err(usage(format!(
            "update: unexpected argument {:?} (a new command goes after --)",
            pos[1]
        )));
    }
    let id = pos.pop().ok_or_else(|| usage("update needs an ID"))?;
    if let Some(file) = s.value("--file") {
        if s.flags.iter().any(|(n, _)| *n != "--file") || s.rest.is_some() {
            return Err(usage(
                "update -f FILE takes no other config flags nor a command",
            ));
        }
        return Ok((id, UpdateFrom::File(PathBuf::from(file))));
    }
    let mut body = Map::new();
    if let Some(rest) = &s.rest {
        let mut rest = rest.iter().cloned();
        let command = rest
            .next()
            .ok_or_else(|| usage("update: a command after --, or none"))?;
        body.insert("command".into(), Value::String(command));
        body.insert(
            "args".into(),
            Value::Array(rest.map(Value::String).collect()),
        );
    }
    set_fields(&s, &mut body)?;
    if body.is_empty() {
        return Err(usage(
            "update needs a flag to change (see 'exeio help update') or -f FILE",
        ));
    }
    Ok((id, UpdateFrom::Flags(body)))
}

/// Set the fields the flags give in `body`.
fn set_fields(s: &Split, body: &mut Map<String, Value>) -> Result<(), Failure> {
    for (name, value) in &s.flags {
        if *name == "--file" {
            continue;
        }
        let (_, field, kind) = ADD
            .iter()
            .find(|(f, _, _)| f.names[0] == *name)
            .expect("a flag from ADD");
        let v = value.as_deref().unwrap_or("");
        let json = match *kind {
            Kind::Text => Value::String(v.to_owned()),
            Kind::Env => {
                let (k, val) = v
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| usage(format!("--env wants NAME=VALUE, not {v:?}")))?;
                let env = body
                    .entry("env")
                    .or_insert_with(|| Value::Object(Map::new()));
                env[k] = Value::String(val.to_owned());
                continue;
            }
            Kind::OneOf(allowed) => {
                if !allowed.contains(&v) {
                    return Err(usage(format!(
                        "{name} must be {}, not {v:?}",
                        allowed.join(", ")
                    )));
                }
                Value::String(v.to_owned())
            }
            Kind::Depends => {
                const CONDITIONS: [&str; 3] = ["started", "healthy", "completed_successfully"];
                let (dep, cond) = v
                    .split_once('=')
                    .filter(|(d, c)| !d.is_empty() && CONDITIONS.contains(c))
                    .ok_or_else(|| {
                        usage(format!(
                            "--depends-on wants ID=CONDITION ({}), not {v:?}",
                            CONDITIONS.join(", ")
                        ))
                    })?;
                let deps = body
                    .entry(*field)
                    .or_insert_with(|| Value::Object(Map::new()));
                deps[dep] = Value::String(cond.to_owned());
                continue;
            }
            Kind::Switch => Value::Bool(true),
            Kind::Off => Value::Bool(false),
            Kind::Count => Value::from(count(name, v)?),
            Kind::Size => Value::from(size(name, v)?),
            Kind::Number => Value::from(seconds(name, v)?),
            Kind::Seconds => Value::from(
                v.split(',')
                    .map(|p| seconds(name, p.trim()))
                    .collect::<Result<Vec<f64>, _>>()?,
            ),
        };
        if *field == "period_seconds" {
            body.insert("periodic".into(), Value::Bool(true));
        }
        body.insert((*field).into(), json);
    }
    Ok(())
}

fn seconds(name: &str, v: &str) -> Result<f64, Failure> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| usage(format!("{name} wants seconds (a number >= 0), not {v:?}")))
}

/// `4096`, `64K`, `10M`, `1G`, also `10MiB`, `10MB` (all powers of 1024).
pub fn size(name: &str, v: &str) -> Result<u64, Failure> {
    let bad = || {
        usage(format!(
            "{name} wants a size like 10485760, 512K or 10M, not {v:?}"
        ))
    };
    let t = v.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::Command;
    use crate::client::args::tests::{cmd, parse_str};
    use serde_json::json;

    fn add_body(args: &[&str]) -> Value {
        match cmd(args) {
            Command::Add(AddFrom::Flags(m)) => Value::Object(m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_flags_become_the_add_body() {
        let body = add_body(&[
            "add",
            "web",
            "--cwd",
            "/srv",
            "--env",
            "A=1",
            "-e",
            "B=x=y",
            "--restart",
            "on-failure",
            "--auto-restart",
            "--save",
            "--max-restarts",
            "5",
            "--stop-signal",
            "INT",
            "--stop-timeout",
            "3",
            "--log-max-bytes",
            "1M",
            "--log-backups",
            "2",
            "--backoff",
            "0.1, 0.5,1",
            "--backoff-reset",
            "60",
            "--rapid-exit-penalty",
            "0",
            "--user",
            "nobody",
            "--group",
            "nogroup",
            "--",
            "python3",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
        ]);
        assert_eq!(
            body,
            json!({
                "id": "web", "command": "python3",
                "args": ["-m", "http.server", "--bind", "127.0.0.1"],
                "working_dir": "/srv", "env": {"A": "1", "B": "x=y"},
                "restart_policy": "on-failure", "auto_restart": true,
                "save_for_next_run": true, "max_restarts": 5, "stop_signal": "INT",
                "stop_timeout_seconds": 3, "log_max_bytes": 1048576, "log_backups": 2,
                "backoff_seconds": [0.1, 0.5, 1.0], "backoff_reset_seconds": 60.0,
                "rapid_exit_penalty_seconds": 0.0, "user": "nobody", "group": "nogroup",
            })
        );
    }

    #[test]
    fn job_flags_and_flags_anywhere_before_the_command() {
        let body = add_body(&[
            "add",
            "--json",
            "--periodic",
            "60",
            "job",
            "--overlap",
            "queue",
            "--timeout=30",
            "--history",
            "7",
            "--url",
            "http://h:1",
            "--",
            "sh",
            "-c",
            "--json",
        ]);
        assert_eq!(
            body,
            json!({"id": "job", "command": "sh", "args": ["-c", "--json"],
                   "periodic": true, "period_seconds": 60, "overlap": "queue",
                   "timeout_seconds": 30, "history": 7})
        );
        let body = add_body(&[
            "add",
            "c",
            "--schedule",
            "*/5 * * * *",
            "--timezone",
            "UTC",
            "--",
            "true",
        ]);
        assert_eq!(body["schedule"], "*/5 * * * *");
        assert_eq!(body["timezone"], "UTC");
        assert!(
            body.get("periodic").is_none(),
            "only what was given is sent"
        );
        let inv = parse_str(&["add", "--json", "x", "--url", "http://h:1", "--", "true"]).unwrap();
        assert!(inv.globals.json);
        assert_eq!(inv.globals.urls, ["http://h:1"]);
    }

    #[test]
    fn add_from_a_file() {
        assert_eq!(
            cmd(&["add", "-f", "spec.json"]),
            Command::Add(AddFrom::File {
                path: "spec.json".into(),
                id: None
            })
        );
        assert_eq!(
            cmd(&["add", "web", "--file=-"]),
            Command::Add(AddFrom::File {
                path: "-".into(),
                id: Some("web".into())
            })
        );
        assert!(parse_str(&["add", "-f", "x.json", "--save"]).is_err());
        assert!(parse_str(&["add", "-f", "x.json", "--", "true"]).is_err());
    }

    #[test]
    fn depends_on_flags_make_one_object() {
        let body = add_body(&[
            "add",
            "web",
            "--depends-on",
            "db=healthy",
            "--depends-on=migrate=completed_successfully",
            "--",
            "true",
        ]);
        assert_eq!(
            body["depends_on"],
            json!({"db": "healthy", "migrate": "completed_successfully"})
        );
        for bad in ["db", "db=ready", "=started"] {
            assert!(
                parse_str(&["add", "web", "--depends-on", bad, "--", "true"]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("s", "4096").unwrap(), 4096);
        assert_eq!(size("s", "64K").unwrap(), 65536);
        assert_eq!(size("s", "10MiB").unwrap(), 10 << 20);
        assert_eq!(size("s", "1g").unwrap(), 1 << 30);
        assert!(size("s", "").is_err());
        assert!(size("s", "1.5M").is_err());
        assert!(size("s", "99999999999999999999G").is_err());
    }
}
