//! One simulated user's behaviour as a pure state machine: when it sends, which conversation
//! it has open, which messages it reads and when, and which acks its strategy sends.
//!
//! No I/O and no clock: the actor feeds it the time (microseconds since the run start) and
//! the messages that arrive, and performs the [`Action`]s it returns. Every random choice comes
//! from per-user streams or from a hash of (seed, message, reader), so the same seed gives the
//! same sends and the same read decisions whatever the timing of the run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use rand::RngExt;
use rand_pcg::Pcg64Mcg;
use rustc_hash::FxHashMap;

pub use super::action::{Action, Conv, Micros, MsgKey};
pub use super::config::{Backoff, SimConfig};
use super::config::{exp_sample, next_arrival};
use super::faults::Planned;
use super::world::{Role, Stream, World, stream};
use crate::profile::Strategy;
use crate::transport::{Chat, MsgId};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Focus {
    Away { until: Micros },
    Open { conv: Conv, until: Micros },
}

#[derive(Debug, Clone)]
struct Unseen {
    /// When it arrived.
    at: Micros,
    /// How long after it is seen it is read.
    delay: Micros,
    mid: MsgId,
    key: MsgKey,
    receipts: bool,
}

#[derive(Debug, Default)]
struct ConvState {
    /// Arrived while the conversation was not open, to be read once it is.
    unseen: VecDeque<Unseen>,
    /// Messages not yet covered by a read ack or channel ack.
    unacked: u32,
    /// Bumped by every channel ack: reads scheduled before it are covered.
    epoch: u32,
    /// The newest message that arrived.
    newest: Option<(MsgId, MsgKey)>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PendingRead {
    due: Micros,
    conv: Conv,
    mid: MsgId,
    key: MsgKey,
    receipts: bool,
    epoch: u32,
}

/// Lifecycle of the user within the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending, reading, changing conversations.
    Active,
    /// Traffic over: only pending reads and debounced acks finish.
    Draining,
}

/// One user's state.
#[derive(Debug)]
pub struct UserSim {
    ix: u32,
    cfg: Arc<SimConfig>,
    world: Arc<World>,
    seq: u32,
    next_single: Micros,
    next_group: Micros,
    rng_single: Pcg64Mcg,
    rng_group: Pcg64Mcg,
    rng_focus: Pcg64Mcg,
    rng_churn: Pcg64Mcg,
    focus: Focus,
    convs: FxHashMap<Conv, ConvState>,
    reads: BinaryHeap<Reverse<PendingRead>>,
    debounce: Option<(Micros, Conv)>,
    online: bool,
    /// Has been online at some point (only such users come back for the drain).
    was_online: bool,
    next_churn: Micros,
    phase: Phase,
    /// Faults still to inject, in time order.
    faults: VecDeque<Planned>,
    /// Reader queries to make: (due, message, server id, group).
    queries: BinaryHeap<Reverse<(Micros, MsgKey, MsgId, u32)>>,
}

impl UserSim {
    /// User `ix`, joining at its planned start.
    pub fn new(ix: u32, cfg: Arc<SimConfig>, world: Arc<World>) -> UserSim {
        let start = world.planned_start[ix as usize]
            .as_micros()
            .min(u128::from(Micros::MAX)) as Micros;
        let mut rng_single = stream(cfg.seed, ix, Stream::Single);
        let mut rng_group = stream(cfg.seed, ix, Stream::Group);
        let mut rng_focus = stream(cfg.seed, ix, Stream::Focus);
        let mut rng_churn = stream(cfg.seed, ix, Stream::Churn);
        let has_contacts = !world.contacts[ix as usize].is_empty();
        let in_groups = !world.memberships[ix as usize].is_empty();
        let sends_from = start.max(cfg.traffic_start);
        let next_single = if has_contacts {
            sends_from.saturating_add(next_arrival(
                &mut rng_single,
                cfg.single_per_us,
                cfg.curve.as_ref(),
                sends_from,
            ))
        } else {
            Micros::MAX
        };
        let next_group = if in_groups {
            sends_from.saturating_add(next_arrival(
                &mut rng_group,
                cfg.group_per_us,
                cfg.curve.as_ref(),
                sends_from,
            ))
        } else {
            Micros::MAX
        };
        let away = exp_sample(&mut rng_focus, cfg.away_mean).max(1);
        let online = world.online_at_start[ix as usize];
        let faults = world
            .faults
            .get(ix as usize)
            .map(|f| f.iter().copied().collect())
            .unwrap_or_default();
        let next_churn = match cfg.churn {
            Some(c) => {
                let mean = if online { c.online } else { c.offline };
                start.saturating_add(exp_sample(&mut rng_churn, mean.as_micros() as f64))
            }
            None => Micros::MAX,
        };
        UserSim {
            ix,
            cfg,
            world,
            seq: 0,
            next_single,
            next_group,
            rng_single,
            rng_group,
            rng_focus,
            rng_churn,
            focus: Focus::Away {
                until: start.saturating_add(away),
            },
            convs: FxHashMap::default(),
            reads: BinaryHeap::new(),
            debounce: None,
            online,
            was_online: online,
            next_churn,
            phase: Phase::Active,
            faults,
            queries: BinaryHeap::new(),
        }
    }

    /// Whether the user is online now.
    pub fn online(&self) -> bool {
        self.online
    }

    /// Whether acks may still leave at `now` (deliveries included).
    pub fn acks_allowed(&self, now: Micros) -> bool {
        now <= self.cfg.acks_end
    }

    /// Earliest time something is due, if anything is.
    pub fn next_due(&self) -> Option<Micros> {
        let mut due = Micros::MAX;
        if let Some(Reverse(r)) = self.reads.peek() {
            due = due.min(r.due);
        }
        if let Some((t, _)) = self.debounce {
            due = due.min(t);
        }
        if let Some(f) = self.faults.front() {
            due = due.min(f.at);
        }
        if let Some(Reverse((t, ..))) = self.queries.peek() {
            due = due.min(*t);
        }
        if self.phase == Phase::Active {
            due = due.min(self.next_single).min(self.next_group).min(self.next_churn);
            if !self.cfg.always_open && self.online {
                due = due.min(match self.focus {
                    Focus::Away { until } | Focus::Open { until, .. } => until,
                });
            }
            due = due.min(self.cfg.traffic_end);
        }
        (due != Micros::MAX).then_some(due)
    }

    /// Does everything due up to `now`, in time order.
    pub fn advance(&mut self, now: Micros, out: &mut Vec<Action>) {
        loop {
            let Some(due) = self.next_due() else { return };
            if due > now {
                return;
            }
            self.step(due, out);
        }
    }

    /// Handles the earliest due item (at time `t`).
    fn step(&mut self, t: Micros, out: &mut Vec<Action>) {
        if self.phase == Phase::Active && t >= self.cfg.traffic_end {
            self.end_traffic(out);
        } else if self.faults.front().is_some_and(|f| f.at == t) {
            let f = self.faults.pop_front().expect("peeked");
            out.push(Action::Fault(f));
        } else if self.queries.peek().is_some_and(|Reverse((d, ..))| *d == t) {
            let Reverse((_, key, mid, group)) = self.queries.pop().expect("peeked");
            if t <= self.cfg.acks_end && self.online {
                out.push(Action::ReadUsers {
                    key,
                    mid,
                    group,
                    page: self.cfg.read_users_page,
                });
            }
        } else if self.reads.peek().is_some_and(|Reverse(r)| r.due == t) {
            let Reverse(r) = self.reads.pop().expect("peeked");
            if t <= self.cfg.acks_end {
                self.fire_read(t, r, out);
            }
        } else if self.debounce.is_some_and(|(d, _)| d == t) {
            let (_, conv) = self.debounce.take().expect("checked");
            if t <= self.cfg.acks_end {
                self.channel_ack(t, conv, out);
            }
        } else if self.next_churn == t {
            self.churn(t, out);
        } else if self.next_single == t {
            let gap = next_arrival(&mut self.rng_single, self.cfg.single_per_us, self.cfg.curve.as_ref(), t);
            self.next_single = t.saturating_add(gap);
            let contacts = &self.world.contacts[self.ix as usize];
            let u: f64 = self.rng_single.random();
            let i = self.cfg.contact_cdf.partition_point(|c| *c < u).min(contacts.len() - 1);
            let conv = Conv::Peer(contacts[i]);
            self.send(t, conv, false, out);
        } else if self.next_group == t {
            let gap = next_arrival(&mut self.rng_group, self.cfg.group_per_us, self.cfg.curve.as_ref(), t);
            self.next_group = t.saturating_add(gap);
            let groups = &self.world.memberships[self.ix as usize];
            let (g, role) = groups[self.rng_group.random_range(0..groups.len())];
            let may_ask = self.cfg.ack_anyone || role != Role::Member;
            let ask = may_ask && self.rng_group.random_bool(self.cfg.allow_group_ack_share);
            self.send(t, Conv::Group(g), ask, out);
        } else {
            self.change_focus(t, out);
        }
    }

    fn send(&mut self, t: Micros, conv: Conv, allow_group_ack: bool, out: &mut Vec<Action>) {
        if self.online {
            self.seq += 1;
            out.push(Action::Send {
                seq: self.seq,
                conv,
                allow_group_ack,
                scheduled: t,
            });
        } else {
            out.push(Action::Skipped(1));
        }
    }

    fn end_traffic(&mut self, out: &mut Vec<Action>) {
        self.phase = Phase::Draining;
        if !self.online && self.was_online {
            // Reconnect to collect what waited (receipts for messages sent before going offline).
            self.online = true;
            out.push(Action::Online);
        }
    }

    fn churn(&mut self, t: Micros, out: &mut Vec<Action>) {
        let churn = self.cfg.churn.expect("churn is scheduled only when configured");
        self.online = !self.online;
        self.was_online |= self.online;
        let mean = if self.online { churn.online } else { churn.offline };
        self.next_churn = t.saturating_add(exp_sample(&mut self.rng_churn, mean.as_micros() as f64).max(1));
        if self.online {
            self.focus = Focus::Away {
                until: t.saturating_add(exp_sample(&mut self.rng_focus, self.cfg.away_mean)),
            };
            out.push(Action::Online);
        } else {
            // The app closes: what was not yet read stays unread.
            self.reads.clear();
            self.debounce = None;
            self.focus = Focus::Away { until: Micros::MAX };
            out.push(Action::Offline);
        }
    }

    fn visible(&self, conv: Conv) -> bool {
        self.cfg.always_open || matches!(self.focus, Focus::Open { conv: c, .. } if c == conv)
    }

    /// The first read receipt (or count) of this user's group message `key` arrived: maybe
    /// ask, a while later, who read it.
    pub fn on_first_group_receipt(&mut self, now: Micros, key: MsgKey, mid: MsgId, group: u32) {
        if self.cfg.queries_readers(key) {
            self.queries.push(Reverse((
                now.saturating_add(self.cfg.read_users_delay),
                key,
                mid,
                group,
            )));
        }
    }

    /// A message reached device `dev` (pushed live or replayed at login): on the primary
    /// device (0), the user sees it ([`UserSim::on_message`]); on every device that sends
    /// delivery receipts, a one-to-one message is owed one (returned: the caller sends it, on
    /// that device). `conv` and `key` are `None` for a message that is not this run's.
    #[allow(clippy::too_many_arguments)]
    pub fn on_push(
        &mut self,
        dev: u8,
        now: Micros,
        chat: Chat,
        mid: MsgId,
        seen: Option<(Conv, MsgKey)>,
        receipts: bool,
        out: &mut Vec<Action>,
    ) -> bool {
        let owes_delivery = chat == Chat::Single && self.world.delivery[self.ix as usize] && self.acks_allowed(now);
        if let (0, Some((conv, key))) = (dev, seen) {
            self.on_message(now, mid, key, conv, receipts, out);
        }
        owes_delivery
    }

    /// A message arrived at the primary device (pushed live or replayed at login).
    pub fn on_message(
        &mut self,
        now: Micros,
        mid: MsgId,
        key: MsgKey,
        conv: Conv,
        receipts: bool,
        out: &mut Vec<Action>,
    ) {
        self.advance(now, out);
        let visible = self.visible(conv);
        let state = self.convs.entry(conv).or_default();
        state.unacked += 1;
        state.newest = Some((mid.clone(), key));
        if visible {
            self.see(now, conv, mid, key, receipts);
        } else if let Some(delay) = self.cfg.read_decision(key, self.ix) {
            // Kept for when the conversation opens; one the user will never read is not.
            state.unseen.push_back(Unseen {
                at: now,
                delay,
                mid,
                key,
                receipts,
            });
        }
        // A read due at once (no read delay) leaves with this turn's other frames.
        self.advance(now, out);
    }

    /// The user sees a message: decide whether and when it is read.
    fn see(&mut self, now: Micros, conv: Conv, mid: MsgId, key: MsgKey, receipts: bool) {
        if let Some(delay) = self.cfg.read_decision(key, self.ix) {
            self.read_after(now.saturating_add(delay), conv, mid, key, receipts);
        }
    }

    /// Plans the read of a message seen, due at `due`.
    fn read_after(&mut self, due: Micros, conv: Conv, mid: MsgId, key: MsgKey, receipts: bool) {
        let epoch = self.convs.get(&conv).map_or(0, |c| c.epoch);
        self.reads.push(Reverse(PendingRead {
            due,
            conv,
            mid,
            key,
            receipts,
            epoch,
        }));
    }

    fn fire_read(&mut self, t: Micros, r: PendingRead, out: &mut Vec<Action>) {
        let state = self.convs.entry(r.conv).or_default();
        if matches!(r.conv, Conv::Group(_)) {
            // Group chats have only per-message read acks, whatever the strategy, and only
            // for messages that keep receipts: those are the group reads an ack can cover.
            state.unacked = state.unacked.saturating_sub(1);
            if r.receipts {
                out.push(Action::Read { conv: r.conv });
                out.push(Action::ReadAck {
                    conv: r.conv,
                    scheduled: t,
                    mid: r.mid,
                    key: r.key,
                });
            }
            return;
        }
        out.push(Action::Read { conv: r.conv });
        if state.epoch > r.epoch {
            // Covered by the channel ack sent when the conversation opened.
            return;
        }
        match self.cfg.strategy {
            Strategy::PerMessage | Strategy::Hybrid => {
                state.unacked = state.unacked.saturating_sub(1);
                out.push(Action::ReadAck {
                    conv: r.conv,
                    scheduled: t,
                    mid: r.mid,
                    key: r.key,
                });
            }
            Strategy::Channel => {}
            Strategy::Debounced => {
                if self.visible(r.conv) {
                    self.debounce = Some((t.saturating_add(self.cfg.debounce), r.conv));
                }
            }
        }
    }

    fn channel_ack(&mut self, t: Micros, conv: Conv, out: &mut Vec<Action>) {
        // A conversation nothing arrived in has no state, and nothing to ack: opening it
        // makes none (an idle user would otherwise keep one per conversation it looks at).
        let Some(state) = self.convs.get_mut(&conv) else {
            return;
        };
        if state.unacked == 0 && state.unseen.is_empty() {
            return;
        }
        state.unacked = 0;
        state.epoch += 1;
        out.push(Action::ChannelAck {
            conv,
            scheduled: t,
            newest: state.newest.clone(),
        });
    }

    fn change_focus(&mut self, t: Micros, out: &mut Vec<Action>) {
        match self.focus {
            Focus::Open { conv, .. } => {
                if self.debounce.is_some_and(|(_, c)| c == conv) {
                    self.debounce = None;
                    self.channel_ack(t, conv, out);
                }
                self.focus = Focus::Away {
                    until: t.saturating_add(exp_sample(&mut self.rng_focus, self.cfg.away_mean).max(1)),
                };
            }
            Focus::Away { .. } => {
                let conv = self.choose_conversation();
                let until = t.saturating_add(exp_sample(&mut self.rng_focus, self.cfg.open_mean).max(1));
                let Some(conv) = conv else {
                    self.focus = Focus::Away { until };
                    return;
                };
                self.focus = Focus::Open { conv, until };
                self.open(t, conv, out);
            }
        }
    }

    /// The conversation with the oldest message waiting to be read, else a random one of the
    /// user's contacts and groups. (Not the oldest unacknowledged one: a message the user
    /// never reads stays unacknowledged, and would keep the user in its conversation for the
    /// rest of the run, everything else unread.)
    fn choose_conversation(&mut self) -> Option<Conv> {
        let waiting = self
            .convs
            .iter()
            .filter_map(|(c, s)| s.unseen.front().map(|u| (u.at, *c)))
            .min();
        if let Some((_, conv)) = waiting {
            return Some(conv);
        }
        let contacts = &self.world.contacts[self.ix as usize];
        let groups = &self.world.memberships[self.ix as usize];
        let n = contacts.len() + groups.len();
        if n == 0 {
            return None;
        }
        let i = self.rng_focus.random_range(0..n);
        Some(if i < contacts.len() {
            Conv::Peer(contacts[i])
        } else {
            Conv::Group(groups[i - contacts.len()].0)
        })
    }

    fn open(&mut self, t: Micros, conv: Conv, out: &mut Vec<Action>) {
        let unseen: Vec<Unseen> = self
            .convs
            .get_mut(&conv)
            .map(|s| std::mem::take(&mut s.unseen).into())
            .unwrap_or_default();
        for u in unseen {
            self.read_after(t.saturating_add(u.delay), conv, u.mid, u.key, u.receipts);
        }
        if self.cfg.strategy != Strategy::PerMessage && matches!(conv, Conv::Peer(_)) {
            self.channel_ack(t, conv, out);
        }
    }
}

#[cfg(test)]
#[path = "behaviour_tests.rs"]
mod tests;
