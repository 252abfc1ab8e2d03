//! Randomness that is a function of its key alone.
//!
//! Every random choice about data (the held-out split, the epoch's order,
//! a sample's flip and crop, a synthetic sample's noise) is drawn from a
//! generator keyed by the seed, a purpose tag and the position it is for.
//! Two arms of a comparison therefore see identical data, a resumed run
//! sees what the interrupted one saw, and batches can be built on any
//! thread in any order. The draws are written here on top of ChaCha's
//! value-stable stream rather than taken from `rand`'s helpers, whose
//! outputs may change between versions.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a key is for, so that draws for different purposes never coincide.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(super) enum Purpose {
    /// The order of one epoch's training samples.
    Shuffle = 1,
    /// One training sample's augmentation.
    Augment = 2,
    /// Which samples are held out for testing.
    HoldOut = 3,
    /// Which training samples `limit` keeps.
    Limit = 4,
    /// One synthetic sample.
    Synthetic = 5,
    /// One synthetic task's class templates.
    Template = 6,
}

/// SplitMix64's finaliser: a bijective scramble of 64 bits.
pub(super) fn scramble(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One key from a purpose and its coordinates (seed, epoch, position...).
pub(super) fn key(purpose: Purpose, parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(scramble(purpose as u64), |h, &p| scramble(h ^ p))
}

/// A generator for `key`.
pub(super) fn generator(key: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(key)
}

/// A uniform integer in `0..n` (`n > 0`), without bias (Lemire's
/// multiply-and-reject).
pub(super) fn below(rng: &mut impl RngCore, n: usize) -> usize {
    let n = n as u64;
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as usize;
        }
    }
}

/// A uniform float in `[0, 1)`.
pub(super) fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Box-Muller; one of the pair is discarded, for
/// simplicity over speed).
pub(super) fn gaussian(rng: &mut impl RngCore) -> f64 {
    let u = 1.0 - unit(rng);
    let v = unit(rng);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A permutation of `0..n` drawn from `key` (Fisher-Yates).
pub(super) fn permutation(n: usize, key: u64) -> Vec<usize> {
    let mut rng = generator(key);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, i + 1);
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_depend_on_the_key_only() {
        let a = permutation(100, key(Purpose::Shuffle, &[1, 2]));
        assert_eq!(a, permutation(100, key(Purpose::Shuffle, &[1, 2])));
        assert_ne!(a, permutation(100, key(Purpose::Shuffle, &[1, 3])));
        assert_ne!(a, permutation(100, key(Purpose::HoldOut, &[1, 2])));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(a, sorted);
    }

    #[test]
    fn draws_have_the_expected_moments() {
        let mut rng = generator(9);
        let n = 20_000;
        let g: Vec<f64> = (0..n).map(|_| gaussian(&mut rng)).collect();
        let mean = g.iter().sum::<f64>() / n as f64;
        let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[below(&mut rng, 3)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (900..1100).contains(&c)),
            "{counts:?}"
        );
    }
}
