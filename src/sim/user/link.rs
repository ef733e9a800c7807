//! A user's connections and requests: connecting and reconnecting with backoff, numbering
//! every request and keeping it until its reply (resending it on the next connection when
//! the old one died), and the faults that reset or stall connections.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use rand::RngExt;

use super::{Built, Deferred, InFlight, UserActor, What, requests};
use crate::collector::{Event, ReqKind};
use crate::sim::behaviour::{Action, Micros, MsgKey};
use crate::sim::faults::{FaultAction, Planned};
use crate::transport::{Command, LoginSpec, Op, Reply};

impl UserActor {
    pub(super) fn connect_all(&mut self, ctx: &mut Context<Self>) {
        for dev in 0..self.devices.len() {
            self.connect(dev, ctx);
        }
    }

    pub(super) fn connect(&mut self, dev: usize, ctx: &mut Context<Self>) {
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
        let world = &self.shared.world;
        let spec = LoginSpec {
            user: self.id.clone(),
            device: Arc::from(format!("d{dev}")),
            delivery: world.delivery[self.ix as usize],
            groups: world.memberships[self.ix as usize]
                .iter()
                .map(|(g, _)| world.groups[*g as usize].id.clone())
                .collect(),
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
    pub(super) fn retry_later(&mut self, dev: usize, ctx: &mut Context<Self>) {
        let Some(backoff) = self.shared.cfg.reconnect.filter(|_| self.wanted()) else {
            self.abandon(dev);
            return;
        };
        let u: f64 = self.rng.random();
        let d = &mut self.devices[dev];
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
    pub(super) fn abandon(&mut self, dev: usize) {
        let reqs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.dev as usize == dev)
            .map(|(r, _)| r)
            .collect();
        for req in reqs {
            let f = self.in_flight.remove(req).expect("listed");
            self.settle_unanswered(f, true);
        }
    }

    /// Reports a request that will get no reply.
    pub(super) fn settle_unanswered(&mut self, f: InFlight, in_disconnect: bool) {
        let (kind, ..) = f.filing(self.ix);
        if let Some(left) = f.left() {
            self.emit(Event::Unanswered {
                user: self.ix,
                kind,
                in_disconnect,
                left,
            });
        } else if kind == ReqKind::Send {
            self.waiting_sends -= 1;
            self.emit(Event::Skipped {
                n: 1,
                disconnected: true,
            });
        }
    }

    /// Writes everything waiting for `dev`'s connection, oldest first (resends included).
    pub(super) fn flush(&mut self, dev: usize) {
        let Some(out) = self.devices[dev].out.clone() else {
            return;
        };
        let now = self.now();
        let mut resent = 0;
        let mut events = Vec::new();
        let shared = self.shared.clone();
        for (n, f) in self.in_flight.iter_mut().filter(|(_, f)| f.dev as usize == dev) {
            if let What::Planned(p) = &f.what {
                let r = requests::of_action(self.ix, p.action(), &shared.world, &shared.tag, shared.message_bytes)
                    .expect("only sends and acks are planned");
                f.what = What::Out {
                    req: Box::new(Built {
                        kind: r.kind,
                        key: r.key,
                        conv: r.conv,
                        op: r.op,
                        event: Some(r.event),
                    }),
                    left: None,
                };
            }
            let What::Out { req, left } = &mut f.what else {
                unreachable!("built above")
            };
            if out
                .send(Command::Request {
                    req: n,
                    op: req.op.clone(),
                })
                .is_err()
            {
                break;
            }
            if left.replace(now).is_some() {
                resent += 1;
                continue;
            }
            if req.kind == ReqKind::Send {
                self.waiting_sends -= 1;
            }
            events.extend(req.event.take());
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

    /// Makes the request of a send or ack action on the first device: built and written at
    /// once when its connection is up, else kept as the action until it is.
    pub(super) fn request_action(&mut self, a: Action) {
        if self.devices[0].out.is_some() {
            let s = &self.shared;
            let r = requests::of_action(self.ix, a, &s.world, &s.tag, s.message_bytes).expect("a send or ack");
            self.request(0, r.op, r.kind, r.key, r.conv, Some(r.event));
            return;
        }
        let (kind, ..) = requests::filing(self.ix, &a).expect("a send or ack");
        if self.may_wait(0, kind) {
            self.next_req += 1;
            let f = InFlight {
                dev: 0,
                what: What::Planned(Deferred::of(a)),
            };
            self.in_flight.insert(self.next_req, f);
        }
    }

    /// Whether a request of `kind` may wait for `dev`'s connection, which is down: only if it
    /// is coming back and, for a send, the outbox has room (a send that may not is reported
    /// as skipped).
    fn may_wait(&mut self, dev: usize, kind: ReqKind) -> bool {
        let d = &self.devices[dev];
        let coming = d.connecting || d.retry.is_some();
        let full = kind == ReqKind::Send && self.waiting_sends >= self.shared.cfg.outbox;
        if !coming || full {
            if kind == ReqKind::Send {
                self.emit(Event::Skipped {
                    n: 1,
                    disconnected: true,
                });
            }
            return false;
        }
        if kind == ReqKind::Send {
            self.waiting_sends += 1;
        }
        true
    }

    /// Sends `op` on `dev` (or queues it for the device's connection) and emits `event` when
    /// it actually leaves, stamped with that instant.
    pub(super) fn request(
        &mut self,
        dev: usize,
        op: Op,
        kind: ReqKind,
        key: Option<MsgKey>,
        conv: u32,
        event: Option<Event>,
    ) -> Option<u64> {
        if self.devices[dev].out.is_none() && !self.may_wait(dev, kind) {
            return None;
        }
        self.next_req += 1;
        let req = self.next_req;
        let out = self.devices[dev].out.as_ref();
        let connected = out.is_some();
        let written = out.is_some_and(|out| out.send(Command::Request { req, op: op.clone() }).is_ok());
        if connected && !written && kind == ReqKind::Send {
            // Its connection closed under it: it waits for the next one like any other.
            self.waiting_sends += 1;
        }
        let left = written.then(|| self.now());
        let event = if let Some(now) = left {
            if let Some(mut e) = event {
                if let Event::Sent { at, .. } | Event::AckSent { at, .. } = &mut e {
                    *at = now;
                }
                self.emit(e);
            }
            None
        } else {
            event
        };
        let f = InFlight {
            dev: dev as u8,
            what: What::Out {
                req: Box::new(Built {
                    kind,
                    key,
                    conv,
                    op,
                    event,
                }),
                left,
            },
        };
        self.in_flight.insert(req, f);
        Some(req)
    }

    pub(super) fn on_reply(&mut self, req: Option<u64>, reply: Reply, at: Micros) {
        let refused = match &reply {
            Reply::Error { refusal, .. } => Some(*refusal),
            _ => None,
        };
        let Some(f) = req.and_then(|r| self.in_flight.remove(r)) else {
            self.emit(Event::StrayReply {
                user: self.ix,
                duplicated: req.is_some_and(|r| r <= self.next_req),
                refused,
            });
            return;
        };
        let (kind, key, conv) = f.filing(self.ix);
        if let (
            ReqKind::Send,
            Reply::Accepted {
                mid,
                group_ack: Some(true),
                ..
            },
            Some(key),
        ) = (kind, &reply, key)
        {
            self.remember_receipted(mid.clone(), key, conv);
        }
        if let Some(q) = req.and_then(|r| self.queries.remove(&r)) {
            self.next_page(q, &reply, at);
        }
        let answer = super::requests::answer(reply);
        self.emit(Event::Replied {
            user: self.ix,
            kind,
            key,
            conv,
            answer,
            at,
        });
    }

    /// Injects a planned fault (a reset connection, or sockets that stop being read).
    pub(super) fn fault(&mut self, f: Planned, ctx: &mut Context<Self>) {
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
    pub(super) fn close_all(&mut self, ctx: &mut Context<Self>) {
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

    /// A connection the simulation did not close ended (the server or the network closed
    /// it, or a fault reset it). Unanswered requests wait for the reconnect to be resent.
    pub(super) fn on_dropped(&mut self, dev: usize, at: Micros, ctx: &mut Context<Self>) {
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
}
