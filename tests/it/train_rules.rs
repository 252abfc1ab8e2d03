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

use std::collections::HashMap;

use pa_onnx::backend::{self, BackendError, BackendKind, BackendOptions, HostTensor, TensorData};
use pa_onnx::onnx::{pb, DataType};
use pa_onnx::train::{build_training_graph, LossKind, TrainGraphOptions, TrainingGraph};
use prost::Message;

use crate::fixtures::pb_value_info;

const BACKENDS: [BackendKind; 2] = [BackendKind::Tract, BackendKind::OrtCpu];

/// Relative error allowed against the hand-computed gradients: the graph
/// computes the same few additions in f32.
const EXACT_TOL: f64 = 1e-5;

// ---- tiny models ---------------------------------------------------------------

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

// ---- running training graphs ---------------------------------------------------------

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

// ---- Slice ---------------------------------------------------------------------------

/// The model `y = Slice(w, starts, ends, axes, steps)` with output `[out]`.
fn slice_model(
    w: Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
    out: Vec<i64>,
) -> Tiny {
    let k = starts.len() as i64;
    Tiny {
        opset: 13,
        inits: vec![
            w,
            i64s("starts", &[k], starts),
            i64s("ends", &[k], ends),
            i64s("axes", &[k], axes),
            i64s("steps", &[k], steps),
        ],
        inputs: vec![],
        nodes: vec![node(
            "Slice",
            &["w", "starts", "ends", "axes", "steps"],
            "y",
            vec![],
        )],
        output: ("y".into(), out),
    }
}

/// `Slice(w, starts, ends, axes, steps)` of a `[dims]` parameter, checked
/// against `positions`: for every axis of the input, the positions the
/// output reads along it, worked out by hand from the ONNX definition.
fn check_slice(
    what: &str,
    dims: &[i64],
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
    positions: &[Vec<usize>],
) {
    let numel = dims.iter().product::<i64>() as usize;
    let w = f32s("w", dims, &wave(numel, 1));
    let out_dims: Vec<usize> = positions.iter().map(Vec::len).collect();
    let out: Vec<i64> = out_dims.iter().map(|&d| d as i64).collect();
    let m = slice_model(w.clone(), starts, ends, axes, steps, out);
    let in_st = strides(&dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
    let map: Vec<usize> = indices(&out_dims)
        .iter()
        .map(|o| {
            o.iter()
                .enumerate()
                .map(|(a, &i)| positions[a][i] * in_st[a])
                .sum()
        })
        .collect();
    let targets = wave(map.len(), 2);
    let (loss, gw) = selection(w.f32s(), &map, &targets);
    check_exact(what, &m, &["w"], &targets, loss, &[("w", gw)]);
}

#[test]
fn slice_with_negative_steps() {
    // Both axes backwards: every row from the last (end INT64_MIN clamps
    // to "before the first"), then columns 4 and 2 (step -2, end 0 excluded).
    check_slice(
        "slice [-1:MIN:-1, 4:0:-2]",
        &[5, 6],
        &[-1, 4],
        &[i64::MIN, 0],
        &[0, 1],
        &[-1, -2],
        &[vec![4, 3, 2, 1, 0], vec![4, 2]],
    );
    // A start past the end clamps to the last position; negative end and axis.
    check_slice(
        "slice [:, 10:-5:-3]",
        &[3, 6],
        &[10],
        &[-5],
        &[-1],
        &[-3],
        &[vec![0, 1, 2], vec![5, 2]],
    );
}

#[test]
fn slice_with_step_two_on_two_axes() {
    // Steps 2 and 3 on the last two axes, a step-1 crop of the first (the
    // Pad part of the rule), an INT64_MAX end and negative axes.
    check_slice(
        "slice [1:2, 1:7:2, 0:MAX:3]",
        &[2, 7, 8],
        &[1, 1, 0],
        &[2, 7, i64::MAX],
        &[-3, 1, -1],
        &[1, 2, 3],
        &[vec![1], vec![1, 3, 5], vec![0, 3, 6]],
    );
    check_slice(
        "slice [::2, ::2]",
        &[4, 5],
        &[0, 0],
        &[4, 5],
        &[0, 1],
        &[2, 2],
        &[vec![0, 2], vec![0, 2, 4]],
    );
}

/// A zero step is invalid ONNX: the builder says so instead of dividing by it.
#[test]
fn slice_with_step_zero_is_an_error() {
    let w = f32s("w", &[4], &wave(4, 1));
    let m = slice_model(w, &[0], &[4], &[0], &[0], vec![4]);
    let err = refusal(&m);
    assert!(err.contains("step"), "{err}");
}

/// An axis outside the input's rank is invalid too: an error, not a panic.
#[test]
fn slice_with_an_axis_out_of_range_is_an_error() {
    for axis in [1, -2] {
        let w = f32s("w", &[4], &wave(4, 1));
        let m = slice_model(w, &[0], &[4], &[axis], &[1], vec![4]);
        let err = refusal(&m);
        assert!(err.contains("out of range"), "{err}");
    }
}

/// Axes that are out of range or repeated, on the operators whose shapes
/// the builder works out: an error naming the problem, never a panic.
#[test]
fn malformed_axes_are_errors() {
    let w = || f32s("w", &[2, 3], &wave(6, 2));
    let tiny = |nodes, inits: Vec<Tensor>| Tiny {
        opset: 13,
        inits: [vec![w()], inits].concat(),
        inputs: vec![],
        nodes: vec![nodes],
        output: ("y".into(), vec![6]),
    };
    let cases = [
        (
            "repeat",
            tiny(
                node("Unsqueeze", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[2], &[0, 0])],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Unsqueeze", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[1], &[7])],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Squeeze", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[1], &[-3])],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Concat", &["w", "w"], "y", vec![int_attr("axis", 2)]),
                vec![],
            ),
        ),
        (
            "out of range",
            tiny(
                node("Flatten", &["w"], "y", vec![int_attr("axis", 3)]),
                vec![],
            ),
        ),
        (
            "out of range",
            tiny(
                node("ReduceSum", &["w", "axes"], "y", vec![]),
                vec![i64s("axes", &[1], &[-5])],
            ),
        ),
        (
            "pads",
            tiny(
                node("Pad", &["w", "pads"], "y", vec![]),
                vec![i64s("pads", &[3], &[0, 1, 0])],
            ),
        ),
    ];
    for (want, m) in cases {
        let err = refusal(&m);
        assert!(err.contains(want), "{err}");
    }
}

// ---- Gather --------------------------------------------------------------------------

/// How a Gather test feeds its indices.
#[derive(Clone, Copy, Debug)]
enum Indices {
    /// An int64 graph input.
    Int64Input,
    /// An int32 graph input.
    Int32Input,
    /// An int64 initializer (known while building the graph).
    Constant,
}

/// `Gather(w, idx, axis)` with `w` trainable, on opset 13 (the one-hot
/// rule) and opset 17 (ScatterND with reduction="add").
fn check_gather(what: &str, dims: &[i64], axis: i64, idx_dims: &[i64], idx: &[i64]) {
    let r = dims.len() as i64;
    let a = if axis < 0 { axis + r } else { axis } as usize;
    let d: Vec<usize> = dims.iter().map(|&x| x as usize).collect();
    let out_dims: Vec<usize> = [
        &d[..a],
        &idx_dims.iter().map(|&x| x as usize).collect::<Vec<_>>(),
        &d[a + 1..],
    ]
    .concat();
    let numel: usize = d.iter().product();
    let w = f32s("w", dims, &wave(numel, 3));
    // Output element (p, j, q) is input element (p, idx[j] wrapped, q).
    let (p, v, q) = (
        d[..a].iter().product::<usize>(),
        d[a],
        d[a + 1..].iter().product::<usize>(),
    );
    let n = idx.len();
    let mut map = vec![];
    for pi in 0..p {
        for &i in idx {
            let row = if i < 0 { i + v as i64 } else { i } as usize;
            for qi in 0..q {
                map.push((pi * v + row) * q + qi);
            }
        }
    }
    assert_eq!(map.len(), p * n * q);
    let targets = wave(map.len(), 4);
    let (loss, gw) = selection(w.f32s(), &map, &targets);
    for opset in [13, 17] {
        for how in [Indices::Int64Input, Indices::Int32Input, Indices::Constant] {
            let idx_t = match how {
                Indices::Int32Input => tensor(
                    "idx",
                    idx_dims,
                    Vals::I32(idx.iter().map(|&i| i as i32).collect()),
                ),
                _ => i64s("idx", idx_dims, idx),
            };
            let (inits, inputs) = match how {
                Indices::Constant => (vec![w.clone(), idx_t], vec![]),
                _ => (vec![w.clone()], vec![idx_t]),
            };
            let m = Tiny {
                opset,
                inits,
                inputs,
                nodes: vec![node(
                    "Gather",
                    &["w", "idx"],
                    "y",
                    vec![int_attr("axis", axis)],
                )],
                output: ("y".into(), out_dims.iter().map(|&x| x as i64).collect()),
            };
            check_exact(
                &format!("{what}, opset {opset}, {how:?} indices"),
                &m,
                &["w"],
                &targets,
                loss,
                &[("w", gw.clone())],
            );
        }
    }
}

#[test]
fn gather_embedding_accumulates_repeated_and_negative_indices() {
    // Row 2 is read three times, row 4 also as -1, row 0 also as -5; row 1
    // is never read and must get a zero gradient.
    check_gather(
        "embedding",
        &[5, 3],
        0,
        &[2, 4],
        &[0, 2, -1, 2, 4, -5, 3, 2],
    );
}

#[test]
fn gather_on_axis_one() {
    check_gather("gather axis 1", &[3, 5, 2], 1, &[2, 2], &[1, -1, 1, 0]);
    // A scalar index drops the axis (the first token of a sequence).
    check_gather("gather axis -2, scalar index", &[2, 4, 3], -2, &[], &[0]);
}

/// A whole classifier over an embedding: the table is trained without
/// being named, and its gradient matches finite differences of the loss.
#[test]
fn embedding_table_is_trainable_and_matches_finite_differences() {
    let (batch, seq, vocab, dim, classes) = (4i64, 3i64, 6i64, 4i64, 5i64);
    let ids = i64s(
        "ids",
        &[batch, seq],
        &[0, 5, -1, 2, 2, -6, 1, 3, 0, -2, 2, 1],
    );
    let m = Tiny {
        opset: 17,
        inits: vec![
            f32s(
                "emb",
                &[vocab, dim],
                &wave((vocab * dim) as usize, 5)
                    .iter()
                    .map(|v| 2.0 * v)
                    .collect::<Vec<_>>(),
            ),
            f32s(
                "w",
                &[classes, seq * dim],
                &wave((classes * seq * dim) as usize, 6),
            ),
            f32s("b", &[classes], &wave(classes as usize, 7)),
        ],
        inputs: vec![ids.clone()],
        nodes: vec![
            node("Gather", &["emb", "ids"], "e", vec![]),
            node("Flatten", &["e"], "f", vec![int_attr("axis", 1)]),
            node(
                "Gemm",
                &["f", "w", "b"],
                "logits",
                vec![int_attr("transB", 1)],
            ),
        ],
        output: ("logits".into(), vec![batch, classes]),
    };
    let graph = build_training_graph(&m.encode(), &TrainGraphOptions::default()).unwrap();
    let names: Vec<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["emb", "w", "b"]);
    let labels = HostTensor::new(vec![batch as usize], TensorData::I64(vec![0, 3, 1, 4])).unwrap();
    let params: Vec<Vec<f32>> = graph.params.iter().map(|p| p.init.clone()).collect();
    let data = [ids];
    let mut analytic: Vec<HashMap<String, Vec<f64>>> = vec![];
    for kind in BACKENDS {
        let Some(mut r) = Runner::open(&graph, kind, "embedding classifier") else {
            continue;
        };
        let (_, grads) = r.run(&data, labels.clone(), &params);
        let eps = 1e-2f32;
        for (pi, p) in graph.params.iter().enumerate() {
            let mut fd = vec![0.0; p.init.len()];
            for (k, slot) in fd.iter_mut().enumerate() {
                let mut loss_at = |delta: f32| {
                    let mut moved = params.clone();
                    moved[pi][k] += delta;
                    r.run(&data, labels.clone(), &moved).0
                };
                *slot = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
            }
            let err = rel_err(&grads[&p.name], &fd);
            assert!(
                err < 1e-2,
                "{kind}: gradient of {} is {err:.2e} away from finite differences",
                p.name
            );
            eprintln!(
                "embedding classifier on {kind}: {} within {err:.1e} of finite differences",
                p.name
            );
        }
        // Rows 0..6 are all read, so every row of the table has a gradient.
        let g = &grads["emb"];
        for row in 0..vocab as usize {
            let d = dim as usize;
            assert!(g[row * d..(row + 1) * d].iter().any(|&v| v != 0.0));
        }
        analytic.push(grads);
    }
    if let [a, b] = analytic.as_slice() {
        for name in names {
            assert!(rel_err(&a[name], &b[name]) < 1e-5, "{name}: tract vs ORT");
        }
    }
}

/// Float tensors that Gather reads along another axis, or that are not
/// tables, stay frozen unless named.
#[test]
fn only_embedding_tables_become_trainable() {
    let m = Tiny {
        opset: 17,
        inits: vec![
            f32s("w", &[3, 2], &wave(6, 1)),
            f32s("table", &[2, 5], &wave(10, 2)),
            f32s("scales", &[4], &wave(4, 3)),
            i64s("cols", &[2], &[4, 1]),
            i64s("pick", &[2], &[3, 0]),
        ],
        inputs: vec![f32s("x", &[2, 3], &wave(6, 4))],
        nodes: vec![
            node("Gemm", &["x", "w"], "h", vec![]),
            node("Gather", &["table", "cols"], "t", vec![int_attr("axis", 1)]),
            node("Gather", &["scales", "pick"], "s", vec![]),
            node("Mul", &["h", "t"], "ht", vec![]),
            node("Mul", &["ht", "s"], "y", vec![]),
        ],
        output: ("y".into(), vec![2, 2]),
    };
    let opts = TrainGraphOptions {
        loss: LossKind::MeanSquaredError,
        ..Default::default()
    };
    let graph = build_training_graph(&m.encode(), &opts).unwrap();
    let names: Vec<&str> = graph.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["w"]);
}

// ---- Max and Min ---------------------------------------------------------------------

/// `op` (Max or Min) over `ins`, broadcast to `out_dims`, checked against
/// the rule's convention: k tied inputs share an element's gradient equally.
/// The first `data` inputs are fed as data, the others are trained.
fn check_extremum(
    what: &str,
    op: &str,
    opset: i64,
    ins: &[Tensor],
    data: usize,
    out_dims: &[usize],
) {
    let pick = |a: f32, b: f32| if op == "Max" { a.max(b) } else { a.min(b) };
    let outs = indices(out_dims);
    let n = outs.len() as f64;
    // For every output element, the flat index it reads in each input.
    let maps: Vec<Vec<usize>> = ins
        .iter()
        .map(|t| {
            let d: Vec<usize> = t.dims.iter().map(|&x| x as usize).collect();
            let st = strides(&d);
            let lead = out_dims.len() - d.len();
            outs.iter()
                .map(|o| {
                    (0..d.len())
                        .map(|k| if d[k] == 1 { 0 } else { o[lead + k] * st[k] })
                        .sum()
                })
                .collect()
        })
        .collect();
    let targets = wave(outs.len(), 8);
    let mut loss = 0.0;
    let mut grads: Vec<Vec<f64>> = ins.iter().map(|t| vec![0.0; t.f32s().len()]).collect();
    for o in 0..outs.len() {
        let vals: Vec<f32> = ins.iter().zip(&maps).map(|(t, m)| t.f32s()[m[o]]).collect();
        let y = vals.iter().copied().reduce(pick).unwrap();
        let diff = y as f64 - targets[o] as f64;
        loss += diff * diff / n;
        let gy = 2.0 * diff / n;
        let ties = vals.iter().filter(|&&v| v == y).count() as f64;
        for (i, &v) in vals.iter().enumerate() {
            if v == y {
                grads[i][maps[i][o]] += gy / ties;
            }
        }
    }
    let names: Vec<&str> = ins.iter().map(|t| t.name.as_str()).collect();
    let m = Tiny {
        opset,
        inits: ins[data..].to_vec(),
        inputs: ins[..data].to_vec(),
        nodes: vec![node(op, &names, "y", vec![])],
        output: ("y".into(), out_dims.iter().map(|&d| d as i64).collect()),
    };
    let want: Vec<(&str, Vec<f64>)> = names[data..]
        .iter()
        .copied()
        .zip(grads.into_iter().skip(data))
        .collect();
    check_exact(what, &m, &names[data..], &targets, loss, &want);
}

#[test]
fn max_of_three_inputs_with_broadcasting() {
    // [2, 3], [3] and [2, 1] broadcast together. Ties: all three at [0, 0],
    // a and c at [1, 0].
    let a = f32s("a", &[2, 3], &[0.5, -1.0, 2.0, 1.5, 0.25, -0.5]);
    let b = f32s("b", &[3], &[0.5, 0.75, -2.0]);
    let c = f32s("c", &[2, 1], &[0.5, 1.5]);
    check_extremum("Max(a, b, c)", "Max", 13, &[a, b, c], 0, &[2, 3]);
    // A fourth input, fed as data, that wins one element.
    let x = f32s("x", &[2, 3], &[-3.0, -1.0, 2.5, -4.0, -3.5, -5.0]);
    let a = f32s("a", &[2, 3], &[0.5, -1.0, 2.0, 1.5, 0.25, -0.5]);
    let b = f32s("b", &[3], &[0.5, 0.75, -2.0]);
    let c = f32s("c", &[2, 1], &[0.5, 1.5]);
    check_extremum("Max(x, a, b, c)", "Max", 17, &[x, a, b, c], 1, &[2, 3]);
}

#[test]
fn min_of_three_inputs_with_a_data_input_in_the_ties() {
    // x is data (needs no gradient) but still takes its share of a tie:
    // with w at [0, 1], with v at [1, 0].
    let x = f32s("x", &[2, 3], &[1.0, -0.5, 0.25, 0.0, 2.0, -1.0]);
    let w = f32s("w", &[3], &[0.5, -0.5, 0.75]);
    let v = f32s("v", &[1], &[0.0]);
    check_extremum("Min(x, w, v)", "Min", 17, &[x, w, v], 1, &[2, 3]);
}

#[test]
fn max_of_two_inputs_splits_ties() {
    let x = f32s("x", &[4], &[1.0, 2.0, -1.0, 0.5]);
    let w = f32s("w", &[4], &[1.0, 1.0, -1.0, 0.75]);
    check_extremum("Max(x, w)", "Max", 13, &[x, w], 1, &[4]);
    // Rank 3 against a rank-1 parameter: the gradient is summed over the
    // broadcast axes.
    let x = f32s("x", &[2, 2, 3], &wave(12, 9));
    let w = f32s("w", &[3], &[0.0, -0.25, 0.5]);
    check_extremum("Min(x[2,2,3], w[3])", "Min", 13, &[x, w], 1, &[2, 2, 3]);
}
