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

impl NodeError {
    /// Every name [`NodeError::reason_name`] returns.
    pub const REASON_NAMES: &'static [&'static str] = &[
        "not_leader",
        "dropped",
        "outcome_unknown",
        "overloaded",
        "invalid",
        "refused",
        "shutting_down",
        "failed",
    ];

    /// A short stable name for the metric label of failed proposals.
    pub fn reason_name(&self) -> &'static str {
        match self {
            NodeError::NotLeader { .. } => "not_leader",
            NodeError::Dropped(_) => "dropped",
            NodeError::OutcomeUnknown => "outcome_unknown",
            NodeError::Overloaded(_) => "overloaded",
            NodeError::Invalid(_) => "invalid",
            NodeError::Refused(_) => "refused",
            NodeError::ShuttingDown => "shutting_down",
            NodeError::Failed(_) => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NodeError;

    #[test]
    fn every_reason_name_is_listed() {
        let errors = [
            NodeError::NotLeader {
                leader_id: None,
                leader_address: None,
            },
            NodeError::Dropped(String::new()),
            NodeError::OutcomeUnknown,
            NodeError::Overloaded(String::new()),
            NodeError::Invalid(String::new()),
            NodeError::Refused(String::new()),
            NodeError::ShuttingDown,
            NodeError::Failed(String::new()),
        ];
        let names: Vec<&str> = errors.iter().map(NodeError::reason_name).collect();
        assert_eq!(names, NodeError::REASON_NAMES);
    }
}
