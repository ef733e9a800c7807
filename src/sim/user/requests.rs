//! What a user's send and ack actions ask of the server, and how a reply is filed: one place
//! for the user actor (sockets) and the virtual-time client of `ackstorm simulate`.

use std::sync::Arc;

use crate::collector::{AckKind, Answer, Event, ReqKind};
use crate::sim::behaviour::{Action, Conv, MsgKey};
use crate::sim::world::World;
use crate::transport::{Chat, Op, Reply};

/// A request an action makes: what to send, how the reply audit files it, and the event that
/// says it left (stamped again with the instant it does).
#[derive(Debug)]
pub struct Request {
    /// What to send.
    pub op: Op,
    /// What kind of request it is.
    pub kind: ReqKind,
    /// The message it is about (sends and per-message acks).
    pub key: Option<MsgKey>,
    /// The peer or group it is about, by index.
    pub conv: u32,
    /// `Sent` or `AckSent`.
    pub event: Event,
}

/// The chat and the peer's or group's id of `conv`.
pub fn target(world: &World, conv: Conv) -> (Chat, Arc<str>) {
    match conv {
        Conv::Peer(p) => (Chat::Single, world.users[p as usize].clone()),
        Conv::Group(g) => (Chat::Group, world.groups[g as usize].id.clone()),
    }
}

/// How the reply audit files the request of user `ix`'s send, read ack or channel ack (its
/// kind, message and peer or group), without building it; `None` for any other action.
pub fn filing(ix: u32, a: &Action) -> Option<(ReqKind, Option<MsgKey>, u32)> {
    Some(match *a {
        Action::Send { seq, conv, .. } => (ReqKind::Send, Some(MsgKey { sender: ix, seq }), index(conv)),
        Action::ReadAck { conv, key, .. } => {
            let kind = match conv {
                Conv::Peer(_) => AckKind::Read,
                Conv::Group(_) => AckKind::GroupRead,
            };
            (ReqKind::Ack(kind), Some(key), 0)
        }
        Action::ChannelAck { conv, .. } => {
            let kind = match conv {
                Conv::Peer(_) => AckKind::Channel,
                Conv::Group(_) => AckKind::GroupChannel,
            };
            (ReqKind::Ack(kind), None, index(conv))
        }
        _ => return None,
    })
}

fn index(conv: Conv) -> u32 {
    match conv {
        Conv::Peer(i) | Conv::Group(i) => i,
    }
}

/// The request of user `ix`'s send, read ack or channel ack; any other action comes back as
/// it was. `tag` is the run's (first in bodies and client ids).
pub fn of_action(ix: u32, a: Action, world: &World, tag: &str, message_bytes: usize) -> Result<Request, Action> {
    let Some((kind, req_key, conv_index)) = filing(ix, &a) else {
        return Err(a);
    };
    Ok(match a {
        Action::Send {
            seq,
            conv,
            allow_group_ack,
            scheduled,
        } => {
            let (chat, to) = target(world, conv);
            let key = MsgKey { sender: ix, seq };
            Request {
                op: Op::Send {
                    // The run's tag keeps ids of earlier runs on the same server apart.
                    id: format!("{tag}.{seq}"),
                    chat,
                    to,
                    body: super::body(tag, key, message_bytes),
                    allow_group_ack,
                },
                kind,
                key: req_key,
                conv: conv_index,
                event: Event::Sent {
                    key,
                    chat,
                    conv: conv_index,
                    scheduled,
                    at: scheduled,
                    waited: false,
                },
            }
        }
        Action::ReadAck {
            conv,
            scheduled,
            mid,
            key,
        } => {
            let (chat, to) = target(world, conv);
            let to = match conv {
                Conv::Peer(_) => world.users[key.sender as usize].clone(),
                Conv::Group(_) => to,
            };
            let ReqKind::Ack(ack) = kind else {
                unreachable!("filed as an ack")
            };
            Request {
                op: Op::Read { chat, mid, to },
                kind,
                key: req_key,
                conv: conv_index,
                event: Event::AckSent {
                    reader: ix,
                    kind: ack,
                    key: Some(key),
                    conv: conv_index,
                    scheduled,
                    at: scheduled,
                    waited: false,
                },
            }
        }
        Action::ChannelAck {
            conv,
            scheduled,
            newest,
        } => {
            let (chat, to) = target(world, conv);
            let ReqKind::Ack(ack) = kind else {
                unreachable!("filed as an ack")
            };
            Request {
                event: Event::AckSent {
                    reader: ix,
                    kind: ack,
                    key: newest.as_ref().map(|(_, k)| *k),
                    conv: conv_index,
                    scheduled,
                    at: scheduled,
                    waited: false,
                },
                op: Op::Channel {
                    chat,
                    to,
                    newest: newest.map(|(m, _)| m),
                },
                kind,
                key: req_key,
                conv: conv_index,
            }
        }
        other => unreachable!("filed above: {other:?}"),
    })
}

/// How the audit files a reply.
pub fn answer(reply: Reply) -> Answer {
    match reply {
        Reply::Error { refusal, .. } => Answer::Refused(refusal),
        Reply::Accepted {
            mid,
            group_ack,
            duplicate,
        } => Answer::Accepted {
            mid,
            group_ack,
            duplicate,
        },
        Reply::Acked | Reply::ReadUsers { .. } | Reply::Result | Reply::Pong => Answer::Ok,
    }
}
