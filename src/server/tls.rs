//! TLS in front of the HTTP server (`serve --tls-cert PEM --tls-key PEM`): the rustls
//! configuration read from PEM files, and the handshake of one accepted connection.
//!
//! The handshake is part of what a connection does before `login`, so it lives under the same
//! bounds as the rest of it ([`super::http`]): it must finish by the login deadline counted
//! from accept, and the connection's admission ticket stays *pending* meanwhile, so a client
//! that opens a socket and stalls the handshake is closed at the deadline, or earlier when its
//! place is needed. This module does no HTTP and no WebSocket.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ServerError;
use super::admission::Ticket;
use super::metrics::{CloseReason, Metrics};

/// An accepted connection's byte stream: plain TCP, or TLS over it (boxed, so plain
/// connections do not carry the size of a rustls connection).
pub(super) type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The server's TLS configuration from a PEM certificate chain (leaf first) and its PEM
/// private key (PKCS#8, PKCS#1 or SEC1). Offers HTTP/1.1 by ALPN, the one `/ws` upgrades.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let tls_err = |path: &Path, message: String| ServerError::Tls {
        path: path.to_path_buf(),
        message,
    };
    let chain = crate::transport::tls::read_certs(cert).map_err(|e| tls_err(cert, e))?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, format!("no usable PEM private key ({e})")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(crate::transport::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| tls_err(cert, format!("certificate and key do not go together ({e})")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Completes the TLS handshake of `stream` (when `acceptor` is set) by `deadline`; `None` when
/// it failed, timed out (counted as a login timeout), was evicted or the server is stopping.
pub(super) async fn handshake(
    acceptor: Option<&TlsAcceptor>,
    stream: TcpStream,
    ticket: &Ticket,
    stop: &CancellationToken,
    deadline: tokio::time::Instant,
    metrics: &Metrics,
) -> Option<Stream> {
    let Some(acceptor) = acceptor else {
        return Some(Either::Left(stream));
    };
    tokio::select! {
        r = acceptor.accept(stream) => match r {
            Ok(tls) => Some(Either::Right(Box::new(tls))),
            Err(e) => {
                debug!(error = %e, "TLS handshake failed");
                None
            }
        },
        _ = tokio::time::sleep_until(deadline) => {
            metrics.closed(CloseReason::LoginTimeout);
            None
        }
        _ = ticket.evicted() => None,
        _ = stop.cancelled() => None,
    }
}
