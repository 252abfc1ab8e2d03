//! Proving that a candidate model is a permutation of an original: by
//! structure ([`structure`]) and by running both ([`inference`]).
//!
//! `pa-onnx verify` and `pa-onnx rewire --verify` ask the same question, so
//! they run the same steps through [`verify_files`] and print the same
//! [`VerifyReport`]: one flow, one verdict, one text.

pub mod inference;
pub mod structure;
mod ties;

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::backend::BackendKind;
use crate::error::Result;
use crate::plan::Tied;
use inference::{InferenceOptions, InferenceReport};
use structure::StructureReport;

/// What to verify beyond the structural proof.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Backends to run both models on. Inference runs only when this or
    /// [`InferenceOptions::require`] names a backend.
    pub backends: Vec<BackendKind>,
    /// How to feed, run and compare the models.
    pub inference: InferenceOptions,
    /// Whether tied groups must stay tied ([`Tied::Skip`]: not checked).
    pub tied: Tied,
}

/// The structural proof, and the inference check when one ran.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Whether each tensor is a permutation of the original's.
    pub structure: StructureReport,
    /// Both models run on the backends, when any were asked for.
    pub inference: Option<InferenceReport>,
}

impl VerifyReport {
    /// True when the structural proof holds and the inference check, if it
    /// ran, passed.
    pub fn passed(&self) -> bool {
        self.structure.passed() && self.inference.as_ref().is_none_or(|r| r.passed())
    }
}

/// The JSON of `verify --json`: `{"passed", "structure", "inference"?}`.
impl Serialize for VerifyReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            passed: bool,
            structure: &'a StructureReport,
            #[serde(skip_serializing_if = "Option::is_none")]
            inference: Option<&'a InferenceReport>,
        }
        Json {
            passed: self.passed(),
            structure: &self.structure,
            inference: self.inference.as_ref(),
        }
        .serialize(serializer)
    }
}

/// The text of `verify`: the structural summary, then each backend's lines
/// and the inference verdict (no newline after the last line).
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.structure)?;
        if let Some(r) = &self.inference {
            write!(f, "\n\ninference:\n{r}\n")?;
            f.write_str(if r.passed() {
                "inference: PASSED"
            } else {
                "inference: FAILED"
            })?;
        }
        Ok(())
    }
}

/// Proves that `candidate` is `original` with each tensor's values
/// permuted, then runs both on the backends `opts` names. A file that
/// cannot be read is an error; a check that fails is a report that did not
/// pass.
pub fn verify_files(
    original: &Path,
    candidate: &Path,
    opts: &VerifyOptions,
) -> Result<VerifyReport> {
    let structure = structure::compare_files_with(original, candidate, opts.tied)?;
    let inference = (!opts.backends.is_empty() || !opts.inference.require.is_empty()).then(|| {
        inference::compare_rewired(
            original,
            candidate,
            &structure.permuted,
            &opts.backends,
            &opts.inference,
        )
    });
    Ok(VerifyReport {
        structure,
        inference,
    })
}
