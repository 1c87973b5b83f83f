//! Seeded randomness for the mock: the same request always gets the same ids, words and
//! chunking, without pulling a random-number crate into the tollgate binary.

/// FNV-1a over bytes: a stable seed from a request body.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: tiny, fast and good enough to vary chunk sizes and ids.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        // Truncation is the point: only the low bits of a well-mixed value are needed.
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// A number in `low..=high`.
    pub(crate) fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high.saturating_sub(low) + 1)
    }

    /// True with the given chance in percent.
    pub(crate) fn percent(&mut self, chance: usize) -> bool {
        self.below(100) < chance
    }

    /// A value in `[-1, 1)`, for embedding components.
    pub(crate) fn unit(&mut self) -> f32 {
        // 24 bits fit an f32 mantissa exactly.
        let bits = (self.next_u64() >> 40) as u32;
        bits as f32 / (1u32 << 23) as f32 - 1.0
    }

    pub(crate) fn alnum(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(ALNUM[self.below(ALNUM.len())]))
            .collect()
    }

    pub(crate) fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b"0123456789abcdef"[self.below(16)]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_different_seed_differs() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn ranges_hold() {
        let mut rng = Rng::new(fnv1a(b"ranges"));
        for _ in 0..1000 {
            assert!(rng.below(5) < 5);
            let value = rng.between(2, 4);
            assert!((2..=4).contains(&value));
            let unit = rng.unit();
            assert!((-1.0..1.0).contains(&unit), "{unit}");
        }
        assert_eq!(rng.alnum(12).len(), 12);
        assert!(rng.hex(10).chars().all(|c| c.is_ascii_hexdigit()));
    }
}
