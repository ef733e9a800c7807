//! A group: its roles and members ([`Group`], shared with the hub as an `Arc`), and in the
//! store's [`GroupSlot`] the two counters that let each member's unread count be computed when
//! asked rather than updated on every message (see [`GroupConv`]).
//!
//! Membership changes go through the store, which keeps each member's [`GroupConv`] in step;
//! nothing here decides who may do what (that is the hub's).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{GroupId, UserId, intern};

/// A group and its roles.
///
/// Membership changes go through [`Group::add`] and [`Group::remove`], which keep a shared
/// snapshot of the member list: fan-out takes it with one reference-count increment instead of
/// copying the list for every message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "GroupRepr", from = "GroupRepr")]
pub struct Group {
    id: GroupId,
    owner: UserId,
    admins: Vec<UserId>,
    members: indexmap::IndexSet<UserId, rustc_hash::FxBuildHasher>,
    snapshot: Arc<[UserId]>,
}

/// A group as the store keeps it: the group, shared with whoever asked for it (a membership
/// change copies it only while a caller still holds it), and its message counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupSlot {
    pub group: Arc<Group>,
    /// Messages sent to the group so far.
    pub seq: u64,
    /// Newest message of the group.
    pub last_mid: u64,
}

impl GroupSlot {
    /// A new group, no messages yet.
    pub fn new(group: Group) -> Self {
        GroupSlot {
            group: Arc::new(group),
            seq: 0,
            last_mid: 0,
        }
    }

    /// Counts a new message of the group.
    pub fn note_message(&mut self, mid: u64) {
        self.seq += 1;
        self.last_mid = self.last_mid.max(mid);
    }

    /// Messages sent to the group so far, and the newest one.
    pub fn counters(&self) -> (u64, u64) {
        (self.seq, self.last_mid)
    }
}

/// A group as serialized: its roles and its members in join order (the shared snapshot of
/// the member list is made again).
#[derive(Serialize, Deserialize)]
struct GroupRepr {
    #[serde(deserialize_with = "intern::one")]
    id: GroupId,
    #[serde(deserialize_with = "intern::one")]
    owner: UserId,
    #[serde(deserialize_with = "intern::seq")]
    admins: Vec<UserId>,
    #[serde(deserialize_with = "intern::seq")]
    members: Vec<UserId>,
}

impl From<Group> for GroupRepr {
    fn from(g: Group) -> Self {
        GroupRepr {
            members: g.snapshot.to_vec(),
            id: g.id,
            owner: g.owner,
            admins: g.admins,
        }
    }
}

impl From<GroupRepr> for Group {
    /// The owner joined first and never leaves, and admins are members: the same group.
    fn from(r: GroupRepr) -> Self {
        Group::new(r.id, r.owner, r.members, r.admins)
    }
}

impl Group {
    /// A group owned by `owner` whose members are the owner, `members` and `admins`
    /// (duplicates ignored).
    pub fn new(id: GroupId, owner: UserId, members: Vec<UserId>, admins: Vec<UserId>) -> Self {
        let mut set = indexmap::IndexSet::default();
        set.insert(owner.clone());
        set.extend(members);
        set.extend(admins.iter().cloned());
        let mut admins = admins;
        admins.retain(|a| *a != owner);
        admins.dedup();
        let mut group = Group {
            id,
            owner,
            admins,
            members: set,
            snapshot: Arc::from(Vec::new()),
        };
        group.refresh();
        group
    }

    fn refresh(&mut self) {
        self.snapshot = self.members.iter().cloned().collect();
    }

    /// Group id.
    pub fn id(&self) -> &GroupId {
        &self.id
    }

    /// Creator; a member who cannot leave.
    pub fn owner(&self) -> &UserId {
        &self.owner
    }

    /// All members (owner and admins included), in join order.
    pub fn members(&self) -> Arc<[UserId]> {
        self.snapshot.clone()
    }

    /// Number of members, owner included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: the owner is always a member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// True when `user` is a member.
    pub fn is_member(&self, user: &str) -> bool {
        self.members.contains(user)
    }

    /// Admins (not the owner), in the order named.
    pub fn admins(&self) -> &[UserId] {
        &self.admins
    }

    /// True when `user` is the owner or an admin.
    pub fn is_manager(&self, user: &str) -> bool {
        &*self.owner == user || self.admins.iter().any(|a| &**a == user)
    }

    /// Adds a member; false if already one.
    pub fn add(&mut self, user: UserId) -> bool {
        let added = self.members.insert(user);
        if added {
            self.refresh();
        }
        added
    }

    /// Removes a member (and their admin role); false if not one.
    pub fn remove(&mut self, user: &str) -> bool {
        let removed = self.members.shift_remove(user);
        if removed {
            self.admins.retain(|a| &**a != user);
            self.refresh();
        }
        removed
    }
}

/// One member's view of a group conversation, kept as a difference from the group's counters
/// so that a group message costs O(1) in unread bookkeeping whatever the group's size: while a
/// member, unread = `unread` + (messages since `seq`) − (own messages since `seq`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct GroupConv {
    /// Still a member: the counts follow the group's. A former member's are frozen.
    pub member: bool,
    /// The group's message count when the counts below were taken.
    pub seq: u64,
    /// Unread at that point.
    pub unread: u64,
    /// Messages this member sent since then (they do not count as unread).
    pub own: u64,
    /// Newest message at that point (0: none yet).
    pub last_mid: u64,
}

impl GroupConv {
    /// A member from now on, with `group_seq` messages sent before (which are not theirs).
    pub fn joined(&mut self, group_seq: u64) {
        if !self.member {
            *self = GroupConv {
                member: true,
                seq: group_seq,
                own: 0,
                ..*self
            };
        }
    }

    /// (unread, newest message) now, given the group's counters.
    pub fn view(&self, (seq, last_mid): (u64, u64)) -> (u64, u64) {
        if !self.member || seq <= self.seq {
            return (self.unread, self.last_mid);
        }
        let unread = self.unread + (seq - self.seq).saturating_sub(self.own);
        (unread, last_mid)
    }

    /// A channel ack: nothing unread from here on.
    pub fn read_all(&mut self, counters: (u64, u64)) {
        self.settle(counters);
        self.unread = 0;
    }

    /// Leaves the group: the counts are frozen as they are now.
    pub fn leave(&mut self, counters: (u64, u64)) {
        self.settle(counters);
        self.member = false;
    }

    /// Takes the counts as they are now.
    fn settle(&mut self, counters: (u64, u64)) {
        let (unread, last_mid) = self.view(counters);
        *self = GroupConv {
            member: self.member,
            seq: counters.0,
            unread,
            own: 0,
            last_mid,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_follows_the_group_counters_minus_own_messages() {
        let mut g = GroupSlot::new(Group::new(Arc::from("g"), Arc::from("o"), vec![], vec![]));
        g.note_message(5);
        let mut c = GroupConv::default();
        c.joined(g.counters().0);
        assert_eq!(c.view(g.counters()), (0, 0), "messages before joining are not theirs");
        g.note_message(7);
        g.note_message(8);
        c.own += 1; // 8 was this member's
        assert_eq!(c.view(g.counters()), (1, 8));
        c.read_all(g.counters());
        assert_eq!(c.view(g.counters()), (0, 8));
        g.note_message(9);
        c.leave(g.counters());
        g.note_message(10);
        assert_eq!(c.view(g.counters()), (1, 9));
        c.joined(g.counters().0);
        g.note_message(11);
        assert_eq!(c.view(g.counters()), (2, 11), "counts go on from the frozen ones");
    }
}
