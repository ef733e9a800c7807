//! The user actor: one actix actor per simulated user, owning its device connections.
//!
//! It connects through the transport [`Driver`] on its own arbiter, feeds arriving messages
//! and the clock to its [`UserSim`], performs the actions that come back (send, ack, go
//! offline), answers messages with delivery receipts when its devices have them on, and emits
//! raw events to the collector. One timer per actor, set to the behaviour's next due time;
//! latencies start at the scheduled time, not at the timer's wake-up.
//!
//! Every request gets a number, unique for the user over the run, and waits in `in_flight`
//! until its reply comes: that is how the reply audit knows what was never answered, answered
//! twice, or answered without being asked. When a connection drops, the device reconnects
//! with jittered exponential backoff, as an SDK does, and resends what the old connection
//! left unanswered (sends keep their client id, so the server can drop repeats); requests
//! made while it is down wait for it, sends up to the outbox bound.
//!
//! Device 0 is the primary: it sends, reads and acks. Every device receives the pushes (the
//! server's multi-device fan-out), sends its own delivery receipts, and reports what reaches
//! it, so the audit can check every device.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use rand::RngExt;
use rand_pcg::Pcg64Mcg;
use rustc_hash::FxHashMap;

use super::behaviour::{Action, Conv, Micros, MsgKey, SimConfig, UserSim};
use super::faults::{FaultAction, Planned};
use super::world::{self, World};
use crate::collector::{AckKind, Answer, Event, ReceiptKind, ReqKind, Sink};
use crate::protocol::ChatType;
use crate::transport::{Command, Driver, Inbound, LoginSpec, Op, Outbox, Reply, Stall, Timed};

/// What every user actor shares.
pub struct Shared {
    /// The seeded world.
    pub world: Arc<World>,
    /// Behaviour settings.
    pub cfg: Arc<SimConfig>,
    /// How to reach the server.
    pub driver: Arc<dyn Driver>,
    /// Run time zero.
    pub start: Instant,
    /// Connections per user.
    pub devices: u32,
    /// Message body size.
    pub message_bytes: usize,
    /// This run's tag, first in every body: messages of other runs are not ours.
    pub tag: String,
}

/// Ends the actor: reports what was never answered, closes its connections (an expected
/// disconnect) and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

#[derive(Default)]
struct Device {
    out: Option<Outbox>,
    stall: Option<Stall>,
    stream: Option<SpawnHandle>,
    connecting: bool,
    logged_in_once: bool,
    /// Bumped per connection so events of an old connection are told apart.
    generation: u32,
    /// When the connection dropped (until it is logged in again).
    dropped_at: Option<Micros>,
    /// Failed attempts since the drop.
    attempt: u32,
    /// A reconnect waiting for its backoff.
    retry: Option<SpawnHandle>,
}

/// A request waiting for its reply.
struct InFlight {
    dev: u8,
    op: Op,
    kind: ReqKind,
    key: Option<MsgKey>,
    conv: u32,
    /// Written to a connection at least once (else it waits for one).
    written: bool,
    /// Emitted when it first leaves, stamped with that instant.
    event: Option<Event>,
}

/// A reader list being fetched page by page.
struct Query {
    key: MsgKey,
    mid: u64,
    group: u32,
    page: u32,
    /// When the first page was asked for.
    started: Micros,
    /// When the current page was asked for.
    page_sent: Micros,
    /// Each page's round trip.
    pages: Vec<Micros>,
    users: Vec<u32>,
    /// Listed ids that are no user of this run.
    unknown: u32,
}

/// Group messages with receipts this user sent, by server id, until their first count
/// arrives (at most this many are remembered; the oldest go first).
const RECEIPTED: usize = 4096;

/// Stops sending new messages (an interrupted run drains what is in flight); acks go on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Quiet;

/// One simulated user.
pub struct UserActor {
    ix: u32,
    id: Arc<str>,
    sim: UserSim,
    shared: Arc<Shared>,
    sink: Sink,
    devices: Vec<Device>,
    next_req: u64,
    in_flight: BTreeMap<u64, InFlight>,
    /// Sends in `in_flight` not yet written (bounded by the outbox).
    waiting_sends: usize,
    rng: Pcg64Mcg,
    timer: Option<(SpawnHandle, Micros)>,
    actions: Vec<Action>,
    closing: bool,
    /// Sends are dropped (after [`Quiet`]).
    quiet: bool,
    /// Own group messages with receipts, by server id: (message, group).
    receipted: FxHashMap<u64, (MsgKey, u32)>,
    receipted_order: VecDeque<u64>,
    /// Reader lists being fetched, by the request number of their current page.
    queries: FxHashMap<u64, Query>,
}

/// Message body: the run tag and the key (so a reader can tell which message it is), padded
/// to size.
pub fn body(tag: &str, key: MsgKey, bytes: usize) -> String {
    use std::fmt::Write;
    let mut b = String::with_capacity(bytes.max(32));
    let _ = write!(b, "{tag}.{}.{}.", key.sender, key.seq);
    let pad = bytes.saturating_sub(b.len());
    b.extend(std::iter::repeat_n('x', pad));
    b
}

/// Reads the key back from a body of this run (`None` for anything else).
pub fn parse_body(tag: &str, body: &str) -> Option<MsgKey> {
    let mut parts = body.splitn(4, '.');
    if parts.next()? != tag {
        return None;
    }
    Some(MsgKey {
        sender: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
    })
}

impl UserActor {
    /// User `ix` of the world.
    pub fn new(ix: u32, shared: Arc<Shared>, sink: Sink) -> UserActor {
        let sim = UserSim::new(ix, shared.cfg.clone(), shared.world.clone());
        let devices = (0..shared.devices).map(|_| Device::default()).collect();
        let rng = world::stream(shared.cfg.seed(), ix, world::Stream::Reconnect);
        UserActor {
            ix,
            id: shared.world.users[ix as usize].clone(),
            sim,
            shared,
            sink,
            devices,
            next_req: 0,
            in_flight: BTreeMap::new(),
            waiting_sends: 0,
            rng,
            timer: None,
            actions: Vec::new(),
            closing: false,
            quiet: false,
            receipted: FxHashMap::default(),
            receipted_order: VecDeque::new(),
            queries: FxHashMap::default(),
        }
    }

    fn now(&self) -> Micros {
        self.shared.start.elapsed().as_micros() as Micros
    }

    fn micros(&self, at: Instant) -> Micros {
        at.saturating_duration_since(self.shared.start).as_micros() as Micros
    }

    fn emit(&self, e: Event) {
        let _ = self.sink.send(e);
    }

    /// Whether the user wants its devices online.
    fn wanted(&self) -> bool {
        !self.closing && self.sim.online()
    }

    fn connect_all(&mut self, ctx: &mut Context<Self>) {
        for dev in 0..self.devices.len() {
            self.connect(dev, ctx);
        }
    }

    fn connect(&mut self, dev: usize, ctx: &mut Context<Self>) {
        let d = &mut self.devices[dev];
        if d.out.is_some() || d.connecting {
            return;
        }
        if let Some(h) = d.retry.take() {
            ctx.cancel_future(h);
        }
        d.connecting = true;
        d.generation += 1;
        let generation = d.generation;
        let spec = LoginSpec {
            user: self.id.clone(),
            device: Arc::from(format!("d{dev}")),
            delivery: self.shared.world.delivery[self.ix as usize],
        };
        let fut = self.shared.driver.connect(spec);
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.devices[dev].connecting = false;
            match result {
                Ok(conn) if act.wanted() => {
                    let at = act.micros(conn.logged_in_at);
                    let d = &mut act.devices[dev];
                    let first = !d.logged_in_once;
                    d.logged_in_once = true;
                    d.out = Some(conn.out);
                    d.stall = Some(conn.stall);
                    d.attempt = 0;
                    let reconnect = d.dropped_at.take().map(|t| at.saturating_sub(t));
                    d.stream = Some(ctx.add_stream(conn.events.map(move |t| (dev as u8, generation, t))));
                    act.emit(Event::Connected {
                        user: act.ix,
                        dev: dev as u8,
                        at,
                        first,
                        reconnect,
                    });
                    act.flush(dev);
                }
                Ok(conn) => {
                    let _ = conn.out.send(Command::Close);
                }
                Err(e) => {
                    act.emit(Event::ConnectFailed {
                        user: act.ix,
                        error: e.to_string(),
                    });
                    act.retry_later(dev, ctx);
                }
            }
        }));
    }

    /// Schedules a reconnect of `dev` after the backoff, or gives up on what waits for it.
    fn retry_later(&mut self, dev: usize, ctx: &mut Context<Self>) {
        let Some(backoff) = self.shared.cfg.reconnect.filter(|_| self.wanted()) else {
            self.abandon(dev);
            return;
        };
        let now = self.now();
        let u: f64 = self.rng.random();
        let d = &mut self.devices[dev];
        d.dropped_at.get_or_insert(now);
        let wait = backoff.delay(d.attempt, u);
        d.attempt += 1;
        let handle = ctx.run_later(Duration::from_micros(wait), move |act, ctx| {
            act.devices[dev].retry = None;
            if act.wanted() {
                act.connect(dev, ctx);
            }
        });
        if let Some(old) = self.devices[dev].retry.replace(handle) {
            ctx.cancel_future(old);
        }
    }

    /// `dev` will not come back: what waits for it is reported and dropped.
    fn abandon(&mut self, dev: usize) {
        let reqs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.dev as usize == dev)
            .map(|(r, _)| *r)
            .collect();
        for req in reqs {
            let f = self.in_flight.remove(&req).expect("listed");
            self.settle_unanswered(f, true);
        }
    }

    /// Reports a request that will get no reply.
    fn settle_unanswered(&mut self, f: InFlight, in_disconnect: bool) {
        if f.written {
            self.emit(Event::Unanswered {
                user: self.ix,
                kind: f.kind,
                in_disconnect,
            });
        } else if f.kind == ReqKind::Send {
            self.waiting_sends -= 1;
            self.emit(Event::Skipped {
                n: 1,
                disconnected: true,
            });
        }
    }

    /// Writes everything waiting for `dev`'s connection, oldest first (resends included).
    fn flush(&mut self, dev: usize) {
        let Some(out) = self.devices[dev].out.clone() else {
            return;
        };
        let now = self.now();
        let mut resent = 0;
        let mut events = Vec::new();
        for (req, f) in self.in_flight.iter_mut().filter(|(_, f)| f.dev as usize == dev) {
            if out
                .send(Command::Request {
                    req: *req,
                    op: f.op.clone(),
                })
                .is_err()
            {
                break;
            }
            if f.written {
                resent += 1;
            } else {
                f.written = true;
                if f.kind == ReqKind::Send {
                    self.waiting_sends -= 1;
                }
                if let Some(e) = f.event.take() {
                    events.push(e);
                }
            }
        }
        for mut e in events {
            if let Event::Sent { at, waited, .. } | Event::AckSent { at, waited, .. } = &mut e {
                *at = now;
                *waited = true;
            }
            self.emit(e);
        }
        if resent > 0 {
            self.emit(Event::Resent { n: resent });
        }
    }

    /// Sends `op` on `dev` (or queues it for the device's connection) and emits `event` when
    /// it actually leaves, stamped with that instant.
    fn request(
        &mut self,
        dev: usize,
        op: Op,
        kind: ReqKind,
        key: Option<MsgKey>,
        conv: u32,
        event: Option<Event>,
    ) -> Option<u64> {
        let d = &self.devices[dev];
        let waiting = d.out.is_none();
        if waiting {
            let coming = d.connecting || d.retry.is_some();
            let full = kind == ReqKind::Send && self.waiting_sends >= self.shared.cfg.outbox;
            if !coming || full {
                if kind == ReqKind::Send {
                    self.emit(Event::Skipped {
                        n: 1,
                        disconnected: true,
                    });
                }
                return None;
            }
            if kind == ReqKind::Send {
                self.waiting_sends += 1;
            }
        }
        self.next_req += 1;
        let req = self.next_req;
        let mut f = InFlight {
            dev: dev as u8,
            op,
            kind,
            key,
            conv,
            written: false,
            event,
        };
        let out = self.devices[dev].out.as_ref();
        if out.is_some_and(|out| out.send(Command::Request { req, op: f.op.clone() }).is_ok()) {
            f.written = true;
            if let Some(mut e) = f.event.take() {
                if let Event::Sent { at, .. } | Event::AckSent { at, .. } = &mut e {
                    *at = self.now();
                }
                self.emit(e);
            }
        }
        self.in_flight.insert(req, f);
        Some(req)
    }

    fn on_reply(&mut self, req: Option<u64>, reply: Reply, at: Micros) {
        let refused = match &reply {
            Reply::Error { code, .. } => Some(*code),
            _ => None,
        };
        let Some(f) = req.and_then(|r| self.in_flight.remove(&r)) else {
            self.emit(Event::StrayReply {
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
            self.remember_receipted(*mid, key, f.conv);
        }
        if let Some(q) = req.and_then(|r| self.queries.remove(&r)) {
            self.next_page(q, &reply, at);
        }
        let answer = match reply {
            Reply::Error { code, .. } => Answer::Refused(code),
            Reply::Accepted {
                mid,
                group_ack,
                duplicate,
            } => Answer::Accepted {
                mid,
                group_ack,
                duplicate,
            },
            Reply::Acked { .. } | Reply::ReadUsers { .. } | Reply::Result | Reply::Pong => Answer::Ok,
        };
        self.emit(Event::Replied {
            user: self.ix,
            kind: f.kind,
            key: f.key,
            conv: f.conv,
            answer,
            at,
        });
    }

    fn remember_receipted(&mut self, mid: u64, key: MsgKey, group: u32) {
        if self.receipted_order.len() >= RECEIPTED
            && let Some(old) = self.receipted_order.pop_front()
        {
            self.receipted.remove(&old);
        }
        self.receipted.insert(mid, (key, group));
        self.receipted_order.push_back(mid);
    }

    /// A count of one of this user's group messages arrived (live or replayed).
    fn group_receipt(&mut self, mid: u64, at: Micros, ctx: &mut Context<Self>) {
        if let Some((key, group)) = self.receipted.remove(&mid) {
            self.sim.on_first_group_receipt(at, key, mid, group);
            self.arm(ctx);
        }
    }

    /// Asks for one page of a message's readers; the query waits under the page's request.
    fn ask_page(&mut self, mut q: Query, next: Option<String>) {
        let group = self.shared.world.groups[q.group as usize].id.clone();
        let op = Op::ReadUsers {
            group,
            mid: q.mid,
            limit: q.page,
            key: next,
        };
        q.page_sent = self.now();
        if let Some(req) = self.request(0, op, ReqKind::ReadUsers, Some(q.key), q.group, None) {
            self.queries.insert(req, q);
        }
    }

    /// A page came back: ask for the next, or report the whole list.
    fn next_page(&mut self, mut q: Query, reply: &Reply, at: Micros) {
        let Reply::ReadUsers {
            users,
            next_key,
            is_last,
        } = reply
        else {
            return;
        };
        q.pages.push(at.saturating_sub(q.page_sent));
        for u in users {
            match self.shared.world.user_index(u) {
                Some(i) => q.users.push(i),
                None => q.unknown += 1,
            }
        }
        match next_key {
            Some(k) if !is_last => self.ask_page(q, Some(k.clone())),
            _ => self.emit(Event::ReadUsers {
                sender: self.ix,
                key: q.key,
                sent: q.started,
                done: at,
                users: q.users,
                unknown: q.unknown,
                pages: q.pages,
            }),
        }
    }

    fn conv_target(&self, conv: Conv) -> (ChatType, Arc<str>) {
        let w = &self.shared.world;
        match conv {
            Conv::Peer(p) => (ChatType::Single, w.users[p as usize].clone()),
            Conv::Group(g) => (ChatType::Group, w.groups[g as usize].id.clone()),
        }
    }

    fn perform(&mut self, ctx: &mut Context<Self>) {
        let actions = std::mem::take(&mut self.actions);
        for a in &actions {
            match *a {
                Action::Send { .. } if self.quiet => {}
                Action::Send {
                    seq,
                    conv,
                    allow_group_ack,
                    scheduled,
                } => {
                    let (chat, to) = self.conv_target(conv);
                    let key = MsgKey { sender: self.ix, seq };
                    let index = match conv {
                        Conv::Peer(i) | Conv::Group(i) => i,
                    };
                    let op = Op::Send {
                        // The run's tag keeps ids of earlier runs on the same server apart.
                        id: format!("{}.{seq}", self.shared.tag),
                        chat,
                        to,
                        body: body(&self.shared.tag, key, self.shared.message_bytes),
                        allow_group_ack,
                    };
                    let event = Event::Sent {
                        key,
                        chat,
                        conv: index,
                        scheduled,
                        at: scheduled,
                        waited: false,
                    };
                    self.request(0, op, ReqKind::Send, Some(key), index, Some(event));
                }
                Action::ReadAck {
                    conv,
                    scheduled,
                    mid,
                    key,
                } => {
                    let (chat, to) = self.conv_target(conv);
                    let (kind, to) = match conv {
                        Conv::Peer(_) => (AckKind::Read, self.shared.world.users[key.sender as usize].clone()),
                        Conv::Group(_) => (AckKind::GroupRead, to),
                    };
                    let event = Event::AckSent {
                        reader: self.ix,
                        kind,
                        key: Some(key),
                        conv: 0,
                        scheduled,
                        at: scheduled,
                        waited: false,
                    };
                    self.request(
                        0,
                        Op::Read { chat, mid, to },
                        ReqKind::Ack(kind),
                        Some(key),
                        0,
                        Some(event),
                    );
                }
                Action::ChannelAck { conv, scheduled } => {
                    let (chat, to) = self.conv_target(conv);
                    let (kind, index) = match conv {
                        Conv::Peer(p) => (AckKind::Channel, p),
                        Conv::Group(g) => (AckKind::GroupChannel, g),
                    };
                    let event = Event::AckSent {
                        reader: self.ix,
                        kind,
                        key: None,
                        conv: index,
                        scheduled,
                        at: scheduled,
                        waited: false,
                    };
                    self.request(
                        0,
                        Op::Channel { chat, to },
                        ReqKind::Ack(kind),
                        None,
                        index,
                        Some(event),
                    );
                }
                Action::Read { conv } => self.emit(Event::Read {
                    group: matches!(conv, Conv::Group(_)),
                }),
                Action::Skipped(n) => self.emit(Event::Skipped { n, disconnected: false }),
                Action::Offline => self.close_all(ctx),
                Action::Online => self.connect_all(ctx),
                Action::Fault(f) => self.fault(f, ctx),
                Action::ReadUsers { key, mid, group, page } => {
                    let now = self.now();
                    let q = Query {
                        key,
                        mid,
                        group,
                        page,
                        started: now,
                        page_sent: now,
                        pages: Vec::new(),
                        users: Vec::new(),
                        unknown: 0,
                    };
                    self.ask_page(q, None);
                }
            }
        }
        self.actions = actions;
        self.actions.clear();
    }

    /// Injects a planned fault (a reset connection, or sockets that stop being read).
    fn fault(&mut self, f: Planned, ctx: &mut Context<Self>) {
        let at = self.now();
        let done = match f.action {
            FaultAction::Drop { dev } => {
                let dev = dev as usize;
                match self.devices.get_mut(dev) {
                    Some(d) if d.out.is_some() => {
                        if let Some(out) = &d.out {
                            let _ = out.send(Command::Abort);
                        }
                        // Dropping the read half too closes the socket (with a reset).
                        if let Some(h) = d.stream.take() {
                            ctx.cancel_future(h);
                        }
                        self.on_dropped(dev, at, ctx);
                        true
                    }
                    _ => false,
                }
            }
            FaultAction::Stall { for_us } => {
                let mut any = false;
                for d in &self.devices {
                    if let Some(s) = &d.stall {
                        s.stall_for(Duration::from_micros(for_us));
                        any = true;
                    }
                }
                any
            }
        };
        self.emit(Event::Fault {
            index: f.index,
            at,
            done,
        });
    }

    /// Closes every connection politely (the user goes offline, or the run ends).
    fn close_all(&mut self, ctx: &mut Context<Self>) {
        let at = self.now();
        for dev in 0..self.devices.len() {
            let d = &mut self.devices[dev];
            if let Some(h) = d.retry.take() {
                ctx.cancel_future(h);
            }
            d.dropped_at = None;
            d.stall = None;
            if let Some(out) = d.out.take() {
                let _ = out.send(Command::Close);
                self.emit(Event::Disconnected {
                    user: self.ix,
                    dev: dev as u8,
                    at,
                    expected: true,
                });
            }
        }
        if self.shared.cfg.reconnect.is_none() {
            for dev in 0..self.devices.len() {
                self.abandon(dev);
            }
        }
    }

    /// Runs the behaviour up to now and sets the timer to its next due time.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        self.sim.advance(now, &mut self.actions);
        self.perform(ctx);
        self.arm(ctx);
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        let Some(due) = self.sim.next_due() else {
            if let Some((h, _)) = self.timer.take() {
                ctx.cancel_future(h);
            }
            return;
        };
        if let Some((h, at)) = self.timer {
            if at == due {
                return;
            }
            ctx.cancel_future(h);
        }
        let wait = Duration::from_micros(due.saturating_sub(self.now()));
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.tick(ctx);
        });
        self.timer = Some((handle, due));
    }

    /// A connection the simulation did not close ended (the server or the network closed
    /// it, or a fault reset it). Unanswered requests wait for the reconnect to be resent.
    fn on_dropped(&mut self, dev: usize, at: Micros, ctx: &mut Context<Self>) {
        let d = &mut self.devices[dev];
        d.stall = None;
        d.stream = None;
        if d.out.take().is_none() {
            // Closed by the simulation: already reported.
            return;
        }
        self.emit(Event::Disconnected {
            user: self.ix,
            dev: dev as u8,
            at,
            expected: self.closing,
        });
        if self.shared.cfg.reconnect.is_none() {
            self.abandon(dev);
        } else {
            self.devices[dev].dropped_at = Some(at);
            self.retry_later(dev, ctx);
        }
    }

    fn on_inbound(&mut self, dev: usize, t: Timed, ctx: &mut Context<Self>) {
        let primary = dev == 0;
        let at = self.micros(t.at);
        let world = self.shared.world.clone();
        let user_of = |id: &str| world.user_index(id).unwrap_or(u32::MAX);
        match t.event {
            Inbound::Reply { req, reply } => self.on_reply(req, reply, at),
            Inbound::Message {
                mid,
                from,
                to,
                chat,
                body,
                receipts,
            } => {
                let key = parse_body(&self.shared.tag, &body);
                self.emit(Event::MessagePush {
                    user: self.ix,
                    dev: dev as u8,
                    key,
                    mid,
                    at,
                });
                if chat == ChatType::Single && world.delivery[self.ix as usize] && self.sim.acks_allowed(at) {
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
                    self.request(dev, op, ReqKind::Ack(AckKind::Delivery), key, 0, Some(event));
                }
                if !primary {
                    return;
                }
                let conv = match chat {
                    ChatType::Single => world.user_index(&from).map(Conv::Peer),
                    ChatType::Group => world.group_index(&to).map(Conv::Group),
                };
                if let (Some(conv), Some(key)) = (conv, key) {
                    self.sim.on_message(at, mid, key, conv, receipts, &mut self.actions);
                    self.perform(ctx);
                    self.arm(ctx);
                }
            }
            Inbound::Delivery { mid, ref from, .. } | Inbound::Read { mid, ref from, .. } => {
                if let Inbound::Read { count: Some(_), .. } = t.event {
                    self.group_receipt(mid, at, ctx);
                }
                let (kind, count) = match t.event {
                    Inbound::Delivery { .. } => (ReceiptKind::Delivery, None),
                    Inbound::Read { count: None, .. } => (ReceiptKind::Read, None),
                    Inbound::Read { count, .. } => (ReceiptKind::GroupRead, count),
                    _ => unreachable!("matched above"),
                };
                self.emit(Event::Receipt {
                    user: self.ix,
                    dev: dev as u8,
                    kind,
                    mid,
                    from: user_of(from),
                    count,
                    at,
                });
            }
            Inbound::Channel { id, from, to, .. } => self.emit(Event::ChannelPush {
                user: self.ix,
                dev: dev as u8,
                from: user_of(&from),
                to: user_of(&to),
                id,
                at,
            }),
            Inbound::Statistic(entries) => {
                for (mid, ..) in &entries {
                    self.group_receipt(*mid, at, ctx);
                }
                let counts = entries.into_iter().map(|(mid, _, count)| (mid, count)).collect();
                self.emit(Event::Statistic {
                    user: self.ix,
                    counts,
                    at,
                });
            }
            Inbound::Kicked | Inbound::Closed => {}
        }
    }
}

impl Actor for UserActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.sim.online() {
            self.connect_all(ctx);
        }
        self.tick(ctx);
    }
}

impl StreamHandler<(u8, u32, Timed)> for UserActor {
    fn handle(&mut self, (dev, generation, t): (u8, u32, Timed), ctx: &mut Context<Self>) {
        let dev = dev as usize;
        if self.devices[dev].generation != generation {
            return;
        }
        if t.event == Inbound::Closed {
            let at = self.micros(t.at);
            self.on_dropped(dev, at, ctx);
            return;
        }
        self.on_inbound(dev, t, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // A connection's stream ended; the actor lives on (the user may reconnect).
    }
}

impl Handler<Quiet> for UserActor {
    type Result = ();

    fn handle(&mut self, _: Quiet, _ctx: &mut Context<Self>) {
        self.quiet = true;
    }
}

impl Handler<Stop> for UserActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.closing = true;
        for f in std::mem::take(&mut self.in_flight).into_values() {
            let down = self.devices[f.dev as usize].out.is_none();
            self.settle_unanswered(f, down);
        }
        self.close_all(ctx);
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_key_at_the_requested_size() {
        let key = MsgKey { sender: 12, seq: 345 };
        let b = body("r1", key, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(parse_body("r1", &b), Some(key));
        assert_eq!(
            parse_body("r1", &body("r1", key, 4)),
            Some(key),
            "never shorter than the key"
        );
        assert_eq!(parse_body("r2", &b), None, "another run's message");
        assert_eq!(parse_body("r1", "hello"), None);
    }
}
