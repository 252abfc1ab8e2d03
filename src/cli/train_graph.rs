//! `pa-onnx train-graph`: write a model's training graph (loss and
//! gradients in default-domain ONNX operators) as a standalone file.

use std::path::PathBuf;

use pa_onnx::train::{build_training_graph, GraphTarget, LossKind, TrainGraphOptions};
use pa_onnx::Error;

use super::{Printer, Status};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LossArg {
    /// Softmax cross-entropy on the logits, with int64 `labels` [N].
    Ce,
    /// Mean squared error against a float `targets` input.
    Mse,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TargetArg {
    /// Loads in ONNX Runtime and in tract.
    Portable,
    /// ONNX Runtime only, a few percent faster there (BatchNormalization
    /// fed the batch statistics, which tract refuses).
    Onnxruntime,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The forward model.
    model: PathBuf,
    /// Where to write the training graph.
    output: PathBuf,
    #[arg(long, value_enum, default_value = "ce")]
    loss: LossArg,
    /// Value of every symbolic input dimension (the batch size).
    #[arg(long, value_name = "N")]
    batch_size: Option<i64>,
    /// Keep Dropout as identity instead of training mode.
    #[arg(long)]
    no_dropout: bool,
    /// The runtimes the graph must load in.
    #[arg(long, value_enum, default_value = "portable")]
    target: TargetArg,
    /// Replace OUTPUT if it is the input model.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args, p: &Printer) -> super::Result<Status> {
    let bytes = std::fs::read(&args.model).map_err(|e| Error::Io {
        action: "cannot read",
        path: args.model.clone(),
        source: e,
    })?;
    if !args.force && pa_onnx::fs::same_file(&args.model, &args.output) {
        return Err(Error::WouldOverwrite { path: args.output }.into());
    }
    let opts = TrainGraphOptions {
        loss: match args.loss {
            LossArg::Ce => LossKind::CrossEntropy,
            LossArg::Mse => LossKind::MeanSquaredError,
        },
        batch_size: args.batch_size,
        dropout: !args.no_dropout,
        target: match args.target {
            TargetArg::Portable => GraphTarget::Portable,
            TargetArg::Onnxruntime => GraphTarget::OnnxRuntime,
        },
        ..Default::default()
    };
    let graph = build_training_graph(&bytes, &opts)?;
    super::warn_stale(p, super::parent_dir(&args.output));
    super::write_atomically(&args.output, &graph.model)?;
    p.out(&format!(
        "wrote {}: {} trainable tensors, {} running statistics, loss `{}`",
        args.output.display(),
        graph.params.len(),
        graph.running_stats.len(),
        graph.loss
    ));
    let inputs: Vec<&str> = graph.data_inputs.iter().map(|d| d.name.as_str()).collect();
    p.out(&format!(
        "  inputs: {}, then every trainable tensor",
        inputs.join(", ")
    ));
    p.out("  outputs: `loss`, `<name>_grad` per trainable tensor, updated running statistics");
    Ok(Status::Ok)
}
