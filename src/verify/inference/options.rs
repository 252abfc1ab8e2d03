//! The knobs of inference verification, with the defaults the CLI documents.
//!
//! They live apart from the checks so that the checks, the input makers and
//! the callers (the CLI, `verify_files`) share one definition and one set of
//! defaults.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::backend::{BackendKind, BackendOptions};

/// How to compare; [`Default`] gives the documented defaults.
#[derive(Debug, Clone)]
pub struct InferenceOptions {
    /// Library location, input shapes, threads.
    pub backend: BackendOptions,
    /// Seed for the random inputs.
    pub seed: u64,
    /// Absolute tolerance between backends (default 1e-4).
    pub atol: f64,
    /// Relative tolerance between backends (default 1e-3).
    pub rtol: f64,
    /// Per-output `(atol, rtol)` overrides, by output name.
    pub tolerances: HashMap<String, (f64, f64)>,
    /// Inputs from a `.npz` file instead of random ones.
    pub inputs: Option<PathBuf>,
    /// Require the candidate's outputs to differ from the original's beyond
    /// tolerance on at least one output (default true: a rewiring that
    /// changes nothing did not happen). False skips that check.
    pub expect_change: bool,
    /// Backends that must run: skipping one of these is a failure.
    pub require: Vec<BackendKind>,
}

impl Default for InferenceOptions {
    fn default() -> Self {
        InferenceOptions {
            backend: BackendOptions::default(),
            seed: 0,
            atol: 1e-4,
            rtol: 1e-3,
            tolerances: HashMap::new(),
            inputs: None,
            expect_change: true,
            require: Vec::new(),
        }
    }
}

impl InferenceOptions {
    /// The `(atol, rtol)` that applies to one output.
    pub(super) fn tolerance(&self, output: &str) -> (f64, f64) {
        self.tolerances
            .get(output)
            .copied()
            .unwrap_or((self.atol, self.rtol))
    }
}
