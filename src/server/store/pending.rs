//! One inbox of what waits for a later login: messages (1:1 and group, capped separately),
//! receipts, and group read counts. A user has one for when none of its devices is online,
//! and one per device for the pushes its closing connection did not write.
//!
//! Only records and caps; which inbox something goes to and how inboxes merge at login is
//! the hub's decision.

use std::collections::VecDeque;

use indexmap::IndexMap;
use rustc_hash::FxBuildHasher;

use super::{GroupId, OfflineBatch, OfflineMessage, OfflineReceipt, StoreLimits};
use crate::protocol::ChatType;
use crate::protocol::server::GroupAckCount;

/// Pushes onto a capped queue; true when the oldest entry made room.
fn push_capped<T>(queue: &mut VecDeque<T>, cap: usize, item: T) -> bool {
    let replaced = queue.len() >= cap;
    if replaced {
        queue.pop_front();
    }
    if cap > 0 {
        queue.push_back(item);
    }
    replaced
}

/// One inbox.
#[derive(Debug, Default)]
pub(super) struct Pending {
    single: VecDeque<OfflineMessage>,
    group: VecDeque<OfflineMessage>,
    receipts: VecDeque<OfflineReceipt>,
    counts: IndexMap<u64, (GroupId, u64), FxBuildHasher>,
}

impl Pending {
    /// Stores a message; true when the oldest of its kind was replaced.
    pub(super) fn push_message(&mut self, limits: &StoreLimits, message: OfflineMessage) -> bool {
        match message.chat_type {
            ChatType::Single => push_capped(&mut self.single, limits.offline_single, message),
            ChatType::Group => push_capped(&mut self.group, limits.offline_group, message),
        }
    }

    /// Stores a receipt; true when the oldest was replaced.
    pub(super) fn push_receipt(&mut self, limits: &StoreLimits, receipt: OfflineReceipt) -> bool {
        push_capped(&mut self.receipts, limits.offline_receipts, receipt)
    }

    /// Keeps the highest count seen for `mid`.
    pub(super) fn set_count(&mut self, mid: u64, group: &GroupId, count: u64) {
        let entry = self.counts.entry(mid).or_insert_with(|| (group.clone(), count));
        entry.1 = entry.1.max(count);
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
