//! A sender looking at who read its group message: after the first count arrives, maybe
//! (the behaviour decides) it fetches the whole reader list with `getGroupMsgReadUser`, page
//! by page, and reports it for the audit.

use actix::prelude::*;

use super::UserActor;
use crate::collector::{Event, ReqKind};
use crate::sim::behaviour::{Micros, MsgKey};
use crate::transport::{MsgId, Op, Reply};

/// A reader list being fetched page by page.
pub(super) struct Query {
    key: MsgKey,
    mid: MsgId,
    group: u32,
    page: u32,
    /// When the first page was asked for.
    started: Micros,
    /// When the current page was asked for.
    page_sent: Micros,
    /// Each page's round trip.
    pages: Vec<Micros>,
    users: Vec<u32>,
    /// Listed ids that are no user of this run.
    unknown: u32,
}

/// Group messages with receipts this user sent, by server id, until their first count
/// arrives (at most this many are remembered; the oldest go first).
pub(super) const RECEIPTED: usize = 4096;

impl UserActor {
    /// Starts fetching the readers of `key` (server id `mid`, in `group`).
    pub(super) fn start_query(&mut self, key: MsgKey, mid: MsgId, group: u32, page: u32) {
        let now = self.now();
        let q = Query {
            key,
            mid,
            group,
            page,
            started: now,
            page_sent: now,
            pages: Vec::new(),
            users: Vec::new(),
            unknown: 0,
        };
        self.ask_page(q, None);
    }

    pub(super) fn remember_receipted(&mut self, mid: MsgId, key: MsgKey, group: u32) {
        if self.receipted_order.len() >= RECEIPTED
            && let Some(old) = self.receipted_order.pop_front()
        {
            self.receipted.remove(&old);
        }
        self.receipted.insert(mid.clone(), (key, group));
        self.receipted_order.push_back(mid);
    }

    /// A count of one of this user's group messages arrived (live or replayed).
    pub(super) fn group_receipt(&mut self, mid: MsgId, at: Micros, ctx: &mut Context<Self>) {
        if let Some((key, group)) = self.receipted.remove(&mid) {
            self.sim.on_first_group_receipt(at, key, mid, group);
            self.arm(ctx);
        }
    }

    /// Asks for one page of a message's readers; the query waits under the page's request.
    pub(super) fn ask_page(&mut self, mut q: Query, next: Option<String>) {
        let group = self.shared.world.groups[q.group as usize].id.clone();
        let op = Op::ReadUsers {
            group,
            mid: q.mid.clone(),
            limit: q.page,
            key: next,
        };
        q.page_sent = self.now();
        if let Some(req) = self.request(0, op, ReqKind::ReadUsers, Some(q.key), q.group, None) {
            self.queries.insert(req, q);
        }
    }

    /// A page came back: ask for the next, or report the whole list.
    pub(super) fn next_page(&mut self, mut q: Query, reply: &Reply, at: Micros) {
        let Reply::ReadUsers {
            users,
            next_key,
            is_last,
        } = reply
        else {
            return;
        };
        q.pages.push(at.saturating_sub(q.page_sent));
        for u in users {
            match self.shared.world.user_index(u) {
                Some(i) => q.users.push(i),
                None => q.unknown += 1,
            }
        }
        match next_key {
            Some(k) if !is_last => self.ask_page(q, Some(k.clone())),
            _ => self.emit(Event::ReadUsers {
                sender: self.ix,
                key: q.key,
                sent: q.started,
                done: at,
                users: q.users,
                unknown: q.unknown,
                pages: q.pages,
            }),
        }
    }
}
