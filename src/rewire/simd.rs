//! Sorting u32 slices with AVX-512, where the CPU has it, and the other
//! vector steps of a row's column order (packing, ties, scatter).
//!
//! Up to 256 items are loaded into 16 vector registers and sorted there by
//! a network: no branch depends on the data, and memory is touched once to
//! load and once to store. The network first sorts the registers' lanes as
//! columns (whole registers meet, no lane moves), transposes, and finishes
//! with bitonic merges. Longer slices are split around a pivot,
//! sixteen items per instruction (compress to each side), until the parts
//! fit the network. Each split writes its left part into the other buffer
//! and gathers its right part in its own, behind the items it has read,
//! with whole-vector stores (masked ones took 5% longer on rows of
//! 1000-4608), and copies the right part over at the end. On rows of 128
//! to 4608 random keys this takes 0.9 to 2.5 ns per item, against 4 to 6
//! ns for the radix sort in [`super::sort`].
//!
//! Sorting is fully determined by the items (equal u32s are
//! indistinguishable), so which sorter ran never shows in the output.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Largest slice the register network sorts: 16 registers of 16 items.
/// Networks of 32 registers (the most there are) spill to memory and made
/// rows of 1000 to 4608 up to twice as slow.
const NET: usize = 256;

/// Whether the environment variable `PA_ONNX_PORTABLE` is set: then no
/// vector code beyond the baseline runs, as on a CPU without AVX2 or
/// AVX-512. The output must not change, and a test checks that it does not.
pub fn portable() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| std::env::var_os("PA_ONNX_PORTABLE").is_some())
}

/// Whether AVX2 code may run: the CPU has it and [`portable`] is off.
#[cfg(target_arch = "x86_64")]
pub fn avx2() -> bool {
    !portable() && std::arch::is_x86_feature_detected!("avx2")
}

/// Whether this CPU can run [`sort_u32`]'s vector code (and
/// [`portable`] is off).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            !portable()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("popcnt")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Sorts `items` ascending with AVX-512 and returns true, or returns false
/// without touching them where the CPU lacks AVX-512. `tmp` is scratch.
pub fn sort_u32(items: &mut [u32], tmp: &mut Vec<u32>) -> bool {
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
pub fn pack(kbits: &[u32], lo: u32, shift: u32, ib: u32, words: &mut Vec<u32>) -> bool {
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
pub fn for_each_tie(words: &mut [u32], ib: u32, mut fix: impl FnMut(&mut [u32], usize)) {
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
pub unsafe fn scatter(words: &[u32], mask: u32, src: &[u32], dst: &mut [u32]) -> bool {
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

/// Sorts `n <= NET` items from `src` into `dst` (which may be `src`) with
/// a bitonic network over the fewest registers that hold them, padded with
/// u32::MAX (a real item equal to the padding is indistinguishable from it,
/// so the first n sorted lanes are the answer either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn network(src: *const u32, dst: *mut u32, n: usize) {
    match n {
        0..=1 => {
            if n == 1 {
                *dst = *src;
            }
        }
        2..=16 => net::<1>(src, dst, n),
        17..=32 => net::<2>(src, dst, n),
        33..=64 => net::<4>(src, dst, n),
        65..=128 => net::<8>(src, dst, n),
        _ => {
            debug_assert!(n <= NET);
            net::<16>(src, dst, n)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn net<const R: usize>(src: *const u32, dst: *mut u32, n: usize) {
    let pad = _mm512_set1_epi32(-1);
    let mut v = [pad; R];
    for (r, x) in v.iter_mut().enumerate() {
        let start = 16 * r;
        if start >= n {
            break;
        }
        let lanes = (n - start).min(16);
        let k = ((1u32 << lanes) - 1) as __mmask16;
        *x = _mm512_mask_loadu_epi32(pad, k, src.add(start) as *const i32);
    }
    bitonic(&mut v);
    for (r, &x) in v.iter().enumerate() {
        let start = 16 * r;
        if start >= n {
            break;
        }
        let lanes = (n - start).min(16);
        let k = ((1u32 << lanes) - 1) as __mmask16;
        _mm512_mask_storeu_epi32(dst.add(start) as *mut i32, k, x);
    }
}

/// Bitonic sort of the 16R items in `v` (item i is lane i % 16 of register
/// i / 16), ascending: for block sizes S = 2, 4, .. 16R, stages D = S/2
/// down to 1. Every stage is its own instantiation, so that the whole
/// network unrolls into straight-line code on registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn bitonic<const R: usize>(v: &mut [__m512i; R]) {
    macro_rules! merge {
        ($s:literal: $($d:literal)*) => {
            if 16 * R >= $s {
                $(stage::<R, $s, $d>(v);)*
            }
        };
    }
    // Eight or sixteen registers start as columns, which needs fewer
    // lane moves; see [`columns_then_rows`].
    if R == 16 {
        columns_then_rows(v);
    } else if R == 8 {
        columns_then_rows(v);
        merge!(16: 8 4 2 1);
    } else {
        merge!(2: 1);
        merge!(4: 2 1);
        merge!(8: 4 2 1);
        merge!(16: 8 4 2 1);
    }
    // From S = 32 on, a block spans whole registers, and the lane stages
    // run on pairs of registers at once.
    macro_rules! merge_pairs {
        ($s:literal: $($d:literal)*) => {
            if 16 * R >= $s {
                $(stage::<R, $s, $d>(v);)*
                lanes_pairwise::<R, $s>(v);
            }
        };
    }
    merge_pairs!(32: 16);
    merge_pairs!(64: 32 16);
    merge_pairs!(128: 64 32 16);
    merge_pairs!(256: 128 64 32 16);
}

/// Brings 8 or 16 registers to where the first merges of [`bitonic`]
/// would leave them, by a cheaper road. Lane j of all registers is sorted
/// as a column by Batcher's odd-even merge network (63 compare-exchanges
/// of whole registers for 16, 19 for 8, a min and a max each, no lane
/// moves), then the matrix is transposed with odd runs reversed.
///
/// With 16 registers each column becomes a register, ascending in even
/// registers and descending in odd ones, as after the merge of S = 16:
/// about 190 instructions where the lane stages take 640 (the transpose is
/// [`transpose16`], which the ChaCha keystream uses too). With 8, each
/// register gets two columns, the second reversed, as after S = 8: about
/// 60 instructions where the lane stages take 192.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn columns_then_rows<const R: usize>(v: &mut [__m512i; R]) {
    macro_rules! exchange {
        ($(($a:literal, $b:literal))*) => {
            $(
                let (x, y) = (v[$a], v[$b]);
                v[$a] = _mm512_min_epu32(x, y);
                v[$b] = _mm512_max_epu32(x, y);
            )*
        };
    }
    // Batcher's networks, layer by layer (each layer's pairs are disjoint).
    if R == 16 {
        exchange!((0, 1)(2, 3)(4, 5)(6, 7)(8, 9)(10, 11)(12, 13)(14, 15));
        exchange!((0, 2)(1, 3)(4, 6)(5, 7)(8, 10)(9, 11)(12, 14)(13, 15));
        exchange!((1, 2)(5, 6)(0, 4)(3, 7)(9, 10)(13, 14)(8, 12)(11, 15));
        exchange!((2, 6)(1, 5)(10, 14)(9, 13)(0, 8)(7, 15));
        exchange!((2, 4)(3, 5)(10, 12)(11, 13));
        exchange!((1, 2)(3, 4)(5, 6)(9, 10)(11, 12)(13, 14));
        exchange!((4, 12)(2, 10)(6, 14)(1, 9)(5, 13)(3, 11));
        exchange!((4, 8)(6, 10)(5, 9)(7, 11));
        exchange!((2, 4)(6, 8)(10, 12)(3, 5)(7, 9)(11, 13));
        exchange!((1, 2)(3, 4)(5, 6)(7, 8)(9, 10)(11, 12)(13, 14));
    } else {
        debug_assert_eq!(R, 8);
        exchange!((0, 1)(2, 3)(4, 5)(6, 7));
        exchange!((0, 2)(1, 3)(4, 6)(5, 7));
        exchange!((1, 2)(5, 6)(0, 4)(3, 7));
        exchange!((2, 6)(1, 5));
        exchange!((2, 4)(3, 5));
        exchange!((1, 2)(3, 4)(5, 6));
    }
    if R == 16 {
        // Each column becomes a register; odd ones are reversed.
        let v16 = <&mut [__m512i; 16]>::try_from(&mut v[..]).expect("R is 16");
        transpose16::<true>(v16);
        return;
    }
    // Eight registers: interleave 32-bit lanes of pairs of rows, then
    // 64-bit pairs of those: 128-bit block q of u[4g + m] is then column
    // 4q + m of rows 4g..4g + 4, and column 4q + m is block q of u[m] then
    // block q of u[4 + m].
    let mut u = [_mm512_setzero_si512(); R];
    for g in (0..R).step_by(4) {
        let (t0, t1) = (
            _mm512_unpacklo_epi32(v[g], v[g + 1]),
            _mm512_unpackhi_epi32(v[g], v[g + 1]),
        );
        let (t2, t3) = (
            _mm512_unpacklo_epi32(v[g + 2], v[g + 3]),
            _mm512_unpackhi_epi32(v[g + 2], v[g + 3]),
        );
        u[g] = _mm512_unpacklo_epi64(t0, t2);
        u[g + 1] = _mm512_unpackhi_epi64(t0, t2);
        u[g + 2] = _mm512_unpacklo_epi64(t1, t3);
        u[g + 3] = _mm512_unpackhi_epi64(t1, t3);
    }
    let idx = |i: &[i32; 16]| _mm512_loadu_si512(i.as_ptr() as *const _);
    let (first, second) = (idx(&PAIR_FIRST), idx(&PAIR_SECOND));
    for m in 0..4 {
        v[2 * m] = _mm512_permutex2var_epi32(u[m], first, u[4 + m]);
        v[2 * m + 1] = _mm512_permutex2var_epi32(u[m], second, u[4 + m]);
    }
}

/// Transposes the 16 x 16 matrix of u32 lanes in `x`: lane c of register
/// r goes to lane r of register c, and with `REVERSE_ODD` the odd
/// registers come out with their lanes reversed (at no cost: the last
/// step's permute does it). The step of distance h swaps bit h of the
/// register number with bit h of the lane number, and the four steps
/// together swap them all. (Constant distances, so that every register
/// index is known at compile time and the matrix stays in registers.)
///
/// # Safety
///
/// The CPU supports AVX-512F; the caller is compiled for it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn transpose16<const REVERSE_ODD: bool>(x: &mut [__m512i; 16]) {
    swap_step::<8>(x, &SWAP_TAKE[0]);
    swap_step::<4>(x, &SWAP_TAKE[1]);
    swap_step::<2>(x, &SWAP_TAKE[2]);
    let last = if REVERSE_ODD {
        &SWAP_TAKE_REVERSED
    } else {
        &SWAP_TAKE[3]
    };
    swap_step::<1>(x, last);
}

/// One step of [`transpose16`] over the pairs of registers (a = r,
/// b = r + H): the new r keeps a's lanes whose bit H is 0 and takes b's
/// lanes H below for the others; the new r + H takes a's lanes H above
/// where bit H is 0 and keeps b's where it is 1 (`take` gives those
/// lanes).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn swap_step<const H: usize>(x: &mut [__m512i; 16], take: &[i32; 16]) {
    let load = |i: &[i32; 16]| _mm512_loadu_si512(i.as_ptr() as *const _);
    let keep = load(&SWAP_KEEP[H.trailing_zeros() as usize]);
    let take = load(take);
    for r in 0..16 {
        if r & H == 0 {
            let (a, b) = (x[r], x[r + H]);
            x[r] = _mm512_permutex2var_epi32(a, keep, b);
            x[r + H] = _mm512_permutex2var_epi32(a, take, b);
        }
    }
}

/// The two permutations of each step of [`transpose16`]: `SWAP_KEEP`
/// indexed by log2 of the distance, `SWAP_TAKE` in step order (distances
/// 8, 4, 2, 1), and the last step's `take` with its lanes reversed.
static SWAP_KEEP: [[i32; 16]; 4] = [
    swaps(1, true),
    swaps(2, true),
    swaps(4, true),
    swaps(8, true),
];
static SWAP_TAKE: [[i32; 16]; 4] = [
    swaps(8, false),
    swaps(4, false),
    swaps(2, false),
    swaps(1, false),
];
static SWAP_TAKE_REVERSED: [i32; 16] = reversed(swaps(1, false));

const fn reversed(a: [i32; 16]) -> [i32; 16] {
    let mut out = [0i32; 16];
    let mut c = 0;
    while c < 16 {
        out[c] = a[15 - c];
        c += 1;
    }
    out
}

const fn swaps(h: usize, keep: bool) -> [i32; 16] {
    let mut out = [0i32; 16];
    let mut c = 0;
    while c < 16 {
        out[c] = match (c & h == 0, keep) {
            (true, true) => c as i32,
            (true, false) => (c + h) as i32,
            (false, true) => (16 + c - h) as i32,
            (false, false) => (16 + c) as i32,
        };
        c += 1;
    }
    out
}

/// Columns q = 0 (ascending) and 1 (reversed) of an 8-register transpose.
static PAIR_FIRST: [i32; 16] = runs(0, 1);
/// Columns q = 2 and 3.
static PAIR_SECOND: [i32; 16] = runs(2, 3);

/// Block q of the first source then block q of the second (8 lanes), and
/// the same for q2 in reverse order.
const fn runs(q: i32, q2: i32) -> [i32; 16] {
    let mut out = [0i32; 16];
    let mut l = 0;
    while l < 8 {
        out[l] = run_lane(q, l as i32);
        out[8 + l] = run_lane(q2, 7 - l as i32);
        l += 1;
    }
    out
}

/// Where row `row` of column q is: rows 0..4 in the first source.
const fn run_lane(q: i32, row: i32) -> i32 {
    if row < 4 {
        4 * q + row
    } else {
        16 + 4 * q + row - 4
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes_pairwise<const R: usize, const S: usize>(v: &mut [__m512i; R]) {
    for q in 0..R / 2 {
        let table = if (32 * q) & S == 0 {
            &PAIRS_ASCENDING
        } else {
            &PAIRS_DESCENDING
        };
        let idx = |i: usize| _mm512_loadu_si512(table[i].as_ptr() as *const _);
        let (mut lo, mut hi) = (v[2 * q], v[2 * q + 1]);
        for st in 0..4 {
            let a = _mm512_permutex2var_epi32(lo, idx(2 * st), hi);
            let b = _mm512_permutex2var_epi32(lo, idx(2 * st + 1), hi);
            lo = _mm512_min_epu32(a, b);
            hi = _mm512_max_epu32(a, b);
        }
        v[2 * q] = _mm512_permutex2var_epi32(lo, idx(8), hi);
        v[2 * q + 1] = _mm512_permutex2var_epi32(lo, idx(9), hi);
    }
}

/// Permute indices of [`lanes_pairwise`] for an ascending and a descending
/// block: gathers of the lower and upper items for D = 8, 4, 2, 1, then
/// the two restoring permutes. An index is 16 * (second source) + lane.
static PAIRS_ASCENDING: [[i32; 16]; 10] = pair_indices(true);
static PAIRS_DESCENDING: [[i32; 16]; 10] = pair_indices(false);

const fn pair_indices(ascending: bool) -> [[i32; 16]; 10] {
    let mut out = [[0i32; 16]; 10];
    // loc[i]: where item i (of the 32 in the two registers) is now.
    let mut loc = [0i32; 32];
    let mut i = 0;
    while i < 32 {
        loc[i] = i as i32;
        i += 1;
    }
    let mut st = 0;
    while st < 4 {
        let d = 8 >> st;
        // The t-th item with bit d clear, and its partner.
        let (mut t, mut i) = (0, 0);
        while i < 32 {
            if i & d == 0 {
                out[2 * st][t] = loc[i];
                out[2 * st + 1][t] = loc[i ^ d];
                t += 1;
            }
            i += 1;
        }
        // After min and max: the smaller goes to the lower index in an
        // ascending block, to the upper in a descending one.
        let (mut t, mut i) = (0, 0);
        while i < 32 {
            if i & d == 0 {
                let (small, large) = if ascending { (i, i ^ d) } else { (i ^ d, i) };
                loc[small] = t;
                loc[large] = 16 + t;
                t += 1;
            }
            i += 1;
        }
        st += 1;
    }
    let mut l = 0;
    while l < 16 {
        out[8][l] = loc[l];
        out[9][l] = loc[16 + l];
        l += 1;
    }
    out
}

/// Stage (S, D) of the network: items i and i ^ D meet, and in blocks of S
/// items that alternate in direction (all ascending once S = 16R), the
/// lower index keeps the smaller one in an ascending block.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stage<const R: usize, const S: usize, const D: usize>(v: &mut [__m512i; R]) {
    if D >= 16 {
        // Whole registers meet.
        let k = D / 16;
        for r in 0..R {
            if r & k == 0 {
                let (a, b) = (v[r], v[r | k]);
                let (lo, hi) = (_mm512_min_epu32(a, b), _mm512_max_epu32(a, b));
                let asc = (16 * r) & S == 0;
                v[r] = if asc { lo } else { hi };
                v[r | k] = if asc { hi } else { lo };
            }
        }
        return;
    }
    // Lanes of one register meet: the partner of each lane is lane ^ D.
    const fn lanes_with(b: usize) -> u16 {
        match b {
            1 => 0xaaaa,
            2 => 0xcccc,
            4 => 0xf0f0,
            _ => 0xff00,
        }
    }
    for (r, x) in v.iter_mut().enumerate() {
        let p = match D {
            1 => _mm512_shuffle_epi32::<0b10_11_00_01>(*x),
            2 => _mm512_shuffle_epi32::<0b01_00_11_10>(*x),
            4 => _mm512_shuffle_i32x4::<0b10_11_00_01>(*x, *x),
            _ => _mm512_shuffle_i32x4::<0b01_00_11_10>(*x, *x),
        };
        // Lanes in an ascending block: bit S of the item index is clear.
        let asc: u16 = if S < 16 {
            !lanes_with(S)
        } else if (16 * r) & S == 0 {
            0xffff
        } else {
            0
        };
        // A lane keeps the larger item where its bit D agrees with its
        // block's direction.
        let take_max = !(lanes_with(D) ^ asc);
        *x = _mm512_mask_blend_epi32(take_max, _mm512_min_epu32(*x, p), _mm512_max_epu32(*x, p));
    }
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
