//! The behaviour's settings, read once from the plan and shared by every user, and the
//! seeded draws they are used with (exponential times, Poisson arrivals, read decisions,
//! reconnect backoff).

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use super::behaviour::{Micros, MsgKey};
use super::world::mix;
use crate::profile::{Churn, ContactChoice, Delay, Plan, Strategy};

/// How a dropped connection is retried: jittered exponential backoff, as SDKs do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First wait.
    pub initial: Micros,
    /// Longest wait.
    pub max: Micros,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Share of each wait that is randomised (0: none, 1: anywhere from 0 to the full wait).
    pub jitter: f64,
}

impl Backoff {
    /// The wait before retry `attempt` (0 for the first), given a uniform draw `u` in [0, 1).
    pub fn delay(&self, attempt: u32, u: f64) -> Micros {
        let full = (self.initial as f64 * self.multiplier.powi(attempt.min(64) as i32)).min(self.max as f64);
        (full * (1.0 - self.jitter * u)).max(1.0) as Micros
    }
}

/// The plan's behaviour settings, shared by every user.
#[derive(Debug)]
pub struct SimConfig {
    pub(super) seed: u64,
    pub(super) strategy: Strategy,
    pub(super) debounce: Micros,
    pub(super) always_open: bool,
    pub(super) open_mean: f64,
    pub(super) away_mean: f64,
    pub(super) read_probability: f64,
    pub(super) read_delay: Delay,
    pub(super) churn: Option<Churn>,
    pub(super) single_per_us: f64,
    pub(super) group_per_us: f64,
    /// Cumulative contact weights (zipf or uniform), for choosing a peer.
    pub(super) contact_cdf: Vec<f64>,
    pub(super) allow_group_ack_share: f64,
    pub(super) ack_anyone: bool,
    /// No user sends before this (`traffic.warmup`: the end of the ramp and its warm-up).
    pub(super) traffic_start: Micros,
    /// When sends and conversation changes stop.
    pub traffic_end: Micros,
    /// After this no acks leave, so that every receipt can arrive before the audit.
    pub acks_end: Micros,
    /// Reconnects after a dropped connection (`None`: a dropped connection stays down).
    pub reconnect: Option<Backoff>,
    /// Sends a disconnected user queues before it counts them skipped.
    pub outbox: usize,
    pub(super) read_users_share: f64,
    pub(super) read_users_delay: Micros,
    pub(super) read_users_page: u32,
}

impl SimConfig {
    /// Settings of `plan`; traffic stops at `traffic_end`, acks at `acks_end`.
    pub fn new(plan: &Plan, traffic_end: Micros, acks_end: Micros) -> SimConfig {
        let k = plan.population.contacts.max(1) as usize;
        let weights: Vec<f64> = (1..=k)
            .map(|i| match plan.traffic.contact_choice {
                ContactChoice::Uniform => 1.0,
                ContactChoice::Zipf(s) => 1.0 / (i as f64).powf(s),
            })
            .collect();
        let total: f64 = weights.iter().sum();
        let contact_cdf = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        SimConfig {
            seed: plan.seed,
            strategy: plan.acks.strategy,
            debounce: plan.acks.debounce.as_micros() as Micros,
            always_open: plan.reading.always_open,
            open_mean: plan.reading.open.as_micros() as f64,
            away_mean: plan.reading.away.as_micros() as f64,
            read_probability: plan.reading.read_probability,
            read_delay: plan.reading.read_delay,
            churn: plan.reading.churn,
            single_per_us: plan.traffic.one_to_one_per_min / 60e6,
            group_per_us: plan.traffic.group_per_min / 60e6,
            contact_cdf,
            allow_group_ack_share: plan.groups.allow_group_ack_share,
            ack_anyone: plan.groups.server_ack_anyone,
            traffic_start: match plan.traffic.warmup {
                Some(_) => plan.ramp_end().as_micros() as Micros,
                None => 0,
            },
            traffic_end,
            acks_end,
            reconnect: plan.reconnect.enabled.then_some(Backoff {
                initial: plan.reconnect.initial.as_micros() as Micros,
                max: plan.reconnect.max.as_micros() as Micros,
                multiplier: plan.reconnect.multiplier,
                jitter: plan.reconnect.jitter,
            }),
            outbox: plan.reconnect.outbox,
            read_users_share: plan.groups.read_users_share,
            read_users_delay: plan.groups.read_users_delay.as_micros() as Micros,
            read_users_page: plan.groups.read_users_page,
        }
    }

    /// The workload's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the sender of `key` asks who read it: a pure function of the seed and the
    /// message (its own decision stream, so no other decision shifts).
    pub fn queries_readers(&self, key: MsgKey) -> bool {
        if self.read_users_share <= 0.0 {
            return false;
        }
        let h = mix(self.seed ^ mix(u64::from(key.sender) << 40 ^ key.seq ^ 0x7265_6164_7573_6572));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < self.read_users_share
    }

    /// Whether `reader` reads message `key`, and after what delay once it sees it: a pure
    /// function of the seed, the message and the reader.
    pub fn read_decision(&self, key: MsgKey, reader: u32) -> Option<Micros> {
        let h = mix(self.seed ^ mix(u64::from(key.sender) << 32 ^ u64::from(reader)) ^ mix(key.seq.rotate_left(17)));
        let mut rng = Pcg64Mcg::seed_from_u64(h);
        if !rng.random_bool(self.read_probability) {
            return None;
        }
        Some(match self.read_delay {
            Delay::Fixed(d) => d.as_micros() as Micros,
            Delay::Exp(mean) => exp_sample(&mut rng, mean.as_micros() as f64),
            Delay::LogNormal { median, p99 } => {
                let m = median.as_micros() as f64;
                let sigma = (p99.as_micros() as f64 / m).ln() / 2.326_348;
                let z: f64 = StandardNormal.sample(&mut rng);
                (m * (sigma * z).exp()) as Micros
            }
        })
    }
}

pub(super) fn exp_sample(rng: &mut Pcg64Mcg, mean: f64) -> Micros {
    let u: f64 = rng.random();
    (-(1.0 - u).ln() * mean) as Micros
}

/// Inter-arrival time of a Poisson process with `rate` events per microsecond.
pub(super) fn next_arrival(rng: &mut Pcg64Mcg, rate: f64) -> Micros {
    if rate <= 0.0 {
        Micros::MAX
    } else {
        exp_sample(rng, 1.0 / rate).max(1)
    }
}
