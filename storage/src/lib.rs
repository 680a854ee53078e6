//! Segmented, memory-mapped write-ahead log and snapshot files for raftq.
#![deny(missing_docs)]
