//! Producers and workers: the turmoil clients that run against the cluster.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use raftq::protocol::client::{RequestBody, ResponseBody, ServiceError};
use raftq::queue::{Ack, Backoff, Claim, ClaimedJob, Enqueued, Nack, NewJob, Outcome, QueueError};

use super::client::{Answer, SimClient};
use super::history::{History, Phase};

/// The queue every job goes to.
pub const QUEUE: &str = "sim";
/// Lease of every claim.
pub const LEASE_MS: u64 = 600;
/// Attempts before a job goes dead: high enough that none does in a run.
const MAX_ATTEMPTS: u32 = 1_000;

pub type SharedHistory = Rc<RefCell<History>>;

fn pause(ms: u64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(ms))
}

/// Enqueues `jobs` jobs, each with its own idempotency key, retrying every
/// one until an answer says which job it is.
pub async fn producer(
    name: String,
    jobs: u64,
    mut client: SimClient,
    history: SharedHistory,
) -> turmoil::Result {
    for index in 0..jobs {
        let key = format!("{name}-{index}");
        let mut job = NewJob::new(QUEUE, Bytes::from(key.clone().into_bytes()));
        job.idempotency_key = Some(Bytes::from(key.clone().into_bytes()));
        job.max_attempts = MAX_ATTEMPTS;
        job.backoff = Backoff {
            initial_ms: 10,
            max_ms: 200,
            multiplier: 2,
        };
        let body = RequestBody::Enqueue(raftq::queue::Enqueue {
            jobs: vec![job],
            session: None,
        });
        loop {
            match client.call(body.clone()).await {
                Answer::Answered(Ok(ResponseBody::Outcome(Outcome::Enqueue(Ok(results))))) => {
                    match results.as_slice() {
                        [Ok(Enqueued { id, duplicate })] => {
                            history.borrow_mut().enqueued(&key, *id, *duplicate);
                            break;
                        }
                        other => {
                            let message = format!("enqueue of {key} refused: {other:?}");
                            history.borrow_mut().violation(message);
                            break;
                        }
                    }
                }
                Answer::Answered(Err(error)) => {
                    if !error.is_retryable() && error != ServiceError::OutcomeUnknown {
                        history
                            .borrow_mut()
                            .enqueue_unknown(&key, &error.to_string());
                    }
                }
                Answer::Answered(Ok(other)) => {
                    let message = format!("enqueue of {key} answered {other:?}");
                    history.borrow_mut().violation(message);
                    break;
                }
                Answer::Unknown(reason) => history.borrow_mut().enqueue_unknown(&key, &reason),
                Answer::NotSent => {}
            }
            let wait_ms = client.rng().between(10, 100);
            pause(wait_ms).await;
        }
        let wait_ms = client.rng().between(0, 60);
        pause(wait_ms).await;
    }
    history.borrow_mut().producers_left -= 1;
    Ok(())
}

/// Claims jobs and works on them: most are acked, some are nacked, some
/// are held past their lease, and some are abandoned (only while faults are
/// injected, so that the liveness phase ends).
pub async fn worker(
    name: String,
    mut client: SimClient,
    history: SharedHistory,
) -> turmoil::Result {
    loop {
        if history.borrow().is_finished() {
            return Ok(());
        }
        let max_jobs = client.rng().between(1, 3) as u32;
        let claim = RequestBody::Claim {
            claim: Claim {
                queues: vec![QUEUE.to_string()],
                max_jobs,
                lease_ms: LEASE_MS,
                worker: Some(name.clone()),
            },
            wait_ms: 100,
        };
        let jobs = match client.call(claim).await {
            Answer::Answered(Ok(ResponseBody::Outcome(Outcome::Claim(Ok(jobs))))) => jobs,
            Answer::Answered(Ok(other)) => {
                let message = format!("claim answered {other:?}");
                history.borrow_mut().violation(message);
                return Ok(());
            }
            _ => {
                let wait_ms = client.rng().between(10, 60);
                pause(wait_ms).await;
                continue;
            }
        };
        for job in &jobs {
            history.borrow_mut().claimed(&name, job, LEASE_MS);
        }
        if jobs.is_empty() {
            resolve_unknown_acks(&mut client, &history).await;
            continue;
        }
        for job in jobs {
            work_on(&name, &mut client, &history, job).await;
        }
    }
}

async fn work_on(name: &str, client: &mut SimClient, history: &SharedHistory, job: ClaimedJob) {
    let faults = history.borrow().phase == Phase::Safety;
    let choice = client.rng().below(100);
    if faults && choice < 8 {
        // Abandoned: the lease runs out and another worker gets the job.
        return;
    }
    let work_ms = if faults && choice < 16 {
        // Slow: the lease may well have expired by the ack.
        client.rng().between(LEASE_MS / 2, 2 * LEASE_MS)
    } else {
        client.rng().between(0, LEASE_MS / 6)
    };
    pause(work_ms).await;
    if choice < 25 {
        let nack = Nack {
            id: job.id,
            token: job.token,
            error: "simulated failure".to_string(),
            retry_delay_ms: Some(client.rng().between(0, 50)),
            dead: false,
        };
        match client.call(RequestBody::Nack(nack)).await {
            Answer::Answered(Ok(ResponseBody::Outcome(Outcome::Nack(Ok(_))))) => {
                history.borrow_mut().nacked(name, job.id, job.token);
            }
            Answer::Answered(Err(ServiceError::OutcomeUnknown)) | Answer::Unknown(_) => {
                // It may have ended the lease early as well.
                history.borrow_mut().nacked(name, job.id, job.token);
            }
            _ => {
                // Refused, or certainly not applied: the lease runs out.
            }
        }
        return;
    }
    let ack = Ack {
        id: job.id,
        token: job.token,
    };
    match client.call(RequestBody::Ack(ack)).await {
        Answer::Answered(Ok(ResponseBody::Outcome(Outcome::Ack(Ok(acked))))) => {
            history
                .borrow_mut()
                .acked(name, job.id, job.token, acked.claimed_at_ms);
        }
        Answer::Answered(Ok(ResponseBody::Outcome(Outcome::Ack(Err(error))))) => {
            match &error {
                QueueError::LeaseLost(_) | QueueError::JobNotFound(_) => {}
                other => {
                    let message = format!("ack of {:?} refused unexpectedly: {other}", job.id);
                    history.borrow_mut().violation(message);
                }
            }
            history
                .borrow_mut()
                .ack_refused(name, job.id, job.token, &error.to_string());
        }
        Answer::Answered(Err(ServiceError::OutcomeUnknown)) | Answer::Unknown(_) => {
            history.borrow_mut().ack_unknown(name, job.id, job.token);
        }
        Answer::Answered(_) | Answer::NotSent => {
            // Certainly not applied: the lease runs out and the job returns.
        }
    }
}

/// Asks, with a linearizable read, whether jobs whose ack had an unknown
/// outcome are gone; a gone job was acked.
async fn resolve_unknown_acks(client: &mut SimClient, history: &SharedHistory) {
    let pending = {
        let history = history.borrow();
        if history.phase != Phase::Liveness {
            return;
        }
        history.unresolved_with_unknown_ack()
    };
    for id in pending {
        let read = RequestBody::GetJob {
            id,
            stale_ok: false,
        };
        if let Answer::Answered(Ok(ResponseBody::Job(None))) = client.call(read).await {
            history.borrow_mut().gone(id);
        }
    }
}
