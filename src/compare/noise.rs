//! Is a difference beyond the noise? Two ways, depending on what the sides hold:
//!
//! - **repeated runs** (both sides have 2+ runs): Welch's t interval for the difference of the
//!   means of the per-run values (statrs' Student t quantiles);
//! - **bootstrap** (single runs): a block bootstrap over the per-second intervals of each run's
//!   `.hlog` — resample whole seconds with replacement, recompute the percentile from the
//!   merged seconds, take the 2.5th and 97.5th percentiles of the difference. Seconds are the
//!   blocks because latencies within a second are correlated (same load, same GC, same queue).

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A 95% interval of B - A.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

impl Interval {
    /// True when the interval excludes zero.
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() < 2 {
        0.0
    } else {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    };
    (mean, var)
}

/// Welch's 95% t interval of mean(b) - mean(a); needs 2+ values on each side.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Interval> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se = (sa + sb).sqrt();
    let d = mb - ma;
    if se == 0.0 {
        return Some(Interval { low: d, high: d });
    }
    let df = (sa + sb).powi(2) / (sa.powi(2) / (a.len() as f64 - 1.0) + sb.powi(2) / (b.len() as f64 - 1.0));
    let t = StudentsT::new(0.0, 1.0, df.max(1.0)).ok()?.inverse_cdf(0.975);
    Some(Interval {
        low: d - t * se,
        high: d + t * se,
    })
}

/// Per-second recorded values of one metric: for each second, (bucket value, count) pairs.
pub type Seconds = Vec<Vec<(u64, u64)>>;

/// The `q` quantile (0..=1) of the merged counts in `dense` over the sorted `values`.
fn quantile(values: &[u64], dense: &[u64], q: f64) -> f64 {
    let total: u64 = dense.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (v, c) in values.iter().zip(dense) {
        seen += c;
        if seen >= rank {
            return *v as f64;
        }
    }
    *values.last().unwrap_or(&0) as f64
}

/// Block bootstrap (seconds as blocks) of quantile `q` of B minus A, in the recorded unit.
/// `None` when a side has no seconds with samples.
pub fn bootstrap_quantile(a: &Seconds, b: &Seconds, q: f64, iterations: usize, seed: u64) -> Option<Interval> {
    let a: Vec<&Vec<(u64, u64)>> = a.iter().filter(|s| !s.is_empty()).collect();
    let b: Vec<&Vec<(u64, u64)>> = b.iter().filter(|s| !s.is_empty()).collect();
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // One shared, sorted list of bucket values; each second becomes (index, count) pairs.
    let mut values: Vec<u64> = a.iter().chain(&b).flat_map(|s| s.iter().map(|(v, _)| *v)).collect();
    values.sort_unstable();
    values.dedup();
    let index = |s: &&Vec<(u64, u64)>| -> Vec<(usize, u64)> {
        s.iter()
            .map(|(v, c)| (values.binary_search(v).expect("collected above"), *c))
            .collect()
    };
    let (ia, ib): (Vec<_>, Vec<_>) = (a.iter().map(index).collect(), b.iter().map(index).collect());
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut dense = vec![0u64; values.len()];
    let mut resample = |side: &[Vec<(usize, u64)>], rng: &mut Pcg64Mcg| {
        dense.iter_mut().for_each(|c| *c = 0);
        for _ in 0..side.len() {
            for (i, c) in &side[rng.random_range(0..side.len())] {
                dense[*i] += c;
            }
        }
        quantile(&values, &dense, q)
    };
    let mut diffs: Vec<f64> = (0..iterations)
        .map(|_| {
            let qa = resample(&ia, &mut rng);
            let qb = resample(&ib, &mut rng);
            qb - qa
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let at = |p: f64| diffs[((p * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
    Some(Interval {
        low: at(0.025),
        high: at(0.975),
    })
}

/// Block bootstrap of the mean of per-second values (e.g. messages per second), B - A.
pub fn bootstrap_mean(a: &[f64], b: &[f64], iterations: usize, seed: u64) -> Option<Interval> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mean = |xs: &[f64], rng: &mut Pcg64Mcg| {
        (0..xs.len()).map(|_| xs[rng.random_range(0..xs.len())]).sum::<f64>() / xs.len() as f64
    };
    let mut diffs: Vec<f64> = (0..iterations).map(|_| mean(b, &mut rng) - mean(a, &mut rng)).collect();
    diffs.sort_by(f64::total_cmp);
    let at = |p: f64| diffs[((p * (diffs.len() - 1) as f64).round() as usize).min(diffs.len() - 1)];
    Some(Interval {
        low: at(0.025),
        high: at(0.975),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_separates_shifted_samples_and_not_equal_ones() {
        let a = [10.0, 10.4, 9.8, 10.1];
        let b = [12.0, 12.3, 11.9, 12.2];
        let i = welch(&a, &b).unwrap();
        assert!(i.excludes_zero() && i.low > 1.0 && i.high < 3.0, "{i:?}");
        let same = welch(&a, &[10.2, 9.9, 10.0, 10.3]).unwrap();
        assert!(!same.excludes_zero(), "{same:?}");
        assert!(welch(&[1.0], &b).is_none());
    }

    fn seconds(values: &[u64], n: usize) -> Seconds {
        (0..n)
            .map(|i| values.iter().map(|v| (v + (i as u64 % 3), 10)).collect())
            .collect()
    }

    #[test]
    fn bootstrap_sees_a_shift_of_the_tail_and_not_noise() {
        let a = seconds(&[1000, 2000, 3000, 20_000], 30);
        let b = seconds(&[1000, 2000, 3000, 40_000], 30);
        let i = bootstrap_quantile(&a, &b, 0.99, 400, 1).unwrap();
        assert!(i.excludes_zero() && i.low > 15_000.0, "{i:?}");
        let same = bootstrap_quantile(&a, &seconds(&[1000, 2000, 3000, 20_000], 30), 0.99, 400, 1).unwrap();
        assert!(!same.excludes_zero(), "{same:?}");
        assert!(bootstrap_quantile(&a, &Vec::new(), 0.5, 10, 1).is_none());
        let m = bootstrap_mean(&[100.0, 101.0, 99.0, 100.0], &[90.0, 91.0, 89.0, 90.0], 400, 2).unwrap();
        assert!(m.high < 0.0, "{m:?}");
    }
}
