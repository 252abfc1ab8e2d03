//! Preferential-attachment rewiring of one weight matrix (docs/algorithm.md
//! sections 2 to 5), as pure functions over values.
//!
//! The math never moves bytes of a file, and it never needs to know where a
//! value came from: equal keys are equal bit patterns, so a tensor is
//! rewired as a matrix of `u32` *keys*, one per element, whose integer order
//! is the order of the values (see `Keys`). Keys are half the size of an
//! f64 and sort as plain integers; mapping them back gives the elements'
//! original bits, so the result is a bitwise permutation whatever the
//! dtype. See DESIGN.md for the sampling trick and the variants.
//!
//! A tensor goes through the files in this order: `api.rs` (the entry
//! points) and `options.rs` (their settings), `view.rs` (which element is at row i,
//! column j), `keys.rs` (values as order keys), `matrix.rs` (the order of
//! one matrix's rewiring), `pass.rs` (one pass), `draws.rs` and
//! `chacha.rs` (its random numbers), `handoff.rs` (the second thread of a
//! pass), `transpose.rs` (between the passes), `strength.rs` (the figures
//! before and after). `workspace.rs` keeps the buffers from tensor to
//! tensor; `reference.rs` states the method on f64 slices, for the tests.
//! All of rewire's `unsafe` code is in `handoff.rs`, apart from the vector
//! kernels of `transpose.rs` and `chacha.rs`.

mod api;
mod chacha;
mod draws;
mod handoff;
mod keys;
mod matrix;
mod options;
mod pass;
mod reference;
mod strength;
mod transpose;
mod view;
mod workspace;

pub(crate) use api::rewire_keys_in;
pub use api::{rewire_f32_le, rewire_values, Outcome};
pub use draws::tensor_seed;
pub(crate) use keys::Keys;
pub use options::{Layout, Method, Options, DEFAULT_SEED};
pub use reference::{pa_rewire, pass, stabilize};
pub use strength::{strength, Strength};
pub use view::view_index;
pub(crate) use view::{storage_transpose, ViewIndices};
pub use workspace::{Spares, Workspace};

/// Matrices at least this large have their transposes and strength sums
/// split between threads.
const PARALLEL_MIN: usize = 1 << 16;
