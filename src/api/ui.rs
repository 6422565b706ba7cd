//! The dashboard (SPEC 3a): one HTML page, its script (ES modules, one per
//! concept, `app.js` the entry) and its style sheet, compiled into the binary (`src/ui/`), served to anyone without a key.
//! The page itself holds no data: it logs in with `POST /session` and then
//! calls the API with the session cookie like any other client.
//!
//! Every answer here carries a strict Content-Security-Policy (no inline
//! script or style, nothing from another origin) and refuses framing. The
//! assets are referenced with a content hash in their URL (`?v=`), so they
//! can be cached for a year; the page itself is revalidated every time.
//! A module script is still a script from 'self': the CSP needs no change.

use std::sync::LazyLock;

use super::{Answer, Api, Args};
use crate::error::ApiError;
use crate::http::request::query_pairs;
use crate::http::{Exchange, Response};

/// What a dashboard response may load, run and be embedded in.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
/// Cache policy of a versioned asset (its URL changes with its content).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache policy of the page (and of an asset asked for with a stale version).
pub const REVALIDATE: &str = "no-cache";

const INDEX: &str = include_str!("../ui/index.html");

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files of `src/ui/` besides the page: `app.js` is the entry module
/// the page loads, the other scripts are the modules it imports.
const SOURCES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../ui/app.js")),
    ("app.css", CSS, include_str!("../ui/app.css")),
    ("api.js", JS, include_str!("../ui/api.js")),
    ("deploy.js", JS, include_str!("../ui/deploy.js")),
    ("dom.js", JS, include_str!("../ui/dom.js")),
    ("events.js", JS, include_str!("../ui/events.js")),
    ("format.js", JS, include_str!("../ui/format.js")),
    ("forms.js", JS, include_str!("../ui/forms.js")),
    ("health.js", JS, include_str!("../ui/health.js")),
    ("logs.js", JS, include_str!("../ui/logs.js")),
    ("session.js", JS, include_str!("../ui/session.js")),
    ("state.js", JS, include_str!("../ui/state.js")),
    ("table.js", JS, include_str!("../ui/table.js")),
];

/// A file of the dashboard, served as `/ui/{name}?v={version}`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// A hash of the content: 16 hex digits of FNV-1a.
    pub version: String,
}

/// The served files. A script module's imports (`from './api.js'`) are
/// given the version too, so every URL a module loads is cached for good;
/// the scripts share one version, a hash of all of them (a module's
/// meaning depends on what it imports, and imports may form cycles).
pub static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    let scripts: Vec<&str> = SOURCES.iter().filter(|s| s.1 == JS).map(|s| s.2).collect();
    let js_version = fnv(scripts.concat().as_bytes());
    SOURCES
        .iter()
        .map(|&(name, content_type, text)| {
            if content_type != JS {
                return Asset {
                    name,
                    content_type,
                    body: text.as_bytes().to_vec(),
                    version: fnv(text.as_bytes()),
                };
            }
            let body = SOURCES
                .iter()
                .filter(|s| s.1 == JS)
                .fold(text.to_owned(), |body, s| {
                    body.replace(
                        &format!("from './{}'", s.0),
                        &format!("from './{}?v={js_version}'", s.0),
                    )
                });
            Asset {
                name,
                content_type,
                body: body.into_bytes(),
                version: js_version.clone(),
            }
        })
        .collect()
});

/// 16 hex digits of FNV-1a.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Asset {
    /// The URL the page (or a module) refers to it by.
    pub fn url(&self) -> String {
        format!("/ui/{}?v={}", self.name, self.version)
    }
}

/// The page with its `{{name}}` placeholders replaced by versioned URLs.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    ASSETS.iter().fold(INDEX.to_owned(), |page, a| {
        page.replace(&format!("{{{{{}}}}}", a.name), &a.url())
    })
});

/// The headers every dashboard response carries.
fn guarded(r: Response) -> Response {
    r.with_header("Content-Security-Policy", CSP)
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Cross-Origin-Opener-Policy", "same-origin")
        .with_header("Cross-Origin-Resource-Policy", "same-origin")
}

/// `GET /`.
pub fn page() -> Response {
    guarded(Response {
        status: 200,
        content_type: "text/html; charset=utf-8",
        headers: Vec::new(),
        body: PAGE.as_bytes().to_vec(),
    })
    .with_header("Cache-Control", REVALIDATE)
}

/// `GET /ui/{name}?{query}`: the asset, cached for good when the query
/// names its current version; 404 (still guarded) for an unknown name.
pub fn asset(name: &str, query: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        let body = serde_json::json!({
            "success": false,
            "message": format!("no such dashboard file: {name}"),
        });
        return guarded(Response::json(
            404,
            serde_json::to_vec(&body).unwrap_or_default(),
        ));
    };
    let current = query_pairs(query).any(|(k, v)| k == "v" && v.as_deref() == Some(&*a.version));
    guarded(Response {
        status: 200,
        content_type: a.content_type,
        headers: Vec::new(),
        body: a.body.clone(),
    })
    .with_header(
        "Cache-Control",
        if current { IMMUTABLE } else { REVALIDATE },
    )
}

pub fn index(_: &Api, _: &mut Exchange<'_>, _: &Args) -> Result<Answer, ApiError> {
    Ok(Answer::Reply(page()))
}

pub fn file(_: &Api, ex: &mut Exchange<'_>, args: &Args) -> Result<Answer, ApiError> {
    let name = args.params.first().map(String::as_str).unwrap_or("");
    Ok(Answer::Reply(asset(name, ex.query())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::{self, Access};

    fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn assert_guarded(r: &Response) {
        let csp = header(r, "Content-Security-Policy").expect("CSP");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header(r, "X-Frame-Options"), Some("DENY"));
        assert_eq!(header(r, "Referrer-Policy"), Some("no-referrer"));
        assert_eq!(header(r, "X-Content-Type-Options"), Some("nosniff"));
    }

    #[test]
    fn the_page_is_guarded_and_revalidated() {
        let r = page();
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "text/html; charset=utf-8");
        assert_guarded(&r);
        assert_eq!(header(&r, "Cache-Control"), Some("no-cache"));
    }

    #[test]
    fn the_page_refers_to_versioned_assets_and_has_no_inline_code() {
        let html = String::from_utf8(page().body).unwrap();
        for name in ["app.js", "app.css"] {
            let a = ASSETS.iter().find(|a| a.name == name).unwrap();
            assert!(html.contains(&a.url()), "{} not referenced", a.url());
        }
        assert!(
            html.contains(&format!(
                "<script type=\"module\" src=\"{}\">",
                ASSETS[0].url()
            )),
            "app.js is not loaded as a module: {html}"
        );
        assert!(!html.contains("{{"), "a placeholder is left: {html}");
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<style"), "inline style element");
        assert!(!lower.contains(" style="), "inline style attribute");
        assert!(!lower.contains("javascript:"));
        for (i, _) in lower.match_indices("<script") {
            let tag = &lower[i..i + lower[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        // No inline event handlers (onclick=, onload=, ...).
        for (i, _) in lower.match_indices(" on") {
            let word: String = lower[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !lower[i + 1 + word.len()..].starts_with('='),
                "inline handler {word}"
            );
        }
    }

    #[test]
    fn assets_are_guarded_and_cached_by_version() {
        for a in ASSETS.iter() {
            let fresh = asset(a.name, &format!("v={}", a.version));
            assert_eq!(fresh.status, 200);
            assert_eq!(fresh.content_type, a.content_type);
            assert_eq!(fresh.body, a.body);
            assert_guarded(&fresh);
            assert_eq!(
                header(&fresh, "Cache-Control"),
                Some("public, max-age=31536000, immutable")
            );
            // An old or missing version must not be cached for a year.
            for q in ["", "v=0000000000000000", "x=1"] {
                let stale = asset(a.name, q);
                assert_eq!(stale.status, 200);
                assert_eq!(header(&stale, "Cache-Control"), Some("no-cache"), "{q}");
            }
        }
        assert_eq!(ASSETS[0].version.len(), 16);
        assert_ne!(ASSETS[0].version, ASSETS[1].version);
    }

    #[test]
    fn every_script_in_src_ui_is_served_and_imports_by_version() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ui");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name != "index.html" {
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "src/ui/{name} is not served: add it to SOURCES"
                );
            }
        }
        let js = ASSETS.iter().find(|a| a.name == "app.js").unwrap();
        let mut imported = std::collections::BTreeSet::new();
        for a in ASSETS.iter().filter(|a| a.content_type == JS) {
            assert_eq!(a.version, js.version, "{}", a.name);
            let text = std::str::from_utf8(&a.body).unwrap();
            for (i, _) in text.match_indices(" from '") {
                let spec = &text[i + 7..];
                let spec = &spec[..spec.find('\'').unwrap()];
                let (path, version) = spec.split_once("?v=").unwrap_or((spec, ""));
                let name = path.strip_prefix("./").unwrap_or(path);
                assert!(
                    ASSETS
                        .iter()
                        .any(|b| b.name == name && b.content_type == JS),
                    "{}: imports {spec}, which is not served",
                    a.name
                );
                assert_eq!(version, js.version, "{}: imports {spec}", a.name);
                imported.insert(name);
            }
        }
        for a in ASSETS
            .iter()
            .filter(|a| a.content_type == JS && a.name != "app.js")
        {
            assert!(
                imported.contains(a.name),
                "{} is imported by no module",
                a.name
            );
        }
    }

    #[test]
    fn an_unknown_asset_is_404_and_still_guarded() {
        for name in [
            "nope.js",
            "",
            "index.html",
            "../app.js",
            "app.js.map",
            "APP.JS",
        ] {
            let r = asset(name, "");
            assert_eq!(r.status, 404, "{name}");
            assert_guarded(&r);
        }
    }

    #[test]
    fn routes_are_open() {
        let (r, _) = routes::find("GET", "/").unwrap();
        assert_eq!((r.path, r.access), ("/", Access::Open));
        let (r, params) = routes::find("GET", "/ui/app.js").unwrap();
        assert_eq!((r.path, r.access), ("/ui/{asset}", Access::Open));
        assert_eq!(params, ["app.js"]);
        assert!(routes::find("GET", "/ui/").is_err());
        assert!(routes::find("GET", "/ui/a/b").is_err());
        assert!(routes::find("POST", "/").is_err());
    }

    #[test]
    fn everything_fits_the_size_budget() {
        let total = INDEX.len() + ASSETS.iter().map(|a| a.body.len()).sum::<usize>();
        assert!(
            total < 150 * 1024,
            "the dashboard is {total} bytes (budget 150 KB)"
        );
    }
}
