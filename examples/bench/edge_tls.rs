//! The edge under TLS (issue "The edge, finished"): exeio serving HTTPS with
//! a fresh self-signed certificate while clients without a key trickle
//! ClientHellos or flood handshakes. The owner asks `GET /list` over TLS
//! from 127.0.0.1 meanwhile, two ways each time: on a new connection
//! (timed from connect through the handshake to the whole answer) and on a
//! kept-alive connection opened before the attack (an open dashboard).

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::edge::{lifetimes, note_closed, trickle};
use crate::edge_owner::{owner_metrics, sample_with, settle_metrics};
use crate::exeio::{Exeio, KEY, TempDir};
use crate::http::{connect_from, read_response};
use crate::{Metric, Target, Unit, metric, name, quantile};

/// exeio's default head timeout, which covers the handshake.
const HEAD_TIMEOUT: u64 = 10;
const TRICKLERS: usize = 256;
/// How long the handshake flood goes on.
const FLOOD: Duration = Duration::from_secs(10);
/// The flood's one address (the owner's is 127.0.0.1).
const FLOOD_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 7);
/// An owner's request that has no answer in this long failed.
const OWNER_TIMEOUT: Duration = Duration::from_secs(2);
/// Owner samples not taken by then count as failed (a stuck exeio).
const OWNER_GIVE_UP: Duration = Duration::from_secs(40);

pub fn tls_cases(bin: &Path) -> Result<Vec<Metric>, String> {
    let cert = Cert::new()?;
    let mut out = tricklers(bin, &cert)?;
    out.extend(handshake_flood(bin, &cert)?);
    Ok(out)
}

/// A self-signed certificate for 127.0.0.1 (in a temporary dir), and a
/// client configuration that trusts exactly it.
struct Cert {
    dir: TempDir,
    config: Arc<ClientConfig>,
    /// A ClientHello from that configuration, sent by the attackers.
    hello: Arc<Vec<u8>>,
}

impl Cert {
    fn new() -> Result<Cert, String> {
        let dir = TempDir::new("tls")?;
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=127.0.0.1", "-days", "1"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(dir.0.join("k.pem"))
            .arg("-out")
            .arg(dir.0.join("c.pem"))
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if !made.status.success() {
            return Err(format!(
                "openssl req failed: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            ));
        }
        let pem = dir.0.join("c.pem");
        let cert =
            CertificateDer::from_pem_file(&pem).map_err(|e| format!("{}: {e}", pem.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
            .with_no_client_auth();
        let config = Arc::new(config);
        let mut conn = ClientConnection::new(config.clone(), server_name())
            .map_err(|e| format!("TLS client: {e}"))?;
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello).map_err(|e| e.to_string())?;
        }
        Ok(Cert {
            dir,
            config,
            hello: Arc::new(hello),
        })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.0.join(file)
    }

    /// exeio serving HTTPS with this certificate.
    fn start(&self, bin: &Path) -> Result<Exeio, String> {
        let (cert, key) = (self.path("c.pem"), self.path("k.pem"));
        let ex = Exeio::start_with(
            bin,
            None,
            &[
                "--tls-cert",
                &cert.to_string_lossy(),
                "--tls-key",
                &key.to_string_lossy(),
            ],
        )?;
        thread::sleep(Duration::from_millis(200));
        Ok(ex)
    }
}

fn server_name() -> ServerName<'static> {
    ServerName::IpAddress(IpAddr::from(Ipv4Addr::LOCALHOST).into())
}

/// Trusts the one certificate it was made with (byte for byte); checks
/// the handshake's signatures as usual.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the bench's certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algs = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// A TLS connection from 127.0.0.1 (the handshake happens on first use).
fn tls_connect(config: &Arc<ClientConfig>, addr: SocketAddr) -> Result<Tls, String> {
    let tcp = TcpStream::connect_timeout(&addr, OWNER_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let set = tcp
        .set_nodelay(true)
        .and_then(|_| tcp.set_read_timeout(Some(OWNER_TIMEOUT)))
        .and_then(|_| tcp.set_write_timeout(Some(OWNER_TIMEOUT)));
    set.map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), server_name())
        .map_err(|e| format!("TLS client: {e}"))?;
    Ok(BufReader::new(StreamOwned::new(conn, tcp)))
}

/// The owner's `GET /list` on `s`; whether the server keeps it open.
fn tls_list(s: &mut Tls) -> Result<bool, String> {
    let req = format!("GET /list HTTP/1.1\r\nHost: 127.0.0.1\r\nexeio-api-key: {KEY}\r\n\r\n");
    let stream = s.get_mut();
    stream
        .write_all(req.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| format!("GET /list: {e}"))?;
    let (mut line, mut body) = (String::new(), Vec::new());
    match read_response(s, &mut line, &mut body) {
        Ok((200, close)) => Ok(!close),
        Ok((status, _)) => Err(format!("GET /list: HTTP {status}")),
        Err(e) => Err(format!("GET /list: {e}")),
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Owner samples over TLS: (new conn, kept-alive), each (ms, failures).
type OwnerTls = ((Vec<f64>, u64), (Vec<f64>, u64));

/// On a thread of its own, the owner's `GET /list` over TLS, one every
/// `every`: on a new connection, then on `kept` (re-made if it was lost;
/// that request then counts the new handshake).
fn owner_tls(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    kept: Tls,
    every: Duration,
) -> JoinHandle<OwnerTls> {
    thread::spawn(move || {
        let t0 = Instant::now();
        let mut kept = Some(kept);
        let (mut kept_lat, mut kept_failed) = (Vec::new(), 0);
        let mut failures = Vec::new();
        let fresh = sample_with(every, || {
            if t0.elapsed() > OWNER_GIVE_UP {
                return Err("not tried: too late".into());
            }
            let t = Instant::now();
            let mut s = tls_connect(&config, addr)?;
            let answered = tls_list(&mut s).map(|_| ms_since(t));
            let t = Instant::now();
            let mut k = match kept.take() {
                Some(k) => Ok(k),
                None => tls_connect(&config, addr),
            };
            match k.as_mut().map_err(|e| e.clone()).and_then(tls_list) {
                Ok(open) => {
                    kept_lat.push(ms_since(t));
                    kept = k.ok().filter(|_| open);
                }
                Err(e) => {
                    kept_failed += 1;
                    failures.push(format!(
                        "{:.2} s, kept-alive: {e}",
                        t0.elapsed().as_secs_f64()
                    ));
                }
            }
            answered.inspect_err(|e| {
                failures.push(format!(
                    "{:.2} s, new conn: {e}",
                    t0.elapsed().as_secs_f64()
                ));
            })
        });
        for e in failures.iter().take(3) {
            eprintln!("bench: edge over TLS, the owner failed at {e}");
        }
        (fresh, (kept_lat, kept_failed))
    })
}

/// The owner's rows, both ways, then whether exeio gave back what it took.
fn owner_rows(
    tag: &str,
    owner: OwnerTls,
    ex: &Exeio,
    base: &crate::exeio::Footprint,
) -> Vec<Metric> {
    let ((fresh, fresh_failed), (kept, kept_failed)) = owner;
    let mut out = owner_metrics(&format!("{tag}; TLS, new conn"), &fresh, fresh_failed);
    out.extend(owner_metrics(
        &format!("{tag}; TLS, kept-alive"),
        &kept,
        kept_failed,
    ));
    out.extend(settle_metrics(tag, ex, base));
    out
}

/// The owner's kept-alive connection, opened before an attack.
fn dashboard(config: &Arc<ClientConfig>, addr: SocketAddr) -> Result<Tls, String> {
    let mut kept = tls_connect(config, addr)?;
    tls_list(&mut kept).map_err(|e| format!("before the attack, over TLS: {e}"))?;
    Ok(kept)
}

/// 256 connections from 8 addresses (32 each, the per-address cap), each
/// sending its ClientHello one byte every 2 s; how long exeio let each
/// live, and the owner meanwhile. The tricklers go on until the owner is
/// done, or until they are all closed after the head timeout.
fn tricklers(bin: &Path, cert: &Cert) -> Result<Vec<Metric>, String> {
    let ex = cert.start(bin)?;
    let base = ex.footprint()?;
    let addr = ex.addr;
    let kept = dashboard(&cert.config, addr)?;
    let mut socks: Vec<(TcpStream, Instant, Option<Duration>)> = Vec::with_capacity(TRICKLERS);
    for i in 0..TRICKLERS {
        let from = Ipv4Addr::new(127, 0, 2, 1 + (i % 8) as u8);
        let s = connect_from(from, addr, None).map_err(|e| format!("connect: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push((s, Instant::now(), None));
    }
    let sampler = owner_tls(cert.config.clone(), addr, kept, Duration::from_millis(60));
    let t0 = Instant::now();
    let limit = Duration::from_secs(HEAD_TIMEOUT + 6);
    let (mut sent, mut buf) = (0usize, [0u8; 512]);
    loop {
        let alive = socks.iter().any(|s| s.2.is_none());
        let owner_done = sampler.is_finished();
        if t0.elapsed() > OWNER_GIVE_UP || (owner_done && (!alive || t0.elapsed() > limit)) {
            break;
        }
        let due = (t0.elapsed().as_secs() / 2 + 1) as usize;
        while sent < due.min(cert.hello.len()) {
            let byte = [cert.hello[sent]];
            trickle(&mut socks, byte);
            sent += 1;
        }
        note_closed(&mut socks, &mut buf);
        thread::sleep(Duration::from_millis(20));
    }
    let lived = lifetimes(&socks);
    let open = socks.iter().filter(|s| s.2.is_none()).count();
    let owner = sampler.join().map_err(|_| "the owner's thread panicked")?;
    drop(socks);
    let mut out = vec![
        metric(
            "256 TLS tricklers (1 ClientHello byte / 2 s, 8 addresses): longest lived",
            quantile(&lived, 1.0),
            Unit::Secs,
            Target::AtMost(HEAD_TIMEOUT as f64 + 1.0),
        ),
        metric(
            "  tricklers still open at the end",
            open as f64,
            Unit::Count,
            Target::None,
        ),
    ];
    out.extend(owner_rows("256 TLS tricklers", owner, &ex, &base));
    Ok(out)
}

/// What one thread flooding handshakes from `FLOOD_FROM` saw.
#[derive(Default)]
struct Flood {
    /// ClientHellos sent on a new connection.
    started: u64,
    /// ... answered with a handshake record (the server did the work).
    answered: u64,
    /// ... closed (or timed out) without one.
    refused: u64,
    connect_failed: u64,
}

/// For `FLOOD`, one thread from `FLOOD_FROM`: connect, send a ClientHello,
/// wait for the server's first bytes, close; again, as fast as it goes.
fn flood(addr: SocketAddr, hello: Arc<Vec<u8>>) -> Flood {
    let mut f = Flood::default();
    let t0 = Instant::now();
    let mut first = [0u8; 1];
    while t0.elapsed() < FLOOD {
        let Ok(mut s) = connect_from(FLOOD_FROM, addr, None) else {
            f.connect_failed += 1;
            continue;
        };
        f.started += 1;
        let answered = s.set_read_timeout(Some(Duration::from_secs(2))).is_ok()
            && s.write_all(&hello).is_ok()
            && matches!(s.read(&mut first), Ok(1) if first[0] == 0x16);
        if answered {
            f.answered += 1;
        } else {
            f.refused += 1;
        }
    }
    f
}

/// A TLS handshake flood from one address for `FLOOD`; the owner's
/// samples spread over it.
fn handshake_flood(bin: &Path, cert: &Cert) -> Result<Vec<Metric>, String> {
    let ex = cert.start(bin)?;
    let base = ex.footprint()?;
    let addr = ex.addr;
    let kept = dashboard(&cert.config, addr)?;
    let hello = cert.hello.clone();
    let flooder = thread::spawn(move || flood(addr, hello));
    let sampler = owner_tls(cert.config.clone(), addr, kept, Duration::from_millis(85));
    let f = flooder.join().map_err(|_| "the flood's thread panicked")?;
    let owner = sampler.join().map_err(|_| "the owner's thread panicked")?;
    let secs = FLOOD.as_secs_f64();
    let mut out = vec![
        metric(
            name(format!(
                "TLS handshake flood from {FLOOD_FROM}, 1 thread, {secs} s: ClientHellos/s"
            )),
            f.started as f64 / secs,
            Unit::PerSec,
            Target::None,
        ),
        metric(
            "  of them answered with a handshake, per s",
            f.answered as f64 / secs,
            Unit::PerSec,
            Target::None,
        ),
        metric(
            "  of them closed before a handshake",
            f.refused as f64,
            Unit::Count,
            Target::None,
        ),
        metric(
            "  flood connects failed",
            f.connect_failed as f64,
            Unit::Count,
            Target::None,
        ),
    ];
    out.extend(owner_rows("TLS handshake flood", owner, &ex, &base));
    Ok(out)
}
