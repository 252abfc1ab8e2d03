//! Sorting of u32 keys and column words: the inner loop of every rewiring
//! pass, and the way the reader compares two payloads as multisets. Both
//! want the fastest sort the CPU allows, and neither may depend on which
//! sort ran; they share this module so that neither imports the other.
//!
//! Each row of a pass needs two orderings of up to a few thousand items:
//! the row's value keys ascending (`u32`, see [`f32_key`]) and the columns
//! by their random key (`u64` words, key in the high half and column index
//! in the low half, so the order is total and ties go to the lower index).
//! Either way the sorted result is fully determined by the input set,
//! whichever algorithm produced it, which keeps the output reproducible.
//!
//! Where the CPU has AVX-512, values and the columns of rows up to
//! [`PACKED_MAX`] wide are sorted in vector registers ([`simd`], through
//! [`sort_values`] and [`order_columns`]). Elsewhere, and for the columns
//! of wider rows, both are sorted by a least-significant-digit radix sort
//! on the top bits of the 32-bit key (all histograms counted in one read),
//! followed by an insertion sort on the whole items. Rows shorter than
//! [`WIDE`] use three one-byte digits (a pass is skipped where every item
//! has the same byte); longer rows use two 11-bit digits, whose 2048-count
//! histograms cost less than the third scatter pass they save. The radix
//! passes leave only items that agree in their top 22 or 24 bits out of
//! order, a few percent of a row, so the insertion sort costs about one
//! predictable comparison per item: cheaper than a fourth pass. LSD passes
//! are stable, and the column words are built in column order, so equal
//! keys stay in index order. A radix sort rather than a comparison sort
//! (the standard library's, or a bucket sort with an insertion-sort
//! fix-up): it has no data-dependent branches, and the buckets of one byte
//! fit in L1.

pub(crate) mod cpu;
mod network;
pub(crate) mod simd;

#[cfg(target_arch = "x86_64")]
pub(crate) use network::transpose16;
pub(crate) use simd::sort_u32;

/// Maps an f32 to a u32 with the same order (-0.0 just below +0.0).
#[inline]
pub(crate) fn f32_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// The inverse of [`f32_key`].
#[inline]
pub(crate) fn f32_unkey(k: u32) -> f32 {
    f32::from_bits(if k & 0x8000_0000 != 0 {
        k & 0x7fff_ffff
    } else {
        !k
    })
}

/// Maps an f64 to a u64 with the same order (-0.0 just below +0.0).
#[inline]
pub(crate) fn f64_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b & 0x8000_0000_0000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000_0000_0000
    }
}

/// Up to this length a plain insertion sort is cheapest.
const TINY: usize = 32;

/// Up to this length the standard library's sort beats the radix sort,
/// whose three histograms of 256 counts cost more than the items.
const SMALL: usize = 96;

/// Reusable buffers of the radix sort.
pub(crate) struct Scratch<T> {
    tmp: Vec<T>,
}

impl<T> Default for Scratch<T> {
    fn default() -> Self {
        Scratch { tmp: Vec::new() }
    }
}

/// Sorts a row's value keys ascending.
pub(crate) fn sort_values(items: &mut [u32], scratch: &mut Scratch<u32>) {
    if items.len() > TINY && simd::sort_u32(items, &mut scratch.tmp) {
        return;
    }
    sort_by_key(items, &mut scratch.tmp, |x| x);
}

/// Rows of up to this many columns are ordered by [`order_columns`].
const PACKED_MAX: usize = 1 << 14;

/// The columns of a row in ascending order of their keys, ties by index,
/// as words `prefix << ib | j` in `words`, or None where AVX-512 is missing
/// or the row is longer than [`PACKED_MAX`].
///
/// `kbits[j]` is column j's key as the bits of a positive f32, between `lo`
/// and `hi`. The prefix is `(kbits[j] - lo) >> s`, the widest that fits
/// beside the index, so 32-bit words sort in registers (twice the items per
/// instruction of 64-bit ones). Where the shift dropped bits, words with
/// equal prefixes are put in full key order afterwards; with 18 or more
/// prefix bits over the row's own key range that is about 1% of them or
/// fewer.
pub(crate) fn order_columns<'w>(
    kbits: &[u32],
    lo: u32,
    hi: u32,
    words: &'w mut Vec<u32>,
    scratch: &mut Scratch<u32>,
) -> Option<ColumnOrder<'w>> {
    let c = kbits.len();
    if !(2..=PACKED_MAX).contains(&c) {
        return None;
    }
    let ib = usize::BITS - (c - 1).leading_zeros();
    let room = 32 - ib;
    let s = (32 - (hi - lo).leading_zeros()).saturating_sub(room);
    // Without AVX-512 nothing is packed, and the 64-bit words serve.
    if !simd::pack(kbits, lo, s, ib, words) {
        return None;
    }
    simd::sort_u32(words, &mut scratch.tmp);
    let mask = (1u32 << ib) - 1;
    if s > 0 {
        // Words tied on the prefix: insertion into the tied words before,
        // by the full key (ties in it stay in index order).
        let key = |w: u32| (kbits[(w & mask) as usize], w);
        simd::for_each_tie(words, ib, |words, m| {
            let x = words[m];
            let kx = key(x);
            let mut i = m;
            while i > 0 && words[i - 1] >> ib == x >> ib && key(words[i - 1]) > kx {
                words[i] = words[i - 1];
                i -= 1;
            }
            words[i] = x;
        });
    }
    Some(ColumnOrder { words, mask })
}

/// A row's columns in the order [`order_columns`] found: one word per
/// column, whose index bits (`mask`) are the columns 0..len, each once.
/// Only [`order_columns`] makes one, which is what makes [`scatter`]
/// safe.
///
/// [`scatter`]: ColumnOrder::scatter
pub(crate) struct ColumnOrder<'w> {
    words: &'w [u32],
    mask: u32,
}

impl ColumnOrder<'_> {
    /// `dst[j] = src[m]` for the m-th column j of the order: the m-th
    /// smallest item of `src` goes to the m-th column drawn.
    pub(crate) fn scatter(&self, src: &[u32], dst: &mut [u32]) {
        let n = self.words.len();
        assert!(src.len() == n && dst.len() == n);
        // SAFETY: one word per column, and the index bits of the words
        // are the distinct columns 0..n = 0..dst.len().
        let scattered = unsafe { simd::scatter(self.words, self.mask, src, dst) };
        // Only AVX-512 makes a ColumnOrder, and only it scatters.
        debug_assert!(scattered);
    }
}

/// Sorts column words `key << 32 | column`, built in column order,
/// ascending.
pub(crate) fn sort_keys(items: &mut [u64], scratch: &mut Scratch<u64>) {
    sort_by_key(items, &mut scratch.tmp, |x| (x >> 32) as u32);
}

/// The sort for the length at hand: insertion sort for tiny slices, the
/// standard library's for short ones, [`radix_sort`] beyond, with three
/// 8-bit digits (bits 8..32 of the key) or, from [`WIDE`] items on, two
/// 11-bit ones (bits 10..32).
#[inline(always)]
fn sort_by_key<T: Copy + Default + Ord>(items: &mut [T], tmp: &mut Vec<T>, key: impl Fn(T) -> u32) {
    if items.len() <= TINY {
        insertion_sort(items);
    } else if items.len() <= SMALL {
        items.sort_unstable();
    } else if items.len() < WIDE {
        radix_sort::<T, 256, 3>(items, tmp, key, [8, 16, 24]);
    } else {
        radix_sort::<T, 2048, 2>(items, tmp, key, [10, 21]);
    }
}

/// From this length on, two passes of 11-bit digits beat three of 8: the
/// larger histograms cost less than the scatter pass they save.
const WIDE: usize = 512;

/// Sorts `items`, which must order like `key` where keys differ: a stable
/// LSD radix sort by the `D` digits of `B` buckets (a power of two) that
/// start at bit `shifts[d]` of `key`, the last reaching bit 31, then an
/// insertion sort.
#[inline(always)]
fn radix_sort<T: Copy + Default + Ord, const B: usize, const D: usize>(
    items: &mut [T],
    tmp: &mut Vec<T>,
    key: impl Fn(T) -> u32,
    shifts: [u32; D],
) {
    let n = items.len();
    let mask = B as u32 - 1;
    let digit = |k: u32, d: usize| ((k >> shifts[d]) & mask) as usize;
    let mut hist = [[0u32; B]; D];
    for &x in items.iter() {
        let k = key(x);
        for (d, h) in hist.iter_mut().enumerate() {
            h[digit(k, d)] += 1;
        }
    }
    // Every slot of tmp is written before it is read; it is only sized.
    if tmp.len() < n {
        tmp.resize(n, T::default());
    }
    let tmp = &mut tmp[..n];
    // `in_items`: whether the data currently lives in `items` (else tmp).
    let mut in_items = true;
    for (d, h) in hist.iter_mut().enumerate() {
        let first = key(if in_items { items[0] } else { tmp[0] });
        if h[digit(first, d)] as usize == n {
            continue;
        }
        let mut sum = 0u32;
        for c in h.iter_mut() {
            let v = *c;
            *c = sum;
            sum += v;
        }
        let (src, dst): (&[T], &mut [T]) = if in_items {
            (items, &mut *tmp)
        } else {
            (&*tmp, items)
        };
        for &x in src.iter() {
            let b = digit(key(x), d);
            // SAFETY: b < B, and the running starts of a histogram of
            // `src` give each item a distinct slot below n = dst.len().
            unsafe {
                let slot = h.get_unchecked_mut(b);
                *dst.get_unchecked_mut(*slot as usize) = x;
                *slot += 1;
            }
        }
        in_items = !in_items;
    }
    if in_items {
        insertion_sort(items);
    } else {
        insertion_copy(tmp, items);
    }
}

/// Copies `src` into `dst` sorted: the insertion sort of [`insertion_sort`]
/// fused with the copy, for data that is almost sorted already.
fn insertion_copy<T: Copy + Ord>(src: &[T], dst: &mut [T]) {
    debug_assert_eq!(src.len(), dst.len());
    for (i, &x) in src.iter().enumerate() {
        let mut j = i;
        // SAFETY: j <= i < dst.len() = src.len() inside the loop.
        unsafe {
            while j > 0 && *dst.get_unchecked(j - 1) > x {
                *dst.get_unchecked_mut(j) = *dst.get_unchecked(j - 1);
                j -= 1;
            }
            *dst.get_unchecked_mut(j) = x;
        }
    }
}

/// Insertion sort; linear in the length plus the number of inversions.
fn insertion_sort<T: Copy + Ord>(a: &mut [T]) {
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
    fn value_sort_agrees_with_a_comparison_sort() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [0usize, 1, 5, 24, 25, 255, 511, 512, 1536, 5000] {
            let rows: Vec<Vec<f32>> = vec![
                (0..n).map(|_| rng.random_range(-1.0..1.0)).collect(),
                (0..n)
                    .map(|_| rng.random_range(0..3) as f32 - 1.0)
                    .collect(),
                // Heavy tails and an outlier that squeezes the rest into
                // one bucket.
                (0..n)
                    .map(|i| {
                        if i == 0 {
                            1e30
                        } else {
                            -rng.random::<f32>().ln()
                        }
                    })
                    .collect(),
                (0..n)
                    .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
                    .collect(),
            ];
            for row in rows {
                let mut a: Vec<u32> = row.iter().map(|&v| f32_key(v)).collect();
                let mut b = a.clone();
                let mut c = a.clone();
                sort_values(&mut a, &mut Scratch::default());
                b.sort_unstable();
                assert_eq!(a, b, "n = {n}");
                // The radix sort, which CPUs without AVX-512 use.
                sort_by_key(&mut c, &mut Vec::new(), |x| x);
                assert_eq!(c, b, "n = {n}");
            }
        }
    }

    #[test]
    fn key_sort_agrees_with_a_comparison_sort() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for n in [0usize, 1, 5, 24, 25, 255, 511, 512, 1536, 5000] {
            for p_spread in [1.0, 1000.0, 1e30] {
                let mut items: Vec<u64> = (0..n)
                    .map(|j| {
                        let p = 1.0 + rng.random::<f64>() * p_spread;
                        let e = -rng.random::<f64>().ln();
                        // Coarse keys too, so that ties are common.
                        let key = ((e / p) as f32 * 8.0).round() / 8.0;
                        ((key.to_bits() as u64) << 32) | j as u64
                    })
                    .collect();
                let mut b = items.clone();
                sort_keys(&mut items, &mut Scratch::default());
                b.sort_unstable();
                assert_eq!(items, b, "n = {n}, spread = {p_spread}");
            }
        }
    }

    #[test]
    fn packed_column_order_matches_the_word_sort() {
        if !cpu::available() {
            eprintln!("SKIPPED: this CPU has no AVX-512; rows use the 64-bit word sort");
            return;
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for n in [2usize, 3, 17, 255, 256, 257, 1000, 4608, 16384] {
            for (p_spread, coarse) in [(1.0, false), (1e6, false), (1e30, false), (3.0, true)] {
                let kbits: Vec<u32> = (0..n)
                    .map(|_| {
                        let p = 1.0 + rng.random::<f64>() * p_spread;
                        let e = -rng.random::<f64>().ln();
                        let key = (e / p) as f32;
                        // Coarse keys make ties common.
                        let key = if coarse {
                            (key * 8.0).round() / 8.0
                        } else {
                            key
                        };
                        key.to_bits()
                    })
                    .collect();
                let (lo, hi) = (*kbits.iter().min().unwrap(), *kbits.iter().max().unwrap());
                let mut words = Vec::new();
                let order = order_columns(&kbits, lo, hi, &mut words, &mut Scratch::default())
                    .expect("AVX-512 and a short row");
                let (words, mask) = (order.words, order.mask);
                let mut want: Vec<u64> = kbits
                    .iter()
                    .enumerate()
                    .map(|(j, &k)| ((k as u64) << 32) | j as u64)
                    .collect();
                sort_keys(&mut want, &mut Scratch::default());
                let got: Vec<u64> = words.iter().map(|&w| (w & mask) as u64).collect();
                let want: Vec<u64> = want.iter().map(|&w| w as u32 as u64).collect();
                assert_eq!(got, want, "n = {n}, spread = {p_spread}, coarse = {coarse}");
            }
        }
        let long = vec![0u32; PACKED_MAX + 1];
        assert!(order_columns(&long, 0, 0, &mut Vec::new(), &mut Scratch::default()).is_none());
    }
}
