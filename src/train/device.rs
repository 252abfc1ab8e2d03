//! Training with the parameters and optimizer state kept where the
//! execution provider computes (ONNX Runtime only; on CUDA, GPU memory).
//!
//! [`super::Trainer`] copies every parameter to the runtime and every
//! gradient back at each step, and updates in Rust: right for the CPU,
//! wasteful for a GPU. Here the update is itself an ONNX graph (built
//! below, default-domain operators only) run by a second session, and I/O
//! binding chains the two: the gradients, the new parameters, the optimizer
//! state and the running statistics stay on the device from one run to the
//! next, and only the batch goes in and the loss comes out. The update
//! graph computes exactly the expressions of [`super::optim`], operation by
//! operation, so both trainers take the same steps.

use std::path::Path;

use ::ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ::ort::session::Session;
use ::ort::value::{DynValue, Tensor};
use prost::Message;

use super::ir::{tensor_f32, value_info};
use super::{TrainError, TrainTensor, TrainingGraph};
use crate::backend::ort::{raw_session, to_ort};
use crate::backend::{BackendKind, BackendOptions, HostTensor};
use crate::onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

const F32: i32 = 1;

/// The update rules of [`super::Sgd`] and [`super::AdamW`], with their
/// hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DeviceOptimizer {
    Sgd {
        lr: f32,
        momentum: f32,
        weight_decay: f32,
    },
    AdamW {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
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

/// A small graph under construction: nodes named in order.
struct Builder {
    nodes: Vec<NodeProto>,
    consts: Vec<crate::onnx::pb::TensorProto>,
    n: usize,
}

impl Builder {
    fn op(&mut self, op: &str, inputs: &[&str], out: Option<String>) -> String {
        self.n += 1;
        let out = out.unwrap_or_else(|| format!("t{}", self.n));
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            name: format!("{op}_{}", self.n),
            op_type: op.into(),
            ..Default::default()
        });
        out
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.consts.push(tensor_f32(name, &[], &[v]));
        name.to_string()
    }
}

/// The update graph: inputs `lr` (and, for AdamW, `c1`, `c2`, `decay`,
/// computed on the host per step), then per parameter i `p{i}`, `g{i}` and
/// its state `s{i}_{slot}`; outputs `p{i}_new` and `s{i}_{slot}_new`.
pub fn update_graph(params: &[TrainTensor], opt: &DeviceOptimizer) -> Vec<u8> {
    let mut b = Builder {
        nodes: Vec::new(),
        consts: Vec::new(),
        n: 0,
    };
    let mut inputs = vec![value_info("lr", F32, &[])];
    let mut outputs = Vec::new();
    match *opt {
        DeviceOptimizer::Sgd {
            momentum,
            weight_decay,
            ..
        } => {
            let (mom, wd) = (b.scalar("momentum", momentum), b.scalar("wd", weight_decay));
            for (i, p) in params.iter().enumerate() {
                let (pi, gi, vi) = (format!("p{i}"), format!("g{i}"), format!("s{i}_velocity"));
                for name in [&pi, &gi, &vi] {
                    inputs.push(value_info(name, F32, &p.shape));
                }
                // g + wd * p; v = momentum * v + g; p - lr * v
                let decayed = b.op("Mul", &[&wd, &pi], None);
                let g = b.op("Add", &[&gi, &decayed], None);
                let kept = b.op("Mul", &[&mom, &vi], None);
                let v = b.op("Add", &[&kept, &g], Some(format!("{vi}_new")));
                let step = b.op("Mul", &["lr", &v], None);
                b.op("Sub", &[&pi, &step], Some(format!("{pi}_new")));
                outputs.push(value_info(&format!("{pi}_new"), F32, &p.shape));
                outputs.push(value_info(&v, F32, &p.shape));
            }
        }
        DeviceOptimizer::AdamW {
            beta1, beta2, eps, ..
        } => {
            for name in ["c1", "c2", "decay"] {
                inputs.push(value_info(name, F32, &[]));
            }
            let b1 = b.scalar("beta1", beta1);
            let b2 = b.scalar("beta2", beta2);
            let ob1 = b.scalar("one_minus_beta1", 1.0 - beta1);
            let ob2 = b.scalar("one_minus_beta2", 1.0 - beta2);
            let eps = b.scalar("eps", eps);
            for (i, p) in params.iter().enumerate() {
                let (pi, gi) = (format!("p{i}"), format!("g{i}"));
                let (mi, vi) = (format!("s{i}_m"), format!("s{i}_v"));
                for name in [&pi, &gi, &mi, &vi] {
                    inputs.push(value_info(name, F32, &p.shape));
                }
                // p *= decay; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
                // p -= lr (m / c1) / (sqrt(v / c2) + eps)
                let p1 = b.op("Mul", &[&pi, "decay"], None);
                let m_old = b.op("Mul", &[&b1, &mi], None);
                let m_g = b.op("Mul", &[&ob1, &gi], None);
                let m = b.op("Add", &[&m_old, &m_g], Some(format!("{mi}_new")));
                let v_old = b.op("Mul", &[&b2, &vi], None);
                let v_g = b.op("Mul", &[&ob2, &gi], None);
                let v_gg = b.op("Mul", &[&v_g, &gi], None);
                let v = b.op("Add", &[&v_old, &v_gg], Some(format!("{vi}_new")));
                let v_hat = b.op("Div", &[&v, "c2"], None);
                let root = b.op("Sqrt", &[&v_hat], None);
                let denom = b.op("Add", &[&root, &eps], None);
                let m_hat = b.op("Div", &[&m, "c1"], None);
                let scaled = b.op("Mul", &["lr", &m_hat], None);
                let step = b.op("Div", &[&scaled, &denom], None);
                b.op("Sub", &[&p1, &step], Some(format!("{pi}_new")));
                outputs.push(value_info(&format!("{pi}_new"), F32, &p.shape));
                outputs.push(value_info(&m, F32, &p.shape));
                outputs.push(value_info(&v, F32, &p.shape));
            }
        }
    }
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "pa-onnx".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: b.nodes,
            name: "update".into(),
            initializer: b.consts,
            input: inputs,
            output: outputs,
            doc_string: "optimizer update written by pa-onnx".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Runs training steps with parameters, gradients and optimizer state on
/// the execution provider's device.
pub struct DeviceTrainer {
    graph: TrainingGraph,
    opt: DeviceOptimizer,
    train: Session,
    update: Session,
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
    /// Loads the training graph and its update graph on `kind` (ORT CPU or
    /// CUDA), starting from the model's own parameter values.
    pub fn new(
        graph: TrainingGraph,
        kind: BackendKind,
        opts: &BackendOptions,
        opt: DeviceOptimizer,
    ) -> Result<Self, TrainError> {
        let update_model = update_graph(&graph.params, &opt);
        let (dir, paths) = super::model_files(&[
            ("training.onnx", &graph.model),
            ("update.onnx", &update_model),
        ])?;
        let open = |p: &Path| raw_session(kind, p, opts).map(|(s, _)| s);
        let (train, update) = (open(&paths[0])?, open(&paths[1])?);
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
            train,
            update,
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
        // Forward and backward: the batch from the host, everything else
        // from the device; gradients and statistics stay there.
        let mut bind = self.train.create_binding().map_err(run_err)?;
        let batch: Vec<(String, DynValue)> = inputs
            .iter()
            .map(|(n, t)| Ok((n.clone(), to_value(t)?)))
            .chain(std::iter::once(Ok((g.labels.clone(), to_value(&labels)?))))
            .collect::<Result<_, TrainError>>()?;
        for (n, v) in &batch {
            bind.bind_input(n, v).map_err(run_err)?;
        }
        for (p, v) in g.params.iter().zip(&self.params) {
            bind.bind_input(&p.name, v).map_err(run_err)?;
        }
        for (s, v) in g.running_stats.iter().zip(&self.stats) {
            bind.bind_input(&s.input, v).map_err(run_err)?;
        }
        bind.bind_output_to_device(&g.loss, &self.host)
            .map_err(run_err)?;
        for p in &g.params {
            bind.bind_output_to_device(&p.grad, &self.device)
                .map_err(run_err)?;
        }
        for s in &g.running_stats {
            bind.bind_output_to_device(&s.output, &self.device)
                .map_err(run_err)?;
        }
        let mut out = self.train.run_binding(&bind).map_err(run_err)?;
        let mut take = |name: &str| {
            out.remove(name)
                .ok_or_else(|| run_err(format!("the training graph did not return `{name}`")))
        };
        let loss_value = take(&g.loss)?;
        let grads: Vec<DynValue> = g
            .params
            .iter()
            .map(|p| take(&p.grad))
            .collect::<Result<_, _>>()?;
        let stats: Vec<DynValue> = g
            .running_stats
            .iter()
            .map(|s| take(&s.output))
            .collect::<Result<_, _>>()?;
        drop(out);
        let loss = loss_value
            .try_extract_tensor::<f32>()
            .map_err(run_err)?
            .1
            .first()
            .copied()
            .ok_or_else(|| run_err("the loss is empty"))?;
        self.stats = stats;

        // The update, device to device.
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
        let scalar_values: Vec<(&str, DynValue)> = scalars
            .iter()
            .map(|&(n, v)| Ok((n, host_value(&[], vec![v])?)))
            .collect::<Result<_, TrainError>>()?;
        let mut ub = self.update.create_binding().map_err(run_err)?;
        for (n, v) in &scalar_values {
            ub.bind_input(*n, v).map_err(run_err)?;
        }
        let slots = self.opt.slots();
        for (i, ((p, gr), st)) in self.params.iter().zip(&grads).zip(&self.state).enumerate() {
            ub.bind_input(format!("p{i}"), p).map_err(run_err)?;
            ub.bind_input(format!("g{i}"), gr).map_err(run_err)?;
            for (slot, v) in slots.iter().zip(st) {
                ub.bind_input(format!("s{i}_{slot}"), v).map_err(run_err)?;
            }
            ub.bind_output_to_device(format!("p{i}_new"), &self.device)
                .map_err(run_err)?;
            for slot in slots {
                ub.bind_output_to_device(format!("s{i}_{slot}_new"), &self.device)
                    .map_err(run_err)?;
            }
        }
        let mut out = self.update.run_binding(&ub).map_err(run_err)?;
        for i in 0..self.params.len() {
            self.params[i] = out
                .remove(format!("p{i}_new"))
                .ok_or_else(|| run_err(format!("the update did not return p{i}_new")))?;
            for (k, slot) in slots.iter().enumerate() {
                self.state[i][k] = out
                    .remove(format!("s{i}_{slot}_new"))
                    .ok_or_else(|| run_err(format!("the update did not return s{i}_{slot}_new")))?;
            }
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
