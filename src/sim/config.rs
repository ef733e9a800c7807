//! The behaviour's settings, read once from the plan and shared by every user, and the
//! seeded draws they are used with (exponential times, Poisson arrivals, read decisions,
//! reconnect backoff). Arrivals under a `traffic.curve` are drawn here by time-rescaling;
//! the curve's maths is [`Curve`]'s.

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use super::behaviour::{Micros, MsgKey};
use super::world::mix;
use crate::profile::{Churn, ContactChoice, Curve, Delay, Plan, Strategy};

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
    /// Factors of both rates over the run clock (`None`: constant rates).
    pub(super) curve: Option<Curve>,
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
            curve: plan.traffic.curve.clone(),
            contact_cdf,
            allow_group_ack_share: plan.groups.allow_group_ack_share,
            ack_anyone: plan.groups.server_ack_anyone,
            traffic_start: plan.traffic_start().as_micros() as Micros,
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
        let h = mix(self.seed ^ mix(u64::from(key.sender) << 40 ^ u64::from(key.seq) ^ 0x7265_6164_7573_6572));
        ((h >> 11) as f64 / (1u64 << 53) as f64) < self.read_users_share
    }

    /// Whether `reader` reads message `key`, and after what delay once it sees it: a pure
    /// function of the seed, the message and the reader.
    pub fn read_decision(&self, key: MsgKey, reader: u32) -> Option<Micros> {
        let h = mix(self.seed
            ^ mix(u64::from(key.sender) << 32 ^ u64::from(reader))
            ^ mix(u64::from(key.seq).rotate_left(17)));
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
    exp_draw(rng, mean) as Micros
}

/// An exponential draw with this mean, unrounded (one uniform draw).
fn exp_draw(rng: &mut Pcg64Mcg, mean: f64) -> f64 {
    let u: f64 = rng.random();
    -(1.0 - u).ln() * mean
}

/// The wait from `now` to the next arrival of a Poisson process of `rate` events per
/// microsecond, times the `curve`'s factor when there is one; `Micros::MAX` for never.
///
/// One uniform draw per arrival either way. Without a curve it is an exponential gap of mean
/// `1 / rate`. With one, the same draw is an amount of operational time (the integral of the
/// factor) and the wait is how long the curve takes to accumulate it from `now`
/// ([`Curve::advance`]): the time-rescaling construction of a non-homogeneous Poisson
/// process. A curve of ones gives exactly the constant-rate waits.
pub(super) fn next_arrival(rng: &mut Pcg64Mcg, rate: f64, curve: Option<&Curve>, now: Micros) -> Micros {
    if rate <= 0.0 {
        return Micros::MAX;
    }
    match curve {
        None => exp_sample(rng, 1.0 / rate).max(1),
        Some(c) => c.advance(now, exp_draw(rng, 1.0 / rate)).max(1),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand::SeedableRng;

    use super::*;

    const SEC: Micros = 1_000_000;

    fn curve(factors: &[f64], step: Duration) -> Curve {
        Curve::new(factors.to_vec(), step).unwrap()
    }

    /// The arrival times of a process of `rate` per microsecond from 0 to `end`.
    fn arrivals(seed: u64, rate: f64, c: Option<&Curve>, end: Micros) -> Vec<Micros> {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut t: Micros = 0;
        let mut out = Vec::new();
        loop {
            t = t.saturating_add(next_arrival(&mut rng, rate, c, t));
            if t >= end {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn a_curve_of_ones_draws_exactly_the_constant_rate_arrivals() {
        let ones = curve(&[1.0; 24], Duration::from_secs(1));
        for rate in [0.5 / SEC as f64, 3.0 / SEC as f64, 1e-3] {
            let flat = arrivals(7, rate, None, 200 * SEC);
            assert!(flat.len() > 50, "{}", flat.len());
            assert_eq!(arrivals(7, rate, Some(&ones), 200 * SEC), flat);
        }
        // One draw per arrival either way: the generators stay in step.
        let (mut a, mut b) = (Pcg64Mcg::seed_from_u64(1), Pcg64Mcg::seed_from_u64(1));
        let twos = curve(&[2.0, 0.0], Duration::from_secs(1));
        next_arrival(&mut a, 1e-6, None, 0);
        next_arrival(&mut b, 1e-6, Some(&twos), 0);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn factor_two_halves_the_gaps() {
        let twos = curve(&[2.0], Duration::from_secs(3600));
        let (mut a, mut b) = (Pcg64Mcg::seed_from_u64(3), Pcg64Mcg::seed_from_u64(3));
        for i in 0..1000 {
            let flat = next_arrival(&mut a, 1e-6, None, i * SEC);
            let fast = next_arrival(&mut b, 1e-6, Some(&twos), i * SEC);
            assert!(fast.abs_diff(flat / 2) <= 1, "{flat} vs {fast}");
        }
    }

    #[test]
    fn a_zero_rate_is_never_and_draws_nothing() {
        let mut rng = Pcg64Mcg::seed_from_u64(5);
        let ones = curve(&[1.0], Duration::from_secs(1));
        assert_eq!(next_arrival(&mut rng, 0.0, Some(&ones), 0), Micros::MAX);
        assert_eq!(rng.random::<u64>(), Pcg64Mcg::seed_from_u64(5).random::<u64>());
    }

    #[test]
    fn arrivals_follow_the_curve_step_by_step() {
        // 10 s steps, wrapping every 40 s, over 4000 s: 100 periods.
        let c = curve(&[0.5, 2.0, 0.0, 1.0], Duration::from_secs(10));
        let rate = 10.0 / SEC as f64;
        let end = 4000 * SEC;
        let got = arrivals(11, rate, Some(&c), end);
        let expected = rate * c.integral(0, end);
        assert!((expected - 35_000.0).abs() < 1e-6, "{expected}");
        let n = got.len() as f64;
        // A Poisson count: sd = sqrt(35,000) ~ 190, so 3% is over 5 sd.
        assert!((n / expected - 1.0).abs() < 0.03, "{n} arrivals, expected {expected}");
        let mut per_step = [0usize; 4];
        for t in &got {
            per_step[((t / (10 * SEC)) % 4) as usize] += 1;
        }
        assert_eq!(per_step[2], 0, "nothing in a zero step: {per_step:?}");
        for (i, f) in [0.5, 2.0, 0.0, 1.0].iter().enumerate() {
            let want = rate * f * 10.0 * SEC as f64 * 100.0;
            let tolerance = 0.06 * want + 1.0;
            assert!(
                (per_step[i] as f64 - want).abs() <= tolerance,
                "step {i}: {} arrivals, expected {want}",
                per_step[i]
            );
        }
    }
}
