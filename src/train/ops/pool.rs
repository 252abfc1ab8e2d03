//! Pooling: windowed (MaxPool, AveragePool, LpPool) and global.
//!
//! Pooling gradients route each output's gradient back to the window it
//! came from: MaxPool through the indices of its maxima, AveragePool as a
//! transposed convolution with a constant kernel divided by each window's
//! count, so both need the window geometry shape inference resolved.

use crate::onnx::pb::NodeProto;

use super::conv::conv_attrs;
use super::{input, Grad, OpRule};
use crate::onnx::DataType;
use crate::train::geometry::geometry;
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("MaxPool", OpRule::new(windows).grad(Grad::Unary(max_pool))),
    ("AveragePool", OpRule::new(windows).grad(Grad::Unary(average_pool))),
    ("LpPool", OpRule::new(windows)),
    ("GlobalAveragePool", OpRule::new(global).grad(Grad::Unary(global_average_pool))),
    ("GlobalMaxPool", OpRule::new(global)),
];

fn windows(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let kernel = n
        .ints_attr("kernel_shape")
        .ok_or_else(|| node_err(n, "kernel_shape missing"))?;
    let geo = geometry(n, &x.shape, &kernel, n.int_attr("ceil_mode", 0) != 0)?;
    let mut shape = x.shape[..2].to_vec();
    shape.extend(geo.out);
    Ok(vec![
        Info {
            dtype: x.dtype,
            shape: shape.clone(),
        },
        Info {
            dtype: DataType::Int64,
            shape,
        },
    ])
}

fn global(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let mut shape = x.shape.clone();
    shape[2..].iter_mut().for_each(|d| *d = 1);
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

fn global_average_pool(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let xs = g.shape(&n.input[0])?;
    let count: i64 = xs[2..].iter().product();
    let c = g.scalar(1.0 / count as f32);
    let t = g.op("Mul", &[gy, &c], vec![])?;
    let s = g.const_i64(&xs);
    g.op("Expand", &[&t, &s], vec![])
}

fn max_pool(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
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
    let xs = g.shape(&n.input[0])?;
    let numel: i64 = xs.iter().product();
    let flat_i = g.reshape(&n.output[1], &[-1])?;
    let flat_g = g.reshape(gy, &[-1])?;
    let z = g.zeros(&[numel])?;
    let s = g.op(
        "ScatterElements",
        &[&z, &flat_i, &flat_g],
        vec![Attr::int("axis", 0), Attr::string("reduction", "add")],
    )?;
    g.reshape(&s, &xs)
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

/// Gives a MaxPool on the way to the loss the Indices output it lacks: its
/// gradient scatters through them.
pub(crate) fn keep_indices(g: &mut Graph, n: &mut NodeProto) {
    let idx = g.fresh("maxpool_indices");
    n.output.push(idx);
}
