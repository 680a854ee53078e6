//! The output of the core: one batch of work for the caller.

use super::entry::{Entry, HardState, NodeId, ReadState};
use super::message::Message;
use super::snapshot::Snapshot;
use super::status::Role;

/// Volatile state worth reporting when it changes: who leads and in which role
/// this server is. A caller fails pending client requests when leadership is
/// lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this server knows of in its current term.
    pub leader: Option<NodeId>,
    /// This server's role.
    pub role: Role,
}

/// One batch of work produced by [`RawNode::ready`](super::RawNode::ready).
///
/// # The contract: persist, send, apply, report
///
/// 1. Send [`Ready::messages`] at once; they depend on nothing unpersisted
///    (a leader replicates to followers while its own write is still in
///    flight, Raft thesis §10.2.1).
/// 2. Persist, in this order: [`Ready::snapshot`] (it replaces the whole log),
///    [`Ready::entries`] (the first may overwrite a suffix: truncate from its
///    index, then append), [`Ready::hard_state`]. Sync if [`Ready::must_sync`].
///    Readies must be persisted in the order of their numbers.
/// 3. Once durable, call [`RawNode::on_persisted`](super::RawNode::on_persisted)
///    with [`Ready::number`], then send [`Ready::persisted_messages`]: votes and
///    append responses promise that state is on disk.
/// 4. After a snapshot is durable, restore the state machine from it; it then
///    counts as applied.
/// 5. Apply [`Ready::committed_entries`] in order (they were persisted by an
///    earlier Ready, so this may happen before step 2 completes), then call
///    [`RawNode::on_applied`](super::RawNode::on_applied) with the last index.
/// 6. Answer [`Ready::read_states`] once the state machine has applied up to
///    each one's index.
///
/// Several Readies may be outstanding at once; every step above must still
/// happen in Ready order.
#[derive(Debug, Default)]
pub struct Ready {
    /// Sequence number for [`RawNode::on_persisted`](super::RawNode::on_persisted).
    pub number: u64,
    /// Changed leader or role, if any.
    pub soft_state: Option<SoftState>,
    /// Hard state to persist, if it changed. Term and vote must be durable
    /// (see `must_sync`); the commit index may be written lazily, since a
    /// restarted node learns it from the leader again (Raft §5, Figure 2).
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: persist it (it replaces the log),
    /// then restore the state machine from it.
    pub snapshot: Option<Snapshot>,
    /// Entries to append; the first may overwrite an existing suffix.
    pub entries: Vec<Entry>,
    /// Whether the writes above must reach stable storage before
    /// `persisted_messages` are sent (false when only the commit index moved).
    pub must_sync: bool,
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// Messages to send only after this Ready is durable.
    pub persisted_messages: Vec<Message>,
    /// Committed entries to apply, in order, all persisted locally.
    pub committed_entries: Vec<Entry>,
    /// Confirmed read requests.
    pub read_states: Vec<ReadState>,
}
