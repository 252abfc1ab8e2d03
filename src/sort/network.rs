//! The sorting networks of the AVX-512 sort: up to 256 items in 16
//! registers, put in order with no branch that depends on the data.
//!
//! A comparison sort branches on every comparison, and on random keys half
//! of those branches are mispredicted. A network's comparisons are fixed in
//! advance, so the items are loaded once, moved between registers by
//! instructions known at compile time, and stored once. The network first
//! sorts the registers' lanes as columns (whole registers meet, no lane
//! moves), transposes, and finishes with bitonic merges. The 16 x 16
//! transpose is also how the ChaCha keystream turns sixteen blocks
//! computed side by side into contiguous words.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Largest slice the register network sorts: 16 registers of 16 items
/// (32 registers, the most there are, spill to memory).
pub(super) const NET: usize = 256;

/// Sorts `n <= NET` items from `src` into `dst` (which may be `src`) with
/// a bitonic network over the fewest registers that hold them, padded with
/// u32::MAX (a real item equal to the padding is indistinguishable from it,
/// so the first n sorted lanes are the answer either way).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,popcnt")]
pub(super) unsafe fn network(src: *const u32, dst: *mut u32, n: usize) {
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
pub(crate) unsafe fn transpose16<const REVERSE_ODD: bool>(x: &mut [__m512i; 16]) {
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
