//! The server side of a simulation: the reference server's hub, on the virtual clock, with one
//! watched queue per device instead of a socket.
//!
//! Frames go through the very codecs a socket run uses: a request is encoded by the native
//! driver, parsed by the server's protocol code, handled by the hub, and its reply and pushes
//! are encoded by the hub and decoded by the native driver. So receipts, unread counts, group
//! counts, offline storage and replay are the reference server's own, and the frame counters
//! (the tester's and the server's `/metrics`) count what a socket run would.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::protocol::client::{CLIENT_OPS, Request};
use crate::protocol::server::SERVER_OPS;
use crate::protocol::token;
use crate::server::ServerConfig;
use crate::server::hub::{Hub, Login, Session};
use crate::server::metrics::Metrics;
use crate::server::outbox::{Outbox, Push, QueueBound, Woken};
use crate::server::store::MemoryStore;
use crate::sim::behaviour::Micros;
use crate::transport::native::{decode, encode, login_frame};
use crate::transport::{FrameStats, Inbound, LoginSpec, Op};

/// A device's connection as the server holds it.
struct Conn {
    session: Session,
    outbox: Outbox,
    /// The client's connection number it belongs to.
    generation: u32,
}

/// The reference server in virtual time.
pub(super) struct Server {
    hub: Hub<MemoryStore>,
    /// Milliseconds since the Unix epoch, the hub's clock.
    clock: Arc<AtomicU64>,
    zero_ms: u64,
    woken: Woken,
    conns: FxHashMap<u64, Conn>,
    secret: Vec<u8>,
    /// The tester's frame counters (what a native driver counts).
    stats: Arc<FrameStats>,
    drained: Vec<u64>,
}

impl Server {
    /// A fresh reference server with `config`, whose clock reads `zero_ms` at run time 0.
    pub(super) fn new(config: ServerConfig, zero_ms: u64) -> Server {
        let clock = Arc::new(AtomicU64::new(zero_ms));
        let read = clock.clone();
        let secret = config.secret.clone();
        let metrics = Arc::new(Metrics::new(config.build_info_labels()));
        let store = MemoryStore::new(config.limits);
        let hub = Hub::with_clock(
            Arc::new(config),
            metrics,
            store,
            Arc::new(move || read.load(Ordering::Relaxed)),
        );
        Server {
            hub,
            clock,
            zero_ms,
            woken: Arc::new(Mutex::new(Vec::new())),
            conns: FxHashMap::default(),
            secret,
            stats: Arc::new(FrameStats::new(&CLIENT_OPS, &SERVER_OPS)),
            drained: Vec::new(),
        }
    }

    /// The tester's frame counters.
    pub(super) fn stats(&self) -> &Arc<FrameStats> {
        &self.stats
    }

    /// The server's `/metrics` text.
    pub(super) fn metrics_text(&self) -> String {
        self.hub.render_metrics()
    }

    /// Sets the hub's clock to run time `t`.
    pub(super) fn set_now(&self, t: Micros) {
        self.clock.store(self.zero_ms + t / 1000, Ordering::Relaxed);
    }

    /// Device connection `id` (of the client's connection `generation`) logs in. An error is
    /// the server's refusal.
    pub(super) fn login(&mut self, id: u64, generation: u32, spec: &LoginSpec) -> Result<(), String> {
        let (op, text) = login_frame(spec, token::token(&self.secret, &spec.user));
        self.stats.sent(op, text.len());
        let metrics = self.hub.metrics().clone();
        metrics.frame_in(Some(op), text.len());
        let request = Request::parse(&text).map_err(|e| e.to_string())?;
        let outbox = Outbox::watched(QueueBound::NONE, id, self.woken.clone());
        let conn = self.hub.next_conn();
        match self.hub.login(conn, &outbox, &request) {
            Login::Accepted(session, reply) => {
                let text = reply.encode();
                metrics.frame_out(reply.frame.op_index(), text.len());
                self.stats.received(reply.frame.op_index(), text.len());
                if let Some(old) = self.conns.insert(
                    id,
                    Conn {
                        session,
                        outbox,
                        generation,
                    },
                ) {
                    self.hub.logout(&old.session, &old.outbox);
                }
                Ok(())
            }
            Login::Refused(reply) => {
                let text = reply.encode();
                metrics.frame_out(reply.frame.op_index(), text.len());
                Err(text)
            }
        }
    }

    /// A request on device `id`'s connection: the connection's generation and the reply as
    /// the client reads it (`None` inside: not one it can use). `None`: the device is not
    /// connected (its connection closed while the frame was on its way).
    pub(super) fn request(&mut self, id: u64, req: u64, op: &Op) -> Option<(u32, Option<Inbound>)> {
        let conn = self.conns.get(&id)?;
        let (op_index, text) = encode(req, op);
        self.stats.sent(op_index, text.len());
        let metrics = self.hub.metrics();
        metrics.frame_in(Some(op_index), text.len());
        let Ok(request) = Request::parse(&text) else {
            return Some((conn.generation, None));
        };
        let reply = self.hub.handle(&conn.session, &request);
        let text = reply.encode();
        metrics.frame_out(reply.frame.op_index(), text.len());
        Some((conn.generation, decode(&text.into(), &self.stats)))
    }

    /// Device `id`'s connection closes: what it had not been sent is stored by the hub.
    pub(super) fn logout(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            self.hub.logout(&conn.session, &conn.outbox);
        }
    }

    /// Every push queued since the last call, per device in queue order: `(device id, its
    /// connection's generation, what the client reads)`. Returns how many frames were sent.
    pub(super) fn drain(&mut self, mut deliver: impl FnMut(u64, u32, Inbound)) -> usize {
        std::mem::swap(&mut self.drained, &mut *self.woken.lock());
        let mut sent = 0;
        let metrics = self.hub.metrics().clone();
        for &id in &self.drained {
            let Some(conn) = self.conns.get(&id) else { continue };
            while let Some(push) = conn.outbox.try_pop() {
                let text = push.text();
                metrics.frame_out(push.op(), text.len());
                sent += 1;
                if let Push::Kick { .. } = push {
                    // Not in a simulation's workload: every device of a user has its own name.
                    continue;
                }
                if let Some(inbound) = decode(text, &self.stats) {
                    deliver(id, conn.generation, inbound);
                }
            }
        }
        self.drained.clear();
        sent
    }
}
