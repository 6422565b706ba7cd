//! The client's HTTP: one `Client` per exeio host, over a `ureq` agent
//! (blocking, rustls with ring; `--cacert` becomes its only root). Sends the
//! key in the `exeio-api-key` header, never in a URL; turns an error status
//! into a `Failure` carrying the server's `message`. Used by the commands.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::Failure;

/// Largest response body read whole (a page of 1,000 long log lines fits).
const MAX_BODY: u64 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings every client uses: rustls with the ring provider (the
/// server's), trusting `--cacert`'s certificates, or else the system's CA
/// bundle (`SSL_CERT_FILE`, else the usual places).
#[derive(Clone)]
pub struct Tls(TlsConfig);

/// Where distributions keep their CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, BSDs, macOS
];

impl Tls {
    /// Reads the certificates now: call it only when a URL is https.
    pub fn load(cacert: Option<&Path>) -> Result<Tls, Failure> {
        let certs = match cacert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Failure::Other(format!("cannot read --cacert {}: {e}", path.display()))
                })?;
                pem_certificates(&pem)
                    .map_err(|e| Failure::Other(format!("--cacert {}: {e}", path.display())))?
            }
            None => system_roots(),
        };
        Ok(Tls(TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(certs)))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build()))
    }

    /// For plain http: nothing to read.
    pub fn none() -> Tls {
        Tls(TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(Vec::new())))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build())
    }
}

/// The system's trusted CAs; none found: an empty list (https then fails
/// with an unknown issuer, and `--cacert` is the way out).
fn system_roots() -> Vec<Certificate<'static>> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from));
    for path in candidates {
        if let Ok(pem) = std::fs::read(&path)
            && let Ok(certs) = pem_certificates(&pem)
        {
            return certs;
        }
    }
    Vec::new()
}

/// Every certificate in a PEM file (at least one).
fn pem_certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("not a PEM file: {e}"))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err("no certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// A successful answer: its status and body.
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<Value, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::Other(format!(
                "the server's answer is not JSON ({e}): {}",
                preview(&self.body)
            ))
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim_end().to_owned()
    }
}

/// One exeio host.
pub struct Client {
    pub url: String,
    agent: Agent,
    key: Option<String>,
}

impl Client {
    pub fn new(url: &str, key: Option<String>, tls: &Tls) -> Client {
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .max_redirects(0)
            // exeio is reached directly: no proxy from the environment.
            .proxy(None)
            .user_agent(format!("exeio/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.0.clone())
            .build()
            .new_agent();
        Client {
            url: url.to_owned(),
            agent,
            key,
        }
    }

    pub fn get(&self, path: &str) -> Result<Reply, Failure> {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(k) = &self.key {
            req = req.header("exeio-api-key", k);
        }
        self.finish(req.call())
    }

    /// POST with a JSON body, or an empty one.
    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Reply, Failure> {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        if let Some(k) = &self.key {
            req = req.header("exeio-api-key", k);
        }
        let sent = match body {
            Some(v) => req
                .header("content-type", "application/json")
                .send(serde_json::to_vec(v).unwrap_or_default()),
            None => req.send_empty(),
        };
        self.finish(sent)
    }

    /// GET a stream (a log follow): the body, read as it arrives.
    pub fn stream(&self, path: &str) -> Result<impl Read + Send + 'static, Failure> {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(k) = &self.key {
            req = req.header("exeio-api-key", k);
        }
        let resp = req.call().map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        if status >= 400 {
            let bytes = body
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map_err(|e| self.unreachable(e))?;
            return Err(api_failure(status, &bytes));
        }
        Ok(body.into_reader())
    }

    fn finish(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, Failure> {
        let resp = sent.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| self.unreachable(e))?;
        if status >= 400 {
            return Err(api_failure(status, &body));
        }
        Ok(Reply { status, body })
    }

    fn unreachable(&self, e: ureq::Error) -> Failure {
        let why = match e {
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::HostNotFound => "host not found".into(),
            ureq::Error::ConnectionFailed => "connection failed".into(),
            other => other.to_string(),
        };
        Failure::Connect {
            url: self.url.clone(),
            message: why,
        }
    }
}

/// The failure an error status stands for, with the server's message.
pub fn api_failure(status: u16, body: &[u8]) -> Failure {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        v.as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = field("message").unwrap_or_else(|| match preview(body) {
        p if p.is_empty() => format!("HTTP {status}"),
        p => format!("HTTP {status}: {p}"),
    });
    Failure::Api {
        status,
        message,
        field: field("field"),
    }
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// Percent-encode one path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_segments() {
        assert_eq!(encode("web-1.a_b"), "web-1.a_b");
        assert_eq!(encode("a b/../c"), "a%20b%2F..%2Fc");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn error_bodies_become_failures() {
        let f = api_failure(
            409,
            br#"{"success":false,"message":"process 'x' already exists"}"#,
        );
        assert_eq!(
            f,
            Failure::Api {
                status: 409,
                message: "process 'x' already exists".into(),
                field: None
            }
        );
        assert_eq!(f.code(), 1);
        let f = api_failure(
            404,
            br#"{"success":false,"message":"no process with id 'x'"}"#,
        );
        assert_eq!(f.code(), 4);
        let f = api_failure(404, br#"{"success":false,"message":"no key named 'x'"}"#);
        assert_eq!(f.code(), 1);
        let f = api_failure(502, b"<html>bad gateway</html>");
        assert!(
            matches!(&f, Failure::Api { message, .. } if message == "HTTP 502: <html>bad gateway</html>")
        );
        let f = api_failure(
            400,
            br#"{"success":false,"message":"bad","field":"processes[2].command"}"#,
        );
        assert!(matches!(&f, Failure::Api { field: Some(x), .. } if x == "processes[2].command"));
    }

    #[test]
    fn cacert_needs_a_certificate() {
        assert!(pem_certificates(b"").is_err());
        assert!(
            pem_certificates(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }
}
