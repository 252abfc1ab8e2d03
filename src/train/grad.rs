//! Reverse-mode gradient rules, one per ONNX operator.
//!
//! Each rule is derived from the operator's definition in the ONNX spec and
//! is written with default-domain operators only, so the gradient graph runs
//! on any ONNX Runtime build and on tract. Rules read static shapes from the
//! working [`Graph`] to undo broadcasting, restore spatial sizes, and avoid
//! emitting work whose result nobody needs (`needs[i]` is false for inputs
//! that do not lead back to a trainable tensor).

use crate::onnx::pb::NodeProto;

use super::dtype::{F32, I64};
use super::geometry::{geometry, normalize_axis, swap_last, Geom};
use super::ir::Graph;
use super::node::{node_err, NodeExt};
use super::proto::Attr;
use super::{Result, TrainError};

type Grads = Vec<Option<String>>;

/// Operators whose outputs carry no gradient: the gradient stops there.
pub(crate) fn is_non_differentiable(op: &str) -> bool {
    matches!(
        op,
        "Shape"
            | "Size"
            | "Constant"
            | "ConstantOfShape"
            | "Range"
            | "Equal"
            | "Greater"
            | "Less"
            | "GreaterOrEqual"
            | "LessOrEqual"
            | "And"
            | "Or"
            | "Xor"
            | "Not"
            | "ArgMax"
            | "ArgMin"
            | "NonZero"
            | "OneHot"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Sign"
            | "IsNaN"
            | "RandomNormal"
            | "RandomUniform"
            | "RandomNormalLike"
            | "RandomUniformLike"
            | "Bernoulli"
    )
}

/// Gradients of `n`'s inputs given the gradients of its outputs.
pub(crate) fn backward(
    g: &mut Graph,
    n: &NodeProto,
    gys: &[Option<String>],
    needs: &[bool],
) -> Result<Grads> {
    let inp = |i: usize| n.input[i].clone();
    let out = |i: usize| n.output[i].clone();
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let mut res: Grads = vec![None; n.input.len()];
    let Some(gy) = gys.first().cloned().flatten() else {
        if n.op_type == "Split" {
            return split(g, n, gys, &mut res).map(|_| res);
        }
        return Ok(res);
    };
    let gy = gy.as_str();
    let op = n.op_type.as_str();
    match op {
        "Identity" => res[0] = Some(gy.to_string()),
        "Cast" => {
            let dt = g.info(&n.input[0])?.dtype;
            res[0] = Some(g.op("Cast", &[gy], vec![Attr::int("to", dt as i64)])?);
        }
        "Flatten" | "Reshape" | "Squeeze" | "Unsqueeze" => {
            let s = g.shape(&inp(0))?;
            res[0] = Some(g.reshape(gy, &s)?);
        }
        "Expand" => {
            let s = g.shape(&inp(0))?;
            res[0] = Some(g.reduce_to(gy, &s)?);
        }
        "Neg" => res[0] = Some(g.op("Neg", &[gy], vec![])?),
        "Relu" => {
            let zero = g.scalar(0.0);
            let mask = g.op("Greater", &[&out(0), &zero], vec![])?;
            res[0] = Some(mask_grad(g, &mask, gy)?);
        }
        "LeakyRelu" => {
            let alpha = g.scalar(n.float_attr("alpha", 0.01));
            let zero = g.scalar(0.0);
            let mask = g.op("Greater", &[&inp(0), &zero], vec![])?;
            let neg = g.op("Mul", &[gy, &alpha], vec![])?;
            res[0] = Some(g.op("Where", &[&mask, gy, &neg], vec![])?);
        }
        "Sigmoid" => {
            let one = g.scalar(1.0);
            let om = g.op("Sub", &[&one, &out(0)], vec![])?;
            let d = g.op("Mul", &[&out(0), &om], vec![])?;
            res[0] = Some(g.op("Mul", &[gy, &d], vec![])?);
        }
        "Tanh" => {
            let one = g.scalar(1.0);
            let sq = g.op("Mul", &[&out(0), &out(0)], vec![])?;
            let d = g.op("Sub", &[&one, &sq], vec![])?;
            res[0] = Some(g.op("Mul", &[gy, &d], vec![])?);
        }
        "Exp" => res[0] = Some(g.op("Mul", &[gy, &out(0)], vec![])?),
        "Log" => res[0] = Some(g.op("Div", &[gy, &inp(0)], vec![])?),
        "Sqrt" => {
            let half = g.scalar(0.5);
            let d = g.op("Div", &[&half, &out(0)], vec![])?;
            res[0] = Some(g.op("Mul", &[gy, &d], vec![])?);
        }
        "Reciprocal" => {
            let sq = g.op("Mul", &[&out(0), &out(0)], vec![])?;
            let t = g.op("Mul", &[gy, &sq], vec![])?;
            res[0] = Some(g.op("Neg", &[&t], vec![])?);
        }
        "Erf" => {
            // d/dx erf(x) = 2/sqrt(pi) * exp(-x^2)
            let x = inp(0);
            let sq = g.op("Mul", &[&x, &x], vec![])?;
            let nsq = g.op("Neg", &[&sq], vec![])?;
            let e = g.op("Exp", &[&nsq], vec![])?;
            let c = g.scalar(std::f32::consts::FRAC_2_SQRT_PI);
            let d = g.op("Mul", &[&e, &c], vec![])?;
            res[0] = Some(g.op("Mul", &[gy, &d], vec![])?);
        }
        "Gelu" => res[0] = Some(gelu(g, n, gy)?),
        "Clip" => {
            let bounded = (1..3).any(|i| n.input.get(i).is_some_and(|s| !s.is_empty()));
            res[0] = Some(if bounded {
                // min <= x <= max exactly where clipping left x unchanged:
                // one comparison instead of two and an And.
                let m = g.op("Equal", &[&out(0), &inp(0)], vec![])?;
                mask_grad(g, &m, gy)?
            } else {
                gy.to_string()
            });
        }
        "Softmax" => {
            let r = g.rank(&out(0))? as i64;
            let axis = normalize_axis(n.int_attr("axis", -1), r);
            let p = g.op("Mul", &[gy, &out(0)], vec![])?;
            let s = g.reduce("ReduceSum", &p, &[axis], true)?;
            let d = g.op("Sub", &[gy, &s], vec![])?;
            res[0] = Some(g.op("Mul", &[&d, &out(0)], vec![])?);
        }
        "LogSoftmax" => {
            let r = g.rank(&out(0))? as i64;
            let axis = normalize_axis(n.int_attr("axis", -1), r);
            let s = g.reduce("ReduceSum", gy, &[axis], true)?;
            let p = g.op("Exp", &[&out(0)], vec![])?;
            let t = g.op("Mul", &[&p, &s], vec![])?;
            res[0] = Some(g.op("Sub", &[gy, &t], vec![])?);
        }
        "Dropout" => {
            res[0] = Some(
                if n.output.len() > 1
                    && !n.output[1].is_empty()
                    && g.info.contains_key(&n.output[1])
                {
                    let ratio = n
                        .input
                        .get(1)
                        .filter(|s| !s.is_empty())
                        .and_then(|r| g.known(r))
                        .map_or(0.5, |k| k.vals[0]);
                    let m = g.op("Cast", &[&out(1)], vec![Attr::int("to", F32 as i64)])?;
                    let s = g.scalar((1.0 / (1.0 - ratio)) as f32);
                    let ms = g.op("Mul", &[&m, &s], vec![])?;
                    g.op("Mul", &[gy, &ms], vec![])?
                } else {
                    gy.to_string()
                },
            );
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Sum" | "Where" => {
            binary(g, n, gy, needs, &mut res)?;
        }
        "Max" | "Min" => extremum(g, n, gy, needs, &mut res)?,
        "MatMul" => matmul(g, n, gy, needs, &mut res)?,
        "Gemm" => gemm(g, n, gy, needs, &mut res)?,
        "Transpose" => {
            let r = g.rank(&inp(0))? as i64;
            let perm = n
                .ints_attr("perm")
                .unwrap_or_else(|| (0..r).rev().collect());
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p as usize] = i as i64;
            }
            res[0] = Some(g.transpose(gy, &inv)?);
        }
        "Concat" => {
            let r = g.rank(&out(0))? as i64;
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
        }
        "Split" => split(g, n, gys, &mut res)?,
        "Slice" if need(0) => res[0] = Some(slice(g, n, gy)?),
        "Gather" if need(0) => res[0] = Some(gather(g, n, gy)?),
        // Only the data input carries a gradient; the others are integers.
        "Slice" | "Gather" => {}
        "ReduceMean" | "ReduceSum" => {
            let xs = g.shape(&inp(0))?;
            let axes = g.reduce_axes(n, xs.len())?;
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
            res[0] = Some(g.op("Expand", &[&t, &s], vec![])?);
        }
        "GlobalAveragePool" => {
            let xs = g.shape(&inp(0))?;
            let count: i64 = xs[2..].iter().product();
            let c = g.scalar(1.0 / count as f32);
            let t = g.op("Mul", &[gy, &c], vec![])?;
            let s = g.const_i64(&xs);
            res[0] = Some(g.op("Expand", &[&t, &s], vec![])?);
        }
        "Conv" => conv(g, n, gy, needs, &mut res)?,
        "ConvTranspose" => conv_transpose(g, n, gy, needs, &mut res)?,
        "MaxPool" => {
            if n.output.len() < 2 || n.output[1].is_empty() {
                return Err(node_err(n, "MaxPool gradient needs the Indices output"));
            }
            if n.int_attr("storage_order", 0) != 0 {
                return Err(node_err(
                    n,
                    "MaxPool gradient with storage_order=1 is not supported",
                ));
            }
            if g.opset < 16 {
                return Err(node_err(
                    n,
                    "MaxPool gradient needs ScatterElements with reduction (opset >= 16)",
                ));
            }
            let xs = g.shape(&inp(0))?;
            let numel: i64 = xs.iter().product();
            let flat_i = g.reshape(&out(1), &[-1])?;
            let flat_g = g.reshape(gy, &[-1])?;
            let z = g.zeros(&[numel])?;
            let s = g.op(
                "ScatterElements",
                &[&z, &flat_i, &flat_g],
                vec![Attr::int("axis", 0), Attr::string("reduction", "add")],
            )?;
            res[0] = Some(g.reshape(&s, &xs)?);
        }
        "AveragePool" => res[0] = Some(average_pool(g, n, gy)?),
        _ => {
            return Err(TrainError::UnsupportedOp {
                node: n.label(),
                op: n.op_type.clone(),
            })
        }
    }
    for (i, r) in res.iter_mut().enumerate() {
        if !need(i) {
            *r = None;
        }
    }
    Ok(res)
}

/// `gy` where `mask` holds, zero elsewhere. ONNX Runtime runs Where with a
/// scalar branch through its general broadcasting loop, slower than a Cast
/// and a Mul together; the two differ only where `gy` is not finite.
fn mask_grad(g: &mut Graph, mask: &str, gy: &str) -> Result<String> {
    let m = g.op("Cast", &[mask], vec![Attr::int("to", F32 as i64)])?;
    g.op("Mul", &[gy, &m], vec![])
}

fn split(g: &mut Graph, n: &NodeProto, gys: &[Option<String>], res: &mut Grads) -> Result<()> {
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

/// `gy` put back where the slice read it, zeros elsewhere. Axes read with
/// step 1 are restored by one Pad. Strided axes (negative steps included)
/// are scattered back one at a time: along one axis the positions read are
/// distinct, so ScatterElements needs no reduction (which only opset 16
/// has), and a per-axis index vector broadcast by Expand keeps the
/// constants small.
fn slice(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let xs = g.shape(&n.input[0])?;
    let ranges = g.slice_ranges(n, &xs)?;
    if g.shape(gy)?.contains(&0) {
        return g.zeros(&xs);
    }
    let r = xs.len();
    let mut pads = vec![0i64; 2 * r];
    for &(a, s, e, step) in &ranges {
        if step == 1 {
            pads[a] = s;
            pads[a + r] = xs[a] - e.max(s);
        }
    }
    let mut t = gy.to_string();
    if pads.iter().any(|&p| p != 0) {
        let p = g.const_i64(&pads);
        t = g.op("Pad", &[&t, &p], vec![])?;
    }
    for &(a, s, _, step) in ranges.iter().filter(|r| r.3 != 1) {
        let ts = g.shape(&t)?;
        // slice_ranges clamps the start so that every position read,
        // s + i * step, lies inside the axis whatever the step's sign.
        let pos: Vec<i64> = (0..ts[a]).map(|i| s + i * step).collect();
        let mut dims = vec![1; r];
        dims[a] = ts[a];
        let pos = g.const_i64_shaped(&dims, &pos);
        let shape = g.const_i64(&ts);
        let idx = g.op("Expand", &[&pos, &shape], vec![])?;
        let mut full = ts;
        full[a] = xs[a];
        let z = g.zeros(&full)?;
        t = g.op(
            "ScatterElements",
            &[&z, &idx, &t],
            vec![Attr::int("axis", a as i64)],
        )?;
    }
    Ok(t)
}

/// Gather's data gradient: each gathered slice of `gy` added back into the
/// slice it was read from; repeated indices accumulate.
///
/// The data is viewed as `[P, V, D]` (before, along and after the axis) and
/// the `N` indices are flattened. From opset 16, ScatterND with
/// reduction="add" adds each `[D]` row of `gy` at its (p, index) address:
/// beyond the table-sized result, time and memory follow the size of `gy`,
/// which is what a large embedding table needs. Earlier opsets have no accumulating
/// scatter, so a one-hot `[V, N]` matrix times `gy` sums the rows instead,
/// at a cost of `V * N` that suits only small tables.
fn gather(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let xs = g.shape(&n.input[0])?;
    let a = normalize_axis(n.int_attr("axis", 0), xs.len() as i64) as usize;
    let v = xs[a];
    let p: i64 = xs[..a].iter().product();
    let d: i64 = xs[a + 1..].iter().product();
    let count: i64 = g.shape(&n.input[1])?.iter().product();
    if p * count * d == 0 {
        return g.zeros(&xs);
    }
    let idx = gather_indices(g, &n.input[1], v, count)?;
    let t = if g.opset >= 16 {
        let add = || vec![Attr::string("reduction", "add")];
        if p == 1 {
            let rows = g.reshape(&idx, &[count, 1])?;
            let gy2 = g.reshape(gy, &[count, d])?;
            let z = g.zeros(&[v, d])?;
            g.op("ScatterND", &[&z, &rows, &gy2], add())?
        } else {
            let gy3 = g.reshape(gy, &[p, count, d])?;
            let outer: Vec<i64> = (0..p).collect();
            let outer = g.const_i64_shaped(&[p, 1, 1], &outer);
            let inner = g.reshape(&idx, &[1, count, 1])?;
            let shape = g.const_i64(&[p, count, 1]);
            let outer = g.op("Expand", &[&outer, &shape], vec![])?;
            let inner = g.op("Expand", &[&inner, &shape], vec![])?;
            let addr = g.op("Concat", &[&outer, &inner], vec![Attr::int("axis", 2)])?;
            let z = g.zeros(&[p, v, d])?;
            g.op("ScatterND", &[&z, &addr, &gy3], add())?
        }
    } else {
        let rows: Vec<i64> = (0..v).collect();
        let rows = g.const_i64_shaped(&[v, 1], &rows);
        let cols = g.reshape(&idx, &[1, count])?;
        let eq = g.op("Equal", &[&rows, &cols], vec![])?;
        let onehot = g.op("Cast", &[&eq], vec![Attr::int("to", F32 as i64)])?;
        // [V, N] x [N, D], or batched over P: [V, N] x [P, N, D] -> [P, V, D].
        let gy3 = if p == 1 {
            g.reshape(gy, &[count, d])?
        } else {
            g.reshape(gy, &[p, count, d])?
        };
        g.op("MatMul", &[&onehot, &gy3], vec![])?
    };
    g.reshape(&t, &xs)
}

/// Gather's indices as a flat int64 vector, negative ones wrapped by `v`:
/// tract's ScatterND does not wrap them, and the one-hot comparison needs a
/// single spelling of each row.
fn gather_indices(g: &mut Graph, idx: &str, v: i64, count: i64) -> Result<String> {
    if let Some(k) = g.known(idx) {
        let vals: Vec<i64> = k
            .ints()
            .into_iter()
            .map(|i| if i < 0 { i + v } else { i })
            .collect();
        return Ok(g.const_i64(&vals));
    }
    let mut i = idx.to_string();
    if g.info(idx)?.dtype != I64 {
        i = g.op("Cast", &[&i], vec![Attr::int("to", I64 as i64)])?;
    }
    let i = g.reshape(&i, &[count])?;
    let zero = g.const_i64(&[0]);
    let neg = g.op("Less", &[&i, &zero], vec![])?;
    let vc = g.const_i64(&[v]);
    let wrapped = g.op("Add", &[&i, &vc], vec![])?;
    g.op("Where", &[&neg, &wrapped, &i], vec![])
}

fn gelu(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let x = n.input[0].as_str();
    let approx = n
        .string_attr("approximate")
        .unwrap_or_else(|| "none".into());
    let half = g.scalar(0.5);
    let one = g.scalar(1.0);
    let d = if approx == "tanh" {
        // y = 0.5 x (1 + t), t = tanh(u), u = c (x + k x^3)
        // dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 k x^2)
        let c = g.scalar((2.0 / std::f32::consts::PI).sqrt());
        let k = g.scalar(0.044715);
        let k3 = g.scalar(3.0 * 0.044715);
        let x2 = g.op("Mul", &[x, x], vec![])?;
        let x3 = g.op("Mul", &[&x2, x], vec![])?;
        let kx3 = g.op("Mul", &[&x3, &k], vec![])?;
        let inner = g.op("Add", &[x, &kx3], vec![])?;
        let u = g.op("Mul", &[&inner, &c], vec![])?;
        let t = g.op("Tanh", &[&u], vec![])?;
        let opt = g.op("Add", &[&one, &t], vec![])?;
        let a = g.op("Mul", &[&opt, &half], vec![])?;
        let t2 = g.op("Mul", &[&t, &t], vec![])?;
        let omt2 = g.op("Sub", &[&one, &t2], vec![])?;
        let k3x2 = g.op("Mul", &[&x2, &k3], vec![])?;
        let du = g.op("Add", &[&one, &k3x2], vec![])?;
        let du = g.op("Mul", &[&du, &c], vec![])?;
        let b = g.op("Mul", &[&omt2, &du], vec![])?;
        let b = g.op("Mul", &[&b, x], vec![])?;
        let b = g.op("Mul", &[&b, &half], vec![])?;
        g.op("Add", &[&a, &b], vec![])?
    } else {
        // y = x Phi(x); dy/dx = Phi(x) + x phi(x)
        let rs2 = g.scalar(std::f32::consts::FRAC_1_SQRT_2);
        let xs = g.op("Mul", &[x, &rs2], vec![])?;
        let e = g.op("Erf", &[&xs], vec![])?;
        let ope = g.op("Add", &[&one, &e], vec![])?;
        let cdf = g.op("Mul", &[&ope, &half], vec![])?;
        let x2 = g.op("Mul", &[x, x], vec![])?;
        let mh = g.scalar(-0.5);
        let ex = g.op("Mul", &[&x2, &mh], vec![])?;
        let ex = g.op("Exp", &[&ex], vec![])?;
        let c = g.scalar(1.0 / (2.0 * std::f32::consts::PI).sqrt());
        let pdf = g.op("Mul", &[&ex, &c], vec![])?;
        let xp = g.op("Mul", &[x, &pdf], vec![])?;
        g.op("Add", &[&cdf, &xp], vec![])?
    };
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
        masks.push(g.op("Cast", &[&eq], vec![Attr::int("to", F32 as i64)])?);
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

fn matmul(g: &mut Graph, n: &NodeProto, gy: &str, needs: &[bool], res: &mut Grads) -> Result<()> {
    let (a, b) = (n.input[0].clone(), n.input[1].clone());
    let (sa, sb) = (g.shape(&a)?, g.shape(&b)?);
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    if sa.len() == 1 || sb.len() == 1 {
        // Promote vectors to matrices so one code path serves all ranks.
        let a2 = if sa.len() == 1 {
            g.reshape(&a, &[1, sa[0]])?
        } else {
            a.clone()
        };
        let b2 = if sb.len() == 1 {
            g.reshape(&b, &[sb[0], 1])?
        } else {
            b.clone()
        };
        let y2 = g.op("MatMul", &[&a2, &b2], vec![])?;
        let ys = g.shape(&y2)?;
        let gy2 = g.reshape(gy, &ys)?;
        let node = NodeProto {
            input: vec![a2, b2],
            output: vec![y2],
            ..n.clone()
        };
        let mut r2 = vec![None, None];
        matmul(g, &node, &gy2, needs, &mut r2)?;
        if let Some(x) = r2[0].take() {
            res[0] = Some(g.reshape(&x, &sa)?);
        }
        if let Some(x) = r2[1].take() {
            res[1] = Some(g.reshape(&x, &sb)?);
        }
        return Ok(());
    }
    let gys = g.shape(gy)?;
    let (k, nn) = (sa[sa.len() - 1], sb[sb.len() - 1]);
    if sb.len() == 2 {
        // The common dense layer: fold batch dims into rows and use Gemm,
        // which transposes for free.
        let rows: i64 = gys[..gys.len() - 1].iter().product();
        let gy2 = g.reshape(gy, &[rows, nn])?;
        if need(0) {
            let t = g.op("Gemm", &[&gy2, &b], vec![Attr::int("transB", 1)])?;
            res[0] = Some(g.reshape(&t, &sa)?);
        }
        if need(1) {
            let a2 = g.reshape(&a, &[rows, k])?;
            res[1] = Some(g.op("Gemm", &[&a2, &gy2], vec![Attr::int("transA", 1)])?);
        }
        return Ok(());
    }
    if need(0) {
        let bt = g.transpose(&b, &swap_last(sb.len()))?;
        let t = g.op("MatMul", &[gy, &bt], vec![])?;
        res[0] = Some(g.reduce_to(&t, &sa)?);
    }
    if need(1) {
        let at = g.transpose(&a, &swap_last(sa.len()))?;
        let t = g.op("MatMul", &[&at, gy], vec![])?;
        res[1] = Some(g.reduce_to(&t, &sb)?);
    }
    Ok(())
}

fn gemm(g: &mut Graph, n: &NodeProto, gy: &str, needs: &[bool], res: &mut Grads) -> Result<()> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let (a, b) = (n.input[0].clone(), n.input[1].clone());
    let ta = n.int_attr("transA", 0) != 0;
    let tb = n.int_attr("transB", 0) != 0;
    let alpha = n.float_attr("alpha", 1.0);
    let beta = n.float_attr("beta", 1.0);
    let gemm = |g: &mut Graph, x: &str, y: &str, tx: bool, ty: bool| {
        let mut attrs = vec![
            Attr::int("transA", tx as i64),
            Attr::int("transB", ty as i64),
        ];
        if alpha != 1.0 {
            attrs.push(Attr::float("alpha", alpha));
        }
        g.op("Gemm", &[x, y], attrs)
    };
    if need(0) {
        res[0] = Some(if !ta {
            gemm(g, gy, &b, false, !tb)?
        } else {
            gemm(g, &b, gy, tb, true)?
        });
    }
    if need(1) {
        res[1] = Some(if !tb {
            gemm(g, &a, gy, !ta, false)?
        } else {
            gemm(g, gy, &a, true, ta)?
        });
    }
    if need(2) {
        let s = g.shape(&n.input[2])?;
        let mut t = gy.to_string();
        if beta != 1.0 {
            let c = g.scalar(beta);
            t = g.op("Mul", &[&t, &c], vec![])?;
        }
        res[2] = Some(g.reduce_to(&t, &s)?);
    }
    Ok(())
}

/// Spatial attributes shared by the convolutions a Conv gradient emits.
fn conv_attrs(
    strides: &[i64],
    dilations: &[i64],
    pads: &[i64],
    group: i64,
) -> Vec<crate::onnx::pb::AttributeProto> {
    vec![
        Attr::ints("strides", strides),
        Attr::ints("dilations", dilations),
        Attr::ints("pads", pads),
        Attr::int("group", group),
    ]
}

/// One-hot kernels beyond this many elements make the patch convolution of
/// [`weight_grad`] too large a constant; the batch-as-channel form is used.
const PATCH_KERNEL_LIMIT: i64 = 1 << 20;

/// The weight gradient of a (grouped) convolution, `[O, I/g, k...]`, where
/// `gy` holds the gradient of the `O` output channels and `x` the input the
/// kernel slid over.
///
/// Runtimes compute it from input patches times the output gradient, one
/// GEMM per image; the batch-as-channel convolution ([`weight_grad_by_conv`])
/// instead runs a convolution whose kernel is a whole feature map, which
/// ONNX Runtime executes as an inefficient matrix-vector product and needs
/// full-size transposes of both operands. So the patches are built first:
/// a depthwise convolution with one-hot kernels copies every tap of the
/// window into its own channel (exact: each output is one input times 1.0),
/// giving `[N, I*K, P]` for `K` taps and `P` output positions. Then
/// `dW[g] = sum_n gY[n, g] . patches[n, g]^T` is a batched MatMul whose
/// transposed operand ONNX Runtime folds into the GEMM, and a ReduceSum over
/// the batch. Kernels of size one with no padding skip the patch convolution.
fn weight_grad(
    g: &mut Graph,
    x: &str,
    gy: &str,
    group: i64,
    geo: &Geom,
    kernel: &[i64],
) -> Result<String> {
    let xs = g.shape(x)?;
    let ys = g.shape(gy)?;
    let (nb, c, m) = (xs[0], xs[1], ys[1]);
    let sp = xs.len() - 2;
    let taps: i64 = kernel.iter().product();
    let positions: i64 = ys[2..].iter().product();
    let pads = geo.pads();
    let pointwise = taps == 1 && pads.iter().all(|&p| p == 0);
    let patches = if pointwise {
        if geo.strides.iter().all(|&s| s == 1) {
            x.to_string()
        } else {
            let starts = g.const_i64(&vec![0; sp]);
            let ends = g.const_i64(&xs[2..]);
            let axes = g.const_i64(&(2..2 + sp as i64).collect::<Vec<_>>());
            let steps = g.const_i64(&geo.strides);
            g.op("Slice", &[x, &starts, &ends, &axes, &steps], vec![])?
        }
    } else if c * taps * taps <= PATCH_KERNEL_LIMIT {
        let mut onehot = vec![0f32; (c * taps * taps) as usize];
        for ch in 0..c {
            for t in 0..taps {
                onehot[((ch * taps + t) * taps + t) as usize] = 1.0;
            }
        }
        let dims = [vec![c * taps, 1], kernel.to_vec()].concat();
        let k = g.const_f32(&dims, &onehot);
        let mut attrs = conv_attrs(&geo.strides, &geo.dilations, &pads, c);
        attrs.push(Attr::ints("kernel_shape", kernel));
        g.op("Conv", &[x, &k], attrs)?
    } else {
        return weight_grad_by_conv(g, x, gy, group, geo, kernel);
    };
    // Transposed convolutions can leave input rows no output reaches; the
    // batch-as-channel form crops those, this one would mismatch.
    if g.shape(&patches)?[2..] != ys[2..] {
        return weight_grad_by_conv(g, x, gy, group, geo, kernel);
    }
    let (cg, mg) = (c / group, m / group);
    let lead: Vec<i64> = if group == 1 {
        vec![nb]
    } else {
        vec![nb, group]
    };
    let r = lead.len() as i64 + 2;
    let pr = g.reshape(
        &patches,
        &[lead.clone(), vec![cg * taps, positions]].concat(),
    )?;
    let yr = g.reshape(gy, &[lead, vec![mg, positions]].concat())?;
    let pt = g.transpose(&pr, &swap_last(r as usize))?;
    let prod = g.op("MatMul", &[&yr, &pt], vec![])?;
    let sum = g.reduce("ReduceSum", &prod, &[0], false)?;
    g.reshape(&sum, &[vec![m, cg], kernel.to_vec()].concat())
}

/// The weight gradient of a (grouped) convolution as one convolution over
/// the batch: batch becomes the reduction channel, the output gradient
/// becomes the kernel. Returns `[O, I/g, k...]` cropped to `kernel`.
fn weight_grad_by_conv(
    g: &mut Graph,
    x: &str,
    gy: &str,
    group: i64,
    geo: &Geom,
    kernel: &[i64],
) -> Result<String> {
    let xs = g.shape(x)?;
    let ys = g.shape(gy)?;
    let (nb, c) = (xs[0], xs[1]);
    let m = ys[1];
    let (cg, mg) = (c / group, m / group);
    let sp = xs.len() - 2;
    let rest_x = &xs[2..];
    let rest_y = &ys[2..];
    let tail = |k: i64| -> Vec<i64> { (k..k + sp as i64).collect() };
    // X -> [Cg, g*N, spatial]
    let xt = if group == 1 {
        g.transpose(x, &[vec![1, 0], tail(2)].concat())?
    } else {
        let x5 = g.reshape(x, &[vec![nb, group, cg], rest_x.to_vec()].concat())?;
        let t = g.transpose(&x5, &[vec![2, 1, 0], tail(3)].concat())?;
        g.reshape(&t, &[vec![cg, group * nb], rest_x.to_vec()].concat())?
    };
    // gY -> [g*Mg, N, spatial]
    let yt = if group == 1 {
        g.transpose(gy, &[vec![1, 0], tail(2)].concat())?
    } else {
        let y5 = g.reshape(gy, &[vec![nb, group, mg], rest_y.to_vec()].concat())?;
        let t = g.transpose(&y5, &[vec![1, 2, 0], tail(3)].concat())?;
        g.reshape(&t, &[vec![group * mg, nb], rest_y.to_vec()].concat())?
    };
    // Strides and dilations trade places in the adjoint.
    let w = g.op(
        "Conv",
        &[&xt, &yt],
        conv_attrs(&geo.dilations, &geo.strides, &geo.pads(), group),
    )?;
    let ws = g.shape(&w)?;
    let w = if ws[2..] != *kernel {
        let starts = g.const_i64(&vec![0; sp]);
        let ends = g.const_i64(kernel);
        let axes = g.const_i64(&tail(2));
        g.op("Slice", &[&w, &starts, &ends, &axes], vec![])?
    } else {
        w
    };
    // [Cg, O, k] -> [O, Cg, k]
    g.transpose(&w, &[vec![1, 0], tail(2)].concat())
}

fn conv(g: &mut Graph, n: &NodeProto, gy: &str, needs: &[bool], res: &mut Grads) -> Result<()> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let (x, w) = (n.input[0].clone(), n.input[1].clone());
    let xs = g.shape(&x)?;
    let wsh = g.shape(&w)?;
    let kernel = n
        .ints_attr("kernel_shape")
        .unwrap_or_else(|| wsh[2..].to_vec());
    let geo = geometry(n, &xs, &kernel, false)?;
    let group = n.int_attr("group", 1);
    let sp = xs.len() - 2;
    if need(0) {
        res[0] = Some(
            match input_grad_by_product(g, n, gy, &w, &geo, &kernel, group)? {
                Some(dx) => dx,
                None => input_grad_by_transpose(g, n, gy, &w, &geo, &kernel, group)?,
            },
        );
    }
    if need(1) {
        res[1] = Some(weight_grad(g, &x, gy, group, &geo, &kernel)?);
    }
    if need(2) {
        let axes: Vec<i64> = std::iter::once(0).chain(2..2 + sp as i64).collect();
        res[2] = Some(g.reduce("ReduceSum", gy, &axes, false)?);
    }
    Ok(())
}

/// dX = ConvTranspose(dY, W): output_padding restores the rows a strided
/// convolution dropped at the end.
fn input_grad_by_transpose(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    w: &str,
    geo: &Geom,
    kernel: &[i64],
    group: i64,
) -> Result<String> {
    let xs = g.shape(&n.input[0])?;
    let sp = kernel.len();
    let mut op_pad = vec![0; sp];
    for i in 0..sp {
        let natural = geo.strides[i] * (geo.out[i] - 1) + (kernel[i] - 1) * geo.dilations[i] + 1
            - geo.pads_begin[i]
            - geo.pads_end[i];
        op_pad[i] = xs[i + 2] - natural;
    }
    let mut attrs = conv_attrs(&geo.strides, &geo.dilations, &geo.pads(), group);
    attrs.push(Attr::ints("kernel_shape", kernel));
    if op_pad.iter().any(|&p| p != 0) {
        if op_pad.iter().any(|&p| p < 0) {
            return Err(node_err(
                n,
                format!("cannot restore input size with output_padding {op_pad:?}"),
            ));
        }
        attrs.push(Attr::ints("output_padding", &op_pad));
    }
    g.op("ConvTranspose", &[gy, w], attrs)
}

/// dX of a convolution in a form cheaper than ConvTranspose, where one
/// exists (None otherwise), both for stride 1:
/// - pointwise (1x1 kernel, no padding, one group): dX = W^T dY, one
///   MatMul over `[N, O, positions]`; ONNX Runtime's ConvTranspose adds a
///   col2im copy per image;
/// - depthwise (one input and one output channel per group): the forward
///   convolution of dY with the kernel flipped and the padding mirrored,
///   `d (k - 1) - p` on each side; ONNX Runtime's Conv runs a depthwise
///   layer about a fifth faster than its ConvTranspose.
fn input_grad_by_product(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    w: &str,
    geo: &Geom,
    kernel: &[i64],
    group: i64,
) -> Result<Option<String>> {
    if geo.strides.iter().any(|&s| s != 1) {
        return Ok(None);
    }
    let xs = g.shape(&n.input[0])?;
    let ws = g.shape(w)?;
    let (nb, c, m) = (xs[0], xs[1], ws[0]);
    let sp = kernel.len();
    let taps: i64 = kernel.iter().product();
    let unpadded = geo.pads().iter().all(|&p| p == 0);
    if group == 1 && taps == 1 && unpadded {
        let positions: i64 = xs[2..].iter().product();
        let w2 = g.reshape(w, &[m, c])?;
        let wt = g.transpose(&w2, &[1, 0])?;
        let gy3 = g.reshape(gy, &[nb, m, positions])?;
        let t = g.op("MatMul", &[&wt, &gy3], vec![])?;
        return Ok(Some(g.reshape(&t, &xs)?));
    }
    if group == c && m == c && ws.get(1) == Some(&1) {
        let reach = |i: usize| geo.dilations[i] * (kernel[i] - 1);
        let pads: Vec<i64> = (0..sp)
            .map(|i| reach(i) - geo.pads_begin[i])
            .chain((0..sp).map(|i| reach(i) - geo.pads_end[i]))
            .collect();
        if pads.iter().any(|&p| p < 0) {
            return Ok(None);
        }
        let starts = g.const_i64(&vec![-1; sp]);
        let ends = g.const_i64(&vec![i64::MIN; sp]);
        let axes = g.const_i64(&(2..2 + sp as i64).collect::<Vec<_>>());
        let steps = g.const_i64(&vec![-1; sp]);
        let flipped = g.op("Slice", &[w, &starts, &ends, &axes, &steps], vec![])?;
        let mut attrs = conv_attrs(&geo.strides, &geo.dilations, &pads, group);
        attrs.push(Attr::ints("kernel_shape", kernel));
        let dx = g.op("Conv", &[gy, &flipped], attrs)?;
        if g.shape(&dx)? == xs {
            return Ok(Some(dx));
        }
    }
    Ok(None)
}

fn conv_transpose(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    needs: &[bool],
    res: &mut Grads,
) -> Result<()> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let (x, w) = (n.input[0].clone(), n.input[1].clone());
    let xs = g.shape(&x)?;
    let wsh = g.shape(&w)?;
    let kernel = n
        .ints_attr("kernel_shape")
        .unwrap_or_else(|| wsh[2..].to_vec());
    let geo = geometry(n, &xs, &kernel, false)?;
    let group = n.int_attr("group", 1);
    let sp = xs.len() - 2;
    if need(0) {
        let mut attrs = conv_attrs(&geo.strides, &geo.dilations, &geo.pads(), group);
        attrs.push(Attr::ints("kernel_shape", &kernel));
        res[0] = Some(g.op("Conv", &[gy, &w], attrs)?);
    }
    if need(1) {
        // Y[n,m,o] += X[n,c,h] W[c,m,i] with o = h*s + i*d - p: the same
        // correlation as a Conv weight gradient with X and dY swapped.
        // weight_grad's result is laid out [C, M/g, k], the ConvTranspose weight layout.
        res[1] = Some(weight_grad(g, gy, &x, group, &geo, &kernel)?);
    }
    if need(2) {
        let axes: Vec<i64> = std::iter::once(0).chain(2..2 + sp as i64).collect();
        res[2] = Some(g.reduce("ReduceSum", gy, &axes, false)?);
    }
    Ok(())
}

fn average_pool(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let x = &n.input[0];
    let xs = g.shape(x)?;
    let kernel = n
        .ints_attr("kernel_shape")
        .ok_or_else(|| node_err(n, "kernel_shape missing"))?;
    let geo = geometry(n, &xs, &kernel, n.int_attr("ceil_mode", 0) != 0)?;
    if geo.dilations.iter().any(|&d| d != 1) {
        return Err(node_err(
            n,
            "gradient of dilated AveragePool is not supported",
        ));
    }
    let sp = xs.len() - 2;
    let c = xs[1];
    let include_pad = n.int_attr("count_include_pad", 0) != 0;
    // Per-output-position divisor, known statically.
    let out = geo.out.clone();
    let total: i64 = out.iter().product();
    let mut inv = vec![0f32; total as usize];
    for (flat, v) in inv.iter_mut().enumerate() {
        let mut rem = flat as i64;
        let mut count = 1i64;
        for i in (0..sp).rev() {
            let o = rem % out[i];
            rem /= out[i];
            let start = o * geo.strides[i] - geo.pads_begin[i];
            let end = start + kernel[i];
            let (lo, hi) = if include_pad {
                (
                    start.max(-geo.pads_begin[i]),
                    end.min(xs[i + 2] + geo.pads_end[i]),
                )
            } else {
                (start.max(0), end.min(xs[i + 2]))
            };
            count *= (hi - lo).max(1);
        }
        *v = 1.0 / count as f32;
    }
    let mut inv_dims = vec![1, 1];
    inv_dims.extend(&out);
    let invc = g.const_f32(&inv_dims, &inv);
    let scaled = g.op("Mul", &[gy, &invc], vec![])?;
    let ones_dims: Vec<i64> = [vec![c, 1], kernel.clone()].concat();
    let ones = g.const_f32(
        &ones_dims,
        &vec![1.0; ones_dims.iter().product::<i64>() as usize],
    );
    let mut op_pad = vec![0; sp];
    let mut crop = false;
    for i in 0..sp {
        let natural =
            geo.strides[i] * (out[i] - 1) + kernel[i] - geo.pads_begin[i] - geo.pads_end[i];
        let d = xs[i + 2] - natural;
        if d >= 0 {
            op_pad[i] = d;
        } else {
            crop = true;
        }
    }
    let mut attrs = conv_attrs(&geo.strides, &vec![1; sp], &geo.pads(), c);
    attrs.push(Attr::ints("kernel_shape", &kernel));
    if op_pad.iter().any(|&p| p != 0) {
        attrs.push(Attr::ints("output_padding", &op_pad));
    }
    let t = g.op("ConvTranspose", &[&scaled, &ones], attrs)?;
    if crop {
        let starts = g.const_i64(&vec![0; sp]);
        let ends = g.const_i64(&xs[2..]);
        let axes = g.const_i64(&(2..2 + sp as i64).collect::<Vec<_>>());
        return g.op("Slice", &[&t, &starts, &ends, &axes], vec![]);
    }
    Ok(t)
}
