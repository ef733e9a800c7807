//! User records: conversations with unread counts, what waits offline, remembered sends; and
//! the two caps that span users.
//!
//! - **Offline bytes.** Everything waiting for one user is charged its bytes; past the
//!   per-user cap that user's oldest entries go. Everything waiting for anyone, plus a fixed
//!   charge per record of a user who never logged in, is charged against the total cap; past
//!   it the oldest go first, across users: for a user who logged in once, its oldest entry;
//!   for one who never did (a made-up recipient, a group member who never came), its whole
//!   record, with all that waited for it. An index of users by the id of their oldest thing
//!   makes "the oldest" O(log users).
//! - **Remembered sends.** Past the cap on client ids in all, the oldest ids beyond a
//!   sender's newest `sent_ids` go first, across senders (an index of senders by the time of
//!   their oldest id beyond that floor); the floor itself is PROTOCOL.md's and always kept.
//! - **Conversations.** A user keeps at most the cap of 1:1 conversations; when it passes the
//!   cap by an eighth, the least recently active are dropped down to the cap (amortized O(1)).
//!   Group conversations are bounded by the groups themselves.
//!
//! A user who logged in once keeps its record (its number is that of real users); only what
//! waits for it is dropped by the caps. Which caps apply is [`StoreLimits`]'s; what was dropped
//! is counted for [`super::StoreStats`].

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::group::{GroupConv, GroupSlot};
use super::messages::MessageTable;
use super::offline::UserOffline;
use super::pending::{Dropped, Pending};
use super::sent::{Retention, SentIds};
use super::{ConversationState, DropCause, GroupId, Inbox, OfflineBatch, SentRecord, StoreLimits, UserId, intern};
use crate::protocol::ChatType;

/// Bytes charged against the total offline cap for the record of a user who never logged in:
/// the record, its map slot, its entry in the age index, its first conversation and the first
/// allocation of its inbox (measured: `charges_against_rss` in the bounds tests).
pub(super) const UNSEEN_USER_BYTES: usize = 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Conv {
    pub unread: u64,
    /// Every message up to this id was covered by a channel ack.
    pub read_upto: u64,
    pub last_mid: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UserRecord {
    #[serde(deserialize_with = "intern::keys")]
    single: FxHashMap<UserId, Conv>,
    #[serde(deserialize_with = "intern::keys")]
    groups: FxHashMap<GroupId, GroupConv>,
    offline: UserOffline,
    pub sent: SentIds,
    /// Logged in at least once.
    seen: bool,
    /// For a user never seen: the newest id when its record was made (its age).
    created: u64,
    /// Its key in the age index, if it is there.
    key: Option<u64>,
    /// Its key in the index of senders with ids beyond the floor, if it is there.
    sent_key: Option<u64>,
    owned_groups: usize,
}

impl UserRecord {
    fn age_key(&self) -> Option<u64> {
        if self.seen {
            self.offline.oldest()
        } else {
            Some(self.created)
        }
    }
}

/// Counters of what the caps dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Drops {
    pub kind: [u64; 3],
    pub cause: [u64; 3],
    pub users_evicted: u64,
    pub conversations: u64,
}

impl Drops {
    fn count(&mut self, d: Dropped, cause: DropCause, holds: &mut MessageTable) {
        self.kind[d.kind as usize] += 1;
        self.cause[cause as usize] += 1;
        if let Some(mid) = d.mid {
            holds.release(mid);
        }
    }
}

/// Every user record, the age index and the offline total. (The caps and the two indexes
/// are not part of its serialized state: a rebuilt store takes the caps from its options and
/// rebuilds the indexes from the records' keys, see [`Users::restored`].)
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Users {
    #[serde(skip)]
    limits: StoreLimits,
    /// Boxed: a map of large inline values wastes its empty slots' worth of them.
    #[serde(deserialize_with = "intern::keys")]
    map: FxHashMap<UserId, Box<UserRecord>>,
    #[serde(skip)]
    index: BTreeSet<(u64, UserId)>,
    total: usize,
    unseen: usize,
    drops: Drops,
    /// Senders with more remembered ids than the floor, by the time of their oldest.
    #[serde(skip)]
    sent_index: BTreeSet<(u64, UserId)>,
    sent_total: usize,
}

impl Users {
    pub(super) fn new(limits: StoreLimits) -> Self {
        Users {
            limits,
            ..Default::default()
        }
    }

    /// Sets the caps and rebuilds the indexes (users rebuilt from a snapshot).
    pub(super) fn restored(&mut self, limits: StoreLimits) {
        self.limits = limits;
        self.index = self
            .map
            .iter()
            .filter_map(|(id, r)| r.key.map(|k| (k, id.clone())))
            .collect();
        self.sent_index = self
            .map
            .iter()
            .filter_map(|(id, r)| r.sent_key.map(|k| (k, id.clone())))
            .collect();
    }

    pub(super) fn get(&self, user: &str) -> Option<&UserRecord> {
        self.map.get(user).map(|r| &**r)
    }

    /// (records, never seen, offline bytes charged, drops).
    pub(super) fn stats(&self) -> (usize, usize, usize, Drops) {
        (self.map.len(), self.unseen, self.total, self.drops)
    }

    /// The shared id of `user`, making a record of a user not seen yet if there is none
    /// (`now` is the newest id: its age). Never evicts that record itself.
    pub(super) fn intern(&mut self, user: &str, now: u64, holds: &mut MessageTable) -> UserId {
        if let Some((id, _)) = self.map.get_key_value(user) {
            return id.clone();
        }
        let id: UserId = Arc::from(user);
        let record = UserRecord {
            created: now,
            ..Default::default()
        };
        self.map.insert(id.clone(), Box::new(record));
        self.unseen += 1;
        self.total += UNSEEN_USER_BYTES;
        self.rekey(&id);
        self.enforce_total(holds, Some(&id));
        id
    }

    /// `user` logged in: its record is kept from now on.
    pub(super) fn login(&mut self, user: &str, now: u64, holds: &mut MessageTable) -> UserId {
        let id = self.intern(user, now, holds);
        let r = self.map.get_mut(user).expect("interned");
        if !r.seen {
            r.seen = true;
            self.unseen -= 1;
            self.total -= UNSEEN_USER_BYTES;
            self.rekey(&id);
        }
        id
    }

    /// The record of `user`, made if there is none.
    pub(super) fn record_mut(&mut self, user: &str, now: u64, holds: &mut MessageTable) -> &mut UserRecord {
        self.intern(user, now, holds);
        self.map
            .get_mut(user)
            .expect("interning never evicts the record it made")
    }

    /// Applies `f` to one of `user`'s inboxes (it returns what its count cap dropped), then
    /// the per-user and the total byte caps.
    pub(super) fn with_inbox(
        &mut self,
        user: &str,
        inbox: Inbox<'_>,
        now: u64,
        holds: &mut MessageTable,
        f: impl FnOnce(&mut Pending, &StoreLimits) -> Option<Dropped>,
    ) {
        let id = self.intern(user, now, holds);
        let limits = self.limits;
        let Users { map, drops, .. } = self;
        let r = map.get_mut(user).expect("interned");
        let before = r.offline.bytes();
        if let Some(d) = r.offline.with_inbox(inbox, |p| f(p, &limits)) {
            drops.count(d, DropCause::Count, holds);
        }
        while r.offline.bytes() > limits.offline_user_bytes {
            let Some(d) = r.offline.drop_oldest() else { break };
            drops.count(d, DropCause::UserBytes, holds);
        }
        self.total = self.total + r.offline.bytes() - before;
        self.rekey(&id);
        self.enforce_total(holds, Some(&id));
    }

    /// Takes one of `user`'s inboxes; the records its messages referred to are released.
    pub(super) fn take(&mut self, user: &str, inbox: Inbox<'_>, holds: &mut MessageTable) -> OfflineBatch {
        let Some((id, r)) = self.map.get_key_value(user) else {
            return OfflineBatch::default();
        };
        let id = id.clone();
        let before = r.offline.bytes();
        let r = self.map.get_mut(user).expect("present");
        let batch = r.offline.take(inbox);
        self.total = self.total + r.offline.bytes() - before;
        for m in &batch.messages {
            holds.release(m.mid);
        }
        self.rekey(&id);
        batch
    }

    /// Client ids remembered, all senders together.
    pub(super) fn sent_ids(&self) -> usize {
        self.sent_total
    }

    /// Remembers `user`'s accepted send, then applies the cap across senders. Returns how
    /// many ids accepted at or after the cutoff were forgotten.
    pub(super) fn remember_sent(
        &mut self,
        user: &str,
        id: &str,
        record: SentRecord,
        retention: Retention,
        now: u64,
        holds: &mut MessageTable,
    ) -> usize {
        let uid = self.intern(user, now, holds);
        let r = self.map.get_mut(user).expect("interned");
        let before = r.sent.len();
        let mut early = usize::from(r.sent.insert(id, record, retention));
        self.sent_total = self.sent_total + r.sent.len() - before;
        self.sent_rekey(&uid, retention.keep);
        while self.sent_total > self.limits.sent_ids_total {
            let Some((_, sender)) = self.sent_index.first().cloned() else {
                break; // everyone is within the floor
            };
            let Some(time) = self.map.get_mut(&sender).and_then(|r| r.sent.pop_oldest()) else {
                self.sent_index.pop_first();
                continue;
            };
            self.sent_total -= 1;
            early += usize::from(time >= retention.cutoff);
            self.sent_rekey(&sender, retention.keep);
        }
        early
    }

    /// Puts `user` in the index of senders beyond the floor, or takes it out.
    fn sent_rekey(&mut self, user: &UserId, floor: usize) {
        let Users { map, sent_index, .. } = self;
        let Some(r) = map.get_mut(user) else { return };
        let key = if r.sent.len() > floor {
            r.sent.oldest_time()
        } else {
            None
        };
        if key == r.sent_key {
            return;
        }
        if let Some(old) = r.sent_key {
            sent_index.remove(&(old, user.clone()));
        }
        r.sent_key = key;
        if let Some(k) = key {
            sent_index.insert((k, user.clone()));
        }
    }

    /// Puts `user` in the age index under its current key.
    fn rekey(&mut self, user: &UserId) {
        let Users { map, index, .. } = self;
        let Some(r) = map.get_mut(user) else { return };
        let key = r.age_key();
        if key == r.key {
            return;
        }
        if let Some(old) = r.key {
            index.remove(&(old, user.clone()));
        }
        r.key = key;
        if let Some(k) = key {
            index.insert((k, user.clone()));
        }
    }

    /// Drops the oldest things of all until the total is within its cap. `keep` is a record
    /// being worked on: its entries may go, the record itself does not.
    fn enforce_total(&mut self, holds: &mut MessageTable, keep: Option<&str>) {
        while self.total > self.limits.offline_total_bytes {
            let Some((_, user)) = self
                .index
                .iter()
                .find(|(_, u)| Some(&**u) != keep)
                .or_else(|| self.index.first())
                .cloned()
            else {
                return;
            };
            let Users { map, drops, .. } = self;
            let Some(r) = map.get_mut(&user) else { return };
            if !r.seen && Some(&*user) != keep {
                self.evict_user(&user, holds);
                continue;
            }
            let before = r.offline.bytes();
            let Some(d) = r.offline.drop_oldest() else {
                return; // only `keep`'s bare record is left
            };
            drops.count(d, DropCause::TotalBytes, holds);
            self.total = self.total + r.offline.bytes() - before;
            self.rekey(&user);
        }
    }

    /// Drops the record of a user who never logged in, and all that waited for it.
    fn evict_user(&mut self, user: &UserId, holds: &mut MessageTable) {
        let Some(mut r) = self.map.remove(user) else { return };
        if let Some(k) = r.key {
            self.index.remove(&(k, user.clone()));
        }
        if let Some(k) = r.sent_key {
            self.sent_index.remove(&(k, user.clone()));
        }
        self.sent_total -= r.sent.len();
        self.total -= r.offline.bytes() + UNSEEN_USER_BYTES;
        self.unseen -= 1;
        self.drops.users_evicted += 1;
        for d in r.offline.clear() {
            self.drops.count(d, DropCause::TotalBytes, holds);
        }
    }

    // ---- conversations -----------------------------------------------------------------

    /// Notes a 1:1 message in `user`'s conversation with `peer`.
    pub(super) fn note_message(
        &mut self,
        user: &str,
        peer: &UserId,
        mid: u64,
        unread: bool,
        now: u64,
        holds: &mut MessageTable,
    ) {
        let cap = self.limits.conversations;
        let r = self.record_mut(user, now, holds);
        let c = r.single.entry(peer.clone()).or_default();
        c.last_mid = c.last_mid.max(mid);
        if unread {
            c.unread += 1;
        }
        let dropped = trim(&mut r.single, cap);
        self.drops.conversations += dropped;
    }

    /// A 1:1 read of `mid`: one unread less if it was still unread.
    pub(super) fn mark_read(&mut self, user: &str, peer: &str, mid: u64) -> bool {
        let Some(c) = self.map.get_mut(user).and_then(|u| u.single.get_mut(peer)) else {
            return false;
        };
        if mid <= c.read_upto || c.unread == 0 {
            return false;
        }
        c.unread -= 1;
        true
    }

    /// A 1:1 channel ack up to `upto`.
    pub(super) fn mark_all_read(&mut self, user: &str, peer: &UserId, upto: u64, now: u64, holds: &mut MessageTable) {
        let cap = self.limits.conversations;
        let r = self.record_mut(user, now, holds);
        let c = r.single.entry(peer.clone()).or_default();
        c.unread = 0;
        c.read_upto = c.read_upto.max(upto);
        let dropped = trim(&mut r.single, cap);
        self.drops.conversations += dropped;
    }

    /// Applies `f` to `user`'s conversation of group `group` (made, as a member's, if none).
    pub(super) fn group_conv(
        &mut self,
        user: &str,
        group: &GroupSlot,
        now: u64,
        holds: &mut MessageTable,
        f: impl FnOnce(&mut GroupConv, (u64, u64)),
    ) {
        let r = self.record_mut(user, now, holds);
        let c = r.groups.entry(group.group.id().clone()).or_insert_with(|| GroupConv {
            member: true,
            seq: group.counters().0,
            ..GroupConv::default()
        });
        f(c, group.counters());
    }

    /// Counts a group message `user` sent (not unread for them).
    pub(super) fn note_own_group_message(&mut self, user: &str, group: &str) {
        if let Some(c) = self.map.get_mut(user).and_then(|r| r.groups.get_mut(group)) {
            c.own += 1;
        }
    }

    /// `user` created a group.
    pub(super) fn note_owned(&mut self, user: &str, now: u64, holds: &mut MessageTable) {
        self.record_mut(user, now, holds).owned_groups += 1;
    }

    /// Groups `user` created.
    pub(super) fn owned(&self, user: &str) -> usize {
        self.map.get(user).map_or(0, |r| r.owned_groups)
    }

    /// `user`'s conversations, newest first, at most the cap.
    pub(super) fn conversations(&self, user: &str, groups: &FxHashMap<GroupId, GroupSlot>) -> Vec<ConversationState> {
        let Some(u) = self.map.get(user) else {
            return Vec::new();
        };
        let single = u.single.iter().map(|(id, c)| ConversationState {
            id: id.clone(),
            chat_type: ChatType::Single,
            unread: c.unread,
            last_mid: c.last_mid,
        });
        let group = u.groups.iter().map(|(id, c)| {
            let (unread, last_mid) = groups.get(id).map_or((c.unread, c.last_mid), |g| c.view(g.counters()));
            ConversationState {
                id: id.clone(),
                chat_type: ChatType::Group,
                unread,
                last_mid,
            }
        });
        let mut out: Vec<ConversationState> = single.chain(group).filter(|c| c.last_mid > 0).collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.last_mid));
        out.truncate(self.limits.conversations);
        out
    }
}

/// Drops the least recently active conversations down to `cap` once there are an eighth more:
/// returns how many went.
fn trim(convs: &mut FxHashMap<UserId, Conv>, cap: usize) -> u64 {
    if convs.len() <= cap + cap / 8 {
        return 0;
    }
    let mut by_age: Vec<(u64, UserId)> = convs.iter().map(|(k, c)| (c.last_mid, k.clone())).collect();
    let excess = convs.len() - cap;
    by_age.select_nth_unstable_by_key(excess - 1, |(m, _)| *m);
    for (_, k) in &by_age[..excess] {
        convs.remove(k);
    }
    excess as u64
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
