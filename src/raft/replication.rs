//! Log replication (Raft §5.3) and commitment (§5.4.2): proposals, the
//! leader's AppendEntries with batching and pipelining, the follower's
//! consistency check and the commit rule.

use bytes::Bytes;

use super::core::RaftCore;
use super::entry::{Entry, EntryKind, NodeId};
use super::error::{Error, StoreError};
use super::log_store::LogStore;
use super::message::{AppendResult, MessageBody};
use super::progress::ProgressState;
use super::status::Role;

/// The highest index that a majority of `match_indices` has reached: the
/// commit candidate of Raft §5.3. Sorts `match_indices` in place.
pub(crate) fn quorum_match_index(match_indices: &mut [u64]) -> u64 {
    if match_indices.is_empty() {
        return 0;
    }
    match_indices.sort_unstable_by(|a, b| b.cmp(a));
    match_indices[match_indices.len() / 2]
}

impl<S: LogStore> RaftCore<S> {
    /// Fails unless this server is a leader that may append new entries.
    pub(crate) fn check_can_propose(&self) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() || !self.membership.current().is_voter(self.id) {
            return Err(Error::ProposalDropped);
        }
        if self.log.last_index() - self.log.committed >= self.config.max_uncommitted_entries {
            return Err(Error::ProposalDropped);
        }
        Ok(())
    }

    pub(crate) fn propose(&mut self, data: Bytes) -> Result<(u64, u64), Error> {
        self.check_can_propose()?;
        Ok(self.append_entry(EntryKind::Normal, data))
    }

    /// Sends AppendEntries to every follower, as many as each may take.
    pub(crate) fn broadcast_append(&mut self) -> Result<(), Error> {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            if peer == self.id {
                continue;
            }
            // The first message may be empty: it carries the commit index.
            if self.send_append(peer, true)? {
                while self.send_append(peer, false)? {}
            }
        }
        Ok(())
    }

    /// Sends one AppendEntries to `to` unless its progress is paused. An empty
    /// message is sent only if `allow_empty`. Returns whether one was sent.
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> Result<bool, Error> {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get(&to) else {
            return Ok(false);
        };
        if progress.is_paused() {
            return Ok(false);
        }
        let next_index = progress.next_index;
        let has_entries = next_index <= last_index;
        if !has_entries && !allow_empty && progress.state == ProgressState::Replicate {
            return Ok(false);
        }
        let prev_log_index = next_index - 1;
        let prev_log_term = match self.log.term(prev_log_index) {
            Ok(term) => term,
            Err(StoreError::Compacted) => return self.send_snapshot(to),
            Err(error) => return Err(error.into()),
        };
        let entries = if has_entries {
            let high = last_index.min(next_index + self.config.max_entries_per_message - 1) + 1;
            match self
                .log
                .entries(next_index, high, self.config.max_bytes_per_message)
            {
                Ok(entries) => entries,
                Err(StoreError::Compacted) => return self.send_snapshot(to),
                Err(error) => return Err(error.into()),
            }
        } else {
            Vec::new()
        };
        let progress = self.progress.get_mut(&to).expect("checked above");
        match progress.state {
            ProgressState::Replicate => {
                if let Some(last) = entries.last() {
                    progress.next_index = last.index + 1;
                    progress.inflights.add(last.index);
                }
            }
            ProgressState::Probe => progress.probe_sent = true,
            ProgressState::Snapshot => unreachable!("a paused progress sends nothing"),
        }
        let commit = self.log.committed;
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            },
        );
        Ok(true)
    }

    /// Sends each follower the commit index (capped at what it matches, so a
    /// follower never commits an entry it might not share) and the newest
    /// read sequence.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let read_sequence = self.reads.last_sequence();
        let committed = self.log.committed;
        let term = self.term;
        for (peer, progress) in &self.progress {
            if *peer == self.id {
                continue;
            }
            self.messages.push(super::message::Message {
                from: self.id,
                to: *peer,
                term,
                body: MessageBody::Heartbeat {
                    commit: progress.match_index.min(committed),
                    read_sequence,
                },
            });
        }
    }

    /// The follower side of Raft §5.3: accept entries only if the log holds
    /// the entry just before them, replace a conflicting suffix, and learn
    /// the commit index.
    pub(crate) fn handle_append_entries(
        &mut self,
        from: NodeId,
        prev_log_index: u64,
        prev_log_term: u64,
        mut entries: Vec<Entry>,
        commit: u64,
    ) -> Result<(), Error> {
        if prev_log_index < self.log.committed {
            // Everything up to the commit index already matches any leader.
            let match_index = self.log.committed;
            self.send(
                from,
                MessageBody::AppendResponse {
                    result: AppendResult::Accepted { match_index },
                },
            );
            return Ok(());
        }
        if !self.log.matches_term(prev_log_index, prev_log_term) {
            let (hint_index, hint_term) = self
                .log
                .find_conflict_by_term(prev_log_index, prev_log_term);
            self.send(
                from,
                MessageBody::AppendResponse {
                    result: AppendResult::Rejected {
                        rejected_index: prev_log_index,
                        hint_index,
                        hint_term,
                    },
                },
            );
            return Ok(());
        }
        let last_new_index = prev_log_index + entries.len() as u64;
        if let Some(conflict_index) = self.log.find_conflict(&entries) {
            assert!(
                conflict_index > self.log.committed,
                "leader {from} conflicts with committed entry {conflict_index}"
            );
            let new_entries = entries.split_off((conflict_index - prev_log_index - 1) as usize);
            let truncated = self.membership.truncate_from(conflict_index);
            let recorded = self.membership.record_all(&new_entries);
            self.log.append(new_entries);
            if truncated || recorded {
                self.on_config_changed();
            }
        }
        self.log.commit_to(commit.min(last_new_index));
        self.send(
            from,
            MessageBody::AppendResponse {
                result: AppendResult::Accepted {
                    match_index: last_new_index,
                },
            },
        );
        Ok(())
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, commit: u64, read_sequence: u64) {
        let commit = commit.min(self.log.last_index());
        self.log.commit_to(commit);
        self.send(from, MessageBody::HeartbeatResponse { read_sequence });
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        result: AppendResult,
    ) -> Result<(), Error> {
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        progress.recent_active = true;
        match result {
            AppendResult::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                // Skip every entry of a term the follower does not have
                // (fast backtracking) instead of one index per round trip.
                let next_probe_index = if hint_term > 0 {
                    self.log.find_conflict_by_term(hint_index, hint_term).0
                } else {
                    hint_index
                };
                let progress = self.progress.get_mut(&from).expect("checked above");
                if progress.maybe_decrease_to(rejected_index, next_probe_index) {
                    if progress.state == ProgressState::Replicate {
                        progress.become_probe();
                    }
                    self.send_append(from, true)?;
                }
            }
            AppendResult::Accepted { match_index } => {
                let updated = progress.maybe_update(match_index);
                match progress.state {
                    ProgressState::Snapshot => {
                        let snapshot_index = progress
                            .outgoing_snapshot
                            .as_ref()
                            .map_or(0, |outgoing| outgoing.snapshot.meta.index);
                        if progress.match_index < snapshot_index {
                            return Ok(());
                        }
                        // The follower has the snapshot (or more). If the log
                        // was compacted past it meanwhile, probing leads to a
                        // newer snapshot.
                        progress.become_probe();
                        if progress.match_index + 1 >= self.log.first_index() {
                            progress.become_replicate();
                        }
                    }
                    _ if !updated => return Ok(()),
                    ProgressState::Probe => progress.become_replicate(),
                    ProgressState::Replicate => progress.inflights.free_to(match_index),
                }
                if self.maybe_commit() {
                    self.broadcast_pending = true;
                }
                while self.send_append(from, false)? {}
                self.maybe_send_timeout_now(from);
            }
        }
        Ok(())
    }

    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_sequence: u64,
    ) -> Result<(), Error> {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        progress.recent_active = true;
        progress.probe_sent = false;
        match progress.state {
            ProgressState::Snapshot => self.send_snapshot_chunk(from),
            ProgressState::Replicate | ProgressState::Probe
                if progress.match_index < last_index =>
            {
                // An AppendEntries may have been lost. Free a slot if the
                // window is full and send from the optimistic next index; a
                // follower missing entries rejects it and the leader probes.
                if progress.inflights.is_full() {
                    progress.inflights.free_first();
                }
                if self.send_append(from, true)? {
                    while self.send_append(from, false)? {}
                }
            }
            _ => {}
        }
        if self.reads.acknowledge(from, read_sequence) {
            self.release_confirmed_reads();
        }
        Ok(())
    }

    /// Raft §5.3 and §5.4.2: advance the commit index to the highest index
    /// stored on a majority of voters, but only if that entry is of the
    /// current term; earlier entries commit with it (Figure 8). The leader's
    /// own match is its persisted index (thesis §10.2.1).
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mut match_indices = std::mem::take(&mut self.commit_scratch);
        match_indices.clear();
        for voter in &self.membership.current().voters {
            match_indices.push(self.progress.get(voter).map_or(0, |p| p.match_index));
        }
        let candidate = quorum_match_index(&mut match_indices);
        self.commit_scratch = match_indices;
        if candidate <= self.log.committed || !self.log.matches_term(candidate, self.term) {
            return false;
        }
        self.log.commit_to(candidate);
        self.on_commit_advanced();
        true
    }

    fn on_commit_advanced(&mut self) {
        if self.log.committed >= self.term_start_index && self.reads.has_waiting() {
            let committed = self.log.committed;
            self.reads.start_waiting(committed);
            self.confirm_reads();
        }
        // Thesis §4.2.2: a leader removed from the configuration leads until
        // the change is committed, then steps down.
        let conf_index = self.membership.current_index();
        if !self.membership.current().is_voter(self.id) && self.log.committed >= conf_index {
            let term = self.term;
            self.become_follower(term, None);
        }
    }
}
