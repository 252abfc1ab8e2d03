//! Convolutions: Conv and ConvTranspose, grouped and depthwise included.
//!
//! Each gradient of a convolution is itself a convolution-like product,
//! and the obvious form (ConvTranspose for the input, a batch-as-channel
//! convolution for the weight) is often the slowest one the runtimes
//! offer; the rules here pick cheaper equivalent forms where the shapes
//! allow them and fall back to the obvious ones elsewhere.

use crate::onnx::pb::NodeProto;

use super::{input, Grad, Grads, OpRule, Params};
use crate::train::geometry::{geometry, swap_last, Geom};
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Conv", OpRule::new(conv_shape).grad(Grad::Inputs(conv_grad)).params(Params::Inputs(&[1, 2]))),
    ("ConvTranspose", OpRule::new(conv_shape).grad(Grad::Inputs(conv_transpose)).params(Params::Inputs(&[1, 2]))),
];

fn conv_shape(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let op = n.op_type.as_str();
    let (x, w) = (input(g, n, 0)?, input(g, n, 1)?);
    let group = n.int_attr("group", 1);
    // Conv's weight is [out, in / group, k...], ConvTranspose's
    // [in, out / group, k...]; both split their rows into groups.
    let in_channels = if op == "Conv" {
        w.shape.get(1).map(|&c| c * group)
    } else {
        w.shape.first().copied()
    };
    if w.shape.len() != x.shape.len()
        || x.shape.len() < 3
        || group < 1
        || w.shape[0] % group != 0
        || in_channels != Some(x.shape[1])
    {
        return Err(node_err(
            n,
            format!(
                "input {:?}, weight {:?} and group {group} do not fit together",
                x.shape, w.shape
            ),
        ));
    }
    let kernel = n
        .ints_attr("kernel_shape")
        .unwrap_or_else(|| w.shape[2..].to_vec());
    if kernel != w.shape[2..] {
        return Err(node_err(
            n,
            format!(
                "kernel_shape {kernel:?} is not the weight's {:?}",
                &w.shape[2..]
            ),
        ));
    }
    let geo = geometry(n, &x.shape, &kernel, false)?;
    let c = if op == "Conv" {
        w.shape[0]
    } else {
        w.shape[1] * group
    };
    let mut shape = vec![x.shape[0], c];
    shape.extend(geo.out);
    Ok(vec![Info {
        dtype: x.dtype,
        shape,
    }])
}

/// Spatial attributes shared by the convolutions a Conv gradient emits.
pub(super) fn conv_attrs(
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

/// What both convolutions' gradients start from: the operands, the kernel (from the attribute, or the weight's spatial dims),
/// the window geometry, the group count and the number of spatial axes.
struct Window {
    x: String,
    w: String,
    kernel: Vec<i64>,
    geo: Geom,
    group: i64,
    sp: usize,
}

impl Window {
    fn of(g: &Graph, n: &NodeProto) -> Result<Window> {
        let (x, w) = (n.input[0].clone(), n.input[1].clone());
        let xs = g.shape(&x)?;
        let wsh = g.shape(&w)?;
        let kernel = n
            .ints_attr("kernel_shape")
            .unwrap_or_else(|| wsh[2..].to_vec());
        let geo = geometry(n, &xs, &kernel, false)?;
        let group = n.int_attr("group", 1);
        let sp = xs.len() - 2;
        Ok(Window {
            x,
            w,
            kernel,
            geo,
            group,
            sp,
        })
    }
}

fn conv_grad(
    g: &mut Graph,
    n: &NodeProto,
    gy: &str,
    needs: &[bool],
    res: &mut Grads,
) -> Result<()> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let Window {
        x,
        w,
        kernel,
        geo,
        group,
        sp,
    } = Window::of(g, n)?;
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
///   layer faster than its ConvTranspose.
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
    let Window {
        x,
        w,
        kernel,
        geo,
        group,
        sp,
    } = Window::of(g, n)?;
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
