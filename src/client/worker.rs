//! The worker: claims jobs, runs a handler per queue, keeps leases alive,
//! and acks or nacks.
//!
//! ```no_run
//! # async fn example() -> Result<(), raftq::client::ClientError> {
//! use raftq::client::{Client, Worker};
//! let client = Client::connect_to(["127.0.0.1:7410"]).await?;
//! let worker = Worker::builder(client)
//!     .handle("emails", |job| async move {
//!         println!("sending {:?}", job.payload);
//!         Ok(())
//!     })
//!     .concurrency(8)
//!     .build();
//! worker.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::{Client, ClientError};
use crate::queue::limits::ACK_BATCH_MAX;
use crate::queue::{Acked, ClaimedJob, FencingToken, JobId, QueueError};

/// The error a handler returns; anything that implements `Error` converts.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type Handler = Arc<
    dyn Fn(Job) -> Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>> + Send + Sync,
>;

/// A job handed to a handler.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's id.
    pub id: JobId,
    /// Its queue.
    pub queue: String,
    /// Its payload.
    pub payload: Bytes,
    /// Which delivery this is, 1 for the first.
    pub attempt: u32,
    /// Deliveries before the job goes dead.
    pub max_attempts: u32,
    /// The lease's fencing token.
    pub token: FencingToken,
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs whose handler succeeded and whose ack was accepted.
    pub acked: u64,
    /// Jobs whose handler failed or panicked and that were nacked.
    pub nacked: u64,
    /// Jobs whose ack or nack was refused because the lease was lost.
    pub leases_lost: u64,
    /// Jobs still running at the shutdown timeout, nacked for immediate retry.
    pub abandoned: u64,
}

/// Builds a [`Worker`].
pub struct WorkerBuilder {
    client: Client,
    handlers: BTreeMap<String, Handler>,
    order: Vec<String>,
    concurrency: usize,
    lease_ms: u64,
    claim_wait_ms: u64,
    shutdown_timeout: Duration,
}

impl WorkerBuilder {
    /// Registers the handler for `queue`. Queues are claimed from in the
    /// order their handlers were registered.
    pub fn handle<F, Fut>(mut self, queue: &str, handler: F) -> WorkerBuilder
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |job| Box::pin(handler(job)));
        if self.handlers.insert(queue.to_string(), handler).is_none() {
            self.order.push(queue.to_string());
        }
        self
    }

    /// Jobs run at once at most (default 10).
    pub fn concurrency(mut self, concurrency: usize) -> WorkerBuilder {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Lease of each claimed job (default 30 s); it is extended in the
    /// background every third of it while the handler runs.
    pub fn lease_ms(mut self, lease_ms: u64) -> WorkerBuilder {
        self.lease_ms = lease_ms;
        self
    }

    /// Longest a claim waits for a job before it is sent again (default 5 s).
    pub fn claim_wait_ms(mut self, claim_wait_ms: u64) -> WorkerBuilder {
        self.claim_wait_ms = claim_wait_ms;
        self
    }

    /// How long shutdown waits for running jobs (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> WorkerBuilder {
        self.shutdown_timeout = timeout;
        self
    }

    /// The worker.
    pub fn build(self) -> Worker {
        Worker {
            client: self.client,
            handlers: self.handlers,
            order: self.order,
            concurrency: self.concurrency,
            lease_ms: self.lease_ms,
            claim_wait_ms: self.claim_wait_ms,
            shutdown_timeout: self.shutdown_timeout,
        }
    }
}

/// Processes jobs from one or more queues.
pub struct Worker {
    client: Client,
    handlers: BTreeMap<String, Handler>,
    order: Vec<String>,
    concurrency: usize,
    lease_ms: u64,
    claim_wait_ms: u64,
    shutdown_timeout: Duration,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    nacked: AtomicU64,
    leases_lost: AtomicU64,
}

impl Worker {
    /// Starts building a worker on `client`.
    pub fn builder(client: Client) -> WorkerBuilder {
        WorkerBuilder {
            client,
            handlers: BTreeMap::new(),
            order: Vec::new(),
            concurrency: 10,
            lease_ms: 30_000,
            claim_wait_ms: 5_000,
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    /// Runs until `shutdown` completes: then it stops claiming, waits for
    /// running jobs up to the shutdown timeout, and nacks what is left so it
    /// is delivered again at once.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerReport, ClientError> {
        if self.order.is_empty() {
            return Err(ClientError::Invalid(
                "the worker has no handlers".to_string(),
            ));
        }
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let counters = Arc::new(Counters::default());
        let mut running: JoinSet<()> = JoinSet::new();
        let mut in_flight: BTreeMap<tokio::task::Id, (JobId, FencingToken)> = BTreeMap::new();
        let queues: Vec<&str> = self.order.iter().map(String::as_str).collect();
        let acker = Acker::start(self.client.clone());
        let mut failures: u32 = 0;
        tokio::pin!(shutdown);
        loop {
            // Reap finished jobs so the bookkeeping stays small.
            while let Some(finished) = running.try_join_next_with_id() {
                if let Ok((id, ())) = finished {
                    in_flight.remove(&id);
                }
            }
            let free = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&slots).acquire_many_owned(1) => permit,
            };
            let Ok(first_permit) = free else { break };
            let available = 1 + slots.available_permits() as u32;
            let claim = self.client.claim(
                &queues,
                available.min(crate::queue::limits::CLAIM_JOBS_MAX),
                self.lease_ms,
                self.claim_wait_ms,
            );
            let claimed = tokio::select! {
                _ = &mut shutdown => break,
                claimed = claim => claimed,
            };
            let jobs = match claimed {
                Ok(jobs) => {
                    failures = 0;
                    jobs
                }
                Err(error @ (ClientError::Queue(_) | ClientError::Invalid(_))) => {
                    return Err(error);
                }
                Err(error) => {
                    // The cluster is unavailable or the claim's outcome is
                    // unknown (a lease may have been granted that nobody
                    // will use; it expires and the job comes back). Pause
                    // before trying again.
                    failures = failures.saturating_add(1);
                    warn!(%error, "claim failed; retrying");
                    let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            };
            let mut first_permit = Some(first_permit);
            for claimed in jobs {
                let permit = match first_permit.take() {
                    Some(permit) => permit,
                    None => Arc::clone(&slots)
                        .try_acquire_owned()
                        .expect("the claim asked for no more jobs than free slots"),
                };
                let handler = Arc::clone(&self.handlers[&claimed.queue]);
                let identity = (claimed.id, claimed.token);
                let task = running.spawn(run_job(
                    self.client.clone(),
                    acker.clone(),
                    handler,
                    claimed,
                    self.lease_ms,
                    Arc::clone(&counters),
                    permit,
                ));
                in_flight.insert(task.id(), identity);
            }
        }
        debug!(
            running = running.len(),
            "worker stopping; waiting for running jobs"
        );
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while let Some(finished) = running.join_next_with_id().await {
                if let Ok((id, ())) = finished {
                    in_flight.remove(&id);
                }
            }
        })
        .await;
        let mut abandoned = 0;
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
            for (_, (id, token)) in std::mem::take(&mut in_flight) {
                abandoned += 1;
                let nacked = self
                    .client
                    .nack(
                        id,
                        token,
                        "the worker shut down before the job finished",
                        Some(0),
                        false,
                    )
                    .await;
                if let Err(error) = nacked {
                    warn!(%id, %error, "could not hand back an unfinished job; its lease will expire");
                }
            }
        }
        Ok(WorkerReport {
            acked: counters.acked.load(Ordering::Relaxed),
            nacked: counters.nacked.load(Ordering::Relaxed),
            leases_lost: counters.leases_lost.load(Ordering::Relaxed),
            abandoned,
        })
    }
}

type AckReply = oneshot::Sender<Result<Acked, ClientError>>;

/// Sends the acks of jobs that finish at about the same time in one request:
/// it takes whatever acks are waiting when it is free, so a busy worker
/// sends few large batches and an idle one acks each job at once.
#[derive(Clone)]
struct Acker {
    requests: mpsc::Sender<(JobId, FencingToken, AckReply)>,
}

impl Acker {
    fn start(client: Client) -> Acker {
        let (requests, mut waiting) =
            mpsc::channel::<(JobId, FencingToken, AckReply)>(ACK_BATCH_MAX * 4);
        tokio::spawn(async move {
            while let Some(first) = waiting.recv().await {
                let mut batch = vec![first];
                while batch.len() < ACK_BATCH_MAX {
                    match waiting.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let jobs: Vec<(JobId, FencingToken)> =
                    batch.iter().map(|(id, token, _)| (*id, *token)).collect();
                match client.ack_batch(&jobs).await {
                    Ok(results) => {
                        for ((_, _, reply), result) in batch.into_iter().zip(results) {
                            let _ = reply.send(result.map_err(ClientError::from));
                        }
                    }
                    Err(error) => {
                        for (_, _, reply) in batch {
                            let _ = reply.send(Err(error.clone()));
                        }
                    }
                }
            }
        });
        Acker { requests }
    }

    async fn ack(&self, id: JobId, token: FencingToken) -> Result<Acked, ClientError> {
        let (reply, answer) = oneshot::channel();
        let gone = || ClientError::Invalid("the worker's acker stopped".to_string());
        self.requests
            .send((id, token, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Runs one job: the handler in its own task (so a panic is caught), the
/// lease extended beside it, then ack or nack.
async fn run_job(
    client: Client,
    acker: Acker,
    handler: Handler,
    claimed: ClaimedJob,
    lease_ms: u64,
    counters: Arc<Counters>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let job = Job {
        id: claimed.id,
        queue: claimed.queue,
        payload: claimed.payload,
        attempt: claimed.attempt,
        max_attempts: claimed.max_attempts,
        token: claimed.token,
    };
    let (id, token) = (job.id, job.token);
    let mut work = tokio::spawn(handler(job));
    // If this task is aborted at shutdown, the handler must stop too.
    let _stop_handler = AbortOnDrop(work.abort_handle());
    let mut heartbeat = tokio::time::interval(Duration::from_millis((lease_ms / 3).max(50)));
    heartbeat.tick().await;
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = heartbeat.tick() => {
                match client.extend(id, token, lease_ms).await {
                    Ok(_) => {}
                    Err(ClientError::Queue(QueueError::LeaseLost(_) | QueueError::JobNotFound(_))) => {
                        // Someone else may hold the job now; our result
                        // would be refused anyway.
                        warn!(%id, "lease lost while the job was running");
                    }
                    Err(error) => warn!(%id, %error, "could not extend the lease"),
                }
            }
        }
    };
    let settled = match result {
        Ok(Ok(())) => acker.ack(id, token).await.map(|_| true),
        Ok(Err(error)) => client
            .nack(id, token, error.to_string(), None, false)
            .await
            .map(|_| false),
        Err(join_error) => {
            let message = match join_error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string()),
                Err(_) => "the handler was cancelled".to_string(),
            };
            client
                .nack(
                    id,
                    token,
                    format!("handler panicked: {message}"),
                    None,
                    false,
                )
                .await
                .map(|_| false)
        }
    };
    match settled {
        Ok(true) => {
            counters.acked.fetch_add(1, Ordering::Relaxed);
        }
        Ok(false) => {
            counters.nacked.fetch_add(1, Ordering::Relaxed);
        }
        Err(ClientError::Queue(QueueError::LeaseLost(_) | QueueError::JobNotFound(_))) => {
            counters.leases_lost.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => warn!(%id, %error, "could not settle the job; its lease will expire"),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
