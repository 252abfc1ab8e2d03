//! The AVX-512 sort of u32 slices, and the other vector steps of a row's
//! column order (packing, ties, scatter), where the CPU has AVX-512.
//!
//! Slices up to 256 items are sorted in registers by a network
//! ([`super::network`]). Longer slices are split around a pivot, sixteen
//! items per instruction (compress to each side), until the parts fit the
//! network. Each split writes its left part into the other buffer and
//! gathers its right part in its own, behind the items it has read, with
//! whole-vector stores rather than masked ones, and copies the right part
//! over at the end. This is several times faster per item than the radix
//! sort of [`super`].
//!
//! Sorting is fully determined by the items (equal u32s are
//! indistinguishable), so which sorter ran never shows in the output.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::cpu::available;
#[cfg(target_arch = "x86_64")]
use super::network::{network, NET};

/// Sorts `items` ascending with AVX-512 and returns true, or returns false
/// without touching them where the CPU lacks AVX-512. `tmp` is scratch.
pub(crate) fn sort_u32(items: &mut [u32], tmp: &mut Vec<u32>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        if tmp.len() < items.len() {
            tmp.resize(items.len(), 0);
        }
        let n = items.len();
        // SAFETY: the CPU supports AVX-512F.
        unsafe { sort_in_place(items, &mut tmp[..n], 0) };
        return true;
    }
    let _ = (items, tmp);
    false
}

/// Column words `((kbits[j] - lo) >> shift) << ib | j`, for [`sort_u32`].
/// Returns false (nothing written) where the CPU lacks AVX-512.
pub(crate) fn pack(kbits: &[u32], lo: u32, shift: u32, ib: u32, words: &mut Vec<u32>) -> bool {
    #[cfg(target_arch = "x86_64")]
    if available() {
        words.resize(kbits.len(), 0);
        // SAFETY: the CPU supports AVX-512F.
        unsafe { pack512(kbits, lo, shift, ib, words) };
        return true;
    }
    let _ = (kbits, lo, shift, ib, words);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn pack512(kbits: &[u32], lo: u32, shift: u32, ib: u32, words: &mut [u32]) {
    for (j, (w, &k)) in words.iter_mut().zip(kbits).enumerate() {
        *w = ((k - lo) >> shift) << ib | j as u32;
    }
}

/// Calls `fix(words, m)`, for m ascending, at every m >= 1 where words m - 1
/// and m agree above bit `ib`. `fix` may reorder words among positions
/// that agree (which keeps the answer for later positions the same).
/// Sixteen positions are checked per instruction: most have no tie.
pub(crate) fn for_each_tie(words: &mut [u32], ib: u32, mut fix: impl FnMut(&mut [u32], usize)) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU supports AVX-512F.
        return unsafe { ties512(words, ib, &mut fix) };
    }
    for m in 1..words.len() {
        if words[m] >> ib == words[m - 1] >> ib {
            fix(words, m);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn ties512(words: &mut [u32], ib: u32, fix: &mut impl FnMut(&mut [u32], usize)) {
    let n = words.len();
    let count = _mm_cvtsi32_si128(ib as i32);
    // Each vector is loaded once, its prefixes shifted down once, and the
    // prefixes one position before come from it and the previous vector
    // (a second load one word back split a cache line every time). They
    // can be out of date once `fix` has run, but only in which of the
    // agreeing words sits where, so the prefixes compared are the same.
    let mut prev = _mm512_setzero_si512();
    // Position 0 has nothing before it.
    let mut skip = !1u32;
    for m0 in (0..n).step_by(16) {
        let lanes = (n - m0).min(16);
        let valid = (((1u64 << lanes) - 1) as u32 & skip) as __mmask16;
        // SAFETY: the masked load reads positions m0 .. m0 + lanes, all
        // below n.
        let p = words.as_ptr().add(m0) as *const i32;
        let here = _mm512_srl_epi32(_mm512_maskz_loadu_epi32(valid | 1, p), count);
        let before = _mm512_alignr_epi32::<15>(here, prev);
        let mut tied = _mm512_mask_cmpeq_epi32_mask(valid, here, before);
        while tied != 0 {
            fix(words, m0 + tied.trailing_zeros() as usize);
            tied &= tied - 1;
        }
        prev = here;
        skip = !0;
    }
}

/// `dst[words[m] & mask] = src[m]` for every m, sixteen at a time with a
/// scatter instruction. Returns false (nothing written) where the CPU
/// lacks AVX-512.
///
/// # Safety
///
/// `words.len() == src.len()`, and every `words[m] & mask` is below
/// `dst.len()`.
pub(crate) unsafe fn scatter(words: &[u32], mask: u32, src: &[u32], dst: &mut [u32]) -> bool {
    debug_assert!(words.len() == src.len());
    debug_assert!(words.iter().all(|&w| ((w & mask) as usize) < dst.len()));
    #[cfg(target_arch = "x86_64")]
    if available() {
        scatter512(words, mask, src, dst);
        return true;
    }
    let _ = (words, mask, src, dst);
    false
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn scatter512(words: &[u32], mask: u32, src: &[u32], dst: &mut [u32]) {
    let n = words.len();
    let m = _mm512_set1_epi32(mask as i32);
    let (wp, sp, dp) = (
        words.as_ptr() as *const i32,
        src.as_ptr() as *const i32,
        dst.as_mut_ptr() as *mut i32,
    );
    let mut i = 0;
    while i < n {
        let lanes = (n - i).min(16);
        let k = ((1u32 << lanes) - 1) as __mmask16;
        let idx = _mm512_and_si512(_mm512_maskz_loadu_epi32(k, wp.add(i)), m);
        let x = _mm512_maskz_loadu_epi32(k, sp.add(i));
        _mm512_mask_i32scatter_epi32::<4>(dp, k, idx, x);
        i += 16;
    }
}

/// Sorts `a` in place, using `t` (same length) as scratch.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn sort_in_place(a: &mut [u32], t: &mut [u32], depth: u32) {
    if a.len() <= NET {
        let p = a.as_mut_ptr();
        return network(p, p, a.len());
    }
    match partition(a, t, depth) {
        Some(left) => {
            let (ta, tb) = t.split_at_mut(left);
            let (aa, ab) = a.split_at_mut(left);
            sort_into(ta, aa, depth + 1);
            sort_into(tb, ab, depth + 1);
        }
        None => a.copy_from_slice(t),
    }
}

/// Sorts the items of `s` into `d` (same length); `s` is clobbered.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn sort_into(s: &mut [u32], d: &mut [u32], depth: u32) {
    if s.len() <= NET {
        return network(s.as_ptr(), d.as_mut_ptr(), s.len());
    }
    // On None, `d` already holds the items in order.
    if let Some(left) = partition(s, d, depth) {
        let (da, db) = d.split_at_mut(left);
        let (sa, sb) = s.split_at_mut(left);
        sort_in_place(da, sa, depth + 1);
        sort_in_place(db, sb, depth + 1);
    }
}

/// Splits the items of `s` into `d`: those below a pivot first, the rest
/// after, and returns the length of the first part. Returns None when `d`
/// already holds all items in order (every item equal, or a pathological
/// input that the recursion gave up splitting, sorted by the standard
/// library instead). `s` is clobbered.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn partition(s: &mut [u32], d: &mut [u32], depth: u32) -> Option<usize> {
    let n = s.len();
    if depth > 48 {
        d.copy_from_slice(s);
        d.sort_unstable();
        return None;
    }
    // The median of 16 items spread over the slice.
    let mut sample = [0u32; 16];
    for (i, x) in sample.iter_mut().enumerate() {
        *x = s[i * (n - 1) / 15];
    }
    let sp = sample.as_mut_ptr();
    network(sp, sp, 16);
    let pivot = sample[8];
    // Items below the pivot to the left; if there are none (the pivot is
    // the minimum), items up to it instead; if that takes all of them,
    // every item equals the pivot. (A split that sends every item to one
    // side leaves `s` as it was, so the second one reads the same items.)
    let mut left = split(s, d, pivot, false);
    if left == 0 {
        left = split(s, d, pivot, true);
        if left == n {
            return None;
        }
    }
    // The right part was gathered at the front of `s`.
    d[left..].copy_from_slice(&s[..n - left]);
    Some(left)
}

/// One split of `s` around `pivot` (`<` or, with `le`, `<=` goes left):
/// the left part fills `d` from the front, the right part fills `s` from
/// the front, behind the items already read. Both are written 16 lanes at
/// a time whatever the count, the lanes past it landing where later items
/// go (or, in `s`, on items already read), which saves the masked stores;
/// only the last partial vector is stored masked. Returns the left count.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn split(s: &mut [u32], d: &mut [u32], pivot: u32, le: bool) -> usize {
    let n = s.len();
    debug_assert_eq!(d.len(), n);
    let pv = _mm512_set1_epi32(pivot as i32);
    let (mut lo, mut hi) = (0usize, 0usize);
    let dp = d.as_mut_ptr() as *mut i32;
    let sp = s.as_mut_ptr() as *mut i32;
    let goes_left = |v: __m512i| {
        if le {
            _mm512_cmple_epu32_mask(v, pv)
        } else {
            _mm512_cmplt_epu32_mask(v, pv)
        }
    };
    let full = n / 16 * 16;
    let mut i = 0;
    while i < full {
        // SAFETY: lo, hi <= i, so both stores end by i + 16 <= n; the one
        // into `s` covers only items already loaded.
        let v = _mm512_loadu_si512(sp.add(i) as *const _);
        let m = goes_left(v);
        let cl = m.count_ones() as usize;
        _mm512_storeu_si512(dp.add(lo) as *mut _, _mm512_maskz_compress_epi32(m, v));
        _mm512_storeu_si512(sp.add(hi) as *mut _, _mm512_maskz_compress_epi32(!m, v));
        lo += cl;
        hi += 16 - cl;
        i += 16;
    }
    if full < n {
        let valid = ((1u32 << (n - full)) - 1) as __mmask16;
        let v = _mm512_maskz_loadu_epi32(valid, sp.add(full));
        let m = valid & goes_left(v);
        let r = valid & !m;
        let (cl, cr) = (m.count_ones() as usize, r.count_ones() as usize);
        // SAFETY: the masked stores write exactly cl and cr lanes, ending
        // by lo + cl <= n and hi + cr <= n.
        _mm512_mask_storeu_epi32(
            dp.add(lo),
            ((1u32 << cl) - 1) as __mmask16,
            _mm512_maskz_compress_epi32(m, v),
        );
        _mm512_mask_storeu_epi32(
            sp.add(hi),
            ((1u32 << cr) - 1) as __mmask16,
            _mm512_maskz_compress_epi32(r, v),
        );
        lo += cl;
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn check(items: &[u32]) {
        let mut want = items.to_vec();
        want.sort_unstable();
        let mut got = items.to_vec();
        if !sort_u32(&mut got, &mut Vec::new()) {
            return;
        }
        assert_eq!(got, want, "n = {}", items.len());
    }

    #[test]
    fn sorts_like_the_standard_library() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("SKIPPED: this CPU has no AVX-512; the radix sort is used instead");
            return;
        }
        for n in (0..600).chain([1000, 1023, 1024, 1025, 2048, 4608, 9999, 70_000]) {
            let random: Vec<u32> = (0..n).map(|_| rng.random()).collect();
            check(&random);
            // Few distinct values, runs of equal items, the padding value
            // itself, and already ordered input.
            let few: Vec<u32> = (0..n).map(|_| rng.random_range(0..3)).collect();
            check(&few);
            let maxes: Vec<u32> = (0..n)
                .map(|_| if rng.random() { u32::MAX } else { rng.random() })
                .collect();
            check(&maxes);
            let ordered: Vec<u32> = (0..n as u32).collect();
            check(&ordered);
            check(&ordered.iter().rev().copied().collect::<Vec<_>>());
            check(&vec![5u32; n]);
        }
    }

    #[test]
    fn ties_are_found_where_the_plain_loop_finds_them() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for n in (0..70).chain([255, 256, 257, 4608]) {
            for spread in [2u32, 16, 1 << 12] {
                let mut words: Vec<u32> = (0..n)
                    .map(|j| (rng.random_range(0..spread) << 13) | j as u32)
                    .collect();
                words.sort_unstable();
                let want: Vec<usize> = (1..n)
                    .filter(|&m| words[m] >> 13 == words[m - 1] >> 13)
                    .collect();
                let mut got = Vec::new();
                // Reordering the agreeing words, as the insertion step
                // does, must not change which positions are reported.
                for_each_tie(&mut words, 13, |w, m| {
                    got.push(m);
                    w.swap(m - 1, m);
                });
                assert_eq!(got, want, "n = {n}, spread = {spread}");
            }
        }
    }
}
