//! The byte or message pipe under an XMPP stream: plain TCP (`xmpp://`), TCP upgraded by
//! STARTTLS, or a WebSocket with subprotocol `xmpp` (RFC 7395, one element per text message;
//! `ws://`, or `wss://` with TLS from the first byte). Reads feed a [`StreamParser`]; writes
//! take finished XML text.
//!
//! [`XmppTarget`] is where a run's connections go: the URL checked and its host resolved once
//! ([`Endpoint`], which also binds source addresses towards loopback only), and the STARTTLS
//! policy with its TLS configuration. TLS configurations come from [`crate::transport::tls`]
//! only (the CA file, the system roots, or no verification when asked), as for every other
//! target; this module builds none of its own.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_util::either::Either;

use super::parser::StreamParser;
use super::session::XmppError;
use crate::transport::TransportError;
use crate::transport::connect::{self, Endpoint, Scheme, Stream, TargetUrl};
use crate::transport::native::ws_config;
use crate::transport::tls::{self, TlsOptions};

/// Room taken in the parser's buffer for one read (given back once parsed).
const READ_ROOM: usize = 4096;

/// When to upgrade a TCP (`xmpp://`) stream with STARTTLS; WebSocket targets ignore it
/// (`wss://` is TLS already).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartTlsPolicy {
    /// Never (a server that requires TLS then fails the login).
    Never,
    /// When the server offers it.
    #[default]
    IfOffered,
    /// Always; a server that does not offer it fails the login.
    Required,
}

/// Where a run's connections go, resolved once and shared by all of them.
pub struct XmppTarget {
    endpoint: Arc<Endpoint>,
    starttls: StartTlsPolicy,
    /// The STARTTLS connector (`xmpp://` targets whose policy may use it).
    tls: Option<TlsConnector>,
}

impl XmppTarget {
    /// Checks `url` (`xmpp://HOST[:PORT]`, `ws://` or `wss://`: [`TargetUrl::parse_xmpp`]),
    /// resolves its host (blocking: once per run) and builds the TLS configuration from `tls`
    /// (for `wss://`, or for STARTTLS unless the policy is [`StartTlsPolicy::Never`]).
    pub fn resolve(url: &str, starttls: StartTlsPolicy, tls: &TlsOptions) -> Result<XmppTarget, TransportError> {
        let target = TargetUrl::parse_xmpp(url).map_err(|reason| TransportError::BadUrl {
            url: url.to_string(),
            reason,
        })?;
        let endpoint = Endpoint::resolve_target(target, tls)?;
        XmppTarget::with_endpoint(Arc::new(endpoint), starttls, tls)
    }

    /// A target whose URL was checked ([`TargetUrl::parse_xmpp`]) and resolved already (a run
    /// resolves its target once, before anything else).
    pub fn with_endpoint(
        endpoint: Arc<Endpoint>,
        starttls: StartTlsPolicy,
        tls: &TlsOptions,
    ) -> Result<XmppTarget, TransportError> {
        let tcp = endpoint.scheme() == Scheme::Xmpp;
        let tls = match (tcp, starttls) {
            (true, StartTlsPolicy::IfOffered | StartTlsPolicy::Required) => {
                Some(TlsConnector::from(tls::client_config_for(tls, &[])?))
            }
            _ => None,
        };
        Ok(XmppTarget {
            endpoint,
            starttls,
            tls,
        })
    }

    /// The resolved endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A WebSocket target (`ws://`, `wss://`).
    pub fn is_websocket(&self) -> bool {
        self.endpoint.scheme() != Scheme::Xmpp
    }

    /// The STARTTLS policy (TCP targets).
    pub fn starttls_policy(&self) -> StartTlsPolicy {
        match self.is_websocket() {
            true => StartTlsPolicy::Never,
            false => self.starttls,
        }
    }

    /// Connects (from `source`, bound towards loopback only) and, for WebSocket targets,
    /// upgrades; the stream is not opened yet.
    ///
    /// The connect and upgrade futures are boxed: they are large (TLS and WebSocket
    /// handshakes) and live only until connected, where a login waiting on its server keeps
    /// its future for as long as the server takes.
    pub async fn open(&self, source: Option<std::net::Ipv4Addr>) -> Result<Wire, XmppError> {
        let (stream, _) = Box::pin(self.endpoint.stream(source)).await?;
        match (self.is_websocket(), stream) {
            (true, stream) => Box::pin(Wire::websocket(stream, self.endpoint.url())).await,
            (false, Either::Left(tcp)) => Ok(Wire::Tcp(tcp)),
            (false, Either::Right(_)) => unreachable!("an xmpp:// endpoint has no TLS of its own"),
        }
    }

    /// Upgrades a TCP pipe with TLS (after `<proceed/>`), verifying the certificate for the
    /// XMPP `domain` (RFC 6120 13.7.2: the domain, not the host connected to).
    pub async fn starttls(&self, wire: Wire, domain: &str) -> Result<Wire, XmppError> {
        let (Wire::Tcp(tcp), Some(connector)) = (wire, &self.tls) else {
            return Err(XmppError::Tls("STARTTLS on a pipe that is not plain TCP".into()));
        };
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| XmppError::Tls(format!("server name {domain:?}: {e}")))?;
        let tls = (connector.connect(name, tcp).await).map_err(|e| connect::tls_error(domain, &e))?;
        Ok(Wire::Tls(Box::new(tls)))
    }
}

/// An open XMPP pipe.
pub enum Wire {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TCP after STARTTLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket (RFC 7395), over TCP or TLS.
    Ws(Box<WebSocketStream<Stream>>),
}

impl Wire {
    /// Whether each stanza needs its own `xmlns` (WebSocket framing).
    pub fn is_ws(&self) -> bool {
        matches!(self, Wire::Ws(_))
    }

    /// Opens a WebSocket on `stream` to `url`, asking for (and requiring) subprotocol `xmpp`.
    pub async fn websocket(stream: Stream, url: &str) -> Result<Wire, XmppError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| XmppError::Handshake(e.to_string()))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        let (ws, response) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
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
    ///
    /// Plain TCP waits for the socket to be readable before taking room in the parser's
    /// buffer, so an idle connection holds no read buffer; TLS reads into room taken first.
    /// A poll function, not an `async fn`: a connection's task holds this future while it
    /// waits, for as long as the connection lives (tokio's `readable()` future alone took
    /// 192 bytes).
    pub fn read_into<'a>(&'a mut self, parser: &'a mut StreamParser) -> impl Future<Output = io::Result<usize>> + 'a {
        std::future::poll_fn(move |cx| self.poll_read_into(cx, parser))
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, parser: &mut StreamParser) -> Poll<io::Result<usize>> {
        match self {
            Wire::Tcp(s) => loop {
                ready!(s.poll_read_ready(cx))?;
                match s.try_read_buf(parser.read_buf(READ_ROOM)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Readiness that was stale (the last read took everything): the room
                        // goes back rather than wait with the connection, idle, holding it.
                        parser.give_back();
                        continue;
                    }
                    read => return Poll::Ready(read),
                }
            },
            Wire::Tls(s) => tokio_util::io::poll_read_buf(Pin::new(s.as_mut()), cx, parser.read_buf(READ_ROOM)),
            Wire::Ws(ws) => loop {
                return Poll::Ready(match ready!(ws.poll_next_unpin(cx)) {
                    None | Some(Ok(WsMessage::Close(_))) => Ok(0),
                    Some(Ok(WsMessage::Text(t))) => {
                        parser.feed(t.as_bytes());
                        Ok(t.len().max(1))
                    }
                    Some(Ok(WsMessage::Binary(b))) => {
                        // RFC 7395 uses text messages; a binary one still holds UTF-8 XML.
                        parser.feed(&b);
                        Ok(b.len().max(1))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => Err(io::Error::other(e)),
                });
            },
        }
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
            Wire::Ws(ws) => match ws.get_ref() {
                Either::Left(tcp) => tcp,
                Either::Right(tls) => tls.get_ref().0,
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::xmpp::parser::Item;

    #[tokio::test]
    async fn a_connection_waiting_for_bytes_holds_no_read_room() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut server, _) = accepted.unwrap();
        let mut wire = Wire::Tcp(client.unwrap());
        let mut parser = StreamParser::default();
        server
            .write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><a/>")
            .await
            .unwrap();
        let mut items = Vec::new();
        while items.len() < 2 {
            assert!(wire.read_into(&mut parser).await.unwrap() > 0);
            while let Some(item) = parser.next_item().unwrap() {
                items.push(item);
            }
        }
        assert!(matches!(&items[1], Item::Element(e) if e.name == "a"));
        // Nothing more comes: the read waits, and holds no buffer while it does.
        let waited = tokio::time::timeout(Duration::from_millis(50), wire.read_into(&mut parser)).await;
        assert!(waited.is_err(), "nothing was sent");
        assert_eq!(parser.capacity(), 0);
    }
}
