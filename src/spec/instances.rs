//! `instances: N` (SPEC 4d): one configuration, N copies `ID-1`..`ID-N`.
//!
//! Pure. A configuration with `instances` is a *group*: `validate` turns it
//! into the group's own `ProcessSpec` (id `ID`, number 0: never run, it
//! stands for the group in the dependency order) and `copies` into the N
//! specs that run, each its own process with its own log, pid, restarts and
//! probe. In each copy `{instance}` is replaced by its number in `command`,
//! `args`, `working_dir`, `env` values, `env_file` and the health probe's
//! target (`http`, `tcp`, `exec`), and `EXEIO_INSTANCE` is set in its env.
//! The configuration as given (`template`) is what is saved and shown for
//! the group: one entry, `instances: N`.

use std::sync::Arc;

use super::{AddRequest, FieldError, ProcessId, ProcessSpec, validate};

/// Most copies a group may have.
pub const MAX_INSTANCES: u32 = 64;
/// The placeholder replaced by a copy's number.
pub const PLACEHOLDER: &str = "{instance}";
/// The variable that tells a copy its number.
pub const ENV_VAR: &str = "EXEIO_INSTANCE";

/// What makes a spec part of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Instances {
    /// The group's id (`web`): its copies are `web-1`..`web-N`.
    pub group: ProcessId,
    /// How many copies the group has (1-64).
    pub count: u32,
    /// This copy's number (1..=count); 0 for the group itself.
    pub number: u32,
    /// The configuration as given (with `{instance}`): saved, shown, updated.
    pub template: Arc<AddRequest>,
}

/// The id of copy `number` of `group`.
pub fn copy_id(group: &str, number: u32) -> String {
    format!("{group}-{number}")
}

/// Validate a configuration with `instances`: the group's spec. Every copy
/// is validated too, so a copy that cannot be (`{instance}` making a port
/// too large, an id too long) is a 400 before anything runs.
pub(super) fn validate_group(req: AddRequest) -> Result<ProcessSpec, FieldError> {
    let count = match req.instances {
        Some(n) if (1..=MAX_INSTANCES).contains(&n) => n,
        Some(n) => {
            return Err(FieldError::new(
                "instances",
                format!("instances must be between 1 and {MAX_INSTANCES}, got {n}"),
            ));
        }
        None => unreachable!("validate_group is for configurations with instances"),
    };
    let group = ProcessId::parse(&req.id).map_err(|m| FieldError::new("id", m))?;
    if req.periodic == Some(true) || req.schedule.is_some() {
        return Err(FieldError::new(
            "instances",
            "instances is for services: a periodic or scheduled job runs as one process \
             (add one job per instance if each needs its own schedule)",
        ));
    }
    let template = Arc::new(req);
    let mut first = None;
    for number in 1..=count {
        let spec = copy_of(&template, &group, count, number)?;
        first.get_or_insert(spec);
    }
    let mut spec = first.expect("count >= 1");
    if spec.deploy.is_some() || crate::deploy::resolve::uses_release(&spec) {
        return Err(FieldError::new(
            "instances",
            "instances and deploys do not combine yet (`deploy` or {release}): \
             deploy to a process without instances",
        ));
    }
    spec.id = group.clone();
    spec.instances = Some(Box::new(Instances {
        group,
        count,
        number: 0,
        template,
    }));
    Ok(spec)
}

/// The copies of a group's spec (`web-1`..`web-N`); a spec that is not a
/// group is its own only copy.
pub fn copies(spec: &ProcessSpec) -> Vec<ProcessSpec> {
    let Some(inst) = spec.instances.as_deref() else {
        return vec![spec.clone()];
    };
    (1..=inst.count)
        .filter_map(|n| copy_of(&inst.template, &inst.group, inst.count, n).ok())
        .collect()
}

/// Copy `number` of `count`, validated.
fn copy_of(
    template: &Arc<AddRequest>,
    group: &ProcessId,
    count: u32,
    number: u32,
) -> Result<ProcessSpec, FieldError> {
    let id = copy_id(group.as_str(), number);
    ProcessId::parse(&id).map_err(|m| {
        FieldError::new(
            "id",
            format!("with instances the copies are named {id}, ...: {m}"),
        )
    })?;
    let mut req = substitute(template, number);
    req.id = id;
    req.instances = None;
    req.env
        .get_or_insert_with(Default::default)
        .insert(ENV_VAR.into(), number.to_string());
    let mut spec = validate(req).map_err(|e| FieldError {
        message: format!("instance {number}: {}", e.message),
        field: e.field,
    })?;
    spec.instances = Some(Box::new(Instances {
        group: group.clone(),
        count,
        number,
        template: template.clone(),
    }));
    Ok(spec)
}

/// `req` with `{instance}` replaced by `number` where a copy differs.
pub fn substitute(req: &AddRequest, number: u32) -> AddRequest {
    let n = number.to_string();
    let sub = |s: &String| s.replace(PLACEHOLDER, &n);
    let mut out = req.clone();
    out.command = sub(&req.command);
    out.args = req.args.as_ref().map(|a| a.iter().map(sub).collect());
    out.working_dir = req.working_dir.as_ref().map(sub);
    out.env_file = req.env_file.as_ref().map(sub);
    out.env = req
        .env
        .as_ref()
        .map(|env| env.iter().map(|(k, v)| (k.clone(), sub(v))).collect());
    if let Some(h) = &mut out.health {
        h.http = h.http.as_ref().map(sub);
        h.tcp = h.tcp.as_ref().map(sub);
        h.exec = h.exec.as_ref().map(|a| a.iter().map(sub).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse_add;

    fn group(json: &str) -> Result<ProcessSpec, FieldError> {
        parse_add(json.as_bytes())
    }

    #[test]
    fn copies_are_named_and_numbered() {
        let g = group(
            r#"{"id":"web","command":"srv-{instance}","args":["--port","80{instance}"],
                "env":{"NAME":"w{instance}"},"working_dir":"/tmp/{instance}/x","instances":3}"#,
        )
        .unwrap();
        assert_eq!(g.id.as_str(), "web");
        assert_eq!(g.instances.as_ref().unwrap().number, 0);
        let c = copies(&g);
        let ids: Vec<&str> = c.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["web-1", "web-2", "web-3"]);
        assert_eq!(c[1].command, "srv-2");
        assert_eq!(c[1].args, ["--port", "802"]);
        assert_eq!(c[2].env["NAME"], "w3");
        assert_eq!(c[2].env[ENV_VAR], "3");
        assert_eq!(c[0].working_dir.as_deref(), Some("/tmp/1/x".as_ref()));
        let i = c[2].instances.as_ref().unwrap();
        assert_eq!((i.group.as_str(), i.count, i.number), ("web", 3, 3));
        assert_eq!(i.template.args.as_ref().unwrap()[1], "80{instance}");
    }

    #[test]
    fn a_plain_process_is_its_own_copy_and_untouched() {
        let p = group(r#"{"id":"web","command":"srv-{instance}"}"#).unwrap();
        assert!(p.instances.is_none());
        assert_eq!(copies(&p), std::slice::from_ref(&p));
        assert_eq!(p.command, "srv-{instance}");
    }

    #[test]
    fn the_health_target_is_per_copy() {
        let g = group(
            r#"{"id":"api","command":"x","instances":2,"health":{"tcp":"127.0.0.1:90{instance}"}}"#,
        )
        .unwrap();
        let h = copies(&g)[1].health.as_ref().unwrap().to_request();
        assert_eq!(h.tcp.as_deref(), Some("127.0.0.1:902"));
        let g = group(
            r#"{"id":"api","command":"x","instances":2,"health":{"exec":["check","{instance}"]}}"#,
        )
        .unwrap();
        let h = copies(&g)[1].health.as_ref().unwrap().to_request();
        assert_eq!(h.exec.unwrap(), ["check", "2"]);
    }

    #[test]
    fn bad_counts_and_jobs_name_the_field() {
        for n in ["0", "65", "1000"] {
            let e = group(&format!(r#"{{"id":"w","command":"x","instances":{n}}}"#)).unwrap_err();
            assert_eq!(e.field, "instances", "{n}");
            assert!(e.message.contains("between 1 and 64"), "{}", e.message);
        }
        let e = group(r#"{"id":"w","command":"x","instances":-1}"#).unwrap_err();
        assert_eq!(e.field, "instances");
        let e = group(r#"{"id":"w","command":"x","instances":"3"}"#).unwrap_err();
        assert_eq!(e.field, "instances");
        let e =
            group(r#"{"id":"w","command":"x","instances":2,"periodic":true,"period_seconds":5}"#)
                .unwrap_err();
        assert_eq!(e.field, "instances");
        let e = group(r#"{"id":"w","command":"x","instances":2,"schedule":"@daily"}"#).unwrap_err();
        assert_eq!(e.field, "instances");
    }

    #[test]
    fn a_group_takes_no_releases_yet() {
        for json in [
            r#"{"id":"w","command":"x","instances":2,"deploy":{}}"#,
            r#"{"id":"w","command":"{release}/run","instances":2}"#,
        ] {
            let e = group(json).expect_err(json);
            assert_eq!(e.field, "instances", "{json}");
            assert!(
                e.message.contains("do not combine"),
                "{json}: {}",
                e.message
            );
        }
        assert!(group(r#"{"id":"w","command":"x","instances":2}"#).is_ok());
    }

    #[test]
    fn a_copy_that_cannot_be_is_refused() {
        // Copy 6's port would be 65536.
        let e =
            group(r#"{"id":"w","command":"x","instances":10,"health":{"tcp":"h:6553{instance}"}}"#)
                .unwrap_err();
        assert!(e.message.contains("instance 6"), "{}", e.message);
        assert_eq!(e.field, "health.tcp");
        // web-64 would be longer than 64 characters.
        let long = "a".repeat(62);
        let e = group(&format!(
            r#"{{"id":"{long}","command":"x","instances":10}}"#
        ))
        .unwrap_err();
        assert_eq!(e.field, "id");
        assert!(group(&format!(r#"{{"id":"{long}","command":"x","instances":9}}"#)).is_ok());
    }

    #[test]
    fn the_template_round_trips() {
        let g = group(r#"{"id":"web","command":"x","args":["{instance}"],"instances":2}"#).unwrap();
        let again = validate((*g.instances.as_ref().unwrap().template).clone()).unwrap();
        assert_eq!(again, g);
    }
}
