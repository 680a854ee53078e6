//! The consensus core: a pure, deterministic Raft.
