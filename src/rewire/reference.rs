//! The method on plain f64 slices (docs/algorithm.md sections 2 to 4): one
//! pass, PA rewiring, stabilization. The tool itself rewires keys made
//! from a payload's bytes; these functions state the same steps on values,
//! so that the integration tests can hold the method to its invariants and
//! to the paper's figures.

use rand_chacha::ChaCha8Rng;

use super::keys::Keys;
use super::matrix::{rewire_matrix, stabilize_by};
use super::options::{Layout, Method, Options};
use super::pass::pass_keys;
use super::workspace::Workspace;
use crate::onnx::DataType;

/// Keys of f64 values, and the way back.
fn f64_keys(vals: &[f64]) -> Keys {
    Keys::encode(DataType::Double, vals.iter().map(|v| v.to_bits()))
}

/// The elements' bits of `keys`, as f64s, into `vals`.
fn write_back(keys: &Keys, vals: &mut [f64]) {
    keys.for_each_bits(|i, b| vals[i] = f64::from_bits(b));
}

/// One pass (docs/algorithm.md section 2) over a row-major `rows x cols` matrix:
/// rows 1.. are rearranged, each within itself, so that columns with large
/// accumulated strength receive the small values. `seed` and `pass_no`
/// select the random streams (see [`tensor_seed`](super::tensor_seed)).
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

/// PA rewiring of a row-major matrix (docs/algorithm.md section 3): a pass over
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

/// The stabilization analogue (docs/algorithm.md section 4): `k` uniform
/// shuffles of all values, keeping the one with the lowest mean of row- and
/// column-strength variance.
pub fn stabilize(vals: &mut [f64], rows: usize, cols: usize, k: u32, rng: &mut ChaCha8Rng) {
    stabilize_by(vals, rows, cols, k, rng, |&v| v);
}
