//! Every limit of the job queue: fixed constants and the replicated [`Limits`].

use serde::{Deserialize, Serialize};

use super::error::QueueError;

/// Longest queue name, in bytes.
pub const QUEUE_NAME_MAX_BYTES: usize = 64;
/// Most jobs in one enqueue command.
pub const ENQUEUE_BATCH_JOBS_MAX: usize = 1_000;
/// Most queues one claim may name.
pub const CLAIM_QUEUES_MAX: usize = 16;
/// Most acks in one ack batch.
pub const ACK_BATCH_MAX: usize = 1_000;
/// Most jobs one claim may take.
pub const CLAIM_JOBS_MAX: u32 = 1_000;
/// Shortest lease a claim or an extend may ask for.
pub const LEASE_MIN_MS: u64 = 100;
/// Longest lease a claim or an extend may ask for (12 hours).
pub const LEASE_MAX_MS: u64 = 43_200_000;
/// Deliveries of a job before it goes dead, unless the job says otherwise.
pub const ATTEMPTS_DEFAULT: u32 = 25;
/// The largest `max_attempts` a job may ask for.
pub const ATTEMPTS_MAX: u32 = 1_000;
/// First retry delay, unless the job says otherwise.
pub const BACKOFF_INITIAL_MS_DEFAULT: u32 = 1_000;
/// Retry delay cap, unless the job says otherwise (10 minutes).
pub const BACKOFF_MAX_MS_DEFAULT: u32 = 600_000;
/// Growth factor of the retry delay per attempt, unless the job says otherwise.
pub const BACKOFF_MULTIPLIER_DEFAULT: u32 = 2;
/// The largest growth factor a job may ask for.
pub const BACKOFF_MULTIPLIER_MAX: u32 = 16;
/// The largest retry delay (initial or cap) a job may ask for (30 days).
pub const BACKOFF_CEILING_MS: u32 = 2_592_000_000;
/// Retry delays are spread by up to this many percent either way.
pub const BACKOFF_JITTER_PERCENT: u64 = 10;
/// How far ahead of the stamped time a job may be scheduled or a nack may
/// delay its retry (365 days).
pub const SCHEDULE_AHEAD_MAX_MS: u64 = 31_536_000_000;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 128;
/// Nack error messages are cut to this many bytes (on a character boundary).
pub const ERROR_MESSAGE_MAX_BYTES: usize = 1_024;
/// Longest worker name a claim may carry, in bytes.
pub const WORKER_NAME_MAX_BYTES: usize = 128;
/// Most per-job results one client session keeps for its unanswered
/// requests. A client that never reports its answers as received is refused
/// instead of growing the session without bound. It is large enough for a
/// busy client with many batches in flight (64 batches of 1,000 jobs);
/// `Limits::session_results_max` bounds the total over all sessions.
pub const SESSION_STORED_RESULTS_MAX: usize = 65_536;
/// Most jobs the state holds in all queues together: jobs are found through
/// 32-bit slot numbers. Memory runs out long before this.
pub const JOBS_TOTAL_MAX: usize = u32::MAX as usize;
/// Most dead jobs one page of [`super::JobQueue::list_dead`] returns.
pub const DEAD_LIST_PAGE_MAX: usize = 1_000;
/// Most payload bytes one claim or one page of dead jobs carries, beyond its
/// first job: a claim of 1,000 large jobs would otherwise build a response
/// larger than any client accepts, lease jobs that never arrive and fail the
/// same way on every retry. The first job always goes in, so a job of the
/// largest allowed payload can still be claimed.
pub const RESPONSE_PAYLOAD_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The largest `payload_max_bytes` that [`Limits`] accepts (64 MiB).
pub const PAYLOAD_MAX_BYTES_CEILING: u32 = 64 * 1024 * 1024;
/// The longest idempotency window that [`Limits`] accepts (7 days).
pub const IDEMPOTENCY_WINDOW_CEILING_MS: u64 = 604_800_000;
/// The largest `idempotency_keys_max` that [`Limits`] accepts.
pub const IDEMPOTENCY_KEYS_CEILING: u32 = 100_000_000;
/// The largest `sessions_max` that [`Limits`] accepts.
pub const SESSIONS_CEILING: u32 = 10_000_000;
/// The largest `session_results_max` that [`Limits`] accepts.
pub const SESSION_RESULTS_CEILING: u32 = 100_000_000;
/// The longest session idle time that [`Limits`] accepts (7 days).
pub const SESSION_IDLE_CEILING_MS: u64 = 604_800_000;
/// The largest `jobs_per_queue_max` that [`Limits`] accepts.
pub const JOBS_PER_QUEUE_CEILING: u64 = 1_000_000_000;
/// The largest `queues_max` that [`Limits`] accepts.
pub const QUEUES_CEILING: u32 = 1_000_000;

const _: () = assert!(LEASE_MIN_MS <= LEASE_MAX_MS);
const _: () = assert!(ATTEMPTS_DEFAULT >= 1 && ATTEMPTS_DEFAULT <= ATTEMPTS_MAX);
// Attempts are stored in a u16 inside each job.
const _: () = assert!(ATTEMPTS_MAX <= u16::MAX as u32);
const _: () = assert!(BACKOFF_INITIAL_MS_DEFAULT <= BACKOFF_MAX_MS_DEFAULT);
const _: () = assert!(BACKOFF_MAX_MS_DEFAULT <= BACKOFF_CEILING_MS);
const _: () = assert!(BACKOFF_MULTIPLIER_DEFAULT >= 1);
const _: () = assert!(BACKOFF_MULTIPLIER_DEFAULT <= BACKOFF_MULTIPLIER_MAX);
// The multiplier is stored in a u8 inside each job.
const _: () = assert!(BACKOFF_MULTIPLIER_MAX <= u8::MAX as u32);
const _: () = assert!(SESSION_STORED_RESULTS_MAX >= ENQUEUE_BATCH_JOBS_MAX);

/// Limits that decide outcomes, so they are replicated state: every node
/// holds the same values, they travel in snapshots, and only
/// [`super::Op::SetLimits`] changes them.
///
/// Lowering a limit never removes anything that is already stored, except
/// that a shorter idempotency window or session idle time lets entries expire
/// sooner and a lower `sessions_max` or `session_results_max` evicts the
/// longest idle sessions at once.
/// Otherwise a lowered limit only refuses new work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest job payload, in bytes (default 1 MiB).
    pub payload_max_bytes: u32,
    /// How long a user idempotency key is remembered after the enqueue that
    /// brought it: 1 ms to 7 days (default 120 s, like NATS JetStream's
    /// duplicate window).
    pub idempotency_window_ms: u64,
    /// Most idempotency keys remembered at once (default 1,000,000).
    pub idempotency_keys_max: u32,
    /// Most client sessions kept at once (default 100,000).
    pub sessions_max: u32,
    /// A session without requests for this long is forgotten (default 1 hour).
    pub session_idle_ms: u64,
    /// Most job results stored over all sessions (default 1,000,000);
    /// storing more evicts the longest idle other sessions.
    pub session_results_max: u32,
    /// Most jobs in one queue, in any state (default 10,000,000).
    pub jobs_per_queue_max: u64,
    /// Most queues (default 10,000). Queues are never forgotten because their
    /// counters are part of the replicated state.
    pub queues_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            payload_max_bytes: 1024 * 1024,
            idempotency_window_ms: 120_000,
            idempotency_keys_max: 1_000_000,
            sessions_max: 100_000,
            session_idle_ms: 3_600_000,
            session_results_max: 1_000_000,
            jobs_per_queue_max: 10_000_000,
            queues_max: 10_000,
        }
    }
}

impl Limits {
    /// Checks every field against its accepted range.
    pub fn validate(&self) -> Result<(), QueueError> {
        fn check(ok: bool, what: &str) -> Result<(), QueueError> {
            if ok {
                Ok(())
            } else {
                Err(QueueError::InvalidArgument(format!(
                    "limit {what} is out of range"
                )))
            }
        }
        check(
            self.payload_max_bytes <= PAYLOAD_MAX_BYTES_CEILING,
            "payload_max_bytes",
        )?;
        check(
            (1..=IDEMPOTENCY_WINDOW_CEILING_MS).contains(&self.idempotency_window_ms),
            "idempotency_window_ms",
        )?;
        check(
            self.idempotency_keys_max <= IDEMPOTENCY_KEYS_CEILING,
            "idempotency_keys_max",
        )?;
        check(
            (1..=SESSIONS_CEILING).contains(&self.sessions_max),
            "sessions_max",
        )?;
        check(
            (1..=SESSION_IDLE_CEILING_MS).contains(&self.session_idle_ms),
            "session_idle_ms",
        )?;
        check(
            (1..=SESSION_RESULTS_CEILING).contains(&self.session_results_max),
            "session_results_max",
        )?;
        check(
            (1..=JOBS_PER_QUEUE_CEILING).contains(&self.jobs_per_queue_max),
            "jobs_per_queue_max",
        )?;
        check(
            (1..=QUEUES_CEILING).contains(&self.queues_max),
            "queues_max",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        let too_many_sessions = Limits {
            sessions_max: 0,
            ..Limits::default()
        };
        assert!(too_many_sessions.validate().is_err());
        let huge_payload = Limits {
            payload_max_bytes: PAYLOAD_MAX_BYTES_CEILING + 1,
            ..Limits::default()
        };
        assert!(huge_payload.validate().is_err());
    }
}
