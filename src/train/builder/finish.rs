//! The finished training graph: gradients and updated statistics as named
//! outputs, every input declared, and only the nodes the outputs need.
//!
//! Gradient outputs take the name `<tensor>_grad`; where the builder made
//! the value itself, the value is renamed rather than copied by an
//! Identity, since a copy costs the runtime a pass over the tensor.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

use super::Builder;
use crate::onnx::DataType;
use crate::train::proto::{decode_f32, value_info};
use crate::train::{DataInput, Result, RunningStat, TrainError, TrainTensor, TrainingGraph};

impl Builder<'_> {
    pub(super) fn finish(
        mut self,
        model: &ModelProto,
        graph: &GraphProto,
        labels: DataInput,
    ) -> Result<TrainingGraph> {
        let init_map: HashMap<&str, &crate::onnx::pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut params = vec![];
        let mut outputs = vec![value_info("loss", DataType::Float, &[])];
        let mut renamed: HashMap<String, String> = HashMap::new();
        for (i, name) in self.trainable.clone().iter().enumerate() {
            let shape = self.g.shape(name)?;
            let grad_name = format!("{name}_grad");
            if self.g.info.contains_key(&grad_name) {
                return Err(TrainError::Model(format!(
                    "the model already has a value named `{grad_name}`"
                )));
            }
            let src = match self.param_grads[i].take() {
                Some(s) => renamed.get(&s).cloned().unwrap_or(s),
                None => self.g.zeros(&shape)?,
            };
            self.g.reserve_name(&grad_name);
            // An Identity onto the output name is a copy at run time; a value
            // this builder made can take the output name instead.
            let ours = self
                .g
                .nodes
                .iter()
                .rev()
                .find(|n| n.output.contains(&src))
                .is_some_and(|n| n.name.starts_with("pa_train/"));
            if ours && !renamed.values().any(|v| *v == src) {
                for n in self.g.nodes.iter_mut() {
                    for v in n.input.iter_mut().chain(n.output.iter_mut()) {
                        if *v == src {
                            *v = grad_name.clone();
                        }
                    }
                }
                if let Some(info) = self.g.info.get(&src).cloned() {
                    self.g.info.insert(grad_name.clone(), info);
                }
                renamed.insert(src, grad_name.clone());
            } else {
                self.g.push(NodeProto {
                    input: vec![src],
                    output: vec![grad_name.clone()],
                    name: format!("pa_train/grad/{name}"),
                    op_type: "Identity".into(),
                    ..Default::default()
                })?;
            }
            outputs.push(value_info(&grad_name, DataType::Float, &shape));
            let init = decode_f32(init_map[name.as_str()]).unwrap_or_default();
            params.push(TrainTensor {
                name: name.clone(),
                shape,
                init,
                grad: grad_name,
            });
        }
        let mut running_stats = vec![];
        for (input, output) in &self.stats {
            if output.is_empty() {
                continue;
            }
            let shape = self.g.shape(input)?;
            outputs.push(value_info(output, DataType::Float, &shape));
            running_stats.push(RunningStat {
                input: input.clone(),
                output: output.clone(),
                shape,
                init: decode_f32(init_map[input.as_str()]).unwrap_or_default(),
            });
        }
        let mut data_inputs = self.data_inputs.clone();
        data_inputs.push(labels.clone());
        let mut inputs: Vec<_> = data_inputs
            .iter()
            .map(|d| value_info(&d.name, d.elem_type, &d.shape))
            .collect();
        for p in &params {
            inputs.push(value_info(&p.name, DataType::Float, &p.shape));
        }
        for s in &running_stats {
            inputs.push(value_info(&s.input, DataType::Float, &s.shape));
        }
        // Only what the outputs need: drops unused forward-only work.
        let (nodes, inits) = prune(self.g.nodes, self.g.inits, &outputs);
        let out_graph = GraphProto {
            node: nodes,
            name: format!("{}_training", graph.name),
            initializer: inits,
            input: inputs,
            output: outputs,
            doc_string:
                "training graph written by pa-onnx: loss, gradients and updated running statistics"
                    .into(),
            ..Default::default()
        };
        let out = standalone(model, out_graph, self.g.opset);
        Ok(TrainingGraph {
            model: out.encode_to_vec(),
            data_inputs,
            labels: labels.name,
            loss: "loss".into(),
            params,
            running_stats,
        })
    }
}

/// A model of its own around a graph the builder wrote from `model`'s.
pub(super) fn standalone(model: &ModelProto, graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: model.ir_version.max(7),
        opset_import: default_opsets(model, opset),
        producer_name: "pa-onnx".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
}

/// The model's default-domain opset import, or `opset` when it has none.
fn default_opsets(model: &ModelProto, opset: i64) -> Vec<OperatorSetIdProto> {
    let mut opset_import: Vec<OperatorSetIdProto> = model
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .cloned()
        .collect();
    if opset_import.is_empty() {
        opset_import.push(OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        });
    }
    opset_import
}

/// Keeps the nodes and initializers the outputs depend on, in order.
pub(super) fn prune(
    nodes: Vec<NodeProto>,
    inits: Vec<crate::onnx::pb::TensorProto>,
    outputs: &[crate::onnx::pb::ValueInfoProto],
) -> (Vec<NodeProto>, Vec<crate::onnx::pb::TensorProto>) {
    let mut live: HashSet<String> = outputs.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate().rev() {
        if n.output.iter().any(|o| live.contains(o)) {
            keep[i] = true;
            live.extend(n.input.iter().cloned());
        }
    }
    let nodes = nodes
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(n, _)| n)
        .collect();
    let inits = inits
        .into_iter()
        .filter(|t| live.contains(&t.name))
        .collect();
    (nodes, inits)
}
