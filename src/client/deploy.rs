//! `exeio deploy ID PATH`, `exeio releases ID`, `exeio rollback ID
//! [RELEASE]` (SPEC 4c): `POST /deploy/{id}` with the release streamed as
//! its body (`pack` makes it), `GET /releases/{id}`, `POST /rollback/{id}`.
//! Called by `commands::run`.

use std::io::{self, IsTerminal, Read};
use std::path::Path;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::commands::{eprintln_note, json_line};
use super::http::encode;
use super::pack::{Source, hex};
use super::progress::Progress;
use super::table::{self, Align, Style, Table, cell};
use super::{Ctx, Failure, Report};

pub fn deploy(ctx: &Ctx<'_>, id: &str, path: &Path, r: &mut Report) -> Result<(), Failure> {
    let src = Source::open(path)?;
    // A wrong key or an unknown id is told before the packing, not after.
    ctx.client.get(&format!("/releases/{}", encode(id)))?;
    let cannot = |e: io::Error| Failure::Other(format!("cannot pack {}: {e}", path.display()));
    let first = src.digest().map_err(cannot)?;
    let mut body = Tally {
        inner: src.stream().map_err(cannot)?,
        sha: Sha256::new(),
        sent: 0,
        len: first.len,
        error: None,
        bar: (std::io::stderr().is_terminal() && ctx.label.is_none())
            .then(|| Progress::new(id, first.len)),
    };
    let got = ctx.client.upload(
        &format!("/deploy/{}", encode(id)),
        &[
            ("x-exeio-sha256", &first.sha256),
            ("content-type", src.content_type()),
        ],
        &mut body,
        first.len,
    );
    let waited = body.bar.is_some();
    if let Some(bar) = body.bar.as_mut() {
        bar.done();
    }
    let changed = body.sent == first.len && hex(&body.sha.clone().finalize()) != first.sha256;
    let reply = match got {
        Err(_) if body.error.is_some() => {
            return Err(Failure::Other(format!(
                "{}: nothing was deployed",
                body.error.unwrap_or_default()
            )));
        }
        Err(Failure::Api { status: 400, .. }) if changed => {
            return Err(Failure::Other(format!(
                "{} changed while it was being sent (its sha256 differs between the \
                 two packing passes): nothing was deployed; try again",
                path.display()
            )));
        }
        other => other?,
    };
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    r.out.push_str(&deployed_line(id, &v));
    if waited {
        eprintln_note(&format!(
            "{:.1} MB sent, sha256 {}",
            first.len as f64 / 1e6,
            first.sha256
        ));
    }
    Ok(())
}

/// `web: deployed release R (previous: P)`.
fn deployed_line(id: &str, v: &Value) -> String {
    let Some(release) = v["release"].as_str() else {
        return format!("{}\n", v["message"].as_str().unwrap_or("deployed"));
    };
    let previous = match v["previous"].as_str() {
        Some(p) => format!("previous: {p}"),
        None => "the first release".to_owned(),
    };
    format!("{id}: deployed release {release} ({previous})\n")
}

/// The body as it goes: counted against the length announced, hashed (a
/// directory that changed between the two passes is told apart from a
/// server's refusal), drawn on the bar. A read error is kept to be shown
/// as such, not as a lost connection.
struct Tally {
    inner: Box<dyn Read + Send>,
    sha: Sha256,
    sent: u64,
    len: u64,
    error: Option<String>,
    bar: Option<Progress>,
}

impl Read for Tally {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.inner.read(buf).and_then(|n| {
            if n == 0 && self.sent < self.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the release shrank while it was being sent",
                ));
            }
            if self.sent + n as u64 > self.len {
                return Err(io::Error::other("the release grew while it was being sent"));
            }
            Ok(n)
        });
        match got {
            Ok(n) => {
                self.sha.update(&buf[..n]);
                self.sent += n as u64;
                if let Some(bar) = self.bar.as_mut() {
                    bar.update(self.sent);
                }
                Ok(n)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

pub fn releases(ctx: &Ctx<'_>, id: &str, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx.client.get(&format!("/releases/{}", encode(id)))?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    r.out = releases_table(&v, ctx.style);
    Ok(())
}

/// RELEASE (the current one marked `*`), OUTCOME, BYTES, DEPLOYED.
pub fn releases_table(v: &Value, style: Style) -> String {
    let list = v["releases"].as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        return "no release deployed yet\n".to_owned();
    }
    let current = v["current"].as_str();
    let mut t = Table::new(&[
        ("  RELEASE", Align::Left),
        ("OUTCOME", Align::Left),
        ("BYTES", Align::Right),
        ("DEPLOYED", Align::Left),
    ]);
    for x in list {
        let name = x["release"].as_str().unwrap_or("?");
        let mark = if Some(name) == current { "*" } else { " " };
        let outcome = x["outcome"].as_str().unwrap_or("?");
        let paint = style.result(match outcome {
            "succeeded" => "ok",
            "pending" => "replaced",
            _ => "failed",
        });
        t.row(vec![
            cell(format!("{mark} {name}")),
            (outcome.replace('_', " "), paint),
            cell(x["bytes"].as_u64().map_or("-".into(), table::size)),
            cell(table::time(x["deployed_at"].as_str().unwrap_or("-"))),
        ]);
    }
    t.render()
}

pub fn rollback(
    ctx: &Ctx<'_>,
    id: &str,
    release: Option<&str>,
    r: &mut Report,
) -> Result<(), Failure> {
    let body = release.map(|x| json!({ "release": x }));
    let reply = ctx
        .client
        .post(&format!("/rollback/{}", encode(id)), body.as_ref())?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    let v = reply.json()?;
    r.out
        .push_str(&match (v["release"].as_str(), v["previous"].as_str()) {
            (Some(to), Some(was)) => format!("{id}: rolled back to release {to} (was {was})\n"),
            (Some(to), None) => format!("{id}: rolled back to release {to}\n"),
            _ => format!("{}\n", v["message"].as_str().unwrap_or("rolled back")),
        });
    Ok(())
}

/// The help of `deploy`, `releases` and `rollback`.
pub fn help(topic: &str) -> Option<&'static str> {
    Some(match topic {
        "deploy" => {
            "Usage: exeio deploy ID PATH\n\n\
             Upload a new release of process ID and switch to it (admin key). PATH is a\n\
             directory (packed as tar.gz on the fly, its contents the release's top level;\n\
             symlinks kept as links) or a .tar.gz, .tgz or .tar file (sent as it is). The\n\
             sha256 goes along; a progress bar shows on a terminal. exeio extracts it, runs\n\
             the build command if any, restarts the process on it and waits until it is\n\
             healthy; if it is not, exeio goes back to the last good release by itself and\n\
             this command fails (exit 1) with the reason.\n"
        }
        "releases" => {
            "Usage: exeio releases ID\n\n\
             The releases kept for process ID, newest first: RELEASE (* the current one),\n\
             OUTCOME (succeeded, rolled back, failed, pending), BYTES, DEPLOYED (UTC).\n"
        }
        "rollback" => {
            "Usage: exeio rollback ID [RELEASE]\n\n\
             Switch process ID back to RELEASE (see 'exeio releases ID'), by default the\n\
             newest earlier release that passed the health gate, restart it and wait\n\
             until it is healthy (admin key).\n"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_lines() {
        let v = json!({"success": true, "release": "20261207T231500Z-0123456789ab",
                       "previous": "20261207T220000Z-ba9876543210"});
        assert_eq!(
            deployed_line("web", &v),
            "web: deployed release 20261207T231500Z-0123456789ab \
             (previous: 20261207T220000Z-ba9876543210)\n"
        );
        let v = json!({"success": true, "release": "R", "previous": null});
        assert_eq!(
            deployed_line("web", &v),
            "web: deployed release R (the first release)\n"
        );
    }

    #[test]
    fn the_releases_table_marks_the_current_one() {
        let v = json!({"success": true, "current": "B", "releases": [
            {"release": "C", "sha256": "c", "bytes": 2048, "deployed_at": "2026-12-07T23:20:00Z",
             "outcome": "rolled_back"},
            {"release": "B", "sha256": "b", "bytes": 10, "deployed_at": "2026-12-07T23:10:00Z",
             "outcome": "succeeded"},
        ]});
        let out = releases_table(&v, Style::default());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "  RELEASE  OUTCOME       BYTES  DEPLOYED");
        assert_eq!(
            lines[1],
            "  C        rolled back  2.0KiB  2026-12-07 23:20:00"
        );
        assert_eq!(
            lines[2],
            "* B        succeeded       10B  2026-12-07 23:10:00"
        );
        let none = json!({"success": true, "current": null, "releases": []});
        assert_eq!(
            releases_table(&none, Style::default()),
            "no release deployed yet\n"
        );
    }

    #[test]
    fn status_names_the_live_release() {
        let p = json!({"id": "web", "status": "running", "command": "sh", "args": [],
                       "release": "20261207T231500Z-0123456789ab"});
        let out = super::super::status::status_text(&p, Style::default(), 0.0);
        assert!(
            out.lines()
                .any(|l| l.starts_with("release:") && l.ends_with(" 20261207T231500Z-0123456789ab")),
            "{out}"
        );
        let p = json!({"id": "web", "status": "running", "command": "sh", "args": [],
                       "release": null});
        let out = super::super::status::status_text(&p, Style::default(), 0.0);
        assert!(!out.contains("release"), "{out}");
    }

    #[test]
    fn a_body_that_changes_length_is_stopped() {
        let mut t = Tally {
            inner: Box::new(&b"12345"[..]),
            sha: Sha256::new(),
            sent: 0,
            len: 3,
            error: None,
            bar: None,
        };
        let mut out = Vec::new();
        assert!(t.read_to_end(&mut out).is_err());
        assert!(t.error.as_deref().unwrap().contains("grew"));
        let mut t = Tally {
            inner: Box::new(&b"12"[..]),
            sha: Sha256::new(),
            sent: 0,
            len: 3,
            error: None,
            bar: None,
        };
        assert!(t.read_to_end(&mut Vec::new()).is_err());
        assert!(t.error.as_deref().unwrap().contains("shrank"));
    }
}
