//! What a rewiring run did, for people (a summary) and for machines (JSON).

use serde::{Deserialize, Serialize};

use crate::plan::Skipped;
use crate::rewire::{Method, Strength};

/// A file and its SHA-256.
#[derive(Debug, Clone, Serialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One rewired tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    pub op: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    pub rows: u64,
    pub cols: u64,
    pub transposed: bool,
    pub before: Strength,
    pub after: Strength,
}

/// Strength variance summed over all rewired tensors.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
pub struct Totals {
    /// Sum over tensors of the mean of row- and column-strength variance.
    pub variance_before: f64,
    pub variance_after: f64,
    /// 1 - after / before, as a percentage.
    pub reduction_percent: f64,
}

/// The full account of a run of `rewire`.
#[derive(Debug, Clone, Serialize)]
pub struct RewireReport {
    pub pa_onnx_version: String,
    pub seed: u64,
    pub method: Method,
    pub stabilize: u32,
    pub dry_run: bool,
    pub input: FileInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<FileInfo>,
    pub tensors: Vec<TensorReport>,
    pub skipped: Vec<Skipped>,
    pub totals: Totals,
}

impl Totals {
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

/// SHA-256 of bytes, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
