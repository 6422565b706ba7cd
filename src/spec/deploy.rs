//! The `deploy` field of a process (SPEC 4c): how many releases to keep,
//! the build command run in a new release, and the build and health-gate
//! timeouts; and their validation (errors name the field, `deploy.keep`).
//!
//! Pure: parsing only. The deploy flow (`deploy/`, the API) reads the
//! validated `DeploySpec`; `{release}` in the rest of the config is
//! resolved at each spawn (`deploy::releases::live_dir`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::FieldError;

const DEFAULT_KEEP: u32 = 5;
const DEFAULT_BUILD_TIMEOUT: u64 = 600;
const DEFAULT_HEALTHY_TIMEOUT: u64 = 60;
/// The most successful releases kept.
pub const MAX_KEEP: u32 = 1000;
/// The longest a build or a health gate may take: a day.
pub const MAX_DEPLOY_TIMEOUT_SECONDS: u64 = 86_400;
/// The most words in a build command.
const MAX_BUILD_ARGS: usize = 1024;

/// The wire form of `deploy`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_timeout_seconds: Option<u64>,
}

/// A validated `deploy`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploySpec {
    /// Successful releases kept (failed ones use no slot).
    pub keep: u32,
    /// Argv run in the new release before the switch (`["npm", "ci"]`).
    pub build: Option<Vec<String>>,
    pub build_timeout: Duration,
    /// How long a new release has to become healthy before the rollback.
    pub healthy_timeout: Duration,
}

impl Default for DeploySpec {
    fn default() -> DeploySpec {
        DeploySpec {
            keep: DEFAULT_KEEP,
            build: None,
            build_timeout: Duration::from_secs(DEFAULT_BUILD_TIMEOUT),
            healthy_timeout: Duration::from_secs(DEFAULT_HEALTHY_TIMEOUT),
        }
    }
}

impl DeploySpec {
    /// The wire form, every field explicit.
    pub fn to_request(&self) -> DeployRequest {
        DeployRequest {
            keep: Some(self.keep),
            build: self.build.clone(),
            build_timeout_seconds: Some(self.build_timeout.as_secs()),
            healthy_timeout_seconds: Some(self.healthy_timeout.as_secs()),
        }
    }
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(&format!("deploy.{field}"), message)
}

/// Validate a `deploy` object.
pub fn validate(req: DeployRequest) -> Result<DeploySpec, FieldError> {
    let keep = req.keep.unwrap_or(DEFAULT_KEEP);
    if !(1..=MAX_KEEP).contains(&keep) {
        return Err(err(
            "keep",
            format!("deploy.keep must be between 1 and {MAX_KEEP}, got {keep}"),
        ));
    }
    let build = match req.build {
        None => None,
        Some(argv) if argv.first().is_none_or(|c| c.trim().is_empty()) => {
            return Err(err(
                "build",
                "deploy.build needs a command: [\"cmd\", \"arg\", ...]",
            ));
        }
        Some(argv) if argv.len() > MAX_BUILD_ARGS => {
            return Err(err(
                "build",
                format!("deploy.build takes at most {MAX_BUILD_ARGS} words"),
            ));
        }
        Some(argv) if argv.iter().any(|a| a.contains('\0')) => {
            return Err(err("build", "deploy.build must not contain NUL"));
        }
        Some(argv) => Some(argv),
    };
    let timeout = |field: &str, v: Option<u64>, default: u64| {
        let v = v.unwrap_or(default);
        if !(1..=MAX_DEPLOY_TIMEOUT_SECONDS).contains(&v) {
            return Err(err(
                field,
                format!(
                    "deploy.{field} must be between 1 and {MAX_DEPLOY_TIMEOUT_SECONDS}, got {v}"
                ),
            ));
        }
        Ok(Duration::from_secs(v))
    };
    Ok(DeploySpec {
        keep,
        build,
        build_timeout: timeout(
            "build_timeout_seconds",
            req.build_timeout_seconds,
            DEFAULT_BUILD_TIMEOUT,
        )?,
        healthy_timeout: timeout(
            "healthy_timeout_seconds",
            req.healthy_timeout_seconds,
            DEFAULT_HEALTHY_TIMEOUT,
        )?,
    })
}

/// Whether a config refers to its release: `{release}` in `command`,
/// `args`, `working_dir` or an `env` value.
pub fn uses_release<'a>(mut texts: impl Iterator<Item = &'a str>) -> bool {
    texts.any(|t| t.contains(RELEASE))
}

/// The placeholder for the live release's directory.
pub const RELEASE: &str = "{release}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let d = validate(DeployRequest::default()).unwrap();
        assert_eq!(d, DeploySpec::default());
        assert_eq!(d.keep, 5);
        assert_eq!(d.build_timeout, Duration::from_secs(600));
        assert_eq!(d.healthy_timeout, Duration::from_secs(60));
        assert_eq!(validate(d.to_request()).unwrap(), d);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(DeployRequest, &str); 6] = [
            (
                DeployRequest {
                    keep: Some(0),
                    ..Default::default()
                },
                "deploy.keep",
            ),
            (
                DeployRequest {
                    build: Some(vec![]),
                    ..Default::default()
                },
                "deploy.build",
            ),
            (
                DeployRequest {
                    build: Some(vec![" ".into()]),
                    ..Default::default()
                },
                "deploy.build",
            ),
            (
                DeployRequest {
                    build: Some(vec!["a\0".into()]),
                    ..Default::default()
                },
                "deploy.build",
            ),
            (
                DeployRequest {
                    build_timeout_seconds: Some(0),
                    ..Default::default()
                },
                "deploy.build_timeout_seconds",
            ),
            (
                DeployRequest {
                    healthy_timeout_seconds: Some(86_401),
                    ..Default::default()
                },
                "deploy.healthy_timeout_seconds",
            ),
        ];
        for (req, field) in cases {
            let e = validate(req).unwrap_err();
            assert_eq!(e.field, field);
            assert!(e.message.contains(field), "{}", e.message);
        }
    }

    #[test]
    fn a_build_command_is_kept() {
        let req = DeployRequest {
            build: Some(vec!["npm".into(), "ci".into()]),
            keep: Some(2),
            ..Default::default()
        };
        let d = validate(req).unwrap();
        assert_eq!(
            d.build.as_deref(),
            Some(&["npm".to_owned(), "ci".to_owned()][..])
        );
        assert_eq!(d.keep, 2);
    }

    #[test]
    fn in_a_process_config() {
        let body =
            br#"{"id":"web","command":"{release}/bin/app","deploy":{"keep":3,"build":["make"]}}"#;
        let spec = crate::spec::parse_add(body).unwrap();
        let d = spec.deploy.as_deref().unwrap();
        assert_eq!(
            (d.keep, d.build.as_deref()),
            (3, Some(&["make".to_owned()][..]))
        );
        // Saved and read back the same.
        let again = crate::spec::validate(spec.to_request()).unwrap();
        assert_eq!(again, spec);
        let e = crate::spec::parse_add(br#"{"id":"w","command":"x","deploy":{"keep":-1}}"#)
            .unwrap_err();
        assert_eq!(e.field, "deploy", "{e:?}");
        let e =
            crate::spec::parse_add(br#"{"id":"w","command":"x","deploy":{"kep":1}}"#).unwrap_err();
        assert!(e.message.contains("kep"), "{e:?}");
        let job = br#"{"id":"j","command":"x","periodic":true,"period_seconds":5,"deploy":{}}"#;
        assert_eq!(crate::spec::parse_add(job).unwrap_err().field, "deploy");
    }

    #[test]
    fn release_use_is_seen() {
        assert!(uses_release(["{release}/bin/app"].into_iter()));
        assert!(!uses_release(["/srv/app", "{releas}"].into_iter()));
    }
}
