//! The byte or message pipe under an XMPP stream: plain TCP, TCP upgraded by STARTTLS
//! (tokio-rustls), or a WebSocket with subprotocol `xmpp` (RFC 7395, one element per text
//! message). Reads feed a [`StreamParser`]; writes take finished XML text.
//!
//! TLS trust is explicit ([`TlsTrust`]): a CA file, or accepting any certificate, which this
//! module allows only because every target is on loopback (checked by the session). There is
//! no system trust store: ackstorm never talks to servers off this machine.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{self, WebPkiSupportedAlgorithms};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::parser::StreamParser;
use super::session::XmppError;
use crate::transport::native::ws_config;

/// When to upgrade a TCP stream with STARTTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartTls {
    /// Never (a server that requires TLS then fails the login).
    Never,
    /// When the server offers it.
    IfOffered(TlsTrust),
    /// Always; a server that does not offer it fails the login.
    Required(TlsTrust),
}

/// Which server certificates to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Certificates signed by the CA(s) in this PEM file (a self-signed one: itself).
    CaFile(PathBuf),
    /// Any certificate. Only loopback targets exist in ackstorm, so this is for the test
    /// servers' self-signed certificates; it must never be used off loopback.
    InsecureLoopback,
}

/// An open XMPP pipe.
pub enum Wire {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TCP after STARTTLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket (RFC 7395).
    Ws(Box<WebSocketStream<TcpStream>>),
}

impl Wire {
    /// Whether each stanza needs its own `xmlns` (WebSocket framing).
    pub fn is_ws(&self) -> bool {
        matches!(self, Wire::Ws(_))
    }

    /// Opens a WebSocket on `tcp` to `url`, asking for (and requiring) subprotocol `xmpp`.
    pub async fn websocket(tcp: TcpStream, url: &str) -> Result<Wire, XmppError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| XmppError::Handshake(e.to_string()))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        let (ws, response) = tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config()))
            .await
            .map_err(|e| XmppError::Handshake(e.to_string()))?;
        match response.headers().get("Sec-WebSocket-Protocol") {
            Some(p) if p == "xmpp" => Ok(Wire::Ws(Box::new(ws))),
            other => Err(XmppError::Handshake(format!(
                "server did not agree to subprotocol xmpp (got {other:?})"
            ))),
        }
    }

    /// Writes `texts` (one WebSocket message each) and flushes once.
    pub async fn send_all<S: AsRef<str>>(&mut self, texts: &[S]) -> io::Result<usize> {
        let mut bytes = 0;
        match self {
            Wire::Tcp(s) => bytes += write_joined(s, texts).await?,
            Wire::Tls(s) => bytes += write_joined(s.as_mut(), texts).await?,
            Wire::Ws(ws) => {
                for t in texts {
                    bytes += t.as_ref().len();
                    ws.feed(WsMessage::text(t.as_ref())).await.map_err(io::Error::other)?;
                }
                ws.flush().await.map_err(io::Error::other)?;
            }
        }
        Ok(bytes)
    }

    /// Writes one text.
    pub async fn send(&mut self, text: &str) -> io::Result<usize> {
        self.send_all(&[text]).await
    }

    /// Reads what is available into `parser`; `Ok(0)` at end of stream. Cancel-safe.
    pub async fn read_into(&mut self, parser: &mut StreamParser, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Tcp(s) => read_some(s, parser, buf).await,
            Wire::Tls(s) => read_some(s.as_mut(), parser, buf).await,
            Wire::Ws(ws) => loop {
                match ws.next().await {
                    None | Some(Ok(WsMessage::Close(_))) => return Ok(0),
                    Some(Ok(WsMessage::Text(t))) => {
                        parser.feed(t.as_bytes());
                        return Ok(t.len().max(1));
                    }
                    Some(Ok(WsMessage::Binary(b))) => {
                        // RFC 7395 uses text messages; a binary one still holds UTF-8 XML.
                        parser.feed(&b);
                        return Ok(b.len().max(1));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(io::Error::other(e)),
                }
            },
        }
    }

    /// Upgrades a TCP pipe with TLS for `domain` (after `<proceed/>`).
    pub async fn starttls(self, domain: &str, trust: &TlsTrust) -> Result<Wire, XmppError> {
        let Wire::Tcp(tcp) = self else {
            return Err(XmppError::Tls("STARTTLS on a pipe that is not plain TCP".into()));
        };
        let config = client_config(trust)?;
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| XmppError::Tls(format!("server name {domain:?}: {e}")))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| XmppError::Tls(e.to_string()))?;
        Ok(Wire::Tls(Box::new(tls)))
    }

    /// Ends the pipe politely: TCP/TLS write shutdown, WebSocket close frame.
    pub async fn shutdown(&mut self) {
        let _ = match self {
            Wire::Tcp(s) => s.shutdown().await,
            Wire::Tls(s) => s.shutdown().await,
            Wire::Ws(ws) => ws.close().await.map_err(io::Error::other),
        };
    }

    /// Makes dropping the pipe reset the TCP connection (RST, no FIN): a fault, not a close.
    pub fn set_abortive(&self) {
        let tcp = match self {
            Wire::Tcp(s) => s,
            Wire::Tls(s) => s.get_ref().0,
            Wire::Ws(ws) => ws.get_ref(),
        };
        let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
    }
}

async fn write_joined<W: AsyncWriteExt + Unpin, S: AsRef<str>>(w: &mut W, texts: &[S]) -> io::Result<usize> {
    let mut bytes = 0;
    if let [one] = texts {
        w.write_all(one.as_ref().as_bytes()).await?;
        bytes = one.as_ref().len();
    } else {
        let mut joined = String::with_capacity(texts.iter().map(|t| t.as_ref().len()).sum());
        for t in texts {
            joined.push_str(t.as_ref());
        }
        w.write_all(joined.as_bytes()).await?;
        bytes += joined.len();
    }
    w.flush().await?;
    Ok(bytes)
}

async fn read_some<R: AsyncReadExt + Unpin>(r: &mut R, parser: &mut StreamParser, buf: &mut [u8]) -> io::Result<usize> {
    let n = r.read(buf).await?;
    parser.feed(&buf[..n]);
    Ok(n)
}

fn client_config(trust: &TlsTrust) -> Result<ClientConfig, XmppError> {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| XmppError::Tls(e.to_string()))?;
    let config = match trust {
        TlsTrust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| XmppError::Tls(format!("CA file {}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| XmppError::Tls(format!("CA file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| XmppError::Tls(format!("CA file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(XmppError::Tls(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsTrust::InsecureLoopback => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// Accepts any server certificate but still checks the handshake signatures (so the
/// connection is encrypted to whoever holds the presented key). Loopback test servers only.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
