//! The arguments of `keys ls|add NAME --role ROLE|revoke NAME` and
//! `notify ls|set -f FILE|test NAME`. Pure, like the rest of `args`.

use std::path::PathBuf;

use super::{Command, Flag, NotifyCmd, Split, flag, usage};
use crate::client::Failure;

pub(super) const KEYS: &[Flag] = &[flag(&["--role"], true)];
pub(super) const NOTIFY: &[Flag] = &[flag(&["--file", "-f"], true)];

pub(super) fn keys(s: &Split, mut pos: Vec<String>) -> Result<Command, Failure> {
    let sub = if pos.is_empty() {
        String::new()
    } else {
        pos.remove(0)
    };
    let role = s.value("--role");
    if role.is_some() && sub != "add" {
        return Err(usage("--role goes with keys add"));
    }
    let one = |pos: &mut Vec<String>, what: &str| -> Result<String, Failure> {
        match pos.len() {
            1 => Ok(pos.remove(0)),
            0 => Err(usage(format!("keys {what} needs a NAME"))),
            _ => Err(usage(format!(
                "keys {what}: unexpected argument {:?}",
                pos[1]
            ))),
        }
    };
    match sub.as_str() {
        "ls" | "list" if pos.is_empty() => Ok(Command::KeysLs),
        "ls" | "list" => Err(usage(format!("keys ls: unexpected argument {:?}", pos[0]))),
        "add" => {
            let name = one(&mut pos, "add")?;
            let role = role.ok_or_else(|| usage("keys add needs --role read|operate|admin"))?;
            if !["read", "operate", "admin"].contains(&role) {
                return Err(usage(format!(
                    "--role must be read, operate or admin, not {role:?}"
                )));
            }
            Ok(Command::KeysAdd {
                name,
                role: role.to_owned(),
            })
        }
        "revoke" => Ok(Command::KeysRevoke(one(&mut pos, "revoke")?)),
        "" => Err(usage("keys needs ls, add or revoke")),
        other => Err(usage(format!(
            "keys: unknown subcommand {other:?} (ls, add, revoke)"
        ))),
    }
}

pub(super) fn notify(s: &Split, mut pos: Vec<String>) -> Result<NotifyCmd, Failure> {
    let sub = if pos.is_empty() {
        String::new()
    } else {
        pos.remove(0)
    };
    let file = s.value("--file");
    if file.is_some() && sub != "set" {
        return Err(usage("-f FILE goes with notify set"));
    }
    match (sub.as_str(), pos.len()) {
        ("ls" | "list", 0) => Ok(NotifyCmd::Ls),
        ("set", 0) => file
            .map(|f| NotifyCmd::Set(PathBuf::from(f)))
            .ok_or_else(|| usage("notify set needs -f FILE (a JSON list of targets)")),
        ("test", 1) => Ok(NotifyCmd::Test(pos.remove(0))),
        ("test", 0) => Err(usage("notify test needs a target NAME")),
        ("ls" | "list" | "set" | "test", _) => Err(usage(format!(
            "notify {sub}: unexpected argument {:?}",
            pos.last().cloned().unwrap_or_default()
        ))),
        ("", _) => Err(usage("notify needs ls, set -f FILE or test NAME")),
        (other, _) => Err(usage(format!(
            "notify: unknown subcommand {other:?} (ls, set, test)"
        ))),
    }
}
