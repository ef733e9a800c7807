//! Who was online when, as the collector saw it: per device, whether it is logged in and
//! since when, and its recent drops; per user, how many devices are online and its last
//! login. The audit asks it whether a device was surely online (or surely offline) over a
//! window, which decides whether a push was due.
//!
//! The collector folds events in arrival order, which is close to but not exactly time
//! order across arbiters; a window that a login or a drop falls into is reported as
//! uncertain, and the audit neither expects nor forbids a push there.

use crate::sim::behaviour::Micros;

/// Drops remembered per device (the audit looks back only a little).
const DROPS: usize = 4;

#[derive(Debug, Default, Clone)]
struct Device {
    online: bool,
    /// Last change of `online`.
    since: Micros,
    /// Ever logged in.
    seen: bool,
    /// The latest drops (end times of sessions), newest last.
    drops: [Micros; DROPS],
    drop_count: usize,
}

/// Device `dev`'s bit in a mask of a user's devices (the audit tells at most 32 apart).
pub(super) fn bit(dev: u8) -> u32 {
    1 << (dev % 32)
}

/// A device's state over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Over {
    /// Logged in for the whole window.
    On,
    /// Logged out for the whole window.
    Off,
    /// A login or a drop fell inside it.
    Uncertain,
}

/// Presence of every device of the run.
#[derive(Debug, Default)]
pub(super) struct Presence {
    devices: Vec<Device>,
    per_user: u8,
    /// Devices online per user.
    online: Vec<u8>,
    /// Last login of any device of the user.
    last_login: Vec<Option<Micros>>,
    /// Devices online now: the sum of `online`, kept as it changes (it is asked per event).
    connected: u64,
}

impl Presence {
    pub(super) fn new(users: u32, per_user: u8) -> Presence {
        let per_user = per_user.max(1);
        Presence {
            devices: vec![Device::default(); users as usize * per_user as usize],
            per_user,
            online: vec![0; users as usize],
            last_login: vec![None; users as usize],
            connected: 0,
        }
    }

    fn slot(&self, user: u32, dev: u8) -> Option<usize> {
        let i = user as usize * self.per_user as usize + dev as usize;
        (dev < self.per_user && i < self.devices.len()).then_some(i)
    }

    /// Devices per user.
    pub(super) fn per_user(&self) -> u8 {
        self.per_user
    }

    pub(super) fn login(&mut self, user: u32, dev: u8, at: Micros) {
        let Some(i) = self.slot(user, dev) else { return };
        let d = &mut self.devices[i];
        if !d.online {
            d.online = true;
            d.since = at;
            d.seen = true;
            self.online[user as usize] += 1;
            self.connected += 1;
        }
        let last = &mut self.last_login[user as usize];
        *last = Some(last.map_or(at, |l| l.max(at)));
    }

    pub(super) fn logout(&mut self, user: u32, dev: u8, at: Micros) {
        let Some(i) = self.slot(user, dev) else { return };
        let d = &mut self.devices[i];
        if d.online {
            d.online = false;
            d.since = at;
            d.drops[d.drop_count % DROPS] = at;
            d.drop_count += 1;
            self.online[user as usize] -= 1;
            self.connected -= 1;
        }
    }

    /// The device's state over `[from, to]`, judged now.
    pub(super) fn over(&self, user: u32, dev: u8, from: Micros) -> Over {
        let Some(i) = self.slot(user, dev) else {
            return Over::Off;
        };
        let d = &self.devices[i];
        match (d.online, d.since <= from) {
            (true, true) => Over::On,
            (false, true) => Over::Off,
            _ => Over::Uncertain,
        }
    }

    /// Whether the user had no device online over `[from, now]`.
    pub(super) fn user_off(&self, user: u32, from: Micros) -> bool {
        (0..self.per_user).all(|dev| self.over(user, dev, from) == Over::Off)
    }

    /// Whether any device of the user logged in after `t`.
    pub(super) fn logged_in_after(&self, user: u32, t: Micros) -> bool {
        self.last_login
            .get(user as usize)
            .copied()
            .flatten()
            .is_some_and(|l| l > t)
    }

    /// Whether the device's connection dropped in `[from, to]`.
    pub(super) fn dropped_within(&self, user: u32, dev: u8, from: Micros, to: Micros) -> bool {
        let Some(i) = self.slot(user, dev) else { return false };
        let d = &self.devices[i];
        let n = d.drop_count.min(DROPS);
        d.drops[..n].iter().any(|t| (from..=to).contains(t))
    }

    /// Devices online now.
    pub(super) fn connected(&self) -> u64 {
        debug_assert_eq!(self.connected, self.online.iter().map(|n| u64::from(*n)).sum::<u64>());
        self.connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_on_off_or_uncertain() {
        let mut p = Presence::new(2, 2);
        p.login(0, 0, 100);
        assert_eq!(p.over(0, 0, 150), Over::On);
        assert_eq!(p.over(0, 0, 50), Over::Uncertain, "logged in inside the window");
        assert_eq!(p.over(0, 1, 50), Over::Off);
        assert!(!p.user_off(0, 150));
        assert!(p.user_off(1, 0));
        p.logout(0, 0, 300);
        assert_eq!(p.over(0, 0, 200), Over::Uncertain);
        assert_eq!(p.over(0, 0, 400), Over::Off);
        assert!(p.dropped_within(0, 0, 250, 350));
        assert!(!p.dropped_within(0, 0, 301, 900));
        assert!(p.logged_in_after(0, 99) && !p.logged_in_after(0, 100));
        assert_eq!(p.connected(), 0);
        assert_eq!(p.over(5, 0, 0), Over::Off, "out of range is never online");
    }
}
