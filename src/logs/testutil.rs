//! Test helpers shared by the unit tests of the `logs` modules: a temporary
//! directory with a log in it, and readers that strip the timestamps.
//!
//! Compiled only for tests (`#[cfg(test)]` in mod.rs).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{LogConfig, LogFile, Op, Pump, Stream, backup};

pub(super) struct Tmp(pub(super) PathBuf);

impl Tmp {
    pub(super) fn new(name: &str) -> Tmp {
        let dir = std::env::temp_dir().join(format!("exeio-logs-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Tmp(dir)
    }

    pub(super) fn log(&self, max_bytes: u64, backups: u32) -> Arc<LogFile> {
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
pub(super) fn bodies(bytes: &[u8]) -> Vec<String> {
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

pub(super) fn file(path: &Path) -> Vec<String> {
    bodies(&fs::read(path).unwrap_or_default())
}

/// Every line of the log, oldest first, through the backups.
pub(super) fn all(log: &LogFile, backups: usize) -> Vec<String> {
    let mut lines: Vec<String> = (1..=backups)
        .rev()
        .flat_map(|k| file(&backup(log.path(), k)))
        .collect();
    lines.extend(file(log.path()));
    lines
}

pub(super) fn numbers(lines: &[String]) -> Vec<u32> {
    lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

pub(super) fn write_numbered(log: &Arc<LogFile>, n: u32) {
    let mut pump = Pump::new(log.clone(), None);
    for i in 0..n {
        pump.feed(Stream::Stdout, format!("n {i:05}\n").as_bytes());
        if i % 7 == 0 {
            pump.flush();
        }
    }
    pump.finish();
}

/// Feed `n` 60-byte lines in 128 KiB reads, as a child's thread does.
pub(super) fn pump_lines(log: &Arc<LogFile>, n: u64) -> u64 {
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

/// Clear the log as its writer does (a queued operation, then a drain).
pub(super) fn clear(log: &LogFile) -> std::io::Result<()> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    log.post(Op::Clear(tx));
    log.drain();
    rx.recv().unwrap()
}

/// SIGHUP's reopen, as its writer does it.
pub(super) fn reopen(log: &LogFile) {
    log.post(Op::Reopen);
    log.drain();
}
