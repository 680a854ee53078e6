//! Snapshots: the state machine at one log index, with the membership then.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::conf_state::ConfState;
use super::entry::NodeId;

/// Index of the snapshot every founding member of a cluster starts from.
/// Index 0 stays the empty log that every server agrees on, so a joining
/// server with an empty log can be told apart and sent a snapshot.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// Term of the bootstrap snapshot; the first election runs in term 2.
pub const BOOTSTRAP_TERM: u64 = 1;

/// Where a snapshot sits in the log and the membership at that point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last log index the snapshot covers.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The configuration in force at `index`.
    pub conf_state: ConfState,
}

/// A snapshot of the state machine; `data` is opaque to the core.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// The serialized state machine.
    pub data: Bytes,
}

impl Snapshot {
    /// The snapshot a founding member starts from: the empty state machine at
    /// [`BOOTSTRAP_INDEX`], with `voters` as the configuration.
    pub fn bootstrap(voters: impl IntoIterator<Item = NodeId>) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta {
                index: BOOTSTRAP_INDEX,
                term: BOOTSTRAP_TERM,
                conf_state: ConfState::with_voters(voters),
            },
            data: Bytes::new(),
        }
    }
}
