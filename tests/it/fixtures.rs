//! Hand-built ONNX files for the cases no exporter makes: fp16 in
//! `int32_data`, `float_data`, external data, Constant-node weights, `If`
//! subgraphs, local functions, unknown fields, broken lengths.
//!
//! The encoder writes protobuf fields one by one, so a test controls every
//! byte (including fields our reader does not know).

#![allow(dead_code)]

use pa_onnx::onnx::{pb, DataType};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// A protobuf message under construction.
#[derive(Clone, Default)]
pub struct Msg(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    pub fn new() -> Self {
        Msg(Vec::new())
    }
    pub fn varint(mut self, field: u32, v: u64) -> Self {
        varint(&mut self.0, (field as u64) << 3);
        varint(&mut self.0, v);
        self
    }
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Self {
        varint(&mut self.0, ((field as u64) << 3) | 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, field: u32, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(self, field: u32, m: Msg) -> Self {
        self.bytes(field, &m.0)
    }
    pub fn fixed32(mut self, field: u32, v: u32) -> Self {
        varint(&mut self.0, ((field as u64) << 3) | 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn packed(self, field: u32, vals: &[u64]) -> Self {
        let mut body = Vec::new();
        for &v in vals {
            varint(&mut body, v);
        }
        self.bytes(field, &body)
    }
}

pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;
pub const FLOAT16: i32 = 10;
pub const DOUBLE: i32 = 11;
pub const BFLOAT16: i32 = 16;

/// Kaiming-normal values (std sqrt(2 / fan_in)) from a fixed seed.
pub fn kaiming(n: usize, fan_in: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let d = Normal::new(0.0f64, (2.0 / fan_in as f64).sqrt()).unwrap();
    (0..n).map(|_| d.sample(&mut rng) as f32).collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn dims_msg(m: Msg, dims: &[u64]) -> Msg {
    m.packed(1, dims)
}

/// TensorProto with raw_data.
pub fn tensor_raw(name: &str, dtype: i32, dims: &[u64], raw: &[u8]) -> Msg {
    dims_msg(Msg::new(), dims)
        .varint(2, dtype as u64)
        .str(8, name)
        .bytes(9, raw)
}

/// f32 TensorProto with raw_data.
pub fn tensor_f32(name: &str, dims: &[u64], vals: &[f32]) -> Msg {
    tensor_raw(name, FLOAT, dims, &f32_bytes(vals))
}

/// f32 TensorProto with packed float_data.
pub fn tensor_float_data(name: &str, dims: &[u64], vals: &[f32]) -> Msg {
    dims_msg(Msg::new(), dims)
        .varint(2, FLOAT as u64)
        .bytes(4, &f32_bytes(vals))
        .str(8, name)
}

/// f16 TensorProto in int32_data (one varint per element).
pub fn tensor_f16_int32(name: &str, dims: &[u64], vals: &[f32]) -> Msg {
    let bits: Vec<u64> = vals
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits() as u64)
        .collect();
    dims_msg(Msg::new(), dims)
        .varint(2, FLOAT16 as u64)
        .packed(5, &bits)
        .str(8, name)
}

/// TensorProto pointing at external data.
pub fn tensor_external(
    name: &str,
    dtype: i32,
    dims: &[u64],
    location: &str,
    offset: u64,
    length: u64,
) -> Msg {
    let entry = |k: &str, v: &str| Msg::new().str(1, k).str(2, v);
    dims_msg(Msg::new(), dims)
        .varint(2, dtype as u64)
        .str(8, name)
        .msg(13, entry("location", location))
        .msg(13, entry("offset", &offset.to_string()))
        .msg(13, entry("length", &length.to_string()))
        .varint(14, 1)
}

pub fn attr_int(name: &str, v: i64) -> Msg {
    Msg::new().str(1, name).varint(3, v as u64).varint(20, 2)
}

pub fn attr_ints(name: &str, v: &[i64]) -> Msg {
    let vals: Vec<u64> = v.iter().map(|&x| x as u64).collect();
    Msg::new().str(1, name).packed(8, &vals).varint(20, 7)
}

pub fn attr_tensor(name: &str, t: Msg) -> Msg {
    Msg::new().str(1, name).msg(5, t).varint(20, 4)
}

pub fn attr_graph(name: &str, g: Msg) -> Msg {
    Msg::new().str(1, name).msg(6, g).varint(20, 5)
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<Msg>) -> Msg {
    let mut m = Msg::new();
    for i in inputs {
        m = m.str(1, i);
    }
    for o in outputs {
        m = m.str(2, o);
    }
    m = m.str(3, name).str(4, op);
    for a in attrs {
        m = m.msg(5, a);
    }
    m
}

/// ValueInfoProto for a float tensor of the given shape.
pub fn value_info(name: &str, elem: i32, dims: &[u64]) -> Msg {
    let mut shape = Msg::new();
    for &d in dims {
        shape = shape.msg(1, Msg::new().varint(1, d));
    }
    let tensor_type = Msg::new().varint(1, elem as u64).msg(2, shape);
    Msg::new()
        .str(1, name)
        .msg(2, Msg::new().msg(1, tensor_type))
}

/// ValueInfoProto of a tensor with a fixed shape, as the `prost` type (for
/// tests that build models from the protobuf types rather than bytes).
pub fn pb_value_info(name: &str, elem_type: DataType, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem_type.code(),
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

pub struct GraphSpec {
    pub name: String,
    pub nodes: Vec<Msg>,
    pub initializers: Vec<Msg>,
    pub inputs: Vec<Msg>,
    pub outputs: Vec<Msg>,
}

pub fn graph(spec: GraphSpec) -> Msg {
    let mut g = Msg::new();
    for n in spec.nodes {
        g = g.msg(1, n);
    }
    g = g.str(2, &spec.name);
    for t in spec.initializers {
        g = g.msg(5, t);
    }
    for i in spec.inputs {
        g = g.msg(11, i);
    }
    for o in spec.outputs {
        g = g.msg(12, o);
    }
    g
}

/// ModelProto: IR 8, default opset 17, with the given graph and extra
/// top-level fields appended.
pub fn model(graph: Msg, extra: Vec<(u32, Msg)>) -> Vec<u8> {
    let mut m = Msg::new()
        .varint(1, 8)
        .str(2, "pa-onnx-tests")
        .msg(7, graph)
        .msg(8, Msg::new().str(1, "").varint(2, 17));
    for (field, msg) in extra {
        m = m.msg(field, msg);
    }
    m.0
}

/// An MLP: input [1, k] -> Gemm(W1 [h, k], transB=1) -> Relu -> MatMul(W2 [h, o]) -> output.
pub fn mlp(k: u64, h: u64, o: u64) -> Vec<u8> {
    let w1 = kaiming((h * k) as usize, k as usize, 1);
    let b1 = vec![0.0f32; h as usize];
    let w2 = kaiming((h * o) as usize, h as usize, 2);
    graph_model(
        vec![
            node(
                "Gemm",
                "fc1",
                &["input", "w1", "b1"],
                &["h"],
                vec![attr_int("transB", 1)],
            ),
            node("Relu", "relu", &["h"], &["hr"], vec![]),
            node("MatMul", "fc2", &["hr", "w2"], &["output"], vec![]),
        ],
        vec![
            tensor_f32("w1", &[h, k], &w1),
            tensor_f32("b1", &[h], &b1),
            tensor_f32("w2", &[h, o], &w2),
        ],
        vec![value_info("input", FLOAT, &[1, k])],
        vec![value_info("output", FLOAT, &[1, o])],
    )
}

pub fn graph_model(
    nodes: Vec<Msg>,
    inits: Vec<Msg>,
    inputs: Vec<Msg>,
    outputs: Vec<Msg>,
) -> Vec<u8> {
    model(
        graph(GraphSpec {
            name: "g".into(),
            nodes,
            initializers: inits,
            inputs,
            outputs,
        }),
        vec![],
    )
}

/// A temporary folder holding `name` with `bytes` (and returned paths).
pub fn write_temp(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Held by every test that opens a CUDA session. ONNX Runtime's CUDA
/// provider cannot be driven from several threads of one process at once:
/// on an H200, tests running side by side failed with CUDA error 900
/// ("operation not permitted when stream is capturing") at session
/// creation and at device-to-host copies. pa-onnx itself opens its
/// sessions one after another; only the parallel test harness needs this.
pub fn cuda_lock(
    kind: pa_onnx::backend::BackendKind,
) -> Option<std::sync::MutexGuard<'static, ()>> {
    static CUDA: std::sync::Mutex<()> = std::sync::Mutex::new(());
    (kind == pa_onnx::backend::BackendKind::OrtCuda)
        // A test that panicked while holding it leaves nothing to repair.
        .then(|| CUDA.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A GPT-2-like language model as TorchScript exports it with constant
/// folding: the token embedding `wte` [24, 8] read by Gather, and the tied
/// output projection folded into a separate initializer `lm_head` [8, 24],
/// the transpose of `wte`, read by the final MatMul.
pub fn gpt2_folded() -> Vec<u8> {
    gpt2_folded_with(kaiming(24 * 8, 8, 11))
}

/// [`gpt2_folded`] with the given embedding values (24 x 8).
pub fn gpt2_folded_with(wte: Vec<f32>) -> Vec<u8> {
    let (v, d) = (24u64, 8u64);
    let mut lm_head = vec![0.0f32; wte.len()];
    for i in 0..v as usize {
        for j in 0..d as usize {
            lm_head[j * v as usize + i] = wte[i * d as usize + j];
        }
    }
    graph_model(
        vec![
            node("Gather", "wte", &["wte", "ids"], &["h"], vec![]),
            node("MatMul", "fc", &["h", "w_fc"], &["a"], vec![]),
            node("Relu", "act", &["a"], &["ar"], vec![]),
            node("MatMul", "lm_head", &["ar", "lm_head"], &["logits"], vec![]),
        ],
        vec![
            tensor_f32("wte", &[v, d], &wte),
            tensor_f32("w_fc", &[d, d], &kaiming((d * d) as usize, d as usize, 12)),
            tensor_f32("lm_head", &[d, v], &lm_head),
        ],
        vec![value_info("ids", INT64, &[1, 3])],
        vec![value_info("logits", FLOAT, &[1, 3, v])],
    )
}
