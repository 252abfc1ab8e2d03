//! Finding the weights of dense and convolution layers, and how each one is
//! oriented.
//!
//! A tensor is a weight when every path from it ends in a weight slot (Gemm
//! B, a constant MatMul operand, Conv/ConvTranspose W), possibly through
//! Identity, Cast, Transpose or a model-local function call. Its matrix view
//! (rows = output neurons) follows the table of docs/algorithm.md section 1, with
//! Transposes on the way folded in. Everything else is listed as skipped,
//! with the reason a user needs to understand why it was left alone.
//! Tied weights (an output projection that is the token embedding) are
//! found in [`ties`].

mod ties;

use std::collections::HashMap;

use rayon::prelude::*;
use regex::Regex;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::onnx::payload;
use crate::onnx::DataType;
use crate::onnx::{GraphKind, Model, TensorOwner};

pub use ties::{copy_payload, transpose_bytes, CopyLayout, TieGroup, TieKind, TieMember, Tied};

/// One reader of a weight.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Consumer {
    /// The operator that reads the weight.
    pub op: String,
    /// That node's label.
    pub node: String,
    /// Which of its inputs the weight is.
    pub input: usize,
    /// Ops seen through between the tensor and this consumer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub through: Vec<String>,
}

/// A tensor selected for rewiring, with its matrix view.
#[derive(Debug, Clone, Serialize)]
pub struct Weight {
    /// The tensor's index in [`Model::tensors`](crate::onnx::Model::tensors).
    #[serde(skip)]
    pub tensor: usize,
    /// The tensor's name.
    pub name: String,
    /// Unique, stable identity (graph path and name); seeds the tensor's RNG.
    pub key: String,
    /// The op of the first consumer (Gemm, MatMul, Conv, ConvTranspose).
    pub op: String,
    /// Every node that reads it as a weight.
    pub consumers: Vec<Consumer>,
    /// The element type.
    pub dtype: DataType,
    /// The stored shape.
    pub shape: Vec<u64>,
    /// Rows of the matrix view (output neurons).
    pub rows: u64,
    /// Columns of the matrix view (fan-in).
    pub cols: u64,
    /// Storage axes in the order of the matrix view: rows are axis
    /// `axes[0]`, columns the remaining axes flattened in this order.
    pub axes: Vec<usize>,
    /// True when the view is not the stored layout read row-major.
    pub transposed: bool,
    /// Where its values are stored ([`Storage::kind`](crate::onnx::Storage::kind)).
    pub storage: String,
}

/// Why a tensor is not rewired.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SkipKind {
    /// Read by an op other than a dense/conv weight slot.
    NotAWeight,
    /// Read by a weight slot and by something else.
    Shared,
    /// Integer, quantized, boolean or string data.
    Dtype,
    /// Fewer than two dimensions, or no elements.
    Shape,
    /// Contains NaN or infinity.
    NonFinite,
    /// Consumers disagree on orientation.
    Orientation,
    /// Stored in a way pa-onnx cannot rewrite in place.
    Storage,
    /// Not read by any node.
    Unused,
    /// Left out by the user's selection.
    Deselected,
}

/// A tensor that is not rewired, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The tensor's index in [`Model::tensors`](crate::onnx::Model::tensors).
    #[serde(skip)]
    pub tensor: usize,
    /// The tensor's name.
    pub name: String,
    /// The kind of reason.
    pub kind: SkipKind,
    /// The reason, in words.
    pub reason: String,
}

impl Skipped {
    /// The entry of a weight holding a NaN or an infinity (rewiring it is
    /// meaningless: its strengths would be NaN).
    pub fn non_finite(w: &Weight) -> Skipped {
        Skipped {
            tensor: w.tensor,
            name: w.name.clone(),
            kind: SkipKind::NonFinite,
            reason: "contains NaN or infinite values".into(),
        }
    }
}

/// The result of locating: what will be rewired and what will not.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    /// The weights to rewire, in model order.
    pub weights: Vec<Weight>,
    /// Everything else that was looked at, with the reason.
    pub skipped: Vec<Skipped>,
    /// Tensors that hold one tied parameter, each group rewired as one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<TieGroup>,
}

/// The user's selection on top of the located weights.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Keep only weights whose op is in this list (empty: all).
    pub ops: Vec<String>,
    /// Keep only weights whose tensor or consumer node name matches.
    pub include: Option<Regex>,
    /// Drop weights whose tensor or consumer node name matches.
    pub exclude: Option<Regex>,
    /// Drop weights with fewer elements.
    pub min_size: u64,
    /// What to do with tied weights (applied when locating).
    pub tied: Tied,
}

impl Selection {
    /// Builds a selection from option strings, validating them.
    pub fn new(
        ops: &[String],
        include: Option<&str>,
        exclude: Option<&str>,
        min_size: u64,
    ) -> Result<Selection> {
        let known = ["Gemm", "MatMul", "Conv", "ConvTranspose"];
        let mut canon = Vec::new();
        for op in ops {
            match known.iter().find(|k| k.eq_ignore_ascii_case(op)) {
                Some(k) => canon.push(k.to_string()),
                None => {
                    return Err(Error::InvalidOption {
                        option: "--op".into(),
                        detail: format!("`{op}` is not one of {}", known.join(", ")),
                    })
                }
            }
        }
        let re = |opt: &str, s: Option<&str>| -> Result<Option<Regex>> {
            s.map(|s| {
                Regex::new(s).map_err(|e| Error::InvalidOption {
                    option: opt.into(),
                    detail: e.to_string(),
                })
            })
            .transpose()
        };
        Ok(Selection {
            ops: canon,
            include: re("--include", include)?,
            exclude: re("--exclude", exclude)?,
            min_size,
            tied: Tied::default(),
        })
    }

    /// Why the selection leaves `w` out, if it does. The names of a tied
    /// group's members count as the weight's own: `--exclude wte` leaves
    /// the embedding alone even where its tied copy is the tensor rewired.
    fn rejects(&self, w: &Weight, tie: Option<&TieGroup>) -> Option<String> {
        let members = tie.into_iter().flat_map(|g| g.members.iter());
        let names = || {
            std::iter::once(w.name.as_str())
                .chain(w.consumers.iter().map(|c| c.node.as_str()))
                .chain(members.clone().map(|m| m.name.as_str()))
        };
        if !self.ops.is_empty() && !w.consumers.iter().any(|c| self.ops.contains(&c.op)) {
            return Some(format!("its op {} is not selected by --op", w.op));
        }
        if let Some(re) = &self.include {
            if !names().any(|n| re.is_match(n)) {
                return Some(format!("matches no --include pattern `{re}`"));
            }
        }
        if let Some(re) = &self.exclude {
            if let Some(n) = names().find(|n| re.is_match(n)) {
                return Some(format!("`{n}` matches --exclude `{re}`"));
            }
        }
        let numel = w.rows * w.cols;
        if numel < self.min_size {
            return Some(format!(
                "has {numel} elements, fewer than --min-size {}",
                self.min_size
            ));
        }
        None
    }
}

impl Plan {
    /// Moves weights the selection rejects to the skipped list.
    pub fn select(mut self, sel: &Selection) -> Plan {
        let mut kept = Vec::new();
        for w in std::mem::take(&mut self.weights) {
            match sel.rejects(&w, self.tie_of(w.tensor)) {
                Some(reason) => {
                    self.untie(w.tensor, SkipKind::Deselected, "is not selected");
                    self.skipped.push(Skipped {
                        tensor: w.tensor,
                        name: w.name,
                        kind: SkipKind::Deselected,
                        reason,
                    })
                }
                None => kept.push(w),
            }
        }
        self.weights = kept;
        self
    }
}

/// A reader of a value: (node index, input slot), or None for a graph
/// output.
type Reader = Option<(usize, usize)>;

/// Where a name is defined, per graph scope.
#[derive(Default)]
struct Scopes {
    /// (defining graph, name) -> its readers.
    uses: HashMap<(usize, String), Vec<Reader>>,
}

fn build_scopes(model: &Model) -> Scopes {
    let mut defined: Vec<std::collections::HashSet<&str>> = Vec::with_capacity(model.graphs.len());
    for g in &model.graphs {
        let mut names = std::collections::HashSet::new();
        for &t in &g.initializers {
            names.insert(model.tensors[t].name.as_str());
        }
        for i in &g.inputs {
            names.insert(i.as_str());
        }
        for &n in &g.nodes {
            for o in &model.nodes[n].outputs {
                names.insert(o.as_str());
            }
        }
        defined.push(names);
    }
    let resolve = |mut g: usize, name: &str| -> usize {
        loop {
            if defined[g].contains(name) {
                return g;
            }
            match model.graphs[g].parent {
                Some(p) => g = p,
                None => return g,
            }
        }
    };
    let mut scopes = Scopes::default();
    for (ni, node) in model.nodes.iter().enumerate() {
        for (slot, name) in node.inputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let g = resolve(node.graph, name);
            scopes
                .uses
                .entry((g, name.clone()))
                .or_default()
                .push(Some((ni, slot)));
        }
    }
    for (gi, g) in model.graphs.iter().enumerate() {
        for name in &g.outputs {
            let d = resolve(gi, name);
            scopes.uses.entry((d, name.clone())).or_default().push(None);
        }
    }
    scopes
}

enum Finding {
    Dense {
        consumer: Consumer,
        axes: Vec<usize>,
    },
    /// Read as the table of a Gather on its storage axis 0 (an embedding);
    /// a blocker unless the tensor is a tied weight.
    Gather {
        consumer: Consumer,
        reason: String,
    },
    Blocker(String, bool),
}

struct Walker<'a> {
    model: &'a Model,
    scopes: &'a Scopes,
    functions: &'a HashMap<(&'a str, &'a str), usize>,
    rank: usize,
    /// Calls of `visit` so far for this tensor: a hostile graph (a name
    /// defined twice, or reading itself) can make the number of paths
    /// exponential in the depth, so the walk has a budget.
    steps: std::cell::Cell<usize>,
}

/// Most `visit` calls spent on one tensor.
const MAX_STEPS: usize = 10_000;

impl Walker<'_> {
    fn visit(
        &self,
        graph: usize,
        name: &str,
        axes: Vec<usize>,
        through: Vec<String>,
        depth: usize,
        out: &mut Vec<Finding>,
    ) {
        if depth > 64 {
            out.push(Finding::Blocker(
                "reached through more than 64 pass-through ops".into(),
                false,
            ));
            return;
        }
        self.steps.set(self.steps.get() + 1);
        if self.steps.get() > MAX_STEPS {
            let reason = format!("is reached through more than {MAX_STEPS} paths");
            out.push(Finding::Blocker(reason, false));
            return;
        }
        let Some(uses) = self.scopes.uses.get(&(graph, name.to_string())) else {
            return;
        };
        for u in uses {
            let Some((ni, slot)) = *u else {
                out.push(Finding::Blocker(
                    format!("is an output of the {}", self.model.graph_label(graph)),
                    false,
                ));
                continue;
            };
            let node = &self.model.nodes[ni];
            let label = node.label(ni);
            let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
            let op = node.op_type.as_str();
            let next = |out_name: Option<&String>, axes: Vec<usize>, out: &mut Vec<Finding>| {
                if let Some(o) = out_name {
                    let mut t = through.clone();
                    t.push(op.to_string());
                    self.visit(node.graph, o, axes, t, depth + 1, out);
                }
            };
            let consumer = || Consumer {
                op: op.to_string(),
                node: label.clone(),
                input: slot,
                through: through.clone(),
            };
            if let Some(&fg) = self.functions.get(&(node.domain.as_str(), op)) {
                match self.model.graphs[fg].inputs.get(slot) {
                    Some(formal) => {
                        let mut t = through.clone();
                        t.push(op.to_string());
                        self.visit(fg, formal, axes.clone(), t, depth + 1, out);
                    }
                    None => out.push(Finding::Blocker(
                        format!(
                            "is input {slot} of function call `{label}`, which has no such input"
                        ),
                        false,
                    )),
                }
                continue;
            }
            if !default_domain {
                out.push(Finding::Blocker(
                    format!(
                        "also read by {}::{op} node `{label}` (input {slot})",
                        node.domain
                    ),
                    false,
                ));
                continue;
            }
            match (op, slot) {
                ("Identity" | "Cast", 0) => next(node.outputs.first(), axes.clone(), out),
                ("Transpose", 0) => {
                    let q: Vec<i64> = match node.attr_ints("perm") {
                        Some(p) => p.to_vec(),
                        None => (0..axes.len() as i64).rev().collect(),
                    };
                    let valid = q.len() == axes.len() && {
                        let mut seen = vec![false; q.len()];
                        q.iter().all(|&a| {
                            a >= 0
                                && (a as usize) < seen.len()
                                && !std::mem::replace(&mut seen[a as usize], true)
                        })
                    };
                    if !valid {
                        out.push(Finding::Blocker(
                            format!("read by Transpose `{label}` with a perm that does not fit its rank"),
                            false,
                        ));
                        continue;
                    }
                    let new_axes = q.iter().map(|&a| axes[a as usize]).collect();
                    next(node.outputs.first(), new_axes, out);
                }
                ("Gemm", 1) => {
                    if axes.len() != 2 {
                        out.push(Finding::Blocker(
                            format!("is a rank-{} input of Gemm `{label}`", axes.len()),
                            true,
                        ));
                        continue;
                    }
                    let trans_b = node.attr_int("transB").unwrap_or(0) != 0;
                    let axes = if trans_b {
                        axes.clone()
                    } else {
                        vec![axes[1], axes[0]]
                    };
                    out.push(Finding::Dense {
                        consumer: consumer(),
                        axes,
                    });
                }
                ("MatMul", 0 | 1) => {
                    if axes.len() != 2 {
                        out.push(Finding::Blocker(
                            format!("is a rank-{} operand of MatMul `{label}` (only rank-2 weights are rewired)", axes.len()),
                            true,
                        ));
                        continue;
                    }
                    let axes = if slot == 1 {
                        vec![axes[1], axes[0]]
                    } else {
                        axes.clone()
                    };
                    out.push(Finding::Dense {
                        consumer: consumer(),
                        axes,
                    });
                }
                ("Conv" | "ConvTranspose", 1) => {
                    if axes.len() < 3 {
                        out.push(Finding::Blocker(
                            format!("is a rank-{} weight of {op} `{label}`", axes.len()),
                            true,
                        ));
                        continue;
                    }
                    out.push(Finding::Dense {
                        consumer: consumer(),
                        axes: axes.clone(),
                    });
                }
                ("Gather", 0)
                    if axes.len() == 2
                        && axes[0] == 0
                        && matches!(node.attr_int("axis").unwrap_or(0), 0 | -2) =>
                {
                    out.push(Finding::Gather {
                        consumer: consumer(),
                        reason: format!("is read by {op} `{label}` (input {slot})"),
                    });
                }
                ("Gemm", 2) | ("Conv" | "ConvTranspose", 2) => {
                    out.push(Finding::Blocker(
                        format!("is the bias of {op} `{label}`"),
                        false,
                    ));
                }
                _ => out.push(Finding::Blocker(
                    format!("is read by {op} `{label}` (input {slot})"),
                    false,
                )),
            }
        }
    }
}

/// Tensors whose external byte range overlaps another tensor's, each with
/// one tensor it overlaps. Rewriting such a tensor in place would change
/// the other one too (or be overwritten by it), so neither is rewired.
fn shared_external_bytes(model: &Model) -> HashMap<usize, usize> {
    let mut ranges: Vec<(&std::path::Path, u64, u64, usize)> = model
        .tensors
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match &t.storage {
            crate::onnx::Storage::External {
                file,
                offset,
                length,
                ..
            } if *length > 0 => Some((file.as_path(), *offset, offset + length, i)),
            _ => None,
        })
        .collect();
    ranges.sort_unstable();
    let mut shared = HashMap::new();
    // Sweep clusters of transitively overlapping ranges in each file.
    let mut k = 0;
    while k < ranges.len() {
        let (file, _, mut end, _) = ranges[k];
        let mut j = k + 1;
        while j < ranges.len() && ranges[j].0 == file && ranges[j].1 < end {
            end = end.max(ranges[j].2);
            j += 1;
        }
        if j - k > 1 {
            for m in k..j {
                let other = if m == k { ranges[k + 1].3 } else { ranges[k].3 };
                shared.insert(ranges[m].3, other);
            }
        }
        k = j;
    }
    shared
}

/// Locates every dense and convolution weight of `model`, and moves those
/// holding a NaN or an infinity to the skipped list.
pub fn locate(model: &Model) -> Result<Plan> {
    locate_with(model, Tied::default())
}

/// [`locate`] with a choice of what to do with tied weights.
pub fn locate_with(model: &Model, tied: Tied) -> Result<Plan> {
    let mut plan = locate_weights_with(model, tied)?;
    skip_non_finite(model, &mut plan)?;
    Ok(plan)
}

/// [`locate`] without reading the weights' values: NaN and infinite
/// weights stay in the plan. Rewiring finds them as it encodes each weight
/// and skips them then (see [`crate::pipeline::rewire_model`]), which
/// saves reading every weight twice.
pub fn locate_weights(model: &Model) -> Result<Plan> {
    locate_weights_with(model, Tied::default())
}

/// [`locate_weights`] with a choice of what to do with tied weights.
pub fn locate_weights_with(model: &Model, tied: Tied) -> Result<Plan> {
    let scopes = build_scopes(model);
    let functions = model
        .graphs
        .iter()
        .enumerate()
        .filter_map(|(i, g)| match &g.kind {
            GraphKind::Function { domain, name } => Some(((domain.as_str(), name.as_str()), i)),
            _ => None,
        })
        .collect();
    let shared = shared_external_bytes(model);
    let mut plan = Plan::default();
    // Tables only Gather reads, and weights Gather also reads (ties).
    let mut tables = Vec::new();
    let mut gathered = HashMap::new();
    for (ti, t) in model.tensors.iter().enumerate() {
        let skip = |kind: SkipKind, reason: String| Skipped {
            tensor: ti,
            name: t.name.clone(),
            kind,
            reason,
        };
        let start = match &t.owner {
            TensorOwner::Initializer { graph } => (*graph, t.name.clone()),
            TensorOwner::ConstantNode { node } => (model.nodes[*node].graph, t.name.clone()),
            TensorOwner::Sparse { .. } => {
                plan.skipped.push(skip(
                    SkipKind::Storage,
                    "is part of a sparse initializer".into(),
                ));
                continue;
            }
            TensorOwner::Attribute { node, attribute } => {
                let n = &model.nodes[*node];
                plan.skipped.push(skip(
                    SkipKind::NotAWeight,
                    format!(
                        "is the `{attribute}` attribute of {} `{}`",
                        n.op_type,
                        n.label(*node)
                    ),
                ));
                continue;
            }
        };
        let walker = Walker {
            model,
            scopes: &scopes,
            functions: &functions,
            rank: t.dims.len(),
            steps: std::cell::Cell::new(0),
        };
        let mut findings = Vec::new();
        let axes: Vec<usize> = (0..walker.rank).collect();
        walker.visit(start.0, &start.1, axes, Vec::new(), 0, &mut findings);

        let mut dense = Vec::new();
        let mut blockers = Vec::new();
        let mut gathers = Vec::new();
        for f in findings {
            match f {
                Finding::Dense { consumer, axes } => dense.push((consumer, axes)),
                Finding::Gather { consumer, reason } => {
                    gathers.push(consumer);
                    blockers.push((reason, false));
                }
                Finding::Blocker(reason, shape) => blockers.push((reason, shape)),
            }
        }
        if tied == Tied::Rewire && !gathers.is_empty() && blockers.len() == gathers.len() {
            if dense.is_empty() {
                tables.push((ti, std::mem::take(&mut gathers)));
            } else {
                // A tied weight: the dense use gives the view, and the
                // Gathers read the permuted table.
                blockers.clear();
            }
        }
        if dense.is_empty() && blockers.is_empty() {
            plan.skipped
                .push(skip(SkipKind::Unused, "is not read by any node".into()));
            continue;
        }
        if let Some((reason, shape_issue)) = blockers.first() {
            let kind = if *shape_issue {
                SkipKind::Shape
            } else if dense.is_empty() {
                SkipKind::NotAWeight
            } else {
                SkipKind::Shared
            };
            let reason = if dense.is_empty() || *shape_issue {
                reason.clone()
            } else {
                format!(
                    "is a weight of {} `{}` but {reason}",
                    dense[0].0.op, dense[0].0.node
                )
            };
            plan.skipped.push(skip(kind, reason));
            continue;
        }
        if !t.dtype.is_rewirable_float() {
            plan.skipped.push(skip(
                SkipKind::Dtype,
                format!(
                    "has dtype {} (only float16/bfloat16/float32/float64 are rewired)",
                    t.dtype
                ),
            ));
            continue;
        }
        let axes = dense[0].1.clone();
        if let Some((c, _)) = dense.iter().find(|(_, a)| *a != axes) {
            plan.skipped.push(skip(
                SkipKind::Orientation,
                format!(
                    "{} `{}` and {} `{}` read it in different orientations",
                    dense[0].0.op, dense[0].0.node, c.op, c.node
                ),
            ));
            continue;
        }
        if t.numel == 0 {
            plan.skipped
                .push(skip(SkipKind::Shape, "has no elements".into()));
            continue;
        }
        if payload::encoding(t).is_none() {
            let why = match &t.storage {
                crate::onnx::Storage::Unsupported(r) => r.clone(),
                s => s.kind().to_string(),
            };
            plan.skipped.push(skip(
                SkipKind::Storage,
                format!("is stored as {why}, which cannot be permuted in place"),
            ));
            continue;
        }
        if let Some(&other) = shared.get(&ti) {
            plan.skipped.push(skip(
                SkipKind::Storage,
                format!(
                    "shares external data bytes with `{}`, so rewiring one would change the other",
                    model.tensors[other].name
                ),
            ));
            continue;
        }
        let rows = t.dims[axes[0]];
        let cols = t.numel / rows.max(1);
        let transposed = axes.iter().enumerate().any(|(i, &a)| i != a);
        if !gathers.is_empty() {
            gathered.insert(ti, gathers);
        }
        plan.weights.push(Weight {
            tensor: ti,
            name: t.name.clone(),
            key: t.key.clone(),
            op: dense[0].0.op.clone(),
            consumers: dense.into_iter().map(|(c, _)| c).collect(),
            dtype: t.dtype,
            shape: t.dims.clone(),
            rows,
            cols,
            axes,
            transposed,
            storage: t.storage.kind().to_string(),
        });
    }
    for w in &plan.weights {
        if let Some(g) = gathered.remove(&w.tensor) {
            plan.ties.push(ties::shared(w, g));
        }
    }
    if !tables.is_empty() {
        ties::find_folded(model, &mut plan, tables)?;
    }
    Ok(plan)
}

/// Moves the weights holding a NaN or an infinity to the skipped list.
/// This reads every byte of every weight, so the weights are checked on
/// all cores at once rather than one by one as they are found (for a
/// 47 MB model, about 9 ms on one core).
fn skip_non_finite(model: &Model, plan: &mut Plan) -> Result<()> {
    let finite: Vec<Result<bool>> = plan
        .weights
        .par_iter()
        .map(|w| {
            let t = &model.tensors[w.tensor];
            payload::all_finite(t, &model.payload(t)?)
        })
        .collect();
    let mut kept = Vec::with_capacity(plan.weights.len());
    // In tensor order, so that the first error reported is the same one
    // a tensor-by-tensor check would meet first.
    for (w, ok) in std::mem::take(&mut plan.weights).into_iter().zip(finite) {
        if ok? {
            kept.push(w);
        } else {
            plan.untie(
                w.tensor,
                SkipKind::NonFinite,
                "contains NaN or infinite values",
            );
            plan.skipped.push(Skipped::non_finite(&w));
        }
    }
    plan.weights = kept;
    plan.skipped.sort_by_key(|s| s.tensor);
    Ok(())
}
