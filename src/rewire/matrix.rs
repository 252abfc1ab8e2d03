//! The order of one matrix's rewiring (docs/algorithm.md sections 3 and
//! 4): stabilization when asked, pass 1 over the rows, pass 2 over the
//! columns of the result, the transposes between them, and the strengths
//! before and after, taken from the passes' own sums where it can. The
//! entry points and the f64 reference both run it, so that the tests hold
//! the fast path against the same sequence of steps.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::handoff::transpose;
use super::keys::Values;
use super::options::{Layout, Options};
use super::pass::pass_keys;
use super::strength::{std_dev, strength_by, Strength};
use super::transpose::decode_f32;
use super::workspace::Workspace;

/// PA rewiring (section 3, with stabilization first when asked) of the
/// `rows x cols` matrix of keys in `keys`, laid out as `layout`, in place;
/// with `decode`, f32 keys end as their elements' bits. Returns the
/// strengths before (`known`, where they are) and after.
///
/// Pass 2 runs on the transpose, so a row-major matrix is transposed twice
/// and a column-major one only once: its first transpose makes the rows
/// pass 1 needs, and pass 2's result is already in its layout.
#[allow(clippy::too_many_arguments)]
pub(super) fn rewire_matrix(
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

/// Stabilization (docs/algorithm.md section 4) of any items read as values
/// by `value`: `k` uniform shuffles of `items`, keeping the one whose
/// strengths have the lowest [`Strength::mean_variance`].
pub(super) fn stabilize_by<T: Copy + Sync>(
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
        let score = s.mean_variance();
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, cand.clone()));
        }
    }
    if let Some((_, v)) = best {
        items.copy_from_slice(&v);
    }
}
