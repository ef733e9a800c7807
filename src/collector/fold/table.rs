//! The per-message records, kept in send order in a ring with a small index beside it.
//!
//! Records are settled oldest first (at the audit horizon), so they live in a `VecDeque` in the
//! order they were sent and the hash index holds only a key and a position (24 bytes a slot).
//! A hash map of whole records (about 300 bytes each) sized for the horizon's worth rounds up
//! to a power of two and, records hashing all over it, is resident in full: at 1,700 messages
//! a second that was 160 MB; the ring holds only the live records, contiguous.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::collector::records::MsgRec;
use crate::sim::behaviour::{Micros, MsgKey};

struct Slot {
    key: MsgKey,
    /// When it was sent (the order records settle in).
    sent: Micros,
    /// `None` once replaced by a record of the same key.
    rec: Option<MsgRec>,
}

/// Records by key, in send order. It grows with the records live at once, not with what the
/// profile offers: sized up front for the offered rate, a run against a server that takes a
/// third of it kept three times the memory it needed, resident (the hashes touch every page,
/// and a ring's records go round the whole buffer).
#[derive(Default)]
pub(super) struct Table {
    index: FxHashMap<MsgKey, u64>,
    ring: VecDeque<Slot>,
    /// The position of `ring[0]`.
    front: u64,
}

impl Table {
    /// Adds the record of `key`, sent at `sent` (a record of the same key is dropped).
    pub(super) fn insert(&mut self, key: MsgKey, sent: Micros, rec: MsgRec) {
        let at = self.front + self.ring.len() as u64;
        if let Some(old) = self.index.insert(key, at) {
            self.ring[(old - self.front) as usize].rec = None;
        }
        self.ring.push_back(Slot {
            key,
            sent,
            rec: Some(rec),
        });
    }

    fn slot(&self, key: &MsgKey) -> Option<usize> {
        self.index.get(key).map(|at| (at - self.front) as usize)
    }

    /// The record of `key`.
    pub(super) fn get(&self, key: &MsgKey) -> Option<&MsgRec> {
        self.slot(key).and_then(|i| self.ring[i].rec.as_ref())
    }

    /// The record of `key`, to change.
    pub(super) fn get_mut(&mut self, key: &MsgKey) -> Option<&mut MsgRec> {
        self.slot(key).and_then(|i| self.ring[i].rec.as_mut())
    }

    /// Records held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether `key` has a record.
    pub(super) fn contains_key(&self, key: &MsgKey) -> bool {
        self.index.contains_key(key)
    }

    /// Takes the oldest record when it was sent before `cutoff`.
    pub(super) fn pop_before(&mut self, cutoff: Micros) -> Option<(MsgKey, Micros, MsgRec)> {
        loop {
            let first = self.ring.front()?;
            if first.sent >= cutoff {
                return None;
            }
            let slot = self.ring.pop_front().expect("looked at it");
            let at = self.front;
            self.front += 1;
            if self.index.get(&slot.key) == Some(&at) {
                self.index.remove(&slot.key);
            }
            if let Some(rec) = slot.rec {
                return Some((slot.key, slot.sent, rec));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u64) -> MsgKey {
        MsgKey { sender: 1, seq }
    }

    fn rec(conv: u32) -> MsgRec {
        MsgRec {
            conv,
            ..Default::default()
        }
    }

    #[test]
    fn records_are_found_by_key_and_settle_in_send_order() {
        let mut t = Table::default();
        for s in 0..5 {
            t.insert(key(s), s * 10, rec(s as u32));
        }
        assert_eq!(t.get(&key(3)).map(|r| r.conv), Some(3));
        t.get_mut(&key(4)).unwrap().conv = 40;
        assert!(t.pop_before(0).is_none());
        let (k, sent, r) = t.pop_before(15).unwrap();
        assert_eq!((k, sent, r.conv), (key(0), 0, 0));
        assert_eq!(t.pop_before(15).map(|(k, ..)| k), Some(key(1)));
        assert!(t.pop_before(15).is_none());
        assert!(!t.contains_key(&key(1)) && t.contains_key(&key(2)));
        // A record of a key already there replaces it; the old slot settles as nothing.
        t.insert(key(2), 50, rec(22));
        assert_eq!(t.get(&key(2)).map(|r| r.conv), Some(22));
        let settled: Vec<(MsgKey, u32)> = std::iter::from_fn(|| t.pop_before(u64::MAX))
            .map(|(k, _, r)| (k, r.conv))
            .collect();
        assert_eq!(settled, [(key(3), 3), (key(4), 40), (key(2), 22)]);
        assert!(t.get(&key(4)).is_none() && t.index.is_empty());
    }
}
