//! [`MemoryStore`]: the in-memory [`Store`]. Message records live in [`MessageTable`], users
//! (conversations, inboxes, remembered sends, and the caps that span users) in [`Users`],
//! groups in a map; this file ties them together behind the trait.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::group::{Group, GroupSlot};
use super::messages::MessageTable;
use super::sent::Retention;
use super::users::Users;
use super::{
    ConversationState, GroupId, Inbox, MessageMeta, OfflineBatch, OfflineMessage, OfflineReceipt, ReaderPage,
    ReceiptKind, Recorded, SentRecord, Store, StoreError, StoreLimits, StoreStats, UserId, intern,
};
use crate::protocol::ChatType;

/// Keeps everything in process memory, within [`StoreLimits`]; lost when the server stops.
///
/// Serializable (the durable store's snapshots); its caps are not part of its state but the
/// options it is opened with (`MemoryStore::restored`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStore {
    #[serde(skip)]
    limits: StoreLimits,
    last_id: u64,
    users: Users,
    #[serde(deserialize_with = "intern::keys")]
    groups: FxHashMap<GroupId, GroupSlot>,
    messages: MessageTable,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(StoreLimits::default())
    }
}

impl MemoryStore {
    /// An empty store with the given caps.
    pub fn new(limits: StoreLimits) -> Self {
        MemoryStore {
            limits,
            last_id: 0,
            users: Users::new(limits),
            groups: FxHashMap::default(),
            messages: MessageTable::new(limits.messages, limits.message_bytes),
        }
    }

    /// A store decoded from a snapshot, made whole: its caps set to `limits` and its indexes
    /// rebuilt.
    pub(super) fn restored(mut self, limits: StoreLimits) -> Self {
        self.limits = limits;
        self.users.restored(limits);
        self.messages.set_caps(limits.messages, limits.message_bytes);
        self
    }

    /// Newest id allocated so far.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }
}

impl Store for MemoryStore {
    fn next_id(&mut self) -> Result<u64, StoreError> {
        self.last_id += 1;
        Ok(self.last_id)
    }

    fn intern_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        Ok(self.users.intern(user, self.last_id, &mut self.messages))
    }

    fn login_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        Ok(self.users.login(user, self.last_id, &mut self.messages))
    }

    fn insert_message(&mut self, mid: u64, meta: MessageMeta) -> Result<(), StoreError> {
        self.messages.insert(mid, meta);
        Ok(())
    }

    fn message(&self, mid: u64) -> Result<Option<MessageMeta>, StoreError> {
        Ok(self.messages.get(mid).map(|m| m.meta.clone()))
    }

    fn forgotten(&self, mid: u64) -> Result<bool, StoreError> {
        Ok(self.messages.forgotten(mid))
    }

    fn record_receipt(&mut self, mid: u64, kind: ReceiptKind) -> Result<Recorded, StoreError> {
        let next = self.last_id + 1;
        let Some(record) = self.messages.get_mut(mid) else {
            return Ok(Recorded::NoMessage);
        };
        let slot = match kind {
            ReceiptKind::Delivery => &mut record.delivery,
            ReceiptKind::Read => &mut record.read,
        };
        Ok(match *slot {
            Some(id) => Recorded::Repeat { id },
            None => {
                *slot = Some(next);
                self.last_id = next;
                Recorded::First { id: next, count: 1 }
            }
        })
    }

    fn record_group_read(&mut self, mid: u64, reader: &UserId) -> Result<Recorded, StoreError> {
        let next = self.last_id + 1;
        let Some(readers) = self.messages.get(mid).and_then(|m| m.readers.as_ref()) else {
            return Ok(Recorded::NoMessage);
        };
        if let Some(&id) = readers.ids.get(&**reader) {
            return Ok(Recorded::Repeat { id });
        }
        let count = readers.order.len() as u64 + 1;
        self.messages.add_reader(mid, reader, next);
        self.last_id = next;
        Ok(Recorded::First { id: next, count })
    }

    fn group_readers(&self, mid: u64, before: Option<usize>, limit: usize) -> Result<ReaderPage, StoreError> {
        let Some(readers) = self.messages.get(mid).and_then(|m| m.readers.as_ref()) else {
            return Ok(ReaderPage {
                total: 0,
                users: Vec::new(),
                next: None,
            });
        };
        let len = readers.order.len();
        let end = before.unwrap_or(len).min(len);
        let start = end.saturating_sub(limit);
        Ok(ReaderPage {
            total: len as u64,
            users: readers.order[start..end].iter().rev().cloned().collect(),
            next: (start > 0).then_some(start),
        })
    }

    fn group(&self, id: &str) -> Result<Option<Arc<Group>>, StoreError> {
        Ok(self.groups.get(id).map(|g| g.group.clone()))
    }

    fn insert_group(&mut self, group: Group) -> Result<bool, StoreError> {
        if self.groups.contains_key(&**group.id()) {
            return Ok(false);
        }
        let now = self.last_id;
        let slot = GroupSlot::new(group);
        let group = &slot.group;
        self.users.note_owned(group.owner(), now, &mut self.messages);
        for m in group.members().iter() {
            self.users
                .group_conv(m, &slot, now, &mut self.messages, |c, counters| c.joined(counters.0));
        }
        self.groups.insert(group.id().clone(), slot);
        Ok(true)
    }

    fn add_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError> {
        let Some(slot) = self.groups.get_mut(id) else {
            return Ok(false);
        };
        if slot.group.is_member(user) || !Arc::make_mut(&mut slot.group).add(user.clone()) {
            return Ok(false);
        }
        let now = self.last_id;
        self.users
            .group_conv(user, slot, now, &mut self.messages, |c, counters| c.joined(counters.0));
        Ok(true)
    }

    fn remove_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError> {
        let Some(slot) = self.groups.get_mut(id) else {
            return Ok(false);
        };
        if !slot.group.is_member(user) || !Arc::make_mut(&mut slot.group).remove(user) {
            return Ok(false);
        }
        let now = self.last_id;
        self.users
            .group_conv(user, slot, now, &mut self.messages, |c, counters| c.leave(counters));
        Ok(true)
    }

    fn groups_owned(&self, user: &str) -> Result<usize, StoreError> {
        Ok(self.users.owned(user))
    }

    fn note_message(&mut self, user: &UserId, peer: &UserId, mid: u64, unread: bool) -> Result<(), StoreError> {
        self.users
            .note_message(user, peer, mid, unread, self.last_id, &mut self.messages);
        Ok(())
    }

    fn note_group_message(&mut self, id: &GroupId, sender: &UserId, mid: u64) -> Result<(), StoreError> {
        if let Some(g) = self.groups.get_mut(&**id) {
            g.note_message(mid);
            self.users.note_own_group_message(sender, id);
        }
        Ok(())
    }

    fn mark_read(&mut self, user: &UserId, peer: &UserId, mid: u64) -> Result<bool, StoreError> {
        Ok(self.users.mark_read(user, peer, mid))
    }

    fn mark_all_read(
        &mut self,
        user: &UserId,
        chat_type: ChatType,
        conv: &Arc<str>,
        upto: u64,
    ) -> Result<(), StoreError> {
        let now = self.last_id;
        match chat_type {
            ChatType::Single => self.users.mark_all_read(user, conv, upto, now, &mut self.messages),
            ChatType::Group => {
                if let Some(g) = self.groups.get(&**conv) {
                    self.users
                        .group_conv(user, g, now, &mut self.messages, |c, counters| c.read_all(counters));
                }
            }
        }
        Ok(())
    }

    fn conversations(&self, user: &str) -> Result<Vec<ConversationState>, StoreError> {
        Ok(self.users.conversations(user, &self.groups))
    }

    fn sent(&self, user: &str, id: &str) -> Result<Option<SentRecord>, StoreError> {
        Ok(self.users.get(user).and_then(|u| u.sent.get(id)))
    }

    fn remember_sent(&mut self, user: &UserId, id: &str, record: SentRecord, cutoff: u64) -> Result<usize, StoreError> {
        let retention = Retention {
            keep: self.limits.sent_ids,
            max: self.limits.sent_ids_max,
            cutoff,
        };
        Ok(self
            .users
            .remember_sent(user, id, record, retention, self.last_id, &mut self.messages))
    }

    fn push_offline_message(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        message: OfflineMessage,
    ) -> Result<(), StoreError> {
        self.messages.hold(message.mid);
        self.users
            .with_inbox(user, inbox, self.last_id, &mut self.messages, |p, l| {
                p.push_message(l, message)
            });
        Ok(())
    }

    fn push_offline_receipt(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        receipt: OfflineReceipt,
    ) -> Result<(), StoreError> {
        self.users
            .with_inbox(user, inbox, self.last_id, &mut self.messages, |p, l| {
                p.push_receipt(l, receipt)
            });
        Ok(())
    }

    fn set_offline_group_count(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        mid: u64,
        group: &GroupId,
        count: u64,
    ) -> Result<(), StoreError> {
        self.users
            .with_inbox(user, inbox, self.last_id, &mut self.messages, |p, _| {
                p.set_count(mid, group, count);
                None
            });
        Ok(())
    }

    fn take_offline(&mut self, user: &UserId, inbox: Inbox<'_>) -> Result<OfflineBatch, StoreError> {
        Ok(self.users.take(user, inbox, &mut self.messages))
    }

    fn stats(&self) -> StoreStats {
        let (users, unseen, offline_bytes, drops) = self.users.stats();
        let sent_ids = self.users.sent_ids();
        let (records, bytes, held, evicted) = self.messages.stats();
        StoreStats {
            users: users as u64,
            users_unseen: unseen as u64,
            users_evicted: drops.users_evicted,
            offline_bytes: offline_bytes as u64,
            offline_dropped_kind: drops.kind,
            offline_dropped_cause: drops.cause,
            message_records: records as u64,
            message_bytes: bytes as u64,
            message_records_held: held as u64,
            message_records_evicted: evicted,
            groups: self.groups.len() as u64,
            conversations_dropped: drops.conversations,
            sent_ids: sent_ids as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }
    use crate::protocol::server::GroupAckCount;

    fn meta(store: &mut MemoryStore, from: &str, to: &str, chat_type: ChatType, receipts: bool) -> MessageMeta {
        MessageMeta {
            from: store.intern_user(from).unwrap(),
            to: Arc::from(to),
            chat_type,
            time: 0,
            group_receipts: receipts,
        }
    }

    #[test]
    fn receipts_are_recorded_once_with_fresh_ids() {
        let mut s = MemoryStore::new(StoreLimits::default());
        let mid = s.next_id().unwrap();
        let m = meta(&mut s, "a", "b", ChatType::Single, false);
        s.insert_message(mid, m).unwrap();
        let Recorded::First { id, .. } = s.record_receipt(mid, ReceiptKind::Delivery).unwrap() else {
            panic!()
        };
        assert!(id > mid);
        assert_eq!(
            s.record_receipt(mid, ReceiptKind::Delivery).unwrap(),
            Recorded::Repeat { id }
        );
        assert!(matches!(
            s.record_receipt(mid, ReceiptKind::Read).unwrap(),
            Recorded::First { .. }
        ));
        assert_eq!(s.record_receipt(999, ReceiptKind::Read).unwrap(), Recorded::NoMessage);
    }

    #[test]
    fn reader_pages_run_newest_first_and_stay_stable_as_readers_arrive() {
        let mut s = MemoryStore::new(StoreLimits::default());
        let mid = s.next_id().unwrap();
        let m = meta(&mut s, "a", "g", ChatType::Group, true);
        s.insert_message(mid, m).unwrap();
        for r in ["r1", "r2", "r3", "r4", "r5"] {
            let r = s.intern_user(r).unwrap();
            assert!(matches!(s.record_group_read(mid, &r).unwrap(), Recorded::First { .. }));
        }
        let r2 = s.intern_user("r2").unwrap();
        assert!(matches!(
            s.record_group_read(mid, &r2).unwrap(),
            Recorded::Repeat { .. }
        ));
        let p1 = s.group_readers(mid, None, 2).unwrap();
        assert_eq!(p1.total, 5);
        assert_eq!(p1.users.iter().map(|u| &**u).collect::<Vec<_>>(), ["r5", "r4"]);
        // A new reader between pages does not shift the next page.
        let r6 = s.intern_user("r6").unwrap();
        s.record_group_read(mid, &r6).unwrap();
        let p2 = s.group_readers(mid, p1.next, 2).unwrap();
        assert_eq!(p2.users.iter().map(|u| &**u).collect::<Vec<_>>(), ["r3", "r2"]);
        let p3 = s.group_readers(mid, p2.next, 2).unwrap();
        assert_eq!(p3.users.iter().map(|u| &**u).collect::<Vec<_>>(), ["r1"]);
        assert_eq!(p3.next, None);
    }

    #[test]
    fn unread_counts_follow_reads_and_channel_acks() {
        let mut s = MemoryStore::new(StoreLimits::default());
        let b = s.intern_user("b").unwrap();
        let a: Arc<str> = Arc::from("a");
        for mid in 1..=3 {
            s.note_message(&b, &a, mid, true).unwrap();
        }
        assert!(s.mark_read(&id("b"), &id("a"), 2).unwrap());
        assert_eq!(s.conversations("b").unwrap()[0].unread, 2);
        s.mark_all_read(&b, ChatType::Single, &a, 3).unwrap();
        assert_eq!(s.conversations("b").unwrap()[0].unread, 0);
        assert!(
            !s.mark_read(&id("b"), &id("a"), 3).unwrap(),
            "covered by the channel ack"
        );
        s.note_message(&b, &a, 4, true).unwrap();
        assert!(s.mark_read(&id("b"), &id("a"), 4).unwrap());
        let c = &s.conversations("b").unwrap()[0];
        assert_eq!((c.unread, c.last_mid), (0, 4));
    }

    #[test]
    fn offline_queues_cap_and_replay_in_mid_order() {
        let limits = StoreLimits {
            offline_single: 2,
            offline_group: 1,
            offline_receipts: 1,
            messages: 10,
            ..StoreLimits::default()
        };
        let mut s = MemoryStore::new(limits);
        let u = s.login_user("u").unwrap();
        let msg = |mid, chat_type| OfflineMessage {
            mid,
            chat_type,
            frame: mid.to_string().into(),
        };
        let user = Inbox::User;
        s.push_offline_message(&u, user, msg(1, ChatType::Single)).unwrap();
        s.push_offline_message(&u, user, msg(2, ChatType::Group)).unwrap();
        s.push_offline_message(&u, user, msg(3, ChatType::Single)).unwrap();
        assert_eq!(s.stats().offline_dropped_kind, [0, 0, 0]);
        s.push_offline_message(&u, user, msg(4, ChatType::Single)).unwrap(); // replaces mid 1
        s.push_offline_message(&u, user, msg(5, ChatType::Group)).unwrap(); // replaces mid 2
        assert_eq!(s.stats().offline_dropped_kind, [2, 0, 0]);
        let from = s.intern_user("x").unwrap();
        let channel = |id| OfflineReceipt::Channel {
            id,
            from: from.clone(),
            to: u.clone(),
            time: 0,
        };
        s.push_offline_receipt(&u, user, channel(6)).unwrap();
        s.push_offline_receipt(&u, user, channel(7)).unwrap();
        assert_eq!(s.stats().offline_dropped_kind, [2, 1, 0]);
        assert_eq!(s.stats().offline_dropped_cause, [3, 0, 0]);
        let g: GroupId = Arc::from("g");
        s.set_offline_group_count(&u, user, 5, &g, 1).unwrap();
        s.set_offline_group_count(&u, user, 5, &g, 2).unwrap();
        s.set_offline_group_count(&u, user, 5, &g, 1).unwrap();
        // A device's inbox is another inbox with the same caps.
        let web = Inbox::Device("web");
        s.push_offline_message(&u, web, msg(8, ChatType::Single)).unwrap();
        assert!(s.take_offline(&id("u"), Inbox::Device("phone")).unwrap().is_empty());
        let batch = s.take_offline(&id("u"), user).unwrap();
        assert_eq!(batch.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(batch.receipts, [channel(7)]);
        assert_eq!(
            batch.group_counts,
            [GroupAckCount {
                mid: 5,
                group_id: "g".into(),
                count: 2
            }],
            "the highest count"
        );
        assert!(s.take_offline(&id("u"), user).unwrap().is_empty(), "taken once");
        let device = s.take_offline(&id("u"), web).unwrap();
        assert_eq!(device.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [8]);
        assert!(s.take_offline(&id("u"), web).unwrap().is_empty());
        assert_eq!(
            s.stats().offline_bytes,
            1024,
            "only x's record is charged: x never logged in"
        );
    }

    #[test]
    fn a_message_waiting_offline_keeps_its_record_past_the_caps() {
        let limits = StoreLimits {
            messages: 2,
            ..StoreLimits::default()
        };
        let mut s = MemoryStore::new(limits);
        let bob = s.login_user("bob").unwrap();
        let first = s.next_id().unwrap();
        let m = meta(&mut s, "a", "bob", ChatType::Single, false);
        s.insert_message(first, m).unwrap();
        let frame = "x".into();
        s.push_offline_message(
            &bob,
            Inbox::User,
            OfflineMessage {
                mid: first,
                chat_type: ChatType::Single,
                frame,
            },
        )
        .unwrap();
        for _ in 0..5 {
            let mid = s.next_id().unwrap();
            let m = meta(&mut s, "a", "bob", ChatType::Single, false);
            s.insert_message(mid, m).unwrap();
        }
        assert!(s.message(first).unwrap().is_some(), "held by bob's inbox");
        assert_eq!((s.stats().message_records, s.stats().message_records_held), (2, 1));
        assert!(matches!(
            s.record_receipt(first, ReceiptKind::Delivery).unwrap(),
            Recorded::First { .. }
        ));
        // Replayed: the record settles, and goes after those that settled before it.
        s.take_offline(&id("bob"), Inbox::User).unwrap();
        let mid = s.next_id().unwrap();
        let m = meta(&mut s, "a", "bob", ChatType::Single, false);
        s.insert_message(mid, m).unwrap();
        assert!(s.message(first).unwrap().is_some());
        let mid = s.next_id().unwrap();
        let m = meta(&mut s, "a", "bob", ChatType::Single, false);
        s.insert_message(mid, m).unwrap();
        assert!(s.message(first).unwrap().is_none() && s.forgotten(first).unwrap());
    }

    #[test]
    fn group_unread_counts_cost_nothing_per_member_and_follow_membership() {
        let mut s = MemoryStore::default();
        let owner = s.login_user("o").unwrap();
        let m1 = s.intern_user("m1").unwrap();
        let g = Group::new(Arc::from("g"), owner.clone(), vec![m1.clone()], vec![]);
        assert!(s.insert_group(g).unwrap());
        assert_eq!(s.groups_owned("o").unwrap(), 1);
        let gid: Arc<str> = Arc::from("g");
        for mid in [10, 11] {
            s.note_group_message(&id("g"), &id("o"), mid).unwrap();
        }
        let conv = |s: &MemoryStore, u: &str| {
            s.conversations(u)
                .unwrap()
                .iter()
                .find(|c| &*c.id == "g")
                .map(|c| (c.unread, c.last_mid))
        };
        assert_eq!(conv(&s, "m1"), Some((2, 11)));
        assert_eq!(conv(&s, "o"), Some((0, 11)), "own messages are not unread");
        let late = s.intern_user("late").unwrap();
        assert!(s.add_member("g", &late).unwrap());
        assert_eq!(conv(&s, "late"), None, "nothing since joining");
        s.note_group_message(&id("g"), &id("m1"), 12).unwrap();
        assert_eq!(conv(&s, "late"), Some((1, 12)));
        s.mark_all_read(&m1, ChatType::Group, &gid, 13).unwrap();
        assert_eq!(conv(&s, "m1"), Some((0, 12)));
        assert!(s.remove_member(&id("g"), &id("late")).unwrap());
        s.note_group_message(&id("g"), &id("o"), 14).unwrap();
        assert_eq!(conv(&s, "late"), Some((1, 12)), "frozen when it left");
        assert_eq!(conv(&s, "m1"), Some((1, 14)));
    }

    #[test]
    fn old_messages_are_evicted_past_the_cap() {
        let limits = StoreLimits {
            messages: 2,
            ..StoreLimits::default()
        };
        let mut s = MemoryStore::new(limits);
        for _ in 0..3 {
            let mid = s.next_id().unwrap();
            let m = meta(&mut s, "a", "b", ChatType::Single, false);
            s.insert_message(mid, m).unwrap();
        }
        assert!(s.message(1).unwrap().is_none());
        assert!(s.message(2).unwrap().is_some() && s.message(3).unwrap().is_some());
    }
}
