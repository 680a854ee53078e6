//! What applying a command produced: one [`Outcome`] variant per [`super::Op`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::error::QueueError;
use super::ids::{FencingToken, JobId};
use super::info::JobState;

/// The result of one applied command. Every node computes the same outcome;
/// the leader hands it to the client that proposed the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// One result per job of the batch, in order; the outer error refuses
    /// the whole batch (bad batch size, session errors).
    Enqueue(Result<Vec<Result<Enqueued, QueueError>>, QueueError>),
    /// The leased jobs, possibly none.
    Claim(Result<Vec<ClaimedJob>, QueueError>),
    /// The acked job's timing.
    Ack(Result<Acked, QueueError>),
    /// What happened to the nacked job.
    Nack(Result<Nacked, QueueError>),
    /// The new lease deadline.
    Extend(Result<Extended, QueueError>),
    /// The cancelled job.
    Cancel(Result<Cancelled, QueueError>),
    /// How many dead jobs went back to ready.
    RequeueDead(Result<u64, QueueError>),
    /// How many dead jobs were removed.
    DeleteDead(Result<u64, QueueError>),
    /// The queue is paused.
    Pause(Result<(), QueueError>),
    /// The queue is resumed.
    Resume(Result<(), QueueError>),
    /// How many ready and scheduled jobs were removed.
    Purge(Result<u64, QueueError>),
    /// The clock advanced.
    Tick,
    /// The limits are replaced.
    SetLimits(Result<(), QueueError>),
    /// One result per ack of the batch, in order; the outer error refuses
    /// the whole batch (an empty or oversized batch).
    AckBatch(Result<Vec<Result<Acked, QueueError>>, QueueError>),
}

/// An enqueued job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id.
    pub id: JobId,
    /// True when nothing was added because the idempotency key or the
    /// session stamp matched an earlier enqueue; `id` is that enqueue's job.
    pub duplicate: bool,
}

/// A job handed to a worker by a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedJob {
    /// The job.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: Bytes,
    /// Which delivery this is, 1 for the first.
    pub attempt: u32,
    /// The job's limit of deliveries.
    pub max_attempts: u32,
    /// Present this with ack, nack and extend.
    pub token: FencingToken,
    /// The lease ends at this stamped time unless extended.
    pub lease_deadline_ms: u64,
    /// When the job was enqueued.
    pub enqueued_at_ms: u64,
    /// When the job last became ready.
    pub ready_at_ms: u64,
}

/// An acked job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// The job's queue.
    pub queue: String,
    /// When the job was enqueued.
    pub enqueued_at_ms: u64,
    /// When the acked lease was granted.
    pub claimed_at_ms: u64,
}

/// A nacked job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nacked {
    /// The job's queue.
    pub queue: String,
    /// Where the job went.
    pub disposition: Disposition,
}

/// Where a job went after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Disposition {
    /// It will be delivered again once the stamped time reaches `at_ms`
    /// (ready at once when `at_ms` is not in the future).
    Retry {
        /// When the job is ready again.
        at_ms: u64,
    },
    /// It is dead.
    Dead,
}

/// An extended lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extended {
    /// The new deadline.
    pub lease_deadline_ms: u64,
}

/// A cancelled job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// The job's queue.
    pub queue: String,
    /// The state it was removed from.
    pub previous_state: JobState,
}
