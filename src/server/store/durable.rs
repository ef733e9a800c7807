//! [`DurableStore`]: the in-memory store made durable by a write-ahead log of its mutations
//! in an embedded database (redb), for `ackstorm serve --data DIR`.
//!
//! Design: the [`MemoryStore`] stays the authoritative working set under the hub's lock, so
//! routing is as fast as without `--data`. Every mutating call of the [`Store`] trait is
//! recorded, in the order it is made, as an owned [`Op`] into the [`Journal`]'s pending list
//! (a vector push under the hub's lock: no I/O, no encoding). One writer thread takes all
//! that is pending, appends it as one record to the database in one transaction and commits
//! (redb fsyncs the commit): a group commit. The connection tasks wait, before writing any
//! frame, until everything recorded so far is durable ([`Journal::settled`]): so no reply and
//! no push leaves the server before the state it reflects would survive a `kill -9`, and no id
//! a client has seen can be allocated again after a restart.
//!
//! At start the store is rebuilt by replaying every logged call, in order, into a fresh
//! [`MemoryStore`] (which is deterministic: the same calls give the same state, caps and
//! evictions included). What this must not do: any I/O under the hub's lock, or decide
//! anything (the hub decides; this records).
//!
//! Not done yet: the log is never compacted (a restart replays all of it; a snapshot of the
//! working set would bound that), and a failed commit aborts the process (as a crash would:
//! nothing that depended on it was sent).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use thiserror::Error;
use tokio::sync::watch;

use super::group::Group;
use super::logged::{InboxKey, Op, apply};
use super::memory::MemoryStore;
use super::{
    ConversationState, GroupId, Inbox, MessageMeta, OfflineBatch, OfflineMessage, OfflineReceipt, ReaderPage,
    ReceiptKind, Recorded, SentRecord, Store, StoreError, StoreLimits, StoreStats, UserId,
};
use crate::protocol::ChatType;

/// The log: one row per group commit, keyed by its sequence number, holding the JSON array
/// of the [`Op`]s it made durable.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// The database file in the data directory.
const FILE: &str = "ackstorm.redb";

/// Why the durable store could not open or rebuild its data.
#[derive(Debug, Error)]
pub enum DurableError {
    /// The data directory could not be made.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The database failed to open or to read.
    #[error("database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: redb::Error,
    },
    /// A log record could not be decoded.
    #[error("database {path}: log record {key} is corrupt: {source}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The record's key.
        key: u64,
        /// What failed.
        source: serde_json::Error,
    },
}

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
}

impl Journal {
    fn new() -> Self {
        Journal {
            pending: Mutex::new(Pending::default()),
            more: Condvar::new(),
            recorded: AtomicU64::new(0),
            durable: watch::Sender::new(0),
            failed: OnceLock::new(),
        }
    }

    /// The failed commit, if one failed.
    pub fn failure(&self) -> Option<&StoreError> {
        self.failed.get()
    }

    /// The error every call gets once a commit failed.
    fn check(&self) -> Result<(), StoreError> {
        match self.failed.get() {
            None => Ok(()),
            Some(e) => Err(StoreError::Unavailable(Arc::from(e.to_string()))),
        }
    }

    fn record(&self, op: Op) -> Result<(), StoreError> {
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
        let target = self.recorded.load(Ordering::Acquire);
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
            .unwrap_or_else(|| StoreError::Unavailable("closed".into())))
    }

    /// A commit failed: every waiter is told, and every later call fails.
    fn fail(&self, e: StoreError) {
        let _ = self.failed.set(e);
        self.durable.send_modify(|_| {});
    }

    /// The writer thread: group commits until the store is dropped and all is written, or a
    /// commit fails.
    fn write_loop(&self, db: Database, mut key: u64) {
        loop {
            let (ops, closed) = {
                let mut p = self.pending.lock();
                while p.ops.is_empty() && !p.closed {
                    self.more.wait(&mut p);
                }
                (std::mem::take(&mut p.ops), p.closed)
            };
            if !ops.is_empty() {
                let n = ops.len() as u64;
                if let Err(e) = append(&db, key, &ops) {
                    // Nothing that depends on these calls was sent, and nothing will be: the
                    // connections waiting for them answer `internal` instead.
                    tracing::error!(error = %e, "the durable store failed to commit; it takes no more calls");
                    self.fail(StoreError::Io {
                        op: "commit",
                        reason: Arc::from(e.to_string()),
                    });
                    return;
                }
                key += 1;
                self.durable.send_modify(|d| *d += n);
            }
            if closed && self.pending.lock().ops.is_empty() {
                return;
            }
        }
    }
}

/// Appends one record and commits it (fsync'd: redb's default durability).
fn append(db: &Database, key: u64, ops: &[Op]) -> Result<(), redb::Error> {
    let bytes = serde_json::to_vec(ops).expect("ops serialize");
    let tx = db.begin_write()?;
    {
        let mut table = tx.open_table(LOG)?;
        table.insert(key, bytes.as_slice())?;
    }
    tx.commit()?;
    Ok(())
}

/// The in-memory store, rebuilt from and logged to a database in a data directory.
#[derive(Debug)]
pub struct DurableStore {
    inner: MemoryStore,
    journal: Arc<Journal>,
    writer: Option<JoinHandle<()>>,
}

impl DurableStore {
    /// Opens (or creates) the database in `dir`, rebuilds the store from its log and starts
    /// the writer thread.
    pub fn open(dir: &Path, limits: StoreLimits) -> Result<DurableStore, DurableError> {
        std::fs::create_dir_all(dir).map_err(|source| DurableError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE);
        let db_err = |e: redb::Error| DurableError::Db {
            path: path.clone(),
            source: e,
        };
        let db = Database::create(&path).map_err(|e| db_err(e.into()))?;
        let mut inner = MemoryStore::new(limits);
        let mut next_key = 0;
        {
            let tx = db.begin_write().map_err(|e| db_err(e.into()))?;
            tx.open_table(LOG).map_err(|e| db_err(e.into()))?;
            tx.commit().map_err(|e| db_err(e.into()))?;
            let tx = db.begin_read().map_err(|e| db_err(e.into()))?;
            let table = tx.open_table(LOG).map_err(|e| db_err(e.into()))?;
            for row in table.iter().map_err(|e| db_err(e.into()))? {
                let (k, v) = row.map_err(|e| db_err(e.into()))?;
                let key = k.value();
                let ops: Vec<Op> = serde_json::from_slice(v.value()).map_err(|source| DurableError::Corrupt {
                    path: path.clone(),
                    key,
                    source,
                })?;
                for op in ops {
                    apply(&mut inner, op).expect("the in-memory store never fails");
                }
                next_key = key + 1;
            }
        }
        let journal = Arc::new(Journal::new());
        let shared = journal.clone();
        let writer = std::thread::Builder::new()
            .name("ackstorm-store".into())
            .spawn(move || shared.write_loop(db, next_key))
            .map_err(|source| DurableError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(DurableStore {
            inner,
            journal,
            writer: Some(writer),
        })
    }

    fn record(&self, op: Op) -> Result<(), StoreError> {
        self.journal.record(op)
    }

    fn check(&self) -> Result<(), StoreError> {
        self.journal.check()
    }
}

impl Drop for DurableStore {
    /// Commits what is pending and stops the writer.
    fn drop(&mut self) {
        self.journal.pending.lock().closed = true;
        self.journal.more.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Store for DurableStore {
    fn next_id(&mut self) -> Result<u64, StoreError> {
        self.record(Op::NextId)?;
        self.inner.next_id()
    }

    fn intern_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        self.record(Op::Intern(Arc::from(user)))?;
        self.inner.intern_user(user)
    }

    fn login_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        self.record(Op::Login(Arc::from(user)))?;
        self.inner.login_user(user)
    }

    fn insert_message(&mut self, mid: u64, meta: MessageMeta) -> Result<(), StoreError> {
        self.record(Op::Message {
            mid,
            from: meta.from.clone(),
            to: meta.to.clone(),
            chat_type: meta.chat_type,
            time: meta.time,
            group_receipts: meta.group_receipts,
        })?;
        self.inner.insert_message(mid, meta)
    }

    fn message(&self, mid: u64) -> Result<Option<MessageMeta>, StoreError> {
        self.check()?;
        self.inner.message(mid)
    }

    fn forgotten(&self, mid: u64) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.forgotten(mid)
    }

    fn record_receipt(&mut self, mid: u64, kind: ReceiptKind) -> Result<Recorded, StoreError> {
        self.record(Op::Receipt {
            mid,
            read: kind == ReceiptKind::Read,
        })?;
        self.inner.record_receipt(mid, kind)
    }

    fn record_group_read(&mut self, mid: u64, reader: &UserId) -> Result<Recorded, StoreError> {
        self.record(Op::GroupRead {
            mid,
            reader: reader.clone(),
        })?;
        self.inner.record_group_read(mid, reader)
    }

    fn group_readers(&self, mid: u64, before: Option<usize>, limit: usize) -> Result<ReaderPage, StoreError> {
        self.check()?;
        self.inner.group_readers(mid, before, limit)
    }

    fn group(&self, id: &str) -> Result<Option<Arc<Group>>, StoreError> {
        self.check()?;
        self.inner.group(id)
    }

    fn insert_group(&mut self, group: Group) -> Result<bool, StoreError> {
        self.record(Op::Group {
            id: group.id().clone(),
            owner: group.owner().clone(),
            members: group.members(),
            admins: group.admins().to_vec(),
        })?;
        self.inner.insert_group(group)
    }

    fn add_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError> {
        self.record(Op::Join(Arc::from(id), user.clone()))?;
        self.inner.add_member(id, user)
    }

    fn remove_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError> {
        self.record(Op::Leave(Arc::from(id), user.clone()))?;
        self.inner.remove_member(id, user)
    }

    fn groups_owned(&self, user: &str) -> Result<usize, StoreError> {
        self.check()?;
        self.inner.groups_owned(user)
    }

    fn note_message(&mut self, user: &UserId, peer: &UserId, mid: u64, unread: bool) -> Result<(), StoreError> {
        self.record(Op::Note {
            user: user.clone(),
            peer: peer.clone(),
            mid,
            unread,
        })?;
        self.inner.note_message(user, peer, mid, unread)
    }

    fn note_group_message(&mut self, id: &GroupId, sender: &UserId, mid: u64) -> Result<(), StoreError> {
        self.record(Op::NoteGroup {
            id: id.clone(),
            sender: sender.clone(),
            mid,
        })?;
        self.inner.note_group_message(id, sender, mid)
    }

    fn mark_read(&mut self, user: &UserId, peer: &UserId, mid: u64) -> Result<bool, StoreError> {
        self.record(Op::MarkRead {
            user: user.clone(),
            peer: peer.clone(),
            mid,
        })?;
        self.inner.mark_read(user, peer, mid)
    }

    fn mark_all_read(
        &mut self,
        user: &UserId,
        chat_type: ChatType,
        conv: &Arc<str>,
        upto: u64,
    ) -> Result<(), StoreError> {
        self.record(Op::MarkAllRead {
            user: user.clone(),
            chat_type,
            conv: conv.clone(),
            upto,
        })?;
        self.inner.mark_all_read(user, chat_type, conv, upto)
    }

    fn conversations(&self, user: &str) -> Result<Vec<ConversationState>, StoreError> {
        self.check()?;
        self.inner.conversations(user)
    }

    fn sent(&self, user: &str, id: &str) -> Result<Option<SentRecord>, StoreError> {
        self.check()?;
        self.inner.sent(user, id)
    }

    fn remember_sent(&mut self, user: &UserId, id: &str, record: SentRecord, cutoff: u64) -> Result<usize, StoreError> {
        self.record(Op::Sent {
            user: user.clone(),
            id: Arc::from(id),
            record: record.clone(),
            cutoff,
        })?;
        self.inner.remember_sent(user, id, record, cutoff)
    }

    fn push_offline_message(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        message: OfflineMessage,
    ) -> Result<(), StoreError> {
        self.record(Op::OfflineMessage {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
            mid: message.mid,
            chat_type: message.chat_type,
            frame: message.frame.clone(),
        })?;
        self.inner.push_offline_message(user, inbox, message)
    }

    fn push_offline_receipt(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        receipt: OfflineReceipt,
    ) -> Result<(), StoreError> {
        self.record(Op::OfflineReceipt {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
            receipt: receipt.clone(),
        })?;
        self.inner.push_offline_receipt(user, inbox, receipt)
    }

    fn set_offline_group_count(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        mid: u64,
        group: &GroupId,
        count: u64,
    ) -> Result<(), StoreError> {
        self.record(Op::OfflineCount {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
            mid,
            group: group.clone(),
            count,
        })?;
        self.inner.set_offline_group_count(user, inbox, mid, group, count)
    }

    fn take_offline(&mut self, user: &UserId, inbox: Inbox<'_>) -> Result<OfflineBatch, StoreError> {
        self.record(Op::Take {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
        })?;
        self.inner.take_offline(user, inbox)
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    fn journal(&self) -> Option<Arc<Journal>> {
        Some(self.journal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn meta(from: &UserId, to: &str, chat_type: ChatType, receipts: bool) -> MessageMeta {
        MessageMeta {
            from: from.clone(),
            to: Arc::from(to),
            chat_type,
            time: 7,
            group_receipts: receipts,
        }
    }

    /// Drives one store through messages, receipts, a group, unread counts, remembered sends
    /// and offline inboxes; returns what a reopened store must answer the same.
    fn fill(s: &mut DurableStore) {
        let a = s.login_user("a").unwrap();
        let b = s.intern_user("b").unwrap();
        let c = s.login_user("c").unwrap();
        for _ in 0..3 {
            let mid = s.next_id().unwrap();
            s.insert_message(mid, meta(&a, "b", ChatType::Single, false)).unwrap();
            s.note_message(&b, &a, mid, true).unwrap();
            s.note_message(&a, &b, mid, false).unwrap();
            let record = SentRecord {
                mid,
                to: Arc::from("b"),
                time: 7,
                group_ack: None,
            };
            s.remember_sent(&a, &format!("c{mid}"), record, 0).unwrap();
            let frame = format!("frame {mid}").into();
            s.push_offline_message(
                &b,
                Inbox::User,
                OfflineMessage {
                    mid,
                    chat_type: ChatType::Single,
                    frame,
                },
            )
            .unwrap();
        }
        assert!(matches!(
            s.record_receipt(1, ReceiptKind::Delivery).unwrap(),
            Recorded::First { .. }
        ));
        assert!(s.mark_read(&id("b"), &id("a"), 2).unwrap());
        assert!(
            s.insert_group(Group::new(
                Arc::from("g"),
                a.clone(),
                vec![b.clone(), c.clone()],
                vec![]
            ))
            .unwrap()
        );
        let gmid = s.next_id().unwrap();
        s.insert_message(gmid, meta(&a, "g", ChatType::Group, true)).unwrap();
        s.note_group_message(&id("g"), &id("a"), gmid).unwrap();
        s.record_group_read(gmid, &c).unwrap();
        s.record_group_read(gmid, &b).unwrap();
        let g: GroupId = Arc::from("g");
        s.set_offline_group_count(&a, Inbox::Device("web"), gmid, &g, 2)
            .unwrap();
        s.take_offline(&id("c"), Inbox::User).unwrap();
    }

    #[test]
    fn a_reopened_store_is_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits::default();
        let (before, last) = {
            let mut s = DurableStore::open(dir.path(), limits).unwrap();
            fill(&mut s);
            let view = (
                s.conversations("a").unwrap(),
                s.conversations("b").unwrap(),
                s.conversations("c").unwrap(),
                s.group_readers(5, None, 10).unwrap(),
                s.sent("a", "c2").unwrap(),
                s.message(1).unwrap(),
                s.stats(),
            );
            (view, s.inner.last_id())
        };
        let mut s = DurableStore::open(dir.path(), limits).unwrap();
        let after = (
            s.conversations("a").unwrap(),
            s.conversations("b").unwrap(),
            s.conversations("c").unwrap(),
            s.group_readers(5, None, 10).unwrap(),
            s.sent("a", "c2").unwrap(),
            s.message(1).unwrap(),
            s.stats(),
        );
        assert_eq!(after, before);
        let with_a = after.1.iter().find(|c| &*c.id == "a").unwrap();
        assert_eq!(with_a.unread, 2, "three sent, one read");
        assert_eq!(after.3.total, 2);
        assert_eq!(s.inner.last_id(), last);
        assert_eq!(
            s.record_receipt(1, ReceiptKind::Delivery).unwrap(),
            Recorded::Repeat { id: 4 }
        );
        assert!(s.next_id().unwrap() > last, "ids keep growing");
        let inbox = s.take_offline(&id("b"), Inbox::User).unwrap();
        assert_eq!(inbox.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(inbox.messages[1].frame.as_str(), "frame 2");
        let device = s.take_offline(&id("a"), Inbox::Device("web")).unwrap();
        assert_eq!(device.group_counts.len(), 1);
        drop(s);
        // What was taken stays taken.
        let mut s = DurableStore::open(dir.path(), limits).unwrap();
        assert!(s.take_offline(&id("b"), Inbox::User).unwrap().is_empty());
    }

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
