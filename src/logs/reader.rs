//! Reading log files without the lock: whole-buffer positional reads, line
//! counting, and collecting lines backwards for `LogFile::page`.
//!
//! Callers are the other `logs` modules; they pass a dup'ed `File` and a size
//! snapshotted under the `LogFile` lock, so writers are never blocked here.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::scan::{count_nl, find_nl, rfind_nl};
use super::{CHUNK, Filter};

/// Fill `buf` from `at`; fewer bytes only at the end of the file.
pub(super) fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
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

/// Newlines in the first `limit` bytes of `f` (`u64::MAX`: all of it).
pub(super) fn count_lines(f: &File, limit: u64) -> io::Result<u64> {
    let (mut buf, mut at, mut lines) = (vec![0; 4 * CHUNK], 0u64, 0);
    loop {
        let want = (limit - at).min(buf.len() as u64) as usize;
        let n = read_full_at(f, &mut buf[..want], at)?;
        lines += count_nl(&buf[..n]) as u64;
        if n < buf.len() {
            return Ok(lines);
        }
        at += n as u64;
    }
}

/// Hand the lines of `f[..size]` to `line`, newest first, after skipping
/// `skip` of them (only lines that pass `filter` count), until `left` have
/// been handed over. Both counters carry on into the next (older) file.
pub(super) fn read_back(
    f: &File,
    size: u64,
    skip: &mut u64,
    left: &mut usize,
    filter: Filter,
    line: &mut impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut take =
        |part: &[u8], carry: &mut Vec<u8>, skip: &mut u64, left: &mut usize| -> io::Result<bool> {
            let joined;
            let whole: &[u8] = if carry.is_empty() {
                part
            } else {
                joined = [part, carry].concat();
                &joined
            };
            if filter.keeps(whole) {
                if *skip > 0 {
                    *skip -= 1;
                } else {
                    line(whole)?;
                    *left -= 1;
                }
            }
            carry.clear();
            Ok(*left == 0)
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
        if filter == Filter::All && n > 0 && n <= *skip {
            *skip -= n; // every line ending in this block is skipped
            carry.clear();
            carry.extend_from_slice(&seg[..find_nl(seg).expect("counted")]);
        } else {
            while let Some(i) = rfind_nl(seg) {
                if take(&seg[i + 1..], &mut carry, skip, left)? {
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
    if size > 0 && *left > 0 {
        take(&[], &mut carry, skip, left)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testutil::{Tmp, numbers, pump_lines, write_numbered};

    #[test]
    fn pages_newest_first_through_backups() {
        let t = Tmp::new("page");
        let log = t.log(1000, 2);
        write_numbered(&log, 70); // files: .2 = 0..26, .1 = 26..52, current = 52..70
        let page = |p, n| numbers(&log.page_lines(p, n).unwrap().1);
        assert_eq!(page(1, 5), [69, 68, 67, 66, 65]);
        assert_eq!(page(2, 10), (50..60).rev().collect::<Vec<_>>());
        assert_eq!(page(2, 30), (10..40).rev().collect::<Vec<_>>());
        assert_eq!(page(3, 30), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(page(1, 1000), (0..70).rev().collect::<Vec<_>>());
        assert!(page(4, 30).is_empty() && page(1, 0).is_empty());
        assert_eq!(log.page_lines(9, 10).unwrap().0, 70);

        let big = t.log(1 << 30, 2); // same path: counts the existing files once
        assert_eq!(big.total_lines(), 70);
        write_numbered(&big, 10_000); // many 64 KiB blocks in one file
        assert_eq!(big.total_lines(), 10_070);
        assert_eq!(
            numbers(&big.page_lines(1, 3).unwrap().1),
            [9999, 9998, 9997]
        );
        let p = numbers(&big.page_lines(500, 10).unwrap().1);
        assert_eq!(p, (5000..5010).rev().collect::<Vec<_>>());
        let p = numbers(&big.page_lines(1001, 10).unwrap().1);
        assert_eq!(
            p,
            (60..70).rev().collect::<Vec<_>>(),
            "from the backup after the big file"
        );
    }

    #[test]
    fn two_million_lines() {
        let t = Tmp::new("twomillion");
        let log = t.log(1 << 40, 1);
        let n = pump_lines(&log, 2_000_000);
        assert_eq!(log.total_lines(), n);
        assert_eq!(
            count_lines(&File::open(log.path()).unwrap(), u64::MAX).unwrap(),
            n
        );
    }
}
