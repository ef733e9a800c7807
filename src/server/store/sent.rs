//! The client ids of one sender's accepted sends, with the reply each got: what makes `send`
//! idempotent. The sends in acceptance order (oldest first), each with its id and reply in one
//! 64-byte entry, beside a hash index of their positions.
//!
//! Every sender keeps up to 10,000 of these (PROTOCOL.md), so they are most of a long run's
//! server memory: an id up to 24 bytes is kept inline (`CompactString`), the recipient is the
//! hub's shared `Arc`, and the index holds 4-byte sequence numbers, ~90 bytes an id in all
//! where a map from `Arc<str>` beside a queue of them took ~147.
//!
//! This module only remembers and forgets by the caps it is given; whether a frame is a repeat
//! and what to answer is the hub's decision.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::SentRecord;

/// Client ids up to this many bytes are kept as they are; longer ones (the contract does not
/// bound them, the frame limit does) as a SHA-256 digest, so one entry stays small.
const VERBATIM_MAX: usize = 64;

/// The key of a client id: the id itself, or `sha256:` and the hex digest of a long one. A
/// digest key is 71 bytes, so it can never equal a verbatim key (at most 64 bytes).
fn key(id: &str) -> Option<String> {
    (id.len() > VERBATIM_MAX).then(|| format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes()))))
}

fn hash(key: &str) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// How many ids to keep, and which may be forgotten.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retention {
    /// The newest this many are kept whatever their age.
    pub keep: usize,
    /// Never more than this many (the memory bound), even within the time window.
    pub max: usize,
    /// Beyond `keep`, ids accepted before this server time (ms) may be forgotten.
    pub cutoff: u64,
}

/// One remembered send: its key and the reply it got.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: CompactString,
    to: Arc<str>,
    mid: u64,
    time: u64,
    group_ack: Option<bool>,
}

impl Entry {
    fn record(&self) -> SentRecord {
        SentRecord {
            mid: self.mid,
            to: self.to.clone(),
            time: self.time,
            group_ack: self.group_ack,
        }
    }
}

/// One sender's remembered sends.
#[derive(Debug, Default, Clone)]
pub(super) struct SentIds {
    /// Oldest first.
    entries: VecDeque<Entry>,
    /// The sequence number of `entries[0]` (wrapping). The index holds sequence numbers, not
    /// positions, so forgetting the oldest moves nothing in it.
    first: u32,
    /// Sequence numbers of `entries`, by the hash of their key.
    index: HashTable<u32>,
}

/// Two senders' ids are the same when the same sends are remembered in the same order (how
/// the index numbers them is not part of it).
impl PartialEq for SentIds {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Eq for SentIds {}

impl SentIds {
    /// The position in `entries` of sequence number `seq`.
    fn at(first: u32, seq: u32) -> usize {
        seq.wrapping_sub(first) as usize
    }

    fn find(&self, key: &str) -> Option<usize> {
        let (entries, first) = (&self.entries, self.first);
        self.index
            .find(hash(key), |&s| entries[Self::at(first, s)].key == key)
            .map(|&s| Self::at(first, s))
    }

    /// The original reply to the send with client id `id`, if still remembered.
    pub(super) fn get(&self, id: &str) -> Option<SentRecord> {
        let k = key(id);
        let i = self.find(k.as_deref().unwrap_or(id))?;
        Some(self.entries[i].record())
    }

    /// Appends a send not yet remembered, under its key.
    fn push(&mut self, key: CompactString, record: SentRecord) {
        let seq = self.first.wrapping_add(self.entries.len() as u32);
        let (entries, first) = (&self.entries, self.first);
        self.index
            .insert_unique(hash(&key), seq, |&s| hash(&entries[Self::at(first, s)].key));
        self.entries.push_back(Entry {
            key,
            to: record.to,
            mid: record.mid,
            time: record.time,
            group_ack: record.group_ack,
        });
    }

    /// Remembers a newly accepted send, then forgets what `retention` allows. Returns true when
    /// an id accepted at or after the cutoff had to go (the hard cap overrode the time window).
    pub(super) fn insert(&mut self, id: &str, record: SentRecord, retention: Retention) -> bool {
        let k = key(id);
        let k = k.as_deref().unwrap_or(id);
        match self.find(k) {
            Some(i) => {
                let e = &mut self.entries[i];
                (e.to, e.mid, e.time, e.group_ack) = (record.to, record.mid, record.time, record.group_ack);
            }
            None => self.push(CompactString::from(k), record),
        }
        let mut early = false;
        while self.entries.len() > retention.keep {
            let Some(oldest) = self.entries.front() else { break };
            let over_cap = self.entries.len() > retention.max.max(retention.keep);
            if oldest.time >= retention.cutoff && !over_cap {
                break;
            }
            early |= oldest.time >= retention.cutoff;
            self.pop_oldest();
        }
        early
    }

    /// Ids remembered.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Server time of the oldest remembered send.
    pub(super) fn oldest_time(&self) -> Option<u64> {
        self.entries.front().map(|e| e.time)
    }

    /// Forgets the oldest remembered send (for a cap across senders); returns its time.
    pub(super) fn pop_oldest(&mut self) -> Option<u64> {
        let oldest = self.entries.pop_front()?;
        let first = self.first;
        let indexed = self
            .index
            .find_entry(hash(&oldest.key), |&s| s == first)
            .map(|slot| slot.remove());
        debug_assert!(indexed.is_ok(), "every remembered send is in the index");
        self.first = first.wrapping_add(1);
        Some(oldest.time)
    }
}

/// The snapshot's form, as it has always been: the keys oldest first, and a map from key to
/// reply.
#[derive(Serialize)]
struct WireOut<'a> {
    order: Keys<'a>,
    records: Records<'a>,
}

struct Keys<'a>(&'a VecDeque<Entry>);

impl Serialize for Keys<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| e.key.as_str()))
    }
}

struct Records<'a>(&'a VecDeque<Entry>);

impl Serialize for Records<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|e| (e.key.as_str(), e.record())))
    }
}

impl Serialize for SentIds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireOut {
            order: Keys(&self.entries),
            records: Records(&self.entries),
        }
        .serialize(s)
    }
}

#[derive(Deserialize)]
struct WireIn {
    order: Vec<CompactString>,
    records: FxHashMap<CompactString, SentRecord>,
}

impl<'de> Deserialize<'de> for SentIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let WireIn { order, mut records } = WireIn::deserialize(d)?;
        let mut ids = SentIds::default();
        for k in order {
            if ids.find(&k).is_some() {
                return Err(serde::de::Error::custom(format!("sent id {k:?} twice")));
            }
            let Some(record) = records.remove(&k) else {
                return Err(serde::de::Error::custom(format!("sent id {k:?} has no reply")));
            };
            ids.push(k, record);
        }
        match records.into_keys().next() {
            Some(k) => Err(serde::de::Error::custom(format!("sent id {k:?} out of order"))),
            None => Ok(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mid: u64, time: u64) -> SentRecord {
        SentRecord {
            mid,
            to: Arc::from("bob"),
            time,
            group_ack: None,
        }
    }

    #[test]
    fn keeps_the_newest_and_those_inside_the_window_up_to_the_cap() {
        let mut s = SentIds::default();
        let r = |cutoff| Retention {
            keep: 2,
            max: 4,
            cutoff,
        };
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            assert!(!s.insert(id, record(i as u64 + 1, 100), r(50)));
        }
        assert_eq!(s.len(), 3, "all three are inside the window");
        assert_eq!(s.get("a").map(|r| r.mid), Some(1));
        // The window moves past them: only the newest `keep` stay.
        assert!(!s.insert("d", record(4, 200), r(150)));
        assert_eq!(s.len(), 2);
        assert!(s.get("a").is_none() && s.get("b").is_none());
        assert_eq!(s.get("c").map(|r| r.mid), Some(3));
        // Inside the window but over the hard cap: the oldest goes, and that is reported.
        for (i, id) in ["e", "f"].into_iter().enumerate() {
            assert!(!s.insert(id, record(5 + i as u64, 300), r(0)));
        }
        assert!(s.insert("g", record(7, 300), r(0)));
        assert_eq!(s.len(), 4);
        assert!(s.get("c").is_none());
        assert_eq!(s.oldest_time(), Some(200));
        assert_eq!(s.pop_oldest(), Some(200));
        assert!(s.get("d").is_none() && s.len() == 3);
    }

    #[test]
    fn long_ids_are_kept_as_digests_that_never_meet_short_ids() {
        let mut s = SentIds::default();
        let r = Retention {
            keep: 10,
            max: 10,
            cutoff: 0,
        };
        let long = "x".repeat(1000);
        s.insert(&long, record(1, 0), r);
        assert_eq!(s.get(&long).map(|r| r.mid), Some(1));
        assert!(s.get(&"x".repeat(999)).is_none());
        let digest = key(&long).unwrap();
        assert!(digest.len() > VERBATIM_MAX);
        assert!(
            s.get(&digest).is_none(),
            "a client id equal to the digest text is another id"
        );
        assert!(s.entries.iter().all(|e| e.key.len() <= 71));
    }

    #[test]
    fn the_index_follows_sends_kept_and_forgotten_across_the_wrap_of_its_numbers() {
        let mut s = SentIds {
            first: u32::MAX - 5,
            ..SentIds::default()
        };
        let r = Retention {
            keep: 50,
            max: 50,
            cutoff: u64::MAX,
        };
        for i in 0..300u64 {
            s.insert(&format!("id-{i}"), record(i, i), r);
            let kept = i.saturating_sub(49)..=i;
            assert_eq!(s.len() as u64, kept.clone().count() as u64);
            // Every kept send is found with its own reply; the one just forgotten is not.
            for j in kept {
                assert_eq!(s.get(&format!("id-{j}")).map(|r| r.mid), Some(j), "after {i}");
            }
            if i >= 50 {
                assert!(s.get(&format!("id-{}", i - 50)).is_none());
            }
        }
        assert_eq!(s.index.len(), 50);
        assert_eq!(s.oldest_time(), Some(250));
        // What the module's note and docs/performance.md say a send costs.
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    /// The form snapshots of earlier builds hold: a queue of keys beside a map of replies.
    #[derive(Serialize)]
    struct Earlier {
        order: VecDeque<Arc<str>>,
        records: FxHashMap<Arc<str>, SentRecord>,
    }

    #[test]
    fn snapshots_keep_their_form_and_bad_ones_are_refused_by_name() {
        let keys: Vec<Arc<str>> = ["b", "a", "c"].into_iter().map(Arc::from).collect();
        let earlier = Earlier {
            order: keys.iter().cloned().collect(),
            records: keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.clone(), record(i as u64, 10)))
                .collect(),
        };
        let bytes = postcard::to_allocvec(&earlier).unwrap();
        let s: SentIds = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(
            s.entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["b", "a", "c"]
        );
        assert_eq!(s.get("a").map(|r| r.mid), Some(1));
        // And what this build writes, an earlier one reads the same way.
        let again: SentIds = postcard::from_bytes(&postcard::to_allocvec(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["order"], serde_json::json!(["b", "a", "c"]));
        assert_eq!(json["records"]["c"]["mid"], 2);

        let mut orphan = earlier;
        orphan.records.remove("a");
        // postcard names no custom error; that it is one is what counts (the store names the file).
        assert!(postcard::from_bytes::<SentIds>(&postcard::to_allocvec(&orphan).unwrap()).is_err());
        let err = serde_json::from_value::<SentIds>(serde_json::json!({
            "order": ["a"],
            "records": {"a": {"mid": 1, "to": "bob", "time": 1, "group_ack": null}, "z": {"mid": 2, "to": "bob", "time": 1, "group_ack": null}},
        }))
        .unwrap_err();
        assert!(err.to_string().contains("\"z\" out of order"), "{err}");
        let err = serde_json::from_value::<SentIds>(serde_json::json!({"order": ["a"], "records": {}})).unwrap_err();
        assert!(err.to_string().contains("\"a\" has no reply"), "{err}");
        let twice = serde_json::json!({
            "order": ["a", "a"],
            "records": {"a": {"mid": 1, "to": "bob", "time": 1, "group_ack": null}},
        });
        let err = serde_json::from_value::<SentIds>(twice).unwrap_err();
        assert!(err.to_string().contains("\"a\" twice"), "{err}");
    }
}
