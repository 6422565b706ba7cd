//! The daemon's `--apply-dir DIR`: at start, every `*.json` in DIR is
//! applied as `exeio apply -f DIR` would (added, updated, unchanged; no
//! prune), so a config directory under version control is the source of
//! truth at boot. `load` reads and validates before anything starts (a bad
//! file stops the start with one clear error); `send` hands the apply to the
//! supervisor like `POST /apply` and reports the outcome from a short-lived
//! thread. Called by `daemon` only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::error::Error;
use crate::logger::Logger;
use crate::protocol::{Apply, Call, Msg};
use crate::spec::{self, ProcessSpec};

/// The validated configurations of `dir`, in file-name order.
pub fn load(dir: &Path) -> Result<Vec<ProcessSpec>, Error> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::Other(format!("--apply-dir {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::Other(format!(
            "--apply-dir {}: not a directory",
            dir.display()
        )));
    }
    let has_json = std::fs::read_dir(dir)
        .map_err(|e| Error::Other(format!("--apply-dir {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .any(|d| d.path().extension().is_some_and(|x| x == "json"));
    if !has_json {
        return Ok(Vec::new());
    }
    let entries = crate::client::apply::load(dir)
        .map_err(|f| Error::Other(format!("--apply-dir {}: {f}", dir.display())))?;
    let mut specs: Vec<ProcessSpec> = Vec::with_capacity(entries.len());
    for e in entries {
        let bad = |field: &str, message: &str| {
            let at = if field.is_empty() {
                String::new()
            } else {
                format!(" ({field})")
            };
            Error::Other(format!(
                "--apply-dir {}: {}{at}: {message}",
                dir.display(),
                e.source
            ))
        };
        let spec = spec::request(e.config.clone())
            .and_then(spec::validate)
            .map_err(|f| bad(&f.field, &f.message))?;
        if specs.iter().any(|s| s.id == spec.id) {
            return Err(bad("id", &format!("the id '{}' appears twice", spec.id)));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Apply `specs` through the supervisor's channel (it runs once the loop
/// does); a thread waits for the answer and says it on stdout (a refusal
/// on stderr), and in exeio.log.
pub fn send(tx: &Sender<Msg>, dir: PathBuf, specs: Vec<ProcessSpec>, logger: Logger) {
    let count = specs.len();
    let (reply_tx, reply_rx) = bounded(1);
    let call = Call::Apply(Box::new(Apply {
        processes: specs,
        prune: false,
        dry_run: false,
    }));
    if tx.send(Msg::Call(call, reply_tx)).is_err() {
        return;
    }
    let report = move || {
        let said = match reply_rx.recv_timeout(Duration::from_secs(600)) {
            Ok(Ok(done)) if done.refused.is_none() => {
                let line = format!(
                    "--apply-dir {} ({count} configs): {}",
                    dir.display(),
                    done.message
                );
                crate::diag::say(&line);
                line
            }
            Ok(Ok(done)) => {
                let line = format!("--apply-dir {}: {}", dir.display(), done.message);
                crate::diag::warn(&line);
                line
            }
            Ok(Err(e)) => {
                let line = format!("--apply-dir {}: not applied: {e}", dir.display());
                crate::diag::warn(&line);
                line
            }
            Err(_) => return, // exeio stopped first
        };
        logger.supervisor(said);
    };
    let spawned = std::thread::Builder::new()
        .name("apply-dir".into())
        .stack_size(64 * 1024)
        .spawn(report);
    if let Err(e) = spawned {
        crate::diag::warn(&format!("--apply-dir: cannot report the outcome: {e}"));
    }
}
