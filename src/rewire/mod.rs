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
use rand_distr::{Distribution, Exp1};
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

/// The random stream of one tensor: ChaCha8 keyed by SHA-256 of the user
/// seed and the tensor's stable key, so a tensor's result depends on
/// nothing else (not thread count, not processing order, not which other
/// tensors are selected).
pub fn tensor_rng(seed: u64, key: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"pa-onnx/rewire/v1\0");
    h.update(seed.to_le_bytes());
    h.update(key.as_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
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

/// Whether the matrix's values fit f32 exactly (then sorting uses 32-bit
/// keys, which the radix sort handles in three passes).
fn fits_f32(vals: &[f64]) -> bool {
    vals.iter().all(|&v| (v as f32) as f64 == v || v.is_nan())
}

/// Buffers reused across rows and passes.
#[derive(Default)]
pub struct Workspace {
    acc: Vec<f64>,
    order: Vec<u64>,
    sorted: Vec<u64>,
    row_vals: Vec<f64>,
    row_idx: Vec<u32>,
    scratch: Scratch,
    tvals: Vec<f64>,
    tidx: Vec<u32>,
}

/// One pass (ALGORITHM.md section 2) over a row-major `rows x cols` matrix:
/// rows 1.. are rearranged, each within itself, so that columns with large
/// accumulated strength receive the small values. `idx` moves with `vals`.
#[allow(clippy::too_many_arguments)]
pub fn pass(
    vals: &mut [f64],
    idx: &mut [u32],
    rows: usize,
    cols: usize,
    method: Method,
    narrow: bool,
    rng: &mut ChaCha8Rng,
    ws: &mut Workspace,
) {
    assert_eq!(vals.len(), rows * cols);
    assert_eq!(idx.len(), rows * cols);
    if rows < 2 || cols < 2 {
        // A single column admits no rearrangement within a row; a single
        // row is row 0, which is never changed.
        return;
    }
    ws.acc.clear();
    ws.acc.resize(cols, 0.0);
    for k in 1..rows {
        let prev = &vals[(k - 1) * cols..k * cols];
        for (a, &v) in ws.acc.iter_mut().zip(prev) {
            *a += v;
        }
        // Column order: drawn (stochastic) or by strength (deterministic),
        // most-preferred first.
        ws.order.clear();
        match method {
            Method::Pa => {
                let min = ws.acc.iter().copied().fold(f64::INFINITY, f64::min);
                let shift = min.abs() + 1.0;
                // Efraimidis-Spirakis: ascending E_j / p_j, E_j ~ Exp(1),
                // is weighted sampling without replacement.
                for (j, &a) in ws.acc.iter().enumerate() {
                    let e: f64 = Exp1.sample(rng);
                    let key = (e / (a + shift)) as f32;
                    ws.order.push(((f32_key(key) as u64) << 32) | j as u64);
                }
                sort_packed(&mut ws.order, &mut ws.scratch);
            }
            Method::Deterministic => {
                // Strongest column first, so that ascending values give the
                // largest value to the weakest column.
                let mut keyed: Vec<(u64, u32)> = ws
                    .acc
                    .iter()
                    .enumerate()
                    .map(|(j, &a)| (!f64_key(a), j as u32))
                    .collect();
                keyed.sort_unstable();
                ws.order.extend(keyed.into_iter().map(|(_, j)| j as u64));
            }
        }
        // The row's own values, ascending.
        let row = k * cols..(k + 1) * cols;
        ws.row_vals.clear();
        ws.row_vals.extend_from_slice(&vals[row.clone()]);
        ws.row_idx.clear();
        ws.row_idx.extend_from_slice(&idx[row.clone()]);
        ws.sorted.clear();
        if narrow {
            for (j, &v) in ws.row_vals.iter().enumerate() {
                ws.sorted.push(((f32_key(v as f32) as u64) << 32) | j as u64);
            }
            sort_packed(&mut ws.sorted, &mut ws.scratch);
        } else {
            let mut keyed: Vec<(u64, u32)> = ws
                .row_vals
                .iter()
                .enumerate()
                .map(|(j, &v)| (f64_key(v), j as u32))
                .collect();
            keyed.sort_unstable();
            ws.sorted.extend(keyed.into_iter().map(|(_, j)| j as u64));
        }
        let (rv, ri) = (&mut vals[row.clone()], &mut idx[row]);
        for (&dst, &src) in ws.order.iter().zip(&ws.sorted) {
            let (dst, src) = (dst as u32 as usize, src as u32 as usize);
            rv[dst] = ws.row_vals[src];
            ri[dst] = ws.row_idx[src];
        }
    }
}

fn transpose<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut Vec<T>) {
    dst.clear();
    dst.reserve(src.len());
    // Blocked, so both sides stay in cache for large matrices.
    const B: usize = 32;
    // SAFETY-free version: fill then overwrite.
    dst.extend_from_slice(src);
    for i0 in (0..rows).step_by(B) {
        for j0 in (0..cols).step_by(B) {
            for i in i0..(i0 + B).min(rows) {
                for j in j0..(j0 + B).min(cols) {
                    dst[j * rows + i] = src[i * cols + j];
                }
            }
        }
    }
}

/// PA rewiring of a row-major matrix (ALGORITHM.md section 3): a pass over
/// the rows, then a pass over the columns of the result.
pub fn pa_rewire(
    vals: &mut [f64],
    idx: &mut [u32],
    rows: usize,
    cols: usize,
    opts: &Options,
    rng: &mut ChaCha8Rng,
    ws: &mut Workspace,
) {
    let narrow = fits_f32(vals);
    if opts.stabilize > 0 {
        stabilize(vals, idx, rows, cols, opts.stabilize, rng);
    }
    pass(vals, idx, rows, cols, opts.method, narrow, rng, ws);
    let (mut tv, mut ti) = (std::mem::take(&mut ws.tvals), std::mem::take(&mut ws.tidx));
    transpose(vals, rows, cols, &mut tv);
    transpose(idx, rows, cols, &mut ti);
    pass(&mut tv, &mut ti, cols, rows, opts.method, narrow, rng, ws);
    let mut back_v = Vec::new();
    let mut back_i = Vec::new();
    transpose(&tv, cols, rows, &mut back_v);
    transpose(&ti, cols, rows, &mut back_i);
    vals.copy_from_slice(&back_v);
    idx.copy_from_slice(&back_i);
    ws.tvals = tv;
    ws.tidx = ti;
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
pub fn rewire_values(values: &[f64], dims: &[u64], axes: &[usize], key: &str, opts: &Options) -> Outcome {
    let rows = dims.get(axes[0]).copied().unwrap_or(1) as usize;
    let cols = if rows == 0 { 0 } else { values.len() / rows };
    let map = view_index(dims, axes);
    let mut vals: Vec<f64> = map.iter().map(|&s| values[s as usize]).collect();
    let mut idx = map.clone();
    let before = strength(&vals, rows, cols);
    let mut rng = tensor_rng(opts.seed, key);
    let mut ws = Workspace::default();
    pa_rewire(&mut vals, &mut idx, rows, cols, opts, &mut rng, &mut ws);
    let after = strength(&vals, rows, cols);
    let mut perm = vec![0u32; values.len()];
    for (&dst, &src) in map.iter().zip(&idx) {
        perm[dst as usize] = src;
    }
    Outcome { perm, before, after }
}
