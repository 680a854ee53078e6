//! The configurations introduced by the log, so that truncation can roll
//! them back and snapshots can record the configuration at their index.

use super::conf_change::ConfChange;
use super::conf_state::ConfState;
use super::entry::{Entry, EntryKind};

/// The configuration at the snapshot (`base`) and one configuration per
/// `ConfChange` entry after it, in log order. The newest one is in force
/// (thesis §4.1: a server uses the latest configuration in its log, whether
/// or not it is committed).
#[derive(Debug, Clone)]
pub(crate) struct ConfHistory {
    base_index: u64,
    base: ConfState,
    changes: Vec<(u64, ConfState)>,
}

impl ConfHistory {
    pub(crate) fn new(base_index: u64, base: ConfState) -> Self {
        ConfHistory {
            base_index,
            base,
            changes: Vec::new(),
        }
    }

    /// The configuration in force.
    pub(crate) fn current(&self) -> &ConfState {
        self.changes.last().map_or(&self.base, |(_, conf)| conf)
    }

    /// Index of the entry that introduced the configuration in force.
    pub(crate) fn current_index(&self) -> u64 {
        self.changes
            .last()
            .map_or(self.base_index, |(index, _)| *index)
    }

    /// The configuration in force once the log ends at `index`.
    pub(crate) fn at(&self, index: u64) -> &ConfState {
        self.changes
            .iter()
            .rev()
            .find(|(change_index, _)| *change_index <= index)
            .map_or(&self.base, |(_, conf)| conf)
    }

    /// Records the configuration that `entry` (a ConfChange entry) introduces.
    /// A change that does not apply leaves the configuration as it was, the
    /// same way on every server, so logs replay identically.
    pub(crate) fn record(&mut self, entry: &Entry) {
        debug_assert_eq!(entry.kind, EntryKind::ConfChange);
        debug_assert!(entry.index > self.current_index());
        let next = ConfChange::decode(&entry.data)
            .and_then(|change| self.current().apply(&change))
            .unwrap_or_else(|_| self.current().clone());
        self.changes.push((entry.index, next));
    }

    /// Records every ConfChange entry among `entries`; true if any was found.
    pub(crate) fn record_all(&mut self, entries: &[Entry]) -> bool {
        let mut changed = false;
        for entry in entries {
            if entry.kind == EntryKind::ConfChange {
                self.record(entry);
                changed = true;
            }
        }
        changed
    }

    /// Forgets configurations introduced at or after `index` (the log was
    /// truncated there). True if the configuration in force changed.
    pub(crate) fn truncate_from(&mut self, index: u64) -> bool {
        let before = self.changes.len();
        self.changes
            .retain(|(change_index, _)| *change_index < index);
        self.changes.len() != before
    }

    /// The log up to `index` was compacted into a snapshot.
    pub(crate) fn compact_to(&mut self, index: u64) {
        let folded = self
            .changes
            .iter()
            .take_while(|(change_index, _)| *change_index <= index)
            .count();
        if folded > 0 {
            let (_, conf) = self.changes[folded - 1].clone();
            self.base = conf;
            self.changes.drain(..folded);
        }
        self.base_index = self.base_index.max(index);
    }

    /// The log was replaced by a snapshot at `index`.
    pub(crate) fn reset(&mut self, index: u64, conf: ConfState) {
        self.base_index = index;
        self.base = conf;
        self.changes.clear();
    }
}
