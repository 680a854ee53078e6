//! The log-store adapter: the only bridge between the consensus core and the
//! storage crate.
//!
//! The Raft log lives in the write-ahead log with Raft index = WAL index; each
//! record is
//!
//! ```text
//! { term: u64 LE | kind: u8 (1 = normal, 2 = configuration change) | data }
//! ```
//!
//! The hard state is the WAL's hard-state blob (postcard of
//! [`raft::HardState`]). Snapshots live in the snapshot store: the metadata
//! is postcard of [`raft::SnapshotMeta`], the data is a [`SnapshotEnvelope`]
//! holding the state-machine image and the peer address book, so a node that
//! installs a snapshot also learns where its peers are.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use raftq_storage::{SnapshotStore, Vfs, Wal, WalConfig};
use serde::{Deserialize, Serialize};

use crate::raft::{
    self, ConfState, Entry, EntryKind, HardState, LogStore, SnapshotMeta, StoreError,
};

/// No log reaches this index (2^62 entries); a snapshot that claims one is
/// damaged, and arithmetic on indexes stays far from overflow below it.
const LOG_INDEX_CEILING: u64 = 1 << 62;
/// Bytes of the record header in front of an entry's data.
pub const ENTRY_RECORD_HEADER_BYTES: usize = 9;

const KIND_NORMAL: u8 = 1;
const KIND_CONF_CHANGE: u8 = 2;

/// The node's snapshot data: the state machine and the address book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotEnvelope {
    /// Peer address of every member known when the snapshot was taken.
    pub addresses: BTreeMap<u64, String>,
    /// The state machine's snapshot; empty means the empty state.
    pub state: Bytes,
}

impl SnapshotEnvelope {
    /// Encodes the envelope.
    pub fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).expect("envelope encodes"))
    }

    /// Decodes an envelope; empty data (a bootstrap snapshot made by the core
    /// itself) is the empty state with no addresses.
    pub fn decode(data: &[u8]) -> Result<SnapshotEnvelope, String> {
        if data.is_empty() {
            return Ok(SnapshotEnvelope::default());
        }
        postcard::from_bytes(data).map_err(|error| format!("malformed snapshot envelope: {error}"))
    }
}

/// Why the node's storage failed. Every variant is fatal for the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeStorageError {
    /// The write-ahead log or snapshot store failed.
    #[error(transparent)]
    Storage(#[from] raftq_storage::Error),
    /// Stored data does not decode, or the pieces do not fit together.
    #[error("inconsistent node storage: {0}")]
    Inconsistent(String),
}

fn encode_entry(entry: &Entry, out: &mut BytesMut) {
    // { term | kind | data }
    out.put_u64_le(entry.term);
    out.put_u8(match entry.kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::ConfChange => KIND_CONF_CHANGE,
    });
    out.put_slice(&entry.data);
}

fn decode_entry(index: u64, record: Bytes) -> Result<Entry, StoreError> {
    if record.len() < ENTRY_RECORD_HEADER_BYTES {
        return Err(StoreError::Io(format!(
            "log record {index} is shorter than its header"
        )));
    }
    let term = u64::from_le_bytes(record[..8].try_into().expect("eight bytes"));
    let kind = match record[8] {
        KIND_NORMAL => EntryKind::Normal,
        KIND_CONF_CHANGE => EntryKind::ConfChange,
        other => {
            return Err(StoreError::Io(format!(
                "log record {index} has unknown kind {other}"
            )));
        }
    };
    Ok(Entry {
        term,
        index,
        kind,
        data: record.slice(ENTRY_RECORD_HEADER_BYTES..),
    })
}

fn storage_error(error: raftq_storage::Error) -> StoreError {
    StoreError::Io(error.to_string())
}

/// The node's durable state: log, hard state and snapshots.
pub struct NodeStorage {
    wal: Arc<Wal>,
    /// Bytes of entry records written since the node started, for metrics.
    appended_bytes: Arc<AtomicU64>,
    snapshots: SnapshotStore,
    latest: Arc<RwLock<raft::Snapshot>>,
}

/// What a node finds on disk when it starts.
#[derive(Debug)]
pub struct Recovered {
    /// The latest snapshot (the bootstrap snapshot on a new founding member,
    /// an empty one on a joining node).
    pub snapshot: raft::Snapshot,
    /// The snapshot's envelope.
    pub envelope: SnapshotEnvelope,
    /// Whether the data directory was created just now.
    pub fresh: bool,
}

impl NodeStorage {
    /// Opens (recovering) or creates the node's storage in `data_dir`.
    ///
    /// On a new directory, `founders` decides how the node starts: `Some`
    /// bootstraps a founding member with those voters and addresses; `None`
    /// starts empty and waits for a leader to send a snapshot.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        data_dir: &Path,
        wal_config: WalConfig,
        founders: Option<&BTreeMap<u64, String>>,
    ) -> Result<(NodeStorage, Recovered), NodeStorageError> {
        vfs.create_dir_all(data_dir)
            .map_err(|source| raftq_storage::Error::Io {
                operation: "create data directory",
                path: data_dir.to_path_buf(),
                source,
            })?;
        let wal = Arc::new(Wal::open(
            Arc::clone(&vfs),
            data_dir.join("wal"),
            wal_config,
        )?);
        let snapshots = SnapshotStore::open(vfs, data_dir.join("snapshots"))?;
        let stored = snapshots.load_latest()?;
        let fresh =
            stored.is_none() && wal.last_index() < wal.first_index() && wal.hard_state().is_empty();
        let snapshot = match stored {
            Some(stored) => raft::Snapshot {
                meta: postcard::from_bytes(&stored.meta).map_err(|error| {
                    NodeStorageError::Inconsistent(format!(
                        "snapshot metadata does not decode: {error}"
                    ))
                })?,
                data: stored.data,
            },
            None => match (fresh, founders) {
                (true, Some(founders)) => {
                    let mut snapshot = raft::Snapshot::bootstrap(founders.keys().copied());
                    let envelope = SnapshotEnvelope {
                        addresses: founders.clone(),
                        state: Bytes::new(),
                    };
                    snapshot.data = envelope.encode();
                    save_snapshot(&snapshots, &snapshot)?;
                    snapshot
                }
                _ => raft::Snapshot::default(),
            },
        };
        let envelope =
            SnapshotEnvelope::decode(&snapshot.data).map_err(NodeStorageError::Inconsistent)?;
        // The log must continue right after the snapshot or overlap it. A
        // log that ends before the snapshot (a crash between installing a
        // snapshot and resetting the log) is replaced by an empty log after it.
        if snapshot.meta.index >= LOG_INDEX_CEILING {
            return Err(NodeStorageError::Inconsistent(format!(
                "the snapshot claims index {}, beyond any index a log reaches",
                snapshot.meta.index
            )));
        }
        let next_index = snapshot.meta.index + 1;
        if wal.last_index() < snapshot.meta.index || wal.first_index() > next_index {
            if wal.first_index() > next_index && wal.last_index() >= wal.first_index() {
                return Err(NodeStorageError::Inconsistent(format!(
                    "the log starts at index {} but the snapshot ends at {}: entries in between are missing",
                    wal.first_index(),
                    snapshot.meta.index
                )));
            }
            wal.reset_to(next_index)?;
        }
        let storage = NodeStorage {
            wal,
            appended_bytes: Arc::new(AtomicU64::new(0)),
            snapshots,
            latest: Arc::new(RwLock::new(snapshot.clone())),
        };
        Ok((
            storage,
            Recovered {
                snapshot,
                envelope,
                fresh,
            },
        ))
    }

    /// The write-ahead log, for syncing from the persister.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// A counter of the bytes written into the log, for metrics.
    pub fn appended_bytes(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.appended_bytes)
    }

    /// A read-only view for the consensus core.
    pub fn log_store(&self) -> WalLogStore {
        WalLogStore {
            wal: Arc::clone(&self.wal),
            latest: Arc::clone(&self.latest),
        }
    }

    /// Appends entries, first removing any suffix they overwrite. The
    /// entries are readable at once and durable after the next sync.
    pub fn append_entries(
        &self,
        entries: &[Entry],
        scratch: &mut BytesMut,
    ) -> Result<(), NodeStorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.wal.last_index() {
            self.wal.truncate_suffix(first.index)?;
        }
        assert_eq!(
            first.index,
            self.wal.last_index() + 1,
            "entries must continue the log without a gap"
        );
        scratch.clear();
        let mut ends = Vec::with_capacity(entries.len());
        for entry in entries {
            encode_entry(entry, scratch);
            ends.push(scratch.len());
        }
        let mut records: Vec<&[u8]> = Vec::with_capacity(entries.len());
        let mut start = 0;
        for end in ends {
            records.push(&scratch[start..end]);
            start = end;
        }
        let range = self.wal.append(&records)?;
        self.appended_bytes
            .fetch_add(scratch.len() as u64, Ordering::Relaxed);
        assert_eq!(
            range.start, first.index,
            "the log assigned the expected indexes"
        );
        Ok(())
    }

    /// Records the hard state; durable after the next sync.
    pub fn set_hard_state(&self, hard_state: &HardState) -> Result<(), NodeStorageError> {
        let bytes = postcard::to_allocvec(hard_state).expect("hard state encodes");
        self.wal.set_hard_state(&bytes)?;
        Ok(())
    }

    /// Makes a snapshot received from the leader durable and replaces the
    /// log with an empty one after it.
    pub fn install_snapshot(&self, snapshot: &raft::Snapshot) -> Result<(), NodeStorageError> {
        save_snapshot(&self.snapshots, snapshot)?;
        *self.latest.write().expect("snapshot lock") = snapshot.clone();
        self.wal.reset_to(snapshot.meta.index + 1)?;
        Ok(())
    }

    /// Makes a snapshot taken locally durable, without yet showing it to
    /// the core: the driver does that with
    /// [`NodeStorage::set_latest_snapshot`] when it also tells the core, so
    /// the core's view of the log never changes under it.
    pub fn write_snapshot_file(&self, snapshot: &raft::Snapshot) -> Result<(), NodeStorageError> {
        save_snapshot(&self.snapshots, snapshot)
    }

    /// Shows a durable local snapshot to the core's log view.
    pub fn set_latest_snapshot(&self, snapshot: raft::Snapshot) {
        *self.latest.write().expect("snapshot lock") = snapshot;
    }

    /// Removes whole log segments below `up_to`.
    pub fn compact(&self, up_to: u64) -> Result<usize, NodeStorageError> {
        Ok(self.wal.compact_prefix(up_to)?)
    }

    /// Index of the latest durable snapshot.
    pub fn snapshot_index(&self) -> u64 {
        self.latest.read().expect("snapshot lock").meta.index
    }
}

fn save_snapshot(store: &SnapshotStore, snapshot: &raft::Snapshot) -> Result<(), NodeStorageError> {
    let meta = postcard::to_allocvec(&snapshot.meta).expect("snapshot metadata encodes");
    store.save(&meta, &snapshot.data)?;
    Ok(())
}

/// The consensus core's read-only view of the node's storage.
pub struct WalLogStore {
    wal: Arc<Wal>,
    latest: Arc<RwLock<raft::Snapshot>>,
}

impl WalLogStore {
    fn snapshot_meta(&self) -> SnapshotMeta {
        self.latest.read().expect("snapshot lock").meta.clone()
    }
}

impl LogStore for WalLogStore {
    fn initial_state(&self) -> Result<(HardState, ConfState), StoreError> {
        let bytes = self.wal.hard_state();
        let hard_state = if bytes.is_empty() {
            HardState::default()
        } else {
            postcard::from_bytes(&bytes)
                .map_err(|error| StoreError::Io(format!("hard state does not decode: {error}")))?
        };
        Ok((hard_state, self.snapshot_meta().conf_state))
    }

    fn first_index(&self) -> u64 {
        self.latest.read().expect("snapshot lock").meta.index + 1
    }

    fn last_index(&self) -> u64 {
        let snapshot_index = self.latest.read().expect("snapshot lock").meta.index;
        self.wal.last_index().max(snapshot_index)
    }

    fn term(&self, index: u64) -> Result<u64, StoreError> {
        let meta = self.snapshot_meta();
        if index == meta.index {
            return Ok(meta.term);
        }
        if index < meta.index {
            return Err(StoreError::Compacted);
        }
        if index > self.wal.last_index() {
            return Err(StoreError::Unavailable);
        }
        self.wal
            .with_entry(index, |record| {
                record
                    .get(..8)
                    .map(|term| u64::from_le_bytes(term.try_into().expect("eight bytes")))
            })
            .map_err(storage_error)?
            .ok_or_else(|| StoreError::Io(format!("log record {index} is shorter than its header")))
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StoreError> {
        if low < self.first_index() {
            return Err(StoreError::Compacted);
        }
        if high > self.wal.last_index() + 1 {
            return Err(StoreError::Unavailable);
        }
        let records = self
            .wal
            .read_range(low..high, max_bytes as usize)
            .map_err(storage_error)?;
        let mut entries = Vec::with_capacity(records.len());
        let mut total_bytes = 0;
        for (record, index) in records.into_iter().zip(low..) {
            let entry = decode_entry(index, record)?;
            total_bytes += entry.size_bytes();
            if total_bytes > max_bytes && !entries.is_empty() {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn snapshot(&self) -> Result<raft::Snapshot, StoreError> {
        Ok(self.latest.read().expect("snapshot lock").clone())
    }
}
