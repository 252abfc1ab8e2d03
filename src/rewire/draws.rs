//! The random numbers of a pass (docs/algorithm.md sections 2 and 5): a
//! seed per tensor, a ChaCha8 stream per row of each pass, its words made
//! into Exp(1) draws, and the draws into the Efraimidis-Spirakis keys that
//! order the row's columns. Each draw is a function of the seed, the
//! tensor, the pass and the row alone, so the output does not depend on
//! the thread count or the order of the work, and the conversions use only
//! basic IEEE operations, so it does not depend on the CPU either.

use sha2::{Digest, Sha256};

use crate::sort::cpu::widest;

use super::chacha;

/// The random seed of one tensor: SHA-256 of the user seed and the
/// tensor's stable key, so a tensor's result depends on nothing else (not
/// thread count, not processing order, not which other tensors are
/// selected). It keys ChaCha8 streams, one per pass and row.
pub fn tensor_seed(seed: u64, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"pa-onnx/rewire/v1\0");
    h.update(seed.to_le_bytes());
    h.update(key.as_bytes());
    h.finalize().into()
}

/// An Exp(1) draw from 32 random bits: -ln(u), u = (x + 1/2) / 2^32, so
/// u lies strictly inside (0, 1) and the draw is positive and finite.
///
/// It is computed in f32, because the key it feeds is an f32 and f64
/// divisions cost three times as much per element. Near u = 1 the draw is
/// small and u in f32 would hold too few of its digits, so the upper half
/// of (0, 1) is written u = 1 - d with d = (!x + 1/2) / 2^32 (1 - d is u
/// exactly), and d, not u, is rounded to f32: every draw keeps a relative
/// error of at most 2 f32 ulps (see the test). The
/// logarithm is the textbook one (u = z 2^k with z near 1,
/// ln z = 2 atanh(s), s = (z - 1) / (z + 1)). Only basic IEEE operations
/// and exact integer conversions are used, so the result is the same bits
/// on every machine and at every vector width, and the loop over a row
/// vectorises (unlike rand_distr's ziggurat, which also consumed 64 bits
/// per draw).
#[inline(always)]
fn exp1_from_bits(x: u32) -> f32 {
    let upper = x >> 31 == 1;
    // u on the lower half, d on the upper half: both in (0, 1/2].
    let m = if upper { !x } else { x };
    let w = (m as i32 as f32 + 0.5) * (1.0 / 4_294_967_296.0);
    // Lower half: w = z 2^k with z in [0.707, 1.414) (musl's reduction).
    const SQRT_HALF: u32 = 0x3f35_04f3;
    let ix = w.to_bits().wrapping_sub(SQRT_HALF);
    let k_lower = (ix as i32 >> 23) as f32;
    let f_lower = f32::from_bits((ix & 0x007f_ffff) + SQRT_HALF) - 1.0;
    // Upper half: u = 1 - d is z 2^0 with z - 1 = -d, or, below 0.707,
    // z 2^-1 with z - 1 = 1 - 2d (exact, as 2d lies in [0.58, 1]).
    let near_one = w <= 0.29;
    let k_upper = if near_one { 0.0 } else { -1.0 };
    let f_upper = if near_one { -w } else { 1.0 - 2.0 * w };
    let (k, f) = if upper {
        (k_upper, f_upper)
    } else {
        (k_lower, f_lower)
    };
    let s = f / (2.0 + f);
    let s2 = s * s;
    let poly = s2 * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0))));
    let ln_z = 2.0 * s + s * poly;
    -(k * std::f32::consts::LN_2 + ln_z)
}

/// The Exp(1) draws of row `k` of pass `pass_no`. Each row has its own
/// ChaCha8 stream (the tensor's seed, stream number = pass and row), so the
/// draws are the same whichever thread produces them and in whatever order.
pub(super) fn draw_row(
    seed: &[u8; 32],
    pass_no: u64,
    k: usize,
    bits: &mut Vec<u32>,
    out: &mut [f32],
) {
    bits.resize(out.len(), 0);
    chacha::keystream(seed, (pass_no << 40) | k as u64, bits);
    exp_row(bits, out);
}

/// Exp(1) draws from random words, as wide as the CPU allows (see
/// `widest` in the sort module).
fn exp_row(bits: &[u32], out: &mut [f32]) {
    #[inline(always)]
    fn body(bits: &[u32], out: &mut [f32]) {
        for (e, &x) in out.iter_mut().zip(bits) {
            *e = exp1_from_bits(x);
        }
    }
    widest!(body(bits: &[u32], out: &mut [f32]))
}

/// The Efraimidis-Spirakis keys of one row, E_j / p_j with
/// p_j = acc_j + |low| + 1 >= 1 (`low` being min(acc)), as the bit patterns
/// of positive f32s, which order like their values; with their minimum
/// and maximum.
pub(super) fn key_bits_row(kbits: &mut [u32], acc: &[f64], exps: &[f32], low: f64) -> (u32, u32) {
    #[inline(always)]
    fn body(kbits: &mut [u32], acc: &[f64], exps: &[f32], low: f64) -> (u32, u32) {
        let shift = low.abs() + 1.0;
        let (mut lo, mut hi) = ([u32::MAX; 8], [0u32; 8]);
        let mut chunks = kbits
            .chunks_exact_mut(8)
            .zip(acc.chunks_exact(8).zip(exps.chunks_exact(8)));
        for (k, (a, e)) in &mut chunks {
            for i in 0..8 {
                let b = (e[i] / (a[i] + shift) as f32).to_bits();
                k[i] = b;
                lo[i] = lo[i].min(b);
                hi[i] = hi[i].max(b);
            }
        }
        let tail = kbits.len() / 8 * 8;
        for j in tail..kbits.len() {
            let b = (exps[j] / (acc[j] + shift) as f32).to_bits();
            kbits[j] = b;
            lo[0] = lo[0].min(b);
            hi[0] = hi[0].max(b);
        }
        (lo.into_iter().min().unwrap(), hi.into_iter().max().unwrap())
    }
    widest!(body(kbits: &mut [u32], acc: &[f64], exps: &[f32], low: f64) -> (u32, u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The f32 draws against -ln(u) in f64: within 2 ulps (1.57 at worst
    /// when written), the smallest draws (u next to 1) and the largest
    /// included, and the same bits whichever width `exp_row` runs at.
    #[test]
    fn exp1_draws_are_accurate_in_f32() {
        let exact = |x: u32| -((x as f64 + 0.5) / 4_294_967_296.0).ln();
        let mut xs: Vec<u32> = vec![0, 1, 2, 1 << 31, (1 << 31) - 1, u32::MAX, u32::MAX - 1];
        // Both sides of the branch points: u = 1/2, and d = 0.29 (u = 0.71,
        // x = 3_049_426_780).
        xs.extend((0..4096u32).map(|i| (1u32 << 31).wrapping_add(i).wrapping_sub(2048)));
        xs.extend((0..4096u32).map(|i| 3_049_000_000 + i * 250));
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        xs.extend((0..200_000).map(|_| rng.random::<u32>()));
        let mut worst = 0f64;
        for &x in &xs {
            let got = exp1_from_bits(x) as f64;
            let want = exact(x);
            assert!(got > 0.0 && got.is_finite(), "x = {x}: {got}");
            let ulp = (want as f32).abs() * f32::EPSILON;
            worst = worst.max((got - want).abs() / ulp as f64);
        }
        assert!(worst <= 2.0, "worst error {worst} ulps");
        // The smallest draw is ln(1 + 2^-33)-sized, not rounded to zero.
        assert!((exp1_from_bits(u32::MAX) as f64 / 2f64.powi(-33) - 1.0).abs() < 1e-6);
        let mut wide = vec![0f32; xs.len()];
        exp_row(&xs, &mut wide);
        for (&x, &e) in xs.iter().zip(&wide) {
            assert_eq!(e.to_bits(), exp1_from_bits(x).to_bits(), "x = {x}");
        }
    }
}
