//! Folding events: per-message records, histograms, counters, ack economics, and the audit
//! tallies that records are settled into as they age out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

mod live;
mod pushes;
mod settle;
mod table;

use settle::{FaultTrack, SettledIds};

use super::audit::{Kind, Tally};
use super::eventlog::EventWriter;
use super::intervals::{Count, Intervals, LogSink};
use super::metric::Metric;
use super::presence::{Presence, bit};
use super::process::Sampler;
use super::records::IdHash;
use super::{Audience, Event, Settings, Snapshot};
use crate::report::{AckSplit, Audit, Connections, FaultReport, Latency, TimelinePoint};
use crate::sim::behaviour::{Micros, MsgKey};
use crate::transport::Capabilities;

/// Microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
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

/// A conversation ack waiting for its pushes (at the peer, or at one of the reader's other
/// devices).
#[derive(Debug, Clone, Copy)]
struct ChanAck {
    scheduled: Micros,
    at: Micros,
    accepted: Option<Micros>,
    /// Devices it reached.
    devices: u32,
    /// The number (`MsgKey::seq`) of the newest message of the peer it covers, with every
    /// earlier one in the conversation (the reader's behaviour says which it had received).
    upto: Option<u32>,
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
    /// Sends dropped while disconnected with a full outbox.
    pub skipped_disconnected: u64,
    /// Errors by code.
    pub errors: BTreeMap<String, u64>,
    /// `rate_limited` errors.
    pub rate_limited: u64,
    /// Receipt pushes by kind.
    pub receipts: BTreeMap<String, u64>,
    /// Ack economics: (one-to-one, group).
    pub economics: (AckSplit, AckSplit),
    /// The audit (protocol errors are the driver's, added by the caller).
    pub audit: Audit,
    /// Per-second series.
    pub timeline: Vec<TimelinePoint>,
    /// `.hlog` text, when it was kept in memory (else it is on disk already).
    pub hlog: Vec<u8>,
    /// The first error writing the interval log.
    pub hlog_error: Option<String>,
    /// What each injected fault did.
    pub faults: Vec<FaultReport>,
    /// Whole-run histograms (µs) of every measured metric: corrected, and uncorrected where
    /// the metric has a raw view. Late samples included.
    pub histograms: Vec<super::histfile::MetricHistograms>,
    /// The first error writing the event log (shards).
    pub events_error: Option<String>,
}

pub(super) struct State {
    /// Whole-run histograms by metric, made at a metric's first sample (about 190 KB each:
    /// a driver that cannot measure half the metrics does not hold their histograms).
    corrected: [Option<Histogram<u64>>; Metric::ALL.len()],
    raw: [Option<Histogram<u64>>; Metric::ALL.len()],
    /// Per-message records, in send order (settled oldest first).
    msgs: table::Table,
    /// Records by server id.
    by_mid: FxHashMap<IdHash, MsgKey>,
    /// Highest message number each user sent (a push of a higher one was never sent).
    max_seq: Vec<u32>,
    /// Ids of recently settled records (a receipt for one is late).
    settled: SettledIds,
    horizon: Micros,
    /// The run time of the last tick (the end, once the run finishes).
    now: Micros,
    /// When each request left that was still unanswered when its user stopped.
    unanswered: Vec<Micros>,
    /// See [`Judge::grace`].
    grace: Micros,
    /// What the protocol can report.
    capabilities: Capabilities,
    /// 1:1 messages per (sender, peer) whose reading the sender has not learned yet.
    /// (Message numbers, oldest first: the sender is the key's. Two inline: a pair has a few
    /// within the horizon, and one of these is kept per pair that has any.)
    unlearned: FxHashMap<(u32, u32), SmallVec<[u32; 2]>>,
    /// 1:1 channel acks per (reader, peer), waiting for the peer's pushes.
    channels: FxHashMap<(u32, u32), VecDeque<ChanAck>>,
    /// 1:1 channel acks per (reader, other device), waiting for the sync push.
    syncs: FxHashMap<(u32, u8), VecDeque<ChanAck>>,
    audience: Audience,
    presence: Presence,
    tally: Tally,
    intervals: Intervals,
    conn: Connections,
    connect_errors: Vec<String>,
    sent: (u64, u64),
    skipped: u64,
    skipped_disconnected: u64,
    errors: BTreeMap<String, u64>,
    rate_limited: u64,
    receipts: BTreeMap<String, u64>,
    econ: (Econ, Econ),
    faults: Vec<FaultTrack>,
    /// Acks sent, by [`crate::collector::AckKind::index`] (live metrics).
    acks: [u64; crate::collector::AckKind::ALL.len()],
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
    /// A fold of a run whose clock started at `start_time` (the interval log's header).
    pub(super) fn new(start_time: SystemTime, settings: Settings) -> State {
        let mut hlog_error = None;
        let log = match &settings.hlog_path {
            Some(path) => match std::fs::File::create(path) {
                Ok(f) => LogSink::File(std::io::BufWriter::new(f)),
                Err(e) => {
                    hlog_error = Some(format!("{}: {e}", path.display()));
                    LogSink::Memory(Vec::new())
                }
            },
            None => LogSink::Memory(Vec::new()),
        };
        if let Some(e) = hlog_error {
            tracing::warn!("interval log kept in memory: {e}");
        }
        let a = &settings.audience;
        State {
            corrected: Default::default(),
            raw: Default::default(),
            msgs: table::Table::default(),
            by_mid: FxHashMap::default(),
            max_seq: vec![0; a.users as usize],
            settled: SettledIds::default(),
            horizon: settings.horizon.max(1),
            now: 0,
            unanswered: Vec::new(),
            grace: settings.disconnect_grace,
            capabilities: settings.capabilities,
            unlearned: FxHashMap::default(),
            channels: FxHashMap::default(),
            syncs: FxHashMap::default(),
            presence: Presence::new(a.users, a.devices),
            audience: settings.audience,
            tally: Tally::default(),
            intervals: Intervals::new(log, start_time).with_window(settings.live_window_secs),
            conn: Connections::default(),
            connect_errors: Vec::new(),
            sent: (0, 0),
            skipped: 0,
            skipped_disconnected: 0,
            errors: BTreeMap::new(),
            rate_limited: 0,
            receipts: BTreeMap::new(),
            econ: (Econ::default(), Econ::default()),
            faults: settings
                .faults
                .iter()
                .map(|f| FaultTrack {
                    fault: f.clone(),
                    done: 0,
                    recoveries: Vec::new(),
                    lost: 0,
                    lost_in_disconnect: 0,
                })
                .collect(),
            acks: Default::default(),
        }
    }

    /// Records a latency from `from` (corrected) and `raw_from` (uncorrected) to `to`, in
    /// the run totals and in the interval of `to`'s second.
    fn record(&mut self, metric: Metric, to: Micros, from: Micros, raw_from: Option<Micros>) {
        let v = self.record_total(metric, to, from, raw_from);
        let connected = self.presence.connected();
        self.intervals.record(to / 1_000_000, connected, metric, v);
    }

    /// Records in the run totals only; returns the corrected value.
    fn record_total(&mut self, metric: Metric, to: Micros, from: Micros, raw_from: Option<Micros>) -> u64 {
        let v = to.saturating_sub(from).max(1);
        let i = metric.index();
        self.corrected[i].get_or_insert_with(new_histogram).saturating_record(v);
        if let Some(r) = raw_from {
            self.raw[i]
                .get_or_insert_with(new_histogram)
                .saturating_record(to.saturating_sub(r).max(1));
        }
        v
    }

    fn bump(&mut self, at: Micros, what: Count) {
        let connected = self.presence.connected();
        self.intervals.count(at / 1_000_000, connected, what);
    }

    fn count(map: &mut BTreeMap<String, u64>, key: &str) {
        *map.entry(key.to_string()).or_default() += 1;
    }

    pub(super) fn fold(&mut self, e: Event) {
        match e {
            Event::Connected {
                user,
                dev,
                at,
                first,
                reconnect,
            } => {
                self.presence.login(user, dev, at);
                self.conn.achieved += u64::from(first);
                self.conn.peak = self.conn.peak.max(self.presence.connected());
                if let Some(took) = reconnect {
                    self.conn.reconnects += 1;
                    let dropped = at.saturating_sub(took);
                    self.record(Metric::Reconnect, at, dropped, None);
                    let by_fault = self
                        .faults
                        .iter_mut()
                        .find(|f| f.fault.kind != "stall_readers" && f.covers(dropped));
                    if let Some(f) = by_fault {
                        f.recoveries.push(took);
                    }
                }
                let connected = self.presence.connected();
                self.intervals.touch(at / 1_000_000, connected);
            }
            Event::ConnectFailed { error, .. } => {
                self.conn.failed += 1;
                if self.connect_errors.len() < 5 {
                    self.connect_errors.push(error);
                }
            }
            Event::Disconnected {
                user,
                dev,
                at,
                expected,
            } => {
                self.presence.logout(user, dev, at);
                self.conn.dropped += u64::from(!expected);
            }
            Event::Sent {
                key,
                chat,
                conv,
                scheduled,
                at,
                waited,
            } => self.sent(key, chat, conv, scheduled, at, waited),
            Event::Skipped { n, disconnected } => {
                if disconnected {
                    self.skipped_disconnected += n
                } else {
                    self.skipped += n
                }
            }
            Event::Resent { n } => self.conn.resent += n,
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
                scheduled,
                at,
                waited,
            } => {
                if !waited {
                    self.record(Metric::AckLag, at, scheduled, None);
                }
                self.ack_sent(reader, kind, key, conv, scheduled, at)
            }
            Event::Replied {
                user,
                kind,
                key,
                conv,
                answer,
                at,
            } => self.replied(user, kind, key, conv, answer, at),
            Event::StrayReply {
                duplicated, refused, ..
            } => {
                let k = self.tally.kind(Kind::Reply);
                if duplicated {
                    k.duplicated += 1
                } else {
                    k.unexpected += 1
                }
                if let Some(refusal) = refused {
                    Self::count(&mut self.errors, refusal.code);
                }
            }
            Event::Unanswered {
                in_disconnect, left, ..
            } => {
                if in_disconnect {
                    let k = self.tally.kind(Kind::Reply);
                    k.expected += 1;
                    k.lost_in_disconnect += 1;
                } else {
                    self.tally.lost(Kind::Reply);
                    self.unanswered.push(left);
                }
            }
            Event::MessagePush {
                user,
                dev,
                key,
                mid,
                at,
            } => self.message_push(user, dev, key, mid, at),
            Event::Receipt {
                user,
                dev,
                kind,
                mid,
                from,
                count,
                at,
            } => self.receipt(user, dev, kind, mid, from, count, at),
            Event::ChannelPush {
                user, dev, from, at, ..
            } => self.channel_push(user, dev, from, at),
            Event::Statistic { user, counts, at } => {
                Self::count(&mut self.receipts, "statistic");
                for (mid, count) in counts {
                    let id = IdHash::of(&mid);
                    match self.by_mid.get(&id).copied() {
                        Some(key) if key.sender == user => {
                            if let Some(m) = self.msgs.get_mut(&key) {
                                m.group_mut().stat_at = Some(at);
                            }
                            self.group_count(key, count, at);
                        }
                        _ => self.stray(Kind::Statistic, id),
                    }
                }
            }
            Event::ReadUsers {
                key,
                sent,
                done,
                users,
                unknown,
                pages,
                ..
            } => self.read_users(key, sent, done, users, unknown, &pages),
            Event::Fault { index, done, .. } => {
                if let Some(f) = self.faults.get_mut(index as usize) {
                    f.done += u64::from(done);
                }
            }
            Event::Snapshot(_) | Event::Finish(_) => {}
        }
    }

    /// Once a second of run time `now`: the tester's own resources (none when folding a
    /// log), and records past the horizon.
    pub(super) fn tick(&mut self, now: Micros, resources: Option<(f64, f64)>) {
        if let Some((rss, cpu)) = resources {
            let connected = self.presence.connected();
            self.intervals.resources(now / 1_000_000, connected, rss, cpu);
        }
        self.now = self.now.max(now);
        let cutoff = now.saturating_sub(self.horizon);
        self.settled.rotate(now, self.horizon);
        self.settle_before(cutoff);
        self.settle_acks_before(cutoff);
    }

    pub(super) fn snapshot(&mut self, now: Micros) -> Snapshot {
        let last_sec = (now / 1_000_000).saturating_sub(1);
        let p99 = |h: &Option<Histogram<u64>>| match h {
            Some(h) if !h.is_empty() => ms(h.value_at_quantile(0.99)),
            _ => 0.0,
        };
        Snapshot {
            connected: self.presence.connected(),
            messages: self.sent.0 + self.sent.1,
            messages_last_sec: self.intervals.messages(last_sec),
            server_ack_p99: p99(&self.corrected[Metric::ServerAck.index()]),
            read_receipt_p99: p99(&self.corrected[Metric::ReadReceipt.index()]),
            schedule_lag_p99: p99(&self.corrected[Metric::ScheduleLag.index()]),
            errors: self.errors.values().sum(),
            ..self.live_snapshot()
        }
    }

    pub(super) fn finish(mut self) -> Folded {
        self.settle_all();
        let mut latencies = BTreeMap::new();
        let mut histograms = Vec::new();
        for m in Metric::ALL {
            if m.needs().is_some_and(|c| !self.capabilities.has(c)) {
                continue;
            }
            let i = m.index();
            let corrected = self.corrected[i].take().unwrap_or_else(new_histogram);
            let raw = self.raw[i].take().filter(|h| !h.is_empty());
            latencies.insert(m.name().to_string(), latency(&corrected, raw.as_ref()));
            histograms.push((m, corrected, raw));
        }
        let (timeline, hlog, hlog_error) = self.intervals.finish();
        Folded {
            latencies,
            connections: self.conn,
            connect_errors: self.connect_errors,
            sent: self.sent,
            skipped: self.skipped,
            skipped_disconnected: self.skipped_disconnected,
            errors: self.errors,
            rate_limited: self.rate_limited,
            receipts: self.receipts,
            economics: (self.econ.0.split(), self.econ.1.split()),
            audit: self.tally.into_audit(self.capabilities),
            timeline,
            hlog,
            hlog_error,
            faults: self.faults.into_iter().map(FaultTrack::report).collect(),
            histograms,
            events_error: None,
        }
    }
}

/// A metric's summary from its histograms: percentiles come from these and nothing else
/// (a merge adds histograms, never summaries).
pub fn latency(corrected: &Histogram<u64>, raw: Option<&Histogram<u64>>) -> Latency {
    let mut l = summarize(corrected);
    l.uncorrected = raw.filter(|h| !h.is_empty()).map(|h| Box::new(summarize(h)));
    l
}

/// The collector thread's loop.
///
/// It drains the channel, then sleeps, instead of blocking in `recv`: a blocked receiver
/// makes every send wake it with a syscall, which at ~100k events/s costs more CPU than the
/// folding itself (measured with `perf` on `profiles/capacity.toml`). The sleep starts at a
/// millisecond and doubles while the channel stays empty, up to [`IDLE_POLL`], so an idle
/// run costs next to nothing and a busy one is drained every millisecond.
pub(super) fn run(start: Instant, settings: Settings, rx: Receiver<Event>) {
    let log = settings.events_path.as_deref().map(EventWriter::create);
    let log_error = match &log {
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let mut log = log.and_then(Result::ok);
    let mut state = State::new(SystemTime::now() - start.elapsed(), settings);
    let mut sampler = Sampler::new();
    let now = || start.elapsed().as_micros() as Micros;
    let mut next_tick = Instant::now();
    let mut poll = BUSY_POLL;
    let mut fold = |state: &mut State, e: Event| {
        if let Some(log) = &mut log {
            log.write(&e);
        }
        state.fold(e);
    };
    loop {
        let mut folded = 0usize;
        loop {
            match rx.try_recv() {
                Ok(Event::Snapshot(reply)) => {
                    let _ = reply.send(state.snapshot(now()));
                }
                Ok(Event::Finish(reply)) => {
                    // Fold what is still queued (events sent before the finish request).
                    while let Ok(e) = rx.try_recv() {
                        fold(&mut state, e);
                    }
                    state.tick(now(), Some(sampler.sample()));
                    let mut f = state.finish();
                    f.events_error = log_error.or_else(|| log.take().and_then(EventWriter::finish));
                    let _ = reply.send(Box::new(f));
                    return;
                }
                Ok(e) => {
                    fold(&mut state, e);
                    folded += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if Instant::now() >= next_tick {
            state.tick(now(), Some(sampler.sample()));
            next_tick += Duration::from_secs(1);
        }
        poll = if folded > 0 {
            BUSY_POLL
        } else {
            (poll * 2).min(IDLE_POLL)
        };
        std::thread::sleep(poll);
    }
}

/// The collector's sleep while events flow.
const BUSY_POLL: Duration = Duration::from_millis(1);
/// The longest sleep of an idle collector (it bounds how late a snapshot is answered).
const IDLE_POLL: Duration = Duration::from_millis(64);

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_settle;
