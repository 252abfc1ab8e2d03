//! What a rewiring run did, for people (a summary) and for machines (JSON).

use serde::{Deserialize, Serialize};

use crate::plan::{Skipped, TieGroup};
use crate::rewire::{Method, Strength};

/// A file and its SHA-256.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    /// The path as given.
    pub path: String,
    /// Its SHA-256, when hashes were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One rewired tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    /// The tensor's name.
    pub name: String,
    /// The operator that reads it.
    pub op: String,
    /// The element type.
    pub dtype: crate::onnx::DataType,
    /// The stored shape.
    pub shape: Vec<u64>,
    /// Rows of the matrix view.
    pub rows: u64,
    /// Columns of the matrix view.
    pub cols: u64,
    /// Whether the view is not the stored layout read row-major.
    pub transposed: bool,
    /// Strength deviations before rewiring.
    pub before: Strength,
    /// Strength deviations after rewiring.
    pub after: Strength,
}

/// Strength variance summed over all rewired tensors.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct Totals {
    /// Sum over tensors of the mean of row- and column-strength variance.
    pub variance_before: f64,
    /// The same sum after rewiring.
    pub variance_after: f64,
    /// 1 - after / before, as a percentage.
    pub reduction_percent: f64,
}

/// The full account of a run of `rewire`.
#[derive(Debug, Clone, Serialize)]
pub struct RewireReport {
    /// The version of pa-onnx that made the run (a seed's bytes may differ between versions).
    pub pa_onnx_version: String,
    /// The user seed.
    pub seed: u64,
    /// The rewiring method.
    pub method: Method,
    /// Shuffles tried before rewiring (0: none).
    pub stabilize: u32,
    /// True when nothing was written.
    pub dry_run: bool,
    /// The input model.
    pub input: FileInfo,
    /// The output model (None on a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<FileInfo>,
    /// Each rewired tensor.
    pub tensors: Vec<TensorReport>,
    /// Each tensor left alone, with the reason.
    pub skipped: Vec<Skipped>,
    /// Tied groups: each rewired once, the same permutation written into
    /// every copy.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<TieGroup>,
    /// Variance summed over the rewired tensors.
    pub totals: Totals,
}

impl Totals {
    /// The totals of a run's tensors.
    pub fn from_tensors(tensors: &[TensorReport]) -> Totals {
        let var = |s: &Strength| s.mean_variance();
        let before: f64 = tensors.iter().map(|t| var(&t.before)).sum();
        let after: f64 = tensors.iter().map(|t| var(&t.after)).sum();
        Totals {
            variance_before: before,
            variance_after: after,
            reduction_percent: if before > 0.0 {
                100.0 * (1.0 - after / before)
            } else {
                0.0
            },
        }
    }
}
