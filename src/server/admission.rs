//! Connection admission: which accepted connections the server holds, so that connections that
//! never log in cannot keep those that would from getting in.
//!
//! Every connection holds one of `max_connections` slots from accept to close (the bound on
//! sockets). Until it has sent its first WebSocket frame (its `login`) it is also *pending*:
//! at most `max_handshakes` are. A new connection that finds the pending set full, or every
//! slot taken while some are pending, takes the place of the pending connection accepted
//! longest ago, which is closed (that one is the likeliest to be idle: an honest handshake takes
//! a round trip or two). So idle half-open requests can delay a login by at most the time
//! `max_handshakes` newer connections take to arrive, never by the login timeout; only
//! connections that logged in are never closed to make room (when they take every slot, a new
//! connection waits to be accepted, as before).
//!
//! This module only keeps the books; the HTTP front and the connection task act on a
//! [`Ticket`]'s eviction signal. Deadlines (the login timeout) are theirs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::metrics::{CloseReason, Metrics};

/// A pending connection, as the books hold it: its signal, and its slot (taken by whoever
/// evicts it, or by itself once it logs in).
#[derive(Debug)]
struct Entry {
    evict: CancellationToken,
    slot: Option<OwnedSemaphorePermit>,
}

/// The books of slots and pending connections.
#[derive(Debug)]
pub(super) struct Admission {
    slots: Arc<Semaphore>,
    /// By accept order.
    pending: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
    max_pending: usize,
    metrics: Arc<Metrics>,
}

/// One accepted connection's place. Dropping it (the connection ended) frees its slot.
#[derive(Debug)]
pub(super) struct Ticket {
    key: u64,
    evict: CancellationToken,
    /// Its slot once it logged in.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    admission: Arc<Admission>,
}

impl Admission {
    pub(super) fn new(max_connections: usize, max_handshakes: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Admission {
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            pending: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
            max_pending: max_handshakes.max(1),
            metrics,
        })
    }

    /// A place for a connection just accepted: a free slot, else (or when too many are
    /// pending) the slot of the oldest pending connection, which is told to close; when every
    /// slot is held by a logged-in connection, waits for one to close.
    pub(super) async fn admit(self: &Arc<Self>) -> Ticket {
        let slot = match self.take_slot() {
            Some(slot) => slot,
            None => self
                .slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed"),
        };
        let key = self.next.fetch_add(1, Relaxed);
        let evict = CancellationToken::new();
        self.pending.lock().insert(
            key,
            Entry {
                evict: evict.clone(),
                slot: Some(slot),
            },
        );
        self.metrics.handshakes.fetch_add(1, Relaxed);
        Ticket {
            key,
            evict,
            slot: Mutex::new(None),
            admission: self.clone(),
        }
    }

    /// A slot without waiting: a free one, unless too many are pending; else the oldest
    /// pending connection's.
    fn take_slot(&self) -> Option<OwnedSemaphorePermit> {
        let mut pending = self.pending.lock();
        if pending.len() < self.max_pending
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            return Some(slot);
        }
        let (_, mut oldest) = pending.pop_first()?;
        drop(pending);
        oldest.evict.cancel();
        self.metrics.handshakes.fetch_sub(1, Relaxed);
        self.metrics.closed(CloseReason::HandshakeEvicted);
        oldest.slot.take()
    }
}

impl Ticket {
    /// Resolves when this connection was evicted to make room for a newer one.
    pub(super) async fn evicted(&self) {
        self.evict.cancelled().await
    }

    /// The connection sent its first frame: it keeps its slot for good and can no longer be
    /// evicted. False when it was evicted already (it must close).
    pub(super) fn promote(&self) -> bool {
        let Some(mut entry) = self.admission.pending.lock().remove(&self.key) else {
            return false;
        };
        self.admission.metrics.handshakes.fetch_sub(1, Relaxed);
        *self.slot.lock() = entry.slot.take();
        true
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.admission.pending.lock().remove(&self.key).is_some() {
            self.admission.metrics.handshakes.fetch_sub(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admission(slots: usize, pending: usize) -> Arc<Admission> {
        Admission::new(slots, pending, Arc::new(Metrics::new(String::new())))
    }

    #[tokio::test]
    async fn the_oldest_pending_makes_room_and_logged_in_ones_never_do() {
        let a = admission(2, 10);
        let first = a.admit().await;
        let second = a.admit().await;
        // Every slot taken, both pending: the third takes the oldest's.
        let third = a.admit().await;
        assert!(first.evict.is_cancelled() && !first.promote(), "evicted");
        assert!(second.promote(), "logged in: kept for good");
        assert!(third.promote());
        drop(first);
        // Both slots held by logged-in connections: a newcomer waits for one to close.
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.admit().await.key }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        drop(second);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiting).await.is_ok());
        assert_eq!(a.metrics.handshakes.load(Relaxed), 0, "the waiter's ticket was dropped");
    }

    #[tokio::test]
    async fn too_many_pending_evicts_the_oldest_even_with_slots_free() {
        let a = admission(100, 2);
        let t: Vec<Ticket> = vec![a.admit().await, a.admit().await, a.admit().await];
        assert!(t[0].evict.is_cancelled());
        assert!(!t[1].evict.is_cancelled() && !t[2].evict.is_cancelled());
        assert_eq!(a.metrics.handshakes.load(Relaxed), 2);
        assert_eq!(a.slots.available_permits(), 98, "the evicted one's slot was reused");
        drop(t);
        assert_eq!(a.slots.available_permits(), 100);
        assert_eq!(a.metrics.handshakes.load(Relaxed), 0);
    }
}
