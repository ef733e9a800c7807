//! Per-second intervals: the timeline series for the report's plots and the interval
//! histograms of the `.hlog` file.
//!
//! Events reach the collector a little after they happen, so a second stays open until events
//! a few seconds later arrive; then its histograms are written to the interval log (to disk at
//! once, so an interrupted or crashed run keeps every closed second) and dropped, which keeps
//! memory flat however long the run.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use super::metric::Metric;
use super::window::{Window, WindowLatency};
use crate::report::TimelinePoint;

/// Where the interval log goes.
pub(super) enum LogSink {
    /// A file, flushed as each second closes.
    File(std::io::BufWriter<std::fs::File>),
    /// Memory (tests, and runs with no results folder).
    Memory(Vec<u8>),
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            LogSink::File(f) => f.write(buf),
            LogSink::Memory(v) => v.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LogSink::File(f) => f.flush(),
            LogSink::Memory(_) => Ok(()),
        }
    }
}

/// Values are recorded in microseconds and logged in milliseconds.
const DIVISOR: f64 = 1000.0;

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
    rss_mb: f64,
    cpu_pct: f64,
    hists: Hists,
}

/// One second's histograms, by [`Metric::index`].
pub(super) type Hists = [Option<Histogram<u32>>; Metric::ALL.len()];

/// A second's histogram: the run totals' bounds and precision, 32-bit counts (no second
/// holds four billion samples), so half the memory of a total's for each open second.
pub(super) fn second_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

impl Interval {
    fn p99_ms(&self, metric: Metric) -> f64 {
        self.hists[metric.index()]
            .as_ref()
            .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

/// Seconds kept open for late events before they are closed.
const WINDOW: u64 = 3;

/// Open and closed seconds.
pub(super) struct Intervals {
    open: BTreeMap<u64, Interval>,
    /// Seconds below this are closed (`closed` holds one point per second up to here).
    closed_below: u64,
    closed: Vec<TimelinePoint>,
    log: LogSink,
    serializer: V2DeflateSerializer,
    /// The first write error (later seconds are still kept in the timeline).
    log_error: Option<String>,
    /// The live window of the last closed seconds (`None`: no live exporter to feed).
    window: Option<Window>,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals::new(LogSink::Memory(Vec::new()), SystemTime::now())
    }
}

impl Intervals {
    /// Intervals logged to `log`, whose header names `start_time`.
    pub fn new(log: LogSink, start_time: SystemTime) -> Intervals {
        let mut iv = Intervals {
            open: BTreeMap::new(),
            closed_below: 0,
            closed: Vec::new(),
            log,
            serializer: V2DeflateSerializer::new(),
            log_error: None,
            window: None,
        };
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment("ackstorm latency intervals: values in microseconds, one interval per second per metric (tag)")
            .with_start_time(start_time)
            .with_base_time(start_time)
            .with_max_value_divisor(DIVISOR);
        let header = builder.begin_log_with(&mut iv.log, &mut iv.serializer).map(|_| ());
        iv.note(header.map_err(|e| e.to_string()));
        iv
    }

    /// Keeps a live window of the last `secs` closed seconds (0: none).
    pub fn with_window(mut self, secs: u64) -> Intervals {
        self.window = (secs > 0).then(|| Window::new(secs));
        self
    }

    /// The live window's length in seconds and its figures (0 and none without a window).
    pub fn window(&self) -> (u64, &[WindowLatency]) {
        match &self.window {
            Some(w) => (w.secs(), w.figures()),
            None => (0, &[][..]),
        }
    }

    fn note(&mut self, r: Result<(), String>) {
        if let (Err(e), None) = (r, &self.log_error) {
            self.log_error = Some(e);
        }
    }

    /// Records the tester's own memory and CPU in second `sec`.
    pub fn resources(&mut self, sec: u64, connected: u64, rss_mb: f64, cpu_pct: f64) {
        if let Some(i) = self.at(sec, connected) {
            i.rss_mb = rss_mb;
            i.cpu_pct = cpu_pct;
        }
    }
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
    pub fn record(&mut self, sec: u64, connected: u64, metric: Metric, us: u64) {
        if let Some(i) = self.at(sec, connected) {
            i.hists[metric.index()]
                .get_or_insert_with(second_histogram)
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
            schedule_lag_p99: interval.p99_ms(Metric::ScheduleLag),
            read_receipt_p99: interval.p99_ms(Metric::ReadReceipt),
            rss_mb: interval.rss_mb,
            cpu_pct: interval.cpu_pct,
        });
        if let Some(w) = &mut self.window {
            w.close(sec, &interval.hists);
        }
        let r = self.write_second(sec, &interval);
        self.note(r);
    }

    /// Appends one second's histograms to the log and flushes it. Each batch goes through
    /// the crate's writer (its header lines, repeated per batch, are dropped).
    fn write_second(&mut self, sec: u64, interval: &Interval) -> Result<(), String> {
        if interval.hists.iter().all(Option::is_none) {
            return Ok(());
        }
        let mut batch = Vec::new();
        {
            let mut builder = IntervalLogWriterBuilder::new();
            builder.with_max_value_divisor(DIVISOR);
            let mut writer = builder
                .begin_log_with(&mut batch, &mut self.serializer)
                .map_err(|e| e.to_string())?;
            for (m, h) in Metric::ALL.iter().zip(&interval.hists) {
                if let Some(h) = h {
                    writer
                        .write_histogram(h, Duration::from_secs(sec), Duration::from_secs(1), Tag::new(m.name()))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        for line in batch.split_inclusive(|b| *b == b'\n').filter(|l| !l.starts_with(b"#")) {
            self.log.write_all(line).map_err(|e| e.to_string())?;
        }
        self.log.flush().map_err(|e| e.to_string())
    }

    /// Closes everything; returns the timeline, the log (its text when kept in memory) and
    /// the first error writing it.
    pub fn finish(mut self) -> (Vec<TimelinePoint>, Vec<u8>, Option<String>) {
        while !self.open.is_empty() {
            self.close_first();
        }
        let r = self.log.flush().map_err(|e| e.to_string());
        self.note(r);
        let text = match self.log {
            LogSink::Memory(v) => v,
            LogSink::File(_) => Vec::new(),
        };
        (self.closed, text, self.log_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn seconds_close_in_order_and_the_log_reads_back() {
        let mut iv = Intervals::new(
            LogSink::Memory(Vec::new()),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        iv.record(0, 5, Metric::ScheduleLag, 1500);
        for _ in 0..3 {
            iv.count(0, 5, Count::Messages);
        }
        iv.record(3, 6, Metric::ReadReceipt, 20_000);
        iv.record(5, 6, Metric::ReadReceipt, 10_000);
        // Late: second 0 is closed by now; the count still lands, the sample only in totals.
        iv.count(0, 6, Count::Messages);
        iv.record(0, 6, Metric::ScheduleLag, 9000);
        let (timeline, log, error) = iv.finish();
        assert_eq!(error, None);
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
