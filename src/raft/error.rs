//! The errors of the consensus core.

use super::conf_change::ConfChangeError;
use super::config::ConfigError;
use super::entry::NodeId;

/// Errors a [`LogStore`](super::LogStore) reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The requested index lies before the first index kept in the log.
    #[error("requested log index is compacted")]
    Compacted,
    /// The requested entries or snapshot cannot be read right now; the core
    /// retries later (a snapshot still being written, for instance).
    #[error("requested log data is temporarily unavailable")]
    Unavailable,
    /// The storage failed. Fatal: the node must stop rather than retry.
    #[error("log storage failed: {0}")]
    Io(String),
}

/// Errors of the consensus core. [`Error::Store`] with [`StoreError::Io`] is
/// fatal; everything else is an answer to the caller's request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Only the leader accepts this request; `leader_hint` is the leader this
    /// server last heard from in its current term.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader as far as this server knows.
        leader_hint: Option<NodeId>,
    },
    /// The proposal was not appended: a leadership transfer is under way, the
    /// uncommitted tail is full, or the leader is being removed.
    #[error("proposal dropped")]
    ProposalDropped,
    /// A membership change is still uncommitted; only one may be in flight.
    #[error("another membership change is not yet committed")]
    ConfChangeInProgress,
    /// The leader has not yet committed an entry of its own term, so it may
    /// not start a membership change (thesis §4.1, the single-server fix).
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// A leadership transfer to another server is under way.
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    /// The membership change is not valid for the current configuration.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(#[from] ConfChangeError),
    /// A learner may be promoted only once it has caught up with the commit index.
    #[error("learner {node} has not caught up with the leader")]
    LearnerNotCaughtUp {
        /// The learner.
        node: NodeId,
    },
    /// Leadership can only be handed to another voter.
    #[error("node {0} is not a voter that leadership can move to")]
    InvalidTransferTarget(NodeId),
    /// Too many reads are waiting for confirmation.
    #[error("too many read requests pending")]
    ReadDropped,
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The log store failed or was asked for something it does not hold.
    #[error(transparent)]
    Store(#[from] StoreError),
}
