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
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use thiserror::Error;

use super::login;
use super::outbound::Outbound;
use super::parser::ParseError;
use super::sasl::{Mechanism, SaslError};
use super::stanza::{Message, Presence, StanzaError};
use super::wire::XmppTarget;
use crate::transport::{FrameStats, Outbox, OutboxReader, TransportError};

/// One user's login.
#[derive(Clone)]
pub struct XmppConfig {
    /// Where to connect (resolved once, shared by a run's connections).
    pub target: Arc<XmppTarget>,
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
    /// Frames and bytes (the driver's counters, shared by its connections).
    pub stats: Arc<FrameStats>,
}

impl XmppConfig {
    /// Defaults: SCRAM if offered, XEP-0198 with ack requests, initial presence, 10 s timeout.
    pub fn new(target: Arc<XmppTarget>, domain: &str, user: &str, password: &str) -> XmppConfig {
        XmppConfig {
            target,
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
            stats: Arc::new(super::meter::frame_stats()),
        }
    }
}

/// Why a connection could not be opened or logged in.
#[derive(Debug, Error)]
pub enum XmppError {
    /// Connecting failed (TCP, or the TLS handshake of `wss://` or STARTTLS).
    #[error(transparent)]
    Transport(#[from] TransportError),
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
/// clone is dropped). The queue is an [`Outbox`]: nothing allocated until a stanza is queued.
#[derive(Clone)]
pub struct XmppSender {
    pub(super) tx: Outbox<Cmd>,
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
    pub events: Events,
    /// XEP-0198 is on (acks will come).
    pub sm: bool,
    /// When the login completed (initial presence written).
    pub logged_in_at: Instant,
}

/// Events buffered between the task and a slow consumer before the socket stops being read.
pub(super) const EVENT_QUEUE: usize = 1024;

/// What a connection hears, from its task (boxed: 8 bytes a slot in the queue, where an event
/// is 264), at most [`EVENT_QUEUE`] queued.
pub struct Events(pub(super) OutboxReader<Box<Stamped>>);

impl Stream for Events {
    type Item = Stamped;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Stamped>> {
        self.0.poll_recv(cx).map(|e| e.map(|e| *e))
    }
}

impl XmppConn {
    /// Connects and logs in (within `cfg.timeout`); the connection's task runs on the calling
    /// arbiter (or `LocalSet`).
    pub async fn connect(cfg: &XmppConfig) -> Result<XmppConn, XmppError> {
        match tokio::time::timeout(cfg.timeout, login::login(cfg)).await {
            Ok(r) => r,
            Err(_) => Err(XmppError::Timeout(cfg.timeout)),
        }
    }
}
