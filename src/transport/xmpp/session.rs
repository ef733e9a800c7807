//! One XMPP client connection: [`XmppConn::connect`] opens the pipe and logs in (stream open,
//! STARTTLS when offered and wanted, SASL, restart, bind, XEP-0198 enable when offered,
//! initial presence); a task on the calling arbiter then owns the socket until it closes.
//!
//! The task writes what the [`XmppSender`] queues (all that is queued, then one flush),
//! reads and parses, answers XEP-0199 pings and XEP-0198 `<r/>` itself, notices MUC
//! self-presences, and yields everything else as [`Event`]s, each stamped with the instant its
//! bytes were read; the last event is always [`Event::Closed`]. The events channel is bounded:
//! a consumer that stops reading stops the socket being read (the server's writes back up,
//! as with a stalled app), instead of growing a queue.
//!
//! XEP-0198 numbering: [`XmppSender::send`] returns the stanza's number in the stream (the
//! initial presence is 1, so the first stanza sent is 2); an [`Event::SmAck`] with `h`
//! acknowledges every stanza numbered up to `h`. Pongs and error answers the task sends are
//! queued through the same channel, so numbers and write order agree (and leave gaps).
//!
//! Futures and handles here are `!Send` (actix arbiters are single-threaded).

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::StreamExt;
use futures_util::stream::LocalBoxStream;
use thiserror::Error;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::http::Uri;

use super::outbound::{self as out, Outbound};
use super::parser::{ParseError, StreamParser};
use super::sasl::{self, Mechanism, SaslError, Scram};
use super::stanza::{Features, Incoming, IqType, Message, Presence, StanzaError};
use super::task::Task;
use super::wire::{StartTls, Wire};

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// RFC 6120 over TCP to a loopback address.
    Tcp {
        /// Server address (loopback only).
        addr: SocketAddr,
        /// STARTTLS policy.
        starttls: StartTls,
    },
    /// RFC 7395 over WebSocket, e.g. `ws://127.0.0.1:5280/xmpp-websocket` (loopback only).
    WebSocket {
        /// The endpoint.
        url: String,
    },
}

/// One user's login.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    /// Pipe.
    pub transport: Transport,
    /// The server's XMPP domain (`localhost`); JIDs are `user@domain`.
    pub domain: String,
    /// Account localpart.
    pub user: String,
    /// Password.
    pub password: String,
    /// Resource to bind (the device).
    pub resource: String,
    /// SASL mechanism; `None`: SCRAM-SHA-1 if offered, else PLAIN.
    pub mechanism: Option<Mechanism>,
    /// Enable XEP-0198 when offered.
    pub stream_management: bool,
    /// With XEP-0198: send `<r/>` after each batch of stanzas written, so each one gets an
    /// `<a/>` soon (the "server ack" of a message).
    pub ack_requests: bool,
    /// Send available presence after login (needed to receive messages to the bare JID).
    pub initial_presence: bool,
    /// Local address to bind (spreads many connections over source IPs).
    pub source: Option<Ipv4Addr>,
    /// Limit for connect plus login.
    pub timeout: Duration,
}

impl XmppConfig {
    /// Defaults: SCRAM if offered, XEP-0198 with ack requests, initial presence, 10 s timeout.
    pub fn new(transport: Transport, domain: &str, user: &str, password: &str) -> XmppConfig {
        XmppConfig {
            transport,
            domain: domain.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            resource: "ackstorm".to_string(),
            mechanism: None,
            stream_management: true,
            ack_requests: true,
            initial_presence: true,
            source: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a connection could not be opened or logged in.
#[derive(Debug, Error)]
pub enum XmppError {
    /// The target is not usable (not loopback, not a ws:// URL).
    #[error("bad XMPP target {target:?}: {reason}")]
    BadTarget {
        /// The address or URL.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// TCP connect failed.
    #[error("connect to {addr} failed: {error}")]
    Connect {
        /// Target address.
        addr: SocketAddr,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Reading or writing failed during login.
    #[error("I/O error during login: {0}")]
    Io(std::io::Error),
    /// The WebSocket handshake failed.
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// TLS setup or handshake failed.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The server requires STARTTLS and the config says never.
    #[error("the server requires STARTTLS but it is disabled")]
    TlsRequiredByServer,
    /// STARTTLS is required by the config and the server does not offer it.
    #[error("STARTTLS required but not offered by the server")]
    TlsNotOffered,
    /// The server's XML could not be parsed.
    #[error("bad XML from the server: {0}")]
    Parse(#[from] ParseError),
    /// No SASL mechanism in common.
    #[error("no usable SASL mechanism (server offers {offered:?})")]
    NoMechanism {
        /// What the server offered.
        offered: Vec<String>,
    },
    /// The server refused the credentials.
    #[error("authentication of {user:?} failed: {condition}")]
    AuthFailed {
        /// The user.
        user: String,
        /// SASL failure condition.
        condition: String,
    },
    /// The SCRAM exchange broke on the client side.
    #[error(transparent)]
    Sasl(#[from] SaslError),
    /// Binding (or legacy session) was refused.
    #[error("resource binding failed: {0}")]
    Bind(String),
    /// The server sent a stream error.
    #[error("stream error {condition}{}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    Stream {
        /// Condition.
        condition: String,
        /// Text.
        text: Option<String>,
    },
    /// Something other than what the login step expects.
    #[error("unexpected {got} while waiting for {wanted}")]
    Unexpected {
        /// What the step waits for.
        wanted: &'static str,
        /// What came (debug form, shortened).
        got: String,
    },
    /// The server closed during login.
    #[error("connection closed during login")]
    Closed,
    /// Connect and login took too long.
    #[error("connect and login timed out after {0:?}")]
    Timeout(Duration),
}

/// Why a logged-in connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`XmppSender::close`] (or every sender dropped): closed politely.
    Requested,
    /// [`XmppSender::abort`]: reset without a close handshake.
    Aborted,
    /// The server closed the stream.
    ServerClosed,
    /// The server sent a stream error (`conflict`: the same resource logged in elsewhere).
    StreamError {
        /// Condition.
        condition: String,
        /// Text.
        text: Option<String>,
    },
    /// The TCP connection ended without a stream close.
    Eof,
    /// Read or write failed.
    Io(String),
    /// The server's XML could not be parsed.
    Malformed(String),
}

/// What a connection hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message: text, receipt, marker, groupchat, error bounce.
    Message(Message),
    /// A join completed: the room sent this user's own presence.
    MucJoined {
        /// Room bare JID.
        room: String,
        /// Nick.
        nick: String,
    },
    /// A join failed.
    MucFailed {
        /// Room bare JID.
        room: String,
        /// Error condition.
        error: Option<StanzaError>,
    },
    /// Any other presence (other occupants, contacts).
    Presence(Presence),
    /// XEP-0198: the server handled our stanzas numbered up to `h`.
    SmAck {
        /// Handled count.
        h: u32,
    },
    /// An iq result or error (pings and unknown requests are answered by the task).
    Iq(super::stanza::Iq),
    /// The connection ended; always the last event.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// An [`Event`] and when its bytes were read.
#[derive(Debug, Clone)]
pub struct Stamped {
    /// When read off the socket.
    pub at: Instant,
    /// What it said.
    pub event: Event,
}

pub(super) enum Cmd {
    Stanza(Outbound),
    /// A stanza the task answers with itself (pong, error): numbered, but asks for no ack.
    Answer(Outbound),
    RequestAck,
    Close,
    Abort,
}

/// The connection has closed; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("XMPP connection closed")]
pub struct Closed;

/// Queues stanzas on a connection (cheap to clone; the connection closes politely when every
/// clone is dropped).
#[derive(Clone)]
pub struct XmppSender {
    pub(super) tx: mpsc::UnboundedSender<Cmd>,
    /// Stanzas queued so far in this stream (XEP-0198 numbering).
    pub(super) seq: Rc<Cell<u32>>,
}

impl XmppSender {
    /// Queues a stanza; returns its XEP-0198 number (see the module docs).
    pub fn send(&self, stanza: Outbound) -> Result<u32, Closed> {
        let n = self.seq.get().wrapping_add(1);
        self.tx.send(Cmd::Stanza(stanza)).map_err(|_| Closed)?;
        self.seq.set(n);
        Ok(n)
    }

    /// Asks the server for an `<a/>` now (XEP-0198 `<r/>`).
    pub fn request_ack(&self) -> Result<(), Closed> {
        self.tx.send(Cmd::RequestAck).map_err(|_| Closed)
    }

    /// Closes the stream politely (after what is queued).
    pub fn close(&self) {
        let _ = self.tx.send(Cmd::Close);
    }

    /// Resets the connection at once (a fault: RST, no stream close).
    pub fn abort(&self) {
        let _ = self.tx.send(Cmd::Abort);
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A logged-in connection.
pub struct XmppConn {
    /// The bound full JID (`user@domain/resource`).
    pub jid: String,
    /// Queues stanzas.
    pub sender: XmppSender,
    /// Everything heard, stamped; ends after [`Event::Closed`].
    pub events: LocalBoxStream<'static, Stamped>,
    /// XEP-0198 is on (acks will come).
    pub sm: bool,
    /// When the login completed (initial presence written).
    pub logged_in_at: Instant,
}

/// Events buffered between the task and a slow consumer before the socket stops being read.
const EVENT_QUEUE: usize = 1024;

impl XmppConn {
    /// Connects and logs in (within `cfg.timeout`); the connection's task runs on the calling
    /// arbiter (or `LocalSet`).
    pub async fn connect(cfg: &XmppConfig) -> Result<XmppConn, XmppError> {
        match tokio::time::timeout(cfg.timeout, login(cfg)).await {
            Ok(r) => r,
            Err(_) => Err(XmppError::Timeout(cfg.timeout)),
        }
    }
}

/// The login-time view of a stream: send text, take the next typed item.
struct Stream {
    wire: Wire,
    parser: StreamParser,
    buf: Vec<u8>,
    domain: String,
}

impl Stream {
    async fn send(&mut self, text: &str) -> Result<(), XmppError> {
        self.wire.send(text).await.map(drop).map_err(XmppError::Io)
    }

    async fn next(&mut self) -> Result<Incoming, XmppError> {
        loop {
            if let Some(item) = self.parser.next_item()? {
                return match Incoming::from_item(item) {
                    Incoming::StreamError { condition, text } => Err(XmppError::Stream { condition, text }),
                    Incoming::Close => Err(XmppError::Closed),
                    other => Ok(other),
                };
            }
            let n = (self.wire.read_into(&mut self.parser, &mut self.buf).await).map_err(XmppError::Io)?;
            if n == 0 {
                return Err(XmppError::Closed);
            }
        }
    }

    /// Opens (or restarts) the stream and returns the features.
    async fn open(&mut self) -> Result<Features, XmppError> {
        self.parser.reset();
        let header = match self.wire.is_ws() {
            true => out::ws_open(&self.domain),
            false => out::stream_header(&self.domain),
        };
        self.send(&header).await?;
        loop {
            match self.next().await? {
                Incoming::Open { .. } => continue,
                Incoming::Features(f) => return Ok(f),
                other => return Err(unexpected("<stream:features/>", &other)),
            }
        }
    }
}

fn unexpected(wanted: &'static str, got: &Incoming) -> XmppError {
    let mut got = format!("{got:?}");
    got.truncate(200);
    XmppError::Unexpected { wanted, got }
}

/// The loopback address of a target.
fn target_addr(transport: &Transport) -> Result<SocketAddr, XmppError> {
    let bad = |target: &str, reason: &str| XmppError::BadTarget {
        target: target.to_string(),
        reason: reason.to_string(),
    };
    let addr = match transport {
        Transport::Tcp { addr, .. } => *addr,
        Transport::WebSocket { url } => {
            let uri: Uri = url.parse().map_err(|_| bad(url, "not a URL"))?;
            if uri.scheme_str() != Some("ws") {
                return Err(bad(url, "the scheme must be ws://"));
            }
            let host = uri.host().ok_or_else(|| bad(url, "no host"))?;
            let host = if host == "localhost" { "127.0.0.1" } else { host };
            let ip: IpAddr =
                (host.trim_matches(['[', ']']).parse()).map_err(|_| bad(url, "the host must be an IP address"))?;
            SocketAddr::new(ip, uri.port_u16().unwrap_or(80))
        }
    };
    if !addr.ip().is_loopback() {
        return Err(bad(
            &addr.to_string(),
            "ackstorm only drives loopback targets (127.0.0.0/8, ::1)",
        ));
    }
    Ok(addr)
}

async fn tcp_connect(addr: SocketAddr, source: Option<Ipv4Addr>) -> Result<TcpStream, XmppError> {
    let err = |error| XmppError::Connect { addr, error };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(err)?;
    if let (Some(ip), SocketAddr::V4(_)) = (source, addr) {
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).map_err(err)?;
    }
    let tcp = socket.connect(addr).await.map_err(err)?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn login(cfg: &XmppConfig) -> Result<XmppConn, XmppError> {
    let addr = target_addr(&cfg.transport)?;
    let tcp = tcp_connect(addr, cfg.source).await?;
    let wire = match &cfg.transport {
        Transport::Tcp { .. } => Wire::Tcp(tcp),
        Transport::WebSocket { url } => Wire::websocket(tcp, url).await?,
    };
    let ws = wire.is_ws();
    let mut s = Stream {
        wire,
        parser: StreamParser::default(),
        buf: vec![0; 4096],
        domain: cfg.domain.clone(),
    };
    let mut features = s.open().await?;
    if let Transport::Tcp { starttls, .. } = &cfg.transport {
        let trust = match (starttls, features.starttls) {
            (StartTls::Never, Some(true)) => return Err(XmppError::TlsRequiredByServer),
            (StartTls::Required(_), None) => return Err(XmppError::TlsNotOffered),
            (StartTls::IfOffered(t) | StartTls::Required(t), Some(_)) => Some(t),
            _ => None,
        };
        if let Some(trust) = trust {
            s.send(out::STARTTLS).await?;
            match s.next().await? {
                Incoming::TlsProceed => {}
                other => return Err(unexpected("<proceed/>", &other)),
            }
            let Stream {
                wire,
                parser,
                buf,
                domain,
            } = s;
            s = Stream {
                wire: wire.starttls(&cfg.domain, trust).await?,
                parser,
                buf,
                domain,
            };
            features = s.open().await?;
        }
    }
    authenticate(&mut s, cfg, &features).await?;
    let features = s.open().await?;
    if !features.bind {
        return Err(XmppError::Bind("the server offers no resource binding".into()));
    }
    // Stanzas that arrive before login ends (rare: nothing routes to an unavailable resource)
    // are kept for the task, so none is lost.
    let mut early = Vec::new();
    s.send(&out::bind("bind", &cfg.resource, ws)).await?;
    let jid = expect_result(&mut s, "bind", &mut early).await?.bind_jid;
    let jid = jid.ok_or_else(|| XmppError::Bind("the bind result has no JID".into()))?;
    if features.session_required {
        s.send(&out::session("sess", ws)).await?;
        expect_result(&mut s, "sess", &mut early).await?;
    }
    let mut sm = false;
    if cfg.stream_management && features.sm {
        s.send(out::SM_ENABLE).await?;
        loop {
            match s.next().await? {
                Incoming::SmEnabled { .. } => break sm = true,
                Incoming::SmFailed(_) => break,
                other if other.is_stanza() => early.push(other),
                _ => {}
            }
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = XmppSender {
        tx,
        seq: Rc::new(Cell::new(0)),
    };
    if cfg.initial_presence {
        s.send(&Outbound::Presence.encode(ws)).await?;
        sender.seq.set(1);
    }
    let logged_in_at = Instant::now();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let task = Task::new(s.wire, s.parser, s.buf, rx, &sender, events_tx, sm, cfg.ack_requests);
    actix_rt::spawn(task.run(early));
    let events = futures_util::stream::unfold(events_rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    Ok(XmppConn {
        jid,
        sender,
        events: events.boxed_local(),
        sm,
        logged_in_at,
    })
}

async fn expect_result(s: &mut Stream, id: &str, early: &mut Vec<Incoming>) -> Result<super::stanza::Iq, XmppError> {
    loop {
        match s.next().await? {
            Incoming::Iq(iq) if iq.id == id => {
                return match iq.kind {
                    IqType::Result => Ok(iq),
                    _ => Err(XmppError::Bind(iq.error.map_or("error".into(), |e| e.condition))),
                };
            }
            other if other.is_stanza() => early.push(other),
            _ => {}
        }
    }
}

async fn authenticate(s: &mut Stream, cfg: &XmppConfig, features: &Features) -> Result<(), XmppError> {
    let mech = Mechanism::choose(&features.mechanisms, cfg.mechanism).ok_or_else(|| XmppError::NoMechanism {
        offered: features.mechanisms.clone(),
    })?;
    let failed = |condition: String| XmppError::AuthFailed {
        user: cfg.user.clone(),
        condition,
    };
    match mech {
        Mechanism::Plain => {
            s.send(&out::auth(mech.as_str(), &sasl::plain(&cfg.user, &cfg.password)))
                .await?;
            match s.next().await? {
                Incoming::SaslSuccess(_) => Ok(()),
                Incoming::SaslFailure(c) => Err(failed(c)),
                other => Err(unexpected("<success/>", &other)),
            }
        }
        Mechanism::ScramSha1 => {
            let mut scram = Scram::new(&cfg.user, &cfg.password, &sasl::random_nonce());
            s.send(&out::auth(mech.as_str(), scram.client_first().as_bytes()))
                .await?;
            let server_first = match s.next().await? {
                Incoming::SaslChallenge(c) => decode(&c)?,
                Incoming::SaslFailure(c) => return Err(failed(c)),
                other => return Err(unexpected("<challenge/>", &other)),
            };
            let client_final = scram.client_final(&server_first)?;
            s.send(&out::response(client_final.as_bytes())).await?;
            match s.next().await? {
                Incoming::SaslSuccess(data) => Ok(scram.verify_server_final(&decode(&data)?)?),
                Incoming::SaslChallenge(data) => {
                    scram.verify_server_final(&decode(&data)?)?;
                    s.send(&out::response(b"")).await?;
                    match s.next().await? {
                        Incoming::SaslSuccess(_) => Ok(()),
                        Incoming::SaslFailure(c) => Err(failed(c)),
                        other => Err(unexpected("<success/>", &other)),
                    }
                }
                Incoming::SaslFailure(c) => Err(failed(c)),
                other => Err(unexpected("<success/>", &other)),
            }
        }
    }
}

/// A SASL payload: base64 (`=` or nothing for empty) of UTF-8 text.
fn decode(b64: &str) -> Result<String, XmppError> {
    let bad = |reason| SaslError::Malformed {
        message: b64.to_string(),
        reason,
    };
    let bytes = match b64 {
        "" | "=" => Vec::new(),
        _ => B64.decode(b64).map_err(|_| bad("not base64"))?,
    };
    Ok(String::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?)
}
