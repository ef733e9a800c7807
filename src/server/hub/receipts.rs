//! Receipts: delivery and read receipts (1:1 and group) and channel acks.

use std::sync::Arc;

use super::{Hub, Reply, Session, receipt_push, reject};
use crate::protocol::{ChatType, ErrorCode, ServerFrame};
use crate::server::metrics::ReceiptMetric;
use crate::server::store::{Inbox, OfflineReceipt, ReceiptKind, Recorded, Store};

/// The reply to every receipt: `received {mid}` with the receipt's own id.
fn received<'a>(id: u64) -> ServerFrame<'a> {
    ServerFrame::Received {
        id: None,
        mid: id,
        to: None,
        time: None,
        group_ack: None,
        duplicate: None,
    }
}

impl<S: Store> Hub<S> {
    /// `delivery {ackId, to}`.
    pub(super) fn delivery<'a>(&self, s: &Session, mid: u64, to: &str) -> Reply<'a> {
        self.single_receipt(s, mid, to, ReceiptKind::Delivery)
    }

    /// `read {chatType:"singleChat", id, to}`.
    pub(super) fn read_single<'a>(&self, s: &Session, mid: u64, to: &str) -> Reply<'a> {
        self.single_receipt(s, mid, to, ReceiptKind::Read)
    }

    /// Delivery and 1:1 read receipts: same checks, deduplicated per message, pushed to the
    /// sender's devices or stored for its next login.
    fn single_receipt<'a>(&self, s: &Session, mid: u64, to: &str, kind: ReceiptKind) -> Reply<'a> {
        let (what, metric) = match kind {
            ReceiptKind::Delivery => ("delivery receipt", ReceiptMetric::Delivery),
            ReceiptKind::Read => ("read receipt", ReceiptMetric::Read),
        };
        if to == &*s.user {
            return Err(reject(
                ErrorCode::BadRequest,
                format!("a {what} cannot be addressed to oneself"),
            ));
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(meta) = st.store.message(mid)? else {
            return Err(st.no_message(&self.metrics, mid));
        };
        if meta.chat_type != ChatType::Single {
            return Err(reject(
                ErrorCode::BadRequest,
                format!("message {mid} is a group message: a {what} with chatType singleChat does not apply"),
            ));
        }
        if meta.from == s.user {
            return Err(reject(
                ErrorCode::BadRequest,
                format!("message {mid} is one's own: no {what} for it"),
            ));
        }
        if *meta.to != *s.user || *meta.from != *to {
            return Err(reject(
                ErrorCode::Forbidden,
                format!("message {mid} was not sent by {to:?} to this user"),
            ));
        }
        let sender = meta.from.clone();
        let id = match st.store.record_receipt(mid, kind)? {
            Recorded::First { id, .. } => id,
            Recorded::Repeat { id } => {
                drop(guard);
                self.metrics.receipt(metric, false);
                return Ok(received(id));
            }
            Recorded::NoMessage => return Err(reject(ErrorCode::NotFound, format!("message {mid} does not exist"))),
        };
        let from = s.user.clone();
        let receipt = match kind {
            ReceiptKind::Delivery => OfflineReceipt::Delivery { id, mid, from },
            ReceiptKind::Read => {
                st.store.mark_read(&s.user, &sender, mid)?;
                OfflineReceipt::Read { id, mid, from }
            }
        };
        st.deliver_receipt(&self.metrics, &sender, receipt)?;
        drop(guard);
        self.metrics.receipt(metric, true);
        Ok(received(id))
    }

    /// `read {chatType:"groupChat", id, to, ackContent?}`.
    pub(super) fn read_group<'a>(&self, s: &Session, mid: u64, to: &str, ack_content: Option<&str>) -> Reply<'a> {
        if !self.config.group_read_ack {
            return Err(reject(
                ErrorCode::GroupAckNotOpen,
                "group read receipts are disabled on this server",
            ));
        }
        let now = self.now_ms();
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(group) = st.store.group(to)? else {
            return Err(reject(ErrorCode::NotFound, format!("group {to:?} does not exist")));
        };
        let Some(meta) = st.store.message(mid)? else {
            return Err(st.no_message(&self.metrics, mid));
        };
        if meta.chat_type != ChatType::Group || *meta.to != *to {
            return Err(reject(
                ErrorCode::NotFound,
                format!("message {mid} is not a message of group {to:?}"),
            ));
        }
        if !group.is_member(&s.user) {
            return Err(reject(ErrorCode::Forbidden, format!("not a member of group {to:?}")));
        }
        if meta.from == s.user {
            return Err(reject(
                ErrorCode::BadRequest,
                format!("message {mid} is one's own: no read receipt for it"),
            ));
        }
        if !meta.group_receipts {
            return Err(reject(
                ErrorCode::GroupAckMsgNotFound,
                format!("message {mid} keeps no group read receipts"),
            ));
        }
        if now.saturating_sub(meta.time) > self.config.ack_validity.as_millis() as u64 {
            return Err(reject(
                ErrorCode::GroupAckMsgNotFound,
                format!("message {mid} is past the receipt validity window"),
            ));
        }
        let sender = meta.from.clone();
        let group_id = group.id().clone();
        let (id, count) = match st.store.record_group_read(mid, &s.user)? {
            Recorded::First { id, count } => (id, count),
            Recorded::Repeat { id } => {
                drop(guard);
                self.metrics.receipt(ReceiptMetric::GroupRead, false);
                return Ok(received(id));
            }
            Recorded::NoMessage => {
                return Err(reject(
                    ErrorCode::GroupAckMsgNotFound,
                    format!("message {mid} keeps no group read receipts"),
                ));
            }
        };
        if st.online.is_online(&sender) {
            let receipt = OfflineReceipt::GroupRead {
                id,
                mid,
                from: s.user.clone(),
                group: group_id,
                count,
                ack_content: Arc::from(ack_content.unwrap_or("")),
            };
            st.push_live(&self.metrics, &sender, &receipt_push(receipt, &sender, 1), None);
        } else {
            st.store
                .set_offline_group_count(&sender, Inbox::User, mid, &group_id, count)?;
        }
        drop(guard);
        self.metrics.receipt(ReceiptMetric::GroupRead, true);
        Ok(received(id))
    }

    /// `channel {chatType, to}`: unread to zero; 1:1 acks go to the peer's devices (or wait
    /// for its login) and to the reader's other devices; group acks push nothing.
    pub(super) fn channel<'a>(&self, s: &Session, chat_type: ChatType, to: &str) -> Reply<'a> {
        let now = self.now_ms();
        let mut guard = self.lock();
        let st = &mut *guard;
        let id = match chat_type {
            ChatType::Single => {
                if to == &*s.user {
                    return Err(reject(
                        ErrorCode::BadRequest,
                        "a channel ack cannot be addressed to oneself",
                    ));
                }
                let peer = st.store.intern_user(to)?;
                let id = st.store.next_id()?;
                st.store.mark_all_read(&s.user, chat_type, &peer, id)?;
                let receipt = OfflineReceipt::Channel {
                    id,
                    from: s.user.clone(),
                    to: peer.clone(),
                    time: now,
                };
                // One push, to the peer's devices and to the reader's other devices.
                let push = receipt_push(receipt.clone(), &peer, 1);
                if st.online.is_online(&peer) {
                    st.push_live(&self.metrics, &peer, &push, None);
                } else {
                    st.store.push_offline_receipt(&peer, Inbox::User, receipt)?;
                }
                st.push_live(&self.metrics, &s.user, &push, Some(s.conn));
                id
            }
            ChatType::Group => {
                let Some(group) = st.store.group(to)? else {
                    return Err(reject(ErrorCode::NotFound, format!("group {to:?} does not exist")));
                };
                if !group.is_member(&s.user) {
                    return Err(reject(ErrorCode::Forbidden, format!("not a member of group {to:?}")));
                }
                let group_id = group.id().clone();
                let id = st.store.next_id()?;
                st.store.mark_all_read(&s.user, chat_type, &group_id, id)?;
                id
            }
        };
        drop(guard);
        let metric = match chat_type {
            ChatType::Single => ReceiptMetric::Channel,
            ChatType::Group => ReceiptMetric::GroupChannel,
        };
        self.metrics.receipt(metric, true);
        Ok(received(id))
    }
}
