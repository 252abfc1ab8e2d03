//! Inference backends behind one small, backend-neutral API.
//!
//! Rewiring only permutes weights, so a rewired model must still load and run
//! wherever the original did. Checking that needs real inference engines:
//! tract (pure Rust, always there when the `tract` feature is on) and ONNX
//! Runtime (loaded at run time from the `onnxruntime` Python wheel, on CPU or
//! CUDA). Callers see only host tensors, I/O descriptions and a [`Session`];
//! whether an engine is missing ([`BackendError::Unavailable`]) or cannot
//! handle a model ([`BackendError::LoadFailed`]) is kept apart from a real
//! failure, so that verification can report "skipped (reason)" honestly.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[cfg(feature = "ort")]
pub(crate) mod ort;
#[cfg(feature = "ort")]
mod ortlib;
#[cfg(feature = "tract")]
mod tract;

/// Which engine (and, for ONNX Runtime, which execution provider) runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// tract, the pure-Rust engine.
    Tract,
    /// ONNX Runtime with its CPU execution provider.
    OrtCpu,
    /// ONNX Runtime with its CUDA execution provider.
    OrtCuda,
}

impl BackendKind {
    /// Every backend, in the order verification prefers them as reference.
    pub const ALL: [BackendKind; 3] = [
        BackendKind::Tract,
        BackendKind::OrtCpu,
        BackendKind::OrtCuda,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Tract => "tract",
            BackendKind::OrtCpu => "ort-cpu",
            BackendKind::OrtCuda => "ort-cuda",
        }
    }

    /// Parses a comma-separated list such as `tract,ort-cpu`; duplicates are dropped.
    pub fn parse_list(list: &str) -> Result<Vec<BackendKind>, UnknownBackend> {
        let mut kinds = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let kind: BackendKind = part.parse()?;
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not one of `tract`, `ort-cpu`, `ort-cuda`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}` (expected one of: tract, ort-cpu, ort-cuda)")]
pub struct UnknownBackend(pub String);

impl FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tract" => Ok(BackendKind::Tract),
            "ort-cpu" | "ort" | "onnxruntime" => Ok(BackendKind::OrtCpu),
            "ort-cuda" | "cuda" => Ok(BackendKind::OrtCuda),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

impl serde::Serialize for BackendKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// Element values of a [`HostTensor`], in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 16-bit IEEE floats.
    F16(Vec<half::f16>),
    /// 64-bit integers.
    I64(Vec<i64>),
    /// 32-bit integers.
    I32(Vec<i32>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type's name, as used in [`IoSpec::dtype`].
    pub fn dtype(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "f32",
            TensorData::F64(_) => "f64",
            TensorData::F16(_) => "f16",
            TensorData::I64(_) => "i64",
            TensorData::I32(_) => "i32",
            TensorData::Bool(_) => "bool",
        }
    }

    /// True for floating-point element types.
    pub fn is_float(&self) -> bool {
        matches!(
            self,
            TensorData::F32(_) | TensorData::F64(_) | TensorData::F16(_)
        )
    }

    /// The values widened to f64 (bools as 0 and 1), for comparisons.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            // i64 beyond 2^53 loses precision; comparisons tolerate that.
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }
}

/// A shape and an element count that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape:?} needs {} elements, got {len}", .shape.iter().product::<usize>())]
pub struct ShapeMismatch {
    /// The shape asked for.
    pub shape: Vec<usize>,
    /// The number of elements given.
    pub len: usize,
}

/// A dense tensor in host memory, the currency between backends.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, in C order.
    pub data: TensorData,
}

impl HostTensor {
    /// Builds a tensor, checking that the shape holds exactly the data.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<HostTensor, ShapeMismatch> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(ShapeMismatch {
                shape,
                len: data.len(),
            });
        }
        Ok(HostTensor { shape, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The element type's name (`f32`, `i64`, ...).
    pub fn dtype(&self) -> &'static str {
        self.data.dtype()
    }

    /// The values widened to f64, for comparisons.
    pub fn to_f64(&self) -> Vec<f64> {
        self.data.to_f64()
    }
}

/// One input or output of a model as a backend sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IoSpec {
    /// The name in the model's graph.
    pub name: String,
    /// Element type name: `f32`, `f64`, `f16`, `i64`, `i32`, `bool`, or the
    /// ONNX name of a type the backends here cannot exchange.
    pub dtype: String,
    /// Dimensions; `None` is a symbolic or unknown dimension.
    pub shape: Vec<Option<usize>>,
    /// The symbol of each symbolic dimension, when the model names it.
    pub dim_names: Vec<Option<String>>,
    /// False when the model does not even give the rank.
    pub ranked: bool,
}

impl IoSpec {
    /// The concrete shape to feed: the user's override when given (it must
    /// agree with every fixed dimension), else the model's shape with each
    /// symbolic dimension set to 1.
    pub fn resolve_shape(
        &self,
        overrides: &HashMap<String, Vec<usize>>,
    ) -> Result<Vec<usize>, String> {
        if let Some(given) = overrides.get(&self.name) {
            if self.ranked && given.len() != self.shape.len() {
                return Err(format!(
                    "input `{}`: shape override {:?} has rank {}, the model says rank {}",
                    self.name,
                    given,
                    given.len(),
                    self.shape.len()
                ));
            }
            if self.ranked {
                for (axis, (&g, d)) in given.iter().zip(&self.shape).enumerate() {
                    if let Some(fixed) = d {
                        if *fixed != g {
                            return Err(format!(
                                "input `{}`: shape override {:?} sets axis {axis} to {g}, the model fixes it at {fixed}",
                                self.name, given
                            ));
                        }
                    }
                }
            }
            return Ok(given.clone());
        }
        if !self.ranked {
            return Err(format!(
                "input `{}` has no shape in the model; give one explicitly",
                self.name
            ));
        }
        Ok(self.shape.iter().map(|d| d.unwrap_or(1)).collect())
    }
}

/// Settings shared by all backends.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// The ONNX Runtime shared library (file, or a folder holding it); when
    /// absent it is discovered (see [`ort_info`]).
    pub ort_lib: Option<PathBuf>,
    /// Concrete shapes for inputs with symbolic dimensions, by input name.
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Threads per operator for ONNX Runtime; `None` lets it decide.
    pub intra_threads: Option<usize>,
}

/// Why a backend could not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The engine is not there: library not found, feature not compiled,
    /// execution provider not registered. Nothing is known about the model.
    #[error("{backend} unavailable: {reason}")]
    Unavailable {
        /// The backend concerned.
        backend: BackendKind,
        /// Why, in the engine's words where it gave any.
        reason: String,
    },
    /// The engine is there but cannot load this model (an operator it lacks, ...).
    #[error("{backend} could not load the model: {reason}")]
    LoadFailed {
        /// The backend concerned.
        backend: BackendKind,
        /// Why, in the engine's words where it gave any.
        reason: String,
    },
    /// The model loaded but running it failed, or the inputs do not fit it.
    #[error("{backend} failed to run the model: {reason}")]
    RunFailed {
        /// The backend concerned.
        backend: BackendKind,
        /// Why, in the engine's words where it gave any.
        reason: String,
    },
}

impl BackendError {
    /// The backend that failed.
    pub fn backend(&self) -> BackendKind {
        match self {
            BackendError::Unavailable { backend, .. }
            | BackendError::LoadFailed { backend, .. }
            | BackendError::RunFailed { backend, .. } => *backend,
        }
    }

    /// The explanation, without the backend prefix.
    pub fn reason(&self) -> &str {
        match self {
            BackendError::Unavailable { reason, .. }
            | BackendError::LoadFailed { reason, .. }
            | BackendError::RunFailed { reason, .. } => reason,
        }
    }

    /// True when the error says nothing about the model's correctness
    /// (engine missing, or unable to handle the model), so a caller may skip.
    pub fn is_skippable(&self) -> bool {
        matches!(
            self,
            BackendError::Unavailable { .. } | BackendError::LoadFailed { .. }
        )
    }

    pub(crate) fn unavailable(backend: BackendKind, reason: impl Into<String>) -> BackendError {
        BackendError::Unavailable {
            backend,
            reason: reason.into(),
        }
    }

    pub(crate) fn load_failed(backend: BackendKind, reason: impl Into<String>) -> BackendError {
        BackendError::LoadFailed {
            backend,
            reason: reason.into(),
        }
    }

    #[cfg_attr(not(any(feature = "tract", feature = "ort")), allow(dead_code))]
    pub(crate) fn run_failed(backend: BackendKind, reason: impl Into<String>) -> BackendError {
        BackendError::RunFailed {
            backend,
            reason: reason.into(),
        }
    }
}

/// A model loaded by one backend, ready to run.
pub trait Session: Send {
    /// The backend this session runs on.
    fn backend(&self) -> BackendKind;
    /// The model's inputs (initializers excluded).
    fn inputs(&self) -> &[IoSpec];
    /// The model's outputs.
    fn outputs(&self) -> &[IoSpec];
    /// Runs the model; outputs come back in the order of [`Session::outputs`].
    fn run(
        &mut self,
        inputs: &[(String, HostTensor)],
    ) -> Result<Vec<(String, HostTensor)>, BackendError>;
    /// What actually executes the model: `tract`, `CPUExecutionProvider`,
    /// `CUDAExecutionProvider`.
    fn provider_used(&self) -> &str;
}

/// Loads `model_path` (external data is read from beside it) with `kind`.
pub fn open(
    kind: BackendKind,
    model_path: &Path,
    opts: &BackendOptions,
) -> Result<Box<dyn Session>, BackendError> {
    if !model_path.is_file() {
        return Err(BackendError::load_failed(
            kind,
            format!("model file not found: {}", model_path.display()),
        ));
    }
    match kind {
        BackendKind::Tract => open_tract(model_path, opts),
        BackendKind::OrtCpu | BackendKind::OrtCuda => open_ort(kind, model_path, opts),
    }
}

#[cfg(feature = "tract")]
fn open_tract(model_path: &Path, opts: &BackendOptions) -> Result<Box<dyn Session>, BackendError> {
    Ok(Box::new(tract::TractSession::open(model_path, opts)?))
}

#[cfg(not(feature = "tract"))]
fn open_tract(_: &Path, _: &BackendOptions) -> Result<Box<dyn Session>, BackendError> {
    Err(BackendError::unavailable(
        BackendKind::Tract,
        "built without the `tract` feature",
    ))
}

#[cfg(feature = "ort")]
fn open_ort(
    kind: BackendKind,
    model_path: &Path,
    opts: &BackendOptions,
) -> Result<Box<dyn Session>, BackendError> {
    Ok(Box::new(self::ort::OrtSession::open(
        kind, model_path, opts,
    )?))
}

#[cfg(not(feature = "ort"))]
fn open_ort(
    kind: BackendKind,
    _: &Path,
    _: &BackendOptions,
) -> Result<Box<dyn Session>, BackendError> {
    Err(BackendError::unavailable(
        kind,
        "built without the `ort` feature",
    ))
}

/// What ONNX Runtime this process uses, for `doctor`-style diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrtInfo {
    /// The shared library that was loaded.
    pub library: PathBuf,
    /// How it was found: `--ort-lib`, `ORT_DYLIB_PATH`, `python3`, `.venv`.
    pub found_via: String,
    /// The library's own version string, e.g. `1.31.1`.
    pub version: String,
    /// Execution providers compiled into that library.
    pub providers: Vec<String>,
    /// Whether this build can use the CUDA execution provider.
    pub cuda_feature: bool,
}

/// Loads ONNX Runtime (once per process) and describes it.
///
/// The library is looked for, in order: `opts.ort_lib`; `ORT_DYLIB_PATH`;
/// the `onnxruntime` package of `python3` on `PATH` (`<pkg>/capi/`); a
/// `.venv` in the current directory, then in the crate's source directory.
/// Only the first two can fail loudly (they name a file that must exist);
/// the others are skipped when absent.
#[cfg(feature = "ort")]
pub fn ort_info(opts: &BackendOptions) -> Result<OrtInfo, BackendError> {
    self::ort::info(opts)
}

/// Without the `ort` feature there is nothing to describe.
#[cfg(not(feature = "ort"))]
pub fn ort_info(_: &BackendOptions) -> Result<OrtInfo, BackendError> {
    Err(BackendError::unavailable(
        BackendKind::OrtCpu,
        "built without the `ort` feature",
    ))
}

/// Checks that `inputs` gives every model input once, with its dtype and a
/// shape that fits, before a backend sees them (their own errors are cryptic).
#[cfg_attr(not(any(feature = "tract", feature = "ort")), allow(dead_code))]
pub(crate) fn check_inputs<'a>(
    backend: BackendKind,
    specs: &[IoSpec],
    inputs: &'a [(String, HostTensor)],
) -> Result<Vec<&'a HostTensor>, BackendError> {
    for (name, _) in inputs {
        if !specs.iter().any(|s| &s.name == name) {
            return Err(BackendError::run_failed(
                backend,
                format!("the model has no input named `{name}`"),
            ));
        }
    }
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let tensor = inputs
            .iter()
            .find(|(n, _)| n == &spec.name)
            .map(|(_, t)| t)
            .ok_or_else(|| {
                BackendError::run_failed(backend, format!("missing input `{}`", spec.name))
            })?;
        if tensor.dtype() != spec.dtype {
            return Err(BackendError::run_failed(
                backend,
                format!(
                    "input `{}` is {}, the model expects {}",
                    spec.name,
                    tensor.dtype(),
                    spec.dtype
                ),
            ));
        }
        let fits = !spec.ranked
            || (tensor.shape.len() == spec.shape.len()
                && tensor
                    .shape
                    .iter()
                    .zip(&spec.shape)
                    .all(|(&t, d)| d.is_none_or(|d| d == t)));
        if !fits {
            return Err(BackendError::run_failed(
                backend,
                format!(
                    "input `{}` has shape {:?}, the model expects {}",
                    spec.name,
                    tensor.shape,
                    format_spec_shape(spec)
                ),
            ));
        }
        if tensor.shape.iter().product::<usize>() != tensor.len() {
            return Err(BackendError::run_failed(
                backend,
                format!(
                    "input `{}`: shape {:?} does not hold its {} elements",
                    spec.name,
                    tensor.shape,
                    tensor.len()
                ),
            ));
        }
        ordered.push(tensor);
    }
    Ok(ordered)
}

/// `[batch, 3, 224, 224]`-style rendering of a spec's shape.
pub(crate) fn format_spec_shape(spec: &IoSpec) -> String {
    if !spec.ranked {
        return "an unknown shape".to_string();
    }
    let dims: Vec<String> = spec
        .shape
        .iter()
        .zip(&spec.dim_names)
        .map(|(d, n)| match (d, n) {
            (Some(d), _) => d.to_string(),
            (None, Some(n)) => n.clone(),
            (None, None) => "?".to_string(),
        })
        .collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.name().parse::<BackendKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!(
            BackendKind::parse_list("tract, ort-cpu,tract").unwrap(),
            vec![BackendKind::Tract, BackendKind::OrtCpu]
        );
        assert!(BackendKind::parse_list("tract,tpu").is_err());
    }

    #[test]
    fn shapes_resolve_from_overrides_or_ones() {
        let spec = IoSpec {
            name: "x".into(),
            dtype: "f32".into(),
            shape: vec![None, Some(3)],
            dim_names: vec![Some("batch".into()), None],
            ranked: true,
        };
        let mut overrides = HashMap::new();
        assert_eq!(spec.resolve_shape(&overrides).unwrap(), vec![1, 3]);
        overrides.insert("x".to_string(), vec![4, 3]);
        assert_eq!(spec.resolve_shape(&overrides).unwrap(), vec![4, 3]);
        overrides.insert("x".to_string(), vec![4, 2]);
        assert!(spec
            .resolve_shape(&overrides)
            .unwrap_err()
            .contains("axis 1"));
        overrides.insert("x".to_string(), vec![4]);
        assert!(spec.resolve_shape(&overrides).unwrap_err().contains("rank"));
        assert_eq!(format_spec_shape(&spec), "[batch, 3]");
    }
}
