//! Leader election (Raft §5.2, §5.4.1) with PreVote (thesis §9.6).

use super::core::RaftCore;
use super::entry::NodeId;
use super::log_store::LogStore;
use super::message::MessageBody;
use super::status::Role;

/// Why a server starts campaigning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CampaignKind {
    /// Probe first whether a quorum would vote, without changing the term.
    PreVote,
    /// A real election in a new term.
    Election,
    /// A real election ordered by the leader through TimeoutNow (thesis §3.10).
    LeadershipTransfer,
}

/// Where an election stands after counting the answers so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VoteTally {
    Won,
    Lost,
    Pending,
}

impl<S: LogStore> RaftCore<S> {
    /// A voter may campaign; learners and removed servers may not, nor may a
    /// server still installing a snapshot.
    pub(crate) fn is_promotable(&self) -> bool {
        self.membership.current().is_voter(self.id) && self.log.unstable.snapshot.is_none()
    }

    pub(crate) fn campaign(&mut self, kind: CampaignKind) {
        if !self.is_promotable() {
            return;
        }
        let request_term = match kind {
            CampaignKind::PreVote => {
                self.become_pre_candidate();
                self.term + 1
            }
            CampaignKind::Election | CampaignKind::LeadershipTransfer => {
                self.become_candidate();
                self.term
            }
        };
        let id = self.id;
        if self.record_vote(id, true) == VoteTally::Won {
            // A single voter wins at once.
            match kind {
                CampaignKind::PreVote => self.campaign(CampaignKind::Election),
                _ => self.become_leader(),
            }
            return;
        }
        let last_log_index = self.log.last_index();
        let last_log_term = self.log.last_term();
        let voters: Vec<NodeId> = self
            .membership
            .current()
            .voters
            .iter()
            .copied()
            .filter(|voter| *voter != id)
            .collect();
        for voter in voters {
            self.send_in_term(
                voter,
                request_term,
                MessageBody::RequestVote {
                    pre_vote: kind == CampaignKind::PreVote,
                    last_log_index,
                    last_log_term,
                    leadership_transfer: kind == CampaignKind::LeadershipTransfer,
                },
            );
        }
    }

    fn record_vote(&mut self, from: NodeId, granted: bool) -> VoteTally {
        self.votes.entry(from).or_insert(granted);
        let conf = self.membership.current();
        let mut granted_count = 0;
        let mut rejected_count = 0;
        for voter in &conf.voters {
            match self.votes.get(voter) {
                Some(true) => granted_count += 1,
                Some(false) => rejected_count += 1,
                None => {}
            }
        }
        if granted_count >= conf.quorum() {
            VoteTally::Won
        } else if conf.voters.len() - rejected_count < conf.quorum() {
            VoteTally::Lost
        } else {
            VoteTally::Pending
        }
    }

    /// Raft §5.2 and §5.4.1: one vote per term, and only for a candidate whose
    /// log is at least as up to date. A PreVote is granted on the same log
    /// condition to a candidate proposing a newer term; it changes nothing.
    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        request_term: u64,
        pre_vote: bool,
        last_log_index: u64,
        last_log_term: u64,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && request_term > self.term);
        let granted = can_vote && self.log.is_up_to_date(last_log_index, last_log_term);
        let answer = MessageBody::RequestVoteResponse { pre_vote, granted };
        if !granted {
            self.send(from, answer);
            return;
        }
        if !pre_vote {
            self.vote = Some(from);
            self.election_elapsed_ticks = 0;
        }
        self.send_in_term(from, request_term, answer);
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, pre_vote: bool, granted: bool) {
        let expects_pre_vote = self.role == Role::PreCandidate;
        if pre_vote != expects_pre_vote {
            return;
        }
        match self.record_vote(from, granted) {
            VoteTally::Won if pre_vote => self.campaign(CampaignKind::Election),
            VoteTally::Won => self.become_leader(),
            VoteTally::Lost => {
                let term = self.term;
                self.become_follower(term, None);
            }
            VoteTally::Pending => {}
        }
    }
}
