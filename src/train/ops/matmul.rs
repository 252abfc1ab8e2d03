//! Matrix products: MatMul (numpy semantics, batched and broadcast) and
//! Gemm.
//!
//! Dense layers spend nearly all of a step in these, so the gradient rules
//! choose the forms the runtimes run fastest: Gemm with its free operand
//! transposes where the operands are matrices, batch dimensions folded into
//! rows for the common dense layer.

use crate::onnx::pb::NodeProto;

use super::{has_input, input, Grad, Grads, OpRule, Params};
use crate::train::geometry::{broadcast, swap_last};
use crate::train::ir::{Graph, Info};
use crate::train::node::{node_err, NodeExt};
use crate::train::proto::Attr;
use crate::train::Result;

/// The operators of this family and their rules.
#[rustfmt::skip]
pub(super) const RULES: &[(&str, OpRule)] = &[
    ("MatMul", OpRule::new(matmul_shape).grad(Grad::Inputs(matmul)).params(Params::Inputs(&[0, 1]))),
    ("Gemm", OpRule::new(gemm_shape).grad(Grad::Inputs(gemm)).params(Params::Inputs(&[0, 1, 2]))),
];

fn matmul_shape(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let (a, b) = (input(g, n, 0)?, input(g, n, 1)?);
    if a.shape.is_empty() || b.shape.is_empty() {
        return Err(node_err(n, "MatMul inputs need a rank of 1 or more"));
    }
    let (mut sa, mut sb) = (a.shape.clone(), b.shape.clone());
    let (va, vb) = (sa.len() == 1, sb.len() == 1);
    if va {
        sa.insert(0, 1);
    }
    if vb {
        sb.push(1);
    }
    let (ra, rb) = (sa.len(), sb.len());
    if sa[ra - 1] != sb[rb - 2] {
        return Err(node_err(
            n,
            format!("MatMul shapes {:?} x {:?} mismatch", a.shape, b.shape),
        ));
    }
    let mut shape = broadcast(&[&sa[..ra - 2], &sb[..rb - 2]])
        .ok_or_else(|| node_err(n, "batch dims do not broadcast"))?;
    if !va {
        shape.push(sa[ra - 2]);
    }
    if !vb {
        shape.push(sb[rb - 1]);
    }
    Ok(vec![Info {
        dtype: a.dtype,
        shape,
    }])
}

fn gemm_shape(g: &Graph, n: &NodeProto) -> Result<Vec<Info>> {
    let (a, b) = (input(g, n, 0)?, input(g, n, 1)?);
    if a.shape.len() != 2 || b.shape.len() != 2 {
        return Err(node_err(
            n,
            format!(
                "Gemm needs two matrices, got {:?} and {:?}",
                a.shape, b.shape
            ),
        ));
    }
    let (ta, tb) = (n.int_attr("transA", 0) != 0, n.int_attr("transB", 0) != 0);
    let (m, ka) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (kb, nn) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if ka != kb {
        return Err(node_err(
            n,
            format!("Gemm shapes {:?} x {:?} mismatch", a.shape, b.shape),
        ));
    }
    if has_input(n, 2) {
        let c = &input(g, n, 2)?.shape;
        if broadcast(&[c, &[m, nn]]).as_deref() != Some(&[m, nn][..]) {
            return Err(node_err(
                n,
                format!("Gemm bias {c:?} does not broadcast to [{m}, {nn}]"),
            ));
        }
    }
    Ok(vec![Info {
        dtype: a.dtype,
        shape: vec![m, nn],
    }])
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
