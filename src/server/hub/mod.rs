//! The routing hub: every rule of PROTOCOL.md that decides who gets what, in which order.
//!
//! One lock guards the store and the online registry together. Under it the hub checks a
//! frame, records what it changes, encodes each push once and hands it to the recipients'
//! outboxes (non-blocking channel sends); sockets are written by the connection tasks, never
//! under the lock. Allocating ids and enqueueing pushes under the same lock is what gives
//! per-conversation `mid` order on every device, and makes login's offline replay race-free.
//!
//! The hub has no sockets, so benches and unit tests drive it directly.

mod groups;
mod messages;
mod receipts;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::ServerConfig;
use super::metrics::Metrics;
use super::online::{ConnId, Device, Online, Outbox, Push};
use super::store::{OfflineMessage, OfflineReceipt, Store, UserId};
use crate::protocol::server::StatisticLocation;
use crate::protocol::{ChatType, ClientFrame, ErrorCode, Outgoing, Request, ServerFrame, token};

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

fn reject(code: ErrorCode, message: impl Into<String>) -> Reject {
    Reject {
        code,
        message: message.into(),
    }
}

type Reply<'a> = Result<ServerFrame<'a>, Reject>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Encodes a push once; the text is shared by every device it goes to.
fn encode_push(frame: ServerFrame<'_>) -> (u8, Utf8Bytes) {
    let op = frame.op_index() as u8;
    (op, Outgoing::push(frame).encode().into())
}

/// Store and online registry: what the hub's lock guards.
struct State<S> {
    store: S,
    online: Online,
}

impl<S: Store> State<S> {
    /// Sends an encoded push to every online device of `user` except connection `skip`;
    /// returns how many devices it went to.
    fn push_live(&self, user: &str, op: u8, text: &Utf8Bytes, skip: Option<ConnId>) -> usize {
        let mut sent = 0;
        for d in self.online.devices(user) {
            if Some(d.conn) != skip {
                // A closed outbox means the connection is going away: a push in flight to a
                // dying connection may be lost (PROTOCOL.md, delivery guarantee v1).
                let _ = d.outbox.send(Push::Frame { op, text: text.clone() });
                sent += 1;
            }
        }
        sent
    }

    /// A message to `user`: live to every device, or into the offline store.
    fn deliver_message(&mut self, metrics: &Metrics, user: &UserId, message: OfflineMessage) {
        if self.online.is_online(user) {
            self.push_live(user, MESSAGE_OP, &message.frame, None);
        } else if self.store.push_offline_message(user, message) {
            metrics.offline_replaced(false);
        }
    }

    /// A 1:1 receipt to `user`: live with `onlineState:1`, or stored for replay.
    fn deliver_receipt(&mut self, metrics: &Metrics, user: &UserId, receipt: OfflineReceipt) {
        if self.online.is_online(user) {
            let (op, text) = encode_push(receipt_frame(&receipt, user, 1));
            self.push_live(user, op, &text, None);
        } else if self.store.push_offline_receipt(user, receipt) {
            metrics.offline_replaced(true);
        }
    }
}

/// Index of `message` in `SERVER_OPS` (checked by a test).
const MESSAGE_OP: u8 = 3;

/// The push frame of a stored or live 1:1 receipt addressed to `to`.
fn receipt_frame<'a>(r: &'a OfflineReceipt, to: &'a str, online_state: u8) -> ServerFrame<'a> {
    match r {
        OfflineReceipt::Delivery { id, mid, from } => ServerFrame::Delivery {
            id: *id,
            mid: *mid,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
            online_state,
        },
        OfflineReceipt::Read { id, mid, from } => ServerFrame::Read {
            id: *id,
            mid: *mid,
            chat_type: ChatType::Single,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
            group_read_count: None,
            ack_content: None,
            online_state,
        },
        OfflineReceipt::Channel { id, from, time } => ServerFrame::Channel {
            id: *id,
            chat_type: ChatType::Single,
            from: Cow::Borrowed(from),
            to: Cow::Borrowed(to),
            time: *time,
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
}

impl<S: Store> Hub<S> {
    /// A hub over `store`.
    pub fn new(config: Arc<ServerConfig>, metrics: Arc<Metrics>, store: S) -> Self {
        let slowdown = super::slowdown::Slowdown::new(config.delay, config.throttle);
        Hub {
            state: Mutex::new(State {
                store,
                online: Online::default(),
            }),
            config,
            metrics,
            next_conn: AtomicU64::new(1),
            slowdown,
        }
    }

    /// The server's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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

    /// Handles the first frame of a connection.
    pub fn login<'a>(&self, conn: ConnId, outbox: &Outbox, request: &Request<'a>) -> Login<'a> {
        let unauthorized = |message: &str| {
            self.metrics.error(ErrorCode::Unauthorized);
            Outgoing::reply(
                request.req.clone(),
                ServerFrame::Error {
                    code: ErrorCode::Unauthorized,
                    message: Cow::Owned(message.to_string()),
                },
            )
        };
        let ClientFrame::Login {
            user,
            token,
            device,
            delivery,
        } = &request.frame
        else {
            return Login::Refused(unauthorized("the first frame must be login"));
        };
        if !token::verify(&self.config.secret, user, token) {
            return Login::Refused(unauthorized("bad token"));
        }
        let device: Arc<str> = Arc::from(device.as_deref().unwrap_or("web"));
        let now = now_ms();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let user_id = st.store.intern_user(user);
        let was_online = st.online.is_online(user);
        let new = Device {
            name: device.clone(),
            conn,
            outbox: outbox.clone(),
        };
        if let Some(old) = st.online.insert(&user_id, new) {
            let (_, text) = encode_push(ServerFrame::Kicked {
                reason: Cow::Borrowed("login_elsewhere"),
            });
            let _ = old.outbox.send(Push::Kick(text));
            self.metrics.kicked.fetch_add(1, Ordering::Relaxed);
        }
        if !was_online {
            self.replay(st, &user_id, outbox);
        }
        drop(guard);
        let session = Session {
            conn,
            user: user_id,
            device: device.clone(),
            delivery: *delivery,
        };
        let reply = ServerFrame::LoginOk {
            user: user.clone(),
            device: Cow::Owned(device.to_string()),
            time: now,
        };
        Login::Accepted(session, Outgoing::reply(request.req.clone(), reply))
    }

    /// Queues what waited for `user`: messages, then 1:1 receipts, then one statistic frame.
    fn replay(&self, st: &mut State<S>, user: &UserId, outbox: &Outbox) {
        let batch = st.store.take_offline(user);
        for m in batch.messages {
            let _ = outbox.send(Push::Frame {
                op: MESSAGE_OP,
                text: m.frame,
            });
        }
        for r in &batch.receipts {
            let (op, text) = encode_push(receipt_frame(r, user, 0));
            let _ = outbox.send(Push::Frame { op, text });
        }
        if !batch.group_counts.is_empty() {
            let location = StatisticLocation {
                group_ack: batch.group_counts,
            }
            .to_json();
            let (op, text) = encode_push(ServerFrame::Statistic {
                operation: 0,
                location: Cow::Owned(location),
            });
            let _ = outbox.send(Push::Frame { op, text });
        }
    }

    /// The session's connection closed: the device goes offline (unless it was replaced).
    pub fn logout(&self, session: &Session) {
        self.state.lock().online.remove(&session.user, session.conn);
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
            ClientFrame::GetConversations {} => Ok(self.conversations(session)),
            ClientFrame::Ping {} => Ok(ServerFrame::Pong { time: now_ms() }),
        };
        let frame = result.unwrap_or_else(|r| self.error_frame(r));
        Outgoing::reply(request.req.clone(), frame)
    }

    /// Counts and builds an `error` frame.
    pub fn error_frame(&self, r: Reject) -> ServerFrame<'static> {
        self.metrics.error(r.code);
        ServerFrame::Error {
            code: r.code,
            message: Cow::Owned(r.message),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
