//! The membership of the cluster at one point of the log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::conf_change::{ConfChange, ConfChangeError, ConfChangeKind};
use super::entry::NodeId;

/// Who is in the cluster: voters form quorums, learners only receive the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfState {
    /// Servers that vote and count toward commit quorums.
    pub voters: BTreeSet<NodeId>,
    /// Servers that receive the log but neither vote nor count (thesis §4.2.1).
    pub learners: BTreeSet<NodeId>,
}

impl ConfState {
    /// A configuration of voters only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// Whether `id` votes in this configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` is a learner in this configuration.
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// Whether `id` is a voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// Every member, voters and learners, in ascending order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The number of voters that forms a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The configuration that results from `change`, or why the change is not
    /// allowed. Only single-server changes exist, so the majorities of the old
    /// and the new configuration always overlap (thesis §4.1).
    pub fn apply(&self, change: &ConfChange) -> Result<ConfState, ConfChangeError> {
        if change.node == 0 {
            return Err(ConfChangeError::ZeroNodeId);
        }
        let mut next = self.clone();
        match change.kind {
            ConfChangeKind::AddLearner => {
                if self.contains(change.node) {
                    return Err(ConfChangeError::AlreadyMember(change.node));
                }
                next.learners.insert(change.node);
            }
            ConfChangeKind::PromoteLearner => {
                if !self.is_learner(change.node) {
                    return Err(ConfChangeError::NotLearner(change.node));
                }
                next.learners.remove(&change.node);
                next.voters.insert(change.node);
            }
            ConfChangeKind::Remove => {
                if !self.contains(change.node) {
                    return Err(ConfChangeError::NotMember(change.node));
                }
                if self.voters.len() == 1 && self.is_voter(change.node) {
                    return Err(ConfChangeError::LastVoter(change.node));
                }
                next.voters.remove(&change.node);
                next.learners.remove(&change.node);
            }
        }
        Ok(next)
    }
}
