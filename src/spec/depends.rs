//! `depends_on` (SPEC 4b): the processes a process needs before it starts,
//! each with the condition it must meet (`started`, `healthy`,
//! `completed_successfully`).
//!
//! Pure: parsing and the checks one configuration can make on its own (ids
//! well formed, conditions known, no self-dependency). The checks that need
//! the other processes (unknown ids, cycles, `healthy` without a probe) are
//! in `lifecycle::order`, called by the supervisor.

use std::collections::BTreeMap;
use std::fmt;

use super::{FieldError, ProcessId};

/// Most dependencies one process may have.
pub const MAX_DEPENDENCIES: usize = 64;

/// What a dependency must do before its dependent starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// It is running.
    Started,
    /// Its health probe says `healthy`.
    Healthy,
    /// Its latest run exited 0 (and no run is going).
    CompletedSuccessfully,
}

impl Condition {
    pub const ALL: [Condition; 3] = [
        Condition::Started,
        Condition::Healthy,
        Condition::CompletedSuccessfully,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
            Condition::CompletedSuccessfully => "completed_successfully",
        }
    }

    fn parse(s: &str) -> Option<Condition> {
        Condition::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The dependencies of one process, by id (sorted, each id once).
pub type DependsOn = BTreeMap<ProcessId, Condition>;

/// Validate the wire form (`{"db": "healthy"}`) of `process`'s `depends_on`.
pub fn depends_on(
    process: &ProcessId,
    raw: Option<BTreeMap<String, String>>,
) -> Result<DependsOn, FieldError> {
    let Some(raw) = raw else {
        return Ok(DependsOn::new());
    };
    if raw.len() > MAX_DEPENDENCIES {
        return Err(FieldError::new(
            "depends_on",
            format!("depends_on takes at most {MAX_DEPENDENCIES} processes"),
        ));
    }
    let mut out = DependsOn::new();
    for (id, cond) in raw {
        let dep = ProcessId::parse(&id)
            .map_err(|m| FieldError::new("depends_on", format!("depends_on: {m}")))?;
        let cond = Condition::parse(&cond).ok_or_else(|| {
            FieldError::new(
                "depends_on",
                format!(
                    "depends_on: the condition of '{id}' is {cond:?}: \
                     use started, healthy or completed_successfully"
                ),
            )
        })?;
        if dep == *process {
            return Err(FieldError::new(
                "depends_on",
                format!("depends_on: '{id}' depends on itself (a cycle: {id} -> {id})"),
            ));
        }
        out.insert(dep, cond);
    }
    Ok(out)
}

/// The wire form again (`processes.json`, `to_request`).
pub fn to_wire(deps: &DependsOn) -> Option<BTreeMap<String, String>> {
    (!deps.is_empty()).then(|| {
        deps.iter()
            .map(|(id, c)| (id.to_string(), c.name().to_owned()))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ProcessId {
        ProcessId::parse(s).unwrap()
    }

    fn raw(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn conditions_parse_and_round_trip() {
        let d = depends_on(
            &id("web"),
            raw(&[
                ("db", "healthy"),
                ("migrate", "completed_successfully"),
                ("cache", "started"),
            ]),
        )
        .unwrap();
        assert_eq!(d[&id("db")], Condition::Healthy);
        assert_eq!(d[&id("migrate")], Condition::CompletedSuccessfully);
        assert_eq!(d[&id("cache")], Condition::Started);
        assert_eq!(
            to_wire(&d),
            raw(&[
                ("cache", "started"),
                ("db", "healthy"),
                ("migrate", "completed_successfully")
            ])
        );
        assert_eq!(depends_on(&id("web"), None).unwrap(), DependsOn::new());
        assert_eq!(to_wire(&DependsOn::new()), None);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = depends_on(&id("web"), raw(&[("db", "ready")])).unwrap_err();
        assert_eq!(e.field, "depends_on");
        assert!(
            e.message.contains("'db'") && e.message.contains("\"ready\""),
            "{e}"
        );
        let e = depends_on(&id("web"), raw(&[("../x", "started")])).unwrap_err();
        assert!(e.message.contains("../x"), "{e}");
        let e = depends_on(&id("web"), raw(&[("web", "started")])).unwrap_err();
        assert!(
            e.message.contains("itself") && e.message.contains("web -> web"),
            "{e}"
        );
        let many: Vec<(String, String)> = (0..=MAX_DEPENDENCIES)
            .map(|i| (format!("p{i}"), "started".to_owned()))
            .collect();
        assert!(depends_on(&id("web"), Some(many.into_iter().collect())).is_err());
    }
}
