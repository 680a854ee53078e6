//! The public handle on the core and the bookkeeping of `Ready` values.

use std::collections::VecDeque;

use bytes::Bytes;

use super::conf_change::ConfChange;
use super::config::Config;
use super::core::RaftCore;
use super::entry::{Entry, HardState, NodeId};
use super::error::Error;
use super::log_store::LogStore;
use super::message::Message;
use super::ready::{Ready, SoftState};
use super::snapshot::SnapshotMeta;
use super::status::{PeerStatus, Status};

/// What a handed-out Ready asked to persist, so `on_persisted` knows what
/// became durable.
#[derive(Debug, Clone, Copy)]
struct ReadyRecord {
    number: u64,
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
}

/// One Raft server: feed it ticks, messages and requests; take [`Ready`]
/// values out and report back what was persisted and applied.
pub struct RawNode<S: LogStore> {
    core: RaftCore<S>,
    next_ready_number: u64,
    outstanding: VecDeque<ReadyRecord>,
    last_hard_state: HardState,
    last_soft_state: SoftState,
}

impl<S: LogStore> RawNode<S> {
    /// Starts a server from what `store` holds: the hard state, the latest
    /// snapshot and the log after it. The state machine must be restored from
    /// the store's snapshot; committed entries after it are handed out again.
    pub fn new(config: Config, store: S) -> Result<Self, Error> {
        let core = RaftCore::new(config, store)?;
        Ok(RawNode {
            last_hard_state: core.hard_state(),
            last_soft_state: core.soft_state(),
            core,
            next_ready_number: 1,
            outstanding: VecDeque::new(),
        })
    }

    /// Advances logical time by one tick: election and heartbeat timers.
    pub fn tick(&mut self) {
        self.core.tick();
    }

    /// Handles a message from another server. Messages addressed to another
    /// server are ignored.
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        if message.to != self.core.id || message.from == self.core.id {
            return Ok(());
        }
        self.core.step(message)
    }

    /// Appends `data` as a new entry if this server is the leader. Returns its
    /// `(index, term)`: the proposal succeeded if the entry applied at `index`
    /// has `term`; any other term there means it was lost.
    pub fn propose(&mut self, data: Bytes) -> Result<(u64, u64), Error> {
        self.core.propose(data)
    }

    /// Appends a membership change; see [`ConfChange`] and the rules on
    /// [`Error::LeaderNotReady`], [`Error::ConfChangeInProgress`] and
    /// [`Error::LearnerNotCaughtUp`]. The change takes effect when appended.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<(u64, u64), Error> {
        self.core.propose_conf_change(change)
    }

    /// Asks for a linearizable read. A [`ReadState`](super::ReadState) with
    /// `context` appears in a later Ready once a quorum has confirmed the
    /// leader; the read is linearizable once this node has applied up to its
    /// index. On a leader it is dropped silently if leadership is lost first
    /// (watch [`Ready::soft_state`]). On a follower or learner the request is
    /// forwarded to the leader it knows (thesis §6.4.1), and either message
    /// may be lost: the caller gives up on a read that stays unanswered, for
    /// instance when the leader changes, and asks again. With no known
    /// leader it fails with [`Error::NotLeader`].
    pub fn read_index(&mut self, context: u64) -> Result<(), Error> {
        self.core.read_index(context)
    }

    /// Hands leadership to voter `to` (thesis §3.10). Proposals are refused
    /// until it takes over or an election timeout passes.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), Error> {
        self.core.transfer_leader(to)
    }

    /// Whether [`RawNode::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let core = &self.core;
        let unstable = &core.log.unstable;
        core.soft_state() != self.last_soft_state
            || core.hard_state() != self.last_hard_state
            || !core.messages.is_empty()
            || !core.persisted_messages.is_empty()
            || core.broadcast_pending
            || core.read_heartbeat_pending
            || (unstable.snapshot.is_some() && !unstable.snapshot_in_progress)
            || !unstable.entries_to_persist().is_empty()
            || core.log.has_entries_to_apply()
            || !core.read_states.is_empty()
    }

    /// Takes the next batch of work. See [`Ready`] for what the caller must do
    /// with it. Fails only when the log store fails.
    pub fn ready(&mut self) -> Result<Ready, Error> {
        self.core.flush()?;
        let number = self.next_ready_number;
        self.next_ready_number += 1;

        let soft_state = self.core.soft_state();
        let soft_state_changed = (soft_state != self.last_soft_state).then_some(soft_state);
        self.last_soft_state = soft_state;

        let hard_state = self.core.hard_state();
        let durable_state_changed = hard_state.term != self.last_hard_state.term
            || hard_state.vote != self.last_hard_state.vote;
        let hard_state_changed = (hard_state != self.last_hard_state).then_some(hard_state);
        self.last_hard_state = hard_state;

        let unstable = &mut self.core.log.unstable;
        let snapshot = match &unstable.snapshot {
            Some(snapshot) if !unstable.snapshot_in_progress => Some(snapshot.clone()),
            _ => None,
        };
        let entries: Vec<Entry> = unstable.entries_to_persist().to_vec();
        unstable.accept_in_progress();

        let committed_entries = self
            .core
            .log
            .entries_to_apply(self.core.config.max_committed_bytes_per_ready)?;
        if let Some(last) = committed_entries.last() {
            self.core.log.applying = last.index;
        }

        let record = ReadyRecord {
            number,
            last_entry: entries.last().map(|entry| (entry.index, entry.term)),
            snapshot_index: snapshot.as_ref().map(|snapshot| snapshot.meta.index),
        };
        if record.last_entry.is_some() || record.snapshot_index.is_some() {
            self.outstanding.push_back(record);
        }
        Ok(Ready {
            number,
            soft_state: soft_state_changed,
            hard_state: hard_state_changed,
            must_sync: durable_state_changed || !entries.is_empty() || snapshot.is_some(),
            snapshot,
            entries,
            messages: std::mem::take(&mut self.core.messages),
            persisted_messages: std::mem::take(&mut self.core.persisted_messages),
            committed_entries,
            read_states: std::mem::take(&mut self.core.read_states),
        })
    }

    /// Everything asked for by Ready `number` and all earlier Readies is
    /// durable. A persisted snapshot counts as applied: the caller restores
    /// the state machine from it.
    pub fn on_persisted(&mut self, number: u64) {
        assert!(
            number < self.next_ready_number,
            "Ready {number} was reported persisted but never handed out"
        );
        while let Some(record) = self.outstanding.front().copied() {
            if record.number > number {
                break;
            }
            self.outstanding.pop_front();
            let log = &mut self.core.log;
            if let Some(index) = record.snapshot_index {
                log.unstable.stable_snapshot_to(index);
                log.applied = log.applied.max(index);
            }
            if let Some((index, term)) = record.last_entry {
                log.unstable.stable_to(index, term);
            }
        }
        self.core.on_persisted_advanced();
    }

    /// The state machine has applied every committed entry up to `index`.
    pub fn on_applied(&mut self, index: u64) {
        let log = &mut self.core.log;
        assert!(
            index <= log.applying,
            "applied {index} was never handed out (handed out up to {})",
            log.applying
        );
        log.applied = log.applied.max(index);
    }

    /// The metadata for a snapshot the application takes at `index`, which it
    /// must have applied: the term there and the configuration in force.
    /// Fails with [`StoreError::Compacted`](super::StoreError::Compacted) while
    /// a newer snapshot from the leader is being installed; the application
    /// then skips this snapshot.
    pub fn snapshot_meta(&self, index: u64) -> Result<SnapshotMeta, Error> {
        assert!(
            index <= self.core.log.applied,
            "a snapshot at {index} covers unapplied entries (applied {})",
            self.core.log.applied
        );
        Ok(SnapshotMeta {
            index,
            term: self.core.log.term(index)?,
            conf_state: self.core.membership.at(index).clone(),
        })
    }

    /// The application stored a snapshot at `snapshot_index` and dropped the
    /// log up to it from the store.
    pub fn compact(&mut self, snapshot_index: u64) {
        assert!(
            snapshot_index <= self.core.log.applied,
            "compacting to {snapshot_index} past the applied index {}",
            self.core.log.applied
        );
        self.core.membership.compact_to(snapshot_index);
    }

    /// The transport could not reach `peer`: stop sending optimistically and
    /// probe again.
    ///
    /// On a follower, an unreachable leader (its process is gone, so the
    /// connection to it broke) is a hint to campaign as soon as the leader's
    /// lease has run out rather than after a full randomized timeout; the
    /// remaining randomization (a fifth of a timeout) still spreads the
    /// followers apart. Timers never affect safety, and PreVote keeps a
    /// follower that is merely cut off from disturbing a working leader.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if let Some(progress) = self.core.progress.get_mut(&peer)
            && progress.state == super::progress::ProgressState::Replicate
        {
            progress.become_probe();
        }
        if self.core.role == super::status::Role::Follower && self.core.leader == Some(peer) {
            self.core.shorten_election_timeout();
        }
    }

    /// The transport reports the outcome of a snapshot sent to `peer` outside
    /// the core's own chunking; either way the leader probes again, from after
    /// the snapshot if it was delivered.
    pub fn report_snapshot(&mut self, peer: NodeId, delivered: bool) {
        if let Some(progress) = self.core.progress.get_mut(&peer)
            && progress.state == super::progress::ProgressState::Snapshot
        {
            if !delivered {
                progress.outgoing_snapshot = None;
            }
            progress.become_probe();
            progress.probe_sent = true;
        }
    }

    /// This server's id.
    pub fn id(&self) -> NodeId {
        self.core.id
    }

    /// The state of the core now.
    pub fn status(&self) -> Status {
        let core = &self.core;
        Status {
            id: core.id,
            role: core.role,
            term: core.term,
            vote: core.vote,
            leader: core.leader,
            commit: core.log.committed,
            applied: core.log.applied,
            persisted_index: core.log.persisted_index(),
            first_index: core.log.first_index(),
            last_index: core.log.last_index(),
            conf_state: core.membership.current().clone(),
            transfer_target: core.transfer.map(|transfer| transfer.target),
            progress: core
                .progress
                .iter()
                .map(|(member, progress)| {
                    (
                        *member,
                        PeerStatus {
                            match_index: progress.match_index,
                            next_index: progress.next_index,
                            state: progress.state,
                            recent_active: progress.recent_active,
                            inflight_messages: progress.inflights.len(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Entries in `[low, high)` of this server's log, durable or not, for
    /// checks in tests and simulations.
    pub fn log_entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, Error> {
        Ok(self.core.log.entries(low, high, u64::MAX)?)
    }
}
