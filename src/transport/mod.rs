//! How simulated users reach a server: a [`Driver`] opens device connections that take
//! semantic operations ([`Op`], each with a request number) and yield semantic events
//! ([`Inbound`]).
//!
//! This is the neutral vocabulary between the simulation and any wire protocol: message ids
//! are opaque text ([`MsgId`]), conversations are one-to-one or group ([`Chat`]), refusals
//! carry the protocol's own code name ([`Refusal`]), and a driver says what its protocol can
//! report at all ([`Capabilities`]), so that a figure a protocol cannot give is shown as not
//! available rather than as zero. User actors, the collector and the runner speak only these
//! types; each protocol's op tables and id formats stay inside its driver ([`native`]: the
//! receipts protocol over WebSocket; docs/drivers.md shows how to write another).
//!
//! Every operation that the server answers carries a request number chosen by the user actor
//! and comes back on its [`Reply`], so the actor can audit that each got exactly one answer and
//! resend what a dropped connection never answered. Drivers count frames, bytes and malformed
//! server frames in their [`FrameStats`].
//!
//! Connections live on the actor's own arbiter (single-threaded runtime), so futures and
//! streams here are `!Send`.

pub mod conformance;
pub mod connect;
pub mod native;
mod outbox;
mod stats;
pub mod tls;
pub mod xmpp;

use std::cell::Cell;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use futures_util::stream::LocalBoxStream;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use outbox::{Outbox, OutboxReader, outbox};
pub use stats::{FrameStats, ProtocolFault};

/// A message's id as its server names it: opaque text, compared only for equality (the
/// native driver's decimal server ids, an XMPP server's stanza ids). Ids up to 24 bytes are
/// kept inline, so the common ones cost no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MsgId(CompactString);

impl MsgId {
    /// An id from its text.
    pub fn new(text: &str) -> MsgId {
        MsgId(CompactString::new(text))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for MsgId {
    fn from(n: u64) -> MsgId {
        let mut buf = itoa::Buffer::new();
        MsgId(CompactString::new(buf.format(n)))
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One-to-one or group conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Chat {
    /// Between two users.
    Single,
    /// In a group (a room).
    Group,
}

/// Why a server refused a request: the protocol's own name for it, and whether it was a
/// rate limit (the tester then counts the server's pushback apart from failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The protocol's code (native: `not_found`, ...; XMPP: the stanza error condition).
    /// Read back from a shard's event log, a code is interned: each distinct one is kept once.
    pub code: &'static str,
    /// The server refused for its rate limit.
    pub rate_limited: bool,
}

/// Something a protocol may or may not report. A metric or audit kind that needs a
/// capability the driver lacks is shown as "not available", never as zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The server answers each send (`received`; XMPP: XEP-0198 `<a/>` when enabled).
    ServerAcks,
    /// Delivery receipts reach senders.
    DeliveryReceipts,
    /// Readers' acks of a group message reach its sender with a count of distinct readers.
    GroupReadCounts,
    /// Read counts that changed while a sender was offline are replayed at its login.
    OfflineStatistic,
    /// The readers of a group message can be listed.
    ReadUsers,
    /// Conversation-level read acks reach the peer (as their own push, or as the read
    /// receipt of the newest message they cover).
    ChannelAcks,
    /// Conversation-level read acks reach the reader's other devices.
    ChannelSync,
    /// Group read counts are counted by the server (without it, each sender's client counts
    /// the readers' markers: the figures are the client's, and the report says so).
    ServerReadCounts,
    /// Group messages sent while a member was offline are replayed at its next login
    /// (without it, they are owed only to members online when they were sent).
    OfflineGroupMessages,
    /// Groups are created through the protocol (rather than joined into being).
    CreateGroups,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 10] = [
        Capability::ServerAcks,
        Capability::DeliveryReceipts,
        Capability::GroupReadCounts,
        Capability::OfflineStatistic,
        Capability::ReadUsers,
        Capability::ChannelAcks,
        Capability::ChannelSync,
        Capability::ServerReadCounts,
        Capability::OfflineGroupMessages,
        Capability::CreateGroups,
    ];

    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::ServerAcks => "server_acks",
            Capability::DeliveryReceipts => "delivery_receipts",
            Capability::GroupReadCounts => "group_read_counts",
            Capability::OfflineStatistic => "offline_statistic",
            Capability::ReadUsers => "read_users",
            Capability::ChannelAcks => "channel_acks",
            Capability::ChannelSync => "channel_sync",
            Capability::ServerReadCounts => "server_read_counts",
            Capability::OfflineGroupMessages => "offline_group_messages",
            Capability::CreateGroups => "create_groups",
        }
    }
}

/// The capabilities a driver's protocol has (by default, all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities(u32);

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::ALL
    }
}

impl Capabilities {
    /// Every capability (the native protocol).
    pub const ALL: Capabilities = Capabilities(u32::MAX >> (32 - Capability::ALL.len()));

    /// All but these.
    pub fn without(missing: &[Capability]) -> Capabilities {
        Capabilities(missing.iter().fold(Self::ALL.0, |set, c| set & !(1 << *c as u32)))
    }

    /// Whether the protocol has `c`.
    pub fn has(self, c: Capability) -> bool {
        self.0 & (1 << c as u32) != 0
    }

    /// The same set without `c`.
    pub fn without_one(self, c: Capability) -> Capabilities {
        Capabilities(self.0 & !(1 << c as u32))
    }

    /// The capabilities not in the set (what a results folder records).
    pub fn missing(self) -> Vec<Capability> {
        Capability::ALL.into_iter().filter(|c| !self.has(*c)).collect()
    }
}

impl<'de> Deserialize<'de> for Refusal {
    /// A refusal read back from an event log, its code as the `&'static str` the drivers
    /// use: each distinct code is leaked once and shared after (a protocol has a handful).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Refusal, D::Error> {
        #[derive(Deserialize)]
        struct Owned {
            code: String,
            rate_limited: bool,
        }
        static CODES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let Owned { code, rate_limited } = Owned::deserialize(d)?;
        let mut codes = CODES.lock().unwrap_or_else(|e| e.into_inner());
        let code = match codes.iter().find(|c| **c == code) {
            Some(c) => *c,
            None => {
                let leaked: &'static str = Box::leak(code.into_boxed_str());
                codes.push(leaked);
                leaked
            }
        };
        Ok(Refusal { code, rate_limited })
    }
}

/// Who logs in on a connection.
#[derive(Debug, Clone)]
pub struct LoginSpec {
    /// User id.
    pub user: Arc<str>,
    /// Device id.
    pub device: Arc<str>,
    /// The device sends delivery receipts.
    pub delivery: bool,
    /// The groups the user is in (a protocol whose group membership is presence in a room,
    /// such as XMPP MUC, joins them before the connection counts as logged in; the native
    /// server knows its members already).
    pub groups: Arc<[Arc<str>]>,
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
        chat: Chat,
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
        mid: MsgId,
        /// Its sender.
        to: Arc<str>,
    },
    /// A read receipt: 1:1 (`to` = sender) or group (`to` = group).
    Read {
        /// One-to-one or group.
        chat: Chat,
        /// The message.
        mid: MsgId,
        /// Sender or group.
        to: Arc<str>,
    },
    /// A conversation-level read ack: everything in the conversation up to now is read.
    Channel {
        /// One-to-one or group.
        chat: Chat,
        /// Peer or group.
        to: Arc<str>,
        /// The newest message the reader had received in it (a protocol without
        /// conversation acks marks this one read, which covers all before it).
        newest: Option<MsgId>,
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
        mid: MsgId,
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
        mid: MsgId,
        /// Group receipts kept (`groupAck`), for messages that asked.
        group_ack: Option<bool>,
        /// The server had already accepted this client id (a resend).
        duplicate: bool,
    },
    /// A receipt or ack was taken.
    Acked,
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
        /// Why.
        refusal: Refusal,
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
        mid: MsgId,
        /// Sender id.
        from: String,
        /// Recipient user or group id.
        to: String,
        /// One-to-one or group.
        chat: Chat,
        /// Message text.
        body: String,
        /// Group receipts are kept for it.
        receipts: bool,
    },
    /// A delivery receipt for a message this user sent.
    Delivery {
        /// The message.
        mid: MsgId,
        /// The recipient.
        from: String,
        /// Pushed live (false: replayed at login).
        live: bool,
    },
    /// A read receipt for a message this user sent.
    Read {
        /// The message.
        mid: MsgId,
        /// The reader.
        from: String,
        /// One-to-one or group.
        chat: Chat,
        /// Group: distinct readers so far.
        count: Option<u64>,
        /// Pushed live.
        live: bool,
    },
    /// A 1:1 channel ack from a peer (or from this user's other device).
    Channel {
        /// Who acked.
        from: String,
        /// The acked conversation's peer.
        to: String,
        /// Pushed live.
        live: bool,
    },
    /// Group read counts that changed while the sender was offline, replayed at login:
    /// (message, group, distinct readers).
    ReadCounts(Vec<(MsgId, String, u64)>),
    /// The connection ended (closed by either side, reset, or replaced by a login elsewhere).
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
            stall: self.clone(),
            sleep: None,
        }
    }

    /// Whether reading is stopped now; if so, `cx` is woken when it may go on. `sleep` is the
    /// reader's timer, made only while it is stalled.
    pub fn poll_stalled(&self, sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>, cx: &mut Context<'_>) -> bool {
        let Some(until) = self.0.get() else {
            return false;
        };
        if until > tokio::time::Instant::now() {
            let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if sleep.deadline() != until {
                sleep.as_mut().reset(until);
            }
            if sleep.as_mut().poll(cx).is_pending() {
                return true;
            }
        }
        self.0.set(None);
        *sleep = None;
        false
    }
}

/// A stream that pauses while its [`Stall`] says so.
pub struct Stalled<S> {
    inner: S,
    stall: Stall,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: Stream + Unpin> Stream for Stalled<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        if this.stall.poll_stalled(&mut this.sleep, cx) {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_next(cx)
    }
}

/// An open, logged-in connection.
pub struct Connection {
    /// Operations to send, in order.
    pub out: Outbox,
    /// Everything the server sends, timestamped; ends with [`Inbound::Closed`]. The owner polls
    /// it for as long as the connection lives: a driver may do all of the connection's I/O,
    /// writing `out`'s commands included, from this stream (the native driver does, to keep a
    /// connection to one task's worth of memory).
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
    /// The target's host name did not resolve.
    #[error("resolving {host:?} failed: {error}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's answer.
        error: String,
    },
    /// The TLS configuration could not be built (CA file, system roots).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The TLS handshake failed (certificate not trusted, wrong name, not a TLS server).
    #[error("TLS handshake with {host} failed: {error}")]
    Tls {
        /// The host name verified.
        host: String,
        /// What failed, and what to do about it.
        error: String,
    },
    /// The WebSocket handshake failed.
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// The server refused the login.
    #[error("login refused: {code}: {message}")]
    LoginRefused {
        /// The protocol's error code.
        code: &'static str,
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

    /// What the protocol can report.
    fn capabilities(&self) -> Capabilities;

    /// Frames and bytes through every connection of this driver.
    fn stats(&self) -> &Arc<FrameStats>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_a_set() {
        assert!(Capability::ALL.iter().all(|c| Capabilities::ALL.has(*c)));
        assert_eq!(Capabilities::without(&[]), Capabilities::ALL);
        let some = Capabilities::without(&[Capability::ReadUsers, Capability::OfflineStatistic]);
        assert!(!some.has(Capability::ReadUsers) && some.has(Capability::ServerAcks));
        let lacking: Vec<Capability> = Capability::ALL.into_iter().filter(|c| !some.has(*c)).collect();
        assert_eq!(lacking, [Capability::OfflineStatistic, Capability::ReadUsers]);
        assert!(!some.without_one(Capability::ServerAcks).has(Capability::ServerAcks));
    }

    #[test]
    fn message_ids_are_opaque_text() {
        assert_eq!(MsgId::from(42).as_str(), "42");
        assert_eq!(MsgId::new("a1b2-room@muc"), MsgId::new("a1b2-room@muc"));
        assert_ne!(MsgId::from(42), MsgId::new("042"));
    }
}
