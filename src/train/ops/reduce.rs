//! Reductions over axes (ReduceSum, ReduceMean and the others) and
//! ArgMax/ArgMin.
//!
//! The axes come from an attribute before opset 18 (13 for ReduceSum) and
//! from an input after it; one reading of them serves both shape
//! inference and the gradient, which broadcasts back over the same axes.

use crate::onnx::pb::NodeProto;

use super::{input, Grad, OpRule};
use crate::onnx::DataType;
use crate::train::geometry::axes_of;
use crate::train::ir::{Graph, Info};
use crate::train::node::NodeExt;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("ReduceMean", OpRule::new(reduced).grad(Grad::Unary(reduce_grad))),
    ("ReduceSum", OpRule::new(reduced).grad(Grad::Unary(reduce_grad))),
    ("ReduceMax", OpRule::new(reduced)),
    ("ReduceMin", OpRule::new(reduced)),
    ("ReduceProd", OpRule::new(reduced)),
    ("ReduceL2", OpRule::new(reduced)),
    ("ReduceL1", OpRule::new(reduced)),
    ("ReduceSumSquare", OpRule::new(reduced)),
    ("ReduceLogSumExp", OpRule::new(reduced)),
    ("ArgMax", OpRule::new(reduced).grad(Grad::Stops)),
    ("ArgMin", OpRule::new(reduced).grad(Grad::Stops)),
];

fn reduced(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let op = n.op_type.as_str();
    let x = input(g, n, 0)?;
    let r = x.shape.len();
    let keep = n.int_attr("keepdims", 1) != 0;
    let axes = reduce_axes(g, n, r)?;
    let mut shape = vec![];
    for (i, &d) in x.shape.iter().enumerate() {
        if axes.contains(&i) {
            if keep {
                shape.push(1);
            }
        } else {
            shape.push(d);
        }
    }
    let dtype = if op.starts_with("Arg") {
        DataType::Int64
    } else {
        x.dtype
    };
    Ok(vec![Info { dtype, shape }])
}

/// The axes a reduction reduces, checked against `rank`.
fn reduce_axes(g: &Graph, n: &NodeProto, rank: usize) -> Result<Vec<usize>> {
    let from_input = n.input.get(1).is_some_and(|s| !s.is_empty());
    let axes = if from_input {
        g.known_input(n, 1)?.ints()
    } else if n.op_type.starts_with("Arg") {
        vec![n.int_attr("axis", 0)]
    } else {
        n.ints_attr("axes").unwrap_or_default()
    };
    if axes.is_empty() {
        if n.int_attr("noop_with_empty_axes", 0) != 0 {
            return Ok(vec![]);
        }
        return Ok((0..rank).collect());
    }
    axes_of(n, &axes, rank)
}

/// ReduceSum and ReduceMean: the output gradient broadcast back over the
/// reduced axes (divided by their size for the mean).
fn reduce_grad(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let op = n.op_type.as_str();
    let xs = g.shape(&n.input[0])?;
    let axes = reduce_axes(g, n, xs.len())?;
    let mut kept = xs.clone();
    let mut count = 1;
    for &a in &axes {
        count *= xs[a];
        kept[a] = 1;
    }
    let mut t = g.reshape(gy, &kept)?;
    if op == "ReduceMean" {
        let c = g.scalar(1.0 / count as f32);
        t = g.op("Mul", &[&t, &c], vec![])?;
    }
    let s = g.const_i64(&xs);
    g.op("Expand", &[&t, &s], vec![])
}
