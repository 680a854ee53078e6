//! Roles, terms and message dispatch: the heart of the state machine. Each
//! protocol (elections, replication, snapshots, membership, leadership
//! transfer, reads) lives in its own file as more methods on [`RaftCore`].

use std::collections::BTreeMap;

use super::conf_history::ConfHistory;
use super::config::Config;
use super::entry::{Entry, EntryKind, HardState, NodeId, ReadState};
use super::error::{Error, StoreError};
use super::leader_transfer::LeaderTransfer;
use super::log_store::LogStore;
use super::message::{Message, MessageBody};
use super::progress::Progress;
use super::raft_log::RaftLog;
use super::read_index::ReadIndexQueue;
use super::ready::SoftState;
use super::rng::SeededRng;
use super::snapshot_transfer::IncomingSnapshot;
use super::status::Role;

/// The consensus state of one server. [`RawNode`](super::RawNode) wraps it
/// with the `Ready` bookkeeping.
pub(crate) struct RaftCore<S: LogStore> {
    pub(crate) id: NodeId,
    pub(crate) config: Config,
    pub(crate) term: u64,
    pub(crate) vote: Option<NodeId>,
    pub(crate) leader: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) log: RaftLog<S>,
    pub(crate) membership: ConfHistory,
    pub(crate) rng: SeededRng,
    pub(crate) election_elapsed_ticks: u64,
    pub(crate) heartbeat_elapsed_ticks: u64,
    pub(crate) randomized_election_timeout_ticks: u64,
    /// Leader only: the replication progress of every member, itself included.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Candidate only: the answers received in this election.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) transfer: Option<LeaderTransfer>,
    /// Index of the newest membership change the leader has appended.
    pub(crate) pending_conf_index: u64,
    /// Index of the no-op the leader appended when its term began.
    pub(crate) term_start_index: u64,
    pub(crate) reads: ReadIndexQueue,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) messages: Vec<Message>,
    pub(crate) persisted_messages: Vec<Message>,
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// New entries or a new commit index wait to be sent to every follower.
    /// Sending is deferred to the next `Ready` so that a burst of proposals
    /// travels as one batch.
    pub(crate) broadcast_pending: bool,
    /// Reads wait for a heartbeat round that is deferred the same way.
    pub(crate) read_heartbeat_pending: bool,
    pub(crate) commit_scratch: Vec<u64>,
}

impl<S: LogStore> RaftCore<S> {
    pub(crate) fn new(config: Config, store: S) -> Result<Self, Error> {
        config.validate()?;
        let (hard_state, conf_state) = store.initial_state()?;
        let snapshot_index = store.first_index() - 1;
        let mut membership = ConfHistory::new(snapshot_index, conf_state);
        replay_conf_changes(&store, &mut membership)?;
        let log = RaftLog::new(store, hard_state.commit);
        let mut core = RaftCore {
            id: config.id,
            rng: SeededRng::new(config.seed),
            term: hard_state.term,
            vote: hard_state.vote,
            leader: None,
            role: Role::Follower,
            log,
            membership,
            election_elapsed_ticks: 0,
            heartbeat_elapsed_ticks: 0,
            randomized_election_timeout_ticks: config.election_timeout_ticks,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            transfer: None,
            pending_conf_index: 0,
            term_start_index: 0,
            reads: ReadIndexQueue::default(),
            read_states: Vec::new(),
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            incoming_snapshot: None,
            broadcast_pending: false,
            read_heartbeat_pending: false,
            commit_scratch: Vec::new(),
            config,
        };
        core.become_follower(hard_state.term, None);
        Ok(core)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
        }
    }

    pub(crate) fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// Clears the per-term state when the term or the role changes.
    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.votes.clear();
        self.election_elapsed_ticks = 0;
        self.heartbeat_elapsed_ticks = 0;
        self.randomized_election_timeout_ticks =
            self.config.election_timeout_ticks + self.rng.below(self.config.election_timeout_ticks);
        self.transfer = None;
        self.reads.clear();
        self.progress.clear();
        self.broadcast_pending = false;
        self.read_heartbeat_pending = false;
    }

    pub(crate) fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader never runs a PreVote");
        // The term and the vote stay as they are: a PreVote changes nothing
        // durable (thesis §9.6).
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    pub(crate) fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader never campaigns");
        let term = self.term + 1;
        self.reset(term);
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate becomes leader"
        );
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let next_index = self.log.last_index() + 1;
        let members: Vec<NodeId> = self.membership.current().members().collect();
        for member in members {
            let mut progress = Progress::new(next_index, self.config.max_inflight_messages);
            progress.recent_active = true;
            if member == self.id {
                progress.maybe_update(self.log.persisted_index());
            }
            self.progress.insert(member, progress);
        }
        // Any membership change still uncommitted in the log must commit
        // before another may start.
        self.pending_conf_index = self.membership.current_index();
        // Raft §8: a no-op entry at the start of the term lets the leader
        // learn which entries are committed, since it may only commit entries
        // of its own term by counting (§5.4.2).
        let (index, _) = self.append_entry(EntryKind::Normal, bytes::Bytes::new());
        self.term_start_index = index;
    }

    /// Appends one entry of the current term to the leader's log.
    pub(crate) fn append_entry(&mut self, kind: EntryKind, data: bytes::Bytes) -> (u64, u64) {
        let index = self.log.last_index() + 1;
        let entry = Entry {
            term: self.term,
            index,
            kind,
            data,
        };
        if kind == EntryKind::ConfChange {
            self.membership.record(&entry);
        }
        self.log.append_leader_entry(entry);
        self.broadcast_pending = true;
        (index, self.term)
    }

    /// Campaigns soon after the leader's lease ends: at the base election
    /// timeout plus up to a fifth of it, instead of up to twice the timeout.
    pub(crate) fn shorten_election_timeout(&mut self) {
        let spread = (self.config.election_timeout_ticks / 5).max(1);
        let shortened = self.config.election_timeout_ticks + self.rng.below(spread);
        self.randomized_election_timeout_ticks =
            self.randomized_election_timeout_ticks.min(shortened);
    }

    pub(crate) fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::PreCandidate | Role::Candidate => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed_ticks += 1;
        if self.is_promotable()
            && self.election_elapsed_ticks >= self.randomized_election_timeout_ticks
        {
            self.election_elapsed_ticks = 0;
            let kind = if self.config.pre_vote {
                super::election::CampaignKind::PreVote
            } else {
                super::election::CampaignKind::Election
            };
            self.campaign(kind);
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed_ticks += 1;
        self.election_elapsed_ticks += 1;
        self.tick_transfer();
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks {
            self.election_elapsed_ticks = 0;
            if self.config.check_quorum {
                // Thesis §6.2: a leader that has not heard from a quorum in an
                // election timeout steps down, so clients can find the real one.
                if !self.quorum_recently_active() {
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
                let id = self.id;
                for (member, progress) in self.progress.iter_mut() {
                    if *member != id {
                        progress.recent_active = false;
                    }
                }
            }
        }
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
        }
    }

    fn quorum_recently_active(&self) -> bool {
        let conf = self.membership.current();
        let active = conf
            .voters
            .iter()
            .filter(|voter| {
                **voter == self.id
                    || self
                        .progress
                        .get(voter)
                        .is_some_and(|progress| progress.recent_active)
            })
            .count();
        active >= conf.quorum()
    }

    /// Whether a follower still hears from a leader: it then ignores vote
    /// requests (thesis §4.2.3 and §9.6).
    fn in_leader_lease(&self) -> bool {
        self.leader.is_some() && self.election_elapsed_ticks < self.config.election_timeout_ticks
    }

    pub(crate) fn step(&mut self, message: Message) -> Result<(), Error> {
        if message.term > self.term {
            if let MessageBody::RequestVote {
                pre_vote,
                leadership_transfer,
                ..
            } = message.body
            {
                let lease_applies = pre_vote || self.config.check_quorum;
                if lease_applies && self.in_leader_lease() && !leadership_transfer {
                    return Ok(());
                }
            }
            let keeps_term = matches!(
                message.body,
                MessageBody::RequestVote { pre_vote: true, .. }
                    | MessageBody::RequestVoteResponse {
                        pre_vote: true,
                        granted: true
                    }
            );
            if !keeps_term {
                let leader = message.body.is_from_leader().then_some(message.from);
                self.become_follower(message.term, leader);
            }
        } else if message.term < self.term {
            self.answer_stale_term(&message);
            return Ok(());
        }
        if let MessageBody::RequestVote {
            pre_vote,
            last_log_index,
            last_log_term,
            ..
        } = message.body
        {
            self.handle_vote_request(
                message.from,
                message.term,
                pre_vote,
                last_log_index,
                last_log_term,
            );
            return Ok(());
        }
        match self.role {
            Role::Leader => self.step_leader(message),
            Role::Candidate | Role::PreCandidate => self.step_candidate(message),
            Role::Follower => self.step_follower(message),
        }
    }

    /// A message from an older term. A stale leader is told the newer term so
    /// it steps down; without this, a server that rejoins after a partition
    /// with PreVote or CheckQuorum could wait forever. A vote request gets a
    /// refusal carrying the newer term.
    fn answer_stale_term(&mut self, message: &Message) {
        let uses_leases = self.config.check_quorum || self.config.pre_vote;
        match message.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. }
                if uses_leases =>
            {
                self.send(
                    message.from,
                    MessageBody::HeartbeatResponse { read_sequence: 0 },
                );
            }
            MessageBody::RequestVote { pre_vote, .. } => {
                // Raft Figure 2: refuse, with the current term, so that a
                // candidate from an older term catches up at once.
                self.send(
                    message.from,
                    MessageBody::RequestVoteResponse {
                        pre_vote,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }

    fn step_leader(&mut self, message: Message) -> Result<(), Error> {
        match message.body {
            MessageBody::AppendResponse { result } => {
                self.handle_append_response(message.from, result)
            }
            MessageBody::HeartbeatResponse { read_sequence } => {
                self.handle_heartbeat_response(message.from, read_sequence)
            }
            MessageBody::SnapshotChunkResponse {
                snapshot_index,
                next_offset,
            } => {
                self.handle_snapshot_chunk_response(message.from, snapshot_index, next_offset);
                Ok(())
            }
            MessageBody::ReadIndex { context } => {
                self.handle_forwarded_read(message.from, context);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn step_candidate(&mut self, message: Message) -> Result<(), Error> {
        match message.body {
            MessageBody::AppendEntries { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                // A leader of our term exists: this election is lost (Raft §5.2).
                let term = self.term;
                self.become_follower(term, Some(message.from));
                self.step_follower(message)
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                self.handle_vote_response(message.from, pre_vote, granted);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn step_follower(&mut self, message: Message) -> Result<(), Error> {
        let from = message.from;
        if message.body.is_from_leader() {
            self.election_elapsed_ticks = 0;
            self.leader = Some(from);
        }
        match message.body {
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                commit,
            } => self.handle_append_entries(from, prev_log_index, prev_log_term, entries, commit),
            MessageBody::Heartbeat {
                commit,
                read_sequence,
            } => {
                self.handle_heartbeat(from, commit, read_sequence);
                Ok(())
            }
            MessageBody::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                self.handle_install_snapshot(from, meta, offset, data, done);
                Ok(())
            }
            MessageBody::TimeoutNow => {
                if self.is_promotable() {
                    self.campaign(super::election::CampaignKind::LeadershipTransfer);
                }
                Ok(())
            }
            MessageBody::ReadIndexResponse { context, index } => {
                self.handle_read_index_response(context, index);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Queues a message in the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_in_term(to, term, body);
    }

    /// Queues a message. Votes, vote requests and append responses promise
    /// durable state (a vote, a term, log entries), so they wait until the
    /// Ready that produced them is persisted.
    pub(crate) fn send_in_term(&mut self, to: NodeId, term: u64, body: MessageBody) {
        let needs_persistence = matches!(
            body,
            MessageBody::RequestVote {
                pre_vote: false,
                ..
            } | MessageBody::RequestVoteResponse {
                pre_vote: false,
                ..
            } | MessageBody::AppendResponse { .. }
        );
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if needs_persistence {
            self.persisted_messages.push(message);
        } else {
            self.messages.push(message);
        }
    }

    /// Sends what was deferred: appends after proposals or a commit, and the
    /// heartbeat round that confirms reads.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if self.role != Role::Leader {
            self.broadcast_pending = false;
            self.read_heartbeat_pending = false;
            return Ok(());
        }
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.broadcast_append()?;
        }
        if self.read_heartbeat_pending {
            self.read_heartbeat_pending = false;
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    /// Called when entries became durable locally: the leader counts itself
    /// toward a quorum only for entries it has persisted (thesis §10.2.1).
    pub(crate) fn on_persisted_advanced(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let persisted = self.log.persisted_index();
        let id = self.id;
        if let Some(progress) = self.progress.get_mut(&id) {
            progress.maybe_update(persisted);
        }
        if self.maybe_commit() {
            self.broadcast_pending = true;
        }
    }
}

/// Rebuilds the configurations of the ConfChange entries in a restarted
/// server's log (thesis §4.1: the latest one in the log is in force).
fn replay_conf_changes<S: LogStore>(
    store: &S,
    membership: &mut ConfHistory,
) -> Result<(), StoreError> {
    let mut next = store.first_index();
    let end = store.last_index() + 1;
    while next < end {
        let batch = store.entries(next, end, u64::MAX)?;
        assert!(!batch.is_empty(), "the store returned no entries");
        next += batch.len() as u64;
        membership.record_all(&batch);
    }
    Ok(())
}
