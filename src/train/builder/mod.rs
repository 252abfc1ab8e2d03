//! Assembles the training graph: forward pass in training mode, loss, and
//! the backward pass walked over a tape of forward steps.
//!
//! The pass itself is here; which tensors are trained and what the graph
//! takes as inputs ([`inputs`]), the loss ([`loss`]) and the graph's
//! outputs ([`finish`]) have their own files, and each operator's rules are
//! in [`super::ops`].

mod eval;
mod finish;
mod inputs;
mod loss;

use std::collections::{HashMap, HashSet};

use prost::Message;

pub use eval::{build_eval_graph, EvalGraph};

use crate::onnx::pb::{GraphProto, ModelProto, NodeProto};

use super::ir::Graph;
use super::ops::{
    backward, batch_norm_training, dropout_training, is_non_differentiable, keep_indices,
    layer_norm_training, BatchNormTape, LayerNormTape,
};
use super::{DataInput, Result, TrainError, TrainGraphOptions, TrainingGraph};

/// One forward step as the backward pass sees it.
enum Step {
    Node(NodeProto),
    /// Training-mode BatchNormalization, with its closed-form backward step.
    BatchNorm(BatchNormTape),
    /// LayerNormalization over its trailing axes, with its closed-form
    /// backward step.
    LayerNorm(LayerNormTape),
}

/// Builds the training graph of an encoded ONNX model.
///
/// The graph's inputs are the model's inputs, `labels` (or `targets` for
/// MSE), every trainable tensor under its own name, and the BatchNorm
/// running statistics; its outputs are `loss`, `<name>_grad` per trainable
/// tensor, and the updated running statistics.
pub fn build_training_graph(model: &[u8], opts: &TrainGraphOptions) -> Result<TrainingGraph> {
    let (model, opset) = decode(model)?;
    let graph = model.graph.as_ref().expect("decode checked the graph");
    let mut b = Builder::new(graph, opset, opts)?;
    b.forward(graph)?;
    let logits = graph.output[0].name.clone();
    let (labels, glogits) = b.loss(&logits)?;
    b.backward(&logits, glogits)?;
    b.finish(&model, graph, labels)
}

/// The model, with a graph that has outputs, and its default-domain opset
/// (13 or later: the builder's rules assume it).
fn decode(model: &[u8]) -> Result<(ModelProto, i64)> {
    let model = ModelProto::decode(model)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| TrainError::Model("the model has no graph".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    if opset < 13 {
        return Err(TrainError::OldOpset { opset });
    }
    if graph.output.is_empty() {
        return Err(TrainError::Model("the model has no outputs".into()));
    }
    Ok((model, opset))
}

/// One build in progress: the graph so far, what is trained, which values
/// lie on a path from a trainable tensor (`req`), the tape of forward steps
/// and the gradients gathered so far per value.
struct Builder<'a> {
    g: Graph,
    opts: &'a TrainGraphOptions,
    trainable: Vec<String>,
    stats: Vec<(String, String)>,
    data_inputs: Vec<DataInput>,
    req: HashSet<String>,
    tape: Vec<Step>,
    grads: HashMap<String, Vec<String>>,
    param_grads: Vec<Option<String>>,
    dropouts: i64,
}

impl Builder<'_> {
    fn requires(&self, name: &str) -> bool {
        self.req.contains(name)
    }

    /// For each input of `n`, whether a gradient must reach it.
    fn needs(&self, n: &NodeProto) -> Vec<bool> {
        n.input.iter().map(|i| self.requires(i)).collect()
    }

    fn mark_outputs(&mut self, n: &NodeProto) {
        if is_non_differentiable(&n.op_type) || !n.input.iter().any(|i| self.req.contains(i)) {
            return;
        }
        for o in &n.output {
            if self.g.info.get(o).is_some_and(|i| i.dtype.is_float()) {
                self.req.insert(o.clone());
            }
        }
    }

    fn forward(&mut self, graph: &GraphProto) -> Result<()> {
        for n in &graph.node {
            if n.op_type == "BatchNormalization" {
                let tape = batch_norm_training(&mut self.g, n, self.opts.target, &mut self.stats)?;
                if n.input[..3].iter().any(|i| self.req.contains(i)) {
                    self.req.insert(n.output[0].clone());
                    self.tape.push(Step::BatchNorm(tape));
                }
                continue;
            }
            if n.op_type == "LayerNormalization" && n.input.iter().any(|i| self.requires(i)) {
                let tape = layer_norm_training(&mut self.g, n)?;
                self.req.insert(n.output[0].clone());
                self.tape.push(Step::LayerNorm(tape));
                continue;
            }
            let mut n = n.clone();
            let on_path = n.input.iter().any(|i| self.requires(i));
            match n.op_type.as_str() {
                "Dropout" => dropout_training(&mut self.g, &mut n, self.opts, &mut self.dropouts)?,
                "MaxPool" if on_path && n.output.len() < 2 => keep_indices(&mut self.g, &mut n),
                _ => {}
            }
            self.g.push(n.clone())?;
            self.mark_outputs(&n);
            self.tape.push(Step::Node(n));
        }
        Ok(())
    }

    fn take_grad(&mut self, name: &str) -> Result<Option<String>> {
        let Some(list) = self.grads.remove(name) else {
            return Ok(None);
        };
        Ok(Some(match list.len() {
            1 => list.into_iter().next().unwrap(),
            _ => {
                let refs: Vec<&str> = list.iter().map(String::as_str).collect();
                self.g.op("Sum", &refs, vec![])?
            }
        }))
    }

    fn add_grads(&mut self, n: &NodeProto, gx: Vec<Option<String>>) {
        for (i, gi) in gx.into_iter().enumerate() {
            if let Some(gi) = gi {
                self.grads.entry(n.input[i].clone()).or_default().push(gi);
            }
        }
    }

    fn backward(&mut self, logits: &str, glogits: String) -> Result<()> {
        if !self.req.contains(logits) {
            return Err(TrainError::Model(format!(
                "output `{logits}` does not depend on any trainable tensor"
            )));
        }
        self.grads.insert(logits.to_string(), vec![glogits]);
        let tape = std::mem::take(&mut self.tape);
        for step in tape.iter().rev() {
            match step {
                Step::Node(n) => {
                    let needs = self.needs(n);
                    if !needs.iter().any(|&b| b) || is_non_differentiable(&n.op_type) {
                        for o in &n.output {
                            self.grads.remove(o);
                        }
                        continue;
                    }
                    let mut gys = vec![];
                    for o in &n.output {
                        gys.push(if o.is_empty() {
                            None
                        } else {
                            self.take_grad(o)?
                        });
                    }
                    if gys.iter().all(Option::is_none) {
                        continue;
                    }
                    let gx = backward(&mut self.g, n, &gys, &needs)?;
                    self.add_grads(n, gx);
                }
                Step::BatchNorm(tape) => {
                    let Some(gy) = self.take_grad(&tape.node.output[0])? else {
                        continue;
                    };
                    let needs = self.needs(&tape.node);
                    let gx = tape.backward(&mut self.g, &gy, self.opts.target, &needs)?;
                    self.add_grads(&tape.node, gx);
                }
                Step::LayerNorm(tape) => {
                    let Some(gy) = self.take_grad(&tape.node.output[0])? else {
                        continue;
                    };
                    let needs = self.needs(&tape.node);
                    let gx = tape.backward(&mut self.g, &gy, &needs)?;
                    self.add_grads(&tape.node, gx);
                }
            }
        }
        for i in 0..self.trainable.len() {
            let name = self.trainable[i].clone();
            self.param_grads[i] = self.take_grad(&name)?;
        }
        Ok(())
    }
}
