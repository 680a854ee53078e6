//! Retry delays: exponential growth with a cap and deterministic jitter.

use serde::{Deserialize, Serialize};

use super::error::QueueError;
use super::ids::JobId;
use super::limits::{
    BACKOFF_CEILING_MS, BACKOFF_INITIAL_MS_DEFAULT, BACKOFF_JITTER_PERCENT, BACKOFF_MAX_MS_DEFAULT,
    BACKOFF_MULTIPLIER_DEFAULT, BACKOFF_MULTIPLIER_MAX,
};

/// How long a job waits before its next delivery after a failed attempt
/// (a nack without an explicit delay, or an expired lease).
///
/// After attempt `n` (1 for the first delivery) the base delay is
/// `min(initial_ms * multiplier^(n-1), max_ms)`. The delay is then spread by
/// up to ±10% with jitter derived from the job id and `n` by a fixed hash
/// (never from an RNG, so every node computes the same value), and never
/// exceeds `max_ms`. An `initial_ms` of zero retries at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failed attempt.
    pub initial_ms: u32,
    /// Largest delay.
    pub max_ms: u32,
    /// Growth factor per attempt, 1..=16.
    pub multiplier: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial_ms: BACKOFF_INITIAL_MS_DEFAULT,
            max_ms: BACKOFF_MAX_MS_DEFAULT,
            multiplier: BACKOFF_MULTIPLIER_DEFAULT,
        }
    }
}

impl Backoff {
    /// Checks the ranges: `initial_ms <= max_ms <= BACKOFF_CEILING_MS` and
    /// `1 <= multiplier <= BACKOFF_MULTIPLIER_MAX`.
    pub fn validate(&self) -> Result<(), QueueError> {
        if self.initial_ms > self.max_ms || self.max_ms > BACKOFF_CEILING_MS {
            return Err(QueueError::InvalidArgument(
                "backoff needs initial_ms <= max_ms <= 30 days".to_string(),
            ));
        }
        if !(1..=BACKOFF_MULTIPLIER_MAX).contains(&self.multiplier) {
            return Err(QueueError::InvalidArgument(
                "backoff multiplier must be 1 to 16".to_string(),
            ));
        }
        Ok(())
    }

    /// The delay before the delivery that follows failed attempt `attempt`
    /// of job `id`.
    pub fn delay_ms(&self, id: JobId, attempt: u32) -> u64 {
        let mut base_ms = u64::from(self.initial_ms);
        let max_ms = u64::from(self.max_ms);
        for _ in 1..attempt {
            if base_ms >= max_ms {
                break;
            }
            base_ms = base_ms.saturating_mul(u64::from(self.multiplier));
        }
        let base_ms = base_ms.min(max_ms);
        let spread_ms = base_ms * BACKOFF_JITTER_PERCENT / 100;
        let jitter_ms = jitter_hash(id, attempt) % (2 * spread_ms + 1);
        (base_ms - spread_ms + jitter_ms).min(max_ms)
    }
}

/// SplitMix64's finalizer over the job id and attempt: a fixed, well-mixed
/// hash, so the jitter of every retry is the same on every node.
fn jitter_hash(id: JobId, attempt: u32) -> u64 {
    let mut value =
        id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(attempt));
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_ten_percent_jitter() {
        let backoff = Backoff::default();
        for attempt in 1..=8u32 {
            let base_ms = 1_000u64 * (1 << (attempt - 1));
            for id in 1..50 {
                let delay_ms = backoff.delay_ms(JobId(id), attempt);
                assert!(delay_ms >= base_ms * 9 / 10, "{delay_ms} below {base_ms}");
                assert!(delay_ms <= base_ms * 11 / 10, "{delay_ms} above {base_ms}");
            }
        }
    }

    #[test]
    fn backoff_never_exceeds_its_cap() {
        let backoff = Backoff::default();
        for attempt in [11, 20, 25, 1_000] {
            let delay_ms = backoff.delay_ms(JobId(7), attempt);
            assert!(delay_ms <= 600_000);
            assert!(delay_ms >= 540_000);
        }
    }

    #[test]
    fn backoff_jitter_depends_on_job_and_attempt_only() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay_ms(JobId(3), 2), backoff.delay_ms(JobId(3), 2));
        let delays: std::collections::BTreeSet<u64> =
            (1..20).map(|id| backoff.delay_ms(JobId(id), 2)).collect();
        assert!(
            delays.len() > 10,
            "jitter spreads retries of different jobs"
        );
    }

    #[test]
    fn zero_initial_backoff_retries_at_once() {
        let backoff = Backoff {
            initial_ms: 0,
            max_ms: 0,
            multiplier: 2,
        };
        assert_eq!(backoff.delay_ms(JobId(1), 5), 0);
    }

    #[test]
    fn backoff_out_of_range_is_refused() {
        let inverted = Backoff {
            initial_ms: 10,
            max_ms: 5,
            multiplier: 2,
        };
        assert!(inverted.validate().is_err());
        let no_growth = Backoff {
            multiplier: 0,
            ..Backoff::default()
        };
        assert!(no_growth.validate().is_err());
    }
}
