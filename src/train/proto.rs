//! The protobuf values the builder writes and reads: attributes, small
//! tensors, value infos, and the decoding of stored tensors.
//!
//! The training graph is written straight as ONNX protobuf, so the rules
//! build many attributes and constant tensors; these constructors keep the
//! field-by-field spelling of a `TensorProto` or `AttributeProto` out of
//! the rules themselves.

use crate::onnx::pb::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto, AttributeProto, AttributeType,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::onnx::DataType;

/// Constructors of node attributes: `Attr::int("axis", 1)`.
pub(crate) enum Attr {}

impl Attr {
    pub(crate) fn int(name: &str, v: i64) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Int as i32,
            i: v,
            ..Default::default()
        }
    }
    /// An element-type attribute (`to` of Cast, `dtype` of the random
    /// operators), written as its ONNX code.
    pub(crate) fn dtype(name: &str, t: DataType) -> AttributeProto {
        Attr::int(name, t.code() as i64)
    }
    pub(crate) fn float(name: &str, v: f32) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Float as i32,
            f: v,
            ..Default::default()
        }
    }
    pub(crate) fn ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Ints as i32,
            ints: v.to_vec(),
            ..Default::default()
        }
    }
    pub(crate) fn string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::String as i32,
            s: v.as_bytes().to_vec(),
            ..Default::default()
        }
    }
    pub(crate) fn tensor(name: &str, t: TensorProto) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            r#type: AttributeType::Tensor as i32,
            t: Some(t),
            ..Default::default()
        }
    }
}

pub(crate) fn tensor_f32(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float.code(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}
pub(crate) fn tensor_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64.code(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// Decodes a tensor's values as f64 (None for unsupported types or external data).
pub(crate) fn decode_f64(t: &TensorProto) -> Option<Vec<f64>> {
    if t.data_location == 1 {
        return None;
    }
    let n: i64 = t.dims.iter().product();
    let raw = &t.raw_data;
    let dt = DataType::from_code(t.data_type);
    let v: Vec<f64> = if !raw.is_empty() {
        match dt {
            DataType::Float => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::Double => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DataType::Int64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::Int32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            DataType::Int8 => raw.iter().map(|&b| b as i8 as f64).collect(),
            DataType::Uint8 | DataType::Bool => raw.iter().map(|&b| b as f64).collect(),
            DataType::Float16 => raw
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
                .collect(),
            _ => return None,
        }
    } else {
        match dt {
            DataType::Float => t.float_data.iter().map(|&v| v as f64).collect(),
            DataType::Double => t.double_data.clone(),
            DataType::Int64 => t.int64_data.iter().map(|&v| v as f64).collect(),
            DataType::Int32 | DataType::Int8 | DataType::Uint8 | DataType::Bool => {
                t.int32_data.iter().map(|&v| v as f64).collect()
            }
            DataType::Float16 => t
                .int32_data
                .iter()
                .map(|&v| half::f16::from_bits(v as u16).to_f64())
                .collect(),
            _ => return None,
        }
    };
    (v.len() as i64 == n).then_some(v)
}

/// Decodes an f32 tensor (trainable parameters and running statistics).
pub(crate) fn decode_f32(t: &TensorProto) -> Option<Vec<f32>> {
    if DataType::from_code(t.data_type) != DataType::Float {
        return None;
    }
    if !t.raw_data.is_empty() {
        let v: Vec<f32> = t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        return (v.len() as i64 == t.dims.iter().product::<i64>()).then_some(v);
    }
    decode_f64(t).map(|v| v.into_iter().map(|x| x as f32).collect())
}

pub(crate) fn value_info(name: &str, dtype: DataType, shape: &[i64]) -> ValueInfoProto {
    use crate::onnx::pb::tensor_shape_proto::Dimension;
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: dtype.code(),
                shape: Some(TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimValue::DimValue(d)),
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

/// Element type and dims of a graph input; `None` for a dimension without a value.
pub(crate) fn input_type(v: &ValueInfoProto) -> Option<(DataType, Vec<Option<i64>>, Vec<String>)> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    let mut dims = vec![];
    let mut params = vec![];
    for d in t.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]) {
        match &d.value {
            Some(DimValue::DimValue(v)) if *v > 0 => dims.push(Some(*v)),
            Some(DimValue::DimParam(p)) => {
                dims.push(None);
                params.push(p.clone());
            }
            _ => {
                dims.push(None);
                params.push("?".into());
            }
        }
    }
    Some((DataType::from_code(t.elem_type), dims, params))
}
