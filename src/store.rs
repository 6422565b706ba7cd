//! `processes.json`: the processes saved for the next run, and how the user
//! left them (stopped by hand or not).
//!
//! Read once at start (here); rendered by the supervisor, the only one that
//! decides what is saved, and written by the persister thread, atomically
//! (`persist::write_atomic`), so a crash at any moment leaves either the old
//! file or the new one. A file that does not parse is never overwritten: it
//! is moved aside as `processes.json.corrupt-<unix time>` and reported.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lifecycle::RunRecord;
use crate::spec::{AddRequest, ProcessSpec, validate};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    version: u32,
    processes: Vec<SavedProcess>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedProcess {
    spec: AddRequest,
    #[serde(default)]
    manually_stopped: bool,
    /// Runs started so far, so run numbers go on after a restart of exeio.
    #[serde(default)]
    run_count: u64,
    /// A group's copies (`instances`): how each was left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    copies: Vec<SavedCopy>,
}

/// One copy of a saved group.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedCopy {
    instance: u32,
    #[serde(default)]
    manually_stopped: bool,
    #[serde(default)]
    run_count: u64,
}

/// One saved process, as loaded at start or as it is to be saved.
#[derive(Debug)]
pub struct Saved {
    pub spec: ProcessSpec,
    pub manually_stopped: bool,
    pub run_count: u64,
}

/// What loading found, for the start-up messages.
#[derive(Debug, Default)]
pub struct Loaded {
    pub processes: Vec<Saved>,
    /// Where a corrupt file was moved.
    pub moved_aside: Option<(PathBuf, String)>,
    /// Entries that no longer validate (skipped, kept in the file until the next save).
    pub skipped: Vec<String>,
}

pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(path: PathBuf) -> Store {
        Store { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the saved processes. A missing file is an empty list; a corrupt one
    /// is moved aside (never deleted) and reported in `Loaded::moved_aside`.
    pub fn load(&self) -> io::Result<Loaded> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(e),
        };
        let file: SavedFile = match serde_json::from_slice(&bytes) {
            Ok(f) => f,
            Err(e) => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let aside = self
                    .path
                    .with_file_name(format!("processes.json.corrupt-{secs}"));
                fs::rename(&self.path, &aside)?;
                return Ok(Loaded {
                    moved_aside: Some((aside, e.to_string())),
                    ..Loaded::default()
                });
            }
        };
        let mut loaded = Loaded::default();
        for p in file.processes {
            let id = p.spec.id.clone();
            match validate(p.spec) {
                Ok(spec) if spec.instances.is_some() => {
                    // A group: one entry, its copies come back as they were left.
                    for copy in crate::spec::instances::copies(&spec) {
                        let number = copy.instances.as_ref().map_or(0, |i| i.number);
                        let was = p.copies.iter().find(|c| c.instance == number);
                        loaded.processes.push(Saved {
                            spec: copy,
                            manually_stopped: was.is_some_and(|c| c.manually_stopped),
                            run_count: was.map_or(0, |c| c.run_count),
                        });
                    }
                }
                Ok(spec) => loaded.processes.push(Saved {
                    spec,
                    manually_stopped: p.manually_stopped,
                    run_count: p.run_count,
                }),
                Err(e) => loaded
                    .skipped
                    .push(format!("{id}: {}: {}", e.field, e.message)),
            }
        }
        Ok(loaded)
    }

    /// The bytes of the file for `processes`. The copies of a group are
    /// one entry: the group's configuration (from copy 1, which every
    /// group has) and how each copy was left.
    pub fn render<'a>(processes: impl Iterator<Item = &'a Saved>) -> Vec<u8> {
        let mut entries: Vec<SavedProcess> = Vec::new();
        let mut groups: Vec<(&str, usize)> = Vec::new();
        let processes: Vec<&Saved> = processes.collect();
        for p in &processes {
            let Some(inst) = p.spec.instances.as_deref() else {
                entries.push(SavedProcess {
                    spec: p.spec.to_request(),
                    manually_stopped: p.manually_stopped,
                    run_count: p.run_count,
                    copies: Vec::new(),
                });
                continue;
            };
            if inst.number == 1 {
                groups.push((inst.group.as_str(), entries.len()));
                entries.push(SavedProcess {
                    spec: (*inst.template).clone(),
                    manually_stopped: false,
                    run_count: 0,
                    copies: Vec::new(),
                });
            }
        }
        for p in &processes {
            let Some(inst) = p.spec.instances.as_deref() else {
                continue;
            };
            let Some(&(_, at)) = groups.iter().find(|(g, _)| *g == inst.group.as_str()) else {
                continue;
            };
            if inst.number <= entries[at].spec.instances.unwrap_or(0) {
                entries[at].copies.push(SavedCopy {
                    instance: inst.number,
                    manually_stopped: p.manually_stopped,
                    run_count: p.run_count,
                });
            }
        }
        for e in &mut entries {
            e.copies.sort_by_key(|c| c.instance);
        }
        let file = SavedFile {
            version: 1,
            processes: entries,
        };
        let mut json = serde_json::to_vec_pretty(&file).unwrap_or_default();
        json.push(b'\n');
        json
    }
}

/// `<data-dir>/runs/<id>.json`: a saved job's run history, oldest first,
/// and the last scheduled time that came (for catch-up).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunsFile {
    #[serde(default)]
    pub last_scheduled_at: Option<String>,
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

impl RunsFile {
    /// Read a runs file; a bare array (the first format) is the runs.
    pub fn parse(bytes: &[u8]) -> Option<RunsFile> {
        serde_json::from_slice(bytes).ok().or_else(|| {
            let runs: Vec<RunRecord> = serde_json::from_slice(bytes).ok()?;
            Some(RunsFile {
                last_scheduled_at: None,
                runs,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_add;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("exeio-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("rt");
        let store = Store::new(d.join("processes.json"));
        let a = parse_add(br#"{"id":"a","command":"sleep","args":["9"],"save_for_next_run":true}"#)
            .unwrap();
        let b = parse_add(br#"{"id":"b","command":"true","periodic":true,"period_seconds":5}"#)
            .unwrap();
        let saved = [
            Saved {
                spec: a.clone(),
                manually_stopped: false,
                run_count: 7,
            },
            Saved {
                spec: b.clone(),
                manually_stopped: true,
                run_count: 0,
            },
        ];
        crate::persist::write_atomic(store.path(), &Store::render(saved.iter())).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = store.load().unwrap();
        assert_eq!(loaded.processes.len(), 2);
        assert_eq!(loaded.processes[0].spec, a);
        assert!(!loaded.processes[0].manually_stopped);
        assert_eq!(loaded.processes[0].run_count, 7);
        assert_eq!(loaded.processes[1].spec, b);
        assert!(loaded.processes[1].manually_stopped);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_group_is_one_entry_and_loads_as_its_copies() {
        let d = tmpdir("group");
        let store = Store::new(d.join("processes.json"));
        let g = parse_add(
            br#"{"id":"w","command":"srv","args":["{instance}"],"instances":3,"save_for_next_run":true}"#,
        )
        .unwrap();
        let saved: Vec<Saved> = crate::spec::instances::copies(&g)
            .into_iter()
            .map(|spec| Saved {
                manually_stopped: spec.id.as_str() == "w-2",
                run_count: 4,
                spec,
            })
            .collect();
        let bytes = Store::render(saved.iter());
        let file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(file["processes"].as_array().unwrap().len(), 1, "{file}");
        assert_eq!(file["processes"][0]["spec"]["args"][0], "{instance}");
        crate::persist::write_atomic(store.path(), &bytes).unwrap();
        let loaded = store.load().unwrap();
        let ids: Vec<&str> = loaded
            .processes
            .iter()
            .map(|p| p.spec.id.as_str())
            .collect();
        assert_eq!(ids, ["w-1", "w-2", "w-3"]);
        assert_eq!(loaded.processes[2].spec, saved[2].spec);
        let stopped: Vec<bool> = loaded
            .processes
            .iter()
            .map(|p| p.manually_stopped)
            .collect();
        assert_eq!(stopped, [false, true, false]);
        assert!(loaded.processes.iter().all(|p| p.run_count == 4));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_lost() {
        let d = tmpdir("corrupt");
        let store = Store::new(d.join("processes.json"));
        fs::write(store.path(), b"{not json").unwrap();
        let loaded = store.load().unwrap();
        let (aside, _) = loaded.moved_aside.expect("moved aside");
        assert_eq!(fs::read(&aside).unwrap(), b"{not json");
        assert!(!store.path().exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_file_is_empty() {
        let d = tmpdir("missing");
        let loaded = Store::new(d.join("processes.json")).load().unwrap();
        assert!(loaded.processes.is_empty() && loaded.moved_aside.is_none());
        fs::remove_dir_all(d).unwrap();
    }
}
