//! Assembles the training graph: forward pass in training mode, loss, and
//! the backward pass walked over a tape of forward steps.
//!
//! Normalizations are expanded into primitive operators in the forward
//! pass (tract and every ORT build run those in training mode) but keep a
//! single closed-form backward step, which is both cheaper than chaining the
//! primitives' rules and closer in rounding to the frameworks we compare to.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

use super::dtype::{is_float, F32, I64};
use super::grad::{backward, is_non_differentiable};
use super::ir::{Graph, Info};
use super::node::{node_err, NodeExt};
use super::proto::{decode_f32, input_type, value_info, Attr};
use super::Result;
use super::{
    DataInput, GraphTarget, LossKind, RunningStat, TrainError, TrainGraphOptions, TrainTensor,
    TrainingGraph,
};

/// One forward step as the backward pass sees it.
enum Step {
    Node(NodeProto),
    /// Training-mode BatchNormalization over `axes`, y = xc * k + b_r with
    /// k = scale_r * invstd.
    BatchNorm {
        node: NodeProto,
        xc: String,
        invstd: String,
        k: String,
        axes: Vec<i64>,
        count: i64,
    },
    /// LayerNormalization over `axes` (the trailing ones).
    LayerNorm {
        node: NodeProto,
        xhat: String,
        invstd: String,
        axes: Vec<i64>,
    },
}

/// Batch statistics over `axes`, kept dims: the mean, the centred input,
/// the (biased) variance and 1 / sqrt(variance + eps).
struct Moments {
    mean: String,
    xc: String,
    var: String,
    invstd: String,
}

fn moments(g: &mut Graph, x: &str, axes: &[i64], eps: f32) -> Result<Moments> {
    let mean = g.reduce("ReduceMean", x, axes, true)?;
    let xc = g.op("Sub", &[x, &mean], vec![])?;
    let sq = g.op("Mul", &[&xc, &xc], vec![])?;
    let var = g.reduce("ReduceMean", &sq, axes, true)?;
    let e = g.scalar(eps);
    let ve = g.op("Add", &[&var, &e], vec![])?;
    let sd = g.op("Sqrt", &[&ve], vec![])?;
    let invstd = g.op("Reciprocal", &[&sd], vec![])?;
    Ok(Moments {
        mean,
        xc,
        var,
        invstd,
    })
}

/// Builds the training graph of an encoded ONNX model.
///
/// The graph's inputs are the model's inputs, `labels` (or `targets` for
/// MSE), every trainable tensor under its own name, and the BatchNorm
/// running statistics; its outputs are `loss`, `<name>_grad` per trainable
/// tensor, and the updated running statistics.
pub fn build_training_graph(
    model: &[u8],
    opts: &TrainGraphOptions,
) -> std::result::Result<TrainingGraph, TrainError> {
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
    let mut b = Builder::new(graph, opset, opts)?;
    b.forward(graph)?;
    let logits = graph.output[0].name.clone();
    let (labels, glogits) = b.loss(&logits)?;
    b.backward(&logits, glogits)?;
    b.finish(&model, graph, labels)
}

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

/// Input positions of trainable tensors, by operator.
fn param_slots(n: &NodeProto, producers: &HashMap<&str, &str>) -> &'static [usize] {
    match n.op_type.as_str() {
        "Gemm" => &[0, 1, 2],
        "MatMul" => &[0, 1],
        "Conv" | "ConvTranspose" | "BatchNormalization" | "LayerNormalization" => &[1, 2],
        // Only where `embedding_table` agrees.
        "Gather" => &[0],
        "Add" => {
            // The bias of a dense layer exported as MatMul + Add.
            let dense = |i: usize| {
                n.input
                    .get(i)
                    .and_then(|s| producers.get(s.as_str()))
                    .is_some_and(|op| matches!(*op, "MatMul" | "Gemm" | "Conv"))
            };
            if dense(0) {
                &[1]
            } else if dense(1) {
                &[0]
            } else {
                &[]
            }
        }
        _ => &[],
    }
}

/// A float table that Gather reads whole rows of (axis 0, two or more
/// dimensions) is an embedding, trained like a dense weight. Other float
/// tensors read by Gather, such as lookup constants, stay frozen.
fn embedding_table(n: &NodeProto, t: &crate::onnx::pb::TensorProto) -> bool {
    let r = t.dims.len() as i64;
    let axis = n.int_attr("axis", 0);
    r >= 2 && (axis == 0 || axis == -r)
}

impl<'a> Builder<'a> {
    fn new(graph: &GraphProto, opset: i64, opts: &'a TrainGraphOptions) -> Result<Self> {
        let mut g = Graph::new(opset);
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
                for &slot in param_slots(n, &producers) {
                    let Some(name) = n.input.get(slot) else {
                        continue;
                    };
                    let name = source(name);
                    let Some(t) = init_map.get(name.as_str()) else {
                        continue;
                    };
                    if t.data_type == F32
                        && !t.dims.is_empty()
                        && (n.op_type != "Gather" || embedding_table(n, t))
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
                    Some(t) if t.data_type == F32 => {}
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
                if t.data_type != F32 || decode_f32(t).is_none() {
                    return Err(TrainError::Model(format!(
                        "tensor `{}` must be float32 stored inside the model to be trained",
                        t.name
                    )));
                }
                g.add_input(&t.name, F32, t.dims.clone());
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

    fn requires(&self, name: &str) -> bool {
        self.req.contains(name)
    }

    fn mark_outputs(&mut self, n: &NodeProto) {
        if is_non_differentiable(&n.op_type) || !n.input.iter().any(|i| self.req.contains(i)) {
            return;
        }
        for o in &n.output {
            if self.g.info.get(o).is_some_and(|i| is_float(i.dtype)) {
                self.req.insert(o.clone());
            }
        }
    }

    fn forward(&mut self, graph: &GraphProto) -> Result<()> {
        for n in &graph.node {
            if n.op_type == "BatchNormalization" {
                self.batch_norm(n)?;
                continue;
            }
            if n.op_type == "LayerNormalization" && n.input.iter().any(|i| self.requires(i)) {
                self.layer_norm(n)?;
                continue;
            }
            let mut n = n.clone();
            let on_path = n.input.iter().any(|i| self.requires(i));
            match n.op_type.as_str() {
                "Dropout" => self.dropout(&mut n)?,
                "MaxPool" if on_path && n.output.len() < 2 => {
                    let idx = self.g.fresh("maxpool_indices");
                    n.output.push(idx);
                }
                _ => {}
            }
            self.g.push(n.clone())?;
            self.mark_outputs(&n);
            self.tape.push(Step::Node(n));
        }
        Ok(())
    }

    fn dropout(&mut self, n: &mut NodeProto) -> Result<()> {
        let ratio = n.input.get(1).filter(|s| !s.is_empty()).map(|r| {
            self.g
                .known(r)
                .map(|k| k.vals[0])
                .ok_or_else(|| node_err(n, "the dropout ratio must be a constant"))
        });
        let ratio = match ratio {
            Some(r) => r?,
            None => 0.5,
        };
        if !self.opts.dropout || ratio == 0.0 {
            n.op_type = "Identity".into();
            n.input.truncate(1);
            n.output.truncate(1);
            n.attribute.clear();
            return Ok(());
        }
        // The mask comes from RandomUniform rather than Dropout's own
        // training mode, which tract refuses to run; ORT and tract both
        // draw from a seeded generator that advances with every run.
        let x = n.input[0].clone();
        let mut attrs = vec![Attr::int("dtype", F32 as i64)];
        if let Some(seed) = self.opts.dropout_seed {
            self.dropouts += 1;
            attrs.push(Attr::float("seed", (seed + self.dropouts) as f32));
        }
        // Static shapes allow RandomUniform, which tract parses more reliably than the Like form.
        attrs.push(Attr::ints("shape", &self.g.shape(&x)?));
        let u = self.g.op("RandomUniform", &[], attrs)?;
        let r = self.g.scalar(ratio as f32);
        let keep = self.g.op("GreaterOrEqual", &[&u, &r], vec![])?;
        let m = self
            .g
            .op("Cast", &[&keep], vec![Attr::int("to", F32 as i64)])?;
        let scale = self.g.scalar((1.0 / (1.0 - ratio)) as f32);
        let ms = self.g.op("Mul", &[&m, &scale], vec![])?;
        if let Some(mask) = n.output.get(1).filter(|s| !s.is_empty()) {
            self.g.push(NodeProto {
                input: vec![keep],
                output: vec![mask.clone()],
                name: format!("{}/mask", n.label()),
                op_type: "Identity".into(),
                ..Default::default()
            })?;
        }
        n.op_type = "Mul".into();
        n.input = vec![x, ms];
        n.output.truncate(1);
        n.attribute.clear();
        Ok(())
    }

    /// BatchNormalization with batch statistics; running statistics updated
    /// as the ONNX spec defines them (biased variance, `momentum` weighs the
    /// old value).
    fn batch_norm(&mut self, n: &NodeProto) -> Result<()> {
        let g = &mut self.g;
        let [x, scale, bias, rm, rv] =
            [0, 1, 2, 3, 4].map(|i| n.input.get(i).cloned().unwrap_or_default());
        let xs = g.shape(&x)?;
        let r = xs.len();
        if r < 2 || xs[1] < 1 {
            return Err(node_err(n, format!("input {xs:?} has no channel axis")));
        }
        let c = xs[1];
        let eps = n.float_attr("epsilon", 1e-5);
        let momentum = n.float_attr("momentum", 0.9);
        let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
        let count: i64 = xs.iter().product::<i64>() / c;
        let mut bshape = vec![1; r];
        bshape[1] = c;
        let Moments {
            mean,
            xc,
            var,
            invstd,
        } = moments(g, &x, &axes, eps)?;
        let scale_r = g.reshape(&scale, &bshape)?;
        let k = g.op("Mul", &[&scale_r, &invstd], vec![])?;
        // Per channel, for the running statistics and the inference-form
        // operator.
        let mean_c = g.reshape(&mean, &[c])?;
        let var_c = g.reshape(&var, &[c])?;
        let output = NodeProto {
            output: vec![n.output[0].clone()],
            name: format!("{}/output", n.label()),
            ..Default::default()
        };
        if self.opts.target == GraphTarget::OnnxRuntime {
            // The operator in inference form, fed the batch statistics: one
            // pass over the tensor where Mul then Add take two.
            g.push(NodeProto {
                input: vec![
                    x.clone(),
                    scale.clone(),
                    bias.clone(),
                    mean_c.clone(),
                    var_c.clone(),
                ],
                op_type: "BatchNormalization".into(),
                attribute: vec![Attr::float("epsilon", eps)],
                ..output
            })?;
        } else {
            let bias_r = g.reshape(&bias, &bshape)?;
            let y0 = g.op("Mul", &[&xc, &k], vec![])?;
            g.push(NodeProto {
                input: vec![y0, bias_r],
                op_type: "Add".into(),
                ..output
            })?;
        }
        // Running statistics, when the model keeps them.
        let keep = g.scalar(momentum);
        let blend = g.scalar(1.0 - momentum);
        for (stat, batch) in [(&rm, &mean_c), (&rv, &var_c)] {
            if let Some(entry) = self.stats.iter_mut().find(|(s, _)| s == stat) {
                let old = g.op("Mul", &[stat, &keep], vec![])?;
                let new = g.op("Mul", &[batch, &blend], vec![])?;
                let out = format!("{stat}_updated");
                g.reserve_name(&out);
                g.push(NodeProto {
                    input: vec![old, new],
                    output: vec![out.clone()],
                    name: format!("{}/update_{stat}", n.label()),
                    op_type: "Add".into(),
                    ..Default::default()
                })?;
                entry.1 = out;
            }
        }
        let node = n.clone();
        if n.input[..3].iter().any(|i| self.req.contains(i)) {
            self.req.insert(n.output[0].clone());
            self.tape.push(Step::BatchNorm {
                node,
                xc,
                invstd,
                k,
                axes,
                count,
            });
        }
        Ok(())
    }

    fn layer_norm(&mut self, n: &NodeProto) -> Result<()> {
        if n.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(node_err(
                n,
                "LayerNormalization's Mean/InvStdDev outputs are not supported in training",
            ));
        }
        let g = &mut self.g;
        let x = n.input[0].clone();
        let r = g.rank(&x)? as i64;
        let a = n.int_attr("axis", -1);
        let a = if a < 0 { a + r } else { a };
        let axes: Vec<i64> = (a..r).collect();
        let stash = n.int_attr("stash_type", 1);
        let (xhat, invstd) = if g.info(&x)?.dtype == F32 && stash == F32 as i64 {
            // The fused node, asked for its optional Mean and InvStdDev
            // outputs: three nodes instead of ten, and each node costs the
            // runtime a dispatch however small its tensors are.
            let mean = g.fresh("ln_mean");
            let invstd = g.fresh("ln_invstd");
            let mut fused = n.clone();
            fused.output = vec![n.output[0].clone(), mean.clone(), invstd.clone()];
            g.push(fused)?;
            let xc = g.op("Sub", &[&x, &mean], vec![])?;
            (g.op("Mul", &[&xc, &invstd], vec![])?, invstd)
        } else {
            let m = moments(g, &x, &axes, n.float_attr("epsilon", 1e-5))?;
            let xhat = g.op("Mul", &[&m.xc, &m.invstd], vec![])?;
            let has_bias = n.input.get(2).is_some_and(|s| !s.is_empty());
            let (op, ins) = if has_bias {
                let y = g.op("Mul", &[&xhat, &n.input[1]], vec![])?;
                ("Add", vec![y, n.input[2].clone()])
            } else {
                ("Mul", vec![xhat.clone(), n.input[1].clone()])
            };
            g.push(NodeProto {
                input: ins,
                output: vec![n.output[0].clone()],
                name: format!("{}/output", n.label()),
                op_type: op.into(),
                ..Default::default()
            })?;
            (xhat, m.invstd)
        };
        self.req.insert(n.output[0].clone());
        self.tape.push(Step::LayerNorm {
            node: n.clone(),
            xhat,
            invstd,
            axes,
        });
        Ok(())
    }

    /// Appends the loss; returns the labels input and d(loss)/d(logits).
    fn loss(&mut self, logits: &str) -> Result<(DataInput, String)> {
        let g = &mut self.g;
        let info: Info = g.info(logits)?.clone();
        if info.dtype != F32 {
            return Err(TrainError::Model(format!(
                "output `{logits}` is not float32"
            )));
        }
        let loss_name = "loss".to_string();
        if g.info.contains_key(&loss_name) {
            return Err(TrainError::Model(
                "the model already has a value named `loss`".into(),
            ));
        }
        g.reserve_name(&loss_name);
        let all: Vec<i64> = (0..info.shape.len() as i64).collect();
        match self.opts.loss {
            LossKind::CrossEntropy => {
                if info.shape.len() != 2 {
                    return Err(TrainError::Model(format!(
                        "cross-entropy needs [N, K] logits; output `{logits}` has shape {:?}",
                        info.shape
                    )));
                }
                let (nb, k) = (info.shape[0], info.shape[1]);
                let labels = DataInput {
                    name: "labels".into(),
                    elem_type: I64,
                    shape: vec![nb],
                };
                g.add_input("labels", I64, vec![nb]);
                let lsm = g.op("LogSoftmax", &[logits], vec![Attr::int("axis", 1)])?;
                let lab2 = g.reshape("labels", &[nb, 1])?;
                let picked = g.op("GatherElements", &[&lsm, &lab2], vec![Attr::int("axis", 1)])?;
                let mean = g.reduce("ReduceMean", &picked, &[0, 1], false)?;
                g.push(NodeProto {
                    input: vec![mean],
                    output: vec![loss_name],
                    name: "pa_train/loss".into(),
                    op_type: "Neg".into(),
                    ..Default::default()
                })?;
                // d/dlogits = (softmax - onehot(labels)) / N
                let p = g.op("Exp", &[&lsm], vec![])?;
                let classes: Vec<i64> = (0..k).collect();
                let range = g.const_i64(&classes);
                let range = g.reshape(&range, &[1, k])?;
                let eq = g.op("Equal", &[&lab2, &range], vec![])?;
                let onehot = g.op("Cast", &[&eq], vec![Attr::int("to", F32 as i64)])?;
                let d = g.op("Sub", &[&p, &onehot], vec![])?;
                let s = g.scalar(1.0 / nb as f32);
                let gl = g.op("Mul", &[&d, &s], vec![])?;
                Ok((labels, gl))
            }
            LossKind::MeanSquaredError => {
                let targets = DataInput {
                    name: "targets".into(),
                    elem_type: F32,
                    shape: info.shape.clone(),
                };
                g.add_input("targets", F32, info.shape.clone());
                let diff = g.op("Sub", &[logits, "targets"], vec![])?;
                let sq = g.op("Mul", &[&diff, &diff], vec![])?;
                let mean = g.reduce("ReduceMean", &sq, &all, false)?;
                g.push(NodeProto {
                    input: vec![mean],
                    output: vec![loss_name],
                    name: "pa_train/loss".into(),
                    op_type: "Identity".into(),
                    ..Default::default()
                })?;
                let s = g.scalar(2.0 / info.numel() as f32);
                let gl = g.op("Mul", &[&diff, &s], vec![])?;
                Ok((targets, gl))
            }
        }
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
                    let needs: Vec<bool> = n.input.iter().map(|i| self.req.contains(i)).collect();
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
                Step::BatchNorm {
                    node,
                    xc,
                    invstd,
                    k,
                    axes,
                    count,
                } => {
                    let Some(gy) = self.take_grad(&node.output[0])? else {
                        continue;
                    };
                    let needs: Vec<bool> =
                        node.input.iter().map(|i| self.req.contains(i)).collect();
                    let gx =
                        self.batch_norm_grad(node, &gy, xc, invstd, k, axes, *count, &needs)?;
                    self.add_grads(node, gx);
                }
                Step::LayerNorm {
                    node,
                    xhat,
                    invstd,
                    axes,
                } => {
                    let Some(gy) = self.take_grad(&node.output[0])? else {
                        continue;
                    };
                    let needs: Vec<bool> =
                        node.input.iter().map(|i| self.req.contains(i)).collect();
                    let gx = self.layer_norm_grad(node, &gy, xhat, invstd, axes, &needs)?;
                    self.add_grads(node, gx);
                }
            }
        }
        for i in 0..self.trainable.len() {
            let name = self.trainable[i].clone();
            self.param_grads[i] = self.take_grad(&name)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_grad(
        &mut self,
        n: &NodeProto,
        gy: &str,
        xc: &str,
        invstd: &str,
        k: &str,
        axes: &[i64],
        count: i64,
        needs: &[bool],
    ) -> Result<Vec<Option<String>>> {
        let g = &mut self.g;
        let c = g.shape(&n.input[0])?[1];
        let mut res = vec![None; n.input.len()];
        // s1 = sum(gy), s2 = sum(gy * xc); dscale = s2 * invstd, dbias = s1;
        // dx = k * (gy - s1/M - xc * invstd^2 * s2/M).
        let s1 = g.reduce("ReduceSum", gy, axes, true)?;
        let gxc = g.op("Mul", &[gy, xc], vec![])?;
        let s2 = g.reduce("ReduceSum", &gxc, axes, true)?;
        if needs.get(2).copied().unwrap_or(false) {
            res[2] = Some(g.reshape(&s1, &[c])?);
        }
        if needs.get(1).copied().unwrap_or(false) {
            let t = g.op("Mul", &[&s2, invstd], vec![])?;
            res[1] = Some(g.reshape(&t, &[c])?);
        }
        if needs[0] {
            let m = g.scalar(1.0 / count as f32);
            let a1 = g.op("Mul", &[&s1, &m], vec![])?;
            let iv2 = g.op("Mul", &[invstd, invstd], vec![])?;
            let a2 = g.op("Mul", &[&s2, &iv2], vec![])?;
            let a2 = g.op("Mul", &[&a2, &m], vec![])?;
            if self.opts.target == GraphTarget::OnnxRuntime {
                // dx = k gy - k a1 - (k a2) xc. The first two terms are a
                // per-channel affine map of gy, which BatchNormalization in
                // inference form computes in one pass (mean 0, variance 1,
                // epsilon 0); three passes over the tensor instead of four.
                let shift = g.op("Mul", &[k, &a1], vec![])?;
                let shift = g.op("Neg", &[&shift], vec![])?;
                let shift = g.reshape(&shift, &[c])?;
                let scale = g.reshape(k, &[c])?;
                let zero = g.const_f32(&[c], &vec![0.0; c as usize]);
                let one = g.const_f32(&[c], &vec![1.0; c as usize]);
                let affine = g.op(
                    "BatchNormalization",
                    &[gy, &scale, &shift, &zero, &one],
                    vec![Attr::float("epsilon", 0.0)],
                )?;
                let c2 = g.op("Mul", &[k, &a2], vec![])?;
                let t = g.op("Mul", &[xc, &c2], vec![])?;
                res[0] = Some(g.op("Sub", &[&affine, &t], vec![])?);
                return Ok(res);
            }
            let t = g.op("Mul", &[xc, &a2], vec![])?;
            let t = g.op("Add", &[&t, &a1], vec![])?;
            let d = g.op("Sub", &[gy, &t], vec![])?;
            res[0] = Some(g.op("Mul", &[&d, k], vec![])?);
        }
        Ok(res)
    }

    fn layer_norm_grad(
        &mut self,
        n: &NodeProto,
        gy: &str,
        xhat: &str,
        invstd: &str,
        axes: &[i64],
        needs: &[bool],
    ) -> Result<Vec<Option<String>>> {
        let g = &mut self.g;
        let mut res = vec![None; n.input.len()];
        let r = g.rank(gy)? as i64;
        let lead: Vec<i64> = (0..r - axes.len() as i64).collect();
        if needs.get(1).copied().unwrap_or(false) {
            let t = g.op("Mul", &[gy, xhat], vec![])?;
            let s = g.shape(&n.input[1])?;
            let t = g.reduce("ReduceSum", &t, &lead, false)?;
            res[1] = Some(g.reshape(&t, &s)?);
        }
        if needs.get(2).copied().unwrap_or(false) {
            let s = g.shape(&n.input[2])?;
            let t = g.reduce("ReduceSum", gy, &lead, false)?;
            res[2] = Some(g.reshape(&t, &s)?);
        }
        if needs[0] {
            let gxh = g.op("Mul", &[gy, &n.input[1]], vec![])?;
            let m1 = g.reduce("ReduceMean", &gxh, axes, true)?;
            let p = g.op("Mul", &[&gxh, xhat], vec![])?;
            let m2 = g.reduce("ReduceMean", &p, axes, true)?;
            let t = g.op("Mul", &[xhat, &m2], vec![])?;
            let t = g.op("Add", &[&t, &m1], vec![])?;
            let d = g.op("Sub", &[&gxh, &t], vec![])?;
            res[0] = Some(g.op("Mul", &[&d, invstd], vec![])?);
        }
        Ok(res)
    }

    fn finish(
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
        let mut outputs = vec![value_info("loss", F32, &[])];
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
            outputs.push(value_info(&grad_name, F32, &shape));
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
            outputs.push(value_info(output, F32, &shape));
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
            inputs.push(value_info(&p.name, F32, &p.shape));
        }
        for s in &running_stats {
            inputs.push(value_info(&s.input, F32, &s.shape));
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
        let mut opset_import: Vec<OperatorSetIdProto> = model
            .opset_import
            .iter()
            .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .cloned()
            .collect();
        if opset_import.is_empty() {
            opset_import.push(OperatorSetIdProto {
                domain: String::new(),
                version: self.g.opset,
            });
        }
        let out = ModelProto {
            ir_version: model.ir_version.max(7),
            opset_import,
            producer_name: "pa-onnx".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(out_graph),
            ..Default::default()
        };
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

/// Keeps the nodes and initializers the outputs depend on, in order.
fn prune(
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
