//! Notification targets: the wire form of `PUT /notify` and its validation,
//! `<config-dir>/notify.json`, and what `GET /notify` shows (never a secret).
//!
//! Pure except `load` and `save`, which the HTTP threads call through
//! `Hub` (an admin's rare request) and the dispatcher on a 410.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Kind;
use crate::spec::FieldError;

/// Most targets in one list.
pub const MAX_TARGETS: usize = 64;
const SECRET_PREFIX: &str = "whsec_";
/// Bytes of a generated secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;

/// One target as saved in `notify.json` (with its secret and whether a
/// receiver turned it off).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `None`: every event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// `None`: every process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Why deliveries to it stopped (a 410); `None` while enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
}

/// One entry of a `PUT /notify` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    name: String,
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    ids: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireList {
    targets: Vec<Wire>,
}

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct File {
    targets: Vec<Target>,
}

/// Secrets exeio made, by target name: shown once.
pub type Made = Vec<(String, String)>;

fn bad(field: String, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Parse a `PUT /notify` body (the list, or `{"targets": [...]}`) into
/// targets. A webhook without a secret keeps the secret its name had in
/// `old`, or gets a new one: those are returned by name, to show once.
pub fn parse_put(body: &[u8], old: &[Target]) -> Result<(Vec<Target>, Made), FieldError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let wire: Vec<Wire> = match first {
        Some(b'[') => serde_json::from_slice(body).map_err(|e| crate::spec::json_error(&e))?,
        Some(b'{') => {
            crate::spec::parse_object::<WireList>(body)
                .map_err(|e| e.within("targets"))?
                .targets
        }
        _ => {
            return Err(bad(
                String::new(),
                "invalid JSON: the body must be a list of targets ([...]) or {\"targets\": [...]}",
            ));
        }
    };
    if wire.len() > MAX_TARGETS {
        return Err(bad(
            "targets".into(),
            format!("at most {MAX_TARGETS} targets"),
        ));
    }
    let mut out: Vec<Target> = Vec::with_capacity(wire.len());
    let mut shown = Vec::new();
    for (i, w) in wire.into_iter().enumerate() {
        let at = |f: &str| format!("targets[{i}].{f}");
        check_name(&w.name).map_err(|m| bad(at("name"), m))?;
        if out.iter().any(|t| t.name == w.name) {
            return Err(bad(
                at("name"),
                format!("two targets are named '{}': names must be unique", w.name),
            ));
        }
        match (&w.webhook, &w.command) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(bad(
                    at("webhook"),
                    format!(
                        "target '{}' needs exactly one of 'webhook' (a URL) or 'command' (a list)",
                        w.name
                    ),
                ));
            }
            (Some(url), None) => check_url(url).map_err(|m| bad(at("webhook"), m))?,
            (None, Some(cmd)) => check_command(cmd).map_err(|m| bad(at("command"), m))?,
        }
        let secret = match (&w.webhook, w.secret) {
            (None, Some(_)) => {
                return Err(bad(at("secret"), "a command target takes no secret"));
            }
            (None, None) => None,
            (Some(_), Some(s)) => {
                secret_key(&s).map_err(|m| bad(at("secret"), m))?;
                Some(s)
            }
            (Some(_), None) => match old
                .iter()
                .find(|t| t.name == w.name && t.webhook.is_some())
                .and_then(|t| t.secret.clone())
            {
                Some(kept) => Some(kept),
                None => {
                    let s = new_secret().map_err(|m| bad(at("secret"), m))?;
                    shown.push((w.name.clone(), s.clone()));
                    Some(s)
                }
            },
        };
        if let Some(events) = &w.events {
            check_list(events, "events").map_err(|m| bad(at("events"), m))?;
            if let Some(e) = events.iter().find(|e| Kind::parse(e).is_none()) {
                return Err(bad(
                    at("events"),
                    format!(
                        "unknown event type {e:?} (known: {})",
                        Kind::ALL.map(Kind::name).join(", ")
                    ),
                ));
            }
        }
        if let Some(ids) = &w.ids {
            check_list(ids, "ids").map_err(|m| bad(at("ids"), m))?;
            if let Some(p) = ids.iter().find(|p| !id_pattern_ok(p)) {
                return Err(bad(
                    at("ids"),
                    format!("{p:?} is not a process id, an id ending in '*', or '*'"),
                ));
            }
        }
        let all_ids = w.ids.as_ref().is_some_and(|l| l.iter().any(|p| p == "*"));
        out.push(Target {
            name: w.name,
            webhook: w.webhook,
            command: w.command,
            secret,
            events: w.events,
            ids: if all_ids { None } else { w.ids },
            disabled: None,
        });
    }
    Ok((out, shown))
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with '.')"
        ))
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("webhook {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "webhook {url:?} must be an http:// or https:// URL"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("webhook {url:?} has no host"));
    }
    Ok(())
}

fn check_command(cmd: &[String]) -> Result<(), String> {
    match cmd.first() {
        None => Err("command must be a non-empty list: [program, args...]".into()),
        Some(p) if p.trim().is_empty() => Err("command's program must not be empty".into()),
        _ if cmd.iter().any(|a| a.contains('\0')) => Err("command must not contain NUL".into()),
        _ => Ok(()),
    }
}

fn check_list(list: &[String], what: &str) -> Result<(), String> {
    if list.is_empty() {
        return Err(format!("{what} must not be empty (leave it out for all)"));
    }
    Ok(())
}

fn id_pattern_ok(p: &str) -> bool {
    p == "*" || check_name(p.strip_suffix('*').unwrap_or(p)).is_ok() && p.matches('*').count() <= 1
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64 of 24-64
/// bytes).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("a secret starts with '{SECRET_PREFIX}' (Standard Webhooks)"))?;
    let key = BASE64
        .decode(b64)
        .map_err(|_| format!("the part after '{SECRET_PREFIX}' must be base64"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "a secret holds 24 to 64 bytes (this one {})",
            key.len()
        ));
    }
    Ok(key)
}

fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a secret: {e}"))?;
    Ok(format!("{SECRET_PREFIX}{}", BASE64.encode(bytes)))
}

/// A target as `GET /notify` shows it: no secret.
pub fn shown(t: &Target) -> Value {
    let mut v = json!({
        "name": t.name,
        "events": t.events.clone().unwrap_or_else(|| Kind::ALERTS.map(|k| k.name().to_owned()).to_vec()),
        "ids": t.ids.clone().unwrap_or_else(|| vec!["*".to_owned()]),
        "enabled": t.disabled.is_none(),
    });
    match (&t.webhook, &t.command) {
        (Some(url), _) => v["webhook"] = json!(url),
        (_, Some(cmd)) => v["command"] = json!(cmd),
        _ => {}
    }
    if let Some(why) = &t.disabled {
        v["reason"] = json!(why);
    }
    v
}

/// Read `notify.json`; a missing file is no target. A file that does not
/// parse is an error (never overwritten silently).
pub fn load(path: &Path) -> Result<Vec<Target>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: File = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} does not parse ({e}): fix or remove it", path.display()))?;
    Ok(file.targets)
}

/// Write `notify.json` atomically, mode 0600.
pub fn save(path: &Path, targets: &[Target]) -> Result<(), String> {
    let file = File {
        targets: targets.to_vec(),
    };
    let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
    crate::persist::write_atomic(path, &bytes)
        .map_err(|e| format!("cannot save {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(body: &str) -> Result<(Vec<Target>, Made), FieldError> {
        parse_put(body.as_bytes(), &[])
    }

    #[test]
    fn a_list_is_validated_whole() {
        let (t, shown) = put(r#"[{"name":"ops","webhook":"https://hooks.example/x"},
                {"name":"page","command":["/bin/true"],"events":["job.failed"],"ids":["web-*"]}]"#)
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].0, "ops");
        assert_eq!(secret_key(&shown[0].1).unwrap().len(), SECRET_BYTES);
        assert_eq!(t[0].secret.as_deref(), Some(shown[0].1.as_str()));
        assert!(t[1].secret.is_none());
        // the object form too
        assert!(put(r#"{"targets":[]}"#).unwrap().0.is_empty());
        let field = |b: &str| put(b).unwrap_err().field;
        assert_eq!(field(r#"[{"name":"a"}]"#), "targets[0].webhook");
        assert_eq!(
            field(r#"[{"name":"a","webhook":"http://x/","command":["x"]}]"#),
            "targets[0].webhook"
        );
        assert_eq!(
            field(r#"[{"name":"a","webhook":"ftp://x/"}]"#),
            "targets[0].webhook"
        );
        assert_eq!(
            field(r#"[{"name":"a","command":["x"]},{"name":"a","command":["y"]}]"#),
            "targets[1].name"
        );
        assert_eq!(
            field(r#"[{"name":"a b","command":["x"]}]"#),
            "targets[0].name"
        );
        assert_eq!(
            field(r#"[{"name":"a","command":[]}]"#),
            "targets[0].command"
        );
        assert_eq!(
            field(r#"[{"name":"a","command":["x"],"events":["nope"]}]"#),
            "targets[0].events"
        );
        assert_eq!(
            field(r#"[{"name":"a","command":["x"],"ids":["a*b*"]}]"#),
            "targets[0].ids"
        );
        assert_eq!(
            field(r#"[{"name":"a","webhook":"http://x/","secret":"whsec_AAAA"}]"#),
            "targets[0].secret"
        );
        assert_eq!(
            field(r#"[{"name":"a","command":["x"],"secret":"whsec_x"}]"#),
            "targets[0].secret"
        );
        assert_eq!(
            field(r#"[{"name":"a","command":["x"],"extra":1}]"#),
            "extra"
        );
        assert_eq!(field(r#""x""#), "");
    }

    #[test]
    fn a_secret_given_or_kept_is_not_shown() {
        let given = format!("whsec_{}", BASE64.encode([7u8; 24]));
        let body = format!(r#"[{{"name":"a","webhook":"http://x/","secret":"{given}"}}]"#);
        let (t, shown) = put(&body).unwrap();
        assert!(shown.is_empty());
        assert_eq!(t[0].secret.as_deref(), Some(given.as_str()));
        let (t2, shown) = parse_put(br#"[{"name":"a","webhook":"http://y/"}]"#, &t).unwrap();
        assert!(shown.is_empty());
        assert_eq!(t2[0].secret, t[0].secret);
        let v = shown_of(&t2[0]);
        assert!(!v.to_string().contains("whsec_"));
        assert_eq!(v["enabled"], true);
        assert_eq!(v["ids"], json!(["*"]));
    }

    fn shown_of(t: &Target) -> Value {
        shown(t)
    }
}
