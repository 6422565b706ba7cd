//! The API key: where it comes from, and a constant-time check.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::cli::Config;
use crate::error::{Error, Result};

/// The environment variable a key may come from. Never passed on to children.
pub const KEY_ENV: &str = "EXEIO_API_KEY";

/// Random bytes in a generated key (256 bits, printed as 64 hex chars).
const KEY_BYTES: usize = 32;

/// The key and a sentence on where it came from (for the start-up lines).
pub struct ApiKey {
    key: String,
    pub origin: Origin,
}

pub enum Origin {
    Flag,
    Env,
    File(std::path::PathBuf),
    /// Generated now and stored at this path: the only time it is printed.
    Generated(std::path::PathBuf),
}

impl ApiKey {
    /// `--api-key`, then `--api-key-file`, then `EXEIO_API_KEY`, then the stored key
    /// file, else generate one and store it 0600.
    pub fn load(cfg: &Config, key_file: &Path) -> Result<ApiKey> {
        if let Some(k) = &cfg.api_key {
            return Ok(ApiKey::new(k.clone(), Origin::Flag));
        }
        if let Some(path) = &cfg.api_key_file {
            return read_key(path).map(|k| ApiKey::new(k, Origin::File(path.clone())));
        }
        if let Ok(k) = std::env::var(KEY_ENV)
            && !k.trim().is_empty()
        {
            return Ok(ApiKey::new(k, Origin::Env));
        }
        if key_file.exists() {
            return read_key(key_file).map(|k| ApiKey::new(k, Origin::File(key_file.to_owned())));
        }
        let key = generate()?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(key_file)
            .map_err(Error::io("create key file", key_file))?;
        f.write_all(format!("{key}\n").as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(Error::io("write key file", key_file))?;
        Ok(ApiKey::new(key, Origin::Generated(key_file.to_owned())))
    }

    pub fn new(key: String, origin: Origin) -> ApiKey {
        ApiKey { key, origin }
    }

    pub fn secret(&self) -> &str {
        &self.key
    }

    /// Constant-time comparison (in the length of the presented key).
    pub fn matches(&self, presented: &str) -> bool {
        ct_eq(self.key.as_bytes(), presented.as_bytes())
    }
}

fn read_key(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path).map_err(Error::io("read key file", path))?;
    let key = text.trim().to_owned();
    if key.is_empty() {
        return Err(Error::Other(format!(
            "key file {} is empty",
            path.display()
        )));
    }
    Ok(key)
}

fn generate() -> Result<String> {
    let mut buf = [0u8; KEY_BYTES];
    getrandom::fill(&mut buf).map_err(|e| Error::Other(format!("cannot get random bytes: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compare without an early exit on the first differing byte.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, &y) in b.iter().enumerate() {
        let x = a.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secre"));
        assert!(!ct_eq(b"secret", b"secret1"));
        assert!(!ct_eq(b"secret", b""));
        assert!(!ct_eq(b"", b"x"));
    }

    #[test]
    fn generated_keys_are_long_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
