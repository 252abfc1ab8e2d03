//! What a comparison runs: the arms, the training recipe and the data, as
//! one value that is written beside the results. Resuming compares the
//! stored value with the new one, so runs made under another recipe are
//! never mixed into a summary.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::rewire::Method;

/// One initialization of the model, trained once per seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Arm {
    /// The model's own weights.
    Original,
    /// The model rewired with the run's seed.
    Rewired {
        /// The rewiring rule.
        method: Method,
        /// Uniform shuffles tried before rewiring (0: none).
        stabilize: u32,
    },
    /// A fixed file (`--rewired`), the same for every seed.
    File {
        /// The file's path.
        path: PathBuf,
    },
}

impl Arm {
    /// The arm's name in reports and file names: `original`, `pa`,
    /// `deterministic`, `pa-stable10`, `rewired`.
    pub fn name(&self) -> String {
        match self {
            Arm::Original => "original".into(),
            Arm::Rewired { method, stabilize } if *stabilize == 0 => method.to_string(),
            Arm::Rewired { method, stabilize } => format!("{method}-stable{stabilize}"),
            Arm::File { .. } => "rewired".into(),
        }
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// An arm name that is not one of the forms [`Arm::name`] gives.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown arm `{0}`: expected original, pa, deterministic, pa-stableN or deterministic-stableN"
)]
pub struct UnknownArm(pub String);

impl FromStr for Arm {
    type Err = UnknownArm;
    fn from_str(s: &str) -> Result<Self, UnknownArm> {
        let bad = || UnknownArm(s.to_string());
        let (method, stabilize) = match s.split_once("-stable") {
            Some((m, n)) => (m, n.parse::<u32>().map_err(|_| bad())?),
            None => (s, 0),
        };
        let method = match method {
            "original" if stabilize == 0 && !s.contains('-') => return Ok(Arm::Original),
            "pa" => Method::Pa,
            "deterministic" => Method::Deterministic,
            _ => return Err(bad()),
        };
        Ok(Arm::Rewired { method, stabilize })
    }
}

/// The optimizer, with PyTorch's update rules (see [`crate::train::optim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with momentum and coupled weight decay.
    #[default]
    Sgd,
    /// Adam with decoupled weight decay.
    Adamw,
}

/// How the learning rate changes over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Cosine decay from the rate to zero over all steps, updated every step.
    Cosine,
    /// Divided by 10 after half the epochs and again after three quarters.
    Step,
}

impl Schedule {
    /// The rate at `step` of `total` steps, in epoch `epoch` (0-based) of `epochs`.
    pub fn lr(self, base: f32, step: usize, total: usize, epoch: u32, epochs: u32) -> f32 {
        match self {
            Schedule::Constant => base,
            Schedule::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                (base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())) as f32
            }
            Schedule::Step => {
                let e = epoch as f64;
                let n = epochs as f64;
                let drops = (e >= n * 0.5) as i32 + (e >= n * 0.75) as i32;
                base * 0.1f32.powi(drops)
            }
        }
    }
}

macro_rules! parse_enum {
    ($t:ty, $what:literal, $($s:literal => $v:expr),+) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($v),)+
                    _ => Err(format!(concat!("unknown ", $what, " `{}`: expected {}"), s, [$($s),+].join(", "))),
                }
            }
        }
    };
}
parse_enum!(OptimizerKind, "optimizer", "sgd" => OptimizerKind::Sgd, "adamw" => OptimizerKind::Adamw);
parse_enum!(Schedule, "schedule", "constant" => Schedule::Constant, "cosine" => Schedule::Cosine, "step" => Schedule::Step);

/// The training recipe every run of a comparison shares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Base learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Weight decay (coupled for SGD, decoupled for AdamW).
    pub weight_decay: f32,
    /// Samples per step (the last partial batch of an epoch is dropped).
    pub batch: usize,
    /// Passes over the training split.
    pub epochs: u32,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Dropout in training mode, with masks drawn from the run's seed.
    pub dropout: bool,
    /// Random horizontal flips of image samples.
    pub flip: bool,
    /// Random crops after zero-padding each side by this many pixels (0: none).
    pub crop_pad: usize,
    /// Normalize inputs per channel with the training split's mean and deviation.
    pub normalize: bool,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            batch: 64,
            epochs: 5,
            schedule: Schedule::Cosine,
            dropout: true,
            flip: false,
            crop_pad: 0,
            normalize: true,
        }
    }
}

/// Where the data comes from and how it is split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    /// What `--data` named (a path, or `synthetic[:task]`).
    pub spec: String,
    /// Share of the samples held out for testing when the data has no test split.
    pub test_fraction: f64,
    /// Seed of the held-out split and of synthetic data (not of the runs).
    pub split_seed: u64,
    /// Training and test sizes of synthetic data.
    pub synthetic_size: (usize, usize),
    /// Use at most this many training samples.
    pub limit: Option<usize>,
}

impl Default for DataSettings {
    fn default() -> Self {
        DataSettings {
            spec: "synthetic".into(),
            test_fraction: 0.2,
            split_seed: 0,
            synthetic_size: (2048, 512),
            limit: None,
        }
    }
}

/// A whole comparison.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// The model to train.
    pub model: PathBuf,
    /// The data.
    pub data: DataSettings,
    /// Output folder: one file per finished run, then the report.
    pub out: PathBuf,
    /// One run per arm for each of these seeds.
    pub seeds: Vec<u64>,
    /// The arms; `original` is the reference every other arm is paired with.
    pub arms: Vec<Arm>,
    /// The training recipe.
    pub recipe: Recipe,
    /// Where the steps run.
    pub backend: BackendKind,
    /// Runs trained at once.
    pub jobs: usize,
    /// Threads each run's backend uses (None: the cores divided among the jobs).
    pub threads: Option<usize>,
    /// Record the training loss every this many steps.
    pub log_every: usize,
    /// Write each run's trained weights as an ONNX model.
    pub save_models: bool,
    /// The ONNX Runtime library to load (None: found as for `verify`).
    pub ort_lib: Option<PathBuf>,
    /// Make only this slice of the runs (see [`super::shard`]); the report
    /// is left to `compare merge`.
    pub shard: Option<super::shard::Shard>,
}

impl CompareOptions {
    /// A comparison of the original and the PA-rewired model over seeds
    /// 0..n with the default recipe.
    pub fn new(model: PathBuf, data: &str, out: PathBuf, n: u64) -> Self {
        CompareOptions {
            model,
            data: DataSettings {
                spec: data.into(),
                ..Default::default()
            },
            out,
            seeds: (0..n).collect(),
            arms: vec![
                Arm::Original,
                Arm::Rewired {
                    method: Method::Pa,
                    stabilize: 0,
                },
            ],
            recipe: Recipe::default(),
            backend: BackendKind::OrtCpu,
            jobs: 1,
            threads: None,
            log_every: 10,
            save_models: false,
            ort_lib: None,
            shard: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_names_round_trip() {
        for s in [
            "original",
            "pa",
            "deterministic",
            "pa-stable10",
            "deterministic-stable3",
        ] {
            assert_eq!(s.parse::<Arm>().unwrap().name(), s);
        }
        for bad in [
            "",
            "orig",
            "original-stable2",
            "pa-stable",
            "pa-stablex",
            "rewired",
        ] {
            assert!(bad.parse::<Arm>().is_err(), "{bad}");
        }
    }

    #[test]
    fn schedules_start_at_the_base_rate_and_decay() {
        assert_eq!(Schedule::Cosine.lr(0.1, 0, 100, 0, 10), 0.1);
        assert!(Schedule::Cosine.lr(0.1, 100, 100, 9, 10).abs() < 1e-9);
        assert!((Schedule::Cosine.lr(0.1, 50, 100, 5, 10) - 0.05).abs() < 1e-7);
        assert_eq!(Schedule::Step.lr(0.1, 0, 100, 4, 10), 0.1);
        assert!((Schedule::Step.lr(0.1, 0, 100, 5, 10) - 0.01).abs() < 1e-9);
        assert!((Schedule::Step.lr(0.1, 0, 100, 8, 10) - 0.001).abs() < 1e-9);
        assert_eq!(Schedule::Constant.lr(0.1, 99, 100, 9, 10), 0.1);
    }
}
