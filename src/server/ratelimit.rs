//! Per-connection token bucket: `rate` frames per second, up to `burst` at once.
//!
//! Pure arithmetic on instants the caller passes in, so it is tested without sleeping.

use std::time::{Duration, Instant};

/// Refill rate and capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket capacity (and the initial fill).
    pub burst: u32,
}

/// One connection's bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst),
            last: now,
        }
    }

    /// Takes one token if there is one; false means the frame is refused.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.limit.per_second).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Time until the next token (zero when one is available).
    pub fn wait_time(&self) -> Duration {
        if self.tokens >= 1.0 || self.limit.per_second <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                per_second: 100.0,
                burst: 200,
            },
            t0,
        );
        let taken = (0..300).filter(|_| b.try_take(t0)).count();
        assert_eq!(taken, 200, "the burst, then nothing at the same instant");
        assert!(b.wait_time() > Duration::ZERO);
        // One second later: 100 more tokens, not 200.
        let t1 = t0 + Duration::from_secs(1);
        let taken = (0..300).filter(|_| b.try_take(t1)).count();
        assert_eq!(taken, 100);
        // Ten seconds idle refills only up to the burst.
        let t2 = t1 + Duration::from_secs(10);
        let taken = (0..500).filter(|_| b.try_take(t2)).count();
        assert_eq!(taken, 200);
    }

    #[test]
    fn partial_tokens_accumulate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(
            RateLimit {
                per_second: 10.0,
                burst: 1,
            },
            t0,
        );
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
    }
}
