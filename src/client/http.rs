//! The client's HTTP: one `Client` per exeio host, over a `ureq` agent
//! (blocking; its TLS is `tls::Tls`). Sends the key in the `exeio-api-key`
//! header, never in a URL; turns an error status into a `Failure` carrying
//! the server's `message`. Used by the commands.

use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::unversioned::resolver::DefaultResolver;

use super::Failure;
pub use super::tls::Tls;

/// Largest response body read whole (a page of 1,000 long log lines fits).
const MAX_BODY: u64 = 64 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A successful answer: its status and body.
pub struct Received {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Received {
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
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .max_redirects(0)
            // exeio is reached directly: no proxy from the environment.
            .proxy(None)
            .user_agent(format!("exeio/{}", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = Agent::with_parts(config, tls.connector(), DefaultResolver::default());
        Client {
            url: url.to_owned(),
            agent,
            key,
        }
    }

    pub fn get(&self, path: &str) -> Result<Received, Failure> {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(k) = &self.key {
            req = req.header("exeio-api-key", k);
        }
        self.finish(req.call())
    }

    /// POST with a JSON body, or an empty one.
    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Received, Failure> {
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

    /// PUT a JSON body.
    pub fn put(&self, path: &str, body: &[u8]) -> Result<Received, Failure> {
        let mut req = self.agent.put(format!("{}{path}", self.url));
        if let Some(k) = &self.key {
            req = req.header("exeio-api-key", k);
        }
        let sent = req
            .header("content-type", "application/json")
            .send(body.to_vec());
        self.finish(sent)
    }

    /// POST `len` bytes read from `body` as they are sent (a release):
    /// `Content-Length` known ahead, and `Expect: 100-continue`, so that a
    /// refusal (401, 403, 404, 413) comes before the upload, not after.
    pub fn upload(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &mut dyn Read,
        len: u64,
    ) -> Result<Received, Failure> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("content-length", len)
            .header("expect", "100-continue");
        if let Some(k) = &self.key {
            req = req.header("exeio-api-key", k);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.finish(req.send(ureq::SendBody::from_reader(body)))
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
    ) -> Result<Received, Failure> {
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
        Ok(Received { status, body })
    }

    fn unreachable(&self, e: ureq::Error) -> Failure {
        let why = match e {
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::HostNotFound => "host not found".into(),
            ureq::Error::ConnectionFailed => "connection failed".into(),
            other => other.to_string(),
        };
        let why = super::tls::certificate_advice(&why).unwrap_or(why);
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
}
