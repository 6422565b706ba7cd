//! `exeio apply -f FILE|DIR [--prune] [--dry-run]`: read the configuration
//! (a file holding one config object, an array of them, or `{"processes":
//! [...]}`; or a directory of `*.json` files, each one of those), send one
//! `POST /apply`, and print the plan. An error the server names by entry
//! index (`processes[3]...`) is told with the file the entry came from.

use std::path::Path;

use serde_json::{Value, json};

use super::args::ApplyArgs;
use super::{Ctx, Failure, Report};

/// One process config and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub config: Value,
    /// `web.json`, or `jobs.json[2]` for an entry of an array.
    pub source: String,
}

/// The configuration at `path`: a file, or a directory of `*.json` files
/// read in name order.
pub fn load(path: &Path) -> Result<Vec<Entry>, Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return read_file(path, &path.display().to_string());
    }
    let mut files: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| Failure::Other(format!("cannot list {}: {e}", path.display())))?
        .filter_map(Result::ok)
        .map(|d| d.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Failure::Other(format!(
            "no *.json file in {}",
            path.display()
        )));
    }
    let mut all = Vec::new();
    for f in files {
        let name = f.file_name().map_or_else(
            || f.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        all.extend(read_file(&f, &name)?);
    }
    Ok(all)
}

fn read_file(path: &Path, name: &str) -> Result<Vec<Entry>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Other(format!("cannot read {}: {e}", path.display())))?;
    entries(&text, name).map_err(Failure::Other)
}

/// The entries of one file's text.
pub fn entries(text: &str, name: &str) -> Result<Vec<Entry>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("{name}: invalid JSON: {e}"))?;
    let (list, indexed) = match v {
        Value::Array(a) => (a, true),
        Value::Object(mut o) if o.contains_key("processes") && !o.contains_key("command") => {
            match o.remove("processes") {
                Some(Value::Array(a)) => (a, true),
                _ => return Err(format!("{name}: \"processes\" must be an array")),
            }
        }
        v @ Value::Object(_) => (vec![v], false),
        _ => {
            return Err(format!(
                "{name}: want a config object, an array of them, or {{\"processes\": [...]}}"
            ));
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, config)| {
            let source = if indexed {
                format!("{name}[{i}]")
            } else {
                name.to_owned()
            };
            if config.is_object() {
                Ok(Entry { config, source })
            } else {
                Err(format!("{source}: not a config object"))
            }
        })
        .collect()
}

pub fn apply(ctx: &Ctx<'_>, a: &ApplyArgs, r: &mut Report) -> Result<(), Failure> {
    let entries = load(&a.path)?;
    let body = json!({
        "processes": entries.iter().map(|e| e.config.clone()).collect::<Vec<_>>(),
        "prune": a.prune,
        "dry_run": a.dry_run,
    });
    let reply = ctx
        .client
        .post("/apply", Some(&body))
        .map_err(|f| with_source(f, &entries))?;
    let v = reply.json()?;
    if ctx.json {
        r.out.push_str(&reply.text().replace('\n', " "));
        r.out.push('\n');
    } else {
        r.out = plan_text(&v);
    }
    // A process that cannot start is a 400 (`with_source` names its file).
    Ok(())
}

/// Name the file of the entry a 400 points at (`field: processes[3].command`).
fn with_source(f: Failure, entries: &[Entry]) -> Failure {
    let Failure::Api {
        status,
        message,
        field: Some(field),
    } = f
    else {
        return f;
    };
    let index = field
        .strip_prefix("processes[")
        .and_then(|rest| rest.split(']').next())
        .and_then(|n| n.parse::<usize>().ok());
    let message = match index.and_then(|i| entries.get(i)) {
        Some(e) => format!("{message} (in {})", e.source),
        None => message,
    };
    Failure::Api {
        status,
        message,
        field: Some(field),
    }
}

/// The plan: one line per kind of change that has ids, then the summary.
pub fn plan_text(v: &Value) -> String {
    let mut out = String::new();
    for kind in ["added", "updated", "restarted", "removed", "unchanged"] {
        let ids: Vec<&str> = v[kind]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !ids.is_empty() {
            out.push_str(&format!("{:<10} {}\n", format!("{kind}:"), ids.join(", ")));
        }
    }
    if let Some(m) = v["message"].as_str() {
        out.push_str(m);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_file_shapes() {
        let one = entries(r#"{"id":"a","command":"true"}"#, "a.json").unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].source, "a.json");
        let arr = entries(
            r#"[{"id":"a","command":"x"},{"id":"b","command":"y"}]"#,
            "m.json",
        )
        .unwrap();
        assert_eq!(
            arr.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
            ["m.json[0]", "m.json[1]"]
        );
        let wrapped = entries(r#"{"processes":[{"id":"a","command":"x"}]}"#, "w.json").unwrap();
        assert_eq!(wrapped[0].config["id"], "a");
        assert!(entries("[]", "e.json").unwrap().is_empty());
        assert!(entries("[1]", "n.json").unwrap_err().contains("n.json[0]"));
        assert!(entries("42", "n.json").is_err());
        assert!(entries(r#"{"processes": {}}"#, "p.json").is_err());
        assert!(
            entries("{", "bad.json")
                .unwrap_err()
                .starts_with("bad.json: invalid JSON")
        );
    }

    #[test]
    fn a_directory_in_name_order() {
        let dir = std::env::temp_dir().join(format!("exeio-applytest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load(&dir).is_err(), "an empty dir is an error");
        std::fs::write(
            dir.join("b.json"),
            r#"[{"id":"b1","command":"x"},{"id":"b2","command":"x"}]"#,
        )
        .unwrap();
        std::fs::write(dir.join("a.json"), r#"{"id":"a","command":"x"}"#).unwrap();
        std::fs::write(dir.join("notes.txt"), "not json").unwrap();
        let got = load(&dir).unwrap();
        let ids: Vec<&str> = got
            .iter()
            .map(|e| e.config["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["a", "b1", "b2"]);
        assert_eq!(got[2].source, "b.json[1]");
        std::fs::write(dir.join("c.json"), "{oops").unwrap();
        assert!(matches!(load(&dir), Err(Failure::Other(m)) if m.starts_with("c.json")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn errors_name_the_file() {
        let entries = entries(r#"[{"id":"a"},{"id":"b"}]"#, "x.json").unwrap();
        let f = with_source(
            Failure::Api {
                status: 400,
                message: "processes[1] (id 'b'): missing field".into(),
                field: Some("processes[1].command".into()),
            },
            &entries,
        );
        assert!(f.to_string().ends_with("(in x.json[1])"), "{f}");
    }

    #[test]
    fn plan_lines() {
        let v = json!({"success": true, "message": "applied: 1 added, 0 updated (0 restarted), 0 removed, 2 unchanged",
                       "added": ["a"], "updated": [], "restarted": [], "removed": [], "unchanged": ["b", "c"]});
        assert_eq!(
            plan_text(&v),
            "added:     a\nunchanged: b, c\napplied: 1 added, 0 updated (0 restarted), 0 removed, 2 unchanged\n"
        );
    }
}
