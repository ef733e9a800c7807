//! The server's state behind a small interface: messages and their receipts, groups,
//! conversations with unread counts, and what waits for offline users.
//!
//! The routing hub decides *who* gets *what* and in which order; a [`Store`] only records facts
//! and answers questions about them. It never sees connections, frames in flight or locks: the
//! hub calls it under its own lock, so implementations are plain single-threaded code. The
//! in-memory store is [`MemoryStore`]; [`DurableStore`] (`serve --data`) wraps it and logs
//! every mutating call to a database, committed off the lock (see its module), compacted into
//! snapshots by a replica off the lock too. Calls are fallible ([`StoreError`]) and return owned
//! values, so a database could implement the trait; the in-memory store never fails.
//!
//! Bounded state: whatever clients send, what a store keeps stays within [`StoreLimits`]
//! (offline bytes per user and in all, records of users who never logged in, message records
//! by memory, conversations per user, client ids per sender); what it had to drop is counted
//! in [`StoreStats`], which `/metrics` shows.

mod durable;
mod group;
mod intern;
mod journal;
mod logged;
mod memory;
mod messages;
mod offline;
mod pending;
mod sent;
mod snapshot;
mod users;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use durable::{DurableError, DurableStore};
pub use group::Group;
pub use journal::Journal;
pub use memory::MemoryStore;
pub use snapshot::Compaction;

use crate::protocol::ChatType;
use crate::protocol::server::GroupAckCount;

/// An interned user id (cheap to clone, shared by every record that names the user).
pub type UserId = Arc<str>;
/// An interned group id.
pub type GroupId = Arc<str>;

/// What the store keeps of a message: enough to route and check receipts, not the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Sender.
    #[serde(deserialize_with = "intern::one")]
    pub from: UserId,
    /// Recipient user (1:1) or group.
    #[serde(deserialize_with = "intern::one")]
    pub to: Arc<str>,
    /// One-to-one or group.
    pub chat_type: ChatType,
    /// Server time of the send, ms.
    pub time: u64,
    /// Group messages: receipts are kept (asked for, allowed, and the group within the limit).
    pub group_receipts: bool,
}

/// The reply an accepted `send` got, kept per sender and client id so that a repeat of the
/// same send is answered with it (idempotent sends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRecord {
    /// Server id of the message.
    pub mid: u64,
    /// Recipient user or group, as sent.
    #[serde(deserialize_with = "intern::one")]
    pub to: Arc<str>,
    /// Server time of the send, ms.
    pub time: u64,
    /// `groupAck` of the reply (group sends that asked for receipts).
    pub group_ack: Option<bool>,
}

/// Which per-message receipt of a 1:1 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// Delivery receipt.
    Delivery,
    /// Read receipt.
    Read,
}

/// Outcome of recording a deduplicated receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The first one: recorded under this new receipt id, to be pushed.
    First {
        /// The receipt's new server id.
        id: u64,
        /// Group receipts: distinct readers now (1:1 receipts: 1).
        count: u64,
    },
    /// A repeat: nothing to push; the id of the first one.
    Repeat {
        /// Server id of the first receipt.
        id: u64,
    },
    /// The message is not stored (never existed or evicted).
    NoMessage,
}

/// One page of a message's readers, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderPage {
    /// Distinct readers in all.
    pub total: u64,
    /// Readers on this page, newest first.
    pub users: Vec<UserId>,
    /// Cursor of the next page (readers older than this position), if any.
    pub next: Option<usize>,
}

/// A user's view of one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationState {
    /// Peer user or group.
    pub id: Arc<str>,
    /// One-to-one or group.
    pub chat_type: ChatType,
    /// Unread messages.
    pub unread: u64,
    /// Newest message.
    pub last_mid: u64,
}

/// A message waiting for an offline user (or for a device whose connection closed before
/// writing it): its encoded `message` push, shared with every other recipient of the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineMessage {
    /// Server message id (replay merges the 1:1 and group queues by it).
    pub mid: u64,
    /// One-to-one or group (they have separate caps).
    pub chat_type: ChatType,
    /// The encoded push.
    #[serde(with = "intern::frame_text")]
    pub frame: Utf8Bytes,
}

/// A receipt waiting to be replayed with `onlineState:0`: a 1:1 receipt made while its
/// addressee was offline, or any receipt push a closing connection did not write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfflineReceipt {
    /// A delivery receipt; addressed to the message's sender.
    Delivery {
        /// Receipt id.
        id: u64,
        /// Message delivered.
        mid: u64,
        /// Recipient of the message.
        #[serde(deserialize_with = "intern::one")]
        from: UserId,
    },
    /// A 1:1 read receipt; addressed to the message's sender.
    Read {
        /// Receipt id.
        id: u64,
        /// Message read.
        mid: u64,
        /// Reader.
        #[serde(deserialize_with = "intern::one")]
        from: UserId,
    },
    /// A 1:1 channel ack, kept for the peer or for the reader's other devices.
    Channel {
        /// Ack id.
        id: u64,
        /// Reader.
        #[serde(deserialize_with = "intern::one")]
        from: UserId,
        /// The peer (the frame's `to`, also when it is kept for the reader's own devices).
        #[serde(deserialize_with = "intern::one")]
        to: UserId,
        /// Server time of the ack.
        time: u64,
    },
    /// A group read receipt pushed live to a device of the sender that closed before writing
    /// it. (Group reads made while the sender is offline are counted for the `statistic`
    /// frame instead, never stored as receipts.)
    GroupRead {
        /// Receipt id.
        id: u64,
        /// Message read.
        mid: u64,
        /// Reader.
        #[serde(deserialize_with = "intern::one")]
        from: UserId,
        /// The group.
        #[serde(deserialize_with = "intern::one")]
        group: GroupId,
        /// Distinct readers when this receipt was made.
        count: u64,
        /// The reader's `ackContent` (`""` when absent).
        #[serde(deserialize_with = "intern::one")]
        ack_content: Arc<str>,
    },
}

impl OfflineReceipt {
    /// The receipt's own server id (receipts are made, and replayed, in id order).
    pub fn id(&self) -> u64 {
        match self {
            OfflineReceipt::Delivery { id, .. }
            | OfflineReceipt::Read { id, .. }
            | OfflineReceipt::Channel { id, .. }
            | OfflineReceipt::GroupRead { id, .. } => *id,
        }
    }
}

/// Which of a user's stores something waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbox<'a> {
    /// The user's offline store: what arrived while none of its devices was online, for the
    /// first device to log in.
    User,
    /// One device's store: pushes queued for that device's connection that it closed (or was
    /// replaced) before writing, for that device's next login.
    Device(&'a str),
}

/// Everything that waited in one inbox, in replay order.
#[derive(Debug, Default)]
pub struct OfflineBatch {
    /// Stored messages, oldest (lowest mid) first.
    pub messages: Vec<OfflineMessage>,
    /// Stored receipts, in the order they were made.
    pub receipts: Vec<OfflineReceipt>,
    /// Latest group read count per message, in the order first counted.
    pub group_counts: Vec<GroupAckCount>,
}

impl OfflineBatch {
    /// True when nothing waited.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.receipts.is_empty() && self.group_counts.is_empty()
    }
}

/// Caps on what the store keeps (PROTOCOL.md's where it sets one, ours elsewhere; see
/// docs/protocol.md, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Offline 1:1 messages per inbox (a user's, and each device's).
    pub offline_single: usize,
    /// Offline group messages per inbox.
    pub offline_group: usize,
    /// Offline receipts per inbox (an extension: PROTOCOL.md sets no cap).
    pub offline_receipts: usize,
    /// Bytes of everything waiting for one user, all its inboxes together; past it the
    /// user's oldest entries are dropped.
    pub offline_user_bytes: usize,
    /// Bytes of everything waiting for anyone, plus a fixed charge per record of a user who
    /// never logged in; past it the oldest entries of all are dropped (and the records of
    /// users who never logged in, oldest first, with all that waits for them).
    pub offline_total_bytes: usize,
    /// Message records kept for receipts, at most (the oldest settled go first).
    pub messages: usize,
    /// Estimated bytes of message records kept for receipts, at most (the oldest settled go
    /// first; records a message in an offline inbox refers to are kept whatever the cap).
    pub message_bytes: usize,
    /// One-to-one conversations kept per user (the least recently active go first, a few at
    /// a time); also the most `getConversations` lists.
    pub conversations: usize,
    /// Client ids of accepted sends remembered per sender whatever their age (the newest;
    /// PROTOCOL.md asks for at least 10,000).
    pub sent_ids: usize,
    /// Hard cap of remembered client ids per sender: older ones are also kept while within
    /// the validity window, but never more than this many.
    pub sent_ids_max: usize,
    /// Remembered client ids in all: past it, ids beyond a sender's newest `sent_ids` are
    /// forgotten, the oldest of all first (each sender's newest `sent_ids` are always kept).
    pub sent_ids_total: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            offline_single: 500,
            offline_group: 200,
            offline_receipts: 1000,
            offline_user_bytes: 1024 * 1024,
            offline_total_bytes: 128 * 1024 * 1024,
            messages: 2_000_000,
            message_bytes: 256 * 1024 * 1024,
            conversations: 1000,
            sent_ids: 10_000,
            sent_ids_max: 100_000,
            sent_ids_total: 1_000_000,
        }
    }
}

/// Why offline entries were dropped, counted by `ackstorm_offline_dropped_total{cap}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// An inbox's count cap of its kind (500 1:1, 200 group messages, 1,000 receipts).
    Count = 0,
    /// The user's byte cap.
    UserBytes = 1,
    /// The total byte cap.
    TotalBytes = 2,
}

/// Kinds of offline entries, counted by `ackstorm_offline_replaced_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A stored message.
    Message = 0,
    /// A stored receipt.
    Receipt = 1,
    /// A group read count waiting for a `statistic` frame.
    GroupCount = 2,
}

/// What a store keeps and what it dropped to stay within its caps: gauges (now) and counters
/// (since start). Read by `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// User records.
    pub users: u64,
    /// Records of users who never logged in.
    pub users_unseen: u64,
    /// Records of users who never logged in dropped for the total offline cap.
    pub users_evicted: u64,
    /// Bytes charged against the total offline cap now.
    pub offline_bytes: u64,
    /// Offline entries dropped to make room, by [`EntryKind`].
    pub offline_dropped_kind: [u64; 3],
    /// Offline entries dropped to make room, by [`DropCause`] (a whole evicted user's entries
    /// count as `TotalBytes`).
    pub offline_dropped_cause: [u64; 3],
    /// Message records kept now.
    pub message_records: u64,
    /// Estimated bytes of those records.
    pub message_bytes: u64,
    /// Records an offline inbox still refers to (never evicted).
    pub message_records_held: u64,
    /// Records evicted for the caps.
    pub message_records_evicted: u64,
    /// Groups.
    pub groups: u64,
    /// One-to-one conversations dropped for the per-user cap.
    pub conversations_dropped: u64,
    /// Client ids of accepted sends remembered now, all senders together.
    pub sent_ids: u64,
}

/// Why a store call failed: what a database backend reports. The hub answers the frame with
/// `internal` (nothing the client did was wrong), counts it in `ackstorm_store_errors_total`,
/// and carries on; the in-memory store never fails. Cheap to clone: one failed commit is
/// reported to every connection that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    /// The store takes no more calls: an earlier write failed, so what is in memory is no
    /// longer what is on disk (a restart rebuilds it from what is).
    #[error("the store is unavailable: {0}")]
    Unavailable(Arc<str>),
    /// Reading or writing the backend failed.
    #[error("the store failed to {op}: {reason}")]
    Io {
        /// What was being done (`commit`, `write a snapshot`).
        op: &'static str,
        /// The backend's error.
        reason: Arc<str>,
    },
    /// What the backend returned cannot be decoded.
    #[error("the store's data is corrupt: {0}")]
    Corrupt(Arc<str>),
}

/// The storage interface the routing hub uses.
///
/// Ids are interned: pass `&str`, get back shared [`UserId`]s. Every call that reads or
/// changes state is fallible and returns owned values (cheap: `Arc`s), so that a database can
/// implement it; each call is all or nothing. The hub calls it under its lock, so an
/// implementation must not block there on I/O: [`DurableStore`] records changes in memory and
/// commits them off the lock, through its [`Journal`].
pub trait Store: Send + 'static {
    /// Allocates the next server id (messages and receipts share one increasing sequence).
    fn next_id(&mut self) -> Result<u64, StoreError>;
    /// The shared id for `user`, created on first use. A user created here (a recipient, a
    /// group member) who never logs in is kept only within the offline caps.
    fn intern_user(&mut self, user: &str) -> Result<UserId, StoreError>;
    /// The shared id of a user who just logged in; from now on its record is kept.
    fn login_user(&mut self, user: &str) -> Result<UserId, StoreError>;

    /// Stores a new message's metadata.
    fn insert_message(&mut self, mid: u64, meta: MessageMeta) -> Result<(), StoreError>;
    /// The metadata of a stored message (a copy: its fields are shared).
    fn message(&self, mid: u64) -> Result<Option<MessageMeta>, StoreError>;
    /// True when `mid` names no stored message but may have named one that was evicted.
    fn forgotten(&self, mid: u64) -> Result<bool, StoreError>;
    /// Records the first receipt of `kind` for a 1:1 message, allocating its id.
    fn record_receipt(&mut self, mid: u64, kind: ReceiptKind) -> Result<Recorded, StoreError>;
    /// Adds `reader` to a group message's reader set, allocating a receipt id if new.
    fn record_group_read(&mut self, mid: u64, reader: &UserId) -> Result<Recorded, StoreError>;
    /// A page of a group message's readers, newest first, older than cursor `before`.
    fn group_readers(&self, mid: u64, before: Option<usize>, limit: usize) -> Result<ReaderPage, StoreError>;

    /// A group by id: shared, not copied (its member list is not cloned per call).
    fn group(&self, id: &str) -> Result<Option<Arc<Group>>, StoreError>;
    /// Adds a new group (its members' conversations start); false (and no change) if the id
    /// exists.
    fn insert_group(&mut self, group: Group) -> Result<bool, StoreError>;
    /// Adds `user` to group `id`; false if no such group or already a member.
    fn add_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError>;
    /// Removes `user` from group `id` (its conversation's counts freeze); false if no such
    /// group or not a member.
    fn remove_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError>;
    /// Groups `user` created.
    fn groups_owned(&self, user: &str) -> Result<usize, StoreError>;

    /// Notes 1:1 message `mid` in `user`'s conversation with `peer`; `unread` adds one unread.
    fn note_message(&mut self, user: &UserId, peer: &UserId, mid: u64, unread: bool) -> Result<(), StoreError>;
    /// Notes group message `mid` from `sender` in group `id`: one unread more for every other
    /// member, in O(1) whatever the group's size.
    fn note_group_message(&mut self, id: &GroupId, sender: &UserId, mid: u64) -> Result<(), StoreError>;
    /// A 1:1 read receipt of `mid` by `user`: subtracts one unread if `mid` was still unread
    /// (not covered by a channel ack). Returns whether it counted.
    fn mark_read(&mut self, user: &UserId, peer: &UserId, mid: u64) -> Result<bool, StoreError>;
    /// A channel ack: unread to 0, and every message up to `upto` counts as read.
    fn mark_all_read(
        &mut self,
        user: &UserId,
        chat_type: ChatType,
        conv: &Arc<str>,
        upto: u64,
    ) -> Result<(), StoreError>;
    /// `user`'s conversations, newest first, at most `limits.conversations`.
    fn conversations(&self, user: &str) -> Result<Vec<ConversationState>, StoreError>;

    /// The reply `user`'s accepted send with client id `id` got, if still remembered.
    fn sent(&self, user: &str, id: &str) -> Result<Option<SentRecord>, StoreError>;
    /// Remembers `user`'s accepted send with client id `id`. Keeps the newest
    /// `limits.sent_ids` of the sender and older ones accepted at or after `cutoff` (server ms),
    /// never more than `limits.sent_ids_max`, and within `limits.sent_ids_total` in all.
    /// Returns how many ids accepted at or after `cutoff` had to be forgotten for the caps.
    fn remember_sent(&mut self, user: &UserId, id: &str, record: SentRecord, cutoff: u64) -> Result<usize, StoreError>;

    /// Stores a message in one of `user`'s inboxes, dropping what the caps require (counted
    /// in [`StoreStats`]). The message's record is kept while it waits.
    fn push_offline_message(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        message: OfflineMessage,
    ) -> Result<(), StoreError>;
    /// Stores a receipt in one of `user`'s inboxes, dropping what the caps require.
    fn push_offline_receipt(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        receipt: OfflineReceipt,
    ) -> Result<(), StoreError>;
    /// Sets the latest group read count of `mid` in one of `user`'s inboxes (a count lower than
    /// the one kept is ignored: counts only grow).
    fn set_offline_group_count(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        mid: u64,
        group: &GroupId,
        count: u64,
    ) -> Result<(), StoreError>;
    /// Takes everything that waited in one of `user`'s inboxes, in replay order.
    fn take_offline(&mut self, user: &UserId, inbox: Inbox<'_>) -> Result<OfflineBatch, StoreError>;

    /// What the store keeps and what it dropped. Infallible: gauges and counters the store
    /// keeps in process memory whatever its backend (a database keeps them beside its
    /// connection), read for `/metrics`, which must answer when the backend does not.
    fn stats(&self) -> StoreStats;

    /// The journal of a durable store: what the hub's callers wait on before a frame that
    /// reflects the store's state leaves the server. `None` (the in-memory store): nothing to
    /// wait for.
    fn journal(&self) -> Option<Arc<Journal>> {
        None
    }
}
