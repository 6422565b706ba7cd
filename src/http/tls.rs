//! TLS with rustls: the server configuration from PEM files, and wrapping an
//! accepted socket. The handshake runs on the connection's own thread during
//! its first read, within the head timeout, never on the accept thread.
//!
//! rustls reads the socket as often as it needs within one `read` (a whole
//! handshake, a whole record), so a socket timeout alone would let a client
//! that trickles one byte at a time hold a connection for ever. The socket
//! is wrapped in a `DeadlineSocket`: every read sees only what is left of
//! the connection's current deadline (SPEC 3a "Deadlines hold under TLS").

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub type TlsStream = rustls::StreamOwned<rustls::ServerConnection, DeadlineSocket>;

/// A socket whose every read ends at `deadline` (none: blocking as set).
pub struct DeadlineSocket {
    pub sock: TcpStream,
    pub deadline: Option<Instant>,
    /// The read timeout last set on the socket.
    set: Option<Duration>,
}

impl DeadlineSocket {
    pub fn new(sock: TcpStream) -> DeadlineSocket {
        DeadlineSocket {
            sock,
            deadline: None,
            set: None,
        }
    }
}

impl Read for DeadlineSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // Whole 10 ms steps: fewer setsockopt calls, never past the
            // deadline by more than a step.
            let want = Duration::from_millis(left.as_millis().div_ceil(10).max(1) as u64 * 10);
            if self.set != Some(want) {
                self.sock.set_read_timeout(Some(want))?;
                self.set = Some(want);
            }
        }
        match self.sock.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
            other => other,
        }
    }
}

impl Write for DeadlineSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Load a certificate chain and its private key (PEM) into a server config.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot parse certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate (BEGIN CERTIFICATE) in {}",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Start a TLS session on `sock` (the handshake happens on first use).
pub fn wrap(config: &Arc<ServerConfig>, sock: TcpStream) -> std::io::Result<TlsStream> {
    let conn = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(conn, DeadlineSocket::new(sock)))
}
