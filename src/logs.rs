//! Log files of supervised processes (and exeio.log): `[YYYY-MM-DD HH:MM:SS]
//! STDOUT|STDERR|SYSTEM: text` lines in UTC, size-based rotation (`id.log` ->
//! `id.log.1` ...), pages newest-first and followers.
//!
//! Who calls what: a child's `Pump` (owned by its child thread) is the only
//! writer of output lines; the logger thread writes SYSTEM lines (`system`) and
//! calls `reopen` on SIGHUP; HTTP workers read (`page`, `total_lines`,
//! `follow`) and `clear`. One mutex per `LogFile` serialises writers; readers
//! take it only to snapshot sizes and dup fds, never while reading file data.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::timefmt::{StampCache, log_stamp, unix_secs};

/// Longest line written (longer ones are split), write batch and read block.
const CHUNK: usize = 64 * 1024;
/// Unwritten bytes kept across write errors before the oldest are dropped.
const MAX_PENDING: usize = 4 << 20;
/// Most bytes a follower returns per call.
const FOLLOW_MAX: usize = 4 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

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

    pub fn set_config(&self, cfg: LogConfig) {
        let mut g = self.lock();
        if g.cfg.backups != cfg.backups {
            g.counts.clear();
        }
        g.cfg = cfg;
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
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// A cursor at the current end of the log.
    pub fn follow(self: &Arc<Self>) -> Follower {
        let mut g = self.lock();
        let file = g.open(&self.path).and_then(File::try_clone).ok();
        let ident = file.as_ref().map(|_| g.ident);
        let files = file.map(|f| (f, g.size)).into_iter().collect();
        let (rotations, truncations) = (g.rotations, g.truncations);
        Follower {
            log: self.clone(),
            files,
            ident,
            rotations,
            truncations,
        }
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

    /// Write `data`, then the SYSTEM note about lost bytes once writes work again.
    fn write_through(&mut self, path: &Path, data: &[u8]) {
        let res = if self.pending.is_empty() {
            match self.write(path, data) {
                Ok(()) => Ok(()),
                Err((done, e)) => {
                    self.pending.extend_from_slice(&data[done..]);
                    Err(e)
                }
            }
        } else {
            self.pending.extend_from_slice(data);
            let mut pending = std::mem::take(&mut self.pending);
            let r = self.write(path, &pending);
            pending.drain(..r.as_ref().err().map_or(pending.len(), |(done, _)| *done));
            self.pending = pending;
            r.map_err(|(_, e)| e)
        };
        match res {
            Ok(()) => {
                if self
                    .error
                    .as_ref()
                    .is_some_and(|e| e.starts_with("cannot write"))
                {
                    self.error = None; // a rotation error stays until a rotation works
                }
                if self.dropped > 0 {
                    let lost = std::mem::take(&mut self.dropped);
                    let msg =
                        format!("{lost} bytes of output were lost: the log could not be written");
                    let mut line = log_stamp(unix_secs(SystemTime::now())).to_vec();
                    line.extend_from_slice(format!(" SYSTEM: {msg}\n").as_bytes());
                    self.write_through(path, &line);
                }
            }
            Err(e) => {
                self.error = Some(format!("cannot write {}: {e}", path.display()));
                let p = &mut self.pending;
                if p.len() > MAX_PENDING {
                    let from = p.len() - MAX_PENDING; // drop the oldest whole lines
                    let cut = find_nl(&p[from..]).map_or(p.len(), |i| from + i + 1);
                    self.dropped += cut as u64;
                    p.drain(..cut);
                }
            }
        }
    }

    /// Write whole lines, rotating between them; on error, how much was written.
    fn write(&mut self, path: &Path, data: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        while done < data.len() {
            let rest = &data[done..];
            self.open(path).map_err(|e| (done, e))?;
            let max = self.cfg.max_bytes;
            let mut take = rest.len();
            if max > 0 && self.size + take as u64 > max {
                let room = max.saturating_sub(self.size).min(take as u64) as usize;
                take = rfind_nl(&rest[..room]).map_or(0, |i| i + 1);
                if take == 0 && self.size > 0 {
                    match self.rotate(path) {
                        Ok(()) => {
                            self.error = None;
                            continue;
                        }
                        Err(e) => {
                            self.error = Some(format!("cannot rotate {}: {e}", path.display()));
                            take = rest.len();
                        }
                    }
                }
                if take == 0 {
                    take = find_nl(rest).map_or(rest.len(), |i| i + 1); // longer than max_bytes
                }
            }
            let (chunk, mut w) = (&rest[..take], 0);
            let f = self.file.as_mut().expect("opened above");
            let res = loop {
                if w == take {
                    break Ok(());
                }
                match f.write(&chunk[w..]) {
                    Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => w += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let end = f.stream_position();
            self.account(&chunk[..w], end);
            if let Err(e) = res {
                self.close();
                return Err((done + w, e));
            }
            done += take;
        }
        Ok(())
    }

    fn account(&mut self, written: &[u8], end: io::Result<u64>) {
        let (n, lines) = (written.len() as u64, count_nl(written) as u64);
        match end {
            // Truncated (copytruncate) or appended to behind our back.
            Ok(end) if end != self.size + n => {
                self.size = end;
                if end == n {
                    self.counts[0] = lines;
                } else {
                    self.counts.clear();
                }
            }
            _ => {
                self.size += n;
                self.counts[0] += lines;
            }
        }
    }

    fn rotate(&mut self, path: &Path) -> io::Result<()> {
        let backups = self.cfg.backups as usize;
        if backups == 0 {
            self.file.as_ref().expect("open").set_len(0)?;
            (self.size, self.counts[0]) = (0, 0);
            self.truncations += 1;
            return Ok(());
        }
        let mut counts = std::mem::take(&mut self.counts); // recount if a rename fails
        for k in (1..backups).rev() {
            match fs::rename(backup(path, k), backup(path, k + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(path, backup(path, 1))?;
        counts.insert(0, 0);
        counts.truncate(backups + 1);
        (self.counts, self.file) = (counts, None);
        self.rotations += 1;
        Ok(())
    }
}

fn backup(path: &Path, k: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    s.into()
}

/// Fill `buf` from `at`; fewer bytes only at the end of the file.
fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn count_lines(f: &File) -> io::Result<u64> {
    let (mut buf, mut at, mut lines) = (vec![0; 4 * CHUNK], 0, 0);
    loop {
        let n = read_full_at(f, &mut buf, at)?;
        lines += count_nl(&buf[..n]) as u64;
        if n < buf.len() {
            return Ok(lines);
        }
        at += n as u64;
    }
}

/// Collect lines of `f[..size]` backwards into `out` until it holds `want`,
/// after skipping the `skip` newest.
fn read_back(
    f: &File,
    size: u64,
    mut skip: u64,
    want: usize,
    out: &mut Vec<String>,
) -> io::Result<()> {
    let mut take = |part: &[u8], carry: &mut Vec<u8>, skip: &mut u64| {
        if *skip > 0 {
            *skip -= 1;
        } else if carry.is_empty() {
            out.push(String::from_utf8_lossy(part).into_owned());
        } else {
            out.push(String::from_utf8_lossy(&[part, carry].concat()).into_owned());
        }
        carry.clear();
        out.len() >= want
    };
    let (mut buf, mut carry, mut pos) = (vec![0; CHUNK], Vec::new(), size);
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK as u64);
        let block = &mut buf[..(pos - start) as usize];
        if read_full_at(f, block, start)? < block.len() {
            return Ok(()); // truncated meanwhile
        }
        let mut seg = &block[..];
        if pos == size {
            seg = seg.strip_suffix(b"\n").unwrap_or(seg);
        }
        let n = count_nl(seg) as u64;
        if n > 0 && n <= skip {
            skip -= n; // every line ending in this block is skipped
            carry.clear();
            carry.extend_from_slice(&seg[..find_nl(seg).expect("counted")]);
        } else {
            while let Some(i) = rfind_nl(seg) {
                if take(&seg[i + 1..], &mut carry, &mut skip) {
                    return Ok(());
                }
                seg = &seg[..i];
            }
            if carry.len() < 4 * CHUNK {
                carry.splice(0..0, seg.iter().copied());
            }
        }
        pos = start;
    }
    if size > 0 && want > 0 {
        take(&[], &mut carry, &mut skip);
    }
    Ok(())
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// 0x80 in every byte of `w` that is `\n` (exact: no false positives).
fn nl_mask(w: u64) -> u64 {
    let x = w ^ (LO * b'\n' as u64);
    !(((x & !HI) + !HI) | x) & HI
}

fn word(c: &[u8]) -> u64 {
    u64::from_le_bytes(c.try_into().expect("8 bytes"))
}

fn find_nl(h: &[u8]) -> Option<usize> {
    let mut words = h.chunks_exact(8);
    for (k, c) in (&mut words).enumerate() {
        let m = nl_mask(word(c));
        if m != 0 {
            return Some(k * 8 + m.trailing_zeros() as usize / 8);
        }
    }
    let tail = words.remainder();
    tail.iter()
        .position(|&b| b == b'\n')
        .map(|i| h.len() - tail.len() + i)
}

fn rfind_nl(h: &[u8]) -> Option<usize> {
    let mut words = h.rchunks_exact(8);
    for (k, c) in (&mut words).enumerate() {
        let m = nl_mask(word(c));
        if m != 0 {
            return Some(h.len() - 8 * (k + 1) + (63 - m.leading_zeros() as usize) / 8);
        }
    }
    words.remainder().iter().rposition(|&b| b == b'\n')
}

/// Per 255 words, sums the match bits of `nl_mask` in byte lanes, then adds the lanes up.
fn count_nl(h: &[u8]) -> usize {
    const PAIRS: u64 = 0x00ff_00ff_00ff_00ff;
    let mut words = h.chunks_exact(8);
    let mut n = 0;
    for _ in 0..h.len().div_ceil(8 * 255) {
        let lanes = (&mut words)
            .take(255)
            .fold(0, |acc, c| acc + (nl_mask(word(c)) >> 7));
        let pairs = (lanes & PAIRS) + ((lanes >> 8) & PAIRS);
        n += (pairs.wrapping_mul(0x0001_0001_0001_0001) >> 48) as usize;
    }
    n + words.remainder().iter().filter(|&&b| b == b'\n').count()
}

/// Where to split a line longer than `CHUNK`: at most `CHUNK`, not inside a UTF-8 character.
fn split_at(text: &[u8]) -> usize {
    (0..4)
        .map(|i| CHUNK - i)
        .find(|&i| text[i] & 0xC0 != 0x80)
        .unwrap_or(CHUNK)
}

/// Turns a child's output into log lines; owned by the child's thread.
pub struct Pump {
    log: Arc<LogFile>,
    stamp: StampCache,
    prefix: [Vec<u8>; 2], // "[ts] RUN#n STDOUT: " per stream
    carry: [Vec<u8>; 2],  // partial last line per stream
    out: Vec<u8>,
}

impl Pump {
    pub fn new(log: Arc<LogFile>, run: Option<u64>) -> Pump {
        let run = run.map(|n| format!("RUN#{n} ")).unwrap_or_default();
        let prefix = ["STDOUT", "STDERR"]
            .map(|s| [&log_stamp(0)[..], format!(" {run}{s}: ").as_bytes()].concat());
        // Grown on first output: an idle child costs no buffer.
        let out = Vec::new();
        Pump {
            log,
            stamp: StampCache::new(),
            prefix,
            carry: Default::default(),
            out,
        }
    }

    /// Add output; whole lines are formatted now and written once 64 KiB are buffered.
    pub fn feed(&mut self, stream: Stream, bytes: &[u8]) {
        if self.out.capacity() == 0 {
            self.out.reserve(2 * CHUNK);
        }
        self.restamp();
        let i = stream as usize;
        let mut rest = bytes;
        if !self.carry[i].is_empty() {
            let Some(n) = find_nl(rest) else {
                self.carry[i].extend_from_slice(rest);
                return self.spill(i);
            };
            let mut line = std::mem::take(&mut self.carry[i]);
            line.extend_from_slice(&rest[..n]);
            self.line(i, &line, false, true);
            line.clear();
            self.carry[i] = line;
            rest = &rest[n + 1..];
        }
        let ascii = rest.is_ascii();
        while let Some(n) = find_nl(rest) {
            self.line(i, &rest[..n], ascii, true);
            rest = &rest[n + 1..];
        }
        self.carry[i].extend_from_slice(rest);
        self.spill(i);
    }

    /// Write the buffered lines.
    pub fn flush(&mut self) {
        if !self.out.is_empty() {
            self.log.write_lines(&self.out);
            self.out.clear();
        }
    }

    /// Emit each stream's partial last line as a line of its own, then flush.
    pub fn finish(&mut self) {
        self.restamp();
        for i in 0..2 {
            let line = std::mem::take(&mut self.carry[i]);
            if !line.is_empty() {
                self.line(i, &line, false, false);
            }
        }
        self.flush();
    }

    fn restamp(&mut self) {
        let stamp = self.stamp.get(SystemTime::now());
        if self.prefix[0][..stamp.len()] != *stamp {
            for p in &mut self.prefix {
                p[..stamp.len()].copy_from_slice(stamp);
            }
        }
    }

    /// Emit a partial line that grew past `CHUNK` in `CHUNK` pieces.
    fn spill(&mut self, i: usize) {
        if self.carry[i].len() > CHUNK {
            let mut carry = std::mem::take(&mut self.carry[i]);
            let mut from = 0;
            while carry.len() - from > CHUNK {
                let cut = split_at(&carry[from..]);
                self.line(i, &carry[from..from + cut], false, false);
                from += cut;
            }
            carry.drain(..from);
            self.carry[i] = carry;
        }
    }

    fn line(&mut self, i: usize, text: &[u8], ascii: bool, ended: bool) {
        let mut text = if ended {
            text.strip_suffix(b"\r").unwrap_or(text)
        } else {
            text
        };
        loop {
            let cut = if text.len() > CHUNK {
                split_at(text)
            } else {
                text.len()
            };
            let (piece, rest) = text.split_at(cut);
            self.out.extend_from_slice(&self.prefix[i]);
            if ascii || std::str::from_utf8(piece).is_ok() {
                self.out.extend_from_slice(piece);
            } else {
                self.out
                    .extend_from_slice(String::from_utf8_lossy(piece).as_bytes());
            }
            self.out.push(b'\n');
            if self.out.len() >= CHUNK {
                self.flush();
            }
            if rest.is_empty() {
                return;
            }
            text = rest;
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A cursor that returns lines appended to a log since the last call.
pub struct Follower {
    log: Arc<LogFile>,
    files: VecDeque<(File, u64)>, // (file, read position): rotated-away files, then the current one
    ident: Option<(u64, u64)>,    // of the last file queued
    rotations: u64,
    truncations: u64,
}

impl Follower {
    /// Append the complete lines written since the last call. After a
    /// truncation (clear, copytruncate) it restarts at 0; after rotations it
    /// finishes the old file and the backups written since, then goes on.
    pub fn read_new(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let before = out.len();
        {
            let g = self.log.lock();
            if g.truncations != self.truncations {
                (self.truncations, self.ident) = (g.truncations, None);
                self.files.clear();
            }
            if let Some(f) = &g.file
                && self.ident != Some(g.ident)
            {
                if self.ident.is_some() {
                    let gap = (g.rotations - self.rotations).min(g.cfg.backups as u64 + 1);
                    for k in (1..gap as usize).rev() {
                        if let Ok(b) = File::open(backup(&self.log.path, k)) {
                            self.files.push_back((b, 0));
                        }
                    }
                }
                self.files.push_back((f.try_clone()?, 0));
                (self.ident, self.rotations) = (Some(g.ident), g.rotations);
            }
        }
        let mut budget = FOLLOW_MAX;
        while let Some((f, pos)) = self.files.front_mut() {
            let (n, read_all) = drain(f, pos, out, budget)?;
            budget -= n;
            if !(read_all && self.files.len() > 1) {
                break;
            }
            self.files.pop_front(); // a rotated-away file is complete
        }
        Ok(out.len() - before)
    }
}

/// Append the whole lines of `f` from `pos`, at most `budget` bytes; also
/// says whether everything up to the end of the file was read.
fn drain(f: &File, pos: &mut u64, out: &mut Vec<u8>, budget: usize) -> io::Result<(usize, bool)> {
    let size = f.metadata()?.len();
    if size < *pos {
        *pos = 0; // truncated behind our back
    }
    let want = ((size - *pos) as usize).min(budget);
    let at = out.len();
    out.resize(at + want, 0);
    let n = read_full_at(f, &mut out[at..], *pos)?;
    let keep = match rfind_nl(&out[at..at + n]) {
        Some(i) => i + 1,
        None if n == FOLLOW_MAX => n, // one enormous line: pass it on
        None => 0,
    };
    out.truncate(at + keep);
    *pos += keep as u64;
    Ok((keep, n as u64 == size - (*pos - keep as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);

    impl Tmp {
        fn new(name: &str) -> Tmp {
            let dir =
                std::env::temp_dir().join(format!("exeio-logs-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Tmp(dir)
        }

        fn log(&self, max_bytes: u64, backups: u32) -> Arc<LogFile> {
            Arc::new(LogFile::new(
                self.0.join("p.log"),
                LogConfig { max_bytes, backups },
            ))
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Each line of `bytes` after its `[YYYY-MM-DD HH:MM:SS] ` stamp.
    fn bodies(bytes: &[u8]) -> Vec<String> {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        let body = |l: &str| {
            let b = l.as_bytes();
            assert!(
                b[0] == b'[' && b[5] == b'-' && b[11] == b' ' && b[20] == b']' && b[21] == b' ',
                "{l}"
            );
            l[22..].to_string()
        };
        text.split_terminator('\n').map(body).collect()
    }

    fn file(path: &Path) -> Vec<String> {
        bodies(&fs::read(path).unwrap_or_default())
    }

    /// Every line of the log, oldest first, through the backups.
    fn all(log: &LogFile, backups: usize) -> Vec<String> {
        let mut lines: Vec<String> = (1..=backups)
            .rev()
            .flat_map(|k| file(&backup(log.path(), k)))
            .collect();
        lines.extend(file(log.path()));
        lines
    }

    fn numbers(lines: &[String]) -> Vec<u32> {
        lines
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    fn write_numbered(log: &Arc<LogFile>, n: u32) {
        let mut pump = Pump::new(log.clone(), None);
        for i in 0..n {
            pump.feed(Stream::Stdout, format!("n {i:05}\n").as_bytes());
            if i % 7 == 0 {
                pump.flush();
            }
        }
        pump.finish();
    }

    #[test]
    fn lines_split_across_feeds_and_streams() {
        let t = Tmp::new("split");
        let log = t.log(1 << 20, 1);
        let mut p = Pump::new(log.clone(), None);
        p.feed(Stream::Stdout, b"hel");
        p.feed(Stream::Stderr, b"oops\nhalf");
        p.feed(Stream::Stdout, b"lo\nwor");
        p.feed(Stream::Stdout, b"ld\r\n\nx\ry\n");
        p.feed(Stream::Stderr, b" done");
        assert_eq!(log.total_lines(), 0, "buffered until flush");
        p.finish();
        let want = [
            "STDERR: oops",
            "STDOUT: hello",
            "STDOUT: world",
            "STDOUT: ",
            "STDOUT: x\ry",
            "STDERR: half done",
        ];
        assert_eq!(file(log.path()), want);
        assert_eq!(log.total_lines(), 6);
    }

    #[test]
    fn invalid_utf8_run_prefix_and_system_lines() {
        let t = Tmp::new("utf8");
        let log = t.log(1 << 20, 1);
        let mut p = Pump::new(log.clone(), Some(3));
        p.feed(Stream::Stdout, b"a\xffb\n\xe2\x82");
        p.feed(Stream::Stderr, b"no newline at the end");
        p.feed(Stream::Stdout, b"\xac ok\n");
        drop(p); // finish
        log.system("exited\nwith 0");
        let want = [
            "RUN#3 STDOUT: a\u{fffd}b",
            "RUN#3 STDOUT: \u{20ac} ok",
            "RUN#3 STDERR: no newline at the end",
            "SYSTEM: exited with 0",
        ];
        assert_eq!(file(log.path()), want);
    }

    #[test]
    fn long_lines_are_split_into_chunks() {
        let t = Tmp::new("long");
        let log = t.log(1 << 30, 1);
        let mut p = Pump::new(log.clone(), None);
        let line: Vec<u8> = (0..200 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        for piece in line.chunks(7000) {
            p.feed(Stream::Stdout, piece);
            assert!(p.carry[0].len() <= CHUNK);
        }
        p.feed(Stream::Stdout, b"\n");
        p.feed(Stream::Stdout, &[&line[..], b"\n"].concat());
        p.feed(Stream::Stdout, "\u{e9}".repeat(CHUNK).as_bytes());
        p.finish();
        let lines = file(log.path());
        let text: Vec<&str> = lines
            .iter()
            .map(|l| l.strip_prefix("STDOUT: ").unwrap())
            .collect();
        let lens: Vec<usize> = text.iter().map(|l| l.len()).collect();
        assert_eq!(
            lens[..8],
            [CHUNK, CHUNK, CHUNK, 8192, CHUNK, CHUNK, CHUNK, 8192]
        );
        assert_eq!(text[..4].concat().as_bytes(), line);
        assert_eq!(text[4..8].concat().as_bytes(), line);
        assert_eq!(
            text[8..].concat(),
            "\u{e9}".repeat(CHUNK),
            "no character is cut in half"
        );
    }

    #[test]
    fn rotation_keeps_every_line_once_and_whole() {
        let t = Tmp::new("rotate");
        let log = t.log(1000, 3);
        write_numbered(&log, 150); // 38-byte lines, 26 per file
        let lines = all(&log, 3);
        assert_eq!(numbers(&lines), (52..150).collect::<Vec<_>>());
        assert_eq!(log.total_lines(), 98);
        for k in 0..=3 {
            let p = if k == 0 {
                log.path().to_path_buf()
            } else {
                backup(log.path(), k)
            };
            let md = fs::metadata(&p).unwrap();
            assert!(
                md.len() <= 1000 && (k == 0 || md.len() == 26 * 38),
                "{k}: {}",
                md.len()
            );
            assert_eq!(md.mode() & 0o777, 0o600);
        }
        assert!(!backup(log.path(), 4).exists());
        let huge = format!("{}\n", "x".repeat(3000));
        log.write_lines(huge.as_bytes()); // longer than max_bytes: a file of its own
        assert_eq!(fs::metadata(log.path()).unwrap().len(), 3001);
        assert_eq!(log.total_lines(), 98 + 1 - 26);

        let t0 = Tmp::new("rotate0");
        let log = t0.log(1000, 0);
        write_numbered(&log, 30);
        assert_eq!(numbers(&file(log.path())), (26..30).collect::<Vec<_>>());
        assert_eq!(log.total_lines(), 4);
    }

    #[test]
    fn pages_newest_first_through_backups() {
        let t = Tmp::new("page");
        let log = t.log(1000, 2);
        write_numbered(&log, 70); // files: .2 = 0..26, .1 = 26..52, current = 52..70
        let page = |p, n| numbers(&log.page(p, n).unwrap().lines);
        assert_eq!(page(1, 5), [69, 68, 67, 66, 65]);
        assert_eq!(page(2, 10), (50..60).rev().collect::<Vec<_>>());
        assert_eq!(page(2, 30), (10..40).rev().collect::<Vec<_>>());
        assert_eq!(page(3, 30), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(page(1, 1000), (0..70).rev().collect::<Vec<_>>());
        assert!(page(4, 30).is_empty() && page(1, 0).is_empty());
        assert_eq!(log.page(9, 10).unwrap().total_lines, 70);

        let big = t.log(1 << 30, 2); // same path: counts the existing files once
        assert_eq!(big.total_lines(), 70);
        write_numbered(&big, 10_000); // many 64 KiB blocks in one file
        assert_eq!(big.total_lines(), 10_070);
        assert_eq!(numbers(&big.page(1, 3).unwrap().lines), [9999, 9998, 9997]);
        let p = numbers(&big.page(500, 10).unwrap().lines);
        assert_eq!(p, (5000..5010).rev().collect::<Vec<_>>());
        let p = numbers(&big.page(1001, 10).unwrap().lines);
        assert_eq!(
            p,
            (60..70).rev().collect::<Vec<_>>(),
            "from the backup after the big file"
        );
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

    #[test]
    fn follower_survives_truncation_and_rotation() {
        let t = Tmp::new("follow");
        let log = t.log(1000, 2);
        log.system("before");
        let mut f = log.follow();
        let mut buf = Vec::new();
        assert_eq!(f.read_new(&mut buf).unwrap(), 0);
        log.system("one");
        log.system("two");
        f.read_new(&mut buf).unwrap();
        assert_eq!(bodies(&buf), ["SYSTEM: one", "SYSTEM: two"]);
        buf.clear();
        log.clear().unwrap();
        log.system("after clear");
        f.read_new(&mut buf).unwrap();
        assert_eq!(bodies(&buf), ["SYSTEM: after clear"]);
        buf.clear();
        write_numbered(&log, 60); // rotates twice
        f.read_new(&mut buf).unwrap();
        assert_eq!(numbers(&bodies(&buf)), (0..60).collect::<Vec<_>>());
        buf.clear();
        OpenOptions::new()
            .write(true)
            .open(log.path())
            .unwrap()
            .set_len(0)
            .unwrap(); // copytruncate
        log.system("after copytruncate");
        f.read_new(&mut buf).unwrap();
        assert_eq!(bodies(&buf), ["SYSTEM: after copytruncate"]);
        assert_eq!(log.total_lines(), 1 + 26 + 26);
    }

    #[test]
    fn write_errors_keep_lines_until_they_can_be_written() {
        let t = Tmp::new("errors");
        let log = Arc::new(LogFile::new(t.0.join("sub/p.log"), LogConfig::default()));
        log.system("lost dir");
        assert!(log.last_error().unwrap().contains("sub/p.log"));
        fs::create_dir(t.0.join("sub")).unwrap();
        log.system("back");
        assert_eq!(log.last_error(), None);
        assert_eq!(file(log.path()), ["SYSTEM: lost dir", "SYSTEM: back"]);

        log.reopen();
        fs::remove_dir_all(t.0.join("sub")).unwrap();
        let line = format!("[2026-01-01 00:00:00] {}\n", "y".repeat(977)); // 1000 bytes
        for _ in 0..5000 {
            log.write_lines(line.as_bytes()); // 5 MB while failing
        }
        fs::create_dir(t.0.join("sub")).unwrap();
        log.system("recovered");
        let lines = file(log.path());
        let lost = lines
            .iter()
            .find(|l| l.contains("bytes of output were lost"))
            .unwrap();
        let kept = lines.iter().filter(|l| l.starts_with('y')).count();
        assert!(
            lost.contains(&format!("{} bytes", (5000 - kept) * 1000)),
            "{lost}"
        );
        assert!(kept * 1000 <= MAX_PENDING && kept * 1000 > MAX_PENDING - 1000);
    }

    #[test]
    fn newline_search_matches_the_naive_one() {
        let mut h: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        for (i, b) in h.iter_mut().enumerate() {
            if i % 37 == 0 || i % 53 == 0 || *b == b'\n' + 128 {
                *b = b'\n';
            }
        }
        for a in 0..40 {
            for b in (a..h.len()).step_by(13) {
                let s = &h[a..b];
                assert_eq!(find_nl(s), s.iter().position(|&c| c == b'\n'));
                assert_eq!(rfind_nl(s), s.iter().rposition(|&c| c == b'\n'));
                assert_eq!(count_nl(s), s.iter().filter(|&&c| c == b'\n').count());
            }
        }
        let many = b"\n".repeat(10_000);
        assert_eq!(
            count_nl(&many),
            10_000,
            "lanes are emptied before they overflow"
        );
        fn shared<T: Send + Sync>() {}
        shared::<LogFile>();
        fn sent<T: Send>() {}
        sent::<(Pump, Follower)>();
    }

    #[test]
    fn two_million_lines() {
        let t = Tmp::new("twomillion");
        let log = t.log(1 << 40, 1);
        let n = pump_lines(&log, 2_000_000);
        assert_eq!(log.total_lines(), n);
        assert_eq!(count_lines(&File::open(log.path()).unwrap()).unwrap(), n);
    }

    /// Feed `n` 60-byte lines in 128 KiB reads, as a child's thread does.
    fn pump_lines(log: &Arc<LogFile>, n: u64) -> u64 {
        let line = format!("{}\n", "0123456789abcdef".repeat(4)[..59].to_owned());
        let block = line.repeat(2200).into_bytes(); // fed in reads that split lines
        let mut pump = Pump::new(log.clone(), None);
        let (mut sent, mut fed) = (0, 0);
        while sent < n * 60 {
            let len = (128 * 1024).min((n * 60 - sent) as usize);
            let start = (sent % 60) as usize;
            pump.feed(Stream::Stdout, &block[start..start + len]);
            (sent, fed) = (sent + len as u64, fed + 1);
        }
        pump.finish();
        assert!(fed > 900);
        n
    }

    /// `cargo test --release -- --ignored --nocapture` prints the speed.
    #[test]
    #[ignore]
    fn bench_feed_and_write() {
        let t = Tmp::new("bench");
        let log = t.log(50 << 20, 5);
        let start = std::time::Instant::now();
        let n = pump_lines(&log, 2_000_000);
        let secs = start.elapsed().as_secs_f64();
        println!("{n} lines in {secs:.3} s: {:.0} lines/s", n as f64 / secs);
        let start = std::time::Instant::now();
        let p = log.page(1, 50).unwrap();
        println!("page 1 of {} lines: {:?}", p.total_lines, start.elapsed());
    }
}
