//! Reading a log back: pages of lines newest-first through the backups,
//! the lines before a follower (`follow_tail`), and the line counts they
//! need (counted off the write lock).

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::reader::{count_lines, read_back};
use super::{Filter, Follower, LogFile, PageFiles, backup};

impl LogFile {
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
}
