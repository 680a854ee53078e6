//! The node runtime: the only place where tokio meets the consensus core.
//!
//! - [`Node`] (`handle.rs`): start a node, propose, read, watch, administer.
//! - `driver.rs`: the task that owns the core and follows the Ready contract.
//! - `persister.rs`: group commit of the log on its own thread.
//! - `log_store.rs`: the bridge between the core's log and the storage crate.
//! - `transport.rs`: peer connections; `net.rs`, `clock.rs` and `entropy.rs`:
//!   the seams a simulator replaces.
//! - `entry_batch.rs`: how client commands are packed into log entries.
//! - `applier.rs` and `background.rs`: applying and snapshotting off the
//!   driver's task.

mod applier;
mod background;
pub mod clock;
mod driver;
pub mod entropy;
pub mod entry_batch;
mod error;
mod handle;
pub mod log_store;
pub mod net;
mod persister;
mod state_machine;
pub mod transport;

pub use error::NodeError;
pub use handle::{AdminOp, Node, NodeOptions, NodeStatus, Seams, StartError};
pub use state_machine::StateMachine;

impl transport::PeerMessage for crate::raft::Message {
    fn from(&self) -> u64 {
        self.from
    }

    fn to(&self) -> u64 {
        self.to
    }

    fn size_hint_bytes(&self) -> usize {
        const HEADER_BYTES: usize = 64;
        match &self.body {
            crate::raft::MessageBody::AppendEntries { entries, .. } => {
                HEADER_BYTES
                    + entries
                        .iter()
                        .map(|entry| entry.size_bytes() as usize)
                        .sum::<usize>()
            }
            crate::raft::MessageBody::InstallSnapshot { data, .. } => HEADER_BYTES + data.len(),
            _ => HEADER_BYTES,
        }
    }
}
