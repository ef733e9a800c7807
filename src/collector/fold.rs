//! Folding events: per-message records, histograms, counters, ack economics, and the audit
//! tallies that records are settled into as they age out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use rustc_hash::FxHashMap;

use super::audit::{Kind, Tally};
use super::intervals::{Count, Intervals, LogSink};
use super::metric::Metric;
use super::presence::{Over, Presence};
use super::process::Sampler;
use super::records::{GroupRead, Judge, MsgRec};
use super::{AckKind, Answer, Audience, Event, ReceiptKind, ReqKind, Settings, Snapshot};
use crate::protocol::{ChatType, ErrorCode};
use crate::report::{AckSplit, Audit, Connections, FaultReport, Latency, TimelinePoint};
use crate::sim::behaviour::{Micros, MsgKey};
use crate::sim::faults::Fault;

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
}

/// A reconnect whose drop falls this long after a fault's window is still that fault's.
const FAULT_ATTRIBUTION: Micros = 2_000_000;

/// One fault of the profile and what it did.
#[derive(Debug)]
struct FaultTrack {
    fault: Fault,
    done: u64,
    /// Drop -> logged in again, of the connections it took down.
    recoveries: Vec<Micros>,
}

impl FaultTrack {
    fn report(mut self) -> FaultReport {
        self.recoveries.sort_unstable();
        let n = self.recoveries.len();
        let (p50, max) = if n == 0 {
            (0.0, 0.0)
        } else {
            (ms(self.recoveries[(n - 1) / 2]), ms(self.recoveries[n - 1]))
        };
        FaultReport {
            kind: self.fault.kind.to_string(),
            at_secs: self.fault.at as f64 / 1e6,
            over_secs: self.fault.over as f64 / 1e6,
            planned: self.fault.planned,
            done: self.done,
            recovered: n as u64,
            recovery_p50_ms: p50,
            recovery_max_ms: max,
        }
    }
}

pub(super) struct State {
    start: Instant,
    corrected: [Histogram<u64>; Metric::ALL.len()],
    raw: [Histogram<u64>; Metric::ALL.len()],
    msgs: FxHashMap<MsgKey, MsgRec>,
    /// Messages in send order, for settling the oldest.
    order: VecDeque<(Micros, MsgKey)>,
    by_mid: FxHashMap<u64, MsgKey>,
    /// Highest message number each user sent (a push of a higher one was never sent).
    max_seq: Vec<u64>,
    /// Highest server id among settled records (a receipt for one at or below is late).
    settled_mid: Option<u64>,
    horizon: Micros,
    /// See [`Judge::grace`].
    grace: Micros,
    /// 1:1 messages per (sender, peer) whose reading the sender has not learned yet.
    unlearned: FxHashMap<(u32, u32), VecDeque<MsgKey>>,
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

fn bit(dev: u8) -> u32 {
    1 << (dev % 32)
}

impl State {
    pub(super) fn new(start: Instant, settings: Settings) -> State {
        let n = settings.expected_messages;
        let start_time = SystemTime::now() - start.elapsed();
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
            start,
            corrected: std::array::from_fn(|_| new_histogram()),
            raw: std::array::from_fn(|_| new_histogram()),
            msgs: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            order: VecDeque::with_capacity(n),
            by_mid: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            max_seq: vec![0; a.users as usize],
            settled_mid: None,
            horizon: settings.horizon.max(1),
            grace: settings.disconnect_grace,
            unlearned: FxHashMap::default(),
            channels: FxHashMap::default(),
            syncs: FxHashMap::default(),
            presence: Presence::new(a.users, a.devices),
            audience: settings.audience,
            tally: Tally::default(),
            intervals: Intervals::new(log, start_time),
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
                })
                .collect(),
        }
    }

    fn now(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
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
        self.corrected[metric.index()].saturating_record(v);
        if let Some(r) = raw_from {
            self.raw[metric.index()].saturating_record(to.saturating_sub(r).max(1));
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
                    let by_fault = self.faults.iter_mut().find(|f| {
                        f.fault.kind != "stall_readers"
                            && (f.fault.at..=f.fault.at + f.fault.over + FAULT_ATTRIBUTION).contains(&dropped)
                    });
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
                if let Some(code) = refused {
                    Self::count(&mut self.errors, code.as_str());
                }
            }
            Event::Unanswered { in_disconnect, .. } => {
                if in_disconnect {
                    let k = self.tally.kind(Kind::Reply);
                    k.expected += 1;
                    k.lost_in_disconnect += 1;
                } else {
                    self.tally.lost(Kind::Reply);
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
                user,
                dev,
                from,
                id,
                at,
                ..
            } => self.channel_push(user, dev, from, id, at),
            Event::Statistic { user, counts, at } => {
                Self::count(&mut self.receipts, "statistic");
                for (mid, count) in counts {
                    match self.by_mid.get(&mid).copied() {
                        Some(key) if key.sender == user => {
                            if let Some(m) = self.msgs.get_mut(&key) {
                                m.stat_at = Some(at);
                            }
                            self.group_count(key, count, at);
                        }
                        _ => self.stray(Kind::Statistic, mid),
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

    fn sent(&mut self, key: MsgKey, chat: ChatType, conv: u32, scheduled: Micros, at: Micros, waited: bool) {
        let group = chat == ChatType::Group;
        self.msgs.insert(
            key,
            MsgRec {
                scheduled,
                sent: at,
                group,
                conv,
                ..Default::default()
            },
        );
        self.order.push_back((at, key));
        if let Some(m) = self.max_seq.get_mut(key.sender as usize) {
            *m = (*m).max(key.seq);
        }
        if group {
            self.sent.1 += 1
        } else {
            // 1:1 messages wait here until the sender learns they were read.
            self.unlearned.entry((key.sender, conv)).or_default().push_back(key);
            self.sent.0 += 1
        }
        if !waited {
            self.record(Metric::ScheduleLag, at, scheduled, None);
        }
        self.bump(at, Count::Messages);
    }

    fn ack_sent(&mut self, reader: u32, kind: AckKind, key: Option<MsgKey>, conv: u32, scheduled: Micros, at: Micros) {
        let m = key.and_then(|k| self.msgs.get_mut(&k));
        match kind {
            AckKind::Delivery => {
                if let Some(m) = m {
                    m.delivery.sent = true;
                }
                return;
            }
            AckKind::Read => {
                self.econ.0.read_acks += 1;
                if let Some(m) = m {
                    m.read.sent = true;
                    m.read_scheduled.get_or_insert(scheduled);
                    m.read_sent_at.get_or_insert(at);
                }
            }
            AckKind::GroupRead => {
                self.econ.1.read_acks += 1;
                if let Some(m) = m {
                    m.group_reads.push(GroupRead {
                        reader,
                        scheduled,
                        sent: at,
                        accepted: None,
                        pushed: 0,
                        repeats: 0,
                    });
                }
            }
            AckKind::Channel => {
                self.econ.0.channel_acks += 1;
                let ack = ChanAck {
                    scheduled,
                    at,
                    accepted: None,
                    devices: 0,
                };
                self.channels.entry((reader, conv)).or_default().push_back(ack);
                // The reader's other devices get the ack too (multi-device sync); acks leave
                // from device 0.
                for dev in 1..self.presence.per_user() {
                    if self.presence.over(reader, dev, at) == Over::On {
                        self.syncs.entry((reader, dev)).or_default().push_back(ack);
                    }
                }
            }
            AckKind::GroupChannel => self.econ.1.channel_acks += 1,
        }
        self.bump(at, Count::Acks);
    }

    fn replied(&mut self, user: u32, kind: ReqKind, key: Option<MsgKey>, conv: u32, answer: Answer, at: Micros) {
        self.tally.ok(Kind::Reply);
        let accepted = match answer {
            Answer::Refused(code) => {
                self.tally.refused(code.as_str());
                Self::count(&mut self.errors, code.as_str());
                if code == ErrorCode::RateLimited {
                    self.rate_limited += 1;
                }
                self.bump(at, Count::Errors);
                return;
            }
            Answer::Accepted { mid, group_ack, .. } => Some((mid, group_ack)),
            Answer::Ok => None,
        };
        match kind {
            ReqKind::Send => {
                let (Some(key), Some((mid, group_ack))) = (key, accepted) else {
                    return;
                };
                self.accepted(key, mid, group_ack, at);
            }
            ReqKind::Ack(AckKind::Delivery) | ReqKind::Ack(AckKind::Read) => {
                if let Some(m) = key.and_then(|k| self.msgs.get_mut(&k)) {
                    let r = if kind == ReqKind::Ack(AckKind::Delivery) {
                        &mut m.delivery
                    } else {
                        &mut m.read
                    };
                    r.accepted.get_or_insert(at);
                }
            }
            ReqKind::Ack(AckKind::GroupRead) => {
                let Some(key) = key else { return };
                let sender_off = self.presence.user_off(key.sender, at);
                let Some(m) = self.msgs.get_mut(&key) else { return };
                if let Some(r) = m
                    .group_reads
                    .iter_mut()
                    .find(|r| r.reader == user && r.accepted.is_none())
                {
                    r.accepted = Some(at);
                    if sender_off && self.presence.user_off(key.sender, r.sent) {
                        m.stat_due.get_or_insert(at);
                    }
                }
            }
            ReqKind::Ack(AckKind::Channel) => {
                let mark = |q: Option<&mut VecDeque<ChanAck>>| {
                    if let Some(a) = q.and_then(|q| q.iter_mut().find(|a| a.accepted.is_none())) {
                        a.accepted = Some(at);
                    }
                };
                mark(self.channels.get_mut(&(user, conv)));
                for dev in 1..self.presence.per_user() {
                    mark(self.syncs.get_mut(&(user, dev)));
                }
            }
            _ => {}
        }
    }

    fn accepted(&mut self, key: MsgKey, mid: u64, group_ack: Option<bool>, at: Micros) {
        let Some(m) = self.msgs.get_mut(&key) else { return };
        if m.accepted.is_some() {
            return;
        }
        m.accepted = Some(at);
        m.mid = mid;
        m.receipts = group_ack == Some(true);
        let (scheduled, sent) = (m.scheduled, m.sent);
        if m.group {
            let members = self.audience.groups.get(m.conv as usize).cloned().unwrap_or_default();
            m.route(members.into_iter().filter(|u| *u != key.sender), &self.presence);
        } else {
            m.route(std::iter::once(m.conv), &self.presence);
        }
        self.by_mid.insert(mid, key);
        self.record(Metric::ServerAck, at, scheduled, Some(sent));
    }

    /// A push naming a message or id the run does not hold: late when its record was settled
    /// already, else unexpected.
    fn stray(&mut self, kind: Kind, mid: u64) {
        let k = self.tally.kind(kind);
        if self.settled_mid.is_some_and(|s| mid <= s) {
            k.late += 1;
        } else {
            k.unexpected += 1;
        }
    }

    fn message_push(&mut self, user: u32, dev: u8, key: Option<MsgKey>, mid: u64, at: Micros) {
        let Some(key) = key else {
            self.tally.kind(Kind::Message).unexpected += 1;
            return;
        };
        let Some(m) = self.msgs.get_mut(&key) else {
            let sent = self.max_seq.get(key.sender as usize).is_some_and(|s| key.seq <= *s);
            let k = self.tally.kind(Kind::Message);
            if sent {
                k.late += 1
            } else {
                k.unexpected += 1
            }
            return;
        };
        if m.mid == 0 {
            // Its `received` has not come (or never will): the push tells the id.
            m.mid = mid;
            self.by_mid.insert(mid, key);
        }
        if !m.arrive(user, dev) {
            self.tally.kind(Kind::Message).unexpected += 1;
            return;
        }
        let (scheduled, sent) = (m.scheduled, m.sent);
        let metric = if self.presence.over(user, dev, sent) == Over::On {
            Metric::Message
        } else {
            Metric::MessageOffline
        };
        self.record(metric, at, scheduled, Some(sent));
    }

    #[allow(clippy::too_many_arguments)]
    fn receipt(&mut self, user: u32, dev: u8, kind: ReceiptKind, mid: u64, from: u32, count: Option<u64>, at: Micros) {
        self.bump(at, Count::Receipts);
        let (name, audit) = match kind {
            ReceiptKind::Delivery => ("delivery", Kind::Delivery),
            ReceiptKind::Read => ("read", Kind::Read),
            ReceiptKind::GroupRead => ("group_read", Kind::GroupRead),
        };
        Self::count(&mut self.receipts, name);
        let key = match self.by_mid.get(&mid) {
            Some(k) if k.sender == user => *k,
            _ => return self.stray(audit, mid),
        };
        let Some(m) = self.msgs.get_mut(&key) else {
            return self.stray(audit, mid);
        };
        let (scheduled, sent) = (m.scheduled, m.sent);
        match kind {
            ReceiptKind::Delivery => {
                if m.delivery.push(dev) {
                    self.record(Metric::Delivery, at, scheduled, Some(sent));
                }
            }
            ReceiptKind::Read => {
                if m.read.push(dev) {
                    if let Some(decided) = m.read_scheduled {
                        let raw = m.read_sent_at;
                        self.record(Metric::ReadReceipt, at, decided, raw);
                    }
                    self.learn_read(key, at);
                }
            }
            ReceiptKind::GroupRead => {
                let mut first_from_reader = None;
                if let Some(r) = m.group_reads.iter_mut().find(|r| r.reader == from) {
                    if r.pushed == 0 {
                        first_from_reader = Some((r.scheduled, r.sent));
                    }
                    if r.pushed & bit(dev) != 0 {
                        r.repeats += 1;
                    }
                    r.pushed |= bit(dev);
                }
                if let Some((decided, handed)) = first_from_reader {
                    self.record(Metric::ReadReceipt, at, decided, Some(handed));
                }
                self.group_count(key, count.unwrap_or(0), at);
            }
        }
    }

    fn group_count(&mut self, key: MsgKey, count: u64, at: Micros) {
        let Some(m) = self.msgs.get_mut(&key) else { return };
        if count > m.group_max {
            m.group_max = count;
            m.group_max_at = at;
        }
        if !m.group_first && count > 0 {
            m.group_first = true;
            let (scheduled, sent) = (m.scheduled, m.sent);
            self.record(Metric::GroupReadFirst, at, scheduled, Some(sent));
        }
    }

    fn learn_read(&mut self, key: MsgKey, at: Micros) {
        let Some(m) = self.msgs.get_mut(&key) else { return };
        if !m.read_learned {
            m.read_learned = true;
            let (scheduled, sent) = (m.scheduled, m.sent);
            self.record(Metric::Read, at, scheduled, Some(sent));
        }
    }

    fn channel_push(&mut self, user: u32, dev: u8, from: u32, id: u64, at: Micros) {
        Self::count(&mut self.receipts, "channel");
        self.bump(at, Count::Receipts);
        if from == user {
            // The reader's own ack, synced to its other device.
            match self.syncs.get_mut(&(user, dev)).and_then(|q| q.pop_front()) {
                Some(a) => {
                    self.tally.ok(Kind::ChannelSync);
                    self.record(Metric::ChannelSync, at, a.scheduled, Some(a.at));
                }
                None => self.tally.kind(Kind::ChannelSync).unexpected += 1,
            }
            return;
        }
        let hit = self.channels.get_mut(&(from, user)).and_then(|q| {
            let a = q.iter_mut().find(|a| a.devices & bit(dev) == 0)?;
            let first = a.devices == 0;
            a.devices |= bit(dev);
            Some((first, *a))
        });
        match hit {
            Some((true, a)) => self.record(Metric::Channel, at, a.scheduled, Some(a.at)),
            Some((false, _)) => {}
            None => self.tally.kind(Kind::Channel).unexpected += 1,
        }
        // Acks that every online device of the peer has seen are done.
        let online: Vec<u8> = (0..self.presence.per_user())
            .filter(|d| self.presence.over(user, *d, at) == Over::On)
            .collect();
        if let Some(q) = self.channels.get_mut(&(from, user)) {
            while q
                .front()
                .is_some_and(|a| a.devices != 0 && online.iter().all(|d| a.devices & bit(*d) != 0))
            {
                q.pop_front();
                self.tally.ok(Kind::Channel);
            }
        }
        // The ack covers every message `user` sent to `from` before it.
        let mut covered = Vec::new();
        if let Some(q) = self.unlearned.get_mut(&(user, from)) {
            while let Some(&k) = q.front() {
                match self.msgs.get(&k) {
                    Some(m) if m.mid == 0 || m.mid >= id => break,
                    Some(_) => covered.push(k),
                    None => {}
                }
                q.pop_front();
            }
        }
        for k in covered {
            self.learn_read(k, at);
        }
    }

    /// Audits a reader list: it must hold every reader whose read was accepted before the
    /// query left, and nobody whose read had not left before the last page came back.
    fn read_users(&mut self, key: MsgKey, sent: Micros, done: Micros, users: Vec<u32>, unknown: u32, pages: &[Micros]) {
        for p in pages {
            self.record(Metric::ReadUsersPage, done, done.saturating_sub(*p), None);
        }
        self.record(Metric::ReadUsers, done, sent, None);
        let Some(m) = self.msgs.get(&key) else {
            self.tally.kind(Kind::ReadUsers).late += 1;
            return;
        };
        let mut listed = users.clone();
        listed.sort_unstable();
        let before = listed.len();
        listed.dedup();
        let k = self.tally.kind(Kind::ReadUsers);
        k.duplicated += (before - listed.len()) as u64;
        k.unexpected += u64::from(unknown);
        for r in &m.group_reads {
            let on_list = listed.binary_search(&r.reader).is_ok();
            if r.accepted.is_some_and(|a| a < sent) {
                k.expected += 1;
                if on_list {
                    k.arrived += 1;
                } else {
                    k.lost += 1;
                }
            }
        }
        let allowed = |u: &u32| m.group_reads.iter().any(|r| r.reader == *u && r.sent < done);
        k.unexpected += listed.iter().filter(|u| !allowed(u)).count() as u64;
    }

    /// Settles every record sent before `cutoff` into the audit and drops it.
    fn settle_before(&mut self, cutoff: Micros) {
        while let Some(&(sent, key)) = self.order.front() {
            if sent >= cutoff {
                break;
            }
            self.order.pop_front();
            let Some(m) = self.msgs.remove(&key) else { continue };
            if m.mid != 0 {
                self.by_mid.remove(&m.mid);
                self.settled_mid = Some(self.settled_mid.map_or(m.mid, |s| s.max(m.mid)));
            }
            let accepted_reads = m.group_reads.iter().filter(|r| r.accepted.is_some()).count() as u64;
            if m.receipts && accepted_reads > 0 && m.group_max >= accepted_reads {
                // Known only now, long after its second closed: totals only.
                self.record_total(Metric::GroupReadAll, m.group_max_at, m.scheduled, Some(m.sent));
            }
            let judge = Judge {
                presence: &self.presence,
                grace: self.grace,
            };
            m.settle(key.sender, &judge, &mut self.tally);
            if let (false, Some(q)) = (m.group, self.unlearned.get_mut(&(key.sender, m.conv))) {
                while q.front().is_some_and(|k| !self.msgs.contains_key(k)) {
                    q.pop_front();
                }
                if q.is_empty() {
                    self.unlearned.remove(&(key.sender, m.conv));
                }
            }
        }
    }

    /// Settles conversation acks sent before `cutoff`.
    fn settle_acks_before(&mut self, cutoff: Micros) {
        let judge = Judge {
            presence: &self.presence,
            grace: self.grace,
        };
        let tally = &mut self.tally;
        for ((_, peer), q) in self.channels.iter_mut() {
            while q.front().is_some_and(|a| a.at < cutoff) {
                let a = q.pop_front().expect("checked");
                settle_ack(a, *peer, Kind::Channel, &judge, tally);
            }
        }
        self.channels.retain(|_, q| !q.is_empty());
        for ((reader, _), q) in self.syncs.iter_mut() {
            while q.front().is_some_and(|a| a.at < cutoff) {
                let a = q.pop_front().expect("checked");
                settle_ack(a, *reader, Kind::ChannelSync, &judge, tally);
            }
        }
        self.syncs.retain(|_, q| !q.is_empty());
    }

    /// Once a second: the tester's own resources, and records past the horizon.
    pub(super) fn tick(&mut self, sampler: &mut Sampler) {
        let now = self.now();
        let (rss, cpu) = sampler.sample();
        let connected = self.presence.connected();
        self.intervals.resources(now / 1_000_000, connected, rss, cpu);
        let cutoff = now.saturating_sub(self.horizon);
        self.settle_before(cutoff);
        self.settle_acks_before(cutoff);
    }

    fn snapshot(&mut self) -> Snapshot {
        let last_sec = (self.now() / 1_000_000).saturating_sub(1);
        let p99 = |h: &Histogram<u64>| {
            if h.is_empty() {
                0.0
            } else {
                ms(h.value_at_quantile(0.99))
            }
        };
        Snapshot {
            connected: self.presence.connected(),
            messages: self.sent.0 + self.sent.1,
            messages_last_sec: self.intervals.messages(last_sec),
            server_ack_p99: p99(&self.corrected[Metric::ServerAck.index()]),
            read_receipt_p99: p99(&self.corrected[Metric::ReadReceipt.index()]),
            schedule_lag_p99: p99(&self.corrected[Metric::ScheduleLag.index()]),
            errors: self.errors.values().sum(),
        }
    }

    pub(super) fn finish(mut self) -> Folded {
        self.settle_before(Micros::MAX);
        self.settle_acks_before(Micros::MAX);
        let mut latencies = BTreeMap::new();
        for m in Metric::ALL {
            let i = m.index();
            let mut l = summarize(&self.corrected[i]);
            if !self.raw[i].is_empty() {
                l.uncorrected = Some(Box::new(summarize(&self.raw[i])));
            }
            latencies.insert(m.name().to_string(), l);
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
            audit: self.tally.into_audit(),
            timeline,
            hlog,
            hlog_error,
            faults: self.faults.into_iter().map(FaultTrack::report).collect(),
        }
    }
}

/// One conversation ack at settlement: reached some device, or judged missing.
fn settle_ack(a: ChanAck, user: u32, kind: Kind, judge: &Judge, tally: &mut Tally) {
    match a.accepted {
        _ if a.devices != 0 => tally.ok(kind),
        Some(at) => judge.missing(kind, user, at, tally),
        None => {}
    }
}

/// The collector thread's loop.
///
/// It drains the channel, then sleeps, instead of blocking in `recv`: a blocked receiver
/// makes every send wake it with a syscall, which at ~100k events/s costs more CPU than the
/// folding itself (measured with `perf` on `profiles/capacity.toml`). The sleep starts at a
/// millisecond and doubles while the channel stays empty, up to [`IDLE_POLL`], so an idle
/// run costs next to nothing and a busy one is drained every millisecond.
pub(super) fn run(start: Instant, settings: Settings, rx: Receiver<Event>) {
    let mut state = State::new(start, settings);
    let mut sampler = Sampler::new();
    let mut next_tick = Instant::now();
    let mut poll = BUSY_POLL;
    loop {
        let mut folded = 0usize;
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
                    state.tick(&mut sampler);
                    let _ = reply.send(Box::new(state.finish()));
                    return;
                }
                Ok(e) => {
                    state.fold(e);
                    folded += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if Instant::now() >= next_tick {
            state.tick(&mut sampler);
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
#[path = "tests.rs"]
mod tests;
