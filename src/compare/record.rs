//! What one run leaves behind: its curve and its outcome. One record is
//! written per finished run, as soon as it finishes, so an interrupted
//! comparison keeps everything it completed.

use serde::{Deserialize, Serialize};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every epoch ran and every metric is finite.
    Finished,
    /// The loss (or a test metric) became NaN or infinite; the run stopped there.
    Diverged,
}

/// The metrics at the end of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1 for the first pass over the training split.
    pub epoch: u32,
    /// Steps taken so far.
    pub step: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Training accuracy over the epoch's steps (0..1), from the training forward pass.
    pub train_acc: f64,
    /// Loss on the test split, in inference mode.
    pub test_loss: f64,
    /// Accuracy on the test split (0..1).
    pub test_acc: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Seconds since the run started.
    pub wall_s: f64,
}

/// The training loss and accuracy over the last few steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Steps taken so far.
    pub step: usize,
    /// The epoch the step is in (1-based).
    pub epoch: u32,
    /// Mean training loss over the steps since the previous record.
    pub train_loss: f64,
    /// Training accuracy over those steps.
    pub train_acc: f64,
}

/// What the rewiring did to the arm's initial weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitRecord {
    /// Weights rewired.
    pub tensors: usize,
    /// Sum over them of the mean of row- and column-strength variance, before.
    pub variance_before: f64,
    /// The same after.
    pub variance_after: f64,
    /// Mean over tensors of the row-strength deviation, before and after.
    pub row_std: [f64; 2],
    /// Mean over tensors of the column-strength deviation, before and after.
    pub col_std: [f64; 2],
}

/// One (seed, arm) run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The seed: data order, augmentation, dropout masks and the rewiring.
    pub seed: u64,
    /// The arm's name.
    pub arm: String,
    /// How the run ended.
    pub status: RunStatus,
    /// Seconds the run took.
    pub wall_s: f64,
    /// Backend threads the run used.
    pub threads: usize,
    /// Median milliseconds of one training step (the batch handed over, the
    /// forward and backward pass, the optimizer update).
    pub step_ms: f64,
    /// The step at which it diverged, if it did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub diverged_at: Option<usize>,
    /// Per-epoch metrics.
    pub epochs: Vec<EpochRecord>,
    /// The training loss every few steps.
    pub steps: Vec<StepRecord>,
    /// The rewiring's effect on the initial weights (None for the original).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub init: Option<InitRecord>,
    /// Hash of the configuration the run belongs to.
    pub config: String,
}

impl RunRecord {
    /// The run's file name in `runs/`.
    pub fn file_name(arm: &str, seed: u64) -> String {
        format!("{arm}-seed{seed}.json")
    }

    /// Test accuracy after the first epoch.
    pub fn epoch1_acc(&self) -> Option<f64> {
        self.finished().and_then(|e| e.first()).map(|e| e.test_acc)
    }

    /// Best test accuracy over the epochs.
    pub fn best_acc(&self) -> Option<f64> {
        self.finished().map(|e| {
            e.iter()
                .map(|e| e.test_acc)
                .fold(f64::NEG_INFINITY, f64::max)
        })
    }

    /// Test accuracy after the last epoch.
    pub fn final_acc(&self) -> Option<f64> {
        self.finished().and_then(|e| e.last()).map(|e| e.test_acc)
    }

    /// Test loss after the last epoch.
    pub fn final_loss(&self) -> Option<f64> {
        self.finished().and_then(|e| e.last()).map(|e| e.test_loss)
    }

    fn finished(&self) -> Option<&[EpochRecord]> {
        (self.status == RunStatus::Finished && !self.epochs.is_empty()).then_some(&self.epochs[..])
    }
}
