//! Tied weights: an output projection that is the token embedding.
//!
//! A framework ties a language model's output projection to its token
//! embedding by making both one parameter; the reference code rewires the
//! Linear layer, and the embedding changes with it because it is the same
//! memory. An ONNX file shows such a tie in one of two ways, and both must
//! end up permuted as one (docs/algorithm.md section 1, "Tied weights"):
//!
//! - *shared*: one tensor read by a dense op and by Gather. The locator
//!   makes it a weight with the dense use's view; Gather then reads the
//!   permuted table, as in the framework.
//! - *folded*: the exporter stored the parameter twice, the table read by
//!   Gather and a bitwise-equal copy (often transposed, `[D, V]`) read by
//!   the output MatMul. Without this module the copy is rewired on its own
//!   and the table is left as it was, so the tie is silently broken. Here
//!   the copies are found (a cheap hash first, then an exact comparison),
//!   the dense member is rewired, and its new payload is written into every
//!   copy, transposed back where the copy is stored transposed.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::Serialize;

use super::{Consumer, Plan, SkipKind, Skipped, Weight};
use crate::error::Result;
use crate::onnx::{payload, Model};

/// What to do with tied weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tied {
    /// Rewire the dense use and apply the same permutation to every copy,
    /// so that the tie holds (what the framework's shared parameter does).
    #[default]
    Rewire,
    /// Leave a tensor that Gather reads untouched, and rewire a folded
    /// dense copy on its own (the behaviour before ties were understood).
    Skip,
}

/// How the tie shows in the file.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TieKind {
    /// One tensor read by a dense op and by Gather.
    Shared,
    /// Separate tensors holding the same values, possibly transposed.
    Folded,
}

/// How a member's stored layout relates to the rewired tensor's.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CopyLayout {
    /// The same shape and bytes.
    Same,
    /// The 2-D transpose of the rewired tensor.
    Transposed,
}

/// One tensor of a tied group.
#[derive(Debug, Clone, Serialize)]
pub struct TieMember {
    /// The tensor's index in [`Model::tensors`](crate::onnx::Model::tensors).
    #[serde(skip)]
    pub tensor: usize,
    /// The tensor's name.
    pub name: String,
    /// How its layout relates to the rewired tensor's.
    pub layout: CopyLayout,
    /// The nodes that read it (dense ops and Gathers).
    pub read_by: Vec<Consumer>,
}

/// Tensors that hold one framework parameter, rewired as one.
#[derive(Debug, Clone, Serialize)]
pub struct TieGroup {
    /// How the tie shows in the file.
    pub kind: TieKind,
    /// The tensor rewired through its dense view (a located weight).
    pub rewired: String,
    /// Its index in [`Model::tensors`](crate::onnx::Model::tensors).
    #[serde(skip)]
    pub tensor: usize,
    /// Every member, the rewired tensor first.
    pub members: Vec<TieMember>,
}

impl TieGroup {
    /// The members other than the rewired tensor: they receive its new
    /// payload (transposed where their layout says so).
    pub fn copies(&self) -> impl Iterator<Item = &TieMember> {
        self.members.iter().filter(move |m| m.tensor != self.tensor)
    }
}

/// The smallest table treated as a tied copy: tiny tensors (biases,
/// scales, all-zero constants) are often equal by accident.
const MIN_ELEMENTS: u64 = 16;

/// A group for a weight that Gather also reads (kind [`TieKind::Shared`]).
pub(super) fn shared(w: &Weight, gathers: Vec<Consumer>) -> TieGroup {
    let mut read_by = w.consumers.clone();
    read_by.extend(gathers);
    TieGroup {
        kind: TieKind::Shared,
        rewired: w.name.clone(),
        tensor: w.tensor,
        members: vec![TieMember {
            tensor: w.tensor,
            name: w.name.clone(),
            layout: CopyLayout::Same,
            read_by,
        }],
    }
}

/// A candidate member of a folded group: its payload's elements and a
/// hash that does not depend on their order, so that a table and its
/// transposed copy land in one bucket.
struct Candidate {
    tensor: usize,
    width: usize,
    dims: [u64; 2],
    hash: u64,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: every input bit moves every output bit.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 2-D tensor with fixed-width elements, or None when it cannot be a
/// member (other rank, too small, varint storage).
fn candidate(model: &Model, tensor: usize) -> Result<Option<Candidate>> {
    let t = &model.tensors[tensor];
    if t.dims.len() != 2 || t.numel < MIN_ELEMENTS || !t.dtype.is_rewirable_float() {
        return Ok(None);
    }
    let Some(payload::Encoding::Fixed(width)) = payload::encoding(t) else {
        return Ok(None);
    };
    let bytes = model.payload(t)?;
    if bytes.len() as u64 != t.numel * width as u64 {
        return Ok(None);
    }
    let mut hash = 0u64;
    for c in bytes.chunks_exact(width) {
        let mut w = [0u8; 8];
        w[..width].copy_from_slice(c);
        hash = hash.wrapping_add(mix(u64::from_le_bytes(w)));
    }
    Ok(Some(Candidate {
        tensor,
        width,
        dims: [t.dims[0], t.dims[1]],
        hash,
    }))
}

/// How `copy` relates to `anchor`, if it holds the same matrix.
fn relation(model: &Model, anchor: &Candidate, copy: &Candidate) -> Result<Option<CopyLayout>> {
    let (ta, tc) = (&model.tensors[anchor.tensor], &model.tensors[copy.tensor]);
    if ta.dtype != tc.dtype || anchor.width != copy.width || anchor.hash != copy.hash {
        return Ok(None);
    }
    let (a, c) = (model.payload(ta)?, model.payload(tc)?);
    if copy.dims == anchor.dims && a == c {
        return Ok(Some(CopyLayout::Same));
    }
    let [rows, cols] = anchor.dims;
    if copy.dims == [cols, rows]
        && transpose_bytes(&a, rows as usize, cols as usize, anchor.width) == *c
    {
        return Ok(Some(CopyLayout::Transposed));
    }
    Ok(None)
}

/// The bytes of a `rows x cols` row-major matrix of `width`-byte elements,
/// transposed (a `cols x rows` matrix).
pub fn transpose_bytes(bytes: &[u8], rows: usize, cols: usize, width: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes.len()];
    for (i, row) in bytes.chunks_exact(cols * width).enumerate().take(rows) {
        for (j, e) in row.chunks_exact(width).enumerate() {
            let at = (j * rows + i) * width;
            out[at..at + width].copy_from_slice(e);
        }
    }
    out
}

/// The payload a copy receives when its group's rewired tensor gets
/// `rewired` (the rewired tensor's new payload, stored as `shape`).
pub fn copy_payload(shape: &[u64], copy: &TieMember, rewired: &[u8]) -> Vec<u8> {
    match (copy.layout, shape) {
        (CopyLayout::Transposed, [rows, cols]) if *rows * *cols > 0 => {
            let width = rewired.len() / (*rows * *cols) as usize;
            transpose_bytes(rewired, *rows as usize, *cols as usize, width)
        }
        _ => rewired.to_vec(),
    }
}

/// Finds folded copies: each table that only Gather reads (`tables`, with
/// its Gather readers) and that holds the same matrix as a located weight
/// joins that weight's group and leaves the skipped list. Other weights
/// equal to such a table join the group too, since the table shows they
/// are the one parameter. Only tensors whose type and size match a table
/// are read and hashed.
pub(super) fn find_folded(
    model: &Model,
    plan: &mut Plan,
    tables: Vec<(usize, Vec<Consumer>)>,
) -> Result<()> {
    let sized = |t: usize| {
        let t = &model.tensors[t];
        (t.dtype, t.numel)
    };
    let table_sizes: std::collections::HashSet<_> = tables.iter().map(|(t, _)| sized(*t)).collect();
    let weights: Vec<usize> = plan
        .weights
        .iter()
        .map(|w| w.tensor)
        .filter(|&t| model.tensors[t].dims.len() == 2 && table_sizes.contains(&sized(t)))
        .collect();
    if weights.is_empty() {
        return Ok(());
    }
    let hashed = |list: Vec<usize>| -> Result<Vec<Candidate>> {
        let found = list
            .into_par_iter()
            .map(|t| candidate(model, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(found.into_iter().flatten().collect())
    };
    let weights = hashed(weights)?;
    let mut readers: HashMap<usize, Vec<Consumer>> = tables.into_iter().collect();
    let mut tables = hashed(readers.keys().copied().collect())?;
    tables.sort_by_key(|c| c.tensor);
    let mut grouped = vec![false; weights.len()];
    let mut groups = Vec::new();
    for (k, anchor) in weights.iter().enumerate() {
        if grouped[k] {
            continue;
        }
        let mut found = Vec::new();
        let mut left = Vec::new();
        for table in tables.drain(..) {
            match relation(model, anchor, &table)? {
                Some(layout) => found.push((table.tensor, layout)),
                None => left.push(table),
            }
        }
        tables = left;
        if found.is_empty() {
            continue;
        }
        let mut members = vec![(anchor.tensor, CopyLayout::Same)];
        for (j, other) in weights.iter().enumerate().skip(k + 1) {
            if !grouped[j] {
                if let Some(layout) = relation(model, anchor, other)? {
                    grouped[j] = true;
                    members.push((other.tensor, layout));
                }
            }
        }
        members.extend(found);
        groups.push(members);
    }
    for members in groups {
        let anchor = members[0].0;
        let mut member = |(tensor, layout): (usize, CopyLayout), plan: &Plan| TieMember {
            tensor,
            name: model.tensors[tensor].name.clone(),
            layout,
            read_by: match plan.weights.iter().find(|w| w.tensor == tensor) {
                Some(w) => w.consumers.clone(),
                None => readers.remove(&tensor).unwrap_or_default(),
            },
        };
        let members: Vec<TieMember> = members.into_iter().map(|m| member(m, plan)).collect();
        // Copies are written, not rewired on their own, nor skipped.
        plan.weights
            .retain(|w| w.tensor == anchor || !members.iter().any(|m| m.tensor == w.tensor));
        plan.skipped
            .retain(|s| !members.iter().any(|m| m.tensor == s.tensor));
        match plan.ties.iter_mut().find(|g| g.tensor == anchor) {
            // A shared tied weight with a folded copy besides.
            Some(g) => {
                g.kind = TieKind::Folded;
                g.members.extend(members.into_iter().skip(1));
            }
            None => plan.ties.push(TieGroup {
                kind: TieKind::Folded,
                rewired: model.tensors[anchor].name.clone(),
                tensor: anchor,
                members,
            }),
        }
    }
    plan.ties.sort_by_key(|g| g.tensor);
    Ok(())
}

impl Plan {
    /// The group whose rewired tensor is `tensor`, if any.
    pub fn tie_of(&self, tensor: usize) -> Option<&TieGroup> {
        self.ties.iter().find(|g| g.tensor == tensor)
    }

    /// Dissolves the group rewired through `tensor` (which is not rewired
    /// after all): its copies join the skipped list with `kind` and
    /// `reason`, since they must stay as they are to stay tied.
    pub(crate) fn untie(&mut self, tensor: usize, kind: SkipKind, reason: &str) {
        let Some(k) = self.ties.iter().position(|g| g.tensor == tensor) else {
            return;
        };
        let group = self.ties.remove(k);
        for m in group.copies() {
            self.skipped.push(Skipped {
                tensor: m.tensor,
                name: m.name.clone(),
                kind,
                reason: format!("is tied to `{}`, which {reason}", group.rewired),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose_bytes;

    #[test]
    fn transposing_twice_gives_the_bytes_back() {
        let m: Vec<u8> = (0..24).collect();
        let t = transpose_bytes(&m, 2, 3, 4);
        assert_eq!(&t[..8], &[0, 1, 2, 3, 12, 13, 14, 15]);
        assert_eq!(transpose_bytes(&t, 3, 2, 4), m);
    }
}
