//! The simulated world, built from the plan and its seed alone: user and group ids, contacts,
//! memberships and roles, who sends delivery receipts, who starts online, and when each user
//! is planned to join. Two runs with the same seed build the same world.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::profile::{Partition, Plan, Ramp, Shard};

/// Purposes of the per-user random streams, so that adding one kind of decision never shifts
/// another.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// World building (contacts, groups).
    World = 1,
    /// One-to-one send times and contacts.
    Single = 2,
    /// Group send times and groups.
    Group = 3,
    /// Conversation open/away times and choices.
    Focus = 4,
    /// Online/offline times.
    Churn = 5,
    /// Reconnect backoff jitter.
    Reconnect = 6,
    /// Fault times and targets.
    Faults = 7,
}

/// SplitMix64: turns any 64-bit value into a well-mixed one (seeds and hashed decisions).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A reproducible random stream for (`seed`, `user`, `purpose`).
pub fn stream(seed: u64, user: u32, purpose: Stream) -> Pcg64Mcg {
    let s = mix(seed ^ mix(u64::from(user) << 8 | purpose as u64));
    Pcg64Mcg::seed_from_u64(s)
}

/// A user's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Created the group.
    Owner,
    /// Admin.
    Admin,
    /// Plain member.
    Member,
}

/// One group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Group id (`g<index>`).
    pub id: Arc<str>,
    /// Owner's user index.
    pub owner: u32,
    /// Admins' user indexes.
    pub admins: Vec<u32>,
    /// Members' user indexes, owner and admins included.
    pub members: Vec<u32>,
}

/// The whole simulated population.
#[derive(Debug)]
pub struct World {
    /// User ids by index.
    pub users: Vec<Arc<str>>,
    /// Length of the user id prefix, to read indexes back from ids.
    prefix: String,
    /// One-to-one contacts per user.
    pub contacts: Vec<Vec<u32>>,
    /// Groups.
    pub groups: Vec<GroupSpec>,
    /// Per user: (group index, role).
    pub memberships: Vec<Vec<(u32, Role)>>,
    /// Per user: devices send delivery receipts.
    pub delivery: Vec<bool>,
    /// Per user: online when it joins.
    pub online_at_start: Vec<bool>,
    /// Per user: planned join time since the run start.
    pub planned_start: Vec<Duration>,
    /// Per user: the faults planned for it, in time order.
    pub faults: Vec<Vec<super::faults::Planned>>,
}

impl World {
    /// Builds the world of `plan` (deterministic in `plan.seed`).
    pub fn build(plan: &Plan) -> World {
        World::build_tagged(plan, "0")
    }

    /// Builds the world with group ids `g<index>.<tag>`: a run's own tag keeps groups left on
    /// an external server by earlier runs apart from this run's.
    pub fn build_tagged(plan: &Plan, tag: &str) -> World {
        let n = plan.population.users as u32;
        let prefix = plan.population.user_prefix.clone();
        let users: Vec<Arc<str>> = (0..n).map(|i| Arc::from(format!("{prefix}{i}"))).collect();
        let mut rng = stream(plan.seed, u32::MAX, Stream::World);

        // Partitioned by shard, users talk only within their shard: contacts and group
        // members are drawn from it (with one shard, from everyone: the same draws).
        let parts = match plan.population.partition {
            Partition::Shard => plan.launch.shard.map_or(1, |s| s.count).clamp(1, n.max(1)),
            Partition::None => 1,
        };
        let pool = |s: u32| (s..n).step_by(parts as usize).collect::<Vec<u32>>();
        let mut pools: Vec<Vec<u32>> = (0..parts).map(pool).collect();
        let contacts: Vec<Vec<u32>> = (0..n)
            .map(|u| {
                let mine = &pools[Shard::of(u, parts) as usize];
                let k = plan.population.contacts.min(mine.len().saturating_sub(1) as u64) as usize;
                let mut c = Vec::with_capacity(k);
                while c.len() < k {
                    let v = mine[rng.random_range(0..mine.len())];
                    if v != u && !c.contains(&v) {
                        c.push(v);
                    }
                }
                c
            })
            .collect();

        let mut memberships = vec![Vec::new(); n as usize];
        let groups = (0..plan.groups.count as u32)
            .map(|g| {
                let size = rng.random_range(plan.groups.size_min..=plan.groups.size_max) as usize;
                let all = &mut pools[Shard::of(g, parts) as usize];
                let take = size.min(all.len());
                let (chosen, _) = all.partial_shuffle(&mut rng, take);
                let members = chosen.to_vec();
                let owner = members[0];
                let admins: Vec<u32> = members
                    .iter()
                    .skip(1)
                    .take(plan.groups.admins as usize)
                    .copied()
                    .collect();
                for (i, m) in members.iter().enumerate() {
                    let role = match i {
                        0 => Role::Owner,
                        i if i <= admins.len() => Role::Admin,
                        _ => Role::Member,
                    };
                    memberships[*m as usize].push((g, role));
                }
                GroupSpec {
                    id: Arc::from(format!("g{g}.{tag}")),
                    owner,
                    admins,
                    members,
                }
            })
            .collect();

        let delivery = (0..n)
            .map(|_| rng.random_bool(plan.population.delivery_share))
            .collect();
        let online_at_start = (0..n).map(|_| rng.random_bool(plan.reading.online_share)).collect();
        let planned_start = planned_starts(plan, n);
        World {
            users,
            prefix,
            contacts,
            groups,
            memberships,
            delivery,
            online_at_start,
            planned_start,
            faults: super::faults::schedule(plan, n),
        }
    }

    /// The index of user id `id`, if it is one of ours.
    pub fn user_index(&self, id: &str) -> Option<u32> {
        let i: u32 = id.strip_prefix(&self.prefix)?.parse().ok()?;
        ((i as usize) < self.users.len() && *self.users[i as usize] == *id).then_some(i)
    }

    /// The index of group id `id`.
    pub fn group_index(&self, id: &str) -> Option<u32> {
        let (index, _) = id.strip_prefix('g')?.split_once('.')?;
        let i: u32 = index.parse().ok()?;
        ((i as usize) < self.groups.len() && *self.groups[i as usize].id == *id).then_some(i)
    }
}

/// Planned join time of each user: at `users_per_sec` from the start, or per step.
fn planned_starts(plan: &Plan, n: u32) -> Vec<Duration> {
    let at = |i: u64, rate: f64| Duration::from_secs_f64(i as f64 / rate);
    match &plan.ramp {
        Ramp::Rate { users_per_sec } => (0..u64::from(n)).map(|i| at(i, *users_per_sec)).collect(),
        Ramp::Steps { users_per_sec, steps } => {
            let mut starts = vec![Duration::MAX; n as usize];
            let (mut t, mut joined) = (Duration::ZERO, 0u64);
            for s in steps {
                for i in joined..s.users.max(joined) {
                    starts[i as usize] = t + at(i - joined, *users_per_sec);
                }
                let grow = at(s.users.saturating_sub(joined), *users_per_sec);
                joined = joined.max(s.users);
                t += grow + s.hold;
            }
            starts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;

    fn plan(extra: &str) -> Plan {
        let text = format!(
            "[run]\nduration = \"10s\"\nseed = 5\n[population]\nusers = 200\ncontacts = 5\n[groups]\ncount = 10\nsize_min = 5\nsize_max = 20\nadmins = 2\n{extra}"
        );
        profile::parse(std::path::Path::new("t.toml"), &text, &[]).unwrap()
    }

    #[test]
    fn same_seed_same_world_other_seed_other_world() {
        let a = World::build(&plan(""));
        let b = World::build(&plan(""));
        assert_eq!(a.contacts, b.contacts);
        assert_eq!(
            a.groups.iter().map(|g| g.members.clone()).collect::<Vec<_>>(),
            b.groups.iter().map(|g| g.members.clone()).collect::<Vec<_>>()
        );
        let mut p = plan("");
        p.seed = 6;
        let c = World::build(&p);
        assert_ne!(a.contacts, c.contacts);
    }

    #[test]
    fn groups_have_owner_admins_and_distinct_members() {
        let w = World::build(&plan(""));
        for g in &w.groups {
            assert!((5..=20).contains(&g.members.len()));
            assert_eq!(g.members[0], g.owner);
            assert_eq!(g.admins.len(), 2);
            let mut m = g.members.clone();
            m.sort();
            m.dedup();
            assert_eq!(m.len(), g.members.len());
        }
        for (u, c) in w.contacts.iter().enumerate() {
            assert_eq!(c.len(), 5);
            assert!(!c.contains(&(u as u32)));
        }
        assert_eq!(w.user_index("u17"), Some(17));
        assert_eq!(w.user_index("u200"), None);
        assert_eq!(w.user_index("x17"), None);
        assert_eq!(w.group_index("g3.0"), Some(3));
        assert_eq!(w.group_index("g3.1"), None, "another run's group");
    }

    #[test]
    fn step_plans_start_users_at_each_step() {
        let p = plan("");
        let mut p = p;
        p.ramp = Ramp::Steps {
            users_per_sec: 100.0,
            steps: vec![
                profile::Step {
                    users: 50,
                    hold: Duration::from_secs(5),
                },
                profile::Step {
                    users: 150,
                    hold: Duration::from_secs(5),
                },
            ],
        };
        let s = planned_starts(&p, 200);
        assert_eq!(s[0], Duration::ZERO);
        assert_eq!(s[49], Duration::from_millis(490));
        // Step 2 starts after 0.5 s of growth and 5 s of hold.
        assert_eq!(s[50], Duration::from_millis(5500));
        assert_eq!(s[199], Duration::MAX, "not in any step");
    }
}
