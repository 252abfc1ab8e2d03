//! `pa-onnx rewire`: the main job.

use std::path::PathBuf;
use std::sync::Arc;

use pa_onnx::onnx::patch::WriteOptions;
use pa_onnx::pipeline::{self, RewireOptions};
use pa_onnx::report::RewireReport;
use pa_onnx::rewire::{Method, Options, DEFAULT_SEED};
use pa_onnx::verify::{self, VerifyOptions};
use pa_onnx::{Error, Selection};

use super::inspect::{table, ties, TiedArgs};
use super::{Printer, Status};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MethodArg {
    /// Weighted sampling by accumulated strength (the paper's rule).
    Pa,
    /// Columns ordered by accumulated strength (no randomness).
    Deterministic,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model to read.
    input: PathBuf,
    /// Where to write the rewired model (not needed with --dry-run).
    output: Option<PathBuf>,
    /// Seed of every tensor's random stream.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    #[arg(long, value_enum, default_value = "pa")]
    method: MethodArg,
    /// Try K uniform shuffles of each tensor first and keep the most balanced.
    #[arg(long, value_name = "K", default_value_t = 0)]
    stabilize: u32,
    /// Only rewire weights of these ops (Gemm, MatMul, Conv, ConvTranspose).
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Only rewire tensors whose name (or a consumer node's name) matches this regex.
    #[arg(long, value_name = "REGEX")]
    include: Option<String>,
    /// Leave tensors whose name (or a consumer node's name) matches this regex.
    #[arg(long, value_name = "REGEX")]
    exclude: Option<String>,
    /// Leave tensors with fewer elements than this.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_size: u64,
    #[command(flatten)]
    tied: TiedArgs,
    /// Print the plan and the expected effect; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    /// Allow OUTPUT to replace the input or its external data files.
    #[arg(long)]
    force: bool,
    /// Flush the output to disk before renaming it into place.
    #[arg(long)]
    fsync: bool,
    /// Work space the tensors rewired at the same time may use together,
    /// in bytes or with a K, M or G suffix (powers of 1024). Large tensors
    /// then run one after another; one always runs, whatever its size.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    max_memory: u64,
    /// After writing, run `verify` with these backends (tract, ort-cpu, ort-cuda).
    #[arg(long, value_delimiter = ',', value_name = "BACKENDS")]
    verify: Vec<String>,
    #[command(flatten)]
    inference: super::verify::InferenceArgs,
}

/// Why `--max-memory` cannot be read as a size.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum SizeError {
    #[error("unknown size unit `{0}` (use K, M, G or T)")]
    UnknownUnit(char),
    #[error("`{0}` is not a size (e.g. 512M, 2G)")]
    NotASize(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// `1024`, `512K`, `64M`, `2G` (powers of 1024; a trailing `B` or `iB` is
/// allowed).
fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(SizeError::UnknownUnit(c)),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| SizeError::NotASize(s.to_string()))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| SizeError::TooLarge(s.to_string()))
}

pub fn run(args: Args, p: &Printer) -> pa_onnx::Result<Status> {
    if args.output.is_none() && !args.dry_run {
        return Err(Error::InvalidOption {
            option: "OUTPUT".into(),
            detail: "give an output path, or --dry-run to only plan".into(),
        });
    }
    let verify_backends = super::verify::parse_backends("--verify", &args.verify)?;
    let inference = args.inference.resolve()?;
    let selection = Selection {
        tied: args.tied.resolve(),
        ..Selection::new(
            &args.op,
            args.include.as_deref(),
            args.exclude.as_deref(),
            args.min_size,
        )?
    };
    let (model, plan) = pipeline::plan_file(&args.input, &selection)?;
    let bar = if p.progress_allowed() && !args.dry_run {
        let bar = indicatif::ProgressBar::new(plan.weights.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
                .expect("static template"),
        );
        Some(bar)
    } else {
        None
    };
    let opts = RewireOptions {
        rewire: Options {
            method: match args.method {
                MethodArg::Pa => Method::Pa,
                MethodArg::Deterministic => Method::Deterministic,
            },
            stabilize: args.stabilize,
            seed: args.seed,
        },
        selection,
        write: WriteOptions {
            force: args.force,
            sync: args.fsync,
        },
        hashes: args.json || args.report.is_some(),
        max_memory: Some(args.max_memory),
        progress: bar.clone().map(|b| {
            Arc::new(move |name: &str| {
                b.set_message(name.to_string());
                b.inc(1);
            }) as pipeline::Progress
        }),
    };
    let output = if args.dry_run {
        None
    } else {
        args.output.as_deref()
    };
    if let Some(out) = output {
        super::warn_stale(p, super::parent_dir(out));
    }
    let report = pipeline::rewire_model(&model, &plan, output, &opts)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&report).expect("reports serialize");
        super::write_atomically(path, text.as_bytes())?;
    }
    // `--verify` runs what `pa-onnx verify` runs on the new file, and
    // prints what it prints.
    let verified = match (output, args.verify.is_empty()) {
        (Some(out), false) => {
            // With `--tied skip` a folded tie is broken on purpose.
            let opts = VerifyOptions {
                backends: verify_backends,
                inference,
                tied: args.tied.resolve(),
            };
            Some(verify::verify_files(&args.input, out, &opts)?)
        }
        _ => None,
    };
    if args.json {
        // One JSON document: the report, with the verification inside it.
        let mut value = serde_json::to_value(&report).expect("reports serialize");
        if let Some(v) = &verified {
            value["verify"] = serde_json::to_value(v).expect("reports serialize");
        }
        p.json(&value);
    } else {
        p.out(&summary(&report));
        if let Some(v) = &verified {
            p.out(&v.to_string());
        }
    }
    Ok(match verified {
        Some(v) if !v.passed() => Status::CheckFailed,
        _ => Status::Ok,
    })
}

fn summary(r: &RewireReport) -> String {
    let mut rows = vec![[
        "TENSOR".to_string(),
        "OP".into(),
        "ROWS x COLS".into(),
        "ROW STD".into(),
        "COL STD".into(),
    ]];
    for t in &r.tensors {
        rows.push([
            t.name.clone(),
            t.op.clone(),
            format!("{} x {}", t.rows, t.cols),
            format!("{:.3} -> {:.3}", t.before.row_std, t.after.row_std),
            format!("{:.3} -> {:.3}", t.before.col_std, t.after.col_std),
        ]);
    }
    let mut out = String::new();
    let verb = if r.dry_run { "would rewire" } else { "rewired" };
    out.push_str(&format!(
        "{verb} {} tensors of {} (method {}, seed {}{})\n",
        r.tensors.len(),
        r.input.path,
        r.method,
        r.seed,
        if r.stabilize > 0 {
            format!(", stabilize {}", r.stabilize)
        } else {
            String::new()
        }
    ));
    if !r.tensors.is_empty() {
        out.push_str(&table(&rows));
        out.push('\n');
    }
    if !r.ties.is_empty() {
        out.push_str(&ties(&r.ties));
        out.push('\n');
    }
    if !r.skipped.is_empty() {
        out.push_str(&format!(
            "skipped {} tensors (see `pa-onnx inspect` for reasons)\n",
            r.skipped.len()
        ));
    }
    if let Some(o) = &r.output {
        out.push_str(&format!("wrote {}\n", o.path));
    }
    out.push_str(&format!(
        "strength variance: {:.4} -> {:.4} ({:.1}% lower)",
        r.totals.variance_before, r.totals.variance_after, r.totals.reduction_percent
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
