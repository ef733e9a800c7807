//! Folding shards' event logs as one run: the events of every shard, interleaved by their
//! run-clock time, go through the very fold a single process uses ([`super::fold::State`]),
//! with its once-a-second settling driven by the events' own clock instead of a timer.
//!
//! So a merged run's audit matches a message sent in one shard with its pushes and receipts
//! in another, and its histograms are built from every sample: nothing is averaged or
//! re-derived from summaries. Each log is nearly in time order (a collector folds events a
//! little after they happen); a window of [`SLACK`] of event time reorders what is not.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::SystemTime;

use super::eventlog::{EventLogError, EventReader};
use super::fold::{Folded, State};
use super::{Answer, Event, Settings};
use crate::sim::behaviour::Micros;
use crate::transport::MsgId;

/// How far out of time order a log may be: events are held this long (of event time) before
/// they are folded, so an earlier event read later from another log still goes first.
const SLACK: Micros = 5_000_000;

/// One shard's log and where its clock stands against the merged run's.
pub struct Source {
    /// The log.
    pub reader: EventReader,
    /// Added to every time in it: the shard's clock zero minus the merged run's.
    pub offset: Micros,
    /// Put before every server message id in it: shards that each had a server of their own
    /// (partitioned) were given ids from separate counters, which would collide.
    pub id_prefix: Option<String>,
}

/// An event waiting in the window, ordered by (time, log, position).
struct Pending {
    key: (Micros, usize, u64),
    event: Event,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

struct Cursor {
    reader: EventReader,
    offset: Micros,
    id_prefix: Option<String>,
    /// Time of the last event read (events with no time of their own take it).
    last: Micros,
    read: u64,
    done: bool,
}

/// Folds `sources` as one run whose clock started at `start_time`.
pub fn replay(start_time: SystemTime, settings: Settings, sources: Vec<Source>) -> Result<Folded, EventLogError> {
    let mut state = State::new(start_time, settings);
    let mut cursors: Vec<Cursor> = sources
        .into_iter()
        .map(|s| Cursor {
            reader: s.reader,
            offset: s.offset,
            id_prefix: s.id_prefix,
            last: 0,
            read: 0,
            done: false,
        })
        .collect();
    let mut window: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut next_tick: Micros = 1_000_000;
    loop {
        let front = window.peek().map_or(0, |p| p.0.key.0);
        for (i, c) in cursors.iter_mut().enumerate() {
            while !c.done && c.last <= front + SLACK {
                match c.reader.next_event()? {
                    None => c.done = true,
                    Some(mut e) => {
                        shift(&mut e, c.offset);
                        if let Some(p) = &c.id_prefix {
                            qualify(&mut e, p);
                        }
                        c.last = time_of(&mut e).unwrap_or(c.last);
                        c.read += 1;
                        window.push(Reverse(Pending {
                            key: (c.last, i, c.read),
                            event: e,
                        }));
                    }
                }
            }
        }
        let Some(Reverse(p)) = window.pop() else { break };
        while next_tick <= p.key.0 {
            state.tick(next_tick, None);
            next_tick += 1_000_000;
        }
        state.fold(p.event);
    }
    state.tick(next_tick, None);
    Ok(state.finish())
}

/// The times an event carries: when it happened (for those that say), and the other time
/// some carry (a scheduled send or ack, a first request).
fn times(e: &mut Event) -> (Option<&mut Micros>, Option<&mut Micros>) {
    match e {
        Event::Connected { at, .. }
        | Event::Disconnected { at, .. }
        | Event::Replied { at, .. }
        | Event::MessagePush { at, .. }
        | Event::Receipt { at, .. }
        | Event::ChannelPush { at, .. }
        | Event::Statistic { at, .. }
        | Event::Fault { at, .. } => (Some(at), None),
        Event::Sent { scheduled, at, .. } | Event::AckSent { scheduled, at, .. } => (Some(at), Some(scheduled)),
        Event::ReadUsers { sent, done, .. } => (Some(done), Some(sent)),
        Event::ConnectFailed { .. }
        | Event::Skipped { .. }
        | Event::Resent { .. }
        | Event::Read { .. }
        | Event::StrayReply { .. }
        | Event::Unanswered { .. }
        | Event::Snapshot(_)
        | Event::Finish(_) => (None, None),
    }
}

/// When an event happened, for those that say.
fn time_of(e: &mut Event) -> Option<Micros> {
    times(e).0.map(|t| *t)
}

/// Puts `prefix` before every server message id in `e`.
fn qualify(e: &mut Event, prefix: &str) {
    let q = |mid: &mut MsgId| *mid = MsgId::new(&format!("{prefix}{mid}"));
    match e {
        Event::Replied {
            answer: Answer::Accepted { mid, .. },
            ..
        }
        | Event::MessagePush { mid, .. }
        | Event::Receipt { mid, .. } => q(mid),
        Event::Statistic { counts, .. } => counts.iter_mut().for_each(|(mid, _)| q(mid)),
        _ => {}
    }
}

/// Moves every time in `e` by `by` (a shard whose clock started later than the merged run's).
fn shift(e: &mut Event, by: Micros) {
    let (a, b) = times(e);
    for t in [a, b].into_iter().flatten() {
        *t += by;
    }
}
