//! What `exeio deploy ID PATH` uploads (SPEC 4c): a directory packed as
//! tar.gz on the fly, or a `.tar.gz`/`.tgz`/`.tar` file as it is; either way
//! with its sha256 and length known before the first byte is sent.
//!
//! The `X-Exeio-SHA256` header (and `Content-Length`) precede the body, so
//! a directory is packed twice: a first pass into a hasher (nothing kept),
//! a second pass streamed to the server from a packing thread through a
//! bounded channel (a few chunks in memory, whatever the size). Packing is
//! deterministic: entries in byte order of their names, real modes and
//! mtimes, uid/gid 0, no user names. Chosen over a temporary archive
//! because a temp file needs free space for a second copy of the release
//! (and `/tmp` is often RAM), must be cleaned up when the CLI is killed,
//! and delays the first byte just as long; the price is compressing twice,
//! at a fast level. A file that changes between the passes is caught: the
//! second pass is hashed too, and a length change stops the upload (the
//! server refuses a sha256 mismatch in any case: nothing is deployed).
//!
//! The packer refuses only what no tar.gz can carry usefully and the server
//! refuses anyway (fifos, sockets, devices); symlinks go in as links, their
//! targets untouched: the server judges them. Called by `client::deploy`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::Failure;

/// gzip level 1: about three times as fast as the default 6 on typical
/// releases for a few percent more bytes; packing runs twice.
const LEVEL: u32 = 1;
/// Bytes per chunk between the packing thread and the upload.
const CHUNK: usize = 64 * 1024;
/// Chunks in flight: the memory a packed upload holds at most.
const IN_FLIGHT: usize = 4;

/// A release to upload.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A directory: its contents become the release's top level.
    Dir(PathBuf),
    /// An archive sent as it is.
    Archive { path: PathBuf, gzip: bool },
}

/// The sha256 (lowercase hex) and length of what is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    pub sha256: String,
    pub len: u64,
}

impl Source {
    /// What `path` is: a directory, or an archive by its name.
    pub fn open(path: &Path) -> Result<Source, Failure> {
        let meta = fs::metadata(path)
            .map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_owned()));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let gzip = name.ends_with(".tar.gz") || name.ends_with(".tgz");
        if meta.is_file() && (gzip || name.ends_with(".tar")) {
            return Ok(Source::Archive {
                path: path.to_owned(),
                gzip,
            });
        }
        Err(Failure::Other(format!(
            "{} is neither a directory nor a .tar.gz, .tgz or .tar file",
            path.display()
        )))
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Source::Archive { gzip: false, .. } => "application/x-tar",
            _ => "application/gzip",
        }
    }

    /// The first pass: hash what `stream` will send.
    pub fn digest(&self) -> io::Result<Digest> {
        let mut sink = Hashing::default();
        match self {
            Source::Dir(dir) => {
                pack(dir, &mut sink)?;
            }
            Source::Archive { path, .. } => {
                let mut f = File::open(path).map_err(|e| at(path, e))?;
                io::copy(&mut f, &mut sink).map_err(|e| at(path, e))?;
            }
        }
        Ok(sink.digest())
    }

    /// The bytes to send, read as they are made.
    pub fn stream(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Source::Dir(dir) => Box::new(Piped::start(dir.clone())),
            Source::Archive { path, .. } => Box::new(File::open(path).map_err(|e| at(path, e))?),
        })
    }
}

/// Pack the contents of `dir` as tar.gz into `out`; returns `out`.
pub fn pack<W: Write>(dir: &Path, out: W) -> io::Result<W> {
    let mut tar = tar::Builder::new(GzEncoder::new(out, Compression::new(LEVEL)));
    tar.follow_symlinks(false);
    add_dir(&mut tar, dir, Path::new(""))?;
    tar.into_inner()?.finish()
}

/// Append the entries under `root/rel`, sorted by name, depth first.
fn add_dir<W: Write>(tar: &mut tar::Builder<W>, root: &Path, rel: &Path) -> io::Result<()> {
    let here = root.join(rel);
    let mut names: Vec<OsString> = fs::read_dir(&here)
        .map_err(|e| at(&here, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| at(&here, e))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let full = root.join(&rel);
        let meta = fs::symlink_metadata(&full).map_err(|e| at(&full, e))?;
        let mut h = Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        let kind = meta.file_type();
        let added = if kind.is_dir() {
            h.set_entry_type(EntryType::Directory);
            tar.append_data(&mut h, &rel, io::empty())
                .and_then(|()| add_dir(tar, root, &rel))
        } else if kind.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(&full).map_err(|e| at(&full, e))?;
            tar.append_link(&mut h, &rel, target)
        } else if kind.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(&full).map_err(|e| at(&full, e))?;
            tar.append_data(&mut h, &rel, Exactly::new(f, meta.len(), &full))
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a fifo, socket or device file cannot be deployed \
                     (a release holds files, directories and symlinks)",
                    full.display()
                ),
            ));
        };
        added.map_err(|e| at(&full, e))?;
    }
    Ok(())
}

/// An io error that names the path (once).
fn at(path: &Path, e: io::Error) -> io::Error {
    let shown = path.display().to_string();
    if e.to_string().contains(&shown) {
        return e;
    }
    io::Error::new(e.kind(), format!("{shown}: {e}"))
}

/// A file's first `left` bytes; an error if it has fewer (it shrank since
/// its size went into the header, which would corrupt the archive).
struct Exactly {
    file: File,
    left: u64,
    path: PathBuf,
}

impl Exactly {
    fn new(file: File, len: u64, path: &Path) -> Exactly {
        Exactly {
            file,
            left: len,
            path: path.to_owned(),
        }
    }
}

impl Read for Exactly {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being packed", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that keeps only the sha256 and the length.
#[derive(Default)]
pub struct Hashing {
    sha: Sha256,
    len: u64,
}

impl Hashing {
    pub fn digest(self) -> Digest {
        Digest {
            sha256: hex(&self.sha.finalize()),
            len: self.len,
        }
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sha.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The packed bytes of a directory, made by a thread as they are read.
struct Piped {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    packer: Option<JoinHandle<()>>,
}

impl Piped {
    fn start(dir: PathBuf) -> Piped {
        let (tx, rx) = bounded(IN_FLIGHT);
        let packer = std::thread::Builder::new()
            .name("exeio-pack".into())
            .spawn(move || {
                let out = Chunks {
                    tx: tx.clone(),
                    buf: Vec::with_capacity(CHUNK),
                };
                match pack(&dir, out).and_then(|mut out| out.flush()) {
                    Ok(()) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        match packer {
            Ok(h) => Piped {
                rx,
                chunk: Vec::new(),
                at: 0,
                packer: Some(h),
            },
            Err(e) => {
                let (tx, rx) = bounded(1);
                let _ = tx.send(Err(e));
                Piped {
                    rx,
                    chunk: Vec::new(),
                    at: 0,
                    packer: None,
                }
            }
        }
    }
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the packer is done
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        // Hang up first: a packer blocked on a full channel then stops.
        self.rx = crossbeam_channel::never();
        if let Some(h) = self.packer.take() {
            let _ = h.join();
        }
    }
}

/// The packer's end: bytes gathered into chunks and sent.
struct Chunks {
    tx: Sender<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(Ok(full))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

#[cfg(test)]
mod tests;
