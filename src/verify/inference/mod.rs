//! Verifying a rewired model by running it.
//!
//! Structural checks prove that only weights moved; they cannot prove that
//! the result still works in the engines people deploy with. This module
//! feeds the original and the rewired (candidate) model the same inputs on
//! every requested backend and checks that both run, that the outputs keep
//! their names, shapes and types and stay finite, that the rewiring changed
//! something (it is supposed to), and that the backends agree with each
//! other on the candidate. A backend that is missing or cannot handle the
//! model is reported as skipped, with the reason, never as passed.
//!
//! Where the rewired tensors are known, both models run as probe copies
//! ([`probe`]) that also return the outputs of the layers reading them:
//! the change must show there or in the outputs, since an untrained
//! model's outputs are often blind to its weights. The layers' outputs are
//! checked like the outputs, across backends too.
//!
//! Inputs are random but reproducible (ChaCha8, one stream per input name),
//! or read from a `.npz` file written by `numpy.savez`.

mod check;
mod inputs;
mod options;
mod probe;
mod report;
mod tolerance;

use std::path::Path;

use crate::backend::BackendKind;
use check::{Models, Reference};

pub use options::InferenceOptions;
pub use report::{BackendReport, InferenceReport, InputSummary, OutputReport, ProbeReport, Status};

/// Runs `original` and `candidate` on each backend (plus any required one
/// not listed) and checks them as described in the module documentation,
/// comparing the outputs only: a change must show there.
pub fn compare_models(
    original: &Path,
    candidate: &Path,
    backends: &[BackendKind],
    opts: &InferenceOptions,
) -> InferenceReport {
    compare_rewired(original, candidate, &[], backends, opts)
}

/// [`compare_models`] that also compares the outputs of the layers reading
/// the tensors named in `rewired` (the ones the structural proof found
/// permuted); a change in one of them is enough for the effect check.
pub fn compare_rewired(
    original: &Path,
    candidate: &Path,
    rewired: &[String],
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
        notes: Vec::new(),
    };

    let probe = if rewired.is_empty() {
        None
    } else {
        match probe::build(original, candidate, rewired) {
            Ok(p) => p,
            Err(e) => {
                report
                    .notes
                    .push(format!("the rewired layers cannot be probed: {e}"));
                None
            }
        }
    };
    if let Some(p) = &probe {
        report.notes.extend(p.unprobed.iter().cloned());
    }
    let models = Models {
        original,
        candidate,
        probe: probe.as_ref(),
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
            &models,
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
