//! Recovery of every releases dir at boot (SPEC 4c: exeio killed at any
//! point of a deploy or rollback). Called once by the daemon at start-up,
//! before any process starts and before the API serves; also exported as
//! `deploy::releases::recover`.
//!
//! Each step of a deploy leaves a state this undoes or completes (the
//! crash-safety rules are in the `deploy` module doc):
//! - `.upload-*`, `.incoming-*`, `.remove-*`, `current.tmp`,
//!   `releases.json.tmp`: an interrupted step; removed.
//! - a release dir with no metadata entry (killed between the rename and
//!   the metadata write): removed. An entry with no dir: dropped.
//! - `current` on a `Pending` release (killed between the switch and the
//!   gate's verdict), or on a missing one: switched back to what it was
//!   before that switch if that passed the gate, else to the last release
//!   that did, else unlinked.
//! - every `Pending` release becomes `Failed` (its deploy is over).

use std::fs;
use std::path::Path;

use super::releases::{
    CURRENT, CURRENT_TMP, INCOMING, META_TMP, Outcome, REMOVING, UPLOAD, current_in,
    is_release_name, load_meta, pick_last_good, remove_release_dir, save_meta, switch_link,
    sync_dir,
};

/// At boot, before any process starts: remove `.upload-*`, `.incoming-*`,
/// `current.tmp` leftovers; a `current` whose release is `Pending` (exeio
/// died mid-gate) goes back to the release it replaced or `last_good` (or
/// is unlinked when there is none) and every `Pending` one becomes
/// `Failed`; a release dir with no metadata entry is removed (and an entry
/// with no dir dropped). Returns log lines saying what it did.
pub fn recover(data_dir: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let top = data_dir.join("releases");
    let Ok(entries) = fs::read_dir(&top) else {
        return log;
    };
    let mut ids: Vec<String> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(REMOVING) {
            match fs::remove_dir_all(entry.path()) {
                Ok(()) => log.push(format!(
                    "deploy recovery: removed {name} (a releases dir being deleted)"
                )),
                Err(e) => log.push(format!("deploy recovery: cannot remove {name}: {e}")),
            }
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            ids.push(name);
        }
    }
    ids.sort();
    for id in ids {
        recover_one(&top.join(&id), &id, &mut log);
    }
    log
}

fn recover_one(root: &Path, id: &str, log: &mut Vec<String>) {
    let say =
        |log: &mut Vec<String>, what: String| log.push(format!("deploy recovery: {id}: {what}"));
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let leftover = name.starts_with(UPLOAD)
            || name.starts_with(INCOMING)
            || name.starts_with(REMOVING)
            || name == CURRENT_TMP
            || name == META_TMP;
        if leftover {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let done = if is_dir {
                fs::remove_dir_all(entry.path())
            } else {
                fs::remove_file(entry.path())
            };
            match done {
                Ok(()) => say(
                    log,
                    format!("removed leftover {name} (an interrupted deploy)"),
                ),
                Err(e) => say(log, format!("cannot remove leftover {name}: {e}")),
            }
        } else if is_release_name(&name) {
            dirs.push(name);
        }
    }
    let mut meta = match load_meta(root) {
        Ok(m) => m,
        Err(e) => {
            say(log, format!("{e}; releases left as they are"));
            return;
        }
    };
    let mut changed = false;
    let before = meta.releases.len();
    meta.releases.retain(|r| dirs.contains(&r.release));
    if meta.releases.len() != before {
        say(log, "dropped metadata of releases whose dir is gone".into());
        changed = true;
    }
    for name in &dirs {
        if !meta.releases.iter().any(|r| &r.release == name) {
            match remove_release_dir(root, name) {
                Ok(()) => say(
                    log,
                    format!("removed {name} (committed but never recorded)"),
                ),
                Err(e) => say(log, format!("cannot remove {name}: {e}")),
            }
        }
    }
    let link = root.join(CURRENT);
    let current = current_in(root);
    let live = current
        .as_ref()
        .and_then(|c| meta.releases.iter().find(|r| &r.release == c));
    let back = match (fs::symlink_metadata(&link).is_ok(), live) {
        (false, _) => None,
        (true, Some(r)) if r.outcome != Outcome::Pending => None,
        (true, _) => Some(current.clone().unwrap_or_else(|| "(unreadable)".into())),
    };
    if let Some(from) = back {
        let previous = meta.previous.clone().filter(|p| {
            meta.releases
                .iter()
                .any(|r| &r.release == p && r.outcome == Outcome::Succeeded)
        });
        let to = previous.or_else(|| pick_last_good(&meta.releases, current.as_deref()));
        let done = match &to {
            Some(to) => switch_link(root, to),
            None => fs::remove_file(&link).and_then(|()| sync_dir(root)),
        };
        match (done, to) {
            (Ok(()), Some(to)) => say(
                log,
                format!("current was {from}, whose deploy did not finish; switched back to {to}"),
            ),
            (Ok(()), None) => say(
                log,
                format!(
                    "current was {from}, whose deploy did not finish; no earlier good release, current unlinked"
                ),
            ),
            (Err(e), _) => say(log, format!("cannot switch current back from {from}: {e}")),
        }
    }
    for r in meta.releases.iter_mut() {
        if r.outcome == Outcome::Pending {
            r.outcome = Outcome::Failed;
            changed = true;
            say(
                log,
                format!(
                    "release {} marked failed (its deploy did not finish)",
                    r.release
                ),
            );
        }
    }
    if changed && let Err(e) = save_meta(root, &meta) {
        say(log, format!("cannot write the releases metadata: {e}"));
    }
}
