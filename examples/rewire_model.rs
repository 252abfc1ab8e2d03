//! Rewires a model from Rust code: plan, rewire with a chosen seed and
//! method, then prove the output is a permutation of the input.
//!
//! `cargo run --example rewire_model -- models/torch/cnn_bn.onnx /tmp/cnn_bn_pa.onnx`

use std::path::PathBuf;

use pa_onnx::pipeline::{rewire_file, RewireOptions};
use pa_onnx::rewire::{Method, Options};
use pa_onnx::verify::structure::compare_files;
use pa_onnx::Selection;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let input = PathBuf::from(args.next().ok_or("usage: rewire_model IN OUT")?);
    let output = PathBuf::from(args.next().ok_or("usage: rewire_model IN OUT")?);

    let opts = RewireOptions {
        rewire: Options {
            method: Method::Pa,
            stabilize: 0,
            seed: 7,
        },
        // Only convolutions with at least 100 values.
        selection: Selection::new(&["Conv".to_string()], None, None, 100)?,
        ..Default::default()
    };
    let report = rewire_file(&input, Some(&output), &opts)?;
    for t in &report.tensors {
        println!(
            "{:<24} {:>5} x {:<6} row std {:.3} -> {:.3}, column std {:.3} -> {:.3}",
            t.name,
            t.rows,
            t.cols,
            t.before.row_std,
            t.after.row_std,
            t.before.col_std,
            t.after.col_std
        );
    }
    let proof = compare_files(&input, &output)?;
    println!(
        "{} tensors permuted; permutation proof {}",
        proof.permuted.len(),
        if proof.passed() { "holds" } else { "FAILED" }
    );
    Ok(())
}
