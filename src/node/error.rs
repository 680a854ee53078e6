//! Errors the node returns to the server and to admin tools.

use serde::{Deserialize, Serialize};

/// Why the node could not carry out a request. Every variant except
/// [`NodeError::Failed`] is an answer about this request; `Failed` means the
/// node has stopped for good and must be restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum NodeError {
    /// This node does not lead; the leader, if known, is given with the
    /// address where it serves clients.
    #[error("not the leader (leader: {leader_id:?} at {leader_address:?})")]
    NotLeader {
        /// The leader's node id, if known.
        leader_id: Option<u64>,
        /// The leader's client address, if known.
        leader_address: Option<String>,
    },
    /// The command was definitely not applied and never will be; it is safe
    /// to submit it again.
    #[error("the command was dropped before it was committed: {0}")]
    Dropped(String),
    /// Leadership changed while the command was in flight: it may or may not
    /// be applied. Retry only with an idempotency key or session.
    #[error("leadership changed while the command was in flight; its outcome is unknown")]
    OutcomeUnknown,
    /// Too many requests are queued; try again shortly.
    #[error("the node is overloaded: {0}")]
    Overloaded(String),
    /// The request is malformed or too large.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A membership change or leadership transfer was refused.
    #[error("refused by the consensus core: {0}")]
    Refused(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The node hit a fatal error (a failed disk, corrupt data) and stopped.
    #[error("the node has stopped after a fatal error: {0}")]
    Failed(String),
}
