//! `exeio health ID` (the health, the probe and the last checks, from
//! `GET /health/{id}`) and the HEALTH cell of `exeio ls`.

use serde_json::Value;

use super::commands::json_line;
use super::http::encode;
use super::table::{self, Align, Paint, Style, Table};
use super::{Ctx, Failure, Report};

pub fn health(ctx: &Ctx<'_>, id: &str, r: &mut Report) -> Result<(), Failure> {
    let reply = ctx.client.get(&format!("/health/{}", encode(id)))?;
    if ctx.json {
        r.out.push_str(&json_line(&reply));
        return Ok(());
    }
    r.out = health_text(&reply.json()?, ctx.style);
    Ok(())
}

/// `health: ...`, the probe, then AT RESULT TOOK MESSAGE rows.
pub fn health_text(v: &Value, style: Style) -> String {
    let h = v["health"].as_str().unwrap_or("?");
    let mut items = vec![("health", style.health(h).apply(h))];
    if let Some(probe) = v["probe"].as_object() {
        let what = ["http", "tcp", "exec", "log"]
            .iter()
            .find_map(|k| probe.get(*k).map(|t| format!("{k} {}", compact(t))))
            .unwrap_or_default();
        let every = probe["period_seconds"].as_u64().unwrap_or(0);
        items.push(("probe", format!("{what}, every {every}s")));
    }
    if let Some(m) = v["health_message"].as_str() {
        items.push(("last failure", m.to_owned()));
    }
    items.push((
        "checks",
        format!(
            "{} ok, {} failed",
            v["checks_ok"].as_u64().unwrap_or(0),
            v["checks_failed"].as_u64().unwrap_or(0)
        ),
    ));
    let mut out = table::pairs(&items);
    let checks = v["checks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if !checks.is_empty() {
        let mut t = Table::new(&[
            ("AT", Align::Left),
            ("RESULT", Align::Left),
            ("TOOK", Align::Right),
            ("MESSAGE", Align::Left),
        ]);
        for c in checks {
            let ok = c["ok"] == Value::Bool(true);
            let result = if ok { "ok" } else { "failed" };
            t.row(vec![
                table::cell(c["at"].as_str().map_or_else(|| "-".into(), table::time)),
                (result.to_owned(), style.result(result)),
                table::cell(format!("{:.3}s", c["took_seconds"].as_f64().unwrap_or(0.0))),
                table::cell(c["message"].as_str().unwrap_or("")),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => table::shell_words(a.iter().filter_map(Value::as_str)),
        other => other.to_string(),
    }
}

/// The HEALTH cell of `ls`: `-` without a probe (or from an older exeio).
pub fn cell_of(p: &Value, style: Style) -> (String, Paint) {
    match p["health"].as_str() {
        Some(h) if h != "none" => (h.to_owned(), style.health(h)),
        _ => table::cell("-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_last_checks_newest_first() {
        let v = json!({
            "health": "unhealthy", "health_message": "HTTP 503", "checks_ok": 3, "checks_failed": 2,
            "probe": {"http": "http://127.0.0.1:8000/healthz", "period_seconds": 10},
            "checks": [
                {"at": "2025-01-01T00:00:20Z", "ok": false, "message": "HTTP 503", "took_seconds": 0.002},
                {"at": "2025-01-01T00:00:10Z", "ok": true, "message": "HTTP 200", "took_seconds": 0.001}
            ]
        });
        let out = health_text(&v, Style::default());
        assert!(out.starts_with("health:       unhealthy\n"), "{out}");
        assert!(
            out.contains("probe:        http http://127.0.0.1:8000/healthz, every 10s\n"),
            "{out}"
        );
        assert!(out.contains("last failure: HTTP 503\n"), "{out}");
        assert!(out.contains("checks:       3 ok, 2 failed\n"), "{out}");
        assert!(
            out.contains("2025-01-01 00:00:20  failed  0.002s  HTTP 503\n"),
            "{out}"
        );
        assert_eq!(cell_of(&json!({"health": "none"}), Style::default()).0, "-");
        assert_eq!(cell_of(&json!({}), Style::default()).0, "-");
    }
}
