//! The harness's checks of every reply and every written push against the model: what a reply
//! may say given what earlier replies showed, and what a device may be pushed.

use super::*;

impl Harness {
    pub(super) fn check_reply(&mut self, user: &str, request: &Request<'_>, reply: &ServerFrame<'_>, text: &str) {
        let m = &mut self.model;
        let stats = &mut self.stats;
        if let ServerFrame::Error { code, message } = reply {
            stats.errors += 1;
            assert!(*code != ErrorCode::Internal && !message.is_empty(), "{text}");
            if matches!(request.frame, ClientFrame::Login { .. }) {
                assert_eq!(*code, ErrorCode::BadRequest, "{text}");
            }
            return;
        }
        match (&request.frame, reply) {
            (
                ClientFrame::Send { id, chat_type, to, .. },
                ServerFrame::Received {
                    id: rid,
                    mid,
                    duplicate,
                    group_ack,
                    ..
                },
            ) => {
                assert_eq!(rid.as_deref(), Some(&**id), "{text}");
                let key = (user.to_string(), id.to_string());
                if *duplicate == Some(true) {
                    assert_eq!(
                        m.sent.get(&key),
                        Some(mid),
                        "a repeated send gets the original mid: {text}"
                    );
                    stats.duplicates += 1;
                    return;
                }
                m.fresh(*mid, "send");
                assert!(group_ack.is_none() || *chat_type == ChatType::Group, "{text}");
                m.sent.insert(key, *mid);
                m.messages.insert(*mid, (user.to_string(), to.to_string(), *chat_type));
                m.mids.push(*mid);
                match chat_type {
                    ChatType::Single => *m.single_unread.entry((to.to_string(), user.to_string())).or_default() += 1,
                    ChatType::Group => *m.group_sent.entry(to.to_string()).or_default() += 1,
                }
            }
            (ClientFrame::Delivery { ack_id: mid, to }, ServerFrame::Received { mid: id, .. })
            | (
                ClientFrame::Read {
                    chat_type: ChatType::Single,
                    id: mid,
                    to,
                    ..
                },
                ServerFrame::Received { mid: id, .. },
            ) => {
                let sent = (to.to_string(), user.to_string(), ChatType::Single);
                assert_eq!(
                    m.messages.get(mid),
                    Some(&sent),
                    "a receipt for another's message: {text}"
                );
                m.see_id(*id);
            }
            (
                ClientFrame::Read {
                    chat_type: ChatType::Group,
                    id: mid,
                    to,
                    ..
                },
                ServerFrame::Received { mid: id, .. },
            ) => {
                let Some((from, group, ChatType::Group)) = m.messages.get(mid) else {
                    panic!("a group read receipt for no group message: {text}")
                };
                assert!(group == &**to && from != user, "{text}");
                assert!(
                    m.members_ever.get(group).is_some_and(|g| g.contains(user)),
                    "a read receipt from a non-member: {text}"
                );
                m.readers.entry(*mid).or_default().insert(user.to_string());
                m.see_id(*id);
            }
            (ClientFrame::Channel { chat_type, to }, ServerFrame::Received { mid: id, .. }) => {
                m.fresh(*id, "channel ack");
                if m.unread_bound(user, *chat_type, to) > 0 {
                    m.cleared.insert((user.to_string(), *chat_type, to.to_string()));
                }
                match chat_type {
                    ChatType::Single => {
                        m.single_unread.insert((user.to_string(), to.to_string()), 0);
                    }
                    ChatType::Group => {
                        let sent = m.group_sent.get(&**to).copied().unwrap_or(0);
                        m.group_acked.insert((user.to_string(), to.to_string()), sent);
                    }
                }
            }
            (
                ClientFrame::CreateGroup {
                    group_id,
                    members,
                    admins,
                },
                ServerFrame::Result {
                    data: ResultData::Group { group_id: g },
                },
            ) => {
                assert_eq!(g, group_id, "{text}");
                let all = members.iter().chain(admins).map(|u| u.to_string());
                let set = m.members_ever.entry(group_id.to_string()).or_default();
                set.insert(user.to_string());
                set.extend(all);
            }
            (
                ClientFrame::JoinGroup { group_id } | ClientFrame::LeaveGroup { group_id },
                ServerFrame::Result {
                    data: ResultData::Group { group_id: g },
                },
            ) => {
                assert_eq!(g, group_id, "{text}");
                let set = m.members_ever.entry(group_id.to_string()).or_default();
                if matches!(request.frame, ClientFrame::JoinGroup { .. }) {
                    set.insert(user.to_string());
                } else {
                    assert!(set.contains(user), "left a group never joined: {text}");
                }
            }
            (
                ClientFrame::GetGroupMsgReadUser {
                    group_id,
                    msg_id,
                    limit,
                    ..
                },
                ServerFrame::Result {
                    data: ResultData::ReadUsers(page),
                },
            ) => {
                let ReadUsers {
                    ackmid,
                    total,
                    userlist,
                    next_key,
                    is_last,
                    ..
                } = page;
                assert_eq!(ackmid, msg_id, "{text}");
                let readers = m.readers.get(msg_id).map_or(0, |r| r.len()) as u64;
                assert_eq!(*total, readers, "the reader total is the readers accepted: {text}");
                let last = m.totals.entry(*msg_id).or_default();
                assert!(*total >= *last, "a reader total went down: {text}");
                *last = *total;
                let sender = m.messages.get(msg_id).map(|(f, ..)| f.clone()).unwrap_or_default();
                assert!(*total as usize <= m.max_readers(group_id, &sender), "{text}");
                assert!(userlist.len() <= limit.unwrap_or(500) as usize, "{text}");
                assert!(
                    userlist
                        .iter()
                        .all(|u| m.readers.get(msg_id).is_some_and(|r| r.contains(&**u))),
                    "{text}"
                );
                assert_eq!(*is_last, next_key.is_none(), "{text}");
                stats.reader_queries += 1;
            }
            (
                ClientFrame::GetConversations {},
                ServerFrame::Result {
                    data: ResultData::Conversations(list),
                },
            ) => {
                for Conversation {
                    conversation_id,
                    chat_type,
                    unread,
                    ..
                } in list
                {
                    let bound = m.unread_bound(user, *chat_type, conversation_id);
                    assert!(
                        *unread <= bound,
                        "{user}: {unread} unread in {conversation_id}, but only {bound} messages since the last channel ack: {text}"
                    );
                    let key = (user.to_string(), *chat_type, conversation_id.to_string());
                    if *unread > 0 {
                        stats.unread += 1;
                    } else if bound == 0 && m.cleared.contains(&key) {
                        stats.zeroed += 1;
                    }
                }
            }
            (ClientFrame::Ping {}, ServerFrame::Pong { .. }) => {}
            (frame, _) => panic!("{} answered with {text}", frame.op()),
        }
    }

    /// Checks one written push; true for `kicked`.
    pub(super) fn check_push(&mut self, i: usize, push: &Push) -> bool {
        let session = &self.conns[i].session;
        let (user, device) = (session.user.to_string(), session.device.to_string());
        let text = push.text().as_str();
        let out = Outgoing::parse(text).unwrap_or_else(|e| panic!("push {text} does not parse: {e}"));
        assert!(out.req.is_none(), "a reply among the pushes: {text}");
        assert_eq!(out.frame.op_index(), push.op(), "{text}");
        let m = &mut self.model;
        let stats = &mut self.stats;
        let mut log = m.devices.remove(&(user.clone(), device.clone())).unwrap_or_default();
        let mut kicked = false;
        match &out.frame {
            ServerFrame::Message {
                mid,
                from,
                to,
                chat_type,
                ..
            } => {
                let sent = (from.to_string(), to.to_string(), *chat_type);
                assert_eq!(m.messages.get(mid), Some(&sent), "{user}/{device}: {text}");
                assert!(**from != *user, "{user}/{device}: its own message: {text}");
                let conv = match chat_type {
                    ChatType::Single => {
                        assert_eq!(**to, *user, "{text}");
                        from.to_string()
                    }
                    ChatType::Group => {
                        assert!(m.members_ever.get(&**to).is_some_and(|g| g.contains(&user)), "{text}");
                        to.to_string()
                    }
                };
                let last = log.last_mid.entry((*chat_type, conv)).or_default();
                assert!(
                    *mid > *last,
                    "{user}/{device}: message {mid} after {last} in one conversation"
                );
                *last = *mid;
                stats.messages += 1;
            }
            ServerFrame::Delivery { mid, from, to, .. }
            | ServerFrame::Read {
                chat_type: ChatType::Single,
                mid,
                from,
                to,
                ..
            } => {
                assert_eq!(**to, *user, "{text}");
                let sent = (user.clone(), from.to_string(), ChatType::Single);
                assert_eq!(m.messages.get(mid), Some(&sent), "{user}/{device}: {text}");
                let op = out.frame.op();
                assert!(
                    log.receipts.insert((op, *mid, from.to_string())),
                    "{user}/{device}: {op} receipt of {mid} pushed twice"
                );
                stats.receipts += 1;
            }
            ServerFrame::Read {
                chat_type: ChatType::Group,
                mid,
                from,
                to,
                group_read_count,
                ..
            } => {
                let count = group_read_count.expect("group read receipts carry a count");
                assert_eq!(count.mid, *mid, "{text}");
                let sent = (user.clone(), to.to_string(), ChatType::Group);
                assert_eq!(m.messages.get(mid), Some(&sent), "{user}/{device}: {text}");
                assert!(
                    log.receipts.insert(("group_read", *mid, from.to_string())),
                    "{user}/{device}: group read receipt of {mid} from {from} pushed twice"
                );
                Self::check_count(m, &mut log, *mid, count.count, &user, text);
                stats.group_counts += 1;
            }
            ServerFrame::Statistic { location, .. } => {
                let stat = StatisticLocation::from_json(location).unwrap_or_else(|e| panic!("{text}: {e}"));
                for c in stat.group_ack {
                    let sent = (user.clone(), c.group_id.clone(), ChatType::Group);
                    assert_eq!(m.messages.get(&c.mid), Some(&sent), "{user}/{device}: {text}");
                    Self::check_count(m, &mut log, c.mid, c.count, &user, text);
                    stats.group_counts += 1;
                }
            }
            ServerFrame::Channel { from, to, .. } => {
                assert!(**from == *user || **to == *user, "{user}/{device}: {text}");
            }
            ServerFrame::Kicked { .. } => {
                kicked = true;
                stats.kicked += 1;
            }
            _ => panic!("not a push: {text}"),
        }
        if let ServerFrame::Delivery { id, .. } | ServerFrame::Read { id, .. } | ServerFrame::Channel { id, .. } =
            &out.frame
        {
            assert!(*id <= m.max_id, "push {text} names an id no reply has shown");
        }
        m.devices.insert((user, device), log);
        kicked
    }

    /// A group read count written to a device: never below one written before (per
    /// device), never above the readers accepted nor the group's possible readers.
    fn check_count(m: &Model, log: &mut DeviceLog, mid: u64, count: u64, user: &str, text: &str) {
        let readers = m.readers.get(&mid).map_or(0, |r| r.len()) as u64;
        assert!(
            count >= 1 && count <= readers,
            "count {count} with {readers} readers: {text}"
        );
        let group = &m.messages[&mid].1;
        assert!(count as usize <= m.max_readers(group, user), "{text}");
        let last = log.counts.entry(mid).or_default();
        assert!(
            count >= *last,
            "{user}: the read count of {mid} went from {last} to {count}: {text}"
        );
        *last = count;
    }
}
