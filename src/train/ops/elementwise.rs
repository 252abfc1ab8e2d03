//! Elementwise arithmetic, comparisons and logic, with numpy-style
//! broadcasting, and the unary math functions.
//!
//! Their gradients must undo broadcasting (a bias added to every row gets
//! the sum of the rows' gradients), and their shape rules are the ones
//! every other family reuses, so they live together.

use std::collections::HashMap;

use crate::onnx::pb::NodeProto;

use super::{input, input_value, same_values, Grad, Grads, OpRule, Params};
use crate::onnx::DataType;
use crate::train::geometry::broadcast;
use crate::train::ir::{Graph, Info, Known};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::{Result, TrainError};

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Identity", OpRule::new(unary).evaluate(same_values).grad(Grad::Unary(identity))),
    ("Neg", OpRule::new(unary).evaluate(neg_values).grad(Grad::Unary(neg))),
    ("Exp", OpRule::new(unary).grad(Grad::Unary(exp))),
    ("Log", OpRule::new(unary).grad(Grad::Unary(log))),
    ("Sqrt", OpRule::new(unary).evaluate(sqrt_values).grad(Grad::Unary(sqrt))),
    ("Reciprocal", OpRule::new(unary).grad(Grad::Unary(reciprocal))),
    ("Erf", OpRule::new(unary).grad(Grad::Unary(erf))),
    ("Abs", OpRule::new(unary)),
    ("Sin", OpRule::new(unary)),
    ("Cos", OpRule::new(unary)),
    ("Floor", OpRule::new(unary).grad(Grad::Stops)),
    ("Ceil", OpRule::new(unary).grad(Grad::Stops)),
    ("Round", OpRule::new(unary).grad(Grad::Stops)),
    ("Sign", OpRule::new(unary).grad(Grad::Stops)),
    ("IsNaN", OpRule::new(unary).grad(Grad::Stops)),
    ("Not", OpRule::new(unary).grad(Grad::Stops)),
    ("Cast", OpRule::new(cast).evaluate(cast_values).grad(Grad::Unary(cast_grad))),
    ("Add", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(binary)).params(Params::DenseBias)),
    ("Sub", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(binary))),
    ("Mul", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(binary))),
    ("Div", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(binary))),
    ("Pow", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(binary))),
    ("Sum", OpRule::new(broadcasting).grad(Grad::Inputs(binary))),
    ("Where", OpRule::new(broadcasting).grad(Grad::Inputs(binary))),
    ("Max", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(extremum))),
    ("Min", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Inputs(extremum))),
    ("Mean", OpRule::new(broadcasting)),
    ("Mod", OpRule::new(broadcasting)),
    ("Equal", OpRule::new(broadcasting).evaluate(arithmetic).grad(Grad::Stops)),
    ("Greater", OpRule::new(broadcasting).grad(Grad::Stops)),
    ("Less", OpRule::new(broadcasting).grad(Grad::Stops)),
    ("GreaterOrEqual", OpRule::new(broadcasting).grad(Grad::Stops)),
    ("LessOrEqual", OpRule::new(broadcasting).grad(Grad::Stops)),
    ("And", OpRule::new(broadcasting).grad(Grad::Stops)),
    ("Or", OpRule::new(broadcasting).grad(Grad::Stops)),
    ("Xor", OpRule::new(broadcasting).grad(Grad::Stops)),
];

/// Shape rule of every one-input elementwise operator, activations included.
pub(super) fn unary(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let op = n.op_type.as_str();
    let mut x = input(g, n, 0)?.clone();
    if op == "Not" || op == "IsNaN" {
        x.dtype = DataType::Bool;
    }
    Ok(vec![x])
}

fn cast(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    Ok(vec![Info {
        dtype: n.dtype_attr("to", DataType::Float),
        shape: input(g, n, 0)?.shape.clone(),
    }])
}

fn broadcasting(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let op = n.op_type.as_str();
    let ins: Vec<&Info> = (0..n.input.len())
        .map(|i| input(g, n, i))
        .collect::<Result<_>>()?;
    let shapes: Vec<&[i64]> = ins.iter().map(|i| i.shape.as_slice()).collect();
    let shape = broadcast(&shapes)
        .ok_or_else(|| node_err(n, format!("shapes {shapes:?} do not broadcast")))?;
    let dtype = match op {
        "Equal" | "Greater" | "Less" | "GreaterOrEqual" | "LessOrEqual" | "And" | "Or" | "Xor" => {
            DataType::Bool
        }
        "Where" => ins[1].dtype,
        _ => ins[0].dtype,
    };
    Ok(vec![Info { dtype, shape }])
}

fn cast_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    let to = n.dtype_attr("to", DataType::Float);
    let v = input_value(g, n, 0)?.vals.clone();
    Some(if to.is_float() {
        v
    } else {
        v.into_iter().map(|x| x.trunc()).collect()
    })
}

fn arithmetic(g: &Graph, n: &NodeProto, out: &Info) -> Option<Vec<f64>> {
    let op = n.op_type.as_str();
    let (a, b) = (input_value(g, n, 0)?, input_value(g, n, 1)?);
    let n_out = out.shape.iter().product::<i64>() as usize;
    let at = |x: &Known, i: usize| {
        if x.vals.len() == 1 {
            x.vals[0]
        } else {
            x.vals[i]
        }
    };
    if !(a.vals.len() == 1 || a.vals.len() == n_out)
        || !(b.vals.len() == 1 || b.vals.len() == n_out)
    {
        return None;
    }
    let int = !out.dtype.is_float();
    Some(
        (0..n_out)
            .map(|i| {
                let (x, y) = (at(a, i), at(b, i));
                match op {
                    "Add" => x + y,
                    "Sub" => x - y,
                    "Mul" => x * y,
                    "Div" if int => (x / y).floor(),
                    "Div" => x / y,
                    "Max" => x.max(y),
                    "Min" => x.min(y),
                    "Pow" => x.powf(y),
                    _ => (x == y) as i64 as f64,
                }
            })
            .collect(),
    )
}

fn sqrt_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    Some(
        input_value(g, n, 0)?
            .vals
            .iter()
            .map(|v| v.sqrt())
            .collect(),
    )
}

fn neg_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    Some(input_value(g, n, 0)?.vals.iter().map(|v| -v).collect())
}

fn identity(_: &mut Graph, _: &NodeProto, gy: &str) -> Result<String> {
    Ok(gy.to_string())
}

fn cast_grad(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let dt = g.info(&n.input[0])?.dtype;
    g.op("Cast", &[gy], vec![Attr::dtype("to", dt)])
}

fn neg(g: &mut Graph, _: &NodeProto, gy: &str) -> Result<String> {
    g.op("Neg", &[gy], vec![])
}

fn exp(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    g.op("Mul", &[gy, &n.output[0]], vec![])
}

fn log(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    g.op("Div", &[gy, &n.input[0]], vec![])
}

fn sqrt(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let half = g.scalar(0.5);
    let d = g.op("Div", &[&half, &n.output[0]], vec![])?;
    g.op("Mul", &[gy, &d], vec![])
}

fn reciprocal(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let sq = g.op("Mul", &[&n.output[0], &n.output[0]], vec![])?;
    let t = g.op("Mul", &[gy, &sq], vec![])?;
    g.op("Neg", &[&t], vec![])
}

fn erf(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    // d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
    let x = n.input[0].clone();
    let sq = g.op("Mul", &[&x, &x], vec![])?;
    let nsq = g.op("Neg", &[&sq], vec![])?;
    let e = g.op("Exp", &[&nsq], vec![])?;
    let c = g.scalar(std::f32::consts::FRAC_2_SQRT_PI);
    let d = g.op("Mul", &[&e, &c], vec![])?;
    g.op("Mul", &[gy, &d], vec![])
}

fn binary(g: &mut Graph, n: &NodeProto, gy: &str, needs: &[bool], res: &mut Grads) -> Result<()> {
    let op = n.op_type.as_str();
    let a = n.input[0].clone();
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let shape = |g: &Graph, i: usize| g.shape(&n.input[i]);
    match op {
        "Add" | "Sum" => {
            for (i, r) in res.iter_mut().enumerate() {
                if need(i) {
                    let s = shape(g, i)?;
                    *r = Some(g.reduce_to(gy, &s)?);
                }
            }
        }
        "Sub" => {
            if need(0) {
                let s = shape(g, 0)?;
                res[0] = Some(g.reduce_to(gy, &s)?);
            }
            if need(1) {
                let s = shape(g, 1)?;
                let r = g.reduce_to(gy, &s)?;
                res[1] = Some(g.op("Neg", &[&r], vec![])?);
            }
        }
        "Mul" => {
            let b = n.input[1].clone();
            if need(0) {
                let t = g.op("Mul", &[gy, &b], vec![])?;
                let s = shape(g, 0)?;
                res[0] = Some(g.reduce_to(&t, &s)?);
            }
            if need(1) {
                let t = g.op("Mul", &[gy, &a], vec![])?;
                let s = shape(g, 1)?;
                res[1] = Some(g.reduce_to(&t, &s)?);
            }
        }
        "Div" => {
            let b = n.input[1].clone();
            if need(0) {
                let t = g.op("Div", &[gy, &b], vec![])?;
                let s = shape(g, 0)?;
                res[0] = Some(g.reduce_to(&t, &s)?);
            }
            if need(1) {
                // d(a/b)/db = -(a/b)/b
                let q = g.op("Div", &[&n.output[0], &b], vec![])?;
                let t = g.op("Mul", &[gy, &q], vec![])?;
                let t = g.op("Neg", &[&t], vec![])?;
                let s = shape(g, 1)?;
                res[1] = Some(g.reduce_to(&t, &s)?);
            }
        }
        "Pow" => {
            let b = n.input[1].clone();
            if need(0) {
                // d(a^b)/da = b * a^(b-1)
                let one = g.scalar(1.0);
                let bm1 = g.op("Sub", &[&b, &one], vec![])?;
                let p = g.op("Pow", &[&a, &bm1], vec![])?;
                let d = g.op("Mul", &[&p, &b], vec![])?;
                let t = g.op("Mul", &[gy, &d], vec![])?;
                let s = shape(g, 0)?;
                res[0] = Some(g.reduce_to(&t, &s)?);
            }
            if need(1) {
                let l = g.op("Log", &[&a], vec![])?;
                let d = g.op("Mul", &[&n.output[0], &l], vec![])?;
                let t = g.op("Mul", &[gy, &d], vec![])?;
                let s = shape(g, 1)?;
                res[1] = Some(g.reduce_to(&t, &s)?);
            }
        }
        "Where" => {
            let zero = g.scalar(0.0);
            for (i, swap) in [(1, false), (2, true)] {
                if need(i) {
                    let t = if swap {
                        g.op("Where", &[&n.input[0], &zero, gy], vec![])?
                    } else {
                        g.op("Where", &[&n.input[0], gy, &zero], vec![])?
                    };
                    let s = shape(g, i)?;
                    res[i] = Some(g.reduce_to(&t, &s)?);
                }
            }
        }
        _ => {
            return Err(TrainError::UnsupportedOp {
                node: n.label(),
                op: n.op_type.clone(),
            })
        }
    }
    Ok(())
}

/// Max and Min (any number of inputs): the output's gradient goes to the
/// inputs equal to the output. Where k inputs tie for an element, each gets
/// 1/k of its gradient, so the shares always add up to the whole; with two
/// inputs this is the convention of PyTorch's maximum/minimum and of JAX.
/// Inputs whose gradient nobody needs still count in the ties.
fn extremum(g: &mut Graph, n: &NodeProto, gy: &str, needs: &[bool], res: &mut Grads) -> Result<()> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    if n.input.len() == 1 {
        res[0] = Some(gy.to_string());
        return Ok(());
    }
    let y = n.output[0].as_str();
    let mut masks = vec![];
    for x in &n.input {
        let eq = g.op("Equal", &[x, y], vec![])?;
        masks.push(g.op("Cast", &[&eq], vec![Attr::dtype("to", DataType::Float)])?);
    }
    let refs: Vec<&str> = masks.iter().map(String::as_str).collect();
    let ties = g.op("Sum", &refs, vec![])?;
    let share = g.op("Div", &[gy, &ties], vec![])?;
    for (i, m) in masks.iter().enumerate() {
        if need(i) {
            let t = g.op("Mul", &[&share, m], vec![])?;
            let s = g.shape(&n.input[i])?;
            res[i] = Some(g.reduce_to(&t, &s)?);
        }
    }
    Ok(())
}

/// The bias of a dense layer exported as MatMul + Add: the operand beside
/// the layer's output.
pub(super) fn dense_bias(n: &NodeProto, producers: &HashMap<&str, &str>) -> &'static [usize] {
    let dense = |i: usize| {
        n.input
            .get(i)
            .and_then(|s| producers.get(s.as_str()))
            .is_some_and(|op| matches!(*op, "MatMul" | "Gemm" | "Conv"))
    };
    if dense(0) {
        &[1]
    } else if dense(1) {
        &[0]
    } else {
        &[]
    }
}
