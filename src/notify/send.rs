//! One delivery attempt, on a sender thread of the pool: a webhook POST
//! signed per the Standard Webhooks specification (15 s timeout), or a
//! command fed the body on stdin (30 s timeout, its process group killed
//! after, always reaped). The commands running are registered, so that
//! exeio's shutdown ends them too (`stop_commands`): none outlives exeio.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use ureq::Agent;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use super::outbox::Item;
use super::plan::parse_retry_after;
use super::targets::{Target, secret_key};
use crate::timefmt::unix_secs;

pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The command targets running now, by process group; once `closing`, no
/// new one starts (its notification stays queued for the next start).
struct Running {
    closing: bool,
    groups: BTreeSet<u32>,
}

static RUNNING: Mutex<Running> = Mutex::new(Running {
    closing: false,
    groups: BTreeSet::new(),
});

fn running() -> std::sync::MutexGuard<'static, Running> {
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Shutdown: start no more commands; send SIGTERM to the group of each one
/// running, SIGKILL to those still there after `grace`, and wait (a
/// moment) for their senders to reap them.
pub fn stop_commands(grace: Duration) {
    let groups: Vec<u32> = {
        let mut r = running();
        r.closing = true;
        r.groups.iter().copied().collect()
    };
    if groups.is_empty() {
        return;
    }
    for &g in &groups {
        let _ = crate::child::signal_group(g, nix::libc::SIGTERM);
    }
    let gone = |limit: Duration| {
        let end = Instant::now() + limit;
        while !running().groups.is_empty() {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    };
    if gone(grace) {
        return;
    }
    for g in running().groups.iter().copied() {
        let _ = crate::child::signal_group(g, nix::libc::SIGKILL);
    }
    gone(Duration::from_secs(2));
}

/// Where distributions keep their CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// An attempt for a sender.
pub struct Job {
    pub target: Target,
    pub item: Item,
}

/// What an attempt came to.
pub struct Outcome {
    pub target: String,
    pub msg_id: String,
    /// The HTTP status (a command: 200 for exit 0, else none).
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    /// What went wrong, for exeio.log.
    pub error: Option<String>,
}

pub fn attempt(job: &Job) -> Outcome {
    let mut out = Outcome {
        target: job.target.name.clone(),
        msg_id: job.item.msg_id.clone(),
        status: None,
        retry_after: None,
        error: None,
    };
    match (&job.target.webhook, &job.target.command) {
        (Some(url), _) => webhook(url, job.target.secret.as_deref(), &job.item, &mut out),
        (_, Some(argv)) => match command(argv, &job.item) {
            Ok(()) => out.status = Some(200),
            Err(e) => out.error = Some(e),
        },
        _ => out.error = Some("target has neither webhook nor command".into()),
    }
    out
}

/// The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` keyed with the secret's bytes.
pub fn signature(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The agent every sender shares (made at the first webhook: the CA
/// bundle is read only if there is one).
fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(system_roots())))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WEBHOOK_TIMEOUT))
            .max_redirects(0)
            .proxy(None)
            .user_agent(format!("exeio/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent()
    })
}

fn system_roots() -> Vec<Certificate<'static>> {
    for path in SYSTEM_BUNDLES {
        let Ok(pem) = std::fs::read(path) else {
            continue;
        };
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|i| match i {
                Ok(PemItem::Certificate(c)) => Some(c.to_owned()),
                _ => None,
            })
            .collect();
        if !certs.is_empty() {
            return certs;
        }
    }
    Vec::new()
}

fn webhook(url: &str, secret: Option<&str>, item: &Item, out: &mut Outcome) {
    let key = match secret.map(secret_key) {
        Some(Ok(k)) => k,
        Some(Err(e)) => {
            out.error = Some(format!("bad secret: {e}"));
            return;
        }
        None => Vec::new(),
    };
    let ts = unix_secs(SystemTime::now());
    let mut req = agent()
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &item.msg_id)
        .header("webhook-timestamp", ts.to_string());
    if !key.is_empty() {
        req = req.header(
            "webhook-signature",
            signature(&key, &item.msg_id, ts, &item.body),
        );
    }
    match req.send(item.body.as_bytes()) {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            out.status = Some(status);
            out.retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            // Read what little the receiver says, so the connection is reused.
            let _ = resp.body_mut().with_config().limit(64 * 1024).read_to_vec();
            if !(200..300).contains(&status) {
                out.error = Some(format!("HTTP {status}"));
            }
        }
        Err(e) => out.error = Some(e.to_string()),
    }
}

/// Run `argv` with the body on stdin; Ok if it exits 0 within the timeout.
fn command(argv: &[String], item: &Item) -> Result<(), String> {
    // Started under the lock, so a shutdown either sees it or stops it.
    let mut registry = running();
    if registry.closing {
        return Err("exeio is shutting down: not started".into());
    }
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("EXEIO_EVENT", &item.kind)
        .env("EXEIO_ID", item.process.as_deref().unwrap_or(""))
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    let pid = child.id();
    registry.groups.insert(pid);
    drop(registry);
    let pidfd = crate::sys::pidfd_open(pid);
    if let Some(mut stdin) = child.stdin.take() {
        // The body is small (well under a pipe's buffer): this never waits.
        let _ = stdin.write_all(item.body.as_bytes());
    }
    let end = Instant::now() + COMMAND_TIMEOUT;
    // Wait for the exit without reaping where a pidfd tells it, so the
    // group is killed while its leader still holds the group's id.
    let mut reaped = None;
    let exited = loop {
        let left = end.saturating_duration_since(Instant::now());
        if let Some(fd) = &pidfd {
            let ready = crate::sys::wait_readable(&[fd.as_fd()], Some(left))
                .is_ok_and(|r| r.first() == Some(&true));
            if ready {
                break true;
            }
        } else {
            match child.try_wait() {
                Ok(Some(s)) => {
                    reaped = Some(s);
                    break true;
                }
                Ok(None) => std::thread::sleep(left.min(Duration::from_millis(20))),
                Err(_) => break false,
            }
        }
        if Instant::now() >= end {
            break false;
        }
    };
    // Whatever it left in its group goes too.
    let _ = crate::child::signal_group(pid, nix::libc::SIGKILL);
    // Out of the registry before the reap frees its pid for reuse.
    running().groups.remove(&pid);
    let status = match reaped {
        Some(s) => Ok(s),
        None => child.wait(),
    };
    match status {
        _ if !exited => Err(format!(
            "{} did not finish within {}s: killed",
            argv[0],
            COMMAND_TIMEOUT.as_secs()
        )),
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{} ended with {s}", argv[0])),
        Err(e) => Err(format!("cannot wait for {}: {e}", argv[0])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
