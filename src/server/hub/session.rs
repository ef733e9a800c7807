//! Login, the replay of what waited, and logout: where a device's connection starts and ends.
//!
//! What waits for a device comes from two inboxes of the store: the user's (what arrived
//! while none of its devices was online) and the device's own (pushes a connection of that
//! device had queued but not written when it closed or was replaced). Login merges them into
//! one replay, in the protocol's order: messages by `mid`, then receipts in the order made
//! (`onlineState:0`), then one `statistic` frame.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Hub, Login, Session, State, encode_push, receipt_push};
use crate::protocol::server::StatisticLocation;
use crate::protocol::{ClientFrame, ErrorCode, Outgoing, Request, ServerFrame, token};
use crate::server::online::{ConnId, Device};
use crate::server::outbox::{Outbox, Push};
use crate::server::store::{Inbox, OfflineBatch, OfflineReceipt, Store, UserId};

/// Merges two inboxes' batches into one replay order. Each batch is already in order, and
/// ids are allocated in the order things happen, so ordering by id interleaves them exactly.
fn merge(mut a: OfflineBatch, b: OfflineBatch) -> OfflineBatch {
    if b.is_empty() {
        return a;
    }
    a.messages.extend(b.messages);
    a.messages.sort_by_key(|m| m.mid);
    a.receipts.extend(b.receipts);
    a.receipts.sort_by_key(|r| r.id());
    for c in b.group_counts {
        match a.group_counts.iter_mut().find(|x| x.mid == c.mid) {
            Some(x) => x.count = x.count.max(c.count),
            None => a.group_counts.push(c),
        }
    }
    a
}

impl<S: Store> Hub<S> {
    /// Handles the first frame of a connection whose pushes go to `outbox`.
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
        let now = self.now_ms();
        let mut guard = self.lock();
        let st = &mut *guard;
        let user_id = match st.store.login_user(user) {
            Ok(id) => id,
            Err(e) => {
                drop(guard);
                let frame = self.error_frame(e.into());
                return Login::Refused(Outgoing::reply(request.req.clone(), frame));
            }
        };
        let was_online = st.online.is_online(user);
        let new = Device {
            name: device.clone(),
            conn,
            outbox: outbox.clone(),
        };
        if let Some(old) = st.online.insert(&user_id, new) {
            // The replaced connection closes now, as far as delivery goes: what it has not
            // written is stored for this device, so the replay below puts it first.
            self.kick(st, &user_id, &old, "login_elsewhere");
        }
        // One device more than the limit: the one logged in longest ago makes room.
        while st.online.devices(&user_id).len() > self.config.max_devices.max(1) {
            let oldest = st.online.devices(&user_id)[0].clone();
            st.online.remove(&user_id, oldest.conn);
            self.kick(st, &user_id, &oldest, "too_many_devices");
            self.metrics.device_limit_kicks.fetch_add(1, Ordering::Relaxed);
        }
        self.replay(st, &user_id, &device, !was_online, outbox);
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

    /// Takes `old` (no longer registered) off its device: what it had not written is stored for
    /// that device, and it gets `kicked {reason}` and closes.
    fn kick(&self, st: &mut State<S>, user: &UserId, old: &Device, reason: &'static str) {
        let unwritten = old.outbox.take_all();
        st.store_unwritten(&self.metrics, user, &old.name, unwritten);
        let (_, text) = encode_push(ServerFrame::Kicked {
            reason: Cow::Borrowed(reason),
        });
        old.outbox.push_uncounted(Push::Kick { text, reason });
        self.metrics.kicked.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues what waited for `device` of `user` (and, when `offline` — no other device was
    /// online — what waited for the user): messages, then receipts, then one statistic frame.
    /// An inbox the store fails to hand over is not replayed (counted; it stays the store's).
    fn replay(&self, st: &mut State<S>, user: &UserId, device: &str, offline: bool, outbox: &Outbox) {
        let mut take = |inbox| {
            st.store.take_offline(user, inbox).unwrap_or_else(|e| {
                self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, %user, device, "offline replay skipped: the store failed");
                OfflineBatch::default()
            })
        };
        let mut batch = take(Inbox::Device(device));
        if offline {
            batch = merge(batch, take(Inbox::User));
        }
        for m in batch.messages {
            outbox.push_uncounted(Push::Message(m));
        }
        // A group count stored from an unwritten `statistic` frame can be older than a group
        // read receipt of the same message pushed after it and stored with it: the statistic
        // frame goes last, so it must not carry a count below one replayed before it.
        for r in &batch.receipts {
            if let OfflineReceipt::GroupRead { mid, count, .. } = r
                && let Some(c) = batch.group_counts.iter_mut().find(|c| c.mid == *mid)
            {
                c.count = c.count.max(*count);
            }
        }
        for r in batch.receipts {
            outbox.push_uncounted(receipt_push(r, user, 0));
        }
        if !batch.group_counts.is_empty() {
            let location = StatisticLocation {
                group_ack: batch.group_counts.clone(),
            }
            .to_json();
            let (_, text) = encode_push(ServerFrame::Statistic {
                operation: 0,
                location: Cow::Owned(location),
            });
            outbox.push_uncounted(Push::Statistic {
                text,
                counts: batch.group_counts,
            });
        }
    }

    /// The session's connection closed (for any reason): the device goes offline, unless it
    /// was replaced already, and whatever is still queued in `outbox` is stored for the
    /// device's next login. Both under the lock, so no push can slip in between.
    pub fn logout(&self, session: &Session, outbox: &Outbox) {
        let mut guard = self.lock();
        let st = &mut *guard;
        st.online.remove(&session.user, session.conn);
        let unwritten = outbox.take_all();
        st.store_unwritten(&self.metrics, &session.user, &session.device, unwritten);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ChatType;
    use crate::protocol::server::GroupAckCount;
    use crate::server::store::{OfflineMessage, OfflineReceipt};

    fn batch(mids: &[u64], receipt_ids: &[u64], counts: &[(u64, u64)]) -> OfflineBatch {
        let from: UserId = Arc::from("x");
        OfflineBatch {
            messages: mids
                .iter()
                .map(|&mid| OfflineMessage {
                    mid,
                    chat_type: ChatType::Single,
                    frame: mid.to_string().into(),
                })
                .collect(),
            receipts: receipt_ids
                .iter()
                .map(|&id| OfflineReceipt::Delivery {
                    id,
                    mid: 1,
                    from: from.clone(),
                })
                .collect(),
            group_counts: counts
                .iter()
                .map(|&(mid, count)| GroupAckCount {
                    mid,
                    group_id: "g".into(),
                    count,
                })
                .collect(),
        }
    }

    #[test]
    fn merging_inboxes_orders_by_id_and_keeps_the_highest_count() {
        let m = merge(
            batch(&[2, 5], &[3, 9], &[(1, 2)]),
            batch(&[4, 7], &[6], &[(1, 5), (8, 1)]),
        );
        assert_eq!(m.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [2, 4, 5, 7]);
        assert_eq!(m.receipts.iter().map(|r| r.id()).collect::<Vec<_>>(), [3, 6, 9]);
        assert_eq!(
            m.group_counts.iter().map(|c| (c.mid, c.count)).collect::<Vec<_>>(),
            [(1, 5), (8, 1)]
        );
    }
}
