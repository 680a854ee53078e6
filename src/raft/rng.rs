//! The seeded random number generator of the core.

/// SplitMix64: a tiny, fast generator with good statistical quality. The core
/// uses it only for randomized election timeouts; simulations use it to drive
/// every choice from one seed. It is deterministic on every platform.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }

    /// A value in `[0, bound)`. `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no random value");
        self.next_u64() % bound
    }

    /// A value in `[low, high)`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "an empty range has no random value");
        low + self.below(high - low)
    }

    /// True with probability `percent` / 100.
    pub fn chance_percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
