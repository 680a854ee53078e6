//! Applying the operator commands: cancel, dead-letter handling, pause,
//! resume, purge, and limits.

use super::command::DeadSelection;
use super::error::QueueError;
use super::ids::JobId;
use super::info::JobState;
use super::job_queue::JobQueue;
use super::limits::Limits;
use super::outcome::Cancelled;
use super::queue_table::{QueueId, validate_queue_name};

impl JobQueue {
    pub(super) fn cancel(&mut self, id: JobId) -> Result<Cancelled, QueueError> {
        let Some(job) = self.jobs.get(id) else {
            return Err(QueueError::JobNotFound(id));
        };
        let previous_state = job.state;
        self.unlink(id);
        let job = self.remove_job(id);
        let record = self.queues.get_mut(job.queue);
        record.counters.cancelled += 1;
        Ok(Cancelled {
            queue: record.name.to_string(),
            previous_state,
        })
    }

    /// The dead jobs a selection names, in id order; a named job must exist
    /// and be dead.
    fn select_dead(&self, selection: &DeadSelection) -> Result<Vec<JobId>, QueueError> {
        match selection {
            DeadSelection::Job(id) => match self.jobs.get(*id) {
                None => Err(QueueError::JobNotFound(*id)),
                Some(job) if job.state != JobState::Dead => Err(QueueError::JobNotDead(*id)),
                Some(_) => Ok(vec![*id]),
            },
            DeadSelection::Queue(name) => {
                let queue = self.existing_queue(name)?;
                Ok(self.queues.get(queue).dead.iter().copied().collect())
            }
        }
    }

    pub(super) fn requeue_dead(&mut self, selection: &DeadSelection) -> Result<u64, QueueError> {
        let ids = self.select_dead(selection)?;
        let now_ms = self.now_ms;
        for &id in &ids {
            self.unlink(id);
            let job = self.job_mut(id);
            job.attempts = 0;
            let queue = job.queue;
            self.link_ready(id, now_ms);
            self.queues.get_mut(queue).counters.requeued += 1;
        }
        Ok(ids.len() as u64)
    }

    pub(super) fn delete_dead(&mut self, selection: &DeadSelection) -> Result<u64, QueueError> {
        let ids = self.select_dead(selection)?;
        for &id in &ids {
            self.unlink(id);
            let job = self.remove_job(id);
            self.queues.get_mut(job.queue).counters.deleted += 1;
        }
        Ok(ids.len() as u64)
    }

    /// Pausing creates the queue if needed, so a queue can be paused before
    /// its first job arrives.
    pub(super) fn pause(&mut self, name: &str) -> Result<(), QueueError> {
        validate_queue_name(name)?;
        let queue = match self.queues.id(name) {
            Some(queue) => queue,
            None if self.queues.len() >= self.limits.queues_max as usize => {
                return Err(QueueError::TooManyQueues {
                    max: u64::from(self.limits.queues_max),
                });
            }
            None => self.queues.create(name),
        };
        self.queues.get_mut(queue).paused = true;
        Ok(())
    }

    pub(super) fn resume(&mut self, name: &str) -> Result<(), QueueError> {
        let queue = self.existing_queue(name)?;
        self.queues.get_mut(queue).paused = false;
        Ok(())
    }

    /// Removes the queue's ready and scheduled jobs; leased and dead jobs
    /// stay, since a worker holds the first and an operator decides on the
    /// second.
    pub(super) fn purge(&mut self, name: &str) -> Result<u64, QueueError> {
        let queue = self.existing_queue(name)?;
        let mut ids: Vec<JobId> = self
            .queues
            .get(queue)
            .ready
            .iter()
            .map(|key| key.id)
            .collect();
        ids.extend(self.scheduled_in(queue));
        for &id in &ids {
            self.unlink(id);
            self.remove_job(id);
        }
        let purged = ids.len() as u64;
        self.queues.get_mut(queue).counters.purged += purged;
        Ok(purged)
    }

    fn scheduled_in(&self, queue: QueueId) -> Vec<JobId> {
        if self.queues.get(queue).scheduled == 0 {
            return Vec::new();
        }
        self.scheduled
            .iter()
            .map(|&(_, id)| id)
            .filter(|id| self.job_ref(*id).queue == queue)
            .collect()
    }

    pub(super) fn set_limits(&mut self, limits: &Limits) -> Result<(), QueueError> {
        limits.validate()?;
        self.limits = *limits;
        // A shorter window or idle time applies from this command on.
        self.keys.expire(self.now_ms, limits.idempotency_window_ms);
        self.sessions.expire(self.now_ms, limits.session_idle_ms);
        self.sessions.evict_down_to(limits.sessions_max as usize);
        self.sessions
            .evict_down_to_results(limits.session_results_max as usize);
        Ok(())
    }
}
