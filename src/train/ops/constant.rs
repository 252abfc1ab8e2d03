//! Operators whose output comes from attributes and constant inputs alone:
//! Constant, ConstantOfShape, Range.
//!
//! Their values feed shape computations (a Range of positions, a
//! ConstantOfShape of zeros), so they are evaluated while building; no
//! gradient flows through them.

use crate::onnx::pb::NodeProto;

use super::{input, input_value, Grad, OpRule};
use crate::onnx::DataType;
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::decode_f64;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Constant", OpRule::new(constant).evaluate(constant_values).grad(Grad::Stops)),
    ("ConstantOfShape", OpRule::new(constant_of_shape).evaluate(filled).grad(Grad::Stops)),
    ("Range", OpRule::new(range).evaluate(range_values).grad(Grad::Stops)),
];

fn constant(_: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    if let Some(t) = n.attr("value").and_then(|a| a.t.as_ref()) {
        Ok(vec![Info {
            dtype: DataType::from_code(t.data_type),
            shape: t.dims.clone(),
        }])
    } else if let Some(a) = n.attr("value_ints") {
        Ok(vec![Info {
            dtype: DataType::Int64,
            shape: vec![a.ints.len() as i64],
        }])
    } else if n.attr("value_int").is_some() {
        Ok(vec![Info {
            dtype: DataType::Int64,
            shape: vec![],
        }])
    } else if let Some(a) = n.attr("value_floats") {
        Ok(vec![Info {
            dtype: DataType::Float,
            shape: vec![a.floats.len() as i64],
        }])
    } else if n.attr("value_float").is_some() {
        Ok(vec![Info {
            dtype: DataType::Float,
            shape: vec![],
        }])
    } else {
        Err(node_err(n, "unsupported Constant attribute"))
    }
}

fn constant_of_shape(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let shape = g.known_input(n, 0)?.ints();
    let dtype = n
        .attr("value")
        .and_then(|a| a.t.as_ref())
        .map_or(DataType::Float, |t| DataType::from_code(t.data_type));
    Ok(vec![Info { dtype, shape }])
}

fn range(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let k: Vec<f64> = (0..3)
        .map(|i| g.known_input(n, i).map(|k| k.vals[0]))
        .collect::<Result<_>>()?;
    let len = (((k[1] - k[0]) / k[2]).ceil()).max(0.0) as i64;
    Ok(vec![Info {
        dtype: input(g, n, 0)?.dtype,
        shape: vec![len],
    }])
}

fn constant_values(_: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    if let Some(t) = n.attr("value").and_then(|a| a.t.as_ref()) {
        decode_f64(t)
    } else if let Some(a) = n.attr("value_ints") {
        Some(a.ints.iter().map(|&v| v as f64).collect())
    } else if let Some(a) = n.attr("value_int") {
        Some(vec![a.i as f64])
    } else if let Some(a) = n.attr("value_floats") {
        Some(a.floats.iter().map(|&v| v as f64).collect())
    } else {
        n.attr("value_float").map(|a| vec![a.f as f64])
    }
}

fn filled(_: &Graph, n: &NodeProto, out: &Info) -> Option<Vec<f64>> {
    let v = n
        .attr("value")
        .and_then(|a| a.t.as_ref())
        .and_then(decode_f64)
        .map_or(0.0, |v| v[0]);
    Some(vec![v; out.shape.iter().product::<i64>() as usize])
}

fn range_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    let (s, l, d) = (
        input_value(g, n, 0)?.vals[0],
        input_value(g, n, 1)?.vals[0],
        input_value(g, n, 2)?.vals[0],
    );
    let len = (((l - s) / d).ceil()).max(0.0) as usize;
    Some((0..len).map(|i| s + d * i as f64).collect())
}
