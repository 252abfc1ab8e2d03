//! Training with the parameters and optimizer state kept where the
//! execution provider computes (ONNX Runtime only; on CUDA, GPU memory).
//!
//! [`super::Trainer`] copies every parameter to the runtime and every
//! gradient back at each step, and updates in Rust: right for the CPU,
//! wasteful for a GPU. Here the update is appended to the training graph
//! (default-domain operators only), so one session run is one whole step,
//! and I/O binding carries the new parameters, the optimizer state and the
//! running statistics from one run to the next without leaving the
//! device: only the batch goes in and the loss comes out. The update
//! computes exactly the expressions of [`super::optim`], operation by
//! operation, so both trainers take the same steps.

use ::ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ::ort::session::Session;
use ::ort::value::{DynValue, Tensor};
use prost::Message;

use super::proto::{tensor_f32, value_info};
use super::{TrainError, TrainingGraph};
use crate::backend::ort::{raw_session, to_ort};
use crate::backend::{BackendKind, BackendOptions, HostTensor};
use crate::onnx::pb::{ModelProto, NodeProto};
use crate::onnx::DataType;

/// The update rules of [`super::Sgd`] and [`super::AdamW`], with their
/// hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DeviceOptimizer {
    /// As [`super::Sgd`].
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum factor (0 for plain SGD).
        momentum: f32,
        /// L2 penalty added to the gradient.
        weight_decay: f32,
    },
    /// As [`super::AdamW`].
    AdamW {
        /// Learning rate.
        lr: f32,
        /// Decay rate of the first-moment estimate.
        beta1: f32,
        /// Decay rate of the second-moment estimate.
        beta2: f32,
        /// Added to the denominator for numerical stability.
        eps: f32,
        /// Decoupled weight decay, scaled by the learning rate.
        weight_decay: f32,
    },
}

impl DeviceOptimizer {
    /// PyTorch's AdamW defaults (betas 0.9, 0.999, eps 1e-8).
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        DeviceOptimizer::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    /// Names of the state tensors each parameter has.
    fn slots(&self) -> &'static [&'static str] {
        match self {
            DeviceOptimizer::Sgd { .. } => &["velocity"],
            DeviceOptimizer::AdamW { .. } => &["m", "v"],
        }
    }
}

/// Prefix of every name the update adds to the training graph.
const PREFIX: &str = "pa_update/";

/// Nodes under construction, named in order under [`PREFIX`].
struct Builder {
    nodes: Vec<NodeProto>,
    consts: Vec<crate::onnx::pb::TensorProto>,
    n: usize,
}

impl Builder {
    fn op(&mut self, op: &str, inputs: &[&str], out: Option<String>) -> String {
        self.n += 1;
        let out = out.unwrap_or_else(|| format!("{PREFIX}t{}", self.n));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{PREFIX}{op}_{}", self.n),
            op_type: op.into(),
            ..Default::default()
        });
        out
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        let name = format!("{PREFIX}{name}");
        self.consts.push(tensor_f32(&name, &[], &[v]));
        name
    }
}

/// Graph input of a per-step scalar (`lr`; for AdamW also `c1`, `c2`,
/// `decay`), fed from the host at each step.
fn scalar_input(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Graph input of parameter i's optimizer state `slot`.
fn state_input(i: usize, slot: &str) -> String {
    format!("{PREFIX}s{i}_{slot}")
}

/// The graph output that replaces `input` after the step.
fn new_value(input: &str) -> String {
    format!("{input}_new")
}

/// Graph output holding parameter i after the step.
fn param_output(i: usize) -> String {
    format!("{PREFIX}p{i}_new")
}

/// The training graph with the optimizer's update appended, so that one run
/// is one whole step. The update reads each parameter and its gradient
/// inside the graph; its extra inputs are the per-step scalars and the
/// optimizer state, and the gradients leave the outputs, replaced by the
/// new parameters and state. The arithmetic is exactly that of
/// [`super::optim`], operation by operation.
fn fused_graph(graph: &TrainingGraph, opt: &DeviceOptimizer) -> Result<Vec<u8>, TrainError> {
    let mut model = ModelProto::decode(graph.model.as_slice())
        .map_err(|e| run_err(format!("the training graph does not decode: {e}")))?;
    let g = model
        .graph
        .as_mut()
        .ok_or_else(|| run_err("the training graph has no graph"))?;
    // The added names must not meet the graph's own.
    let taken = g
        .input
        .iter()
        .chain(&g.output)
        .map(|v| &v.name)
        .chain(g.initializer.iter().map(|t| &t.name))
        .chain(g.node.iter().flat_map(|n| n.output.iter().chain([&n.name])));
    if let Some(name) = taken.into_iter().find(|n| n.starts_with(PREFIX)) {
        return Err(run_err(format!(
            "the training graph already uses the name `{name}`, reserved for the update"
        )));
    }
    let mut b = Builder {
        nodes: Vec::new(),
        consts: Vec::new(),
        n: 0,
    };
    let lr = scalar_input("lr");
    let mut inputs = vec![value_info(&lr, DataType::Float, &[])];
    let mut outputs = Vec::new();
    match *opt {
        DeviceOptimizer::Sgd {
            momentum,
            weight_decay,
            ..
        } => {
            let (mom, wd) = (b.scalar("momentum", momentum), b.scalar("wd", weight_decay));
            for (i, p) in graph.params.iter().enumerate() {
                let (pi, gi, vi) = (&p.name, &p.grad, state_input(i, "velocity"));
                inputs.push(value_info(&vi, DataType::Float, &p.shape));
                // g + wd * p; v = momentum * v + g; p - lr * v
                let decayed = b.op("Mul", &[&wd, pi], None);
                let g = b.op("Add", &[gi, &decayed], None);
                let kept = b.op("Mul", &[&mom, &vi], None);
                let v = b.op("Add", &[&kept, &g], Some(new_value(&vi)));
                let step = b.op("Mul", &[&lr, &v], None);
                let p_new = b.op("Sub", &[pi, &step], Some(param_output(i)));
                outputs.push(value_info(&p_new, DataType::Float, &p.shape));
                outputs.push(value_info(&v, DataType::Float, &p.shape));
            }
        }
        DeviceOptimizer::AdamW {
            beta1, beta2, eps, ..
        } => {
            let (c1, c2, decay) = (
                scalar_input("c1"),
                scalar_input("c2"),
                scalar_input("decay"),
            );
            for name in [&c1, &c2, &decay] {
                inputs.push(value_info(name, DataType::Float, &[]));
            }
            let b1 = b.scalar("beta1", beta1);
            let b2 = b.scalar("beta2", beta2);
            let ob1 = b.scalar("one_minus_beta1", 1.0 - beta1);
            let ob2 = b.scalar("one_minus_beta2", 1.0 - beta2);
            let eps = b.scalar("eps", eps);
            for (i, p) in graph.params.iter().enumerate() {
                let (pi, gi) = (&p.name, &p.grad);
                let (mi, vi) = (state_input(i, "m"), state_input(i, "v"));
                for name in [&mi, &vi] {
                    inputs.push(value_info(name, DataType::Float, &p.shape));
                }
                // p *= decay; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
                // p -= lr (m / c1) / (sqrt(v / c2) + eps)
                let p1 = b.op("Mul", &[pi, &decay], None);
                let m_old = b.op("Mul", &[&b1, &mi], None);
                let m_g = b.op("Mul", &[&ob1, gi], None);
                let m = b.op("Add", &[&m_old, &m_g], Some(new_value(&mi)));
                let v_old = b.op("Mul", &[&b2, &vi], None);
                let v_g = b.op("Mul", &[&ob2, gi], None);
                let v_gg = b.op("Mul", &[&v_g, gi], None);
                let v = b.op("Add", &[&v_old, &v_gg], Some(new_value(&vi)));
                let v_hat = b.op("Div", &[&v, &c2], None);
                let root = b.op("Sqrt", &[&v_hat], None);
                let denom = b.op("Add", &[&root, &eps], None);
                let m_hat = b.op("Div", &[&m, &c1], None);
                let scaled = b.op("Mul", &[&lr, &m_hat], None);
                let step = b.op("Div", &[&scaled, &denom], None);
                let p_new = b.op("Sub", &[&p1, &step], Some(param_output(i)));
                outputs.push(value_info(&p_new, DataType::Float, &p.shape));
                outputs.push(value_info(&m, DataType::Float, &p.shape));
                outputs.push(value_info(&v, DataType::Float, &p.shape));
            }
        }
    }
    let grads: std::collections::HashSet<&str> =
        graph.params.iter().map(|p| p.grad.as_str()).collect();
    g.output.retain(|o| !grads.contains(o.name.as_str()));
    g.output.extend(outputs);
    g.input.extend(inputs);
    g.node.extend(b.nodes);
    g.initializer.extend(b.consts);
    Ok(model.encode_to_vec())
}

/// Runs training steps with parameters, gradients and optimizer state on
/// the execution provider's device.
pub struct DeviceTrainer {
    graph: TrainingGraph,
    opt: DeviceOptimizer,
    /// The training graph with the update appended.
    step: Session,
    device: MemoryInfo<'static>,
    host: MemoryInfo<'static>,
    params: Vec<DynValue>,
    /// Per parameter, one value per optimizer slot.
    state: Vec<Vec<DynValue>>,
    stats: Vec<DynValue>,
    steps: i32,
    _dir: tempfile::TempDir,
}

fn run_err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Run(e.to_string())
}

fn host_value(shape: &[i64], data: Vec<f32>) -> Result<DynValue, TrainError> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    Tensor::from_array((shape, data))
        .map(Tensor::into_dyn)
        .map_err(run_err)
}

fn to_value(t: &HostTensor) -> Result<DynValue, TrainError> {
    to_ort(t).map_err(run_err)
}

impl DeviceTrainer {
    /// Loads the training graph, with the update appended, on `kind` (ORT
    /// CPU or CUDA), starting from the model's own parameter values.
    pub fn new(
        graph: TrainingGraph,
        kind: BackendKind,
        opts: &BackendOptions,
        opt: DeviceOptimizer,
    ) -> Result<Self, TrainError> {
        let fused = fused_graph(&graph, &opt)?;
        let (dir, paths) = super::model_files(&[("step.onnx", &fused)])?;
        let (step, _) = raw_session(kind, &paths[0], opts)?;
        let device = match kind {
            BackendKind::OrtCuda => MemoryInfo::new(
                AllocationDevice::CUDA,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            ),
            _ => MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            ),
        }
        .map_err(run_err)?;
        let host = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(run_err)?;
        let params = graph
            .params
            .iter()
            .map(|p| host_value(&p.shape, p.init.clone()))
            .collect::<Result<_, _>>()?;
        let state = graph
            .params
            .iter()
            .map(|p| {
                opt.slots()
                    .iter()
                    .map(|_| host_value(&p.shape, vec![0.0; p.init.len()]))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<_, _>>()?;
        let stats = graph
            .running_stats
            .iter()
            .map(|s| host_value(&s.shape, s.init.clone()))
            .collect::<Result<_, _>>()?;
        Ok(DeviceTrainer {
            graph,
            opt,
            step,
            device,
            host,
            params,
            state,
            stats,
            steps: 0,
            _dir: dir,
        })
    }

    /// One step on a batch, as [`super::Trainer::step`]: returns the loss
    /// before the update.
    pub fn step(
        &mut self,
        inputs: &[(String, HostTensor)],
        labels: HostTensor,
    ) -> Result<f32, TrainError> {
        let g = &self.graph;
        // The per-step scalars of the update, computed on the host.
        self.steps += 1;
        let mut scalars = Vec::new();
        match self.opt {
            DeviceOptimizer::Sgd { lr, .. } => scalars.push(("lr", lr)),
            DeviceOptimizer::AdamW {
                lr,
                beta1,
                beta2,
                weight_decay,
                ..
            } => {
                scalars.push(("lr", lr));
                scalars.push(("c1", 1.0 - beta1.powi(self.steps)));
                scalars.push(("c2", 1.0 - beta2.powi(self.steps)));
                scalars.push(("decay", 1.0 - lr * weight_decay));
            }
        }
        // The batch and the scalars from the host, everything else from
        // the device; the new parameters, state and statistics stay there.
        let host_inputs: Vec<(String, DynValue)> = inputs
            .iter()
            .map(|(n, t)| Ok((n.clone(), to_value(t)?)))
            .chain(std::iter::once(Ok((g.labels.clone(), to_value(&labels)?))))
            .chain(
                scalars
                    .iter()
                    .map(|&(n, v)| Ok((scalar_input(n), host_value(&[], vec![v])?))),
            )
            .collect::<Result<_, TrainError>>()?;
        let mut bind = self.step.create_binding().map_err(run_err)?;
        for (n, v) in &host_inputs {
            bind.bind_input(n, v).map_err(run_err)?;
        }
        let slots = self.opt.slots();
        for (i, (p, v)) in g.params.iter().zip(&self.params).enumerate() {
            bind.bind_input(&p.name, v).map_err(run_err)?;
            bind.bind_output_to_device(param_output(i), &self.device)
                .map_err(run_err)?;
            for (slot, s) in slots.iter().zip(&self.state[i]) {
                let name = state_input(i, slot);
                bind.bind_input(&name, s).map_err(run_err)?;
                bind.bind_output_to_device(new_value(&name), &self.device)
                    .map_err(run_err)?;
            }
        }
        for (s, v) in g.running_stats.iter().zip(&self.stats) {
            bind.bind_input(&s.input, v).map_err(run_err)?;
            bind.bind_output_to_device(&s.output, &self.device)
                .map_err(run_err)?;
        }
        bind.bind_output_to_device(&g.loss, &self.host)
            .map_err(run_err)?;
        let mut out = self.step.run_binding(&bind).map_err(run_err)?;
        let mut take = |name: &str| {
            out.remove(name)
                .ok_or_else(|| run_err(format!("the step did not return `{name}`")))
        };
        let loss = take(&g.loss)?
            .try_extract_tensor::<f32>()
            .map_err(run_err)?
            .1
            .first()
            .copied()
            .ok_or_else(|| run_err("the loss is empty"))?;
        for i in 0..self.params.len() {
            self.params[i] = take(&param_output(i))?;
            for (k, slot) in slots.iter().enumerate() {
                self.state[i][k] = take(&new_value(&state_input(i, slot)))?;
            }
        }
        for (s, v) in g.running_stats.iter().zip(&mut self.stats) {
            *v = take(&s.output)?;
        }
        Ok(loss)
    }

    /// The learning rate from the next step on, for schedules.
    pub fn set_lr(&mut self, new: f32) {
        match &mut self.opt {
            DeviceOptimizer::Sgd { lr, .. } | DeviceOptimizer::AdamW { lr, .. } => *lr = new,
        }
    }

    /// Current parameter values, copied to the host, by tensor name.
    pub fn params(&self) -> Result<Vec<(String, Vec<f32>)>, TrainError> {
        self.graph
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, v)| Ok((p.name.clone(), to_host(v)?)))
            .collect()
    }

    /// Current running statistics, copied to the host, by tensor name.
    pub fn running_stats(&self) -> Result<Vec<(String, Vec<f32>)>, TrainError> {
        self.graph
            .running_stats
            .iter()
            .zip(&self.stats)
            .map(|(s, v)| Ok((s.input.clone(), to_host(v)?)))
            .collect()
    }

    /// The graph this trainer runs.
    pub fn graph(&self) -> &TrainingGraph {
        &self.graph
    }
}

/// A copy of a device value in host memory.
fn to_host(v: &DynValue) -> Result<Vec<f32>, TrainError> {
    let t = v
        .view()
        .downcast::<::ort::value::TensorValueType<f32>>()
        .map_err(run_err)?;
    if t.memory_info().is_cpu_accessible() {
        return Ok(t.extract_tensor().1.to_vec());
    }
    let host = t.to(AllocationDevice::CPU, 0).map_err(run_err)?;
    Ok(host.extract_tensor().1.to_vec())
}
