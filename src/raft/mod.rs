//! The consensus core: a pure, deterministic Raft.
//!
//! The core only decides; the caller does all I/O. Input arrives through
//! [`RawNode::tick`], [`RawNode::step`], [`RawNode::propose`],
//! [`RawNode::propose_conf_change`], [`RawNode::read_index`] and
//! [`RawNode::transfer_leader`]. Output is one [`Ready`] value at a time:
//! entries and hard state to persist, messages to send, committed entries to
//! apply and read states to answer. The order in which the caller must
//! persist, send, apply and report back is written on [`Ready`].
//!
//! Time is counted in ticks and randomness comes from a [`SeededRng`] built
//! from [`Config::seed`], so the same inputs always produce the same outputs
//! and any failure found by simulation replays from its seed.
//!
//! # Layout
//!
//! - [`RawNode`] (`raw_node.rs`): the public handle and the `Ready` bookkeeping.
//! - `core.rs`: roles, terms and message dispatch; `election.rs`,
//!   `replication.rs`, `snapshot_transfer.rs`, `membership.rs`,
//!   `leader_transfer.rs` and `read_index.rs` hold one protocol each.
//! - `raft_log.rs` and `unstable.rs`: the log as the core sees it, the
//!   persisted part read through a [`LogStore`] plus the part not yet durable.
//! - `progress.rs` and `inflights.rs`: the leader's view of each follower.
//! - [`MemStore`]: an in-memory [`LogStore`] for tests, simulations and benches.
//! - [`invariants`]: the Raft safety properties as a checker that simulations
//!   feed with every [`Ready`].
//!
//! # Membership
//!
//! Configurations change one server at a time and take effect as soon as the
//! change entry is appended to a log (Raft thesis §4.1), on the leader and on
//! followers alike; a follower whose log is truncated falls back to the
//! configuration of the entries that remain. The leader accepts a change only
//! after it has committed an entry of its own term and while no other change
//! is uncommitted. New members join as learners and are promoted once caught
//! up.
//!
//! # Bootstrapping
//!
//! The founding members of a cluster start from a snapshot at
//! [`BOOTSTRAP_INDEX`] whose configuration lists the founding voters and whose
//! data is the empty state machine ([`Snapshot::bootstrap`]). A server that
//! joins later starts with an empty store and receives a snapshot from the
//! leader, which brings it the configuration.

mod conf_change;
mod conf_history;
mod conf_state;
mod config;
mod core;
mod election;
mod entry;
mod error;
mod inflights;
pub mod invariants;
mod leader_transfer;
mod log_store;
mod mem_store;
mod membership;
mod message;
mod progress;
mod raft_log;
mod raw_node;
mod read_index;
mod ready;
mod replication;
mod rng;
mod snapshot;
mod snapshot_transfer;
mod status;
mod unstable;

#[cfg(test)]
mod tests;

pub use conf_change::{ConfChange, ConfChangeError, ConfChangeKind};
pub use conf_state::ConfState;
pub use config::{
    Config, ConfigError, DEFAULT_ELECTION_TIMEOUT_TICKS, DEFAULT_HEARTBEAT_INTERVAL_TICKS,
    DEFAULT_MAX_BYTES_PER_MESSAGE, DEFAULT_MAX_COMMITTED_BYTES_PER_READY,
    DEFAULT_MAX_ENTRIES_PER_MESSAGE, DEFAULT_MAX_INFLIGHT_MESSAGES, DEFAULT_MAX_PENDING_READS,
    DEFAULT_MAX_SNAPSHOT_BYTES, DEFAULT_MAX_UNCOMMITTED_ENTRIES, DEFAULT_SNAPSHOT_CHUNK_BYTES,
};
pub use entry::{ENTRY_OVERHEAD_BYTES, Entry, EntryKind, HardState, NodeId, ReadState};
pub use error::{Error, StoreError};
pub use log_store::LogStore;
pub use mem_store::MemStore;
pub use message::{AppendResult, Message, MessageBody};
pub use progress::ProgressState;
pub use raw_node::RawNode;
pub use ready::{Ready, SoftState};
pub use rng::SeededRng;
pub use snapshot::{BOOTSTRAP_INDEX, BOOTSTRAP_TERM, Snapshot, SnapshotMeta};
pub use status::{PeerStatus, Role, Status};
