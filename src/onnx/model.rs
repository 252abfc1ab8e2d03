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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dtype::{DataType, PackedField};
use super::external::ExternalStore;
use crate::error::{Error, Result};

/// The bytes of a model file: mapped from disk, or owned (tests, generated
/// models).
pub enum Bytes {
    Mapped(memmap2::Mmap),
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
        field: PackedField,
        range: Range<usize>,
    },
    /// A range of an external data file.
    External {
        /// The `location` string as written in the model.
        location: String,
        /// The file it resolves to.
        file: PathBuf,
        offset: u64,
        length: u64,
    },
    /// No payload at all (zero elements, or all defaults).
    Empty,
    /// Stored in a way pa-onnx does not rewrite (the reason says how).
    Unsupported(String),
}

impl Storage {
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
    Initializer {
        graph: usize,
    },
    /// The `value` attribute of a `Constant` node.
    ConstantNode {
        node: usize,
    },
    /// Any other tensor-valued attribute.
    Attribute {
        node: usize,
        attribute: String,
    },
    /// A part (`values` or `indices`) of a sparse initializer.
    Sparse {
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
    pub dtype: DataType,
    pub dims: Vec<u64>,
    pub numel: u64,
    pub owner: TensorOwner,
    pub storage: Storage,
    /// The `TensorProto` message body.
    pub message: Range<usize>,
}

/// One attribute value, decoded only as far as planning needs.
#[derive(Debug, Clone)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Bytes(Vec<u8>),
    Tensor(usize),
    Graphs(Vec<usize>),
    Other,
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub graph: usize,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: Vec<Attribute>,
    /// The `NodeProto` message body.
    pub message: Range<usize>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| &a.value)
    }

    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attr(name) {
            Some(AttrValue::Int(v)) => Some(*v),
            _ => None,
        }
    }

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
    Main,
    /// An attribute (`then_branch`, `body`, ...) of a node in another graph.
    Subgraph {
        node: usize,
        attribute: String,
    },
    /// The body of a model-local function.
    Function {
        domain: String,
        name: String,
    },
    /// A graph of `training_info`.
    Training,
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub kind: GraphKind,
    /// The enclosing graph, whose names this one can see.
    pub parent: Option<usize>,
    pub name: String,
    /// Path used in tensor keys ("" for the main graph).
    pub path: String,
    pub nodes: Vec<usize>,
    pub initializers: Vec<usize>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
}

/// A parsed model: the file's bytes plus what was found in them.
pub struct Model {
    pub path: Option<PathBuf>,
    pub bytes: Arc<Bytes>,
    pub ir_version: Option<i64>,
    pub producer: String,
    pub opsets: Vec<(String, i64)>,
    pub graphs: Vec<Graph>,
    pub nodes: Vec<Node>,
    pub tensors: Vec<Tensor>,
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
    /// Maps and parses a model file; external data is resolved next to it.
    pub fn open(path: &Path) -> Result<Model> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("cannot stat", path, e))?;
        if !meta.is_file() {
            return Err(Error::io(
                "cannot read",
                path,
                std::io::Error::other("not a regular file"),
            ));
        }
        let bytes = if meta.len() == 0 {
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only; a file truncated by another
            // process while mapped is outside what any reader can guard
            // against, as for every memory-mapped tool.
            // Every byte is read (parsing, then the payloads), so the pages
            // are mapped up front in one call rather than faulted in one
            // at a time (about 10 ms for a 47 MB file on this VM).
            Bytes::Mapped(
                unsafe { memmap2::MmapOptions::new().populate().map(&file) }
                    .map_err(|e| Error::io("cannot map", path, e))?,
            )
        };
        super::parse::parse(
            bytes,
            Some(path.to_path_buf()),
            crate::fs::parent_dir(path),
        )
    }

    /// Parses model bytes held in memory; `dir` is where external data lives.
    pub fn from_bytes(bytes: Vec<u8>, dir: &Path) -> Result<Model> {
        super::parse::parse(Bytes::Owned(bytes), None, dir)
    }

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
