//! The clock seam: where the node reads wall-clock time.
//!
//! Only the leader reads it, to stamp proposals; everything else works from
//! stamped time inside the log. A simulator supplies a clock driven by its
//! own notion of time.

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        since_epoch.as_millis() as u64
    }
}

/// A clock that follows tokio's time, anchored at a fixed wall-clock
/// instant. Under a simulator that controls tokio's time (turmoil, or
/// `tokio::time::pause`) it advances with simulated time and is deterministic.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    anchor_ms: u64,
    anchor: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `anchor_ms` now and advances with tokio's time.
    pub fn new(anchor_ms: u64) -> TokioClock {
        TokioClock {
            anchor_ms,
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.anchor_ms + self.anchor.elapsed().as_millis() as u64
    }
}
