//! `Pump`: turns a child's stdout/stderr bytes into stamped log lines
//! (`[ts] RUN#n STDOUT: text`), splitting lines longer than `CHUNK` without
//! cutting a UTF-8 character, and writes them in batches.
//!
//! A `Pump` is owned by its child's thread, the only writer of that child's
//! output lines; it writes through `LogFile::write_lines`.

use std::sync::Arc;
use std::time::SystemTime;

use super::scan::find_nl;
use super::{CHUNK, LogFile};
use crate::timefmt::{StampCache, log_stamp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
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
        self.log.lines.offer(text);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::testutil::{Tmp, file};

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
}
