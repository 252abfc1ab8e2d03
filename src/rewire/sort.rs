//! Sorting indices by key, the inner loop of every pass.
//!
//! Each row of a pass needs two orderings of up to a few thousand items: the
//! columns by their random key and the row's values ascending. Keys are
//! turned into unsigned integers whose order is the float order, packed with
//! the item index into one u64 and sorted; ties therefore break by index,
//! and the result is the same whichever algorithm sorts, which keeps the
//! output reproducible across the size threshold between the radix sort
//! (long rows) and the comparison sort (short ones).

/// Maps an f32 to a u32 with the same order (-0.0 just below +0.0).
#[inline]
pub fn f32_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// Maps an f64 to a u64 with the same order (-0.0 just below +0.0).
#[inline]
pub fn f64_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b & 0x8000_0000_0000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000_0000_0000
    }
}

/// Below this length a comparison sort beats three counting passes.
const RADIX_MIN: usize = 256;
const DIGIT: u32 = 11;
const BUCKETS: usize = 1 << DIGIT;

/// Reusable buffers for [`sort_packed`].
#[derive(Default)]
pub struct Scratch {
    tmp: Vec<u64>,
    counts: Vec<u32>,
}

/// Sorts words of the form `key << 32 | index` ascending. Equal keys keep
/// index order, so the outcome is fully determined by the keys.
pub fn sort_packed(items: &mut [u64], scratch: &mut Scratch) {
    let n = items.len();
    if n < RADIX_MIN {
        items.sort_unstable();
        return;
    }
    // LSD radix on the 32 key bits, three digits of 11 bits. The index
    // bits need no pass: items start in index order and every pass is
    // stable.
    debug_assert!(items.windows(2).all(|w| (w[0] as u32) < (w[1] as u32)));
    scratch.tmp.resize(n, 0);
    scratch.counts.clear();
    scratch.counts.resize(3 * BUCKETS, 0);
    let (c0, rest) = scratch.counts.split_at_mut(BUCKETS);
    let (c1, c2) = rest.split_at_mut(BUCKETS);
    for &w in items.iter() {
        let k = (w >> 32) as u32;
        c0[(k & 0x7ff) as usize] += 1;
        c1[((k >> 11) & 0x7ff) as usize] += 1;
        c2[(k >> 22) as usize] += 1;
    }
    let mut src: &mut [u64] = items;
    let mut dst: &mut [u64] = &mut scratch.tmp[..n];
    let mut swapped = false;
    for (pass, counts) in [c0, c1, c2].into_iter().enumerate() {
        // A digit shared by every key would only copy.
        if counts.iter().any(|&c| c as usize == n) {
            continue;
        }
        let mut sum = 0u32;
        for c in counts.iter_mut() {
            let v = *c;
            *c = sum;
            sum += v;
        }
        let shift = 32 + DIGIT * pass as u32;
        for &w in src.iter() {
            let d = ((w >> shift) & 0x7ff) as usize;
            dst[counts[d] as usize] = w;
            counts[d] += 1;
        }
        std::mem::swap(&mut src, &mut dst);
        swapped = !swapped;
    }
    if swapped {
        // The sorted data ended up in the scratch buffer.
        dst.copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn float_keys_keep_order() {
        let xs = [-f32::INFINITY, -2.5, -1e-30, -0.0, 0.0, 1e-30, 3.0, f32::INFINITY];
        for w in xs.windows(2) {
            assert!(f32_key(w[0]) < f32_key(w[1]), "{w:?}");
            assert!(f64_key(w[0] as f64) < f64_key(w[1] as f64), "{w:?}");
        }
    }

    #[test]
    fn radix_and_comparison_sorts_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [0usize, 1, 5, 255, 256, 1000, 5000] {
            let items: Vec<u64> = (0..n)
                .map(|i| ((rng.random_range(0..50u32) as u64) << 32) | i as u64)
                .collect();
            let mut a = items.clone();
            let mut b = items.clone();
            sort_packed(&mut a, &mut Scratch::default());
            b.sort_unstable();
            assert_eq!(a, b, "n = {n}");
        }
    }
}
