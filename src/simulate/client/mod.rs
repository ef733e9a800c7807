//! One simulated user in virtual time: what the user actor does around its [`UserSim`], on a
//! link that never fails (no sockets, no faults).
//!
//! The behaviour is `sim/behaviour.rs` itself, not a copy: this module only turns its
//! [`Action`]s into requests, numbers them and keeps each until its reply, sends the delivery
//! receipts [`UserSim::on_push`] says a push is owed, fetches reader lists, and emits the
//! same collector [`Event`]s the actor emits, with the same times (the virtual clock's). It
//! does no I/O: what leaves is handed back as [`Leave`] for the engine to route.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;

mod inbound;
use inbound::Query;
use smallvec::SmallVec;

use crate::collector::{Event, ReqKind};
use crate::sim::behaviour::{Action, Conv, Micros, MsgKey, SimConfig, UserSim};
use crate::sim::user::requests;
use crate::sim::world::World;
use crate::transport::{MsgId, Op};

/// Group messages with receipts a user remembers until their first count (as the actor).
const RECEIPTED: usize = 4096;

/// What a user's turn sends on its way, for the engine to route.
#[derive(Debug)]
pub(super) enum Leave {
    /// Device `dev` connects and logs in.
    Login {
        /// Device.
        dev: u8,
    },
    /// A request on device `dev`'s connection.
    Request {
        /// Device.
        dev: u8,
        /// Its number.
        req: u64,
        /// What it asks.
        op: Op,
    },
    /// Device `dev` closes its connection.
    Close {
        /// Device.
        dev: u8,
    },
}

/// What a user's turn needs from the run: the world, the time, and where events and frames go.
pub(super) struct Env<'a> {
    /// Now, on the run clock.
    pub now: Micros,
    /// The seeded world.
    pub world: &'a World,
    /// Behaviour settings.
    pub cfg: &'a SimConfig,
    /// The run's tag (first in message bodies and client ids).
    pub tag: &'a str,
    /// Message body size.
    pub message_bytes: usize,
    /// Events for the collector, in time order.
    pub events: &'a mut Vec<Event>,
    /// Frames and connection changes leaving.
    pub out: &'a mut Vec<Leave>,
    /// Scratch for the behaviour's actions.
    pub actions: &'a mut Vec<Action>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Device {
    up: bool,
    connecting: bool,
    logged_in_once: bool,
    /// Bumped per connection, so what reaches a closed one is told apart.
    generation: u32,
}

#[derive(Debug)]
struct InFlight {
    dev: u8,
    op: Op,
    kind: ReqKind,
    key: Option<MsgKey>,
    conv: u32,
    /// When it was last written (µs on the run clock; `None`: not written yet).
    left: Option<Micros>,
    event: Option<Event>,
}

/// Requests in flight, by number. Numbers only grow and replies come back mostly in order,
/// so a queue in number order, searched from its front, beats a hash map (and iterates in
/// number order, oldest first).
#[derive(Debug, Default)]
struct Pending(VecDeque<(u64, InFlight)>);

impl Pending {
    /// Adds request `req`, numbered after every request in it.
    fn push(&mut self, req: u64, f: InFlight) {
        debug_assert!(self.0.back().is_none_or(|(r, _)| *r < req));
        self.0.push_back((req, f));
    }

    fn find(&self, req: u64) -> Option<usize> {
        match self.0.front() {
            Some((r, _)) if *r == req => Some(0),
            _ => self.0.binary_search_by_key(&req, |(r, _)| *r).ok(),
        }
    }

    fn remove(&mut self, req: u64) -> Option<InFlight> {
        let i = self.find(req)?;
        self.0.remove(i).map(|(_, f)| f)
    }

    /// Everything, oldest first, leaving it empty.
    fn take_all(&mut self) -> Vec<InFlight> {
        self.0.drain(..).map(|(_, f)| f).collect()
    }
}

/// One user: its behaviour, its devices and its requests in flight.
#[derive(Debug)]
pub(super) struct Client {
    ix: u32,
    sim: UserSim,
    devices: SmallVec<[Device; 1]>,
    next_req: u64,
    in_flight: Pending,
    waiting_sends: usize,
    receipted: FxHashMap<MsgId, (MsgKey, u32)>,
    receipted_order: VecDeque<MsgId>,
    queries: FxHashMap<u64, Query>,
    closing: bool,
}

impl Client {
    /// User `ix` with `devices` devices.
    pub(super) fn new(ix: u32, cfg: Arc<SimConfig>, world: Arc<World>, devices: u8) -> Client {
        Client {
            ix,
            sim: UserSim::new(ix, cfg, world),
            devices: (0..devices.max(1)).map(|_| Device::default()).collect(),
            next_req: 0,
            in_flight: Pending::default(),
            waiting_sends: 0,
            receipted: FxHashMap::default(),
            receipted_order: VecDeque::new(),
            queries: FxHashMap::default(),
            closing: false,
        }
    }

    /// When the behaviour next has something to do.
    pub(super) fn next_due(&self) -> Option<Micros> {
        self.sim.next_due()
    }

    /// The device's current connection.
    pub(super) fn generation(&self, dev: u8) -> u32 {
        self.devices[dev as usize].generation
    }

    /// The user's planned start: connect (when online) and run the behaviour.
    pub(super) fn start(&mut self, env: &mut Env<'_>) {
        if self.sim.online() {
            self.connect_all(env);
        }
        self.tick(env);
    }

    /// Runs the behaviour up to now.
    pub(super) fn tick(&mut self, env: &mut Env<'_>) {
        self.sim.advance(env.now, env.actions);
        self.perform(env);
    }

    fn connect_all(&mut self, env: &mut Env<'_>) {
        for dev in 0..self.devices.len() as u8 {
            let d = &mut self.devices[dev as usize];
            if d.up || d.connecting {
                continue;
            }
            d.connecting = true;
            d.generation += 1;
            env.out.push(Leave::Login { dev });
        }
    }

    fn close_all(&mut self, env: &mut Env<'_>) {
        for dev in 0..self.devices.len() as u8 {
            let d = &mut self.devices[dev as usize];
            let was_up = d.up;
            if d.up || d.connecting {
                d.up = false;
                d.connecting = false;
                d.generation += 1;
                env.out.push(Leave::Close { dev });
            }
            if was_up {
                env.events.push(Event::Disconnected {
                    user: self.ix,
                    dev,
                    at: env.now,
                    expected: true,
                });
            }
        }
        if env.cfg.reconnect.is_none() {
            for f in self.in_flight.take_all() {
                self.settle_unanswered(f, true, env);
            }
        }
    }

    /// `loginOk` reached device `dev` on connection `generation`.
    pub(super) fn logged_in(&mut self, dev: u8, generation: u32, env: &mut Env<'_>) {
        let d = &mut self.devices[dev as usize];
        if d.generation != generation || !d.connecting {
            return;
        }
        d.connecting = false;
        if self.closing || !self.sim.online() {
            d.generation += 1;
            env.out.push(Leave::Close { dev });
            return;
        }
        d.up = true;
        let first = !d.logged_in_once;
        d.logged_in_once = true;
        env.events.push(Event::Connected {
            user: self.ix,
            dev,
            at: env.now,
            first,
            reconnect: None,
        });
        self.flush(dev, env);
    }

    /// Writes what waited for device `dev`'s connection, oldest first.
    fn flush(&mut self, dev: u8, env: &mut Env<'_>) {
        let mut resent = 0;
        for (req, f) in self.in_flight.0.iter_mut() {
            if f.dev != dev {
                continue;
            }
            let req = *req;
            env.out.push(Leave::Request {
                dev,
                req,
                op: f.op.clone(),
            });
            if f.left.replace(env.now).is_some() {
                resent += 1;
                continue;
            }
            if f.kind == ReqKind::Send {
                self.waiting_sends -= 1;
            }
            if let Some(mut e) = f.event.take() {
                if let Event::Sent { at, waited, .. } | Event::AckSent { at, waited, .. } = &mut e {
                    *at = env.now;
                    *waited = true;
                }
                env.events.push(e);
            }
        }
        if resent > 0 {
            env.events.push(Event::Resent { n: resent });
        }
    }

    /// Sends `op` on `dev`, or keeps it for the connection being opened.
    fn request(
        &mut self,
        dev: u8,
        op: Op,
        (kind, key, conv): (ReqKind, Option<MsgKey>, u32),
        mut event: Option<Event>,
        env: &mut Env<'_>,
    ) -> Option<u64> {
        let d = self.devices[dev as usize];
        if !d.up {
            let full = kind == ReqKind::Send && self.waiting_sends >= env.cfg.outbox;
            if !d.connecting || full {
                if kind == ReqKind::Send {
                    env.events.push(Event::Skipped {
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
        if d.up {
            env.out.push(Leave::Request {
                dev,
                req,
                op: op.clone(),
            });
            if let Some(mut e) = event.take() {
                if let Event::Sent { at, .. } | Event::AckSent { at, .. } = &mut e {
                    *at = env.now;
                }
                env.events.push(e);
            }
        }
        self.in_flight.push(
            req,
            InFlight {
                dev,
                op,
                kind,
                key,
                conv,
                left: d.up.then_some(env.now),
                event,
            },
        );
        Some(req)
    }

    fn settle_unanswered(&mut self, f: InFlight, in_disconnect: bool, env: &mut Env<'_>) {
        if let Some(left) = f.left {
            env.events.push(Event::Unanswered {
                user: self.ix,
                kind: f.kind,
                in_disconnect,
                left,
            });
        } else if f.kind == ReqKind::Send {
            self.waiting_sends -= 1;
            env.events.push(Event::Skipped {
                n: 1,
                disconnected: true,
            });
        }
    }

    fn perform(&mut self, env: &mut Env<'_>) {
        let mut actions = std::mem::take(env.actions);
        for a in actions.drain(..) {
            self.act(a, env);
        }
        *env.actions = actions;
    }

    fn act(&mut self, a: Action, env: &mut Env<'_>) {
        let world = env.world;
        match a {
            a @ (Action::Send { .. } | Action::ReadAck { .. } | Action::ChannelAck { .. }) => {
                let Ok(r) = requests::of_action(self.ix, a, world, env.tag, env.message_bytes) else {
                    unreachable!("sends and acks are requests")
                };
                self.request(0, r.op, (r.kind, r.key, r.conv), Some(r.event), env);
            }
            Action::Read { conv } => env.events.push(Event::Read {
                group: matches!(conv, Conv::Group(_)),
            }),
            Action::Skipped(n) => env.events.push(Event::Skipped { n, disconnected: false }),
            Action::Offline => self.close_all(env),
            Action::Online => self.connect_all(env),
            // Profiles with faults are refused before a simulation starts.
            Action::Fault(_) => {}
            Action::ReadUsers { key, mid, group, page } => {
                let q = Query {
                    key,
                    mid,
                    group,
                    page,
                    started: env.now,
                    page_sent: env.now,
                    pages: Vec::new(),
                    users: Vec::new(),
                    unknown: 0,
                };
                self.ask_page(q, None, env);
            }
        }
    }

    /// The run is over: what was never answered is reported, connections close.
    pub(super) fn stop(&mut self, env: &mut Env<'_>) {
        self.closing = true;
        for f in self.in_flight.take_all() {
            let down = !self.devices[f.dev as usize].up;
            self.settle_unanswered(f, down, env);
        }
        self.close_all(env);
    }
}
