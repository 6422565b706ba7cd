//! API keys: the admin key exeio starts with (flag, file, environment, or
//! generated), and named keys with a role, created and revoked over the API
//! and kept in `<config-dir>/keys.json` (0600) as salted SHA-256 hashes only.
//!
//! A named key reads `NAME.SECRET`: the name finds its record at once, the
//! secret is checked against the hash in constant time. Called by HTTP
//! threads (verify, create, revoke, list) and the daemon (load, save).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cli::Config;
use crate::error::{Error, Result};
use crate::spec::ProcessId;
use crate::timefmt::{rfc3339, unix_secs};

/// The environment variable a key may come from. Never passed on to children.
pub const KEY_ENV: &str = "EXEIO_API_KEY";

/// Random bytes in a generated key (256 bits, printed as 64 hex chars).
const KEY_BYTES: usize = 32;
const SALT_BYTES: usize = 16;
/// Most named keys.
const MAX_KEYS: usize = 1000;
/// The name of the key exeio starts with (in the audit log).
pub const ADMIN: &str = "admin";

/// What a key may do: each role can do what the ones below it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Operate,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "operate" => Some(Role::Operate),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who presented a valid key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// The key's own id: a session of a revoked key dies with it, even if a
    /// new key takes the same name.
    pub kid: String,
}

/// Where the admin key came from (for the start-up lines).
pub enum Origin {
    Flag,
    Env,
    File(PathBuf),
    /// Generated now and stored at this path: the only time it is printed.
    Generated(PathBuf),
}

#[derive(Serialize, Deserialize)]
struct Record {
    name: String,
    role: Role,
    kid: String,
    salt: String,
    hash: String,
    created_at: String,
    #[serde(default)]
    last_used_at: Option<String>,
}

struct Named {
    record: Record,
    /// Unix seconds of the last use (0: never), kept in memory.
    last_used: AtomicI64,
}

#[derive(Serialize, Deserialize)]
struct KeysFile {
    version: u32,
    keys: Vec<Record>,
}

/// A key as `GET /keys` shows it: never the key itself.
#[derive(Serialize)]
pub struct Listed {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

pub struct Keys {
    admin: String,
    pub origin: Origin,
    path: PathBuf,
    named: RwLock<Vec<Arc<Named>>>,
    /// Serialises saves of keys.json.
    saving: Mutex<()>,
}

impl Keys {
    /// The admin key: `--api-key`, then `--api-key-file`, then
    /// `EXEIO_API_KEY`, then the stored key file, else generate one and
    /// store it 0600. Then the named keys from `keys_file`.
    pub fn load(cfg: &Config, key_file: &Path, keys_file: &Path) -> Result<Keys> {
        let (admin, origin) = admin_key(cfg, key_file)?;
        let named = match fs::read(keys_file) {
            Ok(bytes) => {
                let file: KeysFile = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Other(format!(
                        "{} does not parse ({e}); fix or remove it",
                        keys_file.display()
                    ))
                })?;
                file.keys
                    .into_iter()
                    .map(|record| {
                        let last_used = record
                            .last_used_at
                            .as_deref()
                            .and_then(crate::timefmt::parse_rfc3339)
                            .unwrap_or(0);
                        Arc::new(Named {
                            record,
                            last_used: AtomicI64::new(last_used),
                        })
                    })
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read", keys_file)(e)),
        };
        Ok(Keys {
            admin,
            origin,
            path: keys_file.to_owned(),
            named: RwLock::new(named),
            saving: Mutex::new(()),
        })
    }

    /// The admin key itself (printed once when generated).
    pub fn admin_secret(&self) -> &str {
        &self.admin
    }

    /// Who `presented` belongs to, if anyone. Constant time in the secret.
    pub fn verify(&self, presented: &str) -> Option<Identity> {
        if ct_eq(self.admin.as_bytes(), presented.as_bytes()) {
            return Some(Identity {
                name: ADMIN.into(),
                role: Role::Admin,
                kid: ADMIN.into(),
            });
        }
        let (name, secret) = presented.rsplit_once('.')?;
        let named = self.named.read().unwrap_or_else(PoisonError::into_inner);
        let k = named.iter().find(|k| k.record.name == name)?;
        let hash = hash(&k.record.salt, secret);
        if !ct_eq(hash.as_bytes(), k.record.hash.as_bytes()) {
            return None;
        }
        k.last_used
            .store(unix_secs(SystemTime::now()), Ordering::Relaxed);
        Some(Identity {
            name: k.record.name.clone(),
            role: k.record.role,
            kid: k.record.kid.clone(),
        })
    }

    /// Is the key with this id still valid (for sessions)?
    pub fn still_valid(&self, kid: &str) -> bool {
        kid == ADMIN
            || self
                .named
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .any(|k| k.record.kid == kid)
    }

    /// Create a named key; the key is returned once and never again.
    pub fn create(&self, name: &str, role: Role) -> std::result::Result<String, KeyError> {
        ProcessId::parse(name).map_err(KeyError::Invalid)?;
        if name == ADMIN {
            return Err(KeyError::Invalid(format!(
                "the name {ADMIN:?} is the key exeio starts with"
            )));
        }
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let secret = random_hex(KEY_BYTES).map_err(KeyError::Failed)?;
        let salt = random_hex(SALT_BYTES).map_err(KeyError::Failed)?;
        let record = Record {
            name: name.to_owned(),
            role,
            kid: random_hex(8).map_err(KeyError::Failed)?,
            hash: hash(&salt, &secret),
            salt,
            created_at: rfc3339(SystemTime::now()),
            last_used_at: None,
        };
        {
            let mut named = self.named.write().unwrap_or_else(PoisonError::into_inner);
            if named.iter().any(|k| k.record.name == name) {
                return Err(KeyError::Exists(name.to_owned()));
            }
            if named.len() >= MAX_KEYS {
                return Err(KeyError::Invalid(format!("at most {MAX_KEYS} keys")));
            }
            named.push(Arc::new(Named {
                record,
                last_used: AtomicI64::new(0),
            }));
        }
        if let Err(e) = self.save_locked() {
            self.named
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|k| k.record.name != name);
            return Err(KeyError::Failed(e));
        }
        Ok(format!("{name}.{secret}"))
    }

    /// Revoke a named key, at once.
    pub fn revoke(&self, name: &str) -> std::result::Result<(), KeyError> {
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = {
            let mut named = self.named.write().unwrap_or_else(PoisonError::into_inner);
            let i = named
                .iter()
                .position(|k| k.record.name == name)
                .ok_or_else(|| KeyError::NotFound(name.to_owned()))?;
            named.remove(i)
        };
        if let Err(e) = self.save_locked() {
            self.named
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .push(removed);
            return Err(KeyError::Failed(e));
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<Listed> {
        let named = self.named.read().unwrap_or_else(PoisonError::into_inner);
        named
            .iter()
            .map(|k| Listed {
                name: k.record.name.clone(),
                role: k.record.role,
                created_at: k.record.created_at.clone(),
                last_used_at: last_used(k),
            })
            .collect()
    }

    /// Save keys.json (with the times of last use), e.g. at shutdown.
    pub fn save(&self) -> std::result::Result<(), String> {
        let _saving = self.saving.lock().unwrap_or_else(PoisonError::into_inner);
        self.save_locked()
    }

    fn save_locked(&self) -> std::result::Result<(), String> {
        let named = self.named.read().unwrap_or_else(PoisonError::into_inner);
        if named.is_empty() && !self.path.exists() {
            return Ok(());
        }
        let file = KeysFile {
            version: 1,
            keys: named
                .iter()
                .map(|k| Record {
                    name: k.record.name.clone(),
                    role: k.record.role,
                    kid: k.record.kid.clone(),
                    salt: k.record.salt.clone(),
                    hash: k.record.hash.clone(),
                    created_at: k.record.created_at.clone(),
                    last_used_at: last_used(k),
                })
                .collect(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        crate::persist::write_atomic(&self.path, &bytes)
            .map_err(|e| format!("cannot save {}: {e}", self.path.display()))
    }
}

fn last_used(k: &Named) -> Option<String> {
    match k.last_used.load(Ordering::Relaxed) {
        0 => None,
        t => Some(rfc3339(
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
        )),
    }
}

/// Why a key could not be created or revoked.
#[derive(Debug)]
pub enum KeyError {
    Invalid(String),
    Exists(String),
    NotFound(String),
    Failed(String),
}

fn hash(salt: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b":");
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

fn admin_key(cfg: &Config, key_file: &Path) -> Result<(String, Origin)> {
    if let Some(k) = &cfg.api_key {
        return Ok((k.clone(), Origin::Flag));
    }
    if let Some(path) = &cfg.api_key_file {
        return read_key(path).map(|k| (k, Origin::File(path.clone())));
    }
    if let Ok(k) = std::env::var(KEY_ENV)
        && !k.trim().is_empty()
    {
        return Ok((k, Origin::Env));
    }
    if key_file.exists() {
        return read_key(key_file).map(|k| (k, Origin::File(key_file.to_owned())));
    }
    let key = random_hex(KEY_BYTES).map_err(Error::Other)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(key_file)
        .map_err(Error::io("create key file", key_file))?;
    f.write_all(format!("{key}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(Error::io("write key file", key_file))?;
    Ok((key, Origin::Generated(key_file.to_owned())))
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

pub fn random_hex(bytes: usize) -> std::result::Result<String, String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| format!("cannot get random bytes: {e}"))?;
    Ok(hex(&buf))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let a = random_hex(KEY_BYTES).unwrap();
        let b = random_hex(KEY_BYTES).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn named_keys_roles_revocation_and_no_key_on_disk() {
        let dir = std::env::temp_dir().join(format!("exeio-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let cfg = Config {
            api_key: Some("root-key".into()),
            ..Config::default()
        };
        let keys_file = dir.join("keys.json");
        let keys = Keys::load(&cfg, &dir.join("api-key"), &keys_file).unwrap();
        assert_eq!(keys.verify("root-key").unwrap().role, Role::Admin);
        let ro = keys.create("ci", Role::Read).unwrap();
        assert!(ro.starts_with("ci."));
        assert!(matches!(
            keys.create("ci", Role::Admin),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            keys.create("../x", Role::Admin),
            Err(KeyError::Invalid(_))
        ));
        assert!(matches!(
            keys.create("admin", Role::Read),
            Err(KeyError::Invalid(_))
        ));
        let who = keys.verify(&ro).unwrap();
        assert_eq!((who.name.as_str(), who.role), ("ci", Role::Read));
        assert!(keys.verify(&format!("{ro}0")).is_none());
        assert!(keys.verify("ci.").is_none());
        let on_disk = fs::read_to_string(&keys_file).unwrap();
        let secret = ro.split_once('.').unwrap().1;
        assert!(!on_disk.contains(secret), "keys.json holds no key in clear");
        // a new exeio reads the same keys
        let again = Keys::load(&cfg, &dir.join("api-key"), &keys_file).unwrap();
        assert_eq!(again.verify(&ro).unwrap().kid, who.kid);
        keys.revoke("ci").unwrap();
        assert!(keys.verify(&ro).is_none());
        assert!(!keys.still_valid(&who.kid));
        assert!(matches!(keys.revoke("ci"), Err(KeyError::NotFound(_))));
        let _ = fs::remove_dir_all(&dir);
    }
}
