//! The path rules of `deploy::extract` (pure): what an entry's path and a
//! symlink's target may be. Called only by `extract`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

pub(super) fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

pub(super) fn join_shown(parts: &[&OsStr]) -> String {
    parts
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The components of an entry path: relative, no `..`, no NUL; `.` and
/// empty ones dropped (so `./a//b` is `a/b`, and `./` is the top).
pub(super) fn relative_parts(bytes: &[u8]) -> Result<Vec<&OsStr>, &'static str> {
    if bytes.contains(&0) {
        return Err("has a NUL byte in its path");
    }
    if bytes.first() == Some(&b'/') {
        return Err("is an absolute path");
    }
    let mut parts = Vec::new();
    for part in bytes.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a '..' component"),
            p => parts.push(OsStr::from_bytes(p)),
        }
    }
    Ok(parts)
}

/// A symlink at depth `depth` (the number of dirs above it in the release)
/// may point to `target` if it is relative, its `..` components all come
/// first, and they climb at most `depth` levels.
pub(super) fn check_symlink(target: &[u8], depth: usize) -> Result<(), String> {
    if target.is_empty() {
        return Err("a symlink with an empty target".into());
    }
    if target.contains(&0) {
        return Err("a symlink target with a NUL byte".into());
    }
    let shown = String::from_utf8_lossy(target);
    let mut up = 0usize;
    let mut down = false;
    for c in Path::new(OsStr::from_bytes(target)).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("a symlink to the absolute path {shown:?}"));
            }
            Component::CurDir => {}
            Component::ParentDir if down => {
                return Err(format!(
                    "a symlink to {shown:?}: '..' after a name (it could climb out through another link)"
                ));
            }
            Component::ParentDir => up += 1,
            Component::Normal(_) => down = true,
        }
    }
    if up > depth {
        return Err(format!("a symlink to {shown:?}, outside the release"));
    }
    Ok(())
}
