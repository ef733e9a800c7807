//! One driver connection's translation between the tester's vocabulary and stanzas: each
//! [`Op`] becomes one stanza to send and what answers it ([`Link::plan`], [`Link::sent`]);
//! each session [`Event`] becomes zero or more [`Inbound`]s ([`Link::on_event`]). No I/O: the
//! driver's pump and event stream call it (one connection, one thread).
//!
//! Answers: a stanza answered by XEP-0198 waits for the `<a h>` that covers its number; a
//! group message for the room's reflection of it (same `id`, from this user's nick), which
//! carries the room's XEP-0359 stanza-id; a ping for its iq result. An error stanza carrying
//! a waiting stanza's id answers it instead.
//!
//! Message ids: XMPP ids are unique only per sender (a 1:1 message's `id` is the sender's
//! client id) or per room archive (a group message's stanza-id), while the tester's
//! [`MsgId`]s are unique per run. So a [`MsgId`] is qualified by the conversation side that
//! owns the id: `sender/id` for 1:1 messages, `group/stanza-id` for group messages. User and
//! group ids cannot hold `/`, so the wire id is what follows the first `/` (see [`wire_id`]).
//!
//! Group read counts are counted here (the server does not): the distinct nicks whose
//! `displayed` marker named one of this connection's own group messages, for the newest
//! [`OWN_GROUP_MESSAGES`] of them (each reader costs 8 bytes: a hash of its nick).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use rustc_hash::FxBuildHasher;

use super::outbound::Outbound;
use super::session::Event;
use super::stanza::{IqType, Message, MessageType, StanzaError};
use super::{bare, resource};
use crate::transport::{Chat, FrameStats, Inbound, MsgId, Op, ProtocolFault, Refusal, Reply};

/// Own group messages whose readers are counted, per connection (older ones are forgotten:
/// markers for them are ignored).
pub const OWN_GROUP_MESSAGES: usize = 4096;

/// Counters of things a driver's connections noticed that are not frames.
#[derive(Debug, Default)]
pub struct XmppCounters {
    /// Connections whose server offered no XEP-0198: their sends were answered as soon as
    /// they were queued, so "server ack" latencies of those are not the server's.
    pub without_sm: std::sync::atomic::AtomicU64,
    /// Error stanzas for requests already answered (an ack came first) or never made.
    pub unmatched_errors: std::sync::atomic::AtomicU64,
}

/// What answers a request whose stanza was sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Waiting {
    /// The XEP-0198 ack covering the stanza (with no XEP-0198: its sending).
    Ack {
        /// The request.
        req: u64,
        /// The answer then.
        reply: Reply,
    },
    /// The room's reflection of a group message.
    Reflection {
        /// The request.
        req: u64,
        /// The message asked for group receipts.
        allow_group_ack: bool,
    },
    /// The iq result of a ping.
    Pong {
        /// The request.
        req: u64,
    },
}

impl Waiting {
    fn req(&self) -> u64 {
        match self {
            Waiting::Ack { req, .. } | Waiting::Reflection { req, .. } | Waiting::Pong { req } => *req,
        }
    }
}

/// What to do for one request.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// Send `stanza` (its id is `id`); `waiting` says what answers it.
    Send {
        /// The stanza.
        stanza: Outbound,
        /// Its id.
        id: String,
        /// Its answer.
        waiting: Waiting,
    },
    /// Send nothing and answer at once.
    Answer(Reply),
}

/// The tester-side state of one connection.
pub(super) struct Link {
    /// This user (JID localpart and room nick).
    user: Arc<str>,
    domain: String,
    muc_domain: String,
    /// XEP-0198 is on.
    sm: bool,
    /// Requests sent and not yet answered, by their stanza's id.
    waiting: HashMap<String, Waiting>,
    /// Stanzas answered by XEP-0198, in stream order: (number, id).
    acks: VecDeque<(u32, String)>,
    own: OwnMessages,
    stats: Arc<FrameStats>,
    counters: Arc<XmppCounters>,
}

impl Link {
    pub(super) fn new(
        user: Arc<str>,
        domain: &str,
        muc_domain: &str,
        sm: bool,
        stats: Arc<FrameStats>,
        counters: Arc<XmppCounters>,
    ) -> Link {
        Link {
            user,
            domain: domain.to_string(),
            muc_domain: muc_domain.to_string(),
            sm,
            waiting: HashMap::new(),
            acks: VecDeque::new(),
            own: OwnMessages::default(),
            stats,
            counters,
        }
    }

    fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }

    fn room(&self, group: &str) -> String {
        format!("{group}@{}", self.muc_domain)
    }

    /// The stanza for request `req` (nothing is recorded until [`Link::sent`]).
    pub(super) fn plan(&self, req: u64, op: &Op) -> Step {
        // Stanzas other than messages carry the request number as their id: `r12` (client ids
        // of messages are `<run tag>.<seq>`, so the two never meet).
        let own_id = format!("r{req}");
        let acked = |stanza| Step::Send {
            stanza,
            id: own_id.clone(),
            waiting: Waiting::Ack {
                req,
                reply: Reply::Acked,
            },
        };
        let marker = |chat: Chat, mid: &MsgId, to: &str| Outbound::Displayed {
            to: match chat {
                Chat::Single => self.jid(to),
                Chat::Group => self.room(to),
            },
            id: wire_id(mid, to).to_string(),
            groupchat: chat == Chat::Group,
            own_id: Some(own_id.clone()),
        };
        match op {
            Op::Send {
                id,
                chat: Chat::Single,
                to,
                body,
                ..
            } => Step::Send {
                stanza: Outbound::Chat {
                    to: self.jid(to),
                    id: id.clone(),
                    body: body.clone(),
                    receipt: true,
                    markable: true,
                },
                id: id.clone(),
                waiting: Waiting::Ack {
                    req,
                    reply: Reply::Accepted {
                        mid: qualified(&self.user, id),
                        group_ack: None,
                        duplicate: false,
                    },
                },
            },
            Op::Send {
                id,
                chat: Chat::Group,
                to,
                body,
                allow_group_ack,
            } => Step::Send {
                stanza: Outbound::GroupChat {
                    room: self.room(to),
                    id: id.clone(),
                    body: body.clone(),
                    markable: *allow_group_ack,
                },
                id: id.clone(),
                waiting: Waiting::Reflection {
                    req,
                    allow_group_ack: *allow_group_ack,
                },
            },
            Op::Delivery { mid, to } => acked(Outbound::Received {
                to: self.jid(to),
                id: wire_id(mid, to).to_string(),
                own_id: Some(own_id.clone()),
            }),
            Op::Read { chat, mid, to } => acked(marker(*chat, mid, to)),
            // A displayed marker for the newest message covers all before it (XEP-0333).
            Op::Channel {
                chat,
                to,
                newest: Some(mid),
            } => acked(marker(*chat, mid, to)),
            Op::Channel { newest: None, .. } => Step::Answer(Reply::Acked),
            Op::CreateGroup { .. } | Op::ReadUsers { .. } => Step::Answer(Reply::Error {
                refusal: Refusal {
                    code: "feature-not-implemented",
                    rate_limited: false,
                },
                message: "not an XMPP operation (rooms are joined into being; readers are not listed)".into(),
            }),
            Op::Ping => Step::Send {
                stanza: Outbound::Ping {
                    to: self.domain.clone(),
                    id: own_id.clone(),
                },
                id: own_id.clone(),
                waiting: Waiting::Pong { req },
            },
        }
    }

    /// Records that the stanza `id` of a [`Step::Send`] went out as stream stanza `n`; returns
    /// the answer when it is due already (no XEP-0198: sending is all the ack there is).
    pub(super) fn sent(&mut self, n: u32, id: String, waiting: Waiting) -> Option<Reply> {
        match waiting {
            Waiting::Ack { reply, .. } if !self.sm => Some(reply),
            Waiting::Ack { .. } => {
                self.acks.push_back((n, id.clone()));
                self.waiting.insert(id, waiting);
                None
            }
            other => {
                self.waiting.insert(id, other);
                None
            }
        }
    }

    /// What `event` means to the user; pushed onto `out`.
    pub(super) fn on_event(&mut self, event: Event, out: &mut Vec<Inbound>) {
        match event {
            Event::SmAck { h } => {
                while let Some((n, _)) = self.acks.front() {
                    // `n <= h` in XEP-0198's arithmetic mod 2^32.
                    if h.wrapping_sub(*n) >= 1 << 31 {
                        break;
                    }
                    let (_, id) = self.acks.pop_front().expect("peeked");
                    if let Some(Waiting::Ack { req, reply }) = self.take(&id, |w| matches!(w, Waiting::Ack { .. })) {
                        out.push(Inbound::Reply { req: Some(req), reply });
                    }
                }
            }
            Event::Message(m) => self.message(m, out),
            Event::Iq(iq) => match iq.kind {
                IqType::Result => {
                    if let Some(w) = self.take(&iq.id, |w| matches!(w, Waiting::Pong { .. })) {
                        out.push(Inbound::Reply {
                            req: Some(w.req()),
                            reply: Reply::Pong,
                        });
                    }
                }
                _ => self.bounce(&iq.id, iq.error.as_ref(), out),
            },
            Event::Closed { .. } => out.push(Inbound::Closed),
            // Presences (other occupants, contacts) and joins (done before the connection was
            // handed over) say nothing the tester measures.
            Event::Presence(_) | Event::MucJoined { .. } | Event::MucFailed { .. } => {}
        }
    }

    /// Removes the request waiting under `id` if `is` accepts it.
    fn take(&mut self, id: &str, is: impl Fn(&Waiting) -> bool) -> Option<Waiting> {
        match self.waiting.get(id) {
            Some(w) if is(w) => self.waiting.remove(id),
            _ => None,
        }
    }

    /// An error stanza: the answer of the request that sent `id`.
    fn bounce(&mut self, id: &str, error: Option<&StanzaError>, out: &mut Vec<Inbound>) {
        match self.waiting.remove(id) {
            Some(w) => {
                let (refusal, message) = refusal(error);
                out.push(Inbound::Reply {
                    req: Some(w.req()),
                    reply: Reply::Error { refusal, message },
                });
            }
            None => {
                self.counters.unmatched_errors.fetch_add(1, Relaxed);
            }
        }
    }

    fn message(&mut self, m: Message, out: &mut Vec<Inbound>) {
        if m.kind == MessageType::Error {
            return self.bounce(m.id.as_deref().unwrap_or_default(), m.error.as_ref(), out);
        }
        let Some(from) = m.from.as_deref() else {
            return self.stats.fault(ProtocolFault::BadFrame, 0);
        };
        let Some((local, domain)) = bare(from).split_once('@') else {
            // From the server itself (a notice): nothing the tester sent or awaits.
            return;
        };
        match m.kind {
            MessageType::GroupChat if domain.eq_ignore_ascii_case(&self.muc_domain) => {
                // The room's own messages (subject, status) have no nick: nothing to do.
                if let Some(nick) = resource(from) {
                    self.groupchat(&m, bare(from), local, nick, out);
                }
            }
            MessageType::Chat | MessageType::Normal if domain.eq_ignore_ascii_case(&self.domain) => {
                self.chat(&m, local, out);
            }
            // Headlines, other domains' messages, private messages through a room.
            _ => {}
        }
    }

    fn chat(&mut self, m: &Message, peer: &str, out: &mut Vec<Inbound>) {
        if let Some(body) = &m.body {
            match &m.id {
                Some(id) => out.push(Inbound::Message {
                    mid: qualified(peer, id),
                    from: peer.to_string(),
                    to: self.user.to_string(),
                    chat: Chat::Single,
                    body: body.clone(),
                    receipts: false,
                }),
                // A message without an id cannot be acknowledged.
                None => self.stats.fault(ProtocolFault::BadFrame, 0),
            }
        }
        if let Some(id) = &m.received_of {
            out.push(Inbound::Delivery {
                mid: qualified(&self.user, id),
                from: peer.to_string(),
                live: !m.delayed,
            });
        }
        if let Some(id) = &m.displayed_of {
            out.push(Inbound::Read {
                mid: qualified(&self.user, id),
                from: peer.to_string(),
                chat: Chat::Single,
                count: None,
                live: !m.delayed,
            });
        }
    }

    fn groupchat(&mut self, m: &Message, room: &str, group: &str, nick: &str, out: &mut Vec<Inbound>) {
        let stanza_id = m.stanza_id_by(room);
        if nick == &*self.user {
            // This user's own message reflected (markers and other devices' messages: nothing).
            if m.body.is_none() {
                return;
            }
            let id = m.id.as_deref().unwrap_or_default();
            let Some(Waiting::Reflection { req, allow_group_ack }) =
                self.take(id, |w| matches!(w, Waiting::Reflection { .. }))
            else {
                return;
            };
            let reply = match stanza_id {
                Some(sid) => {
                    let mid = qualified(group, sid);
                    self.own.remember(mid.clone());
                    Reply::Accepted {
                        mid,
                        group_ack: Some(allow_group_ack),
                        duplicate: false,
                    }
                }
                None => Reply::Error {
                    refusal: Refusal {
                        code: "feature-not-implemented",
                        rate_limited: false,
                    },
                    message: format!("room {room} gives its messages no XEP-0359 stanza-id (enable its archive)"),
                },
            };
            return out.push(Inbound::Reply { req: Some(req), reply });
        }
        if let Some(id) = &m.displayed_of {
            // Markers for other people's messages are not this user's business.
            let mid = qualified(group, id);
            if let Some(count) = self.own.read_by(&mid, nick) {
                out.push(Inbound::Read {
                    mid,
                    from: nick.to_string(),
                    chat: Chat::Group,
                    count: Some(count),
                    live: true,
                });
            }
        }
        if let Some(body) = &m.body {
            match stanza_id {
                Some(sid) => out.push(Inbound::Message {
                    mid: qualified(group, sid),
                    from: nick.to_string(),
                    to: group.to_string(),
                    chat: Chat::Group,
                    body: body.clone(),
                    receipts: m.markable,
                }),
                // Without the room's id, no marker could name it.
                None => self.stats.fault(ProtocolFault::BadFrame, 0),
            }
        }
    }
}

/// The tester's id of message `id` owned by `owner` (its sender, or its group).
pub(super) fn qualified(owner: &str, id: &str) -> MsgId {
    let mut s = compact_str::CompactString::with_capacity(owner.len() + 1 + id.len());
    s.push_str(owner);
    s.push('/');
    s.push_str(id);
    MsgId::new(&s)
}

/// The XMPP id inside a [`MsgId`] owned by `owner` (an id not made by [`qualified`] goes out
/// as it is).
pub(super) fn wire_id<'a>(mid: &'a MsgId, owner: &str) -> &'a str {
    let s = mid.as_str();
    s.strip_prefix(owner)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(s)
}

/// The neutral form of a stanza error, with the server's text (or the condition).
pub(super) fn refusal(error: Option<&StanzaError>) -> (Refusal, String) {
    let condition = error.map_or("undefined-condition", |e| e.condition.as_str());
    let code = condition_name(condition);
    let refusal = Refusal {
        code,
        rate_limited: matches!(code, "resource-constraint" | "policy-violation"),
    };
    let text = error.and_then(|e| e.text.clone());
    (refusal, text.unwrap_or_else(|| condition.to_string()))
}

/// The defined condition (RFC 6120 stanza and stream errors, RFC 6120 SASL failures) named
/// `name`; any other is `undefined-condition`.
pub fn condition_name(name: &str) -> &'static str {
    const DEFINED: [&str; 45] = [
        "bad-request",
        "conflict",
        "feature-not-implemented",
        "forbidden",
        "gone",
        "internal-server-error",
        "item-not-found",
        "jid-malformed",
        "not-acceptable",
        "not-allowed",
        "not-authorized",
        "policy-violation",
        "recipient-unavailable",
        "redirect",
        "registration-required",
        "remote-server-not-found",
        "remote-server-timeout",
        "resource-constraint",
        "service-unavailable",
        "subscription-required",
        "undefined-condition",
        "unexpected-request",
        "bad-format",
        "bad-namespace-prefix",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-well-formed",
        "reset",
        "see-other-host",
        "system-shutdown",
        "unsupported-encoding",
        "unsupported-stanza-type",
        "unsupported-version",
        "aborted",
        "account-disabled",
        "credentials-expired",
        "encryption-required",
        "invalid-mechanism",
        "malformed-request",
        "temporary-auth-failure",
    ];
    DEFINED
        .iter()
        .find(|c| **c == name)
        .copied()
        .unwrap_or("undefined-condition")
}

/// This connection's newest own group messages and the readers each has had.
#[derive(Default)]
struct OwnMessages {
    order: VecDeque<MsgId>,
    /// Per message, a hash of each distinct reader's nick.
    readers: HashMap<MsgId, Vec<u64>>,
}

impl OwnMessages {
    fn remember(&mut self, mid: MsgId) {
        if self.readers.contains_key(&mid) {
            return;
        }
        if self.order.len() >= OWN_GROUP_MESSAGES
            && let Some(old) = self.order.pop_front()
        {
            self.readers.remove(&old);
        }
        self.order.push_back(mid.clone());
        self.readers.insert(mid, Vec::new());
    }

    /// Records `nick` as a reader of `mid`; the distinct readers so far when it is a new one
    /// of a remembered message.
    fn read_by(&mut self, mid: &MsgId, nick: &str) -> Option<u64> {
        let readers = self.readers.get_mut(mid)?;
        let h = FxBuildHasher.hash_one(nick);
        if readers.contains(&h) {
            return None;
        }
        readers.push(h);
        Some(readers.len() as u64)
    }
}
