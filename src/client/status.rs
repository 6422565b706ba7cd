//! `status ID`: one process's (or a group's copies') `key: value` lines,
//! exit 3 unless every one runs. Called by `commands::run`; `status_text` is
//! also used by `deploy`'s tests.

use serde_json::Value;

use super::commands::{json_line, last_exit, now_unix};
use super::http::encode;
use super::table::{self, Style};
use super::{Ctx, Failure, Report};

pub(super) fn status(ctx: &Ctx<'_>, id: &str, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx.client.get(&format!("/status/{}", encode(id)))?;
    let v = reply.json()?;
    if let Some(copies) = v["processes"].as_array().filter(|_| v["group"].is_object()) {
        // A group (instances): each copy; 3 unless every one runs.
        if ctx.json {
            r.out.push_str(&json_line(&reply));
        } else {
            let texts: Vec<String> = copies
                .iter()
                .map(|p| status_text(p, ctx.style, now_unix()))
                .collect();
            r.out = texts.join("\n");
        }
        let down = copies
            .iter()
            .filter(|p| p["is_running"] != Value::Bool(true))
            .count();
        if down > 0 {
            r.fail(Failure::NotRunning(format!(
                "{down} of the {} instances of '{id}' are not running",
                copies.len()
            )));
        }
        return Ok(());
    }
    let p = &v["process"];
    if ctx.json {
        r.out.push_str(&json_line(&reply));
    } else {
        r.out = status_text(p, ctx.style, now_unix());
    }
    if p["is_running"] != Value::Bool(true) {
        r.fail(Failure::NotRunning(format!(
            "process '{id}' is {}",
            p["status"].as_str().unwrap_or("not running")
        )));
    }
    Ok(())
}

/// `status`'s `key: value` lines: what is set, nothing that is not.
pub(super) fn status_text(p: &Value, style: Style, now: f64) -> String {
    let s = |k: &str| p[k].as_str().map(str::to_owned);
    let mut items: Vec<(&str, String)> = Vec::new();
    items.push(("id", s("id").unwrap_or_default()));
    let st = p["status"].as_str().unwrap_or("?");
    items.push(("status", style.status(st).apply(st)));
    let conditions = |v: &Value| -> Vec<String> {
        match v {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Value::Object(m) => m
                .iter()
                .map(|(id, c)| format!("{id} ({})", c.as_str().unwrap_or("?")))
                .collect(),
            _ => Vec::new(),
        }
    };
    let waiting = conditions(&p["waiting_for"]);
    if !waiting.is_empty() {
        items.push(("waiting for", waiting.join(", ")));
    }
    let deps = conditions(&p["depends_on"]);
    if !deps.is_empty() {
        items.push(("depends on", deps.join(", ")));
    }
    if let Some(pid) = p["pid"].as_u64() {
        items.push(("pid", pid.to_string()));
    }
    let args: Vec<&str> = p["args"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let cmd = s("command").unwrap_or_default();
    items.push((
        "command",
        table::shell_words(std::iter::once(cmd.as_str()).chain(args)),
    ));
    if let Some(d) = s("working_dir") {
        items.push(("working dir", d));
    }
    if let Some(env) = p["env"].as_object().filter(|e| !e.is_empty()) {
        let pairs: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        items.push(("env", table::shell_words(pairs.iter().map(String::as_str))));
    }
    for (k, label) in [("user", "user"), ("group", "group")] {
        if let Some(v) = s(k) {
            items.push((label, v));
        }
    }
    if let Some(expr) = s("schedule") {
        let tz = s("timezone").map(|z| format!(" ({z})")).unwrap_or_default();
        items.push(("schedule", format!("{expr}{tz}")));
    } else if p["periodic"] == Value::Bool(true) {
        let period = p["period_seconds"]
            .as_f64()
            .map_or_else(|| "?".into(), table::duration);
        items.push(("periodic", format!("every {period}")));
    } else {
        let policy = s("restart_policy").unwrap_or_default();
        let max = p["max_restarts"]
            .as_u64()
            .map(|n| format!(", at most {n} in a row"))
            .unwrap_or_default();
        items.push(("restart", format!("{policy}{max}")));
    }
    items.push((
        "saved",
        if p["save_for_next_run"] == Value::Bool(true) {
            "yes"
        } else {
            "no"
        }
        .into(),
    ));
    if let Some(u) = p["uptime_seconds"].as_f64() {
        items.push(("uptime", table::duration(u)));
    }
    if let Some(c) = p["cpu_percent"].as_f64() {
        items.push(("cpu", format!("{c:.1}%")));
    }
    if let Some(b) = p["rss_bytes"].as_u64() {
        items.push(("rss", table::size(b)));
    }
    items.push(("runs", p["run_count"].as_u64().unwrap_or(0).to_string()));
    items.push((
        "restarts",
        format!(
            "{} ({} in a row)",
            p["restarts_total"].as_u64().unwrap_or(0),
            p["restart_count"].as_u64().unwrap_or(0)
        ),
    ));
    if let Some(t) = s("last_run") {
        items.push(("last start", table::time(&t)));
    }
    if !p["last_exit"].is_null() {
        items.push(("last exit", last_exit(&p["last_exit"], now)));
    }
    if let Some(res) = s("last_result") {
        items.push(("last result", res));
    }
    if let Some(n) = p["next_run_in_seconds"].as_f64() {
        let at = s("next_run_at")
            .map(|t| format!(" ({})", table::time(&t)))
            .unwrap_or_default();
        items.push(("next run", format!("in {}{at}", table::duration(n))));
    }
    if let Some(h) = s("health").filter(|h| h != "none") {
        let why = s("health_message")
            .map(|m| format!(" (last failure: {m})"))
            .unwrap_or_default();
        items.push(("health", format!("{}{why}", style.health(&h).apply(&h))));
    }
    if let Some(r) = s("release") {
        items.push(("release", r));
    }
    if let Some(f) = s("log_file") {
        items.push(("log file", f));
    }
    if let Some(e) = s("error") {
        items.push(("error", e));
    }
    table::pairs(&items)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::client::commands::tests::proc;

    #[test]
    fn status_lines() {
        let out = status_text(&proc("web", "running"), Style::default(), 0.0);
        assert!(
            out.starts_with("id:        web\nstatus:    running\npid:       4242\n"),
            "{out}"
        );
        assert!(
            out.contains("command:   sh -c 'echo '\\''hi there'\\'''\n"),
            "{out}"
        );
        assert!(out.contains("env:       A=1\n"), "{out}");
        assert!(out.contains("restart:   always\n"), "{out}");
        assert!(out.contains("restarts:  3 (1 in a row)\n"), "{out}");
        assert!(!out.contains("next run"), "{out}");
        assert!(
            out.contains("health:    healthy (last failure: HTTP 503)\n"),
            "{out}"
        );
    }

    #[test]
    fn status_says_what_a_start_waits_for() {
        let mut p = proc("web", "waiting");
        p["waiting_for"] = json!(["db (healthy)"]);
        p["depends_on"] = json!({"db": "healthy", "migrate": "completed_successfully"});
        let out = status_text(&p, Style::default(), 0.0);
        assert!(out.contains("waiting for: db (healthy)\n"), "{out}");
        assert!(
            out.contains("depends on:  db (healthy), migrate (completed_successfully)\n"),
            "{out}"
        );
        let out = status_text(&proc("web", "running"), Style::default(), 0.0);
        assert!(
            !out.contains("waiting for") && !out.contains("depends on"),
            "{out}"
        );
    }
}
