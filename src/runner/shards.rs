//! A run split into shards (`run --shard I/N`): which users and folder are this shard's, the
//! run id all shards share, and the start barrier on absolute time.
//!
//! The partition is deterministic: every shard builds the whole seeded world (same users,
//! groups, messages and read decisions) and runs the users whose index is `I` modulo `N`, so
//! the shards together are exactly the single-process workload. Who owns a group creates it,
//! so each group is created once.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::profile::{Partition, Plan, Shard};
use crate::report::ShardSet;

/// A shard's event log in its results folder.
pub const EVENTS_FILE: &str = "events.bin";

/// What a merged report says about latencies measured across processes.
pub const CLOCKS_NOTE: &str = "message, message_offline, read_receipt and channel start in one process and end in another when sender and reader are in different shards: they are as exact as the two clocks agree (one machine: one clock; across machines: their NTP offset, shown per shard as the clock offset). Every other latency starts and ends in one process.";

/// Shard `s`'s results folder: `<results>/<name>-<run id>/shard-<I>`, the same on every
/// machine, so that `ackstorm merge <results>/<name>-<run id>` finds them all.
pub fn shard_dir(plan: &Plan, run_id: &str, s: Shard) -> PathBuf {
    run_dir(plan, run_id).join(format!("shard-{}", s.index))
}

/// The folder holding a run's shard folders.
pub fn run_dir(plan: &Plan, run_id: &str) -> PathBuf {
    plan.results_dir.join(format!("{}-{run_id}", plan.name))
}

/// The report's note of this process's shard (`None` when unsharded).
pub(super) fn own(plan: &Plan, run_id: &str) -> Option<ShardSet> {
    let s = plan.launch.shard?;
    Some(ShardSet {
        run_id: run_id.to_string(),
        count: s.count,
        index: Some(s.index),
        partitioned: plan.population.partition == Partition::Shard,
        rows: Vec::new(),
        clocks: CLOCKS_NOTE.to_string(),
    })
}

/// A run id all shards agree on without talking: from the workload's hash, its seed and the
/// shared start time.
pub fn default_run_id(plan: &Plan, start_at: SystemTime) -> String {
    let secs = start_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let text = format!("{}/{}/{secs}", crate::profile::workload_hash(plan), plan.seed);
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}

/// Whether `id` can name a run: it goes into group ids and folder names.
pub fn valid_run_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Waits for the absolute time `at` and returns the run clock's zero: `at` itself, or, for
/// a shard that arrives late, the instant `at` was (its users planned earlier start at once,
/// so every shard's events stay on one clock). A signal ends the wait.
pub(super) async fn barrier(at: SystemTime) -> Result<Instant, i32> {
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            if wait.as_secs() > 1 {
                eprintln!("waiting {:.0} s for the start time", wait.as_secs_f64());
            }
            if let Some(sig) = super::sleep_or_interrupt(Instant::now() + wait).await {
                return Err(sig);
            }
            // The timer wakes a millisecond or two late: the clock's zero is `at` itself.
            let over = SystemTime::now().duration_since(at).unwrap_or_default();
            Ok(Instant::now().checked_sub(over).unwrap_or_else(Instant::now))
        }
        Err(late) => {
            let late = late.duration();
            eprintln!(
                "warning: started {:.3} s after the start time: users planned before now start at once",
                late.as_secs_f64()
            );
            Ok(Instant::now().checked_sub(late).unwrap_or_else(Instant::now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_user_once() {
        for count in 1..6u32 {
            for user in 0..50u32 {
                let owners: Vec<u32> = (0..count).filter(|i| Shard { index: *i, count }.has(user)).collect();
                assert_eq!(owners.len(), 1, "user {user} of {count} shards");
            }
        }
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        for bad in ["4/4", "1", "a/2", "0/0", "-1/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert!(valid_run_id("a1b2-c_3"));
        assert!(!valid_run_id("has space") && !valid_run_id("") && !valid_run_id("dot.ted"));
    }
}
