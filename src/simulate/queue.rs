//! The simulation's queue of timed events: popped in time order, ties in the order they were
//! pushed. It must not reorder events at equal times: the run's results depend on it.
//!
//! Two choices make it cheap, measured on a 100,000-user run where the queue was the largest
//! cost. The queue holds only small keys (time, push number, slot); the payloads stay put in a
//! slab whose free slots are reused, since an event is as big as a decoded frame and a heap
//! moves its elements on every push and pop. And it is a calendar: the keys of the next
//! 16.8 s (`WINDOW_US`) go unsorted into buckets of [`BUCKET_US`]; only the current bucket is a
//! (small) heap, built when the clock reaches it; keys further ahead wait in an overflow heap
//! until the window reaches them. Almost every event is a frame due within milliseconds or a
//! timer due within seconds, so almost every push is an append to a bucket and every pop is
//! from a heap of a few hundred keys that stays in cache, instead of a heap of every pending
//! event of a million users.
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::sim::behaviour::Micros;

/// A queued event's place: its time, then its push number.
#[derive(Clone, Copy)]
struct Key {
    t: Micros,
    seq: u64,
    slot: u32,
}

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.seq) == (o.t, o.seq)
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.t, self.seq).cmp(&(o.t, o.seq))
    }
}

/// log2 of [`BUCKET_US`].
const SHIFT: u32 = 10;
/// The span of one bucket (µs): about a millisecond, the network's and the timers' grain.
const BUCKET_US: Micros = 1 << SHIFT;
/// Buckets in the window (a power of two).
const BUCKETS: u64 = 1 << 14;
/// How far ahead keys go into buckets (about 16.8 s): the behaviour's timers mostly fall
/// inside.
#[cfg(test)]
const WINDOW_US: Micros = BUCKET_US * BUCKETS;

/// Timed events of type `T`.
pub(super) struct Queue<T> {
    /// The current bucket's keys (and any at or before it), as a heap.
    near: BinaryHeap<Reverse<Key>>,
    /// The current bucket's number (`t / BUCKET_US`).
    cur: u64,
    /// Bucket `k` for `cur < k < cur + BUCKETS` at `k % BUCKETS`, unsorted.
    buckets: Vec<Vec<Reverse<Key>>>,
    /// Keys in `buckets`.
    in_buckets: usize,
    /// Keys at or past `cur + BUCKETS`.
    far: BinaryHeap<Reverse<Key>>,
    slab: Vec<Option<T>>,
    free: Vec<u32>,
    seq: u64,
}

impl<T> Queue<T> {
    /// An empty queue with room for `n` events.
    pub(super) fn with_capacity(n: usize) -> Queue<T> {
        Queue {
            near: BinaryHeap::new(),
            cur: 0,
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            in_buckets: 0,
            far: BinaryHeap::with_capacity(n),
            slab: Vec::with_capacity(n),
            free: Vec::new(),
            seq: 0,
        }
    }

    /// Queues `ev` at `t`, after everything queued at `t` before it.
    pub(super) fn push(&mut self, t: Micros, ev: T) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(ev);
                s
            }
            None => {
                let s = u32::try_from(self.slab.len()).expect("fewer than 2^32 events queued at once");
                self.slab.push(Some(ev));
                s
            }
        };
        self.place(Reverse(Key { t, seq: self.seq, slot }));
    }

    fn place(&mut self, key: Reverse<Key>) {
        let k = key.0.t / BUCKET_US;
        if k <= self.cur {
            self.near.push(key);
        } else if k < self.cur + BUCKETS {
            self.buckets[(k % BUCKETS) as usize].push(key);
            self.in_buckets += 1;
        } else {
            self.far.push(key);
        }
    }

    /// Moves the clock to the next bucket with keys (false: none left).
    fn advance(&mut self) -> bool {
        if self.in_buckets == 0 {
            // Nothing in the window: jump to the first key past it.
            let Some(Reverse(first)) = self.far.peek() else {
                return false;
            };
            self.cur = first.t / BUCKET_US;
        } else {
            self.cur += 1;
            let bucket = &mut self.buckets[(self.cur % BUCKETS) as usize];
            self.in_buckets -= bucket.len();
            let keys = std::mem::take(bucket);
            let spent = std::mem::replace(&mut self.near, BinaryHeap::from(keys));
            // The emptied heap's buffer becomes the bucket's, so buckets keep their capacity.
            self.buckets[(self.cur % BUCKETS) as usize] = spent.into_vec();
        }
        // The window now reaches one bucket further (or somewhere new).
        while let Some(Reverse(k)) = self.far.peek()
            && k.t / BUCKET_US < self.cur + BUCKETS
        {
            let key = self.far.pop().expect("peeked");
            self.place(key);
        }
        true
    }

    /// The earliest event and its time.
    pub(super) fn pop(&mut self) -> Option<(Micros, T)> {
        let k = loop {
            if let Some(Reverse(k)) = self.near.pop() {
                break k;
            }
            if !self.advance() {
                return None;
            }
        };
        let ev = self.slab[k.slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free.push(k.slot);
        Some((k.t, ev))
    }

    /// Events queued.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.near.len() + self.in_buckets + self.far.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_order_and_ties_in_push_order() {
        let mut q = Queue::with_capacity(4);
        q.push(5, "b");
        q.push(3, "a");
        q.push(5, "c");
        assert_eq!(q.pop(), Some((3, "a")));
        q.push(5, "d");
        q.push(4, "x");
        assert_eq!(q.len(), 4);
        let rest: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, vec![(4, "x"), (5, "b"), (5, "c"), (5, "d")]);
    }

    #[test]
    fn keeps_order_across_buckets_the_window_and_the_overflow() {
        // Pseudo-random times over several windows, many equal, pushed while popping.
        let mut q = Queue::with_capacity(0);
        let mut want = Vec::new();
        let mut x: u64 = 7;
        let mut next = |m: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let mut now = 0;
        let mut got = Vec::new();
        for i in 0..20_000u64 {
            let t = now + [0, 1, BUCKET_US, 5 * BUCKET_US, WINDOW_US, 3 * WINDOW_US][next(6) as usize] + next(3);
            q.push(t, i);
            want.push((t, i));
            if next(3) == 0 {
                let (t, i) = q.pop().expect("queued");
                assert!(t >= now);
                now = t;
                got.push((t, i));
            }
        }
        got.extend(std::iter::from_fn(|| q.pop()));
        // Ties in push order: a stable sort by time.
        want.sort_by_key(|&(t, _)| t);
        assert_eq!(got.len(), want.len());
        // Popping interleaved with pushing can only differ from the full sort where a pop came
        // before a later push at an earlier time, which `assert!(t >= now)` rules out here.
        assert_eq!(got, want);
    }

    #[test]
    fn reuses_freed_slots() {
        let mut q = Queue::with_capacity(1);
        for i in 0..100u64 {
            q.push(i, i);
            assert_eq!(q.pop(), Some((i, i)));
        }
        assert_eq!(q.slab.len(), 1);
    }
}
