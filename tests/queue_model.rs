//! The job queue against a deliberately simple reference model.
//!
//! The model keeps every job in one `Vec` and answers every question by a
//! linear scan, so it is obviously right and shares no code with the real
//! state machine. Random command sequences (several queues, time jumps
//! forward and small jumps back, valid and stale tokens, sessions, keys and
//! changing limits) must give the same outcome from both after every
//! command, and the same answers to every read. After each sequence the
//! snapshot must restore to an equal state that behaves identically on a
//! further random suffix.
//!
//! The last tests feed `JobQueue::restore` arbitrary bytes and damaged
//! snapshots: it must never panic, and never allocate much beyond its input,
//! which a per-thread counting allocator checks.
//!
//! `QUEUE_MODEL_CASES` sets the number of cases (default 512).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use raftq::queue::*;

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

const JITTER_PERCENT: u64 = 10;
const SESSION_RESULTS_MAX: usize = 4_096;
const DAY_MS: u64 = 86_400_000;

#[derive(Clone, Debug)]
struct ModelJob {
    id: JobId,
    queue: String,
    payload: Bytes,
    priority: i32,
    state: JobState,
    enqueued_at_ms: u64,
    due_at_ms: u64,
    attempts: u32,
    max_attempts: u32,
    backoff: Backoff,
    last_error: Option<String>,
    lease: Option<LeaseInfo>,
}

#[derive(Clone, Debug)]
struct ModelQueue {
    name: String,
    paused: bool,
    counters: QueueCounters,
}

#[derive(Clone, Debug)]
struct ModelKey {
    queue: String,
    key: Bytes,
    id: JobId,
    remembered_at_ms: u64,
}

type Results = Vec<Result<Enqueued, QueueError>>;

#[derive(Clone, Debug)]
struct ModelSession {
    id: u64,
    last_active_ms: u64,
    lowest_unanswered_seq: u64,
    results: Vec<(u64, Results)>,
}

#[derive(Clone, Debug)]
struct Model {
    now_ms: u64,
    next_id: u64,
    last_token: u64,
    limits: Limits,
    queues: Vec<ModelQueue>,
    jobs: Vec<ModelJob>,
    keys: Vec<ModelKey>,
    sessions: Vec<ModelSession>,
}

fn invalid() -> QueueError {
    QueueError::InvalidArgument(String::new())
}

fn name_is_valid(name: &str) -> bool {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' || c == ':');
    first_ok && rest_ok && name.len() <= 64
}

fn check_name(name: &str) -> Result<(), QueueError> {
    if name_is_valid(name) {
        Ok(())
    } else {
        Err(QueueError::InvalidQueueName(
            name.chars().take(80).collect(),
        ))
    }
}

fn model_backoff_ms(backoff: &Backoff, id: JobId, attempt: u32) -> u64 {
    let max_ms = u64::from(backoff.max_ms);
    let mut base_ms = u64::from(backoff.initial_ms);
    for _ in 1..attempt {
        base_ms = (base_ms * u64::from(backoff.multiplier)).min(max_ms);
    }
    let base_ms = base_ms.min(max_ms);
    let mut hash =
        id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(attempt));
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    hash ^= hash >> 31;
    let spread_ms = base_ms * JITTER_PERCENT / 100;
    (base_ms - spread_ms + hash % (2 * spread_ms + 1)).min(max_ms)
}

fn lease_is_valid(lease_ms: u64) -> bool {
    (100..=43_200_000).contains(&lease_ms)
}

impl Model {
    fn new() -> Model {
        Model {
            now_ms: 0,
            next_id: 1,
            last_token: 0,
            limits: Limits::default(),
            queues: Vec::new(),
            jobs: Vec::new(),
            keys: Vec::new(),
            sessions: Vec::new(),
        }
    }

    fn queue(&self, name: &str) -> Option<&ModelQueue> {
        self.queues.iter().find(|queue| queue.name == name)
    }

    fn queue_mut(&mut self, name: &str) -> &mut ModelQueue {
        self.queues
            .iter_mut()
            .find(|queue| queue.name == name)
            .expect("model queue exists")
    }

    fn index_of(&self, id: JobId) -> Option<usize> {
        self.jobs.iter().position(|job| job.id == id)
    }

    fn apply(&mut self, command: &Command) -> Outcome {
        self.advance(command.now_ms);
        match &command.op {
            Op::Enqueue(enqueue) => Outcome::Enqueue(self.enqueue(enqueue)),
            Op::Claim(claim) => Outcome::Claim(self.claim(claim)),
            Op::Ack(ack) => Outcome::Ack(self.ack(ack)),
            Op::Nack(nack) => Outcome::Nack(self.nack(nack)),
            Op::Extend(extend) => Outcome::Extend(self.extend(extend)),
            Op::Cancel(id) => Outcome::Cancel(self.cancel(*id)),
            Op::RequeueDead(selection) => Outcome::RequeueDead(self.dead_op(selection, true)),
            Op::DeleteDead(selection) => Outcome::DeleteDead(self.dead_op(selection, false)),
            Op::Pause(name) => Outcome::Pause(self.pause(name)),
            Op::Resume(name) => Outcome::Resume(self.resume(name)),
            Op::Purge(name) => Outcome::Purge(self.purge(name)),
            Op::Tick => Outcome::Tick,
            Op::SetLimits(limits) => Outcome::SetLimits(self.set_limits(limits)),
            Op::AckBatch(acks) => Outcome::AckBatch(if acks.is_empty() || acks.len() > 1_000 {
                Err(invalid())
            } else {
                Ok(acks.iter().map(|ack| self.ack(ack)).collect())
            }),
        }
    }

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        let now_ms = self.now_ms;
        for job in &mut self.jobs {
            if job.state == JobState::Scheduled && job.due_at_ms <= now_ms {
                job.state = JobState::Ready;
            }
        }
        let mut expiring: Vec<(u64, JobId)> = self
            .jobs
            .iter()
            .filter_map(|job| job.lease.as_ref().map(|lease| (lease.deadline_ms, job.id)))
            .filter(|&(deadline_ms, _)| deadline_ms <= now_ms)
            .collect();
        expiring.sort();
        for (deadline_ms, id) in expiring {
            let index = self.index_of(id).unwrap();
            self.jobs[index].lease = None;
            let queue = self.jobs[index].queue.clone();
            self.queue_mut(&queue).counters.expired += 1;
            self.fail(index, deadline_ms, None, false);
        }
        let window_ms = self.limits.idempotency_window_ms;
        self.keys
            .retain(|key| key.remembered_at_ms.saturating_add(window_ms) > now_ms);
        let idle_ms = self.limits.session_idle_ms;
        self.sessions
            .retain(|session| session.last_active_ms.saturating_add(idle_ms) > now_ms);
    }

    fn fail(
        &mut self,
        index: usize,
        failed_at_ms: u64,
        delay_ms: Option<u64>,
        dead: bool,
    ) -> Disposition {
        let now_ms = self.now_ms;
        let job = &mut self.jobs[index];
        if dead || job.attempts >= job.max_attempts {
            job.state = JobState::Dead;
            let queue = job.queue.clone();
            self.queue_mut(&queue).counters.dead_lettered += 1;
            return Disposition::Dead;
        }
        let delay_ms =
            delay_ms.unwrap_or_else(|| model_backoff_ms(&job.backoff, job.id, job.attempts));
        let at_ms = failed_at_ms.saturating_add(delay_ms);
        job.due_at_ms = at_ms;
        job.state = if at_ms <= now_ms {
            JobState::Ready
        } else {
            JobState::Scheduled
        };
        Disposition::Retry { at_ms }
    }

    fn enqueue(&mut self, enqueue: &Enqueue) -> Result<Results, QueueError> {
        if enqueue.jobs.is_empty() || enqueue.jobs.len() > 1_000 {
            return Err(invalid());
        }
        let Some(stamp) = enqueue.session else {
            return Ok(enqueue
                .jobs
                .iter()
                .map(|job| self.enqueue_one(job))
                .collect());
        };
        if stamp.lowest_unanswered_seq == 0 || stamp.lowest_unanswered_seq > stamp.seq {
            return Err(invalid());
        }
        let existing = self.sessions.iter().position(|s| s.id == stamp.session_id);
        match existing {
            None if stamp.lowest_unanswered_seq != 1 => {
                return Err(QueueError::SessionExpired {
                    session_id: stamp.session_id,
                });
            }
            None => {}
            Some(index) => {
                let session = &self.sessions[index];
                if stamp.seq < session.lowest_unanswered_seq {
                    return Err(QueueError::StaleSessionRequest {
                        session_id: stamp.session_id,
                        seq: stamp.seq,
                    });
                }
                if let Some((_, stored)) = session.results.iter().find(|(seq, _)| *seq == stamp.seq)
                {
                    let replay = stored
                        .iter()
                        .map(|result| {
                            result.clone().map(|enqueued| Enqueued {
                                id: enqueued.id,
                                duplicate: true,
                            })
                        })
                        .collect();
                    self.activate(index, &stamp);
                    return Ok(replay);
                }
                let lowest = session
                    .lowest_unanswered_seq
                    .max(stamp.lowest_unanswered_seq);
                let kept: usize = session
                    .results
                    .iter()
                    .filter(|(seq, _)| *seq >= lowest)
                    .map(|(_, results)| results.len())
                    .sum();
                if kept + enqueue.jobs.len() > SESSION_RESULTS_MAX {
                    return Err(QueueError::TooManyUnansweredRequests {
                        session_id: stamp.session_id,
                    });
                }
            }
        }
        let results: Results = enqueue
            .jobs
            .iter()
            .map(|job| self.enqueue_one(job))
            .collect();
        let index = match existing {
            Some(index) => index,
            None => {
                while self.sessions.len() >= self.limits.sessions_max as usize {
                    self.evict_longest_idle();
                }
                self.sessions.push(ModelSession {
                    id: stamp.session_id,
                    last_active_ms: self.now_ms,
                    lowest_unanswered_seq: stamp.lowest_unanswered_seq,
                    results: Vec::new(),
                });
                self.sessions.len() - 1
            }
        };
        self.activate(index, &stamp);
        self.sessions[index]
            .results
            .push((stamp.seq, results.clone()));
        while self.stored_session_results() > self.limits.session_results_max as usize {
            let victim = (0..self.sessions.len())
                .filter(|&i| self.sessions[i].id != stamp.session_id)
                .min_by_key(|&i| (self.sessions[i].last_active_ms, self.sessions[i].id));
            let Some(victim) = victim else { break };
            self.sessions.remove(victim);
        }
        Ok(results)
    }

    fn activate(&mut self, index: usize, stamp: &SessionStamp) {
        let session = &mut self.sessions[index];
        session.last_active_ms = self.now_ms;
        if stamp.lowest_unanswered_seq > session.lowest_unanswered_seq {
            session.lowest_unanswered_seq = stamp.lowest_unanswered_seq;
            let lowest = stamp.lowest_unanswered_seq;
            session.results.retain(|(seq, _)| *seq >= lowest);
        }
    }

    fn stored_session_results(&self) -> usize {
        self.sessions
            .iter()
            .flat_map(|session| session.results.iter())
            .map(|(_, results)| results.len())
            .sum()
    }

    fn evict_longest_idle(&mut self) {
        let victim = (0..self.sessions.len())
            .min_by_key(|&i| (self.sessions[i].last_active_ms, self.sessions[i].id))
            .unwrap();
        self.sessions.remove(victim);
    }

    fn enqueue_one(&mut self, new: &NewJob) -> Result<Enqueued, QueueError> {
        check_name(&new.queue)?;
        let payload_max = u64::from(self.limits.payload_max_bytes);
        if new.payload.len() as u64 > payload_max {
            return Err(QueueError::PayloadTooLarge {
                size: new.payload.len() as u64,
                max: payload_max,
            });
        }
        if new.max_attempts < 1 || new.max_attempts > 1_000 {
            return Err(invalid());
        }
        let backoff = new.backoff;
        if backoff.initial_ms > backoff.max_ms
            || backoff.max_ms > 30 * DAY_MS as u32
            || backoff.multiplier < 1
            || backoff.multiplier > 16
        {
            return Err(invalid());
        }
        let now_ms = self.now_ms;
        let ahead_max_ms = 365 * DAY_MS;
        let due_at_ms = match new.schedule {
            Schedule::Now => now_ms,
            Schedule::DelayMs(delay_ms) if delay_ms <= ahead_max_ms => now_ms + delay_ms,
            Schedule::RunAtMs(at_ms) if at_ms <= now_ms + ahead_max_ms => at_ms.max(now_ms),
            _ => return Err(invalid()),
        };
        if let Some(key) = &new.idempotency_key
            && (key.is_empty() || key.len() > 128)
        {
            return Err(invalid());
        }
        if let Some(key) = &new.idempotency_key
            && let Some(known) = self
                .keys
                .iter()
                .find(|known| known.queue == new.queue && known.key == *key)
        {
            return Ok(Enqueued {
                id: known.id,
                duplicate: true,
            });
        }
        if self.queue(&new.queue).is_some() {
            let in_queue = self
                .jobs
                .iter()
                .filter(|job| job.queue == new.queue)
                .count();
            if in_queue as u64 >= self.limits.jobs_per_queue_max {
                return Err(QueueError::QueueFull {
                    queue: new.queue.clone(),
                    max: self.limits.jobs_per_queue_max,
                });
            }
        } else if self.queues.len() >= self.limits.queues_max as usize {
            return Err(QueueError::TooManyQueues {
                max: u64::from(self.limits.queues_max),
            });
        }
        if new.idempotency_key.is_some()
            && self.keys.len() >= self.limits.idempotency_keys_max as usize
        {
            return Err(QueueError::TooManyIdempotencyKeys {
                max: u64::from(self.limits.idempotency_keys_max),
            });
        }
        if self.queue(&new.queue).is_none() {
            self.queues.push(ModelQueue {
                name: new.queue.clone(),
                paused: false,
                counters: QueueCounters::default(),
            });
        }
        let id = JobId(self.next_id);
        self.next_id += 1;
        self.jobs.push(ModelJob {
            id,
            queue: new.queue.clone(),
            payload: new.payload.clone(),
            priority: new.priority,
            state: if due_at_ms > now_ms {
                JobState::Scheduled
            } else {
                JobState::Ready
            },
            enqueued_at_ms: now_ms,
            due_at_ms,
            attempts: 0,
            max_attempts: new.max_attempts,
            backoff,
            last_error: None,
            lease: None,
        });
        self.queue_mut(&new.queue).counters.enqueued += 1;
        if let Some(key) = &new.idempotency_key {
            self.keys.push(ModelKey {
                queue: new.queue.clone(),
                key: key.clone(),
                id,
                remembered_at_ms: now_ms,
            });
        }
        Ok(Enqueued {
            id,
            duplicate: false,
        })
    }

    fn claim(&mut self, claim: &Claim) -> Result<Vec<ClaimedJob>, QueueError> {
        if claim.queues.is_empty() || claim.queues.len() > 16 {
            return Err(invalid());
        }
        for name in &claim.queues {
            check_name(name)?;
        }
        if claim.max_jobs < 1 || claim.max_jobs > 1_000 {
            return Err(invalid());
        }
        if !lease_is_valid(claim.lease_ms) {
            return Err(QueueError::InvalidLease {
                lease_ms: claim.lease_ms,
            });
        }
        if claim
            .worker
            .as_ref()
            .is_some_and(|worker| worker.len() > 128)
        {
            return Err(invalid());
        }
        let mut claimed = Vec::new();
        for name in &claim.queues {
            match self.queue(name) {
                Some(queue) if !queue.paused => {}
                _ => continue,
            }
            while claimed.len() < claim.max_jobs as usize {
                let next = (0..self.jobs.len())
                    .filter(|&i| {
                        self.jobs[i].queue == *name && self.jobs[i].state == JobState::Ready
                    })
                    .min_by_key(|&i| {
                        let job = &self.jobs[i];
                        (-i64::from(job.priority), job.due_at_ms, job.id)
                    });
                let Some(index) = next else { break };
                self.last_token += 1;
                let deadline_ms = self.now_ms + claim.lease_ms;
                let job = &mut self.jobs[index];
                job.state = JobState::Leased;
                job.attempts += 1;
                job.lease = Some(LeaseInfo {
                    token: FencingToken(self.last_token),
                    claimed_at_ms: self.now_ms,
                    deadline_ms,
                    worker: claim.worker.clone(),
                });
                claimed.push(ClaimedJob {
                    id: job.id,
                    queue: name.clone(),
                    payload: job.payload.clone(),
                    attempt: job.attempts,
                    max_attempts: job.max_attempts,
                    token: FencingToken(self.last_token),
                    lease_deadline_ms: deadline_ms,
                    enqueued_at_ms: job.enqueued_at_ms,
                    ready_at_ms: job.due_at_ms,
                });
                self.queue_mut(name).counters.claimed += 1;
            }
        }
        Ok(claimed)
    }

    fn leased_index(&self, id: JobId, token: FencingToken) -> Result<usize, QueueError> {
        let index = self.index_of(id).ok_or(QueueError::JobNotFound(id))?;
        match &self.jobs[index].lease {
            Some(lease) if lease.token == token => Ok(index),
            _ => Err(QueueError::LeaseLost(id)),
        }
    }

    fn ack(&mut self, ack: &Ack) -> Result<Acked, QueueError> {
        let index = self.leased_index(ack.id, ack.token)?;
        let job = self.jobs.remove(index);
        self.queue_mut(&job.queue).counters.acked += 1;
        Ok(Acked {
            queue: job.queue,
            enqueued_at_ms: job.enqueued_at_ms,
            claimed_at_ms: job.lease.unwrap().claimed_at_ms,
        })
    }

    fn nack(&mut self, nack: &Nack) -> Result<Nacked, QueueError> {
        if nack
            .retry_delay_ms
            .is_some_and(|delay_ms| delay_ms > 365 * DAY_MS)
        {
            return Err(invalid());
        }
        let index = self.leased_index(nack.id, nack.token)?;
        let mut message = String::new();
        for c in nack.error.chars() {
            if message.len() + c.len_utf8() > 1_024 {
                break;
            }
            message.push(c);
        }
        let queue = self.jobs[index].queue.clone();
        self.jobs[index].lease = None;
        self.jobs[index].last_error = Some(message);
        self.queue_mut(&queue).counters.nacked += 1;
        let disposition = self.fail(index, self.now_ms, nack.retry_delay_ms, nack.dead);
        Ok(Nacked { queue, disposition })
    }

    fn extend(&mut self, extend: &Extend) -> Result<Extended, QueueError> {
        if !lease_is_valid(extend.lease_ms) {
            return Err(QueueError::InvalidLease {
                lease_ms: extend.lease_ms,
            });
        }
        let index = self.leased_index(extend.id, extend.token)?;
        let deadline_ms = self.now_ms + extend.lease_ms;
        self.jobs[index].lease.as_mut().unwrap().deadline_ms = deadline_ms;
        Ok(Extended {
            lease_deadline_ms: deadline_ms,
        })
    }

    fn cancel(&mut self, id: JobId) -> Result<Cancelled, QueueError> {
        let index = self.index_of(id).ok_or(QueueError::JobNotFound(id))?;
        let job = self.jobs.remove(index);
        self.queue_mut(&job.queue).counters.cancelled += 1;
        Ok(Cancelled {
            queue: job.queue,
            previous_state: job.state,
        })
    }

    fn dead_op(&mut self, selection: &DeadSelection, requeue: bool) -> Result<u64, QueueError> {
        let mut ids: Vec<JobId> = match selection {
            DeadSelection::Job(id) => {
                let index = self.index_of(*id).ok_or(QueueError::JobNotFound(*id))?;
                if self.jobs[index].state != JobState::Dead {
                    return Err(QueueError::JobNotDead(*id));
                }
                vec![*id]
            }
            DeadSelection::Queue(name) => {
                check_name(name)?;
                if self.queue(name).is_none() {
                    return Err(QueueError::QueueNotFound(name.clone()));
                }
                self.jobs
                    .iter()
                    .filter(|job| job.queue == *name && job.state == JobState::Dead)
                    .map(|job| job.id)
                    .collect()
            }
        };
        ids.sort();
        for &id in &ids {
            let index = self.index_of(id).unwrap();
            let queue = self.jobs[index].queue.clone();
            if requeue {
                let now_ms = self.now_ms;
                let job = &mut self.jobs[index];
                job.state = JobState::Ready;
                job.attempts = 0;
                job.due_at_ms = now_ms;
                self.queue_mut(&queue).counters.requeued += 1;
            } else {
                self.jobs.remove(index);
                self.queue_mut(&queue).counters.deleted += 1;
            }
        }
        Ok(ids.len() as u64)
    }

    fn pause(&mut self, name: &str) -> Result<(), QueueError> {
        check_name(name)?;
        if self.queue(name).is_none() {
            if self.queues.len() >= self.limits.queues_max as usize {
                return Err(QueueError::TooManyQueues {
                    max: u64::from(self.limits.queues_max),
                });
            }
            self.queues.push(ModelQueue {
                name: name.to_string(),
                paused: false,
                counters: QueueCounters::default(),
            });
        }
        self.queue_mut(name).paused = true;
        Ok(())
    }

    fn existing(&self, name: &str) -> Result<(), QueueError> {
        check_name(name)?;
        match self.queue(name) {
            Some(_) => Ok(()),
            None => Err(QueueError::QueueNotFound(name.to_string())),
        }
    }

    fn resume(&mut self, name: &str) -> Result<(), QueueError> {
        self.existing(name)?;
        self.queue_mut(name).paused = false;
        Ok(())
    }

    fn purge(&mut self, name: &str) -> Result<u64, QueueError> {
        self.existing(name)?;
        let before = self.jobs.len();
        self.jobs.retain(|job| {
            job.queue != name || !matches!(job.state, JobState::Ready | JobState::Scheduled)
        });
        let purged = (before - self.jobs.len()) as u64;
        self.queue_mut(name).counters.purged += purged;
        Ok(purged)
    }

    fn set_limits(&mut self, limits: &Limits) -> Result<(), QueueError> {
        let week_ms = 7 * DAY_MS;
        let valid = limits.payload_max_bytes <= 64 * 1024 * 1024
            && (1..=week_ms).contains(&limits.idempotency_window_ms)
            && limits.idempotency_keys_max <= 100_000_000
            && (1..=10_000_000).contains(&limits.sessions_max)
            && (1..=week_ms).contains(&limits.session_idle_ms)
            && (1..=100_000_000).contains(&limits.session_results_max)
            && (1..=1_000_000_000).contains(&limits.jobs_per_queue_max)
            && (1..=1_000_000).contains(&limits.queues_max);
        if !valid {
            return Err(invalid());
        }
        self.limits = *limits;
        self.advance(self.now_ms);
        while self.sessions.len() > limits.sessions_max as usize {
            self.evict_longest_idle();
        }
        while self.stored_session_results() > limits.session_results_max as usize {
            self.evict_longest_idle();
        }
        Ok(())
    }

    // Reads.

    fn stats(&self, name: &str, now_ms: u64) -> Result<QueueStats, QueueError> {
        self.existing(name)?;
        let queue = self.queue(name).unwrap();
        let in_queue = || self.jobs.iter().filter(|job| job.queue == name);
        let count = |state| in_queue().filter(|job| job.state == state).count() as u64;
        Ok(QueueStats {
            ready: count(JobState::Ready),
            scheduled: count(JobState::Scheduled),
            leased: count(JobState::Leased),
            dead: count(JobState::Dead),
            paused: queue.paused,
            oldest_ready_age_ms: in_queue()
                .filter(|job| job.state == JobState::Ready)
                .map(|job| now_ms.saturating_sub(job.due_at_ms))
                .max(),
            counters: queue.counters,
        })
    }

    fn all_stats(&self, now_ms: u64) -> Vec<(String, QueueStats)> {
        let mut names: Vec<&String> = self.queues.iter().map(|queue| &queue.name).collect();
        names.sort();
        names
            .into_iter()
            .map(|name| (name.clone(), self.stats(name, now_ms).unwrap()))
            .collect()
    }

    fn job(&self, id: JobId) -> Option<JobInfo> {
        let job = &self.jobs[self.index_of(id)?];
        Some(JobInfo {
            id,
            queue: job.queue.clone(),
            state: job.state,
            priority: job.priority,
            attempts: job.attempts,
            max_attempts: job.max_attempts,
            enqueued_at_ms: job.enqueued_at_ms,
            due_at_ms: job.due_at_ms,
            lease: job.lease.clone(),
            last_error: job.last_error.clone(),
            payload: job.payload.clone(),
        })
    }

    fn list_dead(
        &self,
        name: &str,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobInfo>, QueueError> {
        self.existing(name)?;
        let mut dead: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|job| job.queue == name && job.state == JobState::Dead)
            .filter(|job| after.is_none_or(|after| job.id > after))
            .map(|job| job.id)
            .collect();
        dead.sort();
        Ok(dead
            .into_iter()
            .take(limit.min(1_000))
            .map(|id| self.job(id).unwrap())
            .collect())
    }

    fn has_ready(&self, names: &[&str]) -> bool {
        names.iter().any(|name| {
            self.queue(name).is_some_and(|queue| !queue.paused)
                && self
                    .jobs
                    .iter()
                    .any(|job| job.queue == *name && job.state == JobState::Ready)
        })
    }

    fn next_wakeup_ms(&self) -> Option<u64> {
        self.jobs
            .iter()
            .filter_map(|job| match job.state {
                JobState::Scheduled => Some(job.due_at_ms),
                JobState::Leased => job.lease.as_ref().map(|lease| lease.deadline_ms),
                _ => None,
            })
            .min()
    }
}

// ---------------------------------------------------------------------------
// Random command sequences.
// ---------------------------------------------------------------------------

const START_MS: u64 = 1_000_000;
const QUEUE_NAMES: [&str; 5] = ["a", "b", "c.d", "e:f", "bad name"];
const LEASES_MS: [u64; 7] = [0, 99, 100, 700, 2_000, 10_000, 43_200_001];

#[derive(Clone, Debug)]
enum TimeStep {
    Forward(u64),
    Back(u64),
}

#[derive(Clone, Debug)]
struct JobSpec {
    queue: usize,
    payload_bytes: usize,
    priority: i32,
    schedule: (u8, u64),
    max_attempts: u32,
    backoff: u8,
    key: Option<u8>,
}

#[derive(Clone, Debug)]
struct SessionSpec {
    session_id: u64,
    retry_back: u64,
    lowest_mode: u8,
}

#[derive(Clone, Debug)]
struct JobPick {
    prefer_leased: bool,
    index: usize,
    unknown: bool,
}

#[derive(Clone, Debug)]
enum TokenPick {
    Current,
    Older(u64),
}

#[derive(Clone, Debug)]
enum Action {
    Enqueue(Vec<JobSpec>, Option<SessionSpec>),
    Claim(Vec<usize>, u32, usize),
    Ack(JobPick, TokenPick),
    AckBatch(Vec<(JobPick, TokenPick)>),
    Nack(JobPick, TokenPick, Option<u64>, bool, u8),
    Extend(JobPick, TokenPick, usize),
    Cancel(JobPick),
    RequeueDead(Option<JobPick>, usize),
    DeleteDead(Option<JobPick>, usize),
    Pause(usize),
    Resume(usize),
    Purge(usize),
    Tick,
    SetLimits([u8; 8]),
}

fn time_step() -> impl Strategy<Value = TimeStep> {
    prop_oneof![
        6 => (0..60u64).prop_map(TimeStep::Forward),
        3 => (60..4_000u64).prop_map(TimeStep::Forward),
        1 => (4_000..60_000u64).prop_map(TimeStep::Forward),
        1 => (0..1_500u64).prop_map(TimeStep::Back),
    ]
}

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        prop_oneof![6 => 0..4usize, 1 => Just(4usize)],
        prop_oneof![6 => 0..8usize, 1 => 15..20usize],
        -2..3i32,
        (0..3u8, 0..5_000u64),
        prop_oneof![1 => Just(0u32), 12 => 1..4u32, 1 => Just(1_001u32)],
        prop_oneof![10 => 0..3u8, 1 => Just(3u8)],
        prop_oneof![3 => Just(None), 4 => (0..4u8).prop_map(Some), 1 => Just(Some(4u8))],
    )
        .prop_map(
            |(queue, payload_bytes, priority, schedule, max_attempts, backoff, key)| JobSpec {
                queue,
                payload_bytes,
                priority,
                schedule,
                max_attempts,
                backoff,
                key,
            },
        )
}

fn job_pick() -> impl Strategy<Value = JobPick> {
    (
        prop::bool::weighted(0.8),
        0..64usize,
        prop::bool::weighted(0.05),
    )
        .prop_map(|(prefer_leased, index, unknown)| JobPick {
            prefer_leased,
            index,
            unknown,
        })
}

fn token_pick() -> impl Strategy<Value = TokenPick> {
    prop_oneof![4 => Just(TokenPick::Current), 1 => (1..4u64).prop_map(TokenPick::Older)]
}

fn lease_choice() -> impl Strategy<Value = usize> {
    prop_oneof![1 => 0..LEASES_MS.len(), 2 => 2..5usize, 6 => Just(5usize)]
}

fn action() -> impl Strategy<Value = Action> {
    let lowest_mode = prop_oneof![6 => 0..3u8, 1 => Just(3u8)];
    let session = (
        1..4u64,
        prop_oneof![3 => Just(0u64), 1 => 1..4u64],
        lowest_mode,
    )
        .prop_map(|(session_id, retry_back, lowest_mode)| SessionSpec {
            session_id,
            retry_back,
            lowest_mode,
        });
    prop_oneof![
        8 => (
            prop_oneof![
                1 => Just(Vec::new()),
                12 => prop::collection::vec(job_spec(), 1..4),
            ],
            prop_oneof![2 => Just(None), 1 => session.prop_map(Some)],
        )
            .prop_map(|(jobs, session)| Action::Enqueue(jobs, session)),
        8 => (
            prop_oneof![
                1 => prop::collection::vec(0..5usize, 0..3),
                8 => prop::collection::vec(0..4usize, 1..3),
            ],
            prop_oneof![1 => Just(0u32), 8 => 1..4u32],
            lease_choice(),
        )
            .prop_map(|(queues, max_jobs, lease)| Action::Claim(queues, max_jobs, lease)),
        4 => (job_pick(), token_pick()).prop_map(|(job, token)| Action::Ack(job, token)),
        1 => proptest::collection::vec((job_pick(), token_pick()), 0..4).prop_map(Action::AckBatch),
        3 => (
            job_pick(),
            token_pick(),
            prop_oneof![2 => Just(None), 1 => (0..3_000u64).prop_map(Some)],
            prop::bool::weighted(0.2),
            0..3u8,
        )
            .prop_map(|(job, token, delay, dead, error)| Action::Nack(job, token, delay, dead, error)),
        2 => (job_pick(), token_pick(), lease_choice())
            .prop_map(|(job, token, lease)| Action::Extend(job, token, lease)),
        1 => job_pick().prop_map(Action::Cancel),
        1 => (prop::option::of(job_pick()), 0..5usize)
            .prop_map(|(job, queue)| Action::RequeueDead(job, queue)),
        1 => (prop::option::of(job_pick()), 0..5usize)
            .prop_map(|(job, queue)| Action::DeleteDead(job, queue)),
        1 => (0..5usize).prop_map(Action::Pause),
        1 => (0..5usize).prop_map(Action::Resume),
        1 => (0..5usize).prop_map(Action::Purge),
        2 => Just(Action::Tick),
        1 => prop::array::uniform8(0..3u8).prop_map(Action::SetLimits),
    ]
}

fn steps(length: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(TimeStep, Action)>> {
    prop::collection::vec((time_step(), action()), length)
}

/// What the simulated clients remember between commands: the leader's
/// clock, and per session the next sequence number and lowest unanswered
/// one.
#[derive(Clone, Debug)]
struct Clients {
    clock_ms: u64,
    sessions: Vec<(u64, u64, u64)>,
}

impl Clients {
    fn new() -> Clients {
        Clients {
            clock_ms: START_MS,
            sessions: Vec::new(),
        }
    }

    fn stamp(&mut self, spec: &SessionSpec) -> SessionStamp {
        let position = match self.sessions.iter().position(|s| s.0 == spec.session_id) {
            Some(position) => position,
            None => {
                self.sessions.push((spec.session_id, 1, 1));
                self.sessions.len() - 1
            }
        };
        let (_, next_seq, lowest) = &mut self.sessions[position];
        let seq = if spec.retry_back == 0 {
            *next_seq += 1;
            *next_seq - 1
        } else {
            next_seq.saturating_sub(spec.retry_back).max(1)
        };
        let lowest_unanswered_seq = match spec.lowest_mode {
            0 => 1,
            1 => (*lowest).min(seq),
            2 => {
                *lowest = (*lowest).max(seq);
                seq
            }
            _ => seq + 1,
        };
        SessionStamp {
            session_id: spec.session_id,
            seq,
            lowest_unanswered_seq,
        }
    }
}

fn backoff_of(choice: u8) -> Backoff {
    match choice {
        0 => Backoff::default(),
        1 => Backoff {
            initial_ms: 0,
            max_ms: 0,
            multiplier: 1,
        },
        2 => Backoff {
            initial_ms: 100,
            max_ms: 1_500,
            multiplier: 3,
        },
        _ => Backoff {
            initial_ms: 100,
            max_ms: 1_500,
            multiplier: 17,
        },
    }
}

fn pick_job(model: &Model, pick: &JobPick) -> JobId {
    let leased: Vec<JobId> = model
        .jobs
        .iter()
        .filter(|job| job.state == JobState::Leased)
        .map(|job| job.id)
        .collect();
    if pick.unknown || model.jobs.is_empty() {
        return JobId(model.next_id + pick.index as u64);
    }
    if pick.prefer_leased && !leased.is_empty() {
        return leased[pick.index % leased.len()];
    }
    model.jobs[pick.index % model.jobs.len()].id
}

fn pick_token(model: &Model, id: JobId, pick: &TokenPick) -> FencingToken {
    let current = model
        .jobs
        .iter()
        .find(|job| job.id == id)
        .and_then(|job| job.lease.as_ref())
        .map_or(model.last_token, |lease| lease.token.0);
    match pick {
        TokenPick::Current => FencingToken(current),
        TokenPick::Older(back) => FencingToken(current.saturating_sub(*back)),
    }
}

fn dead_selection(model: &Model, job: &Option<JobPick>, queue: usize) -> DeadSelection {
    match job {
        Some(pick) => {
            let dead: Vec<JobId> = model
                .jobs
                .iter()
                .filter(|job| job.state == JobState::Dead)
                .map(|job| job.id)
                .collect();
            if dead.is_empty() || pick.unknown {
                DeadSelection::Job(pick_job(model, pick))
            } else {
                DeadSelection::Job(dead[pick.index % dead.len()])
            }
        }
        None => DeadSelection::Queue(QUEUE_NAMES[queue].to_string()),
    }
}

/// Turns an abstract step into a concrete command, looking at the model only
/// to aim picks at jobs that exist.
fn command(clients: &mut Clients, model: &Model, time: &TimeStep, action: &Action) -> Command {
    clients.clock_ms = match time {
        TimeStep::Forward(step_ms) => clients.clock_ms + step_ms,
        TimeStep::Back(step_ms) => clients.clock_ms.saturating_sub(*step_ms),
    };
    let now_ms = clients.clock_ms;
    let state_now_ms = model.now_ms.max(now_ms);
    let op = match action {
        Action::Enqueue(specs, session) => Op::Enqueue(Enqueue {
            jobs: specs
                .iter()
                .map(|spec| NewJob {
                    queue: QUEUE_NAMES[spec.queue].to_string(),
                    payload: Bytes::from(vec![spec.payload_bytes as u8; spec.payload_bytes]),
                    priority: spec.priority,
                    schedule: match spec.schedule {
                        (0, _) => Schedule::Now,
                        (1, delay_ms) => Schedule::DelayMs(delay_ms),
                        (_, offset_ms) => Schedule::RunAtMs(state_now_ms + offset_ms - 1_500),
                    },
                    max_attempts: spec.max_attempts,
                    backoff: backoff_of(spec.backoff),
                    idempotency_key: spec.key.map(|key| match key {
                        4 => Bytes::new(),
                        key => Bytes::from(format!("key-{key}")),
                    }),
                })
                .collect(),
            session: session.as_ref().map(|spec| clients.stamp(spec)),
        }),
        Action::Claim(queues, max_jobs, lease) => Op::Claim(Claim {
            queues: queues.iter().map(|&q| QUEUE_NAMES[q].to_string()).collect(),
            max_jobs: *max_jobs,
            lease_ms: LEASES_MS[*lease],
            worker: (max_jobs % 2 == 0).then(|| format!("worker-{max_jobs}")),
        }),
        Action::Ack(job, token) => {
            let id = pick_job(model, job);
            Op::Ack(Ack {
                id,
                token: pick_token(model, id, token),
            })
        }
        Action::AckBatch(picks) => Op::AckBatch(
            picks
                .iter()
                .map(|(job, token)| {
                    let id = pick_job(model, job);
                    Ack {
                        id,
                        token: pick_token(model, id, token),
                    }
                })
                .collect(),
        ),
        Action::Nack(job, token, retry_delay_ms, dead, error) => {
            let id = pick_job(model, job);
            Op::Nack(Nack {
                id,
                token: pick_token(model, id, token),
                error: match error {
                    0 => String::new(),
                    1 => "failed".to_string(),
                    _ => "é".repeat(600),
                },
                retry_delay_ms: *retry_delay_ms,
                dead: *dead,
            })
        }
        Action::Extend(job, token, lease) => {
            let id = pick_job(model, job);
            Op::Extend(Extend {
                id,
                token: pick_token(model, id, token),
                lease_ms: LEASES_MS[*lease],
            })
        }
        Action::Cancel(job) => Op::Cancel(pick_job(model, job)),
        Action::RequeueDead(job, queue) => Op::RequeueDead(dead_selection(model, job, *queue)),
        Action::DeleteDead(job, queue) => Op::DeleteDead(dead_selection(model, job, *queue)),
        Action::Pause(queue) => Op::Pause(QUEUE_NAMES[*queue].to_string()),
        Action::Resume(queue) => Op::Resume(QUEUE_NAMES[*queue].to_string()),
        Action::Purge(queue) => Op::Purge(QUEUE_NAMES[*queue].to_string()),
        Action::Tick => Op::Tick,
        Action::SetLimits(choices) => {
            let [payload, window, keys, sessions, idle, results, jobs, queues] =
                choices.map(usize::from);
            Op::SetLimits(Limits {
                payload_max_bytes: [16, 1024 * 1024, 64 * 1024 * 1024 + 1][payload],
                idempotency_window_ms: [0, 3_000, 120_000][window],
                idempotency_keys_max: [2, 4, 1_000_000][keys],
                sessions_max: [0, 2, 100_000][sessions],
                session_idle_ms: [0, 5_000, 3_600_000][idle],
                session_results_max: [0, 3, 1_000_000][results],
                jobs_per_queue_max: [3, 8, 10_000_000][jobs],
                queues_max: [2, 3, 10_000][queues],
            })
        }
    };
    Command { now_ms, op }
}

/// Error texts of `InvalidArgument` are for people; the model does not
/// reproduce them.
fn normalize_error(error: QueueError) -> QueueError {
    match error {
        QueueError::InvalidArgument(_) => invalid(),
        other => other,
    }
}

fn normalize<T>(result: Result<T, QueueError>) -> Result<T, QueueError> {
    result.map_err(normalize_error)
}

fn normalize_outcome(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Enqueue(results) => Outcome::Enqueue(
            normalize(results).map(|results| results.into_iter().map(normalize).collect()),
        ),
        Outcome::Claim(result) => Outcome::Claim(normalize(result)),
        Outcome::Ack(result) => Outcome::Ack(normalize(result)),
        Outcome::Nack(result) => Outcome::Nack(normalize(result)),
        Outcome::Extend(result) => Outcome::Extend(normalize(result)),
        Outcome::Cancel(result) => Outcome::Cancel(normalize(result)),
        Outcome::RequeueDead(result) => Outcome::RequeueDead(normalize(result)),
        Outcome::DeleteDead(result) => Outcome::DeleteDead(normalize(result)),
        Outcome::Pause(result) => Outcome::Pause(normalize(result)),
        Outcome::Resume(result) => Outcome::Resume(normalize(result)),
        Outcome::Purge(result) => Outcome::Purge(normalize(result)),
        Outcome::Tick => Outcome::Tick,
        Outcome::SetLimits(result) => Outcome::SetLimits(normalize(result)),
        Outcome::AckBatch(results) => Outcome::AckBatch(
            normalize(results).map(|results| results.into_iter().map(normalize).collect()),
        ),
    }
}

/// Every read of the real state agrees with the model.
fn assert_reads_agree(state: &JobQueue, model: &Model) -> Result<(), TestCaseError> {
    let reader_now_ms = model.now_ms + 7;
    prop_assert_eq!(state.last_now_ms(), model.now_ms);
    prop_assert_eq!(state.job_count(), model.jobs.len());
    prop_assert_eq!(state.next_wakeup_ms(), model.next_wakeup_ms());
    prop_assert_eq!(
        state.all_stats(reader_now_ms),
        model.all_stats(reader_now_ms)
    );
    for name in QUEUE_NAMES {
        prop_assert_eq!(
            state.stats(name, reader_now_ms),
            model.stats(name, reader_now_ms)
        );
        prop_assert_eq!(state.has_ready(&[name]), model.has_ready(&[name]));
        prop_assert_eq!(
            state.list_dead(name, None, 1_000),
            model.list_dead(name, None, 1_000)
        );
        prop_assert_eq!(
            state.list_dead(name, Some(JobId(3)), 2),
            model.list_dead(name, Some(JobId(3)), 2)
        );
    }
    for id in 0..model.next_id + 1 {
        prop_assert_eq!(state.job(JobId(id)), model.job(JobId(id)));
    }
    Ok(())
}

/// Runs a sequence on the real state and the model, checking every outcome
/// and every read.
fn run_against_model(
    state: &mut JobQueue,
    model: &mut Model,
    clients: &mut Clients,
    steps: &[(TimeStep, Action)],
) -> Result<(), TestCaseError> {
    for (time, action) in steps {
        let command = command(clients, model, time, action);
        let expected = model.apply(&command);
        let actual = normalize_outcome(state.apply(&command));
        prop_assert_eq!(actual, expected, "command {:?}", command);
        assert_reads_agree(state, model)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("QUEUE_MODEL_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(512)
}

#[test]
fn job_queue_matches_the_reference_model_and_survives_snapshots() {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        ..Config::default()
    });
    runner
        .run(&(steps(1..80), steps(0..40)), |(prefix, suffix)| {
            let mut state = JobQueue::new();
            let mut model = Model::new();
            let mut clients = Clients::new();
            run_against_model(&mut state, &mut model, &mut clients, &prefix)?;

            let bytes = state.snapshot();
            let mut restored = JobQueue::restore(&bytes)
                .map_err(|error| TestCaseError::fail(format!("restore failed: {error}")))?;
            prop_assert!(restored == state, "restored state differs");
            prop_assert!(restored.snapshot() == bytes, "snapshot is not canonical");

            let mut restored_clients = clients.clone();
            let mut restored_model = model.clone();
            for (time, action) in &suffix {
                let command = command(&mut clients, &model, time, action);
                let restored_command =
                    self::command(&mut restored_clients, &restored_model, time, action);
                prop_assert_eq!(&command, &restored_command);
                let original = state.apply(&command);
                let again = restored.apply(&command);
                prop_assert_eq!(&original, &again, "command {:?}", command);
                prop_assert_eq!(normalize_outcome(original), model.apply(&command));
                restored_model.apply(&command);
            }
            prop_assert!(restored == state, "states diverged after the suffix");
            assert_reads_agree(&state, &model)?;
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------
// Restore on hostile input.
// ---------------------------------------------------------------------------

/// Counts the bytes allocated by the current thread, so a test can bound the
/// peak allocation of one call while other tests run on other threads.
struct CountingAllocator;

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE_BYTES.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK_BYTES.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            track(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Serde reserves at most 1 MiB for a sequence from its claimed length, and
/// nested sequences are few, so restore's peak stays within a fixed slack
/// plus a small multiple of its input.
const RESTORE_SLACK_BYTES: isize = 8 * 1024 * 1024;
const RESTORE_INPUT_FACTOR: isize = 16;

/// Restores `bytes` on this thread and returns the result with the peak
/// number of bytes allocated meanwhile.
fn restore_measured(bytes: &[u8]) -> (Result<JobQueue, SnapshotError>, isize) {
    let live_before = LIVE_BYTES.with(Cell::get);
    PEAK_BYTES.with(|peak| peak.set(live_before));
    let result = JobQueue::restore(bytes);
    let peak = PEAK_BYTES.with(Cell::get) - live_before;
    (result, peak)
}

fn check_hostile_restore(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (result, peak_bytes) = restore_measured(bytes);
    prop_assert!(
        peak_bytes <= RESTORE_SLACK_BYTES + RESTORE_INPUT_FACTOR * bytes.len() as isize,
        "restore of {} bytes allocated {} bytes",
        bytes.len(),
        peak_bytes
    );
    if let Ok(mut state) = result {
        // Whatever restore accepts is a consistent state: it snapshots to an
        // equal state and keeps working.
        let again = JobQueue::restore(&state.snapshot());
        prop_assert!(
            again.as_ref() == Ok(&state),
            "accepted state does not round-trip"
        );
        let now_ms = state.last_now_ms();
        for op in [
            Op::Claim(Claim {
                queues: QUEUE_NAMES[..4].iter().map(|q| q.to_string()).collect(),
                max_jobs: 1_000,
                lease_ms: 100,
                worker: None,
            }),
            Op::Tick,
            Op::Purge("a".into()),
        ] {
            state.apply(&Command {
                now_ms: now_ms.saturating_add(86_400_000),
                op,
            });
        }
    }
    Ok(())
}

/// Sets the trailing checksum so damaged bodies get past it and reach the
/// decoder and the invariant checks.
fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 12 {
        let covered = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..covered]);
        bytes[covered..].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

#[derive(Clone, Debug)]
enum Mutation {
    Nudge(usize, i8),
    Flip(usize, u8),
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 1..12),
        Just(vec![0xff; 10]),
        Just(vec![0x80, 0x80, 0x80, 0x80, 0x0f]),
    ];
    prop_oneof![
        6 => (any::<usize>(), -3..=3i8).prop_map(|(at, delta)| Mutation::Nudge(at, delta)),
        4 => (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        3 => (any::<usize>(), bytes.clone()).prop_map(|(at, bytes)| Mutation::Overwrite(at, bytes)),
        2 => (any::<usize>(), bytes).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        2 => (any::<usize>(), 1..16usize).prop_map(|(at, count)| Mutation::Remove(at, count)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    // Mutations keep the 8-byte header so they reach the body.
    let body = |at: usize, length: usize| 8 + at % (length.saturating_sub(12).max(1));
    let length = bytes.len();
    match mutation {
        Mutation::Nudge(at, delta) => {
            let at = body(*at, length);
            bytes[at] = bytes[at].wrapping_add_signed(*delta);
        }
        Mutation::Flip(at, mask) => bytes[body(*at, length)] ^= mask,
        Mutation::Overwrite(at, new) => {
            let start = body(*at, length);
            for (offset, byte) in new.iter().enumerate() {
                if start + offset < length - 4 {
                    bytes[start + offset] = *byte;
                }
            }
        }
        Mutation::Insert(at, new) => {
            let start = body(*at, length);
            bytes.splice(start..start, new.iter().copied());
        }
        Mutation::Remove(at, count) => {
            let start = body(*at, length);
            let end = (start + count).min(length - 4);
            bytes.drain(start..end);
        }
        Mutation::Truncate(at) => bytes.truncate(12 + at % length.saturating_sub(11).max(1)),
    }
    bytes
}

#[test]
fn restore_never_panics_on_arbitrary_bytes() {
    let mut runner = TestRunner::new(Config {
        cases: cases() * 4,
        ..Config::default()
    });
    let header = prop::collection::vec(any::<u8>(), 0..600).prop_map(|body| {
        let mut bytes = b"RQSM".to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&[0; 4]);
        with_checksum(bytes)
    });
    let inputs = prop_oneof![prop::collection::vec(any::<u8>(), 0..600), header];
    runner
        .run(&inputs, |bytes| check_hostile_restore(&bytes))
        .unwrap();
}

#[test]
fn restore_never_panics_on_damaged_snapshots() {
    let mut runner = TestRunner::new(Config {
        cases: cases() * 2,
        ..Config::default()
    });
    let inputs = (steps(1..40), prop::collection::vec(mutation(), 1..4));
    runner
        .run(&inputs, |(steps, mutations)| {
            let mut state = JobQueue::new();
            let mut model = Model::new();
            let mut clients = Clients::new();
            for (time, action) in &steps {
                let command = command(&mut clients, &model, time, action);
                model.apply(&command);
                state.apply(&command);
            }
            let mut bytes = state.snapshot();
            for mutation in &mutations {
                bytes = mutate(bytes, mutation);
            }
            check_hostile_restore(&with_checksum(bytes))
        })
        .unwrap();
}

#[test]
fn restore_refuses_a_huge_claimed_length_without_allocating_it() {
    // A valid start of a body (clock, counters, limits) followed by a queue
    // count of about 2^63 and a single byte of queues.
    let start = postcard::to_allocvec(&(5u64, 1u64, 0u64, Limits::default())).unwrap();
    // The counter sees restore's allocations at all.
    let mut state = JobQueue::new();
    state.apply(&Command {
        now_ms: 5,
        op: Op::Enqueue(Enqueue {
            jobs: vec![NewJob::new("a", vec![1u8; 4_096])],
            session: None,
        }),
    });
    let (restored, peak_bytes) = restore_measured(&state.snapshot());
    assert_eq!(restored, Ok(state));
    assert!(peak_bytes >= 4_096, "restore counted {peak_bytes} bytes");

    for count in [u64::MAX >> 1, 1 << 40, 1 << 20] {
        let mut bytes = b"RQSM".to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&start);
        bytes.extend_from_slice(&postcard::to_allocvec(&count).unwrap());
        bytes.push(1);
        bytes.extend_from_slice(&[0; 4]);
        let bytes = with_checksum(bytes);
        let (result, peak_bytes) = restore_measured(&bytes);
        assert!(
            matches!(result, Err(SnapshotError::Decode(_))),
            "{result:?}"
        );
        assert!(
            peak_bytes <= RESTORE_SLACK_BYTES,
            "a claimed count of {count} allocated {peak_bytes} bytes"
        );
    }
}
