//! Which exeio hosts a command goes to and with which key: `--url` (several
//! allowed), `--hosts FILE`, `EXEIO_URL`, the default; the key from `--key`,
//! `EXEIO_API_KEY` or the local `<config-dir>/api-key`. Called by
//! `client::main`; the parsing is pure and unit-tested.

use std::path::PathBuf;

use super::Failure;
use super::args::Globals;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The base URLs to talk to, in order, without duplicates.
pub fn urls(g: &Globals, env_url: Option<String>) -> Result<Vec<String>, Failure> {
    let mut given: Vec<String> = g.urls.clone();
    if let Some(path) = &g.hosts_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Other(format!("cannot read --hosts {}: {e}", path.display())))?;
        let listed = parse_hosts(&text)
            .map_err(|e| Failure::Other(format!("--hosts {}: {e}", path.display())))?;
        if listed.is_empty() {
            return Err(Failure::Other(format!(
                "--hosts {}: no URL in it",
                path.display()
            )));
        }
        given.extend(listed);
    }
    if given.is_empty() {
        given.push(env_url.unwrap_or_else(|| DEFAULT_URL.to_owned()));
    }
    let mut out: Vec<String> = Vec::with_capacity(given.len());
    for u in given {
        let u = normalize_url(&u).map_err(Failure::Usage)?;
        if !out.contains(&u) {
            out.push(u);
        }
    }
    Ok(out)
}

/// One URL a line; `#` starts a comment; blank lines are skipped.
pub fn parse_hosts(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.split_whitespace().count() > 1 {
            return Err(format!("line {}: one URL a line, got {line:?}", n + 1));
        }
        out.push(normalize_url(line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

/// `host:port` → `http://host:port`; no trailing `/`; http or https only.
pub fn normalize_url(url: &str) -> Result<String, String> {
    let u = url.trim();
    let u = if u.contains("://") {
        u.to_owned()
    } else {
        format!("http://{u}")
    };
    let (scheme, rest) = u.split_once("://").unwrap_or(("", ""));
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    }
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(format!("{url:?} is not a URL like http://HOST:PORT"));
    }
    Ok(format!("{}://{rest}", scheme.to_ascii_lowercase()))
}

/// The key: `--key`, else `EXEIO_API_KEY`, else the local key file when
/// readable. `None`: send none (the server will say 401).
pub fn key(g: &Globals, env_key: Option<String>) -> Option<String> {
    if let Some(k) = &g.key {
        return Some(k.trim().to_owned());
    }
    if let Some(k) = env_key {
        return Some(k.trim().to_owned());
    }
    let file = key_file(g)?;
    let text = std::fs::read_to_string(file).ok()?;
    let k = text.trim();
    (!k.is_empty()).then(|| k.to_owned())
}

/// `<config-dir>/api-key`, the file the daemon writes its generated key to.
fn key_file(g: &Globals) -> Option<PathBuf> {
    let dir = match &g.config_dir {
        Some(d) => d.clone(),
        None => crate::paths::default_config_dir().ok()?,
    };
    Some(dir.join("api-key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized() {
        assert_eq!(
            normalize_url("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_url("HTTPS://h:1/").unwrap(), "https://h:1");
        assert_eq!(normalize_url(" http://[::1]:9 ").unwrap(), "http://[::1]:9");
        assert!(normalize_url("ftp://h").is_err());
        assert!(normalize_url("http://").is_err());
        assert!(normalize_url("http://h/?x").is_err());
    }

    #[test]
    fn hosts_files() {
        let text = "# fleet\nhttp://a:8080\n\n  b:8080   # the second\nhttps://c:443/\n";
        assert_eq!(
            parse_hosts(text).unwrap(),
            ["http://a:8080", "http://b:8080", "https://c:443"]
        );
        assert_eq!(parse_hosts("# nothing\n\n").unwrap(), Vec::<String>::new());
        let e = parse_hosts("http://a:1\nhttp://b:2 secret\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(
            parse_hosts("gopher://x\n")
                .unwrap_err()
                .starts_with("line 1:")
        );
    }

    #[test]
    fn url_order_and_defaults() {
        let g = Globals::default();
        assert_eq!(urls(&g, None).unwrap(), [DEFAULT_URL]);
        assert_eq!(urls(&g, Some("h:1".into())).unwrap(), ["http://h:1"]);
        let g = Globals {
            urls: vec!["http://a:1".into(), "a:1".into(), "http://b:2".into()],
            ..Globals::default()
        };
        assert_eq!(
            urls(&g, Some("ignored:1".into())).unwrap(),
            ["http://a:1", "http://b:2"]
        );
        let g = Globals {
            urls: vec!["ftp://x".into()],
            ..Globals::default()
        };
        assert!(matches!(urls(&g, None), Err(Failure::Usage(_))));
    }

    #[test]
    fn key_order() {
        let dir = std::env::temp_dir().join(format!("exeio-keytest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("api-key"), "from-file\n").unwrap();
        let mut g = Globals {
            config_dir: Some(dir.clone()),
            ..Globals::default()
        };
        assert_eq!(key(&g, None).as_deref(), Some("from-file"));
        assert_eq!(
            key(&g, Some("from-env".into())).as_deref(),
            Some("from-env")
        );
        g.key = Some("from-flag".into());
        assert_eq!(
            key(&g, Some("from-env".into())).as_deref(),
            Some("from-flag")
        );
        g.key = None;
        g.config_dir = Some(dir.join("nowhere"));
        assert_eq!(key(&g, None), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
