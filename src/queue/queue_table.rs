//! Queues: name syntax, interning, and each queue's ordered indexes and
//! counters.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::error::QueueError;
use super::ids::JobId;
use super::info::QueueCounters;
use super::limits::QUEUE_NAME_MAX_BYTES;

/// A queue's interned id: its index in the table, assigned in creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct QueueId(pub(super) u32);

/// Checks the queue name syntax: 1 to 64 bytes of ASCII letters, digits,
/// '_', '-', '.', ':', starting with a letter or digit.
pub fn validate_queue_name(name: &str) -> Result<(), QueueError> {
    let bytes = name.as_bytes();
    let allowed = |byte: &u8| byte.is_ascii_alphanumeric() || b"_-.:".contains(byte);
    let valid = !bytes.is_empty()
        && bytes.len() <= QUEUE_NAME_MAX_BYTES
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(allowed);
    if valid {
        Ok(())
    } else {
        Err(QueueError::InvalidQueueName(printable_prefix(name)))
    }
}

/// Cuts a refused name so an error never carries a huge string.
fn printable_prefix(name: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 80;
    name.chars().take(SHOWN_CHARS_MAX).collect()
}

/// Orders a queue's ready jobs: priority descending, then the time the job
/// became ready, then id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReadyKey {
    pub(super) priority: Reverse<i32>,
    pub(super) ready_at_ms: u64,
    pub(super) id: JobId,
}

/// One queue's state.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct QueueRecord {
    pub(super) name: Box<str>,
    pub(super) paused: bool,
    pub(super) ready: BTreeSet<ReadyKey>,
    /// How many ready jobs became ready at each time, so the oldest ready
    /// job is found without scanning the priority order.
    pub(super) ready_since: BTreeMap<u64, u32>,
    pub(super) dead: BTreeSet<JobId>,
    pub(super) scheduled: u64,
    pub(super) leased: u64,
    pub(super) counters: QueueCounters,
}

impl QueueRecord {
    fn new(name: &str) -> QueueRecord {
        QueueRecord {
            name: name.into(),
            paused: false,
            ready: BTreeSet::new(),
            ready_since: BTreeMap::new(),
            dead: BTreeSet::new(),
            scheduled: 0,
            leased: 0,
            counters: QueueCounters::default(),
        }
    }

    /// Jobs in the queue in any state.
    pub(super) fn jobs_total(&self) -> u64 {
        self.ready.len() as u64 + self.scheduled + self.leased + self.dead.len() as u64
    }

    pub(super) fn insert_ready(&mut self, key: ReadyKey) {
        let inserted = self.ready.insert(key);
        assert!(inserted, "job {} is ready twice", key.id);
        *self.ready_since.entry(key.ready_at_ms).or_insert(0) += 1;
    }

    pub(super) fn remove_ready(&mut self, key: &ReadyKey) {
        let removed = self.ready.remove(key);
        assert!(removed, "job {} is not in the ready index", key.id);
        self.forget_ready_time(key.ready_at_ms);
    }

    /// Takes the ready job that a claim gets next.
    /// The job the next [`Self::pop_ready`] would take.
    pub(super) fn peek_ready(&self) -> Option<JobId> {
        self.ready.first().map(|key| key.id)
    }

    pub(super) fn pop_ready(&mut self) -> Option<ReadyKey> {
        let key = self.ready.pop_first()?;
        self.forget_ready_time(key.ready_at_ms);
        Some(key)
    }

    fn forget_ready_time(&mut self, ready_at_ms: u64) {
        let count = self
            .ready_since
            .get_mut(&ready_at_ms)
            .expect("every ready job has its ready time counted");
        *count -= 1;
        if *count == 0 {
            self.ready_since.remove(&ready_at_ms);
        }
    }

    pub(super) fn oldest_ready_at_ms(&self) -> Option<u64> {
        self.ready_since.keys().next().copied()
    }
}

/// Every queue, interned: jobs refer to their queue by [`QueueId`]. Queues are
/// never removed, since their counters are replicated state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct QueueTable {
    records: Vec<QueueRecord>,
    ids: HashMap<Box<str>, QueueId>,
}

impl QueueTable {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    pub(super) fn id(&self, name: &str) -> Option<QueueId> {
        self.ids.get(name).copied()
    }

    /// Adds a queue whose name is valid and not yet present.
    pub(super) fn create(&mut self, name: &str) -> QueueId {
        assert!(self.id(name).is_none(), "queue {name} created twice");
        let id = QueueId(u32::try_from(self.records.len()).expect("queue count fits in u32"));
        self.records.push(QueueRecord::new(name));
        self.ids.insert(name.into(), id);
        id
    }

    pub(super) fn get(&self, id: QueueId) -> &QueueRecord {
        &self.records[id.0 as usize]
    }

    pub(super) fn get_mut(&mut self, id: QueueId) -> &mut QueueRecord {
        &mut self.records[id.0 as usize]
    }

    pub(super) fn name(&self, id: QueueId) -> &str {
        &self.get(id).name
    }

    /// The queues in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (QueueId, &QueueRecord)> + '_ {
        self.records
            .iter()
            .enumerate()
            .map(|(index, record)| (QueueId(index as u32), record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_the_documented_syntax() {
        for good in ["a", "emails", "Q1", "9lives", "a.b-c_d:e", &"x".repeat(64)] {
            assert_eq!(validate_queue_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "_a",
            "-a",
            ".a",
            ":a",
            "a b",
            "a/b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn invalid_queue_name_error_is_cut_to_a_printable_length() {
        let Err(QueueError::InvalidQueueName(shown)) = validate_queue_name(&"!".repeat(10_000))
        else {
            panic!("a long name of punctuation is invalid");
        };
        assert_eq!(shown.len(), 80);
    }
}
