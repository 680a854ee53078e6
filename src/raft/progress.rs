//! The leader's view of one follower's log.

use super::inflights::Inflights;
use super::snapshot::Snapshot;

/// How the leader replicates to a follower (the etcd/raft-rs progress states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// The follower's match is unknown: one AppendEntries at a time until one
    /// is accepted.
    Probe,
    /// The follower is in sync: entries are sent optimistically, bounded by
    /// the inflight window.
    Replicate,
    /// The follower needs entries the leader has compacted: a snapshot is
    /// being sent in chunks.
    Snapshot,
}

/// A snapshot being streamed to a follower.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingSnapshot {
    pub(crate) snapshot: Snapshot,
    /// Offset of the next chunk to send.
    pub(crate) offset: u64,
}

/// Replication progress of one member, kept by the leader.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub(crate) match_index: u64,
    pub(crate) next_index: u64,
    pub(crate) state: ProgressState,
    /// In Probe: an AppendEntries is outstanding, wait for an answer or a
    /// heartbeat response before sending another.
    pub(crate) probe_sent: bool,
    pub(crate) inflights: Inflights,
    pub(crate) outgoing_snapshot: Option<OutgoingSnapshot>,
    /// Heard from since the last CheckQuorum round.
    pub(crate) recent_active: bool,
}

impl Progress {
    pub(crate) fn new(next_index: u64, max_inflight_messages: usize) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight_messages),
            outgoing_snapshot: None,
            recent_active: false,
        }
    }

    /// Whether the leader must hold back AppendEntries to this member.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot => true,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        let snapshot_index = self
            .outgoing_snapshot
            .take()
            .map_or(0, |outgoing| outgoing.snapshot.meta.index);
        self.next_index = (self.match_index + 1).max(snapshot_index + 1);
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.next_index = self.match_index + 1;
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflights.reset();
        self.outgoing_snapshot = None;
    }

    pub(crate) fn become_snapshot(&mut self, snapshot: Snapshot) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.reset();
        self.outgoing_snapshot = Some(OutgoingSnapshot {
            snapshot,
            offset: 0,
        });
    }

    /// Records that the member matches up to `index`; false if stale.
    pub(crate) fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// Moves `next_index` back after a rejection of `rejected_index`, to at
    /// most `hint_index + 1`. False if the rejection is stale.
    pub(crate) fn maybe_decrease_to(&mut self, rejected_index: u64, hint_index: u64) -> bool {
        if self.state == ProgressState::Replicate {
            // Rejections of messages sent before the follower matched are stale.
            if rejected_index <= self.match_index {
                return false;
            }
            self.next_index = self.match_index + 1;
            return true;
        }
        // In Probe only the outstanding probe, sent at next_index - 1, counts.
        if self.next_index == 0 || self.next_index - 1 != rejected_index {
            return false;
        }
        self.next_index = rejected_index.min(hint_index + 1).max(self.match_index + 1);
        self.probe_sent = false;
        true
    }
}
