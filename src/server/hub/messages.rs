//! `send`: checks, the `mid`, the fan-out to every recipient device (or the offline store),
//! and idempotency: a repeat of an accepted send (same sender, same client `id`) is answered
//! with the original `received` and `duplicate:true`, and nothing else happens.

use std::borrow::Cow;
use std::sync::atomic::Ordering::Relaxed;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Hub, Reply, Session, encode_push, reject};
use crate::protocol::client::{MsgConfig, MsgType};
use crate::protocol::{ChatType, ErrorCode, ServerFrame};
use crate::server::store::{MessageMeta, OfflineMessage, SentRecord, Store};

/// The `received` reply to a send, original or repeated.
fn received<'a>(id: &Cow<'a, str>, r: &SentRecord, duplicate: bool) -> ServerFrame<'a> {
    ServerFrame::Received {
        id: Some(id.clone()),
        mid: r.mid,
        to: Some(Cow::Owned(r.to.to_string())),
        time: Some(r.time),
        group_ack: r.group_ack,
        duplicate: duplicate.then_some(true),
    }
}

impl<S: Store> Hub<S> {
    /// `send {id, chatType, type, to, msg, msgConfig?}`.
    pub(super) fn send<'a>(
        &self,
        s: &Session,
        id: &Cow<'a, str>,
        chat_type: ChatType,
        to: &Cow<'a, str>,
        msg: &str,
        msg_config: Option<MsgConfig>,
    ) -> Reply<'a> {
        let now = self.now_ms();
        let asked = msg_config.is_some_and(|c| c.allow_group_ack);
        let mut guard = self.lock();
        let st = &mut *guard;
        // A repeat is answered before any check: the send was accepted once, and what may
        // have changed since (membership, this frame's fields) does not undo that.
        if let Some(original) = st.store.sent(&s.user, id)? {
            drop(guard);
            self.metrics.duplicate_sends.fetch_add(1, Relaxed);
            return Ok(received(id, &original, true));
        }
        if msg.len() > self.config.max_msg_bytes {
            let limit = self.config.max_msg_bytes;
            return Err(reject(
                ErrorCode::BadRequest,
                format!("msg is {} bytes; the limit is {limit}", msg.len()),
            ));
        }
        let (recipients, to_id, group_ack) = match chat_type {
            ChatType::Single => {
                if **to == *s.user {
                    return Err(reject(ErrorCode::BadRequest, "cannot send a message to oneself"));
                }
                let to_id = st.store.intern_user(to)?;
                (None, to_id, None)
            }
            ChatType::Group => {
                let Some(group) = st.store.group(to)? else {
                    return Err(reject(ErrorCode::NotFound, format!("group {to:?} does not exist")));
                };
                if !group.is_member(&s.user) {
                    return Err(reject(ErrorCode::Forbidden, format!("not a member of group {to:?}")));
                }
                let group_ack = if asked {
                    if !self.config.group_read_ack {
                        return Err(reject(
                            ErrorCode::GroupAckNotOpen,
                            "group read receipts are disabled on this server",
                        ));
                    }
                    if !self.config.group_ack_anyone && !group.is_manager(&s.user) {
                        return Err(reject(
                            ErrorCode::Forbidden,
                            "only the group owner and admins may ask for read receipts",
                        ));
                    }
                    Some(group.len() <= self.config.group_ack_max_members)
                } else {
                    None
                };
                (Some(group.members()), group.id().clone(), group_ack)
            }
        };
        let receipts = group_ack == Some(true);
        let mid = st.store.next_id()?;
        let meta = MessageMeta {
            from: s.user.clone(),
            to: to_id.clone(),
            chat_type,
            time: now,
            group_receipts: receipts,
        };
        st.store.insert_message(mid, meta)?;
        let record = SentRecord {
            mid,
            to: to_id.clone(),
            time: now,
            group_ack,
        };
        let cutoff = now.saturating_sub(self.config.ack_validity.as_millis() as u64);
        let early = st.store.remember_sent(&s.user, id, record.clone(), cutoff)?;
        if early > 0 {
            self.metrics.sent_ids_forgotten_early.fetch_add(early as u64, Relaxed);
        }
        let (_, frame) = encode_push(ServerFrame::Message {
            mid,
            from: Cow::Borrowed(&s.user),
            to: Cow::Borrowed(to),
            chat_type,
            kind: MsgType::Txt,
            msg: Cow::Borrowed(msg),
            time: now,
            msg_config: receipts.then_some(MsgConfig { allow_group_ack: true }),
        });
        let offline = |frame: &Utf8Bytes| OfflineMessage {
            mid,
            chat_type,
            frame: frame.clone(),
        };
        match recipients {
            None => {
                st.store.note_message(&to_id, &s.user, mid, true)?;
                st.store.note_message(&s.user, &to_id, mid, false)?;
                st.deliver_message(&self.metrics, &to_id, offline(&frame))?;
            }
            Some(members) => {
                // Unread counts: O(1), whatever the group's size. What remains per member is
                // the push (queued here, in mid order; the tasks are woken after the lock) or
                // the offline copy.
                st.store.note_group_message(&to_id, &s.user, mid)?;
                for m in members.iter().filter(|m| **m != s.user) {
                    st.deliver_message(&self.metrics, m, offline(&frame))?;
                }
            }
        }
        drop(guard);
        self.metrics.message(chat_type == ChatType::Group);
        Ok(received(id, &record, false))
    }
}
