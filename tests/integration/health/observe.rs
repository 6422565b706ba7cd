//! Health as users see it: `/metrics`, `GET /health/{id}`, `exeio ls`,
//! `exeio status` and `exeio health`.

use serde_json::json;

use super::{BUSY, OK, Server, service, wait_health};
use crate::client::ok;
use crate::util::*;

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn health_shows_in_metrics_the_cli_and_the_last_checks() {
    let srv = Server::start(OK);
    let d = Daemon::start();
    let mut spec = service(
        "web",
        json!({"http": srv.url(), "period_seconds": 1, "failure_threshold": 1}),
    );
    spec["restart_policy"] = json!("never");
    add_ok(&d, spec);
    add_ok(&d, sh("plain", "exec sleep 600"));
    wait_health(&d, "web", "healthy", SHORT);
    let m = d.get("/metrics").body;
    assert_eq!(
        sample(&m, r#"exeio_process_healthy{id="web"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(!m.contains(r#"exeio_process_healthy{id="plain"}"#), "{m}");
    assert!(
        sample(
            &m,
            r#"exeio_process_health_checks_total{id="web",result="ok"}"#
        ) >= Some(1.0)
    );
    let ls = ok(&d, &["ls"]);
    let header: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[2], "HEALTH", "{ls}");
    let web = ls.lines().find(|l| l.starts_with("web ")).unwrap();
    assert_eq!(web.split_whitespace().nth(2), Some("healthy"), "{ls}");
    let plain = ls.lines().find(|l| l.starts_with("plain ")).unwrap();
    assert_eq!(plain.split_whitespace().nth(2), Some("-"), "{ls}");

    srv.set(BUSY);
    wait_health(&d, "web", "unhealthy", SHORT);
    let m = d.get("/metrics").body;
    assert_eq!(
        sample(&m, r#"exeio_process_healthy{id="web"}"#),
        Some(0.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"exeio_process_health_checks_total{id="web",result="failed"}"#
        ) >= Some(1.0),
        "{m}"
    );
    let status = ok(&d, &["status", "web"]);
    assert!(
        status.contains("health:     unhealthy (last failure: HTTP 503)"),
        "{status}"
    );
    let r = d.get("/health/web");
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["health"], "unhealthy", "{v}");
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks[0]["ok"], false, "newest first: {v}");
    assert_eq!(checks[0]["message"], "HTTP 503", "{v}");
    assert!(checks.iter().any(|c| c["ok"] == true), "{v}");
    assert_eq!(d.get("/health/nope").status, 404);
    let out = ok(&d, &["health", "web"]);
    assert!(out.starts_with("health:"), "{out}");
    assert!(out.contains("unhealthy"), "{out}");
    assert!(out.contains("failed") && out.contains("HTTP 503"), "{out}");
    assert!(out.contains(&format!("http {}", srv.url())), "{out}");
}
