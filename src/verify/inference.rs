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

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::{
    self, BackendError, BackendKind, BackendOptions, HostTensor, IoSpec, Session, TensorData,
};

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
    fn tolerance(&self, output: &str) -> (f64, f64) {
        self.tolerances
            .get(output)
            .copied()
            .unwrap_or((self.atol, self.rtol))
    }
}

/// Outcome of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
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
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    /// `random` or `npz`.
    pub source: &'static str,
}

/// One output of the candidate on one backend.
#[derive(Debug, Clone, Serialize)]
pub struct OutputReport {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    /// Against the reference backend's candidate output (None on the reference).
    pub max_abs_err: Option<f64>,
    pub max_rel_err: Option<f64>,
    /// The same comparison for the original model, to tell backend noise from rewiring trouble.
    pub original_max_abs_err: Option<f64>,
    pub std_original: f64,
    pub std_candidate: f64,
    /// Largest |candidate - original| on this backend.
    pub max_abs_change: f64,
    /// Whether the change exceeds the tolerance anywhere.
    pub changed: bool,
    pub atol: f64,
    pub rtol: f64,
}

/// Everything one backend found.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    pub backend: BackendKind,
    pub status: Status,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// Every failed check, one line each.
    pub failures: Vec<String>,
    pub required: bool,
    /// What executed the models (`tract`, `CPUExecutionProvider`, ...).
    pub provider_used: Option<String>,
    pub outputs: Vec<OutputReport>,
}

impl BackendReport {
    fn new(backend: BackendKind, required: bool) -> BackendReport {
        BackendReport {
            backend,
            status: Status::Passed,
            reason: None,
            failures: Vec::new(),
            required,
            provider_used: None,
            outputs: Vec::new(),
        }
    }

    fn skip(mut self, reason: String) -> BackendReport {
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

    fn fail(mut self, failure: String) -> BackendReport {
        self.failures.push(failure);
        self.finish()
    }

    fn finish(mut self) -> BackendReport {
        if !self.failures.is_empty() {
            self.status = Status::Failed;
            self.reason = Some(self.failures.join("; "));
        }
        self
    }
}

/// The result of [`compare_models`].
#[derive(Debug, Clone, Serialize)]
pub struct InferenceReport {
    pub original: PathBuf,
    pub candidate: PathBuf,
    pub seed: u64,
    pub atol: f64,
    pub rtol: f64,
    /// The backend the others are compared with: the first that ran both models.
    pub reference: Option<BackendKind>,
    pub inputs: Vec<InputSummary>,
    pub backends: Vec<BackendReport>,
    /// A problem that stopped the whole comparison (unreadable inputs, ...).
    pub error: Option<String>,
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
                write!(
                    f,
                    "    {} {:?} {}: change {:.3e}, std {:.4} -> {:.4}",
                    o.name, o.shape, o.dtype, o.max_abs_change, o.std_original, o.std_candidate
                )?;
                if let (Some(abs), Some(reference)) = (o.max_abs_err, self.reference) {
                    write!(f, ", vs {reference}: abs {abs:.3e}")?;
                    if let Some(rel) = o.max_rel_err {
                        write!(f, " rel {rel:.3e}")?;
                    }
                }
                writeln!(f)?;
            }
        }
        write!(f, "{}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}

/// Outputs of both models on the reference backend.
struct Reference {
    kind: BackendKind,
    original: Vec<(String, HostTensor)>,
    candidate: Vec<(String, HostTensor)>,
}

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
        Some(path) => match read_npz(path) {
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
                report.error = Some(e);
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

    let mut feed: Option<Vec<(String, HostTensor)>> = None;
    let mut reference: Option<Reference> = None;
    for kind in kinds {
        let required = opts.require.contains(&kind);
        let (backend_report, outputs) = check_backend(
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

type Outputs = Vec<(String, HostTensor)>;

/// One backend: load, run, check. Returns the outputs when both models ran.
#[allow(clippy::too_many_arguments)]
fn check_backend(
    kind: BackendKind,
    required: bool,
    original: &Path,
    candidate: &Path,
    opts: &InferenceOptions,
    backend_opts: &BackendOptions,
    user_inputs: Option<&[(String, HostTensor)]>,
    feed: &mut Option<Outputs>,
    report: &mut InferenceReport,
    reference: Option<&Reference>,
) -> (BackendReport, Option<(Outputs, Outputs)>) {
    let br = BackendReport::new(kind, required);
    let mut orig_session = match backend::open(kind, original, backend_opts) {
        Ok(s) => s,
        Err(e @ BackendError::Unavailable { .. }) => {
            return (br.skip(e.reason().to_string()), None)
        }
        Err(e) => {
            return (
                br.skip(format!("cannot load the original: {}", e.reason())),
                None,
            )
        }
    };
    let mut cand_session = match backend::open(kind, candidate, backend_opts) {
        Ok(s) => s,
        Err(e @ BackendError::Unavailable { .. }) => {
            return (br.skip(e.reason().to_string()), None)
        }
        Err(e) => {
            return (
                br.fail(format!(
                    "the candidate does not load although the original does: {}",
                    e.reason()
                )),
                None,
            )
        }
    };
    let mut br = br;
    br.provider_used = Some(orig_session.provider_used().to_string());

    if let Some(diff) = io_difference("input", orig_session.inputs(), cand_session.inputs()) {
        return (br.fail(diff), None);
    }

    if feed.is_none() {
        match make_inputs(
            orig_session.inputs(),
            user_inputs,
            &backend_opts.input_shapes,
            opts.seed,
        ) {
            Ok((inputs, summaries)) => {
                report.inputs = summaries;
                *feed = Some(inputs);
            }
            Err(e) => {
                report.error = Some(e);
                return (br, None);
            }
        }
    }
    let inputs = feed.as_deref().unwrap_or_default();

    let orig_out = match run(&mut *orig_session, inputs) {
        Ok(o) => o,
        Err(e) => {
            return (
                br.skip(format!("cannot run the original: {}", e.reason())),
                None,
            )
        }
    };
    let cand_out = match run(&mut *cand_session, inputs) {
        Ok(o) => o,
        Err(e) => {
            return (
                br.fail(format!(
                    "the candidate fails to run although the original runs: {}",
                    e.reason()
                )),
                None,
            )
        }
    };

    let mut any_changed = false;
    for (ix, (name, o)) in orig_out.iter().enumerate() {
        let Some((_, c)) = cand_out.iter().find(|(n, _)| n == name) else {
            br.failures
                .push(format!("output `{name}` is missing from the candidate"));
            continue;
        };
        if ix < cand_out.len() && &cand_out[ix].0 != name {
            br.failures.push(format!(
                "output `{name}` moved to another position in the candidate"
            ));
        }
        if o.shape != c.shape || o.dtype() != c.dtype() {
            br.failures.push(format!(
                "output `{name}`: original is {} {:?}, candidate is {} {:?}",
                o.dtype(),
                o.shape,
                c.dtype(),
                c.shape
            ));
            continue;
        }
        let (atol, rtol) = opts.tolerance(name);
        let ov = o.to_f64();
        let cv = c.to_f64();
        let bad_orig = ov.iter().filter(|x| !x.is_finite()).count();
        let bad_cand = cv.iter().filter(|x| !x.is_finite()).count();
        if bad_cand > 0 {
            br.failures.push(format!(
                "output `{name}`: {bad_cand} non-finite values in the candidate"
            ));
        }
        if bad_orig > 0 {
            br.failures.push(format!(
                "output `{name}`: the original itself gives {bad_orig} non-finite values, so the comparison means nothing"
            ));
        }
        let diff = compare(&cv, &ov, atol, rtol);
        any_changed |= diff.violations > 0;
        let mut out = OutputReport {
            name: name.clone(),
            shape: c.shape.clone(),
            dtype: c.dtype().to_string(),
            max_abs_err: None,
            max_rel_err: None,
            original_max_abs_err: None,
            std_original: std_dev(&ov),
            std_candidate: std_dev(&cv),
            max_abs_change: diff.max_abs,
            changed: diff.violations > 0,
            atol,
            rtol,
        };
        if let Some(reference) = reference {
            let ref_c = reference
                .candidate
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t);
            let ref_o = reference
                .original
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t);
            match ref_c {
                None => br.failures.push(format!(
                    "output `{name}` is missing on the reference {}",
                    reference.kind
                )),
                Some(r) if r.shape != c.shape || r.dtype() != c.dtype() => {
                    br.failures.push(format!(
                        "output `{name}`: {} gives {} {:?}, the reference {} gives {} {:?}",
                        kind,
                        c.dtype(),
                        c.shape,
                        reference.kind,
                        r.dtype(),
                        r.shape
                    ))
                }
                Some(r) => {
                    let d = compare(&cv, &r.to_f64(), atol, rtol);
                    out.max_abs_err = Some(d.max_abs);
                    out.max_rel_err = Some(d.max_rel);
                    if d.violations > 0 {
                        br.failures.push(format!(
                            "output `{name}`: {kind} disagrees with {} on the candidate at {} of {} values \
                             (max abs err {:.3e}, max rel err {:.3e}; tolerance {atol:e} + {rtol:e}*|ref|)",
                            reference.kind,
                            d.violations,
                            cv.len(),
                            d.max_abs,
                            d.max_rel
                        ));
                    }
                    if let Some(ro) = ref_o.filter(|ro| ro.shape == o.shape) {
                        out.original_max_abs_err =
                            Some(compare(&ov, &ro.to_f64(), atol, rtol).max_abs);
                    }
                }
            }
        }
        br.outputs.push(out);
    }
    for (name, _) in &cand_out {
        if !orig_out.iter().any(|(n, _)| n == name) {
            br.failures
                .push(format!("the candidate has an extra output `{name}`"));
        }
    }
    if opts.expect_change && !any_changed && !orig_out.is_empty() {
        br.failures.push(
            "no output of the candidate differs from the original beyond tolerance: the rewiring changed nothing \
             that the outputs can see"
                .to_string(),
        );
    }
    (br.finish(), Some((orig_out, cand_out)))
}

fn run(
    session: &mut dyn Session,
    inputs: &[(String, HostTensor)],
) -> Result<Outputs, BackendError> {
    session.run(inputs)
}

/// Describes how two models' inputs differ, if they do.
fn io_difference(what: &str, a: &[IoSpec], b: &[IoSpec]) -> Option<String> {
    let describe = |specs: &[IoSpec]| {
        specs
            .iter()
            .map(|s| format!("{} {} {}", s.name, s.dtype, backend::format_spec_shape(s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && x.dtype == y.dtype && x.shape == y.shape);
    (!same).then(|| {
        format!(
            "the candidate's {what}s differ from the original's: ({}) vs ({})",
            describe(a),
            describe(b)
        )
    })
}

struct Diff {
    max_abs: f64,
    max_rel: f64,
    violations: usize,
}

/// Element-wise `|x - r| <= atol + rtol * |r|`, with the largest errors.
fn compare(x: &[f64], r: &[f64], atol: f64, rtol: f64) -> Diff {
    let mut d = Diff {
        max_abs: 0.0,
        max_rel: 0.0,
        violations: 0,
    };
    for (&x, &r) in x.iter().zip(r) {
        // Non-finite values are reported by the finiteness check; matching
        // infinities (or NaNs) are not a disagreement between backends.
        if !x.is_finite() || !r.is_finite() {
            let same = (x.is_nan() && r.is_nan()) || x == r;
            if !same {
                d.violations += 1;
                d.max_abs = f64::INFINITY;
            }
            continue;
        }
        let abs = (x - r).abs();
        d.max_abs = d.max_abs.max(abs);
        if r != 0.0 {
            d.max_rel = d.max_rel.max(abs / r.abs());
        }
        if abs > atol + rtol * r.abs() {
            d.violations += 1;
        }
    }
    d
}

/// Population standard deviation of the finite values.
fn std_dev(v: &[f64]) -> f64 {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.is_empty() {
        return 0.0;
    }
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    (finite.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// The inputs to feed, from the user's file or random, with their summaries.
fn make_inputs(
    specs: &[IoSpec],
    user: Option<&[(String, HostTensor)]>,
    shapes: &HashMap<String, Vec<usize>>,
    seed: u64,
) -> Result<(Outputs, Vec<InputSummary>), String> {
    let mut inputs = Vec::with_capacity(specs.len());
    let mut summaries = Vec::with_capacity(specs.len());
    if let Some(user) = user {
        for (name, _) in user {
            if !specs.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "the inputs file has an array `{name}`, but the model's inputs are: {}",
                    known.join(", ")
                ));
            }
        }
    }
    for spec in specs {
        let (tensor, source) = match user.and_then(|u| u.iter().find(|(n, _)| n == &spec.name)) {
            Some((_, t)) => {
                if t.dtype() != spec.dtype {
                    return Err(format!(
                        "input `{}`: the inputs file gives {}, the model expects {}",
                        spec.name,
                        t.dtype(),
                        spec.dtype
                    ));
                }
                (t.clone(), "npz")
            }
            None if user.is_some() => {
                return Err(format!(
                    "the inputs file has no array for input `{}`",
                    spec.name
                ));
            }
            None => {
                let shape = spec.resolve_shape(shapes)?;
                (random_input(spec, shape, seed)?, "random")
            }
        };
        summaries.push(InputSummary {
            name: spec.name.clone(),
            shape: tensor.shape.clone(),
            dtype: tensor.dtype().to_string(),
            source,
        });
        inputs.push((spec.name.clone(), tensor));
    }
    Ok((inputs, summaries))
}

/// A reproducible random tensor: standard normal for floats, uniform in
/// [0, 8) for integers (safe as indices into any small axis), fair coins for
/// bools. Each input has its own stream, so adding an input changes no other.
fn random_input(spec: &IoSpec, shape: Vec<usize>, seed: u64) -> Result<HostTensor, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let digest = Sha256::digest(spec.name.as_bytes());
    let mut stream = [0u8; 8];
    stream.copy_from_slice(&digest[..8]);
    rng.set_stream(u64::from_le_bytes(stream));
    let n: usize = shape.iter().product();
    let data = match spec.dtype.as_str() {
        "f32" => TensorData::F32(normals(&mut rng, n).map(|x| x as f32).collect()),
        "f64" => TensorData::F64(normals(&mut rng, n).collect()),
        "f16" => TensorData::F16(normals(&mut rng, n).map(half::f16::from_f64).collect()),
        "i64" => TensorData::I64((0..n).map(|_| rng.random_range(0..8i64)).collect()),
        "i32" => TensorData::I32((0..n).map(|_| rng.random_range(0..8i32)).collect()),
        "bool" => TensorData::Bool((0..n).map(|_| rng.random_bool(0.5)).collect()),
        other => {
            return Err(format!(
                "input `{}` has type {other}, for which pa-onnx cannot make random values; give inputs in a .npz file",
                spec.name
            ))
        }
    };
    HostTensor::new(shape, data).map_err(|e| e.to_string())
}

/// Standard normal samples by the Box-Muller transform (both halves used).
fn normals(rng: &mut ChaCha8Rng, n: usize) -> impl Iterator<Item = f64> + '_ {
    let mut spare: Option<f64> = None;
    (0..n).map(move |_| {
        if let Some(z) = spare.take() {
            return z;
        }
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        spare = Some(r * theta.sin());
        r * theta.cos()
    })
}

/// Reads a `.npz` file as written by `numpy.savez` (stored, not compressed),
/// returning its arrays under their keys.
pub fn read_npz(path: &Path) -> Result<Vec<(String, HostTensor)>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read inputs file {}: {e}", path.display()))?;
    parse_npz(&bytes).map_err(|e| format!("inputs file {}: {e}", path.display()))
}

/// Parses the bytes of a `.npz` file (a zip archive of `.npy` files).
pub fn parse_npz(bytes: &[u8]) -> Result<Vec<(String, HostTensor)>, String> {
    let entries = zip_entries(bytes)?;
    let mut arrays = Vec::with_capacity(entries.len());
    for (name, data) in entries {
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_string();
        let tensor = parse_npy(data).map_err(|e| format!("array `{key}`: {e}"))?;
        arrays.push((key, tensor));
    }
    Ok(arrays)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, String> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| "truncated zip archive".to_string())
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| "truncated zip archive".to_string())
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, String> {
    b.get(at..at + 8)
        .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
        .ok_or_else(|| "truncated zip archive".to_string())
}

fn to_usize(v: u64) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| "zip offset out of range".to_string())
}

/// The stored entries of a zip archive, read through its central directory
/// (numpy writes zip64 fields, so those are understood).
fn zip_entries(b: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    const EOCD: u32 = 0x0605_4b50;
    const EOCD64: u32 = 0x0606_4b50;
    const LOCATOR64: u32 = 0x0706_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    const LOCAL: u32 = 0x0403_4b50;

    if b.len() < 22 {
        return Err("not a zip archive (too short)".to_string());
    }
    let lowest = b.len().saturating_sub(22 + 0xFFFF);
    let eocd = (lowest..=b.len() - 22)
        .rev()
        .find(|&i| u32_at(b, i) == Ok(EOCD))
        .ok_or("not a zip archive (no end of central directory); save inputs with numpy.savez")?;
    let mut count = u64::from(u16_at(b, eocd + 10)?);
    let mut cd_offset = u64::from(u32_at(b, eocd + 16)?);
    if (count == 0xFFFF || cd_offset == 0xFFFF_FFFF)
        && eocd >= 20
        && u32_at(b, eocd - 20)? == LOCATOR64
    {
        let at = to_usize(u64_at(b, eocd - 20 + 8)?)?;
        if u32_at(b, at)? != EOCD64 {
            return Err("broken zip64 end of central directory".to_string());
        }
        count = u64_at(b, at + 32)?;
        cd_offset = u64_at(b, at + 48)?;
    }

    let mut entries = Vec::new();
    let mut at = to_usize(cd_offset)?;
    for _ in 0..count {
        if u32_at(b, at)? != CENTRAL {
            return Err("broken zip central directory".to_string());
        }
        let flags = u16_at(b, at + 8)?;
        let method = u16_at(b, at + 10)?;
        let crc = u32_at(b, at + 16)?;
        let mut csize = u64::from(u32_at(b, at + 20)?);
        let mut usize_ = u64::from(u32_at(b, at + 24)?);
        let name_len = usize::from(u16_at(b, at + 28)?);
        let extra_len = usize::from(u16_at(b, at + 30)?);
        let comment_len = usize::from(u16_at(b, at + 32)?);
        let mut local = u64::from(u32_at(b, at + 42)?);
        let name_bytes = b
            .get(at + 46..at + 46 + name_len)
            .ok_or("truncated zip archive")?;
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        let extra = b
            .get(at + 46 + name_len..at + 46 + name_len + extra_len)
            .ok_or("truncated zip archive")?;
        // Zip64 extra field: the 64-bit values, in this order, of the 32-bit fields that overflowed.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = u16_at(extra, e)?;
            let len = usize::from(u16_at(extra, e + 2)?);
            if id == 1 {
                let mut p = e + 4;
                for field in [&mut usize_, &mut csize, &mut local] {
                    if *field == 0xFFFF_FFFF {
                        *field = u64_at(extra, p)?;
                        p += 8;
                    }
                }
            }
            e += 4 + len;
        }
        if flags & 1 != 0 {
            return Err(format!("entry `{name}` is encrypted"));
        }
        if method != 0 {
            return Err(format!(
                "entry `{name}` is compressed; save inputs with numpy.savez, not savez_compressed"
            ));
        }
        if csize != usize_ {
            return Err(format!("entry `{name}`: stored sizes disagree"));
        }
        let local = to_usize(local)?;
        if u32_at(b, local)? != LOCAL {
            return Err(format!("entry `{name}`: broken local header"));
        }
        let start =
            local + 30 + usize::from(u16_at(b, local + 26)?) + usize::from(u16_at(b, local + 28)?);
        let data = b
            .get(start..start + to_usize(csize)?)
            .ok_or_else(|| format!("entry `{name}` runs past the end of the file"))?;
        if crc32(data) != crc {
            return Err(format!("entry `{name}`: CRC mismatch, the file is damaged"));
        }
        entries.push((name, data));
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

/// CRC-32 (IEEE), as zip uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Parses one `.npy` array: little-endian f32/f64/f16/i64/i32/bool, C order.
pub fn parse_npy(b: &[u8]) -> Result<HostTensor, String> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err("not a .npy array".to_string());
    }
    let (header_len, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 => (u32_at(b, 8)? as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = b
        .get(start..start + header_len)
        .ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let descr = header_value(header, "descr")
        .and_then(|v| v.strip_prefix('\'').or_else(|| v.strip_prefix('"')))
        .and_then(|v| v.split(['\'', '"']).next())
        .ok_or("the .npy header has no descr")?;
    let fortran =
        header_value(header, "fortran_order").ok_or("the .npy header has no fortran_order")?;
    if fortran.starts_with("True") {
        return Err(
            "array is in Fortran order; save numpy.ascontiguousarray(a) instead".to_string(),
        );
    }
    let shape_text = header_value(header, "shape")
        .and_then(|v| v.strip_prefix('('))
        .and_then(|v| v.split(')').next())
        .ok_or("the .npy header has no shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}`"))
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let n: usize = shape.iter().product();
    let body = &b[start + header_len..];
    // '=' is native order; numpy writes '<' or '|', but accept '=' on little-endian hosts.
    let descr = match descr.as_bytes().first() {
        Some(b'=') if cfg!(target_endian = "little") => format!("<{}", &descr[1..]),
        _ => descr.to_string(),
    };
    let size = match descr.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "<f2" => 2,
        "|b1" => 1,
        other => {
            return Err(format!(
                "dtype `{other}` is not supported (use little-endian float32/float64/float16/int64/int32/bool)"
            ))
        }
    };
    if body.len() != n * size {
        return Err(format!(
            "shape {:?} needs {} bytes of data, the array has {}",
            shape,
            n * size,
            body.len()
        ));
    }
    let chunks = body.chunks_exact(size);
    let data = match descr.as_str() {
        "<f4" => TensorData::F32(
            chunks
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        ),
        "<f8" => TensorData::F64(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ),
        "<f2" => TensorData::F16(
            chunks
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        "<i4" => TensorData::I32(
            chunks
                .map(|c| i32::from_le_bytes(c.try_into().expect("4")))
                .collect(),
        ),
        "<i8" => TensorData::I64(
            chunks
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ),
        _ => TensorData::Bool(chunks.map(|c| c[0] != 0).collect()),
    };
    HostTensor::new(shape, data).map_err(|e| e.to_string())
}

/// The text after `'key':` in a .npy header dict.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(body);
        out
    }

    /// A stored zip, as `numpy.savez` would write it (without zip64 fields).
    fn zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let offset = out.len() as u32;
            let crc = crc32(data);
            let mut header = Vec::new();
            header.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            header.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            header.extend_from_slice(&crc.to_le_bytes());
            header.extend_from_slice(&(data.len() as u32).to_le_bytes());
            header.extend_from_slice(&(data.len() as u32).to_le_bytes());
            header.extend_from_slice(&(name.len() as u16).to_le_bytes());
            header.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&header);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            central.extend_from_slice(&crc.to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn npz_round_trip() {
        let f: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let i: Vec<u8> = [3i64, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let file = zip(&[
            ("x.npy", npy("<f4", "(2, 3)", &f)),
            ("ids.npy", npy("<i8", "(2,)", &i)),
            ("flag.npy", npy("|b1", "()", &[1])),
        ]);
        let arrays = parse_npz(&file).unwrap();
        assert_eq!(arrays[0].0, "x");
        assert_eq!(arrays[0].1.shape, vec![2, 3]);
        assert_eq!(
            arrays[0].1.data,
            TensorData::F32(vec![1.5, -2.0, 0.25, 4.0, 5.0, 6.0])
        );
        assert_eq!(arrays[1].1.data, TensorData::I64(vec![3, 7]));
        assert_eq!(arrays[2].1.shape, Vec::<usize>::new());
        assert_eq!(arrays[2].1.data, TensorData::Bool(vec![true]));
    }

    #[test]
    fn npz_rejects_damage_and_unsupported_types() {
        let mut file = zip(&[("x.npy", npy("<f4", "(1,)", &1f32.to_le_bytes()))]);
        let last_data = file.iter().position(|&b| b == 0x3f).unwrap();
        file[last_data] ^= 1;
        assert!(parse_npz(&file).unwrap_err().contains("CRC"));
        let file = zip(&[("x.npy", npy(">f4", "(1,)", &1f32.to_be_bytes()))]);
        assert!(parse_npz(&file).unwrap_err().contains("not supported"));
        let file = zip(&[("x.npy", npy("<f4", "(2,)", &1f32.to_le_bytes()))]);
        assert!(parse_npz(&file).unwrap_err().contains("needs 8 bytes"));
        assert!(parse_npz(b"definitely not a zip file at all").is_err());
    }

    #[test]
    fn random_inputs_are_reproducible_and_per_name() {
        let spec = |name: &str, dtype: &str| IoSpec {
            name: name.into(),
            dtype: dtype.into(),
            shape: vec![Some(1000)],
            dim_names: vec![None],
            ranked: true,
        };
        let a = random_input(&spec("x", "f32"), vec![1000], 7).unwrap();
        let b = random_input(&spec("x", "f32"), vec![1000], 7).unwrap();
        let c = random_input(&spec("y", "f32"), vec![1000], 7).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v = a.to_f64();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.15, "mean {mean}");
        assert!((std_dev(&v) - 1.0).abs() < 0.1);
        let ids = random_input(&spec("ids", "i64"), vec![1000], 7)
            .unwrap()
            .to_f64();
        assert!(ids.iter().all(|&x| (0.0..8.0).contains(&x)));
        assert!(random_input(&spec("s", "string"), vec![1], 7).is_err());
    }

    #[test]
    fn tolerance_check() {
        let d = compare(&[1.0, 2.0005, 0.0], &[1.0, 2.0, 0.0], 1e-4, 1e-3);
        assert_eq!(d.violations, 0);
        assert!((d.max_abs - 0.0005).abs() < 1e-12);
        let d = compare(&[1.0, 2.01], &[1.0, 2.0], 1e-4, 1e-3);
        assert_eq!(d.violations, 1);
        let d = compare(&[f64::NAN], &[1.0], 1e-4, 1e-3);
        assert_eq!(d.violations, 1);
    }
}
