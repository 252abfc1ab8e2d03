//! The ChaCha8 keystream of one row's random numbers, sixteen blocks at a
//! time where the CPU has AVX-512.
//!
//! Every row of a pass draws its Exp(1) numbers from the words that
//! `ChaCha8Rng::from_seed(seed)` gives after `set_stream(stream)`, from
//! block 0. Those words are the ChaCha8 function of the state (constants,
//! the 8 key words of the seed, a 64-bit block counter, the 64-bit stream
//! number), one 16-word block per counter value, in counter order. The
//! generic code of `rand_chacha` computes four blocks per step with AVX2,
//! and costs about as much as the Exp(1) conversion it feeds.
//! [`keystream`] computes sixteen blocks per step, one per 32-bit lane. A
//! test compares its words with `rand_chacha`'s on every length class, so
//! a row's draws (and the output) are the same whichever code produced
//! them.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Fills `out` with the ChaCha8 keystream words of `seed` and `stream`,
/// from block 0: what `ChaCha8Rng`'s `fill` writes.
pub(crate) fn keystream(seed: &[u8; 32], stream: u64, out: &mut [u32]) {
    // A step computes sixteen blocks whatever the length; rows of up to
    // four blocks cost less through rand_chacha.
    #[cfg(target_arch = "x86_64")]
    if out.len() > 64 && crate::sort::cpu::available() {
        // SAFETY: the CPU supports AVX-512F.
        unsafe { keystream512(&key_words(seed), stream, out) };
        return;
    }
    reference(seed, stream, out);
}

/// The seed as ChaCha's eight little-endian key words.
#[cfg(target_arch = "x86_64")]
fn key_words(seed: &[u8; 32]) -> [u32; 8] {
    let mut key = [0u32; 8];
    for (k, w) in key.iter_mut().zip(seed.as_chunks::<4>().0) {
        *k = u32::from_le_bytes(*w);
    }
    key
}

/// The same words from `rand_chacha` itself.
pub(crate) fn reference(seed: &[u8; 32], stream: u64, out: &mut [u32]) {
    let mut rng = ChaCha8Rng::from_seed(*seed);
    rng.set_stream(stream);
    rng.fill(out);
}

/// Words per step: sixteen blocks of sixteen words.
#[cfg(target_arch = "x86_64")]
const STEP: usize = 256;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn keystream512(key: &[u32; 8], stream: u64, out: &mut [u32]) {
    let mut block = 0u64;
    let mut chunks = out.chunks_exact_mut(STEP);
    for chunk in &mut chunks {
        blocks16(key, stream, block, chunk);
        block += 16;
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut tmp = [0u32; STEP];
        blocks16(key, stream, block, &mut tmp);
        rest.copy_from_slice(&tmp[..rest.len()]);
    }
}

/// Blocks `first .. first + 16` into `out` (256 words), block after block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn blocks16(key: &[u32; 8], stream: u64, first: u64, out: &mut [u32]) {
    assert_eq!(out.len(), STEP);
    // Lane i computes block first + i; register w holds word w of every
    // block.
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let lo = _mm512_add_epi32(_mm512_set1_epi32(first as u32 as i32), lane);
    // The high counter word gains a carry in the lanes whose low word
    // wrapped (below the first one's).
    let wrapped = _mm512_cmplt_epu32_mask(lo, _mm512_set1_epi32(first as u32 as i32));
    let hi = _mm512_mask_add_epi32(
        _mm512_set1_epi32((first >> 32) as u32 as i32),
        wrapped,
        _mm512_set1_epi32((first >> 32) as u32 as i32),
        _mm512_set1_epi32(1),
    );
    let words: [u32; 16] = [
        0x6170_7865,
        0x3320_646e,
        0x7962_2d32,
        0x6b20_6574,
        key[0],
        key[1],
        key[2],
        key[3],
        key[4],
        key[5],
        key[6],
        key[7],
        0,
        0,
        stream as u32,
        (stream >> 32) as u32,
    ];
    let mut x = [lo; 16];
    for (v, &w) in x.iter_mut().zip(&words) {
        *v = _mm512_set1_epi32(w as i32);
    }
    (x[12], x[13]) = (lo, hi);
    // ChaCha8: four double rounds.
    for _ in 0..4 {
        double_round(&mut x);
    }
    // The input is added back; the broadcasts are rebuilt rather than kept,
    // which would take sixteen of the 32 registers through the rounds.
    for (v, &w) in x.iter_mut().zip(&words) {
        *v = _mm512_add_epi32(*v, _mm512_set1_epi32(w as i32));
    }
    x[12] = _mm512_add_epi32(x[12], lo);
    x[13] = _mm512_add_epi32(x[13], hi);
    // Transpose so that each block's words are contiguous.
    // SAFETY: the CPU supports AVX-512F (this function's target feature).
    unsafe { crate::sort::transpose16::<false>(&mut x) };
    for (block, v) in out.chunks_exact_mut(16).zip(&x) {
        // SAFETY: each chunk holds 16 u32s; unaligned stores are allowed.
        unsafe { _mm512_storeu_si512(block.as_mut_ptr().cast(), *v) };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn double_round(x: &mut [__m512i; 16]) {
    quarter(x, 0, 4, 8, 12);
    quarter(x, 1, 5, 9, 13);
    quarter(x, 2, 6, 10, 14);
    quarter(x, 3, 7, 11, 15);
    quarter(x, 0, 5, 10, 15);
    quarter(x, 1, 6, 11, 12);
    quarter(x, 2, 7, 8, 13);
    quarter(x, 3, 4, 9, 14);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn quarter(x: &mut [__m512i; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = _mm512_add_epi32(x[a], x[b]);
    x[d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[d], x[a]));
    x[c] = _mm512_add_epi32(x[c], x[d]);
    x[b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[b], x[c]));
    x[a] = _mm512_add_epi32(x[a], x[b]);
    x[d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[d], x[a]));
    x[c] = _mm512_add_epi32(x[c], x[d]);
    x[b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[b], x[c]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keystream_is_rand_chachas() {
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        // Lengths around the block (16) and step (256) sizes, and streams
        // with both halves set.
        for len in [
            0usize, 1, 15, 16, 17, 64, 65, 100, 255, 256, 257, 1000, 4608,
        ] {
            for stream in [0u64, 7, (2 << 40) | 999, u64::MAX] {
                let mut ours = vec![0u32; len];
                let mut theirs = vec![1u32; len];
                keystream(&seed, stream, &mut ours);
                reference(&seed, stream, &mut theirs);
                assert_eq!(ours, theirs, "len {len}, stream {stream:#x}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_block_counter_carries_into_its_high_word() {
        if !crate::sort::cpu::available() {
            eprintln!("SKIPPED: no AVX-512 on this CPU");
            return;
        }
        let seed = [3u8; 32];
        let key = key_words(&seed);
        // Blocks 2^32 - 8 .. 2^32 + 8: the reference seeks there by word
        // position.
        let first = (1u64 << 32) - 8;
        let mut ours = [0u32; STEP];
        // SAFETY: the CPU supports AVX-512F (checked above).
        unsafe { blocks16(&key, 5, first, &mut ours) };
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(5);
        rng.set_word_pos(first as u128 * 16);
        let mut theirs = [0u32; STEP];
        rng.fill(&mut theirs[..]);
        assert_eq!(ours, theirs);
    }
}
