//! Jobs by id, stored densely: a vector of jobs and a hash table of slot
//! numbers.
//!
//! A hash map from id to job would keep a whole spare job-sized bucket for
//! every free bucket (up to half of them right after it grows). Here the
//! spare room of the hash table is 4 bytes per bucket and the vector of jobs
//! grows on its own, which saves about 60 bytes per job at a million jobs.
//! Removal swaps the last job into the freed slot, so slot order follows the
//! history of the state; nothing reads it in that order (snapshots sort by
//! id), and equality compares jobs by id.

use std::fmt;

use hashbrown::HashTable;

use super::ids::JobId;
use super::job::Job;

/// Every job, findable by id.
#[derive(Clone, Default)]
pub(super) struct JobStore {
    slots: Vec<Job>,
    index: HashTable<u32>,
}

/// A multiplicative hash: sequential ids land in distinct buckets.
fn hash_id(id: JobId) -> u64 {
    id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl JobStore {
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, id: JobId) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash_id(id), |&slot| slots[slot as usize].id == id)
            .map(|&slot| slot as usize)
    }

    pub(super) fn contains(&self, id: JobId) -> bool {
        self.slot(id).is_some()
    }

    pub(super) fn get(&self, id: JobId) -> Option<&Job> {
        self.slot(id).map(|slot| &self.slots[slot])
    }

    pub(super) fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.slot(id).map(|slot| &mut self.slots[slot])
    }

    /// Adds a job whose id is not present. The caller keeps the count below
    /// `u32::MAX` (see `JOBS_TOTAL_MAX`).
    pub(super) fn insert(&mut self, job: Job) {
        assert!(!self.contains(job.id), "job {} stored twice", job.id);
        let slot = u32::try_from(self.slots.len()).expect("job count fits in u32");
        let hash = hash_id(job.id);
        self.slots.push(job);
        let slots = &self.slots;
        self.index
            .insert_unique(hash, slot, |&slot| hash_id(slots[slot as usize].id));
    }

    pub(super) fn remove(&mut self, id: JobId) -> Option<Job> {
        let Self { slots, index } = self;
        let entry = index
            .find_entry(hash_id(id), |&slot| slots[slot as usize].id == id)
            .ok()?;
        let (slot, _) = entry.remove();
        let slot = slot as usize;
        let last = slots.len() - 1;
        let job = slots.swap_remove(slot);
        if slot != last {
            let moved = slots[slot].id;
            let entry = index
                .find_mut(hash_id(moved), |&other| other as usize == last)
                .expect("the moved job is indexed");
            *entry = slot as u32;
        }
        Some(job)
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        let Self { slots, index } = self;
        slots.reserve(additional);
        index.reserve(additional, |&slot| hash_id(slots[slot as usize].id));
    }

    /// The jobs in storage order, which is not meaningful.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Job> + '_ {
        self.slots.iter()
    }
}

impl PartialEq for JobStore {
    fn eq(&self, other: &JobStore) -> bool {
        self.len() == other.len() && self.iter().all(|job| other.get(job.id) == Some(job))
    }
}

impl fmt::Debug for JobStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut jobs: Vec<&Job> = self.iter().collect();
        jobs.sort_by_key(|job| job.id);
        formatter.debug_list().entries(jobs).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::info::JobState;
    use crate::queue::queue_table::QueueId;

    fn job(id: u64) -> Job {
        Job {
            id: JobId(id),
            payload: std::sync::Arc::from(&id.to_le_bytes()[..]),
            enqueued_at_ms: 0,
            due_at_ms: 0,
            backoff_initial_ms: 0,
            backoff_max_ms: 0,
            queue: QueueId(0),
            priority: 0,
            attempts: 0,
            max_attempts: 1,
            backoff_multiplier: 1,
            state: JobState::Ready,
        }
    }

    #[test]
    fn job_store_finds_every_job_after_removals_in_any_order() {
        let mut store = JobStore::default();
        for id in 1..=1_000 {
            store.insert(job(id));
        }
        // Remove every third job, from the middle, the front and the back.
        for id in (1..=1_000).filter(|id| id % 3 == 0) {
            assert_eq!(store.remove(JobId(id)).map(|job| job.id), Some(JobId(id)));
        }
        assert_eq!(store.remove(JobId(3)), None);
        for id in 1..=1_000 {
            let found = store.get(JobId(id)).map(|job| job.payload.clone());
            if id % 3 == 0 {
                assert_eq!(found, None);
            } else {
                assert_eq!(found.as_deref(), Some(&id.to_le_bytes()[..]));
            }
        }
        assert_eq!(store.len(), 667);
    }

    #[test]
    fn job_stores_with_the_same_jobs_are_equal_whatever_their_history() {
        let mut forward = JobStore::default();
        let mut backward = JobStore::default();
        for id in 1..=10 {
            forward.insert(job(id));
            backward.insert(job(11 - id));
        }
        forward.remove(JobId(1));
        backward.remove(JobId(1));
        assert_eq!(forward, backward);
        backward.remove(JobId(2));
        assert_ne!(forward, backward);
    }
}
