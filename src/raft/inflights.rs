//! The bounded window of AppendEntries messages in flight to one follower.

use std::collections::VecDeque;

/// Last indices of the AppendEntries messages sent to a follower and not yet
/// acknowledged, oldest first. Its capacity bounds pipelining.
#[derive(Debug, Clone)]
pub(crate) struct Inflights {
    last_indices: VecDeque<u64>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "an inflight window needs room for one message"
        );
        Inflights {
            last_indices: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.last_indices.len() >= self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.last_indices.len()
    }

    /// Records a message whose last entry is `last_index`.
    pub(crate) fn add(&mut self, last_index: u64) {
        assert!(!self.is_full(), "sending past the inflight window");
        debug_assert!(
            self.last_indices
                .back()
                .is_none_or(|&back| back < last_index)
        );
        self.last_indices.push_back(last_index);
    }

    /// Forgets every message acknowledged by a match at `index`.
    pub(crate) fn free_to(&mut self, index: u64) {
        while self
            .last_indices
            .front()
            .is_some_and(|&front| front <= index)
        {
            self.last_indices.pop_front();
        }
    }

    /// Forgets the oldest message, so a follower whose acknowledgement was
    /// lost can be probed again.
    pub(crate) fn free_first(&mut self) {
        self.last_indices.pop_front();
    }

    pub(crate) fn reset(&mut self) {
        self.last_indices.clear();
    }
}
