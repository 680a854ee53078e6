//! Applying claims and the commands of a lease holder: ack, nack, extend.

use std::sync::Arc;

use bytes::Bytes;

use super::command::{Ack, Claim, Extend, Nack};
use super::error::QueueError;
use super::ids::{FencingToken, JobId};
use super::info::JobState;
use super::job::Lease;
use super::job_queue::JobQueue;
use super::limits::{
    ACK_BATCH_MAX, CLAIM_JOBS_MAX, CLAIM_QUEUES_MAX, ERROR_MESSAGE_MAX_BYTES, LEASE_MAX_MS,
    LEASE_MIN_MS, RESPONSE_PAYLOAD_BYTES_MAX, SCHEDULE_AHEAD_MAX_MS, WORKER_NAME_MAX_BYTES,
};
use super::outcome::{Acked, ClaimedJob, Extended, Nacked};
use super::queue_table::validate_queue_name;

impl JobQueue {
    pub(super) fn claim(&mut self, claim: &Claim) -> Result<Vec<ClaimedJob>, QueueError> {
        if claim.queues.is_empty() || claim.queues.len() > CLAIM_QUEUES_MAX {
            return Err(QueueError::InvalidArgument(format!(
                "a claim names 1 to {CLAIM_QUEUES_MAX} queues"
            )));
        }
        for queue in &claim.queues {
            validate_queue_name(queue)?;
        }
        if !(1..=CLAIM_JOBS_MAX).contains(&claim.max_jobs) {
            return Err(QueueError::InvalidArgument(format!(
                "a claim takes 1 to {CLAIM_JOBS_MAX} jobs"
            )));
        }
        validate_lease(claim.lease_ms)?;
        if claim
            .worker
            .as_ref()
            .is_some_and(|worker| worker.len() > WORKER_NAME_MAX_BYTES)
        {
            return Err(QueueError::InvalidArgument(format!(
                "a worker name has at most {WORKER_NAME_MAX_BYTES} bytes"
            )));
        }

        let now_ms = self.now_ms;
        let deadline_ms = now_ms.saturating_add(claim.lease_ms);
        let mut claimed = Vec::new();
        let mut payload_bytes = 0;
        'queues: for name in &claim.queues {
            let Some(queue) = self.queues.id(name) else {
                continue;
            };
            if self.queues.get(queue).paused {
                continue;
            }
            while claimed.len() < claim.max_jobs as usize {
                let Some(next) = self.queues.get(queue).peek_ready() else {
                    break;
                };
                let next_bytes = self.jobs.get(next).map_or(0, |job| job.payload.len());
                if !claimed.is_empty() && payload_bytes + next_bytes > RESPONSE_PAYLOAD_BYTES_MAX {
                    break 'queues;
                }
                payload_bytes += next_bytes;
                let Some(key) = self.queues.get_mut(queue).pop_ready() else {
                    break;
                };
                self.last_token += 1;
                let token = FencingToken(self.last_token);
                let id = key.id;
                let job = self.job_mut(id);
                job.state = JobState::Leased;
                job.attempts += 1;
                claimed.push(ClaimedJob {
                    id,
                    queue: name.clone(),
                    payload: Bytes::from_owner(Arc::clone(&job.payload)),
                    attempt: u32::from(job.attempts),
                    max_attempts: u32::from(job.max_attempts),
                    token,
                    lease_deadline_ms: deadline_ms,
                    enqueued_at_ms: job.enqueued_at_ms,
                    ready_at_ms: job.due_at_ms,
                });
                self.leases.insert(
                    id,
                    Lease {
                        token,
                        claimed_at_ms: now_ms,
                        deadline_ms,
                        worker: claim.worker.as_deref().map(Box::from),
                    },
                );
                self.lease_deadlines.insert((deadline_ms, id));
                let record = self.queues.get_mut(queue);
                record.leased += 1;
                record.counters.claimed += 1;
            }
        }
        Ok(claimed)
    }

    /// Finds the lease that `token` proves on job `id`. A lease past its
    /// deadline was already expired when the clock advanced, so any lease
    /// found here is live.
    fn held_lease(&self, id: JobId, token: FencingToken) -> Result<&Lease, QueueError> {
        if !self.jobs.contains(id) {
            return Err(QueueError::JobNotFound(id));
        }
        match self.leases.get(&id) {
            Some(lease) if lease.token == token => Ok(lease),
            _ => Err(QueueError::LeaseLost(id)),
        }
    }

    pub(super) fn ack(&mut self, ack: &Ack) -> Result<Acked, QueueError> {
        self.held_lease(ack.id, ack.token)?;
        let lease = self.remove_lease(ack.id);
        let job = self.remove_job(ack.id);
        let record = self.queues.get_mut(job.queue);
        record.counters.acked += 1;
        Ok(Acked {
            queue: record.name.to_string(),
            enqueued_at_ms: job.enqueued_at_ms,
            claimed_at_ms: lease.claimed_at_ms,
        })
    }

    pub(super) fn ack_batch(
        &mut self,
        acks: &[Ack],
    ) -> Result<Vec<Result<Acked, QueueError>>, QueueError> {
        if acks.is_empty() || acks.len() > ACK_BATCH_MAX {
            return Err(QueueError::InvalidArgument(format!(
                "an ack batch holds 1 to {ACK_BATCH_MAX} acks"
            )));
        }
        Ok(acks.iter().map(|ack| self.ack(ack)).collect())
    }

    pub(super) fn nack(&mut self, nack: &Nack) -> Result<Nacked, QueueError> {
        if nack
            .retry_delay_ms
            .is_some_and(|delay_ms| delay_ms > SCHEDULE_AHEAD_MAX_MS)
        {
            return Err(QueueError::InvalidArgument(
                "a retry may be delayed at most 365 days".to_string(),
            ));
        }
        self.held_lease(nack.id, nack.token)?;
        self.remove_lease(nack.id);
        let queue = self.job_ref(nack.id).queue;
        self.queues.get_mut(queue).counters.nacked += 1;
        self.last_errors
            .insert(nack.id, truncate_message(&nack.error).into());
        let disposition = self.fail_attempt(nack.id, self.now_ms, nack.retry_delay_ms, nack.dead);
        Ok(Nacked {
            queue: self.queues.name(queue).to_string(),
            disposition,
        })
    }

    pub(super) fn extend(&mut self, extend: &Extend) -> Result<Extended, QueueError> {
        validate_lease(extend.lease_ms)?;
        let old_deadline_ms = self.held_lease(extend.id, extend.token)?.deadline_ms;
        let deadline_ms = self.now_ms.saturating_add(extend.lease_ms);
        self.lease_deadlines.remove(&(old_deadline_ms, extend.id));
        self.lease_deadlines.insert((deadline_ms, extend.id));
        if let Some(lease) = self.leases.get_mut(&extend.id) {
            lease.deadline_ms = deadline_ms;
        }
        Ok(Extended {
            lease_deadline_ms: deadline_ms,
        })
    }
}

fn validate_lease(lease_ms: u64) -> Result<(), QueueError> {
    if (LEASE_MIN_MS..=LEASE_MAX_MS).contains(&lease_ms) {
        Ok(())
    } else {
        Err(QueueError::InvalidLease { lease_ms })
    }
}

/// Cuts an error message to `ERROR_MESSAGE_MAX_BYTES` on a character
/// boundary.
pub(super) fn truncate_message(message: &str) -> &str {
    if message.len() <= ERROR_MESSAGE_MAX_BYTES {
        return message;
    }
    let mut end = ERROR_MESSAGE_MAX_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}
