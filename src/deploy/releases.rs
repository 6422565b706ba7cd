//! The releases dir of one process (SPEC 4c): release names, the metadata
//! file, commit of an extracted release, the atomic `current` switch, the
//! choice of the rollback target, pruning, and recovery at boot.
//!
//! The layout and the crash-safety rules are in the `deploy` module doc.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// How a release fared at its deploy's health gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Committed; the gate has not decided yet.
    Pending,
    /// Passed the gate (a rollback target).
    Succeeded,
    /// Failed the gate; exeio switched back.
    RolledBack,
    /// Failed before or at the switch (build, or exeio died mid-gate).
    Failed,
}

/// One release, as `GET /releases/{id}` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub release: String,
    pub sha256: String,
    /// Size of the uploaded archive.
    pub bytes: u64,
    /// RFC 3339.
    pub deployed_at: String,
    pub outcome: Outcome,
}

/// A temporary file or dir in a releases root, removed on drop unless
/// consumed by `Releases::commit`.
#[derive(Debug)]
pub struct Temp {
    path: PathBuf,
}

impl Temp {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<data-dir>/releases/<id>`: one process's releases.
#[derive(Clone, Debug)]
pub struct Releases {
    root: PathBuf,
}

impl Releases {
    /// Open (creating `releases/` and `releases/<id>/`, 0700) the releases of `id`.
    pub fn open(_data_dir: &Path, _id: &str) -> io::Result<Releases> {
        unimplemented!()
    }

    /// `<data-dir>/releases/<id>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh `<root>/.upload-<rand>` path (nothing created yet), removed on drop.
    pub fn upload_path(&self) -> io::Result<Temp> {
        unimplemented!()
    }

    /// A fresh, empty `<root>/.incoming-<rand>` dir (0700), removed on drop.
    pub fn incoming(&self) -> io::Result<Temp> {
        unimplemented!()
    }

    /// fsync the tree, rename `incoming` to `name`, fsync the root; record
    /// it `Pending`. Returns the release dir. `AlreadyExists` if `name` is taken.
    pub fn commit(
        &self,
        _incoming: Temp,
        _name: &str,
        _sha256: &str,
        _bytes: u64,
    ) -> io::Result<PathBuf> {
        unimplemented!()
    }

    /// Point `current` at `name` atomically (current.tmp + rename + fsync).
    pub fn switch(&self, _name: &str) -> io::Result<()> {
        unimplemented!()
    }

    /// Remove `current` (a first deploy that failed). No error if absent.
    pub fn unlink_current(&self) -> io::Result<()> {
        unimplemented!()
    }

    /// The release `current` points to.
    pub fn current(&self) -> Option<String> {
        unimplemented!()
    }

    /// `<root>/<name>`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Every recorded release, newest first.
    pub fn list(&self) -> Vec<Release> {
        unimplemented!()
    }

    /// One recorded release.
    pub fn get(&self, _name: &str) -> Option<Release> {
        unimplemented!()
    }

    /// Record the gate's verdict on `name`. `NotFound` if unrecorded.
    pub fn set_outcome(&self, _name: &str, _outcome: Outcome) -> io::Result<()> {
        unimplemented!()
    }

    /// The newest `Succeeded` release older than `than` (or than current;
    /// with neither, the newest `Succeeded` one).
    pub fn last_good(&self, _than: Option<&str>) -> Option<String> {
        unimplemented!()
    }

    /// Delete what is beyond `keep` succeeded releases; failed ones go first
    /// and use no slot; never current, last_good or a pending one. Returns
    /// the names deleted.
    pub fn prune(&self, _keep: usize) -> Vec<String> {
        unimplemented!()
    }

    /// Remove the whole releases dir of this process (on `remove`).
    pub fn remove_all(&self) -> io::Result<()> {
        unimplemented!()
    }
}

/// `YYYYMMDDTHHMMSSZ-<first 12 hex of the sha256>`.
pub fn release_name(_at: SystemTime, _sha256_hex: &str) -> String {
    unimplemented!()
}

/// Whether `name` has the shape of a release name (and so is safe as a
/// path component).
pub fn is_release_name(_name: &str) -> bool {
    unimplemented!()
}

/// At boot, before any process starts: remove `.upload-*`, `.incoming-*`,
/// `current.tmp` leftovers; a `current` whose release is `Pending` (exeio
/// died mid-gate) goes back to `last_good` (or is unlinked when there is
/// none) and every `Pending` one becomes `Failed`; a release dir with no
/// metadata entry is removed (and an entry with no dir dropped). Returns
/// log lines saying what it did.
pub fn recover(_data_dir: &Path) -> Vec<String> {
    unimplemented!()
}

/// The live release dir of `id` (canonical `releases/<id>/<release>`, not
/// via the `current` link), or None when none is deployed. Used at each spawn.
pub fn live_dir(_data_dir: &Path, _id: &str) -> Option<PathBuf> {
    unimplemented!()
}
