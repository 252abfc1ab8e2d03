//! Training from Rust without ONNX Runtime's training API.
//!
//! ORT's training build was discontinued after 1.19.2, so pa-onnx writes the
//! training graph itself: the forward model with its trainable tensors
//! turned into graph inputs, normalization and dropout switched to training
//! behaviour, a loss appended, and the reverse-mode gradient of that loss
//! spelled out in default-domain ONNX operators. Any current ONNX Runtime
//! (CPU or CUDA) or tract can then run one training step as plain inference;
//! the optimizer state stays in Rust ([`optim`], [`Trainer`]).
//!
//! Layout: `ir` is the working graph with static shapes, `ops` the rules
//! of each operator family (shapes, evaluation, gradient) behind one table,
//! `builder` the pass that assembles the training graph from them.

mod builder;
#[cfg(feature = "ort")]
mod device;
mod evaluator;
mod geometry;
mod ir;
mod node;
mod ops;
pub mod optim;
mod proto;
mod trainer;

pub use builder::{build_eval_graph, build_training_graph, EvalGraph};
#[cfg(feature = "ort")]
pub use device::{DeviceOptimizer, DeviceTrainer};
pub use evaluator::Evaluator;
pub use optim::{AdamW, Optimizer, Sgd};
pub use trainer::Trainer;

/// Results of the training builder.
pub(crate) type Result<T, E = TrainError> = std::result::Result<T, E>;

/// Why a training graph could not be built or a step could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The bytes are not an ONNX model.
    #[error("cannot decode the model: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model is valid ONNX but outside what the builder handles.
    #[error("{0}")]
    Model(String),
    /// The model imports a default-domain opset older than 13.
    #[error("the model uses opset {opset}; the training graph needs opset 13 or later")]
    OldOpset {
        /// The opset version the model imports.
        opset: i64,
    },
    /// A graph input has a dimension without a value.
    #[error("input `{input}` has the dynamic dimension `{dim}`")]
    DynamicInput {
        /// The input's name.
        input: String,
        /// The name of the dimension (`?` when it has none).
        dim: String,
    },
    /// An operator on the path from a trainable tensor to the loss has no gradient rule.
    #[error("node `{node}` ({op}): no gradient rule for this operator, and it lies between a trainable tensor and the loss")]
    UnsupportedOp {
        /// The node's name (or a description of an unnamed node).
        node: String,
        /// The operator.
        op: String,
    },
    /// A node the builder understands, with attributes or inputs it cannot handle.
    #[error("node `{node}` ({op}): {msg}")]
    Node {
        /// The node's name (or a description of an unnamed node).
        node: String,
        /// The operator.
        op: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The backend could not load or run the training graph.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// Running the training graph failed outside the backend.
    #[error("running the training graph: {0}")]
    Run(String),
}

impl TrainError {
    /// What the user can do about the error, where one thing helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            TrainError::OldOpset { .. } => Some("convert it with onnx.version_converter".into()),
            TrainError::DynamicInput { .. } => {
                Some("give a batch size so the training graph gets static shapes".into())
            }
            _ => None,
        }
    }
}

/// The loss appended to the model's first output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LossKind {
    /// Softmax cross-entropy on `[N, K]` logits with int64 `labels` `[N]`, mean over the batch.
    #[default]
    CrossEntropy,
    /// Mean squared error against a float `targets` input shaped like the output.
    MeanSquaredError,
}

/// How to build the training graph.
#[derive(Clone, Debug)]
pub struct TrainGraphOptions {
    /// The loss appended to the model's first output.
    pub loss: LossKind,
    /// Value for every input dimension the model leaves symbolic.
    pub batch_size: Option<i64>,
    /// Train exactly these initializers instead of the automatic choice
    /// (weights and biases of Gemm/MatMul/Conv/ConvTranspose, scales and
    /// shifts of BatchNormalization/LayerNormalization, embedding tables:
    /// float tables of two or more dimensions that Gather reads along axis 0).
    pub trainable: Option<Vec<String>>,
    /// Initializers to keep frozen even if the automatic choice picks them.
    pub frozen: Vec<String>,
    /// Dropout in training mode (random mask) rather than identity.
    pub dropout: bool,
    /// Seed of the Dropout masks' random generators (node k gets seed + k);
    /// `None` leaves them unseeded.
    pub dropout_seed: Option<i64>,
    /// Which runtimes the graph must load in.
    pub target: GraphTarget,
}

/// Which runtimes a training graph is written for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GraphTarget {
    /// ONNX Runtime and tract: only forms both load.
    #[default]
    Portable,
    /// ONNX Runtime only, which allows faster forms: BatchNormalization's
    /// output comes from the operator itself in inference form, fed the
    /// batch statistics (one pass over the tensor instead of a Mul and an
    /// Add). tract refuses that form: it wants constant statistics.
    OnnxRuntime,
}

impl Default for TrainGraphOptions {
    fn default() -> Self {
        TrainGraphOptions {
            loss: LossKind::CrossEntropy,
            batch_size: None,
            trainable: None,
            frozen: vec![],
            dropout: true,
            dropout_seed: Some(0),
            target: GraphTarget::Portable,
        }
    }
}

/// A trainable tensor: a graph input of the training graph.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainTensor {
    /// The initializer's name, now a graph input.
    pub name: String,
    /// Its dimensions.
    pub shape: Vec<i64>,
    /// The value the forward model stored for it.
    pub init: Vec<f32>,
    /// The graph output holding d(loss)/d(this tensor).
    pub grad: String,
}

/// A BatchNormalization running statistic: fed in as `input`, returned updated as `output`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningStat {
    /// The graph input holding the statistic before the step.
    pub input: String,
    /// The graph output holding it after the step.
    pub output: String,
    /// Its dimensions (`[C]`).
    pub shape: Vec<i64>,
    /// The value the forward model stored for it.
    pub init: Vec<f32>,
}

/// A data input of the training graph (the model's own inputs and the labels).
#[derive(Clone, Debug, PartialEq)]
pub struct DataInput {
    /// The input's name.
    pub name: String,
    /// Its element type (float32 or int64).
    pub elem_type: crate::onnx::DataType,
    /// Its dimensions, all static.
    pub shape: Vec<i64>,
}

/// The training graph and what a caller needs to feed and read it.
#[derive(Clone, Debug)]
pub struct TrainingGraph {
    /// The encoded standalone ONNX model.
    pub model: Vec<u8>,
    /// The model's inputs, then the labels/targets input.
    pub data_inputs: Vec<DataInput>,
    /// Name of the labels (`labels`) or targets (`targets`) input.
    pub labels: String,
    /// Name of the scalar loss output.
    pub loss: String,
    /// The trainable tensors, in order of first use.
    pub params: Vec<TrainTensor>,
    /// The BatchNormalization running statistics the step updates.
    pub running_stats: Vec<RunningStat>,
}

/// Writes model files into a fresh temporary folder, for runtimes that load
/// models from paths: the folder, which must outlive the sessions, and the
/// path of each file in order.
fn model_files(
    files: &[(&str, &[u8])],
) -> Result<(tempfile::TempDir, Vec<std::path::PathBuf>), TrainError> {
    let dir = tempfile::tempdir().map_err(|e| TrainError::Run(format!("temporary folder: {e}")))?;
    let paths = files
        .iter()
        .map(|(name, bytes)| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes)
                .map_err(|e| TrainError::Run(format!("{}: {e}", path.display())))?;
            Ok(path)
        })
        .collect::<Result<_, TrainError>>()?;
    Ok((dir, paths))
}

impl TrainingGraph {
    /// Adds the float value `name` (of dimensions `shape`) to the graph's
    /// outputs, e.g. the logits for the training accuracy, which
    /// [`Trainer::step_with`] then returns.
    pub fn expose(&mut self, name: &str, shape: &[i64]) -> Result<(), TrainError> {
        use prost::Message;
        let mut model = crate::onnx::pb::ModelProto::decode(self.model.as_slice())?;
        let graph = model
            .graph
            .as_mut()
            .ok_or_else(|| TrainError::Model("the training graph has no graph".into()))?;
        if graph.output.iter().any(|o| o.name == name) {
            return Ok(());
        }
        if !graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == name))
        {
            return Err(TrainError::Model(format!(
                "the training graph computes no value `{name}`"
            )));
        }
        graph
            .output
            .push(proto::value_info(name, crate::onnx::DataType::Float, shape));
        self.model = model.encode_to_vec();
        Ok(())
    }
}
