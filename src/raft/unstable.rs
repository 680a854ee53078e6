//! The part of the log that is not yet durable.

use super::entry::Entry;
use super::snapshot::Snapshot;

/// Entries (and possibly a snapshot) appended in memory and not yet reported
/// durable. Entries below `offset` are in the store. Entries in
/// `[offset, offset_in_progress)` have been handed out in a `Ready` and are
/// being written; the rest have not been handed out yet.
#[derive(Debug)]
pub(crate) struct Unstable {
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) snapshot_in_progress: bool,
    pub(crate) entries: Vec<Entry>,
    pub(crate) offset: u64,
    pub(crate) offset_in_progress: u64,
}

impl Unstable {
    pub(crate) fn new(offset: u64) -> Self {
        Unstable {
            snapshot: None,
            snapshot_in_progress: false,
            entries: Vec::new(),
            offset,
            offset_in_progress: offset,
        }
    }

    /// The last index held here, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        if let Some(last) = self.entries.last() {
            return Some(last.index);
        }
        self.snapshot.as_ref().map(|snapshot| snapshot.meta.index)
    }

    /// The term at `index` if this part of the log holds it.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index >= self.offset {
            return self
                .entries
                .get((index - self.offset) as usize)
                .map(|entry| entry.term);
        }
        match &self.snapshot {
            Some(snapshot) if snapshot.meta.index == index => Some(snapshot.meta.term),
            _ => None,
        }
    }

    /// Appends `entries`, replacing any suffix from `entries[0].index` on.
    pub(crate) fn truncate_and_append(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first() else {
            return;
        };
        let first_index = first.index;
        let end = self.offset + self.entries.len() as u64;
        if first_index == end {
            self.entries.extend(entries);
        } else if first_index <= self.offset {
            // Everything unstable is replaced, and so are the durable entries
            // from `first_index` on: the stable prefix now ends before it.
            self.offset = first_index;
            self.entries = entries;
        } else {
            self.entries.truncate((first_index - self.offset) as usize);
            self.entries.extend(entries);
        }
        self.offset_in_progress = self.offset_in_progress.min(first_index);
    }

    /// The entries not yet handed out for persistence.
    pub(crate) fn entries_to_persist(&self) -> &[Entry] {
        &self.entries[(self.offset_in_progress - self.offset) as usize..]
    }

    /// Marks everything returned by `entries_to_persist` (and the snapshot) as
    /// handed out.
    pub(crate) fn accept_in_progress(&mut self) {
        self.offset_in_progress = self.offset + self.entries.len() as u64;
        if self.snapshot.is_some() {
            self.snapshot_in_progress = true;
        }
    }

    /// Entries up to `index` of term `term` are durable. Ignored when the
    /// entry has been replaced since (a newer Ready carries its replacement).
    pub(crate) fn stable_to(&mut self, index: u64, term: u64) {
        if index < self.offset || self.term(index) != Some(term) {
            return;
        }
        let count = (index + 1 - self.offset) as usize;
        self.entries.drain(..count);
        self.offset = index + 1;
        self.offset_in_progress = self.offset_in_progress.max(self.offset);
    }

    /// The snapshot at `index` is durable.
    pub(crate) fn stable_snapshot_to(&mut self, index: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.meta.index == index)
        {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    /// Replaces everything with a snapshot from the leader.
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.meta.index + 1;
        self.offset_in_progress = self.offset;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }
}
