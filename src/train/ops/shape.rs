//! Operators that move elements without computing new values: reshapes,
//! transposes, expansion, concatenation and splits, and the Shape and Size
//! of a tensor.
//!
//! Exporters that leave constant folding off compute target shapes at run
//! time (`Shape -> Gather -> Concat -> Reshape`); these rules evaluate
//! such chains while building, so every shape in the training graph is
//! static. Their gradients put each element's gradient back where the
//! element came from.

use crate::onnx::pb::NodeProto;

use super::{has_input, input, input_value, same_values, Grad, Grads, OpRule};
use crate::onnx::DataType;
use crate::train::geometry::{axes_of, axis_of, broadcast, normalize_axis};
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Reshape", OpRule::new(reshape).evaluate(same_values).grad(Grad::Unary(reshape_back))),
    ("Flatten", OpRule::new(flatten).evaluate(same_values).grad(Grad::Unary(reshape_back))),
    ("Squeeze", OpRule::new(squeeze).evaluate(same_values).grad(Grad::Unary(reshape_back))),
    ("Unsqueeze", OpRule::new(squeeze).evaluate(same_values).grad(Grad::Unary(reshape_back))),
    ("Transpose", OpRule::new(transpose).grad(Grad::Unary(transpose_back))),
    ("Expand", OpRule::new(expand).grad(Grad::Unary(expand_back))),
    ("Concat", OpRule::new(concat).evaluate(concat_values).grad(Grad::Inputs(concat_grad))),
    ("Split", OpRule::new(split).grad(Grad::Outputs(split_grad))),
    ("Shape", OpRule::new(shape).evaluate(shape_values).grad(Grad::Stops)),
    ("Size", OpRule::new(size).evaluate(size_value).grad(Grad::Stops)),
];

fn flatten(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    // Flatten alone also accepts axis = rank.
    let (axis, r) = (n.int_attr("axis", 1), x.shape.len());
    let a = if axis == r as i64 {
        r
    } else {
        axis_of(n, axis, r)?
    };
    let shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn reshape(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let spec = g.known_input(n, 1)?.ints();
    let allowzero = n.int_attr("allowzero", 0) != 0;
    let mut shape: Vec<i64> = spec
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 0 && !allowzero { x.shape[i] } else { d })
        .collect();
    if let Some(p) = shape.iter().position(|&d| d == -1) {
        let rest: i64 = shape.iter().filter(|&&d| d != -1).product();
        shape[p] = x.numel() / rest.max(1);
    }
    if shape.iter().product::<i64>() != x.numel() {
        return Err(node_err(
            n,
            format!("cannot reshape {:?} to {:?}", x.shape, spec),
        ));
    }
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn transpose(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let r = x.shape.len() as i64;
    let perm = n
        .ints_attr("perm")
        .unwrap_or_else(|| (0..r).rev().collect());
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..r).collect::<Vec<_>>() {
        return Err(node_err(
            n,
            format!("perm {perm:?} is not a permutation of the {r} axes"),
        ));
    }
    Ok(vec![Info {
        dtype: x.dtype,
        shape: perm.iter().map(|&p| x.shape[p as usize]).collect(),
    }])
}

fn concat(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let a = axis_of(n, n.int_attr("axis", 0), x.shape.len())?;
    let mut shape = x.shape.clone();
    shape[a] = 0;
    for i in 0..n.input.len() {
        let s = &input(g, n, i)?.shape;
        let fits = s.len() == x.shape.len() && (0..s.len()).all(|j| j == a || s[j] == x.shape[j]);
        if !fits {
            return Err(node_err(
                n,
                format!("inputs {:?} and {s:?} do not concatenate", x.shape),
            ));
        }
        shape[a] += s[a];
    }
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn split(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let a = axis_of(n, n.int_attr("axis", 0), x.shape.len())?;
    let sizes = split_sizes(g, n, x.shape[a])?;
    Ok(sizes
        .iter()
        .map(|&s| {
            let mut shape = x.shape.clone();
            shape[a] = s;
            Info {
                dtype: x.dtype,
                shape,
            }
        })
        .collect())
}

/// Squeeze and Unsqueeze.
fn squeeze(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let op = n.op_type.as_str();
    let x = input(g, n, 0)?;
    let axes = if has_input(n, 1) {
        g.known_input(n, 1)?.ints()
    } else {
        n.ints_attr("axes").unwrap_or_default()
    };
    let shape = if op == "Squeeze" {
        let r = x.shape.len();
        let axes: Vec<usize> = if axes.is_empty() {
            (0..r).filter(|&i| x.shape[i] == 1).collect()
        } else {
            axes_of(n, &axes, r)?
        };
        x.shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    } else {
        let r = x.shape.len() + axes.len();
        let axes = axes_of(n, &axes, r)?;
        let mut it = x.shape.iter();
        (0..r)
            .map(|i| {
                if axes.contains(&i) {
                    1
                } else {
                    *it.next().unwrap()
                }
            })
            .collect()
    };
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn expand(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let s = g.known_input(n, 1)?.ints();
    let shape = broadcast(&[&x.shape, &s]).ok_or_else(|| node_err(n, "shapes do not broadcast"))?;
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn shape(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let r = input(g, n, 0)?.shape.len() as i64;
    let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
    let (s, e) = (clamp(n.int_attr("start", 0)), clamp(n.int_attr("end", r)));
    Ok(vec![Info {
        dtype: DataType::Int64,
        shape: vec![(e - s).max(0)],
    }])
}

fn size(_: &Graph, _: &NodeProto) -> Result<Vec<Info>> {
    Ok(vec![Info {
        dtype: DataType::Int64,
        shape: vec![],
    }])
}

/// Sizes of the parts a Split cuts along its axis of size `dim`.
fn split_sizes(g: &Graph, n: &NodeProto, dim: i64) -> Result<Vec<i64>> {
    if n.input.get(1).is_some_and(|s| !s.is_empty()) {
        return Ok(g.known_input(n, 1)?.ints());
    }
    if let Some(s) = n.ints_attr("split") {
        return Ok(s);
    }
    let k = n.output.len() as i64;
    let k = n.int_attr("num_outputs", k);
    let chunk = (dim + k - 1) / k;
    Ok((0..k).map(|i| (dim - i * chunk).clamp(0, chunk)).collect())
}

fn shape_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    let s = &g.info.get(&n.input[0])?.shape;
    let r = s.len() as i64;
    let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
    let (a, b) = (clamp(n.int_attr("start", 0)), clamp(n.int_attr("end", r)));
    Some(
        s[a as usize..b.max(a) as usize]
            .iter()
            .map(|&d| d as f64)
            .collect(),
    )
}

fn size_value(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    Some(vec![
        g.info.get(&n.input[0])?.shape.iter().product::<i64>() as f64
    ])
}

fn concat_values(g: &Graph, n: &NodeProto, out: &Info) -> Option<Vec<f64>> {
    let mut v = vec![];
    for i in 0..n.input.len() {
        v.extend(input_value(g, n, i)?.vals.iter().copied());
    }
    (out.shape.len() == 1).then_some(())?;
    Some(v)
}

/// Reshape, Flatten, Squeeze and Unsqueeze: the gradient takes the input's shape back.
fn reshape_back(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let s = g.shape(&n.input[0])?;
    g.reshape(gy, &s)
}

fn expand_back(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let s = g.shape(&n.input[0])?;
    g.reduce_to(gy, &s)
}

fn transpose_back(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let r = g.rank(&n.input[0])? as i64;
    let perm = n
        .ints_attr("perm")
        .unwrap_or_else(|| (0..r).rev().collect());
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    g.transpose(gy, &inv)
}

fn concat_grad(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    needs: &[bool],
    res: &mut Grads,
) -> Result<()> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let r = g.rank(&n.output[0])? as i64;
    let axis = normalize_axis(n.int_attr("axis", 0), r);
    let sizes: Vec<i64> = n
        .input
        .iter()
        .map(|i| g.shape(i).map(|s| s[axis as usize]))
        .collect::<Result<_>>()?;
    let split = g.const_i64(&sizes);
    let parts = g.op_n(
        "Split",
        &[gy, &split],
        sizes.len(),
        vec![Attr::int("axis", axis)],
    )?;
    for (i, p) in parts.into_iter().enumerate() {
        if need(i) {
            res[i] = Some(p);
        }
    }
    Ok(())
}

fn split_grad(g: &mut Graph, n: &NodeProto, gys: &[Option<String>], res: &mut Grads) -> Result<()> {
    let xs = g.shape(&n.input[0])?;
    let axis = normalize_axis(n.int_attr("axis", 0), xs.len() as i64);
    let mut parts = vec![];
    for (i, o) in n.output.iter().enumerate() {
        parts.push(match gys.get(i).cloned().flatten() {
            Some(gp) => gp,
            None => {
                let s = g.shape(o)?;
                g.zeros(&s)?
            }
        });
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    res[0] = Some(g.op("Concat", &refs, vec![Attr::int("axis", axis)])?);
    Ok(())
}
