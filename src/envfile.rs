//! `env_file`: a file of `KEY=value` lines, read at each spawn (its values
//! override the config's `env`). Blank lines and `#` comments are skipped,
//! `export KEY=value` is accepted, and a value wholly inside matching single
//! or double quotes loses them; nothing is expanded. `parse` is pure; `read`
//! reads the file (capped). Called by `child` when it checks and spawns.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// Largest env file read.
pub const MAX_BYTES: u64 = 1 << 20;

/// The variables of an env file's text, or what is wrong (with its line).
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: not KEY=value", n + 1));
        };
        let key = key.trim();
        let good = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !good {
            return Err(format!("line {}: {key:?} is not a variable name", n + 1));
        }
        let value = value.trim();
        let value = [b'"', b'\'']
            .iter()
            .find_map(|&q| {
                let b = value.as_bytes();
                (b.len() >= 2 && b[0] == q && b[b.len() - 1] == q)
                    .then(|| &value[1..value.len() - 1])
            })
            .unwrap_or(value);
        if value.contains('\0') {
            return Err(format!("line {}: the value contains NUL", n + 1));
        }
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Read and parse the env file at `path`.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("larger than {MAX_BYTES} bytes"));
    }
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes_and_export() {
        let env = parse(
            "# a comment\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE=\nF=a=b\n",
        )
        .unwrap();
        let want: Vec<(&str, &str)> = vec![
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted # not a comment"),
            ("D", "x"),
            ("E", ""),
            ("F", "a=b"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(parse("A=1\nnope\n").unwrap_err(), "line 2: not KEY=value");
        assert!(parse("1A=x").unwrap_err().contains("line 1"));
        assert!(parse("A-B=x").is_err());
        assert!(parse("=x").is_err());
    }
}
