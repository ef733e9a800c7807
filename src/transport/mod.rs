//! How simulated users reach a server: a [`Driver`] opens device connections that take
//! semantic operations ([`Op`]) and yield semantic events ([`Inbound`]).
//!
//! User actors speak only these types, so behaviour and wire protocol stay apart: the
//! [`native`] driver speaks PROTOCOL.md over WebSocket; an XMPP driver can map the same
//! operations onto stanzas. Drivers count frames and bytes in a shared [`FrameStats`].
//!
//! Connections live on the actor's own arbiter (single-threaded runtime), so futures and
//! streams here are `!Send`.

pub mod native;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

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
    /// A text message; `seq` comes back in [`Inbound::Accepted`].
    Send {
        /// The sender's own message number.
        seq: u64,
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
    /// Keep-alive / round-trip probe.
    Ping,
    /// Close the connection (a user going offline).
    Close,
}

/// Kinds of operations, to attribute replies and errors (carried in `req`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `send`.
    Send,
    /// `delivery`.
    Delivery,
    /// `read`.
    Read,
    /// `channel`.
    Channel,
    /// Group management.
    Group,
    /// `ping`.
    Ping,
    /// `login`.
    Login,
}

/// What a connection hears from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// The server took a message (`received` with the client's id).
    Accepted {
        /// The sender's message number.
        seq: u64,
        /// Server message id.
        mid: u64,
        /// Group receipts kept (`groupAck`), for messages that asked.
        group_ack: Option<bool>,
    },
    /// The server took a receipt or channel ack; `id` is its server id.
    Acked {
        /// What was acknowledged.
        kind: OpKind,
        /// Receipt id.
        id: u64,
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
    /// A reply to a group operation or query.
    Result,
    /// A reply to `ping`.
    Pong,
    /// An error reply.
    Error {
        /// The error code.
        code: ErrorCode,
        /// The operation it answers, when the server echoed `req`.
        op: Option<OpKind>,
        /// The server's text.
        message: String,
    },
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
pub type Outbox = mpsc::UnboundedSender<Op>;

/// An open, logged-in connection.
pub struct Connection {
    /// Operations to send, in order.
    pub out: Outbox,
    /// Everything the server sends, timestamped; ends with [`Inbound::Closed`].
    pub events: LocalBoxStream<'static, Timed>,
    /// When `loginOk` arrived.
    pub logged_in_at: Instant,
}

/// Why a connection could not be opened.
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
    #[error("connect to {addr} failed: {source}")]
    Connect {
        /// Target address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
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
    #[error("connect and login timed out")]
    Timeout,
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

/// Frames and bytes through every connection of a driver.
#[derive(Debug)]
pub struct FrameStats {
    sent: [AtomicU64; CLIENT_OPS.len()],
    received: [AtomicU64; SERVER_OPS.len()],
    /// Payload bytes sent.
    pub bytes_sent: AtomicU64,
    /// Payload bytes received.
    pub bytes_received: AtomicU64,
    /// Server frames that could not be parsed.
    pub unparseable: AtomicU64,
}

impl Default for FrameStats {
    fn default() -> Self {
        FrameStats {
            sent: std::array::from_fn(|_| AtomicU64::new(0)),
            received: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            unparseable: AtomicU64::new(0),
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
