//! Producers and workers that record every call in the history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use raftq::client::{Client, ClientError};
use raftq::queue::limits::ATTEMPTS_MAX;
use raftq::queue::{FencingToken, JobId, NewJob};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use super::cluster::{Seeds, client_options};
use super::history::{Delivery, Event, Recorder};

pub const QUEUE: &str = "nemesis";
pub const LEASE_MS: u64 = 1_500;
const CLAIM_WAIT_MS: u64 = 300;

/// Whether an error proves the request was not applied.
fn definitely_not_applied(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Connect { .. }
            | ClientError::Handshake { .. }
            | ClientError::NotSent { .. }
            | ClientError::Queue(_)
            | ClientError::Invalid(_)
    )
}

/// Failed calls in a row after which a process starts over with a new
/// client made from the current members, as a restarted process would (a
/// new client session, seeds that membership changes have not replaced).
const FAILURES_BEFORE_RECONNECT: u32 = 3;

/// Counts failures in a row and replaces the client once there are enough.
struct Reconnect {
    seeds: Seeds,
    failures_in_a_row: u32,
}

impl Reconnect {
    async fn after(&mut self, ok: bool, client: &mut Client) {
        if ok {
            self.failures_in_a_row = 0;
            return;
        }
        self.failures_in_a_row += 1;
        if self.failures_in_a_row >= FAILURES_BEFORE_RECONNECT {
            self.failures_in_a_row = 0;
            let seeds = self.seeds.lock().unwrap().clone();
            if let Ok(fresh) = Client::connect(client_options(seeds)).await {
                *client = fresh;
            }
        }
    }
}

/// Enqueues unique jobs, each with its payload as idempotency key, until
/// `stop`. After an unknown outcome, a retrying producer sends the same key
/// again; the others move on.
pub async fn produce(
    name: String,
    mut client: Client,
    seeds: Seeds,
    recorder: Arc<Recorder>,
    retry_unknown: bool,
    seed: u64,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut reconnect = Reconnect {
        seeds,
        failures_in_a_row: 0,
    };
    let mut seq = 0u64;
    while !stop.is_cancelled() {
        seq += 1;
        let key = format!("{name}-{seq}");
        let attempts = if retry_unknown { 3 } else { 1 };
        for _ in 0..attempts {
            recorder.record(Event::EnqueueInvoke {
                process: name.clone(),
                key: key.clone(),
            });
            let mut job = NewJob::new(QUEUE, key.clone());
            job.max_attempts = ATTEMPTS_MAX;
            job.idempotency_key = Some(key.clone().into());
            let result = client.enqueue_job(job).await;
            reconnect.after(result.is_ok(), &mut client).await;
            match result {
                Ok(enqueued) => {
                    recorder.record(Event::EnqueueOk {
                        process: name.clone(),
                        key: key.clone(),
                        id: enqueued.id.0,
                        duplicate: enqueued.duplicate,
                    });
                    break;
                }
                Err(error) if definitely_not_applied(&error) => {
                    recorder.record(Event::EnqueueFail {
                        process: name.clone(),
                        key: key.clone(),
                        error: error.to_string(),
                    });
                    break;
                }
                Err(error) => {
                    recorder.record(Event::EnqueueUnknown {
                        process: name.clone(),
                        key: key.clone(),
                        error: error.to_string(),
                    });
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
    }
}

/// Claims and acks jobs until `stop`. Some leases are dropped at once (a
/// worker that crashed mid-job) and some are acked only after they ran out,
/// unless `careful` is set (the final drain).
pub async fn work(
    name: String,
    mut client: Client,
    seeds: Seeds,
    recorder: Arc<Recorder>,
    seed: u64,
    careful: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut reconnect = Reconnect {
        seeds,
        failures_in_a_row: 0,
    };
    let mut late_acks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    while !stop.is_cancelled() {
        recorder.record(Event::ClaimInvoke {
            process: name.clone(),
        });
        let result = client.claim(&[QUEUE], 2, LEASE_MS, CLAIM_WAIT_MS).await;
        reconnect.after(result.is_ok(), &mut client).await;
        let claimed = match result {
            Ok(claimed) => claimed,
            Err(error) => {
                recorder.record(Event::ClaimFail {
                    process: name.clone(),
                    error: error.to_string(),
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        recorder.record(Event::ClaimOk {
            process: name.clone(),
            lease_ms: LEASE_MS,
            jobs: claimed
                .iter()
                .map(|job| Delivery {
                    id: job.id.0,
                    token: job.token.0,
                    payload: String::from_utf8_lossy(&job.payload).into_owned(),
                    deadline_ms: job.lease_deadline_ms,
                    attempt: job.attempt,
                })
                .collect(),
        });
        for job in claimed {
            let careful = careful.load(Ordering::SeqCst);
            let roll: f64 = rng.random();
            if !careful && roll < 0.07 {
                recorder.record(Event::Abandon {
                    process: name.clone(),
                    id: job.id.0,
                    token: job.token.0,
                    how: "crash".to_string(),
                });
                continue;
            }
            if !careful && roll < 0.12 {
                recorder.record(Event::Abandon {
                    process: name.clone(),
                    id: job.id.0,
                    token: job.token.0,
                    how: "expire".to_string(),
                });
                // A slow handler: it acks after its lease ran out, while
                // this worker goes on claiming.
                let (name, client, recorder) =
                    (name.clone(), client.clone(), Arc::clone(&recorder));
                late_acks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(LEASE_MS + 500)).await;
                    ack(&name, &client, &recorder, job.id, job.token).await;
                }));
                continue;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
            ack(&name, &client, &recorder, job.id, job.token).await;
        }
        late_acks.retain(|task| !task.is_finished());
    }
    for task in late_acks {
        let _ = task.await;
    }
}

async fn ack(name: &str, client: &Client, recorder: &Recorder, id: JobId, token: FencingToken) {
    let process = name.to_string();
    recorder.record(Event::AckInvoke {
        process: process.clone(),
        id: id.0,
        token: token.0,
    });
    let event = match client.ack(id, token).await {
        Ok(_) => Event::AckOk {
            process,
            id: id.0,
            token: token.0,
        },
        Err(error) if definitely_not_applied(&error) => Event::AckFail {
            process,
            id: id.0,
            token: token.0,
            error: error.to_string(),
        },
        Err(error) => Event::AckUnknown {
            process,
            id: id.0,
            token: token.0,
            error: error.to_string(),
        },
    };
    recorder.record(event);
}

/// Jobs left in the queue (ready, scheduled, leased or dead) as the leader
/// sees it.
pub async fn jobs_left(client: &Client) -> Result<u64, ClientError> {
    let stats = client.stats(Some(QUEUE), false).await?;
    Ok(stats
        .iter()
        .map(|(_, s)| s.ready + s.scheduled + s.leased + s.dead)
        .sum())
}
