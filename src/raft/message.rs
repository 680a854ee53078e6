//! Messages between servers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::entry::{Entry, NodeId};
use super::snapshot::SnapshotMeta;

/// One message between two servers. The node layer serializes it as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term; for a PreVote request, the term the sender would
    /// campaign in (thesis §9.6).
    pub term: u64,
    /// What the message says.
    pub body: MessageBody,
}

/// The outcome of an AppendEntries or InstallSnapshot request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to `match_index`, durably.
    Accepted {
        /// The highest index known to match.
        match_index: u64,
    },
    /// The follower has no entry at `rejected_index` with the term the leader
    /// sent. The hint lets the leader skip a whole term of entries at once: the
    /// follower's last entry at or before `rejected_index` whose term is at
    /// most the leader's previous term (Raft §5.3, "fast backtracking").
    Rejected {
        /// The previous index the leader sent.
        rejected_index: u64,
        /// Index of the follower's hint entry.
        hint_index: u64,
        /// Term of the follower's hint entry; 0 if unknown (compacted).
        hint_term: u64,
    },
}

/// The content of a [`Message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// RequestVote (Raft §5.2) or, with `pre_vote`, a PreVote probe (thesis §9.6).
    RequestVote {
        /// A PreVote round: no term changes, no vote is recorded.
        pre_vote: bool,
        /// Index of the candidate's last entry.
        last_log_index: u64,
        /// Term of the candidate's last entry.
        last_log_term: u64,
        /// Sent after TimeoutNow: receivers that still hear from the leader
        /// vote anyway (thesis §3.10).
        leadership_transfer: bool,
    },
    /// The answer to [`MessageBody::RequestVote`].
    RequestVoteResponse {
        /// Answers a PreVote probe.
        pre_vote: bool,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// AppendEntries (Raft §5.3); empty `entries` carry only the commit index.
    AppendEntries {
        /// Index of the entry just before `entries`.
        prev_log_index: u64,
        /// Term of that entry.
        prev_log_term: u64,
        /// New entries, possibly none.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: u64,
    },
    /// The answer to [`MessageBody::AppendEntries`] and to the last chunk of
    /// [`MessageBody::InstallSnapshot`].
    AppendResponse {
        /// Match or rejection with a backtracking hint.
        result: AppendResult,
    },
    /// A heartbeat: keeps followers from starting elections and confirms
    /// leadership for reads.
    Heartbeat {
        /// The leader's commit index, capped at what this follower matches.
        commit: u64,
        /// The newest read request the leader had registered when it sent this.
        read_sequence: u64,
    },
    /// The answer to a heartbeat.
    HeartbeatResponse {
        /// Echoes the heartbeat's `read_sequence`.
        read_sequence: u64,
    },
    /// One chunk of a snapshot (Raft §7).
    InstallSnapshot {
        /// Which snapshot this chunk belongs to.
        meta: SnapshotMeta,
        /// Byte offset of `data` in the snapshot data.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// This is the last chunk.
        done: bool,
    },
    /// Acknowledges a snapshot chunk that was not the last one.
    SnapshotChunkResponse {
        /// The snapshot's index.
        snapshot_index: u64,
        /// The offset of the next chunk the follower expects.
        next_offset: u64,
    },
    /// Tells the target of a leadership transfer to start an election now.
    TimeoutNow,
    /// A follower or learner asks the leader for a read index on behalf of
    /// its own clients (thesis §6.4.1).
    ReadIndex {
        /// The asking node's read context, echoed in the answer.
        context: u64,
    },
    /// The leader's answer to [`MessageBody::ReadIndex`]: the commit index
    /// it confirmed with a quorum after the request arrived.
    ReadIndexResponse {
        /// The asking node's read context.
        context: u64,
        /// The read is linearizable once the asking node has applied this.
        index: u64,
    },
}

impl MessageBody {
    /// Whether only a leader of the message's term sends this.
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::TimeoutNow
        )
    }

    /// A short name for traces and diagnostics.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote { pre_vote: true, .. } => "PreVote",
            MessageBody::RequestVote { .. } => "RequestVote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "PreVoteResponse",
            MessageBody::RequestVoteResponse { .. } => "RequestVoteResponse",
            MessageBody::AppendEntries { .. } => "AppendEntries",
            MessageBody::AppendResponse { .. } => "AppendResponse",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResponse",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::SnapshotChunkResponse { .. } => "SnapshotChunkResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResponse",
        }
    }
}
