//! Log compaction for the durable store: a compactor thread keeps a replica of the durable
//! state and, now and then, writes it as a snapshot and deletes the log records it covers, so
//! that a restart reads one snapshot and a short log, and the database stops growing.
//!
//! Why a replica: the working set lives under the hub's lock, and serializing it there would
//! stall routing for as long as the state is large. The writer thread instead hands every
//! record it committed to this thread, which applies its ops, in order, to its own
//! [`MemoryStore`] (the store is deterministic: the same calls give the same state). So the
//! replica is exactly the durable state as of the last record applied, a snapshot of it is
//! consistent by construction, and nothing here ever takes the hub's lock. It costs a second
//! copy of the store's structures (not of its strings and frames: the ops carry the hub's
//! shared `Arc`s) and the CPU of applying each op once more, on another core.
//!
//! When: after [`Compaction::log_ops`] ops or [`Compaction::log_bytes`] bytes of log since the
//! last snapshot, the latter never less than the last snapshot's size, so the snapshot work
//! stays proportional to the log written. Crash safety: the snapshot (in chunks), its metadata
//! and the deletion of the log records it covers are one redb write transaction: a crash
//! leaves the old snapshot and the whole log, or the new snapshot and the rest of the log.
//! What this must not do: decide anything, or touch the hub's store.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::intern;
use super::journal::LOG;
use super::logged::{Op, apply};
use super::memory::MemoryStore;
use super::{StoreError, StoreLimits};

/// Snapshot chunks, keyed by their position.
const SNAPSHOT: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshot");
/// Metadata: [`FORMAT_KEY`], [`COVERS_KEY`], [`CHUNKS_KEY`].
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The encoding of log records and snapshots (postcard); absent: an older database whose
/// log records are JSON.
const FORMAT_KEY: &str = "format";
const FORMAT: u64 = 2;
/// The last log key the snapshot covers.
const COVERS_KEY: &str = "covers";
/// The snapshot's chunks.
const CHUNKS_KEY: &str = "chunks";
/// Bytes per snapshot chunk.
const CHUNK: usize = 1 << 20;

/// When the log is compacted (`serve --compact-log-ops`, `--compact-log-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Snapshot after this many logged ops since the last one.
    pub log_ops: u64,
    /// Snapshot after this many bytes of log records since the last one (or the last
    /// snapshot's size, if larger).
    pub log_bytes: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            log_ops: 4_000_000,
            log_bytes: 64 * 1024 * 1024,
        }
    }
}

/// One committed log record, from the writer thread.
pub(super) struct Batch {
    /// Its log key.
    pub key: u64,
    /// Its ops, in order.
    pub ops: Vec<Op>,
    /// Its encoded size.
    pub bytes: usize,
}

/// What [`load`] found in the database.
pub(super) struct Loaded {
    /// The store: the snapshot with the log after it replayed.
    pub store: MemoryStore,
    /// The next log key to write.
    pub next_key: u64,
    /// Log ops and bytes not covered by the snapshot.
    pub since: (u64, u64),
    /// The snapshot's size (0: none).
    pub snapshot_bytes: u64,
    /// The log was JSON (an older database): to be compacted into the current format at once.
    pub upgrade: bool,
}

fn io(op: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::Io {
        op,
        reason: Arc::from(e.to_string()),
    }
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(Arc::from(what))
}

/// Makes the tables if missing, then rebuilds the store: the snapshot, then every log record
/// after it, in order. Ids and frames are shared again as they are decoded.
pub(super) fn load(db: &Database, limits: StoreLimits) -> Result<Loaded, StoreError> {
    let open = io("open the database");
    let tx = db.begin_write().map_err(|e| open(e.into()))?;
    {
        let log = tx.open_table(LOG).map_err(|e| open(e.into()))?;
        tx.open_table(SNAPSHOT).map_err(|e| open(e.into()))?;
        let mut meta = tx.open_table(META).map_err(|e| open(e.into()))?;
        let fresh = log.is_empty().map_err(|e| open(e.into()))?;
        if fresh && meta.get(FORMAT_KEY).map_err(|e| open(e.into()))?.is_none() {
            meta.insert(FORMAT_KEY, FORMAT).map_err(|e| open(e.into()))?;
        }
    }
    tx.commit().map_err(|e| open(e.into()))?;
    let read = io("read the database");
    let tx = db.begin_read().map_err(|e| read(e.into()))?;
    let meta = tx.open_table(META).map_err(|e| read(e.into()))?;
    let get = |k: &str| -> Result<Option<u64>, StoreError> {
        Ok(meta.get(k).map_err(|e| read(e.into()))?.map(|v| v.value()))
    };
    let format = get(FORMAT_KEY)?;
    let covers = get(COVERS_KEY)?;
    intern::interning(|| {
        let (mut store, mut snapshot_bytes) = (MemoryStore::new(limits), 0);
        if let Some(chunks) = get(CHUNKS_KEY)? {
            let table = tx.open_table(SNAPSHOT).map_err(|e| read(e.into()))?;
            let mut buf = Vec::new();
            for i in 0..chunks {
                let chunk = table
                    .get(i)
                    .map_err(|e| read(e.into()))?
                    .ok_or_else(|| corrupt(format!("snapshot chunk {i} of {chunks} is missing")))?;
                buf.extend_from_slice(chunk.value());
            }
            let decoded: MemoryStore = postcard::from_bytes(&buf).map_err(|e| corrupt(format!("snapshot: {e}")))?;
            store = decoded.restored(limits);
            snapshot_bytes = buf.len() as u64;
        }
        let table = tx.open_table(LOG).map_err(|e| read(e.into()))?;
        let mut next_key = covers.map_or(0, |c| c + 1);
        let mut since = (0, 0);
        for row in table.iter().map_err(|e| read(e.into()))? {
            let (k, v) = row.map_err(|e| read(e.into()))?;
            let key = k.value();
            if covers.is_some_and(|c| key <= c) {
                continue; // never left behind by a compaction (one transaction); skip anyway
            }
            let ops: Vec<Op> = match format {
                Some(_) => postcard::from_bytes(v.value()).map_err(|e| corrupt(format!("log record {key}: {e}")))?,
                None => serde_json::from_slice(v.value()).map_err(|e| corrupt(format!("log record {key}: {e}")))?,
            };
            since = (since.0 + ops.len() as u64, since.1 + v.value().len() as u64);
            for op in ops {
                apply(&mut store, op)?;
            }
            next_key = key + 1;
        }
        Ok(Loaded {
            upgrade: format.is_none() && since.0 > 0,
            store,
            next_key,
            since,
            snapshot_bytes,
        })
    })
}

/// The compactor thread's state: the replica and how much log it has seen since the last
/// snapshot.
pub(super) struct Compactor {
    pub db: Arc<Database>,
    pub replica: MemoryStore,
    pub options: Compaction,
    /// Log ops and bytes since the last snapshot.
    pub since: (u64, u64),
    /// The last snapshot's size.
    pub snapshot_bytes: u64,
    /// The last log key applied to the replica.
    pub applied: Option<u64>,
}

impl Compactor {
    /// Applies each committed record and snapshots when due, until the writer stops. Runs at
    /// a lower priority (nice 10, Linux): it is background work, and on a busy machine the
    /// connections' and the writer's threads, which replies wait for, go first.
    pub fn run(mut self, records: Receiver<Batch>) {
        #[cfg(target_os = "linux")]
        // SAFETY: plain system calls on this thread's own id; a failure only leaves the
        // priority as it was.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
        }
        while let Ok(batch) = records.recv() {
            self.since = (self.since.0 + batch.ops.len() as u64, self.since.1 + batch.bytes as u64);
            for op in batch.ops {
                // The in-memory store never fails.
                let _ = apply(&mut self.replica, op);
            }
            self.applied = Some(batch.key);
            if self.due() {
                self.compact();
            }
        }
    }

    fn due(&self) -> bool {
        self.since.0 >= self.options.log_ops || self.since.1 >= self.options.log_bytes.max(self.snapshot_bytes)
    }

    /// Writes a snapshot of the replica covering every record applied so far. A failure is
    /// logged and tried again after as much log again (the log still holds everything).
    pub fn compact(&mut self) {
        let Some(covers) = self.applied else { return };
        let started = std::time::Instant::now();
        match write_snapshot(&self.db, &self.replica, covers) {
            Ok(bytes) => {
                tracing::info!(
                    covers,
                    bytes,
                    ops = self.since.0,
                    log_bytes = self.since.1,
                    ms = started.elapsed().as_millis() as u64,
                    "durable store: log compacted into a snapshot"
                );
                self.snapshot_bytes = bytes as u64;
                self.since = (0, 0);
            }
            Err(e) => {
                tracing::warn!(error = %e, "durable store: compaction failed; the log is kept");
                self.since = (0, 0);
            }
        }
    }
}

/// Replaces the snapshot with `store` as of log key `covers` and deletes the log records it
/// covers, in one transaction. Returns the snapshot's size.
pub(super) fn write_snapshot(db: &Database, store: &MemoryStore, covers: u64) -> Result<usize, StoreError> {
    let bytes = postcard::to_allocvec(store).map_err(|e| corrupt(format!("snapshot: {e}")))?;
    let err = io("write a snapshot");
    let tx = db.begin_write().map_err(|e| err(e.into()))?;
    {
        let mut chunks = tx.open_table(SNAPSHOT).map_err(|e| err(e.into()))?;
        chunks.retain(|_, _| false).map_err(|e| err(e.into()))?;
        let mut n = 0u64;
        for chunk in bytes.chunks(CHUNK) {
            chunks.insert(n, chunk).map_err(|e| err(e.into()))?;
            n += 1;
        }
        let mut meta = tx.open_table(META).map_err(|e| err(e.into()))?;
        for (k, v) in [(FORMAT_KEY, FORMAT), (COVERS_KEY, covers), (CHUNKS_KEY, n)] {
            meta.insert(k, v).map_err(|e| err(e.into()))?;
        }
        let mut log = tx.open_table(LOG).map_err(|e| err(e.into()))?;
        log.retain_in(..=covers, |_, _| false).map_err(|e| err(e.into()))?;
    }
    tx.commit().map_err(|e| err(e.into()))?;
    Ok(bytes.len())
}

/// Log records, the ops they hold, and snapshot chunks in the database (tests).
#[cfg(test)]
pub(super) fn rows(db: &Database) -> (u64, u64, u64) {
    let tx = db.begin_read().unwrap();
    let log = tx.open_table(LOG).unwrap();
    let ops = log
        .iter()
        .unwrap()
        .map(|r| postcard::from_bytes::<Vec<Op>>(r.unwrap().1.value()).unwrap().len() as u64)
        .sum();
    let chunks = tx.open_table(SNAPSHOT).unwrap().len().unwrap();
    (log.len().unwrap(), ops, chunks)
}
