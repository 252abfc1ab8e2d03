//! What inference verification found, in the form users read it: one line
//! per backend and per output as text, and the same facts as JSON.
//!
//! The checks fill these records as they go, so a skip or a failure keeps
//! its reason next to the backend it concerns, and a required backend that
//! was skipped is counted as failed in exactly one place.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::backend::BackendKind;

/// Outcome of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Both models ran and every check held.
    Passed,
    /// A check failed, or a required backend could not run.
    Failed,
    /// The backend could not run the models (missing, or cannot load the
    /// original); it proves nothing either way.
    Skipped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        })
    }
}

/// One input that was fed to the models.
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    /// The model's name for the input.
    pub name: String,
    /// The shape fed.
    pub shape: Vec<usize>,
    /// The element type fed (`f32`, `i64`, ...).
    pub dtype: String,
    /// `random` or `npz`.
    pub source: &'static str,
}

/// One output of the candidate on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    /// The output's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type (`f32`, `i64`, ...).
    pub dtype: String,
    /// Against the reference backend's candidate output (None on the reference).
    pub max_abs_err: Option<f64>,
    /// The largest relative error against the reference (None on the reference).
    pub max_rel_err: Option<f64>,
    /// The same comparison for the original model, to tell backend noise from rewiring trouble.
    pub original_max_abs_err: Option<f64>,
    /// Population standard deviation of the original's finite values.
    pub std_original: f64,
    /// Population standard deviation of the candidate's finite values.
    pub std_candidate: f64,
    /// Largest |candidate - original| on this backend.
    pub max_abs_change: f64,
    /// Whether the change exceeds the tolerance anywhere.
    pub changed: bool,
    /// The absolute tolerance applied to this output.
    pub atol: f64,
    /// The relative tolerance applied to this output.
    pub rtol: f64,
}

/// One rewired layer's output on one backend: where the rewiring shows
/// even when the model's outputs are blind to it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The label of the node that reads the rewired weights.
    pub node: String,
    /// Its operator (Gemm, MatMul, Conv, ConvTranspose).
    pub op: String,
    /// The rewired weights it reads.
    pub weights: Vec<String>,
    /// Its output, compared as the model's outputs are (`changed` says
    /// whether the rewiring shows in it).
    pub output: OutputReport,
}

/// Everything one backend found.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    /// Which backend.
    pub backend: BackendKind,
    /// Its verdict.
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Every failed check, one line each.
    pub failures: Vec<String>,
    /// Whether the user required it (a skip is then a failure).
    pub required: bool,
    /// What executed the models (`tract`, `CPUExecutionProvider`, ...).
    pub provider_used: Option<String>,
    /// The candidate's outputs, in the original's order.
    pub outputs: Vec<OutputReport>,
    /// The rewired layers' outputs, in the order of the original's nodes.
    pub probes: Vec<ProbeReport>,
    /// Facts worth saying that are not failures (blind outputs, probes
    /// this backend could not load).
    pub notes: Vec<String>,
}

impl BackendReport {
    pub(super) fn new(backend: BackendKind, required: bool) -> BackendReport {
        BackendReport {
            backend,
            status: Status::Passed,
            reason: None,
            failures: Vec::new(),
            required,
            provider_used: None,
            outputs: Vec::new(),
            probes: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(super) fn skip(mut self, reason: String) -> BackendReport {
        if self.required {
            self.status = Status::Failed;
            self.failures
                .push(format!("required, but skipped: {reason}"));
            self.reason = Some(self.failures.join("; "));
        } else {
            self.status = Status::Skipped;
            self.reason = Some(reason);
        }
        self
    }

    pub(super) fn fail(mut self, failure: String) -> BackendReport {
        self.failures.push(failure);
        self.finish()
    }

    pub(super) fn finish(mut self) -> BackendReport {
        if !self.failures.is_empty() {
            self.status = Status::Failed;
            self.reason = Some(self.failures.join("; "));
        }
        self
    }
}

/// The result of [`compare_models`](super::compare_models).
#[derive(Debug, Clone, Serialize)]
pub struct InferenceReport {
    /// The model as it was before rewiring.
    pub original: PathBuf,
    /// The model checked against it.
    pub candidate: PathBuf,
    /// Seed of the random inputs.
    pub seed: u64,
    /// Default absolute tolerance.
    pub atol: f64,
    /// Default relative tolerance.
    pub rtol: f64,
    /// The backend the others are compared with: the first that ran both models.
    pub reference: Option<BackendKind>,
    /// What was fed to the models.
    pub inputs: Vec<InputSummary>,
    /// One report per backend, in the order they ran.
    pub backends: Vec<BackendReport>,
    /// A problem that stopped the whole comparison (unreadable inputs, ...).
    pub error: Option<String>,
    /// What limits the layer probes: rewired weights that cannot be probed,
    /// or why no probe copies could be made.
    pub notes: Vec<String>,
}

impl InferenceReport {
    /// True only when nothing failed (required backends that were skipped
    /// count as failed) and at least one backend actually ran the models.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.backends.iter().all(|b| b.status != Status::Failed)
            && self.backends.iter().any(|b| b.status == Status::Passed)
    }

    /// The report of one backend.
    pub fn backend(&self, kind: BackendKind) -> Option<&BackendReport> {
        self.backends.iter().find(|b| b.backend == kind)
    }
}

impl fmt::Display for InferenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.error {
            writeln!(f, "error: {e}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        for b in &self.backends {
            write!(f, "{:<9} {:<8}", b.backend.name(), b.status.to_string())?;
            if let Some(p) = &b.provider_used {
                write!(f, " [{p}]")?;
            }
            if let Some(r) = &b.reason {
                write!(f, " {r}")?;
            }
            writeln!(f)?;
            for o in &b.outputs {
                write!(f, "    ")?;
                self.fmt_output(f, o)?;
            }
            for p in &b.probes {
                write!(
                    f,
                    "    layer {} ({}, {}) {}: ",
                    p.node,
                    p.op,
                    p.weights.join(", "),
                    if p.output.changed {
                        "changed"
                    } else {
                        "unchanged"
                    }
                )?;
                self.fmt_output(f, &p.output)?;
            }
            for n in &b.notes {
                writeln!(f, "    note: {n}")?;
            }
        }
        write!(f, "{}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}

impl InferenceReport {
    /// One output's line after its label: shape, type, change, spread, and
    /// the error against the reference backend.
    fn fmt_output(&self, f: &mut fmt::Formatter<'_>, o: &OutputReport) -> fmt::Result {
        write!(
            f,
            "{} {:?} {}: change {:.3e}, std {:.4} -> {:.4}",
            o.name, o.shape, o.dtype, o.max_abs_change, o.std_original, o.std_candidate
        )?;
        if let (Some(abs), Some(reference)) = (o.max_abs_err, self.reference) {
            write!(f, ", vs {reference}: abs {abs:.3e}")?;
            if let Some(rel) = o.max_rel_err {
                write!(f, " rel {rel:.3e}")?;
            }
        }
        writeln!(f)
    }
}
