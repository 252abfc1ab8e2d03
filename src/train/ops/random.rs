//! Random operators and Dropout.
//!
//! Dropout is the one operator whose training form is not its inference
//! form: in training it draws a mask. The mask is drawn by RandomUniform
//! rather than by Dropout's own training mode, which tract refuses to run,
//! and its gradient is the same mask, scaled.

use crate::onnx::pb::NodeProto;

use super::{input, Grad, OpRule};
use crate::onnx::DataType;
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::{Result, TrainGraphOptions};

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("Dropout", OpRule::new(dropout).grad(Grad::Unary(dropout_grad))),
    ("RandomUniform", OpRule::new(random).grad(Grad::Stops)),
    ("RandomNormal", OpRule::new(random).grad(Grad::Stops)),
    ("RandomUniformLike", OpRule::new(random_like).grad(Grad::Stops)),
    ("RandomNormalLike", OpRule::new(random_like).grad(Grad::Stops)),
];

fn random(_: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let shape = n
        .ints_attr("shape")
        .ok_or_else(|| node_err(n, "shape missing"))?;
    Ok(vec![Info {
        dtype: n.dtype_attr("dtype", DataType::Float),
        shape,
    }])
}

fn random_like(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?;
    let dtype = n.dtype_attr("dtype", x.dtype);
    Ok(vec![Info {
        dtype,
        shape: x.shape.clone(),
    }])
}

fn dropout(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let x = input(g, n, 0)?.clone();
    Ok(vec![
        x.clone(),
        Info {
            dtype: DataType::Bool,
            shape: x.shape,
        },
    ])
}

fn dropout_grad(g: &mut Graph, n: &NodeProto, gy: &str) -> Result<String> {
    Ok(
        if n.output.len() > 1 && !n.output[1].is_empty() && g.info.contains_key(&n.output[1]) {
            let ratio = n
                .input
                .get(1)
                .filter(|s| !s.is_empty())
                .and_then(|r| g.known(r))
                .map_or(0.5, |k| k.vals[0]);
            let m = g.op(
                "Cast",
                &[&n.output[1]],
                vec![Attr::dtype("to", DataType::Float)],
            )?;
            let s = g.scalar((1.0 / (1.0 - ratio)) as f32);
            let ms = g.op("Mul", &[&m, &s], vec![])?;
            g.op("Mul", &[gy, &ms], vec![])?
        } else {
            gy.to_string()
        },
    )
}

/// Rewrites a Dropout node into its training form: an Identity where
/// dropout is off or its ratio is 0, otherwise the input times a mask drawn
/// here (with the mask output, when the model reads it, as an Identity of
/// the mask). The k-th mask drawn gets seed `dropout_seed + k` (counted in `dropouts`).
pub(crate) fn dropout_training(
    g: &mut Graph,
    n: &mut NodeProto,
    opts: &TrainGraphOptions,
    dropouts: &mut i64,
) -> Result<()> {
    let ratio = n.input.get(1).filter(|s| !s.is_empty()).map(|r| {
        g.known(r)
            .map(|k| k.vals[0])
            .ok_or_else(|| node_err(n, "the dropout ratio must be a constant"))
    });
    let ratio = match ratio {
        Some(r) => r?,
        None => 0.5,
    };
    if !opts.dropout || ratio == 0.0 {
        n.op_type = "Identity".into();
        n.input.truncate(1);
        n.output.truncate(1);
        n.attribute.clear();
        return Ok(());
    }
    // The mask comes from RandomUniform rather than Dropout's own
    // training mode, which tract refuses to run; ORT and tract both
    // draw from a seeded generator that advances with every run.
    let x = n.input[0].clone();
    let mut attrs = vec![Attr::dtype("dtype", DataType::Float)];
    if let Some(seed) = opts.dropout_seed {
        *dropouts += 1;
        attrs.push(Attr::float("seed", (seed + *dropouts) as f32));
    }
    // Static shapes allow RandomUniform, which tract parses more reliably than the Like form.
    attrs.push(Attr::ints("shape", &g.shape(&x)?));
    let u = g.op("RandomUniform", &[], attrs)?;
    let r = g.scalar(ratio as f32);
    let keep = g.op("GreaterOrEqual", &[&u, &r], vec![])?;
    let m = g.op("Cast", &[&keep], vec![Attr::dtype("to", DataType::Float)])?;
    let scale = g.scalar((1.0 / (1.0 - ratio)) as f32);
    let ms = g.op("Mul", &[&m, &scale], vec![])?;
    if let Some(mask) = n.output.get(1).filter(|s| !s.is_empty()) {
        g.push(NodeProto {
            input: vec![keep],
            output: vec![mask.clone()],
            name: format!("{}/mask", n.label()),
            op_type: "Identity".into(),
            ..Default::default()
        })?;
    }
    n.op_type = "Mul".into();
    n.input = vec![x, ms];
    n.output.truncate(1);
    n.attribute.clear();
    Ok(())
}
