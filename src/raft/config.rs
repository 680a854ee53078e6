//! Configuration of one Raft server and the limits of the core.

use super::entry::NodeId;

/// Default election timeout. Followers wait a random number of ticks in
/// `[election_timeout_ticks, 2 * election_timeout_ticks)` (Raft §5.2).
pub const DEFAULT_ELECTION_TIMEOUT_TICKS: u64 = 10;
/// Default interval between leader heartbeats.
pub const DEFAULT_HEARTBEAT_INTERVAL_TICKS: u64 = 2;
/// Default maximum number of entries in one AppendEntries message.
pub const DEFAULT_MAX_ENTRIES_PER_MESSAGE: u64 = 4096;
/// Default maximum payload bytes in one AppendEntries message.
pub const DEFAULT_MAX_BYTES_PER_MESSAGE: u64 = 1024 * 1024;
/// Default maximum AppendEntries messages in flight to one follower.
pub const DEFAULT_MAX_INFLIGHT_MESSAGES: usize = 64;
/// Default size of one InstallSnapshot chunk.
pub const DEFAULT_SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// Default largest snapshot a follower assembles from chunks.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;
/// Default maximum payload bytes of committed entries handed out in one `Ready`.
pub const DEFAULT_MAX_COMMITTED_BYTES_PER_READY: u64 = 16 * 1024 * 1024;
/// Default maximum entries the leader holds appended but uncommitted.
pub const DEFAULT_MAX_UNCOMMITTED_ENTRIES: u64 = 1 << 20;
/// Default maximum reads waiting for leadership confirmation.
pub const DEFAULT_MAX_PENDING_READS: usize = 4096;

/// Configuration of one server's consensus core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This server's id; never zero.
    pub id: NodeId,
    /// Base election timeout; must exceed the heartbeat interval.
    pub election_timeout_ticks: u64,
    /// Ticks between heartbeats from the leader.
    pub heartbeat_interval_ticks: u64,
    /// Most entries per AppendEntries message.
    pub max_entries_per_message: u64,
    /// Most entry bytes per AppendEntries message (a single larger entry
    /// still travels, alone).
    pub max_bytes_per_message: u64,
    /// Most AppendEntries messages in flight to one follower in the
    /// Replicate state.
    pub max_inflight_messages: usize,
    /// Bytes of snapshot data per InstallSnapshot chunk.
    pub snapshot_chunk_bytes: u64,
    /// Largest snapshot a follower assembles; bigger ones are refused.
    pub max_snapshot_bytes: u64,
    /// Most committed-entry bytes handed out in one `Ready` (at least one entry).
    pub max_committed_bytes_per_ready: u64,
    /// Most entries the leader keeps appended but uncommitted before it
    /// refuses proposals.
    pub max_uncommitted_entries: u64,
    /// Most read requests waiting for a quorum to confirm leadership.
    pub max_pending_reads: usize,
    /// Run a PreVote round before a real election (thesis §9.6).
    pub pre_vote: bool,
    /// A leader steps down when it has not heard from a quorum within an
    /// election timeout, and followers ignore vote requests while they hear
    /// from a leader (thesis §6.2 and §4.2.3).
    pub check_quorum: bool,
    /// Seed of the random election timeouts.
    pub seed: u64,
}

/// Why a [`Config`] is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Node id zero is reserved.
    #[error("node id must not be 0")]
    ZeroNodeId,
    /// Heartbeats must be sent at least every tick count.
    #[error("heartbeat_interval_ticks must be at least 1")]
    ZeroHeartbeatInterval,
    /// Followers would time out between two heartbeats.
    #[error(
        "election_timeout_ticks ({election}) must exceed heartbeat_interval_ticks ({heartbeat})"
    )]
    ElectionTimeoutNotAboveHeartbeat {
        /// The election timeout.
        election: u64,
        /// The heartbeat interval.
        heartbeat: u64,
    },
    /// A limit that must be positive is zero.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
    /// A snapshot chunk would exceed the largest snapshot.
    #[error("snapshot_chunk_bytes must not exceed max_snapshot_bytes")]
    ChunkAboveSnapshotLimit,
}

impl Config {
    /// A configuration for server `id` with every limit at its default,
    /// PreVote and CheckQuorum on, and seed equal to the id.
    pub fn new(id: NodeId) -> Self {
        Config {
            id,
            election_timeout_ticks: DEFAULT_ELECTION_TIMEOUT_TICKS,
            heartbeat_interval_ticks: DEFAULT_HEARTBEAT_INTERVAL_TICKS,
            max_entries_per_message: DEFAULT_MAX_ENTRIES_PER_MESSAGE,
            max_bytes_per_message: DEFAULT_MAX_BYTES_PER_MESSAGE,
            max_inflight_messages: DEFAULT_MAX_INFLIGHT_MESSAGES,
            snapshot_chunk_bytes: DEFAULT_SNAPSHOT_CHUNK_BYTES,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            max_committed_bytes_per_ready: DEFAULT_MAX_COMMITTED_BYTES_PER_READY,
            max_uncommitted_entries: DEFAULT_MAX_UNCOMMITTED_ENTRIES,
            max_pending_reads: DEFAULT_MAX_PENDING_READS,
            pre_vote: true,
            check_quorum: true,
            seed: id,
        }
    }

    /// Checks every field; [`RawNode::new`](super::RawNode::new) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::ZeroHeartbeatInterval);
        }
        if self.election_timeout_ticks <= self.heartbeat_interval_ticks {
            return Err(ConfigError::ElectionTimeoutNotAboveHeartbeat {
                election: self.election_timeout_ticks,
                heartbeat: self.heartbeat_interval_ticks,
            });
        }
        let limits = [
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_messages", self.max_inflight_messages as u64),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            ("max_snapshot_bytes", self.max_snapshot_bytes),
            (
                "max_committed_bytes_per_ready",
                self.max_committed_bytes_per_ready,
            ),
            ("max_uncommitted_entries", self.max_uncommitted_entries),
            ("max_pending_reads", self.max_pending_reads as u64),
        ];
        for (name, value) in limits {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        if self.snapshot_chunk_bytes > self.max_snapshot_bytes {
            return Err(ConfigError::ChunkAboveSnapshotLimit);
        }
        Ok(())
    }
}
