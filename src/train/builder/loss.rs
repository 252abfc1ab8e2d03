//! The loss appended to the model's first output, and its gradient with
//! respect to that output, which seeds the backward pass.
//!
//! Both losses have a closed-form gradient (softmax minus one-hot for
//! cross-entropy, the scaled difference for mean squared error), written
//! directly instead of derived through the loss's own nodes.

use crate::onnx::pb::NodeProto;

use super::Builder;
use crate::onnx::DataType;
use crate::train::ir::Info;
use crate::train::proto::Attr;
use crate::train::{DataInput, LossKind, Result, TrainError};

impl Builder<'_> {
    /// Appends the loss; returns the labels input and d(loss)/d(logits).
    pub(super) fn loss(&mut self, logits: &str) -> Result<(DataInput, String)> {
        let g = &mut self.g;
        let info: Info = g.info(logits)?.clone();
        if info.dtype != DataType::Float {
            return Err(TrainError::Model(format!(
                "output `{logits}` is not float32"
            )));
        }
        let loss_name = "loss".to_string();
        if g.info.contains_key(&loss_name) {
            return Err(TrainError::Model(
                "the model already has a value named `loss`".into(),
            ));
        }
        g.reserve_name(&loss_name);
        let all: Vec<i64> = (0..info.shape.len() as i64).collect();
        match self.opts.loss {
            LossKind::CrossEntropy => {
                if info.shape.len() != 2 {
                    return Err(TrainError::Model(format!(
                        "cross-entropy needs [N, K] logits; output `{logits}` has shape {:?}",
                        info.shape
                    )));
                }
                let (nb, k) = (info.shape[0], info.shape[1]);
                let labels = DataInput {
                    name: "labels".into(),
                    elem_type: DataType::Int64,
                    shape: vec![nb],
                };
                g.add_input("labels", DataType::Int64, vec![nb]);
                let lsm = g.op("LogSoftmax", &[logits], vec![Attr::int("axis", 1)])?;
                let lab2 = g.reshape("labels", &[nb, 1])?;
                let picked = g.op("GatherElements", &[&lsm, &lab2], vec![Attr::int("axis", 1)])?;
                let mean = g.reduce("ReduceMean", &picked, &[0, 1], false)?;
                g.push(NodeProto {
                    input: vec![mean],
                    output: vec![loss_name],
                    name: "pa_train/loss".into(),
                    op_type: "Neg".into(),
                    ..Default::default()
                })?;
                // d/dlogits = (softmax - onehot(labels)) / N
                let p = g.op("Exp", &[&lsm], vec![])?;
                let classes: Vec<i64> = (0..k).collect();
                let range = g.const_i64(&classes);
                let range = g.reshape(&range, &[1, k])?;
                let eq = g.op("Equal", &[&lab2, &range], vec![])?;
                let onehot = g.op("Cast", &[&eq], vec![Attr::dtype("to", DataType::Float)])?;
                let d = g.op("Sub", &[&p, &onehot], vec![])?;
                let s = g.scalar(1.0 / nb as f32);
                let gl = g.op("Mul", &[&d, &s], vec![])?;
                Ok((labels, gl))
            }
            LossKind::MeanSquaredError => {
                let targets = DataInput {
                    name: "targets".into(),
                    elem_type: DataType::Float,
                    shape: info.shape.clone(),
                };
                g.add_input("targets", DataType::Float, info.shape.clone());
                let diff = g.op("Sub", &[logits, "targets"], vec![])?;
                let sq = g.op("Mul", &[&diff, &diff], vec![])?;
                let mean = g.reduce("ReduceMean", &sq, &all, false)?;
                g.push(NodeProto {
                    input: vec![mean],
                    output: vec![loss_name],
                    name: "pa_train/loss".into(),
                    op_type: "Identity".into(),
                    ..Default::default()
                })?;
                let s = g.scalar(2.0 / info.numel() as f32);
                let gl = g.op("Mul", &[&diff, &s], vec![])?;
                Ok((targets, gl))
            }
        }
    }
}
