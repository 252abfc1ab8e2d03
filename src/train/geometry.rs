//! Shapes and axes as the operator rules need them: broadcasting, axis
//! arguments checked against a rank, and the windows of convolutions and
//! pooling.
//!
//! Shape inference and gradient rules must agree on these facts (a pooling
//! gradient restores exactly the window shape inference resolved), so both
//! compute them here, once.

use crate::onnx::pb::NodeProto;

use super::node::{node_err, NodeExt};
use super::Result;

/// Resolved geometry of a Conv, ConvTranspose or pooling node.
#[derive(Clone, Debug)]
pub(crate) struct Geom {
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
    pub pads_begin: Vec<i64>,
    pub pads_end: Vec<i64>,
    pub out: Vec<i64>,
}

impl Geom {
    pub fn pads(&self) -> Vec<i64> {
        [self.pads_begin.clone(), self.pads_end.clone()].concat()
    }
}

/// Output spatial sizes and explicit pads, with `auto_pad` resolved.
pub(crate) fn geometry(n: &NodeProto, x: &[i64], kernel: &[i64], ceil_mode: bool) -> Result<Geom> {
    let sp = x.len().saturating_sub(2);
    if kernel.len() != sp {
        return Err(node_err(
            n,
            format!(
                "kernel rank {} does not match input rank {}",
                kernel.len(),
                x.len()
            ),
        ));
    }
    if x.len() < 3 || x.iter().any(|&d| d < 1) || kernel.iter().any(|&k| k < 1) {
        return Err(node_err(
            n,
            format!("input {x:?} or kernel {kernel:?} has no spatial extent"),
        ));
    }
    // Each list needs one entry per spatial axis (pads two), and the
    // arithmetic below needs positive strides and dilations.
    let list = |name: &str, len: usize, default: i64, min: i64| -> Result<Vec<i64>> {
        let v = n.ints_attr(name).unwrap_or_else(|| vec![default; len]);
        if v.len() != len || v.iter().any(|&e| e < min) {
            return Err(node_err(
                n,
                format!("{name} {v:?}: expected {len} values of at least {min}"),
            ));
        }
        Ok(v)
    };
    let strides = list("strides", sp, 1, 1)?;
    let dilations = list("dilations", sp, 1, 1)?;
    let given_pads = list("pads", 2 * sp, 0, 0)?;
    let auto_pad = n.string_attr("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let mut pads_begin = vec![0; sp];
    let mut pads_end = vec![0; sp];
    let mut out = vec![0; sp];
    let transpose = n.op_type == "ConvTranspose";
    let output_padding = list("output_padding", sp, 0, 0)?;
    if transpose {
        if n.attr("output_shape").is_some() || !matches!(auto_pad.as_str(), "NOTSET" | "VALID") {
            return Err(node_err(n, "ConvTranspose with output_shape or SAME auto_pad is not supported; give explicit pads"));
        }
        if auto_pad == "NOTSET" {
            pads_begin = given_pads[..sp].to_vec();
            pads_end = given_pads[sp..].to_vec();
        }
        for i in 0..sp {
            out[i] = strides[i] * (x[i + 2] - 1)
                + output_padding[i]
                + (kernel[i] - 1) * dilations[i]
                + 1
                - pads_begin[i]
                - pads_end[i];
        }
    }
    // ConvTranspose's sizes were set above.
    for i in (0..sp).filter(|_| !transpose) {
        let (inp, k, s, d) = (x[i + 2], kernel[i], strides[i], dilations[i]);
        let ek = (k - 1) * d + 1;
        match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = (inp + s - 1) / s;
                let total = ((o - 1) * s + ek - inp).max(0);
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    pads_begin[i] = small;
                    pads_end[i] = total - small;
                } else {
                    pads_begin[i] = total - small;
                    pads_end[i] = small;
                }
                out[i] = o;
            }
            "VALID" => out[i] = (inp - ek) / s + 1,
            _ => {
                pads_begin[i] = given_pads[i];
                pads_end[i] = given_pads[i + sp];
                let span = inp + pads_begin[i] + pads_end[i] - ek;
                out[i] = if ceil_mode {
                    let mut o = (span + s - 1) / s + 1;
                    // The last window must start inside the input or its left padding.
                    if (o - 1) * s >= inp + pads_begin[i] {
                        o -= 1;
                    }
                    o
                } else {
                    span / s + 1
                };
            }
        }
    }
    if out.iter().any(|&o| o < 1) {
        return Err(node_err(
            n,
            format!("output spatial size {out:?} is empty for input {x:?}"),
        ));
    }
    Ok(Geom {
        strides,
        dilations,
        pads_begin,
        pads_end,
        out,
    })
}

pub(crate) fn broadcast(shapes: &[&[i64]]) -> Option<Vec<i64>> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1; r];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[r - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return None;
            }
        }
    }
    Some(out)
}

/// Axis `a` of a rank-`rank` tensor counted from the start; `a` is in range.
pub(crate) fn norm_axis(a: i64, rank: usize) -> usize {
    if a < 0 {
        (a + rank as i64) as usize
    } else {
        a as usize
    }
}

/// Axis `a` of a rank-`rank` tensor (negative counts from the end), or an
/// error naming the node: a malformed model must not panic the builder.
pub(crate) fn axis_of(n: &NodeProto, a: i64, rank: usize) -> Result<usize> {
    if (-(rank as i64)..rank as i64).contains(&a) {
        Ok(norm_axis(a, rank))
    } else {
        Err(node_err(
            n,
            format!("axis {a} is out of range for rank {rank}"),
        ))
    }
}

/// A list of distinct axes, each checked as by [`axis_of`].
pub(crate) fn axes_of(n: &NodeProto, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let out: Vec<usize> = axes
        .iter()
        .map(|&a| axis_of(n, a, rank))
        .collect::<Result<_>>()?;
    if (1..out.len()).any(|i| out[..i].contains(&out[i])) {
        return Err(node_err(n, format!("axes {axes:?} repeat an axis")));
    }
    Ok(out)
}

/// The permutation that swaps the last two of `r >= 2` axes.
pub(crate) fn swap_last(r: usize) -> Vec<i64> {
    let mut p: Vec<i64> = (0..r as i64).collect();
    p.swap(r - 1, r - 2);
    p
}

/// [`norm_axis`] for an axis the gradient rules keep as an ONNX attribute value.
pub(crate) fn normalize_axis(a: i64, r: i64) -> i64 {
    if a < 0 {
        a + r
    } else {
        a
    }
}
