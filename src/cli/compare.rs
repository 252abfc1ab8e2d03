//! `pa-onnx compare`: train the original and the rewired model over seeds
//! and report whether rewiring helped, with paired statistics and plots.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use pa_onnx::backend::BackendKind;
use pa_onnx::compare::{
    compare, merge, Arm, CompareOptions, CompareReport, DataSettings, Event, OptimizerKind, Recipe,
    RunStatus, Schedule, ShardSpec,
};

use super::{Printer, Status};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The untrained model (a classifier: one float input, [batch, classes]
    /// logits).
    #[arg(required = true)]
    model: Option<PathBuf>,
    /// The data: `synthetic` (a built-in task), a .npz file (x, y and
    /// optionally x_test, y_test), x.npy,y.npy, a folder of MNIST-style IDX
    /// files, of CIFAR-10/100 binary batches, or of images with one
    /// subfolder per class.
    #[arg(long, required = true)]
    data: Option<String>,
    /// The output folder (created; rerunning the same command resumes).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Number of seeds (0..N) or a comma-separated list.
    #[arg(long, default_value = "10")]
    seeds: String,
    /// Arms besides the original: pa, deterministic, pa-stableN,
    /// deterministic-stableN (comma-separated; default pa, or none when
    /// --rewired is given).
    #[arg(long, value_delimiter = ',')]
    arms: Option<Vec<String>>,
    /// A fixed rewired file as the arm `rewired` (the same for every seed).
    #[arg(long, value_name = "FILE")]
    rewired: Option<PathBuf>,
    #[arg(long, default_value = "sgd")]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 5)]
    epochs: u32,
    /// Learning-rate schedule: constant, cosine (per step, to zero) or
    /// step (/10 at 50% and 75% of the epochs).
    #[arg(long, default_value = "cosine")]
    schedule: Schedule,
    /// Dropout as identity instead of training-mode masks.
    #[arg(long)]
    no_dropout: bool,
    /// Random horizontal flips of image samples.
    #[arg(long)]
    flip: bool,
    /// Random crops after zero-padding each side by N pixels.
    #[arg(long, default_value_t = 0, value_name = "N")]
    crop_pad: usize,
    /// Feed the samples as they are (no per-channel normalization).
    #[arg(long)]
    no_normalize: bool,
    /// Share held out for testing when the data has no test split.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Seed of the held-out split and of synthetic data.
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Use at most N training samples.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Training and test sizes of synthetic data.
    #[arg(long, default_value = "2048,512", value_name = "TRAIN,TEST")]
    synthetic_size: String,
    /// ort-cpu, ort-cuda or tract.
    #[arg(long, default_value = "ort-cpu")]
    backend: BackendKind,
    /// Runs trained at once (small models: one per core).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Backend threads per run (default: the cores divided among the jobs).
    #[arg(long)]
    threads: Option<usize>,
    /// Record the training loss every N steps.
    #[arg(long, default_value_t = 10, value_name = "N")]
    log_every: usize,
    /// Write each run's trained weights as ONNX into OUT/models/.
    #[arg(long)]
    save_models: bool,
    /// The ONNX Runtime shared library (default: as `verify` finds it).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Make only slice I of N of the runs (`auto/N`: I from
    /// SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or PA_ONNX_SHARD_INDEX);
    /// `compare merge` writes the report.
    #[arg(long, value_name = "I/N")]
    shard: Option<ShardSpec>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Gather the folders of a sharded comparison into one, with the report
    /// an unsharded run writes.
    Merge(MergeArgs),
}

#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// The shards' output folders.
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the merged comparison goes (may be one of the folders).
    #[arg(long)]
    out: PathBuf,
    /// Write the report from the runs that are there, listing the missing ones.
    #[arg(long)]
    allow_missing: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

fn bad(msg: String) -> Box<dyn std::error::Error> {
    msg.into()
}

fn seeds(s: &str) -> super::Result<Vec<u64>> {
    if !s.contains(',') {
        if let Ok(n) = s.trim().parse::<u64>() {
            return Ok((0..n).collect());
        }
    }
    s.split(',')
        .map(|x| x.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| {
            bad(format!(
                "--seeds {s}: expected a count or a list of integers"
            ))
        })
}

fn options(args: &Args, p: &Printer) -> super::Result<CompareOptions> {
    let default = if args.rewired.is_some() {
        vec![]
    } else {
        vec!["pa".to_string()]
    };
    let mut arms: Vec<Arm> = args
        .arms
        .as_ref()
        .unwrap_or(&default)
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    if let Some(path) = &args.rewired {
        arms.push(Arm::File { path: path.clone() });
    }
    let (train, test) = args
        .synthetic_size
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .ok_or_else(|| {
            bad(format!(
                "--synthetic-size {}: expected TRAIN,TEST",
                args.synthetic_size
            ))
        })?;
    let shard = match args.shard {
        Some(spec) => {
            let (shard, var) = spec.resolve(|k| std::env::var(k).ok())?;
            if let Some(var) = var {
                p.info(&format!("shard {shard} (index from {var})"));
            }
            Some(shard)
        }
        None => None,
    };
    let missing = |what: &str| bad(format!("compare needs {what}"));
    Ok(CompareOptions {
        model: args.model.clone().ok_or_else(|| missing("a model"))?,
        data: DataSettings {
            spec: args.data.clone().ok_or_else(|| missing("--data"))?,
            test_fraction: args.test_fraction,
            split_seed: args.split_seed,
            synthetic_size: (train, test),
            limit: args.limit,
        },
        out: args.out.clone().ok_or_else(|| missing("--out"))?,
        seeds: seeds(&args.seeds)?,
        arms,
        recipe: Recipe {
            optimizer: args.optimizer,
            lr: args.lr,
            momentum: args.momentum,
            weight_decay: args.weight_decay,
            batch: args.batch,
            epochs: args.epochs,
            schedule: args.schedule,
            dropout: !args.no_dropout,
            flip: args.flip,
            crop_pad: args.crop_pad,
            normalize: !args.no_normalize,
        },
        backend: args.backend,
        jobs: args.jobs,
        threads: args.threads,
        log_every: args.log_every,
        save_models: args.save_models,
        ort_lib: args.ort_lib.clone(),
        shard,
    })
}

fn print_summary(report: &CompareReport, out: &std::path::Path, json: bool, p: &Printer) {
    if json {
        p.json(report);
        return;
    }
    for m in &report.summary.metrics {
        for c in &m.paired {
            p.out(&c.sentence);
        }
    }
    if !report.missing.is_empty() {
        p.warn(&format!(
            "{} runs are missing from the report",
            report.missing.len()
        ));
    }
    p.out(&format!(
        "wrote {}: report.json, runs.csv, summary.md, {} plot files",
        out.display(),
        report.plots.len()
    ));
}

fn merge_run(a: MergeArgs, p: &Printer) -> super::Result<Status> {
    let command_line: Vec<String> = std::env::args().collect();
    let report = merge(&a.dirs, &a.out, a.allow_missing, &command_line)?;
    print_summary(&report, &a.out, a.json, p);
    Ok(Status::Ok)
}

pub fn run(args: Args, p: &Printer) -> super::Result<Status> {
    if let Some(Action::Merge(m)) = args.action {
        return merge_run(m, p);
    }
    let opts = options(&args, p)?;
    let command_line: Vec<String> = std::env::args().collect();
    let bar = p.progress_allowed().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {percent:>3}% runs {msg} eta {eta} ({elapsed})",
            )
            .expect("a valid template"),
        );
        bar
    });
    let done = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    let events = |e: Event<'_>| match e {
        Event::Planned {
            runs,
            pending,
            steps,
        } => {
            total.store(pending, Ordering::Relaxed);
            if pending < runs {
                p.info(&format!(
                    "resuming: {} of {runs} runs already finished in {}",
                    runs - pending,
                    opts.out.display()
                ));
            }
            if let Some(b) = &bar {
                b.set_length((pending * steps) as u64);
                b.set_message(format!("0/{pending}"));
            }
        }
        Event::Step => {
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
        Event::Finished(rec) => {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            let last = rec.epochs.last();
            let line = format!(
                "seed {} {}: {}, test accuracy {} after {} epochs, {:.1} s",
                rec.seed,
                rec.arm,
                match rec.status {
                    RunStatus::Finished => "finished",
                    RunStatus::Diverged => "DIVERGED",
                },
                last.map_or("-".into(), |e| format!("{:.2}%", e.test_acc * 100.0)),
                rec.epochs.len(),
                rec.wall_s
            );
            match &bar {
                Some(b) => {
                    b.set_message(format!("{n}/{}", total.load(Ordering::Relaxed)));
                    b.println(line);
                }
                None => p.info(&line),
            }
        }
        _ => {}
    };
    let report = compare(&opts, &command_line, &events)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match opts.shard {
        Some(shard) => p.out(&format!(
            "shard {shard} done; {} holds {} of the comparison's {} runs; gather the shards with `pa-onnx compare merge`",
            opts.out.display(),
            report.runs.len(),
            report.runs.len() + report.missing.len()
        )),
        None => print_summary(&report, &opts.out, args.json, p),
    }
    Ok(Status::Ok)
}
