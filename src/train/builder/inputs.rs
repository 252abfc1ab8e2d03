//! The training graph's inputs: which initializers become trainable
//! tensors and running statistics, and the model's data inputs with static
//! shapes.
//!
//! Without a list from the caller, the trainable tensors are the
//! parameters the operator rules name (weights and biases of dense and
//! convolution layers, normalization scales and shifts, embedding tables),
//! traced back through the layout changes exporters put between a stored
//! tensor and its use.

use std::collections::{HashMap, HashSet};

use crate::onnx::pb::{GraphProto, NodeProto};

use super::Builder;
use crate::onnx::DataType;
use crate::train::ir::Graph;
use crate::train::ops::{outputs, rule, Params};
use crate::train::proto::{decode_f32, input_type};
use crate::train::{DataInput, Result, TrainError, TrainGraphOptions};

impl<'a> Builder<'a> {
    pub(super) fn new(graph: &GraphProto, opset: i64, opts: &'a TrainGraphOptions) -> Result<Self> {
        let mut g = Graph::new(opset, outputs);
        for n in &graph.node {
            for o in &n.output {
                g.reserve_name(o);
            }
        }
        let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        // Trainable tensors and running statistics, in order of first use.
        let producers: HashMap<&str, &str> = graph
            .node
            .iter()
            .flat_map(|n| {
                n.output
                    .iter()
                    .map(move |o| (o.as_str(), n.op_type.as_str()))
            })
            .collect();
        let init_map: HashMap<&str, &crate::onnx::pb::TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let producer_node: HashMap<&str, &NodeProto> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
            .collect();
        // Exporters often store a weight in another layout and fix it with a
        // Transpose (or Reshape, Cast) node: the stored tensor is the parameter.
        let source = |name: &str| -> String {
            let layout = [
                "Transpose",
                "Identity",
                "Reshape",
                "Unsqueeze",
                "Squeeze",
                "Cast",
            ];
            let mut name = name.to_string();
            while let Some(p) = producer_node.get(name.as_str()) {
                if !layout.contains(&p.op_type.as_str()) {
                    break;
                }
                name = p.input[0].clone();
            }
            name
        };
        let mut trainable = vec![];
        let mut stats = vec![];
        for n in &graph.node {
            if let Some(list) = &opts.trainable {
                for i in &n.input {
                    if list.contains(i) && !trainable.contains(i) {
                        trainable.push(i.clone());
                    }
                }
            } else {
                let params = rule(&n.op_type).map_or(Params::None, |r| r.params);
                for &slot in params.slots(n, &producers) {
                    let Some(name) = n.input.get(slot) else {
                        continue;
                    };
                    let name = source(name);
                    let Some(t) = init_map.get(name.as_str()) else {
                        continue;
                    };
                    if DataType::from_code(t.data_type) == DataType::Float
                        && !t.dims.is_empty()
                        && params.accepts(n, t)
                        && !opts.frozen.contains(&name)
                        && !trainable.contains(&name)
                    {
                        trainable.push(name);
                    }
                }
            }
            if n.op_type == "BatchNormalization" {
                for slot in [3, 4] {
                    if let Some(name) = n.input.get(slot).filter(|s| inits.contains(s.as_str())) {
                        if !stats.iter().any(|(s, _)| s == name) {
                            stats.push((name.clone(), String::new()));
                        }
                    }
                }
            }
        }
        if let Some(list) = &opts.trainable {
            for name in list {
                match init_map.get(name.as_str()) {
                    Some(t) if DataType::from_code(t.data_type) == DataType::Float => {}
                    Some(_) => {
                        return Err(TrainError::Model(format!(
                            "trainable tensor `{name}` is not float32"
                        )))
                    }
                    None => {
                        return Err(TrainError::Model(format!(
                            "trainable tensor `{name}` is not an initializer"
                        )))
                    }
                }
                if !trainable.contains(name) {
                    trainable.push(name.clone());
                }
            }
        }
        for t in &graph.initializer {
            if trainable.contains(&t.name) || stats.iter().any(|(s, _)| *s == t.name) {
                if DataType::from_code(t.data_type) != DataType::Float || decode_f32(t).is_none() {
                    return Err(TrainError::Model(format!(
                        "tensor `{}` must be float32 stored inside the model to be trained",
                        t.name
                    )));
                }
                g.add_input(&t.name, DataType::Float, t.dims.clone());
            } else {
                g.add_init(t.clone());
            }
        }
        let mut data_inputs = vec![];
        for v in &graph.input {
            if inits.contains(v.name.as_str()) {
                continue;
            }
            let (dtype, dims, params) = input_type(v)
                .ok_or_else(|| TrainError::Model(format!("input `{}` is not a tensor", v.name)))?;
            let mut shape = vec![];
            let mut p = params.iter();
            for d in dims {
                shape.push(match d {
                    Some(d) => d,
                    None => {
                        let dim = p.next().cloned().unwrap_or_default();
                        opts.batch_size.ok_or_else(|| TrainError::DynamicInput {
                            input: v.name.clone(),
                            dim,
                        })?
                    }
                });
            }
            g.add_input(&v.name, dtype, shape.clone());
            data_inputs.push(DataInput {
                name: v.name.clone(),
                elem_type: dtype,
                shape,
            });
        }
        let req = trainable.iter().cloned().collect();
        let n = trainable.len();
        Ok(Builder {
            g,
            opts,
            trainable,
            stats,
            data_inputs,
            req,
            tape: vec![],
            grads: HashMap::new(),
            param_grads: vec![None; n],
            dropouts: 0,
        })
    }
}
