//! Small pseudo-random numbers: [`unit`](fn@unit) for retry jitter, and
//! [`XorShift`], deterministic and seedable, for randomized tests that
//! must be replayable from a printed seed. Neither is for secrets.

/// xorshift64*: small, fast, deterministic pseudo-random numbers for
/// randomized tests that must be replayable from a printed seed. Not for
/// anything that needs unpredictability.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        // A zero state would stay zero.
        if self.0 == 0 {
            self.0 = 0x9E37_79B9_7F4A_7C15;
        }
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A number in `[0, 1)`, different on every call (seeded from a hasher's
/// random keys and the clock): jitter, nothing that must be unpredictable.
pub fn unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}
