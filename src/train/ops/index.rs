//! Operators that read or write by index: Gather, GatherElements, the
//! scatters, OneHot.
//!
//! Gather is how embeddings are looked up, so its table is trained like a
//! dense weight, and its gradient must add every looked-up row's gradient
//! back into the row it came from, repeated indices included.

use crate::onnx::pb::{NodeProto, TensorProto};

use super::{input, input_value, Grad, Grads, OpRule, Params};
use crate::onnx::DataType;
use crate::train::geometry::{axis_of, normalize_axis};
use crate::train::ir::{Graph, Info};
use crate::train::node::NodeExt;
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Gather", OpRule::new(gather).evaluate(gather_values).grad(Grad::Inputs(gather_grad)).params(Params::Embedding)),
    ("GatherElements", OpRule::new(gather_elements)),
    ("ScatterElements", OpRule::new(scatter)),
    ("ScatterND", OpRule::new(scatter)),
    ("OneHot", OpRule::new(one_hot).grad(Grad::Stops)),
];

fn gather(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let (x, idx) = (input(g, n, 0)?, input(g, n, 1)?);
    let a = axis_of(n, n.int_attr("axis", 0), x.shape.len())?;
    let mut shape = x.shape[..a].to_vec();
    shape.extend(&idx.shape);
    shape.extend(&x.shape[a + 1..]);
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn gather_elements(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    Ok(vec![Info {
        dtype: input(g, n, 0)?.dtype,
        shape: input(g, n, 1)?.shape.clone(),
    }])
}

fn scatter(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    Ok(vec![input(g, n, 0)?.clone()])
}

fn one_hot(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let idx = input(g, n, 0)?;
    let depth = g.known_input(n, 1)?.vals[0] as i64;
    let r = idx.shape.len() + 1;
    let a = axis_of(n, n.int_attr("axis", -1), r)?;
    let mut shape = idx.shape.clone();
    shape.insert(a, depth);
    Ok(vec![Info {
        dtype: input(g, n, 2)?.dtype,
        shape,
    }])
}

fn gather_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    let (x, idx) = (input_value(g, n, 0)?, input_value(g, n, 1)?);
    (x.dims.len() == 1).then_some(())?;
    let d = x.vals.len() as i64;
    // An index out of range is left for the runtime to refuse.
    idx.vals
        .iter()
        .map(|&i| {
            let i = i as i64;
            let j = if i < 0 { i + d } else { i };
            (0..d).contains(&j).then(|| x.vals[j as usize])
        })
        .collect::<Option<_>>()
}

/// Only the data input carries a gradient; the indices are integers.
fn gather_grad(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    needs: &[bool],
    res: &mut Grads,
) -> Result<()> {
    if needs.first().copied().unwrap_or(false) {
        res[0] = Some(gather_back(g, n, gy)?);
    }
    Ok(())
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
fn gather_back(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
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
        let onehot = g.op("Cast", &[&eq], vec![Attr::dtype("to", DataType::Float)])?;
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
    if g.info(idx)?.dtype != DataType::Int64 {
        i = g.op("Cast", &[&i], vec![Attr::dtype("to", DataType::Int64)])?;
    }
    let i = g.reshape(&i, &[count])?;
    let zero = g.const_i64(&[0]);
    let neg = g.op("Less", &[&i, &zero], vec![])?;
    let vc = g.const_i64(&[v]);
    let wrapped = g.op("Add", &[&i, &vc], vec![])?;
    g.op("Where", &[&neg, &wrapped, &i], vec![])
}

/// A float table that Gather reads whole rows of (axis 0, two or more
/// dimensions) is an embedding, trained like a dense weight. Other float
/// tensors read by Gather, such as lookup constants, stay frozen.
pub(super) fn embedding_table(n: &NodeProto, t: &TensorProto) -> bool {
    let r = t.dims.len() as i64;
    let axis = n.int_attr("axis", 0);
    r >= 2 && (axis == 0 || axis == -r)
}
