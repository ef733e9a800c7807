//! The client side of TLS for `wss://` targets (and XMPP's STARTTLS): the one rustls
//! [`ClientConfig`] of a run, shared by every connection (so TLS sessions resume from one
//! cache), built from the operating system's roots, a private CA file, or, when asked, no
//! verification at all.
//!
//! This module only builds configurations and reads PEM; connecting is [`super::connect`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::TransportError;

/// How a `wss://` (or STARTTLS) target's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the CA certificates in this PEM file (a private CA), instead of the
    /// operating system's roots (as curl's `--cacert`).
    pub ca_file: Option<PathBuf>,
    /// Do not verify the certificate at all (a test server with a self-made certificate).
    pub insecure: bool,
}

/// The crypto provider of every TLS configuration here (client and server): *ring*.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file; an error (naming the file) when it cannot be read or holds
/// none.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The client configuration of a run: one per run, shared (it holds the session cache).
/// Offers only HTTP/1.1 by ALPN, the one a WebSocket upgrade uses.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, TransportError> {
    client_config_for(options, &[b"http/1.1"])
}

/// [`client_config`] offering `alpn` instead: none for XMPP's STARTTLS, whose TLS starts
/// inside an XMPP stream (so no protocol is negotiated; some servers refuse one they do not
/// know).
pub fn client_config_for(options: &TlsOptions, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TransportError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsSetup(e.to_string()))?;
    let mut config = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots(options)?).with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The CA file's certificates, or else the operating system's.
fn roots(options: &TlsOptions) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &options.ca_file {
        let certs = read_certs(path).map_err(|e| TransportError::TlsSetup(format!("target.ca_file: {e}")))?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                TransportError::TlsSetup(format!(
                    "target.ca_file: {}: not a usable CA certificate ({e})",
                    path.display()
                ))
            })?;
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
        return Err(TransportError::TlsSetup(format!(
            "no trusted root certificates found in the system's store{why}: install the \
             system's CA certificates, or give the server's CA with --ca-file (target.ca_file)"
        )));
    }
    Ok(roots)
}

/// Accepts any certificate (`--insecure`), but still checks that the server holds the key
/// of the certificate it sent, so the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = read_certs(&path).unwrap_err();
        assert!(e.contains("ca.pem") && e.contains("no PEM certificate"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = read_certs(&missing).unwrap_err();
        assert!(e.contains("missing.pem") && e.contains("cannot read"), "{e}");
        let options = TlsOptions {
            ca_file: Some(path),
            insecure: false,
        };
        let e = client_config(&options).unwrap_err().to_string();
        assert!(e.contains("target.ca_file") && e.contains("ca.pem"), "{e}");
    }

    #[test]
    fn insecure_configs_build_without_any_root() {
        let config = client_config(&TlsOptions {
            ca_file: None,
            insecure: true,
        })
        .unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
