//! One (seed, arm) run: train the model from the arm's starting values and
//! measure it after every epoch.
//!
//! Everything random in a run comes from its seed alone: the order of the
//! batches, the augmentation and the dropout masks. Two arms with the same
//! seed therefore see the same batches in the same order with the same
//! masks, and differ only in their starting values.

use std::sync::Arc;
use std::time::Instant;

use crate::backend::{BackendKind, BackendOptions, HostTensor, TensorData};
use crate::train::{
    build_training_graph, AdamW, EvalGraph, Evaluator, GraphTarget, Optimizer, Sgd,
    TrainGraphOptions, Trainer,
};

use super::arms::Init;
use super::data::{eval_batches, train_batches, Augment, Dataset};
use super::options::{OptimizerKind, Recipe};
use super::record::{EpochRecord, RunRecord, RunStatus, StepRecord};
use super::CompareError;

/// What every run of a comparison shares.
pub(crate) struct Shared {
    /// The original model's bytes (the training graph is built from them).
    pub model: Vec<u8>,
    /// The inference graph at the training batch size.
    pub eval: EvalGraph,
    /// The model's data input.
    pub input: String,
    /// One sample's dimensions.
    pub sample_shape: Vec<usize>,
    /// Normalized training and test splits.
    pub train: Arc<Dataset>,
    /// The test split.
    pub test: Arc<Dataset>,
    /// The training recipe.
    pub recipe: Recipe,
    /// Where the steps run.
    pub backend: BackendKind,
    /// Backend settings (the ONNX Runtime library).
    pub backend_opts: BackendOptions,
    /// Steps between two training-loss records.
    pub log_every: usize,
    /// Hash of the comparison's configuration.
    pub config: String,
}

impl Shared {
    /// Steps in one epoch (the last partial batch is dropped).
    pub(crate) fn steps_per_epoch(&self) -> usize {
        self.train.len() / self.recipe.batch
    }

    /// Steps in one run.
    pub(crate) fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.recipe.epochs as usize
    }
}

/// A finished (or diverged) run and the tensors it ended with.
pub(crate) struct Outcome {
    pub record: RunRecord,
    /// Final values of the trained tensors and running statistics, by name.
    pub tensors: Vec<(String, Vec<f32>)>,
}

/// The graph form for a backend: tract needs the portable one.
pub(crate) fn graph_target(backend: BackendKind) -> GraphTarget {
    match backend {
        BackendKind::Tract => GraphTarget::Portable,
        _ => GraphTarget::OnnxRuntime,
    }
}

fn optimizer(r: &Recipe) -> Box<dyn Optimizer> {
    match r.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(r.lr, r.momentum, r.weight_decay)),
        OptimizerKind::Adamw => Box::new(AdamW::new(r.lr, r.weight_decay)),
    }
}

/// Trains one run; `tick` is called after every step.
pub(crate) fn train_run(
    shared: &Shared,
    seed: u64,
    arm: &str,
    init: &Init,
    threads: usize,
    tick: &(dyn Fn() + Sync),
) -> Result<Outcome, CompareError> {
    let start = Instant::now();
    let r = &shared.recipe;
    let target = graph_target(shared.backend);
    let mut graph = build_training_graph(
        &shared.model,
        &TrainGraphOptions {
            batch_size: Some(r.batch as i64),
            dropout: r.dropout,
            // Kept below 2^24 so the seed attribute, a float, holds it exactly.
            dropout_seed: Some((seed % (1 << 16)) as i64 * 64),
            target,
            ..Default::default()
        },
    )?;
    graph.expose(&shared.eval.output, &shared.eval.output_shape)?;
    for p in &mut graph.params {
        if let Some(v) = init.values.get(&p.name) {
            if v.len() != p.init.len() {
                return Err(CompareError::Options(format!(
                    "arm {arm}: tensor `{}` has {} values, the model's has {}",
                    p.name,
                    v.len(),
                    p.init.len()
                )));
            }
            p.init.clone_from(v);
        }
    }
    let opts = BackendOptions {
        intra_threads: Some(threads),
        ..shared.backend_opts.clone()
    };
    let mut trainer = Trainer::new(graph, shared.backend, &opts, optimizer(r))?;
    let mut evaluator = Evaluator::new(shared.eval.clone(), shared.backend, &opts)?;
    let classes = *shared.eval.output_shape.last().unwrap_or(&1) as usize;
    let mut x_shape = vec![r.batch];
    x_shape.extend(&shared.sample_shape);
    let (per_epoch, total) = (shared.steps_per_epoch(), shared.total_steps());
    let augment = Augment {
        flip: r.flip,
        crop_pad: r.crop_pad,
    };
    let mut record = RunRecord {
        seed,
        arm: arm.to_string(),
        status: RunStatus::Finished,
        wall_s: 0.0,
        threads,
        step_ms: 0.0,
        diverged_at: None,
        epochs: vec![],
        steps: vec![],
        init: init.record.clone(),
        config: shared.config.clone(),
    };
    let mut step = 0usize;
    let mut step_times = Vec::with_capacity(total);
    let (mut window_loss, mut window_hits, mut window_n) = (0.0f64, 0usize, 0usize);
    'epochs: for epoch in 0..r.epochs {
        let (mut loss_sum, mut hits, mut seen) = (0.0f64, 0usize, 0usize);
        let mut lr = r.lr;
        let mut batches =
            train_batches(shared.train.clone(), r.batch, seed, epoch, augment)?.take(per_epoch);
        loop {
            let t0 = Instant::now();
            let Some(batch) = batches.next() else {
                break;
            };
            lr = r.schedule.lr(r.lr, step, total, epoch, r.epochs);
            trainer.optimizer_mut().set_lr(lr);
            let x = tensor(&x_shape, TensorData::F32(batch.x))?;
            let y = tensor(&[r.batch], TensorData::I64(batch.y.clone()))?;
            let (loss, extra) =
                trainer.step_with(&[(shared.input.clone(), x)], y, &[&shared.eval.output])?;
            step_times.push(t0.elapsed().as_secs_f64());
            step += 1;
            tick();
            if !loss.is_finite() {
                record.status = RunStatus::Diverged;
                record.diverged_at = Some(step);
                break 'epochs;
            }
            let h = correct(&extra[0], &batch.y, classes, r.batch);
            loss_sum += loss as f64;
            hits += h;
            seen += r.batch;
            window_loss += loss as f64;
            window_hits += h;
            window_n += 1;
            if step.is_multiple_of(shared.log_every) {
                record.steps.push(StepRecord {
                    step,
                    epoch: epoch + 1,
                    train_loss: window_loss / window_n as f64,
                    train_acc: window_hits as f64 / (window_n * r.batch) as f64,
                });
                (window_loss, window_hits, window_n) = (0.0, 0, 0);
            }
        }
        let (test_loss, test_acc) = evaluate(shared, &mut evaluator, &trainer, &x_shape, classes)?;
        let steps_done = (seen / r.batch).max(1) as f64;
        record.epochs.push(EpochRecord {
            epoch: epoch + 1,
            step,
            train_loss: loss_sum / steps_done,
            train_acc: hits as f64 / seen.max(1) as f64,
            test_loss,
            test_acc,
            lr: lr as f64,
            wall_s: start.elapsed().as_secs_f64(),
        });
        if !test_loss.is_finite() {
            record.status = RunStatus::Diverged;
            record.diverged_at = Some(step);
            break;
        }
    }
    // A diverged run's remaining steps still count toward the progress.
    for _ in step..total {
        tick();
    }
    record.wall_s = start.elapsed().as_secs_f64();
    step_times.sort_by(f64::total_cmp);
    record.step_ms = step_times
        .get(step_times.len() / 2)
        .map_or(0.0, |s| s * 1e3);
    let tensors = trainer
        .params()
        .chain(trainer.running_stats())
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect();
    Ok(Outcome { record, tensors })
}

fn tensor(shape: &[usize], data: TensorData) -> Result<HostTensor, CompareError> {
    HostTensor::new(shape.to_vec(), data).map_err(|e| CompareError::Options(e.to_string()))
}

/// Rows of `logits` (`n x classes`) whose largest entry is the label.
fn correct(logits: &[f32], labels: &[i64], classes: usize, n: usize) -> usize {
    (0..n)
        .filter(|&i| argmax(&logits[i * classes..(i + 1) * classes]) == labels[i] as usize)
        .count()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Softmax cross-entropy of one row of logits against its label.
fn cross_entropy(row: &[f32], label: usize) -> f64 {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    lse - row[label] as f64
}

/// Mean loss and accuracy over the test split, in inference mode.
fn evaluate(
    shared: &Shared,
    evaluator: &mut Evaluator,
    trainer: &Trainer,
    x_shape: &[usize],
    classes: usize,
) -> Result<(f64, f64), CompareError> {
    let (mut loss, mut hits, mut n) = (0.0f64, 0usize, 0usize);
    for batch in eval_batches(shared.test.clone(), shared.recipe.batch)? {
        let x = tensor(x_shape, TensorData::F32(batch.x))?;
        let logits = evaluator.run(
            &[(shared.input.clone(), x)],
            trainer.params().chain(trainer.running_stats()),
        )?;
        for i in 0..batch.valid {
            let row = &logits[i * classes..(i + 1) * classes];
            let label = batch.y[i] as usize;
            loss += cross_entropy(row, label);
            hits += (argmax(row) == label) as usize;
            n += 1;
        }
    }
    let n = n.max(1) as f64;
    Ok((loss / n, hits as f64 / n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_stable_and_exact() {
        // log(e^1 + e^2 + e^3) - 3
        let want = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
        assert!((cross_entropy(&[1.0, 2.0, 3.0], 2) - want).abs() < 1e-6);
        assert!(cross_entropy(&[1000.0, 0.0], 0).abs() < 1e-9);
        assert_eq!(argmax(&[0.1, 0.7, 0.7, -1.0]), 1);
        assert_eq!(correct(&[0.0, 1.0, 1.0, 0.0], &[1, 1], 2, 2), 1);
    }
}
