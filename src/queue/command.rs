//! The replicated commands: a [`Command`] is one Raft entry's worth of work,
//! an [`Op`] stamped with the leader's time.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::ids::{FencingToken, JobId};
use super::limits::{ATTEMPTS_DEFAULT, Limits};

/// One replicated command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The leader's wall-clock time when it proposed the command. The state's
    /// clock advances to `max(state clock, now_ms)`, so it never goes back.
    pub now_ms: u64,
    /// What to do.
    pub op: Op,
}

/// The operations of the job queue. Each gives the [`super::Outcome`]
/// variant of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Add a batch of jobs.
    Enqueue(Enqueue),
    /// Lease ready jobs to a worker.
    Claim(Claim),
    /// Finish a leased job: it is removed.
    Ack(Ack),
    /// Report a failed attempt of a leased job.
    Nack(Nack),
    /// Push a lease's deadline out.
    Extend(Extend),
    /// Remove a job in any state.
    Cancel(JobId),
    /// Put dead jobs back to ready with their attempts reset.
    RequeueDead(DeadSelection),
    /// Remove dead jobs.
    DeleteDead(DeadSelection),
    /// Stop a queue from giving jobs to claims; it keeps accepting enqueues.
    Pause(String),
    /// Undo a pause.
    Resume(String),
    /// Remove a queue's ready and scheduled jobs.
    Purge(String),
    /// Only advance the clock, so scheduled jobs and lease expiries fall due
    /// without other traffic.
    Tick,
    /// Replace the replicated limits.
    SetLimits(Limits),
    /// Finish several leased jobs at once; each ack succeeds or fails on its
    /// own, exactly as separate acks in this order would.
    AckBatch(Vec<Ack>),
}

/// A batch of jobs to add, each validated and added on its own: one bad job
/// gets its own error in the outcome and does not stop the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueue {
    /// 1..=`ENQUEUE_BATCH_JOBS_MAX` jobs.
    pub jobs: Vec<NewJob>,
    /// The client library's session stamp for deduplicating its own retries.
    pub session: Option<SessionStamp>,
}

/// One job to enqueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    /// Queue name (see the name syntax in the module docs).
    pub queue: String,
    /// Opaque payload, at most `Limits::payload_max_bytes`.
    pub payload: Bytes,
    /// Higher runs first.
    pub priority: i32,
    /// When the job first becomes ready.
    pub schedule: Schedule,
    /// Deliveries before the job goes dead, 1..=`ATTEMPTS_MAX`.
    pub max_attempts: u32,
    /// Retry delays after failed attempts.
    pub backoff: Backoff,
    /// A user key (1..=`IDEMPOTENCY_KEY_MAX_BYTES` bytes): another enqueue
    /// with the same key into the same queue within the idempotency window
    /// returns this job's id instead of adding a job.
    pub idempotency_key: Option<Bytes>,
}

impl NewJob {
    /// A job with default priority (0), ready at once, default attempts and
    /// backoff, and no idempotency key.
    pub fn new(queue: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        NewJob {
            queue: queue.into(),
            payload: payload.into(),
            priority: 0,
            schedule: Schedule::Now,
            max_attempts: ATTEMPTS_DEFAULT,
            backoff: Backoff::default(),
            idempotency_key: None,
        }
    }
}

/// When a new job first becomes ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// At once.
    Now,
    /// This long after the command's stamped time (at most
    /// `SCHEDULE_AHEAD_MAX_MS`).
    DelayMs(u64),
    /// At this absolute stamped time; a time in the past means at once.
    RunAtMs(u64),
}

/// A client session stamp (Raft thesis §6.3): lets the state answer a
/// retried request with the result of its first application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStamp {
    /// Chosen by the client, unique per client process.
    pub session_id: u64,
    /// This request's number within the session, starting at 1.
    pub seq: u64,
    /// The lowest sequence number whose answer the client has not received
    /// yet; results below it may be discarded. 1..=`seq`.
    pub lowest_unanswered_seq: u64,
}

/// Lease up to `max_jobs` ready jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// 1..=`CLAIM_QUEUES_MAX` queues, drained in the order given; paused and
    /// unknown queues are skipped.
    pub queues: Vec<String>,
    /// 1..=`CLAIM_JOBS_MAX`.
    pub max_jobs: u32,
    /// Lease duration, `LEASE_MIN_MS..=LEASE_MAX_MS`.
    pub lease_ms: u64,
    /// The worker's name, kept with the lease for inspection.
    pub worker: Option<String>,
}

/// Finish a leased job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The job.
    pub id: JobId,
    /// The token of the caller's lease.
    pub token: FencingToken,
}

/// Report a failed attempt of a leased job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The job.
    pub id: JobId,
    /// The token of the caller's lease.
    pub token: FencingToken,
    /// Why the attempt failed; kept on the job, cut to
    /// `ERROR_MESSAGE_MAX_BYTES`.
    pub error: String,
    /// Retry after this delay instead of the job's backoff (at most
    /// `SCHEDULE_AHEAD_MAX_MS`).
    pub retry_delay_ms: Option<u64>,
    /// Move the job to dead now, whatever its attempts.
    pub dead: bool,
}

/// Push a lease's deadline to `now + lease_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extend {
    /// The job.
    pub id: JobId,
    /// The token of the caller's lease.
    pub token: FencingToken,
    /// New lease duration from the command's stamped time,
    /// `LEASE_MIN_MS..=LEASE_MAX_MS`.
    pub lease_ms: u64,
}

/// Which dead jobs a requeue or delete applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadSelection {
    /// One dead job.
    Job(JobId),
    /// Every dead job of a queue.
    Queue(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{JobQueue, Outcome};

    #[test]
    fn commands_and_outcomes_survive_postcard_as_the_node_encodes_them() {
        let mut job = NewJob::new("emails", &b"payload"[..]);
        job.idempotency_key = Some(Bytes::from_static(b"key"));
        job.schedule = Schedule::RunAtMs(5);
        let commands = [
            Command {
                now_ms: 1,
                op: Op::Enqueue(Enqueue {
                    jobs: vec![job, NewJob::new("bad name", Bytes::new())],
                    session: Some(SessionStamp {
                        session_id: 3,
                        seq: 1,
                        lowest_unanswered_seq: 1,
                    }),
                }),
            },
            Command {
                now_ms: 2,
                op: Op::Claim(Claim {
                    queues: vec!["emails".into()],
                    max_jobs: 2,
                    lease_ms: 1_000,
                    worker: Some("w".into()),
                }),
            },
            Command {
                now_ms: 3,
                op: Op::SetLimits(Limits::default()),
            },
        ];
        let mut state = JobQueue::new();
        for command in &commands {
            let encoded = postcard::to_allocvec(command).unwrap();
            let decoded: Command = postcard::from_bytes(&encoded).unwrap();
            assert_eq!(&decoded, command);
            let outcome = state.apply(&decoded);
            let encoded = postcard::to_allocvec(&outcome).unwrap();
            assert_eq!(postcard::from_bytes::<Outcome>(&encoded).unwrap(), outcome);
        }
    }
}
