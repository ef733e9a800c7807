//! The routing hub: every rule of PROTOCOL.md that decides who gets what, in which order.
//!
//! Locking rule: one lock guards the store and the online registry together. Under it the
//! hub checks a frame, records what it changes, encodes each push once and queues it in the
//! recipients' outboxes; sockets are written by the connection tasks, never under the lock.
//! An outbox has its own small lock, taken only inside the hub's lock (or alone by its
//! connection's task), never the other way round, and never held across anything but a queue
//! operation; the connections' tasks are woken only once the hub's lock is released (see
//! `Locked`), so a group message to thousands of online members does not make system calls
//! under it. Allocating ids and queueing pushes under the hub's lock is what gives
//! per-conversation `mid` order on every device, and makes login's replay race-free; taking a
//! closing connection's unwritten pushes back under the same lock is what lets them be stored
//! with nothing newer slipping past them. The same holds for a queue that a push takes over
//! its bound: the hub takes that device offline and stores its queue within the push.
//!
//! Store failures: a frame whose store call fails is answered `internal` (counted in
//! `ackstorm_store_errors_total`), once, like any refused frame; what it had changed before
//! the failing call stays (as when the server dies mid-frame: docs/protocol.md, "Durability").
//! Where no frame waits for the answer (storing a closing connection's unwritten pushes), the
//! failure is counted and what could not be stored is lost. Never a panic.
//!
//! The hub has no sockets, so benches and unit tests drive it directly.

mod groups;
mod messages;
mod receipts;
mod session;

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::ServerConfig;
use super::metrics::{CloseReason, Metrics, UnwrittenKind};
use super::online::{ConnId, Online};
use super::outbox::{Outbox, Push};
use super::store::{Inbox, Journal, OfflineMessage, OfflineReceipt, Store, StoreError, UserId};
use crate::protocol::server::GroupReadCount;
use crate::protocol::{ChatType, ClientFrame, ErrorCode, Outgoing, Request, ServerFrame};

/// A logged-in connection, as the hub knows it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The connection.
    pub conn: ConnId,
    /// Who logged in.
    pub user: UserId,
    /// On which device.
    pub device: Arc<str>,
    /// Whether the client said it sends delivery receipts (not enforced by the server).
    pub delivery: bool,
}

/// The answer to a connection's first frame.
#[derive(Debug)]
pub enum Login<'a> {
    /// Logged in: the session and the `loginOk` reply (offline replay is already queued in
    /// the outbox, behind it).
    Accepted(Session, Outgoing<'a>),
    /// Refused: the `error` reply to send before closing.
    Refused(Outgoing<'a>),
}

/// Why a frame was refused: becomes an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Protocol error code.
    pub code: ErrorCode,
    /// Detail for humans.
    pub message: String,
}

impl From<StoreError> for Reject {
    /// A store failure: `internal` (counted by [`Hub::error_frame`]).
    fn from(e: StoreError) -> Self {
        reject(
            ErrorCode::Internal,
            format!("{e} (the frame may or may not have taken effect)"),
        )
    }
}

fn reject(code: ErrorCode, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
    }
}

type Reply<'a> = Result<ServerFrame<'a>, Reject>;

/// The hub's clock: milliseconds since the Unix epoch (server timestamps, unread-since times).
/// Passed in, so a simulation can drive the same routing rules on a virtual clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Milliseconds since the Unix epoch: the clock of a hub serving sockets.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Encodes a push once; the text is shared by every device it goes to. It may wait in
/// offline inboxes for long, charged by its length: it is trimmed to that length (the encoder
/// may have grown its buffer up to twice as much).
fn encode_push(frame: ServerFrame<'_>) -> (u8, Utf8Bytes) {
    let op = frame.op_index() as u8;
    let mut text = Outgoing::push(frame).encode();
    text.shrink_to_fit();
    (op, text.into())
}

/// A receipt push addressed to `addressee` (the user whose devices get it), encoded once
/// with `online_state`, carrying its record in case it has to be stored.
fn receipt_push(receipt: OfflineReceipt, addressee: &str, online_state: u8) -> Push {
    let (op, text) = encode_push(receipt_frame(&receipt, addressee, online_state));
    Push::Receipt { op, text, receipt }
}

/// Store and online registry: what the hub's lock guards.
struct State<S> {
    store: S,
    online: Online,
    /// Outboxes given live pushes under the lock, to wake once it is released.
    wake: Vec<Outbox>,
}

/// The hub's lock, held. Dropping it releases the lock, then wakes the connections it queued
/// live pushes for: a group message to thousands of online members queues under the lock
/// (that is what orders them) but wakes their tasks after it.
struct Locked<'a, S> {
    guard: Option<MutexGuard<'a, State<S>>>,
}

impl<S> Deref for Locked<'_, S> {
    type Target = State<S>;

    fn deref(&self) -> &State<S> {
        self.guard.as_ref().expect("held until dropped")
    }
}

impl<S> DerefMut for Locked<'_, S> {
    fn deref_mut(&mut self) -> &mut State<S> {
        self.guard.as_mut().expect("held until dropped")
    }
}

impl<S> Drop for Locked<'_, S> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            let wake = std::mem::take(&mut guard.wake);
            drop(guard);
            for outbox in wake {
                outbox.wake();
            }
        }
    }
}

impl<S: Store> State<S> {
    /// Queues a push for every online device of `user` except connection `skip`; returns how
    /// many devices it went to. A device whose queue this takes over its bound is taken
    /// offline on the spot (see [`State::overflowed`]).
    fn push_live(&mut self, metrics: &Metrics, user: &UserId, push: &Push, skip: Option<ConnId>) -> usize {
        let mut sent = 0;
        let mut over: SmallVec<[ConnId; 2]> = SmallVec::new();
        for d in self.online.devices(user) {
            if Some(d.conn) != skip {
                if !d.outbox.push_quiet(push.clone()) {
                    over.push(d.conn);
                }
                self.wake.push(d.outbox.clone());
                sent += 1;
            }
        }
        for conn in over {
            self.overflowed(metrics, user, conn);
        }
        sent
    }

    /// A live push took connection `conn`'s queue over its bound: a slow consumer. Its device
    /// goes offline now (what follows is stored as for any offline device), what it had not
    /// written (that push included) goes to the device's inbox, and its connection is told to
    /// close with 1008 `slow consumer`.
    fn overflowed(&mut self, metrics: &Metrics, user: &UserId, conn: ConnId) {
        let Some(device) = self.online.devices(user).iter().find(|d| d.conn == conn).cloned() else {
            return;
        };
        self.online.remove(user, conn);
        let unwritten = device.outbox.close();
        metrics.closed(CloseReason::QueueBound);
        self.store_unwritten(metrics, user, &device.name, unwritten);
    }

    /// Stores pushes a connection of `device` did not write in that device's inbox, to be
    /// replayed (receipts with `onlineState:0`) at its next login. A `kicked` frame is dropped:
    /// it only ever concerned the connection that is gone. Nobody waits for an answer: a store
    /// failure is counted and loses the rest.
    fn store_unwritten(&mut self, metrics: &Metrics, user: &UserId, device: &str, pushes: Vec<Push>) {
        if let Err(e) = self.try_store_unwritten(metrics, user, device, pushes) {
            metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, %user, device, "unwritten pushes lost: the store failed");
        }
    }

    fn try_store_unwritten(
        &mut self,
        metrics: &Metrics,
        user: &UserId,
        device: &str,
        pushes: Vec<Push>,
    ) -> Result<(), StoreError> {
        let inbox = Inbox::Device(device);
        for push in pushes {
            match push {
                Push::Message(m) => {
                    metrics.unwritten(UnwrittenKind::Message);
                    self.store.push_offline_message(user, inbox, m)?;
                }
                Push::Receipt { receipt, .. } => {
                    metrics.unwritten(UnwrittenKind::Receipt);
                    self.store.push_offline_receipt(user, inbox, receipt)?;
                }
                Push::Statistic { counts, .. } => {
                    metrics.unwritten(UnwrittenKind::Statistic);
                    for c in counts {
                        let group = match self.store.group(&c.group_id)? {
                            Some(g) => g.id().clone(),
                            None => Arc::from(c.group_id.as_str()),
                        };
                        self.store
                            .set_offline_group_count(user, inbox, c.mid, &group, c.count)?;
                    }
                }
                Push::Kick { .. } => {}
            }
        }
        Ok(())
    }

    /// A message to `user`: live to every device, or into the user's offline inbox.
    fn deliver_message(&mut self, metrics: &Metrics, user: &UserId, message: OfflineMessage) -> Result<(), StoreError> {
        if self.online.is_online(user) {
            self.push_live(metrics, user, &Push::Message(message), None);
            Ok(())
        } else {
            self.store.push_offline_message(user, Inbox::User, message)
        }
    }

    /// A 1:1 receipt to `user`: live with `onlineState:1`, or stored for replay.
    fn deliver_receipt(&mut self, metrics: &Metrics, user: &UserId, receipt: OfflineReceipt) -> Result<(), StoreError> {
        if self.online.is_online(user) {
            self.push_live(metrics, user, &receipt_push(receipt, user, 1), None);
            Ok(())
        } else {
            self.store.push_offline_receipt(user, Inbox::User, receipt)
        }
    }
}

impl<S: Store> State<S> {
    /// The `not_found` of a frame naming message `mid`, counted apart when the message may
    /// have existed and had its record evicted for the caps.
    fn no_message(&self, metrics: &Metrics, mid: u64) -> Reject {
        let forgotten = match self.store.forgotten(mid) {
            Ok(f) => f,
            Err(e) => return e.into(),
        };
        if forgotten {
            metrics.evicted_refs.fetch_add(1, Ordering::Relaxed);
            return reject(
                ErrorCode::NotFound,
                format!("message {mid} does not exist (or is no longer kept: the server's message cap evicted it)"),
            );
        }
        reject(ErrorCode::NotFound, format!("message {mid} does not exist"))
    }
}

/// The push frame of a receipt addressed to `addressee`, live or replayed.
fn receipt_frame<'a>(r: &'a OfflineReceipt, addressee: &'a str, online_state: u8) -> ServerFrame<'a> {
    match r {
        OfflineReceipt::Delivery { id, mid, from } => ServerFrame::Delivery {
            id: *id,
            mid: *mid,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(addressee),
            online_state,
        },
        OfflineReceipt::Read { id, mid, from } => ServerFrame::Read {
            id: *id,
            mid: *mid,
            chat_type: ChatType::Single,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(addressee),
            group_read_count: None,
            ack_content: None,
            online_state,
        },
        OfflineReceipt::Channel { id, from, to, time } => ServerFrame::Channel {
            id: *id,
            chat_type: ChatType::Single,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
            time: *time,
            online_state,
        },
        OfflineReceipt::GroupRead {
            id,
            mid,
            from,
            group,
            count,
            ack_content,
        } => ServerFrame::Read {
            id: *id,
            mid: *mid,
            chat_type: ChatType::Group,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(group),
            group_read_count: Some(GroupReadCount {
                mid: *mid,
                count: *count,
            }),
            ack_content: Some(Cow::Borrowed(ack_content)),
            online_state,
        },
    }
}

/// Routes frames between sessions. Generic over the store so a durable one can slot in.
pub struct Hub<S> {
    state: Mutex<State<S>>,
    config: Arc<ServerConfig>,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    slowdown: Option<super::slowdown::Slowdown>,
    /// A durable store's journal: frames wait for it (see [`Hub::settled_to`]).
    journal: Option<Arc<Journal>>,
    /// Where time comes from ([`now_ms`] unless a caller passes another).
    clock: Clock,
}

impl<S: Store> Hub<S> {
    /// A hub over `store` on the system clock.
    pub fn new(config: Arc<ServerConfig>, metrics: Arc<Metrics>, store: S) -> Self {
        Hub::with_clock(config, metrics, store, Arc::new(now_ms))
    }

    /// A hub over `store` whose time comes from `clock`.
    pub fn with_clock(config: Arc<ServerConfig>, metrics: Arc<Metrics>, store: S, clock: Clock) -> Self {
        let slowdown = super::slowdown::Slowdown::new(config.delay, config.throttle);
        let journal = store.journal();
        Hub {
            state: Mutex::new(State {
                store,
                online: Online::default(),
                wake: Vec::new(),
            }),
            config,
            metrics,
            next_conn: AtomicU64::new(1),
            slowdown,
            journal,
            clock,
        }
    }

    /// Now, on the hub's clock (ms since the Unix epoch).
    fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// True with a durable store (replies then wait for its commits).
    pub fn durable(&self) -> bool {
        self.journal.is_some()
    }

    /// The store's changes recorded so far (a durable store's; 0 for the in-memory store): what
    /// a frame made now may reflect, for [`Hub::settled_to`].
    pub fn recorded(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.recorded())
    }

    /// The store's changes durable so far (see [`Hub::recorded`]).
    pub fn durable_count(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.durable())
    }

    /// Completes once the store's changes up to `target` (see [`Hub::recorded`]) are durable
    /// (at once for the in-memory store). A connection awaits it, outside the lock, before
    /// writing a frame made at `target`: no reply or push leaves the server before the state it
    /// reflects is on disk. An error when a commit failed: what it reflects will never be
    /// durable, so it must not be written.
    pub async fn settled_to(&self, target: u64) -> Result<(), StoreError> {
        match &self.journal {
            Some(journal) => journal.settled_to(target).await,
            None => Ok(()),
        }
    }

    /// False once the store failed for good (a durable store's commit failed): `/healthz`.
    pub fn healthy(&self) -> bool {
        self.journal.as_ref().is_none_or(|j| j.failure().is_none())
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The `/metrics` text: the counters, and the store's figures (read under the lock).
    pub fn render_metrics(&self) -> String {
        let stats = self.lock().store.stats();
        self.metrics.render_with(&stats)
    }

    /// Takes the hub's lock (see [`Locked`]).
    fn lock(&self) -> Locked<'_, S> {
        Locked {
            guard: Some(self.state.lock()),
        }
    }

    /// The server's options.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The deliberate slowdown of this build, if any.
    pub fn slowdown(&self) -> Option<&super::slowdown::Slowdown> {
        self.slowdown.as_ref()
    }

    /// A fresh connection id.
    pub fn next_conn(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Handles one frame of a logged-in session and returns the reply to write.
    pub fn handle<'a>(&self, session: &Session, request: &Request<'a>) -> Outgoing<'a> {
        let result = match &request.frame {
            ClientFrame::Login { .. } => Err(reject(ErrorCode::BadRequest, "already logged in on this connection")),
            ClientFrame::Send {
                id,
                chat_type,
                to,
                msg,
                msg_config,
                ..
            } => self.send(session, id, *chat_type, to, msg, *msg_config),
            ClientFrame::Delivery { ack_id, to } => self.delivery(session, *ack_id, to),
            ClientFrame::Read {
                chat_type: ChatType::Single,
                id,
                to,
                ..
            } => self.read_single(session, *id, to),
            ClientFrame::Read {
                chat_type: ChatType::Group,
                id,
                to,
                ack_content,
            } => self.read_group(session, *id, to, ack_content.as_deref()),
            ClientFrame::Channel { chat_type, to } => self.channel(session, *chat_type, to),
            ClientFrame::CreateGroup {
                group_id,
                members,
                admins,
            } => self.create_group(session, group_id, members, admins),
            ClientFrame::JoinGroup { group_id } => self.join_group(session, group_id),
            ClientFrame::LeaveGroup { group_id } => self.leave_group(session, group_id),
            ClientFrame::GetGroupMsgReadUser {
                group_id,
                msg_id,
                limit,
                key,
            } => self.group_msg_read_users(session, group_id, *msg_id, *limit, key.as_deref()),
            ClientFrame::GetConversations {} => self.conversations(session),
            ClientFrame::Ping {} => Ok(ServerFrame::Pong { time: self.now_ms() }),
        };
        let frame = result.unwrap_or_else(|r| self.error_frame(r));
        Outgoing::reply(request.req.clone(), frame)
    }

    /// Counts and builds an `error` frame. `internal` is only ever a store failure, and is
    /// counted as one too.
    pub fn error_frame(&self, r: Reject) -> ServerFrame<'static> {
        self.metrics.error(r.code);
        if r.code == ErrorCode::Internal {
            self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        ServerFrame::Error {
            code: r.code,
            message: Cow::Owned(r.message),
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
#[path = "tests.rs"]
mod tests;
