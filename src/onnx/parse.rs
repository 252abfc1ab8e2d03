//! The protobuf walk that turns a model's bytes into [`Model`]: graphs,
//! nodes and tensors, each tensor with the byte range of its payload.
//!
//! It is a hand-written walk over the wire format (see [`super::wire`])
//! rather than a generated decoder because a generated decoder forgets
//! where each field lay, and writing back exactly needs those offsets.
//! Only what planning, verifying and patching need is decoded; everything
//! else is skipped and survives untouched.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::dtype::{DataType, PackedField};
use super::external::ExternalStore;
use super::model::*;
use super::wire::{packed_varints, Field, Fields, WireType};
use crate::error::{Error, Result};

/// Deepest nesting of subgraphs accepted; real models nest a handful of
/// levels, hostile files try to exhaust the stack.
const MAX_DEPTH: usize = 64;

/// Reading a model is parsing it: these live beside the parser so that the
/// model's types need not know it.
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
        parse(bytes, Some(path.to_path_buf()), crate::fs::parent_dir(path))
    }

    /// Parses model bytes held in memory; `dir` is where external data lives.
    pub fn from_bytes(bytes: Vec<u8>, dir: &Path) -> Result<Model> {
        parse(Bytes::Owned(bytes), None, dir)
    }
}

/// Parses a whole model; `dir` is where its external data lives.
pub(super) fn parse(bytes: Bytes, path: Option<PathBuf>, dir: &Path) -> Result<Model> {
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
        let mut dtype = DataType::Undefined;
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
                (2, WireType::Varint) => dtype = DataType::from_code(f.scalar as i32),
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
            if numel == 0 || dtype == DataType::Undefined {
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
