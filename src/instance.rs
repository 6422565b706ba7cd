//! Single instance: an fd-lock on `<config-dir>/exeio.lock`, holding our pid.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use fd_lock::RwLock;

use crate::error::{Error, Result};

/// Holds the lock for as long as it lives. The lock file is never deleted.
pub struct Instance {
    // Leaked so the guard can borrow it for the whole run.
    _guard: fd_lock::RwLockWriteGuard<'static, File>,
}

impl Instance {
    pub fn acquire(path: &Path, config_dir: &Path) -> Result<Instance> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(Error::io("open lock file", path))?;
        let lock: &'static mut RwLock<File> = Box::leak(Box::new(RwLock::new(file)));
        match lock.try_write() {
            Ok(mut guard) => {
                let pid = std::process::id();
                let _ = guard.set_len(0);
                let _ = guard.seek(SeekFrom::Start(0));
                let _ = writeln!(*guard, "{pid}");
                let _ = guard.sync_data();
                Ok(Instance { _guard: guard })
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut text = String::new();
                let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
                Err(Error::AlreadyRunning {
                    pid: text.trim().parse().ok(),
                    config_dir: config_dir.to_owned(),
                })
            }
            Err(e) => Err(Error::Io {
                op: "lock",
                path: path.to_owned(),
                source: e,
            }),
        }
    }
}
