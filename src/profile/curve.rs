//! The diurnal traffic curve (`traffic.curve`): piecewise-constant factors of the message
//! rates over the run clock, and every piece of maths on it, in one place.
//!
//! Factor `i` applies from `i * step` to `(i + 1) * step` of the run clock (microseconds
//! since the run started); past the last factor the curve starts again (24 hourly factors
//! repeat daily). The simulation draws arrivals by time-rescaling ([`Curve::advance`]), the
//! plan sizes the offered load from its mean ([`Curve::mean`]).
//!
//! It lives with the plan rather than in `sim` because the plan needs it too (the offered
//! rates) and `profile` must not depend on `sim`. It must stay pure: no random draws (the
//! caller draws the exponential amount) and no clock; and it must not allocate per call.

use std::time::Duration;

/// Factors of the message rates, one per step of the run clock, repeating.
///
/// Built only through [`Curve::new`], which refuses what the maths cannot use (non-finite or
/// negative factors, all zero, none, too many, a zero step).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    factors: Vec<f64>,
    step: Duration,
    /// `step` in microseconds (at least 1).
    step_us: u64,
    /// The integral of the factors over one period, in factor x microseconds.
    period_integral: f64,
}

impl Curve {
    /// At most this many factors (a year of hours is under 9,000).
    pub const MAX_FACTORS: usize = 10_000;

    /// The default step: one factor per hour.
    pub const DEFAULT_STEP: Duration = Duration::from_secs(3600);

    /// A curve of `factors`, each lasting `step`; `Err` says what is wrong (the caller names
    /// the key), with the index of a bad factor as `Err((Some(i), message))`.
    pub fn new(factors: Vec<f64>, step: Duration) -> Result<Curve, (Option<usize>, String)> {
        if factors.is_empty() {
            return Err((
                None,
                "needs at least one factor (leave it out for a constant rate)".to_string(),
            ));
        }
        if factors.len() > Self::MAX_FACTORS {
            return Err((
                None,
                format!("has {} factors, at most {} allowed", factors.len(), Self::MAX_FACTORS),
            ));
        }
        if let Some((i, f)) = factors.iter().enumerate().find(|(_, f)| !(f.is_finite() && **f >= 0.0)) {
            return Err((Some(i), format!("{f} must be a finite number >= 0")));
        }
        if factors.iter().all(|f| *f == 0.0) {
            return Err((
                None,
                "every factor is 0: at least one must be above 0 (no message would ever be sent)".to_string(),
            ));
        }
        let step_us = u64::try_from(step.as_micros()).unwrap_or(u64::MAX);
        if step_us == 0 {
            return Err((None, "the step must be at least 1us".to_string()));
        }
        let period_integral = factors.iter().sum::<f64>() * step_us as f64;
        if !period_integral.is_finite() {
            return Err((None, "the factors times the step are too large".to_string()));
        }
        Ok(Curve {
            factors,
            step,
            step_us,
            period_integral,
        })
    }

    /// The factors, in order.
    pub fn factors(&self) -> &[f64] {
        &self.factors
    }

    /// How long each factor lasts.
    pub fn step(&self) -> Duration {
        self.step
    }

    /// The factor at run-clock time `t` (microseconds).
    pub fn factor_at(&self, t: u64) -> f64 {
        self.factors[self.index(t / self.step_us)]
    }

    /// Index into `factors` of step number `k` (wrapping around).
    fn index(&self, k: u64) -> usize {
        (k % self.factors.len() as u64) as usize
    }

    /// The integral of the factor from 0 to `t` (microseconds), in factor x microseconds.
    /// O(number of factors).
    fn cumulative(&self, t: u64) -> f64 {
        let k = t / self.step_us;
        let n = self.factors.len() as u64;
        let whole: f64 = self.factors[..(k % n) as usize].iter().sum();
        (k / n) as f64 * self.period_integral
            + whole * self.step_us as f64
            + (t % self.step_us) as f64 * self.factor_at(t)
    }

    /// The integral of the factor from `from` to `to` (microseconds, `from <= to`).
    pub fn integral(&self, from: u64, to: u64) -> f64 {
        (self.cumulative(to) - self.cumulative(from)).max(0.0)
    }

    /// The mean factor over `from..to` of the run clock; the factor at `from` when the
    /// window is empty.
    pub fn mean(&self, from: Duration, to: Duration) -> f64 {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let (a, b) = (us(from), us(to));
        if b <= a {
            return self.factor_at(a);
        }
        self.integral(a, b) / (b - a) as f64
    }

    /// Time-rescaling: the wait from `t` until the integral of the factor from `t` reaches
    /// `amount` (factor x microseconds), truncated to whole microseconds; `u64::MAX` when it
    /// never does (a wait past the end of the clock). Steps of factor 0 are passed over;
    /// whole periods are skipped at once, so the cost is at most two periods' worth of steps
    /// whatever the amount. With every factor 1 the wait is exactly `amount as u64` (every
    /// partial sum is of whole microseconds, which `f64` holds exactly).
    pub fn advance(&self, t: u64, amount: f64) -> u64 {
        let mut left = amount.max(0.0);
        let mut waited = 0.0f64;
        let mut pos = t;
        // Whole periods first: the wait is O(steps crossed) even for a tiny rate.
        if left >= self.period_integral {
            let periods = (left / self.period_integral).floor();
            let period_us = self.step_us as f64 * self.factors.len() as f64;
            left = (left - periods * self.period_integral).max(0.0);
            waited += periods * period_us;
            if waited >= u64::MAX as f64 {
                return u64::MAX;
            }
        }
        loop {
            let k = pos / self.step_us;
            let f = self.factors[self.index(k)];
            let Some(end) = k.checked_add(1).and_then(|k| k.checked_mul(self.step_us)) else {
                return u64::MAX;
            };
            let span = (end - pos) as f64;
            if f > 0.0 {
                let room = span * f;
                if left <= room {
                    waited += left / f;
                    return if waited >= u64::MAX as f64 {
                        u64::MAX
                    } else {
                        waited as u64
                    };
                }
                left -= room;
            }
            waited += span;
            pos = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const H: u64 = 3_600_000_000;

    fn curve(factors: &[f64], step: Duration) -> Curve {
        Curve::new(factors.to_vec(), step).unwrap()
    }

    #[test]
    fn a_curve_of_ones_waits_exactly_the_amount() {
        let c = curve(&[1.0], HOUR);
        for (t, amount) in [
            (0, 0.0),
            (0, 123.9),
            (5, 3.6e9 - 5.5),
            (H - 1, 2.5),
            (7 * H + 3, 9.87654321e10),
            (1 << 40, 1e6 + 0.999_999),
        ] {
            assert_eq!(c.advance(t, amount), amount as u64, "t {t}, amount {amount}");
        }
        let many = curve(&[1.0; 24], Duration::from_secs(60));
        assert_eq!(many.advance(59_999_999, 1e9 + 0.75), 1_000_000_000);
    }

    #[test]
    fn factor_two_halves_the_wait_and_factor_half_doubles_it() {
        assert_eq!(curve(&[2.0], HOUR).advance(10, 1000.0), 500);
        assert_eq!(curve(&[0.5], HOUR).advance(10, 1000.0), 2000);
    }

    #[test]
    fn a_step_crossing_uses_each_steps_factor() {
        // 1 s steps: factor 1, then 4. From 0.5 s, 0.5 s of room at 1, then 0.5 s at 4 = 2.
        let c = curve(&[1.0, 4.0], Duration::from_secs(1));
        assert_eq!(c.advance(500_000, 2_500_000.0), 1_000_000);
    }

    #[test]
    fn zero_steps_are_skipped() {
        let c = curve(&[1.0, 0.0, 0.0, 1.0], Duration::from_secs(1));
        // From 0.5 s: 0.5 s in step 0, two zero steps, then 0.25 s of step 3.
        assert_eq!(c.advance(500_000, 750_000.0), 500_000 + 2_000_000 + 250_000);
        // Starting inside a zero step waits for the next positive one.
        assert_eq!(c.advance(1_000_000, 1.0), 2_000_001);
    }

    #[test]
    fn the_curve_wraps_around() {
        let c = curve(&[0.0, 1.0], Duration::from_secs(1));
        assert_eq!(c.factor_at(2_500_000), 0.0);
        assert_eq!(c.factor_at(3_500_000), 1.0);
        // From 1.5 s: 0.5 s left in step 1, step 2 (= 0) skipped, 0.5 s into step 3.
        assert_eq!(c.advance(1_500_000, 1_000_000.0), 2_000_000);
        // Many periods at once: 1000 periods of 1 s of rate each, then 0.5 s more.
        assert_eq!(c.advance(1_000_000, 1000.5e6), 2_000_000_000 + 500_000);
    }

    #[test]
    fn a_wait_past_the_clock_is_never() {
        let c = curve(&[1.0], HOUR);
        assert_eq!(c.advance(u64::MAX - 10, 100.0), u64::MAX);
        assert_eq!(c.advance(0, 1e30), u64::MAX);
        assert_eq!(c.advance(0, f64::INFINITY), u64::MAX);
    }

    #[test]
    fn integral_and_mean_follow_the_steps() {
        let c = curve(&[1.0, 3.0], Duration::from_secs(1));
        assert_eq!(c.integral(0, 2_000_000), 4_000_000.0);
        assert_eq!(c.integral(500_000, 1_500_000), 500_000.0 + 1_500_000.0);
        assert_eq!(c.mean(Duration::ZERO, Duration::from_secs(4)), 2.0);
        assert_eq!(c.mean(Duration::from_secs(1), Duration::from_secs(2)), 3.0);
        assert_eq!(c.mean(Duration::from_secs(3), Duration::from_secs(3)), 3.0);
    }

    #[test]
    fn bad_curves_are_refused_with_the_index_of_a_bad_factor() {
        let err = |f: &[f64], step| Curve::new(f.to_vec(), step).unwrap_err();
        assert_eq!(err(&[1.0, -1.0], HOUR).0, Some(1));
        assert_eq!(err(&[f64::NAN], HOUR).0, Some(0));
        assert_eq!(err(&[1.0, f64::INFINITY], HOUR).0, Some(1));
        assert!(err(&[], HOUR).1.contains("at least one factor"));
        assert!(err(&[0.0, 0.0], HOUR).1.contains("every factor is 0"));
        assert!(err(&[1.0], Duration::ZERO).1.contains("step"));
        assert!(err(&[1.0; Curve::MAX_FACTORS + 1], HOUR).1.contains("at most 10000"));
        assert!(Curve::new(vec![1.0; Curve::MAX_FACTORS], HOUR).is_ok());
    }
}
