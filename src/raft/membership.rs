//! Membership changes, one server at a time (thesis §4.1–§4.2).

use super::conf_change::{ConfChange, ConfChangeKind};
use super::core::RaftCore;
use super::entry::EntryKind;
use super::error::Error;
use super::log_store::LogStore;
use super::progress::Progress;
use super::status::Role;

impl<S: LogStore> RaftCore<S> {
    /// Appends a membership change. Thesis §4.1: a change may start only when
    /// the previous one is committed, and (the fix for the single-server
    /// change bug) only once the leader has committed an entry of its own
    /// term. Learners are promoted only once they have caught up with the
    /// commit index (§4.2.1), so the new configuration's quorum is not slowed
    /// by a member that still needs the whole log.
    pub(crate) fn propose_conf_change(&mut self, change: ConfChange) -> Result<(u64, u64), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(Error::TransferInProgress);
        }
        if self.log.committed < self.term_start_index {
            return Err(Error::LeaderNotReady);
        }
        if self.pending_conf_index > self.log.committed {
            return Err(Error::ConfChangeInProgress);
        }
        self.membership.current().apply(&change)?;
        if change.kind == ConfChangeKind::PromoteLearner {
            let caught_up = self
                .progress
                .get(&change.node)
                .is_some_and(|progress| progress.match_index >= self.log.committed);
            if !caught_up {
                return Err(Error::LearnerNotCaughtUp { node: change.node });
            }
        }
        let (index, term) = self.append_entry(EntryKind::ConfChange, change.encode());
        self.pending_conf_index = index;
        self.on_config_changed();
        Ok((index, term))
    }

    /// The configuration in force changed (an appended or truncated change
    /// entry, or a snapshot). The leader tracks exactly the new members; a
    /// smaller quorum may already commit more.
    pub(crate) fn on_config_changed(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let conf = self.membership.current().clone();
        self.progress.retain(|member, _| conf.contains(*member));
        let next_index = self.log.last_index() + 1;
        for member in conf.members() {
            self.progress.entry(member).or_insert_with(|| {
                let mut progress = Progress::new(next_index, self.config.max_inflight_messages);
                // A new member has not had a chance to answer yet; it must not
                // count as silent in the next CheckQuorum round.
                progress.recent_active = true;
                progress
            });
        }
        if self
            .transfer
            .as_ref()
            .is_some_and(|transfer| !conf.is_voter(transfer.target))
        {
            self.transfer = None;
        }
        if self.maybe_commit() {
            self.broadcast_pending = true;
        }
    }
}
