//! The persister thread: every file exeio saves while it runs is written
//! here, atomically (temporary file, fsync, rename, fsync of the directory),
//! so the supervisor never waits on a disk.
//!
//! The supervisor hands over the bytes of a file with a version number; the
//! persister writes the latest version of each file (older ones queued
//! behind it are skipped) and reports each outcome back as
//! `Event::Saved`. A failure is retried by the supervisor, which keeps the
//! bytes and knows what still needs saving.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::protocol::{Event, Msg, Target};

struct Job {
    target: Target,
    path: PathBuf,
    /// `None`: delete the file.
    bytes: Option<Vec<u8>>,
    version: u64,
}

#[derive(Clone)]
pub struct Persister {
    tx: Sender<Job>,
}

impl Persister {
    /// Start the thread; outcomes go to `report`. The thread ends when
    /// every `Persister` is dropped, after writing what was queued.
    pub fn start(report: Sender<Msg>) -> io::Result<(Persister, JoinHandle<()>)> {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("persister".into())
            .stack_size(128 * 1024)
            .spawn(move || run(rx, report))?;
        Ok((Persister { tx }, thread))
    }

    /// Write `bytes` as version `version` of `target` at `path`.
    pub fn save(&self, target: Target, path: PathBuf, bytes: Vec<u8>, version: u64) {
        let _ = self.tx.send(Job {
            target,
            path,
            bytes: Some(bytes),
            version,
        });
    }

    /// Delete the file of `target`.
    pub fn delete(&self, target: Target, path: PathBuf, version: u64) {
        let _ = self.tx.send(Job {
            target,
            path,
            bytes: None,
            version,
        });
    }
}

fn run(rx: Receiver<Job>, report: Sender<Msg>) {
    while let Ok(first) = rx.recv() {
        // Only the newest version of each file is worth writing.
        let mut latest: HashMap<Target, Job> = HashMap::new();
        let mut order = Vec::new();
        for job in std::iter::once(first).chain(rx.try_iter()) {
            if !latest.contains_key(&job.target) {
                order.push(job.target.clone());
            }
            match latest.get(&job.target) {
                Some(old) if old.version > job.version => {}
                _ => {
                    latest.insert(job.target.clone(), job);
                }
            }
        }
        for target in order {
            let job = latest.remove(&target).expect("queued");
            let result = match &job.bytes {
                Some(bytes) => write_atomic(&job.path, bytes),
                None => match fs::remove_file(&job.path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            let _ = report.send(Msg::Event(Event::Saved {
                target: job.target,
                version: job.version,
                result: result.map_err(|e| format!("cannot save {}: {e}", job.path.display())),
            }));
        }
    }
}

/// Replace `path` with `bytes` so that a crash at any moment leaves the old
/// file or the new one, never a mix (mode 0600).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        if let Some(dir) = path.parent() {
            // `<data-dir>/runs` is made here: 0700 like every dir exeio makes.
            DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ProcessId;

    #[test]
    fn writes_the_newest_version_and_reports_each_outcome() {
        let dir = std::env::temp_dir().join(format!("exeio-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = unbounded();
        let (p, thread) = Persister::start(tx).unwrap();
        let path = dir.join("sub/processes.json");
        for v in 1..=3 {
            p.save(
                Target::Processes,
                path.clone(),
                format!("v{v}").into_bytes(),
                v,
            );
        }
        // a file where a directory should be: the save fails and says why
        fs::write(dir.join("file"), b"").unwrap();
        let id = ProcessId::parse("job").unwrap();
        p.save(
            Target::Runs(id.clone()),
            dir.join("file/x.json"),
            b"x".to_vec(),
            1,
        );
        drop(p);
        thread.join().unwrap();
        let events: Vec<(Target, u64, bool)> = rx
            .try_iter()
            .map(|m| match m {
                Msg::Event(Event::Saved {
                    target,
                    version,
                    result,
                }) => (target, version, result.is_ok()),
                _ => panic!("unexpected message"),
            })
            .collect();
        assert_eq!(fs::read(&path).unwrap(), b"v3");
        // the dir it made (as `<data-dir>/runs`) is 0700 whatever the umask lets
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.join("sub")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
        assert!(events.contains(&(Target::Processes, 3, true)), "{events:?}");
        assert!(events.contains(&(Target::Runs(id), 1, false)), "{events:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}
