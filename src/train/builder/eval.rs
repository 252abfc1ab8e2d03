//! The forward model in inference form, fed the trained tensors.
//!
//! Measuring a model during training needs its inference behaviour
//! (normalization from the running statistics, dropout off) with the
//! parameters the trainer holds now. Writing a model file per evaluation
//! would cost a session per epoch; instead the same builder that picks the
//! trainable tensors makes them, and the running statistics, graph inputs
//! of a plain forward graph, under the names the training graph uses, so a
//! caller feeds both graphs from the same buffers.

use prost::Message;

use crate::onnx::pb::{GraphProto, NodeProto};
use crate::train::ir::Graph;
use crate::train::node::NodeExt;
use crate::train::proto::value_info;
use crate::train::{DataInput, GraphTarget, Result, TrainGraphOptions};

use super::Builder;
use crate::train::ops::dropout_training;

/// The inference graph of a model, with its trainable tensors and running
/// statistics as inputs.
#[derive(Clone, Debug)]
pub struct EvalGraph {
    /// The encoded standalone ONNX model.
    pub model: Vec<u8>,
    /// The model's data inputs, with static shapes.
    pub data_inputs: Vec<DataInput>,
    /// The model's first output (the logits).
    pub output: String,
    /// Its dimensions.
    pub output_shape: Vec<i64>,
    /// The trainable tensors the graph takes as inputs, by name.
    pub params: Vec<String>,
    /// The running statistics it takes as inputs, by name.
    pub running_stats: Vec<String>,
}

/// Builds the inference graph matching [`super::build_training_graph`] with
/// the same options: the same trainable tensors and statistics become
/// inputs under the same names, BatchNormalization uses the running
/// statistics, and dropout is the identity.
pub fn build_eval_graph(model: &[u8], opts: &TrainGraphOptions) -> Result<EvalGraph> {
    let (model, opset) = super::decode(model)?;
    let graph = model.graph.as_ref().expect("decode checked the graph");
    let out = graph.output[0].name.clone();
    let inference = TrainGraphOptions {
        dropout: false,
        ..opts.clone()
    };
    let mut b = Builder::new(graph, opset, &inference)?;
    for n in &graph.node {
        let mut n = n.clone();
        match n.op_type.as_str() {
            "BatchNormalization" if opts.target == GraphTarget::Portable => {
                batch_norm_elementwise(&mut b.g, &n)?;
                continue;
            }
            "BatchNormalization" => {
                // Inference form: the running statistics, one output.
                n.input.truncate(5);
                n.output.truncate(1);
                n.attribute.retain(|a| a.name == "epsilon");
            }
            "Dropout" => dropout_training(&mut b.g, &mut n, &inference, &mut b.dropouts)?,
            _ => {}
        }
        b.g.push(n)?;
    }
    let output_shape = b.g.shape(&out)?;
    let dtype = b.g.info(&out)?.dtype;
    let outputs = vec![value_info(&out, dtype, &output_shape)];
    let stats: Vec<String> = b.stats.iter().map(|(s, _)| s.clone()).collect();
    let mut inputs: Vec<_> = b
        .data_inputs
        .iter()
        .map(|d| value_info(&d.name, d.elem_type, &d.shape))
        .collect();
    for name in b.trainable.iter().chain(&stats) {
        inputs.push(value_info(
            name,
            crate::onnx::DataType::Float,
            &b.g.shape(name)?,
        ));
    }
    let (nodes, inits) = super::finish::prune(b.g.nodes, b.g.inits, &outputs);
    let used = |name: &String| nodes.iter().any(|n: &NodeProto| n.input.contains(name));
    let params: Vec<String> = b.trainable.iter().filter(|p| used(p)).cloned().collect();
    let running_stats: Vec<String> = stats.into_iter().filter(|s| used(s)).collect();
    inputs.retain(|v| {
        b.data_inputs.iter().any(|d| d.name == v.name)
            || params.contains(&v.name)
            || running_stats.contains(&v.name)
    });
    let out_graph = GraphProto {
        node: nodes,
        name: format!("{}_eval", graph.name),
        initializer: inits,
        input: inputs,
        output: outputs,
        doc_string: "inference graph written by pa-onnx: the model fed its trained tensors".into(),
        ..Default::default()
    };
    let encoded = super::finish::standalone(&model, out_graph, b.g.opset);
    Ok(EvalGraph {
        model: encoded.encode_to_vec(),
        data_inputs: b.data_inputs,
        output: out,
        output_shape,
        params,
        running_stats,
    })
}

/// BatchNormalization in inference form spelled out elementwise, for
/// tract, which wants the operator's statistics constant:
/// `(x - mean) * scale / sqrt(var + eps) + bias`, per channel.
fn batch_norm_elementwise(g: &mut Graph, n: &NodeProto) -> Result<()> {
    let [x, scale, bias, mean, var] =
        [0, 1, 2, 3, 4].map(|i| n.input.get(i).cloned().unwrap_or_default());
    let rank = g.rank(&x)?;
    let c = g.shape(&scale)?[0];
    let mut bshape = vec![1; rank.max(2)];
    bshape[1] = c;
    let eps = g.scalar(n.float_attr("epsilon", 1e-5));
    let v = g.op("Add", &[&var, &eps], vec![])?;
    let sd = g.op("Sqrt", &[&v], vec![])?;
    let k = g.op("Div", &[&scale, &sd], vec![])?;
    let k = g.reshape(&k, &bshape)?;
    let m = g.reshape(&mean, &bshape)?;
    let bias = g.reshape(&bias, &bshape)?;
    let xc = g.op("Sub", &[&x, &m], vec![])?;
    let y = g.op("Mul", &[&xc, &k], vec![])?;
    g.push(NodeProto {
        input: vec![y, bias],
        output: vec![n.output[0].clone()],
        name: format!("{}/inference", n.label()),
        op_type: "Add".into(),
        ..Default::default()
    })
}
