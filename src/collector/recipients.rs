//! Who a message was routed to, and which of their devices it reached: a one-to-one message's
//! peer inline, a group message's members as bit sets over its group's member list.
//!
//! A group message is owed to every member but its sender. As a list of [`Recipient`]s that
//! was 16 bytes a member held per live group message (rooms of 50: 784 bytes a message, the
//! collector's largest item after the records themselves); as bits over the shared member
//! list it is three bits a member and device.

use std::sync::Arc;

use super::presence::{Over, Presence, bit};
use crate::sim::behaviour::Micros;

/// One recipient user of a message, as the server should have seen it when routing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Recipient {
    pub(super) user: u32,
    /// Devices surely online while the message was routed.
    pub(super) on: u32,
    /// Every device surely offline: the server stores it for the user's next login.
    pub(super) user_off: bool,
    /// Devices the message reached.
    pub(super) arrived: u32,
}

impl Recipient {
    /// `user` as the presence saw it at `at`.
    fn routed(user: u32, at: Micros, presence: &Presence) -> Recipient {
        let mut on = 0;
        for dev in 0..presence.per_user() {
            if presence.over(user, dev, at) == Over::On {
                on |= bit(dev);
            }
        }
        Recipient {
            user,
            on,
            user_off: presence.user_off(user, at),
            arrived: 0,
        }
    }
}

/// Who a message was routed to.
#[derive(Debug, Default)]
pub(super) enum Recipients {
    /// Not routed (yet).
    #[default]
    Nobody,
    /// A one-to-one message's peer.
    One(Recipient),
    /// A group message's members.
    Group(Box<Members>),
}

/// A group message's recipients: its group's members when it was routed, but its sender.
#[derive(Debug)]
pub(super) struct Members {
    /// The group's members (the sender among them, owed nothing).
    users: Arc<[u32]>,
    sender: u32,
    /// Devices per user (at most 32, as everywhere in the audit).
    devices: u8,
    /// Bits in three runs of words: devices online while routed and devices reached, each at
    /// `member * devices + device`, then members with every device surely offline.
    bits: Box<[u64]>,
}

impl Members {
    fn words(n: usize) -> usize {
        n.div_ceil(64)
    }

    fn get(&self, run: usize, i: usize) -> bool {
        self.bits[self.offset(run) + i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, run: usize, i: usize) {
        let at = self.offset(run) + i / 64;
        self.bits[at] |= 1 << (i % 64);
    }

    fn offset(&self, run: usize) -> usize {
        Self::words(self.users.len() * usize::from(self.devices)) * run
    }

    /// Member `m` as a [`Recipient`].
    fn recipient(&self, m: usize) -> Recipient {
        let d = usize::from(self.devices);
        let mut r = Recipient {
            user: self.users[m],
            user_off: self.get(2, m),
            ..Default::default()
        };
        for dev in 0..self.devices {
            let i = m * d + usize::from(dev);
            if self.get(0, i) {
                r.on |= bit(dev);
            }
            if self.get(1, i) {
                r.arrived |= bit(dev);
            }
        }
        r
    }
}

impl Recipients {
    /// Routes a one-to-one message to `peer` at `at`.
    pub(super) fn one(peer: u32, at: Micros, presence: &Presence) -> Recipients {
        Recipients::One(Recipient::routed(peer, at, presence))
    }

    /// Routes a group message of `sender` to the members of its group, `users`, at `at`.
    pub(super) fn group(users: Arc<[u32]>, sender: u32, at: Micros, presence: &Presence) -> Recipients {
        let devices = presence.per_user().clamp(1, 32);
        let d = usize::from(devices);
        let slots = Members::words(users.len() * d);
        let mut members = Members {
            bits: vec![0; 2 * slots + Members::words(users.len())].into_boxed_slice(),
            users,
            sender,
            devices,
        };
        for m in 0..members.users.len() {
            let r = Recipient::routed(members.users[m], at, presence);
            for dev in 0..devices {
                if r.on & bit(dev) != 0 {
                    members.set(0, m * d + usize::from(dev));
                }
            }
            if r.user_off {
                members.set(2, m);
            }
        }
        Recipients::Group(Box::new(members))
    }

    /// The message reached `user`'s device `dev`: whether `user` is a recipient, and whether
    /// that device had it already.
    pub(super) fn arrive(&mut self, user: u32, dev: u8) -> Option<bool> {
        match self {
            Recipients::Nobody => None,
            Recipients::One(r) if r.user == user => {
                let repeat = r.arrived & bit(dev) != 0;
                r.arrived |= bit(dev);
                Some(repeat)
            }
            Recipients::One(_) => None,
            Recipients::Group(g) => {
                if user == g.sender {
                    return None;
                }
                let m = g.users.iter().position(|u| *u == user)?;
                let i = m * usize::from(g.devices) + usize::from(dev % g.devices);
                let repeat = g.get(1, i);
                g.set(1, i);
                Some(repeat)
            }
        }
    }

    /// Every recipient, as routed and as reached.
    pub(super) fn each(&self) -> impl Iterator<Item = Recipient> + '_ {
        let (one, group) = match self {
            Recipients::Nobody => (None, None),
            Recipients::One(r) => (Some(*r), None),
            Recipients::Group(g) => (None, Some(g)),
        };
        let members = group.into_iter().flat_map(|g| {
            (0..g.users.len())
                .filter(|m| g.users[*m] != g.sender)
                .map(|m| g.recipient(m))
        });
        one.into_iter().chain(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(devices: u8) -> Presence {
        Presence::new(8, devices)
    }

    #[test]
    fn a_group_message_is_owed_to_every_member_but_its_sender_and_counts_repeats() {
        let p = presence(2);
        let mut r = Recipients::group(Arc::from([3, 5, 7]), 5, 0, &p);
        assert_eq!(r.each().map(|r| r.user).collect::<Vec<_>>(), [3, 7]);
        assert_eq!(r.arrive(5, 0), None, "the sender is no recipient");
        assert_eq!(r.arrive(4, 0), None, "nor is a stranger");
        assert_eq!(r.arrive(7, 1), Some(false));
        assert_eq!(r.arrive(7, 1), Some(true), "the same device again");
        assert_eq!(r.arrive(7, 0), Some(false));
        assert_eq!(r.arrive(3, 1), Some(false));
        let got: Vec<(u32, u32)> = r.each().map(|r| (r.user, r.arrived)).collect();
        assert_eq!(got, [(3, 0b10), (7, 0b11)]);
        // Nobody was online: each is every device off.
        assert!(r.each().all(|r| r.on == 0 && r.user_off));
    }

    #[test]
    fn a_one_to_one_message_is_owed_to_its_peer_only() {
        let p = presence(1);
        let mut r = Recipients::one(2, 0, &p);
        assert_eq!(r.arrive(3, 0), None);
        assert_eq!(r.arrive(2, 0), Some(false));
        assert_eq!(r.arrive(2, 0), Some(true));
        assert_eq!(r.each().map(|r| (r.user, r.arrived)).collect::<Vec<_>>(), [(2, 1)]);
        assert_eq!(Recipients::Nobody.arrive(2, 0), None);
    }

    #[test]
    fn members_beyond_a_word_keep_their_own_bits() {
        let p = presence(3);
        let users: Arc<[u32]> = (0..70).collect();
        let mut r = Recipients::group(users, 0, 0, &p);
        assert_eq!(r.arrive(69, 2), Some(false));
        assert_eq!(r.arrive(22, 0), Some(false));
        let reached: Vec<(u32, u32)> = r
            .each()
            .filter(|r| r.arrived != 0)
            .map(|r| (r.user, r.arrived))
            .collect();
        assert_eq!(reached, [(22, 0b001), (69, 0b100)]);
        assert_eq!(r.each().count(), 69);
    }
}
