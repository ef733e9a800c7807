//! One inbox of what waits for a later login: messages (1:1 and group, capped separately),
//! receipts, and group read counts, with the bytes they are charged. A user has one for when
//! none of its devices is online, and one per device for the pushes its closing connection did
//! not write.
//!
//! Only records, count caps and byte accounting; which inbox something goes to, how inboxes
//! merge at login, and which entry goes when a byte cap is passed are decided elsewhere (the
//! hub, and [`super::offline`]).

use std::collections::VecDeque;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use super::{EntryKind, GroupId, OfflineBatch, OfflineMessage, OfflineReceipt, StoreLimits, intern};
use crate::protocol::ChatType;
use crate::protocol::server::GroupAckCount;

/// Bytes charged for a stored message beyond its encoded frame (the queue slot and the
/// reference to the shared frame).
const MESSAGE_OVERHEAD: usize = 64;
/// Bytes charged for a stored receipt (the enum in its queue slot), beyond its `ackContent`.
const RECEIPT_BYTES: usize = 96;
/// Bytes charged for a stored group read count (a map entry).
const COUNT_BYTES: usize = 64;

/// Bytes charged for a message: its encoded frame (counted in full for every inbox it waits
/// in, though recipients of one group message share it: an upper bound) and the overhead.
pub(super) fn message_bytes(m: &OfflineMessage) -> usize {
    MESSAGE_OVERHEAD + m.frame.len()
}

fn receipt_bytes(r: &OfflineReceipt) -> usize {
    match r {
        OfflineReceipt::GroupRead { ack_content, .. } => RECEIPT_BYTES + ack_content.len(),
        _ => RECEIPT_BYTES,
    }
}

/// An entry that left an inbox to make room: its kind, and for a message the id whose record
/// it no longer refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dropped {
    /// What it was.
    pub kind: EntryKind,
    /// The message's id, for a message.
    pub mid: Option<u64>,
}

impl Dropped {
    fn message(m: &OfflineMessage) -> Dropped {
        Dropped {
            kind: EntryKind::Message,
            mid: Some(m.mid),
        }
    }

    fn other(kind: EntryKind) -> Dropped {
        Dropped { kind, mid: None }
    }
}

/// One inbox.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pending {
    single: VecDeque<OfflineMessage>,
    group: VecDeque<OfflineMessage>,
    receipts: VecDeque<OfflineReceipt>,
    #[serde(serialize_with = "intern::as_pairs", deserialize_with = "intern::id_values")]
    counts: IndexMap<u64, (GroupId, u64), FxBuildHasher>,
    bytes: usize,
}

impl Pending {
    /// Bytes charged for what waits here.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits.
    pub(super) fn is_empty(&self) -> bool {
        self.single.is_empty() && self.group.is_empty() && self.receipts.is_empty() && self.counts.is_empty()
    }

    /// Stores a message; returns the oldest of its kind if the count cap dropped it.
    pub(super) fn push_message(&mut self, limits: &StoreLimits, message: OfflineMessage) -> Option<Dropped> {
        let (queue, cap) = match message.chat_type {
            ChatType::Single => (&mut self.single, limits.offline_single),
            ChatType::Group => (&mut self.group, limits.offline_group),
        };
        self.bytes += message_bytes(&message);
        queue.push_back(message);
        if queue.len() <= cap {
            return None;
        }
        let old = queue.pop_front()?;
        self.bytes -= message_bytes(&old);
        Some(Dropped::message(&old))
    }

    /// Stores a receipt; returns what the count cap dropped (the oldest).
    pub(super) fn push_receipt(&mut self, limits: &StoreLimits, receipt: OfflineReceipt) -> Option<Dropped> {
        self.bytes += receipt_bytes(&receipt);
        self.receipts.push_back(receipt);
        if self.receipts.len() <= limits.offline_receipts {
            return None;
        }
        let old = self.receipts.pop_front()?;
        self.bytes -= receipt_bytes(&old);
        Some(Dropped::other(EntryKind::Receipt))
    }

    /// Keeps the highest count seen for `mid`.
    pub(super) fn set_count(&mut self, mid: u64, group: &GroupId, count: u64) {
        let before = self.counts.len();
        let entry = self.counts.entry(mid).or_insert_with(|| (group.clone(), count));
        entry.1 = entry.1.max(count);
        if self.counts.len() > before {
            self.bytes += COUNT_BYTES;
        }
    }

    /// The id of the oldest entry (the front of each queue: they are in the order stored).
    pub(super) fn oldest(&self) -> Option<u64> {
        [
            self.single.front().map(|m| m.mid),
            self.group.front().map(|m| m.mid),
            self.receipts.front().map(|r| r.id()),
            self.counts.first().map(|(mid, _)| *mid),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Drops the oldest entry, if any.
    pub(super) fn drop_oldest(&mut self) -> Option<Dropped> {
        let oldest = self.oldest()?;
        if self.single.front().is_some_and(|m| m.mid == oldest) {
            let m = self.single.pop_front()?;
            self.bytes -= message_bytes(&m);
            return Some(Dropped::message(&m));
        }
        if self.group.front().is_some_and(|m| m.mid == oldest) {
            let m = self.group.pop_front()?;
            self.bytes -= message_bytes(&m);
            return Some(Dropped::message(&m));
        }
        if self.receipts.front().is_some_and(|r| r.id() == oldest) {
            let r = self.receipts.pop_front()?;
            self.bytes -= receipt_bytes(&r);
            return Some(Dropped::other(EntryKind::Receipt));
        }
        self.counts.shift_remove_index(0)?;
        self.bytes -= COUNT_BYTES;
        Some(Dropped::other(EntryKind::GroupCount))
    }

    /// Drops everything: what was dropped, in no particular order.
    pub(super) fn clear(&mut self) -> Vec<Dropped> {
        let mut out: Vec<Dropped> = self
            .single
            .drain(..)
            .chain(self.group.drain(..))
            .map(|m| Dropped::message(&m))
            .collect();
        out.extend(self.receipts.drain(..).map(|_| Dropped::other(EntryKind::Receipt)));
        out.extend(self.counts.drain(..).map(|_| Dropped::other(EntryKind::GroupCount)));
        self.bytes = 0;
        out
    }

    /// Takes everything, in replay order.
    pub(super) fn take(&mut self) -> OfflineBatch {
        let mut messages: Vec<OfflineMessage> = self.single.drain(..).chain(self.group.drain(..)).collect();
        // Each queue is (almost always) in id order already; the stable sorts merge them, and
        // put a push a connection failed to write back in place (it is stored after newer
        // ones that were still queued).
        messages.sort_by_key(|m| m.mid);
        let mut receipts: Vec<OfflineReceipt> = self.receipts.drain(..).collect();
        receipts.sort_by_key(|r| r.id());
        self.bytes = 0;
        OfflineBatch {
            messages,
            receipts,
            group_counts: self
                .counts
                .drain(..)
                .map(|(mid, (group, count))| GroupAckCount {
                    mid,
                    group_id: group.to_string(),
                    count,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn msg(mid: u64, chat_type: ChatType) -> OfflineMessage {
        OfflineMessage {
            mid,
            chat_type,
            frame: "x".repeat(36).into(),
        }
    }

    #[test]
    fn bytes_follow_what_is_stored_and_the_oldest_goes_first() {
        let limits = StoreLimits {
            offline_single: 2,
            ..StoreLimits::default()
        };
        let mut p = Pending::default();
        assert_eq!(p.push_message(&limits, msg(3, ChatType::Single)), None);
        assert_eq!(p.bytes(), 100);
        let from: Arc<str> = Arc::from("a");
        let receipt = OfflineReceipt::Delivery { id: 2, mid: 1, from };
        assert_eq!(p.push_receipt(&limits, receipt), None);
        p.set_count(4, &Arc::from("g"), 1);
        p.set_count(4, &Arc::from("g"), 2);
        assert_eq!(p.bytes(), 100 + 96 + 64);
        assert_eq!(p.push_message(&limits, msg(5, ChatType::Group)), None);
        assert_eq!(p.oldest(), Some(2));
        // Over the count cap of its kind: the oldest of that kind goes.
        p.push_message(&limits, msg(6, ChatType::Single));
        let dropped = p.push_message(&limits, msg(7, ChatType::Single));
        assert_eq!(dropped.map(|d| d.mid), Some(Some(3)));
        // Oldest first across kinds: the receipt (2), the count (4), then message 5.
        let order: Vec<EntryKind> = std::iter::from_fn(|| p.drop_oldest()).map(|d| d.kind).collect();
        assert_eq!(
            order,
            [
                EntryKind::Receipt,
                EntryKind::GroupCount,
                EntryKind::Message,
                EntryKind::Message,
                EntryKind::Message
            ]
        );
        assert_eq!((p.bytes(), p.is_empty()), (0, true));
    }
}
