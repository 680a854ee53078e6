//! ReadIndex reads (thesis §6.4): the leader answers a read at its commit
//! index once a quorum has confirmed it is still the leader.
//!
//! A follower or learner serves reads too (thesis §6.4.1): it forwards the
//! request to the leader as a [`MessageBody::ReadIndex`], the leader confirms
//! its commit index exactly as for its own reads and answers with a
//! [`MessageBody::ReadIndexResponse`], and the follower hands the index to
//! its caller as a [`ReadState`]; the read is linearizable once the follower
//! has applied up to it. A forwarded request or its answer can be lost; the
//! caller gives up on reads that stay unanswered (for instance when the
//! leader changes) and retries.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::conf_state::ConfState;
use super::core::RaftCore;
use super::entry::{NodeId, ReadState};
use super::error::Error;
use super::log_store::LogStore;
use super::message::MessageBody;
use super::status::Role;

/// A read registered at a commit index, waiting for a quorum to answer a
/// heartbeat that carries `sequence` or a later one.
#[derive(Debug, Clone, Copy)]
struct PendingRead {
    context: u64,
    index: u64,
    sequence: u64,
    /// The follower that forwarded the read, or `None` for the leader's own.
    from: Option<NodeId>,
}

/// A confirmed read: the leader's own, or one to answer to a follower.
pub(crate) enum ConfirmedRead {
    Local(ReadState),
    Forwarded { to: NodeId, read: ReadState },
}

/// The leader's queue of reads. Reads are confirmed in order: a heartbeat
/// answer for sequence `s` confirms every read registered with a sequence up
/// to `s`, because that heartbeat was sent after all of them arrived.
#[derive(Debug, Default)]
pub(crate) struct ReadIndexQueue {
    last_sequence: u64,
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term:
    /// its commit index is not yet known to be current (thesis §6.4 step 1).
    waiting_for_term_commit: Vec<(u64, Option<NodeId>)>,
    acknowledged: BTreeMap<NodeId, u64>,
    /// On a follower: contexts of reads forwarded to the leader and not yet
    /// answered, so a duplicated answer is not reported twice.
    forwarded: BTreeSet<u64>,
}

impl ReadIndexQueue {
    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.waiting_for_term_commit.len()
    }

    pub(crate) fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    pub(crate) fn has_waiting(&self) -> bool {
        !self.waiting_for_term_commit.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.waiting_for_term_commit.clear();
        self.acknowledged.clear();
        self.forwarded.clear();
    }

    fn register(&mut self, context: u64, index: u64, from: Option<NodeId>) {
        self.last_sequence += 1;
        self.pending.push_back(PendingRead {
            context,
            index,
            sequence: self.last_sequence,
            from,
        });
    }

    /// Registers every waiting read at `committed`.
    pub(crate) fn start_waiting(&mut self, committed: u64) {
        let waiting = std::mem::take(&mut self.waiting_for_term_commit);
        for (context, from) in waiting {
            self.register(context, committed, from);
        }
    }

    /// Records a heartbeat answer; true if it may confirm a read.
    pub(crate) fn acknowledge(&mut self, from: NodeId, sequence: u64) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let acknowledged = self.acknowledged.entry(from).or_insert(0);
        if sequence > *acknowledged {
            *acknowledged = sequence;
            return true;
        }
        false
    }

    fn is_confirmed(&self, sequence: u64, conf: &ConfState, leader: NodeId) -> bool {
        let confirmations = conf
            .voters
            .iter()
            .filter(|voter| {
                **voter == leader
                    || self
                        .acknowledged
                        .get(voter)
                        .is_some_and(|acknowledged| *acknowledged >= sequence)
            })
            .count();
        confirmations >= conf.quorum()
    }

    /// Moves every confirmed read, in order, into `out`.
    fn release(&mut self, conf: &ConfState, leader: NodeId, out: &mut Vec<ConfirmedRead>) {
        while let Some(front) = self.pending.front() {
            if !self.is_confirmed(front.sequence, conf, leader) {
                break;
            }
            let read = ReadState {
                index: front.index,
                context: front.context,
            };
            out.push(match front.from {
                None => ConfirmedRead::Local(read),
                Some(to) => ConfirmedRead::Forwarded { to, read },
            });
            self.pending.pop_front();
        }
    }
}

impl<S: LogStore> RaftCore<S> {
    pub(crate) fn read_index(&mut self, context: u64) -> Result<(), Error> {
        match (self.role, self.leader) {
            (Role::Leader, _) => self.register_read(context, None),
            (Role::Follower, Some(leader)) => {
                // Unanswered forwards are forgotten oldest first: their
                // callers have given up on them long since.
                while self.reads.forwarded.len() >= self.config.max_pending_reads {
                    self.reads.forwarded.pop_first();
                }
                self.reads.forwarded.insert(context);
                self.send(leader, MessageBody::ReadIndex { context });
                Ok(())
            }
            _ => Err(Error::NotLeader {
                leader_hint: self.leader,
            }),
        }
    }

    /// The leader takes a read forwarded by `from`. A read it cannot take
    /// (too many pending) goes unanswered; the follower gives up and retries.
    pub(crate) fn handle_forwarded_read(&mut self, from: NodeId, context: u64) {
        let _ = self.register_read(context, Some(from));
    }

    /// A follower receives the leader's answer to a forwarded read.
    pub(crate) fn handle_read_index_response(&mut self, context: u64, index: u64) {
        if self.reads.forwarded.remove(&context) {
            self.read_states.push(ReadState { index, context });
        }
    }

    fn register_read(&mut self, context: u64, from: Option<NodeId>) -> Result<(), Error> {
        if self.reads.len() >= self.config.max_pending_reads {
            return Err(Error::ReadDropped);
        }
        if self.log.committed < self.term_start_index {
            self.reads.waiting_for_term_commit.push((context, from));
            return Ok(());
        }
        let committed = self.log.committed;
        self.reads.register(context, committed, from);
        self.confirm_reads();
        Ok(())
    }

    /// Releases what a quorum already confirms (at once for a single voter)
    /// and asks for a heartbeat round for the rest.
    pub(crate) fn confirm_reads(&mut self) {
        self.release_confirmed_reads();
        if !self.reads.pending.is_empty() {
            self.read_heartbeat_pending = true;
        }
    }

    pub(crate) fn release_confirmed_reads(&mut self) {
        let conf = self.membership.current();
        let mut confirmed = Vec::new();
        self.reads.release(conf, self.id, &mut confirmed);
        for read in confirmed {
            match read {
                ConfirmedRead::Local(read) => self.read_states.push(read),
                ConfirmedRead::Forwarded { to, read } => self.send(
                    to,
                    MessageBody::ReadIndexResponse {
                        context: read.context,
                        index: read.index,
                    },
                ),
            }
        }
    }
}
