//! The entropy seam: where the node draws random numbers.
//!
//! The node needs randomness in a few places that do not decide anything
//! replicated: handshake nonces, the incarnation number of a process start,
//! and jitter on reconnect backoff. Production draws it from the operating
//! system ([`OsEntropy`]); a simulator supplies a [`SeededEntropy`] so that a
//! run depends on nothing but its seed.

use std::sync::Mutex;

use rand::{Rng, RngCore, SeedableRng};

/// A source of random numbers.
pub trait Entropy: Send + Sync + std::fmt::Debug + 'static {
    /// A uniformly random number.
    fn next_u64(&self) -> u64;
    /// Fills `bytes` with random bytes.
    fn fill_bytes(&self, bytes: &mut [u8]);
}

/// Randomness from the operating system, through the thread-local generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&self) -> u64 {
        rand::rng().random()
    }

    fn fill_bytes(&self, bytes: &mut [u8]) {
        rand::rng().fill_bytes(bytes);
    }
}

/// A deterministic generator: the same seed gives the same sequence.
#[derive(Debug)]
pub struct SeededEntropy {
    rng: Mutex<rand::rngs::StdRng>,
}

impl SeededEntropy {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        }
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> u64 {
        self.rng.lock().expect("entropy lock").random()
    }

    fn fill_bytes(&self, bytes: &mut [u8]) {
        self.rng.lock().expect("entropy lock").fill_bytes(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_entropy_repeats_its_sequence_for_one_seed() {
        let first = SeededEntropy::new(7);
        let second = SeededEntropy::new(7);
        let other = SeededEntropy::new(8);
        let draws: Vec<u64> = (0..4).map(|_| first.next_u64()).collect();
        assert_eq!(draws, (0..4).map(|_| second.next_u64()).collect::<Vec<_>>());
        assert_ne!(draws, (0..4).map(|_| other.next_u64()).collect::<Vec<_>>());
        let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
        first.fill_bytes(&mut a);
        second.fill_bytes(&mut b);
        assert_eq!(a, b);
    }
}
