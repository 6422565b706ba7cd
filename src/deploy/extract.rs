//! Safe extraction of an uploaded release archive (SPEC 4c): gzip or plain
//! tar (told by the magic bytes), streamed entry by entry into an empty dir.
//!
//! Every entry is checked and written by exeio itself (never the tar crate's
//! `unpack`): no absolute path, no `..`, no link leaving the release, nothing
//! written through a symlink, no device or fifo; bytes and entries capped.
//! Called by the deploy flow on its worker thread.

use std::fmt;
use std::path::Path;

/// Caps on what one archive may unpack to.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Total bytes of file contents (`--max-release-bytes`).
    pub max_bytes: u64,
    /// Entries of any kind (files, dirs, links).
    pub max_entries: u64,
}

/// Who the extracted files belong to (the process's `user`), when not exeio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// What was extracted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extracted {
    /// Entries created (files, dirs, links).
    pub files: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
}

/// Why an archive was not extracted. The caller removes the partial dir.
#[derive(Debug)]
pub enum ExtractError {
    /// An entry that would escape the release or is not a plain file, dir
    /// or link (400). `entry` is its path as written in the archive.
    Unsafe { entry: String, why: String },
    /// Not a readable tar or gzip stream (400).
    Corrupt(String),
    /// Over `max_bytes` or `max_entries` (413).
    TooLarge(String),
    /// Writing failed (507 for a full disk, else 500).
    Io(std::io::Error),
}

impl ExtractError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        unimplemented!()
    }
}

impl fmt::Display for ExtractError {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        unimplemented!()
    }
}

impl std::error::Error for ExtractError {}

/// Extract the uploaded archive (gzip or plain tar, told by its magic bytes)
/// into `into` (an empty dir the caller created), refusing what SPEC 4c
/// refuses. On error, what was written so far stays in `into`: the caller
/// removes it (dropping its `Temp`).
pub fn extract(
    _archive: &Path,
    _into: &Path,
    _limits: &Limits,
    _owner: Option<&Owner>,
) -> Result<Extracted, ExtractError> {
    unimplemented!()
}
