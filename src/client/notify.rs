//! `exeio notify ls|set -f FILE|test NAME`: the notification targets
//! (`GET`/`PUT /notify`, `POST /notify/test/{name}`). Called by
//! `commands::run`.

use std::io::Read;

use serde_json::Value;

use super::args::NotifyCmd;
use super::commands::{eprintln_note, json_line, said};
use super::http::encode;
use super::table::{Align, Table, cell};
use super::{Ctx, Failure, Report};

pub fn run(ctx: &Ctx<'_>, cmd: &NotifyCmd, r: &mut Report) -> Result<(), Failure> {
    let c = ctx.client;
    match cmd {
        NotifyCmd::Ls => {
            let reply = c.get("/notify")?;
            if ctx.json {
                r.out.push_str(&json_line(&reply));
                return Ok(());
            }
            r.out = table(
                reply.json()?["targets"]
                    .as_array()
                    .map_or(&[], Vec::as_slice),
            );
            Ok(())
        }
        NotifyCmd::Set(path) => {
            let body = read(path)?;
            let reply = c.put("/notify", &body)?;
            if ctx.json {
                r.out.push_str(&json_line(&reply));
                return Ok(());
            }
            let v = reply.json()?;
            r.out.push_str(v["message"].as_str().unwrap_or("saved"));
            r.out.push('\n');
            if let Some(secrets) = v["secrets"].as_object() {
                for (name, s) in secrets {
                    r.out
                        .push_str(&format!("{name}: {}\n", s.as_str().unwrap_or("")));
                }
                eprintln_note("the secrets above are shown once: give them to the receivers now");
            }
            Ok(())
        }
        NotifyCmd::Test(name) => said(
            ctx,
            c.post(&format!("/notify/test/{}", encode(name)), None),
            r,
        ),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let got = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::read(path).map(|b| body = b)
    };
    got.map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))?;
    Ok(body)
}

fn table(targets: &[Value]) -> String {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("TO", Align::Left),
        ("EVENTS", Align::Left),
        ("IDS", Align::Left),
        ("ENABLED", Align::Left),
    ]);
    let words = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    for x in targets {
        let to = match (&x["webhook"], &x["command"]) {
            (Value::String(u), _) => u.clone(),
            (_, c @ Value::Array(_)) => words(c).replace(',', " "),
            _ => "?".into(),
        };
        let enabled = match (&x["enabled"], x["reason"].as_str()) {
            (Value::Bool(true), _) => "yes".to_owned(),
            (_, Some(why)) => format!("no: {why}"),
            _ => "no".to_owned(),
        };
        t.row(vec![
            cell(x["name"].as_str().unwrap_or("?")),
            cell(to),
            cell(if x["events"].as_array().is_some_and(|a| a.len() >= 6) {
                "all".to_owned()
            } else {
                words(&x["events"])
            }),
            cell(words(&x["ids"])),
            cell(enabled),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::args::{Command, parse};

    fn args(s: &str) -> Result<Command, Failure> {
        parse(s.split(' ').map(str::to_owned).collect()).map(|i| i.command)
    }

    #[test]
    fn notify_commands_parse() {
        assert_eq!(args("notify ls").unwrap(), Command::Notify(NotifyCmd::Ls));
        assert_eq!(
            args("notify set -f t.json").unwrap(),
            Command::Notify(NotifyCmd::Set("t.json".into()))
        );
        assert_eq!(
            args("notify test ops").unwrap(),
            Command::Notify(NotifyCmd::Test("ops".into()))
        );
        for bad in [
            "notify",
            "notify set",
            "notify test",
            "notify ls -f x",
            "notify nope",
        ] {
            assert!(matches!(args(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn the_table_shows_what_is_off_and_why() {
        let out = table(&[serde_json::json!({
            "name": "ops", "webhook": "https://h/x", "events": ["job.failed"], "ids": ["*"],
            "enabled": false, "reason": "410"
        })]);
        assert!(out.starts_with("NAME"), "{out}");
        assert!(
            out.contains("ops   https://h/x  job.failed  *    no: 410"),
            "{out}"
        );
    }
}
