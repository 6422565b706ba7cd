//! Log files of supervised processes (and exeio.log): `[YYYY-MM-DD HH:MM:SS]
//! STDOUT|STDERR|SYSTEM: text` lines in UTC, size-based rotation (`id.log` ->
//! `id.log.1` ...), pages newest-first and followers.
//!
//! Who calls what: a child's `Pump` (owned by its child thread) is the only
//! writer of output lines; the logger thread writes SYSTEM lines (`system`) and
//! calls `reopen` on SIGHUP; HTTP workers read (`page`, `total_lines`,
//! `follow`) and `clear`. One mutex per `LogFile` serialises writers; readers
//! take it only to snapshot sizes and dup fds, never while reading file data.
//!
//! Here: `LogConfig`, `Page`, `LogFile` (the whole public API) and its locked
//! `Inner` state. Inside: `pump` (`Stream`, `Pump`: output bytes -> lines),
//! `writer` (appending under the lock, rotation, write errors), `reader`
//! (counting lines, paging backwards), `follow` (`Follower`), `scan` (newline
//! search a word at a time). Callers use only the re-exports below.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::timefmt::{log_stamp, unix_secs};

mod follow;
mod pump;
mod reader;
mod scan;
#[cfg(test)]
mod testutil;
mod writer;

pub use follow::Follower;
pub use pump::{Pump, Stream};

use reader::{count_lines, read_back};

/// Longest line written (longer ones are split), write batch and read block.
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    pub max_bytes: u64,
    pub backups: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_bytes: 50 << 20,
            backups: 5,
        }
    }
}

pub struct Page {
    pub total_lines: u64,
    pub lines: Vec<String>,
}

pub struct LogFile {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    cfg: LogConfig,
    file: Option<File>,
    ident: (u64, u64),               // (dev, ino) of `file`
    size: u64,                       // bytes in `file`
    closed: Option<(u64, u64, u64)>, // (dev, ino, size) of the file `reopen` closed
    counts: Vec<u64>,                // lines in id.log, id.log.1, ...; empty: count on open
    rotations: u64,                  // renames id.log -> id.log.1, seen by followers
    truncations: u64,                // in-place truncations, seen by followers
    pending: Vec<u8>,                // lines not yet written because of an error
    dropped: u64,
    error: Option<String>,
}

impl LogFile {
    pub fn new(path: PathBuf, cfg: LogConfig) -> LogFile {
        let inner = Mutex::new(Inner {
            cfg,
            ..Inner::default()
        });
        LogFile { path, inner }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `[ts] SYSTEM: msg` now.
    pub fn system(&self, msg: &str) {
        let mut line = log_stamp(unix_secs(SystemTime::now())).to_vec();
        line.extend_from_slice(b" SYSTEM: ");
        line.extend_from_slice(msg.replace(['\r', '\n'], " ").as_bytes());
        line.push(b'\n');
        self.lock().write_through(&self.path, &line);
    }

    /// Append whole, formatted lines; rotation happens between them.
    pub fn write_lines(&self, formatted: &[u8]) {
        self.lock().write_through(&self.path, formatted);
    }

    /// Page `page` (from 1) of `page_size` lines, newest first, through the backups.
    pub fn page(&self, page: usize, page_size: usize) -> io::Result<Page> {
        let mut skip = (page.max(1) - 1).saturating_mul(page_size) as u64;
        let mut need = page_size as u64;
        let mut files = Vec::new();
        let total_lines = {
            let mut g = self.lock();
            g.open(&self.path)?;
            for (k, &n) in g.counts.iter().enumerate() {
                if need == 0 {
                    break;
                } else if n <= skip {
                    skip -= n;
                    continue;
                }
                let f = match (k, &g.file) {
                    (0, Some(f)) => f.try_clone()?,
                    _ => match File::open(backup(&self.path, k)) {
                        Ok(f) => f,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    },
                };
                let size = if k == 0 { g.size } else { f.metadata()?.len() };
                files.push((f, size, skip));
                need = need.saturating_sub(n - skip);
                skip = 0;
            }
            g.counts.iter().sum()
        };
        let mut lines = Vec::with_capacity(page_size.min(1024));
        for (f, size, skip) in files {
            read_back(&f, size, skip, page_size, &mut lines)?;
        }
        Ok(Page { total_lines, lines })
    }

    pub fn total_lines(&self) -> u64 {
        let mut g = self.lock();
        let _ = g.open(&self.path);
        g.counts.iter().sum()
    }

    /// Truncate the log and remove its backups.
    pub fn clear(&self) -> io::Result<()> {
        let mut g = self.lock();
        let n = g.cfg.backups as usize + 1;
        (g.counts, g.closed) = (vec![0; n], None); // nothing to count
        if let Err(e) = g.open(&self.path).and_then(|f| f.set_len(0)) {
            g.counts.clear();
            return Err(e);
        }
        for k in 1..n {
            match fs::remove_file(backup(&self.path, k)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        (g.size, g.dropped) = (0, 0);
        g.truncations += 1;
        g.pending.clear();
        Ok(())
    }

    /// Close the file; the next access opens whatever is at the path then.
    pub fn reopen(&self) {
        let mut g = self.lock();
        if g.file.is_some() {
            g.close();
        }
        // The file may have been renamed, replaced or truncated in place
        // (copytruncate): count it again on the next access.
        g.counts.clear();
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// A cursor at the current end of the log.
    pub fn follow(self: &Arc<Self>) -> Follower {
        Follower::new(self)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Open the file at `path` if none is open, and count lines if needed.
    fn open(&mut self, path: &Path) -> io::Result<&File> {
        if self.file.is_none() {
            let f = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)?;
            let md = f.metadata()?;
            let ident = (md.dev(), md.ino());
            if self
                .closed
                .take()
                .is_some_and(|c| c != (ident.0, ident.1, md.len()))
            {
                self.counts.clear(); // rotated or changed while closed
            }
            (self.ident, self.size) = (ident, md.len());
            self.file = Some(f);
        }
        let f = self.file.as_ref().expect("opened above");
        if self.counts.is_empty() {
            let mut counts = vec![count_lines(f)?];
            for k in 1..=self.cfg.backups as usize {
                counts.push(match File::open(backup(path, k)) {
                    Ok(b) => count_lines(&b)?,
                    Err(_) => 0,
                });
            }
            self.counts = counts;
        }
        Ok(f)
    }

    fn close(&mut self) {
        self.file = None;
        self.closed = Some((self.ident.0, self.ident.1, self.size));
    }
}

/// `id.log.k`: the `k`th backup of the log at `path`.
fn backup(path: &Path, k: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use testutil::{Tmp, file, write_numbered};

    /// Checked at compile time: HTTP workers share a `LogFile`; a `Pump` moves
    /// to its child's thread and a `Follower` to an HTTP worker.
    const _: () = {
        fn shared<T: Send + Sync>() {}
        fn sent<T: Send>() {}
        let _ = shared::<LogFile>;
        let _ = sent::<(Pump, Follower)>;
    };

    #[test]
    fn sighup_recounts_a_file_changed_in_place() {
        let t = Tmp::new("copytruncate");
        let log = t.log(1 << 20, 2);
        write_numbered(&log, 10);
        assert_eq!(log.total_lines(), 10);
        // logrotate copytruncate: the file is emptied in place, then SIGHUP
        fs::OpenOptions::new()
            .write(true)
            .open(log.path())
            .unwrap()
            .set_len(0)
            .unwrap();
        log.reopen();
        log.system("after truncation");
        assert_eq!(log.total_lines(), 1);
    }

    #[test]
    fn total_lines_after_reopen_and_external_rotation() {
        let t = Tmp::new("reopen");
        let log = t.log(1000, 2);
        write_numbered(&log, 70);
        let log = t.log(1000, 2);
        assert_eq!(log.total_lines(), 70);
        log.reopen();
        log.system("same file");
        assert_eq!(log.total_lines(), 71);
        log.reopen(); // logrotate: rename, then SIGHUP
        fs::rename(log.path(), backup(log.path(), 1)).unwrap();
        log.system("new file");
        assert_eq!(log.total_lines(), 19 + 26 + 1);
        assert_eq!(log.page(1, 2).unwrap().lines.len(), 2);
    }

    #[test]
    fn clear_removes_everything() {
        let t = Tmp::new("clear");
        let log = t.log(1000, 2);
        write_numbered(&log, 70);
        log.clear().unwrap();
        assert_eq!(log.total_lines(), 0);
        assert!(log.page(1, 10).unwrap().lines.is_empty());
        assert!(!backup(log.path(), 1).exists());
        log.system("fresh");
        assert_eq!(file(log.path()), ["SYSTEM: fresh"]);
        assert_eq!(log.total_lines(), 1);
    }
}
