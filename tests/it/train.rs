//! Training graphs checked against PyTorch autograd, on every backend.
//!
//! The fixtures in `tests/fixtures/grads/` were made by
//! `scripts/ref_grads.py`: a forward model exported from PyTorch, one batch,
//! and the float64 autograd gradients of its mean cross-entropy. pa-onnx
//! builds its own gradient graph from the ONNX model alone, so agreement
//! here means each gradient rule matches the operator's definition. The
//! same graphs run on tract and on ONNX Runtime's CPU and CUDA providers; a
//! missing ONNX Runtime or GPU prints SKIPPED rather than passing silently.

use std::path::{Path, PathBuf};

use pa_onnx::backend::{self, BackendKind, BackendOptions, HostTensor, TensorData};
use pa_onnx::train::{build_training_graph, GraphTarget, TrainGraphOptions, TrainingGraph};

const TOLERANCE: f64 = 1e-4;

fn fixture_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/grads")
        .join(case)
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn read_i64(path: &Path) -> Vec<i64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn shape_of(v: &serde_json::Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

/// One fixture: the training graph plus the feeds and reference values.
struct Case {
    graph: TrainingGraph,
    feeds: Vec<(String, HostTensor)>,
    loss: f64,
    grads: Vec<(String, Vec<f32>)>,
}

fn load_case(case: &str, target: GraphTarget) -> Case {
    let dir = fixture_dir(case);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let model = std::fs::read(dir.join("model.onnx")).unwrap();
    let opts = TrainGraphOptions {
        target,
        ..TrainGraphOptions::default()
    };
    let graph = build_training_graph(&model, &opts)
        .unwrap_or_else(|e| panic!("{case}: building the training graph failed: {e}"));
    let mut feeds = vec![];
    for input in index["inputs"].as_array().unwrap() {
        let data = read_f32(&dir.join(input["file"].as_str().unwrap()));
        let t = HostTensor::new(shape_of(input), TensorData::F32(data)).unwrap();
        feeds.push((input["name"].as_str().unwrap().to_string(), t));
    }
    let labels = &index["labels"];
    let data = read_i64(&dir.join(labels["file"].as_str().unwrap()));
    feeds.push((
        graph.labels.clone(),
        HostTensor::new(shape_of(labels), TensorData::I64(data)).unwrap(),
    ));
    for p in &graph.params {
        let shape = p.shape.iter().map(|&d| d as usize).collect();
        feeds.push((
            p.name.clone(),
            HostTensor::new(shape, TensorData::F32(p.init.clone())).unwrap(),
        ));
    }
    for s in &graph.running_stats {
        let shape = s.shape.iter().map(|&d| d as usize).collect();
        feeds.push((
            s.input.clone(),
            HostTensor::new(shape, TensorData::F32(s.init.clone())).unwrap(),
        ));
    }
    let grads = index["grads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["param"].as_str().unwrap().to_string(),
                read_f32(&dir.join(g["file"].as_str().unwrap())),
            )
        })
        .collect();
    Case {
        graph,
        feeds,
        loss: index["loss"].as_f64().unwrap(),
        grads,
    }
}

/// max |a - b| / max(max |b|, floor): the error relative to the tensor's
/// scale, so entries that happen to be near zero do not dominate. `floor`
/// (a thousandth of the model's largest gradient) keeps a tensor whose
/// gradients are all small from being judged on its own tiny scale;
/// gradients that are zero in exact arithmetic are checked apart, in
/// `check_target`.
fn rel_err(got: &[f64], want: &[f32], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want
        .iter()
        .fold(0f64, |m, &v| m.max((v as f64).abs()))
        .max(floor);
    got.iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a - b as f64).abs()))
        / scale
}

/// Runs the case on one backend, with every graph target the backend
/// loads (ONNX Runtime: the portable graph and its own); None when the
/// backend is unavailable.
fn check(case_name: &str, kind: BackendKind) -> Option<f64> {
    let _cuda = crate::fixtures::cuda_lock(kind);
    let targets: &[GraphTarget] = match kind {
        BackendKind::Tract => &[GraphTarget::Portable],
        _ => &[GraphTarget::Portable, GraphTarget::OnnxRuntime],
    };
    let mut worst = None;
    for &target in targets {
        let err = check_target(case_name, kind, target)?;
        worst = Some(err.max(worst.unwrap_or(0.0)));
    }
    worst
}

fn check_target(case_name: &str, kind: BackendKind, target: GraphTarget) -> Option<f64> {
    let case = load_case(case_name, target);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.onnx");
    std::fs::write(&path, &case.graph.model).unwrap();
    let mut session = match backend::open(kind, &path, &BackendOptions::default()) {
        Ok(s) => s,
        Err(e) if matches!(e, backend::BackendError::Unavailable { .. }) => {
            eprintln!("SKIPPED {case_name} on {kind}: {e}");
            return None;
        }
        Err(e) => panic!("{case_name} on {kind}: {e}"),
    };
    let outputs = session
        .run(&case.feeds)
        .unwrap_or_else(|e| panic!("{case_name} on {kind}: {e}"));
    let get = |name: &str| {
        outputs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no output {name}"))
            .1
            .to_f64()
    };
    let loss = get(&case.graph.loss)[0];
    assert!(
        ((loss - case.loss) / case.loss).abs() < TOLERANCE,
        "{case_name} on {kind}: loss {loss} vs reference {}",
        case.loss
    );
    let mut worst = 0f64;
    let floor = 1e-3
        * case
            .grads
            .iter()
            .flat_map(|(_, g)| g)
            .fold(0f64, |m, &v| m.max((v as f64).abs()));
    assert_eq!(
        case.grads.len(),
        case.graph.params.len(),
        "{case_name}: trainable tensors differ from PyTorch's parameters"
    );
    for (param, want) in &case.grads {
        let p = case
            .graph
            .params
            .iter()
            .find(|p| &p.name == param)
            .unwrap_or_else(|| panic!("{param} not trainable"));
        let got = get(&p.grad);
        if want.iter().all(|&v| (v as f64).abs() <= 1e-6 * floor) {
            // Zero in exact arithmetic (a bias followed by a training-mode
            // BatchNorm, which subtracts it again): both sides are rounding
            // noise, PyTorch's around 1e-16 and ours around 1e-7 of the
            // model's gradient scale, whose order depends on the kernels the
            // runtime picks for this CPU. Noise it must stay.
            let noise = got.iter().fold(0f64, |m, &v| m.max(v.abs())) / (floor * 1e3);
            assert!(
                noise <= 1e-5,
                "{case_name} on {kind}: gradient of {param} should be zero, is {noise:.2e} of the scale"
            );
            continue;
        }
        let err = rel_err(&got, want, floor);
        assert!(
            err <= TOLERANCE,
            "{case_name} on {kind}: gradient of {param} has relative error {err:.2e}"
        );
        worst = worst.max(err);
    }
    eprintln!(
        "{case_name} on {kind} ({target:?} graph): loss {loss:.6}, max relative gradient error {worst:.2e}"
    );
    Some(worst)
}

macro_rules! grad_tests {
    ($($name:ident: $case:literal,)*) => {
        mod tract_grads {
            $(#[test] fn $name() { super::check($case, super::BackendKind::Tract).expect("tract is built in"); })*
        }
        mod ort_cpu_grads {
            $(#[test] fn $name() { super::check($case, super::BackendKind::OrtCpu); })*
        }
        // Without a GPU or the `cuda` feature these print SKIPPED.
        mod ort_cuda_grads {
            $(#[test] fn $name() { super::check($case, super::BackendKind::OrtCuda); })*
        }
    };
}

grad_tests! {
    mlp: "mlp",
    cnn_bn: "cnn_bn",
    resnet: "resnet",
    mobilenet: "mobilenet",
    transformer: "transformer",
    ops: "ops",
}

#[test]
fn unsupported_operator_is_named() {
    use pa_onnx::onnx::pb;
    use prost::Message;
    // A Hardmax between the weight and the loss has no gradient rule.
    let model = std::fs::read(fixture_dir("mlp").join("model.onnx")).unwrap();
    let mut m = pb::ModelProto::decode(model.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let relu = g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
    relu.op_type = "Hardmax".into();
    relu.name = "the_hardmax".into();
    let err = build_training_graph(&m.encode_to_vec(), &TrainGraphOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("the_hardmax") && msg.contains("Hardmax"),
        "{msg}"
    );
}

#[test]
fn a_symbolic_dimension_without_a_batch_size_is_refused_with_a_hint() {
    use pa_onnx::onnx::pb;
    use pb::tensor_shape_proto::dimension::Value;
    use prost::Message;
    let mut m = pb::ModelProto::decode(synthetic_mlp(4, 3, 5, 2, false, true).as_slice()).unwrap();
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_mut().unwrap().value.as_mut()
    else {
        panic!("the input is a tensor");
    };
    t.shape.as_mut().unwrap().dim[0].value = Some(Value::DimParam("batch".into()));
    let err = build_training_graph(&m.encode_to_vec(), &TrainGraphOptions::default()).unwrap_err();
    assert!(
        matches!(&err, pa_onnx::train::TrainError::DynamicInput { input, dim } if input == "x" && dim == "batch"),
        "{err}"
    );
    assert!(!err.to_string().contains("hint"), "{err}");
    assert!(err.hint().is_some_and(|h| h.contains("batch size")));
}

#[test]
fn an_opset_before_13_is_refused_with_a_hint() {
    use pa_onnx::onnx::pb;
    use prost::Message;
    let mut m = pb::ModelProto::decode(synthetic_mlp(4, 3, 5, 2, false, true).as_slice()).unwrap();
    m.opset_import[0].version = 12;
    let err = build_training_graph(&m.encode_to_vec(), &TrainGraphOptions::default()).unwrap_err();
    assert!(err.to_string().contains("opset 12"), "{err}");
    assert!(!err.to_string().contains("hint"), "{err}");
    assert!(err.hint().is_some_and(|h| h.contains("version_converter")));
}

/// A small Gemm-BatchNorm-Relu-Gemm classifier, written with the protobuf
/// types directly so the training loop test needs no fixture file. With
/// `bias1` false the first Gemm has no bias: one followed by a
/// training-mode BatchNorm has a zero gradient up to rounding.
fn synthetic_mlp(
    batch: i64,
    features: i64,
    hidden: i64,
    classes: i64,
    dropout: bool,
    bias1: bool,
) -> Vec<u8> {
    use pa_onnx::onnx::{pb, DataType};
    use prost::Message;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut tensor = |name: &str, dims: &[i64], scale: f32, offset: f32| pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float.code(),
        float_data: (0..dims.iter().product::<i64>())
            .map(|_| offset + scale * (rng.random::<f32>() - 0.5))
            .collect(),
        ..Default::default()
    };
    let inits = vec![
        tensor(
            "w1",
            &[hidden, features],
            2.0 / (features as f32).sqrt(),
            0.0,
        ),
        tensor("b1", &[hidden], 0.1, 0.0),
        tensor("gamma", &[hidden], 0.2, 1.0),
        tensor("beta", &[hidden], 0.2, 0.0),
        tensor("mean", &[hidden], 0.0, 0.0),
        tensor("var", &[hidden], 0.0, 1.0),
        tensor("w2", &[classes, hidden], 2.0 / (hidden as f32).sqrt(), 0.0),
        tensor("b2", &[classes], 0.1, 0.0),
    ];
    let node = |op: &str, ins: &[&str], out: &str| pb::NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: out.into(),
        op_type: op.into(),
        attribute: if op == "Gemm" {
            vec![pb::AttributeProto {
                name: "transB".into(),
                r#type: pb::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            }]
        } else {
            vec![]
        },
        ..Default::default()
    };
    let vi = |name: &str, dims: &[i64]| crate::fixtures::pb_value_info(name, DataType::Float, dims);
    let mut nodes = vec![
        node("Gemm", &["x", "w1", "b1"], "h"),
        node(
            "BatchNormalization",
            &["h", "gamma", "beta", "mean", "var"],
            "hn",
        ),
        node("Relu", &["hn"], "a"),
        node("Gemm", &["a", "w2", "b2"], "logits"),
    ];
    let mut inits = inits;
    if !bias1 {
        inits.retain(|t| t.name != "b1");
        nodes[0].input.truncate(2);
    }
    if dropout {
        nodes.insert(3, node("Dropout", &["a", "ratio"], "a_drop"));
        nodes[4].input[0] = "a_drop".into();
        inits.push(pb::TensorProto {
            name: "ratio".into(),
            data_type: DataType::Float.code(),
            float_data: vec![0.2],
            ..Default::default()
        });
    }
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            name: "synthetic".into(),
            node: nodes,
            initializer: inits,
            input: vec![vi("x", &[batch, features])],
            output: vec![vi("logits", &[batch, classes])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Gaussian blobs around one random centre per class: learnable, not trivial.
fn blobs(batch: usize, features: usize, classes: usize) -> (HostTensor, HostTensor) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let centres: Vec<Vec<f32>> = (0..classes)
        .map(|_| {
            (0..features)
                .map(|_| rng.random::<f32>() * 4.0 - 2.0)
                .collect()
        })
        .collect();
    let labels: Vec<i64> = (0..batch).map(|i| (i % classes) as i64).collect();
    let x: Vec<f32> = labels
        .iter()
        .flat_map(|&l| centres[l as usize].clone())
        .map(|c| c + rng.random::<f32>() - 0.5)
        .collect();
    (
        HostTensor::new(vec![batch, features], TensorData::F32(x)).unwrap(),
        HostTensor::new(vec![batch], TensorData::I64(labels)).unwrap(),
    )
}

/// The learnable task of the training tests: the synthetic classifier
/// (batch 64, 8 features, 16 hidden units, 4 classes) as a training graph,
/// and one batch of its blobs.
fn blobs_task(
    dropout: bool,
    bias1: bool,
) -> (TrainingGraph, Vec<(String, HostTensor)>, HostTensor) {
    let (batch, features, hidden, classes) = (64, 8, 16, 4);
    let model = synthetic_mlp(
        batch as i64,
        features as i64,
        hidden as i64,
        classes as i64,
        dropout,
        bias1,
    );
    let graph = build_training_graph(&model, &TrainGraphOptions::default()).unwrap();
    let (x, labels) = blobs(batch, features, classes);
    (graph, vec![("x".to_string(), x)], labels)
}

fn train_50_steps(
    kind: BackendKind,
    optimizer: Box<dyn pa_onnx::train::Optimizer>,
    dropout: bool,
) -> Option<(f32, f32)> {
    let _cuda = crate::fixtures::cuda_lock(kind);
    let (graph, inputs, labels) = blobs_task(dropout, true);
    assert_eq!(graph.running_stats.len(), 2);
    let mut trainer =
        match pa_onnx::train::Trainer::new(graph, kind, &BackendOptions::default(), optimizer) {
            Ok(t) => t,
            Err(pa_onnx::train::TrainError::Backend(e)) if e.is_skippable() => {
                eprintln!("SKIPPED training loop on {kind}: {e}");
                return None;
            }
            Err(e) => panic!("{kind}: {e}"),
        };
    let losses: Vec<f32> = (0..50)
        .map(|_| trainer.step(&inputs, labels.clone()).unwrap())
        .collect();
    let (first, last) = (losses[0], losses[49]);
    eprintln!("{kind}: loss {first:.4} -> {last:.4} over 50 steps");
    assert!(losses.iter().all(|l| l.is_finite()));
    let moved = trainer
        .running_stats()
        .any(|(_, v)| v.iter().any(|&m| m != 0.0 && m != 1.0));
    assert!(moved, "running statistics were not updated");
    Some((first, last))
}

#[test]
fn sgd_momentum_decreases_the_loss() {
    use pa_onnx::train::Sgd;
    for kind in [
        BackendKind::Tract,
        BackendKind::OrtCpu,
        BackendKind::OrtCuda,
    ] {
        if let Some((first, last)) =
            train_50_steps(kind, Box::new(Sgd::new(0.05, 0.9, 1e-4)), false)
        {
            assert!(last < 0.25 * first, "{kind}: loss {first} -> {last}");
        }
    }
}

#[test]
fn adamw_decreases_the_loss() {
    use pa_onnx::train::AdamW;
    for kind in [
        BackendKind::Tract,
        BackendKind::OrtCpu,
        BackendKind::OrtCuda,
    ] {
        if let Some((first, last)) = train_50_steps(kind, Box::new(AdamW::new(0.01, 0.01)), false) {
            assert!(last < 0.25 * first, "{kind}: loss {first} -> {last}");
        }
    }
}

/// Dropout trains with a fresh seeded mask every step, on both backends
/// (it is rewritten with RandomUniform, which tract also runs).
#[test]
fn dropout_trains() {
    use pa_onnx::train::AdamW;
    for kind in [
        BackendKind::Tract,
        BackendKind::OrtCpu,
        BackendKind::OrtCuda,
    ] {
        if let Some((first, last)) = train_50_steps(kind, Box::new(AdamW::new(0.01, 0.0)), true) {
            assert!(last < 0.5 * first, "{kind}: loss {first} -> {last}");
        }
    }
}

/// Writes the training graphs of the bench models to `$PA_TRAIN_DUMP`, for
/// profiling them outside Rust (`cargo test train::dump -- --ignored`).
#[test]
#[ignore]
fn dump_bench_training_graphs() {
    let Ok(out) = std::env::var("PA_TRAIN_DUMP") else {
        return;
    };
    for case in ["mlp", "cnn_bn", "resnet", "mobilenet", "transformer"] {
        let model = std::fs::read(fixture_dir(case).join("bench.onnx")).unwrap();
        let graph = build_training_graph(&model, &TrainGraphOptions::default()).unwrap();
        std::fs::write(Path::new(&out).join(format!("{case}.onnx")), &graph.model).unwrap();
    }
}

/// The device trainer (update as an ONNX graph, values kept in the
/// runtime between runs through I/O binding) takes the same steps as the
/// host trainer, whose update runs in Rust on ORT CPU. On CUDA the same
/// code keeps parameters, gradients and optimizer state in GPU memory;
/// without a GPU (or without the `cuda` feature) that case prints SKIPPED.
#[test]
fn device_trainer_takes_the_same_steps_as_the_host_trainer() {
    device_vs_host(BackendKind::OrtCpu, 1e-5);
    device_vs_host(BackendKind::OrtCuda, 1e-3);
}

fn device_vs_host(kind: BackendKind, tol: f32) {
    let _cuda = crate::fixtures::cuda_lock(kind);
    use pa_onnx::train::{AdamW, DeviceOptimizer, DeviceTrainer, Sgd, Trainer};
    // Without the bias before BatchNorm: its gradient is rounding noise,
    // which AdamW turns into full-size steps, so its value would follow
    // each runtime's rounding (on CUDA it ended 1e-2 away from the host's
    // with every loss equal).
    let (graph, inputs, labels) = blobs_task(false, false);
    let opts = BackendOptions::default();
    let cases: [(DeviceOptimizer, Box<dyn pa_onnx::train::Optimizer>); 2] = [
        (
            DeviceOptimizer::Sgd {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 1e-4,
            },
            Box::new(Sgd::new(0.05, 0.9, 1e-4)),
        ),
        (
            DeviceOptimizer::adamw(0.01, 0.01),
            Box::new(AdamW::new(0.01, 0.01)),
        ),
    ];
    for (dev_opt, host_opt) in cases {
        let mut device = match DeviceTrainer::new(graph.clone(), kind, &opts, dev_opt) {
            Ok(t) => t,
            Err(pa_onnx::train::TrainError::Backend(e)) if e.is_skippable() => {
                eprintln!("SKIPPED device trainer on {kind}: {e}");
                return;
            }
            Err(e) => panic!("{kind}: {e}"),
        };
        let mut host = Trainer::new(graph.clone(), BackendKind::OrtCpu, &opts, host_opt).unwrap();
        let mut losses = Vec::new();
        for step in 0..20 {
            let a = device.step(&inputs, labels.clone()).unwrap();
            let b = host.step(&inputs, labels.clone()).unwrap();
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{kind} {dev_opt:?} step {step}: loss {a} on the device, {b} on the host"
            );
            losses.push(a);
        }
        assert!(
            losses[19] < losses[0],
            "{kind}: the device trainer did not learn"
        );
        let close = |x: f32, y: f32| (x - y).abs() <= 10.0 * tol * y.abs().max(1e-2);
        for ((name, d), (hname, h)) in device.params().unwrap().iter().zip(host.params()) {
            assert_eq!(name, hname);
            for (&x, &y) in d.iter().zip(h) {
                assert!(close(x, y), "{kind} {dev_opt:?} {name}: {x} vs {y}");
            }
        }
        for ((name, d), (_, h)) in device
            .running_stats()
            .unwrap()
            .iter()
            .zip(host.running_stats())
        {
            for (&x, &y) in d.iter().zip(h) {
                assert!(close(x, y), "{kind} {dev_opt:?} {name}: {x} vs {y}");
            }
        }
    }
}

/// The device trainer appends its update under names of its own; a graph
/// that already uses one is refused before anything runs.
#[test]
fn the_device_trainer_refuses_a_graph_using_its_reserved_names() {
    use pa_onnx::onnx::pb;
    use prost::Message;
    let bytes = synthetic_mlp(64, 8, 16, 4, false, true);
    let mut m = pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.node[0].output[0] = "pa_update/h".into();
    g.node[1].input[0] = "pa_update/h".into();
    let graph = build_training_graph(&m.encode_to_vec(), &TrainGraphOptions::default()).unwrap();
    let err = device_trainer_refusal(graph, BackendKind::OrtCpu);
    assert!(err.contains("pa_update/h"), "{err}");
}

/// What `DeviceTrainer::new` says when it refuses `graph` on `kind`.
fn device_trainer_refusal(graph: TrainingGraph, kind: BackendKind) -> String {
    use pa_onnx::train::{DeviceOptimizer, DeviceTrainer};
    let opt = DeviceOptimizer::adamw(0.01, 0.0);
    match DeviceTrainer::new(graph, kind, &BackendOptions::default(), opt) {
        Ok(_) => panic!("DeviceTrainer::new on {kind} accepted the graph"),
        Err(e) => e.to_string(),
    }
}

/// The device trainer keeps values in ONNX Runtime between runs; asked for
/// tract, it says so instead of panicking.
#[test]
fn the_device_trainer_on_tract_is_an_error() {
    let (graph, _, _) = blobs_task(false, true);
    let err = device_trainer_refusal(graph, BackendKind::Tract);
    assert!(err.contains("ONNX Runtime"), "{err}");
}

/// The inference graph fed the model's own tensors gives the model's own
/// outputs, in both forms (BatchNormalization as the operator for ONNX
/// Runtime, spelled out for tract).
#[test]
fn the_eval_graph_fed_the_initial_tensors_is_the_model() {
    use pa_onnx::train::{build_eval_graph, Evaluator};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/compare/small_cnn.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let x: Vec<f32> = (0..4 * 64)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let input = HostTensor::new(vec![4, 1, 8, 8], TensorData::F32(x)).unwrap();
    for (kind, target) in [
        (BackendKind::Tract, GraphTarget::Portable),
        (BackendKind::OrtCpu, GraphTarget::OnnxRuntime),
    ] {
        let opts = TrainGraphOptions {
            batch_size: Some(4),
            target,
            ..Default::default()
        };
        let train = build_training_graph(&bytes, &opts).unwrap();
        let eval = build_eval_graph(&bytes, &opts).unwrap();
        assert_eq!(eval.params.len(), train.params.len());
        assert_eq!(eval.running_stats.len(), train.running_stats.len());
        let mut model = match backend::open(
            kind,
            &path,
            &BackendOptions {
                input_shapes: [("input".to_string(), vec![4, 1, 8, 8])].into(),
                ..Default::default()
            },
        ) {
            Ok(s) => s,
            Err(e) if e.is_skippable() => {
                eprintln!("SKIPPED eval graph on {kind}: {e}");
                continue;
            }
            Err(e) => panic!("{kind}: {e}"),
        };
        let want = model
            .run(&[("input".into(), input.clone())])
            .unwrap()
            .remove(0)
            .1
            .to_f64();
        let mut ev = Evaluator::new(eval, kind, &BackendOptions::default()).unwrap();
        let tensors: Vec<(&str, &[f32])> = train
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.init.as_slice()))
            .chain(
                train
                    .running_stats
                    .iter()
                    .map(|s| (s.input.as_str(), s.init.as_slice())),
            )
            .collect();
        let got = ev.run(&[("input".into(), input.clone())], tensors).unwrap();
        assert_eq!(got.len(), 40);
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{kind}: {g} vs {w}");
        }
    }
}
