//! Rewiring speed: single matrices of the shapes the paper's reference was
//! timed on, and a whole ResNet-18-sized model file read, rewired and
//! written.
//!
//! Run: `cargo bench --bench rewire --no-default-features` (the inference
//! backends are not needed, and building them takes most of the time).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use pa_onnx::pipeline::{rewire_file, RewireOptions};
use pa_onnx::rewire::{rewire_f32_le, Layout, Options, Spares};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

fn kaiming(rows: usize, cols: usize) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let d = Normal::new(0.0, (2.0 / cols as f64).sqrt()).unwrap();
    (0..rows * cols)
        .map(|_| d.sample(&mut rng) as f32)
        .collect()
}

fn matrices(c: &mut Criterion) {
    let mut g = c.benchmark_group("matrix");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    for (r, k) in [(64usize, 784usize), (512, 512), (512, 4608), (1000, 2048)] {
        let vals: Vec<u8> = kaiming(r, k).iter().flat_map(|v| v.to_le_bytes()).collect();
        // What the tool does per f32 tensor: keys from the payload's bytes,
        // both passes, the strengths before and after, bits back (in the
        // keys' own buffer). Each iteration starts with fresh buffers, as
        // the first tensor of a run does.
        g.bench_function(format!("{r}x{k}"), |b| {
            b.iter(|| {
                let (opts, spares) = (Options::default(), Spares::default());
                rewire_f32_le(&vals, r, k, Layout::Rows, "w", &opts, &spares).expect("finite")
            })
        });
    }
    g.finish();
}

fn whole_model(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("resnet18.onnx");
    std::fs::write(&input, pa_onnx::synth::resnet18()).unwrap();
    let output = dir.path().join("out.onnx");
    let mut g = c.benchmark_group("model");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    // A run's output is usually a new file. Replacing one costs the file
    // system more: on ext4, renaming over a file flushes the new one's
    // delayed allocations and frees the old one's blocks.
    g.bench_function("resnet18 read+rewire+write, new file", |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_file(&output);
            },
            |()| rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap(),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("resnet18 read+rewire+write, replacing a file", |b| {
        b.iter(|| rewire_file(&input, Some(&output), &RewireOptions::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, matrices, whole_model);
criterion_main!(benches);
