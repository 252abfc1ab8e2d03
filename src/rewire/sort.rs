//! Sorting packed words, the inner loop of every pass.
//!
//! Each row of a pass needs two orderings of up to a few thousand items: the
//! columns by their random key and the row's elements by value. Both are
//! `u64` words whose high half is an order-preserving integer key (see
//! [`f32_key`]) and whose low half is an index that makes every word
//! distinct. Sorting the words ascending therefore sorts by key and breaks
//! ties by index: the result is fully determined by the input set, whichever
//! algorithm produced it, which keeps the output reproducible.
//!
//! The sort is one most-significant-digit counting pass into about one
//! bucket per item, over the range of the words actually present, followed
//! by an insertion sort that only has to fix the order inside each bucket.
//! Float keys are roughly logarithmic as integers, so the buckets stay
//! small for the value and key distributions a pass sees; a bucket that
//! ends up large anyway is sorted by a comparison sort, so the worst case
//! stays O(n log n). This replaced a four-digit LSD radix sort and takes
//! about a third of its instructions.

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

/// The inverse of [`f32_key`].
#[inline]
pub fn f32_unkey(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
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

/// Up to this length a plain insertion sort is cheapest.
const SMALL: usize = 24;

/// A bucket larger than this is comparison-sorted before the final
/// insertion sort, which would otherwise be quadratic in it.
const BIG: u32 = 48;

/// Reusable buffers for [`sort_packed`].
#[derive(Default)]
pub struct Scratch {
    tmp: Vec<u64>,
    counts: Vec<u32>,
}

/// Sorts distinct words ascending (in practice `key << 32 | index`, so
/// equal keys end up in index order).
pub fn sort_packed(items: &mut [u64], scratch: &mut Scratch) {
    let n = items.len();
    if n <= SMALL {
        insertion_sort(items);
        return;
    }
    // Buckets are taken from the key (high) halves only, which is where
    // words differ in practice; equal keys share a bucket and the final
    // insertion sort orders them by index. The range is found on the keys
    // as i32 (bias flipped), which SSE2 can min/max eight lanes at a time,
    // unlike u64.
    let (mut lo, mut hi) = (i32::MAX, i32::MIN);
    for &x in items.iter() {
        let k = ((x >> 32) as u32 ^ 0x8000_0000) as i32;
        lo = lo.min(k);
        hi = hi.max(k);
    }
    let lo = ((lo as u32 ^ 0x8000_0000) as u64) << 32;
    let hi = ((hi as u32 ^ 0x8000_0000) as u64) << 32 | u32::MAX as u64;
    // About one bucket per item: the top bits of (x - lo).
    let range = hi - lo;
    let want_bits = usize::BITS - n.leading_zeros();
    let shift = (u64::BITS - range.leading_zeros()).saturating_sub(want_bits);
    let buckets = (range >> shift) as usize + 1;
    bucket_sort(items, scratch, buckets, |x| ((x - lo) >> shift) as usize);
}

/// One counting pass of `items` into `buckets` ordered buckets, then the
/// fix-up inside buckets. `bucket_of` must be below `buckets`; it should be
/// monotone, but the result is sorted regardless (the final insertion sort
/// runs over the whole slice), only slower if it is not.
#[inline(always)]
fn bucket_sort(
    items: &mut [u64],
    scratch: &mut Scratch,
    buckets: usize,
    bucket_of: impl Fn(u64) -> usize,
) {
    let n = items.len();
    let Scratch { tmp, counts } = scratch;
    counts.clear();
    counts.resize(buckets + 1, 0);
    for &x in items.iter() {
        let b = bucket_of(x);
        // SAFETY: bucket_of(x) < buckets.
        unsafe { *counts.get_unchecked_mut(b + 1) += 1 };
    }
    // Exclusive prefix sums: counts[b + 1] becomes the start of bucket b
    // (counts[0] only pads).
    let mut largest = 0u32;
    let mut sum = 0u32;
    for c in counts.iter_mut() {
        let v = *c;
        largest = largest.max(v);
        *c = sum;
        sum += v;
    }
    tmp.clear();
    tmp.reserve(n);
    let out = tmp.as_mut_ptr();
    for &x in items.iter() {
        let b = bucket_of(x);
        // SAFETY: b + 1 <= buckets; the running starts of a histogram of
        // `items` give each item a distinct slot below n = tmp's capacity.
        unsafe {
            let slot = counts.get_unchecked_mut(b + 1);
            *out.add(*slot as usize) = x;
            *slot += 1;
        }
    }
    // SAFETY: all n slots were written above.
    unsafe { tmp.set_len(n) };
    if largest > BIG {
        // After the scatter counts[b + 1] is the end of bucket b.
        let mut start = 0usize;
        for &end in counts[1..].iter() {
            let end = end as usize;
            if end - start > BIG as usize {
                tmp[start..end].sort_unstable();
            }
            start = end;
        }
    }
    insertion_sort(tmp);
    items.copy_from_slice(tmp);
}

/// Insertion sort; linear in the length plus the number of inversions.
fn insertion_sort(a: &mut [u64]) {
    for i in 1..a.len() {
        let x = a[i];
        let mut j = i;
        // SAFETY: 1 <= j <= i < a.len() inside the loop.
        unsafe {
            while j > 0 && *a.get_unchecked(j - 1) > x {
                *a.get_unchecked_mut(j) = *a.get_unchecked(j - 1);
                j -= 1;
            }
            *a.get_unchecked_mut(j) = x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn float_keys_keep_order() {
        let xs = [
            -f32::INFINITY,
            -2.5,
            -1e-30,
            -0.0,
            0.0,
            1e-30,
            3.0,
            f32::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(f32_key(w[0]) < f32_key(w[1]), "{w:?}");
            assert!(f64_key(w[0] as f64) < f64_key(w[1] as f64), "{w:?}");
        }
        for x in xs {
            assert_eq!(f32_unkey(f32_key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn bucket_and_comparison_sorts_agree() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [0usize, 1, 5, 24, 25, 255, 1535, 1536, 5000] {
            for spread in [1u32, 50, 1 << 20, u32::MAX] {
                let items: Vec<u64> = (0..n)
                    .map(|i| ((rng.random_range(0..=spread) as u64) << 32) | i as u64)
                    .collect();
                let mut a = items.clone();
                let mut b = items.clone();
                sort_packed(&mut a, &mut Scratch::default());
                b.sort_unstable();
                assert_eq!(a, b, "n = {n}, spread = {spread}");
            }
            // Skewed: float keys of exponential draws, and one outlier.
            let mut items: Vec<u64> = (0..n)
                .map(|i| ((f32_key(-rng.random::<f32>().ln()) as u64) << 32) | i as u64)
                .collect();
            if n > 0 {
                items[0] = (f32_key(1e30) as u64) << 32;
            }
            let mut b = items.clone();
            sort_packed(&mut items, &mut Scratch::default());
            b.sort_unstable();
            assert_eq!(items, b, "n = {n}, skewed");
        }
    }
}
