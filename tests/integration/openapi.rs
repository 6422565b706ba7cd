//! The OpenAPI document (issue 12): open, valid by `openapi-spec-validator`,
//! one operation per route of the table (PyPI; `.ci/run` installs it). That
//! the live API keeps to it is `api_contract`'s (schemathesis).

use std::process::Command;

use crate::util::{Daemon, TempDir};

/// A Python tool of the OpenAPI tests, without colour or telemetry.
pub fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    c.env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false");
    c
}

#[test]
fn the_document_is_open_and_valid() {
    let d = Daemon::start();
    let r = crate::util::request(d.addr(), "GET", "/openapi.json", &[], None).unwrap();
    assert_eq!(r.status, 200, "open, no key");
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let tmp = TempDir::new();
    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, &r.body).unwrap();
    let out = tool("openapi-spec-validator")
        .arg(&file)
        .output()
        .expect("openapi-spec-validator (pip install openapi-spec-validator)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
