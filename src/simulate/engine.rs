//! The discrete-event loop of a simulation.
//!
//! One queue of timed events, popped in time order (ties in the order they were queued): a
//! user's planned start, its behaviour's next due time, a frame reaching the server, a frame
//! reaching a device. Nothing waits on a wall-clock timer and there is no task per user: a
//! simulated hour takes as long as its events take to handle, and the same seed gives the
//! same run. (Tokio's paused clock was the other choice: it would run the actors as they are,
//! but one task and channel per user and per connection cost several times more per event,
//! and a paused runtime only jumps the clock once every task is idle.)

use std::sync::Arc;

use super::client::{Client, Env, Leave};
use super::folder::{Sink, with_sink};
use super::model::{Cores, Job, Model, Network};
use super::queue::Queue;
use super::server::Server;
use crate::collector::{Event, Inline};
use crate::sim::behaviour::{Action, Micros, SimConfig};
use crate::sim::world::World;
use crate::transport::{Inbound, LoginSpec, Op};

/// What happens at a point of virtual time.
enum Ev {
    /// A user's planned start.
    Start(u32),
    /// A user's behaviour is due (stale when the user re-armed since).
    Due(u32),
    /// A frame reaches the server.
    AtServer(u32, u8, Frame),
    /// A frame reaches a device (on the client's connection `generation`); `read` once the
    /// generator sharing the cores has spent its time on it.
    AtClient {
        user: u32,
        dev: u8,
        generation: u32,
        what: Delivery,
        read: bool,
    },
}

enum Frame {
    Login(u32),
    Request(u64, Op),
    Logout,
}

enum Delivery {
    LoggedIn,
    Inbound(Inbound),
}

/// What the engine was given.
pub(super) struct Setup {
    /// The seeded world.
    pub world: Arc<World>,
    /// Behaviour settings.
    pub cfg: Arc<SimConfig>,
    /// The cost model.
    pub model: Model,
    /// Devices per user.
    pub devices: u8,
    /// Message body size.
    pub message_bytes: usize,
    /// The run's tag.
    pub tag: String,
    /// When the run stops (traffic and drain).
    pub end: Micros,
    /// The workload's seed (the network's draws come from it).
    pub seed: u64,
}

/// Counts of one second of the simulation.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Second {
    /// Frames the server read.
    pub frames_in: u64,
    /// Frames the server wrote (replies and pushes).
    pub frames_out: u64,
    /// Receipt pushes routed (delivery, read, channel, group counts).
    pub receipts: u64,
}

/// What a simulation hands back.
pub(super) struct Outcome {
    /// Events handled.
    pub events: u64,
    /// Per second of run time.
    pub seconds: Vec<Second>,
    /// Cores busy per second: (server, generator).
    pub busy: Vec<(f64, f64)>,
}

/// The loop and everything it owns.
pub(super) struct Engine {
    s: Setup,
    clients: Vec<Option<Client>>,
    armed: Vec<Micros>,
    queue: Queue<Ev>,
    now: Micros,
    cores: Cores,
    net: Network,
    seconds: Vec<Second>,
    events: Vec<Event>,
    out: Vec<Leave>,
    actions: Vec<Action>,
    pushes: Vec<(u64, u32, Inbound)>,
    handled: u64,
}

impl Engine {
    /// An engine with every user's start queued.
    pub(super) fn new(s: Setup) -> Engine {
        let n = s.world.users.len();
        let m = &s.model;
        let cores = Cores::new(
            m.cores,
            m.server_base_cores + if m.colocated { m.tester_base_cores } else { 0.0 },
        );
        let net = Network::new(&s.model, n * usize::from(s.devices.max(1)), s.seed);
        let mut e = Engine {
            clients: (0..n).map(|_| None).collect(),
            armed: vec![Micros::MAX; n],
            queue: Queue::with_capacity(n * 2),
            now: 0,
            cores,
            net,
            seconds: Vec::new(),
            events: Vec::new(),
            out: Vec::new(),
            actions: Vec::new(),
            pushes: Vec::new(),
            handled: 0,
            s,
        };
        for ix in 0..n {
            let planned = e.s.world.planned_start[ix];
            if planned != std::time::Duration::MAX {
                e.at(planned.as_micros() as Micros, Ev::Start(ix as u32));
            }
        }
        e
    }

    /// Queues `ev` at `t`; what would happen after the run's end never happens, so it is not
    /// kept (the loop stops at the first event past the end).
    fn at(&mut self, t: Micros, ev: Ev) {
        if t <= self.s.end {
            self.queue.push(t, ev);
        }
    }

    fn second(&mut self, t: Micros) -> &mut Second {
        let sec = (t / 1_000_000) as usize;
        if self.seconds.len() <= sec {
            self.seconds.resize(sec + 1, Second::default());
        }
        &mut self.seconds[sec]
    }

    /// Runs to the end, folding every event into `fold`.
    pub(super) fn run(self, server: &mut Server, fold: &mut Inline) -> Outcome {
        with_sink(fold, |sink| self.run_into(server, sink))
    }

    fn run_into(mut self, server: &mut Server, fold: &mut Sink<'_>) -> Outcome {
        let mut next_tick: Micros = 1_000_000;
        while let Some((t, ev)) = self.queue.pop() {
            self.now = t;
            while next_tick <= self.now {
                fold.tick(next_tick);
                next_tick += 1_000_000;
            }
            self.handled += 1;
            match ev {
                Ev::Start(u) => {
                    let c = Client::new(u, self.s.cfg.clone(), self.s.world.clone(), self.s.devices);
                    self.clients[u as usize] = Some(c);
                    self.turn(u, server, fold, |c, env| c.start(env));
                }
                Ev::Due(u) => {
                    if self.armed[u as usize] == self.now {
                        self.armed[u as usize] = Micros::MAX;
                        self.turn(u, server, fold, |c, env| c.tick(env));
                    }
                }
                Ev::AtServer(u, dev, frame) => self.at_server(u, dev, frame, server),
                Ev::AtClient {
                    user,
                    dev,
                    generation,
                    what,
                    read,
                } => {
                    if !read && self.s.model.colocated {
                        let done = self.cores.run(self.now, self.s.model.tester_frame_us, Job::Tester);
                        if done > self.now {
                            let ev = Ev::AtClient {
                                user,
                                dev,
                                generation,
                                what,
                                read: true,
                            };
                            self.at(done, ev);
                            continue;
                        }
                    }
                    self.turn(user, server, fold, |c, env| match what {
                        Delivery::LoggedIn => c.logged_in(dev, generation, env),
                        Delivery::Inbound(i) => c.inbound(dev, generation, i, env),
                    });
                }
            }
        }
        // The run is over: every user stops (what was never answered is reported).
        self.now = self.s.end;
        while next_tick <= self.now {
            fold.tick(next_tick);
            next_tick += 1_000_000;
        }
        for u in 0..self.clients.len() as u32 {
            if self.clients[u as usize].is_some() {
                self.turn(u, server, fold, |c, env| c.stop(env));
            }
        }
        Outcome {
            events: self.handled,
            seconds: self.seconds,
            busy: self.cores.busy_per_sec(),
        }
    }

    /// Gives user `u` a turn at the current time, then folds what it emitted, routes what it
    /// sent and sets its next due time.
    fn turn(&mut self, u: u32, server: &mut Server, fold: &mut Sink<'_>, f: impl FnOnce(&mut Client, &mut Env<'_>)) {
        let Some(client) = self.clients[u as usize].as_mut() else {
            return;
        };
        let mut env = Env {
            now: self.now,
            world: &self.s.world,
            cfg: &self.s.cfg,
            tag: &self.s.tag,
            message_bytes: self.s.message_bytes,
            events: &mut self.events,
            out: &mut self.out,
            actions: &mut self.actions,
        };
        f(client, &mut env);
        let due = client.next_due();
        for e in self.events.drain(..) {
            fold.event(e);
        }
        let mut out = std::mem::take(&mut self.out);
        for leave in out.drain(..) {
            self.route(u, leave, server);
        }
        self.out = out;
        if let Some(due) = due
            && due < self.armed[u as usize]
        {
            // A timer fires at its next tick, not at the instant it was set for.
            let tick = self.s.model.timer_us;
            let due = if tick > 0 { due.next_multiple_of(tick) } else { due }.max(self.now);
            self.armed[u as usize] = due;
            self.at(due, Ev::Due(u));
        }
    }

    /// Sends what a user's turn let go towards the server.
    fn route(&mut self, u: u32, leave: Leave, server: &mut Server) {
        let sent = |e: &mut Engine, dev: u8| {
            let t = if e.s.model.colocated {
                e.cores.run(e.now, e.s.model.tester_frame_us, Job::Tester)
            } else {
                e.now
            };
            let id = e.device_id(u, dev) as usize;
            e.net.up(id, t)
        };
        match leave {
            Leave::Login { dev } => {
                let generation = self.clients[u as usize].as_ref().map_or(0, |c| c.generation(dev));
                let t = sent(self, dev);
                self.at(t, Ev::AtServer(u, dev, Frame::Login(generation)));
            }
            Leave::Request { dev, req, op } => {
                let t = sent(self, dev);
                self.at(t, Ev::AtServer(u, dev, Frame::Request(req, op)));
            }
            Leave::Close { dev } => {
                if self.now >= self.s.end {
                    server.logout(self.device_id(u, dev));
                } else {
                    let t = self.net.up(self.device_id(u, dev) as usize, self.now);
                    self.at(t, Ev::AtServer(u, dev, Frame::Logout));
                }
            }
        }
    }

    fn device_id(&self, u: u32, dev: u8) -> u64 {
        u64::from(u) * u64::from(self.s.devices.max(1)) + u64::from(dev)
    }

    fn device_of(&self, id: u64) -> (u32, u8) {
        let n = u64::from(self.s.devices.max(1));
        ((id / n) as u32, (id % n) as u8)
    }

    /// A frame reaches the server: the hub handles it now; its reply and pushes leave once a
    /// core has done the work.
    fn at_server(&mut self, u: u32, dev: u8, frame: Frame, server: &mut Server) {
        server.set_now(self.now);
        let id = self.device_id(u, dev);
        let model = &self.s.model;
        let (reply, generation) = match frame {
            Frame::Logout => {
                server.logout(id);
                return;
            }
            Frame::Login(generation) => {
                let world = &self.s.world;
                let spec = LoginSpec {
                    user: world.users[u as usize].clone(),
                    device: Arc::from(format!("d{dev}")),
                    delivery: world.delivery[u as usize],
                    groups: Arc::from([]),
                };
                match server.login(id, generation, &spec) {
                    Ok(()) => (Some(Delivery::LoggedIn), generation),
                    Err(error) => {
                        self.events.push(Event::ConnectFailed { user: u, error });
                        return;
                    }
                }
            }
            Frame::Request(req, op) => match server.request(id, req, &op) {
                Some((generation, reply)) => (reply.map(Delivery::Inbound), generation),
                None => return,
            },
        };
        let mut pushes = std::mem::take(&mut self.pushes);
        let written = server.drain(|id, g, i| pushes.push((id, g, i)));
        let cost = model.frame_in_us + model.frame_out_us * (1 + written) as f64;
        let done = self.cores.run(self.now, cost, Job::Server);
        let receipts = pushes
            .iter()
            .filter(|(_, _, i)| !matches!(i, Inbound::Message { .. }))
            .count() as u64;
        let s = self.second(self.now);
        s.frames_in += 1;
        s.frames_out += 1 + written as u64;
        s.receipts += receipts;
        if let Some(what) = reply {
            let arrive = self.net.down(id as usize, done);
            self.deliver(arrive, u, dev, generation, what);
        }
        for (to, g, inbound) in pushes.drain(..) {
            let (user, dev) = self.device_of(to);
            let arrive = self.net.down(to as usize, done);
            self.deliver(arrive, user, dev, g, Delivery::Inbound(inbound));
        }
        self.pushes = pushes;
    }

    fn deliver(&mut self, t: Micros, user: u32, dev: u8, generation: u32, what: Delivery) {
        let ev = Ev::AtClient {
            user,
            dev,
            generation,
            what,
            read: false,
        };
        self.at(t, ev);
    }
}
