//! SplitMix64: a small, fast, seeded generator (not for secrets). Shared by
//! the simulated disk, whose choices must replay from a seed, and the load
//! generator's key and rate shapes.

/// SplitMix64 state; the same seed gives the same sequence everywhere.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `low..=high` (multiply-shift: no modulo bias worth naming
    /// at these ranges).
    pub fn range_u32(&mut self, low: u32, high: u32) -> u32 {
        assert!(low <= high);
        let span = u64::from(high - low) + 1;
        low + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u32
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }

    /// True with probability `ppm` per million.
    pub fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_and_bounds_hold() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        for _ in 0..1000 {
            assert!(a.below(10) < 10);
            assert!((3..=5).contains(&a.range_u32(3, 5)));
            assert!((0.0..1.0).contains(&a.next_f64()));
        }
        assert_eq!(a.below(0), 0);
        assert!(!a.chance(0));
        assert!(a.chance(1_000_000));
    }
}
