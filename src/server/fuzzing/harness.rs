//! The checking side of `hub_sequence` and of the hub's property tests: a hub, its open
//! connections, and a model built from the replies, against which every reply and every
//! written push is checked as it happens.
//!
//! The model is not a second implementation of the hub: it keeps only what the replies
//! showed (accepted sends, receipts, members, channel acks) and bounds what the hub may
//! answer from that.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::FutureExt;
use serde_json::json;

use super::{DEVICES, Frame, GROUPS, Mid, Op, SECRET, Setup, To, USERS};
use crate::protocol::server::{Conversation, ReadUsers, ResultData, StatisticLocation};
use crate::protocol::{ChatType, ClientFrame, ErrorCode, Outgoing, Request, ServerFrame, token};
use crate::server::hub::{Hub, Login, Session};
use crate::server::metrics::Metrics;
use crate::server::outbox::{Next, Outbox, Push, QueueBound};
use crate::server::store::MemoryStore;

mod checks;

/// An open connection of the harness.
struct Conn {
    session: Session,
    outbox: Outbox,
}

/// What a device (user and device name) was written, over all its connections.
#[derive(Default)]
struct DeviceLog {
    /// Newest message id per conversation (`chatType`, peer or group).
    last_mid: HashMap<(ChatType, String), u64>,
    /// Receipts written: (op, message, from).
    receipts: HashSet<(&'static str, u64, String)>,
    /// Highest group read count written per message.
    counts: HashMap<u64, u64>,
}

/// What the harness knows from the replies so far: the reference its checks compare to.
#[derive(Default)]
struct Model {
    /// Newest id in any reply or push: a new message or receipt id is above it.
    max_id: u64,
    /// Accepted sends by (sender, client id): a repeat is answered with the same mid.
    sent: HashMap<(String, String), u64>,
    /// Accepted messages: mid -> (from, to, chatType).
    messages: HashMap<u64, (String, String, ChatType)>,
    /// Their mids in the order accepted: what a [`Mid`] picks from.
    mids: Vec<u64>,
    /// Everyone who was ever a member of each group (owner included).
    members_ever: HashMap<String, HashSet<String>>,
    /// Readers whose group read receipt was accepted, per message.
    readers: HashMap<u64, HashSet<String>>,
    /// Highest reader total a query returned, per message.
    totals: HashMap<u64, u64>,
    /// 1:1 messages to (user) from (peer) since the user's last channel ack to the peer.
    single_unread: HashMap<(String, String), u64>,
    /// Group messages accepted per group, and the number as of each (user, group)'s last
    /// channel ack.
    group_sent: HashMap<String, u64>,
    group_acked: HashMap<(String, String), u64>,
    /// Conversations (user, chatType, peer or group) whose unread messages a channel ack
    /// cleared.
    cleared: HashSet<(String, ChatType, String)>,
    /// What each (user, device) was written.
    devices: HashMap<(String, String), DeviceLog>,
}

impl Model {
    fn mid(&self, m: Mid) -> u64 {
        match m.0 {
            0xF0 => 0,
            0xF1 => u64::MAX,
            v if v > 0xF1 => u64::from(v - 0xF1),
            v if self.mids.is_empty() => u64::from(v),
            v => self.mids[usize::from(v) % self.mids.len()],
        }
    }

    fn see_id(&mut self, id: u64) {
        self.max_id = self.max_id.max(id);
    }

    fn fresh(&mut self, id: u64, what: &str) {
        assert!(
            id > self.max_id,
            "{what}: id {id} is not above every id so far ({})",
            self.max_id
        );
        self.max_id = id;
    }

    fn unread_bound(&self, user: &str, chat_type: ChatType, conv: &str) -> u64 {
        match chat_type {
            ChatType::Single => self
                .single_unread
                .get(&(user.to_string(), conv.to_string()))
                .copied()
                .unwrap_or(0),
            ChatType::Group => {
                let sent = self.group_sent.get(conv).copied().unwrap_or(0);
                let acked = self
                    .group_acked
                    .get(&(user.to_string(), conv.to_string()))
                    .copied()
                    .unwrap_or(0);
                sent - acked
            }
        }
    }

    /// Distinct users other than `sender` who were ever members of `group`: the most readers
    /// a message of `sender` to it can have.
    fn max_readers(&self, group: &str, sender: &str) -> usize {
        self.members_ever
            .get(group)
            .map_or(0, |m| m.iter().filter(|u| *u != sender).count())
    }
}

/// How much of what the checks look at a run reached (so that a test can tell its checks
/// were not vacuous).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client frames handed to the hub (each got exactly one reply).
    pub frames: u64,
    /// Replies that were `error`.
    pub errors: u64,
    /// Repeated sends answered with the original mid.
    pub duplicates: u64,
    /// `message` pushes written.
    pub messages: u64,
    /// Delivery and 1:1 read receipts written.
    pub receipts: u64,
    /// Group read counts written (read receipts and `statistic` entries).
    pub group_counts: u64,
    /// Reader queries answered.
    pub reader_queries: u64,
    /// Conversations listed with unread messages.
    pub unread: u64,
    /// Conversations listed with none unread after a channel ack cleared some (and nothing
    /// new since).
    pub zeroed: u64,
    /// Connections kicked by a same-device login.
    pub kicked: u64,
    /// Connections closed by the hub as slow consumers.
    pub slow: u64,
}

/// A hub, its open connections, and the model that every reply and push is checked against.
pub struct Harness {
    hub: Hub<MemoryStore>,
    conns: Vec<Conn>,
    model: Model,
    stats: Stats,
    /// Replies the hub returned (one per client frame).
    replies: u64,
}

impl Harness {
    /// A fresh hub configured by `setup`.
    pub fn new(setup: &Setup) -> Harness {
        let hub = Hub::new(
            Arc::new(setup.config()),
            Arc::new(Metrics::new(String::new())),
            MemoryStore::new(setup.config().limits),
        );
        Harness {
            hub,
            conns: Vec::new(),
            model: Model::default(),
            stats: Stats::default(),
            replies: 0,
        }
    }

    fn conn(&self, i: u8) -> Option<usize> {
        (!self.conns.is_empty()).then(|| usize::from(i) % self.conns.len())
    }

    /// Runs one step.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Login { user, device, bound } => self.login(*user, *device, *bound),
            Op::BadLogin { user } => self.bad_login(*user),
            Op::Logout { conn } => {
                if let Some(i) = self.conn(*conn) {
                    let c = self.conns.remove(i);
                    self.hub.logout(&c.session, &c.outbox);
                    assert!(c.outbox.is_empty(), "logout takes back everything queued");
                }
            }
            Op::Drain { conn, max } => {
                if let Some(i) = self.conn(*conn) {
                    let max = if *max == 0 { usize::MAX } else { usize::from(*max) };
                    self.drain(i, max);
                }
            }
            Op::Frame { conn, frame } => {
                if let Some(i) = self.conn(*conn) {
                    let text = self.frame_text(i, frame);
                    let request = Request::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
                    self.handle(i, &request);
                }
            }
            Op::Raw { conn, text } => {
                if let (Some(i), Ok(request)) = (self.conn(*conn), Request::parse(text)) {
                    self.handle(i, &request);
                }
            }
        }
    }

    /// Every open connection writes everything queued; then the final checks. Returns what
    /// the run reached.
    pub fn finish(mut self) -> Stats {
        let mut i = 0;
        while i < self.conns.len() {
            let before = self.conns.len();
            self.drain(i, usize::MAX);
            if self.conns.len() == before {
                i += 1;
            }
        }
        assert_eq!(
            self.stats.frames, self.replies,
            "every client frame gets exactly one reply"
        );
        self.stats
    }

    fn login(&mut self, user: u8, device: u8, bound: u8) {
        let user = USERS[usize::from(user) % USERS.len()];
        let device = DEVICES[usize::from(device) % DEVICES.len()];
        let text =
            json!({"op":"login","req":"L","user":user,"token":token::token(SECRET, user),"device":device}).to_string();
        let request = Request::parse(&text).expect("a valid login");
        let outbox = Outbox::new(if bound == 0 {
            QueueBound::NONE
        } else {
            QueueBound {
                frames: usize::from(bound),
                bytes: usize::MAX,
            }
        });
        self.stats.frames += 1;
        match self.hub.login(self.hub.next_conn(), &outbox, &request) {
            Login::Accepted(session, reply) => {
                self.replies += 1;
                assert_eq!(reply.req.as_deref(), Some("L"));
                let ServerFrame::LoginOk { user: u, device: d, .. } = &reply.frame else {
                    panic!("login answered with {}", reply.encode())
                };
                assert_eq!((&**u, &**d), (user, device));
                self.conns.push(Conn { session, outbox });
            }
            Login::Refused(reply) => panic!("a valid login was refused: {}", reply.encode()),
        }
    }

    fn bad_login(&mut self, user: u8) {
        let user = USERS[usize::from(user) % USERS.len()];
        let text = if user.ends_with(['1', '3']) {
            r#"{"op":"ping","req":"B"}"#.to_string()
        } else {
            json!({"op":"login","req":"B","user":user,"token":token::token(b"other", user)}).to_string()
        };
        let request = Request::parse(&text).expect("a valid frame");
        let outbox = Outbox::new(QueueBound::NONE);
        self.stats.frames += 1;
        match self.hub.login(self.hub.next_conn(), &outbox, &request) {
            Login::Refused(reply) => {
                self.replies += 1;
                assert_eq!(reply.req.as_deref(), Some("B"));
                assert!(
                    matches!(
                        reply.frame,
                        ServerFrame::Error {
                            code: ErrorCode::Unauthorized,
                            ..
                        }
                    ),
                    "{}",
                    reply.encode()
                );
                assert!(outbox.is_empty(), "a refused login queues nothing");
            }
            Login::Accepted(..) => panic!("{text} was accepted"),
        }
    }

    fn frame_text(&self, conn: usize, frame: &Frame) -> String {
        let m = &self.model;
        let user = &*self.conns[conn].session.user;
        let group = |g: &u8| GROUPS[usize::from(*g) % GROUPS.len()];
        let users = |bits: u8| -> Vec<&str> {
            USERS
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, u)| *u)
                .collect()
        };
        let mut v = match frame {
            Frame::Send { id, to, ack, long } => {
                let mut v = json!({"op":"send","id":format!("c{}", id % 4),"chatType":to.chat_type(),
                    "type":"txt","to":to.id(),"msg":if *long { "x".repeat(17) } else { "hi".into() }});
                if *ack {
                    v["msgConfig"] = json!({"allowGroupAck": true});
                }
                v
            }
            Frame::Delivery { mid, to } => {
                json!({"op":"delivery","ackId":m.mid(*mid).to_string(),"to":To::User(*to).id()})
            }
            Frame::Read { mid, to } => {
                json!({"op":"read","chatType":to.chat_type(),"id":m.mid(*mid).to_string(),"to":to.id(),
                    "ackContent":"seen"})
            }
            Frame::Channel { to } => json!({"op":"channel","chatType":to.chat_type(),"to":to.id()}),
            Frame::CreateGroup {
                group: g,
                members,
                admins,
            } => {
                json!({"op":"createGroup","groupId":group(g),"members":users(*members),"admins":users(*admins)})
            }
            Frame::Join { group: g } => json!({"op":"joinGroup","groupId":group(g)}),
            Frame::Leave { group: g } => json!({"op":"leaveGroup","groupId":group(g)}),
            Frame::ReadUsers {
                group: g,
                mid,
                limit,
                key,
            } => {
                let mut v = json!({"op":"getGroupMsgReadUser","groupId":group(g),"msgId":m.mid(*mid).to_string()});
                if *limit > 0 {
                    v["limit"] = json!(limit);
                }
                if *key > 0 {
                    v["key"] = json!((key - 1).to_string());
                }
                v
            }
            Frame::Conversations => json!({"op":"getConversations"}),
            Frame::Ping => json!({"op":"ping"}),
            Frame::Relogin => json!({"op":"login","user":user,"token":token::token(SECRET, user)}),
        };
        v["req"] = json!(format!("r{}", self.stats.frames));
        v.to_string()
    }

    /// Hands one frame to the hub and checks the one reply.
    fn handle(&mut self, conn: usize, request: &Request<'_>) {
        self.stats.frames += 1;
        let session = self.conns[conn].session.clone();
        let reply = self.hub.handle(&session, request);
        self.replies += 1;
        assert_eq!(reply.req.as_deref(), Some(&*request.req), "a reply echoes its req");
        let text = reply.encode();
        let back = Outgoing::parse(&text).unwrap_or_else(|e| panic!("reply {text} does not parse: {e}"));
        assert_eq!(back, reply, "reply {text} does not round-trip");
        self.check_reply(&session.user, request, &reply.frame, &text);
    }

    /// Connection `i` writes up to `max` queued pushes; a `kicked` frame or a queue the hub
    /// closed ends the connection (it logs out, as its task would).
    fn drain(&mut self, i: usize, max: usize) {
        let mut written = 0;
        let mut ended = false;
        while written < max {
            let Some(push) = self.conns[i].outbox.try_pop() else {
                ended = matches!(self.conns[i].outbox.pop().now_or_never(), Some(Next::Closed));
                self.stats.slow += u64::from(ended);
                break;
            };
            written += 1;
            if self.check_push(i, &push) {
                assert!(self.conns[i].outbox.is_empty(), "nothing is queued behind kicked");
                ended = true;
                break;
            }
        }
        if ended {
            let c = self.conns.remove(i);
            self.hub.logout(&c.session, &c.outbox);
        }
    }
}
