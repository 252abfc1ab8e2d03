//! The comparison's files for people and programs: `report.json` (every
//! number, versioned), `runs.csv` (tidy, one value a row), the plots, and
//! the summary page (`summary.md` in the output folder) tying them together.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::plot::{self, Band};
use super::record::RunRecord;
use super::store::Store;
use super::summary::Summary;
use super::CompareError;

/// Version of the `report.json` layout; bumped when a field changes meaning
/// or goes away (new fields may appear without a bump).
pub const REPORT_VERSION: u32 = 1;

/// The data a comparison trained on.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct DataInfo {
    /// Where it came from and how it was split.
    pub description: String,
    /// Training samples.
    pub train: usize,
    /// Test samples.
    pub test: usize,
    /// One sample's dimensions.
    pub sample_shape: Vec<usize>,
    /// The model's number of classes.
    pub classes: usize,
    /// True when the test split was held out of the data by `test_fraction`.
    pub test_held_out: bool,
    /// Class names by label, where the data has them (image folders).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub class_names: Option<Vec<String>>,
}

/// The machine the runs were made on.
#[derive(Clone, Debug, Serialize)]
pub struct Hardware {
    /// The CPU's model name.
    pub cpu: String,
    /// Logical cores.
    pub cores: usize,
    /// Operating system and architecture.
    pub os: String,
    /// The backend.
    pub backend: String,
}

/// A (seed, arm) run without a record yet.
#[derive(Clone, Debug, Serialize)]
pub struct Missing {
    /// The arm.
    pub arm: String,
    /// The seed.
    pub seed: u64,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    /// Always `pa-onnx-compare`.
    pub schema: &'static str,
    /// [`REPORT_VERSION`].
    pub schema_version: u32,
    /// The version of pa-onnx that made the report.
    pub pa_onnx_version: &'static str,
    /// The command line (as given to the library).
    pub command_line: Vec<String>,
    /// The settings that determine the numbers (as in `config.json`).
    pub config: serde_json::Value,
    /// Their hash, stamped on every run.
    pub config_hash: String,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// The arms; the first is the reference.
    pub arms: Vec<String>,
    /// The data.
    pub data: DataInfo,
    /// The machine.
    pub hardware: Hardware,
    /// Every run, ordered by seed then arm.
    pub runs: Vec<RunRecord>,
    /// Runs not made (an interrupted or partial comparison).
    pub missing: Vec<Missing>,
    /// The statistics.
    pub summary: Summary,
    /// Plot files written, relative to the output folder.
    pub plots: Vec<String>,
    /// Why PNG copies of the plots were not written, if they were not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub png_skipped: Option<String>,
}

impl Hardware {
    pub(crate) fn here(backend: &str) -> Hardware {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Hardware {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            backend: backend.to_string(),
        }
    }
}

/// `runs.csv`: `seed,arm,epoch,step,split,metric,value`, where `split` is
/// `train` or `test` for the end of an epoch, and `train_window` for the
/// training loss and accuracy over the steps since the previous record.
pub(crate) fn csv(runs: &[RunRecord]) -> String {
    let mut out = String::from("seed,arm,epoch,step,split,metric,value\n");
    for r in runs {
        for e in &r.epochs {
            for (split, metric, v) in [
                ("train", "loss", e.train_loss),
                ("train", "acc", e.train_acc),
                ("test", "loss", e.test_loss),
                ("test", "acc", e.test_acc),
            ] {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{split},{metric},{v}",
                    r.seed, r.arm, e.epoch, e.step
                );
            }
        }
        for s in &r.steps {
            for (metric, v) in [("loss", s.train_loss), ("acc", s.train_acc)] {
                let _ = writeln!(
                    out,
                    "{},{},{},{},train_window,{metric},{v}",
                    r.seed, r.arm, s.epoch, s.step
                );
            }
        }
    }
    out
}

/// Reads one per-epoch metric.
type EpochValue = fn(&super::record::EpochRecord) -> f64;

/// Mean and a band of plus or minus one standard deviation over seeds,
/// per epoch, of one per-epoch metric, for each arm's finished runs.
fn bands(
    runs: &[RunRecord],
    arms: &[String],
    value: fn(&super::record::EpochRecord) -> f64,
) -> Vec<Band> {
    arms.iter()
        .map(|arm| {
            let own: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| &r.arm == arm && r.status == super::record::RunStatus::Finished)
                .collect();
            let epochs = own.iter().map(|r| r.epochs.len()).max().unwrap_or(0);
            let mut band = Band {
                label: arm.clone(),
                x: vec![],
                mean: vec![],
                lo: vec![],
                hi: vec![],
            };
            for e in 0..epochs {
                let vals: Vec<f64> = own
                    .iter()
                    .filter_map(|r| r.epochs.get(e))
                    .map(value)
                    .collect();
                let d = super::stats::describe(&vals);
                let (mean, sd) = (d.mean.unwrap_or(f64::NAN), d.std.unwrap_or(0.0));
                band.x.push((e + 1) as f64);
                band.mean.push(mean);
                band.lo.push(mean - sd);
                band.hi.push(mean + sd);
            }
            band
        })
        .collect()
}

/// Draws every plot into `dir/plots`; returns the files (relative to
/// `dir`) and why PNG copies were skipped, if they were.
pub(crate) fn plots(
    dir: &Path,
    runs: &[RunRecord],
    arms: &[String],
    strengths: Option<&(String, Vec<f64>, Vec<f64>)>,
) -> Result<(Vec<String>, Option<String>), CompareError> {
    let pdir = dir.join("plots");
    std::fs::create_dir_all(&pdir).map_err(|e| CompareError::io(&pdir, e))?;
    let mut written = vec![];
    let curves: [(&str, &str, &str, EpochValue); 4] = [
        ("test_acc", "Test accuracy", "accuracy", |e| e.test_acc),
        ("test_loss", "Test loss", "loss", |e| e.test_loss),
        ("train_loss", "Training loss", "loss", |e| e.train_loss),
        ("train_acc", "Training accuracy", "accuracy", |e| {
            e.train_acc
        }),
    ];
    for (stem, title, y, value) in curves {
        let title = format!("{title} per epoch (mean, band: ±1 sd over seeds)");
        written.push(plot::curves(
            &pdir,
            stem,
            &title,
            "epoch",
            y,
            &bands(runs, arms, value),
        )?);
    }
    let reference = arms.first().map(String::as_str).unwrap_or("original");
    for arm in arms.iter().skip(1) {
        for (key, label, value) in [
            (
                "epoch1",
                "epoch-1 test accuracy",
                RunRecord::epoch1_acc as fn(&RunRecord) -> Option<f64>,
            ),
            ("final", "final test accuracy", RunRecord::final_acc),
        ] {
            let points: Vec<(f64, f64)> = runs
                .iter()
                .filter(|r| r.arm == reference)
                .filter_map(|r| {
                    let o = runs.iter().find(|o| &o.arm == arm && o.seed == r.seed)?;
                    Some((value(r)?, value(o)?))
                })
                .collect();
            written.push(plot::paired_scatter(
                &pdir,
                &format!("scatter_{key}_{arm}"),
                &format!("{label}, one point per seed"),
                reference,
                arm,
                &points,
            )?);
        }
    }
    if let Some((arm, before, after)) = strengths {
        written.push(plot::histograms(
            &pdir,
            "strength",
            &format!("Neuron strength before and after rewiring ({arm}, first seed)"),
            "row strength / (sd of the weights × √fan-in)",
            before,
            after,
        )?);
    }
    let mut files = vec![];
    let mut skipped = None;
    for w in written {
        let rel = |p: &Path| {
            p.strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        files.push(rel(&w.svg));
        if let Some(png) = &w.png {
            files.push(rel(png));
        }
        if w.png_skipped.is_some() {
            skipped = w.png_skipped.clone();
        }
    }
    Ok((files, skipped))
}

fn pct(v: f64, acc: bool) -> String {
    if acc {
        format!("{:.2}", v * 100.0)
    } else {
        format!("{v:.4}")
    }
}

/// `summary.md`: the sentences, a table per metric, and the plots.
pub(crate) fn markdown(report: &CompareReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# pa-onnx compare\n");
    let _ = writeln!(md, "`{}`\n", report.command_line.join(" "));
    let _ = writeln!(
        md,
        "Data: {}. {} seeds, arms: {}. pa-onnx {}, {} on {} ({} cores).\n",
        report.data.description,
        report.seeds.len(),
        report.arms.join(", "),
        report.pa_onnx_version,
        report.hardware.backend,
        report.hardware.cpu,
        report.hardware.cores,
    );
    if !report.missing.is_empty() {
        let _ = writeln!(
            md,
            "**Incomplete:** {} runs are missing; the statistics use the finished pairs only.\n",
            report.missing.len()
        );
    }
    for (arm, seeds) in &report.summary.diverged {
        let _ = writeln!(
            md,
            "**Diverged:** {arm} on seeds {seeds:?}; those pairs are left out.\n"
        );
    }
    let _ = writeln!(md, "## Findings\n");
    for m in &report.summary.metrics {
        for c in &m.paired {
            let _ = writeln!(md, "- {}", c.sentence);
        }
    }
    for m in &report.summary.metrics {
        let acc = m.metric.ends_with("_acc");
        let unit = if acc { " (%)" } else { "" };
        let _ = writeln!(md, "\n## {}{unit}\n", m.metric);
        let _ = writeln!(
            md,
            "| arm | n | mean | sd | median | IQM |\n|---|---|---|---|---|---|"
        );
        // In the comparison's order, the reference first.
        for (arm, d) in report
            .arms
            .iter()
            .filter_map(|a| m.arms.get(a).map(|d| (a, d)))
        {
            let f = |v: Option<f64>| v.map_or("-".to_string(), |v| pct(v, acc));
            let _ = writeln!(
                md,
                "| {arm} | {} | {} | {} | {} | {} |",
                d.n,
                f(d.mean),
                f(d.std),
                f(d.median),
                f(d.iqm)
            );
        }
    }
    let _ = writeln!(md, "\n## Plots\n");
    for p in report.plots.iter().filter(|p| p.ends_with(".svg")) {
        let _ = writeln!(md, "![{p}]({p})\n");
    }
    if let Some(why) = &report.png_skipped {
        let _ = writeln!(md, "PNG copies were not written: {why}.\n");
    }
    md
}

/// Writes `report.json`, `runs.csv` and `summary.md`.
pub(crate) fn write_all(store: &Store, report: &CompareReport) -> Result<(), CompareError> {
    let json = serde_json::to_vec_pretty(report).expect("the report serializes");
    store.write("report.json", &json)?;
    store.write("runs.csv", csv(&report.runs).as_bytes())?;
    store.write("summary.md", markdown(report).as_bytes())?;
    Ok(())
}
