//! Does rewiring help this model train? Paired training runs over seeds.
//!
//! For each seed, every arm (the original initialization, the rewired one,
//! and any variants) trains under identical conditions: the same data
//! order, augmentation, dropout masks, optimizer and schedule. Only the
//! initial weights differ, so the difference in each metric is paired by
//! seed and tested as such.
//!
//! The parts: [`options`] (what runs), `data` (the samples and batches),
//! `arms` (each arm's starting values), `run` (one training run), `store`
//! (the output folder, resuming), `summary` and `stats` (the statistics),
//! `plot` and `output` (the files).

mod arms;
pub(crate) mod data;
mod error;
mod finish;
mod merge;
pub mod options;
mod output;
pub(crate) mod plot;
mod record;
mod run;
pub mod shard;
pub(crate) mod stats;
mod store;
mod summary;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use data::DataError;
pub use error::CompareError;
pub use finish::RunPlan;
pub use merge::merge;
pub use options::{Arm, CompareOptions, DataSettings, OptimizerKind, Recipe, Schedule};
pub use output::{CompareReport, DataInfo, Hardware, Missing, REPORT_VERSION};
pub use plot::PlotError;
pub use record::{EpochRecord, InitRecord, RunRecord, RunStatus, StepRecord};
pub use shard::{Shard, ShardSpec};
pub use stats::{Describe, PairedTest, WilcoxonMethod};
pub use summary::{Comparison, MetricSummary, Summary};

use crate::backend::BackendOptions;
use crate::train::{build_eval_graph, TrainGraphOptions};

/// What a comparison reports as it goes, for progress displays.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The runs to make: `pending` of `runs`, each `steps` steps long.
    Planned {
        /// All (seed, arm) runs.
        runs: usize,
        /// Those without a finished record.
        pending: usize,
        /// Training steps per run.
        steps: usize,
    },
    /// One training step of some run finished.
    Step,
    /// A run finished and was saved.
    Finished(&'a RunRecord),
}

/// Runs (or resumes) a comparison and writes its report into
/// `opts.out`. `command_line` is recorded in the report; `events` hears
/// the progress (from several threads when `opts.jobs > 1`).
pub fn compare(
    opts: &CompareOptions,
    command_line: &[String],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<CompareReport, CompareError> {
    let arms = arm_list(opts)?;
    let r = &opts.recipe;
    if opts.seeds.is_empty()
        || r.batch == 0
        || r.epochs == 0
        || opts.jobs == 0
        || opts.log_every == 0
    {
        return Err(CompareError::Options(
            "seeds, --batch, --epochs, --jobs and --log-every must be at least 1".into(),
        ));
    }
    let original = std::fs::read(&opts.model).map_err(|e| CompareError::io(&opts.model, e))?;
    let (model, relaxed) = batch_axis_free(&original)?;
    let graph_opts = TrainGraphOptions {
        batch_size: Some(r.batch as i64),
        target: run::graph_target(opts.backend),
        ..Default::default()
    };
    let eval = build_eval_graph(&model, &graph_opts).map_err(|e| match relaxed {
        Some(n) => CompareError::Unsupported(format!(
            "the model was exported for batches of {n} only, and its graph does not take other batch sizes ({e}); export it with a dynamic batch axis (torch.onnx.export's dynamic_axes), or use --batch {n}"
        )),
        None => e.into(),
    })?;
    let (input, sample_shape, classes) = model_io(&eval, r.batch)?;
    let splits = data::load(
        &opts.data.spec.parse()?,
        &data::DataOptions {
            seed: opts.data.split_seed,
            test_fraction: opts.data.test_fraction,
            sample_shape: sample_shape.clone(),
            classes,
            synthetic_size: opts.data.synthetic_size,
            limit: opts.data.limit,
        },
    )?;
    let (mut train, mut test) = (splits.train, splits.test);
    if r.normalize {
        let norm = data::Normalizer::fit(&train);
        norm.apply(&mut train)?;
        norm.apply(&mut test)?;
    }
    if test.is_empty() {
        return Err(CompareError::Options(
            "the test split is empty: give data with a test split or a --test-fraction above 0"
                .into(),
        ));
    }
    if train.len() < r.batch {
        return Err(CompareError::Options(format!(
            "the training split has {} samples, fewer than one batch of {}",
            train.len(),
            r.batch
        )));
    }
    let data_info = DataInfo {
        description: splits.description,
        train: train.len(),
        test: test.len(),
        sample_shape: sample_shape.clone(),
        classes,
        test_held_out: splits.test_held_out,
        class_names: splits.class_names,
    };
    let identity = identity(opts, &original)?;
    let store = store::Store::open(&opts.out, &identity)?;
    let shared = run::Shared {
        model,
        eval,
        input,
        sample_shape,
        train: Arc::new(train),
        test: Arc::new(test),
        recipe: r.clone(),
        backend: opts.backend,
        backend_opts: BackendOptions {
            ort_lib: opts.ort_lib.clone(),
            ..Default::default()
        },
        log_every: opts.log_every,
        config: store.hash().to_string(),
    };
    let source = arms::Source::open(&opts.model)?;
    let mut pending = vec![];
    let all = opts
        .seeds
        .iter()
        .flat_map(|&s| arms.iter().map(move |a| (s, a)));
    for (position, (seed, arm)) in all.enumerate() {
        if opts.shard.is_some_and(|s| !s.owns(position)) {
            continue;
        }
        if store.load(&arm.name(), seed)?.is_none() {
            pending.push((seed, arm));
        }
    }
    let in_slice = opts.seeds.len() * arms.len();
    let in_slice = match opts.shard {
        Some(s) => (0..in_slice).filter(|&p| s.owns(p)).count(),
        None => in_slice,
    };
    events(Event::Planned {
        runs: in_slice,
        pending: pending.len(),
        steps: shared.total_steps(),
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = opts.jobs.min(pending.len().max(1));
    let threads = opts.threads.unwrap_or((cores / jobs).max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<CompareError>> = Mutex::new(None);
    let tick = || events(Event::Step);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(seed, arm)) = pending.get(i) else {
                        break;
                    };
                    let result = one_run(&shared, &source, &store, opts, seed, arm, threads, &tick);
                    match result {
                        Ok(rec) => events(Event::Finished(&rec)),
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            first_error
                                .lock()
                                .expect("no panics hold it")
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("no panics hold it") {
        return Err(e);
    }
    let strengths = match arms.iter().find(|a| matches!(a, Arm::Rewired { .. })) {
        Some(a) => source
            .init(a, opts.seeds[0])?
            .strengths
            .map(|(b, af)| (a.name(), b, af)),
        None => None,
    };
    let plan = finish::RunPlan {
        seeds: opts.seeds.clone(),
        arms,
        model: opts.model.clone(),
        backend: opts.backend.name().to_string(),
        data: data_info,
    };
    finish::finish(
        &store,
        &plan,
        command_line,
        identity,
        strengths,
        opts.shard.is_none(),
    )
}

/// The arms with the original first (added when not named).
fn arm_list(opts: &CompareOptions) -> Result<Vec<Arm>, CompareError> {
    let mut arms = vec![Arm::Original];
    for a in &opts.arms {
        if arms.iter().any(|b| b.name() == a.name()) {
            continue;
        }
        arms.push(a.clone());
    }
    if arms.len() < 2 {
        return Err(CompareError::Options(
            "nothing to compare: name an arm besides original (--arms pa) or --rewired FILE".into(),
        ));
    }
    Ok(arms)
}

/// The model's data input, one sample's dimensions and the class count.
fn model_io(
    eval: &crate::train::EvalGraph,
    batch: usize,
) -> Result<(String, Vec<usize>, usize), CompareError> {
    let [input] = eval.data_inputs.as_slice() else {
        return Err(CompareError::Unsupported(format!(
            "compare trains models with one data input; this one has {}",
            eval.data_inputs.len()
        )));
    };
    if input.elem_type != crate::onnx::DataType::Float {
        return Err(CompareError::Unsupported(format!(
            "input `{}` is {}, compare feeds float32 samples",
            input.name, input.elem_type
        )));
    }
    if input.shape.first() != Some(&(batch as i64)) {
        return Err(CompareError::Unsupported(format!(
            "input `{}` has the fixed shape {:?}, so it cannot take batches of {batch}; export it with a dynamic batch axis (torch.onnx.export's dynamic_axes)",
            input.name, input.shape
        )));
    }
    let classes = match eval.output_shape.as_slice() {
        [n, k] if *n == batch as i64 && *k >= 2 => *k as usize,
        other => {
            return Err(CompareError::Unsupported(format!(
                "output `{}` has the shape {other:?}; compare trains classifiers with [batch, classes] logits",
                eval.output
            )))
        }
    };
    let sample = input.shape[1..].iter().map(|&d| d as usize).collect();
    Ok((input.name.clone(), sample, classes))
}

/// The model with the first dimension of its inputs and outputs made
/// symbolic, when an exporter fixed it (`torch.onnx.export` without
/// `dynamic_axes` writes the example's batch size), so training can choose
/// its own batch; with the fixed size it had, if it had one. Only the
/// graphs are built from this copy: the arms' values and saved models come
/// from the file itself.
fn batch_axis_free(model: &[u8]) -> Result<(Vec<u8>, Option<i64>), CompareError> {
    use crate::onnx::pb::{tensor_shape_proto::dimension::Value, type_proto, ModelProto};
    use prost::Message;
    let mut m = ModelProto::decode(model).map_err(crate::train::TrainError::from)?;
    let Some(g) = m.graph.as_mut() else {
        return Ok((model.to_vec(), None));
    };
    let inits: std::collections::HashSet<String> =
        g.initializer.iter().map(|t| t.name.clone()).collect();
    let mut fixed = None;
    for v in g
        .input
        .iter_mut()
        .filter(|v| !inits.contains(&v.name))
        .chain(g.output.iter_mut())
    {
        let dim0 = v
            .r#type
            .as_mut()
            .and_then(|t| match t.value.as_mut() {
                Some(type_proto::Value::TensorType(t)) => t.shape.as_mut(),
                _ => None,
            })
            .and_then(|s| s.dim.first_mut());
        if let Some(d) = dim0 {
            if let Some(Value::DimValue(n)) = d.value {
                fixed.get_or_insert(n);
                d.value = Some(Value::DimParam("batch".into()));
            }
        }
    }
    match fixed {
        Some(n) => Ok((m.encode_to_vec(), Some(n))),
        None => Ok((model.to_vec(), None)),
    }
}

/// The settings that determine a run's numbers, for `config.json`.
fn identity(opts: &CompareOptions, model: &[u8]) -> Result<serde_json::Value, CompareError> {
    let mut files = serde_json::Map::new();
    for a in &opts.arms {
        if let Arm::File { path } = a {
            let bytes = std::fs::read(path).map_err(|e| CompareError::io(path, e))?;
            files.insert(
                "rewired_sha256".into(),
                crate::digest::sha256_hex(&bytes).into(),
            );
        }
    }
    let mut v = serde_json::json!({
        "pa_onnx_version": env!("CARGO_PKG_VERSION"),
        "model_sha256": crate::digest::sha256_hex(model),
        "data": opts.data,
        "recipe": opts.recipe,
        "backend": opts.backend.name(),
        "log_every": opts.log_every,
    });
    v.as_object_mut().expect("an object").extend(files);
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    shared: &run::Shared,
    source: &arms::Source,
    store: &store::Store,
    opts: &CompareOptions,
    seed: u64,
    arm: &Arm,
    threads: usize,
    tick: &(dyn Fn() + Sync),
) -> Result<RunRecord, CompareError> {
    let init = source.init(arm, seed)?;
    let outcome = run::train_run(shared, seed, &arm.name(), &init, threads, tick)?;
    if opts.save_models {
        let path = store
            .dir()
            .join("models")
            .join(format!("{}-seed{seed}.onnx", arm.name()));
        source.save(&path, &outcome.tensors)?;
    }
    store.save(&outcome.record)?;
    Ok(outcome.record)
}
