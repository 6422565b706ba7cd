//! Where exeio keeps its files: XDG dirs with a HOME fallback, created 0700.

use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::cli::Config;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub logs_dir: PathBuf,
}

impl Paths {
    /// Resolve from the command line and the environment; creates nothing.
    pub fn resolve(cfg: &Config) -> Result<Paths> {
        let config_dir = match &cfg.config_dir {
            Some(d) => d.clone(),
            None => default_config_dir()?,
        };
        let data_dir = match &cfg.data_dir {
            Some(d) => d.clone(),
            None => xdg("XDG_DATA_HOME", ".local/share")?.join("exeio"),
        };
        let logs_dir = data_dir.join("logs");
        Ok(Paths {
            config_dir: absolute(config_dir),
            logs_dir: absolute(logs_dir),
            data_dir: absolute(data_dir),
        })
    }

    /// Create the dirs (0700) and prove they are writable.
    pub fn create(&self) -> Result<()> {
        for dir in [&self.config_dir, &self.data_dir, &self.logs_dir] {
            ensure_dir(dir)?;
        }
        Ok(())
    }

    pub fn store(&self) -> PathBuf {
        self.config_dir.join("processes.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.config_dir.join("exeio.lock")
    }
    pub fn key_file(&self) -> PathBuf {
        self.config_dir.join("api-key")
    }
    pub fn exeio_log(&self) -> PathBuf {
        self.logs_dir.join("exeio.log")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.logs_dir.join("audit.log")
    }
    pub fn keys_file(&self) -> PathBuf {
        self.config_dir.join("keys.json")
    }
    /// Notification targets (SPEC 4d).
    pub fn notify_file(&self) -> PathBuf {
        self.config_dir.join("notify.json")
    }
    /// Notifications not yet delivered.
    pub fn notify_queue(&self) -> PathBuf {
        self.data_dir.join("notify-queue")
    }
    /// Run histories of saved jobs.
    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.join("runs")
    }
}

/// `$XDG_CONFIG_HOME/exeio`, else `~/.config/exeio` (the client looks for
/// the daemon's key file there too).
pub fn default_config_dir() -> Result<PathBuf> {
    Ok(xdg("XDG_CONFIG_HOME", ".config")?.join("exeio"))
}

fn xdg(var: &str, fallback: &str) -> Result<PathBuf> {
    if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if p.is_absolute() {
            return Ok(p);
        }
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(fallback)),
        None => Err(Error::Other(format!(
            "neither ${var} nor $HOME is set: pass --config-dir and --data-dir"
        ))),
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

fn ensure_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Other(format!(
                "cannot use {}: it exists and is not a directory",
                dir.display()
            )));
        }
        Err(_) => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(Error::io("create directory", dir))?,
    }
    // Prove it is writable (root ignores modes; a read-only mount does not).
    let probe = dir.join(format!(".exeio-write-test-{}", std::process::id()));
    fs::write(&probe, b"").map_err(Error::io("write in directory", dir))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}
