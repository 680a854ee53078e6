//! The job-queue service: client requests in, replicated commands and reads
//! out. It runs the [`JobQueue`] on a [`Node`], parks long-poll claims on the
//! leader until jobs are ready, and answers reads linearizably unless a
//! client accepts a stale answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::CLAIM_WAIT_MAX_MS;
use crate::metrics::{self as names, QueueLabels};
use crate::node::clock::Clock;
use crate::node::{AdminOp, Node, NodeError, StateMachine};
use crate::protocol::client::{
    ClusterStatus, LIST_PAGE_MAX, RequestBody, ResponseBody, ServiceError,
};
use crate::queue::{FrozenQueue, JobQueue, Limits, Op, Outcome, QueueError};
use crate::raft::Role;

impl StateMachine for JobQueue {
    type Command = Op;
    type Outcome = Outcome;

    fn empty() -> Self {
        JobQueue::new()
    }

    fn apply(&mut self, now_ms: u64, op: &Op) -> Outcome {
        self.apply_op(now_ms, op)
    }

    fn time_advance_command() -> Op {
        Op::Tick
    }

    fn next_wakeup_ms(&self) -> Option<u64> {
        JobQueue::next_wakeup_ms(self)
    }

    fn last_now_ms(&self) -> u64 {
        JobQueue::last_now_ms(self)
    }

    type Frozen = FrozenQueue;

    fn freeze(&self) -> FrozenQueue {
        JobQueue::freeze(self)
    }

    fn encode(frozen: FrozenQueue) -> Vec<u8> {
        frozen.encode()
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        JobQueue::restore(bytes).map_err(|error| error.to_string())
    }
}

impl From<NodeError> for ServiceError {
    fn from(error: NodeError) -> ServiceError {
        match error {
            NodeError::NotLeader {
                leader_id,
                leader_address,
            } => ServiceError::NotLeader {
                leader_id,
                leader_address,
            },
            NodeError::Dropped(reason) => ServiceError::Dropped(reason),
            NodeError::OutcomeUnknown => ServiceError::OutcomeUnknown,
            NodeError::Overloaded(reason) => ServiceError::Overloaded(reason),
            NodeError::Invalid(reason) => ServiceError::Invalid(reason),
            NodeError::Refused(reason) => ServiceError::Refused(reason),
            NodeError::ShuttingDown => ServiceError::ShuttingDown,
            NodeError::Failed(reason) => ServiceError::Failed(reason),
        }
    }
}

/// A claim parked until one of its queues has a ready job.
struct ParkedClaim {
    queues: Vec<String>,
    wake: oneshot::Sender<()>,
}

/// Long-poll claims waiting on the leader, woken in arrival order.
#[derive(Default)]
struct Parking {
    waiting: Mutex<BTreeMap<u64, ParkedClaim>>,
    next_ticket: Mutex<u64>,
}

impl Parking {
    fn ticket(&self) -> u64 {
        let mut next = self.next_ticket.lock().expect("parking lock");
        *next += 1;
        *next
    }

    fn park(&self, ticket: u64, queues: Vec<String>) -> oneshot::Receiver<()> {
        let (wake, woken) = oneshot::channel();
        let mut waiting = self.waiting.lock().expect("parking lock");
        waiting.insert(ticket, ParkedClaim { queues, wake });
        metrics::gauge!(names::QUEUE_LONG_POLL_WAITERS).set(waiting.len() as f64);
        woken
    }

    fn leave(&self, ticket: u64) {
        let mut waiting = self.waiting.lock().expect("parking lock");
        waiting.remove(&ticket);
        metrics::gauge!(names::QUEUE_LONG_POLL_WAITERS).set(waiting.len() as f64);
    }

    /// How many claims are parked.
    fn len(&self) -> usize {
        self.waiting.lock().expect("parking lock").len()
    }

    /// Wakes parked claims in arrival order, as many per queue as it has
    /// ready jobs, so one new job does not wake every waiting worker.
    fn wake_ready(&self, state: &JobQueue, now_ms: u64) {
        let mut waiting = self.waiting.lock().expect("parking lock");
        if waiting.is_empty() {
            return;
        }
        let mut budget: BTreeMap<String, u64> = BTreeMap::new();
        let mut woken = Vec::new();
        for (ticket, parked) in waiting.iter() {
            for queue in &parked.queues {
                let left = budget.entry(queue.clone()).or_insert_with(|| {
                    match state.stats(queue, now_ms) {
                        Ok(stats) if !stats.paused => stats.ready,
                        _ => 0,
                    }
                });
                if *left > 0 {
                    *left -= 1;
                    woken.push(*ticket);
                    break;
                }
            }
        }
        for ticket in woken {
            if let Some(parked) = waiting.remove(&ticket) {
                let _ = parked.wake.send(());
            }
        }
        metrics::gauge!(names::QUEUE_LONG_POLL_WAITERS).set(waiting.len() as f64);
    }

    /// Wakes every parked claim (leadership changed: they must find out).
    fn wake_all(&self) {
        for (_, parked) in std::mem::take(&mut *self.waiting.lock().expect("parking lock")) {
            let _ = parked.wake.send(());
        }
        metrics::gauge!(names::QUEUE_LONG_POLL_WAITERS).set(0.0);
    }
}

/// A place in the line of parked claims, left when dropped.
struct ParkedGuard<'a> {
    parking: &'a Parking,
    ticket: u64,
    woken: Option<oneshot::Receiver<()>>,
}

impl<'a> ParkedGuard<'a> {
    fn park(parking: &'a Parking, ticket: u64, queues: Vec<String>) -> ParkedGuard<'a> {
        let woken = parking.park(ticket, queues);
        ParkedGuard {
            parking,
            ticket,
            woken: Some(woken),
        }
    }

    /// Resolves when the claim is woken.
    async fn woken(mut self) {
        if let Some(woken) = self.woken.take() {
            let _ = woken.await;
        }
    }
}

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        self.parking.leave(self.ticket);
    }
}

/// The job-queue service of one node.
pub struct QueueService {
    node: Node<JobQueue>,
    clock: Arc<dyn Clock>,
    parking: Arc<Parking>,
    labels: Arc<QueueLabels>,
}

impl QueueService {
    /// A service over `node`, labelling metrics with at most
    /// `metric_queue_labels_max` queue names. It spawns the tasks that wake
    /// parked claims and publish queue gauges; they end with `shutdown`.
    pub fn new(
        node: Node<JobQueue>,
        clock: Arc<dyn Clock>,
        metric_queue_labels_max: usize,
        shutdown: CancellationToken,
    ) -> QueueService {
        let parking = Arc::new(Parking::default());
        let labels = Arc::new(QueueLabels::new(metric_queue_labels_max));
        tokio::spawn(wake_parked_claims(
            node.clone(),
            Arc::clone(&clock),
            Arc::clone(&parking),
            shutdown.clone(),
        ));
        tokio::spawn(publish_queue_metrics(
            node.clone(),
            Arc::clone(&clock),
            Arc::clone(&labels),
            shutdown,
        ));
        QueueService {
            node,
            clock,
            parking,
            labels,
        }
    }

    /// Keeps the replicated queue limits at `desired`: whenever this node
    /// becomes leader, it proposes [`Op::SetLimits`] once the limits applied
    /// by the cluster are known to differ. Limits are replicated state, so a
    /// change in one server's configuration takes effect cluster-wide when
    /// that server next leads. The task ends with `shutdown`.
    pub fn enforce_limits(&self, desired: Limits, shutdown: CancellationToken) {
        tokio::spawn(keep_limits(self.node.clone(), desired, shutdown));
    }

    /// The node this service runs on.
    pub fn node(&self) -> &Node<JobQueue> {
        &self.node
    }

    /// Claims parked waiting for jobs.
    pub fn parked_claims(&self) -> usize {
        self.parking.len()
    }

    /// Answers one client request.
    pub async fn handle(&self, body: RequestBody) -> Result<ResponseBody, ServiceError> {
        match body {
            RequestBody::Enqueue(enqueue) => self.command(Op::Enqueue(enqueue)).await,
            RequestBody::Claim { claim, wait_ms } => self.claim(claim, wait_ms).await,
            RequestBody::Ack(ack) => self.command(Op::Ack(ack)).await,
            RequestBody::AckBatch(acks) => self.command(Op::AckBatch(acks)).await,
            RequestBody::Nack(nack) => self.command(Op::Nack(nack)).await,
            RequestBody::Extend(extend) => self.command(Op::Extend(extend)).await,
            RequestBody::Cancel(id) => self.command(Op::Cancel(id)).await,
            RequestBody::RequeueDead(selection) => self.command(Op::RequeueDead(selection)).await,
            RequestBody::DeleteDead(selection) => self.command(Op::DeleteDead(selection)).await,
            RequestBody::Pause(queue) => self.command(Op::Pause(queue)).await,
            RequestBody::Resume(queue) => self.command(Op::Resume(queue)).await,
            RequestBody::Purge(queue) => self.command(Op::Purge(queue)).await,
            RequestBody::Stats { queue, stale_ok } => {
                self.read(stale_ok).await?;
                let now_ms = self.clock.now_ms();
                let stats = self.node.read_state(|state| match &queue {
                    Some(name) => state
                        .stats(name, now_ms)
                        .map(|stats| vec![(name.clone(), stats)]),
                    None => Ok(state.all_stats(now_ms)),
                });
                stats.map(ResponseBody::Stats).map_err(not_found)
            }
            RequestBody::GetJob { id, stale_ok } => {
                self.read(stale_ok).await?;
                Ok(ResponseBody::Job(
                    self.node.read_state(|state| state.job(id)),
                ))
            }
            RequestBody::ListDead {
                queue,
                after,
                limit,
                stale_ok,
            } => {
                if limit == 0 || limit > LIST_PAGE_MAX {
                    return Err(ServiceError::Invalid(format!(
                        "page size must be between 1 and {LIST_PAGE_MAX}"
                    )));
                }
                self.read(stale_ok).await?;
                self.node
                    .read_state(|state| state.list_dead(&queue, after, limit as usize))
                    .map(ResponseBody::Dead)
                    .map_err(not_found)
            }
            RequestBody::ClusterStatus => Ok(ResponseBody::ClusterStatus(self.cluster_status())),
            RequestBody::TransferLeader { to } => self.admin(AdminOp::TransferLeader(to)).await,
            RequestBody::AddLearner { id, peer_address } => {
                self.admin(AdminOp::AddLearner { id, peer_address }).await
            }
            RequestBody::Promote { id } => self.admin(AdminOp::Promote(id)).await,
            RequestBody::Remove { id } => self.admin(AdminOp::Remove(id)).await,
            // The connection acts on it (see `server`); here nothing waits.
            RequestBody::StopWaiting { .. } => Ok(ResponseBody::Done),
        }
    }

    async fn command(&self, op: Op) -> Result<ResponseBody, ServiceError> {
        let outcome = self.node.propose(&op).await?;
        self.record_latencies(&op, &outcome);
        Ok(ResponseBody::Outcome(outcome))
    }

    /// Records how long jobs waited for a claim and how long workers held
    /// them, from the stamped times in the outcome.
    fn record_latencies(&self, op: &Op, outcome: &Outcome) {
        match (op, outcome) {
            (Op::Claim(claim), Outcome::Claim(Ok(jobs))) => {
                for job in jobs {
                    let claimed_at_ms = job.lease_deadline_ms.saturating_sub(claim.lease_ms);
                    let waited_ms = claimed_at_ms.saturating_sub(job.enqueued_at_ms);
                    metrics::histogram!(names::QUEUE_ENQUEUE_TO_CLAIM, "queue" => self.labels.label(&job.queue))
                        .record(waited_ms as f64 / 1000.0);
                }
            }
            (Op::Ack(_), Outcome::Ack(Ok(acked))) => self.record_ack(acked),
            (Op::AckBatch(_), Outcome::AckBatch(Ok(results))) => {
                for acked in results.iter().flatten() {
                    self.record_ack(acked);
                }
            }
            _ => {}
        }
    }

    async fn admin(&self, op: AdminOp) -> Result<ResponseBody, ServiceError> {
        self.node.admin(op).await?;
        Ok(ResponseBody::Done)
    }

    async fn read(&self, stale_ok: bool) -> Result<(), ServiceError> {
        if !stale_ok {
            self.node.read_barrier().await?;
        }
        Ok(())
    }

    /// A claim that finds nothing parks until one of its queues has a ready
    /// job or its wait ends; then it is proposed again.
    async fn claim(
        &self,
        claim: crate::queue::Claim,
        wait_ms: u64,
    ) -> Result<ResponseBody, ServiceError> {
        let wait_ms = wait_ms.min(CLAIM_WAIT_MAX_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        // The ticket keeps this claim's place in line across re-parking.
        let ticket = self.parking.ticket();
        loop {
            let op = Op::Claim(claim.clone());
            let outcome = self.node.propose(&op).await?;
            self.record_latencies(&op, &outcome);
            let empty = matches!(&outcome, Outcome::Claim(Ok(jobs)) if jobs.is_empty());
            if !empty || tokio::time::Instant::now() >= deadline {
                return Ok(ResponseBody::Outcome(outcome));
            }
            // Park first, then look: a job that arrives between the two
            // wakes the parked claim, so none is missed. The guard leaves
            // the line however this future ends, also when it is dropped
            // because the client went away.
            let parked = ParkedGuard::park(&self.parking, ticket, claim.queues.clone());
            if self.node.read_state(|state| state.has_ready(&claim.queues)) {
                continue;
            }
            tokio::select! {
                biased; // A fixed polling order keeps simulated runs deterministic.
                _ = parked.woken() => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(ResponseBody::Outcome(outcome)),
            }
        }
    }

    fn record_ack(&self, acked: &crate::queue::Acked) {
        let held_ms = self.clock.now_ms().saturating_sub(acked.claimed_at_ms);
        metrics::histogram!(names::QUEUE_CLAIM_TO_ACK, "queue" => self.labels.label(&acked.queue))
            .record(held_ms as f64 / 1000.0);
    }

    fn cluster_status(&self) -> ClusterStatus {
        let status = self.node.status();
        ClusterStatus {
            node_id: status.id,
            role: role_name(status.role).to_string(),
            term: status.term,
            leader_id: status.leader,
            leader_address: status.leader_address,
            commit_index: status.commit,
            applied_index: status.applied,
            snapshot_index: status.snapshot_index,
            voters: status.voters,
            learners: status.learners,
            match_indexes: status.match_indexes,
            peer_addresses: status.addresses,
            client_addresses: status.client_addresses,
        }
    }
}

/// The lowercase name of a role, as shown to operators.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

fn not_found(error: QueueError) -> ServiceError {
    match error {
        QueueError::QueueNotFound(_) => ServiceError::NotFound(error.to_string()),
        other => ServiceError::Invalid(other.to_string()),
    }
}

/// How often queue gauges and the replicated queue counters are exported.
const QUEUE_METRICS_INTERVAL_MS: u64 = 1_000;

/// Exports every queue's depth by state, oldest ready age and replicated
/// totals. Queues beyond the label cap are summed under `other`.
async fn publish_queue_metrics(
    node: Node<JobQueue>,
    clock: Arc<dyn Clock>,
    labels: Arc<QueueLabels>,
    shutdown: CancellationToken,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(QUEUE_METRICS_INTERVAL_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased; // A fixed polling order keeps simulated runs deterministic.
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now_ms = clock.now_ms();
        let all = node.read_state(|state| state.all_stats(now_ms));
        let mut by_label: BTreeMap<String, QueueTotals> = BTreeMap::new();
        for (name, stats) in &all {
            by_label.entry(labels.label(name)).or_default().add(stats);
        }
        for (queue, totals) in by_label {
            for (state, count) in [
                ("ready", totals.ready),
                ("scheduled", totals.scheduled),
                ("leased", totals.leased),
                ("dead", totals.dead),
            ] {
                metrics::gauge!(names::QUEUE_JOBS, "queue" => queue.clone(), "state" => state)
                    .set(count as f64);
            }
            metrics::gauge!(names::QUEUE_OLDEST_READY_AGE, "queue" => queue.clone())
                .set(totals.oldest_ready_age_ms as f64 / 1000.0);
            for (name, value) in [
                (names::QUEUE_ENQUEUED, totals.enqueued),
                (names::QUEUE_CLAIMED, totals.claimed),
                (names::QUEUE_ACKED, totals.acked),
                (names::QUEUE_NACKED, totals.nacked),
                (names::QUEUE_EXPIRED, totals.expired),
                (names::QUEUE_DEAD_LETTERED, totals.dead_lettered),
                (names::QUEUE_REQUEUED, totals.requeued),
            ] {
                metrics::counter!(name, "queue" => queue.clone()).absolute(value);
            }
        }
    }
}

/// The statistics of the queues that share one metric label.
#[derive(Debug, Default)]
struct QueueTotals {
    ready: u64,
    scheduled: u64,
    leased: u64,
    dead: u64,
    oldest_ready_age_ms: u64,
    enqueued: u64,
    claimed: u64,
    acked: u64,
    nacked: u64,
    expired: u64,
    dead_lettered: u64,
    requeued: u64,
}

impl QueueTotals {
    fn add(&mut self, stats: &crate::queue::QueueStats) {
        self.ready += stats.ready;
        self.scheduled += stats.scheduled;
        self.leased += stats.leased;
        self.dead += stats.dead;
        self.oldest_ready_age_ms = self
            .oldest_ready_age_ms
            .max(stats.oldest_ready_age_ms.unwrap_or(0));
        let counters = &stats.counters;
        self.enqueued += counters.enqueued;
        self.claimed += counters.claimed;
        self.acked += counters.acked;
        self.nacked += counters.nacked;
        self.expired += counters.expired;
        self.dead_lettered += counters.dead_lettered;
        self.requeued += counters.requeued;
    }
}

/// How long the limits task waits before trying again after a failed read
/// barrier or proposal (leadership may have moved meanwhile).
const LIMITS_RETRY_MS: u64 = 200;

/// See [`QueueService::enforce_limits`].
async fn keep_limits(node: Node<JobQueue>, desired: Limits, shutdown: CancellationToken) {
    let mut status = node.watch_status();
    // The term in which this node last checked the limits as leader.
    let mut checked_term = None;
    loop {
        let (role, term, failed) = {
            let now = status.borrow_and_update();
            (now.role, now.term, now.failed.is_some())
        };
        if failed {
            return;
        }
        if role == Role::Leader && checked_term != Some(term) {
            // The read barrier makes everything committed in earlier terms
            // applied here, so the comparison sees the cluster's limits.
            let settled = match node.read_barrier().await {
                Ok(()) if node.read_state(|state| *state.limits()) == desired => Ok(()),
                Ok(()) => match node.propose(&Op::SetLimits(desired)).await {
                    Ok(Outcome::SetLimits(Ok(()))) => {
                        info!(
                            ?desired,
                            "replicated queue limits set from the configuration"
                        );
                        Ok(())
                    }
                    Ok(outcome) => Err(format!("refused: {outcome:?}")),
                    Err(error) => Err(error.to_string()),
                },
                Err(error) => Err(error.to_string()),
            };
            match settled {
                Ok(()) => checked_term = Some(term),
                Err(error) => {
                    warn!(%error, "could not set the configured queue limits; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(LIMITS_RETRY_MS)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Wakes parked claims whenever the applied index moves, and all of them
/// when this node's role changes.
async fn wake_parked_claims(
    node: Node<JobQueue>,
    clock: Arc<dyn Clock>,
    parking: Arc<Parking>,
    shutdown: CancellationToken,
) {
    let mut applied: watch::Receiver<u64> = node.watch_applied();
    let mut status = node.watch_status();
    let mut role = status.borrow().role;
    loop {
        tokio::select! {
            biased; // A fixed polling order keeps simulated runs deterministic.
            _ = shutdown.cancelled() => {
                parking.wake_all();
                return;
            }
            changed = applied.changed() => {
                if changed.is_err() {
                    return;
                }
                let now_ms = clock.now_ms();
                node.read_state(|state| parking.wake_ready(state, now_ms));
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = status.borrow().role;
                if now != role {
                    role = now;
                    parking.wake_all();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Enqueue, NewJob};

    fn queue_with_ready(queue: &str, jobs: usize) -> JobQueue {
        let mut state = JobQueue::new();
        let enqueue = Enqueue {
            jobs: (0..jobs)
                .map(|index| NewJob::new(queue, vec![index as u8]))
                .collect(),
            session: None,
        };
        let outcome = state.apply_op(1_000, &Op::Enqueue(enqueue));
        assert!(matches!(outcome, Outcome::Enqueue(Ok(_))));
        state
    }

    #[test]
    fn parked_claims_wake_in_arrival_order_one_per_ready_job() {
        let parking = Parking::default();
        let state = queue_with_ready("emails", 2);
        let mut receivers = Vec::new();
        for _ in 0..4 {
            let ticket = parking.ticket();
            receivers.push(parking.park(ticket, vec!["emails".to_string()]));
        }
        parking.wake_ready(&state, 2_000);
        let woken: Vec<bool> = receivers
            .iter_mut()
            .map(|receiver| receiver.try_recv().is_ok())
            .collect();
        assert_eq!(woken, vec![true, true, false, false]);
        assert_eq!(parking.len(), 2);
    }

    #[test]
    fn parked_claims_on_other_or_paused_queues_stay_parked() {
        let parking = Parking::default();
        let mut state = queue_with_ready("emails", 1);
        state.apply_op(1_500, &Op::Pause("emails".to_string()));
        let ticket = parking.ticket();
        let mut paused = parking.park(ticket, vec!["emails".to_string()]);
        let ticket = parking.ticket();
        let mut other = parking.park(ticket, vec!["reports".to_string()]);
        parking.wake_ready(&state, 2_000);
        assert!(paused.try_recv().is_err());
        assert!(other.try_recv().is_err());
        parking.wake_all();
        assert!(paused.try_recv().is_ok());
        assert!(other.try_recv().is_ok());
    }
}
