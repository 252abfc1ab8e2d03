//! Row and column strengths (the sums of a matrix's rows and of its
//! columns) and their spread, which rewiring lowers and the report shows
//! (docs/algorithm.md sections 1 and 6). Large matrices are summed on two
//! threads, always split the same way, so that the figures are the same
//! bits whatever the thread count.

use serde::{Deserialize, Serialize};

use crate::sort::cpu::avx2_or_baseline;

use super::PARALLEL_MIN;
pub(super) use crate::stats::std_dev;

/// Standard deviations (population, like numpy's default) of the row and
/// column strengths of a matrix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Strength {
    /// Standard deviation of the row sums.
    pub row_std: f64,
    /// Standard deviation of the column sums.
    pub col_std: f64,
}

impl Strength {
    /// The mean of the row- and column-strength variances,
    /// `(row_std² + col_std²) / 2`: the score stabilization keeps the
    /// lowest of, and the figure the report sums over tensors.
    pub fn mean_variance(&self) -> f64 {
        (self.row_std * self.row_std + self.col_std * self.col_std) / 2.0
    }
}

/// Row and column strength standard deviations of a row-major
/// `rows x cols` matrix of f64 values.
pub fn strength(vals: &[f64], rows: usize, cols: usize) -> Strength {
    strength_by(vals, rows, cols, |&v| v)
}

/// [`strength`] of any items read as values by `value`.
pub(super) fn strength_by<T: Sync>(
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
pub(super) fn sum_rows<S: Send>(
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

/// Row and column sums, compiled for AVX2 where the CPU allows it (the
/// same bits either way: see `widest` in the sort module).
pub(super) fn sums<T>(items: &[T], value: impl Fn(&T) -> f64, row: &mut [f64], col: &mut [f64]) {
    #[inline(always)]
    fn body<T>(items: &[T], value: impl Fn(&T) -> f64, row: &mut [f64], col: &mut [f64]) {
        for (s, r) in row.iter_mut().zip(items.chunks_exact(col.len().max(1))) {
            for (c, x) in col.iter_mut().zip(r) {
                *c += value(x);
            }
            *s = lane_sum(r, &value);
        }
    }
    avx2_or_baseline!(body<T>(
        items: &[T],
        value: impl Fn(&T) -> f64,
        row: &mut [f64],
        col: &mut [f64],
    ))
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
