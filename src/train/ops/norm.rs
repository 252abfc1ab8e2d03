//! Normalizations: BatchNormalization and LayerNormalization.
//!
//! Both are expanded into primitive operators in the forward pass (tract
//! and every ORT build run those in training mode) but keep a single
//! closed-form backward step, which is both cheaper than chaining the
//! primitives' rules and closer in rounding to the frameworks we compare
//! to. The builder calls the training forms here and records what they
//! return on its tape for the backward step.

use crate::onnx::pb::NodeProto;

use super::{input, Grads, OpRule, Params};
use crate::onnx::DataType;
use crate::train::geometry::axis_of;
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::{GraphTarget, Result};

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("BatchNormalization", OpRule::new(batch_norm).params(Params::Inputs(&[1, 2]))),
    ("LayerNormalization", OpRule::new(layer_norm).params(Params::Inputs(&[1, 2]))),
];

fn batch_norm(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?.clone();
    let c = vec![x.shape[1]];
    Ok(vec![
        x.clone(),
        Info {
            dtype: x.dtype,
            shape: c.clone(),
        },
        Info {
            dtype: x.dtype,
            shape: c,
        },
    ])
}

fn layer_norm(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?.clone();
    let a = axis_of(n, n.int_attr("axis", -1), x.shape.len())?;
    let mut stat = x.shape.clone();
    stat[a..].iter_mut().for_each(|d| *d = 1);
    Ok(vec![
        x.clone(),
        Info {
            dtype: DataType::Float,
            shape: stat.clone(),
        },
        Info {
            dtype: DataType::Float,
            shape: stat,
        },
    ])
}

/// Batch statistics over `axes`, kept dims: the mean, the centred input,
/// the (biased) variance and 1 / sqrt(variance + eps).
struct Moments {
    mean: String,
    xc: String,
    var: String,
    invstd: String,
}

fn moments(g: &mut Graph, x: &str, axes: &[i64], eps: f32) -> Result<Moments> {
    let mean = g.reduce("ReduceMean", x, axes, true)?;
    let xc = g.op("Sub", &[x, &mean], vec![])?;
    let sq = g.op("Mul", &[&xc, &xc], vec![])?;
    let var = g.reduce("ReduceMean", &sq, axes, true)?;
    let e = g.scalar(eps);
    let ve = g.op("Add", &[&var, &e], vec![])?;
    let sd = g.op("Sqrt", &[&ve], vec![])?;
    let invstd = g.op("Reciprocal", &[&sd], vec![])?;
    Ok(Moments {
        mean,
        xc,
        var,
        invstd,
    })
}

/// A training-mode BatchNormalization as the backward step needs it:
/// y = xc * k + b_r over `axes` with k = scale_r * invstd.
pub(crate) struct BatchNormTape {
    pub node: NodeProto,
    xc: String,
    invstd: String,
    k: String,
    axes: Vec<i64>,
    count: i64,
}

/// BatchNormalization with batch statistics; running statistics updated
/// as the ONNX spec defines them (biased variance, `momentum` weighs the
/// old value) for those listed in `stats` (input, updated output), whose
/// output names are filled in here.
pub(crate) fn batch_norm_training(
    g: &mut Graph,
    n: &NodeProto,
    target: GraphTarget,
    stats: &mut [(String, String)],
) -> Result<BatchNormTape> {
    let [x, scale, bias, rm, rv] =
        [0, 1, 2, 3, 4].map(|i| n.input.get(i).cloned().unwrap_or_default());
    let xs = g.shape(&x)?;
    let r = xs.len();
    if r < 2 || xs[1] < 1 {
        return Err(node_err(n, format!("input {xs:?} has no channel axis")));
    }
    let c = xs[1];
    let eps = n.float_attr("epsilon", 1e-5);
    let momentum = n.float_attr("momentum", 0.9);
    let axes: Vec<i64> = std::iter::once(0).chain(2..r as i64).collect();
    let count: i64 = xs.iter().product::<i64>() / c;
    let mut bshape = vec![1; r];
    bshape[1] = c;
    let Moments {
        mean,
        xc,
        var,
        invstd,
    } = moments(g, &x, &axes, eps)?;
    let scale_r = g.reshape(&scale, &bshape)?;
    let k = g.op("Mul", &[&scale_r, &invstd], vec![])?;
    // Per channel, for the running statistics and the inference-form
    // operator.
    let mean_c = g.reshape(&mean, &[c])?;
    let var_c = g.reshape(&var, &[c])?;
    let output = NodeProto {
        output: vec![n.output[0].clone()],
        name: format!("{}/output", n.label()),
        ..Default::default()
    };
    if target == GraphTarget::OnnxRuntime {
        // The operator in inference form, fed the batch statistics: one
        // pass over the tensor where Mul then Add take two.
        g.push(NodeProto {
            input: vec![
                x.clone(),
                scale.clone(),
                bias.clone(),
                mean_c.clone(),
                var_c.clone(),
            ],
            op_type: "BatchNormalization".into(),
            attribute: vec![Attr::float("epsilon", eps)],
            ..output
        })?;
    } else {
        let bias_r = g.reshape(&bias, &bshape)?;
        let y0 = g.op("Mul", &[&xc, &k], vec![])?;
        g.push(NodeProto {
            input: vec![y0, bias_r],
            op_type: "Add".into(),
            ..output
        })?;
    }
    // Running statistics, when the model keeps them.
    let keep = g.scalar(momentum);
    let blend = g.scalar(1.0 - momentum);
    for (stat, batch) in [(&rm, &mean_c), (&rv, &var_c)] {
        if let Some(entry) = stats.iter_mut().find(|(s, _)| s == stat) {
            let old = g.op("Mul", &[stat, &keep], vec![])?;
            let new = g.op("Mul", &[batch, &blend], vec![])?;
            let out = format!("{stat}_updated");
            g.reserve_name(&out);
            g.push(NodeProto {
                input: vec![old, new],
                output: vec![out.clone()],
                name: format!("{}/update_{stat}", n.label()),
                op_type: "Add".into(),
                ..Default::default()
            })?;
            entry.1 = out;
        }
    }
    Ok(BatchNormTape {
        node: n.clone(),
        xc,
        invstd,
        k,
        axes,
        count,
    })
}

impl BatchNormTape {
    /// Gradients of the node's inputs from that of its output.
    pub(crate) fn backward(
        &self,
        g: &mut Graph,
        gy: &str,
        target: GraphTarget,
        needs: &[bool],
    ) -> Result<Grads> {
        let (n, xc, invstd, k) = (
            &self.node,
            self.xc.as_str(),
            self.invstd.as_str(),
            self.k.as_str(),
        );
        let (axes, count) = (self.axes.as_slice(), self.count);
        let c = g.shape(&n.input[0])?[1];
        let mut res = vec![None; n.input.len()];
        // s1 = sum(gy), s2 = sum(gy * xc); dscale = s2 * invstd, dbias = s1;
        // dx = k * (gy - s1/M - xc * invstd^2 * s2/M).
        let s1 = g.reduce("ReduceSum", gy, axes, true)?;
        let gxc = g.op("Mul", &[gy, xc], vec![])?;
        let s2 = g.reduce("ReduceSum", &gxc, axes, true)?;
        if needs.get(2).copied().unwrap_or(false) {
            res[2] = Some(g.reshape(&s1, &[c])?);
        }
        if needs.get(1).copied().unwrap_or(false) {
            let t = g.op("Mul", &[&s2, invstd], vec![])?;
            res[1] = Some(g.reshape(&t, &[c])?);
        }
        if needs[0] {
            let m = g.scalar(1.0 / count as f32);
            let a1 = g.op("Mul", &[&s1, &m], vec![])?;
            let iv2 = g.op("Mul", &[invstd, invstd], vec![])?;
            let a2 = g.op("Mul", &[&s2, &iv2], vec![])?;
            let a2 = g.op("Mul", &[&a2, &m], vec![])?;
            if target == GraphTarget::OnnxRuntime {
                // dx = k gy - k a1 - (k a2) xc. The first two terms are a
                // per-channel affine map of gy, which BatchNormalization in
                // inference form computes in one pass (mean 0, variance 1,
                // epsilon 0); three passes over the tensor instead of four.
                let shift = g.op("Mul", &[k, &a1], vec![])?;
                let shift = g.op("Neg", &[&shift], vec![])?;
                let shift = g.reshape(&shift, &[c])?;
                let scale = g.reshape(k, &[c])?;
                let zero = g.const_f32(&[c], &vec![0.0; c as usize]);
                let one = g.const_f32(&[c], &vec![1.0; c as usize]);
                let affine = g.op(
                    "BatchNormalization",
                    &[gy, &scale, &shift, &zero, &one],
                    vec![Attr::float("epsilon", 0.0)],
                )?;
                let c2 = g.op("Mul", &[k, &a2], vec![])?;
                let t = g.op("Mul", &[xc, &c2], vec![])?;
                res[0] = Some(g.op("Sub", &[&affine, &t], vec![])?);
                return Ok(res);
            }
            let t = g.op("Mul", &[xc, &a2], vec![])?;
            let t = g.op("Add", &[&t, &a1], vec![])?;
            let d = g.op("Sub", &[gy, &t], vec![])?;
            res[0] = Some(g.op("Mul", &[&d, k], vec![])?);
        }
        Ok(res)
    }
}

/// A LayerNormalization over `axes` (the trailing ones) as the backward
/// step needs it.
pub(crate) struct LayerNormTape {
    pub node: NodeProto,
    xhat: String,
    invstd: String,
    axes: Vec<i64>,
}

/// LayerNormalization on the way to the loss, keeping the normalized input
/// and the inverse standard deviation for the backward step.
pub(crate) fn layer_norm_training(g: &mut Graph, n: &NodeProto) -> Result<LayerNormTape> {
    if n.output.iter().skip(1).any(|o| !o.is_empty()) {
        return Err(node_err(
            n,
            "LayerNormalization's Mean/InvStdDev outputs are not supported in training",
        ));
    }
    let x = n.input[0].clone();
    let r = g.rank(&x)? as i64;
    let a = n.int_attr("axis", -1);
    let a = if a < 0 { a + r } else { a };
    let axes: Vec<i64> = (a..r).collect();
    let f32_stash = n.int_attr("stash_type", 1) == DataType::Float.code() as i64;
    let (xhat, invstd) = if g.info(&x)?.dtype == DataType::Float && f32_stash {
        // The fused node, asked for its optional Mean and InvStdDev
        // outputs: three nodes instead of ten, and each node costs the
        // runtime a dispatch however small its tensors are.
        let mean = g.fresh("ln_mean");
        let invstd = g.fresh("ln_invstd");
        let mut fused = n.clone();
        fused.output = vec![n.output[0].clone(), mean.clone(), invstd.clone()];
        g.push(fused)?;
        let xc = g.op("Sub", &[&x, &mean], vec![])?;
        (g.op("Mul", &[&xc, &invstd], vec![])?, invstd)
    } else {
        let m = moments(g, &x, &axes, n.float_attr("epsilon", 1e-5))?;
        let xhat = g.op("Mul", &[&m.xc, &m.invstd], vec![])?;
        let has_bias = n.input.get(2).is_some_and(|s| !s.is_empty());
        let (op, ins) = if has_bias {
            let y = g.op("Mul", &[&xhat, &n.input[1]], vec![])?;
            ("Add", vec![y, n.input[2].clone()])
        } else {
            ("Mul", vec![xhat.clone(), n.input[1].clone()])
        };
        g.push(NodeProto {
            input: ins,
            output: vec![n.output[0].clone()],
            name: format!("{}/output", n.label()),
            op_type: op.into(),
            ..Default::default()
        })?;
        (xhat, m.invstd)
    };
    Ok(LayerNormTape {
        node: n.clone(),
        xhat,
        invstd,
        axes,
    })
}

impl LayerNormTape {
    /// Gradients of the node's inputs from that of its output.
    pub(crate) fn backward(&self, g: &mut Graph, gy: &str, needs: &[bool]) -> Result<Grads> {
        let (n, xhat, invstd) = (&self.node, self.xhat.as_str(), self.invstd.as_str());
        let axes = self.axes.as_slice();
        let mut res = vec![None; n.input.len()];
        let r = g.rank(gy)? as i64;
        let lead: Vec<i64> = (0..r - axes.len() as i64).collect();
        if needs.get(1).copied().unwrap_or(false) {
            let t = g.op("Mul", &[gy, xhat], vec![])?;
            let s = g.shape(&n.input[1])?;
            let t = g.reduce("ReduceSum", &t, &lead, false)?;
            res[1] = Some(g.reshape(&t, &s)?);
        }
        if needs.get(2).copied().unwrap_or(false) {
            let s = g.shape(&n.input[2])?;
            let t = g.reduce("ReduceSum", gy, &lead, false)?;
            res[2] = Some(g.reshape(&t, &s)?);
        }
        if needs[0] {
            let gxh = g.op("Mul", &[gy, &n.input[1]], vec![])?;
            let m1 = g.reduce("ReduceMean", &gxh, axes, true)?;
            let p = g.op("Mul", &[&gxh, xhat], vec![])?;
            let m2 = g.reduce("ReduceMean", &p, axes, true)?;
            let t = g.op("Mul", &[xhat, &m2], vec![])?;
            let t = g.op("Add", &[&t, &m1], vec![])?;
            let d = g.op("Sub", &[&gxh, &t], vec![])?;
            res[0] = Some(g.op("Mul", &[&d, invstd], vec![])?);
        }
        Ok(res)
    }
}
