//! Jobs by id, stored densely: chunks of jobs and a hash table of slot
//! numbers.
//!
//! A hash map from id to job would keep a whole spare job-sized bucket for
//! every free bucket (up to half of them right after it grows). Here the
//! spare room of the hash table is 4 bytes per bucket and the jobs sit in
//! fixed-size chunks, which saves about 60 bytes per job at a million jobs.
//! Removal swaps the last job into the freed slot, so slot order follows the
//! history of the state; nothing reads it in that order (snapshots sort by
//! id), and equality compares jobs by id.
//!
//! Storage grows a chunk at a time and never moves the stored jobs, because
//! the applier answers no one while it copies: doubling a single vector of
//! jobs copied all of them into fresh memory at each power of two, which took
//! up to 23 ms at 131,072 jobs and 77 ms at 262,144 with this allocator on
//! the benchmark machine. The hash table of slot numbers still grows by
//! rehashing (2-15 ms at 57,344 to 229,376 jobs there).

use std::fmt;

use hashbrown::HashTable;

use super::ids::JobId;
use super::job::Job;

/// Jobs per chunk of storage (64 KiB of jobs).
const CHUNK_JOBS: usize = 1024;

/// Every job, findable by id.
#[derive(Clone, Default)]
pub(super) struct JobStore {
    slots: Slots,
    index: HashTable<u32>,
}

/// Jobs by slot number, in chunks of [`CHUNK_JOBS`]: every chunk but the
/// one the next job goes into is full, and at most one empty chunk is kept
/// spare so that a store hovering at a chunk boundary does not allocate on
/// every insert.
#[derive(Clone, Default)]
struct Slots {
    chunks: Vec<Vec<Job>>,
    len: usize,
}

impl Slots {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, slot: usize) -> &Job {
        &self.chunks[slot / CHUNK_JOBS][slot % CHUNK_JOBS]
    }

    fn get_mut(&mut self, slot: usize) -> &mut Job {
        &mut self.chunks[slot / CHUNK_JOBS][slot % CHUNK_JOBS]
    }

    fn push(&mut self, job: Job) {
        let chunk = self.len / CHUNK_JOBS;
        if chunk == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK_JOBS));
        }
        self.chunks[chunk].push(job);
        self.len += 1;
    }

    /// Removes the job at `slot`, moving the last job into its place.
    fn swap_remove(&mut self, slot: usize) -> Job {
        let last = self.len - 1;
        let last_job = self.chunks[last / CHUNK_JOBS]
            .pop()
            .expect("the last chunk holds the last job");
        self.len = last;
        let removed = if slot == last {
            last_job
        } else {
            std::mem::replace(self.get_mut(slot), last_job)
        };
        let in_use = self.len.div_ceil(CHUNK_JOBS);
        self.chunks.truncate(in_use + 1);
        removed
    }

    fn iter(&self) -> SlotsIter<'_> {
        SlotsIter {
            jobs: self.chunks.iter().flatten(),
            left: self.len,
        }
    }
}

/// The jobs of [`Slots`] in slot order, with an exact length, so that
/// collecting them allocates once and serializing them knows the count.
struct SlotsIter<'a> {
    jobs: std::iter::Flatten<std::slice::Iter<'a, Vec<Job>>>,
    left: usize,
}

impl<'a> Iterator for SlotsIter<'a> {
    type Item = &'a Job;

    fn next(&mut self) -> Option<&'a Job> {
        let job = self.jobs.next()?;
        self.left -= 1;
        Some(job)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for SlotsIter<'_> {}

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
            .find(hash_id(id), |&slot| slots.get(slot as usize).id == id)
            .map(|&slot| slot as usize)
    }

    pub(super) fn contains(&self, id: JobId) -> bool {
        self.slot(id).is_some()
    }

    pub(super) fn get(&self, id: JobId) -> Option<&Job> {
        self.slot(id).map(|slot| self.slots.get(slot))
    }

    pub(super) fn get_mut(&mut self, id: JobId) -> Option<&mut Job> {
        self.slot(id).map(|slot| self.slots.get_mut(slot))
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
            .insert_unique(hash, slot, |&slot| hash_id(slots.get(slot as usize).id));
    }

    pub(super) fn remove(&mut self, id: JobId) -> Option<Job> {
        let Self { slots, index } = self;
        let entry = index
            .find_entry(hash_id(id), |&slot| slots.get(slot as usize).id == id)
            .ok()?;
        let (slot, _) = entry.remove();
        let slot = slot as usize;
        let last = slots.len() - 1;
        let job = slots.swap_remove(slot);
        if slot != last {
            let moved = slots.get(slot).id;
            let entry = index
                .find_mut(hash_id(moved), |&other| other as usize == last)
                .expect("the moved job is indexed");
            *entry = slot as u32;
        }
        Some(job)
    }

    /// Makes room in the hash table for `additional` more jobs, so that it
    /// does not grow before then; storage grows a chunk at a time anyway.
    pub(super) fn reserve(&mut self, additional: usize) {
        let Self { slots, index } = self;
        index.reserve(additional, |&slot| hash_id(slots.get(slot as usize).id));
    }

    /// The jobs in storage order, which is not meaningful.
    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = &Job> + '_ {
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
    fn jobs_across_chunks_stay_findable_and_emptied_chunks_are_freed() {
        let count = 2 * CHUNK_JOBS as u64 + 100;
        let mut store = JobStore::default();
        for id in 1..=count {
            store.insert(job(id));
        }
        assert_eq!(store.slots.chunks.len(), 3);
        // Removals from the first chunk pull jobs back from the last one.
        for id in 1..=CHUNK_JOBS as u64 {
            assert_eq!(store.remove(JobId(id)).map(|job| job.id), Some(JobId(id)));
        }
        assert_eq!(store.len(), CHUNK_JOBS + 100);
        // Two chunks in use and one spare.
        assert_eq!(store.slots.chunks.len(), 3);
        for id in 1..=count {
            assert_eq!(
                store.get(JobId(id)).map(|job| job.id),
                (id > CHUNK_JOBS as u64).then_some(JobId(id))
            );
        }
        assert_eq!(store.iter().len(), store.len());
        assert_eq!(store.iter().count(), store.len());
        for id in (CHUNK_JOBS as u64 + 1..=count).rev() {
            assert!(store.remove(JobId(id)).is_some());
        }
        assert_eq!(store.len(), 0);
        assert_eq!(store.slots.chunks.len(), 1, "only the spare chunk is kept");
        store.insert(job(count + 1));
        assert_eq!(
            store.get(JobId(count + 1)).map(|job| job.id),
            Some(JobId(count + 1))
        );
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
