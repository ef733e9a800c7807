//! Per-message records: what one message went through (accepted, pushed to which devices,
//! which receipts were asked for and which arrived), and how a record is settled into the
//! audit once it is old enough that nothing more is due, or at the end of the run.

use std::hash::BuildHasher;
use std::num::NonZeroU64;

use smallvec::SmallVec;

use super::audit::{Kind, Tally};
use super::presence::{Over, Presence, bit};
use super::recipients::Recipients;
use crate::sim::behaviour::Micros;
use crate::transport::MsgId;

/// What settling needs to judge a missing push: who was online when, and how long after a
/// push was due a dropped connection still excuses it.
pub(super) struct Judge<'a> {
    pub(super) presence: &'a Presence,
    /// A push missing on a device whose connection dropped within this long after it was
    /// due is a loss protocol v1 allows (written to a connection that then died). A second,
    /// plus the longest stall the profile injects (a stalled reader holds written pushes).
    pub(super) grace: Micros,
    /// The server replays group messages to members who were offline (without it, such as
    /// XMPP MUC, a group message is owed only to members online when it was sent).
    pub(super) offline_groups: bool,
}

impl Judge<'_> {
    /// Whether any device of `user` dropped within the grace after `at`.
    pub(super) fn dropped(&self, user: u32, at: Micros) -> bool {
        (0..self.presence.per_user()).any(|dev| self.presence.dropped_within(user, dev, at, at + self.grace))
    }

    /// Something owed to `user` since `at` never came: lost in a disconnect, owed, or not due
    /// (stored for a user that never came back).
    pub(super) fn missing(&self, kind: Kind, user: u32, at: Micros, tally: &mut Tally) {
        if self.dropped(user, at) {
            let k = tally.kind(kind);
            k.expected += 1;
            k.lost_in_disconnect += 1;
        } else if self.presence.logged_in_after(user, at) || !self.presence.user_off(user, at) {
            tally.lost(kind)
        } else {
            tally.kind(kind).not_due += 1
        }
    }
}

/// A message id as the collector keeps it: its 64-bit hash (SipHash, fixed keys). Ids are
/// opaque strings (a UUID is 36 bytes, on the heap) and each live message's id was held twice,
/// in its record and in the index by id. Two live ids of a run sharing a hash would be taken
/// for one: the odds are about n²/2⁶⁵, 3·10⁻¹⁰ with 100,000 messages live.
/// (Never zero, so that `Option<IdHash>` takes eight bytes.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct IdHash(NonZeroU64);

impl IdHash {
    pub(super) fn of(id: &MsgId) -> IdHash {
        let h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(id);
        IdHash(NonZeroU64::new(h).unwrap_or(NonZeroU64::MIN))
    }
}

/// The longest a record lives: `tester.audit_horizon` is at most this (the profile checks it),
/// so that a record's times fit 32 bits after its send ([`Since`]: 71 minutes).
pub const MAX_HORIZON: std::time::Duration = std::time::Duration::from_secs(3600);

/// A time in a record's life that may not have come yet, held as µs after the record's send:
/// four bytes where a time takes eight and `Option<Micros>` sixteen (a record holds five).
/// Times come after the send (replies, pushes and reads follow it); one a few µs before it,
/// stamped on another thread, counts as the send's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Since(u32);

impl Default for Since {
    fn default() -> Self {
        Since(u32::MAX)
    }
}

impl Since {
    /// The time, if it came; `base` is the record's send.
    pub(super) fn get(self, base: Micros) -> Option<Micros> {
        self.is_some().then(|| base + u64::from(self.0))
    }

    pub(super) fn is_some(self) -> bool {
        self.0 != u32::MAX
    }

    pub(super) fn is_none(self) -> bool {
        self.0 == u32::MAX
    }

    /// Sets it to `at`; `base` is the record's send.
    pub(super) fn set(&mut self, base: Micros, at: Micros) {
        let after = at.saturating_sub(base);
        debug_assert!(
            after < 2 * MAX_HORIZON.as_micros() as u64,
            "a record outlived the horizon"
        );
        self.0 = u32::try_from(after).unwrap_or(u32::MAX).min(u32::MAX - 1);
    }

    /// Sets it to `at` unless it is set already.
    pub(super) fn get_or_insert(&mut self, base: Micros, at: Micros) {
        if self.is_none() {
            self.set(base, at);
        }
    }
}

/// A group reader of a message.
#[derive(Debug, Clone, Copy)]
pub(super) struct GroupRead {
    pub(super) reader: u32,
    /// The behaviour's decision to read (latencies start here).
    pub(super) scheduled: Micros,
    /// When the read ack left.
    pub(super) sent: Micros,
    /// When its `received` arrived.
    pub(super) accepted: Option<Micros>,
    /// Devices of the sender its live count reached.
    pub(super) pushed: u32,
    /// Live counts from this reader beyond the first on a device.
    pub(super) repeats: u32,
}

/// What a group message's readers did: kept apart, made at the first read or count, so that
/// a one-to-one message's record (most of them) does not carry it.
#[derive(Debug, Default)]
pub(super) struct GroupRec {
    pub(super) reads: Vec<GroupRead>,
    /// The highest read count the sender got, and when.
    pub(super) max: u64,
    pub(super) max_at: Micros,
    /// A count above zero arrived.
    pub(super) first: bool,
    /// A group read was accepted while the sender was surely offline, at this time: a
    /// statistic frame is due at its next login.
    pub(super) stat_due: Option<Micros>,
    /// Latest statistic entry for this message.
    pub(super) stat_at: Option<Micros>,
}

/// Pushes that came before the sender's `received`: (user, device).
pub(super) type Early = SmallVec<[(u32, u8); 2]>;

/// What one message went through. Times are µs on the run clock. (One is live per message
/// sent within the audit horizon, tens of thousands at once: keep it small.)
#[derive(Debug, Default)]
pub(super) struct MsgRec {
    pub(super) scheduled: Micros,
    pub(super) sent: Micros,
    /// When its sender got `received` (never: its pushes are then not judged).
    pub(super) accepted: Since,
    /// Server id, once `received` or a push told it.
    pub(super) mid: Option<IdHash>,
    pub(super) group: bool,
    /// Peer or group index.
    pub(super) conv: u32,
    pub(super) receipts: bool,
    pub(super) recipients: Recipients,
    /// Pushes of the message beyond the first on a device, over all recipients.
    pub(super) repeats: u32,
    /// Pushes that arrived before the sender's `received` (user, device); boxed, as they are
    /// rare (a push that overtook the server's reply).
    pub(super) early: Option<Box<Early>>,
    // Delivery and 1:1 read receipts: (ack accepted at, devices reached, repeats), and
    // whether a reader sent the ack.
    pub(super) delivery: ReceiptRec,
    pub(super) read: ReceiptRec,
    pub(super) delivery_sent: bool,
    pub(super) read_sent: bool,
    /// The reader's decision to read (1:1), for `read_receipt`.
    pub(super) read_scheduled: Since,
    /// When that read ack left (the uncorrected start of `read_receipt`).
    pub(super) read_sent_at: Since,
    pub(super) read_learned: bool,
    /// Group reads (group messages read or counted only).
    pub(super) reads: Option<Box<GroupRec>>,
}

/// A per-message receipt kind (delivery, 1:1 read); whether its ack was sent is the record's
/// (16 bytes, not 24).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ReceiptRec {
    /// The ack got `received`, at this time.
    pub(super) accepted: Since,
    /// Devices of the sender the push reached.
    pub(super) devices: u32,
    /// Pushes beyond the first on a device.
    pub(super) repeats: u32,
}

impl ReceiptRec {
    /// A push reached device `dev`; returns whether it is the first anywhere.
    pub(super) fn push(&mut self, dev: u8) -> bool {
        let first = self.devices == 0;
        if self.devices & bit(dev) != 0 {
            self.repeats += 1;
        }
        self.devices |= bit(dev);
        first
    }

    /// Settles it; `sent`: a reader sent the ack; `base`: the message's send.
    fn settle(&self, kind: Kind, sent: bool, base: Micros, sender: u32, judge: &Judge, tally: &mut Tally) {
        let arrived = self.devices != 0;
        tally.kind(kind).duplicated += u64::from(self.repeats);
        match (self.accepted.get(base), arrived) {
            (Some(_), true) => tally.ok(kind),
            (Some(at), false) => judge.missing(kind, sender, at, tally),
            // Sent but its `received` never came: the push may or may not follow.
            (None, true) if sent => tally.ok(kind),
            (None, true) => tally.kind(kind).unexpected += 1,
            (None, false) => {}
        }
    }
}

fn bits(mask: u32) -> u64 {
    u64::from(mask.count_ones())
}

impl MsgRec {
    /// The group reads, made at the first use.
    pub(super) fn group_mut(&mut self) -> &mut GroupRec {
        self.reads.get_or_insert_with(Default::default)
    }

    /// The group reads acked.
    pub(super) fn group_reads(&self) -> &[GroupRead] {
        self.reads.as_deref().map_or(&[], |g| &g.reads)
    }

    /// Notes who should get the message, judged when its `received` arrives; pushes that
    /// came before it are placed now.
    pub(super) fn route(&mut self, recipients: Recipients) {
        self.recipients = recipients;
        for (user, dev) in self.early.take().map(|e| *e).unwrap_or_default() {
            self.arrive(user, dev);
        }
    }

    /// The message reached `user`'s device `dev`; false when `user` is no recipient.
    pub(super) fn arrive(&mut self, user: u32, dev: u8) -> bool {
        if self.accepted.is_none() {
            self.early.get_or_insert_default().push((user, dev));
            return true;
        }
        let Some(repeat) = self.recipients.arrive(user, dev) else {
            return false;
        };
        self.repeats += u32::from(repeat);
        true
    }

    /// Settles the record into the audit. `sender` is its sender.
    pub(super) fn settle(&self, sender: u32, judge: &Judge, tally: &mut Tally) {
        self.settle_message(judge, tally);
        self.delivery
            .settle(Kind::Delivery, self.delivery_sent, self.sent, sender, judge, tally);
        self.read
            .settle(Kind::Read, self.read_sent, self.sent, sender, judge, tally);
        self.settle_group(sender, judge, tally);
    }

    fn settle_message(&self, judge: &Judge, tally: &mut Tally) {
        let presence = judge.presence;
        let Some(accepted) = self.accepted.get(self.sent) else {
            // Never confirmed to its sender: what arrived is counted, nothing is owed.
            let n = self.early.as_ref().map_or(0, |e| e.len()) as u64;
            let k = tally.kind(Kind::Message);
            k.expected += n;
            k.arrived += n;
            return;
        };
        tally.kind(Kind::Message).duplicated += u64::from(self.repeats);
        for r in self.recipients.each() {
            if r.user_off && self.group && !judge.offline_groups {
                // The protocol keeps no group messages for offline members: nothing owed.
                match bits(r.arrived) {
                    0 => tally.kind(Kind::Message).not_due += 1,
                    _ => tally.ok(Kind::Message),
                }
                continue;
            }
            if r.user_off {
                // Stored once for the user; replayed to the first device that logs in.
                match bits(r.arrived) {
                    0 if presence.logged_in_after(r.user, accepted) => tally.lost(Kind::Message),
                    0 => tally.kind(Kind::Message).not_due += 1,
                    n => {
                        tally.ok(Kind::Message);
                        tally.kind(Kind::Message).duplicated += n - 1;
                    }
                }
                continue;
            }
            for dev in 0..presence.per_user() {
                if r.arrived & bit(dev) != 0 {
                    tally.ok(Kind::Message);
                } else if r.on & bit(dev) == 0 {
                    // Offline (or logging in or out) while routed: nothing owed.
                    tally.kind(Kind::Message).not_due += 1;
                } else if presence.dropped_within(r.user, dev, self.sent, accepted + judge.grace) {
                    let k = tally.kind(Kind::Message);
                    k.expected += 1;
                    k.lost_in_disconnect += 1;
                } else if presence.over(r.user, dev, accepted) == Over::Off {
                    // Dropped later and not back: stored for its next login.
                    tally.kind(Kind::Message).not_due += 1;
                } else {
                    tally.lost(Kind::Message);
                }
            }
        }
    }

    fn settle_group(&self, sender: u32, judge: &Judge, tally: &mut Tally) {
        let Some(g) = self.reads.as_deref() else {
            return;
        };
        let presence = judge.presence;
        let accepted = g.reads.iter().filter(|r| r.accepted.is_some()).count() as u64;
        let sent = g.reads.len() as u64;
        if accepted > 0 || g.max > 0 {
            let k = tally.kind(Kind::GroupRead);
            let arrived = g.max.min(accepted);
            let missing = accepted - arrived;
            k.arrived += arrived;
            k.expected += arrived;
            if judge.dropped(sender, self.sent) {
                k.expected += missing;
                k.lost_in_disconnect += missing;
            } else if presence.logged_in_after(sender, self.sent) || !presence.user_off(sender, self.sent) {
                k.expected += missing;
                k.lost += missing;
            } else {
                k.not_due += missing;
            }
            k.unexpected += g.max.saturating_sub(sent);
        }
        let repeats: u32 = g.reads.iter().map(|r| r.repeats).sum();
        tally.kind(Kind::GroupRead).duplicated += u64::from(repeats);
        if let Some(due) = g.stat_due {
            match g.stat_at {
                Some(at) if at >= due => tally.ok(Kind::Statistic),
                _ if presence.logged_in_after(sender, due) => tally.lost(Kind::Statistic),
                _ => tally.kind(Kind::Statistic).not_due += 1,
            }
        } else if g.stat_at.is_some() {
            // A count replayed for reads whose timing was uncertain: counted, not owed.
            tally.ok(Kind::Statistic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_after_the_send_reads_back_exactly_and_not_yet_is_none() {
        let sent = 5_000_000_000;
        let mut t = Since::default();
        assert!(t.is_none() && t.get(sent).is_none());
        t.get_or_insert(sent, sent + 1_234);
        t.get_or_insert(sent, sent + 9_999);
        assert_eq!(t.get(sent), Some(sent + 1_234), "the first time stays");
        let last = MAX_HORIZON.as_micros() as u64 + 60_000_000;
        t.set(sent, sent + last);
        assert_eq!(t.get(sent), Some(sent + last), "the horizon and then some fit");
        // A stamp a little before the send (another thread's clock read) is the send's own.
        t.set(sent, sent - 3);
        assert_eq!(t.get(sent), Some(sent));
        assert!(
            std::mem::size_of::<MsgRec>() <= 112,
            "{}",
            std::mem::size_of::<MsgRec>()
        );
    }
}
