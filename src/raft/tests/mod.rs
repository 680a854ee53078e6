//! Unit tests of the core, named after the rule of the Raft paper or thesis
//! they check.
