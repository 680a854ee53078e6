//! An in-memory [`LogStore`] for tests, simulations and benchmarks.

use std::sync::{Arc, Mutex, MutexGuard};

use super::conf_state::ConfState;
use super::entry::{Entry, HardState, NodeId};
use super::error::StoreError;
use super::log_store::LogStore;
use super::snapshot::{Snapshot, SnapshotMeta};

/// An in-memory log store. Clones share the same contents, so a harness can
/// keep one clone to write what each `Ready` asks it to persist while the
/// core reads through another.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<MemStoreState>>,
}

#[derive(Debug)]
struct MemStoreState {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Index of `entries[0]`, or of the next entry when `entries` is empty.
    /// Entries up to the snapshot stay until [`MemStore::compact`] drops them.
    offset: u64,
    entries: Vec<Entry>,
}

impl Default for MemStoreState {
    fn default() -> Self {
        MemStoreState {
            hard_state: HardState::default(),
            snapshot: Snapshot::default(),
            offset: 1,
            entries: Vec::new(),
        }
    }
}

impl MemStoreState {
    fn first_index(&self) -> u64 {
        self.snapshot.meta.index + 1
    }

    fn last_index(&self) -> u64 {
        (self.offset + self.entries.len() as u64 - 1).max(self.snapshot.meta.index)
    }
}

impl MemStore {
    /// An empty store, as a server that joins an existing cluster starts.
    pub fn new() -> Self {
        MemStore::default()
    }

    /// A store that starts from the bootstrap snapshot of a new cluster whose
    /// founding voters are `voters` (see [`Snapshot::bootstrap`]).
    pub fn new_bootstrapped(voters: impl IntoIterator<Item = NodeId>) -> Self {
        let store = MemStore::new();
        let snapshot = Snapshot::bootstrap(voters);
        {
            let mut state = store.lock();
            state.hard_state.term = snapshot.meta.term;
            state.hard_state.commit = snapshot.meta.index;
            state.offset = snapshot.meta.index + 1;
            state.snapshot = snapshot;
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, MemStoreState> {
        // A panic while holding the lock leaves the store consistent enough
        // for the tests that would observe it, so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `entries`, first removing any existing suffix starting at
    /// `entries[0].index`. The first entry must directly follow an existing
    /// entry or the snapshot.
    pub fn append(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let mut state = self.lock();
        assert!(
            first.index > state.snapshot.meta.index,
            "entry {} overwrites the snapshot at {}",
            first.index,
            state.snapshot.meta.index
        );
        assert!(
            first.index <= state.last_index() + 1,
            "entry {} leaves a gap after {}",
            first.index,
            state.last_index()
        );
        let keep = (first.index - state.offset) as usize;
        state.entries.truncate(keep);
        state.entries.extend_from_slice(entries);
    }

    /// Replaces the hard state.
    pub fn set_hard_state(&self, hard_state: HardState) {
        self.lock().hard_state = hard_state;
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.lock().hard_state
    }

    /// Installs a snapshot received from the leader: the whole log is replaced
    /// by it.
    pub fn apply_snapshot(&self, snapshot: Snapshot) {
        let mut state = self.lock();
        assert!(
            snapshot.meta.index >= state.snapshot.meta.index,
            "snapshot at {} is older than the one at {}",
            snapshot.meta.index,
            state.snapshot.meta.index
        );
        if state.hard_state.commit < snapshot.meta.index {
            state.hard_state.commit = snapshot.meta.index;
        }
        state.entries.clear();
        state.offset = snapshot.meta.index + 1;
        state.snapshot = snapshot;
    }

    /// Records a snapshot the application took at `index` (an index in the
    /// log) without compacting; [`MemStore::compact`] drops the entries.
    pub fn create_snapshot(
        &self,
        meta: SnapshotMeta,
        data: bytes::Bytes,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if meta.index <= state.snapshot.meta.index {
            return Err(StoreError::Compacted);
        }
        if meta.index > state.last_index() {
            return Err(StoreError::Unavailable);
        }
        state.snapshot = Snapshot { meta, data };
        Ok(())
    }

    /// Drops every entry up to and including `index`, which must not be past
    /// the snapshot.
    pub fn compact(&self, index: u64) {
        let mut state = self.lock();
        assert!(
            index <= state.snapshot.meta.index,
            "compacting to {} past the snapshot at {}",
            index,
            state.snapshot.meta.index
        );
        let drop = (index + 1)
            .saturating_sub(state.offset)
            .min(state.entries.len() as u64);
        state.entries.drain(..drop as usize);
        state.offset += drop;
    }

    /// The metadata of the latest snapshot.
    pub fn snapshot_meta(&self) -> SnapshotMeta {
        self.lock().snapshot.meta.clone()
    }

    /// Every entry in the log after the snapshot, for checks in tests.
    pub fn all_entries(&self) -> Vec<Entry> {
        let state = self.lock();
        let skip = (state.first_index() - state.offset) as usize;
        state.entries[skip.min(state.entries.len())..].to_vec()
    }
}

impl LogStore for MemStore {
    fn initial_state(&self) -> Result<(HardState, ConfState), StoreError> {
        let state = self.lock();
        Ok((state.hard_state, state.snapshot.meta.conf_state.clone()))
    }

    fn first_index(&self) -> u64 {
        self.lock().first_index()
    }

    fn last_index(&self) -> u64 {
        self.lock().last_index()
    }

    fn term(&self, index: u64) -> Result<u64, StoreError> {
        let state = self.lock();
        let snapshot_index = state.snapshot.meta.index;
        if index < snapshot_index {
            return Err(StoreError::Compacted);
        }
        if index == snapshot_index {
            return Ok(state.snapshot.meta.term);
        }
        if index > state.last_index() {
            return Err(StoreError::Unavailable);
        }
        Ok(state.entries[(index - state.offset) as usize].term)
    }

    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StoreError> {
        let state = self.lock();
        if low < state.first_index() {
            return Err(StoreError::Compacted);
        }
        if high > state.last_index() + 1 || low > high {
            return Err(StoreError::Unavailable);
        }
        let offset = state.offset;
        let slice = &state.entries[(low - offset) as usize..(high - offset) as usize];
        let mut total_bytes = 0u64;
        let mut count = 0usize;
        for entry in slice {
            total_bytes += entry.size_bytes();
            if count > 0 && total_bytes > max_bytes {
                break;
            }
            count += 1;
        }
        Ok(slice[..count].to_vec())
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Ok(self.lock().snapshot.clone())
    }
}
