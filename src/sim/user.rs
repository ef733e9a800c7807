//! The user actor: one actix actor per simulated user, owning its device connections.
//!
//! It connects through the transport [`Driver`] on its own arbiter, feeds arriving messages
//! and the clock to its [`UserSim`], performs the actions that come back (send, ack, go
//! offline), answers messages with delivery receipts when its devices have them on, and emits
//! raw events to the collector. One timer per actor, set to the behaviour's next due time;
//! latencies start at the scheduled time, not at the timer's wake-up.
//!
//! Device 0 is the primary: it sends, reads and acks, and its receipts feed the collector.
//! Other devices receive the same pushes (the server's multi-device fan-out) and send their
//! own delivery receipts, as every SDK instance does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;

use super::behaviour::{Action, Conv, Micros, MsgKey, SimConfig, UserSim};
use super::world::World;
use crate::collector::{AckKind, Event, ReceiptKind, Sink};
use crate::protocol::ChatType;
use crate::transport::{Driver, Inbound, LoginSpec, Op, Outbox, Timed};

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

/// Ends the actor: closes its connections (an expected disconnect) and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

#[derive(Default)]
struct Device {
    out: Option<Outbox>,
    connecting: bool,
    logged_in_once: bool,
    /// Bumped per connection so events of an old connection are told apart.
    generation: u32,
}

/// One simulated user.
pub struct UserActor {
    ix: u32,
    id: Arc<str>,
    sim: UserSim,
    shared: Arc<Shared>,
    sink: Sink,
    devices: Vec<Device>,
    /// Ops waiting for the primary connection's login.
    pending: Vec<(Op, Option<Event>)>,
    timer: Option<(SpawnHandle, Micros)>,
    actions: Vec<Action>,
    closing: bool,
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
        UserActor {
            ix,
            id: shared.world.users[ix as usize].clone(),
            sim,
            shared,
            sink,
            devices,
            pending: Vec::new(),
            timer: None,
            actions: Vec::new(),
            closing: false,
        }
    }

    fn now(&self) -> Micros {
        self.shared.start.elapsed().as_micros() as Micros
    }

    fn instant(&self, t: Micros) -> Instant {
        self.shared.start + Duration::from_micros(t)
    }

    fn emit(&self, e: Event) {
        let _ = self.sink.send(e);
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
            let d = &mut act.devices[dev];
            d.connecting = false;
            match result {
                Ok(conn) if !act.closing => {
                    let first = !d.logged_in_once;
                    d.logged_in_once = true;
                    d.out = Some(conn.out);
                    ctx.add_stream(conn.events.map(move |t| (dev as u8, generation, t)));
                    act.emit(Event::Connected {
                        user: act.ix,
                        at: conn.logged_in_at,
                        first,
                    });
                    if dev == 0 {
                        for (op, mut event) in std::mem::take(&mut act.pending) {
                            if let Some(Event::Sent { waited_login, .. }) = &mut event {
                                *waited_login = true;
                            }
                            act.send_now(op, event);
                        }
                    }
                }
                Ok(conn) => {
                    let _ = conn.out.send(Op::Close);
                }
                Err(e) => act.emit(Event::ConnectFailed {
                    user: act.ix,
                    error: e.to_string(),
                }),
            }
        }));
    }

    /// Hands `op` to the primary connection (or queues it until login) and emits `event`
    /// when it actually leaves, stamped with that instant.
    fn send(&mut self, op: Op, event: Option<Event>) {
        if self.devices[0].out.is_some() {
            self.send_now(op, event);
        } else if self.devices[0].connecting {
            self.pending.push((op, event));
        }
    }

    fn send_now(&mut self, op: Op, event: Option<Event>) {
        let Some(out) = &self.devices[0].out else { return };
        if out.send(op).is_err() {
            return;
        }
        if let Some(mut e) = event {
            let now = Instant::now();
            match &mut e {
                Event::Sent { at, .. } | Event::AckSent { at, .. } => *at = now,
                _ => {}
            }
            self.emit(e);
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
                        seq,
                        chat,
                        to,
                        body: body(&self.shared.tag, key, self.shared.message_bytes),
                        allow_group_ack,
                    };
                    let scheduled = self.instant(scheduled);
                    let event = Event::Sent {
                        key,
                        chat,
                        conv: index,
                        scheduled,
                        at: scheduled,
                        waited_login: false,
                    };
                    self.send(op, Some(event));
                }
                Action::ReadAck { conv, mid, key } => {
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
                        at: Instant::now(),
                    };
                    self.send(Op::Read { chat, mid, to }, Some(event));
                }
                Action::ChannelAck { conv } => {
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
                        at: Instant::now(),
                    };
                    self.send(Op::Channel { chat, to }, Some(event));
                }
                Action::Read { conv } => self.emit(Event::Read {
                    group: matches!(conv, Conv::Group(_)),
                }),
                Action::Skipped(n) => self.emit(Event::Skipped(n)),
                Action::Offline => self.close_all(),
                Action::Online => self.connect_all(ctx),
            }
        }
        self.actions = actions;
        self.actions.clear();
    }

    fn close_all(&mut self) {
        self.pending.clear();
        for d in &mut self.devices {
            if let Some(out) = d.out.take() {
                let _ = out.send(Op::Close);
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
        let world = self.shared.world.clone();
        match t.event {
            Inbound::Message {
                mid,
                from,
                to,
                chat,
                body,
                receipts,
            } => {
                let now = t.at.saturating_duration_since(self.shared.start).as_micros() as Micros;
                if chat == ChatType::Single && world.delivery[self.ix as usize] && self.sim.acks_allowed(now) {
                    let to_user: Arc<str> = world
                        .user_index(&from)
                        .map_or_else(|| Arc::from(from.as_str()), |i| world.users[i as usize].clone());
                    let op = Op::Delivery { mid, to: to_user };
                    match &self.devices[dev].out {
                        Some(out) if !primary => {
                            let _ = out.send(op);
                        }
                        _ => {
                            let key = parse_body(&self.shared.tag, &body);
                            let event = Event::AckSent {
                                reader: self.ix,
                                kind: AckKind::Delivery,
                                key,
                                conv: 0,
                                at: t.at,
                            };
                            self.send(op, Some(event));
                        }
                    }
                }
                if !primary {
                    return;
                }
                let conv = match chat {
                    ChatType::Single => world.user_index(&from).map(Conv::Peer),
                    ChatType::Group => world.group_index(&to).map(Conv::Group),
                };
                if let (Some(conv), Some(key)) = (conv, parse_body(&self.shared.tag, &body)) {
                    self.sim.on_message(now, mid, key, conv, receipts, &mut self.actions);
                    self.perform(ctx);
                    self.arm(ctx);
                }
            }
            _ if !primary => {}
            Inbound::Accepted { seq, mid, group_ack } => {
                let key = MsgKey { sender: self.ix, seq };
                self.emit(Event::Accepted {
                    key,
                    mid,
                    at: t.at,
                    group_ack,
                });
            }
            Inbound::Delivery { mid, ref from, .. } | Inbound::Read { mid, ref from, .. } => {
                let (kind, count) = match t.event {
                    Inbound::Delivery { .. } => (ReceiptKind::Delivery, None),
                    Inbound::Read { count: None, .. } => (ReceiptKind::Read, None),
                    Inbound::Read { count, .. } => (ReceiptKind::GroupRead, count),
                    _ => unreachable!("matched above"),
                };
                let from = world.user_index(from).unwrap_or(u32::MAX);
                self.emit(Event::Receipt {
                    user: self.ix,
                    kind,
                    mid,
                    from,
                    count,
                    at: t.at,
                });
            }
            Inbound::Channel { id, from, .. } => {
                // Our own ack echoed to this user's other devices is not a receipt.
                if let Some(from) = world.user_index(&from).filter(|f| *f != self.ix) {
                    self.emit(Event::ChannelPush {
                        user: self.ix,
                        from,
                        id,
                        at: t.at,
                    });
                }
            }
            Inbound::Statistic(entries) => {
                let counts = entries.into_iter().map(|(mid, _, count)| (mid, count)).collect();
                self.emit(Event::Statistic {
                    user: self.ix,
                    counts,
                    at: t.at,
                });
            }
            Inbound::Error { code, op, .. } => self.emit(Event::Error { code, op, at: t.at }),
            Inbound::Acked { .. } | Inbound::Result | Inbound::Pong | Inbound::Kicked | Inbound::Closed => {}
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
            let was_open = self.devices[dev].out.take().is_some();
            // A closed connection we did not close (the server dropped it, or kicked it).
            self.emit(Event::Disconnected {
                user: self.ix,
                expected: !was_open || self.closing,
            });
            if dev == 0 {
                self.pending.clear();
            }
            return;
        }
        self.on_inbound(dev, t, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // A connection's stream ended; the actor lives on (the user may reconnect).
    }
}

impl Handler<Stop> for UserActor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.closing = true;
        self.close_all();
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
