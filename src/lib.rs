//! raftq: a durable background job queue replicated with Raft.
//!
//! # Layout
//!
//! - [`raft`]: the consensus core. A pure, deterministic state machine: it
//!   never touches a clock, a socket or a file. Input is `tick`, `step`,
//!   `propose`; output is a `Ready` value that the caller persists, sends and
//!   applies.
//! - [`queue`]: the replicated state machine, a job queue. Also pure and
//!   deterministic: time arrives inside each command, stamped by the leader.
//! - [`protocol`]: the frame format and codecs for peer and client traffic.
//! - The write-ahead log and snapshot files live in the `raftq-storage`
//!   crate, which knows nothing of Raft or jobs.
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod queue;
pub mod raft;
pub mod server;
pub mod service;
