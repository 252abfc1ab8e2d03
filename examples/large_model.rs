//! Scale check beyond the 2 GiB protobuf limit: generates an MLP whose
//! weights live in one external data file (9 layers of 8192 x 8192 f32,
//! 2.25 GiB, by default), rewires it, proves the output a permutation, and
//! prints the sizes, the wall time and the peak resident memory of each
//! stage.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-rel cargo run --release --no-default-features \
//!     --example large_model -- [DIR] [--layers N] [--width W] [--keep]
//! ```
//!
//! Peak memory is the kernel's high-water mark (`VmHWM` in
//! `/proc/self/status`), which only ever grows. Each stage therefore runs in
//! a fresh child process of this program, so that the rewire figure is not
//! inflated by the generation before it, nor the verify figure by the
//! rewire. The files go to a temporary folder (or DIR) and are removed at
//! the end, also on failure, unless `--keep` is given.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use pa_onnx::pipeline::{rewire_file, RewireOptions};
use pa_onnx::verify::structure::compare_files;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// One `kB` field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// What a stage prints on its last line, for the parent to read.
fn report_stage(name: &str, start: Instant) {
    println!(
        "stage {name}: {:.1} s, peak RSS {} (VmHWM; at the end RssAnon {}, RssFile {})",
        start.elapsed().as_secs_f64(),
        mib(status_bytes("VmHWM")),
        mib(status_bytes("RssAnon")),
        mib(status_bytes("RssFile")),
    );
}

/// Runs one stage in a child process, so that its peak memory is its own.
fn child(stage: &str, args: &[&Path]) -> Res<()> {
    let exe = std::env::current_exe()?;
    let status = Command::new(exe)
        .arg(format!("--stage={stage}"))
        .args(args)
        .status()?;
    if !status.success() {
        return Err(format!("stage {stage} failed: {status}").into());
    }
    Ok(())
}

fn stage(name: &str, args: &[PathBuf]) -> Res<()> {
    let start = Instant::now();
    match (name, args) {
        ("rewire", [input, output]) => {
            let report = rewire_file(input, Some(output), &RewireOptions::default())?;
            println!("  rewired {} tensors", report.tensors.len());
        }
        ("verify", [original, candidate]) => {
            let report = compare_files(original, candidate)?;
            if !report.passed() {
                return Err(format!("verify failed: {:?}", report.differences).into());
            }
            println!(
                "  {} tensors permuted, {} identical",
                report.permuted.len(),
                report.identical.len()
            );
        }
        _ => return Err(format!("unknown stage {name} {args:?}").into()),
    }
    report_stage(name, start);
    Ok(())
}

/// Removes the files this run made, whatever happens.
struct Cleanup {
    files: Vec<PathBuf>,
    keep: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(name) = args.first().and_then(|a| a.strip_prefix("--stage=")) {
        return stage(
            name,
            &args[1..].iter().map(PathBuf::from).collect::<Vec<_>>(),
        );
    }
    let (mut layers, mut width, mut keep, mut dir) = (9usize, 8192usize, false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--layers" => layers = it.next().ok_or("--layers N")?.parse()?,
            "--width" => width = it.next().ok_or("--width W")?.parse()?,
            "--keep" => keep = true,
            d => dir = Some(PathBuf::from(d)),
        }
    }
    let temp;
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let input = dir.join("large.onnx");
    let _cleanup = Cleanup {
        files: vec![input.clone(), dir.join("large.onnx.data")],
        keep,
    };
    println!(
        "{layers} layers of {width} x {width} f32 in {} (external data: {})",
        dir.display(),
        gib((layers * width * width * 4) as u64)
    );

    let start = Instant::now();
    pa_onnx::synth::external_mlp(&dir, "large.onnx", layers, width)?;
    report_stage("generate", start);
    println!(
        "  model {} bytes, data {}",
        size(&input),
        gib(size(&dir.join("large.onnx.data")))
    );

    // The output names its data file by the same relative location as the
    // input does, so it goes to a folder of its own.
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir)?;
    let output = out_dir.join("large_pa.onnx");
    let _cleanup_out = Cleanup {
        files: vec![output.clone(), out_dir.join("large.onnx.data")],
        keep,
    };
    child("rewire", &[&input, &output])?;
    println!(
        "  output model {} bytes, data {}",
        size(&output),
        gib(size(&out_dir.join("large.onnx.data")))
    );
    child("verify", &[&input, &output])?;
    if !keep {
        drop(_cleanup_out);
        let _ = std::fs::remove_dir(&out_dir);
    }
    Ok(())
}
