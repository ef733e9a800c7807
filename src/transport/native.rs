//! The native driver: PROTOCOL.md over WebSocket (tokio-tungstenite).
//!
//! Each connection is a TCP socket with no-delay (TLS over it for `wss://`; both set up by
//! [`super::connect`]) and, once logged in, one stream ([`conn`]) that writes what its user
//! queues (everything queued, then one flush) and reads, timestamps and decodes frames.
//! Its buffers are small, for the tester's memory per idle user ([`ws_config`]).
//! The actor's request number rides in `req` after a letter naming the op (`s12`, `r13`), so
//! every reply finds its request. Server frames that do not parse are counted by cause in
//! [`FrameStats`] and dropped, never fatal.

use std::net::Ipv4Addr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod conn;

use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::connect::{Endpoint, Stream};
use super::{
    Capabilities, Chat, Connection, Driver, FrameStats, Inbound, LoginSpec, MsgId, Op, ProtocolFault, Refusal, Reply,
    Stall, TransportError, outbox,
};
use crate::profile::Auth;
use crate::protocol::client::{CLIENT_OPS, MsgConfig, MsgType};
use crate::protocol::server::{ResultData, SERVER_OPS};
use crate::protocol::{ChatType, ClientFrame, ErrorCode, Outgoing, ProtocolError, Request, ServerFrame, token};
use conn::Conn;

type Ws = WebSocketStream<Stream>;

/// Connects to one target (`ws://` or `wss://`, resolved once per run: [`Endpoint`]).
pub struct NativeDriver {
    endpoint: Arc<Endpoint>,
    auth: Auth,
    source_ips: Vec<Ipv4Addr>,
    next_ip: AtomicUsize,
    stats: Arc<FrameStats>,
    timeout: Duration,
}

impl NativeDriver {
    /// A driver for `endpoint`, logging in with `auth`; connections to IPv4 loopback come from
    /// `source_ips` in turn (none: the OS chooses).
    pub fn new(endpoint: Arc<Endpoint>, auth: Auth, source_ips: Vec<Ipv4Addr>, timeout: Duration) -> NativeDriver {
        NativeDriver {
            endpoint,
            auth,
            source_ips,
            next_ip: AtomicUsize::new(0),
            stats: Arc::new(FrameStats::new(&CLIENT_OPS, &SERVER_OPS)),
            timeout,
        }
    }

    fn token(&self, user: &str) -> Result<String, TransportError> {
        match &self.auth {
            Auth::Secret(s) => Ok(token::token(s.as_bytes(), user)),
            // The profile check allows passwords for XMPP targets only.
            Auth::Password(_) => Err(TransportError::NoToken(user.to_string())),
            Auth::Tokens(map) => map
                .get(user)
                .cloned()
                .ok_or_else(|| TransportError::NoToken(user.to_string())),
        }
    }

    fn source_ip(&self) -> Option<Ipv4Addr> {
        if self.source_ips.is_empty() {
            return None;
        }
        let i = self.next_ip.fetch_add(1, Ordering::Relaxed);
        Some(self.source_ips[i % self.source_ips.len()])
    }
}

/// The WebSocket settings of every driver connection.
///
/// The read buffer is what an idle connection keeps (the default 128 KiB would cost ~135 KiB
/// per connection): 1 KiB holds several frames of this protocol, so a burst is still read
/// with few system calls, and a larger frame grows it (it is then kept at that size). Frames
/// to send collect in the write buffer until the writer flushes (it does once everything
/// queued is in), or until 16 KiB are waiting; it grows as they come, so an idle connection
/// keeps only what its largest batch needed.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
}

impl Driver for NativeDriver {
    fn connect(&self, login: LoginSpec) -> LocalBoxFuture<'static, Result<Connection, TransportError>> {
        let token = self.token(&login.user);
        let (endpoint, source, stats, timeout) = (
            self.endpoint.clone(),
            self.source_ip(),
            self.stats.clone(),
            self.timeout,
        );
        async move {
            let token = token?;
            match tokio::time::timeout(timeout, open(&endpoint, source, login, token, stats)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout(timeout)),
            }
        }
        .boxed_local()
    }

    fn name(&self) -> &'static str {
        "native"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn stats(&self) -> &Arc<FrameStats> {
        &self.stats
    }
}

/// The neutral name of a chat type.
fn chat_of(chat: ChatType) -> Chat {
    match chat {
        ChatType::Single => Chat::Single,
        ChatType::Group => Chat::Group,
    }
}

/// The wire chat type of a neutral one.
fn chat_type(chat: Chat) -> ChatType {
    match chat {
        Chat::Single => ChatType::Single,
        Chat::Group => ChatType::Group,
    }
}

/// The neutral form of an error code.
fn refusal(code: ErrorCode) -> Refusal {
    Refusal {
        code: code.as_str(),
        rate_limited: code == ErrorCode::RateLimited,
    }
}

/// The server id inside a [`MsgId`] this driver made. An id that is not one (none is ever
/// handed to this driver by the simulation) goes out as 0, which names no message: the
/// server answers `not_found`, which the audit counts as refused.
fn wire_id(mid: &MsgId) -> u64 {
    mid.as_str().parse().unwrap_or(0)
}

async fn open(
    endpoint: &Endpoint,
    source: Option<Ipv4Addr>,
    login: LoginSpec,
    token: String,
    stats: Arc<FrameStats>,
) -> Result<Connection, TransportError> {
    let (mut ws, fd) = endpoint.websocket(source, ws_config()).await?;
    let (op, text) = login_frame(&login, token);
    stats.sent(op, text.len());
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| TransportError::Handshake(e.to_string()))?;
    let logged_in_at = loop {
        let Some(Ok(msg)) = ws.next().await else {
            return Err(TransportError::Closed);
        };
        let Message::Text(text) = msg else { continue };
        let at = Instant::now();
        let Ok(reply) = Outgoing::parse(text.as_str()) else {
            continue;
        };
        stats.received(reply.frame.op_index(), text.len());
        match reply.frame {
            ServerFrame::LoginOk { .. } => break at,
            ServerFrame::Error { code, message } => {
                return Err(TransportError::LoginRefused {
                    code: code.as_str(),
                    message: message.into_owned(),
                });
            }
            _ => continue,
        }
    };
    let (out, outbox) = outbox();
    let stall = Stall::default();
    let events = Conn::new(ws, outbox, stats, fd, stall.clone()).boxed_local();
    Ok(Connection {
        out,
        events,
        logged_in_at,
        stall,
    })
}

/// The `login` frame of a device connection: its op index and text.
pub(crate) fn login_frame(login: &LoginSpec, token: String) -> (usize, String) {
    let frame = Request {
        req: "l0".into(),
        frame: ClientFrame::Login {
            user: login.user.as_ref().into(),
            token: token.into(),
            device: Some(login.device.as_ref().into()),
            delivery: login.delivery,
        },
    };
    (frame.frame.op_index(), frame.encode())
}

/// The request number in a `req` this driver wrote (`s12` -> 12); `None` for anything else.
fn req_number(req: Option<&str>) -> Option<u64> {
    let req = req?;
    let mut chars = req.chars();
    if !chars.next()?.is_ascii_lowercase() {
        return None;
    }
    chars.as_str().parse().ok()
}

/// Why a server frame did not parse, as a counted cause.
fn fault_of(e: &ProtocolError) -> ProtocolFault {
    match e {
        ProtocolError::BadJson { .. } => ProtocolFault::InvalidJson,
        ProtocolError::UnknownOp { .. } | ProtocolError::MissingOp { .. } => ProtocolFault::UnknownOp,
        ProtocolError::MissingReq | ProtocolError::MissingField { .. } | ProtocolError::InvalidField { .. } => {
            ProtocolFault::BadFrame
        }
    }
}

/// Turns a server frame into an event; counts it (or its fault).
pub(crate) fn decode(text: &Utf8Bytes, stats: &FrameStats) -> Option<Inbound> {
    let frame = match Outgoing::parse(text.as_str()) {
        Ok(f) => f,
        Err(e) => {
            stats.fault(fault_of(&e), text.len());
            return None;
        }
    };
    stats.received(frame.frame.op_index(), text.len());
    let req = req_number(frame.req.as_deref());
    let reply = |reply| Some(Inbound::Reply { req, reply });
    match frame.frame {
        ServerFrame::Received {
            id: Some(_),
            mid,
            group_ack,
            duplicate,
            ..
        } => reply(Reply::Accepted {
            mid: mid.into(),
            group_ack,
            duplicate: duplicate.unwrap_or(false),
        }),
        ServerFrame::Received { .. } => reply(Reply::Acked),
        ServerFrame::Message {
            mid,
            from,
            to,
            chat_type,
            msg,
            msg_config,
            ..
        } => Some(Inbound::Message {
            mid: mid.into(),
            from: from.into_owned(),
            to: to.into_owned(),
            chat: chat_of(chat_type),
            body: msg.into_owned(),
            receipts: msg_config.is_some_and(|c| c.allow_group_ack),
        }),
        ServerFrame::Delivery {
            mid,
            from,
            online_state,
            ..
        } => Some(Inbound::Delivery {
            mid: mid.into(),
            from: from.into_owned(),
            live: online_state == 1,
        }),
        ServerFrame::Read {
            mid,
            from,
            chat_type,
            group_read_count,
            online_state,
            ..
        } => Some(Inbound::Read {
            mid: mid.into(),
            from: from.into_owned(),
            chat: chat_of(chat_type),
            count: group_read_count.map(|c| c.count),
            live: online_state == 1,
        }),
        ServerFrame::Channel {
            from, to, online_state, ..
        } => Some(Inbound::Channel {
            from: from.into_owned(),
            to: to.into_owned(),
            live: online_state == 1,
        }),
        ServerFrame::Statistic { location, .. } => {
            match crate::protocol::server::StatisticLocation::from_json(&location) {
                Ok(parsed) => Some(Inbound::ReadCounts(
                    parsed
                        .group_ack
                        .into_iter()
                        .map(|g| (g.mid.into(), g.group_id, g.count))
                        .collect(),
                )),
                Err(_) => {
                    stats.fault(ProtocolFault::BadFrame, 0);
                    None
                }
            }
        }
        ServerFrame::Result {
            data: ResultData::ReadUsers(page),
        } => reply(Reply::ReadUsers {
            users: page.userlist.into_iter().map(|u| u.into_owned()).collect(),
            next_key: page.next_key.map(|k| k.into_owned()),
            is_last: page.is_last,
        }),
        ServerFrame::Result { .. } => reply(Reply::Result),
        ServerFrame::Pong { .. } => reply(Reply::Pong),
        ServerFrame::Error { code, message } => reply(Reply::Error {
            refusal: refusal(code),
            message: message.into_owned(),
        }),
        // The server closes the connection next; its end is what the simulation sees.
        ServerFrame::Kicked { .. } => None,
        // A second loginOk answers nothing this connection asked for after login.
        ServerFrame::LoginOk { .. } => reply(Reply::Result),
    }
}

/// Encodes one request as its wire frame; `req` becomes `<letter><number>`.
pub(crate) fn encode(req: u64, op: &Op) -> (usize, String) {
    let (prefix, frame) = match op {
        Op::Send {
            id,
            chat,
            to,
            body,
            allow_group_ack,
        } => (
            's',
            ClientFrame::Send {
                id: id.as_str().into(),
                chat_type: chat_type(*chat),
                kind: MsgType::Txt,
                to: to.as_ref().into(),
                msg: body.as_str().into(),
                msg_config: allow_group_ack.then_some(MsgConfig { allow_group_ack: true }),
            },
        ),
        Op::Delivery { mid, to } => (
            'd',
            ClientFrame::Delivery {
                ack_id: wire_id(mid),
                to: to.as_ref().into(),
            },
        ),
        Op::Read { chat, mid, to } => (
            'r',
            ClientFrame::Read {
                chat_type: chat_type(*chat),
                id: wire_id(mid),
                to: to.as_ref().into(),
                ack_content: None,
            },
        ),
        // The server covers everything up to the ack itself: `newest` is not sent.
        Op::Channel { chat, to, .. } => (
            'c',
            ClientFrame::Channel {
                chat_type: chat_type(*chat),
                to: to.as_ref().into(),
            },
        ),
        Op::CreateGroup { group, members, admins } => (
            'g',
            ClientFrame::CreateGroup {
                group_id: group.as_ref().into(),
                members: members.iter().map(|m| m.as_ref().into()).collect(),
                admins: admins.iter().map(|m| m.as_ref().into()).collect(),
            },
        ),
        Op::ReadUsers { group, mid, limit, key } => (
            'u',
            ClientFrame::GetGroupMsgReadUser {
                group_id: group.as_ref().into(),
                msg_id: wire_id(mid),
                limit: Some(*limit),
                key: key.as_deref().map(Into::into),
            },
        ),
        Op::Ping => ('p', ClientFrame::Ping {}),
    };
    let request = Request {
        req: format!("{prefix}{req}").into(),
        frame,
    };
    (request.frame.op_index(), request.encode())
}

/// Resets the connection: no lingering on close, so the socket is dropped with an RST.
///
/// `fd` belongs to the stream the caller holds, so it is open here.
fn abort(fd: RawFd) {
    // SAFETY: the caller owns the stream that owns `fd`, so the descriptor stays open for
    // this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&fd);
    let _ = sock.set_linger(Some(Duration::ZERO));
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_their_number_and_replies_come_back_with_it() {
        let stats = FrameStats::new(&CLIENT_OPS, &SERVER_OPS);
        let (_, text) = encode(
            7,
            &Op::Read {
                chat: Chat::Single,
                mid: MsgId::from(5),
                to: Arc::from("u1"),
            },
        );
        assert!(text.contains("\"req\":\"r7\""), "{text}");
        let reply: Utf8Bytes = r#"{"op":"error","req":"r7","code":"not_found","message":"x"}"#.into();
        assert_eq!(
            decode(&reply, &stats),
            Some(Inbound::Reply {
                req: Some(7),
                reply: Reply::Error {
                    refusal: Refusal {
                        code: "not_found",
                        rate_limited: false
                    },
                    message: "x".into()
                }
            })
        );
        let accepted: Utf8Bytes = r#"{"op":"received","req":"s3","id":"42","mid":"9","to":"u2","time":1}"#.into();
        assert_eq!(
            decode(&accepted, &stats),
            Some(Inbound::Reply {
                req: Some(3),
                reply: Reply::Accepted {
                    mid: MsgId::from(9),
                    group_ack: None,
                    duplicate: false
                }
            })
        );
        let foreign: Utf8Bytes = r#"{"op":"pong","req":"zz","time":1}"#.into();
        assert_eq!(
            decode(&foreign, &stats),
            Some(Inbound::Reply {
                req: None,
                reply: Reply::Pong
            })
        );
        assert_eq!(stats.total_received(), 3);
    }

    #[test]
    fn unusable_server_frames_are_counted_by_cause() {
        let stats = FrameStats::new(&CLIENT_OPS, &SERVER_OPS);
        for text in [
            "not json",
            "[1,2]",
            r#"{"op":"bogus"}"#,
            r#"{"op":"message","mid":"x1","from":"a","to":"b","chatType":"singleChat","type":"txt","msg":"m","time":1}"#,
        ] {
            assert_eq!(decode(&Utf8Bytes::from(text), &stats), None, "{text}");
        }
        let counts: std::collections::BTreeMap<_, _> = stats.faults_by_cause().into_iter().collect();
        assert_eq!(counts["invalid_json"], 2);
        assert_eq!(counts["unknown_op"], 1);
        assert_eq!(counts["bad_frame"], 1);
        assert_eq!(stats.total_received(), 0);
    }
}
