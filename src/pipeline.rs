//! The main job end to end: read, plan, rewire every selected weight in
//! parallel, write the patched file, and account for it in a report.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::onnx::patch::{Output, WriteOptions};
use crate::onnx::payload;
use crate::onnx::Model;
use crate::plan::{self, Plan, Selection, Weight};
use crate::report::{self, FileInfo, RewireReport, TensorReport, Totals};
use crate::rewire::{self, Options};

/// Called with the name of each tensor once it is rewired.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything `rewire` can be told.
#[derive(Clone, Default)]
pub struct RewireOptions {
    pub rewire: Options,
    pub selection: Selection,
    pub write: WriteOptions,
    /// Compute SHA-256 of input and output for the report.
    pub hashes: bool,
    pub progress: Option<Progress>,
}

/// Rewires one located weight of `model`: returns its new payload (same
/// length, a bitwise permutation of the old one) and its report line.
pub fn rewire_tensor(model: &Model, w: &Weight, opts: &Options) -> Result<(Vec<u8>, TensorReport)> {
    let t = &model.tensors[w.tensor];
    let bytes = model.payload(t)?;
    let values = payload::decode_f64(t, &bytes)?;
    let enc = payload::encoding(t)
        .ok_or_else(|| Error::tensor(&t.name, "elements are not addressable"))?;
    let outcome = rewire::rewire_values(&values, &t.dims, &w.axes, &w.key, opts);
    let mut out = Vec::new();
    payload::permute(enc, &bytes, &outcome.perm, &mut out);
    Ok((
        out,
        TensorReport {
            name: w.name.clone(),
            op: w.op.clone(),
            dtype: w.dtype.clone(),
            shape: w.shape.clone(),
            rows: w.rows,
            cols: w.cols,
            transposed: w.transposed,
            before: outcome.before,
            after: outcome.after,
        },
    ))
}

/// Reads and plans `input` with the given selection.
pub fn plan_file(input: &Path, selection: &Selection) -> Result<(Model, Plan)> {
    let model = Model::open(input)?;
    let plan = plan::locate(&model)?.select(selection);
    Ok((model, plan))
}

/// Rewires `input` into `output` (or only plans, when `output` is None).
pub fn rewire_file(
    input: &Path,
    output: Option<&Path>,
    opts: &RewireOptions,
) -> Result<RewireReport> {
    let (model, plan) = plan_file(input, &opts.selection)?;
    rewire_model(&model, &plan, output, opts)
}

/// Rewires an already read and planned model.
pub fn rewire_model(
    model: &Model,
    plan: &Plan,
    output: Option<&Path>,
    opts: &RewireOptions,
) -> Result<RewireReport> {
    let input_path = model
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut tensors: Vec<TensorReport> = Vec::new();
    let mut output_info = None;
    let input_hash = || {
        if opts.hashes {
            Some(report::sha256_bytes(&model.bytes))
        } else {
            None
        }
    };
    let input_sha;
    if let Some(out) = output {
        let indices: Vec<usize> = plan.weights.iter().map(|w| w.tensor).collect();
        let staged = Output::create(model, out, &indices, opts.write)?;
        // Largest first, so the last tensor to finish is a small one.
        let mut order: Vec<usize> = (0..plan.weights.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(plan.weights[i].rows * plan.weights[i].cols));
        let (results, sha) = rayon::join(
            || {
                order
                    .par_iter()
                    .map(|&i| {
                        let w = &plan.weights[i];
                        let (bytes, rep) = rewire_tensor(model, w, &opts.rewire)?;
                        staged.write(model, w.tensor, &bytes)?;
                        if let Some(p) = &opts.progress {
                            p(&w.name);
                        }
                        Ok((i, rep))
                    })
                    .collect::<Result<Vec<_>>>()
            },
            input_hash,
        );
        let mut results = results?;
        input_sha = sha;
        results.sort_by_key(|(i, _)| *i);
        tensors = results.into_iter().map(|(_, r)| r).collect();
        staged.commit()?;
        output_info = Some(FileInfo {
            path: out.display().to_string(),
            sha256: if opts.hashes {
                Some(report::sha256_file(out).map_err(|e| Error::io("cannot read back", out, e))?)
            } else {
                None
            },
        });
    } else {
        input_sha = input_hash();
        // A dry run still computes what rewiring would achieve.
        let results: Vec<Result<TensorReport>> = plan
            .weights
            .par_iter()
            .map(|w| rewire_tensor(model, w, &opts.rewire).map(|(_, r)| r))
            .collect();
        for r in results {
            tensors.push(r?);
        }
    }
    Ok(RewireReport {
        pa_onnx_version: env!("CARGO_PKG_VERSION").to_string(),
        seed: opts.rewire.seed,
        method: opts.rewire.method,
        stabilize: opts.rewire.stabilize,
        dry_run: output.is_none(),
        input: FileInfo {
            path: input_path,
            sha256: input_sha,
        },
        output: output_info,
        totals: Totals::from_tensors(&tensors),
        tensors,
        skipped: plan.skipped.clone(),
    })
}
