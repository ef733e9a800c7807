//! Message records (what receipts are checked against and deduplicated by), kept within a
//! count and a memory cap.
//!
//! A record is *held* while a copy of its message waits in an offline inbox: a receipt for
//! such a message must never get `not_found`, so a held record is never evicted, whatever the
//! caps. A record that nothing holds is *settled*; when the caps are passed, the records
//! settled longest ago go first (a record settles when it is stored unheld, or when the last
//! inbox copy of its message leaves: so a message just replayed at login starts a fresh turn).
//! Held records are bounded by the offline caps.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{MessageMeta, UserId, intern};

/// Bytes charged per record: the record, its map slot at the usual load, its settle-queue
/// entry (an estimate, checked against the process's RSS in the bounds tests).
pub(super) const RECORD_BYTES: usize = 192;
/// Bytes charged per reader of a group message (its place in the reader list and map).
pub(super) const READER_BYTES: usize = 64;

/// Records in shards by id: a growing hash map rehashes everything at once, and one map of a
/// million records stalls routing (the hub's lock is held) for tens of milliseconds; a shard
/// rehashes 1/64 of that.
const SHARDS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MessageRecord {
    pub meta: MessageMeta,
    pub delivery: Option<u64>,
    pub read: Option<u64>,
    /// Group messages with receipts kept.
    pub readers: Option<Box<Readers>>,
    /// Offline copies of the message that refer to this record.
    held: u32,
    /// This record's latest entry in the settle queue.
    settled: u64,
}

/// A group message's reader set: insertion order (for paging) and receipt id per reader.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Readers {
    #[serde(deserialize_with = "intern::seq")]
    pub order: Vec<UserId>,
    #[serde(deserialize_with = "intern::keys")]
    pub ids: FxHashMap<UserId, u64>,
}

/// The records and their eviction order. (Its caps are not part of its serialized state: a
/// rebuilt store takes them from the options it is opened with.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MessageTable {
    shards: Vec<FxHashMap<u64, MessageRecord>>,
    /// (mid, turn) in the order records settled; an entry whose record is held, gone, or
    /// settled again since is skipped.
    settle: VecDeque<(u64, u64)>,
    next_turn: u64,
    count: usize,
    bytes: usize,
    held: usize,
    #[serde(skip)]
    max_count: usize,
    #[serde(skip)]
    max_bytes: usize,
    evicted: u64,
    newest_evicted: u64,
}

fn shard(mid: u64) -> usize {
    // Ids are sequential: the low bits spread them evenly.
    (mid % SHARDS as u64) as usize
}

fn record_bytes(r: &MessageRecord) -> usize {
    RECORD_BYTES + r.readers.as_ref().map_or(0, |x| x.order.len() * READER_BYTES)
}

impl MessageTable {
    /// An empty table with caps on records and their estimated bytes.
    pub(super) fn new(max_count: usize, max_bytes: usize) -> Self {
        MessageTable {
            shards: (0..SHARDS).map(|_| FxHashMap::default()).collect(),
            settle: VecDeque::new(),
            next_turn: 0,
            count: 0,
            bytes: 0,
            held: 0,
            max_count,
            max_bytes,
            evicted: 0,
            newest_evicted: 0,
        }
    }

    /// Makes room (the new record counts) and stores a new, settled record.
    pub(super) fn insert(&mut self, mid: u64, meta: MessageMeta) {
        let readers = meta.group_receipts.then(Box::default);
        self.evict(RECORD_BYTES);
        let turn = self.turn(mid);
        self.shards[shard(mid)].insert(
            mid,
            MessageRecord {
                meta,
                delivery: None,
                read: None,
                readers,
                held: 0,
                settled: turn,
            },
        );
        self.count += 1;
        self.bytes += RECORD_BYTES;
    }

    /// Sets the caps (a table rebuilt from a snapshot).
    pub(super) fn set_caps(&mut self, max_count: usize, max_bytes: usize) {
        self.max_count = max_count;
        self.max_bytes = max_bytes;
    }

    pub(super) fn get(&self, mid: u64) -> Option<&MessageRecord> {
        self.shards[shard(mid)].get(&mid)
    }

    pub(super) fn get_mut(&mut self, mid: u64) -> Option<&mut MessageRecord> {
        self.shards[shard(mid)].get_mut(&mid)
    }

    /// Adds a reader to a group message's set; false when it has no set (or no record).
    pub(super) fn add_reader(&mut self, mid: u64, reader: &UserId, id: u64) -> bool {
        let Some(readers) = self.get_mut(mid).and_then(|m| m.readers.as_mut()) else {
            return false;
        };
        readers.ids.insert(reader.clone(), id);
        readers.order.push(reader.clone());
        self.bytes += READER_BYTES;
        self.evict(0);
        true
    }

    /// An offline copy of `mid` was stored: its record is kept until the copy leaves.
    pub(super) fn hold(&mut self, mid: u64) {
        if let Some(r) = self.get_mut(mid) {
            r.held += 1;
            if r.held == 1 {
                self.held += 1;
            }
        }
    }

    /// An offline copy of `mid` left its inbox (replayed or dropped); the last one settles the
    /// record, which starts a fresh turn in the eviction order.
    pub(super) fn release(&mut self, mid: u64) {
        let Some(r) = self.get_mut(mid).filter(|r| r.held > 0) else {
            return;
        };
        r.held -= 1;
        if r.held > 0 {
            return;
        }
        self.held -= 1;
        let turn = self.turn(mid);
        if let Some(r) = self.get_mut(mid) {
            r.settled = turn;
        }
        self.evict(0);
    }

    /// True when `mid` names no record now but is not newer than an evicted one.
    pub(super) fn forgotten(&self, mid: u64) -> bool {
        mid <= self.newest_evicted && self.get(mid).is_none()
    }

    /// (records, bytes, held, evicted so far).
    pub(super) fn stats(&self) -> (usize, usize, usize, u64) {
        (self.count, self.bytes, self.held, self.evicted)
    }

    fn turn(&mut self, mid: u64) -> u64 {
        self.next_turn += 1;
        self.settle.push_back((mid, self.next_turn));
        self.next_turn
    }

    /// Evicts the records settled longest ago until `extra` more bytes and one more record
    /// would fit (or nothing settled is left: held records stay whatever the caps).
    fn evict(&mut self, extra: usize) {
        let room = usize::from(extra > 0);
        while self.count + room > self.max_count || self.bytes + extra > self.max_bytes {
            let Some((mid, turn)) = self.settle.pop_front() else {
                break;
            };
            let map = &mut self.shards[shard(mid)];
            if map.get(&mid).is_none_or(|r| r.held > 0 || r.settled != turn) {
                continue;
            }
            if let Some(r) = map.remove(&mid) {
                self.count -= 1;
                self.bytes -= record_bytes(&r);
                self.evicted += 1;
                self.newest_evicted = self.newest_evicted.max(mid);
            }
        }
        // Entries of records held, gone or settled again are skipped when they come up; when
        // they are most of the queue, drop them all at once (amortized O(1) per entry).
        if self.settle.len() > 2 * self.count + 1024 {
            let shards = &self.shards;
            self.settle.retain(|(mid, turn)| {
                shards[shard(*mid)]
                    .get(mid)
                    .is_some_and(|r| r.held == 0 && r.settled == *turn)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::ChatType;

    fn meta() -> MessageMeta {
        MessageMeta {
            from: Arc::from("a"),
            to: Arc::from("b"),
            chat_type: ChatType::Single,
            time: 0,
            group_receipts: false,
        }
    }

    #[test]
    fn the_oldest_settled_go_first_and_held_records_stay() {
        let mut t = MessageTable::new(3, usize::MAX);
        for mid in 1..=3 {
            t.insert(mid, meta());
        }
        t.hold(1); // waits in an offline inbox
        t.insert(4, meta());
        assert!(t.get(1).is_some(), "held");
        assert!(t.get(2).is_none() && t.forgotten(2));
        t.release(1); // replayed: settles now, after 3 and 4
        t.insert(5, meta());
        assert!(t.get(3).is_none());
        t.insert(6, meta());
        assert!(t.get(4).is_none());
        assert!(t.get(1).is_some(), "its turn came after 4");
        t.insert(7, meta());
        assert!(t.get(1).is_none() && t.forgotten(1));
        assert!(!t.forgotten(8), "never evicted: newer than every evicted id");
        assert_eq!(t.stats(), (3, 3 * RECORD_BYTES, 0, 4));
    }

    #[test]
    fn bytes_cap_counts_readers_and_everything_held_can_pass_it() {
        let mut t = MessageTable::new(usize::MAX, 2 * RECORD_BYTES + READER_BYTES);
        let group = MessageMeta {
            group_receipts: true,
            chat_type: ChatType::Group,
            ..meta()
        };
        t.insert(1, group);
        assert!(t.add_reader(1, &Arc::from("r"), 10));
        t.insert(2, meta());
        t.insert(3, meta());
        assert!(t.get(1).is_none(), "1 and its reader made room for 3");
        t.hold(2);
        t.hold(3);
        t.insert(4, meta());
        t.insert(5, meta());
        assert!(t.get(2).is_some() && t.get(3).is_some(), "held: kept over the cap");
        assert!(t.get(4).is_none(), "the newest settled one made room for 5");
        assert_eq!(t.stats().2, 2);
    }

    #[test]
    fn stale_queue_entries_are_dropped_in_bulk() {
        let mut t = MessageTable::new(10, usize::MAX);
        t.insert(1, meta());
        for _ in 0..5000 {
            t.hold(1);
            t.release(1);
        }
        assert!(t.settle.len() <= 2 * t.count + 1024 + 1, "{}", t.settle.len());
        assert!(t.get(1).is_some());
    }
}
