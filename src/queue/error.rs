//! The errors of the job queue: [`QueueError`] for commands and reads,
//! [`SnapshotError`] for restoring a snapshot.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::ids::JobId;

/// Why a command (or one job of an enqueue batch) or a read was refused.
///
/// A refused command changes nothing. The enum is serializable so the server
/// can hand it to clients as it is.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum QueueError {
    /// The queue name breaks the name syntax (see the module docs). Carries
    /// the offending name, cut to a printable length.
    #[error(
        "invalid queue name {0:?}: use 1 to 64 ASCII letters, digits, '_', '-', '.', ':', starting with a letter or digit"
    )]
    InvalidQueueName(String),
    /// The payload is larger than `Limits::payload_max_bytes`.
    #[error("payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the refused payload.
        size: u64,
        /// The limit in force.
        max: u64,
    },
    /// The lease duration is outside `LEASE_MIN_MS..=LEASE_MAX_MS`.
    #[error("lease of {lease_ms} ms is outside the allowed range of 100 ms to 12 hours")]
    InvalidLease {
        /// The refused lease duration.
        lease_ms: u64,
    },
    /// Some other argument is out of range; the text says which.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No job with this id exists (never did, or it was acked, cancelled or
    /// deleted).
    #[error("job {0} not found")]
    JobNotFound(JobId),
    /// The job is not leased under this fencing token: the token is stale,
    /// the lease expired, or the job was never claimed with it.
    #[error("lease on job {0} lost: the fencing token is stale or the lease expired")]
    LeaseLost(JobId),
    /// Requeue or delete of a dead job named a job that is not dead.
    #[error("job {0} is not dead")]
    JobNotDead(JobId),
    /// The queue has never received a job and was never paused.
    #[error("queue {0:?} not found")]
    QueueNotFound(String),
    /// The queue holds `Limits::jobs_per_queue_max` jobs already.
    #[error("queue {queue:?} is full: it holds the maximum of {max} jobs")]
    QueueFull {
        /// The full queue.
        queue: String,
        /// The limit in force.
        max: u64,
    },
    /// Creating another queue would pass `Limits::queues_max`.
    #[error("too many queues: the maximum is {max}")]
    TooManyQueues {
        /// The limit in force.
        max: u64,
    },
    /// Remembering another idempotency key would pass
    /// `Limits::idempotency_keys_max`. Keys are never forgotten before their
    /// window ends, so the enqueue is refused instead.
    #[error("too many idempotency keys remembered: the maximum is {max}; retry after the window")]
    TooManyIdempotencyKeys {
        /// The limit in force.
        max: u64,
    },
    /// The client session is unknown and this is not its first request: the
    /// state forgot the session (idle expiry or eviction), so whether an
    /// earlier try of this request was applied is unknown.
    #[error("client session {session_id} expired; the outcome of earlier tries is unknown")]
    SessionExpired {
        /// The forgotten session.
        session_id: u64,
    },
    /// The request's sequence number is below the session's lowest
    /// unanswered one: the client already had this answer and its stored
    /// result was discarded.
    #[error("request {seq} of client session {session_id} was already answered")]
    StaleSessionRequest {
        /// The session.
        session_id: u64,
        /// The stale sequence number.
        seq: u64,
    },
    /// The session already holds `SESSION_STORED_RESULTS_MAX` results of
    /// unanswered requests.
    #[error("client session {session_id} has too many unanswered requests")]
    TooManyUnansweredRequests {
        /// The session.
        session_id: u64,
    },
}

/// Why [`super::JobQueue::restore`] refused its input.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SnapshotError {
    /// The input does not start with the snapshot magic.
    #[error("not a queue snapshot: bad magic")]
    BadMagic,
    /// The snapshot has a format version this build cannot read.
    #[error("unsupported queue snapshot version {0}")]
    UnsupportedVersion(u32),
    /// The input is shorter than the fixed header and trailer.
    #[error("queue snapshot truncated")]
    Truncated,
    /// The checksum does not match the contents.
    #[error("queue snapshot checksum mismatch")]
    ChecksumMismatch,
    /// The body does not decode.
    #[error("queue snapshot body does not decode: {0}")]
    Decode(String),
    /// The body decodes but describes a state that cannot exist.
    #[error("queue snapshot is inconsistent: {0}")]
    Inconsistent(String),
}
