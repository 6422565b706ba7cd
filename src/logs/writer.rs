//! The write path of a `LogFile`, run under its lock: appending whole lines,
//! size-based rotation between them (`id.log` -> `id.log.1` ...), keeping
//! line counts in step, and holding lines back while writes fail.
//!
//! Only `LogFile::system` and `LogFile::write_lines` (mod.rs) call in here.

use std::fs;
use std::io::{self, Seek, Write};
use std::path::Path;
use std::time::SystemTime;

use super::scan::{count_nl, find_nl, rfind_nl};
use super::{Inner, LogError, backup};
use crate::timefmt::{log_stamp, unix_secs};

/// Unwritten bytes kept across write errors before the oldest are dropped.
const MAX_PENDING: usize = 4 << 20;

impl Inner {
    /// Write `data`, then the SYSTEM note about lost bytes once writes work again.
    pub(super) fn write_through(&mut self, path: &Path, data: &[u8]) {
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
                if matches!(self.error, Some(LogError::Write(_))) {
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
                self.error = Some(LogError::Write(format!(
                    "cannot write {}: {e}",
                    path.display()
                )));
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
                            self.error = Some(LogError::Rotate(format!(
                                "cannot rotate {}: {e}",
                                path.display()
                            )));
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
                match self.counts.first_mut() {
                    Some(c) if end == n => *c = lines,
                    _ => {
                        self.counts.clear();
                        self.counting = None;
                        self.truncations += 1;
                    }
                }
            }
            _ => {
                self.size += n;
                // Empty counts (not counted yet, or a failed rotation) are
                // counted by the next reader; one counting now adds these.
                if let Some(c) = self.counts.first_mut() {
                    *c += lines;
                } else if let Some(c) = &mut self.counting {
                    *c += lines;
                }
            }
        }
    }

    fn rotate(&mut self, path: &Path) -> io::Result<()> {
        let backups = self.cfg.backups as usize;
        if backups == 0 {
            self.file.as_ref().expect("open").set_len(0)?;
            self.size = 0;
            if let Some(c) = self.counts.first_mut() {
                *c = 0;
            }
            self.truncations += 1;
            return Ok(());
        }
        self.counting = None; // a count in progress started before the rename
        let mut counts = std::mem::take(&mut self.counts); // recount if a rename fails
        for k in (1..backups).rev() {
            match fs::rename(backup(path, k), backup(path, k + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(path, backup(path, 1))?;
        if !counts.is_empty() {
            counts.insert(0, 0);
            counts.truncate(backups + 1);
        }
        (self.counts, self.file) = (counts, None);
        self.rotations += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    use super::*;
    use crate::logs::testutil::{Tmp, all, file, numbers, write_numbered};
    use crate::logs::{LogConfig, LogFile};

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
    fn write_errors_keep_lines_until_they_can_be_written() {
        let t = Tmp::new("errors");
        let log = Arc::new(LogFile::new(t.0.join("sub/p.log"), LogConfig::default()));
        log.system("lost dir");
        assert!(log.last_error().unwrap().contains("sub/p.log"));
        fs::create_dir(t.0.join("sub")).unwrap();
        log.system("back");
        assert_eq!(log.last_error(), None);
        assert_eq!(file(log.path()), ["SYSTEM: lost dir", "SYSTEM: back"]);

        crate::logs::testutil::reopen(&log);
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
}
