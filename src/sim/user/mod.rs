//! The user actor: one actix actor per simulated user, owning its device connections.
//!
//! It connects through the transport [`Driver`] on its own arbiter, feeds arriving messages
//! and the clock to its [`UserSim`], performs the actions that come back (send, ack, go
//! offline), sends the delivery receipts the behaviour says a push is owed, and emits raw
//! events to the collector. What a user decides is the behaviour's; the actor only does I/O. One timer per actor, set to the behaviour's next due time;
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

mod link;
mod pending;
mod queries;
pub mod requests;

use pending::Pending;
use queries::Query;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rand_pcg::Pcg64Mcg;
use rustc_hash::FxHashMap;

use super::behaviour::{Action, Conv, Micros, MsgKey, SimConfig, UserSim};
use super::world::{self, World};
use crate::collector::{AckKind, Event, ReceiptKind, ReqKind, Sink};
use crate::transport::{Chat, Driver, Inbound, MsgId, Op, Outbox, Stall, Timed};

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

/// A request waiting for its reply, on device `dev`.
struct InFlight {
    dev: u8,
    what: What,
}

/// What a request is.
enum What {
    /// A send or ack waiting for its connection, kept as what it is built from when it
    /// leaves, and filed from it (users whose login a saturated server leaves unanswered hold
    /// up to `reconnect.outbox` of these each): a send in 24 bytes, an ack as its action,
    /// boxed (72 bytes, and rarer). The built request is its id and body and the event that
    /// says it left.
    Planned(Deferred),
    /// Built (boxed: the planned ones, the many, stay small), last written at `left` (µs on
    /// the run clock; `None`: not written yet).
    Out { req: Box<Built>, left: Option<Micros> },
}

/// A send or ack action waiting for its connection.
enum Deferred {
    Send {
        scheduled: Micros,
        seq: u32,
        conv: Conv,
        allow_group_ack: bool,
    },
    Ack(Box<Action>),
}

impl Deferred {
    fn of(a: Action) -> Deferred {
        match a {
            Action::Send {
                seq,
                conv,
                allow_group_ack,
                scheduled,
            } => Deferred::Send {
                scheduled,
                seq,
                conv,
                allow_group_ack,
            },
            other => Deferred::Ack(Box::new(other)),
        }
    }

    fn action(&self) -> Action {
        match self {
            &Deferred::Send {
                scheduled,
                seq,
                conv,
                allow_group_ack,
            } => Action::Send {
                seq,
                conv,
                allow_group_ack,
                scheduled,
            },
            Deferred::Ack(a) => (**a).clone(),
        }
    }
}

/// A built request: how it is filed, what it sends, and until it leaves the event saying so.
struct Built {
    kind: ReqKind,
    key: Option<MsgKey>,
    conv: u32,
    op: Op,
    event: Option<Event>,
}

impl InFlight {
    /// When it was last written to a connection (`None`: it waits for one).
    fn left(&self) -> Option<Micros> {
        match self.what {
            What::Out { left, .. } => left,
            What::Planned(_) => None,
        }
    }

    /// How user `ix`'s reply audit files it: kind, message, peer or group.
    fn filing(&self, ix: u32) -> (ReqKind, Option<MsgKey>, u32) {
        match &self.what {
            What::Planned(p) => requests::filing(ix, &p.action()).expect("only sends and acks are planned"),
            What::Out { req, .. } => (req.kind, req.key, req.conv),
        }
    }
}

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
    in_flight: Pending<InFlight>,
    /// Sends in `in_flight` not yet written (bounded by the outbox).
    waiting_sends: usize,
    rng: Pcg64Mcg,
    timer: Option<(SpawnHandle, Micros)>,
    actions: Vec<Action>,
    closing: bool,
    /// Sends are dropped (after [`Quiet`]).
    quiet: bool,
    /// Own group messages with receipts, by server id: (message, group).
    receipted: FxHashMap<MsgId, (MsgKey, u32)>,
    receipted_order: VecDeque<MsgId>,
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
            in_flight: Pending::default(),
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

    fn perform(&mut self, ctx: &mut Context<Self>) {
        // Not kept for the next batch: a buffer kept per user (a few 72-byte actions) is more
        // than the allocation each batch saves.
        for a in std::mem::take(&mut self.actions) {
            match a {
                Action::Send { .. } if self.quiet => {}
                a @ (Action::Send { .. } | Action::ReadAck { .. } | Action::ChannelAck { .. }) => {
                    self.request_action(a);
                }
                Action::Read { conv } => self.emit(Event::Read {
                    group: matches!(conv, Conv::Group(_)),
                }),
                Action::Skipped(n) => self.emit(Event::Skipped { n, disconnected: false }),
                Action::Offline => self.close_all(ctx),
                Action::Online => self.connect_all(ctx),
                Action::Fault(f) => self.fault(f, ctx),
                Action::ReadUsers { key, mid, group, page } => self.start_query(key, mid, group, page),
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
                    mid: mid.clone(),
                    at,
                });
                let conv = match chat {
                    Chat::Single => world.user_index(&from).map(Conv::Peer),
                    Chat::Group => world.group_index(&to).map(Conv::Group),
                };
                let seen = conv.zip(key);
                let owes_delivery =
                    self.sim
                        .on_push(dev as u8, at, chat, mid.clone(), seen, receipts, &mut self.actions);
                if owes_delivery {
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
                    let op = Op::Delivery {
                        mid: mid.clone(),
                        to: to_user,
                    };
                    self.request(dev, op, ReqKind::Ack(AckKind::Delivery), key, 0, Some(event));
                }
                if primary && seen.is_some() {
                    self.perform(ctx);
                    self.arm(ctx);
                }
            }
            Inbound::Delivery { ref mid, ref from, .. } | Inbound::Read { ref mid, ref from, .. } => {
                if let Inbound::Read { count: Some(_), .. } = t.event {
                    self.group_receipt(mid.clone(), at, ctx);
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
                    mid: mid.clone(),
                    from: user_of(from),
                    count,
                    at,
                });
            }
            Inbound::Channel { from, to, .. } => self.emit(Event::ChannelPush {
                user: self.ix,
                dev: dev as u8,
                from: user_of(&from),
                to: user_of(&to),
                at,
            }),
            Inbound::ReadCounts(entries) => {
                for (mid, ..) in &entries {
                    self.group_receipt(mid.clone(), at, ctx);
                }
                let counts = entries.into_iter().map(|(mid, _, count)| (mid, count)).collect();
                self.emit(Event::Statistic {
                    user: self.ix,
                    counts,
                    at,
                });
            }
            Inbound::Closed => {}
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
        for f in self.in_flight.take_all() {
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
