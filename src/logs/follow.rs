//! `Follower`: a cursor that returns the lines appended to a log since its
//! last call, across clears, copytruncate and rotations.
//!
//! Created by `LogFile::follow` and used by HTTP workers (`src/follow.rs`). It
//! takes the `LogFile` lock only to notice rotations and dup the current fd;
//! file data is read without it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;

use super::reader::read_full_at;
use super::scan::rfind_nl;
use super::{LogFile, backup};

/// Most bytes a follower returns per call.
const FOLLOW_MAX: usize = 4 << 20;

/// A cursor that returns lines appended to a log since the last call.
pub struct Follower {
    log: Arc<LogFile>,
    files: VecDeque<(File, u64)>, // (file, read position): rotated-away files, then the current one
    ident: Option<(u64, u64)>,    // of the last file queued
    rotations: u64,
    truncations: u64,
}

impl Follower {
    /// A cursor at the current end of `log` (see `LogFile::follow`).
    pub(super) fn new(log: &Arc<LogFile>) -> Follower {
        let mut g = log.lock();
        let file = g.open(&log.path).and_then(File::try_clone).ok();
        let ident = file.as_ref().map(|_| g.ident);
        let files = file.map(|f| (f, g.size)).into_iter().collect();
        let (rotations, truncations) = (g.rotations, g.truncations);
        Follower {
            log: log.clone(),
            files,
            ident,
            rotations,
            truncations,
        }
    }

    /// Where the follower is in the current file.
    pub fn position(&self) -> Option<u64> {
        self.files.back().map(|(_, pos)| *pos)
    }

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
    use std::fs::OpenOptions;

    use crate::logs::testutil::{Tmp, bodies, numbers, write_numbered};

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
        crate::logs::testutil::clear(&log).unwrap();
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
}
