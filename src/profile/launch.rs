//! How one process takes part in a run: its shard of a run split over processes or machines,
//! the run id every shard shares, and the start barrier. Set from the command line, not the
//! profile: none of it is workload (the profile hash leaves it out).

/// One shard of a run split over processes or machines: it runs the users whose index is
/// `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// Shards in the run.
    pub count: u32,
}

impl Shard {
    /// The shard of user `user`.
    pub fn of(user: u32, count: u32) -> u32 {
        user % count.max(1)
    }

    /// Whether user `user` is this shard's.
    pub fn has(self, user: u32) -> bool {
        Shard::of(user, self.count) == self.index
    }

    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected I/N, e.g. 0/4"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {i:?} is not a shard index"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: {n:?} is not a shard count"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "{text:?}: the index must be below the count (0/{count} to {}/{count})",
                count.saturating_sub(1)
            ));
        }
        Ok(Shard { index, count })
    }
}

/// How this process takes part in a run: not part of the workload (the profile hash ignores
/// it), set from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Launch {
    /// The shard this process runs (`None`: the whole population).
    pub shard: Option<Shard>,
    /// The run id shared by all shards (group ids and message bodies carry it).
    pub run_id: Option<String>,
    /// The absolute time the run's clock starts at (a barrier for all shards).
    pub start_at: Option<std::time::SystemTime>,
}
