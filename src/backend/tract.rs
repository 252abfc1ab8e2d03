//! The tract backend: pure-Rust inference that needs nothing installed.
//!
//! tract is always available when the `tract` feature is compiled, which makes
//! it the natural reference for verification. It optimizes a model for one
//! concrete input shape, so symbolic dimensions are pinned when the model is
//! loaded (user override, else 1) and the session only accepts that shape.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::{
    check_inputs, BackendError, BackendKind, BackendOptions, HostTensor, IoSpec, TensorData,
};

const KIND: BackendKind = BackendKind::Tract;

/// A model optimized by tract for fixed input shapes.
pub(super) struct TractSession {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    /// For each of the plan's inputs (its own order), the index into `inputs`.
    plan_order: Vec<usize>,
}

impl TractSession {
    pub(super) fn open(
        model_path: &Path,
        opts: &BackendOptions,
    ) -> Result<TractSession, BackendError> {
        // A malformed model must not take the process down; tract asserts in places.
        catch_unwind(AssertUnwindSafe(|| Self::open_inner(model_path, opts))).unwrap_or_else(
            |panic| {
                Err(BackendError::load_failed(
                    KIND,
                    format!("tract panicked: {}", panic_message(&*panic)),
                ))
            },
        )
    }

    fn open_inner(model_path: &Path, opts: &BackendOptions) -> Result<TractSession, BackendError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_path(model_path)
            .map_err(|e| BackendError::load_failed(KIND, format!("{e:#}")))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| BackendError::load_failed(KIND, "the model has no graph"))?;
        let initializers: std::collections::HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<IoSpec> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .map(io_spec)
            .collect();
        let outputs: Vec<IoSpec> = graph.output.iter().map(io_spec).collect();

        // External data is resolved against the model's folder, as the ONNX spec says.
        let dir = model_path.parent().and_then(Path::to_str);
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(|e| BackendError::load_failed(KIND, format!("{e:#}")))?;
        if !parsed.unresolved_inputs.is_empty() {
            return Err(BackendError::load_failed(
                KIND,
                format!(
                    "graph refers to undefined values: {:?}",
                    parsed.unresolved_inputs
                ),
            ));
        }
        let mut model = parsed.model;

        let outlets = model
            .input_outlets()
            .map_err(|e| BackendError::load_failed(KIND, format!("{e:#}")))?
            .to_vec();
        let mut plan_order = Vec::with_capacity(outlets.len());
        for (ix, outlet) in outlets.iter().enumerate() {
            let name = model.node(outlet.node).name.clone();
            let spec_ix = inputs.iter().position(|s| s.name == name).ok_or_else(|| {
                BackendError::load_failed(
                    KIND,
                    format!("tract sees an input `{name}` the model does not declare"),
                )
            })?;
            let spec = &inputs[spec_ix];
            let shape = spec
                .resolve_shape(&opts.input_shapes)
                .map_err(|e| BackendError::load_failed(KIND, e))?;
            let dt = datum_type(&spec.dtype).ok_or_else(|| {
                BackendError::load_failed(
                    KIND,
                    format!(
                        "input `{}` has type {}, which pa-onnx cannot feed",
                        spec.name, spec.dtype
                    ),
                )
            })?;
            model
                .set_input_fact(ix, InferenceFact::dt_shape(dt, shape))
                .map_err(|e| BackendError::load_failed(KIND, format!("{e:#}")))?;
            plan_order.push(spec_ix);
        }

        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| BackendError::load_failed(KIND, format!("{e:#}")))?;

        // The plan only takes the pinned shapes; advertise them so callers feed those.
        let mut inputs = inputs;
        for (ix, &spec_ix) in plan_order.iter().enumerate() {
            let fact = plan
                .model()
                .input_fact(ix)
                .map_err(|e| BackendError::load_failed(KIND, format!("{e:#}")))?;
            if let Some(dims) = fact.shape.as_concrete() {
                let spec = &mut inputs[spec_ix];
                spec.shape = dims.iter().map(|&d| Some(d)).collect();
                spec.ranked = true;
                spec.dim_names.resize(spec.shape.len(), None);
            }
        }

        Ok(TractSession {
            plan,
            inputs,
            outputs,
            plan_order,
        })
    }

    fn run_inner(
        &self,
        inputs: &[(String, HostTensor)],
    ) -> Result<Vec<(String, HostTensor)>, BackendError> {
        let ordered = check_inputs(KIND, &self.inputs, inputs)?;
        let mut values: TVec<TValue> = tvec![];
        for &spec_ix in &self.plan_order {
            values.push(to_tract(ordered[spec_ix])?.into());
        }
        let results = self
            .plan
            .run(values)
            .map_err(|e| BackendError::run_failed(KIND, format!("{e:#}")))?;
        if results.len() != self.outputs.len() {
            return Err(BackendError::run_failed(
                KIND,
                format!(
                    "tract returned {} outputs, the model declares {}",
                    results.len(),
                    self.outputs.len()
                ),
            ));
        }
        results
            .into_iter()
            .zip(&self.outputs)
            .map(|(value, spec)| {
                Ok((
                    spec.name.clone(),
                    from_tract(&spec.name, value.into_tensor())?,
                ))
            })
            .collect()
    }
}

impl super::Session for TractSession {
    fn backend(&self) -> BackendKind {
        KIND
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn run(
        &mut self,
        inputs: &[(String, HostTensor)],
    ) -> Result<Vec<(String, HostTensor)>, BackendError> {
        catch_unwind(AssertUnwindSafe(|| self.run_inner(inputs))).unwrap_or_else(|panic| {
            Err(BackendError::run_failed(
                KIND,
                format!("tract panicked: {}", panic_message(&*panic)),
            ))
        })
    }

    fn provider_used(&self) -> &str {
        "tract"
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Describes a graph input or output from its declared ONNX type.
fn io_spec(info: &pb::ValueInfoProto) -> IoSpec {
    let tensor = info
        .r#type
        .as_ref()
        .and_then(|t| t.value.as_ref())
        .map(|v| match v {
            pb::type_proto::Value::TensorType(t) => t,
        });
    let dtype = tensor.map_or_else(|| "unknown".to_string(), |t| onnx_dtype_name(t.elem_type));
    let mut shape = Vec::new();
    let mut dim_names = Vec::new();
    let ranked = tensor.is_some_and(|t| t.shape.is_some());
    if let Some(s) = tensor.and_then(|t| t.shape.as_ref()) {
        for dim in &s.dim {
            use pb::tensor_shape_proto::dimension::Value;
            match &dim.value {
                Some(Value::DimValue(v)) if *v >= 0 => {
                    shape.push(Some(*v as usize));
                    dim_names.push(None);
                }
                Some(Value::DimParam(p)) if !p.is_empty() => {
                    shape.push(None);
                    dim_names.push(Some(p.clone()));
                }
                _ => {
                    shape.push(None);
                    dim_names.push(None);
                }
            }
        }
    }
    IoSpec {
        name: info.name.clone(),
        dtype,
        shape,
        dim_names,
        ranked,
    }
}

/// ONNX `TensorProto.DataType` codes to the names of [`TensorData::dtype`].
fn onnx_dtype_name(code: i32) -> String {
    match code {
        1 => "f32",
        2 => "u8",
        3 => "i8",
        4 => "u16",
        5 => "i16",
        6 => "i32",
        7 => "i64",
        8 => "string",
        9 => "bool",
        10 => "f16",
        11 => "f64",
        12 => "u32",
        13 => "u64",
        16 => "bf16",
        _ => return format!("onnx-type-{code}"),
    }
    .to_string()
}

fn datum_type(dtype: &str) -> Option<DatumType> {
    Some(match dtype {
        "f32" => DatumType::F32,
        "f64" => DatumType::F64,
        "f16" => DatumType::F16,
        "i64" => DatumType::I64,
        "i32" => DatumType::I32,
        "bool" => DatumType::Bool,
        _ => return None,
    })
}

fn to_tract(t: &HostTensor) -> Result<Tensor, BackendError> {
    let made = match &t.data {
        TensorData::F32(v) => Tensor::from_shape(&t.shape, v),
        TensorData::F64(v) => Tensor::from_shape(&t.shape, v),
        TensorData::F16(v) => Tensor::from_shape(&t.shape, v),
        TensorData::I64(v) => Tensor::from_shape(&t.shape, v),
        TensorData::I32(v) => Tensor::from_shape(&t.shape, v),
        TensorData::Bool(v) => Tensor::from_shape(&t.shape, v),
    };
    made.map_err(|e| BackendError::run_failed(KIND, format!("{e:#}")))
}

fn from_tract(name: &str, t: Tensor) -> Result<HostTensor, BackendError> {
    fn values<T: Datum + Copy>(t: &Tensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().copied().collect())
    }
    let shape = t.shape().to_vec();
    let data = match t.datum_type() {
        DatumType::F32 => values::<f32>(&t).map(TensorData::F32),
        DatumType::F64 => values::<f64>(&t).map(TensorData::F64),
        DatumType::F16 => values::<f16>(&t).map(TensorData::F16),
        DatumType::I64 => values::<i64>(&t).map(TensorData::I64),
        DatumType::I32 => values::<i32>(&t).map(TensorData::I32),
        DatumType::Bool => values::<bool>(&t).map(TensorData::Bool),
        // Shape arithmetic can surface as symbolic dims; they are int64 in ONNX.
        DatumType::TDim => t
            .cast_to::<i64>()
            .and_then(|c| values::<i64>(&c))
            .map(TensorData::I64),
        other => {
            return Err(BackendError::run_failed(
                KIND,
                format!("output `{name}` has type {other:?}, which pa-onnx cannot compare"),
            ))
        }
    }
    .map_err(|e| BackendError::run_failed(KIND, format!("output `{name}`: {e:#}")))?;
    Ok(HostTensor { shape, data })
}
