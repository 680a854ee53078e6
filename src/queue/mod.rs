//! The replicated state machine: a job queue.
//!
//! [`JobQueue`] is pure and deterministic. It never reads a clock or an RNG
//! and knows nothing of Raft: the node applies each committed [`Command`] in
//! log order with [`JobQueue::apply`] and hands the [`Outcome`] to the
//! client that proposed it. Every node that applies the same commands holds
//! an equal state and computes equal outcomes. [`JobQueue::snapshot`] and
//! [`JobQueue::restore`] move the whole state between nodes.
//!
//! # Time
//!
//! Time is only the leader's wall-clock time stamped into each command
//! (`Command::now_ms`). Every command first advances the state's clock to
//! `max(clock, now_ms)`, so stamped time never goes back in the state even if
//! a new leader's clock is behind; then scheduled jobs whose run-at time has
//! come become ready (ready since their run-at time), leases whose deadline
//! has come expire (see below), and idempotency keys and client sessions past
//! their windows are forgotten; then the operation runs. [`Op::Tick`] does
//! only the first part: the leader proposes one when its clock passes
//! [`JobQueue::next_wakeup_ms`], so expiry and scheduling happen without
//! other traffic.
//!
//! # Queues
//!
//! A queue name is 1 to 64 bytes of ASCII letters, digits, `_`, `-`, `.` and
//! `:`, and starts with a letter or digit; anything else is
//! [`QueueError::InvalidQueueName`]. A queue exists once a job is enqueued
//! into it or it is paused, and is never forgotten, because its counters are
//! replicated state; `Limits::queues_max` (default 10,000) caps their number
//! ([`QueueError::TooManyQueues`]). Names are interned: jobs refer to their
//! queue by a 32-bit id. Operations that name a queue that does not exist
//! (stats, resume, purge, dead-letter handling) fail with
//! [`QueueError::QueueNotFound`]; a claim simply skips it.
//!
//! # Jobs
//!
//! Job ids ([`JobId`]) come from a counter starting at 1. A job is
//! `scheduled` (its run-at time is in the future), `ready`, `leased` to one
//! worker, or `dead`; an ack removes it.
//!
//! **Enqueue** carries a batch of 1 to 1,000 jobs. Each job is validated and
//! added on its own: a bad job gets its own error in the outcome and the
//! others are still added. The checks, in order: queue name, payload size
//! (`Limits::payload_max_bytes`, default 1 MiB), `max_attempts` (1 to 1,000,
//! default 25), backoff ranges, schedule (at most 365 days ahead), key length
//! (1 to 128 bytes); then a live idempotency key returns the original job;
//! then the queue must have room (`Limits::jobs_per_queue_max`, default
//! 10,000,000 jobs in any state, [`QueueError::QueueFull`]) and a new key
//! must fit under `Limits::idempotency_keys_max`. A job is ready at once
//! unless its delay or run-at time lies in the future (a run-at time in the
//! past means now).
//!
//! **Claim** names 1 to 16 queues and takes up to `max_jobs` (1 to 1,000)
//! ready jobs, draining the queues in the order given and skipping paused and
//! unknown ones. Within a queue the order is priority (higher first), then
//! the time the job became ready, then id. Each claimed job's attempt count
//! goes up by one (the first delivery is attempt 1) and it gets a lease until
//! `now + lease_ms` (100 ms to 12 hours, else [`QueueError::InvalidLease`])
//! under the next [`FencingToken`] of a global counter, so tokens strictly
//! increase per job and globally. A claim that finds nothing returns an
//! empty list; parking long polls is the server's business.
//!
//! **Ack, nack and extend** present the job id and the token. An unknown id
//! is [`QueueError::JobNotFound`]; a job that is not leased under that token
//! (a stale token, a lease that expired, by this command's stamped time or
//! earlier) is [`QueueError::LeaseLost`], and nothing changes. Ack removes
//! the job (its idempotency key stays remembered for its window). Nack keeps
//! its error message on the job (cut to 1 KiB) and either retries after the
//! given delay or the job's backoff, or moves the job to dead when asked or
//! when the job has used all its attempts. Extend sets the deadline to
//! `now + lease_ms`.
//!
//! **Lease expiry**: a lease whose deadline is at or before the stamped time
//! ends, its token dies, and the job counts a failed attempt: dead if it has
//! used all its attempts, otherwise ready again at `deadline + backoff`
//! (scheduled if that is still in the future). Backoff is exponential with a
//! cap and ±10% jitter derived from the job id and attempt ([`Backoff`]).
//!
//! **Dead letters** are listed per queue in id order, page by page, and can
//! be requeued (back to ready now, attempts reset to 0, last error kept) or
//! deleted, one job or a whole queue's. **Cancel** removes a job in any
//! state; a leased job's token dies with it. **Pause** stops claims from
//! taking a queue's jobs (enqueues still land); **resume** undoes it.
//! **Purge** removes a queue's ready and scheduled jobs and returns how many;
//! leased jobs (a worker holds them) and dead jobs (an operator decides on
//! them) stay.
//!
//! # Idempotency
//!
//! Two replicated mechanisms, both part of snapshots.
//!
//! *User keys*: an enqueue with an idempotency key whose (queue, key) pair
//! was enqueued within `Limits::idempotency_window_ms` (default 120 s,
//! measured from the first enqueue's stamped time, even if that job is gone)
//! returns the original id with `duplicate: true` and adds nothing, also when
//! the payload differs. At most `Limits::idempotency_keys_max` keys (default
//! 1,000,000) are remembered; a key is never forgotten before its window
//! ends, so an enqueue with a new key beyond the cap is refused with
//! [`QueueError::TooManyIdempotencyKeys`]. Keys are stored as 128-bit
//! digests (see `idempotency.rs` for the collision bound and memory).
//!
//! *Client sessions* (Raft thesis §6.3) let the client library retry an
//! enqueue whose outcome it did not learn. An enqueue may carry a
//! [`SessionStamp`] `{ session_id, seq, lowest_unanswered_seq }`. The state
//! keeps, per session, the results of requests numbered at or above the
//! lowest unanswered one: a repeat of a stored request returns the stored
//! result with every job marked `duplicate`; results below the lowest
//! unanswered request are discarded, and a request below it is refused with
//! [`QueueError::StaleSessionRequest`]. An unknown session is opened only by
//! a request whose `lowest_unanswered_seq` is 1 (the client has had no answer
//! in it yet); any other request of an unknown session gets
//! [`QueueError::SessionExpired`], telling the client that the outcome of its
//! earlier tries is unknown instead of silently duplicating. Sessions idle
//! for `Limits::session_idle_ms` (default 1 hour of stamped time) are
//! forgotten; at most `Limits::sessions_max` (default 100,000) exist, and
//! opening one more evicts the longest idle. A session keeps at most 4,096
//! stored job results ([`QueueError::TooManyUnansweredRequests`] beyond),
//! and all sessions together at most `Limits::session_results_max` (default
//! 1,000,000): storing more evicts the longest idle other sessions. See
//! `sessions.rs` for memory.
//!
//! # Statistics
//!
//! Per queue: ready, scheduled, leased and dead counts, the paused flag, the
//! age of the oldest ready job at the reader's time, and totals since the
//! queue was created ([`QueueCounters`]). The totals are replicated state,
//! so every node reports the same.
//!
//! # Limits
//!
//! [`Limits`] are replicated state changed only by [`Op::SetLimits`], so
//! every node decides the same; defaults come from `Limits::default()` and
//! fixed limits are the constants in [`limits`].
//!
//! # Memory
//!
//! A job costs its payload (an exact-size allocation) plus a 64-byte record
//! in a dense vector, a 4-byte slot number in a hash table from id to record,
//! a 24-byte key in its queue's ready index (16 bytes in the scheduled index
//! when scheduled), and the spare capacity of those structures; leases and
//! last errors live in side tables, so only jobs that have them pay for
//! them. `benches/queue.rs` measures about 127 bytes beyond the payload per
//! ready job at one million jobs. Idempotency keys and sessions are bounded
//! by their limits (see `idempotency.rs` and `sessions.rs`).

mod admin;
mod backoff;
mod command;
mod enqueue;
mod error;
mod id_hasher;
mod idempotency;
mod ids;
mod info;
mod job;
mod job_queue;
mod job_store;
mod lease;
pub mod limits;
mod outcome;
mod queue_table;
mod sessions;
mod siphash;
mod snapshot;
#[cfg(test)]
mod tests;

pub use backoff::Backoff;
pub use command::{
    Ack, Claim, Command, DeadSelection, Enqueue, Extend, Nack, NewJob, Op, Schedule, SessionStamp,
};
pub use error::{QueueError, SnapshotError};
pub use ids::{FencingToken, JobId};
pub use info::{JobInfo, JobState, LeaseInfo, QueueCounters, QueueStats};
pub use job_queue::JobQueue;
pub use limits::Limits;
pub use outcome::{Acked, Cancelled, ClaimedJob, Disposition, Enqueued, Extended, Nacked, Outcome};
pub use queue_table::validate_queue_name;
pub use snapshot::{FrozenQueue, SNAPSHOT_MAGIC, SNAPSHOT_VERSION};
