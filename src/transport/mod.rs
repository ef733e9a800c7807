//! How simulated users reach a server: a [`Driver`] opens device connections that take
//! semantic operations ([`Op`], each with a request number) and yield semantic events
//! ([`Inbound`]).
//!
//! User actors speak only these types, so behaviour and wire protocol stay apart: the
//! [`native`] driver speaks the receipts protocol over WebSocket; an XMPP driver can map the
//! same operations onto stanzas. Every operation that the server answers carries a request
//! number chosen by the user actor and comes back on its [`Reply`], so the actor can audit
//! that each got exactly one answer and resend what a dropped connection never answered.
//! Drivers count frames, bytes and malformed server frames in a shared [`FrameStats`].
//!
//! Connections live on the actor's own arbiter (single-threaded runtime), so futures and
//! streams here are `!Send`.

pub mod native;
pub mod xmpp;

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::protocol::client::CLIENT_OPS;
use crate::protocol::server::SERVER_OPS;
use crate::protocol::{ChatType, ErrorCode};

/// Who logs in on a connection.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// User id.
    pub user: Arc<str>,
    /// Device id.
    pub device: Arc<str>,
    /// The device sends delivery receipts.
    pub delivery: bool,
}

/// What a user asks its connection to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A text message.
    Send {
        /// The client's id of the message: unique per sender across runs, and the same on a
        /// resend, so the server can drop the repeat.
        id: String,
        /// One-to-one or group.
        chat: ChatType,
        /// Peer or group id.
        to: Arc<str>,
        /// Message text.
        body: String,
        /// Ask for group read receipts.
        allow_group_ack: bool,
    },
    /// A delivery receipt for message `mid` from `to`.
    Delivery {
        /// The message.
        mid: u64,
        /// Its sender.
        to: Arc<str>,
    },
    /// A read receipt: 1:1 (`to` = sender) or group (`to` = group).
    Read {
        /// One-to-one or group.
        chat: ChatType,
        /// The message.
        mid: u64,
        /// Sender or group.
        to: Arc<str>,
    },
    /// A conversation-level read ack.
    Channel {
        /// One-to-one or group.
        chat: ChatType,
        /// Peer or group.
        to: Arc<str>,
    },
    /// Create a group owned by this user.
    CreateGroup {
        /// Group id.
        group: Arc<str>,
        /// Members.
        members: Vec<Arc<str>>,
        /// Admins.
        admins: Vec<Arc<str>>,
    },
    /// One page of the readers of a group message.
    ReadUsers {
        /// The group.
        group: Arc<str>,
        /// The message.
        mid: u64,
        /// Page size.
        limit: u32,
        /// The previous page's `next_key`.
        key: Option<String>,
    },
    /// Keep-alive / round-trip probe.
    Ping,
}

/// What goes down a connection's outbox.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// An operation the server answers; `req` comes back on its [`Reply`].
    Request {
        /// The actor's request number (unique per user for the whole run).
        req: u64,
        /// What to send.
        op: Op,
    },
    /// Close the connection politely (a user going offline).
    Close,
    /// Reset the connection at once (a fault: no close handshake; the socket is aborted).
    Abort,
}

/// The server's answer to one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A message was accepted (`received` for a send).
    Accepted {
        /// Server message id.
        mid: u64,
        /// Group receipts kept (`groupAck`), for messages that asked.
        group_ack: Option<bool>,
        /// The server had already accepted this client id (a resend).
        duplicate: bool,
    },
    /// A receipt or ack was taken; `id` is its server id.
    Acked {
        /// Receipt id.
        id: u64,
    },
    /// A page of readers of a group message.
    ReadUsers {
        /// Reader ids on this page.
        users: Vec<String>,
        /// Key of the next page (`None` on the last).
        next_key: Option<String>,
        /// The last page.
        is_last: bool,
    },
    /// Any other result (group operations, queries).
    Result,
    /// A reply to `ping`.
    Pong,
    /// Refused.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The server's text.
        message: String,
    },
}

/// What a connection hears from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The answer to a request; `req` is `None` when the server's `req` is missing or not one
    /// this client sends (such a reply can be matched to nothing).
    Reply {
        /// The request number.
        req: Option<u64>,
        /// The answer.
        reply: Reply,
    },
    /// A message pushed to this device.
    Message {
        /// Server message id.
        mid: u64,
        /// Sender id.
        from: String,
        /// Recipient user or group id.
        to: String,
        /// One-to-one or group.
        chat: ChatType,
        /// Message text.
        body: String,
        /// Group receipts are kept for it.
        receipts: bool,
    },
    /// A delivery receipt for a message this user sent.
    Delivery {
        /// The message.
        mid: u64,
        /// The recipient.
        from: String,
        /// Pushed live (false: replayed at login).
        live: bool,
    },
    /// A read receipt for a message this user sent.
    Read {
        /// The message.
        mid: u64,
        /// The reader.
        from: String,
        /// One-to-one or group.
        chat: ChatType,
        /// Group: distinct readers so far.
        count: Option<u64>,
        /// Pushed live.
        live: bool,
    },
    /// A 1:1 channel ack from a peer (or from this user's other device).
    Channel {
        /// The ack's server id.
        id: u64,
        /// Who acked.
        from: String,
        /// The acked conversation's peer.
        to: String,
        /// Pushed live.
        live: bool,
    },
    /// Group read counts that arrived while offline: (mid, group, count).
    Statistic(Vec<(u64, String, u64)>),
    /// Same user and device logged in elsewhere.
    Kicked,
    /// The connection ended.
    Closed,
}

/// An [`Inbound`] with the instant it was read off the socket.
#[derive(Debug, Clone)]
pub struct Timed {
    /// When the frame was read.
    pub at: Instant,
    /// What it said.
    pub event: Inbound,
}

/// The sending half of a connection.
pub type Outbox = mpsc::UnboundedSender<Command>;

/// Stops a connection's reader for a while (a fault: the app stops reading its socket, so
/// the server's writes back up), shared between the connection's stream and its user.
#[derive(Debug, Clone, Default)]
pub struct Stall(Rc<Cell<Option<tokio::time::Instant>>>);

impl Stall {
    /// Stops reading for `d` from now.
    pub fn stall_for(&self, d: Duration) {
        self.0.set(Some(tokio::time::Instant::now() + d));
    }

    /// Wraps a stream so that it yields nothing while stalled.
    pub fn wrap<S: Stream + Unpin + 'static>(&self, inner: S) -> Stalled<S> {
        Stalled {
            inner,
            until: self.0.clone(),
            sleep: None,
        }
    }
}

/// A stream that pauses while its [`Stall`] says so.
pub struct Stalled<S> {
    inner: S,
    until: Rc<Cell<Option<tokio::time::Instant>>>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: Stream + Unpin> Stream for Stalled<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if let Some(until) = self.until.get() {
            if until > tokio::time::Instant::now() {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                if sleep.deadline() != until {
                    sleep.as_mut().reset(until);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.until.set(None);
            self.sleep = None;
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// An open, logged-in connection.
pub struct Connection {
    /// Operations to send, in order.
    pub out: Outbox,
    /// Everything the server sends, timestamped; ends with [`Inbound::Closed`].
    pub events: LocalBoxStream<'static, Timed>,
    /// When `loginOk` arrived.
    pub logged_in_at: Instant,
    /// Pauses `events` (fault injection).
    pub stall: Stall,
}

/// Why a connection could not be opened. Each variant states its cause once (the `source`
/// is not repeated in the text, so an error chain reads cleanly).
#[derive(Debug, Error)]
pub enum TransportError {
    /// The target URL is not usable.
    #[error("bad target URL {url:?}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// TCP connect failed (refused, out of ports or file descriptors).
    #[error("connect to {addr} failed: {error}")]
    Connect {
        /// Target address.
        addr: String,
        /// The I/O error (in the text, so deliberately not a `source`).
        error: std::io::Error,
    },
    /// The WebSocket handshake failed.
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// The server refused the login.
    #[error("login refused: {code}: {message}")]
    LoginRefused {
        /// Error code.
        code: ErrorCode,
        /// Server text.
        message: String,
    },
    /// No token for this user (token file targets).
    #[error("no token for user {0:?} in the token file")]
    NoToken(String),
    /// Connect and login took longer than the timeout.
    #[error("connect and login timed out after {0:?}")]
    Timeout(Duration),
    /// The connection closed during login.
    #[error("connection closed during login")]
    Closed,
}

/// Opens connections to one target.
pub trait Driver: Send + Sync + 'static {
    /// Connects, logs in, and returns the connection (run on the calling arbiter).
    fn connect(&self, login: LoginSpec) -> LocalBoxFuture<'static, Result<Connection, TransportError>>;

    /// Protocol name for reports (`native`, ...).
    fn name(&self) -> &'static str;
}

/// Why a server frame could not be used; counted per cause, never dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolFault {
    /// Not JSON, or not a JSON object.
    InvalidJson,
    /// An `op` the protocol does not have.
    UnknownOp,
    /// A known op with a missing or wrong field (bad ids included).
    BadFrame,
    /// A binary WebSocket frame (the protocol uses text frames only).
    Binary,
}

impl ProtocolFault {
    /// Every cause, in counter order.
    pub const ALL: [ProtocolFault; 4] = [
        ProtocolFault::InvalidJson,
        ProtocolFault::UnknownOp,
        ProtocolFault::BadFrame,
        ProtocolFault::Binary,
    ];

    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolFault::InvalidJson => "invalid_json",
            ProtocolFault::UnknownOp => "unknown_op",
            ProtocolFault::BadFrame => "bad_frame",
            ProtocolFault::Binary => "binary",
        }
    }
}

/// Frames and bytes through every connection of a driver.
#[derive(Debug)]
pub struct FrameStats {
    sent: [AtomicU64; CLIENT_OPS.len()],
    received: [AtomicU64; SERVER_OPS.len()],
    faults: [AtomicU64; ProtocolFault::ALL.len()],
    /// Payload bytes sent.
    pub bytes_sent: AtomicU64,
    /// Payload bytes received.
    pub bytes_received: AtomicU64,
}

impl Default for FrameStats {
    fn default() -> Self {
        FrameStats {
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            received: std::array::from_fn(|_| AtomicU64::new(0)),
            faults: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        }
    }
}

impl FrameStats {
    /// Counts a sent frame of client op `op` (index into `CLIENT_OPS`).
    pub fn sent(&self, op: usize, bytes: usize) {
        self.sent[op].fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a received frame of server op `op` (index into `SERVER_OPS`).
    pub fn received(&self, op: usize, bytes: usize) {
        self.received[op].fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a server frame that could not be used.
    pub fn fault(&self, cause: ProtocolFault, bytes: usize) {
        self.faults[cause as usize].fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    /// Unusable server frames by cause (every cause, zeros included).
    pub fn faults_by_cause(&self) -> Vec<(&'static str, u64)> {
        ProtocolFault::ALL
            .iter()
            .zip(&self.faults)
            .map(|(c, n)| (c.as_str(), n.load(Relaxed)))
            .collect()
    }

    /// All unusable server frames.
    pub fn total_faults(&self) -> u64 {
        self.faults.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sent frames by op name.
    pub fn sent_by_op(&self) -> Vec<(&'static str, u64)> {
        CLIENT_OPS
            .iter()
            .zip(&self.sent)
            .map(|(n, c)| (*n, c.load(Relaxed)))
            .collect()
    }

    /// Received frames by op name.
    pub fn received_by_op(&self) -> Vec<(&'static str, u64)> {
        SERVER_OPS
            .iter()
            .zip(&self.received)
            .map(|(n, c)| (*n, c.load(Relaxed)))
            .collect()
    }

    /// All frames sent.
    pub fn total_sent(&self) -> u64 {
        self.sent.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// All frames received.
    pub fn total_received(&self) -> u64 {
        self.received.iter().map(|c| c.load(Relaxed)).sum()
    }
}
