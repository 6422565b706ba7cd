//! The arguments of `deploy ID PATH`, `releases ID` and `rollback ID
//! [RELEASE]` (SPEC 4c). Pure, like the rest of `args`.

use std::path::PathBuf;

use super::{Command, usage};
use crate::client::Failure;

pub(super) fn command(name: &str, mut pos: Vec<String>) -> Result<Command, Failure> {
    let (least, most, what) = match name {
        "deploy" => (
            2,
            2,
            "an ID and a PATH (a directory, or a .tar.gz, .tgz or .tar file)",
        ),
        "releases" => (1, 1, "an ID"),
        _ => (1, 2, "an ID (and optionally the RELEASE to go back to)"),
    };
    if pos.len() < least {
        return Err(usage(format!("{name} needs {what}")));
    }
    if pos.len() > most {
        return Err(usage(format!(
            "{name}: unexpected argument {:?}",
            pos[most]
        )));
    }
    if pos.iter().any(String::is_empty) {
        return Err(usage(format!("{name}: an argument is empty")));
    }
    let id = pos.remove(0);
    Ok(match name {
        "deploy" => Command::Deploy {
            id,
            path: PathBuf::from(pos.remove(0)),
        },
        "releases" => Command::Releases(id),
        _ => Command::Rollback {
            id,
            release: pos.pop(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cmd, parse_str};
    use super::*;

    #[test]
    fn deploy_releases_rollback() {
        assert_eq!(
            cmd(&["deploy", "web", "./build"]),
            Command::Deploy {
                id: "web".into(),
                path: "./build".into()
            }
        );
        assert_eq!(
            cmd(&[
                "deploy",
                "--json",
                "web",
                "app.tar.gz",
                "--url",
                "http://h:1"
            ]),
            Command::Deploy {
                id: "web".into(),
                path: "app.tar.gz".into()
            }
        );
        assert_eq!(cmd(&["releases", "web"]), Command::Releases("web".into()));
        assert_eq!(
            cmd(&["rollback", "web"]),
            Command::Rollback {
                id: "web".into(),
                release: None
            }
        );
        assert_eq!(
            cmd(&["rollback", "web", "20261207T231500Z-0123456789ab"]),
            Command::Rollback {
                id: "web".into(),
                release: Some("20261207T231500Z-0123456789ab".into())
            }
        );
        // A path that starts with '-' goes after --.
        assert_eq!(
            cmd(&["deploy", "web", "--", "-odd"]),
            Command::Deploy {
                id: "web".into(),
                path: "-odd".into()
            }
        );
        for bad in [
            &["deploy"][..],
            &["deploy", "web"],
            &["deploy", "web", "a", "b"],
            &["deploy", "web", ""],
            &["deploy", "web", "x", "--prune"],
            &["releases"],
            &["releases", "a", "b"],
            &["rollback"],
            &["rollback", "web", "r1", "r2"],
        ] {
            assert!(matches!(parse_str(bad), Err(Failure::Usage(_))), "{bad:?}");
        }
    }
}
