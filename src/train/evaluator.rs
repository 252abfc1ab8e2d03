//! Runs an [`EvalGraph`] on a backend with whatever parameters a trainer
//! holds at the moment: test accuracy during training without writing a
//! model file per evaluation.

use crate::backend::{self, BackendKind, BackendOptions, HostTensor, Session, TensorData};

use super::{EvalGraph, TrainError};

/// One loaded inference graph.
pub struct Evaluator {
    graph: EvalGraph,
    session: Box<dyn Session>,
    // Holds the model file for the session's lifetime.
    _dir: tempfile::TempDir,
}

impl Evaluator {
    /// Loads the graph on `kind`.
    pub fn new(
        graph: EvalGraph,
        kind: BackendKind,
        opts: &BackendOptions,
    ) -> Result<Self, TrainError> {
        let (dir, paths) = super::model_files(&[("eval.onnx", &graph.model)])?;
        let session = backend::open(kind, &paths[0], opts)?;
        Ok(Evaluator {
            graph,
            session,
            _dir: dir,
        })
    }

    /// The model's first output for one batch. `inputs` are the model's
    /// data inputs by name; `tensors` must hold every name in
    /// [`EvalGraph::params`] and [`EvalGraph::running_stats`] (others are
    /// ignored).
    pub fn run<'a>(
        &mut self,
        inputs: &[(String, HostTensor)],
        tensors: impl IntoIterator<Item = (&'a str, &'a [f32])>,
    ) -> Result<Vec<f32>, TrainError> {
        let mut feeds: Vec<(String, HostTensor)> = inputs.to_vec();
        let wanted = |n: &str| {
            self.graph.params.iter().any(|p| p == n)
                || self.graph.running_stats.iter().any(|s| s == n)
        };
        for (name, values) in tensors {
            if !wanted(name) {
                continue;
            }
            let spec = self
                .session
                .inputs()
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| {
                    TrainError::Run(format!("the evaluation graph has no input `{name}`"))
                })?;
            let shape = spec.shape.iter().map(|d| d.unwrap_or(1)).collect();
            feeds.push((
                name.to_string(),
                HostTensor::new(shape, TensorData::F32(values.to_vec()))
                    .map_err(|e| TrainError::Run(format!("`{name}`: {e}")))?,
            ));
        }
        let outputs = self.session.run(&feeds)?;
        let (name, out) = outputs
            .into_iter()
            .find(|(n, _)| *n == self.graph.output)
            .ok_or_else(|| TrainError::Run(format!("no output `{}`", self.graph.output)))?;
        match out.data {
            TensorData::F32(v) => Ok(v),
            other => Err(TrainError::Run(format!(
                "`{name}` came back as {}",
                other.dtype()
            ))),
        }
    }

    /// The graph this evaluator runs.
    pub fn graph(&self) -> &EvalGraph {
        &self.graph
    }
}
