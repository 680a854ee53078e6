//! The client library: [`Client`] for producers and operators, [`Worker`]
//! for processing jobs.
//!
//! A client finds the leader from a list of seed addresses, follows
//! `NotLeader` redirects, reconnects, and retries with backoff. Each new
//! connection asks the node for the members' client addresses, so a client
//! still finds the cluster after membership changes replaced its seeds. Every enqueue
//! carries a client-session stamp (Raft thesis §6.3) that serves as its
//! idempotency key: a retry after an unknown outcome (a broken connection, a
//! leader change) returns the original job ids instead of adding jobs again.
//! Commands that are not idempotent by themselves (claim, ack, nack, extend,
//! cancel...) are retried only when they certainly did not reach the
//! cluster; otherwise the call fails with [`ClientError::OutcomeUnknown`].

mod connection;
mod error;
mod session;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

pub use self::connection::ConnectSettings;
use self::connection::Connection;
pub use self::error::ClientError;
use self::session::Session;
pub use self::worker::{HandlerError, Job, Worker, WorkerBuilder, WorkerReport};
use crate::config::{DEFAULT_CLIENT_FRAME_MAX_BYTES, DEFAULT_CLUSTER_ID};
use crate::protocol::client::{ClusterStatus, RequestBody, ResponseBody, ServiceError};
use crate::queue::{
    Ack, Acked, Cancelled, Claim, ClaimedJob, DeadSelection, Enqueue, Enqueued, Extend, Extended,
    FencingToken, JobId, JobInfo, Nack, Nacked, NewJob, Outcome, QueueError, QueueStats,
};

/// First delay between retries; it doubles up to [`RETRY_BACKOFF_MAX_MS`].
pub const RETRY_BACKOFF_MIN_MS: u64 = 20;
/// Longest delay between retries.
pub const RETRY_BACKOFF_MAX_MS: u64 = 500;
/// Delay between retries while the cluster elects a leader.
pub const ELECTION_POLL_MS: u64 = 25;
/// How long a node may keep answering that it knows no leader before the
/// client asks another one. An election ends sooner; a node that knows no
/// leader for longer is cut off or no longer a member.
pub const NO_LEADER_SWITCH_MS: u64 = 1_000;
/// Most member addresses a client remembers beyond its seeds.
const LEARNED_ADDRESSES_MAX: usize = 64;

/// How a client connects and retries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Addresses of some nodes (`host:port` of their client listeners).
    pub seeds: Vec<String>,
    /// Connection and authentication settings.
    pub connect: ConnectSettings,
    /// Longest wait for one response (a long-poll claim adds its wait).
    pub request_timeout: Duration,
    /// Longest a call keeps retrying before it gives up.
    pub retry_deadline: Duration,
}

impl ClientOptions {
    /// Options for the given seed addresses with defaults for the rest.
    pub fn new(seeds: impl IntoIterator<Item = impl Into<String>>) -> ClientOptions {
        ClientOptions {
            seeds: seeds.into_iter().map(Into::into).collect(),
            connect: ConnectSettings {
                cluster_id: DEFAULT_CLUSTER_ID.to_string(),
                client_name: format!("raftq-client@{}", std::process::id()),
                client_secret: None,
                frame_max_bytes: DEFAULT_CLIENT_FRAME_MAX_BYTES,
                connect_timeout: Duration::from_secs(5),
            },
            request_timeout: Duration::from_secs(10),
            retry_deadline: Duration::from_secs(30),
        }
    }
}

/// Whether a request may be sent again after an unknown outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Applying it twice is harmless (reads) or prevented (session stamps).
    Always,
    /// Only when it certainly was not applied.
    WhenNotApplied,
}

struct Inner {
    options: ClientOptions,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    leader_hint: Mutex<Option<String>>,
    /// Members' client addresses learned from the cluster, beyond the seeds.
    learned: Mutex<Vec<String>>,
    next_seed: AtomicUsize,
    next_request_id: AtomicU64,
    session: Session,
}

impl Inner {
    /// The `next`-th address to try, cycling over the seeds and then the
    /// learned members that are not seeds.
    fn address(&self, next: usize) -> String {
        let seeds = &self.options.seeds;
        let learned = self.learned.lock().expect("learned lock");
        let extra: Vec<&String> = learned
            .iter()
            .filter(|address| !seeds.contains(address))
            .collect();
        let index = next % (seeds.len() + extra.len());
        match seeds.get(index) {
            Some(seed) => seed.clone(),
            None => extra[index - seeds.len()].clone(),
        }
    }

    /// Remembers the members' client addresses a node reported, newest
    /// first, keeping earlier ones while there is room (a node cut off from
    /// the others reports only itself).
    fn learn(&self, status: &ClusterStatus) {
        let mut learned = self.learned.lock().expect("learned lock");
        let mut merged: Vec<String> = status.client_addresses.values().cloned().collect();
        for address in learned.drain(..) {
            if !merged.contains(&address) {
                merged.push(address);
            }
        }
        merged.truncate(LEARNED_ADDRESSES_MAX);
        *learned = merged;
    }
}

/// A connection to a raftq cluster. Cheap to clone; clones share the
/// connection and the session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects to the cluster through one of the seeds.
    pub async fn connect(options: ClientOptions) -> Result<Client, ClientError> {
        if options.seeds.is_empty() {
            return Err(ClientError::Invalid("no seed addresses given".to_string()));
        }
        let client = Client {
            inner: Arc::new(Inner {
                options,
                connection: tokio::sync::Mutex::new(None),
                leader_hint: Mutex::new(None),
                learned: Mutex::new(Vec::new()),
                next_seed: AtomicUsize::new(0),
                next_request_id: AtomicU64::new(1),
                session: Session::new(),
            }),
        };
        client.cluster_status().await?;
        Ok(client)
    }

    /// Connects to the seeds with default options.
    pub async fn connect_to(
        seeds: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Client, ClientError> {
        Client::connect(ClientOptions::new(seeds)).await
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    async fn connection(&self) -> Result<Arc<Connection>, ClientError> {
        let mut current = self.inner.connection.lock().await;
        if let Some(connection) = current.as_ref()
            && !connection.is_closed()
        {
            return Ok(Arc::clone(connection));
        }
        let hint = self.inner.leader_hint.lock().expect("hint lock").take();
        let address = match hint {
            Some(address) => address,
            None => {
                let next = self.inner.next_seed.fetch_add(1, Ordering::Relaxed);
                self.inner.address(next)
            }
        };
        let connection = Connection::open(&address, &self.inner.options.connect).await?;
        *current = Some(Arc::clone(&connection));
        self.learn_members(&connection);
        Ok(connection)
    }

    /// Asks a new connection's node for the members' client addresses, in
    /// the background so the request that opened it does not wait.
    fn learn_members(&self, connection: &Arc<Connection>) {
        let inner = Arc::downgrade(&self.inner);
        let connection = Arc::clone(connection);
        let id = self.inner.next_request_id.fetch_add(1, Ordering::Relaxed);
        let timeout = self.inner.options.connect.connect_timeout;
        tokio::spawn(async move {
            if let Ok(Ok(ResponseBody::ClusterStatus(status))) = connection
                .call(id, RequestBody::ClusterStatus, timeout)
                .await
                && let Some(inner) = inner.upgrade()
            {
                inner.learn(&status);
            }
        });
    }

    /// Closes `failed` and forgets it if it is still the current connection,
    /// so the next request goes to the leader hint if there is one, else to
    /// the next address in turn. A newer connection, opened meanwhile by
    /// another request, stays.
    async fn forget_connection(&self, failed: &Arc<Connection>) {
        let mut current = self.inner.connection.lock().await;
        if current
            .as_ref()
            .is_some_and(|connection| Arc::ptr_eq(connection, failed))
        {
            failed.close();
            *current = None;
        }
    }

    /// Sends a request to the leader, following redirects and retrying as
    /// `retry` allows, until the retry deadline.
    async fn request(
        &self,
        body: RequestBody,
        retry: Retry,
        extra_wait: Duration,
    ) -> Result<ResponseBody, ClientError> {
        let deadline = tokio::time::Instant::now() + self.inner.options.retry_deadline + extra_wait;
        let timeout = self.inner.options.request_timeout + extra_wait;
        let mut backoff_ms = RETRY_BACKOFF_MIN_MS;
        let mut last_error;
        // Since when the nodes asked have answered that they know no leader.
        let mut no_leader_since: Option<tokio::time::Instant> = None;
        loop {
            let mut electing = false;
            let (attempt, answered_by) = match self.connection().await {
                Ok(connection) => {
                    let id = self.inner.next_request_id.fetch_add(1, Ordering::Relaxed);
                    let result = connection.call(id, self.refresh(&body), timeout).await;
                    // A request refused before it was sent says nothing
                    // about the connection.
                    if result
                        .as_ref()
                        .is_err_and(|error| !matches!(error, ClientError::Invalid(_)))
                    {
                        self.forget_connection(&connection).await;
                    }
                    (result, Some(connection))
                }
                Err(error) => (Err(error), None),
            };
            match attempt {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(ServiceError::NotLeader {
                    leader_address,
                    leader_id,
                })) => {
                    last_error = format!("no leader reachable (last hint: node {leader_id:?})");
                    match leader_address {
                        Some(address) => {
                            *self.inner.leader_hint.lock().expect("hint lock") = Some(address);
                            if let Some(connection) = &answered_by {
                                self.forget_connection(connection).await;
                            }
                            // A known leader is worth trying at once.
                            if tokio::time::Instant::now() < deadline {
                                continue;
                            }
                        }
                        // An election is under way: it ends within an
                        // election timeout or two, so poll briskly instead of
                        // backing off past the moment a leader appears. A
                        // node that stays leaderless longer is cut off or was
                        // removed; another node may know the leader.
                        None => {
                            electing = true;
                            let now = tokio::time::Instant::now();
                            let since = *no_leader_since.get_or_insert(now);
                            if now.duration_since(since)
                                >= Duration::from_millis(NO_LEADER_SWITCH_MS)
                                && let Some(connection) = &answered_by
                            {
                                self.forget_connection(connection).await;
                                no_leader_since = None;
                            }
                        }
                    }
                }
                Ok(Err(error)) if error.is_retryable() => last_error = error.to_string(),
                Ok(Err(ServiceError::OutcomeUnknown)) if retry == Retry::Always => {
                    last_error = ServiceError::OutcomeUnknown.to_string();
                }
                Ok(Err(ServiceError::OutcomeUnknown)) => {
                    return Err(ClientError::OutcomeUnknown(
                        ServiceError::OutcomeUnknown.to_string(),
                    ));
                }
                Ok(Err(error)) => return Err(ClientError::Service(error)),
                // Sending it again would be refused the same way.
                Err(error @ ClientError::Invalid(_)) => return Err(error),
                Err(error) if error.definitely_not_applied() || retry == Retry::Always => {
                    last_error = error.to_string();
                }
                Err(error) => return Err(ClientError::OutcomeUnknown(error.to_string())),
            }
            let delay_ms = if electing {
                ELECTION_POLL_MS
            } else {
                backoff_ms
            };
            if tokio::time::Instant::now() + Duration::from_millis(delay_ms) >= deadline {
                return Err(ClientError::Unavailable(last_error));
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if !electing {
                backoff_ms = (backoff_ms * 2).min(RETRY_BACKOFF_MAX_MS);
            }
        }
    }

    /// Refreshes what must be current on every try: the lowest unanswered
    /// sequence number of an enqueue's session stamp.
    fn refresh(&self, body: &RequestBody) -> RequestBody {
        match body {
            RequestBody::Enqueue(enqueue) => {
                let mut enqueue = enqueue.clone();
                if let Some(stamp) = &mut enqueue.session {
                    stamp.lowest_unanswered_seq = self.inner.session.lowest_unanswered(stamp.seq);
                }
                RequestBody::Enqueue(enqueue)
            }
            other => other.clone(),
        }
    }

    async fn command(&self, body: RequestBody, retry: Retry) -> Result<Outcome, ClientError> {
        match self.request(body, retry, Duration::ZERO).await? {
            ResponseBody::Outcome(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// Enqueues one job with default options into `queue`; returns its id.
    pub async fn enqueue(
        &self,
        queue: &str,
        payload: impl Into<Bytes>,
    ) -> Result<JobId, ClientError> {
        let enqueued = self.enqueue_job(NewJob::new(queue, payload)).await?;
        Ok(enqueued.id)
    }

    /// Enqueues one job with all its options.
    pub async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued, ClientError> {
        let mut results = self.enqueue_batch(vec![job]).await?;
        Ok(results.pop().expect("one result per job")?)
    }

    /// Enqueues a batch of jobs in one round trip. Each job gets its own
    /// result: a bad job does not stop the others.
    pub async fn enqueue_batch(
        &self,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Result<Enqueued, QueueError>>, ClientError> {
        let count = jobs.len();
        let mut attempts_left = 2;
        loop {
            let stamp = self.inner.session.begin();
            let body = RequestBody::Enqueue(Enqueue {
                jobs: jobs.clone(),
                session: Some(stamp),
            });
            let result = self.command(body, Retry::Always).await;
            self.inner.session.finish(stamp.seq);
            match result? {
                Outcome::Enqueue(Ok(results)) if results.len() == count => return Ok(results),
                Outcome::Enqueue(Ok(results)) => {
                    return Err(ClientError::Invalid(format!(
                        "the node answered {} results for {count} jobs",
                        results.len()
                    )));
                }
                Outcome::Enqueue(Err(QueueError::SessionExpired { .. })) if attempts_left > 0 => {
                    // The cluster forgot this client's session, which happens
                    // after it sat idle past the session window. A try of
                    // this request that landed would have refreshed the
                    // session, so none did: a new session may send it again.
                    self.inner.session.renew();
                    attempts_left -= 1;
                }
                Outcome::Enqueue(Err(error)) => return Err(error.into()),
                other => return Err(unexpected_outcome(other)),
            }
        }
    }

    /// Leases up to `max_jobs` jobs from `queues` (in that order) for
    /// `lease_ms`, waiting up to `wait_ms` for one to become ready.
    pub async fn claim(
        &self,
        queues: &[&str],
        max_jobs: u32,
        lease_ms: u64,
        wait_ms: u64,
    ) -> Result<Vec<ClaimedJob>, ClientError> {
        let body = RequestBody::Claim {
            claim: Claim {
                queues: queues.iter().map(|queue| queue.to_string()).collect(),
                max_jobs,
                lease_ms,
                worker: Some(self.inner.options.connect.client_name.clone()),
            },
            wait_ms,
        };
        match self
            .request(body, Retry::WhenNotApplied, Duration::from_millis(wait_ms))
            .await?
        {
            ResponseBody::Outcome(Outcome::Claim(result)) => Ok(result?),
            other => Err(unexpected(other)),
        }
    }

    /// Finishes a leased job.
    pub async fn ack(&self, id: JobId, token: FencingToken) -> Result<Acked, ClientError> {
        match self
            .command(RequestBody::Ack(Ack { id, token }), Retry::WhenNotApplied)
            .await?
        {
            Outcome::Ack(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Finishes several leased jobs in one round trip; one result per job,
    /// in order.
    pub async fn ack_batch(
        &self,
        jobs: &[(JobId, FencingToken)],
    ) -> Result<Vec<Result<Acked, QueueError>>, ClientError> {
        let acks = jobs.iter().map(|&(id, token)| Ack { id, token }).collect();
        match self
            .command(RequestBody::AckBatch(acks), Retry::WhenNotApplied)
            .await?
        {
            Outcome::AckBatch(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Reports a failed attempt; the job is retried after its backoff (or
    /// `retry_delay_ms`), or goes dead when `dead` or out of attempts.
    pub async fn nack(
        &self,
        id: JobId,
        token: FencingToken,
        error: impl Into<String>,
        retry_delay_ms: Option<u64>,
        dead: bool,
    ) -> Result<Nacked, ClientError> {
        let body = RequestBody::Nack(Nack {
            id,
            token,
            error: error.into(),
            retry_delay_ms,
            dead,
        });
        match self.command(body, Retry::WhenNotApplied).await? {
            Outcome::Nack(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Extends a lease to `lease_ms` from now.
    pub async fn extend(
        &self,
        id: JobId,
        token: FencingToken,
        lease_ms: u64,
    ) -> Result<Extended, ClientError> {
        let body = RequestBody::Extend(Extend {
            id,
            token,
            lease_ms,
        });
        match self.command(body, Retry::WhenNotApplied).await? {
            Outcome::Extend(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Removes a job in any state.
    pub async fn cancel(&self, id: JobId) -> Result<Cancelled, ClientError> {
        match self
            .command(RequestBody::Cancel(id), Retry::WhenNotApplied)
            .await?
        {
            Outcome::Cancel(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Puts dead jobs back to ready; returns how many.
    pub async fn requeue_dead(&self, selection: DeadSelection) -> Result<u64, ClientError> {
        match self
            .command(RequestBody::RequeueDead(selection), Retry::WhenNotApplied)
            .await?
        {
            Outcome::RequeueDead(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Removes dead jobs; returns how many.
    pub async fn delete_dead(&self, selection: DeadSelection) -> Result<u64, ClientError> {
        match self
            .command(RequestBody::DeleteDead(selection), Retry::WhenNotApplied)
            .await?
        {
            Outcome::DeleteDead(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Stops claims from taking the queue's jobs.
    pub async fn pause(&self, queue: &str) -> Result<(), ClientError> {
        match self
            .command(RequestBody::Pause(queue.to_string()), Retry::Always)
            .await?
        {
            Outcome::Pause(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Undoes a pause.
    pub async fn resume(&self, queue: &str) -> Result<(), ClientError> {
        match self
            .command(RequestBody::Resume(queue.to_string()), Retry::Always)
            .await?
        {
            Outcome::Resume(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Removes the queue's ready and scheduled jobs; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64, ClientError> {
        match self
            .command(RequestBody::Purge(queue.to_string()), Retry::WhenNotApplied)
            .await?
        {
            Outcome::Purge(result) => Ok(result?),
            other => Err(unexpected_outcome(other)),
        }
    }

    /// Statistics of one queue or all, linearizable unless `stale_ok`.
    pub async fn stats(
        &self,
        queue: Option<&str>,
        stale_ok: bool,
    ) -> Result<Vec<(String, QueueStats)>, ClientError> {
        let body = RequestBody::Stats {
            queue: queue.map(str::to_string),
            stale_ok,
        };
        match self.request(body, Retry::Always, Duration::ZERO).await? {
            ResponseBody::Stats(stats) => Ok(stats),
            other => Err(unexpected(other)),
        }
    }

    /// One job's details, or `None` if there is no such job.
    pub async fn job(&self, id: JobId, stale_ok: bool) -> Result<Option<JobInfo>, ClientError> {
        match self
            .request(
                RequestBody::GetJob { id, stale_ok },
                Retry::Always,
                Duration::ZERO,
            )
            .await?
        {
            ResponseBody::Job(job) => Ok(job),
            other => Err(unexpected(other)),
        }
    }

    /// A page of a queue's dead jobs after `after`.
    pub async fn list_dead(
        &self,
        queue: &str,
        after: Option<JobId>,
        limit: u32,
    ) -> Result<Vec<JobInfo>, ClientError> {
        let body = RequestBody::ListDead {
            queue: queue.to_string(),
            after,
            limit,
            stale_ok: false,
        };
        match self.request(body, Retry::Always, Duration::ZERO).await? {
            ResponseBody::Dead(jobs) => Ok(jobs),
            other => Err(unexpected(other)),
        }
    }

    /// The cluster as the node this client is connected to sees it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        match self
            .request(RequestBody::ClusterStatus, Retry::Always, Duration::ZERO)
            .await?
        {
            ResponseBody::ClusterStatus(status) => {
                self.inner.learn(&status);
                Ok(status)
            }
            other => Err(unexpected(other)),
        }
    }

    /// The status of every node reachable from the seeds and the peers they know.
    pub async fn node_status(
        address: &str,
        settings: &ConnectSettings,
    ) -> Result<ClusterStatus, ClientError> {
        let connection = Connection::open(address, settings).await?;
        let result = connection
            .call(0, RequestBody::ClusterStatus, settings.connect_timeout)
            .await;
        connection.close();
        match result? {
            Ok(ResponseBody::ClusterStatus(status)) => Ok(status),
            Ok(other) => Err(unexpected(other)),
            Err(error) => Err(ClientError::Service(error)),
        }
    }

    async fn admin(&self, body: RequestBody) -> Result<(), ClientError> {
        match self
            .request(body, Retry::WhenNotApplied, Duration::ZERO)
            .await?
        {
            ResponseBody::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Hands leadership to voter `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), ClientError> {
        self.admin(RequestBody::TransferLeader { to }).await
    }

    /// Adds a non-voting member.
    pub async fn add_learner(&self, id: u64, peer_address: &str) -> Result<(), ClientError> {
        let body = RequestBody::AddLearner {
            id,
            peer_address: peer_address.to_string(),
        };
        self.admin(body).await
    }

    /// Makes a caught-up learner a voter.
    pub async fn promote(&self, id: u64) -> Result<(), ClientError> {
        self.admin(RequestBody::Promote { id }).await
    }

    /// Removes a member.
    pub async fn remove(&self, id: u64) -> Result<(), ClientError> {
        self.admin(RequestBody::Remove { id }).await
    }
}

fn unexpected(body: ResponseBody) -> ClientError {
    ClientError::Invalid(format!("unexpected response from the node: {body:?}"))
}

fn unexpected_outcome(outcome: Outcome) -> ClientError {
    ClientError::Invalid(format!("unexpected outcome from the node: {outcome:?}"))
}
