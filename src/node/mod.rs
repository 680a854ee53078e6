//! The node runtime: the only place where tokio meets the consensus core.

pub mod clock;
pub mod net;
pub mod transport;
