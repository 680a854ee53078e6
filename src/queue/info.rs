//! What reads return: [`QueueStats`], [`JobInfo`] and [`JobState`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ids::{FencingToken, JobId};

/// Where a job is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for its run-at time.
    Scheduled,
    /// Waiting for a claim.
    Ready,
    /// Held by a worker under a lease.
    Leased,
    /// Out of attempts, or nacked as dead; waits for an operator.
    Dead,
}

/// Counters of a queue since it was created. They are replicated state, so
/// every node reports the same totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounters {
    /// Jobs added (duplicates not counted).
    pub enqueued: u64,
    /// Deliveries to workers.
    pub claimed: u64,
    /// Jobs acked.
    pub acked: u64,
    /// Nacks accepted.
    pub nacked: u64,
    /// Leases that expired.
    pub expired: u64,
    /// Jobs moved to dead.
    pub dead_lettered: u64,
    /// Dead jobs put back to ready.
    pub requeued: u64,
    /// Jobs cancelled.
    pub cancelled: u64,
    /// Jobs removed by purges.
    pub purged: u64,
    /// Dead jobs deleted.
    pub deleted: u64,
}

/// A queue's current counts and totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Jobs waiting for a claim.
    pub ready: u64,
    /// Jobs waiting for their run-at time.
    pub scheduled: u64,
    /// Jobs held by workers.
    pub leased: u64,
    /// Dead jobs.
    pub dead: u64,
    /// Whether claims skip the queue.
    pub paused: bool,
    /// How long the longest-waiting ready job has been ready, at the
    /// reader's time; `None` without ready jobs.
    pub oldest_ready_age_ms: Option<u64>,
    /// Totals since the queue was created.
    pub counters: QueueCounters,
}

/// Everything known about one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Where it is.
    pub state: JobState,
    /// Its priority.
    pub priority: i32,
    /// Deliveries so far (reset by a requeue).
    pub attempts: u32,
    /// Deliveries allowed.
    pub max_attempts: u32,
    /// When it was enqueued.
    pub enqueued_at_ms: u64,
    /// For a ready job when it became ready, for a scheduled job when it will;
    /// for leased and dead jobs when it last became ready.
    pub due_at_ms: u64,
    /// The lease of a leased job.
    pub lease: Option<LeaseInfo>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// Its payload.
    pub payload: Bytes,
}

/// A lease as reads show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease's fencing token.
    pub token: FencingToken,
    /// When the lease was granted.
    pub claimed_at_ms: u64,
    /// When it ends unless extended.
    pub deadline_ms: u64,
    /// The worker named in the claim.
    pub worker: Option<String>,
}
