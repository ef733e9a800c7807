//! Who is connected: per user, the devices logged in and the outbox of each connection.
//!
//! Pushing is a non-blocking queue operation ([`Outbox`]); the connection's own task writes
//! to the socket. This is how the hub routes under its lock without ever holding it across
//! I/O. The registry only answers who is where; it decides nothing.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::outbox::Outbox;
use super::store::UserId;

/// Identifies one connection for its whole life (never reused).
pub type ConnId = u64;

/// One logged-in device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Device name from `login`.
    pub name: Arc<str>,
    /// The connection it is logged in on.
    pub conn: ConnId,
    /// That connection's queue.
    pub outbox: Outbox,
}

/// The online registry.
#[derive(Debug, Default)]
pub struct Online {
    users: FxHashMap<UserId, SmallVec<[Device; 2]>>,
    connections: usize,
}

impl Online {
    /// The devices of `user` that are online (empty when offline), in login order.
    pub fn devices(&self, user: &str) -> &[Device] {
        self.users.get(user).map(|d| d.as_slice()).unwrap_or(&[])
    }

    /// True when `user` has at least one device online.
    pub fn is_online(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Logged-in connections.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Registers a device, last in login order; returns the device it replaces (same user and
    /// device name).
    pub fn insert(&mut self, user: &UserId, device: Device) -> Option<Device> {
        let devices = self.users.entry(user.clone()).or_default();
        let old = devices
            .iter()
            .position(|d| d.name == device.name)
            .map(|i| devices.remove(i));
        devices.push(device);
        if old.is_none() {
            self.connections += 1;
        }
        old
    }

    /// Removes the device of connection `conn`, if it is still the one registered.
    pub fn remove(&mut self, user: &str, conn: ConnId) {
        let Some(devices) = self.users.get_mut(user) else {
            return;
        };
        let before = devices.len();
        devices.retain(|d| d.conn != conn);
        self.connections -= before - devices.len();
        if devices.is_empty() {
            self.users.remove(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::outbox::QueueBound;

    fn device(name: &str, conn: ConnId) -> Device {
        Device {
            name: Arc::from(name),
            conn,
            outbox: Outbox::new(QueueBound::NONE),
        }
    }

    #[test]
    fn same_device_replaces_and_stale_removal_is_ignored() {
        let mut online = Online::default();
        let u: UserId = Arc::from("u");
        assert!(online.insert(&u, device("web", 1)).is_none());
        assert!(online.insert(&u, device("phone", 2)).is_none());
        let old = online.insert(&u, device("web", 3)).expect("replaced");
        assert_eq!(old.conn, 1);
        assert_eq!(online.connections(), 2);
        let order: Vec<ConnId> = online.devices("u").iter().map(|d| d.conn).collect();
        assert_eq!(order, [2, 3], "a replacing login is the newest");
        online.remove("u", 1); // the kicked connection closing: not registered any more
        assert_eq!(online.devices("u").len(), 2);
        online.remove("u", 3);
        online.remove("u", 2);
        assert!(!online.is_online("u"));
        assert_eq!(online.connections(), 0);
    }
}
