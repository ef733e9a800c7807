//! Frames a server sends: replies (with the request's `req`) and pushes (without), as
//! [`Outgoing`] = optional `req` + [`ServerFrame`], encoded and parsed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::client::{MsgConfig, MsgType};
use super::wire::ObjectWriter;
use super::{ChatType, ErrorCode, ProtocolError, Str, mid_str, parse_mid};

/// One server frame: a reply echoes the request's `req`; a push has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outgoing<'a> {
    /// The body, flattened beside `req` on the wire.
    #[serde(flatten)]
    pub frame: ServerFrame<'a>,
    /// The `req` of the client frame this answers; `None` for pushes and unparseable frames.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub req: Option<Cow<'a, str>>,
}

/// `groupReadCount: {MID: N}` of a group read receipt: one entry, keyed by the message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupReadCount {
    /// The message.
    pub mid: u64,
    /// Distinct readers so far.
    pub count: u64,
}

/// Every server frame of PROTOCOL.md, one variant per `op`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op")]
pub enum ServerFrame<'a> {
    /// Reply to `login`.
    #[serde(rename = "loginOk")]
    LoginOk {
        /// The user now logged in.
        user: Cow<'a, str>,
        /// The device (defaulted to `web`).
        device: Cow<'a, str>,
        /// Server time, ms since the epoch.
        time: u64,
    },
    /// Reply when a frame failed.
    #[serde(rename = "error")]
    Error {
        /// The protocol error code.
        code: ErrorCode,
        /// Human-readable detail.
        message: Cow<'a, str>,
    },
    /// Reply to `send` (all fields) and to receipts (`mid` only).
    #[serde(rename = "received")]
    Received {
        /// The client's message id (replies to `send`).
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<Cow<'a, str>>,
        /// The server id of the message or receipt.
        #[serde(with = "mid_str")]
        mid: u64,
        /// Recipient user or group (replies to `send`).
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<Cow<'a, str>>,
        /// Server time (replies to `send`).
        #[serde(skip_serializing_if = "Option::is_none")]
        time: Option<u64>,
        /// Whether group receipts are kept (group sends that asked for them).
        #[serde(rename = "groupAck", skip_serializing_if = "Option::is_none")]
        group_ack: Option<bool>,
        /// `true` when this answers a repeated `send` (same sender and client `id`): the
        /// reply is the original one and nothing was sent again. Absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        duplicate: Option<bool>,
    },
    /// A message pushed to a recipient device.
    #[serde(rename = "message")]
    Message {
        /// Server message id.
        #[serde(with = "mid_str")]
        mid: u64,
        /// Sender.
        from: Cow<'a, str>,
        /// Recipient user or group.
        to: Cow<'a, str>,
        /// One-to-one or group.
        #[serde(rename = "chatType")]
        chat_type: ChatType,
        /// Always `txt` in v1.
        #[serde(rename = "type")]
        kind: MsgType,
        /// Message text.
        msg: Cow<'a, str>,
        /// Server time of the send.
        time: u64,
        /// `{allowGroupAck:true}` exactly when group receipts are kept.
        #[serde(rename = "msgConfig", skip_serializing_if = "Option::is_none")]
        msg_config: Option<MsgConfig>,
    },
    /// Delivery receipt pushed to the sender.
    #[serde(rename = "delivery")]
    Delivery {
        /// The receipt's own server id.
        #[serde(with = "mid_str")]
        id: u64,
        /// The message delivered.
        #[serde(with = "mid_str")]
        mid: u64,
        /// The recipient.
        from: Cow<'a, str>,
        /// The sender.
        to: Cow<'a, str>,
        /// 1 live, 0 replayed at login.
        #[serde(rename = "onlineState")]
        online_state: u8,
    },
    /// Read receipt pushed to the sender (1:1 or group).
    #[serde(rename = "read")]
    Read {
        /// The receipt's own server id.
        #[serde(with = "mid_str")]
        id: u64,
        /// The message read.
        #[serde(with = "mid_str")]
        mid: u64,
        /// One-to-one or group.
        #[serde(rename = "chatType")]
        chat_type: ChatType,
        /// The reader.
        from: Cow<'a, str>,
        /// The sender (1:1) or group.
        to: Cow<'a, str>,
        /// Group receipts: distinct readers so far.
        #[serde(rename = "groupReadCount", skip_serializing_if = "Option::is_none")]
        group_read_count: Option<GroupReadCount>,
        /// Group receipts: the reader's `ackContent` (`""` when absent).
        #[serde(rename = "ackContent", skip_serializing_if = "Option::is_none")]
        ack_content: Option<Cow<'a, str>>,
        /// 1 live, 0 replayed at login.
        #[serde(rename = "onlineState")]
        online_state: u8,
    },
    /// Channel ack pushed to the peer and to the reader's other devices.
    #[serde(rename = "channel")]
    Channel {
        /// The ack's own server id.
        #[serde(with = "mid_str")]
        id: u64,
        /// Always one-to-one (group channel acks push nothing).
        #[serde(rename = "chatType")]
        chat_type: ChatType,
        /// The reader.
        from: Cow<'a, str>,
        /// The peer.
        to: Cow<'a, str>,
        /// Server time of the ack.
        time: u64,
        /// 1 live, 0 replayed at login.
        #[serde(rename = "onlineState")]
        online_state: u8,
    },
    /// Group read counts that arrived while the sender was offline, sent once at login.
    #[serde(rename = "statistic")]
    Statistic {
        /// Always 0 (group read acks).
        operation: u8,
        /// JSON text: `{"group_ack":[{"mid":MID,"groupId":GROUP,"count":N},...]}`.
        location: Cow<'a, str>,
    },
    /// The same user and device logged in elsewhere; the connection closes next.
    #[serde(rename = "kicked")]
    Kicked {
        /// `login_elsewhere`.
        reason: Cow<'a, str>,
    },
    /// Reply to group operations and queries.
    #[serde(rename = "result")]
    Result {
        /// Op-specific payload.
        data: ResultData<'a>,
    },
    /// Reply to `ping`.
    #[serde(rename = "pong")]
    Pong {
        /// Server time.
        time: u64,
    },
}

/// Payload of a `result` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ResultData<'a> {
    /// `createGroup`, `joinGroup`, `leaveGroup`: `{groupId}`.
    Group {
        /// The group acted on.
        #[serde(rename = "groupId")]
        group_id: Cow<'a, str>,
    },
    /// `getGroupMsgReadUser`.
    ReadUsers(ReadUsers<'a>),
    /// `getConversations`.
    Conversations(Vec<Conversation<'a>>),
}

/// One page of a message's readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadUsers<'a> {
    /// The message.
    #[serde(with = "mid_str")]
    pub ackmid: u64,
    /// Distinct readers in all.
    pub total: u64,
    /// Reader ids on this page, newest first.
    pub userlist: Vec<Cow<'a, str>>,
    /// Key of the next page; `null` on the last page.
    pub next_key: Option<Cow<'a, str>>,
    /// True on the last page.
    pub is_last: bool,
    /// Server time of the reply.
    pub timestamp: u64,
}

/// One entry of `getConversations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation<'a> {
    /// Peer user id or group id.
    #[serde(rename = "conversationId")]
    pub conversation_id: Cow<'a, str>,
    /// One-to-one or group.
    #[serde(rename = "chatType")]
    pub chat_type: ChatType,
    /// Unread messages for this user.
    pub unread: u64,
    /// Newest message of the conversation.
    #[serde(rename = "lastMid", with = "mid_str")]
    pub last_mid: u64,
}

/// Every server op, in [`ServerFrame::op_index`] order.
pub const SERVER_OPS: [&str; 11] = [
    "loginOk",
    "error",
    "received",
    "message",
    "delivery",
    "read",
    "channel",
    "statistic",
    "kicked",
    "result",
    "pong",
];

impl ServerFrame<'_> {
    /// Position of this frame's op in [`SERVER_OPS`] (counter arrays).
    pub fn op_index(&self) -> usize {
        match self {
            ServerFrame::LoginOk { .. } => 0,
            ServerFrame::Error { .. } => 1,
            ServerFrame::Received { .. } => 2,
            ServerFrame::Message { .. } => 3,
            ServerFrame::Delivery { .. } => 4,
            ServerFrame::Read { .. } => 5,
            ServerFrame::Channel { .. } => 6,
            ServerFrame::Statistic { .. } => 7,
            ServerFrame::Kicked { .. } => 8,
            ServerFrame::Result { .. } => 9,
            ServerFrame::Pong { .. } => 10,
        }
    }

    /// The wire `op`.
    pub fn op(&self) -> &'static str {
        SERVER_OPS[self.op_index()]
    }
}

#[path = "server_parse.rs"]
mod parse;

impl<'a> Outgoing<'a> {
    /// A push (no `req`).
    pub fn push(frame: ServerFrame<'a>) -> Self {
        Outgoing { frame, req: None }
    }

    /// A reply echoing `req`.
    pub fn reply(req: impl Into<Cow<'a, str>>, frame: ServerFrame<'a>) -> Self {
        Outgoing {
            frame,
            req: Some(req.into()),
        }
    }

    /// Encodes the frame as JSON text (the same JSON as the derived `Serialize`, written
    /// directly; see [`super::wire`]).
    pub fn encode(&self) -> String {
        let extra = match &self.frame {
            ServerFrame::Message { msg, .. } => msg.len(),
            ServerFrame::Statistic { location, .. } => location.len(),
            _ => 0,
        };
        let mut w = ObjectWriter::new(self.frame.op(), 128 + extra);
        w.opt_str("req", self.req.as_deref());
        match &self.frame {
            ServerFrame::LoginOk { user, device, time } => w.str("user", user).str("device", device).num("time", *time),
            ServerFrame::Error { code, message } => w.str("code", code.as_str()).str("message", message),
            ServerFrame::Received {
                id,
                mid,
                to,
                time,
                group_ack,
                duplicate,
            } => w
                .opt_str("id", id.as_deref())
                .id("mid", *mid)
                .opt_str("to", to.as_deref())
                .opt_num("time", *time)
                .opt_bool("groupAck", *group_ack)
                .opt_bool("duplicate", *duplicate),
            ServerFrame::Message {
                mid,
                from,
                to,
                chat_type,
                kind: MsgType::Txt,
                msg,
                time,
                msg_config,
            } => {
                w.id("mid", *mid)
                    .str("from", from)
                    .str("to", to)
                    .str("chatType", chat_type.as_str())
                    .str("type", "txt")
                    .str("msg", msg)
                    .num("time", *time);
                if let Some(c) = msg_config {
                    w.serde("msgConfig", c);
                }
                &mut w
            }
            ServerFrame::Delivery {
                id,
                mid,
                from,
                to,
                online_state,
            } => w
                .id("id", *id)
                .id("mid", *mid)
                .str("from", from)
                .str("to", to)
                .num("onlineState", u64::from(*online_state)),
            ServerFrame::Read {
                id,
                mid,
                chat_type,
                from,
                to,
                group_read_count,
                ack_content,
                online_state,
            } => {
                w.id("id", *id)
                    .id("mid", *mid)
                    .str("chatType", chat_type.as_str())
                    .str("from", from)
                    .str("to", to);
                if let Some(c) = group_read_count {
                    w.id_count("groupReadCount", c.mid, c.count);
                }
                w.opt_str("ackContent", ack_content.as_deref())
                    .num("onlineState", u64::from(*online_state))
            }
            ServerFrame::Channel {
                id,
                chat_type,
                from,
                to,
                time,
                online_state,
            } => w
                .id("id", *id)
                .str("chatType", chat_type.as_str())
                .str("from", from)
                .str("to", to)
                .num("time", *time)
                .num("onlineState", u64::from(*online_state)),
            ServerFrame::Statistic { operation, location } => {
                w.num("operation", u64::from(*operation)).str("location", location)
            }
            ServerFrame::Kicked { reason } => w.str("reason", reason),
            ServerFrame::Result { data } => w.serde("data", data),
            ServerFrame::Pong { time } => w.num("time", *time),
        };
        w.finish()
    }

    /// Parses one text frame (the driver's side).
    pub fn parse(text: &'a str) -> Result<Outgoing<'a>, ProtocolError> {
        let raw: parse::RawServer<'a> =
            serde_json::from_str(text).map_err(|e| ProtocolError::BadJson { reason: e.to_string() })?;
        raw.into_outgoing()
    }
}

impl Serialize for GroupReadCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        let mut buf = itoa::Buffer::new();
        map.serialize_entry(buf.format(self.mid), &self.count)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for GroupReadCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroupReadCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with one message id key and a count")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (key, count): (Str<'de>, u64) = map
                    .next_entry()?
                    .ok_or_else(|| de::Error::custom("empty groupReadCount"))?;
                let mid = parse_mid(&key.0).ok_or_else(|| de::Error::custom("bad message id key"))?;
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("groupReadCount has more than one entry"));
                }
                Ok(GroupReadCount { mid, count })
            }
        }
        d.deserialize_map(V)
    }
}

/// The statistic frame's `location` payload, as typed data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatisticLocation {
    /// Latest reader count per message.
    pub group_ack: Vec<GroupAckCount>,
}

/// One entry of [`StatisticLocation`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAckCount {
    /// The message.
    #[serde(with = "mid_str")]
    pub mid: u64,
    /// Its group.
    #[serde(rename = "groupId")]
    pub group_id: String,
    /// Distinct readers when the sender logged in.
    pub count: u64,
}

impl StatisticLocation {
    /// The JSON text carried in `location`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("statistic payload always serializes")
    }

    /// Parses the JSON text carried in `location`.
    pub fn from_json(text: &str) -> Result<Self, ProtocolError> {
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidField {
            req: None,
            op: "statistic".to_string(),
            field: "location".to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
