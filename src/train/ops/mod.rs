//! Operator rules: for each ONNX operator the builder supports, how its
//! outputs' types and shapes follow from its inputs', how its output is
//! computed when its inputs are small known tensors, how gradients flow back
//! through it, and which of its inputs are parameters worth training.
//!
//! Each family of operators keeps those rules together in its own file and
//! lists its operators in a `RULES` table, so one operator is read and
//! changed in one place. To add an operator, write its functions in its
//! family's file and add one `(name, OpRule)` entry to that file's `RULES`;
//! a new family is one more file and one more entry in [`FAMILIES`].

mod activation;
mod constant;
mod conv;
mod elementwise;
mod index;
mod matmul;
mod norm;
mod pool;
mod random;
mod reduce;
mod shape;
mod slice;

use std::collections::HashMap;

use crate::onnx::pb::{NodeProto, TensorProto};

use super::ir::{Graph, Info, Known, KNOWN_LIMIT};
use super::node::{node_err, NodeExt};
use super::{Result, TrainError};

pub(crate) use norm::{batch_norm_training, layer_norm_training, BatchNormTape, LayerNormTape};
pub(crate) use pool::keep_indices;
pub(crate) use random::dropout_training;

/// Gradients of a node's inputs, `None` where there is none.
pub(crate) type Grads = Vec<Option<String>>;

/// Output element types and shapes of a node, from its inputs' and its
/// attributes (and the values of inputs that must be constants).
pub(crate) type Infer = fn(&Graph, &NodeProto) -> Result<Vec<Info>>;

/// The values of output 0 (whose facts are given), when every input it
/// needs has known values; `None` otherwise.
pub(crate) type Evaluate = fn(&Graph, &NodeProto, &Info) -> Option<Vec<f64>>;

/// The gradient of input 0 (the one input the rule differentiates) from
/// that of output 0.
pub(crate) type UnaryGrad = fn(&mut Graph, &NodeProto, &str) -> Result<String>;

/// The gradients of the inputs `needs` asks for, written into the result,
/// from that of output 0.
pub(crate) type InputsGrad = fn(&mut Graph, &NodeProto, &str, &[bool], &mut Grads) -> Result<()>;

/// The gradients of the inputs from those of every output, any of which
/// may be missing.
pub(crate) type OutputsGrad =
    fn(&mut Graph, &NodeProto, &[Option<String>], &mut Grads) -> Result<()>;

/// How gradients flow back through an operator.
#[derive(Clone, Copy)]
pub(crate) enum Grad {
    /// No rule: an error if the node lies between a trainable tensor and the loss.
    Missing,
    /// The outputs carry no gradient (integers, comparisons, random draws):
    /// the gradient stops there.
    Stops,
    /// A rule for the one differentiable input.
    Unary(UnaryGrad),
    /// A rule for any of the inputs, from the first output's gradient.
    Inputs(InputsGrad),
    /// A rule from the gradients of all outputs (Split).
    Outputs(OutputsGrad),
}

/// Which inputs of a node the automatic choice trains, when they are float
/// initializers (the tensor behind a layout change such as a Transpose).
#[derive(Clone, Copy)]
pub(crate) enum Params {
    /// None of them.
    None,
    /// These input positions: weights, biases, scales and shifts.
    Inputs(&'static [usize]),
    /// The operand of an Add beside a dense layer's output: the bias of a
    /// layer exported as MatMul + Add.
    DenseBias,
    /// Input 0 where it is an embedding table.
    Embedding,
}

impl Params {
    /// Input positions that may hold parameters; `producers` maps each
    /// value of the model to the operator that computes it.
    pub(crate) fn slots(self, n: &NodeProto, producers: &HashMap<&str, &str>) -> &'static [usize] {
        match self {
            Params::None => &[],
            Params::Inputs(slots) => slots,
            Params::DenseBias => elementwise::dense_bias(n, producers),
            Params::Embedding => &[0],
        }
    }

    /// Whether the initializer `t` found in one of those slots is trained.
    pub(crate) fn accepts(self, n: &NodeProto, t: &TensorProto) -> bool {
        match self {
            Params::Embedding => index::embedding_table(n, t),
            _ => true,
        }
    }
}

/// The rules of one operator.
#[derive(Clone, Copy)]
pub(crate) struct OpRule {
    pub infer: Infer,
    pub evaluate: Option<Evaluate>,
    pub grad: Grad,
    pub params: Params,
}

impl OpRule {
    /// An operator whose shapes are known, with no other rule yet.
    pub(crate) const fn new(infer: Infer) -> Self {
        OpRule {
            infer,
            evaluate: None,
            grad: Grad::Missing,
            params: Params::None,
        }
    }
    pub(crate) const fn evaluate(self, evaluate: Evaluate) -> Self {
        OpRule {
            evaluate: Some(evaluate),
            ..self
        }
    }
    pub(crate) const fn grad(self, grad: Grad) -> Self {
        OpRule { grad, ..self }
    }
    pub(crate) const fn params(self, params: Params) -> Self {
        OpRule { params, ..self }
    }
}

/// Every family's table of rules.
static FAMILIES: [&[(&str, OpRule)]; 12] = [
    elementwise::RULES,
    activation::RULES,
    matmul::RULES,
    conv::RULES,
    pool::RULES,
    norm::RULES,
    reduce::RULES,
    shape::RULES,
    slice::RULES,
    index::RULES,
    constant::RULES,
    random::RULES,
];

/// The rules of the operator `op` (default domain), if it is supported.
pub(crate) fn rule(op: &str) -> Option<&'static OpRule> {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .find(|(name, _)| *name == op)
        .map(|(_, rule)| rule)
}

/// What the graph learns when `n` enters it: its outputs' types and shapes
/// and, where they can be computed now, the values of output 0.
pub(crate) fn outputs(g: &Graph, n: &NodeProto) -> Result<(Vec<Info>, Option<Known>)> {
    if !n.domain.is_empty() && n.domain != "ai.onnx" {
        return Err(node_err(
            n,
            format!("operator domain `{}` is not supported", n.domain),
        ));
    }
    let Some(rule) = rule(&n.op_type) else {
        return Err(node_err(
            n,
            "cannot infer the output shapes of this operator",
        ));
    };
    let infos = (rule.infer)(g, n)?;
    let known = rule.evaluate.and_then(|evaluate| {
        let out = infos.first()?;
        if out.numel() > KNOWN_LIMIT {
            return None;
        }
        let vals = evaluate(g, n, out)?;
        Some(Known {
            dims: out.shape.clone(),
            vals,
        })
    });
    Ok((infos, known))
}

/// Operators whose outputs carry no gradient: the gradient stops there.
pub(crate) fn is_non_differentiable(op: &str) -> bool {
    rule(op).is_some_and(|r| matches!(r.grad, Grad::Stops))
}

/// Gradients of `n`'s inputs given the gradients of its outputs.
pub(crate) fn backward(
    g: &mut Graph,
    n: &NodeProto,
    gys: &[Option<String>],
    needs: &[bool],
) -> Result<Grads> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let mut res: Grads = vec![None; n.input.len()];
    let grad = rule(&n.op_type).map_or(Grad::Missing, |r| r.grad);
    if let Grad::Outputs(rule) = grad {
        rule(g, n, gys, &mut res)?;
    } else {
        let Some(gy) = gys.first().cloned().flatten() else {
            return Ok(res);
        };
        match grad {
            Grad::Unary(rule) => res[0] = Some(rule(g, n, &gy)?),
            Grad::Inputs(rule) => rule(g, n, &gy, needs, &mut res)?,
            Grad::Missing | Grad::Stops | Grad::Outputs(_) => {
                return Err(TrainError::UnsupportedOp {
                    node: n.label(),
                    op: n.op_type.clone(),
                })
            }
        }
    }
    for (i, r) in res.iter_mut().enumerate() {
        if !need(i) {
            *r = None;
        }
    }
    Ok(res)
}

/// Facts of input `i`, which must be present and known.
fn input<'g>(g: &'g Graph, n: &NodeProto, i: usize) -> Result<&'g Info> {
    let name = n
        .input
        .get(i)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| node_err(n, format!("missing input {i}")))?;
    g.info
        .get(name)
        .ok_or_else(|| node_err(n, format!("input `{name}` has no known shape")))
}

/// Whether the optional input `i` is given.
fn has_input(n: &NodeProto, i: usize) -> bool {
    n.input.get(i).is_some_and(|s| !s.is_empty())
}

/// The known values of input `i`, if any.
fn input_value<'g>(g: &'g Graph, n: &NodeProto, i: usize) -> Option<&'g Known> {
    n.input.get(i).and_then(|s| g.known.get(s))
}

/// Evaluation of operators that pass their input's values through.
fn same_values(g: &Graph, n: &NodeProto, _: &Info) -> Option<Vec<f64>> {
    Some(input_value(g, n, 0)?.vals.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_operator_is_listed_twice() {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in FAMILIES.iter().flat_map(|f| f.iter()) {
            assert!(seen.insert(*name), "{name} is listed twice");
        }
    }
}
