//! Folding what the users sent and what reached them: messages, acks, replies, receipt
//! pushes, conversation acks and reader lists, each matched to its record.

use std::collections::VecDeque;

use super::{ChanAck, State, bit};
use crate::collector::audit::Kind;
use crate::collector::intervals::Count;
use crate::collector::metric::Metric;
use crate::collector::presence::Over;
use crate::collector::recipients::Recipients;
use crate::collector::records::{GroupRead, IdHash, MsgRec};
use crate::collector::{AckKind, Answer, ReceiptKind, ReqKind};
use crate::sim::behaviour::{Micros, MsgKey};
use crate::transport::{Chat, MsgId};

impl State {
    pub(super) fn sent(&mut self, key: MsgKey, chat: Chat, conv: u32, scheduled: Micros, at: Micros, waited: bool) {
        let group = chat == Chat::Group;
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
        if let Some(m) = self.max_seq.get_mut(key.sender as usize) {
            *m = (*m).max(key.seq);
        }
        if group {
            self.sent.1 += 1
        } else {
            // 1:1 messages wait here until the sender learns they were read.
            self.unlearned.entry((key.sender, conv)).or_default().push(key.seq);
            self.sent.0 += 1
        }
        if !waited {
            self.record(Metric::ScheduleLag, at, scheduled, None);
        }
        self.bump(at, Count::Messages);
    }

    pub(super) fn ack_sent(
        &mut self,
        reader: u32,
        kind: AckKind,
        key: Option<MsgKey>,
        conv: u32,
        scheduled: Micros,
        at: Micros,
    ) {
        self.acks[kind.index()] += 1;
        let m = key.and_then(|k| self.msgs.get_mut(&k));
        match kind {
            AckKind::Delivery => {
                if let Some(m) = m {
                    m.delivery_sent = true;
                }
                return;
            }
            AckKind::Read => {
                self.econ.0.read_acks += 1;
                if let Some(m) = m {
                    m.read_sent = true;
                    m.read_scheduled.get_or_insert(m.sent, scheduled);
                    m.read_sent_at.get_or_insert(m.sent, at);
                }
            }
            AckKind::GroupRead => {
                self.econ.1.read_acks += 1;
                if let Some(m) = m {
                    m.group_mut().reads.push(GroupRead {
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
                    upto: key.map(|k| k.seq),
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

    pub(super) fn replied(
        &mut self,
        user: u32,
        kind: ReqKind,
        key: Option<MsgKey>,
        conv: u32,
        answer: Answer,
        at: Micros,
    ) {
        self.tally.ok(Kind::Reply);
        let accepted = match answer {
            Answer::Refused(refusal) => {
                self.tally.refused(refusal.code);
                Self::count(&mut self.errors, refusal.code);
                if refusal.rate_limited {
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
                    r.accepted.get_or_insert(m.sent, at);
                }
            }
            ReqKind::Ack(AckKind::GroupRead) => {
                let Some(key) = key else { return };
                let sender_off = self.presence.user_off(key.sender, at);
                let Some(m) = self.msgs.get_mut(&key) else { return };
                let g = m.group_mut();
                if let Some(r) = g.reads.iter_mut().find(|r| r.reader == user && r.accepted.is_none()) {
                    r.accepted = Some(at);
                    if sender_off && self.presence.user_off(key.sender, r.sent) {
                        g.stat_due.get_or_insert(at);
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

    pub(super) fn accepted(&mut self, key: MsgKey, mid: MsgId, group_ack: Option<bool>, at: Micros) {
        let Some(m) = self.msgs.get_mut(&key) else { return };
        if m.accepted.is_some() {
            return;
        }
        m.accepted.set(m.sent, at);
        let id = IdHash::of(&mid);
        if let Some(old) = m.mid.replace(id) {
            self.by_mid.remove(&old);
        }
        m.receipts = group_ack == Some(true);
        let (scheduled, sent) = (m.scheduled, m.sent);
        let recipients = match (m.group, self.audience.groups.get(m.conv as usize)) {
            (true, Some(members)) => Recipients::group(members.clone(), key.sender, sent, &self.presence),
            (true, None) => Recipients::Nobody,
            (false, _) => Recipients::one(m.conv, sent, &self.presence),
        };
        m.route(recipients);
        self.by_mid.insert(id, key);
        self.record(Metric::ServerAck, at, scheduled, Some(sent));
    }

    /// A push naming a message or id the run does not hold: late when its record was settled
    /// already, else unexpected.
    pub(super) fn stray(&mut self, kind: Kind, id: IdHash) {
        let late = self.settled.contains(id);
        let k = self.tally.kind(kind);
        if late {
            k.late += 1;
        } else {
            k.unexpected += 1;
        }
    }

    pub(super) fn message_push(&mut self, user: u32, dev: u8, key: Option<MsgKey>, mid: MsgId, at: Micros) {
        let Some(key) = key else {
            tracing::debug!(user, dev, ?mid, "a message push of no message this run sent");
            self.tally.kind(Kind::Message).unexpected += 1;
            return;
        };
        let Some(m) = self.msgs.get_mut(&key) else {
            let sent = self.max_seq.get(key.sender as usize).is_some_and(|s| key.seq <= *s);
            let k = self.tally.kind(Kind::Message);
            if sent {
                k.late += 1;
                // Its receipts follow it, past the settled generations.
                self.settled.insert(IdHash::of(&mid), true);
            } else {
                tracing::debug!(user, dev, ?key, ?mid, "a message push of a message not sent yet");
                k.unexpected += 1
            }
            return;
        };
        if m.mid.is_none() {
            // Its `received` has not come (or never will): the push tells the id.
            let id = IdHash::of(&mid);
            m.mid = Some(id);
            self.by_mid.insert(id, key);
        }
        if !m.arrive(user, dev) {
            tracing::debug!(user, dev, ?key, record = ?m, "a message push to a user it was not sent to");
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
    pub(super) fn receipt(
        &mut self,
        user: u32,
        dev: u8,
        kind: ReceiptKind,
        mid: MsgId,
        from: u32,
        count: Option<u64>,
        at: Micros,
    ) {
        self.bump(at, Count::Receipts);
        let (name, audit) = match kind {
            ReceiptKind::Delivery => ("delivery", Kind::Delivery),
            ReceiptKind::Read => ("read", Kind::Read),
            ReceiptKind::GroupRead => ("group_read", Kind::GroupRead),
        };
        Self::count(&mut self.receipts, name);
        let id = IdHash::of(&mid);
        let key = match self.by_mid.get(&id) {
            Some(k) if k.sender == user => *k,
            _ => return self.stray(audit, id),
        };
        let Some(read_sent) = self.msgs.get(&key).map(|m| m.read_sent) else {
            return self.stray(audit, id);
        };
        if kind == ReceiptKind::Read && !read_sent && self.covers_as_newest(from, user, key) {
            // No read ack was sent for it, but a conversation ack names it as the newest
            // message it covers: a protocol without conversation acks (XMPP's one
            // `displayed` marker for the newest message) carries the ack this way.
            return self.channel_push(user, dev, from, at);
        }
        let Some(m) = self.msgs.get_mut(&key) else { return };
        let (scheduled, sent) = (m.scheduled, m.sent);
        match kind {
            ReceiptKind::Delivery => {
                if m.delivery.push(dev) {
                    self.record(Metric::Delivery, at, scheduled, Some(sent));
                }
            }
            ReceiptKind::Read => {
                if m.read.push(dev) {
                    if let Some(decided) = m.read_scheduled.get(m.sent) {
                        let raw = m.read_sent_at.get(m.sent);
                        self.record(Metric::ReadReceipt, at, decided, raw);
                    }
                    self.learn_read(key, at);
                }
            }
            ReceiptKind::GroupRead => {
                let mut first_from_reader = None;
                let read = m
                    .reads
                    .as_deref_mut()
                    .and_then(|g| g.reads.iter_mut().find(|r| r.reader == from));
                if let Some(r) = read {
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

    pub(super) fn group_count(&mut self, key: MsgKey, count: u64, at: Micros) {
        if count == 0 {
            // Neither a new highest count nor a first one.
            return;
        }
        let Some(m) = self.msgs.get_mut(&key) else { return };
        let g = m.group_mut();
        if count > g.max {
            g.max = count;
            g.max_at = at;
        }
        if !g.first {
            g.first = true;
            let (scheduled, sent) = (m.scheduled, m.sent);
            self.record(Metric::GroupReadFirst, at, scheduled, Some(sent));
        }
    }

    pub(super) fn learn_read(&mut self, key: MsgKey, at: Micros) {
        let Some(m) = self.msgs.get_mut(&key) else { return };
        if !m.read_learned {
            m.read_learned = true;
            let (scheduled, sent) = (m.scheduled, m.sent);
            self.record(Metric::Read, at, scheduled, Some(sent));
        }
    }

    /// Whether a conversation ack of `reader` to `peer`, still on its way to a device, names
    /// `key` as the newest message it covers.
    fn covers_as_newest(&self, reader: u32, peer: u32, key: MsgKey) -> bool {
        self.channels
            .get(&(reader, peer))
            .is_some_and(|q| q.iter().any(|a| a.upto == Some(key.seq)))
    }

    pub(super) fn channel_push(&mut self, user: u32, dev: u8, from: u32, at: Micros) {
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
        let upto = hit.and_then(|(_, a)| a.upto);
        match hit {
            Some((true, a)) => self.record(Metric::Channel, at, a.scheduled, Some(a.at)),
            Some((false, _)) => {}
            None => self.tally.kind(Kind::Channel).unexpected += 1,
        }
        // Acks that every online device of the peer has seen are done.
        let online = (0..self.presence.per_user())
            .filter(|d| self.presence.over(user, *d, at) == Over::On)
            .fold(0u32, |mask, d| mask | bit(d));
        if let Some(q) = self.channels.get_mut(&(from, user)) {
            while q
                .front()
                .is_some_and(|a| a.devices != 0 && a.devices & online == online)
            {
                q.pop_front();
                self.tally.ok(Kind::Channel);
            }
        }
        // The ack covers the newest message of `user`'s that the reader had received, and
        // every one `user` sent to it before.
        let Some(upto) = upto else { return };
        let mut covered = Vec::new();
        if let Some(q) = self.unlearned.get_mut(&(user, from)) {
            let n = q.iter().take_while(|seq| **seq <= upto).count();
            for seq in q.drain(..n) {
                let k = MsgKey { sender: user, seq };
                if self.msgs.contains_key(&k) {
                    covered.push(k);
                }
            }
        }
        for k in covered {
            self.learn_read(k, at);
        }
    }

    /// Audits a reader list: it must hold every reader whose read was accepted before the
    /// query left, and nobody whose read had not left before the last page came back.
    pub(super) fn read_users(
        &mut self,
        key: MsgKey,
        sent: Micros,
        done: Micros,
        users: Vec<u32>,
        unknown: u32,
        pages: &[Micros],
    ) {
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
        for r in m.group_reads() {
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
        let allowed = |u: &u32| m.group_reads().iter().any(|r| r.reader == *u && r.sent < done);
        k.unexpected += listed.iter().filter(|u| !allowed(u)).count() as u64;
    }
}
