//! Activation functions: the nonlinearities between layers, Softmax and
//! LogSoftmax included.
//!
//! Their gradients are written from the forward output where the
//! derivative allows it (sigmoid, tanh, softmax), which saves recomputing
//! the function in the backward pass.

use crate::onnx::pb::NodeProto;

use super::elementwise::unary;
use super::{Grad, OpRule};
use crate::onnx::DataType;
use crate::train::geometry::normalize_axis;
use crate::train::ir::Graph;
use crate::train::node::NodeExt;
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Relu", OpRule::new(unary).grad(Grad::Unary(relu))),
    ("LeakyRelu", OpRule::new(unary).grad(Grad::Unary(leaky_relu))),
    ("Sigmoid", OpRule::new(unary).grad(Grad::Unary(sigmoid))),
    ("Tanh", OpRule::new(unary).grad(Grad::Unary(tanh))),
    ("Gelu", OpRule::new(unary).grad(Grad::Unary(gelu))),
    ("Clip", OpRule::new(unary).grad(Grad::Unary(clip))),
    ("Softmax", OpRule::new(unary).grad(Grad::Unary(softmax))),
    ("LogSoftmax", OpRule::new(unary).grad(Grad::Unary(log_softmax))),
    ("Elu", OpRule::new(unary)),
    ("Selu", OpRule::new(unary)),
    ("HardSigmoid", OpRule::new(unary)),
    ("HardSwish", OpRule::new(unary)),
    ("Softplus", OpRule::new(unary)),
    ("Mish", OpRule::new(unary)),
];

fn relu(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let zero = g.scalar(0.0);
    let mask = g.op("Greater", &[&n.output[0], &zero], vec![])?;
    mask_grad(g, &mask, gy)
}

fn leaky_relu(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let alpha = g.scalar(n.float_attr("alpha", 0.01));
    let zero = g.scalar(0.0);
    let mask = g.op("Greater", &[&n.input[0], &zero], vec![])?;
    let neg = g.op("Mul", &[gy, &alpha], vec![])?;
    g.op("Where", &[&mask, gy, &neg], vec![])
}

fn sigmoid(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let one = g.scalar(1.0);
    let om = g.op("Sub", &[&one, &n.output[0]], vec![])?;
    let d = g.op("Mul", &[&n.output[0], &om], vec![])?;
    g.op("Mul", &[gy, &d], vec![])
}

fn tanh(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let one = g.scalar(1.0);
    let sq = g.op("Mul", &[&n.output[0], &n.output[0]], vec![])?;
    let d = g.op("Sub", &[&one, &sq], vec![])?;
    g.op("Mul", &[gy, &d], vec![])
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

fn clip(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let bounded = (1..3).any(|i| n.input.get(i).is_some_and(|s| !s.is_empty()));
    Ok(if bounded {
        // min <= x <= max exactly where clipping left x unchanged:
        // one comparison instead of two and an And.
        let m = g.op("Equal", &[&n.output[0], &n.input[0]], vec![])?;
        mask_grad(g, &m, gy)?
    } else {
        gy.to_string()
    })
}

fn softmax(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let r = g.rank(&n.output[0])? as i64;
    let axis = normalize_axis(n.int_attr("axis", -1), r);
    let p = g.op("Mul", &[gy, &n.output[0]], vec![])?;
    let s = g.reduce("ReduceSum", &p, &[axis], true)?;
    let d = g.op("Sub", &[gy, &s], vec![])?;
    g.op("Mul", &[&d, &n.output[0]], vec![])
}

fn log_softmax(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    let r = g.rank(&n.output[0])? as i64;
    let axis = normalize_axis(n.int_attr("axis", -1), r);
    let s = g.reduce("ReduceSum", gy, &[axis], true)?;
    let p = g.op("Exp", &[&n.output[0]], vec![])?;
    let t = g.op("Mul", &[&p, &s], vec![])?;
    g.op("Sub", &[gy, &t], vec![])
}

/// `gy` where `mask` holds, zero elsewhere. ONNX Runtime runs Where with a
/// scalar branch through its general broadcasting loop, slower than a Cast
/// and a Mul together; the two differ only where `gy` is not finite.
fn mask_grad(g: &mut Graph, mask: &str, gy: &str) -> Result<String> {
    let m = g.op("Cast", &[mask], vec![Attr::dtype("to", DataType::Float)])?;
    g.op("Mul", &[gy, &m], vec![])
}
