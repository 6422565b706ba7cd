//! The outbox on disk: one file per notification and target,
//! `<data-dir>/notify-queue/<target>/<webhook-id>.json`, written atomically
//! and fsynced before the first attempt, rewritten after each failed one,
//! removed once delivered or dropped. So a notification survives an exeio
//! restart or a `kill -9`, with the same `webhook-id`.
//!
//! Only the dispatcher thread calls this.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One notification for one target.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Item {
    /// The `webhook-id`: one per event, the same on every attempt.
    pub msg_id: String,
    pub target: String,
    /// The event type (`EXEIO_EVENT`) and process (`EXEIO_ID`).
    pub kind: String,
    #[serde(default)]
    pub process: Option<String>,
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (unix milliseconds).
    pub next_at_ms: u64,
}

pub struct Outbox {
    dir: PathBuf,
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }

    fn path(&self, target: &str, msg_id: &str) -> PathBuf {
        self.dir.join(target).join(format!("{msg_id}.json"))
    }

    /// Write a new `item`, durably (the file and its directory entry).
    pub fn write(&self, item: &Item) -> io::Result<()> {
        let bytes = serde_json::to_vec(item).unwrap_or_default();
        crate::persist::write_atomic(&self.path(&item.target, &item.msg_id), &bytes)
    }

    /// Replace an item already on disk after a failed attempt: the new
    /// content is fsynced before the rename, the directory is not (a crash
    /// may keep the previous version, one attempt behind: harmless).
    pub fn rewrite(&self, item: &Item) -> io::Result<()> {
        use std::io::Write;
        let path = self.path(&item.target, &item.msg_id);
        let tmp = path.with_extension("json.tmp");
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(item).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    pub fn remove(&self, target: &str, msg_id: &str) {
        let _ = std::fs::remove_file(self.path(target, msg_id));
    }

    /// Every item on disk, oldest first within each target. Files that do
    /// not parse are removed (and counted in the second value).
    pub fn load(&self) -> (Vec<Item>, usize) {
        let mut items = Vec::new();
        let mut bad = 0;
        let Ok(dirs) = std::fs::read_dir(&self.dir) else {
            return (items, 0);
        };
        for d in dirs.flatten() {
            let Ok(files) = std::fs::read_dir(d.path()) else {
                continue;
            };
            let (mut names, partial): (Vec<PathBuf>, Vec<PathBuf>) =
                files.flatten().map(|f| f.path()).partition(|p| is_item(p));
            for p in partial {
                // a write that a crash interrupted
                let _ = std::fs::remove_file(p);
            }
            names.sort();
            for p in names {
                match std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Item>(&b).ok())
                {
                    Some(item) => items.push(item),
                    None => {
                        bad += 1;
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        (items, bad)
    }
}

/// Whether `dir` holds anything queued (a file under a target's
/// directory): cheap, for deciding at start-up whether the dispatcher is
/// needed.
pub fn holds_any(dir: &Path) -> bool {
    let Ok(dirs) = std::fs::read_dir(dir) else {
        return false;
    };
    dirs.flatten()
        .any(|d| std::fs::read_dir(d.path()).is_ok_and(|mut files| files.next().is_some()))
}

fn is_item(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "json")
        && p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}

/// A new `webhook-id`: `msg_` + the time in milliseconds (so names sort by
/// age) + 64 random bits.
pub fn new_msg_id(now: SystemTime) -> String {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    format!("msg_{:013}_{:016x}", unix_ms(now), u64::from_le_bytes(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_survive_a_reload_in_order() {
        let dir = std::env::temp_dir().join(format!("exeio-outbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let o = Outbox::new(dir.clone());
        let t0 = SystemTime::now();
        let item = |n: u64| Item {
            msg_id: new_msg_id(t0 + Duration::from_millis(n)),
            target: "ops".into(),
            kind: "test".into(),
            process: None,
            body: "{}".into(),
            attempts: 0,
            next_at_ms: 1,
        };
        let (a, b) = (item(5), item(1));
        o.write(&a).unwrap();
        o.write(&b).unwrap();
        std::fs::write(dir.join("ops").join("junk.json"), b"nope").unwrap();
        let (items, bad) = o.load();
        assert_eq!(items, vec![b.clone(), a.clone()]);
        assert_eq!(bad, 1);
        let mut a2 = a.clone();
        a2.attempts = 3;
        o.rewrite(&a2).unwrap();
        assert_eq!(o.load().0, vec![b.clone(), a2.clone()]);
        let a = a2;
        o.remove("ops", &b.msg_id);
        assert_eq!(o.load().0, vec![a]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
