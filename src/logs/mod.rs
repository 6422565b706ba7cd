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

use crossbeam_channel::Sender;

use crate::timefmt::{log_stamp, unix_secs};

mod follow;
mod lines;
mod pump;
mod reader;
mod scan;
#[cfg(test)]
mod testutil;
mod writer;

pub use follow::Follower;
pub use lines::{LineHook, LineWatch};
pub use pump::{Pump, Stream};

use reader::{count_lines, read_back};

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

    /// Queue an operation for this log's one writer, in order. Never waits
    /// on the file: the caller only learns whom to wake.
    pub fn post(&self, op: Op) -> Post {
        let mut q = lock(&self.queue);
        q.ops.push(op);
        match &q.writer {
            Some(w) => Post::Wake(w.clone()),
            None if q.drain_scheduled => Post::Nothing,
            None => {
                q.drain_scheduled = true;
                Post::Drain
            }
        }
    }

    /// Make a child's thread (woken by `waker`) this log's only writer,
    /// until it calls `detach`. Called by the supervisor when it spawns the
    /// child, before it queues the run's first line.
    pub fn attach(&self, waker: Waker) {
        lock(&self.queue).writer = Some(waker);
    }

    /// The child's thread gives the log back to the logger thread, after
    /// it has written what is queued (its exit line last).
    pub fn detach(&self) {
        let mut q = lock(&self.queue);
        q.writer = None;
        let ops = std::mem::take(&mut q.ops);
        let g = self.lock();
        drop(q);
        self.run(g, ops);
    }

    /// The supervisor gives back a log whose child's thread never started;
    /// what is queued is the logger thread's to write (`Post::Drain`).
    pub fn release(&self) -> Post {
        let mut q = lock(&self.queue);
        q.writer = None;
        if q.ops.is_empty() || q.drain_scheduled {
            return Post::Nothing;
        }
        q.drain_scheduled = true;
        Post::Drain
    }

    /// Carry out the queued operations, in order: called by the log's
    /// owner (its child's thread while attached; tests).
    pub fn drain(&self) {
        let mut q = lock(&self.queue);
        q.drain_scheduled = false;
        if q.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut q.ops);
        let g = self.lock();
        drop(q);
        self.run(g, ops);
    }

    /// A run's start, on its child's thread before it reads any output:
    /// write what is queued up to its `Op::Started` line.
    pub fn drain_through_start(&self) {
        let q = &mut *lock(&self.queue);
        let n = q
            .ops
            .iter()
            .position(|op| matches!(op, Op::Started(_)))
            .map_or(q.ops.len(), |i| i + 1);
        let ops: Vec<Op> = q.ops.drain(..n).collect();
        let g = self.lock();
        self.run(g, ops);
    }

    /// The logger thread's drain: nothing while a child's thread owns the
    /// log (what is queued is that thread's to write).
    pub fn drain_unowned(&self) {
        let mut q = lock(&self.queue);
        q.drain_scheduled = false;
        if q.writer.is_some() || q.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut q.ops);
        let g = self.lock();
        drop(q);
        self.run(g, ops);
    }

    /// The logger thread's `retry`: a log a child's thread owns is only
    /// woken (its thread retries). True while lines are held back.
    pub fn retry_unowned(&self) -> bool {
        let q = lock(&self.queue);
        if let Some(wake) = &q.writer {
            wake();
            return true;
        }
        let mut g = self.lock();
        drop(q);
        if !g.pending.is_empty() {
            g.write_through(&self.path, &[]);
            self.publish_health(&g);
        }
        !g.pending.is_empty()
    }

    fn run(&self, mut g: MutexGuard<'_, Inner>, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::Line(msg) | Op::Started(msg) => g.write_through(&self.path, &system_line(&msg)),
                Op::Raw(text) => g.write_through(&self.path, &raw_line(&text)),
                Op::Clear(reply) => {
                    let _ = reply.send(g.clear(&self.path));
                }
                Op::Reopen => g.reopen(),
                Op::Configure(cfg) => {
                    if cfg.backups != g.cfg.backups {
                        g.counts.clear(); // the backups counted change
                        g.counting = None;
                    }
                    g.cfg = cfg;
                }
            }
        }
        self.publish_health(&g);
    }

    /// Write what failed to be written before, if anything; true while
    /// some of it still cannot be written. Called by the log's owner.
    pub fn retry(&self) -> bool {
        let mut g = self.lock();
        if !g.pending.is_empty() {
            g.write_through(&self.path, &[]);
            self.publish_health(&g);
        }
        !g.pending.is_empty()
    }

    /// Append `[ts] SYSTEM: msg` now (tests, and writers that own the log).
    pub fn system(&self, msg: &str) {
        let mut g = self.lock();
        g.write_through(&self.path, &system_line(msg));
        self.publish_health(&g);
    }

    /// Append whole, formatted lines; rotation happens between them.
    pub fn write_lines(&self, formatted: &[u8]) {
        let mut g = self.lock();
        g.write_through(&self.path, formatted);
        self.publish_health(&g);
    }

    fn publish_health(&self, g: &Inner) {
        let now = g.error.as_ref().map(|e| match e {
            LogError::Write(m) | LogError::Rotate(m) => m,
        });
        let mut h = lock(&self.health);
        if h.as_ref() != now {
            *h = now.cloned();
        }
    }

    /// The last write error, if writes are failing. Quick: never waits for
    /// a write in progress.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.health).clone()
    }

    /// Page `page` (from 1) of `page_size` lines that pass `filter`, newest
    /// first, through the backups: `total` gets the line count of the log
    /// (all streams) before `line` gets the first line. Streams: the lines
    /// are handed over as they are read, never held all at once.
    pub fn page(
        &self,
        page: usize,
        page_size: usize,
        filter: Filter,
        total: impl FnOnce(u64) -> io::Result<()>,
        line: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        self.page_upto(page, page_size, filter, None, total, line)
    }

    /// A follower from the end of the log, and the `n` lines before it
    /// (oldest first): `tail -f`, with no line lost or repeated between.
    pub fn follow_tail(
        self: &Arc<Self>,
        n: usize,
        filter: Filter,
    ) -> io::Result<(Vec<Vec<u8>>, Follower)> {
        let follower = Follower::new(self);
        let upto = follower.position();
        let mut lines = Vec::new();
        if n > 0 {
            self.page_upto(
                1,
                n,
                filter,
                upto,
                |_| Ok(()),
                |l| {
                    lines.push(l.to_vec());
                    Ok(())
                },
            )?;
        }
        lines.reverse();
        Ok((lines, follower))
    }

    fn page_upto(
        &self,
        page: usize,
        page_size: usize,
        filter: Filter,
        upto: Option<u64>,
        total: impl FnOnce(u64) -> io::Result<()>,
        mut line: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let skip = (page.max(1) - 1).saturating_mul(page_size) as u64;
        let (files, mut skip, total_lines) = self.page_files(skip, page_size, filter, upto)?;
        total(total_lines)?;
        let mut left = page_size;
        for (f, size) in files {
            if left == 0 {
                break;
            }
            read_back(&f, size, &mut skip, &mut left, filter, &mut line)?;
        }
        Ok(())
    }

    /// The files a page is read from, newest first, with their sizes; the
    /// lines still to skip in them; and the log's line count. Unfiltered,
    /// whole files are skipped by their counts; filtered, skipping counts
    /// matching lines as they are read.
    fn page_files(
        &self,
        mut skip: u64,
        page_size: usize,
        filter: Filter,
        upto: Option<u64>,
    ) -> io::Result<PageFiles> {
        self.count()?;
        let g = self.lock();
        let mut need = page_size as u64;
        let mut skipping = skip;
        let mut files = Vec::new();
        for (k, &n) in g.counts.iter().enumerate() {
            if filter == Filter::All {
                if need == 0 {
                    break;
                }
                if files.is_empty() && n <= skipping {
                    skipping -= n;
                    continue;
                }
            }
            let f = match (k, &g.file) {
                (0, Some(f)) => f.try_clone()?,
                _ => match File::open(backup(&self.path, k)) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            let size = if k == 0 && g.file.is_some() {
                upto.map_or(g.size, |u| u.min(g.size))
            } else {
                f.metadata()?.len()
            };
            if filter == Filter::All {
                need = need.saturating_sub(n.saturating_sub(skipping));
                if files.is_empty() {
                    skip = skipping;
                }
                skipping = 0;
            }
            files.push((f, size));
        }
        Ok((files, skip, g.counts.iter().sum()))
    }

    /// A page as strings (tests and small callers).
    pub fn page_lines(&self, page: usize, page_size: usize) -> io::Result<(u64, Vec<String>)> {
        let mut total = 0;
        let mut lines = Vec::new();
        self.page(
            page,
            page_size,
            Filter::All,
            |t| {
                total = t;
                Ok(())
            },
            |l| {
                lines.push(String::from_utf8_lossy(l).into_owned());
                Ok(())
            },
        )?;
        Ok((total, lines))
    }

    pub fn total_lines(&self) -> u64 {
        let _ = self.count();
        self.lock().counts.iter().sum()
    }

    /// Make sure the line counts are known. Counting reads the whole files,
    /// so it runs without the write lock: writes meanwhile are added after.
    fn count(&self) -> io::Result<()> {
        for _ in 0..3 {
            let (snapshot, epoch) = {
                let mut g = self.lock();
                g.open(&self.path)?;
                if !g.counts.is_empty() {
                    return Ok(());
                }
                g.counting = Some(0);
                let current = g.file.as_ref().expect("opened").try_clone()?;
                let mut files = vec![Some((current, g.size))];
                for k in 1..=g.cfg.backups as usize {
                    files.push(
                        File::open(backup(&self.path, k))
                            .ok()
                            .map(|f| (f, u64::MAX)),
                    );
                }
                (files, (g.rotations, g.truncations, g.ident))
            };
            let mut counts = Vec::with_capacity(snapshot.len());
            for f in &snapshot {
                counts.push(match f {
                    Some((f, limit)) => count_lines(f, *limit)?,
                    None => 0,
                });
            }
            let mut g = self.lock();
            if (g.rotations, g.truncations, g.ident) == epoch && g.counts.is_empty() {
                counts[0] += g.counting.take().unwrap_or(0);
                g.counts = counts;
                return Ok(());
            }
            g.counting = None; // the files changed under us: count again
        }
        Ok(())
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

fn system_line(msg: &str) -> Vec<u8> {
    raw_line(&format!("SYSTEM: {msg}"))
}

fn raw_line(text: &str) -> Vec<u8> {
    let mut line = log_stamp(unix_secs(SystemTime::now())).to_vec();
    line.push(b' ');
    line.extend_from_slice(text.replace(['\r', '\n'], " ").as_bytes());
    line.push(b'\n');
    line
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
