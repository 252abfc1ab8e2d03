//! The structural proof: every tensor of a candidate is a bitwise
//! permutation of the same tensor in the original, and nothing else differs.
//!
//! Two files laid out alike (what pa-onnx writes) are compared byte for byte
//! outside the tensor payloads. Files that were re-encoded by another tool
//! cannot be aligned that way; they are compared tensor by tensor by name,
//! and node by node, and every difference is listed. Tied weights must
//! stay tied: see [`super::ties`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::budget::DEFAULT_MAX_MEMORY;
use crate::error::Result;
use crate::onnx::payload;
use crate::onnx::{Model, Storage, Tensor};
use crate::plan::{CopyLayout, Tied};

pub use super::ties::TieCheck;

/// How the two files were compared.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Same layout: all bytes outside tensor payloads compared directly.
    Aligned,
    /// Different layouts: tensors matched by name, nodes by position.
    ByName,
}

/// One thing that breaks the permutation property.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    /// The tensor concerned, when the difference is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    /// What differs, in words.
    pub detail: String,
}

/// The outcome of [`compare_files`].
#[derive(Debug, Clone, Serialize)]
pub struct StructureReport {
    /// How the files were compared.
    pub mode: Mode,
    /// Tensors whose values were rearranged.
    pub permuted: Vec<String>,
    /// Tensors whose payload is byte-identical.
    pub identical: Vec<String>,
    /// Everything that breaks the permutation property.
    pub differences: Vec<Difference>,
    /// The original's tied groups, and whether the candidate kept each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<TieCheck>,
}

impl StructureReport {
    /// True when every tensor is a permutation and nothing else differs.
    pub fn passed(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The summary `pa-onnx verify` prints: the mode, the tensors permuted,
/// every difference, and the verdict (no newline after it).
impl fmt::Display for StructureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Aligned => "same layout, every byte outside tensor payloads compared",
            Mode::ByName => "different layouts, tensors matched by name and nodes by position",
        };
        writeln!(f, "structure: {mode}")?;
        writeln!(
            f,
            "  {} tensors permuted, {} identical",
            self.permuted.len(),
            self.identical.len()
        )?;
        for name in &self.permuted {
            writeln!(f, "  permuted: {name}")?;
        }
        for t in &self.ties {
            let copies: Vec<String> = t
                .copies
                .iter()
                .map(|(n, l)| match l {
                    CopyLayout::Same => format!("`{n}`"),
                    CopyLayout::Transposed => format!("`{n}` (transposed)"),
                })
                .collect();
            let members = if copies.is_empty() {
                "one tensor read by Gather and a dense op".to_string()
            } else {
                format!("with {}", copies.join(", "))
            };
            let verdict = match (t.kept, t.permuted) {
                (true, true) => "kept: permuted as one",
                (true, false) => "kept: not permuted",
                (false, _) => "BROKEN: the copies no longer hold the same values",
            };
            writeln!(f, "  tied: `{}` {members}: {verdict}", t.rewired)?;
        }
        if self.passed() {
            write!(f, "structure: PASSED: every tensor is a bitwise permutation of the original's, and nothing else differs")
        } else {
            for d in &self.differences {
                match &d.tensor {
                    Some(t) => writeln!(f, "  difference: `{t}`: {}", d.detail)?,
                    None => writeln!(f, "  difference: {}", d.detail)?,
                }
            }
            write!(
                f,
                "structure: FAILED: {} difference(s)",
                self.differences.len()
            )
        }
    }
}

fn in_file_range(t: &Tensor) -> Option<Range<usize>> {
    match &t.storage {
        Storage::Raw(r) | Storage::Packed { range: r, .. } => Some(r.clone()),
        _ => None,
    }
}

/// One tensor pair's verdict: its name, Some(permuted?) when the values
/// match, or the difference found.
type Verdict = (String, Option<bool>, Option<String>);

/// Compares the tensor payloads of matched pairs.
fn compare_tensors(
    a: &Model,
    b: &Model,
    pairs: &[(usize, usize)],
    report: &mut StructureReport,
) -> Result<()> {
    // Large tensors take turns (see `batches`): comparing one holds both
    // payloads and their sorted elements.
    let mut results: Vec<(usize, Verdict)> = Vec::new();
    for batch in batches(a, pairs) {
        let part = batch
            .par_iter()
            .map(|&k| compare_pair(a, b, pairs[k].0, pairs[k].1).map(|v| (k, v)))
            .collect::<Result<Vec<_>>>()?;
        results.extend(part);
    }
    // Back in the order of the pairs, whatever the batches were.
    results.sort_by_key(|(k, _)| *k);
    for (_, (name, permuted, diff)) in results {
        match (permuted, diff) {
            (Some(true), _) => report.permuted.push(name),
            (Some(false), _) => report.identical.push(name),
            (None, Some(detail)) => report.differences.push(Difference {
                tensor: Some(name),
                detail,
            }),
            (None, None) => unreachable!(),
        }
    }
    Ok(())
}

/// Whether `a` and `b` share one layout: the same tensors at the same
/// offsets, the same external files.
fn aligned(a: &Model, b: &Model) -> bool {
    a.bytes.len() == b.bytes.len()
        && a.tensors.len() == b.tensors.len()
        && a.tensors.iter().zip(&b.tensors).all(|(x, y)| {
            x.key == y.key
                && match (&x.storage, &y.storage) {
                    (Storage::Raw(r), Storage::Raw(s)) => r == s,
                    (
                        Storage::Packed { field: f, range: r },
                        Storage::Packed { field: g, range: s },
                    ) => f == g && r == s,
                    (
                        Storage::External {
                            location: l1,
                            offset: o1,
                            length: n1,
                            ..
                        },
                        Storage::External {
                            location: l2,
                            offset: o2,
                            length: n2,
                            ..
                        },
                    ) => l1 == l2 && o1 == o2 && n1 == n2,
                    (x, y) => x == y,
                }
        })
}

/// Compares bytes outside payload ranges; returns the first differing
/// offset.
fn first_gap_difference(a: &[u8], b: &[u8], holes: &[Range<usize>]) -> Option<usize> {
    let mut pos = 0;
    let end = a.len().min(b.len());
    for hole in holes.iter().chain(std::iter::once(&(end..end))) {
        if hole.start > pos {
            let (x, y) = (&a[pos..hole.start], &b[pos..hole.start]);
            if x != y {
                let k = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(0);
                return Some(pos + k);
            }
        }
        pos = pos.max(hole.end);
    }
    None
}

fn external_gaps(a: &Model, b: &Model, report: &mut StructureReport) -> Result<()> {
    // Group each external file's tensor ranges, then compare the rest.
    let mut files: BTreeMap<(String, std::path::PathBuf, std::path::PathBuf), Vec<Range<usize>>> =
        BTreeMap::new();
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        if let (
            Storage::External {
                location,
                file: fa,
                offset,
                length,
            },
            Storage::External { file: fb, .. },
        ) = (&x.storage, &y.storage)
        {
            files
                .entry((location.clone(), fa.clone(), fb.clone()))
                .or_default()
                .push(*offset as usize..(*offset + *length) as usize);
        }
    }
    for ((location, fa, fb), mut holes) in files {
        holes.sort_by_key(|r| r.start);
        let open = |p: &Path| {
            let f = std::fs::File::open(p).map_err(|e| crate::Error::io("cannot open", p, e))?;
            let len = f
                .metadata()
                .map_err(|e| crate::Error::io("cannot stat", p, e))?
                .len();
            Ok::<_, crate::Error>((f, len))
        };
        let ((ha, la), (hb, lb)) = (open(&fa)?, open(&fb)?);
        if la != lb {
            report.differences.push(Difference {
                tensor: None,
                detail: format!("external file `{location}` has {lb} bytes, the original's {la}"),
            });
        } else if let Some(off) = first_gap_difference_in_files(&ha, &hb, la as usize, &holes, &fa)?
        {
            report.differences.push(Difference {
                tensor: None,
                detail: format!(
                    "external file `{location}` differs at byte {off}, outside any tensor"
                ),
            });
        }
    }
    Ok(())
}

/// [`first_gap_difference`] on two files of `len` bytes, read a chunk at a
/// time: data files can be far larger than memory.
fn first_gap_difference_in_files(
    a: &std::fs::File,
    b: &std::fs::File,
    len: usize,
    holes: &[Range<usize>],
    path: &Path,
) -> Result<Option<usize>> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 1 << 20;
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut pos = 0;
    for hole in holes.iter().chain(std::iter::once(&(len..len))) {
        let mut at = pos;
        while at < hole.start.min(len) {
            let n = CHUNK.min(hole.start.min(len) - at);
            a.read_exact_at(&mut x[..n], at as u64)
                .map_err(|e| crate::Error::io("cannot read", path, e))?;
            b.read_exact_at(&mut y[..n], at as u64)
                .map_err(|e| crate::Error::io("cannot read", path, e))?;
            if let Some(k) = x[..n].iter().zip(&y[..n]).position(|(p, q)| p != q) {
                return Ok(Some(at + k));
            }
            at += n;
        }
        pos = pos.max(hole.end);
    }
    Ok(None)
}

fn compare_by_name(a: &Model, b: &Model, report: &mut StructureReport) -> Result<()> {
    let bk: HashMap<&str, usize> = b.tensors_by_key();
    let ak: HashMap<&str, usize> = a.tensors_by_key();
    let mut pairs = Vec::new();
    for (i, t) in a.tensors.iter().enumerate() {
        match bk.get(t.key.as_str()) {
            Some(&j) => pairs.push((i, j)),
            None => report.differences.push(Difference {
                tensor: Some(t.name.clone()),
                detail: "missing from the candidate".into(),
            }),
        }
    }
    for t in &b.tensors {
        if !ak.contains_key(t.key.as_str()) {
            report.differences.push(Difference {
                tensor: Some(t.name.clone()),
                detail: "not in the original".into(),
            });
        }
    }
    compare_tensors(a, b, &pairs, report)?;
    // The graph: same nodes, in the same order, wired the same way.
    if a.graphs.len() != b.graphs.len() {
        report.differences.push(Difference {
            tensor: None,
            detail: format!("{} graphs became {}", a.graphs.len(), b.graphs.len()),
        });
        return Ok(());
    }
    for (gi, (ga, gb)) in a.graphs.iter().zip(&b.graphs).enumerate() {
        let where_ = a.graph_label(gi);
        if ga.inputs != gb.inputs || ga.outputs != gb.outputs {
            report.differences.push(Difference {
                tensor: None,
                detail: format!("the inputs or outputs of the {where_} differ"),
            });
        }
        if ga.nodes.len() != gb.nodes.len() {
            report.differences.push(Difference {
                tensor: None,
                detail: format!(
                    "the {where_} has {} nodes, the original {}",
                    gb.nodes.len(),
                    ga.nodes.len()
                ),
            });
            continue;
        }
        for (k, (&na, &nb)) in ga.nodes.iter().zip(&gb.nodes).enumerate() {
            let (x, y) = (&a.nodes[na], &b.nodes[nb]);
            if x.op_type != y.op_type
                || x.domain != y.domain
                || x.inputs != y.inputs
                || x.outputs != y.outputs
            {
                report.differences.push(Difference {
                    tensor: None,
                    detail: format!(
                        "node {k} of the {where_}: {} `{}` became {} `{}` or was rewired differently",
                        x.op_type,
                        x.label(na),
                        y.op_type,
                        y.label(nb)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Proves (or refutes) that `candidate` holds the same model as `original`
/// with each tensor's values permuted.
pub(crate) fn compare_models(
    original: &Model,
    candidate: &Model,
    tied: Tied,
) -> Result<StructureReport> {
    let mut report = StructureReport {
        mode: Mode::ByName,
        permuted: Vec::new(),
        identical: Vec::new(),
        differences: Vec::new(),
        ties: Vec::new(),
    };
    if aligned(original, candidate) {
        report.mode = Mode::Aligned;
        let mut holes: Vec<Range<usize>> =
            original.tensors.iter().filter_map(in_file_range).collect();
        holes.sort_by_key(|r| r.start);
        if let Some(off) = first_gap_difference(&original.bytes, &candidate.bytes, &holes) {
            report.differences.push(Difference {
                tensor: None,
                detail: format!("the model files differ at byte {off}, outside any tensor payload"),
            });
        }
        external_gaps(original, candidate, &mut report)?;
        let pairs: Vec<(usize, usize)> = (0..original.tensors.len()).map(|i| (i, i)).collect();
        compare_tensors(original, candidate, &pairs, &mut report)?;
    } else {
        compare_by_name(original, candidate, &mut report)?;
    }
    let (ties, broken) = super::ties::check(original, candidate, tied)?;
    report.ties = ties;
    report
        .differences
        .extend(broken.into_iter().map(|(tensor, detail)| Difference {
            tensor: Some(tensor),
            detail,
        }));
    Ok(report)
}

/// Opens both files (at the same time) and proves, or refutes, that
/// `candidate` holds the same model as `original` with each tensor's values
/// permuted.
pub fn compare_files(original: &Path, candidate: &Path) -> Result<StructureReport> {
    compare_files_with(original, candidate, Tied::default())
}

/// [`compare_files`], with tied groups required to stay tied unless
/// `tied` is [`Tied::Skip`].
pub fn compare_files_with(
    original: &Path,
    candidate: &Path,
    tied: Tied,
) -> Result<StructureReport> {
    let (a, b) = rayon::join(|| Model::open(original), || Model::open(candidate));
    compare_models(&a?, &b?, tied)
}

/// Matched pairs (indices into `pairs`) in batches that hold at most
/// [`DEFAULT_MAX_MEMORY`] together (see [`crate::budget::batches`]).
fn batches(a: &Model, pairs: &[(usize, usize)]) -> Vec<Vec<usize>> {
    // Two payloads and two sorted element lists of up to 8 bytes each.
    let costs: Vec<u64> = pairs
        .iter()
        .map(|&(i, _)| {
            let t = &a.tensors[i];
            t.numel
                .saturating_mul(2 * t.dtype.byte_width().unwrap_or(8) as u64 + 16)
        })
        .collect();
    crate::budget::batches(&costs, DEFAULT_MAX_MEMORY)
}

/// Compares the payloads of tensor `i` of `a` and `j` of `b`.
fn compare_pair(a: &Model, b: &Model, i: usize, j: usize) -> Result<Verdict> {
    let (ta, tb) = (&a.tensors[i], &b.tensors[j]);
    let name = ta.name.clone();
    if ta.dtype != tb.dtype {
        return Ok((
            name,
            None,
            Some(format!("dtype {} became {}", ta.dtype, tb.dtype)),
        ));
    }
    if ta.dims != tb.dims {
        return Ok((
            name,
            None,
            Some(format!("shape {:?} became {:?}", ta.dims, tb.dims)),
        ));
    }
    let (pa, pb) = (a.payload(ta)?, b.payload(tb)?);
    if pa == pb {
        return Ok((name, Some(false), None));
    }
    let (ea, eb) = (payload::encoding(ta), payload::encoding(tb));
    let same = match (ea, eb) {
        (Some(x), Some(y)) if x == y => {
            if !payload::lengths_can_match(x, pa.len(), pb.len()) {
                false
            } else {
                // One payload at a time next to the sorted elements: each
                // is dropped once its elements are out.
                let ma = payload::multiset(x, &pa);
                drop(pa);
                let mb = payload::multiset(x, &pb);
                drop(pb);
                ma == mb
            }
        }
        // Different storage of the same values (e.g. float_data
        // re-encoded as raw_data): compare decoded values.
        (Some(_), Some(_)) if ta.dtype.is_rewirable_float() => {
            let mut x: Vec<u64> = payload::decode_f64(ta, &pa)?
                .iter()
                .map(|v| v.to_bits())
                .collect();
            let mut y: Vec<u64> = payload::decode_f64(tb, &pb)?
                .iter()
                .map(|v| v.to_bits())
                .collect();
            x.sort_unstable();
            y.sort_unstable();
            x == y
        }
        _ => false,
    };
    if same {
        Ok((name, Some(true), None))
    } else {
        Ok((
            name,
            None,
            Some("values are not a permutation of the original's".into()),
        ))
    }
}
