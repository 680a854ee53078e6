//! Identifiers handed out by the state: [`JobId`] and [`FencingToken`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// A job's identity, assigned from a counter in the state starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}

/// Proof of holding a lease. Every claim of a job takes the next value of a
/// global counter, so tokens strictly increase per job and globally; an ack,
/// nack or extend must present the token of the job's current lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
    }
}
