//! The store's mutations as logged by [`super::durable`]: one owned [`Op`] per mutating
//! call of the `Store` trait, and [`apply`], which replays one into a [`MemoryStore`] (a
//! rebuild is every logged op, in order, into a fresh store).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::group::Group;
use super::memory::MemoryStore;
use super::{
    GroupId, Inbox, MessageMeta, OfflineMessage, OfflineReceipt, ReceiptKind, SentRecord, Store, StoreError, UserId,
    intern,
};
use crate::protocol::ChatType;

/// An inbox, owned (for the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InboxKey {
    /// The user's inbox.
    User,
    /// One device's inbox.
    Device(#[serde(deserialize_with = "intern::one")] Arc<str>),
}

impl InboxKey {
    pub(super) fn of(inbox: Inbox<'_>) -> Self {
        match inbox {
            Inbox::User => InboxKey::User,
            Inbox::Device(d) => InboxKey::Device(Arc::from(d)),
        }
    }

    fn as_inbox(&self) -> Inbox<'_> {
        match self {
            InboxKey::User => Inbox::User,
            InboxKey::Device(d) => Inbox::Device(d),
        }
    }
}

/// One mutating call of the [`Store`] trait with its arguments, owned: replaying the calls in
/// order rebuilds the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `next_id`.
    NextId,
    /// `intern_user`.
    Intern(#[serde(deserialize_with = "intern::one")] UserId),
    /// `login_user`.
    Login(#[serde(deserialize_with = "intern::one")] UserId),
    /// `insert_message`.
    Message {
        /// Message id.
        mid: u64,
        /// Sender.
        #[serde(deserialize_with = "intern::one")]
        from: UserId,
        /// Recipient or group.
        #[serde(deserialize_with = "intern::one")]
        to: Arc<str>,
        /// One-to-one or group.
        chat_type: ChatType,
        /// Server time, ms.
        time: u64,
        /// Group receipts kept.
        group_receipts: bool,
    },
    /// `record_receipt` (`read`: a read receipt, else a delivery receipt).
    Receipt {
        /// Message id.
        mid: u64,
        /// Read rather than delivery.
        read: bool,
    },
    /// `record_group_read`.
    GroupRead {
        /// Message id.
        mid: u64,
        /// Reader.
        #[serde(deserialize_with = "intern::one")]
        reader: UserId,
    },
    /// `insert_group`.
    Group {
        /// Group id.
        #[serde(deserialize_with = "intern::one")]
        id: GroupId,
        /// Owner.
        #[serde(deserialize_with = "intern::one")]
        owner: UserId,
        /// Members in join order (owner and admins included).
        #[serde(deserialize_with = "intern::seq")]
        members: Arc<[UserId]>,
        /// Admins.
        #[serde(deserialize_with = "intern::seq")]
        admins: Vec<UserId>,
    },
    /// `add_member`.
    Join(
        #[serde(deserialize_with = "intern::one")] GroupId,
        #[serde(deserialize_with = "intern::one")] UserId,
    ),
    /// `remove_member`.
    Leave(
        #[serde(deserialize_with = "intern::one")] GroupId,
        #[serde(deserialize_with = "intern::one")] UserId,
    ),
    /// `note_message`.
    Note {
        /// Whose conversation.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// With whom.
        #[serde(deserialize_with = "intern::one")]
        peer: UserId,
        /// Message id.
        mid: u64,
        /// Counts as unread.
        unread: bool,
    },
    /// `note_group_message`.
    NoteGroup {
        /// Group id.
        #[serde(deserialize_with = "intern::one")]
        id: GroupId,
        /// Sender.
        #[serde(deserialize_with = "intern::one")]
        sender: UserId,
        /// Message id.
        mid: u64,
    },
    /// `mark_read`.
    MarkRead {
        /// Reader.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// Peer.
        #[serde(deserialize_with = "intern::one")]
        peer: UserId,
        /// Message id.
        mid: u64,
    },
    /// `mark_all_read`.
    MarkAllRead {
        /// Reader.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// One-to-one or group.
        chat_type: ChatType,
        /// Peer or group.
        #[serde(deserialize_with = "intern::one")]
        conv: Arc<str>,
        /// Everything up to this id.
        upto: u64,
    },
    /// `remember_sent`.
    Sent {
        /// Sender.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// Client id.
        #[serde(deserialize_with = "intern::one")]
        id: Arc<str>,
        /// The reply.
        record: SentRecord,
        /// Retention cutoff, server ms.
        cutoff: u64,
    },
    /// `push_offline_message`.
    OfflineMessage {
        /// Addressee.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// Which inbox.
        inbox: InboxKey,
        /// Message id.
        mid: u64,
        /// One-to-one or group.
        chat_type: ChatType,
        /// The encoded push (shared with the store's copy; logged as text).
        #[serde(with = "intern::frame_text")]
        frame: Utf8Bytes,
    },
    /// `push_offline_receipt`.
    OfflineReceipt {
        /// Addressee.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// Which inbox.
        inbox: InboxKey,
        /// The receipt.
        receipt: OfflineReceipt,
    },
    /// `set_offline_group_count`.
    OfflineCount {
        /// Addressee.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// Which inbox.
        inbox: InboxKey,
        /// Message id.
        mid: u64,
        /// Group id.
        #[serde(deserialize_with = "intern::one")]
        group: GroupId,
        /// Readers.
        count: u64,
    },
    /// `take_offline`.
    Take {
        /// Whose.
        #[serde(deserialize_with = "intern::one")]
        user: UserId,
        /// Which inbox.
        inbox: InboxKey,
    },
}

/// Applies one logged call to `store` (rebuild, and the durable store's replica). The
/// in-memory store never fails; the error is passed on all the same.
pub(super) fn apply(store: &mut MemoryStore, op: Op) -> Result<(), StoreError> {
    match op {
        Op::NextId => store.next_id().map(drop),
        Op::Intern(u) => store.intern_user(&u).map(drop),
        Op::Login(u) => store.login_user(&u).map(drop),
        Op::Message {
            mid,
            from,
            to,
            chat_type,
            time,
            group_receipts,
        } => store.insert_message(
            mid,
            MessageMeta {
                from,
                to,
                chat_type,
                time,
                group_receipts,
            },
        ),
        Op::Receipt { mid, read } => {
            let kind = if read { ReceiptKind::Read } else { ReceiptKind::Delivery };
            store.record_receipt(mid, kind).map(drop)
        }
        Op::GroupRead { mid, reader } => store.record_group_read(mid, &reader).map(drop),
        Op::Group {
            id,
            owner,
            members,
            admins,
        } => store
            .insert_group(Group::new(id, owner, members.to_vec(), admins))
            .map(drop),
        Op::Join(id, user) => store.add_member(&id, &user).map(drop),
        Op::Leave(id, user) => store.remove_member(&id, &user).map(drop),
        Op::Note {
            user,
            peer,
            mid,
            unread,
        } => store.note_message(&user, &peer, mid, unread),
        Op::NoteGroup { id, sender, mid } => store.note_group_message(&id, &sender, mid),
        Op::MarkRead { user, peer, mid } => store.mark_read(&user, &peer, mid).map(drop),
        Op::MarkAllRead {
            user,
            chat_type,
            conv,
            upto,
        } => store.mark_all_read(&user, chat_type, &conv, upto),
        Op::Sent {
            user,
            id,
            record,
            cutoff,
        } => store.remember_sent(&user, &id, record, cutoff).map(drop),
        Op::OfflineMessage {
            user,
            inbox,
            mid,
            chat_type,
            frame,
        } => store.push_offline_message(&user, inbox.as_inbox(), OfflineMessage { mid, chat_type, frame }),
        Op::OfflineReceipt { user, inbox, receipt } => store.push_offline_receipt(&user, inbox.as_inbox(), receipt),
        Op::OfflineCount {
            user,
            inbox,
            mid,
            group,
            count,
        } => store.set_offline_group_count(&user, inbox.as_inbox(), mid, &group, count),
        Op::Take { user, inbox } => store.take_offline(&user, inbox.as_inbox()).map(drop),
    }
}
