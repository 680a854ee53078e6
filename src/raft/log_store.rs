//! The read-only view of the persisted log that the core consumes.

use super::conf_state::ConfState;
use super::entry::{Entry, HardState};
use super::error::StoreError;
use super::snapshot::Snapshot;

/// Read-only view of what this server has made durable: the log, the latest
/// snapshot and the hard state. The core never writes through it; the caller
/// persists what each [`Ready`](super::Ready) hands out and then reports it
/// with [`RawNode::on_persisted`](super::RawNode::on_persisted).
///
/// Indices: the log holds `[first_index(), last_index()]`; the entry at
/// `first_index() - 1` is the latest snapshot, whose term must still be
/// readable through [`LogStore::term`]. An empty log has
/// `last_index() == first_index() - 1`.
pub trait LogStore {
    /// The persisted hard state and the configuration of the latest snapshot
    /// (configuration changes in the log after it are replayed by the core).
    fn initial_state(&self) -> Result<(HardState, ConfState), StoreError>;

    /// The first index still in the log: the snapshot index plus one.
    fn first_index(&self) -> u64;

    /// The last index in the log, or the snapshot index when the log is empty.
    fn last_index(&self) -> u64;

    /// The term of the entry at `index`, for `first_index() - 1 <= index <= last_index()`.
    /// Older indices return [`StoreError::Compacted`].
    fn term(&self, index: u64) -> Result<u64, StoreError>;

    /// Entries in `[low, high)`, stopping once their total
    /// [`Entry::size_bytes`] would exceed `max_bytes`, but always at least one.
    fn entries(&self, low: u64, high: u64, max_bytes: u64) -> Result<Vec<Entry>, StoreError>;

    /// The latest snapshot, data included, to send to a follower that is too
    /// far behind.
    fn snapshot(&self) -> Result<Snapshot, StoreError>;
}
