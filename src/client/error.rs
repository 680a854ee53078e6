//! Errors of the client library.

use crate::protocol::client::ServiceError;
use crate::queue::QueueError;

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made to a node.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The node's address.
        address: String,
        /// What went wrong.
        reason: String,
    },
    /// The node refused the handshake (wrong cluster id or secret).
    #[error("handshake with {address} failed: {reason}")]
    Handshake {
        /// The node's address.
        address: String,
        /// What the node said.
        reason: String,
    },
    /// The connection broke while the request was in flight.
    #[error("connection to {address} lost: {reason}")]
    ConnectionLost {
        /// The node's address.
        address: String,
        /// What happened.
        reason: String,
    },
    /// The request could not be written; it was not sent.
    #[error("request not sent to {address}: the connection is closed")]
    NotSent {
        /// The node's address.
        address: String,
    },
    /// No response came in time.
    #[error("no response from {address} in time")]
    Timeout {
        /// The node's address.
        address: String,
    },
    /// The job queue refused the command (a stale token, a bad queue name...).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The service refused the request and retrying would not help.
    #[error(transparent)]
    Service(ServiceError),
    /// The request may or may not have been applied, and it is not safe to
    /// retry automatically.
    #[error("the outcome of the request is unknown: {0}")]
    OutcomeUnknown(String),
    /// The cluster did not answer before the retry deadline.
    #[error("the cluster is unavailable: {0}")]
    Unavailable(String),
    /// The request is invalid before it is even sent.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// Whether the request definitely did not reach the state machine, so
    /// sending it again cannot apply it twice.
    pub(crate) fn definitely_not_applied(&self) -> bool {
        matches!(
            self,
            ClientError::Connect { .. }
                | ClientError::Handshake { .. }
                | ClientError::NotSent { .. }
        )
    }
}
