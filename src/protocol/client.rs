//! Frames a client sends: [`Request`] = `req` + [`ClientFrame`], parsed and encoded.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::wire::ObjectWriter;
use super::{ChatType, ProtocolError, Str, is_valid_id, mid_str, parse_mid};

/// One client frame: the client-chosen `req` and the typed body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request<'a> {
    /// The body, flattened beside `req` on the wire.
    #[serde(flatten)]
    pub frame: ClientFrame<'a>,
    /// Client-chosen, unique per connection; echoed by the server's answer.
    pub req: Cow<'a, str>,
}

/// Options of a `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgConfig {
    /// Ask for group read receipts (group messages from owners/admins only).
    #[serde(rename = "allowGroupAck", default)]
    pub allow_group_ack: bool,
}

/// The message type of a `send`; v1 has text only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MsgType {
    /// `"txt"`.
    #[serde(rename = "txt")]
    Txt,
}

/// The body of every client frame of PROTOCOL.md, one variant per `op`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op")]
pub enum ClientFrame<'a> {
    /// `login {user, token, device?, delivery?}`.
    #[serde(rename = "login")]
    Login {
        /// The user logging in.
        user: Cow<'a, str>,
        /// Lowercase hex HMAC-SHA256(secret, user).
        token: Cow<'a, str>,
        /// Device name; the server defaults it to `"web"`.
        #[serde(skip_serializing_if = "Option::is_none")]
        device: Option<Cow<'a, str>>,
        /// Whether this connection sends delivery receipts for 1:1 messages.
        delivery: bool,
    },
    /// `send {id, chatType, type, to, msg, msgConfig?}`.
    #[serde(rename = "send")]
    Send {
        /// The client's own message id, echoed in `received`.
        id: Cow<'a, str>,
        /// One-to-one or group.
        #[serde(rename = "chatType")]
        chat_type: ChatType,
        /// Always `txt` in v1.
        #[serde(rename = "type")]
        kind: MsgType,
        /// Peer user or group id.
        to: Cow<'a, str>,
        /// Message text.
        msg: Cow<'a, str>,
        /// Receipt options.
        #[serde(rename = "msgConfig", skip_serializing_if = "Option::is_none")]
        msg_config: Option<MsgConfig>,
    },
    /// `delivery {ackId, to}`: delivery receipt for a 1:1 message.
    #[serde(rename = "delivery")]
    Delivery {
        /// The message being acknowledged.
        #[serde(rename = "ackId", with = "mid_str")]
        ack_id: u64,
        /// The message's sender.
        to: Cow<'a, str>,
    },
    /// `read {chatType, id, to, ackContent?}`: read receipt for one message.
    #[serde(rename = "read")]
    Read {
        /// One-to-one or group.
        #[serde(rename = "chatType")]
        chat_type: ChatType,
        /// The message being read.
        #[serde(with = "mid_str")]
        id: u64,
        /// Sender (1:1) or group.
        to: Cow<'a, str>,
        /// Free text echoed to the sender (group receipts).
        #[serde(rename = "ackContent", skip_serializing_if = "Option::is_none")]
        ack_content: Option<Cow<'a, str>>,
    },
    /// `channel {chatType, to}`: "I have read the whole conversation".
    #[serde(rename = "channel")]
    Channel {
        /// One-to-one or group.
        #[serde(rename = "chatType")]
        chat_type: ChatType,
        /// Peer user or group.
        to: Cow<'a, str>,
    },
    /// `createGroup {groupId, members, admins?}`.
    #[serde(rename = "createGroup")]
    CreateGroup {
        /// New group id.
        #[serde(rename = "groupId")]
        group_id: Cow<'a, str>,
        /// Initial members (the caller, the owner, is added).
        members: Vec<Cow<'a, str>>,
        /// Admins (added as members if not listed).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        admins: Vec<Cow<'a, str>>,
    },
    /// `joinGroup {groupId}`.
    #[serde(rename = "joinGroup")]
    JoinGroup {
        /// Group to join.
        #[serde(rename = "groupId")]
        group_id: Cow<'a, str>,
    },
    /// `leaveGroup {groupId}`.
    #[serde(rename = "leaveGroup")]
    LeaveGroup {
        /// Group to leave.
        #[serde(rename = "groupId")]
        group_id: Cow<'a, str>,
    },
    /// `getGroupMsgReadUser {groupId, msgId, limit?, key?}`.
    #[serde(rename = "getGroupMsgReadUser")]
    GetGroupMsgReadUser {
        /// The message's group.
        #[serde(rename = "groupId")]
        group_id: Cow<'a, str>,
        /// The message.
        #[serde(rename = "msgId", with = "mid_str")]
        msg_id: u64,
        /// Page size (default and maximum 500).
        #[serde(skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// `next_key` of the previous page.
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<Cow<'a, str>>,
    },
    /// `getConversations {}`.
    #[serde(rename = "getConversations")]
    GetConversations {},
    /// `ping {}`.
    #[serde(rename = "ping")]
    Ping {},
}

impl ClientFrame<'_> {
    /// The wire `op`.
    pub fn op(&self) -> &'static str {
        CLIENT_OPS[self.op_index()]
    }

    /// Position of this frame's op in [`CLIENT_OPS`] (counter arrays).
    pub fn op_index(&self) -> usize {
        match self {
            ClientFrame::Login { .. } => 0,
            ClientFrame::Send { .. } => 1,
            ClientFrame::Delivery { .. } => 2,
            ClientFrame::Read { .. } => 3,
            ClientFrame::Channel { .. } => 4,
            ClientFrame::CreateGroup { .. } => 5,
            ClientFrame::JoinGroup { .. } => 6,
            ClientFrame::LeaveGroup { .. } => 7,
            ClientFrame::GetGroupMsgReadUser { .. } => 8,
            ClientFrame::GetConversations {} => 9,
            ClientFrame::Ping {} => 10,
        }
    }
}

/// Every client op, in [`ClientFrame::op_index`] order.
pub const CLIENT_OPS: [&str; 11] = [
    "login",
    "send",
    "delivery",
    "read",
    "channel",
    "createGroup",
    "joinGroup",
    "leaveGroup",
    "getGroupMsgReadUser",
    "getConversations",
    "ping",
];

impl<'a> Request<'a> {
    /// Parses one text frame. Borrows from `text` where no JSON escapes get in the way.
    pub fn parse(text: &'a str) -> Result<Request<'a>, ProtocolError> {
        match serde_json::from_str::<RawClient<'a>>(text) {
            Ok(raw) => raw.into_request(),
            Err(_) => Err(diagnose(text)),
        }
    }

    /// Encodes the frame as JSON text (the same JSON as the derived `Serialize`, written
    /// directly; see [`super::wire`]).
    pub fn encode(&self) -> String {
        let extra = match &self.frame {
            ClientFrame::Send { msg, .. } => msg.len(),
            ClientFrame::CreateGroup { members, admins, .. } => 68 * (members.len() + admins.len()),
            _ => 0,
        };
        let mut w = ObjectWriter::new(self.frame.op(), 128 + extra);
        w.str("req", &self.req);
        match &self.frame {
            ClientFrame::Login {
                user,
                token,
                device,
                delivery,
            } => w
                .str("user", user)
                .str("token", token)
                .opt_str("device", device.as_deref())
                .bool("delivery", *delivery),
            ClientFrame::Send {
                id,
                chat_type,
                kind: MsgType::Txt,
                to,
                msg,
                msg_config,
            } => {
                w.str("id", id)
                    .str("chatType", chat_type.as_str())
                    .str("type", "txt")
                    .str("to", to)
                    .str("msg", msg);
                if let Some(c) = msg_config {
                    w.serde("msgConfig", c);
                }
                &mut w
            }
            ClientFrame::Delivery { ack_id, to } => w.id("ackId", *ack_id).str("to", to),
            ClientFrame::Read {
                chat_type,
                id,
                to,
                ack_content,
            } => w
                .str("chatType", chat_type.as_str())
                .id("id", *id)
                .str("to", to)
                .opt_str("ackContent", ack_content.as_deref()),
            ClientFrame::Channel { chat_type, to } => w.str("chatType", chat_type.as_str()).str("to", to),
            ClientFrame::CreateGroup {
                group_id,
                members,
                admins,
            } => {
                w.str("groupId", group_id).str_list("members", members);
                if !admins.is_empty() {
                    w.str_list("admins", admins);
                }
                &mut w
            }
            ClientFrame::JoinGroup { group_id } | ClientFrame::LeaveGroup { group_id } => w.str("groupId", group_id),
            ClientFrame::GetGroupMsgReadUser {
                group_id,
                msg_id,
                limit,
                key,
            } => w
                .str("groupId", group_id)
                .id("msgId", *msg_id)
                .opt_num("limit", limit.map(u64::from))
                .opt_str("key", key.as_deref()),
            ClientFrame::GetConversations {} | ClientFrame::Ping {} => &mut w,
        };
        w.finish()
    }
}

/// Every field any client frame may carry; one pass of serde fills it, then
/// [`RawClient::into_request`] checks the op's required fields.
#[derive(Deserialize)]
struct RawClient<'a> {
    #[serde(borrow)]
    op: Option<Str<'a>>,
    #[serde(borrow)]
    req: Option<Str<'a>>,
    #[serde(borrow)]
    user: Option<Str<'a>>,
    #[serde(borrow)]
    token: Option<Str<'a>>,
    #[serde(borrow)]
    device: Option<Str<'a>>,
    delivery: Option<bool>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(rename = "chatType", borrow)]
    chat_type: Option<Str<'a>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    to: Option<Str<'a>>,
    #[serde(borrow)]
    msg: Option<Str<'a>>,
    #[serde(rename = "msgConfig")]
    msg_config: Option<MsgConfig>,
    #[serde(rename = "ackId", borrow)]
    ack_id: Option<Str<'a>>,
    #[serde(rename = "ackContent", borrow)]
    ack_content: Option<Str<'a>>,
    #[serde(rename = "groupId", borrow)]
    group_id: Option<Str<'a>>,
    #[serde(borrow)]
    members: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    admins: Option<Vec<Str<'a>>>,
    #[serde(rename = "msgId", borrow)]
    msg_id: Option<Str<'a>>,
    limit: Option<u32>,
    #[serde(borrow)]
    key: Option<Str<'a>>,
}

/// Field checks for one op, carrying the `req` and op name into every error.
struct Check<'r, 'q> {
    req: &'r Option<Str<'q>>,
    op: &'static str,
}

impl Check<'_, '_> {
    fn req(&self) -> Option<String> {
        self.req.as_ref().map(|s| s.0.to_string())
    }

    fn need<'a>(&self, v: Option<Str<'a>>, field: &'static str) -> Result<Cow<'a, str>, ProtocolError> {
        v.map(|s| s.0).ok_or_else(|| ProtocolError::MissingField {
            req: self.req(),
            op: self.op,
            field,
        })
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> ProtocolError {
        ProtocolError::InvalidField {
            req: self.req(),
            op: self.op.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn id<'a>(&self, v: Option<Str<'a>>, field: &'static str) -> Result<Cow<'a, str>, ProtocolError> {
        let s = self.need(v, field)?;
        self.valid_id(s, field)
    }

    fn valid_id<'a>(&self, s: Cow<'a, str>, field: &str) -> Result<Cow<'a, str>, ProtocolError> {
        if is_valid_id(&s) {
            Ok(s)
        } else {
            Err(self.invalid(field, format!("{s:?} is not an id ([A-Za-z0-9_.-]{{1,64}})")))
        }
    }

    fn opt_id<'a>(&self, v: Option<Str<'a>>, field: &'static str) -> Result<Option<Cow<'a, str>>, ProtocolError> {
        v.map(|s| self.valid_id(s.0, field)).transpose()
    }

    fn ids<'a>(&self, v: Option<Vec<Str<'a>>>, field: &str) -> Result<Vec<Cow<'a, str>>, ProtocolError> {
        v.unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, s)| self.valid_id(s.0, &format!("{field}[{i}]")))
            .collect()
    }

    fn mid(&self, v: Option<Str<'_>>, field: &'static str) -> Result<u64, ProtocolError> {
        let s = self.need(v, field)?;
        parse_mid(&s).ok_or_else(|| self.invalid(field, format!("{s:?} is not a decimal message id")))
    }

    fn chat_type(&self, v: Option<Str<'_>>) -> Result<ChatType, ProtocolError> {
        let s = self.need(v, "chatType")?;
        ChatType::parse(&s).ok_or_else(|| self.invalid("chatType", format!("{s:?} is not singleChat or groupChat")))
    }
}

impl<'a> RawClient<'a> {
    fn into_request(self) -> Result<Request<'a>, ProtocolError> {
        let RawClient {
            op,
            req,
            user,
            token,
            device,
            delivery,
            id,
            chat_type,
            kind,
            to,
            msg,
            msg_config,
            ack_id,
            ack_content,
            group_id,
            members,
            admins,
            msg_id,
            limit,
            key,
        } = self;
        let Some(op) = op else {
            return Err(ProtocolError::MissingOp {
                req: req.map(|r| r.0.into_owned()),
            });
        };
        let op_index = CLIENT_OPS.iter().position(|o| *o == op.0);
        let Some(op_index) = op_index else {
            return Err(ProtocolError::UnknownOp {
                req: req.map(|r| r.0.into_owned()),
                op: op.0.into_owned(),
            });
        };
        let c = Check {
            req: &req,
            op: CLIENT_OPS[op_index],
        };
        let frame = match op_index {
            0 => ClientFrame::Login {
                user: c.id(user, "user")?,
                token: c.need(token, "token")?,
                device: c.opt_id(device, "device")?,
                delivery: delivery.unwrap_or(false),
            },
            1 => {
                let chat_type = c.chat_type(chat_type)?;
                let kind = c.need(kind, "type")?;
                if kind != "txt" {
                    return Err(c.invalid("type", format!("{kind:?} is not \"txt\"")));
                }
                ClientFrame::Send {
                    id: c.need(id, "id")?,
                    chat_type,
                    kind: MsgType::Txt,
                    to: c.id(to, "to")?,
                    msg: c.need(msg, "msg")?,
                    msg_config,
                }
            }
            2 => ClientFrame::Delivery {
                ack_id: c.mid(ack_id, "ackId")?,
                to: c.id(to, "to")?,
            },
            3 => ClientFrame::Read {
                chat_type: c.chat_type(chat_type)?,
                id: c.mid(id, "id")?,
                to: c.id(to, "to")?,
                ack_content: ack_content.map(|s| s.0),
            },
            4 => ClientFrame::Channel {
                chat_type: c.chat_type(chat_type)?,
                to: c.id(to, "to")?,
            },
            5 => ClientFrame::CreateGroup {
                group_id: c.id(group_id, "groupId")?,
                members: match members {
                    Some(m) => c.ids(Some(m), "members")?,
                    None => return Err(c.need(None, "members").unwrap_err()),
                },
                admins: c.ids(admins, "admins")?,
            },
            6 => ClientFrame::JoinGroup {
                group_id: c.id(group_id, "groupId")?,
            },
            7 => ClientFrame::LeaveGroup {
                group_id: c.id(group_id, "groupId")?,
            },
            8 => {
                if limit == Some(0) {
                    return Err(c.invalid("limit", "must be at least 1"));
                }
                ClientFrame::GetGroupMsgReadUser {
                    group_id: c.id(group_id, "groupId")?,
                    msg_id: c.mid(msg_id, "msgId")?,
                    limit,
                    key: key.map(|s| s.0),
                }
            }
            9 => ClientFrame::GetConversations {},
            _ => ClientFrame::Ping {},
        };
        let Some(req) = req else {
            return Err(ProtocolError::MissingReq);
        };
        Ok(Request { frame, req: req.0 })
    }
}

/// The slow path, taken only when the one-pass parse failed: find the `req` to echo and name
/// the field that was wrong.
fn diagnose(text: &str) -> ProtocolError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return ProtocolError::BadJson { reason: e.to_string() },
    };
    let Some(obj) = value.as_object() else {
        return ProtocolError::BadJson {
            reason: "expected an object".to_string(),
        };
    };
    let req = obj.get("req").and_then(|r| r.as_str()).map(str::to_string);
    let op = obj.get("op").and_then(|o| o.as_str()).unwrap_or("?").to_string();
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, RawClient<'_>>(&mut de) {
        Err(e) => {
            let field = e.path().to_string();
            let reason = e.into_inner().to_string();
            let reason = match reason.find(" at line ") {
                Some(at) => reason[..at].to_string(),
                None => reason,
            };
            ProtocolError::InvalidField { req, op, field, reason }
        }
        // Parsed this time: cannot happen for the same text, but stay total.
        Ok(_) => ProtocolError::BadJson {
            reason: "unparseable frame".to_string(),
        },
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
