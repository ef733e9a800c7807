//! What reaches a simulated user's devices: replies (matched to their requests), pushes
//! (messages, receipts, channel acks, replayed counts), and the reader lists it fetches page by
//! page, each turned into the collector events the user actor emits.

use std::sync::Arc;

use super::{Client, Env, RECEIPTED};
use crate::collector::{AckKind, Event, ReceiptKind, ReqKind};
use crate::sim::behaviour::{Conv, Micros, MsgKey};
use crate::sim::user::parse_body;
use crate::transport::{Chat, Inbound, MsgId, Op, Reply};

#[derive(Debug)]
pub(super) struct Query {
    pub(super) key: MsgKey,
    pub(super) mid: MsgId,
    pub(super) group: u32,
    pub(super) page: u32,
    pub(super) started: Micros,
    pub(super) page_sent: Micros,
    pub(super) pages: Vec<Micros>,
    pub(super) users: Vec<u32>,
    pub(super) unknown: u32,
}

impl Client {
    pub(super) fn ask_page(&mut self, mut q: Query, next: Option<String>, env: &mut Env<'_>) {
        let op = Op::ReadUsers {
            group: env.world.groups[q.group as usize].id.clone(),
            mid: q.mid.clone(),
            limit: q.page,
            key: next,
        };
        q.page_sent = env.now;
        if let Some(req) = self.request(0, op, (ReqKind::ReadUsers, Some(q.key), q.group), None, env) {
            self.queries.insert(req, q);
        }
    }

    fn group_receipt(&mut self, mid: &MsgId, env: &mut Env<'_>) {
        if let Some((key, group)) = self.receipted.remove(mid) {
            self.sim.on_first_group_receipt(env.now, key, mid.clone(), group);
        }
    }

    /// What reached device `dev` on connection `generation` (ignored when that connection is
    /// gone: what a closed socket held is lost).
    pub(in crate::simulate) fn inbound(&mut self, dev: u8, generation: u32, event: Inbound, env: &mut Env<'_>) {
        let d = self.devices[dev as usize];
        if d.generation != generation || !d.up {
            return;
        }
        let at = env.now;
        let world = env.world;
        let user_of = |id: &str| world.user_index(id).unwrap_or(u32::MAX);
        match event {
            Inbound::Reply { req, reply } => self.on_reply(req, reply, env),
            Inbound::Message {
                mid,
                from,
                to,
                chat,
                body,
                receipts,
            } => {
                let key = parse_body(env.tag, &body);
                env.events.push(Event::MessagePush {
                    user: self.ix,
                    dev,
                    key,
                    mid: mid.clone(),
                    at,
                });
                let conv = match chat {
                    Chat::Single => world.user_index(&from).map(Conv::Peer),
                    Chat::Group => world.group_index(&to).map(Conv::Group),
                };
                let seen = conv.zip(key);
                let owes = self
                    .sim
                    .on_push(dev, at, chat, mid.clone(), seen, receipts, env.actions);
                if owes {
                    let to_user: Arc<str> = world
                        .user_index(&from)
                        .map_or_else(|| Arc::from(from.as_str()), |i| world.users[i as usize].clone());
                    let event = Event::AckSent {
                        reader: self.ix,
                        kind: AckKind::Delivery,
                        key,
                        conv: 0,
                        scheduled: at,
                        at,
                        waited: false,
                    };
                    let op = Op::Delivery { mid, to: to_user };
                    self.request(dev, op, (ReqKind::Ack(AckKind::Delivery), key, 0), Some(event), env);
                }
                if dev == 0 && seen.is_some() {
                    self.perform(env);
                }
            }
            Inbound::Delivery { mid, from, .. } => env.events.push(Event::Receipt {
                user: self.ix,
                dev,
                kind: ReceiptKind::Delivery,
                mid,
                from: user_of(&from),
                count: None,
                at,
            }),
            Inbound::Read { mid, from, count, .. } => {
                if count.is_some() {
                    self.group_receipt(&mid, env);
                }
                env.events.push(Event::Receipt {
                    user: self.ix,
                    dev,
                    kind: if count.is_some() {
                        ReceiptKind::GroupRead
                    } else {
                        ReceiptKind::Read
                    },
                    mid,
                    from: user_of(&from),
                    count,
                    at,
                });
            }
            Inbound::Channel { from, to, .. } => env.events.push(Event::ChannelPush {
                user: self.ix,
                dev,
                from: user_of(&from),
                to: user_of(&to),
                at,
            }),
            Inbound::ReadCounts(entries) => {
                for (mid, ..) in &entries {
                    self.group_receipt(mid, env);
                }
                let counts = entries.into_iter().map(|(mid, _, count)| (mid, count)).collect();
                env.events.push(Event::Statistic {
                    user: self.ix,
                    counts,
                    at,
                });
            }
            Inbound::Closed => {}
        }
    }

    fn on_reply(&mut self, req: Option<u64>, reply: Reply, env: &mut Env<'_>) {
        let refused = match &reply {
            Reply::Error { refusal, .. } => Some(*refusal),
            _ => None,
        };
        let Some(f) = req.and_then(|r| self.in_flight.remove(r)) else {
            env.events.push(Event::StrayReply {
                user: self.ix,
                duplicated: req.is_some_and(|r| r <= self.next_req),
                refused,
            });
            return;
        };
        if let (
            ReqKind::Send,
            Reply::Accepted {
                mid,
                group_ack: Some(true),
                ..
            },
            Some(key),
        ) = (f.kind, &reply, f.key)
        {
            if self.receipted_order.len() >= RECEIPTED
                && let Some(old) = self.receipted_order.pop_front()
            {
                self.receipted.remove(&old);
            }
            self.receipted.insert(mid.clone(), (key, f.conv));
            self.receipted_order.push_back(mid.clone());
        }
        if !self.queries.is_empty()
            && let Some(q) = req.and_then(|r| self.queries.remove(&r))
        {
            self.next_page(q, &reply, env);
        }
        let answer = crate::sim::user::requests::answer(reply);
        env.events.push(Event::Replied {
            user: self.ix,
            kind: f.kind,
            key: f.key,
            conv: f.conv,
            answer,
            at: env.now,
        });
    }

    fn next_page(&mut self, mut q: Query, reply: &Reply, env: &mut Env<'_>) {
        let Reply::ReadUsers {
            users,
            next_key,
            is_last,
        } = reply
        else {
            return;
        };
        q.pages.push(env.now.saturating_sub(q.page_sent));
        for u in users {
            match env.world.user_index(u) {
                Some(i) => q.users.push(i),
                None => q.unknown += 1,
            }
        }
        match next_key {
            Some(k) if !is_last => self.ask_page(q, Some(k.clone()), env),
            _ => env.events.push(Event::ReadUsers {
                sender: self.ix,
                key: q.key,
                sent: q.started,
                done: env.now,
                users: q.users,
                unknown: q.unknown,
                pages: q.pages,
            }),
        }
    }
}
