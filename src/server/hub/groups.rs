//! Groups (create, join, leave) and the two queries: readers of a group message, and the
//! caller's conversations with unread counts.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{Hub, Reply, Session, reject};
use crate::protocol::ErrorCode;
use crate::protocol::server::{Conversation, ReadUsers, ResultData};
use crate::protocol::{ChatType, ServerFrame};
use crate::server::store::{Group, Store};

/// Largest page of `getGroupMsgReadUser` (and the default).
pub const MAX_READERS_PAGE: u32 = 500;

fn group_result<'a>(group_id: &Cow<'a, str>) -> ServerFrame<'a> {
    ServerFrame::Result {
        data: ResultData::Group {
            group_id: group_id.clone(),
        },
    }
}

impl<S: Store> Hub<S> {
    /// `createGroup {groupId, members, admins?}`: the caller becomes the owner. Every check
    /// comes before anything is created: a refused group leaves no trace (no user records for
    /// its would-be members).
    pub(super) fn create_group<'a>(
        &self,
        s: &Session,
        group_id: &Cow<'a, str>,
        members: &[Cow<'a, str>],
        admins: &[Cow<'a, str>],
    ) -> Reply<'a> {
        let limit = self.config.group_max_members;
        let distinct: HashSet<&str> = std::iter::once(&*s.user)
            .chain(members.iter().chain(admins).map(|m| m.as_ref()))
            .collect();
        if distinct.len() > limit {
            return Err(reject(
                ErrorCode::Forbidden,
                format!("{} members is over the group size limit of {limit}", distinct.len()),
            ));
        }
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.store.group(group_id)?.is_some() {
            return Err(reject(
                ErrorCode::BadRequest,
                format!("group {group_id:?} already exists"),
            ));
        }
        let owned = st.store.groups_owned(&s.user)?;
        if owned >= self.config.groups_per_user {
            return Err(reject(
                ErrorCode::Forbidden,
                format!(
                    "this user owns {owned} groups already; the limit is {}",
                    self.config.groups_per_user
                ),
            ));
        }
        let members = members
            .iter()
            .map(|m| st.store.intern_user(m))
            .collect::<Result<_, _>>()?;
        let admins = admins
            .iter()
            .map(|a| st.store.intern_user(a))
            .collect::<Result<_, _>>()?;
        let group = Group::new(group_id.as_ref().into(), s.user.clone(), members, admins);
        st.store.insert_group(group)?;
        Ok(group_result(group_id))
    }

    /// `joinGroup {groupId}`: anyone, while the group is under the size limit.
    pub(super) fn join_group<'a>(&self, s: &Session, group_id: &Cow<'a, str>) -> Reply<'a> {
        let limit = self.config.group_max_members;
        let mut guard = self.lock();
        let Some(group) = guard.store.group(group_id)? else {
            return Err(reject(
                ErrorCode::NotFound,
                format!("group {group_id:?} does not exist"),
            ));
        };
        if group.is_member(&s.user) {
            return Ok(group_result(group_id));
        }
        if group.len() >= limit {
            return Err(reject(
                ErrorCode::Forbidden,
                format!("group {group_id:?} is full ({limit} members)"),
            ));
        }
        // Not held across the change: the store would copy a group still shared.
        drop(group);
        guard.store.add_member(group_id, &s.user)?;
        Ok(group_result(group_id))
    }

    /// `leaveGroup {groupId}`: members other than the owner.
    pub(super) fn leave_group<'a>(&self, s: &Session, group_id: &Cow<'a, str>) -> Reply<'a> {
        let mut guard = self.lock();
        let Some(group) = guard.store.group(group_id)? else {
            return Err(reject(
                ErrorCode::NotFound,
                format!("group {group_id:?} does not exist"),
            ));
        };
        if *group.owner() == s.user {
            return Err(reject(ErrorCode::Forbidden, "the owner cannot leave the group"));
        }
        drop(group);
        if !guard.store.remove_member(group_id, &s.user)? {
            return Err(reject(
                ErrorCode::Forbidden,
                format!("not a member of group {group_id:?}"),
            ));
        }
        Ok(group_result(group_id))
    }

    /// `getGroupMsgReadUser {groupId, msgId, limit?, key?}`: the message's sender or the
    /// group's owner and admins page through its readers, newest first.
    pub(super) fn group_msg_read_users<'a>(
        &self,
        s: &Session,
        group_id: &str,
        mid: u64,
        limit: Option<u32>,
        key: Option<&str>,
    ) -> Reply<'a> {
        if !self.config.group_read_ack {
            return Err(reject(
                ErrorCode::GroupAckNotOpen,
                "group read receipts are disabled on this server",
            ));
        }
        let before = match key {
            None => None,
            Some(k) => match k.parse::<usize>() {
                Ok(v) => Some(v),
                Err(_) => {
                    return Err(reject(
                        ErrorCode::BadRequest,
                        format!("key {k:?} is not a next_key of this server"),
                    ));
                }
            },
        };
        let limit = limit.unwrap_or(MAX_READERS_PAGE).min(MAX_READERS_PAGE) as usize;
        let guard = self.lock();
        let Some(group) = guard.store.group(group_id)? else {
            return Err(reject(
                ErrorCode::NotFound,
                format!("group {group_id:?} does not exist"),
            ));
        };
        let Some(meta) = guard.store.message(mid)? else {
            return Err(guard.no_message(&self.metrics, mid));
        };
        if meta.chat_type != ChatType::Group || *meta.to != *group_id {
            return Err(reject(
                ErrorCode::NotFound,
                format!("message {mid} is not a message of group {group_id:?}"),
            ));
        }
        if meta.from != s.user && !group.is_manager(&s.user) {
            return Err(reject(
                ErrorCode::Forbidden,
                "only the message's sender and the group's owner and admins may list its readers",
            ));
        }
        if !meta.group_receipts {
            return Err(reject(
                ErrorCode::GroupAckMsgNotFound,
                format!("message {mid} keeps no group read receipts"),
            ));
        }
        let page = guard.store.group_readers(mid, before, limit)?;
        drop(guard);
        Ok(ServerFrame::Result {
            data: ResultData::ReadUsers(ReadUsers {
                ackmid: mid,
                total: page.total,
                userlist: page.users.iter().map(|u| Cow::Owned(u.to_string())).collect(),
                is_last: page.next.is_none(),
                next_key: page.next.map(|n| Cow::Owned(n.to_string())),
                timestamp: self.now_ms(),
            }),
        })
    }

    /// `getConversations {}`: the caller's conversations, newest first (at most the store's
    /// cap of conversations per user).
    pub(super) fn conversations<'a>(&self, s: &Session) -> Reply<'a> {
        let list = self.lock().store.conversations(&s.user)?;
        Ok(ServerFrame::Result {
            data: ResultData::Conversations(
                list.into_iter()
                    .map(|c| Conversation {
                        conversation_id: Cow::Owned(c.id.to_string()),
                        chat_type: c.chat_type,
                        unread: c.unread,
                        last_mid: c.last_mid,
                    })
                    .collect(),
            ),
        })
    }
}
