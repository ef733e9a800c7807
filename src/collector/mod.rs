//! The collector: user actors emit raw [`Event`]s over one channel; a single thread folds them
//! into HDR histograms (microseconds, 3 significant digits), counters, per-second intervals
//! and the per-message records the end-of-run audit needs.
//!
//! Controlled like goose's metrics task: [`Handle::snapshot`] for the progress line and
//! [`Handle::finish`] for the folded result, each answered on its own reply channel. The
//! collector never touches sockets or actors; it only reads events.

mod audit;
mod eventlog;
mod fold;
pub mod histfile;
mod intervals;
mod metric;
mod presence;
pub mod process;
mod recipients;
mod records;
mod replay;
pub use records::MAX_HORIZON;
mod window;

use std::collections::BTreeMap;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::sim::behaviour::{Micros, MsgKey};
use crate::transport::{Capabilities, Chat, MsgId, Refusal};

pub use eventlog::{EventLogError, EventReader, EventWriter};
pub use fold::{Folded, latency, new_histogram};
pub use metric::Metric;
pub use replay::{Source, replay};
pub use window::{DEFAULT_WINDOW_SECS, WINDOW_QUANTILES, WindowLatency};

/// The latency metrics and audit kinds a protocol with `caps` cannot give (shown as not
/// available in reports, never as zero), each name once (a metric and a kind of the same
/// name need the same capability).
pub fn unavailable(caps: Capabilities) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    let metrics = Metric::ALL
        .into_iter()
        .filter(|m| m.needs().is_some_and(|c| !caps.has(c)))
        .map(Metric::name);
    for name in metrics.chain(audit::unavailable(caps)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Kinds of acks a reader sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl AckKind {
    /// Every kind, in the order of [`AckKind::index`].
    pub const ALL: [AckKind; 5] = [
        AckKind::Delivery,
        AckKind::Read,
        AckKind::GroupRead,
        AckKind::Channel,
        AckKind::GroupChannel,
    ];

    /// Its name in live metrics.
    pub fn name(self) -> &'static str {
        match self {
            AckKind::Delivery => "delivery",
            AckKind::Read => "read",
            AckKind::GroupRead => "group_read",
            AckKind::Channel => "channel",
            AckKind::GroupChannel => "group_channel",
        }
    }

    /// Its position in [`AckKind::ALL`] (counter arrays).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Kinds of receipt pushes a sender gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptKind {
    /// `delivery`.
    Delivery,
    /// `read` of a 1:1 message.
    Read,
    /// `read` of a group message (with a count).
    GroupRead,
}

/// What a request was, for the reply audit and for what its answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReqKind {
    /// A message.
    Send,
    /// An ack (its kind).
    Ack(AckKind),
    /// Group management (`createGroup`).
    Group,
    /// `getGroupMsgReadUser`.
    ReadUsers,
    /// `ping`.
    Ping,
}

/// How a request was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// `received` for a send.
    Accepted {
        /// Server message id.
        mid: MsgId,
        /// `groupAck`, when receipts were asked for.
        group_ack: Option<bool>,
        /// The server had accepted this client id before (a resend).
        duplicate: bool,
    },
    /// Any other success.
    Ok,
    /// An `error` reply: refused, never lost.
    Refused(Refusal),
}

/// Which conversations and devices the run has: what the collector needs to know who should
/// get a message, without reaching into the simulation.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// Members (user indexes) of each group, by group index (shared with the records of the
    /// group's messages).
    pub groups: Vec<Arc<[u32]>>,
    /// Users in the run.
    pub users: u32,
    /// Devices per user.
    pub devices: u8,
}

/// What a user actor reports. Users and messages are indexes and keys of the seeded world;
/// times are microseconds on the run clock. A shard writes every event it folds to its event
/// log (serialized as is), so that `ackstorm merge` folds all shards' events as one run.
#[derive(Debug, Serialize, Deserialize)]
pub enum Event {
    /// A device logged in.
    Connected {
        /// User.
        user: u32,
        /// Device.
        dev: u8,
        /// When `loginOk` arrived.
        at: Micros,
        /// First login of this device in the run.
        first: bool,
        /// A reconnect after a drop: how long since the drop.
        reconnect: Option<Micros>,
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
        /// Device.
        dev: u8,
        /// When.
        at: Micros,
        /// Closed by the simulation (churn, end of run).
        expected: bool,
    },
    /// A message left (its first attempt; resends are counted by [`Event::Resent`]).
    Sent {
        /// The message.
        key: MsgKey,
        /// One-to-one or group.
        chat: Chat,
        /// The peer or group, by index.
        conv: u32,
        /// When it was planned.
        scheduled: Micros,
        /// When it was handed to the connection.
        at: Micros,
        /// It waited for its connection (login or reconnect): its lag is connection time,
        /// not the generator's, so it stays out of `schedule_lag` (its latencies still start
        /// at `scheduled`).
        waited: bool,
    },
    /// Sends that fell while the user was offline (`disconnected`: while it wanted to be
    /// online but its connection was down and the outbox full).
    Skipped {
        /// How many.
        n: u64,
        /// Lost to a full outbox while disconnected.
        disconnected: bool,
    },
    /// Requests sent again on a new connection after a drop.
    Resent {
        /// How many.
        n: u64,
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
        /// The message, for per-message acks; for a 1:1 channel ack, the newest message of
        /// the peer it covers (with every earlier one of the peer's in the conversation).
        key: Option<MsgKey>,
        /// The peer (1:1 channel acks) or group, by index.
        conv: u32,
        /// When the behaviour decided to ack (latencies start here).
        scheduled: Micros,
        /// When it was handed to the connection.
        at: Micros,
        /// It waited for its connection: its lag is connection time, not the tester's, so it
        /// stays out of `ack_lag`.
        waited: bool,
    },
    /// A request was answered.
    Replied {
        /// Who asked.
        user: u32,
        /// What it was.
        kind: ReqKind,
        /// The message it was about (sends and per-message acks).
        key: Option<MsgKey>,
        /// The peer or group it was about, by index.
        conv: u32,
        /// The answer.
        answer: Answer,
        /// When the answer arrived.
        at: Micros,
    },
    /// A reply matching no request in flight: `duplicated` when its request had been
    /// answered already, else unexpected (a request this user never sent).
    StrayReply {
        /// Who got it.
        user: u32,
        /// Answered already.
        duplicated: bool,
        /// It was an `error` with this code.
        refused: Option<Refusal>,
    },
    /// A request never answered (reported when the actor stops, or when its connection
    /// died with no reconnect to resend it on).
    Unanswered {
        /// Who asked.
        user: u32,
        /// What it was.
        kind: ReqKind,
        /// Its connection died after it was written (protocol v1 allows that loss).
        in_disconnect: bool,
        /// When it was last written.
        left: Micros,
    },
    /// A message reached a device.
    MessagePush {
        /// The recipient.
        user: u32,
        /// Its device.
        dev: u8,
        /// The message, when it is one of this run's (`None`: not ours).
        key: Option<MsgKey>,
        /// Server id.
        mid: MsgId,
        /// When.
        at: Micros,
    },
    /// A receipt push reached a sender's device.
    Receipt {
        /// The sender (who got the push).
        user: u32,
        /// Its device.
        dev: u8,
        /// What kind.
        kind: ReceiptKind,
        /// The message.
        mid: MsgId,
        /// The reader (`u32::MAX`: not a user of this run).
        from: u32,
        /// Group: distinct readers so far.
        count: Option<u64>,
        /// When.
        at: Micros,
    },
    /// A 1:1 channel ack push reached a device: the peer's (from the reader), or the
    /// reader's own other device (`from == user`: multi-device sync).
    ChannelPush {
        /// Who got the push.
        user: u32,
        /// Its device.
        dev: u8,
        /// The reader who acked.
        from: u32,
        /// The acked conversation's peer.
        to: u32,
        /// When.
        at: Micros,
    },
    /// Group read counts replayed at login: (mid, count).
    Statistic {
        /// The sender.
        user: u32,
        /// Latest counts.
        counts: Vec<(MsgId, u64)>,
        /// When.
        at: Micros,
    },
    /// A sender fetched the whole reader list of its group message.
    ReadUsers {
        /// The sender.
        sender: u32,
        /// The message.
        key: MsgKey,
        /// When the first page was asked for.
        sent: Micros,
        /// When the last page arrived.
        done: Micros,
        /// The readers listed (user indexes).
        users: Vec<u32>,
        /// Listed ids that are no user of this run.
        unknown: u32,
        /// Each page's round trip.
        pages: Vec<Micros>,
    },
    /// A planned fault was injected (`done`), or found nothing to act on.
    Fault {
        /// Its number in the profile's list.
        index: u32,
        /// When.
        at: Micros,
        /// It acted (a connection was open to drop, a socket to stall).
        done: bool,
    },
    /// Progress snapshot request.
    #[serde(skip)]
    Snapshot(mpsc::Sender<Snapshot>),
    /// Fold everything and stop.
    #[serde(skip)]
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
    /// Messages sent so far: (one-to-one, group).
    pub sent: (u64, u64),
    /// Acks sent so far, by [`AckKind`] (every kind, in [`AckKind::ALL`] order).
    pub acks: Vec<(AckKind, u64)>,
    /// Receipt pushes received so far by kind (`delivery`, `read`, `group_read`, `channel`,
    /// `statistic`), as in the report.
    pub receipts: BTreeMap<String, u64>,
    /// Error replies so far by code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Connections that could not be opened or logged in.
    pub connect_failed: u64,
    /// Connections that dropped (not closed by the simulation).
    pub dropped: u64,
    /// Logins again after a drop.
    pub reconnects: u64,
    /// The audit's losses so far, per kind the protocol can give. Only records settled so
    /// far are judged (`tester.audit_horizon` after they were sent): one not settled yet is
    /// not lost yet.
    pub lost: Vec<Loss>,
    /// Seconds merged into [`Snapshot::window`] (0: no window kept, see
    /// [`Settings::live_window_secs`]).
    pub window_secs: u64,
    /// Latency quantiles over the last closed seconds, per metric with samples there.
    pub window: Vec<WindowLatency>,
}

/// One audit kind's losses so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// The audit kind (`message`, `delivery`, `read`, ... as in the report's audit).
    pub kind: &'static str,
    /// Expected and never arrived.
    pub lost: u64,
    /// Missing, but due on a device whose connection dropped (protocol v1 allows it).
    pub lost_in_disconnect: u64,
}

/// How the collector is set up for a run.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Who gets what.
    pub audience: Audience,
    /// Per-message records are settled (audited and dropped) once this old.
    pub horizon: Micros,
    /// The interval log file, written as each second closes (`None`: kept in memory only).
    pub hlog_path: Option<std::path::PathBuf>,
    /// The event log (`events.bin`) of a shard: every event folded, for `ackstorm merge`.
    pub events_path: Option<std::path::PathBuf>,
    /// The profile's faults, in their numbered order.
    pub faults: Vec<crate::sim::faults::Fault>,
    /// A push missing on a device whose connection dropped within this long after it was
    /// due counts as lost in the disconnect (see the audit's `lost_in_disconnect`).
    pub disconnect_grace: Micros,
    /// What the driver's protocol can report: the metrics and audit kinds it cannot are
    /// left out of the result (reported as not available, not as zero).
    pub capabilities: Capabilities,
    /// Seconds of latency kept for the live window of snapshots ([`DEFAULT_WINDOW_SECS`]
    /// when a live exporter reads it; 0: none, which costs nothing).
    pub live_window_secs: u64,
}

/// Cloneable sender of events; one per actor.
pub type Sink = mpsc::Sender<Event>;

/// Owns the collector thread.
pub struct Handle {
    tx: Sink,
    thread: Option<thread::JoinHandle<()>>,
}

impl Handle {
    /// Starts the collector; `start` is the run's time zero; `settings` say who is in the
    /// run, how long per-message records are kept and where intervals are logged.
    pub fn start(start: Instant, settings: Settings) -> Handle {
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("collector".into())
            .spawn(move || fold::run(start, settings, rx))
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

/// A collector folded on the caller's thread, for a caller that produces events in time
/// order itself (a virtual-time simulation): the same fold a run's collector thread does, with
/// the clock in the caller's hands.
pub struct Inline(fold::State);

impl Inline {
    /// A fold of a run whose clock started at `start_time`.
    pub fn new(start_time: std::time::SystemTime, settings: Settings) -> Inline {
        Inline(fold::State::new(start_time, settings))
    }

    /// Folds one event.
    pub fn fold(&mut self, e: Event) {
        self.0.fold(e);
    }

    /// Once a second of run time `now`: settles the records past the horizon.
    pub fn tick(&mut self, now: Micros) {
        self.0.tick(now, None);
    }

    /// Current figures at run time `now`.
    pub fn snapshot(&mut self, now: Micros) -> Snapshot {
        self.0.snapshot(now)
    }

    /// Folds everything.
    pub fn finish(self) -> Folded {
        self.0.finish()
    }
}
