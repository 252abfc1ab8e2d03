//! The kernels of the transposes of a matrix of keys. Pass 2 works on the
//! columns of pass 1's result, and a weight stored as [K, N] has its
//! view's rows as columns, so whole matrices are transposed between and
//! around the passes (by bands of columns, `transpose` in `handoff.rs`,
//! which fills the fresh buffer on both threads), and a pass's finished
//! rows are transposed band by band as it goes (by bands of rows, from the
//! hand-off). Both walk tiles of 32 x 32 that keep source and destination
//! in cache, and full tiles move as 8 x 8 blocks of AVX2 registers.
//!
//! The tile kernel uses AVX2 intrinsics, and the band writer writes through
//! a pointer into a buffer that the other thread of a pass writes too (in
//! other columns): both are `unsafe fn`s whose contracts are stated on
//! them. Each band writer writes every slot of its band, which the
//! hand-off relies on when it sets a buffer's length.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::sort::f32_unkey;

use super::PARALLEL_MIN;

/// An f32 key's value as its bits, a little-endian word.
#[inline]
fn key_to_le_bits(k: u32) -> u32 {
    f32_unkey(k).to_bits().to_le()
}

/// f32 keys to their values' bits (little-endian words), in place.
pub(super) fn decode_f32(keys: &mut [u32]) {
    let bits = |ks: &mut [u32]| {
        for k in ks {
            *k = key_to_le_bits(*k);
        }
    };
    if keys.len() >= PARALLEL_MIN {
        keys.par_chunks_mut(PARALLEL_MIN).for_each(bits);
    } else {
        bits(keys);
    }
}

/// Columns `j0..j0 + TILE` of `src` into `out`, rows `j0..` of the
/// transpose.
pub(super) fn transpose_band(
    src: &[u32],
    rows: usize,
    cols: usize,
    j0: usize,
    out: &mut [MaybeUninit<u32>],
    decode: bool,
) {
    #[cfg(target_arch = "x86_64")]
    let avx2 = crate::sort::cpu::avx2();
    let j1 = (j0 + TILE).min(cols);
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        #[cfg(target_arch = "x86_64")]
        if avx2 && i1 - i0 == TILE && j1 - j0 == TILE {
            // SAFETY: the CPU supports AVX2, and the tile lies inside src
            // and, shifted by j0 rows, inside out.
            unsafe {
                tile_avx2(
                    src,
                    out.as_mut_ptr() as *mut u32,
                    rows,
                    cols,
                    i0,
                    j0,
                    decode,
                )
            };
            continue;
        }
        for i in i0..i1 {
            for j in j0..j1 {
                let k = src[i * cols + j];
                out[(j - j0) * rows + i].write(if decode { key_to_le_bits(k) } else { k });
            }
        }
    }
}

/// The side of a tile, and the height of a band of rows.
pub(super) const TILE: usize = 32;

/// Rows `i0..` of a row-major `rows x cols` matrix (`band`, a whole number
/// of rows), transposed into their columns of the `cols x rows` matrix at
/// `dst`, in the tiles of [`transpose_band`]. A pass's rows are finished in
/// order, so it transposes by bands of rows; a whole matrix goes by bands
/// of columns ([`transpose_band`]), whose output is contiguous, which is
/// faster than by bands of rows.
///
/// # Safety
///
/// `dst` is valid for `rows * cols` writes, and no other thread touches
/// the band's columns of it meanwhile.
pub(super) unsafe fn transpose_rows(
    band: &[u32],
    rows: usize,
    cols: usize,
    i0: usize,
    dst: *mut u32,
    decode: bool,
) {
    let h = band.len() / cols;
    debug_assert!(i0 + h <= rows && h * cols == band.len());
    #[cfg(target_arch = "x86_64")]
    let avx2 = crate::sort::cpu::avx2();
    for j0 in (0..cols).step_by(TILE) {
        let j1 = (j0 + TILE).min(cols);
        #[cfg(target_arch = "x86_64")]
        if avx2 && h == TILE && j1 - j0 == TILE {
            // SAFETY: the CPU supports AVX2; the tile lies inside the band,
            // and the slots it writes, rows j0..j0 + 32 and columns
            // i0..i0 + 32 of dst, inside dst and the band's columns.
            tile_avx2(band, dst.add(j0 * rows + i0), rows, cols, 0, j0, decode);
            continue;
        }
        for r in 0..h {
            for j in j0..j1 {
                let k = band[r * cols + j];
                dst.add(j * rows + i0 + r)
                    .write(if decode { key_to_le_bits(k) } else { k });
            }
        }
    }
}

/// One full 32 x 32 tile, rows i0.. and columns j0.. of `src`: element
/// (i, j) goes to `d[(j - j0) * rows + i]`. So `d` is where row j0 of the
/// transpose starts, or, for a band of rows whose `src` starts at its
/// first row (see [`transpose_rows`]), that many columns further on.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tile_avx2(
    src: &[u32],
    d: *mut u32,
    rows: usize,
    cols: usize,
    i0: usize,
    j0: usize,
    decode: bool,
) {
    use std::arch::x86_64::*;
    let s = src.as_ptr();
    // key_to_le_bits on eight lanes: a key with its top bit set is a
    // non-negative value with that bit added, any other is a negative
    // value's bits inverted. With n = 0 or all ones as the top bit is set
    // or not, (k ^ n) & (n | 0x7fff_ffff) is the value's bits.
    let low31 = _mm256_set1_epi32(0x7fff_ffff);
    let unkey = |k: __m256i| {
        let n = _mm256_srai_epi32::<31>(_mm256_xor_si256(k, _mm256_set1_epi32(-1)));
        _mm256_and_si256(_mm256_xor_si256(k, n), _mm256_or_si256(n, low31))
    };
    for bi in (i0..i0 + TILE).step_by(8) {
        for bj in (j0..j0 + TILE).step_by(8) {
            // Rows bi..bi+8, columns bj..bj+8 of src become rows bj..bj+8,
            // columns bi..bi+8 of dst.
            let row = |k: usize| _mm256_loadu_si256(s.add((bi + k) * cols + bj) as *const __m256i);
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let (r4, r5, r6, r7) = (row(4), row(5), row(6), row(7));
            // Pairs of rows interleaved, then pairs of pairs: each 128-bit
            // half then holds four elements of one column.
            let (t0, t1) = (_mm256_unpacklo_epi32(r0, r1), _mm256_unpackhi_epi32(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_epi32(r2, r3), _mm256_unpackhi_epi32(r2, r3));
            let (t4, t5) = (_mm256_unpacklo_epi32(r4, r5), _mm256_unpackhi_epi32(r4, r5));
            let (t6, t7) = (_mm256_unpacklo_epi32(r6, r7), _mm256_unpackhi_epi32(r6, r7));
            let (u0, u1) = (_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2));
            let (u2, u3) = (_mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3));
            let (u4, u5) = (_mm256_unpacklo_epi64(t4, t6), _mm256_unpackhi_epi64(t4, t6));
            let (u6, u7) = (_mm256_unpacklo_epi64(t5, t7), _mm256_unpackhi_epi64(t5, t7));
            let out = [
                _mm256_permute2x128_si256(u0, u4, 0x20),
                _mm256_permute2x128_si256(u1, u5, 0x20),
                _mm256_permute2x128_si256(u2, u6, 0x20),
                _mm256_permute2x128_si256(u3, u7, 0x20),
                _mm256_permute2x128_si256(u0, u4, 0x31),
                _mm256_permute2x128_si256(u1, u5, 0x31),
                _mm256_permute2x128_si256(u2, u6, 0x31),
                _mm256_permute2x128_si256(u3, u7, 0x31),
            ];
            for (k, v) in out.into_iter().enumerate() {
                let v = if decode { unkey(v) } else { v };
                _mm256_storeu_si256(d.add((bj - j0 + k) * rows + bi) as *mut __m256i, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewire::handoff::transpose;

    #[test]
    fn transpose_matches_the_definition() {
        for (rows, cols) in [
            (1, 1),
            (3, 5),
            (32, 32),
            (64, 96),
            (70, 33),
            (8, 200),
            (300, 257),
        ] {
            let src: Vec<u32> = (0..(rows * cols) as u32)
                .map(|x| x.wrapping_mul(2654435761))
                .collect();
            let mut dst = Vec::new();
            transpose(&src, rows, cols, &mut dst, false);
            let mut bits = Vec::new();
            transpose(&src, rows, cols, &mut bits, true);
            // Band by band, as a pass writes it, in any order of bands.
            let by_bands = |decode: bool| {
                let mut out = vec![u32::MAX; rows * cols];
                for i0 in (0..rows).step_by(TILE).rev() {
                    let i1 = (i0 + TILE).min(rows);
                    let band = &src[i0 * cols..i1 * cols];
                    // SAFETY: `out` holds rows * cols slots, written by
                    // this thread only.
                    unsafe { transpose_rows(band, rows, cols, i0, out.as_mut_ptr(), decode) };
                }
                out
            };
            assert_eq!(by_bands(false), dst, "{rows}x{cols} by bands");
            assert_eq!(by_bands(true), bits, "{rows}x{cols} by bands, decoded");
            for i in 0..rows {
                for j in 0..cols {
                    let k = src[i * cols + j];
                    assert_eq!(dst[j * rows + i], k, "{rows}x{cols} at {i},{j}");
                    // Decoding on the way: full vector tiles and the
                    // scalar edges alike.
                    let want = key_to_le_bits(k);
                    assert_eq!(
                        bits[j * rows + i],
                        want,
                        "decoded, {rows}x{cols} at {i},{j}"
                    );
                }
            }
        }
    }
}
