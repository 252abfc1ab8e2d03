//! Speed of one training step (batch 64) on the five reference models.
//!
//! `step` is what [`Trainer::step`] does: feed batch, parameters and running
//! statistics to ONNX Runtime's CPU provider, run loss + gradients, update
//! with SGD-momentum in Rust. `device_step` is [`DeviceTrainer::step`]:
//! parameters, gradients and optimizer state stay in ONNX Runtime, the
//! update is appended to the training graph, only the batch goes in
//! (ORT-training's way).
//! The models are the `bench.onnx` exports next to the gradient fixtures
//! (same weights as `model.onnx`, batch 64), built for the ONNX Runtime
//! graph target. The forward pass alone is timed too, as the yardstick a
//! gradient graph is usually judged by (a backward pass costs about twice
//! the forward).
//!
//! Run: `cargo bench --bench train_step` (needs ONNX Runtime; see the
//! backend module for how it is found). Without it the benchmark prints
//! SKIPPED and measures nothing. `PA_BENCH_THREADS=1` pins ONNX Runtime to
//! one intra-op thread, to compare with `T1=1 scripts/ort_training_bench.py`
//! on equal terms. `PA_BENCH_BACKEND=ort-cuda` runs all three on the CUDA
//! execution provider instead (build with `--features cuda`); where CUDA
//! cannot run, every case prints SKIPPED.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use pa_onnx::backend::{self, BackendKind, BackendOptions, HostTensor, TensorData};
use pa_onnx::train::{
    build_training_graph, DeviceOptimizer, DeviceTrainer, GraphTarget, Sgd, TrainGraphOptions,
    Trainer,
};
use rand::{Rng, SeedableRng};

const CASES: [&str; 5] = ["mlp", "cnn_bn", "resnet", "mobilenet", "transformer"];

fn train_step(c: &mut Criterion) {
    let kind: BackendKind = std::env::var("PA_BENCH_BACKEND")
        .map(|b| {
            b.parse()
                .expect("PA_BENCH_BACKEND: tract, ort-cpu or ort-cuda")
        })
        .unwrap_or(BackendKind::OrtCpu);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grads");
    // CPU figures keep the group name they have always had.
    let group = match kind {
        BackendKind::OrtCpu => "train_step".to_string(),
        other => format!("train_step_{other}"),
    };
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for case in CASES {
        let path = root.join(case).join("bench.onnx");
        let model = std::fs::read(&path).unwrap();
        let opts = TrainGraphOptions {
            target: GraphTarget::OnnxRuntime,
            ..TrainGraphOptions::default()
        };
        let graph = build_training_graph(&model, &opts).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let x = &graph.data_inputs[0];
        let shape: Vec<usize> = x.shape.iter().map(|&d| d as usize).collect();
        let n: usize = shape.iter().product();
        let input = HostTensor::new(
            shape,
            TensorData::F32((0..n).map(|_| rng.random::<f32>() - 0.5).collect()),
        )
        .unwrap();
        let batch = graph.data_inputs[1].shape[0] as usize;
        let labels = HostTensor::new(
            vec![batch],
            TensorData::I64((0..batch as i64).map(|i| i % 5).collect()),
        )
        .unwrap();
        let inputs = vec![(x.name.clone(), input.clone())];

        let opts = BackendOptions {
            intra_threads: std::env::var("PA_BENCH_THREADS")
                .ok()
                .and_then(|t| t.parse().ok()),
            ..BackendOptions::default()
        };
        // The forward export keeps BatchNormalization in training mode,
        // which ONNX Runtime's CUDA kernel refuses from opset 14 on; the
        // training graphs do not have that node, so only the yardstick is
        // skipped then.
        match backend::open(kind, &path, &opts) {
            Ok(mut forward) => {
                g.bench_function(format!("{case}/forward"), |b| {
                    b.iter(|| forward.run(&inputs).unwrap())
                });
            }
            Err(e) if e.is_skippable() => {
                eprintln!("SKIPPED train_step/{case}/forward on {kind}: {e}");
            }
            Err(e) => panic!("{case} on {kind}: {e}"),
        }
        // The device trainer keeps parameters and optimizer state in the
        // runtime and updates them inside the training run, as ORT-training
        // does: the step to compare with scripts/ort_training_bench.py.
        let sgd = DeviceOptimizer::Sgd {
            lr: 1e-3,
            momentum: 0.9,
            weight_decay: 0.0,
        };
        let mut device = match DeviceTrainer::new(graph.clone(), kind, &opts, sgd) {
            Ok(t) => t,
            Err(pa_onnx::train::TrainError::Backend(e)) if e.is_skippable() => {
                eprintln!("SKIPPED train_step/{case} on {kind}: {e}");
                continue;
            }
            Err(e) => panic!("{case} on {kind}: {e}"),
        };
        g.bench_function(format!("{case}/device_step"), |b| {
            b.iter(|| device.step(&inputs, labels.clone()).unwrap())
        });
        let mut trainer =
            Trainer::new(graph, kind, &opts, Box::new(Sgd::new(1e-3, 0.9, 0.0))).unwrap();
        g.bench_function(format!("{case}/step"), |b| {
            b.iter(|| trainer.step(&inputs, labels.clone()).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
