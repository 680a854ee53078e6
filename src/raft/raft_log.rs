//! The log as the core sees it: durable entries in the store plus the
//! unstable tail.

use super::entry::Entry;
use super::error::StoreError;
use super::log_store::LogStore;
use super::snapshot::Snapshot;
use super::unstable::Unstable;

/// The log of one server. Indices below `first_index()` are compacted into a
/// snapshot.
pub(crate) struct RaftLog<S: LogStore> {
    pub(crate) store: S,
    pub(crate) unstable: Unstable,
    /// Highest index known to be committed.
    pub(crate) committed: u64,
    /// Highest index handed out to be applied.
    pub(crate) applying: u64,
    /// Highest index the state machine reported applied.
    pub(crate) applied: u64,
}

impl<S: LogStore> RaftLog<S> {
    pub(crate) fn new(store: S, committed: u64) -> Self {
        let snapshot_index = store.first_index() - 1;
        let offset = store.last_index() + 1;
        let committed = committed.max(snapshot_index);
        assert!(
            committed < offset,
            "commit index {committed} is past the last log index {}",
            offset - 1
        );
        RaftLog {
            store,
            unstable: Unstable::new(offset),
            committed,
            applying: snapshot_index,
            applied: snapshot_index,
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        match &self.unstable.snapshot {
            Some(snapshot) => snapshot.meta.index + 1,
            None => self.store.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.unstable
            .last_index()
            .unwrap_or_else(|| self.store.last_index())
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("the term of the last entry is always known")
    }

    /// The highest index that is durable and part of the current log.
    pub(crate) fn persisted_index(&self) -> u64 {
        if self.unstable.snapshot.is_some() {
            return 0;
        }
        self.unstable.offset - 1
    }

    pub(crate) fn term(&self, index: u64) -> Result<u64, StoreError> {
        if let Some(term) = self.unstable.term(index) {
            return Ok(term);
        }
        if index + 1 < self.first_index() {
            return Err(StoreError::Compacted);
        }
        if index > self.last_index() {
            return Err(StoreError::Unavailable);
        }
        self.store.term(index)
    }

    /// Whether the log has an entry at `index` with `term`.
    pub(crate) fn matches_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|found| found == term)
    }

    /// Raft §5.4.1: a log is at least as up to date as ours if its last term
    /// is higher, or equal with an index at least as high.
    pub(crate) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let our_term = self.last_term();
        last_term > our_term || (last_term == our_term && last_index >= self.last_index())
    }

    /// The first index at which `entries` differ from the log (by term), or
    /// None if the log already holds all of them.
    pub(crate) fn find_conflict(&self, entries: &[Entry]) -> Option<u64> {
        entries
            .iter()
            .find(|entry| !self.matches_term(entry.index, entry.term))
            .map(|entry| entry.index)
    }

    /// The last index at or before `index` whose term is at most `term`, with
    /// its term (0 when that part of the log is compacted).
    pub(crate) fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        let mut candidate = index.min(self.last_index());
        loop {
            match self.term(candidate) {
                Ok(found) if found > term && candidate > 0 => candidate -= 1,
                Ok(found) => return (candidate, found),
                Err(_) => return (candidate, 0),
            }
        }
    }

    /// Appends entries, replacing any conflicting suffix. Returns the new last index.
    pub(crate) fn append(&mut self, entries: Vec<Entry>) -> u64 {
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.committed,
                "entry {} would overwrite the committed prefix ending at {}",
                first.index,
                self.committed
            );
            assert!(
                first.index <= self.last_index() + 1,
                "entry {} leaves a gap after {}",
                first.index,
                self.last_index()
            );
            self.unstable.truncate_and_append(entries);
        }
        self.last_index()
    }

    /// Appends one new entry at the end of the leader's log.
    pub(crate) fn append_leader_entry(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index() + 1,
            "leader entries extend the log"
        );
        assert_eq!(
            entry.index,
            self.unstable.offset + self.unstable.entries.len() as u64,
            "the unstable tail ends at the last index"
        );
        self.unstable.entries.push(entry);
    }

    pub(crate) fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit index {index} is past the last log index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Entries in `[low, high)` bounded by `max_bytes` (at least one), read
    /// from the store and the unstable tail.
    pub(crate) fn entries(
        &self,
        low: u64,
        high: u64,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        if low >= high {
            return Ok(Vec::new());
        }
        if low < self.first_index() {
            return Err(StoreError::Compacted);
        }
        assert!(high <= self.last_index() + 1, "reading past the log");
        let offset = self.unstable.offset;
        let mut result = if low < offset {
            self.store.entries(low, high.min(offset), max_bytes)?
        } else {
            Vec::new()
        };
        let mut total_bytes: u64 = result.iter().map(Entry::size_bytes).sum();
        let stored_end = low + result.len() as u64;
        if high > offset && stored_end >= offset.max(low) && stored_end < high {
            let start = (stored_end.max(offset) - offset) as usize;
            let end = (high - offset) as usize;
            for entry in &self.unstable.entries[start..end] {
                total_bytes += entry.size_bytes();
                if !result.is_empty() && total_bytes > max_bytes {
                    break;
                }
                result.push(entry.clone());
            }
        }
        Ok(result)
    }

    /// The highest index that may be applied: committed and durable.
    pub(crate) fn applicable_index(&self) -> u64 {
        self.committed.min(self.persisted_index())
    }

    pub(crate) fn has_entries_to_apply(&self) -> bool {
        self.applicable_index() > self.applying
    }

    /// The next committed entries to apply, bounded by `max_bytes`.
    pub(crate) fn entries_to_apply(&self, max_bytes: u64) -> Result<Vec<Entry>, StoreError> {
        if !self.has_entries_to_apply() {
            return Ok(Vec::new());
        }
        self.entries(self.applying + 1, self.applicable_index() + 1, max_bytes)
    }

    /// Replaces the log with a snapshot from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(
            index > self.committed,
            "restoring an old snapshot at {index}"
        );
        self.committed = index;
        self.applying = index;
        self.unstable.restore(snapshot);
    }
}
