//! The collector: user actors emit raw [`Event`]s over one channel; a single thread folds them
//! into HDR histograms (microseconds, 3 significant digits), counters, per-second intervals
//! and the per-message records the end-of-run audit needs.
//!
//! Controlled like goose's metrics task: [`Handle::snapshot`] for the progress line and
//! [`Handle::finish`] for the folded result, each answered on its own reply channel. The
//! collector never touches sockets or actors; it only reads events.

mod audit;
mod fold;
mod intervals;

use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use crate::protocol::{ChatType, ErrorCode};
use crate::sim::behaviour::MsgKey;
use crate::transport::OpKind;

pub use fold::Folded;

/// Kinds of acks a reader sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// Delivery receipt of a 1:1 message.
    Delivery,
    /// Read receipt of a 1:1 message.
    Read,
    /// Read receipt of a group message.
    GroupRead,
    /// 1:1 channel ack.
    Channel,
    /// Group channel ack.
    GroupChannel,
}

/// Kinds of receipt pushes a sender gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// `delivery`.
    Delivery,
    /// `read` of a 1:1 message.
    Read,
    /// `read` of a group message (with a count).
    GroupRead,
}

/// What a user actor reports. Users and messages are indexes and keys of the seeded world.
#[derive(Debug)]
pub enum Event {
    /// A device logged in.
    Connected {
        /// User.
        user: u32,
        /// When `loginOk` arrived.
        at: Instant,
        /// First login of this device in the run.
        first: bool,
    },
    /// A connection could not be opened or logged in.
    ConnectFailed {
        /// User.
        user: u32,
        /// Why.
        error: String,
    },
    /// A device's connection ended; `expected` when the simulation closed it.
    Disconnected {
        /// User.
        user: u32,
        /// Closed by the simulation (churn, end of run).
        expected: bool,
    },
    /// A message left.
    Sent {
        /// The message.
        key: MsgKey,
        /// One-to-one or group.
        chat: ChatType,
        /// The peer or group, by index.
        conv: u32,
        /// When it was planned.
        scheduled: Instant,
        /// When it was handed to the connection.
        at: Instant,
        /// It waited for its connection to log in: its lag is connection time, not the
        /// generator's, so it stays out of `schedule_lag` (its latencies still start at
        /// `scheduled`).
        waited_login: bool,
    },
    /// Sends that fell while the user was offline.
    Skipped(u64),
    /// `received` for a message.
    Accepted {
        /// The message.
        key: MsgKey,
        /// Its server id.
        mid: u64,
        /// When the reply arrived.
        at: Instant,
        /// `groupAck`, when receipts were asked for.
        group_ack: Option<bool>,
    },
    /// A reader read a message (ack economics).
    Read {
        /// In a group conversation.
        group: bool,
    },
    /// A reader sent an ack.
    AckSent {
        /// Reader.
        reader: u32,
        /// What kind.
        kind: AckKind,
        /// The message, for per-message acks.
        key: Option<MsgKey>,
        /// The peer (1:1 channel acks) or group, by index.
        conv: u32,
        /// When it was handed to the connection.
        at: Instant,
    },
    /// A receipt push reached a sender.
    Receipt {
        /// The sender (who got the push).
        user: u32,
        /// What kind.
        kind: ReceiptKind,
        /// The message.
        mid: u64,
        /// The reader.
        from: u32,
        /// Group: distinct readers so far.
        count: Option<u64>,
        /// When.
        at: Instant,
    },
    /// A 1:1 channel ack push reached the peer.
    ChannelPush {
        /// The peer (who got the push).
        user: u32,
        /// The reader who acked.
        from: u32,
        /// The ack's server id: it covers the peer's messages with smaller ids.
        id: u64,
        /// When.
        at: Instant,
    },
    /// Group read counts replayed at login: (mid, count).
    Statistic {
        /// The sender.
        user: u32,
        /// Latest counts.
        counts: Vec<(u64, u64)>,
        /// When.
        at: Instant,
    },
    /// An error reply.
    Error {
        /// Code.
        code: ErrorCode,
        /// The operation it answered.
        op: Option<OpKind>,
        /// When.
        at: Instant,
    },
    /// Progress snapshot request.
    Snapshot(mpsc::Sender<Snapshot>),
    /// Fold everything and stop.
    Finish(mpsc::Sender<Box<Folded>>),
}

/// The live figures of the progress line.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Devices logged in now.
    pub connected: u64,
    /// Messages sent so far.
    pub messages: u64,
    /// Messages sent in the last whole second.
    pub messages_last_sec: u64,
    /// p99 of `server_ack` so far, ms.
    pub server_ack_p99: f64,
    /// p99 of `read_receipt` so far, ms.
    pub read_receipt_p99: f64,
    /// p99 of schedule lag so far, ms.
    pub schedule_lag_p99: f64,
    /// Error replies so far.
    pub errors: u64,
}

/// Cloneable sender of events; one per actor.
pub type Sink = mpsc::Sender<Event>;

/// Owns the collector thread.
pub struct Handle {
    tx: Sink,
    thread: Option<thread::JoinHandle<()>>,
}

impl Handle {
    /// Starts the collector; `start` is the run's time zero; `expected_messages` sizes its
    /// tables up front (growing a table of a million messages costs a noticeable share of a
    /// core that the users and the server need).
    pub fn start(start: Instant, expected_messages: usize) -> Handle {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("collector".into())
            .spawn(move || fold::run(start, expected_messages, rx))
            .expect("spawning the collector thread");
        Handle {
            tx,
            thread: Some(thread),
        }
    }

    /// A sender for an actor.
    pub fn sink(&self) -> Sink {
        self.tx.clone()
    }

    /// Current figures.
    pub fn snapshot(&self) -> Snapshot {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Event::Snapshot(tx)).is_err() {
            return Snapshot::default();
        }
        rx.recv().unwrap_or_default()
    }

    /// Folds everything received so far and stops the collector.
    pub fn finish(mut self) -> Folded {
        let (tx, rx) = mpsc::channel();
        let _ = self.tx.send(Event::Finish(tx));
        let folded = rx.recv().map(|b| *b).unwrap_or_default();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        folded
    }
}
