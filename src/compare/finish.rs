//! From the runs in an output folder to the report: the same code whether
//! the runs were just made here or gathered from shards by `compare
//! merge`, so both give the same files.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::options::Arm;
use super::output::{self, CompareReport, DataInfo, Hardware, Missing, REPORT_VERSION};
use super::store::Store;
use super::{summary, CompareError};

/// What a comparison runs, written as `plan.json` beside the runs: the
/// seeds and arms (not part of the settings, so a comparison can grow),
/// and what `compare merge` needs to write the report without the data.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunPlan {
    /// The seeds.
    pub seeds: Vec<u64>,
    /// The arms, the original first.
    pub arms: Vec<Arm>,
    /// The model as the command named it (for the strength histogram).
    pub model: PathBuf,
    /// The backend's name.
    pub backend: String,
    /// The data.
    pub data: DataInfo,
}

/// Writes `plan.json`, then, when `write` (an unsharded run or a merge),
/// the report from every run the store holds; returns the report.
pub(crate) fn finish(
    store: &Store,
    plan: &RunPlan,
    command_line: &[String],
    config: serde_json::Value,
    strengths: Option<(String, Vec<f64>, Vec<f64>)>,
    write: bool,
) -> Result<CompareReport, CompareError> {
    let text = serde_json::to_vec_pretty(plan).expect("a plan serializes");
    store.write("plan.json", &text)?;
    let names: Vec<String> = plan.arms.iter().map(Arm::name).collect();
    let (mut runs, mut missing) = (vec![], vec![]);
    for &seed in &plan.seeds {
        for arm in &names {
            match store.load(arm, seed)? {
                Some(r) => runs.push(r),
                None => missing.push(Missing {
                    arm: arm.clone(),
                    seed,
                }),
            }
        }
    }
    let summary = summary::summarize(&runs, &names, plan.seeds[0]);
    let (plots, png_skipped) = if write {
        output::plots(store.dir(), &runs, &names, strengths.as_ref())?
    } else {
        (vec![], None)
    };
    let report = CompareReport {
        schema: "pa-onnx-compare",
        schema_version: REPORT_VERSION,
        pa_onnx_version: env!("CARGO_PKG_VERSION"),
        command_line: command_line.to_vec(),
        config_hash: store.hash().to_string(),
        config,
        seeds: plan.seeds.clone(),
        arms: names,
        data: plan.data.clone(),
        hardware: Hardware::here(&plan.backend),
        runs,
        missing,
        summary,
        plots,
        png_skipped,
    };
    if write {
        output::write_all(store, &report)?;
    }
    Ok(report)
}
