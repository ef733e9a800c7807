//! Everything that waits for one user: the user's inbox and one inbox per device, with the
//! bytes they are charged together (what the per-user cap bounds) and the id of their oldest
//! entry (what orders users for the total cap).
//!
//! Only records and accounting; the caps are applied by [`super::users`], which sees every
//! user.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::pending::{Dropped, Pending};
use super::{Inbox, OfflineBatch, intern};

/// Bytes charged for each device inbox (its map entry and queues), so that the per-user cap
/// also bounds how many a user can have (device names are the client's choice).
const DEVICE_INBOX_BYTES: usize = 256;

/// One user's inboxes.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UserOffline {
    inbox: Pending,
    /// Per device: pushes its closing connection did not write (no entry when empty).
    #[serde(deserialize_with = "intern::keys")]
    devices: FxHashMap<Arc<str>, Pending>,
    bytes: usize,
}

impl UserOffline {
    /// Bytes charged for all of this user's inboxes.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Applies `f` to one inbox (creating a device's on first use, removing it when left
    /// empty) and keeps the byte count in step.
    pub(super) fn with_inbox<R>(&mut self, inbox: Inbox<'_>, f: impl FnOnce(&mut Pending) -> R) -> R {
        match inbox {
            Inbox::User => {
                let before = self.inbox.bytes();
                let r = f(&mut self.inbox);
                self.bytes = self.bytes + self.inbox.bytes() - before;
                r
            }
            Inbox::Device(d) => {
                let (name, mut pending, before) = match self.devices.remove_entry(d) {
                    Some((name, p)) => {
                        let b = p.bytes() + DEVICE_INBOX_BYTES;
                        (name, p, b)
                    }
                    None => (Arc::from(d), Pending::default(), 0),
                };
                let r = f(&mut pending);
                self.bytes -= before;
                if !pending.is_empty() {
                    self.bytes += pending.bytes() + DEVICE_INBOX_BYTES;
                    self.devices.insert(name, pending);
                }
                r
            }
        }
    }

    /// The id of the oldest entry of any inbox.
    pub(super) fn oldest(&self) -> Option<u64> {
        std::iter::once(&self.inbox)
            .chain(self.devices.values())
            .filter_map(Pending::oldest)
            .min()
    }

    /// Drops the oldest entry of any inbox.
    pub(super) fn drop_oldest(&mut self) -> Option<Dropped> {
        let oldest = self.oldest()?;
        if self.inbox.oldest() == Some(oldest) {
            return self.with_inbox(Inbox::User, Pending::drop_oldest);
        }
        let device = self
            .devices
            .iter()
            .find(|(_, p)| p.oldest() == Some(oldest))
            .map(|(d, _)| d.clone())?;
        self.with_inbox(Inbox::Device(&device), Pending::drop_oldest)
    }

    /// Takes one inbox, in replay order.
    pub(super) fn take(&mut self, inbox: Inbox<'_>) -> OfflineBatch {
        self.with_inbox(inbox, Pending::take)
    }

    /// Drops every inbox: what was dropped.
    pub(super) fn clear(&mut self) -> Vec<Dropped> {
        let mut out = self.inbox.clear();
        for (_, mut p) in self.devices.drain() {
            out.extend(p.clear());
        }
        self.bytes = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ChatType;
    use crate::server::store::{OfflineMessage, StoreLimits};

    fn msg(mid: u64) -> OfflineMessage {
        OfflineMessage {
            mid,
            chat_type: ChatType::Single,
            frame: "x".repeat(36).into(),
        }
    }

    #[test]
    fn device_inboxes_are_charged_and_the_oldest_of_all_goes_first() {
        let limits = StoreLimits::default();
        let mut u = UserOffline::default();
        u.with_inbox(Inbox::User, |p| p.push_message(&limits, msg(5)));
        u.with_inbox(Inbox::Device("phone"), |p| p.push_message(&limits, msg(3)));
        u.with_inbox(Inbox::Device("web"), |p| p.push_message(&limits, msg(4)));
        assert_eq!(u.bytes(), 3 * 100 + 2 * DEVICE_INBOX_BYTES);
        assert_eq!(u.oldest(), Some(3));
        assert_eq!(u.drop_oldest().and_then(|d| d.mid), Some(3));
        assert!(!u.devices.contains_key("phone"), "an emptied device inbox goes");
        assert_eq!(u.bytes(), 2 * 100 + DEVICE_INBOX_BYTES);
        let web = u.take(Inbox::Device("web"));
        assert_eq!(web.messages.len(), 1);
        assert_eq!(u.bytes(), 100);
        assert_eq!(u.clear().len(), 1);
        assert_eq!((u.bytes(), u.oldest()), (0, None));
    }
}
