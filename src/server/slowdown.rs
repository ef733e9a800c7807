//! Deliberately slowed builds, for benchmarking the benchmark: a fixed delay before each
//! frame is handled (`--delay-ms`) and a cap on the frames the whole server handles per second
//! (`--throttle`). With the cap, frames queue for the next free slot, so latency stays flat
//! below the cap and grows without bound above it: a knee at a known load.
//!
//! Off by default; `/metrics` reports both in `ackstorm_build_info`.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// The slowdown of a server build.
#[derive(Debug)]
pub struct Slowdown {
    delay: Duration,
    /// Time between two frame slots, and the next free slot.
    throttle: Option<(Duration, Mutex<Instant>)>,
}

impl Slowdown {
    /// `None` when neither option is set.
    pub fn new(delay: Duration, throttle: Option<f64>) -> Option<Slowdown> {
        let throttle = throttle
            .filter(|r| *r > 0.0)
            .map(|r| (Duration::from_secs_f64(1.0 / r), Mutex::new(Instant::now())));
        (!delay.is_zero() || throttle.is_some()).then_some(Slowdown { delay, throttle })
    }

    /// The instant this frame may be handled: after the delay, in the next free slot.
    pub fn slot(&self, now: Instant) -> Instant {
        let ready = now + self.delay;
        match &self.throttle {
            None => ready,
            Some((interval, next)) => {
                let mut next = next.lock();
                let at = (*next).max(ready);
                *next = at + *interval;
                at
            }
        }
    }

    /// Waits for this frame's slot.
    pub async fn wait(&self) {
        let at = self.slot(Instant::now());
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_unless_asked() {
        assert!(Slowdown::new(Duration::ZERO, None).is_none());
        assert!(Slowdown::new(Duration::ZERO, Some(0.0)).is_none());
        assert!(Slowdown::new(Duration::from_millis(1), None).is_some());
    }

    #[test]
    fn the_throttle_spaces_frames_and_queues_the_excess() {
        let s = Slowdown::new(Duration::from_millis(2), Some(100.0)).unwrap();
        let t0 = Instant::now();
        let slots: Vec<Duration> = (0..5).map(|_| s.slot(t0) - t0).collect();
        // 2 ms delay, then one frame per 10 ms.
        assert_eq!(slots, [2, 12, 22, 32, 42].map(Duration::from_millis));
        // Later, once the queue has drained, a frame only pays the delay.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(s.slot(later) - later, Duration::from_millis(2));
    }
}
