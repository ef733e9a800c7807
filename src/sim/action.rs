//! The vocabulary of a simulated user: run time, conversations, message keys, and the
//! [`Action`]s the behaviour asks the actor (or the simulation's client) to perform.

use super::faults::Planned;
use crate::transport::MsgId;

/// Simulation time: microseconds since the run started.
pub type Micros = u64;

/// A conversation as seen by one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    /// One-to-one with this user.
    Peer(u32),
    /// This group.
    Group(u32),
}

/// Identifies a message across the run: its sender and the sender's message number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct MsgKey {
    /// Sender index.
    pub sender: u32,
    /// Sender's message number (32 bits: keys are held per message live in the collector's
    /// indexes, and a user would send for 50 days at 1,000 a second to run out).
    pub seq: u32,
}

/// What the actor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send message `seq` (planned for `scheduled`).
    Send {
        /// Message number.
        seq: u32,
        /// Where.
        conv: Conv,
        /// Ask for group read receipts.
        allow_group_ack: bool,
        /// Planned send time (latencies are measured from it).
        scheduled: Micros,
    },
    /// A per-message read ack (1:1 `read`, or group `read` for a message with receipts).
    ReadAck {
        /// Conversation.
        conv: Conv,
        /// When the user read it (the ack's latencies start here).
        scheduled: Micros,
        /// Server id of the message.
        mid: MsgId,
        /// The message.
        key: MsgKey,
    },
    /// A channel ack for the conversation.
    ChannelAck {
        /// Conversation.
        conv: Conv,
        /// When the behaviour decided it (the ack's latencies start here).
        scheduled: Micros,
        /// The newest message that had arrived in the conversation: the ack covers it and
        /// every message its sender sent there before it.
        newest: Option<(MsgId, MsgKey)>,
    },
    /// The user read a message an ack could cover: any 1:1 message, or a group message
    /// that keeps receipts (counted for ack economics).
    Read {
        /// Conversation.
        conv: Conv,
    },
    /// Sends that fell while offline.
    Skipped(u64),
    /// Go offline (close the connections).
    Offline,
    /// Come back online (reconnect).
    Online,
    /// Inject a planned fault.
    Fault(Planned),
    /// Ask who read one of this user's group messages (`getGroupMsgReadUser`, to the end).
    ReadUsers {
        /// The message.
        key: MsgKey,
        /// Its server id.
        mid: MsgId,
        /// Its group.
        group: u32,
        /// Page size.
        page: u32,
    },
}
