//! [`JobQueue`]: the whole replicated state, its clock, and its reads.
//!
//! The operations themselves are in `enqueue.rs`, `lease.rs` and `admin.rs`;
//! this file holds the state, the dispatch, the work every command does first
//! (advancing the clock and everything that falls due), the lifecycle moves
//! shared by the operations, and the reads.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;

use super::command::{Command, Op};
use super::error::QueueError;
use super::id_hasher::IdHashBuilder;
use super::idempotency::KeyTable;
use super::ids::JobId;
use super::info::{JobInfo, JobState, LeaseInfo, QueueStats};
use super::job::{Job, Lease};
use super::job_store::JobStore;
use super::limits::{DEAD_LIST_PAGE_MAX, Limits, RESPONSE_PAYLOAD_BYTES_MAX};
use super::outcome::{Disposition, Outcome};
use super::queue_table::{QueueId, QueueRecord, QueueTable, ReadyKey, validate_queue_name};
use super::sessions::SessionTable;

/// The replicated job queue. See the module docs for its semantics.
///
/// Every field decides outcomes and is part of snapshots. The maps keyed by
/// job id are only used for point lookups; everything whose order can reach
/// an outcome or a snapshot is ordered explicitly.
#[derive(Clone, Debug, PartialEq)]
pub struct JobQueue {
    /// The latest stamped time seen; never goes back.
    pub(super) now_ms: u64,
    /// The id the next new job gets.
    pub(super) next_job_id: u64,
    /// The last fencing token handed out (0 before the first claim).
    pub(super) last_token: u64,
    pub(super) limits: Limits,
    pub(super) queues: QueueTable,
    pub(super) jobs: JobStore,
    pub(super) leases: HashMap<JobId, Lease, IdHashBuilder>,
    pub(super) last_errors: HashMap<JobId, Box<str>, IdHashBuilder>,
    /// Scheduled jobs by (run-at time, id).
    pub(super) scheduled: BTreeSet<(u64, JobId)>,
    /// Leased jobs by (deadline, id).
    pub(super) lease_deadlines: BTreeSet<(u64, JobId)>,
    pub(super) keys: KeyTable,
    pub(super) sessions: SessionTable,
}

impl Default for JobQueue {
    fn default() -> Self {
        JobQueue::new()
    }
}

impl JobQueue {
    /// An empty state with default limits and the clock at 0.
    pub fn new() -> Self {
        JobQueue {
            now_ms: 0,
            next_job_id: 1,
            last_token: 0,
            limits: Limits::default(),
            queues: QueueTable::default(),
            jobs: JobStore::default(),
            leases: HashMap::default(),
            last_errors: HashMap::default(),
            scheduled: BTreeSet::new(),
            lease_deadlines: BTreeSet::new(),
            keys: KeyTable::default(),
            sessions: SessionTable::default(),
        }
    }

    /// Applies one committed command. Deterministic: the same state and
    /// command give the same outcome and the same next state on every node.
    /// Never panics on any command; bad input is refused with an error in
    /// the outcome and changes nothing.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        self.apply_op(command.now_ms, &command.op)
    }

    /// [`JobQueue::apply`] for an op and its stamped time held apart, as the
    /// node stores them (one stamped time for a whole batch of ops).
    pub fn apply_op(&mut self, now_ms: u64, op: &Op) -> Outcome {
        self.advance_clock(now_ms);
        match op {
            Op::Enqueue(enqueue) => Outcome::Enqueue(self.enqueue(enqueue)),
            Op::Claim(claim) => Outcome::Claim(self.claim(claim)),
            Op::Ack(ack) => Outcome::Ack(self.ack(ack)),
            Op::Nack(nack) => Outcome::Nack(self.nack(nack)),
            Op::Extend(extend) => Outcome::Extend(self.extend(extend)),
            Op::Cancel(id) => Outcome::Cancel(self.cancel(*id)),
            Op::RequeueDead(selection) => Outcome::RequeueDead(self.requeue_dead(selection)),
            Op::DeleteDead(selection) => Outcome::DeleteDead(self.delete_dead(selection)),
            Op::Pause(queue) => Outcome::Pause(self.pause(queue)),
            Op::Resume(queue) => Outcome::Resume(self.resume(queue)),
            Op::Purge(queue) => Outcome::Purge(self.purge(queue)),
            Op::Tick => Outcome::Tick,
            Op::SetLimits(limits) => Outcome::SetLimits(self.set_limits(limits)),
            Op::AckBatch(acks) => Outcome::AckBatch(self.ack_batch(acks)),
        }
    }

    /// Moves the clock to `max(clock, now_ms)` and processes everything due
    /// by then: scheduled jobs become ready (ready since their run-at time),
    /// expired leases count a failed attempt, and idempotency keys and
    /// sessions past their windows are forgotten.
    fn advance_clock(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let now_ms = self.now_ms;
        while let Some(&(run_at_ms, id)) = self.scheduled.first() {
            if run_at_ms > now_ms {
                break;
            }
            self.scheduled.pop_first();
            let queue = self.job_ref(id).queue;
            self.queues.get_mut(queue).scheduled -= 1;
            self.link_ready(id, run_at_ms);
        }
        while let Some(&(deadline_ms, id)) = self.lease_deadlines.first() {
            if deadline_ms > now_ms {
                break;
            }
            self.remove_lease(id);
            let queue = self.job_ref(id).queue;
            self.queues.get_mut(queue).counters.expired += 1;
            self.fail_attempt(id, deadline_ms, None, false);
        }
        self.keys.expire(now_ms, self.limits.idempotency_window_ms);
        self.sessions.expire(now_ms, self.limits.session_idle_ms);
    }

    pub(super) fn job_ref(&self, id: JobId) -> &Job {
        self.jobs.get(id).expect("indexed job exists")
    }

    pub(super) fn job_mut(&mut self, id: JobId) -> &mut Job {
        self.jobs.get_mut(id).expect("indexed job exists")
    }

    /// Makes an unlinked job ready, ready since `ready_at_ms`.
    pub(super) fn link_ready(&mut self, id: JobId, ready_at_ms: u64) {
        let job = self.job_mut(id);
        job.state = JobState::Ready;
        job.due_at_ms = ready_at_ms;
        let key = ReadyKey {
            priority: Reverse(job.priority),
            ready_at_ms,
            id,
        };
        let queue = job.queue;
        self.queues.get_mut(queue).insert_ready(key);
    }

    /// Makes an unlinked job scheduled to become ready at `run_at_ms`.
    pub(super) fn link_scheduled(&mut self, id: JobId, run_at_ms: u64) {
        let job = self.job_mut(id);
        job.state = JobState::Scheduled;
        job.due_at_ms = run_at_ms;
        let queue = job.queue;
        self.queues.get_mut(queue).scheduled += 1;
        self.scheduled.insert((run_at_ms, id));
    }

    /// Makes an unlinked job dead.
    pub(super) fn link_dead(&mut self, id: JobId) {
        let job = self.job_mut(id);
        job.state = JobState::Dead;
        let queue = job.queue;
        let record = self.queues.get_mut(queue);
        record.dead.insert(id);
        record.counters.dead_lettered += 1;
    }

    /// Takes a job out of the index of its current state (its lease too, if
    /// leased). The job stays in the job map with its old state until it is
    /// linked again or removed.
    pub(super) fn unlink(&mut self, id: JobId) {
        let job = self.job_ref(id);
        let (queue, state, due_at_ms) = (job.queue, job.state, job.due_at_ms);
        let key = ReadyKey {
            priority: Reverse(job.priority),
            ready_at_ms: due_at_ms,
            id,
        };
        match state {
            JobState::Ready => self.queues.get_mut(queue).remove_ready(&key),
            JobState::Scheduled => {
                let removed = self.scheduled.remove(&(due_at_ms, id));
                assert!(removed, "scheduled job {id} is indexed");
                self.queues.get_mut(queue).scheduled -= 1;
            }
            JobState::Leased => {
                self.remove_lease(id);
            }
            JobState::Dead => {
                let removed = self.queues.get_mut(queue).dead.remove(&id);
                assert!(removed, "dead job {id} is indexed");
            }
        }
    }

    /// Removes a leased job's lease from the lease map, the deadline index
    /// and its queue's count.
    pub(super) fn remove_lease(&mut self, id: JobId) -> Lease {
        let lease = self.leases.remove(&id).expect("leased job has a lease");
        let removed = self.lease_deadlines.remove(&(lease.deadline_ms, id));
        assert!(removed, "lease of job {id} is indexed");
        let queue = self.job_ref(id).queue;
        self.queues.get_mut(queue).leased -= 1;
        lease
    }

    /// Removes an unlinked job entirely.
    pub(super) fn remove_job(&mut self, id: JobId) -> Job {
        self.last_errors.remove(&id);
        self.jobs.remove(id).expect("removed job exists")
    }

    /// Decides where an unlinked job goes after a failed attempt that ended
    /// at `failed_at_ms`: dead when forced or out of attempts, otherwise
    /// ready or scheduled after `delay_ms` or the job's backoff.
    pub(super) fn fail_attempt(
        &mut self,
        id: JobId,
        failed_at_ms: u64,
        delay_ms: Option<u64>,
        dead: bool,
    ) -> Disposition {
        let job = self.job_ref(id);
        if dead || job.attempts >= job.max_attempts {
            self.link_dead(id);
            return Disposition::Dead;
        }
        let delay_ms =
            delay_ms.unwrap_or_else(|| job.backoff().delay_ms(id, u32::from(job.attempts)));
        let retry_at_ms = failed_at_ms.saturating_add(delay_ms);
        if retry_at_ms <= self.now_ms {
            self.link_ready(id, retry_at_ms);
        } else {
            self.link_scheduled(id, retry_at_ms);
        }
        Disposition::Retry { at_ms: retry_at_ms }
    }

    /// Looks up a queue by a name that must be valid and exist.
    pub(super) fn existing_queue(&self, name: &str) -> Result<QueueId, QueueError> {
        validate_queue_name(name)?;
        self.queues
            .id(name)
            .ok_or_else(|| QueueError::QueueNotFound(name.to_string()))
    }

    /// The latest stamped time the state has seen.
    pub fn last_now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many jobs exist, in any state.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// One queue's counts and totals; `now_ms` is the reader's time, used
    /// only for the age of the oldest ready job.
    pub fn stats(&self, queue: &str, now_ms: u64) -> Result<QueueStats, QueueError> {
        let id = self.existing_queue(queue)?;
        Ok(Self::record_stats(self.queues.get(id), now_ms))
    }

    /// Every queue's stats, ordered by name.
    pub fn all_stats(&self, now_ms: u64) -> Vec<(String, QueueStats)> {
        let mut all: Vec<(String, QueueStats)> = self
            .queues
            .iter()
            .map(|(_, record)| (record.name.to_string(), Self::record_stats(record, now_ms)))
            .collect();
        all.sort_by(|left, right| left.0.cmp(&right.0));
        all
    }

    fn record_stats(record: &QueueRecord, now_ms: u64) -> QueueStats {
        QueueStats {
            ready: record.ready.len() as u64,
            scheduled: record.scheduled,
            leased: record.leased,
            dead: record.dead.len() as u64,
            paused: record.paused,
            oldest_ready_age_ms: record
                .oldest_ready_at_ms()
                .map(|ready_at_ms| now_ms.saturating_sub(ready_at_ms)),
            counters: record.counters,
        }
    }

    /// Everything about one job, if it exists.
    pub fn job(&self, id: JobId) -> Option<JobInfo> {
        let job = self.jobs.get(id)?;
        let lease = self.leases.get(&id).map(|lease| LeaseInfo {
            token: lease.token,
            claimed_at_ms: lease.claimed_at_ms,
            deadline_ms: lease.deadline_ms,
            worker: lease.worker.as_deref().map(str::to_string),
        });
        Some(JobInfo {
            id,
            queue: self.queues.name(job.queue).to_string(),
            state: job.state,
            priority: job.priority,
            attempts: u32::from(job.attempts),
            max_attempts: u32::from(job.max_attempts),
            enqueued_at_ms: job.enqueued_at_ms,
            due_at_ms: job.due_at_ms,
            lease,
            last_error: self.last_errors.get(&id).map(|error| error.to_string()),
            payload: Bytes::from_owner(Arc::clone(&job.payload)),
        })
    }

    /// A page of a queue's dead jobs in id order: those after `after`, at
    /// most `limit` (capped at `DEAD_LIST_PAGE_MAX`).
    pub fn list_dead(
        &self,
        queue: &str,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobInfo>, QueueError> {
        let id = self.existing_queue(queue)?;
        let dead = &self.queues.get(id).dead;
        let page = match after {
            Some(after) => {
                dead.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => dead.range(..),
        };
        let mut jobs = Vec::new();
        let mut payload_bytes = 0;
        for &job_id in page.take(limit.min(DEAD_LIST_PAGE_MAX)) {
            let Some(job) = self.job(job_id) else {
                continue;
            };
            // A page stops early rather than outgrow a response; the caller
            // pages on from the last id it got.
            payload_bytes += job.payload.len();
            if !jobs.is_empty() && payload_bytes > RESPONSE_PAYLOAD_BYTES_MAX {
                break;
            }
            jobs.push(job);
        }
        Ok(jobs)
    }

    /// Whether a claim on these queues would get a job now: any of them
    /// exists, is not paused and has a ready job. The server calls this to
    /// wake parked long-poll claims. Invalid names count as empty.
    pub fn has_ready<S: AsRef<str>>(&self, queues: &[S]) -> bool {
        queues.iter().any(|name| {
            self.queues.id(name.as_ref()).is_some_and(|id| {
                let record = self.queues.get(id);
                !record.paused && !record.ready.is_empty()
            })
        })
    }

    /// The earliest stamped time at which a scheduled job becomes ready or a
    /// lease expires. The leader proposes a `Tick` once its clock passes it,
    /// so both happen without other traffic.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        let next_run_ms = self.scheduled.first().map(|&(run_at_ms, _)| run_at_ms);
        let next_deadline_ms = self
            .lease_deadlines
            .first()
            .map(|&(deadline_ms, _)| deadline_ms);
        match (next_run_ms, next_deadline_ms) {
            (Some(run_ms), Some(deadline_ms)) => Some(run_ms.min(deadline_ms)),
            (run_ms, deadline_ms) => run_ms.or(deadline_ms),
        }
    }
}
