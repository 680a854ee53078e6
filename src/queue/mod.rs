//! The replicated state machine: a job queue.
