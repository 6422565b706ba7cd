//! TLS with rustls: the server configuration from PEM files, and wrapping an
//! accepted socket. The handshake runs on the connection's own thread during
//! its first read, within the head timeout, never on the accept thread.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

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
    Ok(rustls::StreamOwned::new(conn, sock))
}
