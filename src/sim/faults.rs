//! Faults a profile injects, planned from the seed alone: which connections are reset and
//! which users stop reading, and when. Each user's behaviour carries its own list and emits
//! the fault at its time, so the same seed injects the same faults whatever the timing.
//! Server restarts are the runner's (they act on the server, not on a user).

use rand::RngExt;
use rand::seq::index::sample;

use super::behaviour::Micros;
use super::world::{Stream, stream};
use crate::profile::{FaultWindow, Plan};

/// What a fault does to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Reset this device's connection (no close handshake).
    Drop {
        /// The device.
        dev: u8,
    },
    /// Stop reading every connection for this long.
    Stall {
        /// How long.
        for_us: Micros,
    },
}

/// A fault planned for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// When.
    pub at: Micros,
    /// Which fault of the profile (its number in [`list`]).
    pub index: u32,
    /// What it does.
    pub action: FaultAction,
}

/// One fault of the profile, numbered in this order: connection drops, stalled readers,
/// server restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// `drop_connections`, `stall_readers` or `server_restart`.
    pub kind: &'static str,
    /// Start.
    pub at: Micros,
    /// Spread.
    pub over: Micros,
    /// Connections, users or restarts asked for.
    pub planned: u64,
    /// How long a stalled reader stops reading (0 for the other kinds).
    pub stall: Micros,
}

fn us(d: std::time::Duration) -> Micros {
    d.as_micros().min(u128::from(Micros::MAX)) as Micros
}

/// Every fault of the plan, numbered.
pub fn list(plan: &Plan) -> Vec<Fault> {
    let f = &plan.faults;
    let window = |kind, w: &FaultWindow, stall| Fault {
        kind,
        at: us(w.at),
        over: us(w.over),
        planned: w.count,
        stall,
    };
    f.drop_connections
        .iter()
        .map(|w| window("drop_connections", w, 0))
        .chain(
            f.stall_readers
                .iter()
                .map(|s| window("stall_readers", &s.window, us(s.stall))),
        )
        .chain(f.server_restarts.iter().map(|at| Fault {
            kind: "server_restart",
            at: us(*at),
            over: 0,
            planned: 1,
            stall: 0,
        }))
        .collect()
}

/// Per user, the faults planned for it, in time order.
pub fn schedule(plan: &Plan, users: u32) -> Vec<Vec<Planned>> {
    let mut per_user = vec![Vec::new(); users as usize];
    if users == 0 {
        return per_user;
    }
    let devices = plan.population.devices_per_user.max(1) as usize;
    let mut rng = stream(plan.seed, u32::MAX, Stream::Faults);
    let mut index = 0u32;
    let time = |rng: &mut rand_pcg::Pcg64Mcg, w: &FaultWindow| us(w.at) + rng.random_range(0..=us(w.over));
    for w in &plan.faults.drop_connections {
        let slots = users as usize * devices;
        for slot in sample(&mut rng, slots, (w.count as usize).min(slots)) {
            let at = time(&mut rng, w);
            let dev = (slot % devices) as u8;
            per_user[slot / devices].push(Planned {
                at,
                index,
                action: FaultAction::Drop { dev },
            });
        }
        index += 1;
    }
    for s in &plan.faults.stall_readers {
        for user in sample(&mut rng, users as usize, (s.window.count as usize).min(users as usize)) {
            let at = time(&mut rng, &s.window);
            per_user[user].push(Planned {
                at,
                index,
                action: FaultAction::Stall { for_us: us(s.stall) },
            });
        }
        index += 1;
    }
    for list in &mut per_user {
        list.sort_by_key(|p| (p.at, p.index));
    }
    per_user
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Faults, Stall};
    use std::time::Duration;

    fn plan() -> Plan {
        let mut p = crate::profile::parse(
            std::path::Path::new("t.toml"),
            "[run]\nduration = \"60s\"\n[population]\nusers = 100\ndevices_per_user = 2\n",
            &[],
        )
        .unwrap();
        let w = |at, over, count| FaultWindow {
            at: Duration::from_secs(at),
            over: Duration::from_secs(over),
            count,
        };
        p.faults = Faults {
            drop_connections: vec![w(10, 20, 150)],
            stall_readers: vec![Stall {
                window: w(5, 0, 30),
                stall: Duration::from_secs(3),
            }],
            server_restarts: vec![Duration::from_secs(40)],
        };
        p
    }

    #[test]
    fn faults_hit_distinct_targets_inside_their_windows_the_same_way_every_time() {
        let p = plan();
        let s = schedule(&p, 100);
        assert_eq!(s, schedule(&p, 100), "seeded");
        let all: Vec<&Planned> = s.iter().flatten().collect();
        let drops: Vec<_> = all.iter().filter(|f| f.index == 0).collect();
        assert_eq!(drops.len(), 150);
        assert!(drops.iter().all(|f| (10_000_000..=30_000_000).contains(&f.at)));
        let mut slots: Vec<(usize, u8)> = s
            .iter()
            .enumerate()
            .flat_map(|(u, l)| {
                l.iter().filter_map(move |f| match f.action {
                    FaultAction::Drop { dev } => Some((u, dev)),
                    FaultAction::Stall { .. } => None,
                })
            })
            .collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), 150, "each connection dropped once");
        let stalls: Vec<_> = all.iter().filter(|f| f.index == 1).collect();
        assert_eq!(stalls.len(), 30);
        assert!(
            stalls
                .iter()
                .all(|f| f.at == 5_000_000 && f.action == FaultAction::Stall { for_us: 3_000_000 })
        );
        assert!(s.iter().all(|l| l.windows(2).all(|w| w[0].at <= w[1].at)));
        let kinds: Vec<&str> = list(&p).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["drop_connections", "stall_readers", "server_restart"]);
    }
}
