//! `pa-onnx verify`: the permutation proof, and (with --backends) inference
//! on both models.
//!
//! The checks themselves are the library's ([`verify::verify_files`]); this
//! file turns the options that `verify` and `rewire --verify` share into
//! [`VerifyOptions`].

use std::collections::HashMap;
use std::path::PathBuf;

use pa_onnx::backend::{BackendKind, BackendOptions};
use pa_onnx::verify::inference::InferenceOptions;
use pa_onnx::verify::{self, VerifyOptions};
use pa_onnx::Error;

use super::{Printer, Status};

/// Inference options shared by `verify` and `rewire --verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct InferenceArgs {
    /// Also require these backends to run; a skip becomes a failure.
    #[arg(long, value_delimiter = ',', value_name = "BACKENDS")]
    require: Vec<String>,
    /// Shape of an input with symbolic dimensions, e.g. `input:1x3x224x224` (repeatable).
    #[arg(long = "input-shape", value_name = "NAME:DIMS")]
    input_shapes: Vec<String>,
    /// Run on the arrays of this .npz file instead of seeded random inputs.
    #[arg(long, value_name = "FILE")]
    inputs: Option<PathBuf>,
    /// Absolute tolerance between backends.
    #[arg(long, default_value_t = 1e-4)]
    atol: f64,
    /// Relative tolerance between backends.
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// Tolerance for one output, `name:atol:rtol` (repeatable).
    #[arg(long = "tolerance", value_name = "NAME:ATOL:RTOL")]
    tolerances: Vec<String>,
    /// Seed of the random inputs.
    #[arg(long = "input-seed", default_value_t = 0)]
    input_seed: u64,
    /// The ONNX Runtime shared library (default: ORT_DYLIB_PATH, then python3's onnxruntime, then .venv).
    #[arg(long, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Do not require the candidate's outputs to differ from the original's.
    #[arg(long)]
    allow_unchanged: bool,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model as it was before rewiring.
    original: PathBuf,
    /// The model to check against it.
    candidate: PathBuf,
    /// Also run both models on these backends: tract, ort-cpu, ort-cuda.
    #[arg(long, value_delimiter = ',', value_name = "BACKENDS")]
    backends: Vec<String>,
    #[command(flatten)]
    inference: InferenceArgs,
    #[command(flatten)]
    tied: super::inspect::TiedArgs,
    /// Print a JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

fn option_error(option: &str, detail: impl Into<String>) -> Error {
    Error::InvalidOption {
        option: option.into(),
        detail: detail.into(),
    }
}

/// The backends named by `option`, or an error naming the first unknown one.
pub fn parse_backends(option: &str, list: &[String]) -> pa_onnx::Result<Vec<BackendKind>> {
    list.iter()
        .map(|s| {
            s.parse::<BackendKind>().map_err(|_| {
                option_error(
                    option,
                    format!("`{s}` is not one of tract, ort-cpu, ort-cuda"),
                )
            })
        })
        .collect()
}

impl InferenceArgs {
    /// Resolves the raw strings into library options.
    pub fn resolve(&self) -> pa_onnx::Result<InferenceOptions> {
        let mut shapes = HashMap::new();
        for s in &self.input_shapes {
            let (name, dims) = s
                .rsplit_once(':')
                .ok_or_else(|| option_error("--input-shape", format!("`{s}` is not NAME:DIMS")))?;
            let dims: Result<Vec<usize>, _> = dims
                .split(['x', ','])
                .map(|d| d.trim().parse::<usize>())
                .collect();
            let dims = dims.map_err(|_| {
                option_error(
                    "--input-shape",
                    format!("`{s}`: dims must look like 1x3x224x224"),
                )
            })?;
            shapes.insert(name.to_string(), dims);
        }
        let mut tolerances = HashMap::new();
        for t in &self.tolerances {
            let parts: Vec<&str> = t.rsplitn(3, ':').collect();
            let parsed = match parts.as_slice() {
                [rtol, atol, name] => rtol
                    .parse::<f64>()
                    .ok()
                    .zip(atol.parse::<f64>().ok())
                    .map(|(r, a)| (name.to_string(), (a, r))),
                _ => None,
            };
            let (name, tol) = parsed.ok_or_else(|| {
                option_error("--tolerance", format!("`{t}` is not NAME:ATOL:RTOL"))
            })?;
            tolerances.insert(name, tol);
        }
        Ok(InferenceOptions {
            backend: BackendOptions {
                ort_lib: self.ort_lib.clone(),
                input_shapes: shapes,
                ..Default::default()
            },
            seed: self.input_seed,
            atol: self.atol,
            rtol: self.rtol,
            tolerances,
            inputs: self.inputs.clone(),
            expect_change: !self.allow_unchanged,
            require: parse_backends("--require", &self.require)?,
        })
    }
}

pub fn run(args: Args, p: &Printer) -> pa_onnx::Result<Status> {
    let backends = parse_backends("--backends", &args.backends)?;
    // Options are checked before any model is read.
    let inference = args.inference.resolve()?;
    let opts = VerifyOptions {
        backends,
        inference,
        tied: args.tied.resolve(),
    };
    let report = verify::verify_files(&args.original, &args.candidate, &opts)?;
    if args.json {
        p.json(&report);
    } else {
        p.out(&report.to_string());
    }
    Ok(if report.passed() {
        Status::Ok
    } else {
        Status::CheckFailed
    })
}
