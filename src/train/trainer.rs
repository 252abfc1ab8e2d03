//! One training step after another, from Rust.
//!
//! The training graph is ordinary inference to a runtime: the trainer feeds
//! it a batch, the current parameters and running statistics, reads back
//! the loss and gradients, lets an [`Optimizer`] update the parameters, and
//! keeps the updated running statistics for the next step. Parameters and
//! optimizer state live in Rust buffers between steps.

use crate::backend::{self, BackendKind, BackendOptions, HostTensor, Session, TensorData};

use super::optim::Optimizer;
use super::{TrainError, TrainingGraph};

/// Runs training steps of one [`TrainingGraph`] on one backend.
pub struct Trainer {
    graph: TrainingGraph,
    session: Box<dyn Session>,
    optimizer: Box<dyn Optimizer>,
    params: Vec<Vec<f32>>,
    stats: Vec<Vec<f32>>,
    // Holds the model file for the session's lifetime.
    _dir: tempfile::TempDir,
}

fn shape(dims: &[i64]) -> Vec<usize> {
    dims.iter().map(|&d| d as usize).collect()
}

impl Trainer {
    /// Loads the training graph on `kind`, starting from the model's own
    /// parameter values.
    pub fn new(
        graph: TrainingGraph,
        kind: BackendKind,
        opts: &BackendOptions,
        optimizer: Box<dyn Optimizer>,
    ) -> Result<Self, TrainError> {
        let (dir, paths) = super::model_files(&[("training.onnx", &graph.model)])?;
        let session = backend::open(kind, &paths[0], opts)?;
        let params = graph.params.iter().map(|p| p.init.clone()).collect();
        let stats = graph.running_stats.iter().map(|s| s.init.clone()).collect();
        Ok(Trainer {
            graph,
            session,
            optimizer,
            params,
            stats,
            _dir: dir,
        })
    }

    /// One step on a batch: `inputs` are the model's inputs by name,
    /// `labels` the int64 class labels (or float targets for MSE).
    /// Returns the loss before the update.
    pub fn step(
        &mut self,
        inputs: &[(String, HostTensor)],
        labels: HostTensor,
    ) -> Result<f32, TrainError> {
        Ok(self.step_with(inputs, labels, &[])?.0)
    }

    /// [`Trainer::step`], also returning the float outputs named in
    /// `extra` (for instance the logits, when the graph exposes them), in
    /// that order.
    pub fn step_with(
        &mut self,
        inputs: &[(String, HostTensor)],
        labels: HostTensor,
        extra: &[&str],
    ) -> Result<(f32, Vec<Vec<f32>>), TrainError> {
        let mut feeds: Vec<(String, HostTensor)> = inputs.to_vec();
        feeds.push((self.graph.labels.clone(), labels));
        for (p, v) in self.graph.params.iter().zip(&self.params) {
            feeds.push((
                p.name.clone(),
                HostTensor {
                    shape: shape(&p.shape),
                    data: TensorData::F32(v.clone()),
                },
            ));
        }
        for (s, v) in self.graph.running_stats.iter().zip(&self.stats) {
            feeds.push((
                s.input.clone(),
                HostTensor {
                    shape: shape(&s.shape),
                    data: TensorData::F32(v.clone()),
                },
            ));
        }
        let mut outputs = self.session.run(&feeds)?;
        let mut take = |name: &str| -> Result<Vec<f32>, TrainError> {
            let i = outputs.iter().position(|(n, _)| n == name).ok_or_else(|| {
                TrainError::Run(format!("the training graph did not return `{name}`"))
            })?;
            match outputs.swap_remove(i).1.data {
                TensorData::F32(v) => Ok(v),
                other => Err(TrainError::Run(format!(
                    "`{name}` came back as {}",
                    other.dtype()
                ))),
            }
        };
        let loss = take(&self.graph.loss)?[0];
        let grads: Vec<Vec<f32>> = self
            .graph
            .params
            .iter()
            .map(|p| take(&p.grad))
            .collect::<Result<_, _>>()?;
        for (i, s) in self.graph.running_stats.iter().enumerate() {
            self.stats[i] = take(&s.output)?;
        }
        let extra = extra.iter().map(|n| take(n)).collect::<Result<_, _>>()?;
        self.optimizer.step(&mut self.params, &grads);
        Ok((loss, extra))
    }

    /// Current parameter values, by tensor name.
    pub fn params(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.graph
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, v)| (p.name.as_str(), v.as_slice()))
    }

    /// Current running statistics, by tensor name.
    pub fn running_stats(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.graph
            .running_stats
            .iter()
            .zip(&self.stats)
            .map(|(s, v)| (s.input.as_str(), v.as_slice()))
    }

    /// The optimizer, e.g. to change its learning rate.
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// The graph this trainer runs.
    pub fn graph(&self) -> &TrainingGraph {
        &self.graph
    }
}
