//! [`MemoryStore`]: the in-memory [`Store`], hash maps keyed by interned ids.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::pending::Pending;
use super::sent::{Retention, SentIds};
use super::{
    ConversationState, Group, GroupId, Inbox, MessageMeta, OfflineBatch, OfflineMessage, OfflineReceipt, ReaderPage,
    ReceiptKind, Recorded, SentRecord, Store, StoreLimits, UserId,
};
use crate::protocol::ChatType;

/// Keeps everything in process memory; lost when the server stops.
#[derive(Debug, Default)]
pub struct MemoryStore {
    limits: StoreLimits,
    last_id: u64,
    users: FxHashMap<UserId, UserRecord>,
    groups: FxHashMap<GroupId, Group>,
    messages: Messages,
    /// Stored mids, oldest first, for eviction past `limits.messages`.
    order: VecDeque<u64>,
}

/// Message records in shards by id: a growing hash map rehashes everything at once, and one
/// map of a million records stalls routing (the hub's lock is held) for tens of milliseconds;
/// a shard rehashes 1/64 of that.
#[derive(Debug)]
struct Messages {
    shards: Vec<FxHashMap<u64, MessageRecord>>,
}

const SHARDS: usize = 64;

impl Default for Messages {
    fn default() -> Self {
        Messages {
            shards: (0..SHARDS).map(|_| FxHashMap::default()).collect(),
        }
    }
}

impl Messages {
    fn shard(mid: u64) -> usize {
        // Ids are sequential: the low bits spread them evenly.
        (mid % SHARDS as u64) as usize
    }

    fn insert(&mut self, mid: u64, record: MessageRecord) {
        self.shards[Self::shard(mid)].insert(mid, record);
    }

    fn remove(&mut self, mid: u64) {
        self.shards[Self::shard(mid)].remove(&mid);
    }

    fn get(&self, mid: u64) -> Option<&MessageRecord> {
        self.shards[Self::shard(mid)].get(&mid)
    }

    fn get_mut(&mut self, mid: u64) -> Option<&mut MessageRecord> {
        self.shards[Self::shard(mid)].get_mut(&mid)
    }
}

#[derive(Debug)]
struct MessageRecord {
    meta: MessageMeta,
    delivery: Option<u64>,
    read: Option<u64>,
    /// Group messages with receipts kept.
    readers: Option<Box<Readers>>,
}

/// A group message's reader set: insertion order (for paging) and receipt id per reader.
#[derive(Debug, Default)]
struct Readers {
    order: Vec<UserId>,
    ids: FxHashMap<UserId, u64>,
}

#[derive(Debug, Default)]
struct UserRecord {
    single: FxHashMap<Arc<str>, Conv>,
    group: FxHashMap<Arc<str>, Conv>,
    /// What arrived while none of the user's devices was online.
    offline: Pending,
    /// Per device: pushes its closing connection did not write (no entry when empty).
    devices: FxHashMap<Arc<str>, Pending>,
    sent: SentIds,
}

impl UserRecord {
    fn inbox_mut(&mut self, inbox: Inbox<'_>) -> &mut Pending {
        match inbox {
            Inbox::User => &mut self.offline,
            Inbox::Device(d) => {
                if !self.devices.contains_key(d) {
                    self.devices.insert(Arc::from(d), Pending::default());
                }
                self.devices.get_mut(d).expect("just inserted")
            }
        }
    }

    fn convs(&self, chat_type: ChatType) -> &FxHashMap<Arc<str>, Conv> {
        match chat_type {
            ChatType::Single => &self.single,
            ChatType::Group => &self.group,
        }
    }

    fn convs_mut(&mut self, chat_type: ChatType) -> &mut FxHashMap<Arc<str>, Conv> {
        match chat_type {
            ChatType::Single => &mut self.single,
            ChatType::Group => &mut self.group,
        }
    }

    fn conv_mut(&mut self, chat_type: ChatType, conv: &Arc<str>) -> &mut Conv {
        let convs = self.convs_mut(chat_type);
        if !convs.contains_key(&**conv) {
            convs.insert(conv.clone(), Conv::default());
        }
        convs.get_mut(&**conv).expect("just inserted")
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Conv {
    unread: u64,
    /// Every message up to this id was covered by a channel ack.
    read_upto: u64,
    last_mid: u64,
}

impl MemoryStore {
    /// An empty store with the given caps.
    pub fn new(limits: StoreLimits) -> Self {
        MemoryStore {
            limits,
            ..Default::default()
        }
    }

    fn user_mut(&mut self, user: &UserId) -> &mut UserRecord {
        if !self.users.contains_key(&**user) {
            self.users.insert(user.clone(), UserRecord::default());
        }
        self.users.get_mut(&**user).expect("just inserted")
    }
}

impl Store for MemoryStore {
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn last_id(&self) -> u64 {
        self.last_id
    }

    fn intern_user(&mut self, user: &str) -> UserId {
        if let Some((id, _)) = self.users.get_key_value(user) {
            return id.clone();
        }
        let id: UserId = Arc::from(user);
        self.users.insert(id.clone(), UserRecord::default());
        id
    }

    fn insert_message(&mut self, mid: u64, meta: MessageMeta) {
        let readers = meta.group_receipts.then(Box::default);
        self.messages.insert(
            mid,
            MessageRecord {
                meta,
                delivery: None,
                read: None,
                readers,
            },
        );
        self.order.push_back(mid);
        while self.order.len() > self.limits.messages {
            if let Some(old) = self.order.pop_front() {
                self.messages.remove(old);
            }
        }
    }

    fn message(&self, mid: u64) -> Option<&MessageMeta> {
        self.messages.get(mid).map(|m| &m.meta)
    }

    fn record_receipt(&mut self, mid: u64, kind: ReceiptKind) -> Recorded {
        let next = self.last_id + 1;
        let Some(record) = self.messages.get_mut(mid) else {
            return Recorded::NoMessage;
        };
        let slot = match kind {
            ReceiptKind::Delivery => &mut record.delivery,
            ReceiptKind::Read => &mut record.read,
        };
        match *slot {
            Some(id) => Recorded::Repeat { id },
            None => {
                *slot = Some(next);
                self.last_id = next;
                Recorded::First { id: next, count: 1 }
            }
        }
    }

    fn record_group_read(&mut self, mid: u64, reader: &UserId) -> Recorded {
        let next = self.last_id + 1;
        let Some(readers) = self.messages.get_mut(mid).and_then(|m| m.readers.as_mut()) else {
            return Recorded::NoMessage;
        };
        if let Some(&id) = readers.ids.get(&**reader) {
            return Recorded::Repeat { id };
        }
        readers.ids.insert(reader.clone(), next);
        readers.order.push(reader.clone());
        self.last_id = next;
        Recorded::First {
            id: next,
            count: readers.order.len() as u64,
        }
    }

    fn group_readers(&self, mid: u64, before: Option<usize>, limit: usize) -> ReaderPage {
        let Some(readers) = self.messages.get(mid).and_then(|m| m.readers.as_ref()) else {
            return ReaderPage {
                total: 0,
                users: Vec::new(),
                next: None,
            };
        };
        let len = readers.order.len();
        let end = before.unwrap_or(len).min(len);
        let start = end.saturating_sub(limit);
        ReaderPage {
            total: len as u64,
            users: readers.order[start..end].iter().rev().cloned().collect(),
            next: (start > 0).then_some(start),
        }
    }

    fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    fn group_mut(&mut self, id: &str) -> Option<&mut Group> {
        self.groups.get_mut(id)
    }

    fn insert_group(&mut self, group: Group) -> bool {
        if self.groups.contains_key(&**group.id()) {
            return false;
        }
        self.groups.insert(group.id().clone(), group);
        true
    }

    fn note_message(&mut self, user: &UserId, chat_type: ChatType, conv: &Arc<str>, mid: u64, unread: bool) {
        let c = self.user_mut(user).conv_mut(chat_type, conv);
        c.last_mid = c.last_mid.max(mid);
        if unread {
            c.unread += 1;
        }
    }

    fn mark_read(&mut self, user: &str, chat_type: ChatType, conv: &str, mid: u64) -> bool {
        let Some(c) = self
            .users
            .get_mut(user)
            .and_then(|u| u.convs_mut(chat_type).get_mut(conv))
        else {
            return false;
        };
        if mid <= c.read_upto || c.unread == 0 {
            return false;
        }
        c.unread -= 1;
        true
    }

    fn mark_all_read(&mut self, user: &UserId, chat_type: ChatType, conv: &Arc<str>, upto: u64) {
        let c = self.user_mut(user).conv_mut(chat_type, conv);
        c.unread = 0;
        c.read_upto = c.read_upto.max(upto);
    }

    fn conversations(&self, user: &str) -> Vec<ConversationState> {
        let Some(u) = self.users.get(user) else {
            return Vec::new();
        };
        let mut out: Vec<ConversationState> = [ChatType::Single, ChatType::Group]
            .into_iter()
            .flat_map(|chat_type| {
                u.convs(chat_type)
                    .iter()
                    .filter(|(_, c)| c.last_mid > 0)
                    .map(move |(id, c)| ConversationState {
                        id: id.clone(),
                        chat_type,
                        unread: c.unread,
                        last_mid: c.last_mid,
                    })
            })
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.last_mid));
        out
    }

    fn sent(&self, user: &str, id: &str) -> Option<SentRecord> {
        self.users.get(user).and_then(|u| u.sent.get(id)).cloned()
    }

    fn remember_sent(&mut self, user: &UserId, id: &str, record: SentRecord, cutoff: u64) -> bool {
        let retention = Retention {
            keep: self.limits.sent_ids,
            max: self.limits.sent_ids_max,
            cutoff,
        };
        self.user_mut(user).sent.insert(id, record, retention)
    }

    fn push_offline_message(&mut self, user: &UserId, inbox: Inbox<'_>, message: OfflineMessage) -> bool {
        let limits = self.limits;
        self.user_mut(user).inbox_mut(inbox).push_message(&limits, message)
    }

    fn push_offline_receipt(&mut self, user: &UserId, inbox: Inbox<'_>, receipt: OfflineReceipt) -> bool {
        let limits = self.limits;
        self.user_mut(user).inbox_mut(inbox).push_receipt(&limits, receipt)
    }

    fn set_offline_group_count(&mut self, user: &UserId, inbox: Inbox<'_>, mid: u64, group: &GroupId, count: u64) {
        self.user_mut(user).inbox_mut(inbox).set_count(mid, group, count);
    }

    fn take_offline(&mut self, user: &str, inbox: Inbox<'_>) -> OfflineBatch {
        let Some(u) = self.users.get_mut(user) else {
            return OfflineBatch::default();
        };
        match inbox {
            Inbox::User => u.offline.take(),
            Inbox::Device(d) => u.devices.remove(d).map(|mut p| p.take()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::server::GroupAckCount;

    fn meta(store: &mut MemoryStore, from: &str, to: &str, chat_type: ChatType, receipts: bool) -> MessageMeta {
        MessageMeta {
            from: store.intern_user(from),
            to: Arc::from(to),
            chat_type,
            time: 0,
            group_receipts: receipts,
        }
    }

    #[test]
    fn receipts_are_recorded_once_with_fresh_ids() {
        let mut s = MemoryStore::new(StoreLimits::default());
        let mid = s.next_id();
        let m = meta(&mut s, "a", "b", ChatType::Single, false);
        s.insert_message(mid, m);
        let Recorded::First { id, .. } = s.record_receipt(mid, ReceiptKind::Delivery) else {
            panic!()
        };
        assert!(id > mid);
        assert_eq!(s.record_receipt(mid, ReceiptKind::Delivery), Recorded::Repeat { id });
        assert!(matches!(
            s.record_receipt(mid, ReceiptKind::Read),
            Recorded::First { .. }
        ));
        assert_eq!(s.record_receipt(999, ReceiptKind::Read), Recorded::NoMessage);
    }

    #[test]
    fn reader_pages_run_newest_first_and_stay_stable_as_readers_arrive() {
        let mut s = MemoryStore::new(StoreLimits::default());
        let mid = s.next_id();
        let m = meta(&mut s, "a", "g", ChatType::Group, true);
        s.insert_message(mid, m);
        for r in ["r1", "r2", "r3", "r4", "r5"] {
            let r = s.intern_user(r);
            assert!(matches!(s.record_group_read(mid, &r), Recorded::First { .. }));
        }
        let r2 = s.intern_user("r2");
        assert!(matches!(s.record_group_read(mid, &r2), Recorded::Repeat { .. }));
        let p1 = s.group_readers(mid, None, 2);
        assert_eq!(p1.total, 5);
        assert_eq!(p1.users.iter().map(|u| &**u).collect::<Vec<_>>(), ["r5", "r4"]);
        // A new reader between pages does not shift the next page.
        let r6 = s.intern_user("r6");
        s.record_group_read(mid, &r6);
        let p2 = s.group_readers(mid, p1.next, 2);
        assert_eq!(p2.users.iter().map(|u| &**u).collect::<Vec<_>>(), ["r3", "r2"]);
        let p3 = s.group_readers(mid, p2.next, 2);
        assert_eq!(p3.users.iter().map(|u| &**u).collect::<Vec<_>>(), ["r1"]);
        assert_eq!(p3.next, None);
    }

    #[test]
    fn unread_counts_follow_reads_and_channel_acks() {
        let mut s = MemoryStore::new(StoreLimits::default());
        let b = s.intern_user("b");
        let a: Arc<str> = Arc::from("a");
        for mid in 1..=3 {
            s.note_message(&b, ChatType::Single, &a, mid, true);
        }
        assert!(s.mark_read("b", ChatType::Single, "a", 2));
        assert_eq!(s.conversations("b")[0].unread, 2);
        s.mark_all_read(&b, ChatType::Single, &a, 3);
        assert_eq!(s.conversations("b")[0].unread, 0);
        assert!(
            !s.mark_read("b", ChatType::Single, "a", 3),
            "covered by the channel ack"
        );
        s.note_message(&b, ChatType::Single, &a, 4, true);
        assert!(s.mark_read("b", ChatType::Single, "a", 4));
        let c = &s.conversations("b")[0];
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
        let u = s.intern_user("u");
        let msg = |mid, chat_type| OfflineMessage {
            mid,
            chat_type,
            frame: mid.to_string().into(),
        };
        let user = Inbox::User;
        assert!(!s.push_offline_message(&u, user, msg(1, ChatType::Single)));
        assert!(!s.push_offline_message(&u, user, msg(2, ChatType::Group)));
        assert!(!s.push_offline_message(&u, user, msg(3, ChatType::Single)));
        assert!(
            s.push_offline_message(&u, user, msg(4, ChatType::Single)),
            "replaces mid 1"
        );
        assert!(
            s.push_offline_message(&u, user, msg(5, ChatType::Group)),
            "replaces mid 2"
        );
        let from = s.intern_user("x");
        let channel = |id| OfflineReceipt::Channel {
            id,
            from: from.clone(),
            to: u.clone(),
            time: 0,
        };
        assert!(!s.push_offline_receipt(&u, user, channel(6)));
        assert!(s.push_offline_receipt(&u, user, channel(7)));
        let g: GroupId = Arc::from("g");
        s.set_offline_group_count(&u, user, 5, &g, 1);
        s.set_offline_group_count(&u, user, 5, &g, 2);
        s.set_offline_group_count(&u, user, 5, &g, 1);
        // A device's inbox is another inbox with the same caps.
        let web = Inbox::Device("web");
        assert!(!s.push_offline_message(&u, web, msg(8, ChatType::Single)));
        assert!(s.take_offline("u", Inbox::Device("phone")).is_empty());
        let batch = s.take_offline("u", user);
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
        assert!(s.take_offline("u", user).is_empty(), "taken once");
        let device = s.take_offline("u", web);
        assert_eq!(device.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [8]);
        assert!(s.take_offline("u", web).is_empty());
        assert!(s.users["u"].devices.is_empty(), "an empty device inbox leaves no entry");
    }

    #[test]
    fn old_messages_are_evicted_past_the_cap() {
        let limits = StoreLimits {
            messages: 2,
            ..StoreLimits::default()
        };
        let mut s = MemoryStore::new(limits);
        for _ in 0..3 {
            let mid = s.next_id();
            let m = meta(&mut s, "a", "b", ChatType::Single, false);
            s.insert_message(mid, m);
        }
        assert!(s.message(1).is_none());
        assert!(s.message(2).is_some() && s.message(3).is_some());
    }
}
