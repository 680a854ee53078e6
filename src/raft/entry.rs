//! Log entries and the small values persisted beside them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Identifies a server of the cluster. Zero is never a valid id: it is kept
/// free so that "no server" never collides with a real one.
pub type NodeId = u64;

/// Bytes an entry counts for beyond its payload when batches and messages are
/// sized (term, index and kind as they travel on the wire, rounded up).
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// An application command. The no-op a new leader appends at the start of
    /// its term (Raft §8) is a normal entry with empty data.
    Normal,
    /// A membership change; the data is an encoded
    /// [`ConfChange`](super::ConfChange), see [`ConfChange::decode`](super::ConfChange::decode).
    ConfChange,
}

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: u64,
    /// Position in the log, starting at 1.
    pub index: u64,
    /// Whether the entry is a command or a membership change.
    pub kind: EntryKind,
    /// The payload, opaque to the core.
    pub data: Bytes,
}

impl Entry {
    /// Size this entry counts for against message and batch byte limits.
    pub fn size_bytes(&self) -> u64 {
        ENTRY_OVERHEAD_BYTES + self.data.len() as u64
    }
}

/// The state every server must persist before answering a request that
/// depends on it (Raft Figure 2: currentTerm, votedFor), plus the commit
/// index, which lets a restarted server apply without waiting for a leader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this server has seen.
    pub term: u64,
    /// The candidate that received this server's vote in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest log index known to be committed.
    pub commit: u64,
}

/// The answer to a [`RawNode::read_index`](super::RawNode::read_index)
/// request: a read with this `context` is linearizable once the state machine
/// has applied up to `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    /// Commit index of the leader when the read arrived.
    pub index: u64,
    /// The caller's token, handed back unchanged.
    pub context: u64,
}
