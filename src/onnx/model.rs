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
use super::wire::{packed_varints, Field, Fields, WireType};
use crate::error::{Error, Result};

/// Deepest nesting of subgraphs accepted; real models nest a handful of
/// levels, hostile files try to exhaust the stack.
const MAX_DEPTH: usize = 64;

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
        Model::parse(
            bytes,
            Some(path.to_path_buf()),
            super::patch::parent_dir(path),
        )
    }

    /// Parses model bytes held in memory; `dir` is where external data lives.
    pub fn from_bytes(bytes: Vec<u8>, dir: &Path) -> Result<Model> {
        Model::parse(Bytes::Owned(bytes), None, dir)
    }

    fn parse(bytes: Bytes, path: Option<PathBuf>, dir: &Path) -> Result<Model> {
        let bytes = Arc::new(bytes);
        let mut p = Parser {
            buf: &bytes,
            graphs: Vec::new(),
            nodes: Vec::new(),
            tensors: Vec::new(),
            external: ExternalStore::new(dir),
            ir_version: None,
            producer: String::new(),
            opsets: Vec::new(),
        };
        p.model()?;
        let Parser {
            graphs,
            nodes,
            tensors,
            ir_version,
            producer,
            opsets,
            external,
            ..
        } = p;
        Ok(Model {
            path,
            bytes: bytes.clone(),
            ir_version,
            producer,
            opsets,
            graphs,
            nodes,
            tensors,
            external,
        })
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

struct Parser<'a> {
    buf: &'a [u8],
    graphs: Vec<Graph>,
    nodes: Vec<Node>,
    tensors: Vec<Tensor>,
    external: ExternalStore,
    ir_version: Option<i64>,
    producer: String,
    opsets: Vec<(String, i64)>,
}

fn utf8(buf: &[u8], f: &Field) -> String {
    String::from_utf8_lossy(&buf[f.body.clone()]).into_owned()
}

fn expect(f: &Field, wire: WireType, what: &str) -> Result<()> {
    if f.wire == wire {
        Ok(())
    } else {
        Err(Error::Malformed {
            offset: f.whole.start as u64,
            detail: format!("field {} of {what} has the wrong wire type", f.number),
        })
    }
}

impl Parser<'_> {
    fn model(&mut self) -> Result<()> {
        let buf = self.buf;
        if buf.is_empty() {
            return Err(Error::NotOnnx {
                detail: "the file is empty".into(),
            });
        }
        let mut graph_field = None;
        let mut functions = Vec::new();
        let mut training = Vec::new();
        for f in Fields::new(buf, 0..buf.len(), "ModelProto") {
            let f = f?;
            match (f.number, f.wire) {
                (1, WireType::Varint) => self.ir_version = Some(f.scalar as i64),
                (2, WireType::Len) => self.producer = utf8(buf, &f),
                (7, _) => {
                    expect(&f, WireType::Len, "ModelProto")?;
                    if graph_field.is_some() {
                        return Err(Error::NotOnnx {
                            detail: "the model holds more than one graph".into(),
                        });
                    }
                    graph_field = Some(f.body.clone());
                }
                (8, WireType::Len) => {
                    let mut domain = String::new();
                    let mut version = 0;
                    for g in Fields::new(buf, f.body.clone(), "OperatorSetIdProto") {
                        let g = g?;
                        match (g.number, g.wire) {
                            (1, WireType::Len) => domain = utf8(buf, &g),
                            (2, WireType::Varint) => version = g.scalar as i64,
                            _ => {}
                        }
                    }
                    self.opsets.push((domain, version));
                }
                (20, WireType::Len) => training.push(f.body.clone()),
                (25, WireType::Len) => functions.push(f.body.clone()),
                _ => {}
            }
        }
        let Some(graph) = graph_field else {
            return Err(Error::NotOnnx {
                detail: "no graph (ModelProto field 7) found".into(),
            });
        };
        if self.ir_version.is_none() {
            return Err(Error::NotOnnx {
                detail: "no ir_version (ModelProto field 1) found".into(),
            });
        }
        self.graph(graph, GraphKind::Main, None, String::new(), 0)?;
        for body in functions {
            self.function(body)?;
        }
        for (i, body) in training.into_iter().enumerate() {
            for f in Fields::new(buf, body, "TrainingInfoProto") {
                let f = f?;
                if matches!(f.number, 1 | 2) && f.wire == WireType::Len {
                    let path = format!("training_info[{i}].{}", f.number);
                    self.graph(f.body.clone(), GraphKind::Training, Some(0), path, 1)?;
                }
            }
        }
        Ok(())
    }

    fn function(&mut self, body: Range<usize>) -> Result<()> {
        let buf = self.buf;
        let mut name = String::new();
        let mut domain = String::new();
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let mut nodes = Vec::new();
        for f in Fields::new(buf, body, "FunctionProto") {
            let f = f?;
            match (f.number, f.wire) {
                (1, WireType::Len) => name = utf8(buf, &f),
                (10, WireType::Len) => domain = utf8(buf, &f),
                (4, WireType::Len) => inputs.push(utf8(buf, &f)),
                (5, WireType::Len) => outputs.push(utf8(buf, &f)),
                (7, WireType::Len) => nodes.push(f.body.clone()),
                _ => {}
            }
        }
        let g = self.graphs.len();
        self.graphs.push(Graph {
            kind: GraphKind::Function {
                domain: domain.clone(),
                name: name.clone(),
            },
            parent: None,
            name: name.clone(),
            path: format!("function:{domain}:{name}"),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs,
            outputs,
        });
        for n in nodes {
            self.node(n, g, 1)?;
        }
        Ok(())
    }

    fn graph(
        &mut self,
        body: Range<usize>,
        kind: GraphKind,
        parent: Option<usize>,
        path: String,
        depth: usize,
    ) -> Result<usize> {
        if depth > MAX_DEPTH {
            return Err(Error::Malformed {
                offset: body.start as u64,
                detail: format!("subgraphs nested deeper than {MAX_DEPTH} levels"),
            });
        }
        let buf = self.buf;
        let g = self.graphs.len();
        self.graphs.push(Graph {
            kind,
            parent,
            name: String::new(),
            path,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        });
        let mut nodes = Vec::new();
        let mut inits = Vec::new();
        let mut sparse = Vec::new();
        for f in Fields::new(buf, body, "GraphProto") {
            let f = f?;
            match (f.number, f.wire) {
                (1, WireType::Len) => nodes.push(f.body.clone()),
                (2, WireType::Len) => self.graphs[g].name = utf8(buf, &f),
                (5, WireType::Len) => inits.push(f.body.clone()),
                (15, WireType::Len) => sparse.push(f.body.clone()),
                (11, WireType::Len) | (12, WireType::Len) => {
                    let name = value_info_name(buf, f.body.clone())?;
                    if f.number == 11 {
                        self.graphs[g].inputs.push(name);
                    } else {
                        self.graphs[g].outputs.push(name);
                    }
                }
                (1 | 5 | 15 | 11 | 12, _) => {
                    expect(&f, WireType::Len, "GraphProto")?;
                }
                _ => {}
            }
        }
        for body in inits {
            let t = self.tensor(body, TensorOwner::Initializer { graph: g }, None)?;
            self.graphs[g].initializers.push(t);
        }
        for body in sparse {
            for f in Fields::new(buf, body, "SparseTensorProto") {
                let f = f?;
                if matches!(f.number, 1 | 2) && f.wire == WireType::Len {
                    self.tensor(f.body.clone(), TensorOwner::Sparse { graph: g }, None)?;
                }
            }
        }
        for n in nodes {
            self.node(n, g, depth)?;
        }
        Ok(g)
    }

    fn node(&mut self, body: Range<usize>, g: usize, depth: usize) -> Result<()> {
        let buf = self.buf;
        let index = self.nodes.len();
        let mut node = Node {
            graph: g,
            name: String::new(),
            op_type: String::new(),
            domain: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attributes: Vec::new(),
            message: body.clone(),
        };
        let mut attrs = Vec::new();
        for f in Fields::new(buf, body, "NodeProto") {
            let f = f?;
            match (f.number, f.wire) {
                (1, WireType::Len) => node.inputs.push(utf8(buf, &f)),
                (2, WireType::Len) => node.outputs.push(utf8(buf, &f)),
                (3, WireType::Len) => node.name = utf8(buf, &f),
                (4, WireType::Len) => node.op_type = utf8(buf, &f),
                (7, WireType::Len) => node.domain = utf8(buf, &f),
                (5, WireType::Len) => attrs.push(f.body.clone()),
                (1..=5 | 7, _) => expect(&f, WireType::Len, "NodeProto")?,
                _ => {}
            }
        }
        self.nodes.push(node);
        self.graphs[g].nodes.push(index);
        for body in attrs {
            let a = self.attribute(body, index, depth)?;
            self.nodes[index].attributes.push(a);
        }
        Ok(())
    }

    fn attribute(&mut self, body: Range<usize>, node: usize, depth: usize) -> Result<Attribute> {
        let buf = self.buf;
        let mut name = String::new();
        let mut int = None;
        let mut float = None;
        let mut ints: Vec<i64> = Vec::new();
        let mut bytes = None;
        let mut tensor = None;
        let mut graphs = Vec::new();
        let mut tensors = Vec::new();
        for f in Fields::new(buf, body, "AttributeProto") {
            let f = f?;
            match (f.number, f.wire) {
                (1, WireType::Len) => name = utf8(buf, &f),
                (2, WireType::Fixed32) => float = Some(f32::from_bits(f.scalar as u32)),
                (3, WireType::Varint) => int = Some(f.scalar as i64),
                (4, WireType::Len) => bytes = Some(buf[f.body.clone()].to_vec()),
                (5, WireType::Len) => tensor = Some(f.body.clone()),
                (6, WireType::Len) | (11, WireType::Len) => graphs.push(f.body.clone()),
                (8, WireType::Varint) => ints.push(f.scalar as i64),
                (8, WireType::Len) => {
                    let vals = packed_varints(&buf[f.body.clone()]).ok_or(Error::Malformed {
                        offset: f.body.start as u64,
                        detail: "broken packed ints in AttributeProto".into(),
                    })?;
                    ints.extend(vals.into_iter().map(|v| v as i64));
                }
                (10, WireType::Len) => tensors.push(f.body.clone()),
                _ => {}
            }
        }
        let node_name = {
            let n = &self.nodes[node];
            n.label(node)
        };
        if name.is_empty() {
            return Err(Error::NotOnnx {
                detail: format!("node `{node_name}` has an attribute without a name"),
            });
        }
        let value = if let Some(body) = tensor {
            let is_constant_value = self.nodes[node].is_onnx_op("Constant") && name == "value";
            let (owner, tensor_name) = if is_constant_value {
                let out = self.nodes[node]
                    .outputs
                    .first()
                    .cloned()
                    .unwrap_or_default();
                (TensorOwner::ConstantNode { node }, Some(out))
            } else {
                (
                    TensorOwner::Attribute {
                        node,
                        attribute: name.clone(),
                    },
                    Some(format!("{node_name}.{name}")),
                )
            };
            AttrValue::Tensor(self.tensor(body, owner, tensor_name)?)
        } else if !graphs.is_empty() {
            let parent = self.nodes[node].graph;
            let base = self.graphs[parent].path.clone();
            let mut ids = Vec::new();
            let many = graphs.len() > 1;
            for (i, body) in graphs.into_iter().enumerate() {
                let mut path = if base.is_empty() {
                    format!("{node_name}.{name}")
                } else {
                    format!("{base}/{node_name}.{name}")
                };
                if many {
                    path.push_str(&format!("[{i}]"));
                }
                let kind = GraphKind::Subgraph {
                    node,
                    attribute: name.clone(),
                };
                ids.push(self.graph(body, kind, Some(parent), path, depth + 1)?);
            }
            AttrValue::Graphs(ids)
        } else if let Some(v) = int {
            AttrValue::Int(v)
        } else if let Some(v) = float {
            AttrValue::Float(v)
        } else if !ints.is_empty() {
            AttrValue::Ints(ints)
        } else if let Some(b) = bytes {
            AttrValue::Bytes(b)
        } else {
            AttrValue::Other
        };
        for (i, body) in tensors.into_iter().enumerate() {
            let owner = TensorOwner::Attribute {
                node,
                attribute: name.clone(),
            };
            self.tensor(body, owner, Some(format!("{node_name}.{name}[{i}]")))?;
        }
        Ok(Attribute { name, value })
    }

    fn tensor(
        &mut self,
        body: Range<usize>,
        owner: TensorOwner,
        name_override: Option<String>,
    ) -> Result<usize> {
        let buf = self.buf;
        let mut name = String::new();
        let mut dims = Vec::new();
        let mut dtype = DataType(0);
        let mut raw = None;
        let mut packed: Vec<(PackedField, Field)> = Vec::new();
        let mut external: Vec<(String, String)> = Vec::new();
        let mut data_location = 0;
        let mut segmented = false;
        let start = body.start;
        for f in Fields::new(buf, body.clone(), "TensorProto") {
            let f = f?;
            match (f.number, f.wire) {
                (1, WireType::Varint) => dims.push(f.scalar as i64),
                (1, WireType::Len) => {
                    let vals = packed_varints(&buf[f.body.clone()]).ok_or(Error::Malformed {
                        offset: f.body.start as u64,
                        detail: "broken packed dims in TensorProto".into(),
                    })?;
                    dims.extend(vals.into_iter().map(|v| v as i64));
                }
                (2, WireType::Varint) => dtype = DataType(f.scalar as i32),
                (3, _) => segmented = true,
                (4, _) => packed.push((PackedField::Float, f)),
                (5, _) => packed.push((PackedField::Int32, f)),
                (6, _) => packed.push((PackedField::String, f)),
                (7, _) => packed.push((PackedField::Int64, f)),
                (10, _) => packed.push((PackedField::Double, f)),
                (11, _) => packed.push((PackedField::Uint64, f)),
                (8, WireType::Len) => name = utf8(buf, &f),
                (9, WireType::Len) => {
                    if raw.is_some() {
                        return Err(Error::Malformed {
                            offset: f.whole.start as u64,
                            detail: "a tensor has raw_data twice".into(),
                        });
                    }
                    raw = Some(f.body.clone());
                }
                (13, WireType::Len) => {
                    let mut key = String::new();
                    let mut value = String::new();
                    for e in Fields::new(buf, f.body.clone(), "StringStringEntryProto") {
                        let e = e?;
                        match (e.number, e.wire) {
                            (1, WireType::Len) => key = utf8(buf, &e),
                            (2, WireType::Len) => value = utf8(buf, &e),
                            _ => {}
                        }
                    }
                    external.push((key, value));
                }
                (14, WireType::Varint) => data_location = f.scalar,
                (2 | 14, _) => expect(&f, WireType::Varint, "TensorProto")?,
                (8 | 9 | 13, _) => expect(&f, WireType::Len, "TensorProto")?,
                _ => {}
            }
        }
        let name = match name_override {
            Some(n) if name.is_empty() || !matches!(owner, TensorOwner::Initializer { .. }) => n,
            _ => name,
        };
        let label = if name.is_empty() {
            format!("<unnamed tensor at byte {start}>")
        } else {
            name.clone()
        };
        let mut udims = Vec::with_capacity(dims.len());
        let mut numel: u64 = 1;
        for d in &dims {
            if *d < 0 {
                return Err(Error::tensor(&label, format!("negative dimension {d}")));
            }
            numel = numel.checked_mul(*d as u64).ok_or_else(|| {
                Error::tensor(&label, format!("the product of dims {dims:?} overflows"))
            })?;
            udims.push(*d as u64);
        }
        if numel > (1u64 << 48) {
            return Err(Error::tensor(
                &label,
                format!("dims {dims:?} describe {numel} elements, more than any file can hold"),
            ));
        }
        let storage = if segmented {
            Storage::Unsupported("segmented tensor (TensorProto.segment)".into())
        } else if data_location == 1 {
            self.external_storage(&label, dtype, numel, &external)?
        } else if let Some(r) = raw {
            if !packed.is_empty() {
                return Err(Error::tensor(&label, "has both raw_data and typed data"));
            }
            if let Some(expected) = dtype.raw_len(numel) {
                let got = r.len() as u64;
                if got != expected {
                    return Err(Error::tensor(
                        &label,
                        format!(
                            "raw_data holds {got} bytes but {} x {} needs {expected}",
                            fmt_dims(&udims),
                            dtype
                        ),
                    ));
                }
            }
            Storage::Raw(r)
        } else if packed.is_empty() {
            if numel == 0 || dtype.0 == 0 {
                Storage::Empty
            } else {
                // An absent payload for a non-empty tensor is how an
                // all-default tensor would be written; ONNX tooling rejects
                // it, so do we.
                return Err(Error::tensor(
                    &label,
                    format!("holds no data for {numel} elements"),
                ));
            }
        } else {
            packed_storage(buf, &label, dtype, numel, &packed)?
        };
        let graph_path = match &owner {
            TensorOwner::Initializer { graph } | TensorOwner::Sparse { graph } => {
                self.graphs[*graph].path.clone()
            }
            TensorOwner::ConstantNode { node } | TensorOwner::Attribute { node, .. } => {
                self.graphs[self.nodes[*node].graph].path.clone()
            }
        };
        let key = if graph_path.is_empty() {
            label.clone()
        } else {
            format!("{graph_path}/{label}")
        };
        let key = if matches!(owner, TensorOwner::Sparse { .. }) {
            format!("{key}#sparse@{start}")
        } else {
            key
        };
        self.tensors.push(Tensor {
            name: label,
            key,
            dtype,
            dims: udims,
            numel,
            owner,
            storage,
            message: body,
        });
        Ok(self.tensors.len() - 1)
    }

    fn external_storage(
        &mut self,
        label: &str,
        dtype: DataType,
        numel: u64,
        entries: &[(String, String)],
    ) -> Result<Storage> {
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let location = get("location")
            .ok_or_else(|| Error::tensor(label, "is marked external but names no `location`"))?;
        let number = |k: &str| -> Result<Option<u64>> {
            match get(k) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| Error::ExternalData {
                        tensor: label.into(),
                        location: location.clone(),
                        detail: format!("`{k}` is not a non-negative integer: {v:?}"),
                    }),
            }
        };
        let offset = number("offset")?.unwrap_or(0);
        let declared = number("length")?;
        let expected = dtype.raw_len(numel);
        let length = match (declared, expected) {
            (Some(d), Some(e)) if d != e => {
                return Err(Error::ExternalData {
                    tensor: label.into(),
                    location: location.clone(),
                    detail: format!("`length` is {d} bytes but {numel} x {dtype} needs {e}"),
                })
            }
            (Some(d), _) => d,
            (None, Some(e)) => e,
            (None, None) => {
                return Err(Error::ExternalData {
                    tensor: label.into(),
                    location: location.clone(),
                    detail: format!("no `length` given and {dtype} has no fixed width"),
                })
            }
        };
        let file = self.external.resolve(label, location, offset, length)?;
        Ok(Storage::External {
            location: location.clone(),
            file,
            offset,
            length,
        })
    }
}

fn packed_storage(
    buf: &[u8],
    label: &str,
    dtype: DataType,
    numel: u64,
    packed: &[(PackedField, Field)],
) -> Result<Storage> {
    let field = packed[0].0;
    if packed.iter().any(|(f, _)| *f != field) {
        return Err(Error::tensor(
            label,
            "has data in two different typed fields",
        ));
    }
    if field == PackedField::String {
        return Ok(Storage::Unsupported("string data".into()));
    }
    if packed.len() > 1 || packed[0].1.wire != WireType::Len {
        // Legal protobuf, never written by ONNX tooling: values scattered
        // over several records cannot be permuted in place.
        return Ok(Storage::Unsupported(format!(
            "{} written as {} separate records",
            Storage::Packed { field, range: 0..0 }.kind(),
            packed.len()
        )));
    }
    let range = packed[0].1.body.clone();
    let bytes = &buf[range.clone()];
    let count = match field {
        PackedField::Float => {
            if !bytes.len().is_multiple_of(4) {
                return Err(Error::tensor(
                    label,
                    "float_data is not a whole number of floats",
                ));
            }
            bytes.len() as u64 / 4
        }
        PackedField::Double => {
            if !bytes.len().is_multiple_of(8) {
                return Err(Error::tensor(
                    label,
                    "double_data is not a whole number of doubles",
                ));
            }
            bytes.len() as u64 / 8
        }
        _ => packed_varints(bytes)
            .ok_or_else(|| Error::tensor(label, "broken varints in typed data"))?
            .len() as u64,
    };
    if let Some((expected_field, per)) = dtype.packed_field() {
        if expected_field != field {
            return Err(Error::tensor(
                label,
                format!("a {dtype} tensor cannot be stored in this typed field"),
            ));
        }
        if count != numel * per {
            return Err(Error::tensor(
                label,
                format!("holds {count} values but its dims describe {}", numel * per),
            ));
        }
    }
    Ok(Storage::Packed { field, range })
}

fn value_info_name(buf: &[u8], body: Range<usize>) -> Result<String> {
    for f in Fields::new(buf, body, "ValueInfoProto") {
        let f = f?;
        if f.number == 1 && f.wire == WireType::Len {
            return Ok(utf8(buf, &f));
        }
    }
    Ok(String::new())
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
