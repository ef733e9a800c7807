//! The client ids of one sender's accepted sends, with the reply each got: what makes `send`
//! idempotent. A FIFO of ids (oldest first) beside a map from id to the original reply.
//!
//! This module only remembers and forgets by the caps it is given; whether a frame is a repeat
//! and what to answer is the hub's decision.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{SentRecord, intern};

/// Client ids up to this many bytes are kept as they are; longer ones (the contract does not
/// bound them, the frame limit does) as a SHA-256 digest, so one entry stays small.
const VERBATIM_MAX: usize = 64;

/// The key of a client id: the id itself, or `sha256:` and the hex digest of a long one. A
/// digest key is 71 bytes, so it can never equal a verbatim key (at most 64 bytes).
fn key(id: &str) -> Option<String> {
    (id.len() > VERBATIM_MAX).then(|| format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes()))))
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

/// One sender's remembered sends.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SentIds {
    #[serde(deserialize_with = "intern::seq")]
    order: VecDeque<Arc<str>>,
    #[serde(deserialize_with = "intern::keys")]
    records: FxHashMap<Arc<str>, SentRecord>,
}

impl SentIds {
    /// The original reply to the send with client id `id`, if still remembered.
    pub(super) fn get(&self, id: &str) -> Option<&SentRecord> {
        match key(id) {
            None => self.records.get(id),
            Some(k) => self.records.get(k.as_str()),
        }
    }

    /// Remembers a newly accepted send, then forgets what `retention` allows. Returns true when
    /// an id accepted at or after the cutoff had to go (the hard cap overrode the time window).
    pub(super) fn insert(&mut self, id: &str, record: SentRecord, retention: Retention) -> bool {
        let k: Arc<str> = Arc::from(key(id).as_deref().unwrap_or(id));
        if self.records.insert(k.clone(), record).is_none() {
            self.order.push_back(k);
        }
        let mut early = false;
        while self.order.len() > retention.keep {
            let Some(oldest) = self.order.front() else { break };
            let time = self.records.get(oldest).map_or(0, |r| r.time);
            let over_cap = self.order.len() > retention.max.max(retention.keep);
            if time >= retention.cutoff && !over_cap {
                break;
            }
            early |= time >= retention.cutoff;
            if let Some(oldest) = self.order.pop_front() {
                self.records.remove(&oldest);
            }
        }
        early
    }

    /// Ids remembered.
    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Server time of the oldest remembered send.
    pub(super) fn oldest_time(&self) -> Option<u64> {
        self.order.front().and_then(|k| self.records.get(k)).map(|r| r.time)
    }

    /// Forgets the oldest remembered send (for a cap across senders); returns its time.
    pub(super) fn pop_oldest(&mut self) -> Option<u64> {
        let k = self.order.pop_front()?;
        self.records.remove(&k).map(|r| r.time)
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
        assert!(s.records.keys().all(|k| k.len() <= 71));
    }
}
