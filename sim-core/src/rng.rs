//! The world's seeded random number generator.
//!
//! Its whole state is one `u64`, which is hashed every tick and snapshotted,
//! so "the same seed and the same plans give the same world" holds by
//! construction. SplitMix64 (Steele, Lea, Flood 2014) is tiny, has a full
//! 2^64 period and a fixed definition: no crate version can change it.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldRng {
    state: u64,
}

impl WorldRng {
    #[must_use]
    pub fn from_seed(seed: u64) -> WorldRng {
        // Mix the seed so that nearby seeds give unrelated streams.
        let mut rng = WorldRng { state: seed ^ 0x6A09_E667_F3BC_C909 };
        rng.next_u64();
        rng
    }

    #[must_use]
    pub fn from_state(state: u64) -> WorldRng {
        WorldRng { state }
    }

    #[must_use]
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), built from the top 24 bits so every value is an
    /// exact f32 (no platform rounding involved).
    pub fn next_f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as u32) as f32 * (1.0 / 16_777_216.0)
    }

    /// Uniform in [lo, hi).
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_values() {
        let mut a = WorldRng::from_seed(42);
        let mut b = WorldRng::from_seed(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        // Golden value: the stream is part of the determinism contract.
        let mut c = WorldRng::from_state(0);
        assert_eq!(c.next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn f32_in_unit_interval() {
        let mut r = WorldRng::from_seed(1);
        for _ in 0..10_000 {
            let x = r.next_f32();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
