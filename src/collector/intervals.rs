//! Per-second intervals: the timeline series for the report's plots and the interval
//! histograms of the `.hlog` file.
//!
//! Events reach the collector a little after they happen, so a second stays open until events
//! two seconds later arrive; then its histograms are compressed (V2 deflate) and dropped, which
//! keeps memory flat however long the run.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};

use super::fold::{METRICS, new_histogram};
use crate::report::TimelinePoint;

/// What a second counts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Count {
    Messages,
    Acks,
    Receipts,
    Errors,
}

/// Counts and histograms of one second.
#[derive(Default)]
pub(super) struct Interval {
    messages: u64,
    acks: u64,
    receipts: u64,
    errors: u64,
    connected: u64,
    hists: [Option<Histogram<u64>>; METRICS.len()],
}

impl Interval {
    fn p99_ms(&self, metric: usize) -> f64 {
        self.hists[metric]
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

/// Seconds kept open for late events before they are closed.
const WINDOW: u64 = 3;

/// Open and closed seconds.
#[derive(Default)]
pub(super) struct Intervals {
    open: BTreeMap<u64, Interval>,
    /// Seconds below this are closed (`closed` holds one point per second up to here).
    closed_below: u64,
    closed: Vec<TimelinePoint>,
    /// (second, metric index, compressed histogram).
    hlog: Vec<(u64, usize, Vec<u8>)>,
    serializer: V2DeflateSerializer,
}

/// Index of `schedule_lag` and `read_receipt` in [`METRICS`].
const LAG: usize = 7;
const READ_RECEIPT: usize = 2;

impl Intervals {
    /// Closes the seconds that fell out of the window before second `sec`.
    fn advance_to(&mut self, sec: u64) {
        while let Some((&first, _)) = self.open.first_key_value() {
            if first + WINDOW >= sec {
                break;
            }
            self.close_first();
        }
    }

    /// The open interval of second `sec`, or `None` when `sec` is already closed.
    fn at(&mut self, sec: u64, connected: u64) -> Option<&mut Interval> {
        self.advance_to(sec);
        if sec < self.closed_below {
            return None;
        }
        let i = self.open.entry(sec).or_default();
        i.connected = connected;
        Some(i)
    }

    /// Counts one event of `what` in second `sec`; a late event still counts, in its closed
    /// second's point.
    pub fn count(&mut self, sec: u64, connected: u64, what: Count) {
        self.advance_to(sec);
        let slot = |m: &mut u64, a: &mut u64, r: &mut u64, e: &mut u64| match what {
            Count::Messages => *m += 1,
            Count::Acks => *a += 1,
            Count::Receipts => *r += 1,
            Count::Errors => *e += 1,
        };
        if sec < self.closed_below {
            if let Some(p) = self.closed.get_mut(sec as usize) {
                slot(&mut p.messages, &mut p.acks, &mut p.receipts, &mut p.errors);
            }
        } else if let Some(i) = self.at(sec, connected) {
            slot(&mut i.messages, &mut i.acks, &mut i.receipts, &mut i.errors);
        }
    }

    /// Touches second `sec` so it appears with the current connection count.
    pub fn touch(&mut self, sec: u64, connected: u64) {
        let _ = self.at(sec, connected);
    }

    /// Messages counted so far in second `sec`.
    pub fn messages(&self, sec: u64) -> u64 {
        match self.open.get(&sec) {
            Some(i) => i.messages,
            None => self.closed.get(sec as usize).map_or(0, |p| p.messages),
        }
    }

    /// Records a latency (µs) in second `sec`'s histogram of `metric`. Samples for a second
    /// already closed (more than the window late) stay in the run totals only.
    pub fn record(&mut self, sec: u64, connected: u64, metric: usize, us: u64) {
        if let Some(i) = self.at(sec, connected) {
            i.hists[metric]
                .get_or_insert_with(new_histogram)
                .saturating_record(us.max(1));
        }
    }

    fn close_first(&mut self) {
        let Some((sec, interval)) = self.open.pop_first() else {
            return;
        };
        // Fill skipped seconds so the timeline has one point per second.
        for gap in self.closed_below..sec {
            self.closed.push(TimelinePoint {
                t: gap as f64,
                ..Default::default()
            });
        }
        self.closed_below = sec + 1;
        self.closed.push(TimelinePoint {
            t: sec as f64,
            connected: interval.connected,
            messages: interval.messages,
            acks: interval.acks,
            receipts: interval.receipts,
            errors: interval.errors,
            schedule_lag_p99: interval.p99_ms(LAG),
            read_receipt_p99: interval.p99_ms(READ_RECEIPT),
        });
        for (m, h) in interval.hists.iter().enumerate() {
            if let Some(h) = h {
                let mut bytes = Vec::new();
                if self.serializer.serialize(h, &mut bytes).is_ok() {
                    self.hlog.push((sec, m, bytes));
                }
            }
        }
    }

    /// Closes everything and returns the timeline and the `.hlog` text.
    pub fn finish(mut self, start_time: SystemTime) -> (Vec<TimelinePoint>, Vec<u8>) {
        while !self.open.is_empty() {
            self.close_first();
        }
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        {
            let mut builder = IntervalLogWriterBuilder::new();
            builder
                .add_comment(
                    "ackstorm latency intervals: values in microseconds, one interval per second per metric (tag)",
                )
                .with_start_time(start_time)
                .with_base_time(start_time)
                .with_max_value_divisor(1000.0);
            let mut writer = builder
                .begin_log_with(&mut out, &mut serializer)
                .expect("writing to a Vec");
            let mut de = Deserializer::new();
            for (sec, m, bytes) in &self.hlog {
                let Ok(h) = de.deserialize::<u64, _>(&mut bytes.as_slice()) else {
                    continue;
                };
                let _ = writer.write_histogram(
                    &h,
                    Duration::from_secs(*sec),
                    Duration::from_secs(1),
                    Tag::new(METRICS[*m]),
                );
            }
        }
        (self.closed, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn seconds_close_in_order_and_the_log_reads_back() {
        let mut iv = Intervals::default();
        iv.record(0, 5, LAG, 1500);
        for _ in 0..3 {
            iv.count(0, 5, Count::Messages);
        }
        iv.record(3, 6, READ_RECEIPT, 20_000);
        iv.record(5, 6, READ_RECEIPT, 10_000);
        // Late: second 0 is closed by now; the count still lands, the sample only in totals.
        iv.count(0, 6, Count::Messages);
        iv.record(0, 6, LAG, 9000);
        let (timeline, log) = iv.finish(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            timeline.iter().map(|p| p.t as u64).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(timeline[0].messages, 4);
        assert!((timeline[0].schedule_lag_p99 - 1.5).abs() < 0.01);
        assert!((timeline[3].read_receipt_p99 - 20.0).abs() < 0.05);
        let text = String::from_utf8(log.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1700000000"), "{text}");
        let tags: Vec<String> = IntervalLogIterator::new(&log)
            .filter_map(|e| match e {
                Ok(LogEntry::Interval(h)) => h.tag().map(|t| t.as_str().to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(tags, ["schedule_lag", "read_receipt", "read_receipt"]);
    }
}
