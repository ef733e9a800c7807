//! Settling: records old enough that nothing more is due are judged into the audit and
//! dropped (memory stays flat), conversation acks likewise, and faults are summed up.

use hdrhistogram::Histogram;
use rustc_hash::FxHashSet;

use super::{ChanAck, State, ms};
use crate::collector::audit::{Kind, Tally};
use crate::collector::metric::Metric;
use crate::collector::records::{IdHash, Judge};
use crate::report::FaultReport;
use crate::sim::behaviour::{Micros, MsgKey};
use crate::sim::faults::Fault;
use crate::transport::Capability;

/// A reconnect whose drop falls this long after a fault's window is still that fault's.
pub(super) const FAULT_ATTRIBUTION: Micros = 2_000_000;

/// One fault of the profile and what it did.
#[derive(Debug)]
pub(super) struct FaultTrack {
    pub(super) fault: Fault,
    pub(super) done: u64,
    /// Drop -> logged in again, of the connections it took down.
    pub(super) recoveries: Vec<Micros>,
    /// Lost (not excused) and lost in a disconnect, of what was sent in its window.
    pub(super) lost: u64,
    pub(super) lost_in_disconnect: u64,
}

impl FaultTrack {
    /// Whether something sent at `t` falls in this fault's window (its spread, and the time
    /// it takes to come back).
    pub(super) fn covers(&self, t: Micros) -> bool {
        (self.fault.at..=self.fault.at + self.fault.over + FAULT_ATTRIBUTION).contains(&t)
    }
}

impl FaultTrack {
    pub(super) fn report(mut self) -> FaultReport {
        if self.fault.stall > 0 {
            // A stalled reader resumes by itself, after the stall.
            self.recoveries = vec![self.fault.stall; self.done as usize];
        }
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
            lost: self.lost,
            lost_in_disconnect: self.lost_in_disconnect,
        }
    }
}

/// Ids of settled messages, so that a receipt naming one counts as late rather than
/// unexpected. Ids are opaque (no order to compare), so they are kept as 64-bit hashes: those
/// of every message for one to two horizons after it settled, in two generations (the older
/// dropped each horizon: a few bytes per message of the horizon, like the records), and for
/// the whole run those whose receipts may come at any time: group messages that asked for
/// read receipts (a member may come back and read one tens of minutes later, and its count is
/// then pushed) and messages pushed after they settled (a late offline replay: its delivery
/// and read receipts follow it).
#[derive(Debug, Default)]
pub(super) struct SettledIds {
    current: FxHashSet<IdHash>,
    previous: FxHashSet<IdHash>,
    since: Micros,
    /// Kept until the run ends.
    for_the_run: FxHashSet<IdHash>,
}

impl SettledIds {
    /// Notes a settled message's id; `for_the_run`: its receipts may come at any time.
    pub(super) fn insert(&mut self, id: IdHash, for_the_run: bool) {
        if for_the_run {
            self.for_the_run.insert(id);
        } else {
            self.current.insert(id);
        }
    }

    /// Whether `id` was settled within the last one to two horizons, or kept for the run.
    pub(super) fn contains(&self, id: IdHash) -> bool {
        self.current.contains(&id) || self.previous.contains(&id) || self.for_the_run.contains(&id)
    }

    /// Starts a new generation once a horizon has passed since the last.
    pub(super) fn rotate(&mut self, now: Micros, horizon: Micros) {
        if now.saturating_sub(self.since) >= horizon {
            self.previous = std::mem::take(&mut self.current);
            self.since = now;
        }
    }
}

impl State {
    /// Settles every record sent before `cutoff` into the audit and drops it.
    pub(super) fn settle_before(&mut self, cutoff: Micros) {
        while let Some((key, sent, m)) = self.msgs.pop_before(cutoff) {
            if let Some(id) = m.mid {
                self.by_mid.remove(&id);
                self.settled.insert(id, m.group && m.receipts);
            }
            if let Some(g) = m.reads.as_deref() {
                let accepted_reads = g.reads.iter().filter(|r| r.accepted.is_some()).count() as u64;
                if m.receipts && accepted_reads > 0 && g.max >= accepted_reads {
                    // Known only now, long after its second closed: totals only.
                    self.record_total(Metric::GroupReadAll, g.max_at, m.scheduled, Some(m.sent));
                }
            }
            let judge = Judge {
                presence: &self.presence,
                grace: self.grace,
                offline_groups: self.capabilities.has(Capability::OfflineGroupMessages),
            };
            // `RUST_LOG=ackstorm::collector=debug` logs every record with a loss, to find it.
            if self.faults.is_empty() && !tracing::enabled!(tracing::Level::DEBUG) {
                m.settle(key.sender, &judge, &mut self.tally);
            } else {
                // Losses of what was sent in a fault's window are that fault's too.
                let before = self.tally.losses();
                m.settle(key.sender, &judge, &mut self.tally);
                let (lost, gone) = self.tally.losses();
                let (lost, gone) = (lost - before.0, gone - before.1);
                if lost + gone > 0 {
                    tracing::debug!(?key, record = ?m, "a record with losses settled");
                }
                for f in self.faults.iter_mut().filter(|f| f.covers(sent)) {
                    f.lost += lost;
                    f.lost_in_disconnect += gone;
                }
            }
            if let (false, Some(q)) = (m.group, self.unlearned.get_mut(&(key.sender, m.conv))) {
                let sender = key.sender;
                let gone = q
                    .iter()
                    .take_while(|&&seq| !self.msgs.contains_key(&MsgKey { sender, seq }))
                    .count();
                q.drain(..gone);
                if q.is_empty() {
                    self.unlearned.remove(&(key.sender, m.conv));
                }
            }
        }
    }

    /// Settles everything at the end of the run. What is missing then and was sent (a
    /// conversation ack: made; a request: written) less than the run's slowest transit
    /// ([`Metric::TRANSIT`]) before the end may still be on its way: lost all the same, and
    /// marked so (`lost_at_end`).
    pub(super) fn settle_all(&mut self) {
        let slowest = Metric::TRANSIT
            .iter()
            .filter_map(|m| self.corrected[m.index()].as_ref().map(Histogram::max))
            .max()
            .unwrap_or(0);
        let awaited_from = self.now.saturating_sub(slowest);
        self.settle_before(awaited_from);
        self.settle_acks_before(awaited_from);
        let before = self.tally.lost_by_kind();
        self.settle_before(Micros::MAX);
        self.settle_acks_before(Micros::MAX);
        self.tally.lost_at_end_since(&before);
        let awaited = self.unanswered.iter().filter(|left| **left >= awaited_from).count();
        self.tally.kind(Kind::Reply).lost_at_end += awaited as u64;
    }

    /// Settles conversation acks sent before `cutoff`.
    pub(super) fn settle_acks_before(&mut self, cutoff: Micros) {
        let judge = Judge {
            presence: &self.presence,
            grace: self.grace,
            offline_groups: self.capabilities.has(Capability::OfflineGroupMessages),
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
}

/// One conversation ack at settlement: reached some device, or judged missing.
pub(super) fn settle_ack(a: ChanAck, user: u32, kind: Kind, judge: &Judge, tally: &mut Tally) {
    match a.accepted {
        _ if a.devices != 0 => tally.ok(kind),
        Some(at) => judge.missing(kind, user, at, tally),
        None => {}
    }
}
