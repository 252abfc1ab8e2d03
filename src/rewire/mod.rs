//! Preferential-attachment rewiring of one weight matrix (ALGORITHM.md
//! sections 2 to 5), as pure functions over values and indices.
//!
//! The math never moves bytes of a file. It works on the values of a matrix
//! view (f64, exact for every supported dtype) together with the storage
//! index each value came from, and returns a permutation of storage
//! indices; applying it to the payload moves the original bits, so the
//! result is a bitwise permutation whatever the dtype. See DESIGN.md for the
//! sampling trick and the variants.

pub mod sort;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sort::{f32_key, f64_key, sort_packed, Scratch};

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

/// For the matrix view that takes storage axis `axes[0]` as rows and the
/// other axes, in the order given, as columns: the storage index of each
/// view element, row-major.
pub fn view_index(dims: &[u64], axes: &[usize]) -> Vec<u32> {
    let numel: u64 = dims.iter().product();
    assert!(numel <= u32::MAX as u64, "tensor too large for u32 indices");
    let identity = axes.iter().enumerate().all(|(i, &a)| i == a);
    if identity {
        return (0..numel as u32).collect();
    }
    let rank = dims.len();
    let mut stride = vec![0u64; rank];
    let mut s = 1;
    for a in (0..rank).rev() {
        stride[a] = s;
        s *= dims[a];
    }
    let vdims: Vec<u64> = axes.iter().map(|&a| dims[a]).collect();
    let vstride: Vec<u64> = axes.iter().map(|&a| stride[a]).collect();
    let mut out = Vec::with_capacity(numel as usize);
    let mut counter = vec![0u64; rank];
    let mut offset = 0u64;
    for _ in 0..numel {
        out.push(offset as u32);
        // Odometer over the view's axes, innermost last.
        for d in (0..rank).rev() {
            counter[d] += 1;
            offset += vstride[d];
            if counter[d] < vdims[d] {
                break;
            }
            offset -= vstride[d] * vdims[d];
            counter[d] = 0;
        }
    }
    out
}

/// Row and column strength standard deviations of a row-major matrix.
pub fn strength(vals: &[f64], rows: usize, cols: usize) -> Strength {
    let mut row = vec![0f64; rows];
    let mut col = vec![0f64; cols];
    for (i, r) in vals.chunks_exact(cols.max(1)).enumerate().take(rows) {
        let mut s = 0.0;
        for (j, &v) in r.iter().enumerate() {
            s += v;
            col[j] += v;
        }
        row[i] = s;
    }
    Strength {
        row_std: std_dev(&row),
        col_std: std_dev(&col),
    }
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

/// Whether the matrix's values fit f32 exactly (then an element's sort key
/// is its f32 bit pattern, and its value can be read back from the key).
fn fits_f32(vals: &[f64]) -> bool {
    vals.iter().all(|&v| (v as f32) as f64 == v || v.is_nan())
}

// The passes work on elements, not values: an element is one `u64`,
//
//     key << 32 | slot
//
// where `slot` says where the element came from (a storage index) and `key`
// is a u32 whose order is the order of the element's value: the
// order-preserving bit pattern of the value as f32 when every value of the
// tensor fits f32 (the common case), otherwise the value's rank among all
// values of the tensor. Sorting a row's elements as plain integers thus
// sorts its values ascending, ties broken by slot, with no separate index
// array; moving an element moves its value and its origin together.

/// How to read an element's value back.
#[derive(Clone, Copy)]
enum Values<'a> {
    /// The key is the f32 bit pattern.
    Narrow,
    /// The key is a rank; the value is `vals[slot]`.
    Wide(&'a [f64]),
}

impl Values<'_> {
    /// Encodes the values (indexed by slot) as elements, in the order
    /// given by `slots`.
    fn elements(vals: &[f64], slots: impl Iterator<Item = u32>) -> (Values<'_>, Vec<u64>) {
        if fits_f32(vals) {
            let e = slots
                .map(|s| ((f32_key(vals[s as usize] as f32) as u64) << 32) | s as u64)
                .collect();
            (Values::Narrow, e)
        } else {
            let mut by_value: Vec<(u64, u32)> = (0..vals.len() as u32)
                .map(|s| (f64_key(vals[s as usize]), s))
                .collect();
            by_value.sort_unstable();
            let mut rank = vec![0u32; vals.len()];
            for (r, &(_, s)) in by_value.iter().enumerate() {
                rank[s as usize] = r as u32;
            }
            let e = slots
                .map(|s| ((rank[s as usize] as u64) << 32) | s as u64)
                .collect();
            (Values::Wide(vals), e)
        }
    }

    #[inline]
    fn get(self, e: u64) -> f64 {
        match self {
            Values::Narrow => sort::f32_unkey((e >> 32) as u32) as f64,
            Values::Wide(v) => v[e as u32 as usize],
        }
    }

    /// acc[j] += value(row[j]), returning min(acc) afterwards.
    fn accumulate(self, acc: &mut [f64], row: &[u64]) -> f64 {
        let mut min = f64::INFINITY;
        match self {
            Values::Narrow => {
                for (a, &e) in acc.iter_mut().zip(row) {
                    *a += sort::f32_unkey((e >> 32) as u32) as f64;
                    min = if *a < min { *a } else { min };
                }
            }
            Values::Wide(_) => {
                for (a, &e) in acc.iter_mut().zip(row) {
                    *a += self.get(e);
                    min = if *a < min { *a } else { min };
                }
            }
        }
        min
    }
}

/// Strength of a row-major matrix of elements.
fn strength_of(elems: &[u64], rows: usize, cols: usize, values: Values) -> Strength {
    let mut row = vec![0f64; rows];
    let mut col = vec![0f64; cols];
    for (i, r) in elems.chunks_exact(cols.max(1)).enumerate().take(rows) {
        let mut s = 0.0;
        for (c, &e) in col.iter_mut().zip(r) {
            let v = values.get(e);
            s += v;
            *c += v;
        }
        row[i] = s;
    }
    Strength {
        row_std: std_dev(&row),
        col_std: std_dev(&col),
    }
}

/// An Exp(1) draw from 32 random bits: -ln(u), u = (x + 1/2) / 2^32, so
/// u lies strictly inside (0, 1) and the draw is positive and finite. The
/// logarithm is computed in f64 by the textbook reduction (u = z 2^k with z
/// near 1, ln z = 2 atanh(s), s = (z - 1) / (z + 1)); its relative error,
/// about 1e-11, is far below the f32 rounding of the keys it feeds. Only
/// basic IEEE operations are used, so the result is the same bits on every
/// machine, and the loop over a row vectorises (unlike rand_distr's
/// ziggurat, which also consumed 64 bits per draw).
#[inline]
fn exp1_from_bits(x: u32) -> f64 {
    let u = (x as f64 + 0.5) * (1.0 / 4_294_967_296.0);
    // Split u = z * 2^k with z in [0.707, 1.414) (musl's log reduction).
    const OFF: u64 = 0x3fe6_9555_0000_0000;
    let ix = u.to_bits();
    let tmp = ix.wrapping_sub(OFF);
    let k = ((tmp >> 32) as i32 >> 20) as f64;
    let z = f64::from_bits(ix.wrapping_sub(tmp & (0xfff << 52)));
    let f = z - 1.0;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let poly = s2
        * (2.0 / 3.0 + s2 * (2.0 / 5.0 + s2 * (2.0 / 7.0 + s2 * (2.0 / 9.0 + s2 * (2.0 / 11.0)))));
    let ln_z = 2.0 * s + s * poly;
    -(k * std::f64::consts::LN_2 + ln_z)
}

/// The Exp(1) draws of row `k` of pass `pass_no`. Each row has its own
/// ChaCha8 stream (the tensor's seed, stream number = pass and row), so the
/// draws are the same whichever thread produces them and in whatever order.
fn draw_row(seed: &[u8; 32], pass_no: u64, k: usize, bits: &mut Vec<u32>, out: &mut [f64]) {
    let mut rng = ChaCha8Rng::from_seed(*seed);
    rng.set_stream((pass_no << 40) | k as u64);
    bits.clear();
    bits.resize(out.len(), 0);
    rng.fill(&mut bits[..]);
    for (e, &x) in out.iter_mut().zip(bits.iter()) {
        *e = exp1_from_bits(x);
    }
}

/// Buffers reused across rows and passes.
#[derive(Default)]
pub struct Workspace {
    acc: Vec<f64>,
    order: Vec<u64>,
    /// Elements: the matrix, and the other side of each pass / transpose.
    a: Vec<u64>,
    b: Vec<u64>,
    /// Exp(1) draws of the chunk being consumed and of the one prepared.
    exps: [Vec<f64>; 2],
    bits: Vec<u32>,
    scratch: [Scratch; 2],
}

/// Rows are processed in chunks of about this many elements: while one
/// thread runs the sequential part on a chunk, another prepares the next.
const CHUNK: usize = 1 << 14;

/// Work of a pass that does not depend on the accumulated strength: sort
/// each row's elements ascending (in place) and draw its Exp(1) numbers.
/// `first` is the index of the chunk's first row.
#[allow(clippy::too_many_arguments)]
fn prepare(
    rows: &mut [u64],
    first: usize,
    cols: usize,
    draws: Option<(&[u8; 32], u64)>,
    exps: &mut Vec<f64>,
    bits: &mut Vec<u32>,
    scratch: &mut Scratch,
) {
    exps.clear();
    exps.resize(rows.len(), 0.0);
    for (i, (row, e)) in rows
        .chunks_exact_mut(cols)
        .zip(exps.chunks_exact_mut(cols))
        .enumerate()
    {
        let k = first + i;
        if k == 0 {
            // Row 0 is never changed, so it is neither sorted nor drawn.
            continue;
        }
        sort_packed(row, scratch);
        if let Some((seed, pass_no)) = draws {
            draw_row(seed, pass_no, k, bits, e);
        }
    }
}

/// The sequential part of a pass over rows `first..` given in `sorted`
/// (prepared): column order from the accumulated strength, then row k of
/// `out` gets its ascending elements in that order. `out` holds the whole
/// result, rows before `first` already final.
#[allow(clippy::too_many_arguments)]
fn consume(
    sorted: &[u64],
    first: usize,
    cols: usize,
    method: Method,
    exps: &[f64],
    values: Values,
    out: &mut [u64],
    acc: &mut [f64],
    order: &mut Vec<u64>,
    scratch: &mut Scratch,
) {
    for (i, srow) in sorted.chunks_exact(cols).enumerate() {
        let k = first + i;
        if k == 0 {
            out[..cols].copy_from_slice(srow);
            continue;
        }
        let (done, rest) = out.split_at_mut(k * cols);
        let min = values.accumulate(acc, &done[(k - 1) * cols..]);
        order.clear();
        match method {
            Method::Pa => {
                // p_j = acc_j + |min(acc)| + 1 >= 1. Efraimidis-Spirakis:
                // ascending E_j / p_j, E_j ~ Exp(1), is weighted sampling
                // without replacement. Keys are positive, so their f32
                // order key is the bit pattern with the sign bit set.
                let shift = min.abs() + 1.0;
                let e = &exps[i * cols..(i + 1) * cols];
                order.extend(acc.iter().zip(e).enumerate().map(|(j, (&a, &e))| {
                    let key = (e / (a + shift)) as f32;
                    ((f32_key(key) as u64) << 32) | j as u64
                }));
                sort_packed(order, scratch);
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
                order.extend(keyed.into_iter().map(|(_, j)| j as u64));
            }
        }
        // The m-th smallest element goes to the m-th drawn column.
        let dst = &mut rest[..cols];
        for (&j, &e) in order.iter().zip(srow) {
            // SAFETY: the low half of every word of `order` is a distinct
            // column index below cols = dst.len().
            unsafe { *dst.get_unchecked_mut(j as u32 as usize) = e };
        }
    }
}

/// One pass over the row-major `rows x cols` matrix of elements in `a`;
/// the result goes to `b` (`a` is left with its rows sorted).
#[allow(clippy::too_many_arguments)]
fn pass_elements(
    a: &mut [u64],
    b: &mut Vec<u64>,
    rows: usize,
    cols: usize,
    method: Method,
    seed: &[u8; 32],
    pass_no: u64,
    values: Values,
    ws: &mut Workspace,
) {
    b.clear();
    b.extend_from_slice(a);
    if rows < 2 || cols < 2 {
        // A single column admits no rearrangement within a row; a single
        // row is row 0, which is never changed.
        return;
    }
    let draws = (method == Method::Pa).then_some((seed, pass_no));
    let chunk_rows = (CHUNK / cols).max(1);
    ws.acc.clear();
    ws.acc.resize(cols, 0.0);
    let Workspace {
        acc,
        order,
        exps,
        bits,
        scratch,
        ..
    } = ws;
    let [exps_now, exps_next] = exps;
    let [scr_now, scr_next] = scratch;
    let mut chunks: Vec<&mut [u64]> = a.chunks_mut(chunk_rows * cols).collect();
    prepare(chunks[0], 0, cols, draws, exps_now, bits, scr_next);
    for i in 0..chunks.len() {
        let first = i * chunk_rows;
        let (now, later) = chunks.split_at_mut(i + 1);
        let now: &[u64] = now[i];
        // The next chunk is prepared while this one is consumed: on the
        // other core when one is free, else after it on this one.
        rayon::join(
            || {
                consume(
                    now, first, cols, method, exps_now, values, b, acc, order, scr_now,
                )
            },
            || {
                if let Some(next) = later.first_mut() {
                    prepare(
                        next,
                        first + chunk_rows,
                        cols,
                        draws,
                        exps_next,
                        bits,
                        scr_next,
                    );
                }
            },
        );
        std::mem::swap(exps_now, exps_next);
    }
}

/// Blocked transpose of a row-major `rows x cols` matrix into `dst`.
fn transpose<T: Copy + Default>(src: &[T], rows: usize, cols: usize, dst: &mut Vec<T>) {
    assert_eq!(src.len(), rows * cols);
    dst.clear();
    dst.resize(src.len(), T::default());
    // Blocks of B x B keep both sides in cache for large matrices.
    const B: usize = 16;
    for i0 in (0..rows).step_by(B) {
        for j0 in (0..cols).step_by(B) {
            for i in i0..(i0 + B).min(rows) {
                let s = &src[i * cols + j0..i * cols + (j0 + B).min(cols)];
                for (dj, &x) in s.iter().enumerate() {
                    // SAFETY: j0 + dj < cols and i < rows.
                    unsafe { *dst.get_unchecked_mut((j0 + dj) * rows + i) = x };
                }
            }
        }
    }
}

/// PA rewiring of a row-major matrix of elements in `ws.a` (section 3);
/// the result is left in `ws.a`.
fn rewire_elements(
    rows: usize,
    cols: usize,
    opts: &Options,
    seed: &[u8; 32],
    values: Values,
    ws: &mut Workspace,
) {
    if opts.stabilize > 0 {
        let mut rng = ChaCha8Rng::from_seed(*seed);
        rng.set_stream(u64::MAX);
        let mut vals: Vec<f64> = ws.a.iter().map(|&e| values.get(e)).collect();
        let mut pos: Vec<u32> = (0..ws.a.len() as u32).collect();
        stabilize(&mut vals, &mut pos, rows, cols, opts.stabilize, &mut rng);
        ws.b.clear();
        ws.b.extend(pos.iter().map(|&p| ws.a[p as usize]));
        std::mem::swap(&mut ws.a, &mut ws.b);
    }
    let (mut a, mut b) = (std::mem::take(&mut ws.a), std::mem::take(&mut ws.b));
    pass_elements(&mut a, &mut b, rows, cols, opts.method, seed, 1, values, ws);
    transpose(&b, rows, cols, &mut a);
    pass_elements(&mut a, &mut b, cols, rows, opts.method, seed, 2, values, ws);
    transpose(&b, cols, rows, &mut a);
    ws.a = a;
    ws.b = b;
}

/// One pass (ALGORITHM.md section 2) over a row-major `rows x cols` matrix:
/// rows 1.. are rearranged, each within itself, so that columns with large
/// accumulated strength receive the small values. `idx` moves with `vals`.
/// `seed` and `pass_no` select the random streams (see [`draw_row`]).
#[allow(clippy::too_many_arguments)]
pub fn pass(
    vals: &mut [f64],
    idx: &mut [u32],
    rows: usize,
    cols: usize,
    method: Method,
    seed: &[u8; 32],
    pass_no: u64,
    ws: &mut Workspace,
) {
    assert_eq!(vals.len(), rows * cols);
    assert_eq!(idx.len(), rows * cols);
    let orig_v = vals.to_vec();
    let orig_i = idx.to_vec();
    let (values, mut a) = Values::elements(&orig_v, 0..vals.len() as u32);
    let mut b = std::mem::take(&mut ws.b);
    pass_elements(
        &mut a, &mut b, rows, cols, method, seed, pass_no, values, ws,
    );
    for ((v, i), &e) in vals.iter_mut().zip(idx.iter_mut()).zip(&b) {
        *v = orig_v[e as u32 as usize];
        *i = orig_i[e as u32 as usize];
    }
    ws.b = b;
}

/// PA rewiring of a row-major matrix (ALGORITHM.md section 3): a pass over
/// the rows, then a pass over the columns of the result.
pub fn pa_rewire(
    vals: &mut [f64],
    idx: &mut [u32],
    rows: usize,
    cols: usize,
    opts: &Options,
    seed: &[u8; 32],
    ws: &mut Workspace,
) {
    assert_eq!(vals.len(), rows * cols);
    assert_eq!(idx.len(), rows * cols);
    let orig_v = vals.to_vec();
    let orig_i = idx.to_vec();
    let (values, a) = Values::elements(&orig_v, 0..vals.len() as u32);
    ws.a = a;
    rewire_elements(rows, cols, opts, seed, values, ws);
    for ((v, i), &e) in vals.iter_mut().zip(idx.iter_mut()).zip(&ws.a) {
        *v = orig_v[e as u32 as usize];
        *i = orig_i[e as u32 as usize];
    }
}

/// The stabilization analogue (ALGORITHM.md section 4): `k` uniform
/// shuffles of all values, keeping the one with the lowest mean of row- and
/// column-strength variance.
pub fn stabilize(
    vals: &mut [f64],
    idx: &mut [u32],
    rows: usize,
    cols: usize,
    k: u32,
    rng: &mut ChaCha8Rng,
) {
    let n = vals.len();
    let mut best: Option<(f64, Vec<f64>, Vec<u32>)> = None;
    let mut cand_v = vals.to_vec();
    let mut cand_i = idx.to_vec();
    for _ in 0..k {
        for i in (1..n).rev() {
            let j = rng.random_range(0..=i);
            cand_v.swap(i, j);
            cand_i.swap(i, j);
        }
        let s = strength(&cand_v, rows, cols);
        let score = (s.row_std * s.row_std + s.col_std * s.col_std) / 2.0;
        if best.as_ref().is_none_or(|(b, _, _)| score < *b) {
            best = Some((score, cand_v.clone(), cand_i.clone()));
        }
    }
    if let Some((_, v, i)) = best {
        vals.copy_from_slice(&v);
        idx.copy_from_slice(&i);
    }
}

/// The result of rewiring one tensor.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `perm[s]` is the storage index whose value goes to storage index `s`.
    pub perm: Vec<u32>,
    pub before: Strength,
    pub after: Strength,
}

/// Rewires one tensor given its values in storage order, its dims, and the
/// axes of its matrix view (see [`view_index`]). `key` identifies the
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
    let map = view_index(dims, axes);
    // Elements carry their storage index, so the result is the permutation.
    let (vals, a) = Values::elements(values, map.iter().copied());
    let before = strength_of(&a, rows, cols, vals);
    let seed = tensor_seed(opts.seed, key);
    let mut ws = Workspace {
        a,
        ..Default::default()
    };
    rewire_elements(rows, cols, opts, &seed, vals, &mut ws);
    let after = strength_of(&ws.a, rows, cols, vals);
    let mut perm = vec![0u32; values.len()];
    for (&dst, &e) in map.iter().zip(&ws.a) {
        perm[dst as usize] = e as u32;
    }
    Outcome {
        perm,
        before,
        after,
    }
}
