//! The fuzz entry points, shared with the property tests of the main crate
//! (`tests/fuzz_inputs.rs`) so that every crash found here replays there.

#[path = "../../tests/fuzz_harness/mod.rs"]
mod harness;

pub use harness::{client_request, frame_stream, snapshot_load, wal_recovery};
