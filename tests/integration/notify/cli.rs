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

/// The target list the README shows (after `<!-- notify-example -->`).
fn readme_example() -> serde_json::Value {
    let readme = include_str!("../../../README.md");
    let after = readme
        .split("<!-- notify-example -->")
        .nth(1)
        .expect("README has the notify example");
    let block = after
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a json block");
    serde_json::from_str(block).expect("the README's targets are JSON")
}

#[test]
fn the_readme_targets_are_accepted_and_the_mail_command_gets_the_event() {
    let d = Daemon::start();
    let mut targets = readme_example();
    let (status, reply) = super::put_notify(&d, &targets);
    assert_eq!(status, 200, "{reply}");
    assert!(
        reply["secrets"]["chat"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    // the sendmail pipeline, with a fake sendmail that keeps the mail
    let mail = d.tmp().join("mail.txt");
    let sendmail = d.tmp().join("sendmail");
    std::fs::write(
        &sendmail,
        format!(
            "#!/bin/sh\necho \"to: $1\" > {m}\ncat >> {m}\n",
            m = mail.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = targets[1]["command"][2]
        .as_str()
        .unwrap()
        .replace("/usr/sbin/sendmail", sendmail.to_str().unwrap());
    targets[1]["command"][2] = json!(script);
    assert_eq!(super::put_notify(&d, &targets).0, 200);
    assert_eq!(d.post("/notify/test/mail", "").status, 200);
    assert!(wait_until(Duration::from_secs(20), || {
        std::fs::read_to_string(&mail).is_ok_and(|m| m.contains("\"type\":\"test\""))
    }));
    let m = std::fs::read_to_string(&mail).unwrap();
    assert!(
        m.starts_with("to: ops@example.com\nSubject: exeio: test \n\n{"),
        "{m}"
    );
}
