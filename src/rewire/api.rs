//! What callers of the rewiring call: one tensor rewired from its f64
//! values, from its order keys, or straight from the little-endian bytes
//! of an f32 payload (the form nearly every
//! weight has, which skips a copy and a sweep). Each entry point seeds the
//! tensor's random streams, takes buffers from the run's spares, and runs
//! the same matrix rewiring inside the thread pool.

use super::draws::tensor_seed;
use super::keys::Keys;
use super::matrix::rewire_matrix;
use super::options::{Layout, Options};
use super::strength::Strength;
use super::view::ViewIndices;
use super::workspace::Spares;
use crate::onnx::DataType;

/// The result of rewiring one tensor.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The rewired values, in storage order.
    pub values: Vec<f64>,
    /// The strengths of the matrix view before rewiring.
    pub before: Strength,
    /// The strengths after.
    pub after: Strength,
}

/// Rewires one tensor given its values in storage order, its dims, and the
/// axes of its matrix view (see [`view_index`](super::view_index)). `key`
/// identifies the tensor for its random stream.
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
    let mut keys = Keys::encode(DataType::Double, view.clone().map(|s| values[s].to_bits()));
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

/// Rewires the keys of a tensor's matrix view (row-major, `rows x cols`) in
/// place, returning the strengths before and after. This is the whole job
/// of one tensor; `key` identifies it for its random streams.
pub(crate) fn rewire_keys(
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
pub(crate) fn rewire_keys_in(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewire::handoff::transpose;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
}
