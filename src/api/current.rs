//! The `release` field of the process object (SPEC 4c, 5): the live
//! release of each process, read from `<data-dir>/releases/<id>/current`
//! when a reply is rendered, so it is never stale. `GET /list` reads the
//! releases dir once (nothing more when no process was ever deployed) and
//! one link per process that has releases.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// id -> the name of its live release.
#[derive(Debug, Default)]
pub struct Current {
    names: HashMap<String, String>,
}

impl Current {
    /// Every process's live release.
    pub fn all(data_dir: &Path) -> Current {
        let root = data_dir.join("releases");
        let mut names = HashMap::new();
        for e in fs::read_dir(&root).into_iter().flatten().flatten() {
            let Ok(id) = e.file_name().into_string() else {
                continue;
            };
            if let Some(name) = link_name(&root.join(&id)) {
                names.insert(id, name);
            }
        }
        Current { names }
    }

    /// One process's live release.
    pub fn one(data_dir: &Path, id: &str) -> Current {
        let mut names = HashMap::new();
        if let Some(name) = link_name(&data_dir.join("releases").join(id)) {
            names.insert(id.to_owned(), name);
        }
        Current { names }
    }

    pub fn of(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }
}

/// The release `dir/current` points to (its last component).
fn link_name(dir: &Path) -> Option<String> {
    let target = fs::read_link(dir.join("current")).ok()?;
    let name = target.file_name()?.to_str()?;
    (!name.starts_with('.')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_current_link_names_the_release() {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).unwrap();
        let tag: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let data = std::env::temp_dir().join(format!("exeio-current-{tag}"));
        let web = data.join("releases/web");
        fs::create_dir_all(web.join("20261207T230000Z-0123456789ab")).unwrap();
        fs::create_dir_all(data.join("releases/api")).unwrap();
        assert!(Current::all(&data).of("web").is_none(), "no link yet");
        symlink("20261207T230000Z-0123456789ab", web.join("current")).unwrap();
        let all = Current::all(&data);
        assert_eq!(all.of("web"), Some("20261207T230000Z-0123456789ab"));
        assert_eq!(all.of("api"), None);
        assert_eq!(
            Current::one(&data, "web").of("web"),
            Some("20261207T230000Z-0123456789ab")
        );
        assert!(Current::all(&data.join("none")).of("web").is_none());
        fs::remove_dir_all(&data).unwrap();
    }
}
