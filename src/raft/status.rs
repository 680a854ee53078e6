//! A snapshot of the core's state for metrics, admin tools and tests.

use std::collections::BTreeMap;

use super::conf_state::ConfState;
use super::entry::NodeId;
use super::progress::ProgressState;

/// The role of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader, or waits for one.
    Follower,
    /// Probing with PreVote whether an election could succeed (thesis §9.6).
    PreCandidate,
    /// Campaigning in a new term (Raft §5.2).
    Candidate,
    /// Leads the current term.
    Leader,
}

/// The leader's view of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Highest index known to be replicated (durably) on the member.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// How the leader replicates to the member.
    pub state: ProgressState,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// AppendEntries messages sent and not yet acknowledged.
    pub inflight_messages: usize,
}

/// The state of the core at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This server.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// Its vote in the current term.
    pub vote: Option<NodeId>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Highest committed index.
    pub commit: u64,
    /// Highest index the state machine has applied.
    pub applied: u64,
    /// Highest index known to be durable and part of the current log.
    pub persisted_index: u64,
    /// First index still in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// The configuration in force (that of the last change in the log).
    pub conf_state: ConfState,
    /// The target of a leadership transfer under way.
    pub transfer_target: Option<NodeId>,
    /// Per-member replication progress; empty unless leader.
    pub progress: BTreeMap<NodeId, PeerStatus>,
}
