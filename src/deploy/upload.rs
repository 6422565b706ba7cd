//! The body of a deploy on its way to disk: written to the releases dir's
//! `.upload-*` file through a buffer while its sha256 is computed, so the
//! upload is never held in memory (a 512 MiB release costs this buffer).
//! Used by the `POST /deploy` handler, which copies the body into it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Bytes buffered before a write to the file.
const BUFFER: usize = 256 * 1024;

pub struct Upload {
    file: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
}

impl Upload {
    /// Write to `path` (the `Temp` of `Releases::upload_path`), created 0600.
    pub fn create(path: &Path) -> io::Result<Upload> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Upload {
            file: BufWriter::with_capacity(BUFFER, file),
            hash: Sha256::new(),
            bytes: 0,
        })
    }

    /// Flush the file; the hex sha256 and the size of what was written.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        self.file.flush()?;
        Ok((hex(&self.hash.finalize()), self.bytes))
    }
}

impl Write for Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `X-Exeio-SHA256` header, lowercased: 64 hex digits, or why not.
pub fn parse_sha256(header: &str) -> Result<String, String> {
    let h = header.trim();
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h.to_ascii_lowercase())
    } else {
        Err("X-Exeio-SHA256 must be the 64 hex digits of the body's sha256".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_it_writes() {
        let dir = std::env::temp_dir().join(format!("exeio-upload-{}", std::process::id()));
        let mut u = Upload::create(&dir).unwrap();
        u.write_all(b"hello ").unwrap();
        u.write_all(b"world").unwrap();
        let (sha, n) = u.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(&dir).unwrap(), b"hello world");
        std::fs::remove_file(&dir).unwrap();
        assert!(parse_sha256(&sha.to_uppercase()).is_ok_and(|s| s == sha));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"g".repeat(64)).is_err());
    }
}
