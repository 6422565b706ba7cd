//! Safe extraction of an uploaded release archive (SPEC 4c): gzip or plain
//! tar (told by the magic bytes), streamed entry by entry into an empty dir.
//!
//! The tar crate only parses; every entry is checked and written by exeio
//! itself (never the crate's `unpack`, whose link handling was the subject of
//! RUSTSEC-2021-0080 and RUSTSEC-2026-0067). The crate reads in raw mode, so
//! GNU long names and pax headers are read here too, each with a small cap
//! (the crate would read one of any size into memory). The rules:
//! - a path is relative and has no `..` (`.` and empty components are
//!   dropped); an entry never replaces an earlier one (except a dir by a dir);
//! - every parent of every path written is checked with `symlink_metadata`:
//!   a real dir, created here if missing, never a symlink. So nothing is
//!   written through a link, whatever order the archive has;
//! - a symlink's target is relative, its `..` components all come first and
//!   climb no higher than the release's top; so with the rule above no link
//!   (nor a chain of links) resolves outside the release. A hard link names
//!   a regular file already extracted;
//! - device files, fifos, sparse files and unknown entry types are refused;
//! - file contents are streamed through a fixed buffer; the sizes declared in
//!   the headers count against `max_bytes` before anything is read (so a
//!   small gzip that inflates to terabytes stops at its first big header),
//!   and entries (implicit parent dirs included) against `max_entries`;
//! - modes are kept less setuid, setgid, sticky and group/other write; with
//!   an `Owner`, everything created is chowned to it (through the open fd,
//!   or `lchown` for a link). Dir modes are applied last (a read-only dir
//!   must not stop its own extraction).
//!
//! The caller's `into` must be an empty dir that only exeio can enter (a
//! `.incoming-*` dir, 0700): then nothing else can change the tree between a
//! check and the write it guards. Its own mode and owner are set last.
//! Called by the deploy flow on its worker thread; no state.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::entry_path::{check_symlink, join_shown, relative_parts, trim_nul};
use nix::libc;

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
        match self {
            ExtractError::Unsafe { .. } | ExtractError::Corrupt(_) => 400,
            ExtractError::TooLarge(_) => 413,
            ExtractError::Io(e) if is_disk_full(e) => 507,
            ExtractError::Io(_) => 500,
        }
    }
}

/// A full disk or an exhausted quota (507 Insufficient Storage).
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::Unsafe { entry, why } => {
                write!(f, "unsafe archive entry {entry:?}: {why}")
            }
            ExtractError::Corrupt(why) => write!(f, "corrupt archive: {why}"),
            ExtractError::TooLarge(why) => write!(f, "release too large: {why}"),
            ExtractError::Io(e) if is_disk_full(e) => {
                write!(f, "no space left to extract the release: {e}")
            }
            ExtractError::Io(e) => write!(f, "extracting the release failed: {e}"),
        }
    }
}

impl std::error::Error for ExtractError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExtractError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The longest GNU long name / long link / pax header read (PATH_MAX is 4096).
const MAX_EXTENSION: u64 = 64 * 1024;
/// Copy buffer: large enough that the per-read overhead vanishes.
const BUF: usize = 256 * 1024;

/// Extract the uploaded archive (gzip or plain tar, told by its magic bytes)
/// into `into` (an empty dir the caller created), refusing what SPEC 4c
/// refuses. On error, what was written so far stays in `into`: the caller
/// removes it (dropping its `Temp`).
pub fn extract(
    archive: &Path,
    into: &Path,
    limits: &Limits,
    owner: Option<&Owner>,
) -> Result<Extracted, ExtractError> {
    let mut file = File::open(archive).map_err(ExtractError::Io)?;
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut file, &mut magic).map_err(ExtractError::Io)?;
    file.seek(SeekFrom::Start(0)).map_err(ExtractError::Io)?;
    let raw = BufReader::with_capacity(BUF, file);
    let stream: Box<dyn Read> = if got == 2 && magic == [0x1f, 0x8b] {
        Box::new(MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    };
    let mut ar = tar::Archive::new(EofSeen {
        inner: stream,
        eof: false,
    });
    let mut sink = Sink {
        root: into,
        limits,
        owner,
        done: Extracted::default(),
        declared: 0,
        dirs: Vec::new(),
        buf: vec![0u8; BUF],
    };
    let mut ext = Extensions::default();
    for entry in ar.entries().map_err(read_error)?.raw(true) {
        let entry = entry.map_err(read_error)?;
        sink.take(entry, &mut ext)?;
    }
    if ext.pending() {
        return Err(ExtractError::Corrupt(
            "the archive ends with a long-name or pax header and no entry after it".into(),
        ));
    }
    if ar.into_inner().eof {
        return Err(ExtractError::Corrupt(
            "the archive ends without its end-of-archive marker (cut short?)".into(),
        ));
    }
    sink.finish()
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An error while reading the archive stream: a bad gzip or tar is
/// `Corrupt`; the disk failing under the upload file is `Io`.
fn read_error(e: io::Error) -> ExtractError {
    use io::ErrorKind::*;
    match e.kind() {
        InvalidData | InvalidInput | UnexpectedEof | Other => ExtractError::Corrupt(e.to_string()),
        _ => ExtractError::Io(e),
    }
}

/// The tar stream, noting whether it ended at EOF (an archive without its
/// zero blocks: cut short) rather than at the end-of-archive marker.
struct EofSeen<R> {
    inner: R,
    eof: bool,
}

impl<R: Read> Read for EofSeen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof = true;
        }
        Ok(n)
    }
}

/// GNU long name / long link and pax values waiting for their entry.
#[derive(Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    pax: bool,
}

impl Extensions {
    fn pending(&self) -> bool {
        self.path.is_some() || self.link.is_some() || self.pax
    }
}

struct Sink<'a> {
    root: &'a Path,
    limits: &'a Limits,
    owner: Option<&'a Owner>,
    done: Extracted,
    /// Bytes declared by every header so far (the work the stream may cost).
    declared: u64,
    /// Dirs and the mode each gets at the end.
    dirs: Vec<(PathBuf, u32)>,
    buf: Vec<u8>,
}

impl Sink<'_> {
    fn take<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        ext: &mut Extensions,
    ) -> Result<(), ExtractError> {
        let size = entry.size();
        let kind = entry.header().entry_type();
        self.declared = self.declared.saturating_add(size);
        if self.declared > self.limits.max_bytes {
            return Err(ExtractError::TooLarge(format!(
                "its entries declare more than {} bytes (--max-release-bytes)",
                self.limits.max_bytes
            )));
        }
        if kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions() {
            let bytes = read_extension(&mut entry, size)?;
            if kind.is_gnu_longname() {
                ext.path = Some(trim_nul(bytes));
            } else if kind.is_gnu_longlink() {
                ext.link = Some(trim_nul(bytes));
            } else {
                self.pax(&bytes, ext)?;
            }
            return Ok(());
        }
        if kind.is_pax_global_extensions() {
            read_extension(&mut entry, size)?;
            return self.count_entry();
        }
        let name = match ext.path.take() {
            Some(p) => p,
            None => entry.header().path_bytes().into_owned(),
        };
        let shown = String::from_utf8_lossy(&name).into_owned();
        let unsafe_entry = |why: &str| ExtractError::Unsafe {
            entry: shown.clone(),
            why: why.to_owned(),
        };
        let link = ext.link.take();
        if let Some(pax_size) = ext.size.take()
            && pax_size != size
        {
            return Err(unsafe_entry(
                "its pax size disagrees with its header's (an ambiguous archive)",
            ));
        }
        ext.pax = false;
        if kind.is_character_special() || kind.is_block_special() {
            return Err(unsafe_entry("device files are not allowed"));
        }
        if kind.is_fifo() {
            return Err(unsafe_entry("fifos are not allowed"));
        }
        if kind.is_gnu_sparse() {
            return Err(unsafe_entry("sparse files are not supported"));
        }
        let parts = relative_parts(&name).map_err(&unsafe_entry)?;
        let mode = entry.header().mode().unwrap_or(0o644) & 0o777 & !0o022;
        if kind.is_dir() {
            self.count_entry()?;
            return self.dir(&parts, mode, &shown);
        }
        let Some((last, parents)) = parts.split_last() else {
            return Err(unsafe_entry("only a directory may name the release's top"));
        };
        let dir = self.parents(parents, &shown)?;
        let path = dir.join(last);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(unsafe_entry("it appears twice in the archive"));
        }
        self.count_entry()?;
        let link = link.or_else(|| entry.header().link_name_bytes().map(|l| l.into_owned()));
        if kind.is_symlink() {
            let target = link.unwrap_or_default();
            check_symlink(&target, parents.len()).map_err(|why| unsafe_entry(&why))?;
            std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                .map_err(ExtractError::Io)?;
            if let Some(o) = self.owner {
                std::os::unix::fs::lchown(&path, Some(o.uid), Some(o.gid))
                    .map_err(ExtractError::Io)?;
            }
            return Ok(());
        }
        if kind.is_hard_link() {
            let target = link.unwrap_or_default();
            let from = self
                .hard_link_target(&target)
                .map_err(|why| unsafe_entry(&why))?;
            return fs::hard_link(from, &path).map_err(ExtractError::Io);
        }
        if kind.is_file() || kind.is_contiguous() {
            return self.file(&mut entry, &path, size, mode, &shown);
        }
        Err(unsafe_entry(&format!(
            "entry type {:?} is not supported",
            kind.as_byte() as char
        )))
    }

    fn pax(&mut self, bytes: &[u8], ext: &mut Extensions) -> Result<(), ExtractError> {
        ext.pax = true;
        for field in tar::PaxExtensions::new(bytes) {
            let field =
                field.map_err(|e| ExtractError::Corrupt(format!("a bad pax header: {e}")))?;
            match field.key_bytes() {
                b"path" => ext.path = Some(field.value_bytes().to_vec()),
                b"linkpath" => ext.link = Some(field.value_bytes().to_vec()),
                b"size" => {
                    let size = field.value().ok().and_then(|v| v.parse().ok());
                    ext.size = Some(size.ok_or_else(|| {
                        ExtractError::Corrupt("a pax header with a bad size".into())
                    })?);
                }
                k if k.starts_with(b"GNU.sparse") => {
                    return Err(ExtractError::Unsafe {
                        entry: String::from_utf8_lossy(ext.path.as_deref().unwrap_or(b"?"))
                            .into_owned(),
                        why: "sparse files are not supported".into(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn count_entry(&mut self) -> Result<(), ExtractError> {
        self.done.files += 1;
        if self.done.files > self.limits.max_entries {
            return Err(ExtractError::TooLarge(format!(
                "more than {} entries",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    /// Make sure each of `parents` (under the root) is a real dir, creating
    /// the missing ones; never through a symlink. Returns the last.
    fn parents(&mut self, parents: &[&OsStr], shown: &str) -> Result<PathBuf, ExtractError> {
        let mut dir = self.root.to_path_buf();
        for (i, part) in parents.iter().enumerate() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(m) => {
                    let prefix = join_shown(&parents[..=i]);
                    let why = if m.file_type().is_symlink() {
                        format!("it would be written through the symlink {prefix:?}")
                    } else {
                        format!("{prefix:?} is not a directory")
                    };
                    return Err(ExtractError::Unsafe {
                        entry: shown.to_owned(),
                        why,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.count_entry()?;
                    self.make_dir(&dir, 0o755)?;
                }
                Err(e) => return Err(ExtractError::Io(e)),
            }
        }
        Ok(dir)
    }

    fn make_dir(&mut self, path: &Path, mode: u32) -> Result<(), ExtractError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(ExtractError::Io)?;
        self.dirs.push((path.to_path_buf(), mode));
        Ok(())
    }

    fn dir(&mut self, parts: &[&OsStr], mode: u32, shown: &str) -> Result<(), ExtractError> {
        let Some((last, parents)) = parts.split_last() else {
            self.dirs.push((self.root.to_path_buf(), mode));
            return Ok(());
        };
        let path = self.parents(parents, shown)?.join(last);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                self.dirs.push((path, mode));
                Ok(())
            }
            Ok(_) => Err(ExtractError::Unsafe {
                entry: shown.to_owned(),
                why: "it appears twice in the archive".into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.make_dir(&path, mode),
            Err(e) => Err(ExtractError::Io(e)),
        }
    }

    fn file(
        &mut self,
        entry: &mut impl Read,
        path: &Path,
        size: u64,
        mode: u32,
        shown: &str,
    ) -> Result<(), ExtractError> {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(ExtractError::Io)?;
        let mut copied = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            out.write_all(&self.buf[..n]).map_err(ExtractError::Io)?;
            copied += n as u64;
        }
        if copied != size {
            return Err(ExtractError::Corrupt(format!(
                "{shown:?} is cut short ({copied} of {size} bytes)"
            )));
        }
        self.done.bytes += copied;
        out.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(ExtractError::Io)?;
        if let Some(o) = self.owner {
            std::os::unix::fs::fchown(&out, Some(o.uid), Some(o.gid)).map_err(ExtractError::Io)?;
        }
        Ok(())
    }

    /// The file a hard link names: a regular file already extracted, reached
    /// through real dirs only.
    fn hard_link_target(&self, target: &[u8]) -> Result<PathBuf, String> {
        let parts = relative_parts(target).map_err(|why| format!("its link target {why}"))?;
        let mut path = self.root.to_path_buf();
        for part in &parts {
            path.push(part);
            let m = fs::symlink_metadata(&path)
                .map_err(|_| "its link target is not an earlier file of the archive".to_owned())?;
            if m.file_type().is_symlink() {
                return Err("its link target goes through a symlink".into());
            }
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => Ok(path),
            _ => Err("its link target is not an earlier file of the archive".into()),
        }
    }

    /// Apply dir modes (deepest first, so a read-only dir does not stop
    /// the ones inside it) and owners; the root's last.
    fn finish(mut self) -> Result<Extracted, ExtractError> {
        let root_mode = self
            .dirs
            .iter()
            .rev()
            .find(|(p, _)| p == self.root)
            .map(|(_, m)| *m)
            .unwrap_or(0o755);
        self.dirs.retain(|(p, _)| p != self.root);
        self.dirs
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        self.dirs.push((self.root.to_path_buf(), root_mode));
        for (path, mode) in &self.dirs {
            let dir = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(path)
                .map_err(ExtractError::Io)?;
            if let Some(o) = self.owner {
                std::os::unix::fs::fchown(&dir, Some(o.uid), Some(o.gid))
                    .map_err(ExtractError::Io)?;
            }
            dir.set_permissions(fs::Permissions::from_mode(*mode))
                .map_err(ExtractError::Io)?;
        }
        Ok(self.done)
    }
}

fn read_extension(entry: &mut impl Read, size: u64) -> Result<Vec<u8>, ExtractError> {
    if size > MAX_EXTENSION {
        return Err(ExtractError::Corrupt(format!(
            "a long-name or pax header of {size} bytes (at most {MAX_EXTENSION})"
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(bytes)
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
