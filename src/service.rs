//! The job-queue service: client requests in, replicated commands and reads
//! out. It runs the [`JobQueue`] on a [`Node`], parks long-poll claims on the
//! leader until jobs are ready, and answers reads linearizably unless a
//! client accepts a stale answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::CLAIM_WAIT_MAX_MS;
use crate::node::clock::Clock;
use crate::node::{AdminOp, Node, NodeError, StateMachine};
use crate::protocol::client::{
    ClusterStatus, LIST_PAGE_MAX, RequestBody, ResponseBody, ServiceError,
};
use crate::queue::{JobQueue, Op, Outcome, QueueError};
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

    fn snapshot(&self) -> Vec<u8> {
        JobQueue::snapshot(self)
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
        self.waiting
            .lock()
            .expect("parking lock")
            .insert(ticket, ParkedClaim { queues, wake });
        woken
    }

    fn leave(&self, ticket: u64) {
        self.waiting.lock().expect("parking lock").remove(&ticket);
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
    }

    /// Wakes every parked claim (leadership changed: they must find out).
    fn wake_all(&self) {
        for (_, parked) in std::mem::take(&mut *self.waiting.lock().expect("parking lock")) {
            let _ = parked.wake.send(());
        }
    }
}

/// The job-queue service of one node.
pub struct QueueService {
    node: Node<JobQueue>,
    clock: Arc<dyn Clock>,
    parking: Arc<Parking>,
}

impl QueueService {
    /// A service over `node`. It spawns the task that wakes parked claims;
    /// that task ends with `shutdown`.
    pub fn new(
        node: Node<JobQueue>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> QueueService {
        let parking = Arc::new(Parking::default());
        tokio::spawn(wake_parked_claims(
            node.clone(),
            Arc::clone(&clock),
            Arc::clone(&parking),
            shutdown,
        ));
        QueueService {
            node,
            clock,
            parking,
        }
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
        }
    }

    async fn command(&self, op: Op) -> Result<ResponseBody, ServiceError> {
        Ok(ResponseBody::Outcome(self.node.propose(&op).await?))
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
            let outcome = self.node.propose(&Op::Claim(claim.clone())).await?;
            let empty = matches!(&outcome, Outcome::Claim(Ok(jobs)) if jobs.is_empty());
            if !empty || tokio::time::Instant::now() >= deadline {
                return Ok(ResponseBody::Outcome(outcome));
            }
            // Park first, then look: a job that arrives between the two
            // wakes the parked claim, so none is missed.
            let woken = self.parking.park(ticket, claim.queues.clone());
            if self.node.read_state(|state| state.has_ready(&claim.queues)) {
                self.parking.leave(ticket);
                continue;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.parking.leave(ticket);
                    return Ok(ResponseBody::Outcome(outcome));
                }
            }
        }
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
