//! Driver-side parsing of server frames: one flat borrowed struct filled in one serde pass,
//! then checked per op (the approach of `client::RawClient`).

use serde::Deserialize;

use super::{GroupReadCount, Outgoing, ResultData, SERVER_OPS, ServerFrame};
use crate::protocol::client::{MsgConfig, MsgType};
use crate::protocol::{ChatType, ErrorCode, ProtocolError, Str, parse_mid};

/// Every field any server frame may carry (see `client::RawClient` for the approach).
#[derive(Deserialize)]
pub(super) struct RawServer<'a> {
    #[serde(borrow)]
    op: Option<Str<'a>>,
    #[serde(borrow)]
    req: Option<Str<'a>>,
    #[serde(borrow)]
    user: Option<Str<'a>>,
    #[serde(borrow)]
    device: Option<Str<'a>>,
    time: Option<u64>,
    code: Option<ErrorCode>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    mid: Option<Str<'a>>,
    #[serde(borrow)]
    to: Option<Str<'a>>,
    #[serde(rename = "groupAck")]
    group_ack: Option<bool>,
    duplicate: Option<bool>,
    #[serde(borrow)]
    from: Option<Str<'a>>,
    #[serde(rename = "chatType")]
    chat_type: Option<ChatType>,
    #[serde(rename = "type")]
    kind: Option<MsgType>,
    #[serde(borrow)]
    msg: Option<Str<'a>>,
    #[serde(rename = "msgConfig")]
    msg_config: Option<MsgConfig>,
    #[serde(rename = "onlineState")]
    online_state: Option<u8>,
    #[serde(rename = "groupReadCount")]
    group_read_count: Option<GroupReadCount>,
    #[serde(rename = "ackContent", borrow)]
    ack_content: Option<Str<'a>>,
    operation: Option<u8>,
    #[serde(borrow)]
    location: Option<Str<'a>>,
    #[serde(borrow)]
    reason: Option<Str<'a>>,
    data: Option<serde_json::Value>,
}

impl<'a> RawServer<'a> {
    pub(super) fn into_outgoing(self) -> Result<Outgoing<'a>, ProtocolError> {
        let req = self.req.map(|r| r.0);
        let op = self.op.ok_or_else(|| ProtocolError::MissingOp {
            req: req.as_ref().map(|r| r.to_string()),
        })?;
        let op_index = SERVER_OPS
            .iter()
            .position(|o| *o == op.0)
            .ok_or_else(|| ProtocolError::UnknownOp {
                req: req.as_ref().map(|r| r.to_string()),
                op: op.0.to_string(),
            })?;
        let op = SERVER_OPS[op_index];
        let missing = |field: &'static str| ProtocolError::MissingField {
            req: req.as_ref().map(|r| r.to_string()),
            op,
            field,
        };
        let invalid = |field: &str, reason: &str| ProtocolError::InvalidField {
            req: req.as_ref().map(|r| r.to_string()),
            op: op.to_string(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let s = |v: Option<Str<'a>>, field: &'static str| v.map(|s| s.0).ok_or_else(|| missing(field));
        let mid = |v: Option<Str<'a>>, field: &'static str| {
            let text = v.ok_or_else(|| missing(field))?;
            parse_mid(&text.0).ok_or_else(|| invalid(field, "is not a decimal id"))
        };
        let time = self.time.ok_or_else(|| missing("time"));
        let online_state = self.online_state.ok_or_else(|| missing("onlineState"));
        let chat_type = self.chat_type.ok_or_else(|| missing("chatType"));
        let frame = match op_index {
            0 => ServerFrame::LoginOk {
                user: s(self.user, "user")?,
                device: s(self.device, "device")?,
                time: time?,
            },
            1 => ServerFrame::Error {
                code: self.code.ok_or_else(|| missing("code"))?,
                message: self.message.map(|m| m.0).unwrap_or_default(),
            },
            2 => ServerFrame::Received {
                id: self.id.map(|i| i.0),
                mid: mid(self.mid, "mid")?,
                to: self.to.map(|t| t.0),
                time: self.time,
                group_ack: self.group_ack,
                duplicate: self.duplicate,
            },
            3 => ServerFrame::Message {
                mid: mid(self.mid, "mid")?,
                from: s(self.from, "from")?,
                to: s(self.to, "to")?,
                chat_type: chat_type?,
                kind: self.kind.ok_or_else(|| missing("type"))?,
                msg: s(self.msg, "msg")?,
                time: time?,
                msg_config: self.msg_config,
            },
            4 => ServerFrame::Delivery {
                id: mid(self.id, "id")?,
                mid: mid(self.mid, "mid")?,
                from: s(self.from, "from")?,
                to: s(self.to, "to")?,
                online_state: online_state?,
            },
            5 => ServerFrame::Read {
                id: mid(self.id, "id")?,
                mid: mid(self.mid, "mid")?,
                chat_type: chat_type?,
                from: s(self.from, "from")?,
                to: s(self.to, "to")?,
                group_read_count: self.group_read_count,
                ack_content: self.ack_content.map(|a| a.0),
                online_state: online_state?,
            },
            6 => ServerFrame::Channel {
                id: mid(self.id, "id")?,
                chat_type: chat_type?,
                from: s(self.from, "from")?,
                to: s(self.to, "to")?,
                time: time?,
                online_state: online_state?,
            },
            7 => ServerFrame::Statistic {
                operation: self.operation.ok_or_else(|| missing("operation"))?,
                location: s(self.location, "location")?,
            },
            8 => ServerFrame::Kicked {
                reason: s(self.reason, "reason")?,
            },
            9 => {
                let data = self.data.ok_or_else(|| missing("data"))?;
                let data = ResultData::deserialize(data).map_err(|e| invalid("data", &e.to_string()))?;
                ServerFrame::Result { data }
            }
            _ => ServerFrame::Pong { time: time? },
        };
        Ok(Outgoing { frame, req })
    }
}
