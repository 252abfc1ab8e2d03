//! The structure of an ONNX model as pa-onnx sees it: graphs, nodes and
//! tensors, each tensor with the exact byte range of its payload.
//!
//! Decoding stops at what planning, verifying and patching need. Payloads
//! are never copied: a tensor only records where its values lie (in the
//! model buffer or in an external file), and every other byte of the file is
//! left alone, so fields this reader does not know still survive a rewrite.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::dtype::{DataType, PackedField};
use super::external::ExternalStore;
use crate::error::Result;

/// The bytes of a model file: mapped from disk, or owned (tests, generated
/// models).
pub enum Bytes {
    /// A read-only map of the file.
    Mapped(memmap2::Mmap),
    /// Bytes held in memory.
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// Where a tensor's values are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// `raw_data`: little-endian values, contiguous, in the model file.
    Raw(Range<usize>),
    /// One packed run of a typed field in the model file.
    Packed {
        /// Which typed field holds the values.
        field: PackedField,
        /// The field's packed bytes in the model file.
        range: Range<usize>,
    },
    /// A range of an external data file.
    External {
        /// The `location` string as written in the model.
        location: String,
        /// The file it resolves to.
        file: PathBuf,
        /// Where the values start in that file.
        offset: u64,
        /// How many bytes they take.
        length: u64,
    },
    /// No payload at all (zero elements, or all defaults).
    Empty,
    /// Stored in a way pa-onnx does not rewrite (the reason says how).
    Unsupported(String),
}

impl Storage {
    /// A short name for reports: the field that holds the values, `external`, `empty` or `unsupported`.
    pub fn kind(&self) -> &'static str {
        match self {
            Storage::Raw(_) => "raw_data",
            Storage::Packed {
                field: PackedField::Float,
                ..
            } => "float_data",
            Storage::Packed {
                field: PackedField::Double,
                ..
            } => "double_data",
            Storage::Packed {
                field: PackedField::Int32,
                ..
            } => "int32_data",
            Storage::Packed {
                field: PackedField::Int64,
                ..
            } => "int64_data",
            Storage::Packed {
                field: PackedField::Uint64,
                ..
            } => "uint64_data",
            Storage::Packed {
                field: PackedField::String,
                ..
            } => "string_data",
            Storage::External { .. } => "external",
            Storage::Empty => "empty",
            Storage::Unsupported(_) => "unsupported",
        }
    }
}

/// What holds a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorOwner {
    /// An initializer of a graph.
    Initializer {
        /// The graph's index in [`Model::graphs`].
        graph: usize,
    },
    /// The `value` attribute of a `Constant` node.
    ConstantNode {
        /// The node's index in [`Model::nodes`].
        node: usize,
    },
    /// Any other tensor-valued attribute.
    Attribute {
        /// The node's index in [`Model::nodes`].
        node: usize,
        /// The attribute's name.
        attribute: String,
    },
    /// A part (`values` or `indices`) of a sparse initializer.
    Sparse {
        /// The graph's index in [`Model::graphs`].
        graph: usize,
    },
}

/// One `TensorProto` found anywhere in the model.
#[derive(Debug, Clone)]
pub struct Tensor {
    /// The name consumers refer to it by (a Constant's output name when the
    /// tensor itself is unnamed).
    pub name: String,
    /// A name unique in the model and stable across runs: the graph path and
    /// the tensor name. Seeds each tensor's random stream.
    pub key: String,
    /// The element type.
    pub dtype: DataType,
    /// The shape, outermost first.
    pub dims: Vec<u64>,
    /// The number of elements (the product of `dims`).
    pub numel: u64,
    /// What holds it.
    pub owner: TensorOwner,
    /// Where its values lie.
    pub storage: Storage,
    /// The `TensorProto` message body.
    pub message: Range<usize>,
}

/// One attribute value, decoded only as far as planning needs.
#[derive(Debug, Clone)]
pub enum AttrValue {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f32),
    /// A list of integers.
    Ints(Vec<i64>),
    /// A string, as its bytes.
    Bytes(Vec<u8>),
    /// A tensor, by its index in [`Model::tensors`].
    Tensor(usize),
    /// One or more graphs, by their indices in [`Model::graphs`].
    Graphs(Vec<usize>),
    /// Anything else (floats lists, sparse tensors, types), not decoded.
    Other,
}

/// A node attribute.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// The name as written in the model (may be empty).
    pub name: String,
    /// Its value.
    pub value: AttrValue,
}

/// One `NodeProto`, in any graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The graph it belongs to, by its index in [`Model::graphs`].
    pub graph: usize,
    /// The name as written in the model (may be empty).
    pub name: String,
    /// The operator.
    pub op_type: String,
    /// The operator's domain (empty for the default ONNX domain).
    pub domain: String,
    /// Input names, in order (empty strings for omitted optional inputs).
    pub inputs: Vec<String>,
    /// Output names, in order.
    pub outputs: Vec<String>,
    /// The attributes, in file order.
    pub attributes: Vec<Attribute>,
    /// The `NodeProto` message body.
    pub message: Range<usize>,
}

impl Node {
    /// The value of attribute `name`, if the node has it.
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    /// Attribute `name` as an integer, if it is one.
    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attr(name) {
            Some(AttrValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

    /// Attribute `name` as a list of integers, if it is one.
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name) {
            Some(AttrValue::Ints(v)) => Some(v),
            _ => None,
        }
    }

    /// A label for messages: the node name, or its op and index when unnamed.
    pub fn label(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("{}#{index}", self.op_type)
        } else {
            self.name.clone()
        }
    }

    /// True for ops of the default ONNX domain.
    pub fn is_onnx_op(&self, op: &str) -> bool {
        self.op_type == op && (self.domain.is_empty() || self.domain == "ai.onnx")
    }
}

/// Why a graph exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphKind {
    /// The model's main graph.
    Main,
    /// An attribute (`then_branch`, `body`, ...) of a node in another graph.
    Subgraph {
        /// The node's index in [`Model::nodes`].
        node: usize,
        /// The attribute's name.
        attribute: String,
    },
    /// The body of a model-local function.
    Function {
        /// The function's domain.
        domain: String,
        /// The function's name.
        name: String,
    },
    /// A graph of `training_info`.
    Training,
}

/// One graph: the main graph, a subgraph, a function body or a training graph.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Why it exists.
    pub kind: GraphKind,
    /// The enclosing graph, whose names this one can see.
    pub parent: Option<usize>,
    /// The name as written in the model (may be empty).
    pub name: String,
    /// Path used in tensor keys ("" for the main graph).
    pub path: String,
    /// Its nodes, by index in [`Model::nodes`], in file order.
    pub nodes: Vec<usize>,
    /// Its initializers, by index in [`Model::tensors`].
    pub initializers: Vec<usize>,
    /// Input names, in order (empty strings for omitted optional inputs).
    pub inputs: Vec<String>,
    /// Output names, in order.
    pub outputs: Vec<String>,
}

/// A parsed model: the file's bytes plus what was found in them.
pub struct Model {
    /// The file it was read from (None for bytes parsed in memory).
    pub path: Option<PathBuf>,
    /// The whole file.
    pub bytes: Arc<Bytes>,
    /// The ONNX IR version the file declares.
    pub ir_version: Option<i64>,
    /// The producer name the file declares.
    pub producer: String,
    /// The operator sets it imports: (domain, version).
    pub opsets: Vec<(String, i64)>,
    /// Every graph, the main graph first.
    pub graphs: Vec<Graph>,
    /// Every node of every graph.
    pub nodes: Vec<Node>,
    /// Every tensor, wherever it is held.
    pub tensors: Vec<Tensor>,
    /// Access to the external data files, resolved next to the model.
    pub external: ExternalStore,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .field("graphs", &self.graphs.len())
            .field("nodes", &self.nodes.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Model {
    /// The payload bytes of a tensor (from the model or its external file).
    pub fn payload(&self, t: &Tensor) -> Result<Cow<'_, [u8]>> {
        match &t.storage {
            Storage::Raw(r) | Storage::Packed { range: r, .. } => {
                Ok(Cow::Borrowed(&self.bytes[r.clone()]))
            }
            Storage::External {
                location,
                file,
                offset,
                length,
            } => Ok(Cow::Owned(
                self.external
                    .read(&t.name, location, file, *offset, *length)?,
            )),
            Storage::Empty | Storage::Unsupported(_) => Ok(Cow::Borrowed(&[])),
        }
    }

    /// The node that defines `Graph` index `g`, for subgraphs.
    pub fn graph_label(&self, g: usize) -> String {
        let graph = &self.graphs[g];
        if graph.path.is_empty() {
            "main graph".into()
        } else {
            graph.path.clone()
        }
    }
}

/// Formats dims as `[a, b, c]`.
pub fn fmt_dims(dims: &[u64]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// Tensor lookup by graph scope, shared by the planner and the verifier.
impl Model {
    /// Index of the tensors by key.
    pub fn tensors_by_key(&self) -> HashMap<&str, usize> {
        self.tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.key.as_str(), i))
            .collect()
    }
}
