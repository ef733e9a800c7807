//! Where connections go and how they get there: a `ws://` or `wss://` target URL (or, for the
//! XMPP driver, also `xmpp://`) checked once ([`TargetUrl`]), its host resolved once per run
//! ([`Endpoint::resolve`]), and each connection's TCP connect, TLS handshake and WebSocket
//! upgrade ([`Endpoint::websocket`]).
//!
//! Connections go to the resolved addresses (the last one that answered first, the others
//! when it does not), while the host *name* is what TLS verifies and sends as SNI, and what
//! the upgrade's `Host` header carries. A source address (127.0.0.x, to get past the ~28k
//! ephemeral ports of one address) is bound only when the destination is IPv4 loopback;
//! elsewhere the OS chooses. This module must not resolve names per connection, and knows
//! nothing of the protocol spoken over the socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Response, generate_request};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::either::Either;

use super::TransportError;
use super::tls::{self, TlsOptions};

/// A connection's byte stream: plain TCP, or TLS over it (boxed: a rustls connection is
/// large, and plain connections should not pay for its size).
pub type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The scheme of a target URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// WebSocket (`ws://`).
    Ws,
    /// WebSocket over TLS (`wss://`).
    Wss,
    /// XMPP over TCP (`xmpp://HOST[:PORT]`, RFC 6120; TLS by STARTTLS, not by the scheme).
    Xmpp,
}

impl Scheme {
    /// The scheme's name and default port.
    fn of(name: &str) -> Option<(Scheme, u16)> {
        match name.to_ascii_lowercase().as_str() {
            "ws" => Some((Scheme::Ws, 80)),
            "wss" => Some((Scheme::Wss, 443)),
            "xmpp" => Some((Scheme::Xmpp, 5222)),
            _ => None,
        }
    }
}

/// A checked target URL: `ws://` or `wss://` (or, for XMPP, `xmpp://`), a host name or IP
/// address, a port (80, 443 and 5222 by default) and a path (none for `xmpp://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// The URL as given (what the upgrade request is built from).
    pub url: String,
    /// Its scheme.
    pub scheme: Scheme,
    /// `wss://`: TLS from the first byte.
    pub tls: bool,
    /// Host name or IP address (an IPv6 address without its brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl TargetUrl {
    /// Checks a native target's `url` (`ws://` or `wss://`); the error says what is wrong with
    /// it (callers name the field).
    pub fn parse(url: &str) -> Result<TargetUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("not a URL: expected ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH")?;
        match Scheme::of(scheme) {
            Some((Scheme::Ws | Scheme::Wss, _)) => {}
            _ => return Err(format!("the scheme must be ws:// or wss://, not {scheme}://")),
        }
        if rest.split(['/', '?', '#']).next().unwrap_or_default().contains('@') {
            return Err(
                "user names and passwords do not go in the URL (log-in is target.secret or target.token_file)".into(),
            );
        }
        TargetUrl::parse_any(url)
    }

    /// Checks an XMPP target's `url`: `xmpp://HOST[:PORT]` (TCP, RFC 6120; port 5222 by
    /// default; no path) or a `ws://` / `wss://` WebSocket endpoint (RFC 7395).
    pub fn parse_xmpp(url: &str) -> Result<TargetUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("not a URL: expected xmpp://HOST[:PORT], ws://HOST[:PORT]/PATH or wss://HOST[:PORT]/PATH")?;
        let Some((scheme, _)) = Scheme::of(scheme) else {
            return Err(format!("the scheme must be xmpp://, ws:// or wss://, not {scheme}://"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err("user names and passwords do not go in the URL (JIDs are user@domain, \
                 the domain and passwords are settings of their own)"
                .into());
        }
        if scheme == Scheme::Xmpp && !matches!(&rest[authority.len()..], "" | "/") {
            return Err("an xmpp:// URL has no path: expected xmpp://HOST[:PORT]".into());
        }
        TargetUrl::parse_any(url)
    }

    /// The checks every scheme shares.
    fn parse_any(url: &str) -> Result<TargetUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
        let (scheme, default_port) = Scheme::of(scheme).ok_or("unknown scheme")?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("an IPv6 address needs its closing ]")?;
                if host.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(format!("[{host}] is not an IPv6 address"));
                }
                match after {
                    "" => (host, None),
                    _ => (host, Some(after.strip_prefix(':').ok_or("expected :PORT after ]")?)),
                }
            }
            None => match authority.split_once(':') {
                Some((_, p)) if p.contains(':') => return Err("an IPv6 address goes in brackets: [::1]".into()),
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("no host: expected ws://HOST[:PORT]/PATH".into());
        }
        if ServerName::try_from(host).is_err() {
            return Err(format!("{host:?} is not a host name or IP address"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("port {p:?} is not a number from 1 to 65535")),
            },
        };
        url.parse::<Uri>().map_err(|e| format!("not a valid URL ({e})"))?;
        Ok(TargetUrl {
            url: url.to_string(),
            scheme,
            tls: scheme == Scheme::Wss,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` as a `Host` header has it (an IPv6 address in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// TLS of a `wss://` target: the run's one connector, and the name to verify.
struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// A target resolved once: shared by every connection of a run.
pub struct Endpoint {
    target: TargetUrl,
    addrs: Vec<SocketAddr>,
    /// Index into `addrs` of the address that answered last: connections start there.
    preferred: AtomicUsize,
    tls: Option<Tls>,
}

impl Endpoint {
    /// Checks `url` and resolves its host (blocking: once, before any user starts); builds the
    /// TLS configuration of a `wss://` URL from `tls` (ignored for `ws://`).
    pub fn resolve(url: &str, tls: &TlsOptions) -> Result<Endpoint, TransportError> {
        let target = TargetUrl::parse(url).map_err(|reason| TransportError::BadUrl {
            url: url.to_string(),
            reason,
        })?;
        Endpoint::resolve_target(target, tls)
    }

    /// [`Endpoint::resolve`] of a URL checked already (an `xmpp://` one included: plain TCP,
    /// its TLS is the XMPP layer's STARTTLS).
    pub fn resolve_target(target: TargetUrl, tls: &TlsOptions) -> Result<Endpoint, TransportError> {
        let url = target.url.clone();
        let resolve_err = |error: String| TransportError::Resolve {
            host: target.host.clone(),
            error,
        };
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| resolve_err(e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_err("no addresses".into()));
        }
        let tls = match target.tls {
            false => None,
            true => Some(Tls {
                connector: TlsConnector::from(tls::client_config(tls)?),
                name: ServerName::try_from(target.host.clone()).map_err(|e| TransportError::BadUrl {
                    url: url.clone(),
                    reason: e.to_string(),
                })?,
            }),
        };
        Ok(Endpoint {
            target,
            addrs,
            preferred: AtomicUsize::new(0),
            tls,
        })
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    /// `host:port` (for a `Host` header).
    pub fn authority(&self) -> String {
        self.target.authority()
    }

    /// The URL's scheme.
    pub fn scheme(&self) -> Scheme {
        self.target.scheme
    }

    /// The addresses the host resolved to.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every address is loopback (source addresses can be spread over 127.0.0.x).
    pub fn is_loopback(&self) -> bool {
        self.addrs.iter().all(|a| a.ip().is_loopback())
    }

    /// A `wss://` target.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects and completes TLS (for `wss://`); returns the stream and its socket's
    /// descriptor (for an abortive close). `source` is bound only towards IPv4 loopback.
    pub async fn stream(&self, source: Option<Ipv4Addr>) -> Result<(Stream, RawFd), TransportError> {
        let tcp = self.tcp(source).await?;
        let fd = tcp.as_raw_fd();
        let stream = match &self.tls {
            None => Either::Left(tcp),
            Some(tls) => {
                let stream = tls
                    .connector
                    .connect(tls.name.clone(), tcp)
                    .await
                    .map_err(|e| tls_error(&self.target.host, &e))?;
                Either::Right(Box::new(stream))
            }
        };
        Ok((stream, fd))
    }

    /// [`Endpoint::stream`], then the WebSocket upgrade of the URL (its `Host` header names the
    /// host, not the address).
    pub async fn websocket(
        &self,
        source: Option<Ipv4Addr>,
        config: WebSocketConfig,
    ) -> Result<(WebSocketStream<Stream>, RawFd), TransportError> {
        let (stream, fd) = self.stream(source).await?;
        let ws = upgrade(stream, &self.target.url, config).await?;
        Ok((ws, fd))
    }

    /// One TLS handshake and a polite close: that the server is there and its certificate is
    /// trusted, checked once before the users start (not found out as thousands of failed
    /// connections). Nothing to check for `ws://`.
    pub async fn check_tls(&self) -> Result<(), TransportError> {
        if self.tls.is_none() {
            return Ok(());
        }
        let (mut stream, _) = self.stream(None).await?;
        let _ = stream.shutdown().await;
        Ok(())
    }

    /// TCP to the preferred address, then to the others in turn.
    async fn tcp(&self, source: Option<Ipv4Addr>) -> Result<TcpStream, TransportError> {
        let first = self.preferred.load(Relaxed);
        let mut last = None;
        for k in 0..self.addrs.len() {
            let i = (first + k) % self.addrs.len();
            let addr = self.addrs[i];
            match connect_tcp(addr, source).await {
                Ok(stream) => {
                    if i != first {
                        self.preferred.store(i, Relaxed);
                    }
                    return Ok(stream);
                }
                Err(error) => {
                    last = Some(TransportError::Connect {
                        addr: addr.to_string(),
                        error,
                    })
                }
            }
        }
        Err(last.expect("an endpoint has at least one address"))
    }
}

/// A TCP connection with no-delay; from `source` when the destination is IPv4 loopback.
async fn connect_tcp(addr: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let (Some(ip), IpAddr::V4(dest)) = (source, addr.ip())
        && dest.is_loopback()
    {
        no_port_at_bind(&socket);
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    let stream = socket.connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Asks the kernel to choose the source port at `connect` rather than at `bind`
/// (`IP_BIND_ADDRESS_NO_PORT`): a bind to port 0 must find a port free for *any* destination,
/// a search through every port bound on that address, which with 16,000 connections from one
/// source address took a third of the machine's CPU (`inet_bhash2_conflict` in `perf`); at
/// connect, the port only has to be free for this destination. Best effort: elsewhere the bind
/// works as before.
fn no_port_at_bind(socket: &TcpSocket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, and a c_int option value of the size given.
        let _ = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// Most bytes of an upgrade response's head.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The WebSocket upgrade of `url` over `stream` (RFC 6455 section 4.1, checked as tungstenite
/// checks it). Done here rather than by tungstenite's handshake: that one reads the response
/// into a 4 KiB buffer which then stays the connection's read buffer for good, whatever
/// `config.read_buffer_size` says; here the head is read into a buffer freed once it is parsed,
/// and the connection's read buffer is the configured size.
async fn upgrade(
    mut stream: Stream,
    url: &str,
    config: WebSocketConfig,
) -> Result<WebSocketStream<Stream>, TransportError> {
    let failed = |e: tungstenite::Error| TransportError::Handshake(e.to_string());
    let request = url.into_client_request().map_err(failed)?;
    let (request, key) = generate_request(request).map_err(failed)?;
    let io = |e: io::Error| failed(tungstenite::Error::Io(e));
    stream.write_all(&request).await.map_err(io)?;
    let mut head = Vec::with_capacity(1024);
    let (len, response) = loop {
        if let Some(parsed) = Response::try_parse(&head).map_err(failed)? {
            break parsed;
        }
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(TransportError::Handshake(format!(
                "the upgrade response's head is over {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        head.reserve(1024);
        if stream.read_buf(&mut head).await.map_err(io)? == 0 {
            return Err(failed(tungstenite::Error::ConnectionClosed));
        }
    };
    check_upgrade(&response, &derive_accept_key(key.as_bytes())).map_err(failed)?;
    // Frames the server sent right behind its response (none, as a rule) are read first.
    let tail = head[len..].to_vec();
    drop(head);
    Ok(WebSocketStream::from_partially_read(stream, tail, Role::Client, Some(config)).await)
}

/// The server's response accepts the upgrade: 101, `Upgrade: websocket`, `Connection: Upgrade`,
/// the accept key of the request's key, and no subprotocol (none is asked for).
fn check_upgrade(response: &Response, accept_key: &str) -> Result<(), tungstenite::Error> {
    use tungstenite::error::{ProtocolError, SubProtocolError};
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(tungstenite::Error::Http(Box::new(response.clone())));
    }
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(ProtocolError::MissingUpgradeWebSocketHeader.into());
    }
    if !header("Connection").is_some_and(|v| v.eq_ignore_ascii_case("Upgrade")) {
        return Err(ProtocolError::MissingConnectionUpgradeHeader.into());
    }
    if header("Sec-WebSocket-Accept") != Some(accept_key) {
        return Err(ProtocolError::SecWebSocketAcceptKeyMismatch.into());
    }
    if response.headers().contains_key("Sec-WebSocket-Protocol") {
        return Err(
            ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::ServerSentSubProtocolNoneRequested).into(),
        );
    }
    Ok(())
}

/// A failed handshake, with what to do about the usual causes.
pub(crate) fn tls_error(host: &str, e: &io::Error) -> TransportError {
    let hint = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_)) => {
            "; the server's certificate is not trusted: give its CA with --ca-file (target.ca_file), \
             or skip verification with --insecure (target.insecure)"
        }
        Some(rustls::Error::InvalidMessage(_)) => "; is the server speaking TLS? (ws:// is the plain scheme)",
        _ => "",
    };
    TransportError::Tls {
        host: host.to_string(),
        error: format!("{e}{hint}"),
    }
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
