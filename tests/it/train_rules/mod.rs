//! Gradient rules of strided Slice, Gather and Max/Min with any number of
//! inputs, on tiny models built here, on tract and ONNX Runtime CPU.
//!
//! These operators only select or move values, so the exact gradient of a
//! mean squared error is a sum of entries of the output's gradient: each
//! test works it out in f64 from its own reading of the operator (which
//! input element every output element comes from) and the training graph
//! must match it to f32 rounding. The embedding model, a whole classifier,
//! is checked against central finite differences of the training graph's
//! own loss instead. A missing ONNX Runtime prints SKIPPED; any other
//! failure to load or run the graph fails the test.
//!
//! This file holds the tiny models and the runner; each operator's cases
//! are in their own file.

use std::collections::HashMap;

use pa_onnx::backend::{self, BackendError, BackendKind, BackendOptions, HostTensor, TensorData};
use pa_onnx::onnx::{pb, DataType};
use pa_onnx::train::{build_training_graph, LossKind, TrainGraphOptions, TrainingGraph};
use prost::Message;

use crate::fixtures::pb_value_info;

mod extremum;
mod gather;
mod slice;

const BACKENDS: [BackendKind; 2] = [BackendKind::Tract, BackendKind::OrtCpu];

/// Relative error allowed against the hand-computed gradients: the graph
/// computes the same few additions in f32.
const EXACT_TOL: f64 = 1e-5;

#[derive(Clone, Debug)]
enum Vals {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
}

/// A tensor of a test model: an initializer, or a fed input with its value.
#[derive(Clone, Debug)]
struct Tensor {
    name: String,
    dims: Vec<i64>,
    vals: Vals,
}

fn f32s(name: &str, dims: &[i64], vals: &[f32]) -> Tensor {
    tensor(name, dims, Vals::F32(vals.to_vec()))
}

fn i64s(name: &str, dims: &[i64], vals: &[i64]) -> Tensor {
    tensor(name, dims, Vals::I64(vals.to_vec()))
}

fn tensor(name: &str, dims: &[i64], vals: Vals) -> Tensor {
    let n = match &vals {
        Vals::F32(v) => v.len(),
        Vals::I64(v) => v.len(),
        Vals::I32(v) => v.len(),
    };
    assert_eq!(dims.iter().product::<i64>() as usize, n, "{name}");
    Tensor {
        name: name.into(),
        dims: dims.to_vec(),
        vals,
    }
}

impl Tensor {
    fn elem_type(&self) -> DataType {
        match self.vals {
            Vals::F32(_) => DataType::Float,
            Vals::I64(_) => DataType::Int64,
            Vals::I32(_) => DataType::Int32,
        }
    }

    fn proto(&self) -> pb::TensorProto {
        let mut t = pb::TensorProto {
            name: self.name.clone(),
            dims: self.dims.clone(),
            data_type: self.elem_type().code(),
            ..Default::default()
        };
        match &self.vals {
            Vals::F32(v) => t.float_data = v.clone(),
            Vals::I64(v) => t.int64_data = v.clone(),
            Vals::I32(v) => t.int32_data = v.clone(),
        }
        t
    }

    fn host(&self) -> HostTensor {
        let shape = self.dims.iter().map(|&d| d as usize).collect();
        let data = match &self.vals {
            Vals::F32(v) => TensorData::F32(v.clone()),
            Vals::I64(v) => TensorData::I64(v.clone()),
            Vals::I32(v) => TensorData::I32(v.clone()),
        };
        HostTensor::new(shape, data).unwrap()
    }

    fn f32s(&self) -> &[f32] {
        match &self.vals {
            Vals::F32(v) => v,
            _ => panic!("{} is not float", self.name),
        }
    }
}

fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], out: &str, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: format!("{out}_node"),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

/// A model with one float output: `inputs` are fed with their values,
/// `inits` are stored in it.
struct Tiny {
    opset: i64,
    inits: Vec<Tensor>,
    inputs: Vec<Tensor>,
    nodes: Vec<pb::NodeProto>,
    output: (String, Vec<i64>),
}

impl Tiny {
    fn encode(&self) -> Vec<u8> {
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            graph: Some(pb::GraphProto {
                name: "tiny".into(),
                node: self.nodes.clone(),
                initializer: self.inits.iter().map(Tensor::proto).collect(),
                input: self
                    .inputs
                    .iter()
                    .map(|t| pb_value_info(&t.name, t.elem_type(), &t.dims))
                    .collect(),
                output: vec![pb_value_info(
                    &self.output.0,
                    DataType::Float,
                    &self.output.1,
                )],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn init(&self, name: &str) -> &Tensor {
        self.inits
            .iter()
            .chain(&self.inputs)
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }
}

/// A training graph loaded on one backend.
struct Runner {
    graph: TrainingGraph,
    session: Box<dyn backend::Session>,
    kind: BackendKind,
    _dir: tempfile::TempDir,
}

impl Runner {
    /// None when the backend is not there (ONNX Runtime not installed).
    fn open(graph: &TrainingGraph, kind: BackendKind, what: &str) -> Option<Runner> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.onnx");
        std::fs::write(&path, &graph.model).unwrap();
        match backend::open(kind, &path, &BackendOptions::default()) {
            Ok(session) => Some(Runner {
                graph: graph.clone(),
                session,
                kind,
                _dir: dir,
            }),
            Err(e @ BackendError::Unavailable { .. }) => {
                eprintln!("SKIPPED {what} on {kind}: {e}");
                None
            }
            Err(e) => panic!("{what} on {kind}: {e}"),
        }
    }

    /// Loss and every parameter gradient, for these parameter values.
    fn run(
        &mut self,
        data: &[Tensor],
        labels: HostTensor,
        params: &[Vec<f32>],
    ) -> (f64, HashMap<String, Vec<f64>>) {
        let mut feeds: Vec<(String, HostTensor)> =
            data.iter().map(|t| (t.name.clone(), t.host())).collect();
        feeds.push((self.graph.labels.clone(), labels));
        for (p, v) in self.graph.params.iter().zip(params) {
            let shape = p.shape.iter().map(|&d| d as usize).collect();
            feeds.push((
                p.name.clone(),
                HostTensor::new(shape, TensorData::F32(v.clone())).unwrap(),
            ));
        }
        let kind = self.kind;
        let outputs = self
            .session
            .run(&feeds)
            .unwrap_or_else(|e| panic!("running on {kind}: {e}"));
        let mut out: HashMap<String, Vec<f64>> =
            outputs.into_iter().map(|(n, t)| (n, t.to_f64())).collect();
        let loss = out[&self.graph.loss][0];
        let grads = self
            .graph
            .params
            .iter()
            .map(|p| (p.name.clone(), out.remove(&p.grad).unwrap()))
            .collect();
        (loss, grads)
    }
}

/// max |got - want| / max |want|.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

/// Options for an MSE training graph that trains `trainable`.
fn mse_on(trainable: &[&str]) -> TrainGraphOptions {
    TrainGraphOptions {
        loss: LossKind::MeanSquaredError,
        trainable: Some(trainable.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

/// The error the builder gives for `m` with `w` trainable.
fn refusal(m: &Tiny) -> String {
    match build_training_graph(&m.encode(), &mse_on(&["w"])) {
        Ok(_) => panic!("the builder accepted a malformed model"),
        Err(e) => e.to_string(),
    }
}

/// Trains `trainable` of `m` against `targets` with a mean squared error and
/// compares loss and gradients with the expected ones, on every backend.
fn check_exact(
    what: &str,
    m: &Tiny,
    trainable: &[&str],
    targets: &[f32],
    want_loss: f64,
    want: &[(&str, Vec<f64>)],
) {
    let graph = build_training_graph(&m.encode(), &mse_on(trainable))
        .unwrap_or_else(|e| panic!("{what}: building the training graph failed: {e}"));
    let names: Vec<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, trainable, "{what}");
    let params: Vec<Vec<f32>> = trainable
        .iter()
        .map(|&n| m.init(n).f32s().to_vec())
        .collect();
    let out_shape: Vec<usize> = m.output.1.iter().map(|&d| d as usize).collect();
    let labels = HostTensor::new(out_shape, TensorData::F32(targets.to_vec())).unwrap();
    for kind in BACKENDS {
        let Some(mut r) = Runner::open(&graph, kind, what) else {
            continue;
        };
        let (loss, grads) = r.run(&m.inputs, labels.clone(), &params);
        assert!(
            ((loss - want_loss) / want_loss).abs() < EXACT_TOL,
            "{what} on {kind}: loss {loss} vs {want_loss}"
        );
        for (name, w) in want {
            let err = rel_err(&grads[*name], w);
            assert!(
                err <= EXACT_TOL,
                "{what} on {kind}: gradient of {name} has relative error {err:.2e}\n got {:?}\nwant {:?}",
                grads[*name],
                w
            );
        }
        eprintln!("{what} on {kind}: loss {loss:.6}, gradients exact");
    }
}

/// Deterministic values in [-1, 1) without ties, for targets and weights.
fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|k| ((k * 37 + seed * 11) % 53) as f32 / 26.5 - 1.0)
        .collect()
}

/// Loss and exact input gradient of mean((x[map] - t)^2), for an operator
/// whose output element `o` is input element `map[o]`.
fn selection(x: &[f32], map: &[usize], t: &[f32]) -> (f64, Vec<f64>) {
    let n = map.len() as f64;
    let mut loss = 0.0;
    let mut gx = vec![0.0; x.len()];
    for (o, &i) in map.iter().enumerate() {
        let d = x[i] as f64 - t[o] as f64;
        loss += d * d / n;
        gx[i] += 2.0 * d / n;
    }
    (loss, gx)
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Every multi-index of `dims`, in row-major order.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = dims.iter().product();
    let st = strides(dims);
    (0..total)
        .map(|f| dims.iter().zip(&st).map(|(&d, &s)| f / s % d).collect())
        .collect()
}
