//! `pa-onnx verify`: the permutation proof, and (with --backends) inference
//! on both models.

use std::path::PathBuf;

use pa_onnx::verify::structure::{self, StructureReport};
use serde::Serialize;

use super::{Printer, Status};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model as it was before rewiring.
    original: PathBuf,
    /// The model to check against it.
    candidate: PathBuf,
    /// Print a JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Json<'a> {
    passed: bool,
    structure: &'a StructureReport,
}

pub fn run(args: Args, p: &Printer) -> pa_onnx::Result<Status> {
    let report = structure::compare_files(&args.original, &args.candidate)?;
    let passed = report.passed();
    if args.json {
        p.json(&Json {
            passed,
            structure: &report,
        });
    } else {
        p.out(&structure_summary(&report));
    }
    Ok(if passed { Status::Ok } else { Status::CheckFailed })
}

fn structure_summary(r: &StructureReport) -> String {
    let mut out = String::new();
    let mode = match r.mode {
        structure::Mode::Aligned => "same layout, every byte outside tensor payloads compared",
        structure::Mode::ByName => "different layouts, tensors matched by name and nodes by position",
    };
    out.push_str(&format!("structure: {mode}\n"));
    out.push_str(&format!(
        "  {} tensors permuted, {} identical\n",
        r.permuted.len(),
        r.identical.len()
    ));
    for name in &r.permuted {
        out.push_str(&format!("  permuted: {name}\n"));
    }
    if r.passed() {
        out.push_str("PASSED: every tensor is a bitwise permutation of the original's, and nothing else differs");
    } else {
        for d in &r.differences {
            match &d.tensor {
                Some(t) => out.push_str(&format!("  difference: `{t}`: {}\n", d.detail)),
                None => out.push_str(&format!("  difference: {}\n", d.detail)),
            }
        }
        out.push_str(&format!("FAILED: {} difference(s)", r.differences.len()));
    }
    out
}
