//! Applying an enqueue: batch and session checks, then each job on its own.

use std::cmp::Reverse;
use std::sync::Arc;

use super::command::{Enqueue, NewJob, Schedule, SessionStamp};
use super::error::QueueError;
use super::idempotency::KeyDigest;
use super::ids::JobId;
use super::info::JobState;
use super::job::Job;
use super::job_queue::JobQueue;
use super::limits::{
    ATTEMPTS_MAX, ENQUEUE_BATCH_JOBS_MAX, IDEMPOTENCY_KEY_MAX_BYTES, JOBS_TOTAL_MAX,
    SCHEDULE_AHEAD_MAX_MS,
};
use super::outcome::Enqueued;
use super::queue_table::{ReadyKey, validate_queue_name};
use super::sessions::{BatchResults, SessionVerdict};

impl JobQueue {
    pub(super) fn enqueue(&mut self, enqueue: &Enqueue) -> Result<BatchResults, QueueError> {
        if enqueue.jobs.is_empty() || enqueue.jobs.len() > ENQUEUE_BATCH_JOBS_MAX {
            return Err(QueueError::InvalidArgument(format!(
                "an enqueue carries 1 to {ENQUEUE_BATCH_JOBS_MAX} jobs, not {}",
                enqueue.jobs.len()
            )));
        }
        let Some(stamp) = &enqueue.session else {
            return Ok(self.enqueue_jobs(&enqueue.jobs));
        };
        validate_stamp(stamp)?;
        match self.sessions.verdict(stamp, enqueue.jobs.len())? {
            SessionVerdict::Replay(stored) => {
                let replayed = stored
                    .iter()
                    .map(|result| {
                        result.clone().map(|enqueued| Enqueued {
                            duplicate: true,
                            ..enqueued
                        })
                    })
                    .collect();
                self.sessions.touch(stamp, self.now_ms);
                Ok(replayed)
            }
            SessionVerdict::Fresh => {
                let results = self.enqueue_jobs(&enqueue.jobs);
                self.sessions
                    .record(stamp, self.now_ms, results.clone(), &self.limits);
                Ok(results)
            }
        }
    }

    fn enqueue_jobs(&mut self, jobs: &[NewJob]) -> BatchResults {
        jobs.iter().map(|job| self.enqueue_one(job)).collect()
    }

    /// Validates and adds one job. The checks run in a fixed order and the
    /// first failure is the job's error; a refused job changes nothing.
    fn enqueue_one(&mut self, new: &NewJob) -> Result<Enqueued, QueueError> {
        validate_queue_name(&new.queue)?;
        let payload_max_bytes = u64::from(self.limits.payload_max_bytes);
        if new.payload.len() as u64 > payload_max_bytes {
            return Err(QueueError::PayloadTooLarge {
                size: new.payload.len() as u64,
                max: payload_max_bytes,
            });
        }
        if !(1..=ATTEMPTS_MAX).contains(&new.max_attempts) {
            return Err(QueueError::InvalidArgument(format!(
                "max_attempts must be 1 to {ATTEMPTS_MAX}"
            )));
        }
        new.backoff.validate()?;
        let now_ms = self.now_ms;
        let run_at_ms = match new.schedule {
            Schedule::Now => now_ms,
            Schedule::DelayMs(delay_ms) if delay_ms <= SCHEDULE_AHEAD_MAX_MS => {
                now_ms.saturating_add(delay_ms)
            }
            Schedule::RunAtMs(run_at_ms)
                if run_at_ms <= now_ms.saturating_add(SCHEDULE_AHEAD_MAX_MS) =>
            {
                run_at_ms.max(now_ms)
            }
            _ => {
                return Err(QueueError::InvalidArgument(
                    "a job may be scheduled at most 365 days ahead".to_string(),
                ));
            }
        };
        if let Some(key) = &new.idempotency_key
            && (key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX_BYTES)
        {
            return Err(QueueError::InvalidArgument(format!(
                "an idempotency key has 1 to {IDEMPOTENCY_KEY_MAX_BYTES} bytes"
            )));
        }

        let existing_queue = self.queues.id(&new.queue);
        if let (Some(queue), Some(key)) = (existing_queue, &new.idempotency_key)
            && let Some(id) = self.keys.get(KeyDigest::of(queue, key))
        {
            return Ok(Enqueued {
                id,
                duplicate: true,
            });
        }
        if self.jobs.len() >= JOBS_TOTAL_MAX {
            return Err(QueueError::QueueFull {
                queue: new.queue.clone(),
                max: JOBS_TOTAL_MAX as u64,
            });
        }
        match existing_queue {
            Some(queue) => {
                let jobs_max = self.limits.jobs_per_queue_max;
                if self.queues.get(queue).jobs_total() >= jobs_max {
                    return Err(QueueError::QueueFull {
                        queue: new.queue.clone(),
                        max: jobs_max,
                    });
                }
            }
            None => {
                if self.queues.len() >= self.limits.queues_max as usize {
                    return Err(QueueError::TooManyQueues {
                        max: u64::from(self.limits.queues_max),
                    });
                }
            }
        }
        if new.idempotency_key.is_some()
            && self.keys.len() >= self.limits.idempotency_keys_max as usize
        {
            return Err(QueueError::TooManyIdempotencyKeys {
                max: u64::from(self.limits.idempotency_keys_max),
            });
        }

        let queue = existing_queue.unwrap_or_else(|| self.queues.create(&new.queue));
        let id = JobId(self.next_job_id);
        self.next_job_id += 1;
        let job = Job {
            id,
            payload: Arc::from(&new.payload[..]),
            enqueued_at_ms: now_ms,
            due_at_ms: run_at_ms,
            backoff_initial_ms: new.backoff.initial_ms,
            backoff_max_ms: new.backoff.max_ms,
            queue,
            priority: new.priority,
            attempts: 0,
            // Both fit: max_attempts <= ATTEMPTS_MAX and the multiplier <=
            // BACKOFF_MULTIPLIER_MAX, checked above.
            max_attempts: new.max_attempts as u16,
            backoff_multiplier: new.backoff.multiplier as u8,
            state: if run_at_ms > now_ms {
                JobState::Scheduled
            } else {
                JobState::Ready
            },
        };
        // Indexed directly rather than through `link_*`, which would look the
        // new job up again: this is the hottest path of the state machine.
        let record = self.queues.get_mut(queue);
        record.counters.enqueued += 1;
        if job.state == JobState::Scheduled {
            record.scheduled += 1;
            self.scheduled.insert((run_at_ms, id));
        } else {
            record.insert_ready(ReadyKey {
                priority: Reverse(new.priority),
                ready_at_ms: now_ms,
                id,
            });
        }
        self.jobs.insert(job);
        if let Some(key) = &new.idempotency_key {
            self.keys.insert(KeyDigest::of(queue, key), id, now_ms);
        }
        Ok(Enqueued {
            id,
            duplicate: false,
        })
    }
}

/// Sequence numbers start at 1, and the lowest unanswered request cannot be
/// later than this one, which is unanswered.
fn validate_stamp(stamp: &SessionStamp) -> Result<(), QueueError> {
    if stamp.lowest_unanswered_seq == 0 || stamp.lowest_unanswered_seq > stamp.seq {
        return Err(QueueError::InvalidArgument(
            "a session stamp needs 1 <= lowest_unanswered_seq <= seq".to_string(),
        ));
    }
    Ok(())
}
