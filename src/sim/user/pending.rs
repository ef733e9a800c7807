//! The requests a user waits on, by number: a queue in number order, since numbers are given
//! out in increasing order and replies mostly come back in it.
//!
//! A `BTreeMap` did this before at a leaf node of eleven entries per user (about 1.3 KB for a
//! user with one request out, kept once it had had one); this holds what is out, and gives its
//! buffer back when a burst is over.

use std::collections::VecDeque;

/// Entries by increasing number.
#[derive(Debug)]
pub(super) struct Pending<T> {
    q: VecDeque<(u64, T)>,
}

impl<T> Default for Pending<T> {
    fn default() -> Self {
        Pending { q: VecDeque::new() }
    }
}

/// A buffer this large or larger is given back when the queue empties.
const KEEP: usize = 8;

impl<T> Pending<T> {
    /// Adds `v` as number `n`, above every number held.
    pub(super) fn insert(&mut self, n: u64, v: T) {
        debug_assert!(self.q.back().is_none_or(|(last, _)| *last < n), "numbers increase");
        self.q.push_back((n, v));
    }

    /// Takes number `n` out.
    pub(super) fn remove(&mut self, n: u64) -> Option<T> {
        let i = self.q.binary_search_by_key(&n, |(k, _)| *k).ok()?;
        let (_, v) = self.q.remove(i).expect("found");
        if self.q.is_empty() && self.q.capacity() > KEEP {
            self.q = VecDeque::new();
        }
        Some(v)
    }

    /// Entries, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.q.iter().map(|(n, v)| (*n, v))
    }

    /// Entries to change, oldest first.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut T)> {
        self.q.iter_mut().map(|(n, v)| (*n, v))
    }

    /// Takes every entry, oldest first.
    pub(super) fn take_all(&mut self) -> impl Iterator<Item = T> + use<T> {
        std::mem::take(&mut self.q).into_iter().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_by_number_in_any_order() {
        let mut p = Pending::default();
        for n in [1, 2, 5, 9] {
            p.insert(n, n * 10);
        }
        assert_eq!(p.remove(5), Some(50));
        assert_eq!(p.remove(5), None, "taken already");
        assert_eq!(p.remove(3), None, "never given");
        assert_eq!(
            p.iter().map(|(n, v)| (n, *v)).collect::<Vec<_>>(),
            [(1, 10), (2, 20), (9, 90)]
        );
        for (_, v) in p.iter_mut() {
            *v += 1;
        }
        assert_eq!(p.remove(1), Some(11));
        assert_eq!(p.take_all().collect::<Vec<_>>(), [21, 91]);
        assert!(p.iter().next().is_none());
    }

    #[test]
    fn a_burst_gives_its_buffer_back_once_answered() {
        let mut p = Pending::default();
        for n in 0..100 {
            p.insert(n, ());
        }
        for n in 0..100 {
            p.remove(n);
        }
        assert_eq!(p.q.capacity(), 0);
    }
}
