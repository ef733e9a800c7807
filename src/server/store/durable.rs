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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    ReceiptKind, Recorded, SentRecord, Store, StoreLimits, StoreStats, UserId,
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

/// The log's shared side: the calls recorded and not yet written, and how far the log is
/// durable. Counted in calls recorded since this process started.
#[derive(Debug)]
pub struct Journal {
    pending: Mutex<Pending>,
    more: Condvar,
    /// Calls recorded so far (taken under `pending`'s lock).
    recorded: AtomicU64,
    /// Calls durable so far.
    durable: watch::Sender<u64>,
}

impl Journal {
    fn new() -> Self {
        Journal {
            pending: Mutex::new(Pending::default()),
            more: Condvar::new(),
            recorded: AtomicU64::new(0),
            durable: watch::Sender::new(0),
        }
    }

    fn record(&self, op: Op) {
        let mut p = self.pending.lock();
        let was_empty = p.ops.is_empty();
        p.ops.push(op);
        self.recorded.fetch_add(1, Ordering::Release);
        drop(p);
        if was_empty {
            self.more.notify_one();
        }
    }

    /// Completes once everything recorded before the call is durable: call it before writing
    /// a frame that may reflect what was recorded. Immediate when nothing is pending.
    pub async fn settled(&self) {
        let target = self.recorded.load(Ordering::Acquire);
        if *self.durable.borrow() >= target {
            return;
        }
        let mut rx = self.durable.subscribe();
        // The sender lives as long as the journal, which the caller borrows.
        let _ = rx.wait_for(|d| *d >= target).await;
    }

    /// The writer thread: group commits until the store is dropped and all is written.
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
                    // Nothing that depends on these calls was sent: stopping now is a crash
                    // the rule already covers, while carrying on would break it.
                    eprintln!("ackstorm server: the durable store failed to commit: {e}; stopping");
                    std::process::abort();
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
                    apply(&mut inner, op);
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

    fn record(&self, op: Op) {
        self.journal.record(op);
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
    fn next_id(&mut self) -> u64 {
        self.record(Op::NextId);
        self.inner.next_id()
    }

    fn last_id(&self) -> u64 {
        self.inner.last_id()
    }

    fn intern_user(&mut self, user: &str) -> UserId {
        self.record(Op::Intern(Arc::from(user)));
        self.inner.intern_user(user)
    }

    fn login_user(&mut self, user: &str) -> UserId {
        self.record(Op::Login(Arc::from(user)));
        self.inner.login_user(user)
    }

    fn insert_message(&mut self, mid: u64, meta: MessageMeta) {
        self.record(Op::Message {
            mid,
            from: meta.from.clone(),
            to: meta.to.clone(),
            chat_type: meta.chat_type,
            time: meta.time,
            group_receipts: meta.group_receipts,
        });
        self.inner.insert_message(mid, meta);
    }

    fn message(&self, mid: u64) -> Option<&MessageMeta> {
        self.inner.message(mid)
    }

    fn forgotten(&self, mid: u64) -> bool {
        self.inner.forgotten(mid)
    }

    fn record_receipt(&mut self, mid: u64, kind: ReceiptKind) -> Recorded {
        self.record(Op::Receipt {
            mid,
            read: kind == ReceiptKind::Read,
        });
        self.inner.record_receipt(mid, kind)
    }

    fn record_group_read(&mut self, mid: u64, reader: &UserId) -> Recorded {
        self.record(Op::GroupRead {
            mid,
            reader: reader.clone(),
        });
        self.inner.record_group_read(mid, reader)
    }

    fn group_readers(&self, mid: u64, before: Option<usize>, limit: usize) -> ReaderPage {
        self.inner.group_readers(mid, before, limit)
    }

    fn group(&self, id: &str) -> Option<&Group> {
        self.inner.group(id)
    }

    fn insert_group(&mut self, group: Group) -> bool {
        let op = Op::Group {
            id: group.id().clone(),
            owner: group.owner().clone(),
            members: group.members().to_vec(),
            admins: group.admins().to_vec(),
        };
        self.record(op);
        self.inner.insert_group(group)
    }

    fn add_member(&mut self, id: &str, user: &UserId) -> bool {
        self.record(Op::Join(Arc::from(id), user.clone()));
        self.inner.add_member(id, user)
    }

    fn remove_member(&mut self, id: &str, user: &str) -> bool {
        self.record(Op::Leave(Arc::from(id), Arc::from(user)));
        self.inner.remove_member(id, user)
    }

    fn groups_owned(&self, user: &str) -> usize {
        self.inner.groups_owned(user)
    }

    fn note_message(&mut self, user: &UserId, peer: &UserId, mid: u64, unread: bool) {
        self.record(Op::Note {
            user: user.clone(),
            peer: peer.clone(),
            mid,
            unread,
        });
        self.inner.note_message(user, peer, mid, unread);
    }

    fn note_group_message(&mut self, id: &str, sender: &str, mid: u64) {
        self.record(Op::NoteGroup {
            id: Arc::from(id),
            sender: Arc::from(sender),
            mid,
        });
        self.inner.note_group_message(id, sender, mid);
    }

    fn mark_read(&mut self, user: &str, peer: &str, mid: u64) -> bool {
        self.record(Op::MarkRead {
            user: Arc::from(user),
            peer: Arc::from(peer),
            mid,
        });
        self.inner.mark_read(user, peer, mid)
    }

    fn mark_all_read(&mut self, user: &UserId, chat_type: ChatType, conv: &Arc<str>, upto: u64) {
        self.record(Op::MarkAllRead {
            user: user.clone(),
            chat_type,
            conv: conv.clone(),
            upto,
        });
        self.inner.mark_all_read(user, chat_type, conv, upto);
    }

    fn conversations(&self, user: &str) -> Vec<ConversationState> {
        self.inner.conversations(user)
    }

    fn sent(&self, user: &str, id: &str) -> Option<SentRecord> {
        self.inner.sent(user, id)
    }

    fn remember_sent(&mut self, user: &UserId, id: &str, record: SentRecord, cutoff: u64) -> usize {
        self.record(Op::Sent {
            user: user.clone(),
            id: Arc::from(id),
            record: record.clone(),
            cutoff,
        });
        self.inner.remember_sent(user, id, record, cutoff)
    }

    fn push_offline_message(&mut self, user: &UserId, inbox: Inbox<'_>, message: OfflineMessage) {
        self.record(Op::OfflineMessage {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
            mid: message.mid,
            chat_type: message.chat_type,
            frame: message.frame.as_str().to_owned(),
        });
        self.inner.push_offline_message(user, inbox, message);
    }

    fn push_offline_receipt(&mut self, user: &UserId, inbox: Inbox<'_>, receipt: OfflineReceipt) {
        self.record(Op::OfflineReceipt {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
            receipt: receipt.clone(),
        });
        self.inner.push_offline_receipt(user, inbox, receipt);
    }

    fn set_offline_group_count(&mut self, user: &UserId, inbox: Inbox<'_>, mid: u64, group: &GroupId, count: u64) {
        self.record(Op::OfflineCount {
            user: user.clone(),
            inbox: InboxKey::of(inbox),
            mid,
            group: group.clone(),
            count,
        });
        self.inner.set_offline_group_count(user, inbox, mid, group, count);
    }

    fn take_offline(&mut self, user: &str, inbox: Inbox<'_>) -> OfflineBatch {
        self.record(Op::Take {
            user: Arc::from(user),
            inbox: InboxKey::of(inbox),
        });
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
        let a = s.login_user("a");
        let b = s.intern_user("b");
        let c = s.login_user("c");
        for _ in 0..3 {
            let mid = s.next_id();
            s.insert_message(mid, meta(&a, "b", ChatType::Single, false));
            s.note_message(&b, &a, mid, true);
            s.note_message(&a, &b, mid, false);
            let record = SentRecord {
                mid,
                to: Arc::from("b"),
                time: 7,
                group_ack: None,
            };
            s.remember_sent(&a, &format!("c{mid}"), record, 0);
            let frame = format!("frame {mid}").into();
            s.push_offline_message(
                &b,
                Inbox::User,
                OfflineMessage {
                    mid,
                    chat_type: ChatType::Single,
                    frame,
                },
            );
        }
        assert!(matches!(
            s.record_receipt(1, ReceiptKind::Delivery),
            Recorded::First { .. }
        ));
        assert!(s.mark_read("b", "a", 2));
        assert!(s.insert_group(Group::new(
            Arc::from("g"),
            a.clone(),
            vec![b.clone(), c.clone()],
            vec![]
        )));
        let gmid = s.next_id();
        s.insert_message(gmid, meta(&a, "g", ChatType::Group, true));
        s.note_group_message("g", "a", gmid);
        s.record_group_read(gmid, &c);
        s.record_group_read(gmid, &b);
        let g: GroupId = Arc::from("g");
        s.set_offline_group_count(&a, Inbox::Device("web"), gmid, &g, 2);
        s.take_offline("c", Inbox::User);
    }

    #[test]
    fn a_reopened_store_is_the_same_store() {
        let dir = tempfile::tempdir().unwrap();
        let limits = StoreLimits::default();
        let (before, last) = {
            let mut s = DurableStore::open(dir.path(), limits).unwrap();
            fill(&mut s);
            let view = (
                s.conversations("a"),
                s.conversations("b"),
                s.conversations("c"),
                s.group_readers(5, None, 10),
                s.sent("a", "c2"),
                s.message(1).cloned(),
                s.stats(),
            );
            (view, s.last_id())
        };
        let mut s = DurableStore::open(dir.path(), limits).unwrap();
        let after = (
            s.conversations("a"),
            s.conversations("b"),
            s.conversations("c"),
            s.group_readers(5, None, 10),
            s.sent("a", "c2"),
            s.message(1).cloned(),
            s.stats(),
        );
        assert_eq!(after, before);
        let with_a = after.1.iter().find(|c| &*c.id == "a").unwrap();
        assert_eq!(with_a.unread, 2, "three sent, one read");
        assert_eq!(after.3.total, 2);
        assert_eq!(s.last_id(), last);
        assert_eq!(s.record_receipt(1, ReceiptKind::Delivery), Recorded::Repeat { id: 4 });
        assert!(s.next_id() > last, "ids keep growing");
        let inbox = s.take_offline("b", Inbox::User);
        assert_eq!(inbox.messages.iter().map(|m| m.mid).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(inbox.messages[1].frame.as_str(), "frame 2");
        let device = s.take_offline("a", Inbox::Device("web"));
        assert_eq!(device.group_counts.len(), 1);
        drop(s);
        // What was taken stays taken.
        let mut s = DurableStore::open(dir.path(), limits).unwrap();
        assert!(s.take_offline("b", Inbox::User).is_empty());
    }
}
