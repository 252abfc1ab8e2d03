//! Verifying a rewired model by running it.
//!
//! Structural checks prove that only weights moved; they cannot prove that
//! the result still works in the engines people deploy with. This module
//! feeds the original and the rewired (candidate) model the same inputs on
//! every requested backend and checks that both run, that the outputs keep
//! their names, shapes and types and stay finite, that the rewiring changed
//! them (it is supposed to), and that the backends agree with each other on
//! the candidate. A backend that is missing or cannot handle the model is
//! reported as skipped, with the reason, never as passed.
//!
//! Inputs are random but reproducible (ChaCha8, one stream per input name),
//! or read from a `.npz` file written by `numpy.savez`.

mod check;
mod inputs;
mod options;
mod report;
mod tolerance;

use std::path::Path;

use crate::backend::BackendKind;
use check::Reference;

pub use options::InferenceOptions;
pub use report::{BackendReport, InferenceReport, InputSummary, OutputReport, Status};

/// Runs `original` and `candidate` on each backend (plus any required one
/// not listed) and checks them as described in the module documentation.
pub fn compare_models(
    original: &Path,
    candidate: &Path,
    backends: &[BackendKind],
    opts: &InferenceOptions,
) -> InferenceReport {
    let mut report = InferenceReport {
        original: original.to_path_buf(),
        candidate: candidate.to_path_buf(),
        seed: opts.seed,
        atol: opts.atol,
        rtol: opts.rtol,
        reference: None,
        inputs: Vec::new(),
        backends: Vec::new(),
        error: None,
    };

    let mut backend_opts = opts.backend.clone();
    let user_inputs = match &opts.inputs {
        Some(path) => match inputs::read_inputs(path) {
            Ok(arrays) => {
                // Backends that pin shapes at load time must pin the given ones.
                for (name, t) in &arrays {
                    backend_opts
                        .input_shapes
                        .insert(name.clone(), t.shape.clone());
                }
                Some(arrays)
            }
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        },
        None => None,
    };

    let mut kinds: Vec<BackendKind> = Vec::new();
    for &k in backends.iter().chain(&opts.require) {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }

    let mut feed = None;
    let mut reference: Option<Reference> = None;
    for kind in kinds {
        let required = opts.require.contains(&kind);
        let (backend_report, outputs) = check::check_backend(
            kind,
            required,
            original,
            candidate,
            opts,
            &backend_opts,
            user_inputs.as_deref(),
            &mut feed,
            &mut report,
            reference.as_ref(),
        );
        if report.error.is_some() {
            return report;
        }
        if reference.is_none() {
            if let Some((original, candidate)) = outputs {
                reference = Some(Reference {
                    kind,
                    original,
                    candidate,
                });
                report.reference = Some(kind);
            }
        }
        report.backends.push(backend_report);
    }
    report
}
