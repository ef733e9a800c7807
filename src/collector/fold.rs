//! Folding events: per-message records, histograms, counters, ack economics and the audit.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Instant, SystemTime};

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

use super::intervals::{Count, Intervals};
use super::{AckKind, Event, ReceiptKind, Snapshot};
use crate::protocol::ChatType;
use crate::report::{AckSplit, Audit, Connections, Latency, TimelinePoint};
use crate::sim::behaviour::MsgKey;

/// Latency metrics, in histogram index order.
pub const METRICS: [&str; 8] = crate::report::LATENCY_METRICS;
const SERVER_ACK: usize = 0;
const DELIVERY: usize = 1;
const READ_RECEIPT: usize = 2;
const READ: usize = 3;
const CHANNEL: usize = 4;
const GROUP_FIRST: usize = 5;
const GROUP_ALL: usize = 6;
const LAG: usize = 7;

/// Microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// What one message went through. Times are µs since the run start.
#[derive(Debug, Default)]
pub(super) struct MsgRec {
    pub(super) scheduled: u64,
    pub(super) sent: u64,
    pub(super) mid: u64,
    pub(super) receipts: bool,
    pub(super) read_ack_at: Option<u64>,
    pub(super) delivery_acked: bool,
    pub(super) read_acked: bool,
    pub(super) read_learned: bool,
    pub(super) delivery_pushes: u32,
    pub(super) read_pushes: u32,
    pub(super) group_acks: u32,
    pub(super) group_pushes: u32,
    pub(super) group_max: u64,
    pub(super) group_first: bool,
    pub(super) group_max_at: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Econ {
    read: u64,
    read_acks: u64,
    channel_acks: u64,
}

impl Econ {
    fn split(self) -> AckSplit {
        let acks = self.read_acks + self.channel_acks;
        let per = if self.read == 0 {
            0.0
        } else {
            acks as f64 / self.read as f64
        };
        AckSplit {
            messages_read: self.read,
            read_acks: self.read_acks,
            channel_acks: self.channel_acks,
            acks_per_read: per,
            baseline_acks: self.read,
            saving_pct: if self.read == 0 { 0.0 } else { 100.0 * (1.0 - per) },
        }
    }
}

/// The folded result of a run, ready for the report.
#[derive(Debug, Default)]
pub struct Folded {
    /// Latencies by metric name, ms.
    pub latencies: BTreeMap<String, Latency>,
    /// Connection counts.
    pub connections: Connections,
    /// First few connection errors, for the warnings.
    pub connect_errors: Vec<String>,
    /// Messages sent (1:1, group).
    pub sent: (u64, u64),
    /// Sends skipped while offline.
    pub skipped: u64,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
    /// `rate_limited` errors.
    pub rate_limited: u64,
    /// Receipt pushes by kind.
    pub receipts: BTreeMap<String, u64>,
    /// Ack economics: (one-to-one, group).
    pub economics: (AckSplit, AckSplit),
    /// The audit.
    pub audit: Audit,
    /// Per-second series.
    pub timeline: Vec<TimelinePoint>,
    /// `.hlog` text.
    pub hlog: Vec<u8>,
}

pub(super) struct State {
    start: Instant,
    start_time: SystemTime,
    corrected: [Histogram<u64>; METRICS.len()],
    raw: [Histogram<u64>; METRICS.len()],
    pub(super) msgs: Vec<MsgRec>,
    by_key: FxHashMap<MsgKey, u32>,
    by_mid: FxHashMap<u64, u32>,
    /// 1:1 messages per (sender, peer) whose reading the sender has not learned yet.
    unlearned: FxHashMap<(u32, u32), VecDeque<u32>>,
    /// Group read acks in flight: (message, reader) -> when sent.
    group_acks: FxHashMap<(u32, u32), u64>,
    /// 1:1 channel acks in flight per (reader, peer): when sent.
    channels: FxHashMap<(u32, u32), VecDeque<u64>>,
    intervals: Intervals,
    connected: u64,
    conn: Connections,
    connect_errors: Vec<String>,
    sent: (u64, u64),
    skipped: u64,
    errors: BTreeMap<String, u64>,
    rate_limited: u64,
    receipts: BTreeMap<String, u64>,
    econ: (Econ, Econ),
    pub(super) unexpected: AuditKinds,
    pub(super) channel_arrived: u64,
    pub(super) channel_expected: u64,
}

/// Unexpected receipts by kind (no matching ack or message).
#[derive(Default)]
pub(super) struct AuditKinds {
    pub(super) delivery: u64,
    pub(super) read: u64,
    pub(super) group_read: u64,
    pub(super) channel: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn summarize(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let curve = [
        0.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
    ]
    .iter()
    .map(|p| (*p, ms(h.value_at_percentile(*p))))
    .collect();
    Latency {
        count: h.len(),
        min: ms(h.min()),
        mean: h.mean() / 1000.0,
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        curve,
        uncorrected: None,
    }
}

impl State {
    fn new(start: Instant, expected_messages: usize) -> State {
        let n = expected_messages;
        State {
            start,
            start_time: SystemTime::now() - start.elapsed(),
            corrected: std::array::from_fn(|_| new_histogram()),
            raw: std::array::from_fn(|_| new_histogram()),
            msgs: Vec::with_capacity(n),
            by_key: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            by_mid: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            unlearned: FxHashMap::default(),
            group_acks: FxHashMap::default(),
            channels: FxHashMap::default(),
            intervals: Intervals::default(),
            connected: 0,
            conn: Connections::default(),
            connect_errors: Vec::new(),
            sent: (0, 0),
            skipped: 0,
            errors: BTreeMap::new(),
            rate_limited: 0,
            receipts: BTreeMap::new(),
            econ: (Econ::default(), Econ::default()),
            unexpected: AuditKinds::default(),
            channel_arrived: 0,
            channel_expected: 0,
        }
    }

    fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64
    }

    /// Records a latency from `from` (corrected) and `raw_from` (uncorrected) to `to`, in
    /// the run totals and in the interval of `to`'s second.
    fn record(&mut self, metric: usize, to: u64, from: u64, raw_from: Option<u64>) {
        let v = self.record_total(metric, to, from, raw_from);
        self.intervals.record(to / 1_000_000, self.connected, metric, v);
    }

    /// Records in the run totals only; returns the corrected value.
    fn record_total(&mut self, metric: usize, to: u64, from: u64, raw_from: Option<u64>) -> u64 {
        let v = to.saturating_sub(from).max(1);
        self.corrected[metric].saturating_record(v);
        if let Some(r) = raw_from {
            self.raw[metric].saturating_record(to.saturating_sub(r).max(1));
        }
        v
    }

    fn bump(&mut self, at: u64, what: Count) {
        self.intervals.count(at / 1_000_000, self.connected, what);
    }

    fn count(map: &mut BTreeMap<String, u64>, key: &str) {
        *map.entry(key.to_string()).or_default() += 1;
    }

    fn fold(&mut self, e: Event) {
        match e {
            Event::Connected { at, first, .. } => {
                self.connected += 1;
                self.conn.achieved += u64::from(first);
                self.conn.peak = self.conn.peak.max(self.connected);
                let at = self.us(at);
                self.intervals.touch(at / 1_000_000, self.connected);
            }
            Event::ConnectFailed { error, .. } => {
                self.conn.failed += 1;
                if self.connect_errors.len() < 5 {
                    self.connect_errors.push(error);
                }
            }
            Event::Disconnected { expected, .. } => {
                self.connected = self.connected.saturating_sub(1);
                self.conn.dropped += u64::from(!expected);
            }
            Event::Sent {
                key,
                chat,
                conv,
                scheduled,
                at,
                waited_login,
            } => self.sent(key, chat, conv, scheduled, at, waited_login),
            Event::Skipped(n) => self.skipped += n,
            Event::Accepted {
                key,
                mid,
                at,
                group_ack,
            } => {
                let at = self.us(at);
                let Some(&i) = self.by_key.get(&key) else { return };
                let m = &mut self.msgs[i as usize];
                m.mid = mid;
                m.receipts = group_ack == Some(true);
                let (scheduled, sent) = (m.scheduled, m.sent);
                self.by_mid.insert(mid, i);
                self.record(SERVER_ACK, at, scheduled, Some(sent));
            }
            Event::Read { group } => {
                if group {
                    self.econ.1.read += 1
                } else {
                    self.econ.0.read += 1
                }
            }
            Event::AckSent {
                reader,
                kind,
                key,
                conv,
                at,
            } => self.ack_sent(reader, kind, key, conv, self.us(at)),
            Event::Receipt {
                kind,
                mid,
                from,
                count,
                at,
                ..
            } => self.receipt(kind, mid, from, count, self.us(at)),
            Event::ChannelPush { user, from, id, at } => self.channel_push(user, from, id, self.us(at)),
            Event::Statistic { counts, at, .. } => {
                let at = self.us(at);
                Self::count(&mut self.receipts, "statistic");
                for (mid, count) in counts {
                    self.group_count(mid, count, at);
                }
            }
            Event::Error { code, at, .. } => {
                Self::count(&mut self.errors, code.as_str());
                if code == crate::protocol::ErrorCode::RateLimited {
                    self.rate_limited += 1;
                }
                let at = self.us(at);
                self.bump(at, Count::Errors);
            }
            Event::Snapshot(_) | Event::Finish(_) => {}
        }
    }

    fn sent(&mut self, key: MsgKey, chat: ChatType, conv: u32, scheduled: Instant, at: Instant, waited_login: bool) {
        let (scheduled, at) = (self.us(scheduled), self.us(at));
        let group = chat == ChatType::Group;
        let i = self.msgs.len() as u32;
        self.msgs.push(MsgRec {
            scheduled,
            sent: at,
            ..Default::default()
        });
        self.by_key.insert(key, i);
        if !group {
            // 1:1 messages wait here until the sender learns they were read.
            self.unlearned.entry((key.sender, conv)).or_default().push_back(i);
        }
        if group {
            self.sent.1 += 1
        } else {
            self.sent.0 += 1
        }
        if !waited_login {
            self.record(LAG, at, scheduled, None);
        }
        self.bump(at, Count::Messages);
    }

    fn ack_sent(&mut self, reader: u32, kind: AckKind, key: Option<MsgKey>, conv: u32, at: u64) {
        let idx = key.and_then(|k| self.by_key.get(&k).copied());
        match kind {
            AckKind::Delivery => {
                if let Some(i) = idx {
                    self.msgs[i as usize].delivery_acked = true;
                }
                return;
            }
            AckKind::Read => {
                self.econ.0.read_acks += 1;
                if let Some(i) = idx {
                    let m = &mut self.msgs[i as usize];
                    m.read_acked = true;
                    m.read_ack_at.get_or_insert(at);
                }
            }
            AckKind::GroupRead => {
                self.econ.1.read_acks += 1;
                if let Some(i) = idx {
                    self.msgs[i as usize].group_acks += 1;
                    self.group_acks.insert((i, reader), at);
                }
            }
            AckKind::Channel => {
                self.econ.0.channel_acks += 1;
                self.channel_expected += 1;
                self.channels.entry((reader, conv)).or_default().push_back(at);
            }
            AckKind::GroupChannel => self.econ.1.channel_acks += 1,
        }
        self.bump(at, Count::Acks);
    }

    fn receipt(&mut self, kind: ReceiptKind, mid: u64, from: u32, count: Option<u64>, at: u64) {
        self.bump(at, Count::Receipts);
        let name = match kind {
            ReceiptKind::Delivery => "delivery",
            ReceiptKind::Read => "read",
            ReceiptKind::GroupRead => "group_read",
        };
        Self::count(&mut self.receipts, name);
        let Some(&i) = self.by_mid.get(&mid) else {
            match kind {
                ReceiptKind::Delivery => self.unexpected.delivery += 1,
                ReceiptKind::Read => self.unexpected.read += 1,
                ReceiptKind::GroupRead => self.unexpected.group_read += 1,
            }
            return;
        };
        let m = &mut self.msgs[i as usize];
        let (scheduled, sent) = (m.scheduled, m.sent);
        match kind {
            ReceiptKind::Delivery => {
                m.delivery_pushes += 1;
                if m.delivery_pushes == 1 {
                    self.record(DELIVERY, at, scheduled, Some(sent));
                }
            }
            ReceiptKind::Read => {
                m.read_pushes += 1;
                if m.read_pushes == 1 {
                    if let Some(acked) = m.read_ack_at {
                        self.record(READ_RECEIPT, at, acked, None);
                    }
                    self.learn_read(i, at);
                }
            }
            ReceiptKind::GroupRead => {
                m.group_pushes += 1;
                if let Some(acked) = self.group_acks.remove(&(i, from)) {
                    self.record(READ_RECEIPT, at, acked, None);
                }
                self.group_count(mid, count.unwrap_or(0), at);
            }
        }
    }

    fn group_count(&mut self, mid: u64, count: u64, at: u64) {
        let Some(&i) = self.by_mid.get(&mid) else {
            self.unexpected.group_read += 1;
            return;
        };
        let m = &mut self.msgs[i as usize];
        if count > m.group_max {
            m.group_max = count;
            m.group_max_at = at;
        }
        if !m.group_first && count > 0 {
            m.group_first = true;
            let (scheduled, sent) = (m.scheduled, m.sent);
            self.record(GROUP_FIRST, at, scheduled, Some(sent));
        }
    }

    fn learn_read(&mut self, i: u32, at: u64) {
        let m = &mut self.msgs[i as usize];
        if !m.read_learned {
            m.read_learned = true;
            let (scheduled, sent) = (m.scheduled, m.sent);
            self.record(READ, at, scheduled, Some(sent));
        }
    }

    fn channel_push(&mut self, user: u32, from: u32, id: u64, at: u64) {
        Self::count(&mut self.receipts, "channel");
        self.bump(at, Count::Receipts);
        match self.channels.get_mut(&(from, user)).and_then(|q| q.pop_front()) {
            Some(sent) => {
                self.channel_arrived += 1;
                self.record(CHANNEL, at, sent, None);
            }
            None => self.unexpected.channel += 1,
        }
        // The ack covers every message `user` sent to `from` before it.
        let mut covered = Vec::new();
        if let Some(q) = self.unlearned.get_mut(&(user, from)) {
            while let Some(&i) = q.front() {
                let m = &self.msgs[i as usize];
                if m.mid == 0 || m.mid >= id {
                    break;
                }
                q.pop_front();
                covered.push(i);
            }
        }
        for i in covered {
            self.learn_read(i, at);
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let last_sec = (self.us(Instant::now()) / 1_000_000).saturating_sub(1);
        let p99 = |h: &Histogram<u64>| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(0.99))
            }
        };
        Snapshot {
            connected: self.connected,
            messages: self.sent.0 + self.sent.1,
            messages_last_sec: self.intervals.messages(last_sec),
            server_ack_p99: p99(&self.corrected[SERVER_ACK]),
            read_receipt_p99: p99(&self.corrected[READ_RECEIPT]),
            schedule_lag_p99: p99(&self.corrected[LAG]),
            errors: self.errors.values().sum(),
        }
    }

    fn finish(mut self) -> Folded {
        for i in 0..self.msgs.len() {
            let m = &self.msgs[i];
            if m.receipts && m.group_acks > 0 && m.group_max >= u64::from(m.group_acks) {
                let (to, scheduled, sent) = (m.group_max_at, m.scheduled, m.sent);
                // Known only now, long after its second closed: totals only.
                self.record_total(GROUP_ALL, to, scheduled, Some(sent));
            }
        }
        let audit = self.audit();
        let mut latencies = BTreeMap::new();
        for (i, name) in METRICS.iter().enumerate() {
            let mut l = summarize(&self.corrected[i]);
            if !self.raw[i].is_empty() {
                l.uncorrected = Some(Box::new(summarize(&self.raw[i])));
            }
            latencies.insert(name.to_string(), l);
        }
        let (timeline, hlog) = self.intervals.finish(self.start_time);
        Folded {
            latencies,
            connections: self.conn,
            connect_errors: self.connect_errors,
            sent: self.sent,
            skipped: self.skipped,
            errors: self.errors,
            rate_limited: self.rate_limited,
            receipts: self.receipts,
            economics: (self.econ.0.split(), self.econ.1.split()),
            audit,
            timeline,
            hlog,
        }
    }
}

/// The collector thread's loop.
///
/// It drains the channel, then sleeps a millisecond, instead of blocking in `recv`: a
/// blocked receiver makes every send wake it with a syscall, which at ~100k events/s costs
/// more CPU than the folding itself (measured with `perf` on `profiles/capacity.toml`).
pub(super) fn run(start: Instant, expected_messages: usize, rx: Receiver<Event>) {
    let mut state = State::new(start, expected_messages);
    loop {
        loop {
            match rx.try_recv() {
                Ok(Event::Snapshot(reply)) => {
                    let _ = reply.send(state.snapshot());
                }
                Ok(Event::Finish(reply)) => {
                    // Fold what is still queued (events sent before the finish request).
                    while let Ok(e) = rx.try_recv() {
                        state.fold(e);
                    }
                    let _ = reply.send(Box::new(state.finish()));
                    return;
                }
                Ok(e) => state.fold(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        std::thread::sleep(POLL);
    }
}

/// How long the collector sleeps when its channel is empty.
const POLL: std::time::Duration = std::time::Duration::from_millis(1);

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
