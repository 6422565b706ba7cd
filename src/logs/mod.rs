//! Log files of supervised processes (and exeio.log): `[YYYY-MM-DD HH:MM:SS]
//! STDOUT|STDERR|SYSTEM: text` lines in UTC, size-based rotation (`id.log` ->
//! `id.log.1` ...), pages newest-first and followers.
//!
//! One owner per log file. The rule: **while a process runs, its child's
//! thread is the only writer of its log; at any other time the logger
//! thread is.** A run's ownership starts when the supervisor attaches the
//! log to the new child's thread (`attach`, before it queues the run's
//! first line) and ends when that thread, after the exit line, hands it
//! back (`detach`). Everyone else (the supervisor, HTTP workers, the
//! signal thread) only queues an `Op` (`post`: a SYSTEM line, a clear, a
//! reopen) and wakes the owner; the logger thread drains only logs that no
//! child's thread owns (`drain_unowned`). What follows for one log:
//! - lines are written in the order they were queued, output included;
//! - a run's "started" line comes before its first output, and its exit
//!   line after its last output byte (the child's thread writes both);
//! - a SYSTEM line queued during a run (a stop) comes after the output
//!   the child wrote before it was queued (the child's thread reads its
//!   pipes dry before it writes queued lines).
//!
//! At the two handovers the old owner may still be writing what it took
//! from the queue: whoever takes operations from the queue takes the write
//! lock (`inner`) before it lets go of the queue, so the next owner writes
//! after it. Readers (`page`, `total_lines`, `follow`, on HTTP workers)
//! take `inner` only to snapshot sizes and dup fds, never while reading
//! file data.
//!
//! Here: `LogConfig`, `Page`, `LogFile` (the whole public API) and its locked
//! `Inner` state. Inside: `owner` (the queue of operations and its one
//! writer), `page` (pages, `follow_tail`, line counts), `pump` (`Stream`,
//! `Pump`: output bytes -> lines), `writer` (appending under the lock,
//! rotation, write errors), `reader` (counting lines, paging backwards),
//! `follow` (`Follower`), `scan` (newline search a word at a time). Callers
//! use only the re-exports below.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::Sender;

mod follow;
mod lines;
mod owner;
mod page;
mod pump;
mod reader;
mod scan;
#[cfg(test)]
mod testutil;
mod writer;

pub use follow::Follower;
pub use lines::{LineHook, LineWatch};
pub use pump::{Pump, Stream};

/// Longest line written (longer ones are split), write batch and read block.
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Which lines a page or a follower shows (`?stream=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    #[default]
    All,
    Stdout,
    Stderr,
    System,
}

impl Filter {
    pub fn parse(s: &str) -> Option<Filter> {
        match s {
            "stdout" => Some(Filter::Stdout),
            "stderr" => Some(Filter::Stderr),
            "system" => Some(Filter::System),
            "all" | "" => Some(Filter::All),
            _ => None,
        }
    }

    /// Does this formatted line (`[ts] [RUN#n ]TAG: text`) pass?
    pub fn keeps(self, line: &[u8]) -> bool {
        let tag: &[u8] = match self {
            Filter::All => return true,
            Filter::Stdout => b"STDOUT:",
            Filter::Stderr => b"STDERR:",
            Filter::System => b"SYSTEM:",
        };
        let Some(mut rest) = line.get(22..) else {
            return false;
        };
        if let Some(run) = rest.strip_prefix(b"RUN#") {
            let digits = run.iter().take_while(|b| b.is_ascii_digit()).count();
            rest = run.get(digits + 1..).unwrap_or(b"");
        }
        rest.starts_with(tag)
    }
}

/// What a writer of a log does next, in order (see `LogFile::post`).
pub enum Op {
    /// A `SYSTEM:` line.
    Line(String),
    /// A run's first line (a `SYSTEM:` line): what is queued before it
    /// comes before the run, what is queued after it after its output.
    Started(String),
    /// A line of exeio's own (`[ts] text`): the audit log.
    Raw(String),
    /// Truncate the log and remove its backups; the result goes back.
    Clear(Sender<io::Result<()>>),
    /// Close the file (SIGHUP); the next write opens whatever is at the path.
    Reopen,
    /// New rotation settings (`POST /update`).
    Configure(LogConfig),
}

/// The files of a page (newest first, with their sizes), the lines still to
/// skip, and the log's line count.
type PageFiles = (Vec<(File, u64)>, u64, u64);

/// Wakes the thread attached as a log's writer.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Who must act after `LogFile::post`.
pub enum Post {
    /// The attached writer: wake it.
    Wake(Waker),
    /// Nobody is attached: schedule a `drain` (the logger thread does).
    Drain,
    /// A drain is already scheduled.
    Nothing,
}

pub struct LogFile {
    path: PathBuf,
    /// Writes and the write state. Held during file I/O.
    inner: Mutex<Inner>,
    /// Queued operations and who writes them. Never held during I/O.
    queue: Mutex<Queue>,
    /// The last write error, for `/status` (never held during I/O).
    health: Mutex<Option<String>>,
    /// A `log` health probe's pattern, offered each output line.
    pub lines: LineHook,
}

/// Shown by its path (`View`'s `Debug` prints it).
impl std::fmt::Debug for LogFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogFile({})", self.path().display())
    }
}

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    writer: Option<Waker>,
    drain_scheduled: bool,
}

#[derive(Default)]
struct Inner {
    cfg: LogConfig,
    file: Option<File>,
    ident: (u64, u64),               // (dev, ino) of `file`
    size: u64,                       // bytes in `file`
    closed: Option<(u64, u64, u64)>, // (dev, ino, size) of the file `reopen` closed
    counts: Vec<u64>,                // lines in id.log, id.log.1, ...; empty: not counted yet
    counting: Option<u64>,           // while a reader counts off the lock: lines written since
    rotations: u64,                  // renames id.log -> id.log.1, seen by followers
    truncations: u64,                // in-place truncations, seen by followers
    pending: Vec<u8>,                // lines not yet written because of an error
    dropped: u64,
    error: Option<LogError>,
}

/// Why a log is not healthy (the text is for `/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum LogError {
    /// Writes fail: lines are held back and retried.
    Write(String),
    /// Rotation fails: lines go on into the current file.
    Rotate(String),
}

impl LogFile {
    pub fn new(path: PathBuf, cfg: LogConfig) -> LogFile {
        let inner = Mutex::new(Inner {
            cfg,
            ..Inner::default()
        });
        LogFile {
            path,
            inner,
            queue: Mutex::new(Queue::default()),
            health: Mutex::new(None),
            lines: LineHook::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A cursor at the current end of the log.
    pub fn follow(self: &Arc<Self>) -> Follower {
        Follower::new(self)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    /// Open the file at `path` if none is open.
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
                self.counting = None;
            }
            (self.ident, self.size) = (ident, md.len());
            self.file = Some(f);
        }
        Ok(self.file.as_ref().expect("opened above"))
    }

    fn close(&mut self) {
        self.file = None;
        self.closed = Some((self.ident.0, self.ident.1, self.size));
    }

    /// Close the file; the next access opens whatever is at the path then.
    fn reopen(&mut self) {
        if self.file.is_some() {
            self.close();
        }
        // The file may have been renamed, replaced or truncated in place
        // (copytruncate): count it again on the next access.
        self.counts.clear();
        self.counting = None;
    }

    /// Truncate the log and remove its backups.
    fn clear(&mut self, path: &Path) -> io::Result<()> {
        let n = self.cfg.backups as usize + 1;
        (self.counts, self.closed, self.counting) = (vec![0; n], None, None); // nothing to count
        if let Err(e) = self.open(path).and_then(|f| f.set_len(0)) {
            self.counts.clear();
            return Err(e);
        }
        for k in 1..n {
            match fs::remove_file(backup(path, k)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        (self.size, self.dropped) = (0, 0);
        self.truncations += 1;
        self.pending.clear();
        Ok(())
    }
}

/// `id.log.k`: the `k`th backup of the log at `path`.
fn backup(path: &Path, k: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    s.into()
}

#[cfg(test)]
mod tests;
