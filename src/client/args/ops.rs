//! The arguments of the commands added for issue 21 (`clear-log`,
//! `stop-all`, `restart-all`, `signal`, `audit`, `events`, `info`, `logs -f`
//! of every process, `logs --page/--since`). Pure, like the rest of `args`.

use std::time::Duration;

use serde_json::json;

use super::{Command, DEFAULT_LOG_LINES, Flag, Since, Split, count, flag, positive, usage};
use crate::client::Failure;
use crate::client::http::encode;

pub(super) const AUDIT: &[Flag] = &[flag(&["-n", "--lines"], true), flag(&["--page"], true)];
pub(super) const EVENTS: &[Flag] = &[flag(&["--since"], true)];

/// Lines of `audit` by default.
const DEFAULT_AUDIT_LINES: usize = 50;

pub(super) fn command(name: &str, s: &Split, mut pos: Vec<String>) -> Result<Command, Failure> {
    let want = |n: usize, what: &str| -> Result<(), Failure> {
        match pos.len().cmp(&n) {
            std::cmp::Ordering::Less => Err(usage(format!("{name} needs {what}"))),
            std::cmp::Ordering::Greater => {
                Err(usage(format!("{name}: unexpected argument {:?}", pos[n])))
            }
            std::cmp::Ordering::Equal => Ok(()),
        }
    };
    Ok(match name {
        "clear-log" => {
            want(1, "an ID")?;
            Command::Post {
                path: format!("/clear-log/{}", encode(&pos[0])),
                body: None,
            }
        }
        "stop-all" | "restart-all" => {
            want(0, "no argument")?;
            Command::Post {
                path: format!("/{name}"),
                body: None,
            }
        }
        "signal" => {
            want(2, "an ID and a SIGNAL (HUP, USR1, ... or a number)")?;
            let sig = pos.pop().unwrap_or_default();
            Command::Post {
                path: format!("/signal/{}", encode(&pos[0])),
                body: Some(json!({ "signal": sig })),
            }
        }
        "audit" => {
            want(0, "no argument")?;
            Command::Audit {
                page: match s.value("--page") {
                    Some(v) => positive("--page", v)?,
                    None => 1,
                },
                lines: match s.value("-n") {
                    Some(v) => positive("-n", v)?.min(1000),
                    None => DEFAULT_AUDIT_LINES,
                },
            }
        }
        "events" => {
            want(0, "no argument")?;
            Command::Events {
                since: match s.value("--since") {
                    Some(v) => Some(count("--since", v)? as u64),
                    None => None,
                },
            }
        }
        _ => {
            want(0, "no argument")?;
            Command::Info
        }
    })
}

/// `logs -f` without an id.
pub(super) fn follow_all(s: &Split) -> Result<Command, Failure> {
    if s.has("--page") || s.has("--since") {
        return Err(usage("logs -f without an ID takes -n and --stream only"));
    }
    let stream = s.value("--stream").map(str::to_owned);
    if let Some(st) = &stream
        && !["stdout", "stderr", "system"].contains(&st.as_str())
    {
        return Err(usage(format!(
            "--stream must be stdout, stderr or system, not {st:?}"
        )));
    }
    Ok(Command::FollowAll {
        lines: match s.value("-n") {
            Some(v) => count("-n", v)?,
            None => DEFAULT_LOG_LINES,
        },
        stream,
    })
}

/// `logs --page N` and `--since 10m|TIME`.
pub(super) fn page_and_since(s: &Split) -> Result<(Option<usize>, Option<Since>), Failure> {
    let page = match s.value("--page") {
        Some(v) => Some(positive("--page", v)?),
        None => None,
    };
    let since = match s.value("--since") {
        Some(v) => Some(since(v)?),
        None => None,
    };
    if page.is_some() && (since.is_some() || s.has("--follow")) {
        return Err(usage("--page goes without --since and -f"));
    }
    Ok((page, since))
}

/// `90s`, `10m`, `2h`, `1d`, or a UTC time: `2026-12-07 10:00[:00]`,
/// `2026-12-07T10:00:00Z` (any RFC 3339 offset), `2026-12-07`.
pub fn since(v: &str) -> Result<Since, Failure> {
    let bad = || {
        usage(format!(
            "--since wants a duration (90s, 10m, 2h, 1d) or a time (2026-12-07 10:00:00 UTC, RFC 3339), not {v:?}"
        ))
    };
    let t = v.trim();
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
        let n: u64 = t[..t.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        return Ok(Since::Ago(Duration::from_secs(
            n.checked_mul(secs).ok_or_else(bad)?,
        )));
    }
    if let Ok(ts) = t.parse::<jiff::Timestamp>() {
        return Ok(Since::At(ts.strftime("%Y-%m-%d %H:%M:%S").to_string()));
    }
    if let Ok(dt) = t.replace(' ', "T").parse::<jiff::civil::DateTime>() {
        return Ok(Since::At(dt.strftime("%Y-%m-%d %H:%M:%S").to_string()));
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>() {
        return Ok(Since::At(format!("{} 00:00:00", d.strftime("%Y-%m-%d"))));
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cmd, parse_str};
    use super::*;
    use crate::client::args::{LogsArgs, UpdateFrom};

    #[test]
    fn durations_and_times() {
        assert_eq!(since("10m").unwrap(), Since::Ago(Duration::from_secs(600)));
        assert_eq!(
            since("1d").unwrap(),
            Since::Ago(Duration::from_secs(86_400))
        );
        assert_eq!(
            since("2026-12-07 10:00").unwrap(),
            Since::At("2026-12-07 10:00:00".into())
        );
        assert_eq!(
            since("2026-12-07T11:00:00+01:00").unwrap(),
            Since::At("2026-12-07 10:00:00".into())
        );
        assert_eq!(
            since("2026-12-07").unwrap(),
            Since::At("2026-12-07 00:00:00".into())
        );
        assert!(since("soon").is_err());
        assert!(since("10x").is_err());
    }

    #[test]
    fn the_new_commands() {
        assert_eq!(
            cmd(&["signal", "web", "HUP"]),
            Command::Post {
                path: "/signal/web".into(),
                body: Some(json!({"signal": "HUP"}))
            }
        );
        assert_eq!(
            cmd(&["stop-all"]),
            Command::Post {
                path: "/stop-all".into(),
                body: None
            }
        );
        assert_eq!(
            cmd(&["clear-log", "a b"]),
            Command::Post {
                path: "/clear-log/a%20b".into(),
                body: None
            }
        );
        assert_eq!(
            cmd(&["audit", "-n", "5"]),
            Command::Audit { page: 1, lines: 5 }
        );
        assert_eq!(
            cmd(&["events", "--since", "7"]),
            Command::Events { since: Some(7) }
        );
        assert_eq!(cmd(&["info"]), Command::Info);
        assert_eq!(
            cmd(&["logs", "-f", "--stream", "stderr"]),
            Command::FollowAll {
                lines: 10,
                stream: Some("stderr".into())
            }
        );
        match cmd(&["logs", "web", "--page", "3", "-n", "20"]) {
            Command::Logs(LogsArgs {
                page: Some(3),
                lines: 20,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(parse_str(&["signal", "web"]).is_err());
        assert!(parse_str(&["logs"]).is_err(), "no id and no -f");
        assert!(parse_str(&["logs", "web", "--page", "0"]).is_err());
    }

    #[test]
    fn update_takes_the_fields_to_change() {
        match cmd(&["update", "web", "--catch-up", "--no-save", "-e", "A=1"]) {
            Command::Update {
                id,
                from: UpdateFrom::Flags(m),
            } => {
                assert_eq!(id, "web");
                assert_eq!(
                    serde_json::Value::Object(m),
                    json!({"catch_up": true, "save_for_next_run": false, "env": {"A": "1"}})
                );
            }
            other => panic!("{other:?}"),
        }
        match cmd(&["update", "web", "--", "python3", "app.py"]) {
            Command::Update {
                from: UpdateFrom::Flags(m),
                ..
            } => assert_eq!(
                serde_json::Value::Object(m),
                json!({"command": "python3", "args": ["app.py"]})
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cmd(&["update", "web", "-f", "w.json"]),
            Command::Update {
                id: "web".into(),
                from: UpdateFrom::File("w.json".into())
            }
        );
        assert!(parse_str(&["update", "web"]).is_err(), "nothing to change");
        assert!(parse_str(&["update"]).is_err());
    }
}
