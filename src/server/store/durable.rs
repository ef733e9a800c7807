//! [`DurableStore`]: the in-memory store made durable by a write-ahead log of its mutations
//! in an embedded database (redb), for `ackstorm serve --data DIR`.
//!
//! Design: the [`MemoryStore`] stays the authoritative working set under the hub's lock, so
//! routing is as fast as without `--data`. Every mutating call of the [`Store`] trait is
//! recorded, in the order it is made, as an owned [`Op`] into the [`Journal`] (a vector push
//! under the hub's lock: no I/O, no encoding), whose writer thread appends everything pending
//! as one log record in one transaction and commits it: a group commit (see
//! [`super::journal`]). The connection tasks wait, before writing any frame, until everything
//! recorded so far is durable ([`Journal::settled`]): so no reply and no push leaves the server
//! before the state it reflects would survive a `kill -9`, and no id a client has seen can be
//! allocated again after a restart.
//!
//! At start the store is rebuilt from the last snapshot and the log records after it, replayed
//! in order into the snapshot's [`MemoryStore`] (which is deterministic: the same calls give
//! the same state, caps and evictions included). A compactor thread keeps the snapshot recent
//! and the log short (see [`super::snapshot`]). Log records and snapshots are postcard
//! (measured: JSON records made each commit three times as large; a database written by an
//! older build, with JSON records, is read and compacted into the current format at open).
//!
//! A failed commit makes the store unavailable (every call fails, waiting frames are
//! answered `internal`) rather than aborting the process; a restart recovers what is on disk.
//! What this must not do: any I/O under the hub's lock, or decide anything (the hub decides;
//! this records).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::Database;
use thiserror::Error;

use super::group::Group;
use super::journal::Journal;
use super::logged::{InboxKey, Op};
use super::memory::MemoryStore;
use super::snapshot::{self, Compaction, Compactor};
use super::{
    ConversationState, GroupId, Inbox, MessageMeta, OfflineBatch, OfflineMessage, OfflineReceipt, ReaderPage,
    ReceiptKind, Recorded, SentRecord, Store, StoreError, StoreLimits, StoreStats, UserId,
};
use crate::protocol::ChatType;

/// The database file in the data directory.
const FILE: &str = "ackstorm.redb";
/// Committed log records the compactor may lag behind the writer before the writer waits.
const COMPACTOR_QUEUE: usize = 1024;

/// Why the durable store could not open or rebuild its data.
#[derive(Debug, Error)]
pub enum DurableError {
    /// The data directory could not be made, or a thread not started.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The database failed to open.
    #[error("database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: redb::Error,
    },
    /// The database could not be read, or what it holds not decoded.
    #[error("database {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: StoreError,
    },
}

/// The in-memory store, rebuilt from and logged to a database in a data directory.
#[derive(Debug)]
pub struct DurableStore {
    inner: MemoryStore,
    journal: Arc<Journal>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
}

impl DurableStore {
    /// Opens (or creates) the database in `dir`, rebuilds the store from its snapshot and log,
    /// and starts the writer and compactor threads.
    pub fn open(dir: &Path, limits: StoreLimits, compaction: Compaction) -> Result<DurableStore, DurableError> {
        let dir_err = |source| DurableError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let path = dir.join(FILE);
        let db = Database::create(&path).map_err(|e| DurableError::Db {
            path: path.clone(),
            source: e.into(),
        })?;
        let store_err = |source| DurableError::Store {
            path: path.clone(),
            source,
        };
        let loaded = snapshot::load(&db, limits).map_err(store_err)?;
        let db = Arc::new(db);
        let mut compactor = Compactor {
            db: db.clone(),
            replica: loaded.store.clone(),
            options: compaction,
            since: loaded.since,
            snapshot_bytes: loaded.snapshot_bytes,
            applied: loaded.next_key.checked_sub(1),
        };
        if loaded.upgrade {
            snapshot::write_snapshot(&db, &compactor.replica, loaded.next_key - 1).map_err(store_err)?;
            compactor.since = (0, 0);
        }
        let journal = Arc::new(Journal::new());
        let (records, received) = std::sync::mpsc::sync_channel(COMPACTOR_QUEUE);
        let compactor = std::thread::Builder::new()
            .name("ackstorm-compact".into())
            .spawn(move || compactor.run(received))
            .map_err(dir_err)?;
        let shared = journal.clone();
        let next_key = loaded.next_key;
        let writer = std::thread::Builder::new()
            .name("ackstorm-store".into())
            .spawn(move || shared.write_loop(&db, next_key, records))
            .map_err(dir_err)?;
        Ok(DurableStore {
            inner: loaded.store,
            journal,
            writer: Some(writer),
            compactor: Some(compactor),
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
    /// Commits what is pending and stops the writer, then the compactor (which stops once it
    /// has applied what the writer sent it).
    fn drop(&mut self) {
        self.journal.close();
        for thread in [self.writer.take(), self.compactor.take()].into_iter().flatten() {
            let _ = thread.join();
        }
    }
}

impl Store for DurableStore {
    fn next_id(&mut self) -> Result<u64, StoreError> {
        self.record(Op::NextId)?;
        self.inner.next_id()
    }

    // Applied, then recorded with the interned id (no allocation when the user exists); both
    // under the same `&mut self`, so the log order is the call order.
    fn intern_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        self.check()?;
        let id = self.inner.intern_user(user)?;
        self.record(Op::Intern(id.clone()))?;
        Ok(id)
    }

    fn login_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        self.check()?;
        let id = self.inner.login_user(user)?;
        self.record(Op::Login(id.clone()))?;
        Ok(id)
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
#[path = "durable_tests.rs"]
mod tests;
