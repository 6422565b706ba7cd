//! The releases dir of one process (SPEC 4c): release names, the metadata
//! file, commit of an extracted release, the atomic `current` switch, the
//! choice of the rollback target, and pruning. Recovery at boot is in
//! `deploy::recover` (re-exported here).
//!
//! The layout and the crash-safety rules are in the `deploy` module doc. One
//! writer per releases dir: the deploy flow holds the process's deploy lock
//! around every call that changes it; `recover` runs before any deploy.
//! The choices (`pick_last_good`, `select_prune`) are pure and unit-tested.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::libc;
use serde::{Deserialize, Serialize};

pub use super::recover::recover;

pub(super) const META: &str = "releases.json";
pub(super) const META_TMP: &str = "releases.json.tmp";
pub(super) const CURRENT: &str = "current";
pub(super) const CURRENT_TMP: &str = "current.tmp";
pub(super) const UPLOAD: &str = ".upload-";
pub(super) const INCOMING: &str = ".incoming-";
pub(super) const REMOVING: &str = ".remove-";

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

/// The metadata file: every release, and what `current` was before the
/// last switch (where recovery goes back to from a `Pending` current).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Meta {
    pub releases: Vec<Release>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

/// A temporary file or dir in a releases root, removed on drop unless
/// consumed by `Releases::commit`.
#[derive(Debug)]
pub struct Temp {
    path: PathBuf,
    dir: bool,
}

impl Temp {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = if self.dir {
            fs::remove_dir_all(&self.path)
        } else {
            fs::remove_file(&self.path)
        };
    }
}

/// `<data-dir>/releases/<id>`: one process's releases.
#[derive(Clone, Debug)]
pub struct Releases {
    data_dir: PathBuf,
    root: PathBuf,
}

impl Releases {
    /// Open (creating `releases/` and `releases/<id>/`, 0700) the releases of `id`.
    pub fn open(data_dir: &Path, id: &str) -> io::Result<Releases> {
        if id.is_empty() || id.starts_with('.') || id.contains('/') || id.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{id:?} cannot name a releases dir"),
            ));
        }
        let root = data_dir.join("releases").join(id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        Ok(Releases {
            data_dir: data_dir.to_path_buf(),
            root,
        })
    }

    /// `<data-dir>/releases/<id>`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Let a process running as another user reach its release: make
    /// `<data-dir>`, `releases/` and `releases/<id>/` 0711 (traverse only;
    /// their files stay 0600 and unlisted).
    pub fn allow_traverse(&self) -> io::Result<()> {
        for dir in [
            self.data_dir.clone(),
            self.data_dir.join("releases"),
            self.root.clone(),
        ] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o711))?;
        }
        Ok(())
    }

    /// A fresh `<root>/.upload-<rand>` path (nothing created yet), removed on drop.
    pub fn upload_path(&self) -> io::Result<Temp> {
        Ok(Temp {
            path: self.root.join(format!("{UPLOAD}{}", random()?)),
            dir: false,
        })
    }

    /// A fresh, empty `<root>/.incoming-<rand>` dir (0700), removed on drop.
    pub fn incoming(&self) -> io::Result<Temp> {
        let path = self.root.join(format!("{INCOMING}{}", random()?));
        fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Temp { path, dir: true })
    }

    /// fsync the tree, rename `incoming` to `name`, fsync the root; record
    /// it `Pending`. Returns the release dir. `AlreadyExists` if `name` is taken.
    pub fn commit(
        &self,
        incoming: Temp,
        name: &str,
        sha256: &str,
        bytes: u64,
    ) -> io::Result<PathBuf> {
        check_name(name)?;
        let dir = self.dir(name);
        let mut meta = self.load()?;
        if fs::symlink_metadata(&dir).is_ok() || meta.releases.iter().any(|r| r.release == name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("release {name} already exists"),
            ));
        }
        sync_tree(incoming.path())?;
        fs::rename(incoming.path(), &dir)?;
        incoming.keep();
        sync_dir(&self.root)?;
        meta.releases.push(Release {
            release: name.to_owned(),
            sha256: sha256.to_owned(),
            bytes,
            deployed_at: crate::timefmt::rfc3339(SystemTime::now()),
            outcome: Outcome::Pending,
        });
        self.save(&meta)?;
        Ok(dir)
    }

    /// Point `current` at `name` atomically (current.tmp + rename + fsync).
    /// What `current` was is recorded first, for recovery.
    pub fn switch(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        if !fs::symlink_metadata(self.dir(name)).is_ok_and(|m| m.is_dir()) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no release {name}"),
            ));
        }
        let before = self.current();
        if before.as_deref() != Some(name) {
            let mut meta = self.load()?;
            meta.previous = before;
            self.save(&meta)?;
        }
        switch_link(&self.root, name)
    }

    /// Remove `current` (a first deploy that failed). No error if absent.
    pub fn unlink_current(&self) -> io::Result<()> {
        match fs::remove_file(self.root.join(CURRENT)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        sync_dir(&self.root)
    }

    /// The release `current` points to.
    pub fn current(&self) -> Option<String> {
        current_in(&self.root)
    }

    /// `<root>/<name>`.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Every recorded release, newest first.
    pub fn list(&self) -> Vec<Release> {
        let mut list = self.load().map(|m| m.releases).unwrap_or_default();
        list.sort_by(|a, b| b.release.cmp(&a.release));
        list
    }

    /// One recorded release.
    pub fn get(&self, name: &str) -> Option<Release> {
        self.list().into_iter().find(|r| r.release == name)
    }

    /// A name for a new release of `sha256` that sorts after every release
    /// already recorded: names go down to the second and everything here
    /// orders releases by name (rollback target, prune), so a deploy within
    /// the same second as the last one waits for the next second (the
    /// process's deploy lock keeps any other deploy from taking it).
    pub fn unused_name(&self, sha256: &str) -> String {
        let newest = self.list().first().map(|r| r.release[..16].to_owned());
        let taken = |name: &str| {
            fs::symlink_metadata(self.dir(name)).is_ok()
                || newest.as_deref().is_some_and(|n| n >= &name[..16])
        };
        let mut name = release_name(SystemTime::now(), sha256);
        for _ in 0..3 {
            if !taken(&name) {
                break;
            }
            let into = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            std::thread::sleep(std::time::Duration::from_nanos(u64::from(
                1_000_000_000 - into,
            )));
            name = release_name(SystemTime::now(), sha256);
        }
        name
    }

    /// Record the gate's verdict on `name`. `NotFound` if unrecorded.
    pub fn set_outcome(&self, name: &str, outcome: Outcome) -> io::Result<()> {
        let mut meta = self.load()?;
        let Some(r) = meta.releases.iter_mut().find(|r| r.release == name) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no release {name}"),
            ));
        };
        r.outcome = outcome;
        self.save(&meta)
    }

    /// The newest `Succeeded` release older than `than` (or than current;
    /// with neither, the newest `Succeeded` one).
    pub fn last_good(&self, than: Option<&str>) -> Option<String> {
        let than = than.map(str::to_owned).or_else(|| self.current());
        pick_last_good(&self.list(), than.as_deref())
    }

    /// Delete what is beyond `keep` succeeded releases; failed ones go first
    /// and use no slot; never current, last_good or a pending one. Returns
    /// the names deleted (a dir that could not be removed is left listed).
    pub fn prune(&self, keep: usize) -> Vec<String> {
        let list = self.list();
        let current = self.current();
        let good = pick_last_good(&list, current.as_deref());
        let doomed = select_prune(&list, keep, current.as_deref(), good.as_deref());
        let mut gone = Vec::new();
        for name in doomed {
            if remove_release_dir(&self.root, &name).is_ok() {
                gone.push(name);
            }
        }
        if !gone.is_empty()
            && let Ok(mut meta) = self.load()
        {
            meta.releases.retain(|r| !gone.contains(&r.release));
            let _ = self.save(&meta);
        }
        gone
    }

    /// Remove the whole releases dir of this process (on `remove`): renamed
    /// away first, so no half-deleted release keeps its name.
    pub fn remove_all(&self) -> io::Result<()> {
        let away = self
            .data_dir
            .join("releases")
            .join(format!("{REMOVING}{}", random()?));
        fs::rename(&self.root, &away)?;
        fs::remove_dir_all(away)
    }

    pub(super) fn load(&self) -> io::Result<Meta> {
        load_meta(&self.root)
    }

    pub(super) fn save(&self, meta: &Meta) -> io::Result<()> {
        save_meta(&self.root, meta)
    }
}

pub(super) fn load_meta(root: &Path) -> io::Result<Meta> {
    match fs::read(root.join(META)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{META}: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Meta::default()),
        Err(e) => Err(e),
    }
}

/// Atomic: write a tmp file, fsync it, rename it over, fsync the dir.
pub(super) fn save_meta(root: &Path, meta: &Meta) -> io::Result<()> {
    let tmp = root.join(META_TMP);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(meta).map_err(io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, root.join(META))?;
    sync_dir(root)
}

pub(super) fn current_in(root: &Path) -> Option<String> {
    let target = fs::read_link(root.join(CURRENT)).ok()?;
    let name = target.to_str()?;
    is_release_name(name).then(|| name.to_owned())
}

/// Make `current` point to `to`: a new `current.tmp` link renamed over
/// `current` (atomic), then the dir fsynced.
pub(super) fn switch_link(root: &Path, to: &str) -> io::Result<()> {
    let tmp = root.join(CURRENT_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::os::unix::fs::symlink(to, &tmp)?;
    fs::rename(&tmp, root.join(CURRENT))?;
    sync_dir(root)
}

/// Rename a release dir away (so its name is gone at once), then delete it.
pub(super) fn remove_release_dir(root: &Path, name: &str) -> io::Result<()> {
    let away = root.join(format!("{REMOVING}{}", random()?));
    fs::rename(root.join(name), &away)?;
    sync_dir(root)?;
    fs::remove_dir_all(away)
}

fn random() -> io::Result<String> {
    crate::keys::random_hex(8).map_err(io::Error::other)
}

fn check_name(name: &str) -> io::Result<()> {
    if is_release_name(name) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a release name"),
        ))
    }
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsync every regular file and dir under `top` (and `top`), never
/// following a link: files are opened O_NOFOLLOW|O_NONBLOCK and checked
/// after opening. An explicit stack, not recursion (threads are small).
fn sync_tree(top: &Path) -> io::Result<()> {
    let mut dirs = vec![top.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                    .open(entry.path())?;
                if f.metadata()?.is_file() {
                    f.sync_all()?;
                }
            }
        }
        let d = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)?;
        d.sync_all()?;
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ-<first 12 hex of the sha256>`.
pub fn release_name(at: SystemTime, sha256_hex: &str) -> String {
    let (y, mo, d, h, mi, s) = crate::timefmt::civil_from_unix(crate::timefmt::unix_secs(at));
    let short: String = sha256_hex
        .chars()
        .take(12)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z-{short}")
}

/// Whether `name` has the shape of a release name (and so is safe as a
/// path component).
pub fn is_release_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 29
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The newest `Succeeded` release older than `than` (any, when None).
pub fn pick_last_good(list: &[Release], than: Option<&str>) -> Option<String> {
    list.iter()
        .filter(|r| r.outcome == Outcome::Succeeded)
        .filter(|r| than.is_none_or(|t| r.release.as_str() < t))
        .map(|r| r.release.clone())
        .max()
}

/// Which releases to delete, failed ones first then the oldest: keep the
/// `keep` newest `Succeeded` (failed ones use no slot); of the failed ones
/// keep only the newest release if it failed (the latest attempt, for
/// inspection); never `current`, `last_good` or a `Pending` one.
pub fn select_prune(
    list: &[Release],
    keep: usize,
    current: Option<&str>,
    last_good: Option<&str>,
) -> Vec<String> {
    let mut newest_first: Vec<&Release> = list.iter().collect();
    newest_first.sort_by(|a, b| b.release.cmp(&a.release));
    let protected: HashSet<&str> = current.into_iter().chain(last_good).collect();
    let mut failed = Vec::new();
    let mut succeeded = Vec::new();
    let mut slots = 0;
    for (i, r) in newest_first.iter().enumerate() {
        let name = r.release.as_str();
        match r.outcome {
            Outcome::Pending => {}
            Outcome::Succeeded => {
                slots += 1;
                if slots > keep && !protected.contains(name) {
                    succeeded.push(name.to_owned());
                }
            }
            Outcome::Failed | Outcome::RolledBack => {
                if i > 0 && !protected.contains(name) {
                    failed.push(name.to_owned());
                }
            }
        }
    }
    failed.reverse();
    succeeded.reverse();
    failed.extend(succeeded);
    failed
}

/// The live release dir of `id` (canonical `releases/<id>/<release>`, not
/// via the `current` link), or None when none is deployed. Used at each spawn.
pub fn live_dir(data_dir: &Path, id: &str) -> Option<PathBuf> {
    if id.is_empty() || id.starts_with('.') || id.contains('/') {
        return None;
    }
    let root = data_dir.join("releases").join(id);
    let name = current_in(&root)?;
    let dir = root.join(name);
    fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir())
        .then_some(dir)
}

#[cfg(test)]
#[path = "releases_tests.rs"]
mod tests;
