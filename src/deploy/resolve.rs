//! The release a run uses (SPEC 4c), resolved at each spawn: `{release}` in
//! `command`, `args`, `working_dir` and `env` values becomes the live
//! release's own dir (`releases/<id>/<release>`, not the `current` link, so
//! a run keeps its release when `current` moves), `EXEIO_RELEASE_DIR` is
//! set to it, and `working_dir` defaults to it.
//!
//! Called by the supervisor before each spawn (one `readlink`); the
//! substitution (`with_release`) is pure and unit-tested.

use std::path::{Path, PathBuf};

use super::releases::live_dir;
use crate::spec::ProcessSpec;
use crate::spec::deploy::RELEASE;

/// Why a process that uses `{release}` does not start (its status `error`).
pub const NO_RELEASE: &str = "no release deployed yet";
/// The env var naming the live release's dir.
pub const RELEASE_ENV: &str = "EXEIO_RELEASE_DIR";

/// Whether `spec` uses `{release}` in `command`, `args`, `working_dir` or
/// an `env` value (then it cannot run before its first deploy).
pub fn uses_release(spec: &ProcessSpec) -> bool {
    let dir = spec.working_dir.as_ref().and_then(|d| d.to_str());
    crate::spec::deploy::uses_release(
        std::iter::once(spec.command.as_str())
            .chain(spec.args.iter().map(String::as_str))
            .chain(dir)
            .chain(spec.env.values().map(String::as_str)),
    )
}

/// Whether `spec` must wait for its first deploy: it uses `{release}` and
/// none is deployed.
pub fn waits_for_release(spec: &ProcessSpec, data_dir: &Path) -> bool {
    uses_release(spec) && live_dir(data_dir, spec.id.as_str()).is_none()
}

/// The spec a spawn of `spec` uses now: `None` when nothing changes (no
/// release deployed and no `{release}`), `Err(NO_RELEASE)` when it uses
/// `{release}` and none is deployed. For a process that runs as another
/// user, the dirs above its release are made 0711 so it can reach it.
pub fn for_spawn(spec: &ProcessSpec, data_dir: &Path) -> Result<Option<ProcessSpec>, String> {
    match live_dir(data_dir, spec.id.as_str()) {
        Some(dir) => {
            if spec.user.is_some()
                && let Ok(r) = super::Releases::open(data_dir, spec.id.as_str())
            {
                // Best effort: a failure shows as the spawn's own error.
                let _ = r.allow_traverse();
            }
            Ok(Some(with_release(spec, &dir)))
        }
        None if uses_release(spec) => Err(NO_RELEASE.to_owned()),
        None => Ok(None),
    }
}

/// `spec` with `{release}` replaced by `dir`, `EXEIO_RELEASE_DIR=dir`, and
/// `working_dir` defaulting to `dir`.
pub fn with_release(spec: &ProcessSpec, dir: &Path) -> ProcessSpec {
    let text = dir.to_string_lossy();
    let sub = |s: &str| s.replace(RELEASE, &text);
    let mut out = spec.clone();
    out.command = sub(&spec.command);
    out.args = spec.args.iter().map(|a| sub(a)).collect();
    out.working_dir = Some(match &spec.working_dir {
        Some(d) => PathBuf::from(sub(&d.to_string_lossy())),
        None => dir.to_path_buf(),
    });
    for v in out.env.values_mut() {
        *v = sub(v);
    }
    out.env.insert(RELEASE_ENV.to_owned(), text.into_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ProcessSpec {
        crate::spec::parse_add(json.as_bytes()).unwrap()
    }

    #[test]
    fn release_is_substituted_everywhere() {
        let s = spec(
            r#"{"id":"web","command":"{release}/bin/app","args":["--root={release}/public","x"],
                "working_dir":"{release}/srv","env":{"A":"{release}","B":"plain"}}"#,
        );
        assert!(uses_release(&s));
        let r = with_release(&s, Path::new("/d/releases/web/R1"));
        assert_eq!(r.command, "/d/releases/web/R1/bin/app");
        assert_eq!(r.args, ["--root=/d/releases/web/R1/public", "x"]);
        assert_eq!(
            r.working_dir.as_deref(),
            Some(Path::new("/d/releases/web/R1/srv"))
        );
        assert_eq!(r.env["A"], "/d/releases/web/R1");
        assert_eq!(r.env["B"], "plain");
        assert_eq!(r.env[RELEASE_ENV], "/d/releases/web/R1");
    }

    #[test]
    fn working_dir_defaults_to_the_release() {
        let s = spec(r#"{"id":"web","command":"app"}"#);
        assert!(!uses_release(&s));
        let r = with_release(&s, Path::new("/rel"));
        assert_eq!(r.working_dir.as_deref(), Some(Path::new("/rel")));
        let s = spec(r#"{"id":"web","command":"app","working_dir":"/srv"}"#);
        let r = with_release(&s, Path::new("/rel"));
        assert_eq!(r.working_dir.as_deref(), Some(Path::new("/srv")));
    }

    #[test]
    fn without_a_release() {
        let data = std::env::temp_dir().join(format!("exeio-resolve-{}", std::process::id()));
        let uses = spec(r#"{"id":"web","command":"{release}/app"}"#);
        let plain = spec(r#"{"id":"web","command":"app"}"#);
        assert_eq!(for_spawn(&uses, &data), Err(NO_RELEASE.to_owned()));
        assert!(waits_for_release(&uses, &data));
        assert_eq!(for_spawn(&plain, &data), Ok(None));
        assert!(!waits_for_release(&plain, &data));
    }
}
