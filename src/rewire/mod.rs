//! Preferential-attachment rewiring of one weight matrix (ALGORITHM.md
//! sections 2 to 5), as pure functions over values.
//!
//! The math never moves bytes of a file, and it never needs to know where a
//! value came from: equal keys are equal bit patterns, so a tensor is
//! rewired as a matrix of `u32` *keys*, one per element, whose integer order
//! is the order of the values (see [`Keys`]). Keys are half the size of an
//! f64 and sort as plain integers; mapping them back gives the elements'
//! original bits, so the result is a bitwise permutation whatever the
//! dtype. See DESIGN.md for the sampling trick and the variants.

pub mod chacha;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::sort::{
    cpu, f32_key, f32_unkey, f64_key, order_columns, sort_keys, sort_values, Scratch,
};

/// Which rule assigns a row's values to columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The paper's rule: columns drawn by weighted sampling without
    /// replacement, weights from accumulated strength.
    #[default]
    Pa,
    /// The authors' later deterministic rule: columns ordered by accumulated
    /// strength, largest values to the weakest columns.
    Deterministic,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Pa => "pa",
            Method::Deterministic => "deterministic",
        })
    }
}

/// Settings of one rewiring run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub method: Method,
    /// Number of uniform shuffles tried before PA (0: none).
    pub stabilize: u32,
    pub seed: u64,
}

/// The default seed, recorded in every report.
pub const DEFAULT_SEED: u64 = 20_220_717;

impl Default for Options {
    fn default() -> Self {
        Options {
            method: Method::Pa,
            stabilize: 0,
            seed: DEFAULT_SEED,
        }
    }
}

/// Standard deviations (population, like numpy's default) of the row and
/// column strengths of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Strength {
    pub row_std: f64,
    pub col_std: f64,
}

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

/// The storage index of each element of a matrix view, row-major: the view
/// takes storage axis `axes[0]` as rows and the other axes, in the order
/// given, as columns. An iterator, so that no index array as large as the
/// tensor is ever needed.
#[derive(Clone)]
pub struct ViewIndices {
    numel: u64,
    done: u64,
    /// Per view axis: extent and storage stride. Empty for the identity.
    axes: Vec<(u64, u64)>,
    counter: Vec<u64>,
    offset: u64,
}

impl ViewIndices {
    pub fn new(dims: &[u64], axes: &[usize]) -> Self {
        let numel: u64 = dims.iter().product();
        assert!(numel <= u32::MAX as u64, "tensor too large for u32 indices");
        let identity = axes.iter().enumerate().all(|(i, &a)| i == a);
        let mut view = Vec::new();
        if !identity {
            let mut stride = vec![0u64; dims.len()];
            let mut s = 1;
            for a in (0..dims.len()).rev() {
                stride[a] = s;
                s *= dims[a];
            }
            view = axes.iter().map(|&a| (dims[a], stride[a])).collect();
        }
        ViewIndices {
            numel,
            done: 0,
            counter: vec![0; view.len()],
            axes: view,
            offset: 0,
        }
    }
}

impl ViewIndices {
    /// Whether the view is storage order itself.
    pub fn is_identity(&self) -> bool {
        self.axes.is_empty()
    }
}

impl Iterator for ViewIndices {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.done == self.numel {
            return None;
        }
        self.done += 1;
        if self.axes.is_empty() {
            return Some(self.done as usize - 1);
        }
        let here = self.offset;
        // Odometer over the view's axes, innermost last.
        for d in (0..self.axes.len()).rev() {
            let (extent, stride) = self.axes[d];
            self.counter[d] += 1;
            self.offset += stride;
            if self.counter[d] < extent {
                break;
            }
            self.offset -= stride * extent;
            self.counter[d] = 0;
        }
        Some(here as usize)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.numel - self.done) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for ViewIndices {}

/// `Some((r, c))` when the view of a tensor of shape `dims` taking `axes`
/// (as for [`ViewIndices`]) is the transpose of its storage order read as
/// an `r x c` matrix: rows from the last axis, columns from the others in
/// order, as for a `[K, N]` MatMul weight.
pub fn storage_transpose(dims: &[u64], axes: &[usize]) -> Option<(usize, usize)> {
    let n = dims.len();
    let flipped = n >= 2
        && axes.len() == n
        && axes[0] == n - 1
        && axes[1..].iter().enumerate().all(|(i, &a)| a == i);
    flipped.then(|| {
        let c = dims[n - 1] as usize;
        (dims[..n - 1].iter().product::<u64>() as usize, c)
    })
}

/// [`ViewIndices`] collected.
pub fn view_index(dims: &[u64], axes: &[usize]) -> Vec<u32> {
    ViewIndices::new(dims, axes).map(|s| s as u32).collect()
}

/// Row and column strength standard deviations of a row-major matrix.
pub fn strength(vals: &[f64], rows: usize, cols: usize) -> Strength {
    strength_by(vals, rows, cols, |&v| v)
}

fn strength_by<T: Sync>(
    items: &[T],
    rows: usize,
    cols: usize,
    value: impl Fn(&T) -> f64 + Sync,
) -> Strength {
    let add = |part: &[T], row: &mut [f64], col: &mut [f64]| {
        sums(part, &value, row, col);
        false
    };
    sum_rows(rows, cols, items, |s, h| s.split_at(h * cols), add).0
}

/// Row and column strengths of a row-major `rows x cols` matrix held in
/// `state`, where `add(part, row_sums, col_sums)` adds a run of whole rows
/// (and returns a flag, OR-ed over the parts). Large matrices go in two
/// halves of the rows, split by `split(state, rows_in_first_half)`, on
/// both cores; two halves whatever the thread count, so that the column
/// sums are added in the same order every time.
fn sum_rows<S: Send>(
    rows: usize,
    cols: usize,
    state: S,
    split: impl FnOnce(S, usize) -> (S, S),
    add: impl Fn(S, &mut [f64], &mut [f64]) -> bool + Sync,
) -> (Strength, bool) {
    let mut row = vec![0f64; rows];
    let mut col = vec![0f64; cols];
    let flag = if rows * cols >= PARALLEL_MIN && rows >= 2 {
        let half = rows / 2;
        let (top, bottom) = split(state, half);
        let (row_top, row_bottom) = row.split_at_mut(half);
        let mut col_bottom = vec![0f64; cols];
        let (a, b) = rayon::join(
            || add(top, row_top, &mut col),
            || add(bottom, row_bottom, &mut col_bottom),
        );
        for (c, b) in col.iter_mut().zip(&col_bottom) {
            *c += b;
        }
        a | b
    } else {
        add(state, &mut row, &mut col)
    };
    let strength = Strength {
        row_std: std_dev(&row),
        col_std: std_dev(&col),
    };
    (strength, flag)
}

/// Row and column sums (AVX2 or not: see [`exp_row`]).
fn sums<T>(items: &[T], value: impl Fn(&T) -> f64, row: &mut [f64], col: &mut [f64]) {
    #[inline(always)]
    fn body<T>(items: &[T], value: impl Fn(&T) -> f64, row: &mut [f64], col: &mut [f64]) {
        for (s, r) in row.iter_mut().zip(items.chunks_exact(col.len().max(1))) {
            for (c, x) in col.iter_mut().zip(r) {
                *c += value(x);
            }
            *s = lane_sum(r, &value);
        }
    }
    #[cfg(target_arch = "x86_64")]
    if cpu::avx2() {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<T>(
            items: &[T],
            value: impl Fn(&T) -> f64,
            row: &mut [f64],
            col: &mut [f64],
        ) {
            body(items, value, row, col)
        }
        // SAFETY: the CPU supports AVX2.
        return unsafe { avx2(items, value, row, col) };
    }
    body(items, value, row, col)
}

/// A sum in eight interleaved partial sums: a single running f64 sum is one
/// long chain of dependent additions, four times slower than the loads.
#[inline(always)]
fn lane_sum<T>(xs: &[T], value: impl Fn(&T) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += value(x);
        }
    }
    chunks.remainder().iter().map(value).sum::<f64>() + lanes.iter().sum::<f64>()
}

fn std_dev(xs: &[f64]) -> f64 {
    variance(xs).sqrt()
}

fn variance(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n
}

/// The element types rewiring supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    F32,
    F16,
    Bf16,
    F64,
}

impl Scalar {
    /// The value of an element's bits (in the low 16, 32 or 64 bits) as
    /// f64, exact for every type.
    pub fn value(self, bits: u64) -> f64 {
        match self {
            Scalar::F32 => f32::from_bits(bits as u32) as f64,
            Scalar::F16 => half::f16::from_bits(bits as u16).to_f64(),
            Scalar::Bf16 => half::bf16::from_bits(bits as u16).to_f64(),
            Scalar::F64 => f64::from_bits(bits),
        }
    }
}

/// A tensor's values as order keys, and the way back to each element's
/// bits.
///
/// Nearly always a key is the order-preserving bit pattern of the value as
/// f32 ([`sort::f32_key`]): f16, bf16 and f32 values all fit, and so do the
/// f64 values of a tensor that was initialised in f32. The key then *is*
/// the value, and the element's bits come back exactly from it. Otherwise
/// (an f64 tensor with values f32 cannot hold, or bits that do not survive
/// the round trip, such as NaN payloads) a key is the value's rank among
/// all the tensor's values, with the values and bits kept in a table.
pub struct Keys {
    /// One key per element, in the order the elements were given.
    pub keys: Vec<u32>,
    scalar: Scalar,
    /// Values and bit patterns by rank, for rank keys.
    table: Option<(Vec<f64>, Vec<u64>)>,
    finite: bool,
}

impl Keys {
    /// Keys of elements given as bit patterns (the low 16, 32 or 64 bits
    /// of each word, by `scalar`).
    pub fn encode<I>(scalar: Scalar, bits: I) -> Keys
    where
        I: Iterator<Item = u64> + Clone,
    {
        let mut keys = Vec::with_capacity(bits.size_hint().0);
        // Plain functions of the bits, so that each arm is its own loop
        // with the conversions inlined.
        fn narrow(
            bits: impl Iterator<Item = u64>,
            keys: &mut Vec<u32>,
            to_f32: impl Fn(u64) -> f32,
            from_f32: impl Fn(f32) -> u64,
        ) -> (bool, bool) {
            let (mut inexact, mut infinite) = (false, false);
            keys.extend(bits.map(|b| {
                let v = to_f32(b);
                infinite |= !v.is_finite();
                inexact |= from_f32(v) != b;
                f32_key(v)
            }));
            (!inexact, !infinite)
        }
        let b = bits.clone();
        let (exact, finite) = match scalar {
            Scalar::F32 => narrow(
                b,
                &mut keys,
                |b| f32::from_bits(b as u32),
                |v| v.to_bits() as u64,
            ),
            Scalar::F16 => narrow(
                b,
                &mut keys,
                |b| half::f16::from_bits(b as u16).to_f32(),
                |v| half::f16::from_f32(v).to_bits() as u64,
            ),
            Scalar::Bf16 => narrow(
                b,
                &mut keys,
                |b| half::bf16::from_bits(b as u16).to_f32(),
                |v| half::bf16::from_f32(v).to_bits() as u64,
            ),
            Scalar::F64 => narrow(
                b,
                &mut keys,
                |b| f64::from_bits(b) as f32,
                |v| (v as f64).to_bits(),
            ),
        };
        if exact {
            return Keys {
                keys,
                scalar,
                table: None,
                finite,
            };
        }
        let value = |b: u64| scalar.value(b);
        let mut by_value: Vec<(u64, u64, u32)> = bits
            .enumerate()
            .map(|(i, b)| (f64_key(value(b)), b, i as u32))
            .collect();
        by_value.sort_unstable();
        let mut vals = Vec::with_capacity(by_value.len());
        let mut raw = Vec::with_capacity(by_value.len());
        for (rank, &(_, b, i)) in by_value.iter().enumerate() {
            keys[i as usize] = rank as u32;
            vals.push(value(b));
            raw.push(b);
        }
        Keys {
            keys,
            scalar,
            table: Some((vals, raw)),
            finite,
        }
    }

    /// Keys of an f32 payload given as little-endian bytes: the same as
    /// [`Keys::encode`] with [`Scalar::F32`] (every f32 survives the round
    /// trip), in a plain loop over the bytes that vectorises.
    pub fn from_f32_le(bytes: &[u8]) -> Keys {
        Keys::from_f32_le_in(bytes, Vec::new())
    }

    /// [`Keys::from_f32_le`] into `buf`, whose contents are dropped and
    /// whose memory is reused (a buffer from [`Spares::words`]).
    pub fn from_f32_le_in(bytes: &[u8], buf: Vec<u32>) -> Keys {
        assert_eq!(bytes.len() % 4, 0);
        let n = bytes.len() / 4;
        let mut keys = buf;
        keys.clear();
        keys.reserve_exact(n);
        let (words, _) = bytes.as_chunks::<4>();
        let infinite = f32_keys_into(words, &mut keys.spare_capacity_mut()[..n]);
        // SAFETY: the loop wrote all n slots.
        unsafe { keys.set_len(n) };
        Keys {
            keys,
            scalar: Scalar::F32,
            table: None,
            finite: !infinite,
        }
    }

    /// [`Keys::from_f32_le_in`] for a row-major `rows x cols` matrix, with
    /// its strengths (bit for bit those [`Keys::strength`] gives) summed in
    /// the same sweep, block by block while the values are in cache,
    /// instead of in a sweep of their own.
    pub fn from_f32_le_rows_in(
        bytes: &[u8],
        buf: Vec<u32>,
        rows: usize,
        cols: usize,
    ) -> (Keys, Strength) {
        let n = rows * cols;
        assert_eq!(bytes.len(), 4 * n);
        let mut keys = buf;
        keys.clear();
        keys.reserve_exact(n);
        let (words, _) = bytes.as_chunks::<4>();
        let out = &mut keys.spare_capacity_mut()[..n];
        let add =
            |(w, o): (&[[u8; 4]], &mut [MaybeUninit<u32>]), row: &mut [f64], col: &mut [f64]| {
                // Blocks of about 16 KB of rows, encoded and then summed.
                let block = (4096 / cols.max(1)).max(1);
                let len = (block * cols).max(1);
                let mut infinite = false;
                for ((w, o), r) in w
                    .chunks(len)
                    .zip(o.chunks_mut(len))
                    .zip(row.chunks_mut(block))
                {
                    infinite |= f32_keys_into(w, o);
                    sums(w, |x| f32::from_le_bytes(*x) as f64, r, col);
                }
                infinite
            };
        let (strength, infinite) = sum_rows(
            rows,
            cols,
            (words, out),
            |(w, o), h| {
                let ((w0, w1), (o0, o1)) = (w.split_at(h * cols), o.split_at_mut(h * cols));
                ((w0, o0), (w1, o1))
            },
            add,
        );
        // SAFETY: every part wrote all of its slots, and the parts cover
        // the n slots.
        unsafe { keys.set_len(n) };
        let keys = Keys {
            keys,
            scalar: Scalar::F32,
            table: None,
            finite: !infinite,
        };
        (keys, strength)
    }

    /// Whether every value is finite (rewiring NaN or infinity is
    /// meaningless: the strengths would be NaN).
    pub fn finite(&self) -> bool {
        self.finite
    }

    fn values(&self) -> Values<'_> {
        match &self.table {
            None => Values::Narrow,
            Some((vals, _)) => Values::Wide(vals),
        }
    }

    /// Calls `f(i, bits)` for each key in order: the bit pattern of the
    /// element it stands for.
    pub fn for_each_bits(&self, mut f: impl FnMut(usize, u64)) {
        fn each(keys: &[u32], g: impl Fn(u32) -> u64, f: &mut impl FnMut(usize, u64)) {
            for (i, &k) in keys.iter().enumerate() {
                f(i, g(k));
            }
        }
        if let Some((_, raw)) = &self.table {
            return each(&self.keys, |k| raw[k as usize], &mut f);
        }
        match self.scalar {
            Scalar::F32 => each(&self.keys, |k| f32_unkey(k).to_bits() as u64, &mut f),
            Scalar::F16 => each(
                &self.keys,
                |k| half::f16::from_f32(f32_unkey(k)).to_bits() as u64,
                &mut f,
            ),
            Scalar::Bf16 => each(
                &self.keys,
                |k| half::bf16::from_f32(f32_unkey(k)).to_bits() as u64,
                &mut f,
            ),
            Scalar::F64 => each(&self.keys, |k| (f32_unkey(k) as f64).to_bits(), &mut f),
        }
    }

    /// The elements' bits as little-endian u32 words, made in place from
    /// the keys (no second buffer the size of the tensor), for f32 keys;
    /// other tensors are handed back.
    pub fn into_bits32(mut self) -> std::result::Result<Vec<u32>, Keys> {
        if !self.is_plain_f32() {
            return Err(self);
        }
        decode_f32(&mut self.keys);
        Ok(self.keys)
    }

    /// Whether the keys are f32 values' own keys, so that each gives back
    /// its element's bits by [`f32_unkey`] alone.
    fn is_plain_f32(&self) -> bool {
        self.scalar == Scalar::F32 && self.table.is_none()
    }

    /// Row and column strengths of the keys as a row-major matrix.
    pub fn strength(&self, rows: usize, cols: usize) -> Strength {
        let v = self.values();
        strength_by(&self.keys, rows, cols, |&k| v.get(k))
    }
}

/// How to read a key back as a number.
#[derive(Clone, Copy)]
enum Values<'a> {
    /// The key is the f32 order key of the value.
    Narrow,
    /// The key is a rank into these values.
    Wide(&'a [f64]),
}

impl Values<'_> {
    #[inline]
    fn get(self, k: u32) -> f64 {
        match self {
            Values::Narrow => f32_unkey(k) as f64,
            Values::Wide(v) => v[k as usize],
        }
    }
}

/// Calls `body` compiled for the widest vector unit this CPU has: AVX-512,
/// AVX2, or the baseline (always the baseline with [`cpu::portable`]).
/// The loops it is used for involve only IEEE operations and conversions
/// per element, in the order the code gives (Rust never fuses a multiply
/// and an add on its own), so every width gives the same bits.
macro_rules! widest {
    ($body:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        if !cpu::portable() {
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU supports AVX-512F.
                return unsafe { wide($($arg),*) };
            }
            if cpu::avx2() {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                // SAFETY: the CPU supports AVX2.
                return unsafe { wide($($arg),*) };
            }
        }
        $body($($arg),*)
    }};
}

/// The keys of little-endian f32 words into `out`, as wide as the CPU
/// allows; true if a value is NaN or infinite. Whole words (`as_chunks`)
/// load as such, where chunks of a byte slice were gathered byte by byte
/// (1000 x 2048: 2.6 ms, now 1.0).
fn f32_keys_into(words: &[[u8; 4]], out: &mut [std::mem::MaybeUninit<u32>]) -> bool {
    #[inline(always)]
    fn body(words: &[[u8; 4]], out: &mut [std::mem::MaybeUninit<u32>]) -> bool {
        let mut infinite = false;
        for (k, w) in out.iter_mut().zip(words) {
            let b = u32::from_le_bytes(*w);
            infinite |= b & 0x7f80_0000 == 0x7f80_0000;
            k.write(f32_key(f32::from_bits(b)));
        }
        infinite
    }
    widest!(body(words: &[[u8; 4]], out: &mut [std::mem::MaybeUninit<u32>]) -> bool)
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
fn draw_row(seed: &[u8; 32], pass_no: u64, k: usize, bits: &mut Vec<u32>, out: &mut [f32]) {
    bits.resize(out.len(), 0);
    chacha::keystream(seed, (pass_no << 40) | k as u64, bits);
    exp_row(bits, out);
}

/// Exp(1) draws from random words, as wide as the CPU allows (see
/// [`widest`]).
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
fn key_bits_row(kbits: &mut [u32], acc: &[f64], exps: &[f32], low: f64) -> (u32, u32) {
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

/// Buffers of the sequential part of a pass, reused across rows.
#[derive(Default)]
struct Drawing {
    /// Column words `key << 32 | j` (the general path).
    order: Vec<u64>,
    keys: Scratch<u64>,
    /// Key bits by column and packed column words (the AVX-512 path).
    kbits: Vec<u32>,
    words: Vec<u32>,
    packed: Scratch<u32>,
    /// The row being assembled.
    row: Vec<u32>,
}

/// Buffers reused across rows and passes.
#[derive(Default)]
pub struct Workspace {
    acc: Vec<f64>,
    drawing: Drawing,
    /// The other side of each pass and transpose.
    b: Vec<u32>,
    /// The ring of prepared Exp(1) draws.
    exps: Vec<f32>,
    bits: Vec<u32>,
    values: Scratch<u32>,
}

/// Buffers kept between the tensors of one run, so that a tensor writes
/// into memory a finished one used instead of fresh pages the kernel must
/// zero (about 47 MB of them for ResNet-18). Dropped with the run.
///
/// Two kinds: workspaces (see [`Workspace`]), and word buffers, which hold
/// a tensor's keys and then, as its new payload, its bits until they are
/// written (see [`Keys::from_f32_le_in`]).
#[derive(Default)]
pub struct Spares {
    workspaces: std::sync::Mutex<Vec<Workspace>>,
    words: std::sync::Mutex<Vec<Vec<u32>>>,
}

/// Workspaces larger than this are not kept, so that a huge tensor's
/// buffers do not outlive it while smaller ones run; word buffers kept
/// together stay below it too.
const SPARE_MAX: usize = 64 << 20;

impl Spares {
    /// A kept workspace for a tensor of `n` elements, or a new one: the
    /// smallest that holds it, else the largest (which then grows).
    pub fn take(&self, n: usize) -> Workspace {
        take_fitting(&self.workspaces, n, |ws| ws.b.capacity(), true).unwrap_or_default()
    }

    /// Keeps `ws` for a later tensor.
    pub fn keep(&self, ws: Workspace) {
        if ws.b.capacity() * 4 <= SPARE_MAX {
            if let Ok(mut v) = self.workspaces.lock() {
                v.push(ws);
            }
        }
    }

    /// An empty buffer for at least `n` words: the smallest kept one that
    /// is large enough, or a new one.
    pub fn words(&self, n: usize) -> Vec<u32> {
        let kept = take_fitting(&self.words, n, Vec::capacity, false);
        let mut buf = kept.unwrap_or_else(|| fresh_words(n));
        buf.clear();
        buf
    }

    /// Keeps a word buffer that is no longer needed, as long as the kept
    /// ones fit within [`SPARE_MAX`] together.
    pub fn keep_words(&self, buf: Vec<u32>) {
        if let Ok(mut v) = self.words.lock() {
            let held: usize = v.iter().map(|b| b.capacity() * 4).sum();
            if held + buf.capacity() * 4 <= SPARE_MAX {
                v.push(buf);
            }
        }
    }
}

/// An empty buffer with room for `n` words, which the kernel is asked to
/// back with 2 MiB pages wherever whole ones fit. Each 4 KiB page of fresh
/// memory costs a fault on first touch, and on this VM the faults, more
/// than the zeroing, were about 9% of the CPU time of rewiring ResNet-18;
/// the transposes, which stride across the whole matrix, also miss the TLB
/// less.
fn fresh_words(n: usize) -> Vec<u32> {
    let buf = Vec::with_capacity(n);
    advise_huge_pages(buf.as_ptr() as usize, buf.capacity() * 4);
    buf
}

/// Advice only: where the kernel has transparent huge pages off, or none
/// free, the memory is ordinary and nothing fails.
fn advise_huge_pages(addr: usize, len: usize) {
    const HUGE: usize = 2 << 20;
    let (start, end) = (addr.next_multiple_of(HUGE), (addr + len) / HUGE * HUGE);
    #[cfg(target_os = "linux")]
    if start < end {
        // SAFETY: the range lies inside an allocation the caller owns and
        // has not touched yet; MADV_HUGEPAGE changes how its pages are
        // backed, never their contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
    let _ = (start, end);
}

/// Takes out of `kept` the item whose capacity (`cap`) is the smallest
/// that holds `n`; if none does, the largest one with `or_largest`, else
/// nothing.
fn take_fitting<T>(
    kept: &std::sync::Mutex<Vec<T>>,
    n: usize,
    cap: impl Fn(&T) -> usize,
    or_largest: bool,
) -> Option<T> {
    let mut v = kept.lock().ok()?;
    let best = (0..v.len())
        .filter(|&i| or_largest || cap(&v[i]) >= n)
        .min_by_key(|&i| (cap(&v[i]) < n, cap(&v[i]).abs_diff(n)))?;
    Some(v.swap_remove(best))
}

/// Rows whose draws a pass may hold at once, in elements: the helper
/// thread prepares at most this far ahead of the sequential part.
const WINDOW: usize = 1 << 16;

/// The work of a pass that does not depend on the accumulated strength
/// (sorting each row's keys ascending, in place, and drawing its Exp(1)
/// numbers), shared between the sequential thread and a helper.
///
/// Rows are claimed in order through `claimed`: the helper claims the
/// next one, and the sequential thread claims the row it needs if nobody
/// has. So nothing waits for a helper that never started (one thread, or
/// every thread busy with other tensors), and with two the helper keeps
/// ahead without a hand-over per batch of rows. Draws live in a ring of
/// `window` rows; a row's slot is reused only once the sequential part is
/// past the row before it in the slot.
struct Ahead<'a> {
    keys: *mut u32,
    cols: usize,
    rows: usize,
    ring: *mut f32,
    window: usize,
    draws: Option<(&'a [u8; 32], u64)>,
    claimed: AtomicUsize,
    ready: Vec<AtomicBool>,
    consumed: AtomicUsize,
    /// Where finished rows go, transposed, in bands of TILE rows (with
    /// decode or not), and the next band to claim.
    out: Option<(*mut u32, bool)>,
    bands: AtomicUsize,
    /// Set if either thread panicked, so that the other stops waiting for
    /// it (rayon reports the panic once both closures have returned).
    died: AtomicBool,
}

// SAFETY: rows and ring slots are written only by the thread that claimed
// the row, and read only after its `ready` flag (release/acquire); after
// that only the sequential thread reads the row and then writes its result
// there. A slot is rewritten only after `consumed` shows its last reader
// done. Rows below `consumed` are final: a band of them is read, and its
// columns of `out` written, only by the thread that claimed the band.
unsafe impl Sync for Ahead<'_> {}

impl<'a> Ahead<'a> {
    /// With `out`, the finished rows are also written transposed there
    /// (which must hold room for them all).
    fn new(
        keys: &'a mut [u32],
        cols: usize,
        ring: &'a mut Vec<f32>,
        draws: Option<(&'a [u8; 32], u64)>,
        out: Option<(&'a mut [MaybeUninit<u32>], bool)>,
    ) -> Self {
        let rows = keys.len() / cols;
        let window = (WINDOW / cols).clamp(2, rows.max(2));
        ring.resize(window * cols, 0.0);
        Ahead {
            keys: keys.as_mut_ptr(),
            cols,
            rows,
            ring: ring.as_mut_ptr(),
            window,
            draws,
            claimed: AtomicUsize::new(0),
            ready: (0..rows).map(|_| AtomicBool::new(false)).collect(),
            consumed: AtomicUsize::new(0),
            out: out.map(|(o, decode)| {
                assert_eq!(o.len(), keys.len());
                (o.as_mut_ptr() as *mut u32, decode)
            }),
            bands: AtomicUsize::new(0),
            died: AtomicBool::new(false),
        }
    }

    /// Prepares row k, which the caller has claimed.
    fn prepare(&self, k: usize, bits: &mut Vec<u32>, scratch: &mut Scratch<u32>) {
        let c = self.cols;
        // Row 0 is never changed, so it is neither sorted nor drawn.
        if k > 0 {
            // SAFETY: row k and its ring slot are this thread's alone
            // until `ready[k]` is set (see the type's comment).
            let (row, e) = unsafe {
                (
                    std::slice::from_raw_parts_mut(self.keys.add(k * c), c),
                    std::slice::from_raw_parts_mut(self.ring.add(k % self.window * c), c),
                )
            };
            sort_values(row, scratch);
            if let Some((seed, pass_no)) = self.draws {
                draw_row(seed, pass_no, k, bits, e);
            }
        }
        self.ready[k].store(true, Ordering::Release);
    }

    /// The helper: prepares rows in order until none is left.
    fn help(&self) {
        let _alarm = self.alarm();
        let (mut bits, mut scratch) = (Vec::new(), Scratch::default());
        loop {
            let k = self.claimed.fetch_add(1, Ordering::AcqRel);
            if k >= self.rows {
                break;
            }
            // A full window is time to spare: finished bands use it.
            wait_or(
                || {
                    k < self.consumed.load(Ordering::Acquire) + self.window
                        || self.died.load(Ordering::Acquire)
                },
                || self.transpose_next(),
            );
            if self.died.load(Ordering::Acquire) {
                return;
            }
            self.prepare(k, &mut bits, &mut scratch);
        }
        wait_or(
            || self.bands_left() == 0 || self.died.load(Ordering::Acquire),
            || self.transpose_next(),
        );
    }

    /// Bands of `out` not yet claimed.
    fn bands_left(&self) -> usize {
        if self.out.is_none() {
            return 0;
        }
        self.rows
            .div_ceil(TILE)
            .saturating_sub(self.bands.load(Ordering::Acquire))
    }

    /// Transposes the next band of rows into `out` if all its rows are
    /// final; false if there is none to do now.
    fn transpose_next(&self) -> bool {
        let Some((dst, decode)) = self.out else {
            return false;
        };
        let b = self.bands.load(Ordering::Acquire);
        let (i0, i1) = (b * TILE, ((b + 1) * TILE).min(self.rows));
        if i0 >= self.rows || self.consumed.load(Ordering::Acquire) < i1 {
            return false;
        }
        if self
            .bands
            .compare_exchange(b, b + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            let c = self.cols;
            // SAFETY: rows i0..i1 are final (below `consumed`), and this
            // thread claimed their band, whose columns of `out` no other
            // thread writes (see the type's comment).
            unsafe {
                let band = std::slice::from_raw_parts(self.keys.add(i0 * c), (i1 - i0) * c);
                transpose_rows(band, self.rows, c, i0, dst, decode);
            }
        }
        true
    }

    /// A guard that sets `died` if its thread unwinds while it lives.
    fn alarm(&self) -> impl Drop + '_ {
        struct Alarm<'a>(&'a AtomicBool);
        impl Drop for Alarm<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(true, Ordering::Release);
                }
            }
        }
        Alarm(&self.died)
    }

    /// Row k, sorted, and its draws, for the sequential part, which must
    /// then call [`Ahead::done`].
    fn get(&self, k: usize, bits: &mut Vec<u32>, scratch: &mut Scratch<u32>) -> (&[u32], &[f32]) {
        if !self.ready[k].load(Ordering::Acquire) {
            let mine = self
                .claimed
                .compare_exchange(k, k + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if mine {
                self.prepare(k, bits, scratch);
            } else {
                wait(|| self.ready[k].load(Ordering::Acquire) || self.died.load(Ordering::Acquire));
                // The helper's own panic is what rayon reports.
                assert!(
                    self.ready[k].load(Ordering::Acquire),
                    "the helper preparing row {k} panicked"
                );
            }
        }
        let c = self.cols;
        // SAFETY: row k is ready, and neither it nor its slot is written
        // again before `done(k)`.
        unsafe {
            (
                std::slice::from_raw_parts(self.keys.add(k * c), c),
                std::slice::from_raw_parts(self.ring.add(k % self.window * c), c),
            )
        }
    }

    /// Writes row k's result over its sorted input, which the caller must
    /// no longer be reading (the slice [`Ahead::get`] gave it is dead).
    fn put(&self, k: usize, row: &[u32]) {
        let c = self.cols;
        assert_eq!(row.len(), c);
        // SAFETY: row k lies inside the matrix, its preparation is over
        // (it was handed out by `get`), and no other thread touches it: the
        // helper only writes rows it claimed, all past k.
        unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.keys.add(k * c), c) };
    }

    fn done(&self, k: usize) {
        self.consumed.store(k + 1, Ordering::Release);
    }
}

/// Spins until `ready()`, yielding the core after a while (the wait is
/// normally a fraction of one row's work).
fn wait(ready: impl Fn() -> bool) {
    wait_or(ready, || false)
}

/// [`wait`], doing `work` meanwhile for as long as it finds some (it
/// returns whether it did).
fn wait_or(ready: impl Fn() -> bool, work: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if work() {
            spins = 0;
        } else if spins < 200 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Adds a row (keys read as values) to the column strengths and returns
/// their new minimum, which the next row's keys need: one vectorised
/// sweep, where adding each value as it is scattered to its column was a
/// dependent read-modify-write per element on the sequential thread.
fn accumulate(acc: &mut [f64], row: &[u32], values: Values) -> f64 {
    #[inline(always)]
    fn body(acc: &mut [f64], row: &[u32], values: Values) -> f64 {
        // Eight lanes, so that the minimum vectorises too.
        let mut lanes = [f64::INFINITY; 8];
        let mut chunks = acc.chunks_exact_mut(8).zip(row.chunks_exact(8));
        for (a, r) in &mut chunks {
            for ((l, a), &x) in lanes.iter_mut().zip(a).zip(r) {
                *a += values.get(x);
                *l = if *a < *l { *a } else { *l };
            }
        }
        let tail = acc.len() / 8 * 8;
        for (a, &x) in acc[tail..].iter_mut().zip(&row[tail..]) {
            *a += values.get(x);
            lanes[0] = if *a < lanes[0] { *a } else { lanes[0] };
        }
        lanes
            .iter()
            .fold(f64::INFINITY, |m, &a| if a < m { a } else { m })
    }
    widest!(body(acc: &mut [f64], row: &[u32], values: Values) -> f64)
}

/// The sequential part of a pass for a row k > 0, given sorted in `srow`
/// with its draws `exps`: column order from the accumulated strength, then
/// `dr.row` gets the ascending keys in that order. `acc` holds the column
/// sums of the rows before, `low` their minimum; both are updated.
fn consume_row(
    srow: &[u32],
    exps: &[f32],
    method: Method,
    values: Values,
    acc: &mut [f64],
    low: &mut f64,
    dr: &mut Drawing,
) {
    let cols = srow.len();
    // The row is assembled in a buffer that stays in cache and then copied
    // out in order: scattered straight into the matrix, whose lines are
    // rarely in cache yet, each store waited for its own line.
    let mut row = std::mem::take(&mut dr.row);
    row.resize(cols, 0);
    let dst = &mut row[..];
    match method {
        Method::Pa => {
            // Efraimidis-Spirakis: ascending E_j / p_j, E_j ~ Exp(1),
            // is weighted sampling without replacement.
            dr.kbits.resize(cols, 0);
            let (lo, hi) = key_bits_row(&mut dr.kbits, acc, exps, *low);
            if let Some(order) = order_columns(&dr.kbits, lo, hi, &mut dr.words, &mut dr.packed) {
                // The m-th smallest key goes to the m-th drawn column.
                order.scatter(srow, dst);
            } else {
                // Words `key << 32 | j`: ties go to the lower column.
                dr.order.clear();
                dr.order.extend(
                    dr.kbits
                        .iter()
                        .enumerate()
                        .map(|(j, &k)| ((k as u64) << 32) | j as u64),
                );
                sort_keys(&mut dr.order, &mut dr.keys);
                scatter(&dr.order, srow, dst);
            }
        }
        Method::Deterministic => {
            // Strongest column first, so that ascending values give the
            // largest value to the weakest column.
            let mut keyed: Vec<(u64, u32)> = acc
                .iter()
                .enumerate()
                .map(|(j, &a)| (!f64_key(a), j as u32))
                .collect();
            keyed.sort_unstable();
            dr.order.clear();
            dr.order.extend(keyed.into_iter().map(|(_, j)| j as u64));
            scatter(&dr.order, srow, dst);
        }
    }
    // The last row is added too: the finished sums are the strengths
    // the report needs (see [`rewire_matrix`]).
    *low = accumulate(acc, dst, values);
    dr.row = row;
}

/// The m-th smallest key of `srow` goes to the column in the low half of
/// the m-th word of `order`.
fn scatter(order: &[u64], srow: &[u32], dst: &mut [u32]) {
    for (&j, &x) in order.iter().zip(srow) {
        // SAFETY: the low half of every word of `order` is a distinct
        // column index below cols = dst.len().
        unsafe { *dst.get_unchecked_mut(j as u32 as usize) = x };
    }
}

/// One pass over the row-major `rows x cols` matrix of keys in `a`, in
/// place: each row's result replaces it once it is read. (Written to a
/// second buffer, the pass's sequential thread took that buffer's page
/// faults; now the transposed copy below takes them, mostly on the
/// helper.)
///
/// With `out`, the result is also written transposed there (decoded or
/// not), band by band as its rows are finished: the helper does that while
/// it waits for the sequential part, and the rest is split between both
/// at the end, where a transpose after the pass kept both cores busy for
/// its whole length.
#[allow(clippy::too_many_arguments)]
fn pass_keys(
    a: &mut [u32],
    rows: usize,
    cols: usize,
    method: Method,
    seed: &[u8; 32],
    pass_no: u64,
    values: Values,
    ws: &mut Workspace,
    out: Option<(&mut Vec<u32>, bool)>,
) {
    if rows < 2 || cols < 2 {
        // A single column admits no rearrangement within a row; a single
        // row is row 0, which is never changed.
        if let Some((t, decode)) = out {
            transpose(a, rows, cols, t, decode);
        }
        return;
    }
    let n = a.len();
    let mut out = out.map(|(t, decode)| {
        t.clear();
        if t.capacity() < n {
            *t = fresh_words(n);
        }
        (t, decode)
    });
    let draws = (method == Method::Pa).then_some((seed, pass_no));
    ws.acc.clear();
    ws.acc.resize(cols, 0.0);
    let Workspace {
        acc,
        drawing,
        exps,
        bits,
        values: vscratch,
        ..
    } = ws;
    let spare = out
        .as_mut()
        .map(|(t, decode)| (&mut t.spare_capacity_mut()[..n], *decode));
    let ahead = Ahead::new(a, cols, exps, draws, spare);
    // The helper runs on the other core when one is free; otherwise it
    // starts after the sequential part, finds every row taken, and returns.
    rayon::join(
        || {
            let _alarm = ahead.alarm();
            let (row0, _) = ahead.get(0, bits, vscratch);
            let mut low = accumulate(acc, row0, values);
            ahead.done(0);
            for k in 1..rows {
                let (srow, e) = ahead.get(k, bits, vscratch);
                consume_row(srow, e, method, values, acc, &mut low, drawing);
                ahead.put(k, &drawing.row);
                ahead.done(k);
            }
            while ahead.transpose_next() {}
        },
        || ahead.help(),
    );
    if let Some((t, _)) = out {
        // SAFETY: both closures have returned, and between them every
        // band was claimed and written in full (`transpose_rows` writes
        // all columns of its rows' slots); a panic would have propagated
        // out of `join` before this line.
        unsafe { t.set_len(n) };
    }
}

/// An f32 key's value as its bits, a little-endian word.
#[inline]
fn key_to_le_bits(k: u32) -> u32 {
    f32_unkey(k).to_bits().to_le()
}

/// f32 keys to their values' bits (little-endian words), in place.
fn decode_f32(keys: &mut [u32]) {
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

/// Transpose of a row-major `rows x cols` matrix of keys into `dst`, in
/// tiles of 32 x 32 that keep both sides in cache; with AVX2, full tiles
/// move as 8 x 8 blocks of registers. With `decode`, f32 keys become their
/// values' bits on the way (see [`decode_f32`]).
fn transpose(src: &[u32], rows: usize, cols: usize, dst: &mut Vec<u32>, decode: bool) {
    let n = src.len();
    assert_eq!(n, rows * cols);
    dst.clear();
    if dst.capacity() < n {
        *dst = fresh_words(n);
    }
    if rows > 0 && cols > 0 {
        // Each band of TILE rows of dst (TILE columns of src) is
        // independent; bands run on both cores when the matrix is large
        // enough to pay for it. Written into the spare capacity: zeroing it
        // first was a sweep on one thread, through fresh pages.
        let out = &mut dst.spare_capacity_mut()[..n];
        let band = |(b, out): (usize, &mut [MaybeUninit<u32>])| {
            transpose_band(src, rows, cols, b * TILE, out, decode)
        };
        if n >= PARALLEL_MIN {
            out.par_chunks_mut(TILE * rows).enumerate().for_each(band);
        } else {
            out.chunks_mut(TILE * rows).enumerate().for_each(band);
        }
    }
    // SAFETY: the bands cover all n slots, and each band writes every slot
    // of its own (every column of its tiles and edges, for every row).
    unsafe { dst.set_len(n) };
}

/// Matrices at least this large have their transposes and strength sums
/// split between threads.
const PARALLEL_MIN: usize = 1 << 16;

/// Columns `j0..j0 + TILE` of `src` into `out`, rows `j0..` of the
/// transpose.
fn transpose_band(
    src: &[u32],
    rows: usize,
    cols: usize,
    j0: usize,
    out: &mut [MaybeUninit<u32>],
    decode: bool,
) {
    #[cfg(target_arch = "x86_64")]
    let avx2 = cpu::avx2();
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

const TILE: usize = 32;

/// Rows `i0..` of a row-major `rows x cols` matrix (`band`, a whole number
/// of rows), transposed into their columns of the `cols x rows` matrix at
/// `dst`, in the tiles of [`transpose`]. A pass's rows are finished in
/// order, so it transposes by bands of rows; a whole matrix goes by bands
/// of columns ([`transpose_band`]), whose output is contiguous: by bands
/// of rows it took 10-30% longer (medians of 60 runs on four shapes).
///
/// # Safety
///
/// `dst` is valid for `rows * cols` writes, and no other thread touches
/// the band's columns of it meanwhile.
unsafe fn transpose_rows(
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
    let avx2 = cpu::avx2();
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

/// Where the keys of a matrix view lie in their buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Row-major: the view itself.
    Rows,
    /// Column-major, i.e. the view's transpose row-major: a weight stored
    /// as [K, N] whose view has its N outputs as rows (MatMul, Gemm with
    /// transB = 0).
    Columns,
}

/// PA rewiring (section 3, with stabilization first when asked) of the
/// `rows x cols` matrix of keys in `keys`, laid out as `layout`, in place;
/// with `decode`, f32 keys end as their elements' bits. Returns the
/// strengths before (`known`, where they are) and after.
///
/// Pass 2 runs on the transpose, so a row-major matrix is transposed twice
/// and a column-major one only once: its first transpose makes the rows
/// pass 1 needs, and pass 2's result is already in its layout.
#[allow(clippy::too_many_arguments)]
fn rewire_matrix(
    keys: &mut Vec<u32>,
    rows: usize,
    cols: usize,
    layout: Layout,
    decode: bool,
    opts: &Options,
    seed: &[u8; 32],
    values: Values,
    known: Option<Strength>,
    ws: &mut Workspace,
) -> (Strength, Strength) {
    let value = |&k: &u32| values.get(k);
    let mut b = std::mem::take(&mut ws.b);
    // `m` holds the view row-major, `t` will hold its transpose.
    let (m, t) = match layout {
        Layout::Rows => (&mut *keys, &mut b),
        Layout::Columns => {
            transpose(keys, cols, rows, &mut b, false);
            (&mut b, &mut *keys)
        }
    };
    let before = known.unwrap_or_else(|| strength_by(m, rows, cols, value));
    if opts.stabilize > 0 {
        let mut rng = ChaCha8Rng::from_seed(*seed);
        rng.set_stream(u64::MAX);
        stabilize_by(m, rows, cols, opts.stabilize, &mut rng, value);
    }
    // A single row or column admits no rearrangement (see `pass_keys`), so
    // only stabilization can have changed anything.
    let unchanged = (rows < 2 || cols < 2).then(|| {
        if opts.stabilize > 0 {
            strength_by(m, rows, cols, value)
        } else {
            before
        }
    });
    pass_keys(
        m,
        rows,
        cols,
        opts.method,
        seed,
        1,
        values,
        ws,
        Some((t, false)),
    );
    // Pass 2 permutes within the columns that pass 1 summed, so these are
    // the final column strengths; pass 2's own sums are the final row
    // strengths. That saves a sweep over the result.
    let col = std::mem::take(&mut ws.acc);
    // The last transpose makes the bits as it goes.
    let back = (layout == Layout::Rows).then_some((&mut *m, decode));
    pass_keys(t, cols, rows, opts.method, seed, 2, values, ws, back);
    let after = unchanged.unwrap_or_else(|| Strength {
        row_std: std_dev(&ws.acc),
        col_std: std_dev(&col),
    });
    if layout == Layout::Columns && decode {
        decode_f32(t);
    }
    ws.b = b;
    (before, after)
}

/// Rewires the keys of a tensor's matrix view (row-major, `rows x cols`) in
/// place, returning the strengths before and after. This is the whole job
/// of one tensor; `key` identifies it for its random streams.
pub fn rewire_keys(
    keys: &mut Keys,
    rows: usize,
    cols: usize,
    key: &str,
    opts: &Options,
) -> (Strength, Strength) {
    rewire_keys_in(
        keys,
        rows,
        cols,
        Layout::Rows,
        key,
        opts,
        &Spares::default(),
    )
}

/// [`rewire_keys`] for keys laid out as `layout`, which they keep, with
/// the buffers taken from, and given back to, `spares`.
pub fn rewire_keys_in(
    keys: &mut Keys,
    rows: usize,
    cols: usize,
    layout: Layout,
    key: &str,
    opts: &Options,
    spares: &Spares,
) -> (Strength, Strength) {
    // Inside the pool from the start (see `rewire_in`).
    rayon::scope(|_| rewire_in(keys, rows, cols, layout, false, None, key, opts, spares))
}

/// The whole job of an f32 tensor whose little-endian bytes are `bytes`
/// (laid out as `layout`): its keys, the strengths before (in the same
/// sweep, where the layout allows), both passes, and the new elements'
/// bits as little-endian words, made in the last sweep over the matrix
/// rather than in one of their own. None, with nothing rewired, when a
/// value is NaN or infinite. `bytes` is dropped once read: the keys give
/// back every bit, and external data can be as large as the tensor.
#[allow(clippy::type_complexity)]
pub fn rewire_f32_le<B: AsRef<[u8]> + Send>(
    bytes: B,
    rows: usize,
    cols: usize,
    layout: Layout,
    key: &str,
    opts: &Options,
    spares: &Spares,
) -> Option<(Vec<u32>, Strength, Strength)> {
    let n = rows * cols;
    // Inside the pool from the start (see `rewire_in`): the keys' sweep
    // forks too.
    rayon::scope(|_| {
        let b = bytes.as_ref();
        let (mut keys, known) = match layout {
            Layout::Rows => {
                let (k, s) = Keys::from_f32_le_rows_in(b, spares.words(n), rows, cols);
                (k, Some(s))
            }
            Layout::Columns => (Keys::from_f32_le_in(b, spares.words(n)), None),
        };
        drop(bytes);
        if !keys.finite() {
            spares.keep_words(keys.keys);
            return None;
        }
        let (before, after) = rewire_in(
            &mut keys, rows, cols, layout, true, known, key, opts, spares,
        );
        Some((keys.keys, before, after))
    })
}

/// The common part of [`rewire_keys_in`] and [`rewire_f32_le`], which call
/// it inside the thread pool: each pass, transpose and sum is a fork into
/// it, and called from outside, every fork would also be a hand-over from
/// the caller's thread to a pool thread and back.
#[allow(clippy::too_many_arguments)]
fn rewire_in(
    keys: &mut Keys,
    rows: usize,
    cols: usize,
    layout: Layout,
    decode: bool,
    known: Option<Strength>,
    key: &str,
    opts: &Options,
    spares: &Spares,
) -> (Strength, Strength) {
    assert_eq!(keys.keys.len(), rows * cols);
    let seed = tensor_seed(opts.seed, key);
    let mut ws = spares.take(rows * cols);
    let mut k = std::mem::take(&mut keys.keys);
    let values = keys.values();
    let out = rewire_matrix(
        &mut k, rows, cols, layout, decode, opts, &seed, values, known, &mut ws,
    );
    spares.keep(ws);
    keys.keys = k;
    out
}

/// Keys of f64 values, and the way back.
fn f64_keys(vals: &[f64]) -> Keys {
    Keys::encode(Scalar::F64, vals.iter().map(|v| v.to_bits()))
}

fn write_back(keys: &Keys, vals: &mut [f64]) {
    keys.for_each_bits(|i, b| vals[i] = f64::from_bits(b));
}

/// One pass (ALGORITHM.md section 2) over a row-major `rows x cols` matrix:
/// rows 1.. are rearranged, each within itself, so that columns with large
/// accumulated strength receive the small values. `seed` and `pass_no`
/// select the random streams (see [`tensor_seed`]).
#[allow(clippy::too_many_arguments)]
pub fn pass(
    vals: &mut [f64],
    rows: usize,
    cols: usize,
    method: Method,
    seed: &[u8; 32],
    pass_no: u64,
    ws: &mut Workspace,
) {
    assert_eq!(vals.len(), rows * cols);
    let mut keys = f64_keys(vals);
    let mut a = std::mem::take(&mut keys.keys);
    pass_keys(
        &mut a,
        rows,
        cols,
        method,
        seed,
        pass_no,
        keys.values(),
        ws,
        None,
    );
    keys.keys = a;
    write_back(&keys, vals);
}

/// PA rewiring of a row-major matrix (ALGORITHM.md section 3): a pass over
/// the rows, then a pass over the columns of the result.
pub fn pa_rewire(
    vals: &mut [f64],
    rows: usize,
    cols: usize,
    opts: &Options,
    seed: &[u8; 32],
    ws: &mut Workspace,
) {
    assert_eq!(vals.len(), rows * cols);
    let mut keys = f64_keys(vals);
    let mut k = std::mem::take(&mut keys.keys);
    let values = keys.values();
    rewire_matrix(
        &mut k,
        rows,
        cols,
        Layout::Rows,
        false,
        opts,
        seed,
        values,
        None,
        ws,
    );
    keys.keys = k;
    write_back(&keys, vals);
}

/// The stabilization analogue (ALGORITHM.md section 4): `k` uniform
/// shuffles of all values, keeping the one with the lowest mean of row- and
/// column-strength variance.
pub fn stabilize(vals: &mut [f64], rows: usize, cols: usize, k: u32, rng: &mut ChaCha8Rng) {
    stabilize_by(vals, rows, cols, k, rng, |&v| v);
}

fn stabilize_by<T: Copy + Sync>(
    items: &mut [T],
    rows: usize,
    cols: usize,
    k: u32,
    rng: &mut ChaCha8Rng,
    value: impl Fn(&T) -> f64 + Copy + Sync,
) {
    let n = items.len();
    let mut best: Option<(f64, Vec<T>)> = None;
    let mut cand = items.to_vec();
    for _ in 0..k {
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            cand.swap(i, j);
        }
        let s = strength_by(&cand, rows, cols, value);
        let score = (s.row_std * s.row_std + s.col_std * s.col_std) / 2.0;
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, cand.clone()));
        }
    }
    if let Some((_, v)) = best {
        items.copy_from_slice(&v);
    }
}

/// The result of rewiring one tensor.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The rewired values, in storage order.
    pub values: Vec<f64>,
    pub before: Strength,
    pub after: Strength,
}

/// Rewires one tensor given its values in storage order, its dims, and the
/// axes of its matrix view (see [`ViewIndices`]). `key` identifies the
/// tensor for its random stream.
pub fn rewire_values(
    values: &[f64],
    dims: &[u64],
    axes: &[usize],
    key: &str,
    opts: &Options,
) -> Outcome {
    let rows = dims.get(axes[0]).copied().unwrap_or(1) as usize;
    let cols = values.len().checked_div(rows).unwrap_or(0);
    let view = ViewIndices::new(dims, axes);
    let mut keys = Keys::encode(Scalar::F64, view.clone().map(|s| values[s].to_bits()));
    let (before, after) = rewire_keys(&mut keys, rows, cols, key, opts);
    let mut out = vec![0f64; values.len()];
    let mut dst = view;
    keys.for_each_bits(|_, b| out[dst.next().unwrap()] = f64::from_bits(b));
    Outcome {
        values: out,
        before,
        after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn storage_transposes_are_recognised() {
        // A [K, N] weight read with N as rows.
        assert_eq!(storage_transpose(&[3, 4], &[1, 0]), Some((3, 4)));
        // Rows from the last axis, columns the others in order.
        assert_eq!(storage_transpose(&[2, 3, 4], &[2, 0, 1]), Some((6, 4)));
        for (dims, axes) in [
            (&[3u64, 4][..], &[0usize, 1][..]),
            (&[2, 3, 4], &[2, 1, 0]),
            (&[2, 3, 4], &[1, 0, 2]),
            (&[5], &[0]),
        ] {
            assert_eq!(storage_transpose(dims, axes), None, "{dims:?} {axes:?}");
        }
        // What it claims agrees with the view's own walk.
        let (r, c) = storage_transpose(&[2, 3, 4], &[2, 0, 1]).unwrap();
        let walked: Vec<u32> = view_index(&[2, 3, 4], &[2, 0, 1]);
        let tiled: Vec<u32> = (0..c)
            .flat_map(|j| (0..r).map(move |i| (i * c + j) as u32))
            .collect();
        assert_eq!(walked, tiled);
    }

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

    /// A column-major matrix (a [K, N] weight) rewired in its own layout
    /// gives the transpose of its row-major copy rewired, with the same
    /// strengths; and the bits made during the rewiring are those
    /// `into_bits32` makes afterwards, in either layout.
    #[test]
    fn layouts_and_bits_agree() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let opts = Options::default();
        let spares = Spares::default();
        for (rows, cols) in [(1, 7), (7, 1), (40, 70), (300, 257)] {
            let vals: Vec<f32> = (0..rows * cols)
                .map(|_| rng.random::<f32>() - 0.5)
                .collect();
            let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
            let mut by_rows = Keys::from_f32_le(&bytes(&vals));
            let s_rows = rewire_keys(&mut by_rows, rows, cols, "w", &opts);
            let want = by_rows.into_bits32().ok().unwrap();

            let t: Vec<f32> = (0..cols * rows)
                .map(|x| vals[(x % rows) * cols + x / rows])
                .collect();
            let mut by_cols = Keys::from_f32_le(&bytes(&t));
            let s_cols = rewire_keys_in(
                &mut by_cols,
                rows,
                cols,
                Layout::Columns,
                "w",
                &opts,
                &spares,
            );
            let mut back = Vec::new();
            transpose(
                &by_cols.into_bits32().ok().unwrap(),
                cols,
                rows,
                &mut back,
                false,
            );
            assert_eq!(back, want, "{rows}x{cols}");
            for (a, b) in [(s_rows.0, s_cols.0), (s_rows.1, s_cols.1)] {
                assert_eq!(a.row_std.to_bits(), b.row_std.to_bits());
                assert_eq!(a.col_std.to_bits(), b.col_std.to_bits());
            }

            for (layout, input) in [(Layout::Rows, &vals), (Layout::Columns, &t)] {
                let (bits, b, a) =
                    rewire_f32_le(bytes(input), rows, cols, layout, "w", &opts, &spares).unwrap();
                let mut k = Keys::from_f32_le(&bytes(input));
                let (b2, a2) = rewire_keys_in(&mut k, rows, cols, layout, "w", &opts, &spares);
                assert_eq!(
                    bits,
                    k.into_bits32().ok().unwrap(),
                    "{rows}x{cols} {layout:?}"
                );
                assert_eq!(
                    (b.row_std, b.col_std, a.row_std, a.col_std),
                    (b2.row_std, b2.col_std, a2.row_std, a2.col_std)
                );
            }
        }
        let nan = [1.0f32, f32::NAN].map(f32::to_le_bytes).concat();
        assert!(rewire_f32_le(nan, 1, 2, Layout::Rows, "w", &opts, &spares).is_none());
    }

    #[test]
    fn keys_give_back_every_bit() {
        let f16s: Vec<u64> = [0x0000u64, 0x8000, 0x0001, 0x3c00, 0xfbff, 0x7c00, 0x7e01].to_vec();
        let k = Keys::encode(Scalar::F16, f16s.iter().copied());
        let mut back = vec![0; f16s.len()];
        k.for_each_bits(|i, b| back[i] = b);
        assert_eq!(back, f16s);
        assert!(!k.finite());
        let f64s: Vec<u64> = [0.1f64, -0.0, 1.0, 0.1]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let k = Keys::encode(Scalar::F64, f64s.iter().copied());
        let mut back = vec![0; f64s.len()];
        k.for_each_bits(|i, b| back[i] = b);
        assert_eq!(back, f64s);
        assert!(k.finite());
        // Rank keys keep the order of the values.
        assert!(k.keys[1] < k.keys[0] && k.keys[0] < k.keys[2]);
    }

    #[test]
    fn f32_keys_from_bytes_and_back_to_bits_in_place() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Below and above the size split between threads.
        for n in [5usize, PARALLEL_MIN * 2 + 3] {
            let mut words: Vec<u32> = (0..n).map(|_| rng.random::<u32>() & 0xbfff_ffff).collect();
            words[1] = (-0.0f32).to_bits();
            let keys = Keys::encode(Scalar::F32, words.iter().map(|&w| w as u64));
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let from_bytes = Keys::from_f32_le(&bytes);
            assert_eq!(from_bytes.keys, keys.keys);
            assert!(from_bytes.finite() && keys.finite());
            // With the strengths summed while encoding: the same keys, and
            // the same strengths to the bit, for several row lengths.
            for cols in [1, 5, n / 5] {
                let rows = n / cols;
                let b = &bytes[..4 * rows * cols];
                let (k, s) = Keys::from_f32_le_rows_in(b, vec![7; 3], rows, cols);
                assert_eq!(k.keys, keys.keys[..rows * cols]);
                assert!(k.finite());
                let want = k.strength(rows, cols);
                assert_eq!(
                    (s.row_std.to_bits(), s.col_std.to_bits()),
                    (want.row_std.to_bits(), want.col_std.to_bits()),
                    "{rows}x{cols}"
                );
            }
            let back = keys.into_bits32().ok().unwrap();
            assert_eq!(
                back.iter().map(|w| u32::from_le(*w)).collect::<Vec<_>>(),
                words
            );
        }
        for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
            let bytes: Vec<u8> = [1.0f32, bad].iter().flat_map(|v| v.to_le_bytes()).collect();
            assert!(!Keys::from_f32_le(&bytes).finite());
            assert!(!Keys::from_f32_le_rows_in(&bytes, Vec::new(), 2, 1)
                .0
                .finite());
        }
        // Rows without columns: no keys, and no panic.
        let (empty, _) = Keys::from_f32_le_rows_in(&[], Vec::new(), 3, 0);
        assert!(empty.keys.is_empty() && empty.finite());
        let f16 = Keys::encode(Scalar::F16, [0x3c00u64].into_iter());
        assert!(f16.into_bits32().is_err());
    }
}
