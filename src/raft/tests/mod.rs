//! Unit tests of the core, named after the rule of the Raft paper ("raft_5_2")
//! or Ongaro's thesis ("thesis_9_6") they check.

mod config_and_types;
mod election;
mod leader_transfer;
mod membership;
mod network;
mod read_index;
mod ready_contract;
mod replication;
mod snapshot;
