//! The client's TLS: rustls with ring (the server's provider), under a ureq
//! connector of our own so that the certificate check is ours to shape.
//!
//! `--cacert FILE` is trusted two ways. Its certificates are roots (a CA of
//! your own), and each is also a pin: a server whose certificate is
//! byte-identical to one of them is trusted even when webpki refuses it,
//! as it refuses a plain `openssl req -x509` certificate (marked CA:TRUE)
//! used by a server (`CaUsedAsEndEntity`), which curl `--cacert` accepts.
//! A pinned certificate must still name the host, and the handshake's
//! signature is always checked by rustls' own verifier. Without `--cacert`
//! the roots are the system's CA bundle. Used by `http::Client`.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use ureq::tls::PemItem;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

use super::Failure;

/// Where distributions keep their CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, BSDs, macOS
];

/// The TLS settings every client of one run uses.
#[derive(Clone)]
pub struct Tls(Arc<ClientConfig>);

impl Tls {
    /// Reads the certificates now: call it only when a URL is https.
    pub fn load(cacert: Option<&Path>) -> Result<Tls, Failure> {
        let (roots, pins) = match cacert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Failure::Other(format!("cannot read --cacert {}: {e}", path.display()))
                })?;
                let certs = pem_certificates(&pem)
                    .map_err(|e| Failure::Other(format!("--cacert {}: {e}", path.display())))?;
                (certs.clone(), certs)
            }
            None => (system_roots(), Vec::new()),
        };
        Ok(Tls(Arc::new(config(roots, pins))))
    }

    /// For plain http: nothing to read (and nothing trusted).
    pub fn none() -> Tls {
        Tls(Arc::new(config(Vec::new(), Vec::new())))
    }

    /// A connector chain for a ureq agent: TCP, then this TLS for https.
    pub fn connector(&self) -> impl Connector {
        ().chain(ureq::unversioned::transport::TcpConnector::default())
            .chain(TlsConnector(self.0.clone()))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config(roots: Vec<CertificateDer<'static>>, pins: Vec<CertificateDer<'static>>) -> ClientConfig {
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(roots);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let store = Arc::new(store);
    match WebPkiServerVerifier::builder_with_provider(store.clone(), provider()).build() {
        Ok(webpki) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinning { webpki, pins }))
            .with_no_client_auth(),
        // No root at all: every https server is refused (unknown issuer).
        Err(_) => builder.with_root_certificates(store).with_no_client_auth(),
    }
}

/// webpki's verdict, except that a certificate of `pins` naming the host is
/// trusted even if webpki refuses it. Signatures: webpki's, always.
#[derive(Debug)]
struct Pinning {
    webpki: Arc<WebPkiServerVerifier>,
    pins: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Pinning {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(ok) => return Ok(ok),
            Err(e) => e,
        };
        if !self.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Err(refused);
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&cert, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Wraps an https connection in TLS with our config; http passes through.
#[derive(Debug)]
struct TlsConnector(Arc<ClientConfig>);

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details.uri.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| ureq::Error::Tls("not a valid server name for TLS"))?;
        let mut conn = ClientConnection::new(self.0.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned { conn, sock },
        })))
    }
}

pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let n = self.stream.read(input)?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// The system's trusted CAs; none found: an empty list (https then fails
/// with an unknown issuer, and `--cacert` is the way out).
fn system_roots() -> Vec<CertificateDer<'static>> {
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
fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| format!("not a PEM file: {e}"))? {
            certs.push(CertificateDer::from(c.der().to_vec()));
        }
    }
    if certs.is_empty() {
        return Err("no certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(certs)
}

/// A refused server certificate, said as what it means and what to do
/// (rustls names the reason with an enum, like `CaUsedAsEndEntity`).
/// `None` when `error` is not about a certificate.
pub fn certificate_advice(error: &str) -> Option<String> {
    if !error.contains("certificate") {
        return None;
    }
    let why = if error.contains("CaUsedAsEndEntity") {
        "it is a self-signed certificate that no --cacert names"
    } else if error.contains("UnknownIssuer") {
        "it is signed by a CA that this client does not trust"
    } else if error.contains("not valid for name") || error.contains("NotValidForName") {
        "it does not name the host in the URL"
    } else if error.contains("Expired") {
        "it has expired"
    } else if error.contains("NotValidYet") {
        "it is not valid yet (check the clock)"
    } else {
        "it failed the check"
    };
    let host_hint = if why.contains("host") {
        " (use the host name or address the certificate was made for)"
    } else {
        ""
    };
    Some(format!(
        "the server's TLS certificate is not trusted: {why}{host_hint}. \
         Pass --cacert FILE or set EXEIO_CACERT=FILE, with FILE the server's \
         certificate or its CA (PEM)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_say_what_to_do() {
        let got =
            certificate_advice("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))")
                .unwrap();
        assert!(got.contains("self-signed"), "{got}");
        assert!(
            got.contains("--cacert FILE") && got.contains("EXEIO_CACERT"),
            "{got}"
        );
        assert!(!got.contains("CaUsedAsEndEntity"), "{got}");
        let got = certificate_advice("invalid peer certificate: UnknownIssuer").unwrap();
        assert!(got.contains("CA that this client does not trust"), "{got}");
        assert!(certificate_advice("connection refused").is_none());
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
