//! Rule-by-rule tests of [`JobQueue::apply`] and the reads, by topic, with
//! the helpers they share.

use super::*;

mod admin;
mod enqueue;
mod lease;
mod snapshot;

const START_MS: u64 = 1_000_000;
const LEASE_MS: u64 = 30_000;

fn apply(state: &mut JobQueue, now_ms: u64, op: Op) -> Outcome {
    state.apply(&Command { now_ms, op })
}

fn enqueue_job(state: &mut JobQueue, now_ms: u64, job: NewJob) -> Result<Enqueued, QueueError> {
    let outcome = apply(
        state,
        now_ms,
        Op::Enqueue(Enqueue {
            jobs: vec![job],
            session: None,
        }),
    );
    let Outcome::Enqueue(Ok(mut results)) = outcome else {
        panic!("a one-job batch is accepted: {outcome:?}");
    };
    results.pop().expect("one result per job")
}

fn enqueue(state: &mut JobQueue, now_ms: u64, queue: &str, payload: &'static [u8]) -> JobId {
    enqueue_job(state, now_ms, NewJob::new(queue, payload))
        .expect("valid job is enqueued")
        .id
}

fn claim_op(queues: &[&str], max_jobs: u32, lease_ms: u64) -> Op {
    Op::Claim(Claim {
        queues: queues.iter().map(|queue| queue.to_string()).collect(),
        max_jobs,
        lease_ms,
        worker: Some("worker-1".to_string()),
    })
}

fn claim(state: &mut JobQueue, now_ms: u64, queues: &[&str], max_jobs: u32) -> Vec<ClaimedJob> {
    match apply(state, now_ms, claim_op(queues, max_jobs, LEASE_MS)) {
        Outcome::Claim(Ok(jobs)) => jobs,
        other => panic!("claim is valid: {other:?}"),
    }
}

fn ack(state: &mut JobQueue, now_ms: u64, job: &ClaimedJob) -> Outcome {
    apply(
        state,
        now_ms,
        Op::Ack(Ack {
            id: job.id,
            token: job.token,
        }),
    )
}

fn nack(state: &mut JobQueue, now_ms: u64, job: &ClaimedJob, dead: bool) -> Outcome {
    apply(
        state,
        now_ms,
        Op::Nack(Nack {
            id: job.id,
            token: job.token,
            error: "boom".to_string(),
            retry_delay_ms: None,
            dead,
        }),
    )
}

fn ids(jobs: &[ClaimedJob]) -> Vec<JobId> {
    jobs.iter().map(|job| job.id).collect()
}

fn stats(state: &JobQueue, queue: &str) -> QueueStats {
    state
        .stats(queue, state.last_now_ms())
        .expect("queue exists")
}

fn session_enqueue(stamp: SessionStamp, payload: &'static [u8]) -> Op {
    Op::Enqueue(Enqueue {
        jobs: vec![NewJob::new("q", payload)],
        session: Some(stamp),
    })
}

fn stamp(seq: u64, lowest_unanswered_seq: u64) -> SessionStamp {
    SessionStamp {
        session_id: 42,
        seq,
        lowest_unanswered_seq,
    }
}
