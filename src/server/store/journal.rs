//! [`Journal`]: the durable store's group commit. The hub's calls are recorded as [`Op`]s in a
//! pending list (a vector push under the hub's lock: no I/O, no encoding); one writer thread
//! takes everything pending, encodes it as one log record, appends it in one redb transaction
//! and commits (fsync'd), then hands the ops to the compactor (see [`super::snapshot`]).
//! Connection tasks wait ([`Journal::settled`]) until what they are about to write is durable.
//!
//! A failed commit is not retried: the ops it held are in memory but will never be on disk,
//! so the journal fails for good. Every connection waiting for it is told (and answers
//! `internal`), every later store call fails, and `/healthz` says so; a restart rebuilds the
//! store from what is on disk. What this must not do: block the hub (the writer never holds
//! the pending list's lock across I/O) or decide anything.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};
use redb::{Database, TableDefinition};
use tokio::sync::watch;

use super::StoreError;
use super::logged::Op;
use super::snapshot::Batch;

/// The log: one row per group commit, keyed by its sequence number, holding the postcard
/// encoding of the `Vec<Op>` it made durable.
pub(super) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

/// What is recorded and not yet durable.
#[derive(Debug, Default)]
struct Pending {
    ops: Vec<Op>,
    /// The store was dropped: the writer commits what is left and stops.
    closed: bool,
}

/// The log's shared side: the calls recorded and not yet written, how far the log is
/// durable, and whether a commit failed. Counted in calls recorded since this process started.
#[derive(Debug)]
pub struct Journal {
    pending: Mutex<Pending>,
    more: Condvar,
    /// Calls recorded so far (taken under `pending`'s lock).
    recorded: AtomicU64,
    /// Calls durable so far.
    durable: watch::Sender<u64>,
    /// The first failed commit: from then on nothing more becomes durable.
    failed: OnceLock<StoreError>,
    /// Fault injection: the next commit fails (tests).
    inject: AtomicBool,
}

impl Journal {
    pub(super) fn new() -> Self {
        Journal {
            pending: Mutex::new(Pending::default()),
            more: Condvar::new(),
            recorded: AtomicU64::new(0),
            durable: watch::Sender::new(0),
            failed: OnceLock::new(),
            inject: AtomicBool::new(false),
        }
    }

    /// Makes the next commit fail as a full disk would (fault injection for tests).
    #[doc(hidden)]
    pub fn fail_next_commit(&self) {
        self.inject.store(true, Ordering::Relaxed);
    }

    /// The failed commit, if one failed.
    pub fn failure(&self) -> Option<&StoreError> {
        self.failed.get()
    }

    /// The error every call gets once a commit failed.
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            None => Ok(()),
            Some(e) => Err(StoreError::Unavailable(Arc::from(e.to_string()))),
        }
    }

    pub(super) fn record(&self, op: Op) -> Result<(), StoreError> {
        self.check()?;
        let mut p = self.pending.lock();
        let was_empty = p.ops.is_empty();
        p.ops.push(op);
        self.recorded.fetch_add(1, Ordering::Release);
        drop(p);
        if was_empty {
            self.more.notify_one();
        }
        Ok(())
    }

    /// Completes once everything recorded before the call is durable: call it before writing
    /// a frame that may reflect what was recorded. Immediate when nothing is pending. An error
    /// when a commit failed first: what was recorded will never be durable, so nothing that
    /// reflects it may be written.
    pub async fn settled(&self) -> Result<(), StoreError> {
        self.settled_to(self.recorded()).await
    }

    /// Calls recorded so far: what a frame made now may reflect.
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Acquire)
    }

    /// Calls durable so far.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// Completes once the first `target` calls recorded are durable (see [`Journal::settled`]).
    pub async fn settled_to(&self, target: u64) -> Result<(), StoreError> {
        if *self.durable.borrow() >= target {
            return Ok(());
        }
        let mut rx = self.durable.subscribe();
        // The sender lives as long as the journal, which the caller borrows.
        let _ = rx.wait_for(|d| *d >= target || self.failed.get().is_some()).await;
        if *self.durable.borrow() >= target {
            return Ok(());
        }
        Err(self
            .failed
            .get()
            .cloned()
            .unwrap_or_else(|| StoreError::Unavailable("the store closed".into())))
    }

    /// A commit failed: every waiter is told, and every later call fails.
    pub(super) fn fail(&self, e: StoreError) {
        let _ = self.failed.set(e);
        self.durable.send_modify(|_| {});
    }

    /// The store is dropped: the writer commits what is pending and stops.
    pub(super) fn close(&self) {
        self.pending.lock().closed = true;
        self.more.notify_one();
    }

    /// The writer thread: group commits, from log key `key` on, until the store is dropped
    /// and all is written, or a commit fails. Each committed record goes on to `compactor`.
    pub(super) fn write_loop(&self, db: &Database, mut key: u64, compactor: SyncSender<Batch>) {
        let mut buf = Vec::new();
        let mut last = 0;
        loop {
            let (ops, closed) = {
                let mut p = self.pending.lock();
                while p.ops.is_empty() && !p.closed {
                    self.more.wait(&mut p);
                }
                // The next list starts at the last one's size: it does not grow by doubling
                // under the hub's lock.
                (std::mem::replace(&mut p.ops, Vec::with_capacity(last)), p.closed)
            };
            if !ops.is_empty() {
                let n = ops.len() as u64;
                last = ops.len();
                let written = if self.inject.swap(false, Ordering::Relaxed) {
                    Err(StoreError::Io {
                        op: "commit",
                        reason: "injected failure".into(),
                    })
                } else {
                    append(db, key, &ops, &mut buf)
                };
                let bytes = match written {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        // Nothing that depends on these calls was sent, and nothing will be:
                        // the connections waiting for them answer `internal` instead.
                        tracing::error!(error = %e, "the durable store failed to commit; it takes no more calls");
                        self.fail(e);
                        return;
                    }
                };
                self.durable.send_modify(|d| *d += n);
                // After the waiters are released: the compactor's pace never delays a reply
                // (unless it falls a whole channel behind).
                let _ = compactor.send(Batch { key, ops, bytes });
                key += 1;
            }
            if closed && self.pending.lock().ops.is_empty() {
                return;
            }
        }
    }
}

/// Encodes `ops` as log record `key` (in `buf`, reused), appends it and commits (fsync'd:
/// redb's default durability). Returns the record's size.
fn append(db: &Database, key: u64, ops: &[Op], buf: &mut Vec<u8>) -> Result<usize, StoreError> {
    let io = |e: redb::Error| StoreError::Io {
        op: "commit",
        reason: Arc::from(e.to_string()),
    };
    buf.clear();
    let bytes =
        postcard::to_extend(ops, std::mem::take(buf)).map_err(|e| StoreError::Corrupt(Arc::from(e.to_string())))?;
    *buf = bytes;
    let bytes: &[u8] = buf;
    let tx = db.begin_write().map_err(|e| io(e.into()))?;
    {
        let mut table = tx.open_table(LOG).map_err(|e| io(e.into()))?;
        table.insert(key, bytes).map_err(|e| io(e.into()))?;
    }
    tx.commit().map_err(|e| io(e.into()))?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_commit_is_reported_to_waiters_and_to_every_later_call() {
        let journal = Journal::new();
        journal.settled().await.unwrap();
        journal.record(Op::NextId).unwrap();
        let waiter = journal.settled();
        journal.fail(StoreError::Io {
            op: "commit",
            reason: "disk full".into(),
        });
        assert!(matches!(waiter.await, Err(StoreError::Io { op: "commit", .. })));
        assert!(matches!(journal.record(Op::NextId), Err(StoreError::Unavailable(_))));
        assert!(journal.failure().is_some());
    }
}
