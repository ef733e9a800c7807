//! The live latency window: the last few closed seconds of each metric merged, with its
//! quantiles, for the live metrics exporter (`runner::live`).
//!
//! Fed by [`super::intervals::Intervals`] as each second closes, so the quantiles are worked
//! out once a second on the collector thread whatever the scrape rate, and a snapshot only
//! copies them. A second is kept as a compact copy (2 significant digits: 1% of the value,
//! ~26 KiB a histogram instead of ~184 KiB at the run totals' 3), so ten seconds of every
//! metric stay a few MiB at worst. It must not feed reports: their percentiles come from the
//! full histograms.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use super::metric::Metric;

/// Seconds merged into the live window unless the run asks otherwise.
pub const DEFAULT_WINDOW_SECS: u64 = 10;

/// The quantiles the window reports (1.0 is the maximum).
pub const WINDOW_QUANTILES: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 1.0];

/// One metric over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowLatency {
    /// Which.
    pub metric: Metric,
    /// Samples in the window.
    pub samples: u64,
    /// Values at [`WINDOW_QUANTILES`], microseconds.
    pub quantiles_us: [u64; WINDOW_QUANTILES.len()],
}

use super::intervals::Hists;

/// A closed second's compact copies, by [`Metric::index`].
type Compact = [Option<Histogram<u64>>; Metric::ALL.len()];

fn compact() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

/// The last `secs` closed seconds, per metric.
pub(super) struct Window {
    secs: u64,
    /// Closed seconds in the window, oldest first, with their compact histograms.
    seconds: VecDeque<(u64, Compact)>,
    /// The window's figures, one per metric with samples, in [`Metric::ALL`] order.
    figures: Vec<WindowLatency>,
}

impl Window {
    /// A window of the last `secs` closed seconds (at least one).
    pub(super) fn new(secs: u64) -> Window {
        Window {
            secs: secs.max(1),
            seconds: VecDeque::new(),
            figures: Vec::new(),
        }
    }

    /// Its length in seconds.
    pub(super) fn secs(&self) -> u64 {
        self.secs
    }

    /// Second `sec` closed with these histograms (one per metric, by [`Metric::index`]);
    /// seconds that fell out of the window are dropped and the figures worked out again.
    pub(super) fn close(&mut self, sec: u64, hists: &Hists) {
        let copy: Compact = std::array::from_fn(|i| {
            hists[i].as_ref().filter(|h| !h.is_empty()).map(|h| {
                let mut c = compact();
                // Same bounds, so the values always fit.
                for v in h.iter_recorded() {
                    c.saturating_record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
                }
                c
            })
        });
        self.seconds.push_back((sec, copy));
        while let Some((first, _)) = self.seconds.front() {
            if first + self.secs > sec {
                break;
            }
            self.seconds.pop_front();
        }
        self.figures = Metric::ALL
            .into_iter()
            .filter_map(|m| {
                let mut merged: Option<Histogram<u64>> = None;
                for (_, hs) in &self.seconds {
                    if let Some(h) = &hs[m.index()] {
                        let _ = merged.get_or_insert_with(compact).add(h);
                    }
                }
                let h = merged?;
                Some(WindowLatency {
                    metric: m,
                    samples: h.len(),
                    quantiles_us: WINDOW_QUANTILES.map(|q| h.value_at_quantile(q)),
                })
            })
            .collect();
    }

    /// The figures of the window as it stands.
    pub(super) fn figures(&self) -> &[WindowLatency] {
        &self.figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(metric: Metric, values: &[u64]) -> Hists {
        let mut hs: Hists = std::array::from_fn(|_| None);
        let mut h = super::super::intervals::second_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        hs[metric.index()] = Some(h);
        hs
    }

    #[test]
    fn only_the_last_seconds_count_and_old_ones_fall_out() {
        let mut w = Window::new(3);
        // Second 0: one slow sample; seconds 1-3 fast ones.
        w.close(0, &second(Metric::ReadReceipt, &[500_000]));
        // Two significant digits: within 1% of the value.
        let max = w.figures()[0].quantiles_us[4];
        assert!((495_000..=505_000).contains(&max), "{:?}", w.figures());
        for s in 1..=2 {
            w.close(s, &second(Metric::ReadReceipt, &[1_000; 100]));
        }
        // Seconds 0..=2 are in: the max is the slow one.
        let f = &w.figures()[0];
        assert_eq!((f.metric, f.samples), (Metric::ReadReceipt, 201));
        assert!(f.quantiles_us[4] >= 495_000, "{f:?}");
        assert!((990..=1010).contains(&f.quantiles_us[2]), "{f:?}");
        // Second 3 closes: second 0 leaves the window, and with it the slow sample.
        w.close(3, &second(Metric::ServerAck, &[2_000]));
        let names: Vec<&str> = w.figures().iter().map(|f| f.metric.name()).collect();
        assert_eq!(names, ["server_ack", "read_receipt"]);
        let rr = &w.figures()[1];
        assert_eq!(rr.samples, 200);
        assert!(rr.quantiles_us[4] < 1_100, "{rr:?}");
        // A gap: seconds far later push everything out.
        w.close(10, &second(Metric::ServerAck, &[3_000]));
        assert_eq!(w.figures().len(), 1);
        assert_eq!(w.figures()[0].samples, 1);
    }
}
