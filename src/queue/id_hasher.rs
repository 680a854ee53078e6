//! A fast hasher for maps keyed by ids and already-random hashes.
//!
//! Such maps are used for point lookups only; nothing iterates them in an
//! order that could reach an outcome or a snapshot, so the hasher only has to
//! spread keys well, and a multiplicative hash does that for sequential ids.

use std::hash::{BuildHasher, Hasher};

/// Builds [`IdHasher`]s.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct IdHashBuilder;

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// A multiply-rotate hasher over 64-bit words (the scheme of rustc's FxHash).
#[derive(Clone, Copy, Debug)]
pub(super) struct IdHasher(u64);

const MULTIPLIER: u64 = 0x517C_C1B7_2722_0A95;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(MULTIPLIER);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
