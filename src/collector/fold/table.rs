//! The per-message records, kept in send order in blocks, with a small index beside them.
//!
//! Records are settled oldest first (at the audit horizon), so they live in the order they
//! were sent and the hash index holds only a key and a position (24 bytes a slot). A hash map
//! of whole records (about 250 bytes each) sized for the horizon's worth rounds up to a power
//! of two and, records hashing all over it, is resident in full: at 1,700 messages a second
//! that was 160 MB. A `VecDeque` of records did better but still doubled: its ring went round
//! the whole of a buffer up to twice the records live. Blocks of [`BLOCK`] records are taken
//! as the newest fill up and given back as the oldest settle: memory follows what is live.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::collector::records::MsgRec;
use crate::sim::behaviour::{Micros, MsgKey};

/// Records a block holds.
const BLOCK: usize = 1024;

struct Slot {
    key: MsgKey,
    /// `None` once replaced by a record of the same key, or settled. (When it was sent, the
    /// order records settle in, is the record's: an empty slot waits for nothing.)
    rec: Option<MsgRec>,
}

/// Records by key, in send order. It grows with the records live at once, not with what the
/// profile offers: sized up front for the offered rate, a run against a server that takes a
/// third of it kept three times the memory it needed.
#[derive(Default)]
pub(super) struct Table {
    index: FxHashMap<MsgKey, u64>,
    /// Full blocks but the last; each made with room for exactly [`BLOCK`].
    blocks: VecDeque<Vec<Slot>>,
    /// The position of `blocks[0][0]`.
    base: u64,
    /// The position of the oldest record not settled yet.
    front: u64,
    /// The position the next record takes.
    end: u64,
}

impl Table {
    /// Adds the record of `key`, sent at `rec.sent` (a record of the same key is dropped).
    pub(super) fn insert(&mut self, key: MsgKey, rec: MsgRec) {
        let at = self.end;
        if let Some(old) = self.index.insert(key, at) {
            self.at_mut(old).rec = None;
        }
        if self.blocks.back().is_none_or(|b| b.len() == BLOCK) {
            self.blocks.push_back(Vec::with_capacity(BLOCK));
        }
        let last = self.blocks.back_mut().expect("just made");
        last.push(Slot { key, rec: Some(rec) });
        self.end += 1;
    }

    fn place(&self, at: u64) -> (usize, usize) {
        let off = (at - self.base) as usize;
        (off / BLOCK, off % BLOCK)
    }

    fn at(&self, at: u64) -> &Slot {
        let (b, i) = self.place(at);
        &self.blocks[b][i]
    }

    fn at_mut(&mut self, at: u64) -> &mut Slot {
        let (b, i) = self.place(at);
        &mut self.blocks[b][i]
    }

    /// The record of `key`.
    pub(super) fn get(&self, key: &MsgKey) -> Option<&MsgRec> {
        let at = *self.index.get(key)?;
        self.at(at).rec.as_ref()
    }

    /// The record of `key`, to change.
    pub(super) fn get_mut(&mut self, key: &MsgKey) -> Option<&mut MsgRec> {
        let at = *self.index.get(key)?;
        self.at_mut(at).rec.as_mut()
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
        while self.front < self.end {
            let at = self.front;
            let slot = self.at_mut(at);
            if slot.rec.as_ref().is_some_and(|r| r.sent >= cutoff) {
                return None;
            }
            let (key, rec) = (slot.key, slot.rec.take());
            self.front += 1;
            if self.front - self.base == BLOCK as u64 {
                // The oldest block is all settled: it goes back.
                self.blocks.pop_front();
                self.base += BLOCK as u64;
            }
            if self.index.get(&key) == Some(&at) {
                self.index.remove(&key);
            }
            if let Some(rec) = rec {
                return Some((key, rec.sent, rec));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seq: u32) -> MsgKey {
        MsgKey { sender: 1, seq }
    }

    fn rec(conv: u32, sent: Micros) -> MsgRec {
        MsgRec {
            conv,
            sent,
            ..Default::default()
        }
    }

    #[test]
    fn records_are_found_by_key_and_settle_in_send_order() {
        let mut t = Table::default();
        for s in 0..5 {
            t.insert(key(s), rec(s, u64::from(s) * 10));
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
        t.insert(key(2), rec(22, 50));
        assert_eq!(t.get(&key(2)).map(|r| r.conv), Some(22));
        let settled: Vec<(MsgKey, u32)> = std::iter::from_fn(|| t.pop_before(u64::MAX))
            .map(|(k, _, r)| (k, r.conv))
            .collect();
        assert_eq!(settled, [(key(3), 3), (key(4), 40), (key(2), 22)]);
        assert!(t.get(&key(4)).is_none() && t.index.is_empty());
    }

    #[test]
    fn blocks_are_taken_as_records_come_and_given_back_as_they_settle() {
        let mut t = Table::default();
        let n = 3 * BLOCK as u32 + 10;
        for s in 0..n {
            t.insert(MsgKey { sender: 2, seq: s }, rec(0, u64::from(s)));
        }
        assert_eq!(t.blocks.len(), 4);
        assert!(t.blocks.iter().all(|b| b.capacity() == BLOCK), "no block grows");
        // Settling the first block and a half gives the first block back.
        let half = BLOCK as u32 + BLOCK as u32 / 2;
        let settled = std::iter::from_fn(|| t.pop_before(u64::from(half))).count() as u32;
        assert_eq!(settled, half);
        assert_eq!(t.blocks.len(), 3);
        assert!(
            t.get(&MsgKey {
                sender: 2,
                seq: half - 1
            })
            .is_none()
        );
        assert!(t.get(&MsgKey { sender: 2, seq: half }).is_some());
        // Everything settled, then more: the records carry on in a fresh block.
        assert_eq!(std::iter::from_fn(|| t.pop_before(u64::MAX)).count() as u32, n - half);
        assert_eq!(t.len(), 0);
        t.insert(MsgKey { sender: 3, seq: 0 }, rec(0, u64::from(n)));
        assert!(t.get(&MsgKey { sender: 3, seq: 0 }).is_some());
        assert_eq!(t.pop_before(u64::MAX).map(|(k, ..)| k.sender), Some(3));
        assert!(t.blocks.len() <= 1);
    }
}
