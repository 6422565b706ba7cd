//! The `health` field of a process (SPEC 4b): one probe (`http`, `tcp`,
//! `exec` or `log`) and its timing, and their validation.
//!
//! Pure: parsing only. What a probe result means lives in
//! `lifecycle::health`; running a probe in `health/`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FieldError, MAX_PERIOD_SECONDS};

const DEFAULT_PERIOD: u64 = 10;
const DEFAULT_TIMEOUT: u64 = 2;
const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
const DEFAULT_SUCCESS_THRESHOLD: u32 = 1;
const DEFAULT_START_TIMEOUT: u64 = 60;
/// The longest a single check may take.
pub const MAX_PROBE_TIMEOUT_SECONDS: u64 = 300;
/// The most checks in a row a threshold may ask for.
pub const MAX_THRESHOLD: u32 = 1000;
/// The longest accepted `log` pattern.
pub const MAX_LOG_PATTERN: usize = 1024;
/// The longest accepted probe URL or address.
const MAX_TARGET: usize = 2048;

/// The wire form of `health`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout_seconds: Option<u64>,
}

/// `http://host[:port]/path`: where an HTTP probe connects and what it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// As given (shown back, saved).
    pub url: String,
    /// `host:port`, for connecting (a name is resolved at each check).
    pub authority: String,
    /// The `Host` header.
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// A `log` probe's pattern, compared by its source.
#[derive(Clone)]
pub struct LogPattern {
    pub source: String,
    pub regex: regex_lite::Regex,
}

impl PartialEq for LogPattern {
    fn eq(&self, other: &LogPattern) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for LogPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogPattern({:?})", self.source)
    }
}

/// What one check does.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    Http(HttpTarget),
    /// `host:port`: a connection is accepted.
    Tcp(String),
    /// Argv: exit 0, run like the process.
    Exec(Vec<String>),
    /// Readiness only: a line of the current run matches.
    Log(LogPattern),
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Exec(_) => "exec",
            Probe::Log(_) => "log",
        }
    }
}

/// A validated `health`.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSpec {
    pub probe: Probe,
    pub period: Duration,
    pub timeout: Duration,
    pub initial_delay: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub start_timeout: Duration,
}

impl HealthSpec {
    /// The wire form, every field explicit.
    pub fn to_request(&self) -> HealthRequest {
        let mut r = HealthRequest {
            period_seconds: Some(self.period.as_secs()),
            timeout_seconds: Some(self.timeout.as_secs()),
            initial_delay_seconds: Some(self.initial_delay.as_secs()),
            failure_threshold: Some(self.failure_threshold),
            success_threshold: Some(self.success_threshold),
            start_timeout_seconds: Some(self.start_timeout.as_secs()),
            ..HealthRequest::default()
        };
        match &self.probe {
            Probe::Http(t) => r.http = Some(t.url.clone()),
            Probe::Tcp(a) => r.tcp = Some(a.clone()),
            Probe::Exec(argv) => r.exec = Some(argv.clone()),
            Probe::Log(p) => r.log = Some(p.source.clone()),
        }
        r
    }

    /// A probe that reads output (`log`) needs no checks on a timer.
    pub fn is_log(&self) -> bool {
        matches!(self.probe, Probe::Log(_))
    }
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(&format!("health.{field}"), message)
}

/// Validate `health`.
pub fn validate(req: HealthRequest) -> Result<HealthSpec, FieldError> {
    let given = [
        req.http.is_some(),
        req.tcp.is_some(),
        req.exec.is_some(),
        req.log.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(FieldError::new(
            "health",
            "health needs exactly one probe: http, tcp, exec or log",
        ));
    }
    let probe = if let Some(url) = req.http {
        Probe::Http(http_target(&url).map_err(|m| err("http", m))?)
    } else if let Some(addr) = req.tcp {
        Probe::Tcp(tcp_address(&addr).map_err(|m| err("tcp", m))?)
    } else if let Some(argv) = req.exec {
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err(err(
                "exec",
                "health.exec needs a command: [\"cmd\", \"arg\", ...]",
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(err("exec", "health.exec must not contain NUL"));
        }
        Probe::Exec(argv)
    } else {
        let source = req.log.unwrap_or_default();
        Probe::Log(log_pattern(source).map_err(|m| err("log", m))?)
    };
    let secs = |field: &str, v: Option<u64>, default: u64, min: u64, max: u64| {
        let v = v.unwrap_or(default);
        if !(min..=max).contains(&v) {
            return Err(err(
                field,
                format!("health.{field} must be between {min} and {max}, got {v}"),
            ));
        }
        Ok(Duration::from_secs(v))
    };
    let count = |field: &str, v: Option<u32>, default: u32| {
        let v = v.unwrap_or(default);
        if !(1..=MAX_THRESHOLD).contains(&v) {
            return Err(err(
                field,
                format!("health.{field} must be between 1 and {MAX_THRESHOLD}, got {v}"),
            ));
        }
        Ok(v)
    };
    Ok(HealthSpec {
        probe,
        period: secs(
            "period_seconds",
            req.period_seconds,
            DEFAULT_PERIOD,
            1,
            MAX_PERIOD_SECONDS,
        )?,
        timeout: secs(
            "timeout_seconds",
            req.timeout_seconds,
            DEFAULT_TIMEOUT,
            1,
            MAX_PROBE_TIMEOUT_SECONDS,
        )?,
        initial_delay: secs(
            "initial_delay_seconds",
            req.initial_delay_seconds,
            0,
            0,
            MAX_PERIOD_SECONDS,
        )?,
        failure_threshold: count(
            "failure_threshold",
            req.failure_threshold,
            DEFAULT_FAILURE_THRESHOLD,
        )?,
        success_threshold: count(
            "success_threshold",
            req.success_threshold,
            DEFAULT_SUCCESS_THRESHOLD,
        )?,
        start_timeout: secs(
            "start_timeout_seconds",
            req.start_timeout_seconds,
            DEFAULT_START_TIMEOUT,
            1,
            MAX_PERIOD_SECONDS,
        )?,
    })
}

fn log_pattern(source: String) -> Result<LogPattern, String> {
    if source.is_empty() {
        return Err("health.log needs a regular expression".into());
    }
    if source.len() > MAX_LOG_PATTERN {
        return Err(format!(
            "health.log is longer than {MAX_LOG_PATTERN} characters"
        ));
    }
    let regex = regex_lite::RegexBuilder::new(&source)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("health.log is not a valid regular expression: {e}"))?;
    Ok(LogPattern { source, regex })
}

/// `http://host[:port][/path]`. Only plain http: a probe is a local check,
/// and it follows no redirects.
fn http_target(url: &str) -> Result<HttpTarget, String> {
    if url.len() > MAX_TARGET {
        return Err(format!(
            "health.http is longer than {MAX_TARGET} characters"
        ));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("health.http must not contain spaces or control characters".into());
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "health.http must be an http:// URL (https is not probed), got {url:?}"
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    if authority.contains('@') {
        return Err("health.http must not carry credentials (user@host)".into());
    }
    let (host, port) =
        split_host_port(authority, Some(80)).map_err(|m| format!("health.http {url:?}: {m}"))?;
    Ok(HttpTarget {
        url: url.to_owned(),
        authority: format!("{host}:{port}"),
        host: if port == 80 {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        },
        path,
    })
}

/// `host:port` (`[::1]:port` for IPv6).
fn tcp_address(addr: &str) -> Result<String, String> {
    if addr.len() > MAX_TARGET {
        return Err(format!("health.tcp is longer than {MAX_TARGET} characters"));
    }
    let (host, port) =
        split_host_port(addr, None).map_err(|m| format!("health.tcp {addr:?}: {m}"))?;
    Ok(format!("{host}:{port}"))
}

fn split_host_port(s: &str, default_port: Option<u16>) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let Some((h, rest)) = v6.split_once(']') else {
            return Err("an IPv6 address needs its closing ']'".into());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{h:?} is not an IPv6 address"));
        }
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err("expected ':port' after ']'".into()),
        };
        (&s[..h.len() + 2], port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port (1-65535)")),
        },
        (None, Some(d)) => d,
        (None, None) => return Err("the port is missing (host:port)".into()),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HealthSpec, FieldError> {
        validate(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn defaults_are_those_of_the_spec() {
        let h = parse(r#"{"tcp":"127.0.0.1:5432"}"#).unwrap();
        assert_eq!(h.period, Duration::from_secs(10));
        assert_eq!(h.timeout, Duration::from_secs(2));
        assert_eq!(h.initial_delay, Duration::ZERO);
        assert_eq!((h.failure_threshold, h.success_threshold), (3, 1));
        assert_eq!(h.start_timeout, Duration::from_secs(60));
        assert_eq!(h.probe, Probe::Tcp("127.0.0.1:5432".into()));
        let back = validate(h.to_request()).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn exactly_one_probe() {
        assert_eq!(parse("{}").unwrap_err().field, "health");
        let two = parse(r#"{"tcp":"a:1","log":"x"}"#).unwrap_err();
        assert_eq!(two.field, "health");
        assert!(two.message.contains("exactly one"), "{}", two.message);
    }

    #[test]
    fn http_urls() {
        let h = parse(r#"{"http":"http://127.0.0.1:8000/healthz?x=1"}"#).unwrap();
        let Probe::Http(t) = h.probe else { panic!() };
        assert_eq!(t.authority, "127.0.0.1:8000");
        assert_eq!(t.host, "127.0.0.1:8000");
        assert_eq!(t.path, "/healthz?x=1");
        let Probe::Http(t) = parse(r#"{"http":"http://localhost"}"#).unwrap().probe else {
            panic!()
        };
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("localhost:80", "/")
        );
        let Probe::Http(t) = parse(r#"{"http":"http://[::1]:81/a"}"#).unwrap().probe else {
            panic!()
        };
        assert_eq!(t.authority, "[::1]:81");
        for bad in [
            "https://a/",
            "ftp://a",
            "http://",
            "http://a:0/",
            "http://a:99999/",
            "http://u@a/",
            "http://a b/",
            "http://[::1/",
        ] {
            let e = parse(&format!(r#"{{"http":"{bad}"}}"#)).unwrap_err();
            assert_eq!(e.field, "health.http", "{bad}");
        }
    }

    #[test]
    fn tcp_addresses() {
        assert!(parse(r#"{"tcp":"[::1]:5432"}"#).is_ok());
        for bad in ["127.0.0.1", ":80", "a:b", "a:0", "a/b:1"] {
            let e = parse(&format!(r#"{{"tcp":"{bad}"}}"#)).unwrap_err();
            assert_eq!(e.field, "health.tcp", "{bad}");
        }
    }

    #[test]
    fn exec_and_log() {
        assert_eq!(parse(r#"{"exec":[]}"#).unwrap_err().field, "health.exec");
        assert_eq!(parse(r#"{"exec":[""]}"#).unwrap_err().field, "health.exec");
        let e = parse(r#"{"log":"ready ("}"#).unwrap_err();
        assert_eq!(e.field, "health.log");
        assert!(e.message.contains("regular expression"), "{}", e.message);
        let Probe::Log(p) = parse(r#"{"log":"listening on \\d+"}"#).unwrap().probe else {
            panic!()
        };
        assert!(p.regex.is_match("listening on 8080"));
    }

    #[test]
    fn limits_name_the_field() {
        for (field, json) in [
            ("period_seconds", r#"{"tcp":"a:1","period_seconds":0}"#),
            ("timeout_seconds", r#"{"tcp":"a:1","timeout_seconds":0}"#),
            (
                "failure_threshold",
                r#"{"tcp":"a:1","failure_threshold":0}"#,
            ),
            (
                "success_threshold",
                r#"{"tcp":"a:1","success_threshold":0}"#,
            ),
            (
                "start_timeout_seconds",
                r#"{"tcp":"a:1","start_timeout_seconds":0}"#,
            ),
        ] {
            assert_eq!(parse(json).unwrap_err().field, format!("health.{field}"));
        }
        let unknown: Result<HealthRequest, _> = serde_json::from_str(r#"{"tcp":"a:1","nope":1}"#);
        assert!(unknown.is_err());
    }
}
