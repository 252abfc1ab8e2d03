//! One pass (docs/algorithm.md section 2): rows 1.. of a matrix
//! rearranged, each within itself, so that columns with large accumulated
//! strength receive the small values. Row k's arrangement depends on the
//! column sums of all rows before it, so this part runs on one thread, as
//! lean as it can be; everything that does not depend on the sums is done
//! ahead of it by a helper (see `handoff.rs`).

use crate::sort::cpu::widest;
use crate::sort::{f64_key, order_columns, sort_keys};

use super::draws::key_bits_row;
use super::handoff::{self, fresh_words, transpose};
use super::keys::Values;
use super::options::Method;
use super::workspace::{Drawing, Workspace};

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
    // the report needs (see `rewire_matrix`).
    *low = accumulate(acc, dst, values);
    dr.row = row;
}

/// The m-th smallest key of `srow` goes to the column in the low half of
/// the m-th word of `order`.
fn scatter(order: &[u64], srow: &[u32], dst: &mut [u32]) {
    for (&j, &x) in order.iter().zip(srow) {
        dst[j as u32 as usize] = x;
    }
}

/// One pass over the row-major `rows x cols` matrix of keys in `a`, in
/// place: each row's result replaces it once it is read, so that the
/// sequential thread takes no page faults of a second buffer (the
/// transposed copy below takes them, mostly on the helper).
///
/// With `out`, the result is also written transposed there (decoded or
/// not), band by band as its rows are finished, rather than in a transpose
/// after the pass that would keep both cores busy for its whole length.
#[allow(clippy::too_many_arguments)]
pub(super) fn pass_keys(
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
    let out = out.map(|(t, decode)| {
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
    handoff::run(a, cols, exps, draws, out, |ahead| {
        let (row0, _) = ahead.get(0, bits, vscratch);
        let mut low = accumulate(acc, row0, values);
        ahead.done(0);
        for k in 1..rows {
            let (srow, e) = ahead.get(k, bits, vscratch);
            consume_row(srow, e, method, values, acc, &mut low, drawing);
            ahead.put(k, &drawing.row);
            ahead.done(k);
        }
    });
}
