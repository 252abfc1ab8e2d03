//! The settings of a rewiring run, and the layout of the keys a caller
//! hands in: what the entry points, a matrix's rewiring and a pass all
//! read, kept apart from the entry points so that those steps do not
//! depend on the functions that call them.

use serde::{Deserialize, Serialize};

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
    /// Which rule assigns a row's values to columns.
    pub method: Method,
    /// Number of uniform shuffles tried before PA (0: none).
    pub stabilize: u32,
    /// The user seed, from which each tensor's own seed is derived (see
    /// [`tensor_seed`](super::tensor_seed)).
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
