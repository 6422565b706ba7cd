//! `exeio notify ls|set -f FILE|test NAME` against a live daemon.

use std::time::Duration;

use serde_json::json;

use super::{Receiver, counted};
use crate::client::{cli, code, ok, stdout};
use crate::util::{Daemon, wait_until};

#[test]
fn notify_set_ls_and_test_from_the_command_line() {
    let d = Daemon::start();
    let rx = Receiver::start("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "200", 0);
    let file = d.tmp().join("targets.json");
    std::fs::write(
        &file,
        json!([{"name": "chat", "webhook": rx.url(), "events": ["process.failed"]},
               {"name": "mail", "command": ["true"]}])
        .to_string(),
    )
    .unwrap();
    let out = ok(&d, &["notify", "set", "-f", file.to_str().unwrap()]);
    assert!(out.contains("2 notification target(s) saved"), "{out}");
    assert!(out.contains("chat: whsec_"), "the new secret, once: {out}");
    let ls = ok(&d, &["notify", "ls"]);
    assert!(ls.starts_with("NAME"), "{ls}");
    assert!(ls.contains("process.failed") && ls.contains("yes"), "{ls}");
    assert!(!ls.contains("whsec_"), "{ls}");
    // set again without a secret: the one exeio made is kept, not shown
    let out = ok(&d, &["notify", "set", "-f", file.to_str().unwrap()]);
    assert!(!out.contains("whsec_"), "{out}");
    let out = ok(&d, &["notify", "test", "mail"]);
    assert!(out.contains("queued"), "{out}");
    assert!(wait_until(Duration::from_secs(20), || counted(
        &d,
        "mail",
        "delivered"
    ) == 1));
    let o = cli(&d, &["notify", "test", "nope"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let o = cli(&d, &["notify", "set"]);
    assert_eq!(code(&o), 2);
    drop(rx);
}
