//! Synthetic untrained models of real architectures' sizes, for benchmarks
//! and scale tests that must not depend on an exporter being installed.
//!
//! The weights are Kaiming-normal draws from a fixed seed, so every run
//! measures the same file.

use std::io::Write;
use std::path::Path;

use prost::Message;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};
use crate::onnx::pb;

fn kaiming(n: usize, fan_in: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<u8> {
    let d = Normal::new(0.0f64, (2.0 / fan_in as f64).sqrt()).expect("finite std");
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        out.extend_from_slice(&(d.sample(rng) as f32).to_le_bytes());
    }
    out
}

fn tensor(name: &str, dims: &[i64], raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: 1,
        raw_data: raw,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: 1,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| pb::tensor_shape_proto::Dimension {
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Builder {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    rng: rand_chacha::ChaCha8Rng,
}

impl Builder {
    fn conv(&mut self, name: &str, x: &str, cin: i64, cout: i64, k: i64, stride: i64) -> String {
        let w = format!("{name}.weight");
        let b = format!("{name}.bias");
        let fan_in = (cin * k * k) as usize;
        let raw = kaiming((cout * cin * k * k) as usize, fan_in, &mut self.rng);
        self.inits.push(tensor(&w, &[cout, cin, k, k], raw));
        self.inits
            .push(tensor(&b, &[cout], vec![0; cout as usize * 4]));
        let out = format!("{name}.out");
        let p = k / 2;
        self.nodes.push(node(
            "Conv",
            name,
            &[x, &w, &b],
            &out,
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[stride, stride]),
                ints("pads", &[p, p, p, p]),
            ],
        ));
        out
    }

    fn op(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attrs: Vec<pb::AttributeProto>,
    ) -> String {
        let out = format!("{name}.out");
        self.nodes.push(node(op, name, inputs, &out, attrs));
        out
    }
}

/// A ResNet-18 for 224x224 RGB input and 1000 classes, as a TorchScript
/// export in eval mode lays it out (BatchNorm folded into Conv biases): 20
/// Conv weights and one Gemm, 11.7 million weight values, about 47 MB.
pub fn resnet18() -> Vec<u8> {
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(18),
    };
    let mut x = b.conv("conv1", "input", 3, 64, 7, 2);
    x = b.op("Relu", "relu1", &[&x], vec![]);
    x = b.op(
        "MaxPool",
        "maxpool",
        &[&x],
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let mut cin = 64;
    for (li, (cout, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)]
        .into_iter()
        .enumerate()
    {
        for bi in 0..2 {
            let s = if bi == 0 { stride } else { 1 };
            let p = format!("layer{}.{bi}", li + 1);
            let mut y = b.conv(&format!("{p}.conv1"), &x, cin, cout, 3, s);
            y = b.op("Relu", &format!("{p}.relu1"), &[&y], vec![]);
            y = b.conv(&format!("{p}.conv2"), &y, cout, cout, 3, 1);
            let shortcut = if s != 1 || cin != cout {
                b.conv(&format!("{p}.downsample"), &x, cin, cout, 1, s)
            } else {
                x.clone()
            };
            y = b.op("Add", &format!("{p}.add"), &[&y, &shortcut], vec![]);
            x = b.op("Relu", &format!("{p}.relu2"), &[&y], vec![]);
            cin = cout;
        }
    }
    x = b.op("GlobalAveragePool", "avgpool", &[&x], vec![]);
    x = b.op("Flatten", "flatten", &[&x], vec![int("axis", 1)]);
    let raw = kaiming(1000 * 512, 512, &mut b.rng);
    b.inits.push(tensor("fc.weight", &[1000, 512], raw));
    b.inits.push(tensor("fc.bias", &[1000], vec![0; 4000]));
    b.nodes.push(node(
        "Gemm",
        "fc",
        &[&x, "fc.weight", "fc.bias"],
        "output",
        vec![int("transB", 1)],
    ));
    encode(
        b,
        vec![value_info("input", &[1, 3, 224, 224])],
        vec![value_info("output", &[1, 1000])],
    )
}

fn encode(
    b: Builder,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        producer_name: "pa-onnx synth".into(),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            name: "synth".into(),
            node: b.nodes,
            initializer: b.inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A deep MLP whose weights live in one external data file next to the
/// model, `layers` Gemm layers of `width x width` floats each: for scale
/// tests beyond the 2 GiB protobuf limit. Values are written as they are
/// drawn, so making the file costs little memory.
pub fn external_mlp(
    dir: &Path,
    model_name: &str,
    layers: usize,
    width: usize,
) -> Result<std::path::PathBuf> {
    let data_name = format!("{model_name}.data");
    let data_path = dir.join(&data_name);
    let file =
        std::fs::File::create(&data_path).map_err(|e| Error::io("cannot create", &data_path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2024);
    let mut b = Builder {
        nodes: Vec::new(),
        inits: Vec::new(),
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(0),
    };
    let bytes = (width * width * 4) as u64;
    let mut x = "input".to_string();
    for l in 0..layers {
        let name = format!("fc{l}.weight");
        // One row at a time keeps memory at one row.
        for _ in 0..width {
            w.write_all(&kaiming(width, width, &mut rng))
                .map_err(|e| Error::io("cannot write", &data_path, e))?;
        }
        let entry = |k: &str, v: String| pb::StringStringEntryProto {
            key: k.into(),
            value: v,
        };
        b.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![width as i64, width as i64],
            data_type: 1,
            data_location: 1,
            external_data: vec![
                entry("location", data_name.clone()),
                entry("offset", (l as u64 * bytes).to_string()),
                entry("length", bytes.to_string()),
            ],
            ..Default::default()
        });
        x = b.op(
            "Gemm",
            &format!("fc{l}"),
            &[&x, &name],
            vec![int("transB", 1)],
        );
    }
    w.flush()
        .map_err(|e| Error::io("cannot write", &data_path, e))?;
    let model = encode(
        b,
        vec![value_info("input", &[1, width as i64])],
        vec![value_info(&x, &[1, width as i64])],
    );
    let path = dir.join(model_name);
    std::fs::write(&path, model).map_err(|e| Error::io("cannot write", &path, e))?;
    Ok(path)
}
