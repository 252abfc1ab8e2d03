//! Slice and Pad: reading a window of a tensor, and the padding that puts
//! a window back in place.
//!
//! Slice's bounds are clamped the way the ONNX spec says, with any sign of
//! step; shape inference, evaluation of small constant slices and the
//! gradient all read them through one function so they agree.

use crate::onnx::pb::NodeProto;

use super::{has_input, input, input_value, Grad, Grads, OpRule};
use crate::train::geometry::{axes_of, norm_axis};
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Slice", OpRule::new(slice).evaluate(slice_values).grad(Grad::Inputs(slice_grad))),
    ("Pad", OpRule::new(pad)),
];

fn slice(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let ranges = slice_ranges(g, n, &x.shape)?;
    let mut shape = x.shape.clone();
    for (axis, start, end, step) in ranges {
        shape[axis] = slice_len(start, end, step);
    }
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn pad(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let pads = g.known_input(n, 1)?.ints();
    let r = x.shape.len();
    let axes: Vec<usize> = if has_input(n, 3) {
        axes_of(n, &g.known_input(n, 3)?.ints(), r)?
    } else {
        (0..r).collect()
    };
    if pads.len() != 2 * axes.len() {
        return Err(node_err(
            n,
            format!("{} pads for {} axes", pads.len(), axes.len()),
        ));
    }
    let mut shape = x.shape.clone();
    for (k, &a) in axes.iter().enumerate() {
        shape[a] += pads[k] + pads[k + axes.len()];
    }
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

/// (axis, start, end, step) per sliced axis, clamped like the ONNX spec.
fn slice_ranges(g: &Graph, n: &NodeProto, shape: &[i64]) -> Result<Vec<(usize, i64, i64, i64)>> {
    let r = shape.len();
    let (starts, ends, axes, steps) = if n.input.len() > 1 {
        let starts = g.known_input(n, 1)?.ints();
        let ends = g.known_input(n, 2)?.ints();
        let axes = if n.input.get(3).is_some_and(|s| !s.is_empty()) {
            g.known_input(n, 3)?.ints()
        } else {
            (0..starts.len() as i64).collect()
        };
        let steps = if n.input.get(4).is_some_and(|s| !s.is_empty()) {
            g.known_input(n, 4)?.ints()
        } else {
            vec![1; starts.len()]
        };
        (starts, ends, axes, steps)
    } else {
        let starts = n.ints_attr("starts").unwrap_or_default();
        let ends = n.ints_attr("ends").unwrap_or_default();
        let axes = n
            .ints_attr("axes")
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = vec![1; starts.len()];
        (starts, ends, axes, steps)
    };
    let k = starts.len();
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err(node_err(
            n,
            "Slice starts, ends, axes and steps must have the same length",
        ));
    }
    let mut out = vec![];
    for i in 0..k {
        if !(-(r as i64)..r as i64).contains(&axes[i]) {
            return Err(node_err(
                n,
                format!("Slice axis {} is out of range for rank {r}", axes[i]),
            ));
        }
        let a = norm_axis(axes[i], r);
        let d = shape[a];
        let step = steps[i];
        if step == 0 {
            return Err(node_err(n, "Slice step must not be 0"));
        }
        let fix = |v: i64, lo: i64, hi: i64| {
            let v = if v < 0 { v.saturating_add(d) } else { v };
            v.clamp(lo, hi)
        };
        let (s, e) = if step > 0 {
            (fix(starts[i], 0, d), fix(ends[i], 0, d))
        } else {
            (fix(starts[i], 0, d - 1), fix(ends[i], -1, d - 1))
        };
        out.push((a, s, e, step));
    }
    Ok(out)
}

fn slice_len(start: i64, end: i64, step: i64) -> i64 {
    if step > 0 {
        ((end - start + step - 1) / step).max(0)
    } else {
        ((start - end + (-step) - 1) / (-step)).max(0)
    }
}

fn slice_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    let x = input_value(g, n, 0)?;
    (x.dims.len() == 1).then_some(())?;
    let (_, s, e, st) = *slice_ranges(g, n, &x.dims).ok()?.first()?;
    let mut v = vec![];
    let mut i = s;
    while (st > 0 && i < e) || (st < 0 && i > e) {
        v.push(x.vals[i as usize]);
        i += st;
    }
    Some(v)
}

/// Only the data input carries a gradient; the others are integers.
fn slice_grad(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    needs: &[bool],
    res: &mut Grads,
) -> Result<()> {
    if needs.first().copied().unwrap_or(false) {
        res[0] = Some(slice_back(g, n, gy)?);
    }
    Ok(())
}

/// `gy` put back where the slice read it, zeros elsewhere. Axes read with
/// step 1 are restored by one Pad. Strided axes (negative steps included)
/// are scattered back one at a time: along one axis the positions read are
/// distinct, so ScatterElements needs no reduction (which only opset 16
/// has), and a per-axis index vector broadcast by Expand keeps the
/// constants small.
fn slice_back(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let xs = g.shape(&n.input[0])?;
    let ranges = slice_ranges(g, n, &xs)?;
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
