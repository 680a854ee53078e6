//! Leadership transfer (thesis §3.10).

use super::core::RaftCore;
use super::entry::NodeId;
use super::error::Error;
use super::log_store::LogStore;
use super::message::MessageBody;
use super::status::Role;

/// A leadership transfer under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaderTransfer {
    pub(crate) target: NodeId,
    pub(crate) elapsed_ticks: u64,
    pub(crate) timeout_now_sent: bool,
}

impl<S: LogStore> RaftCore<S> {
    /// Thesis §3.10: stop accepting proposals, bring the target's log up to
    /// date, then tell it to time out at once. The transfer is abandoned if
    /// the target has not taken over within an election timeout.
    pub(crate) fn transfer_leader(&mut self, target: NodeId) -> Result<(), Error> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader_hint: self.leader,
            });
        }
        if target == self.id {
            return Ok(());
        }
        if let Some(transfer) = &self.transfer {
            if transfer.target == target {
                return Ok(());
            }
            return Err(Error::TransferInProgress);
        }
        if !self.membership.current().is_voter(target) {
            return Err(Error::InvalidTransferTarget(target));
        }
        self.transfer = Some(LeaderTransfer {
            target,
            elapsed_ticks: 0,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now(target);
        let target_needs_entries = self
            .transfer
            .is_some_and(|transfer| !transfer.timeout_now_sent);
        if target_needs_entries && self.send_append(target, true)? {
            while self.send_append(target, false)? {}
        }
        Ok(())
    }

    /// Sends TimeoutNow once the transfer target's log matches the leader's.
    pub(crate) fn maybe_send_timeout_now(&mut self, from: NodeId) {
        let Some(transfer) = self.transfer else {
            return;
        };
        if transfer.target != from || transfer.timeout_now_sent {
            return;
        }
        let caught_up = self
            .progress
            .get(&from)
            .is_some_and(|progress| progress.match_index == self.log.last_index());
        if caught_up {
            if let Some(transfer) = &mut self.transfer {
                transfer.timeout_now_sent = true;
            }
            self.send(from, MessageBody::TimeoutNow);
        }
    }

    pub(crate) fn tick_transfer(&mut self) {
        let election_timeout_ticks = self.config.election_timeout_ticks;
        if let Some(transfer) = &mut self.transfer {
            transfer.elapsed_ticks += 1;
            if transfer.elapsed_ticks >= election_timeout_ticks {
                self.transfer = None;
            }
        }
    }
}
