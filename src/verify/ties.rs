//! The structural proof for tied weights: copies that held one parameter
//! in the original must still hold one in the candidate.
//!
//! Each tensor of a tied group can be a permutation of its original on its
//! own while the group is broken: the dense copy permuted, the embedding
//! left as it was. Then the model no longer has the tie the framework
//! defined, so the per-tensor proof is not enough. The groups are found in
//! the original exactly as `rewire` finds them ([`crate::plan`]), and every
//! copy of the candidate must equal its rewired tensor's payload (or its
//! transpose), which holds exactly when all were given the same
//! permutation.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::Result;
use crate::onnx::{payload, Model};
use crate::plan::{self, CopyLayout, TieGroup, TieKind, Tied};

/// What the candidate did with one tied group of the original.
#[derive(Debug, Clone, Serialize)]
pub struct TieCheck {
    /// How the tie shows in the file.
    pub kind: TieKind,
    /// The tensor rewired through its dense view.
    pub rewired: String,
    /// The other members, each with its layout relative to `rewired`.
    pub copies: Vec<(String, CopyLayout)>,
    /// Whether the candidate's values differ from the original's.
    pub permuted: bool,
    /// Whether every copy still holds the rewired tensor's values.
    pub kept: bool,
}

/// A copy no longer tied: its name, and what went wrong.
pub(crate) type Broken = (String, String);

/// Finds the tied groups of `original` and checks each in `candidate`;
/// returns the checks and, for each copy no longer tied, its name and what
/// went wrong. Tensors the candidate lacks or reshaped are differences of
/// their own (found by the per-tensor proof); their groups are reported
/// broken.
pub(crate) fn check(
    original: &Model,
    candidate: &Model,
    tied: Tied,
) -> Result<(Vec<TieCheck>, Vec<Broken>)> {
    if tied == Tied::Skip {
        return Ok((Vec::new(), Vec::new()));
    }
    let groups = plan::locate_weights_with(original, tied)?.ties;
    if groups.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let by_key: HashMap<&str, usize> = candidate.tensors_by_key();
    let find = |i: usize| by_key.get(original.tensors[i].key.as_str()).copied();
    let mut checks = Vec::new();
    let mut differences = Vec::new();
    for g in &groups {
        let (permuted, broken) = check_group(original, candidate, g, &find)?;
        for (name, layout) in &broken {
            differences.push((
                name.clone(),
                format!(
                    "was tied to `{}` ({}) in the original, but is not {} in the candidate: \
                     the tie is broken (one copy permuted and the other not, or differently)",
                    g.rewired,
                    match layout {
                        CopyLayout::Same => "an equal copy",
                        CopyLayout::Transposed => "a transposed copy",
                    },
                    match layout {
                        CopyLayout::Same => "equal to it",
                        CopyLayout::Transposed => "its transpose",
                    },
                ),
            ));
        }
        checks.push(TieCheck {
            kind: g.kind,
            rewired: g.rewired.clone(),
            copies: g.copies().map(|c| (c.name.clone(), c.layout)).collect(),
            permuted,
            kept: broken.is_empty(),
        });
    }
    Ok((checks, differences))
}

/// Whether the group's rewired tensor changed, and the copies that no
/// longer match it.
fn check_group(
    original: &Model,
    candidate: &Model,
    g: &TieGroup,
    find: &dyn Fn(usize) -> Option<usize>,
) -> Result<(bool, Vec<(String, CopyLayout)>)> {
    let all_broken = || g.copies().map(|c| (c.name.clone(), c.layout)).collect();
    let Some(anchor) = find(g.tensor) else {
        return Ok((false, all_broken()));
    };
    let (ta, ca) = (&original.tensors[g.tensor], &candidate.tensors[anchor]);
    let rewired = candidate.payload(ca)?;
    let permuted = *rewired != *original.payload(ta)?;
    let fixed = |t: &crate::onnx::Tensor| {
        t.dims == *ta.dims && payload::encoding(t) == payload::encoding(ta)
    };
    if !fixed(ca) {
        return Ok((permuted, all_broken()));
    }
    let mut broken = Vec::new();
    for c in g.copies() {
        let ok = match find(c.tensor) {
            Some(j) => {
                let t = &candidate.tensors[j];
                t.dtype == ca.dtype
                    && t.dims == original.tensors[c.tensor].dims
                    && *candidate.payload(t)? == *plan::copy_payload(&ta.dims, c, &rewired)
            }
            None => false,
        };
        if !ok {
            broken.push((c.name.clone(), c.layout));
        }
    }
    Ok((permuted, broken))
}
