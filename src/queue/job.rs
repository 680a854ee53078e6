//! The stored form of a job and of a lease.
//!
//! A job is kept small because a node may hold millions of them: the queue
//! is an interned id, counts are u16, the payload is an exact-size shared
//! slice (claims and snapshots share it instead of copying it), and what
//! only some jobs have (a lease, a last error) lives in side tables.

use std::sync::Arc;

use super::backoff::Backoff;
use super::ids::{FencingToken, JobId};
use super::info::JobState;
use super::queue_table::QueueId;

/// One job, in any state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Job {
    pub(super) id: JobId,
    pub(super) payload: Arc<[u8]>,
    pub(super) enqueued_at_ms: u64,
    /// Ready: when it became ready. Scheduled: when it becomes ready.
    /// Leased and dead: when it last became ready.
    pub(super) due_at_ms: u64,
    pub(super) backoff_initial_ms: u32,
    pub(super) backoff_max_ms: u32,
    pub(super) queue: QueueId,
    pub(super) priority: i32,
    pub(super) attempts: u16,
    pub(super) max_attempts: u16,
    pub(super) backoff_multiplier: u8,
    pub(super) state: JobState,
}

impl Job {
    pub(super) fn backoff(&self) -> Backoff {
        Backoff {
            initial_ms: self.backoff_initial_ms,
            max_ms: self.backoff_max_ms,
            multiplier: u32::from(self.backoff_multiplier),
        }
    }
}

/// The lease of a leased job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Lease {
    pub(super) token: FencingToken,
    pub(super) claimed_at_ms: u64,
    pub(super) deadline_ms: u64,
    pub(super) worker: Option<Box<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_stays_within_its_memory_budget() {
        // Every byte here is paid a million times on a full node.
        assert!(std::mem::size_of::<Job>() <= 64);
    }
}
