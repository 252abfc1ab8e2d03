//! Probe copies: both models with the outputs of their rewired layers
//! exposed as graph outputs.
//!
//! At initialisation a network's final output is often blind to its hidden
//! weights (a zero-initialised head, activations that vanish with depth), so
//! an unchanged output proves nothing about whether a rewiring took effect.
//! The rewiring happened at the nodes that read the permuted weights, so
//! the effect check looks there. Each model is copied into a temporary
//! folder with those nodes' outputs added; the user's files are never
//! touched.
//!
//! A copy is the file's own bytes followed by one more `graph` field that
//! holds only the new outputs. Protobuf merges a repeated singular message
//! field into the first one, so every engine reads the original graph with
//! the outputs appended, and nothing of the file is re-encoded. Outputs are
//! declared with their element type and no shape: the engines infer the
//! shapes. External data files are linked beside the copy under their own
//! relative locations.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::Error;
use crate::onnx::pb;
use crate::onnx::{Model, Storage};
use crate::plan;

/// Weights are read through these ops; the node after them is the layer.
const SEEN_THROUGH: [&str; 3] = ["Identity", "Cast", "Transpose"];

/// One exposed layer output.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// The node output that is compared.
    pub(crate) output: String,
    /// The label of the node that reads the rewired weights.
    pub(crate) node: String,
    /// Its operator.
    pub(crate) op: String,
    /// The rewired weights it reads.
    pub(crate) weights: Vec<String>,
    /// False when the output already was a graph output of the model.
    pub(crate) added: bool,
}

/// The probe copies of both models, alive as long as this value.
pub(crate) struct ProbeModels {
    _dir: tempfile::TempDir,
    /// The original with the probes as extra outputs.
    pub(crate) original: PathBuf,
    /// The candidate with the same extra outputs.
    pub(crate) candidate: PathBuf,
    /// Every probe, in the order of the original's nodes.
    pub(crate) probes: Vec<Probe>,
    /// Rewired weights read where no output can be exposed (inside a
    /// function or a subgraph), with the reason.
    pub(crate) unprobed: Vec<String>,
}

/// Why no probe copies could be made; verification then goes on without
/// probes and says why.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// Reading a model or writing a copy failed.
    #[error(transparent)]
    Model(#[from] Error),
    /// The candidate's graph lacks a layer output the original has.
    #[error("the candidate has no node output `{output}`, which the original's `{node}` writes")]
    MissingOutput {
        /// The output name.
        output: String,
        /// The original's node that writes it.
        node: String,
    },
}

type Result<T, E = ProbeError> = std::result::Result<T, E>;

/// Builds the probe copies for the weights `rewired` (tensor names).
/// Returns None when none of them is read by a node of the main graph.
pub(crate) fn build(
    original: &Path,
    candidate: &Path,
    rewired: &[String],
) -> Result<Option<ProbeModels>> {
    let orig = Model::open(original)?;
    let cand = Model::open(candidate)?;
    let (probes, unprobed) = find_probes(&orig, rewired)?;
    let mut added: Vec<&Probe> = probes.iter().filter(|p| p.added).collect();
    if probes.is_empty() {
        return Ok(None);
    }
    let cand_outputs: HashSet<&str> = main_nodes(&cand)
        .flat_map(|ni| cand.nodes[ni].outputs.iter().map(String::as_str))
        .collect();
    if let Some(p) = probes
        .iter()
        .find(|p| !cand_outputs.contains(p.output.as_str()))
    {
        return Err(ProbeError::MissingOutput {
            output: p.output.clone(),
            node: p.node.clone(),
        });
    }
    added.sort_by(|a, b| a.output.cmp(&b.output));
    added.dedup_by(|a, b| a.output == b.output);
    let outputs: Vec<pb::ValueInfoProto> =
        added.iter().map(|p| value_info(&orig, &p.output)).collect();
    let appendix = pb::ModelProto {
        graph: Some(pb::GraphProto {
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();

    let dir = tempfile::Builder::new()
        .prefix("pa-onnx-probe")
        .tempdir()
        .map_err(|e| {
            Error::io(
                "cannot create a temporary folder in",
                std::env::temp_dir(),
                e,
            )
        })?;
    let original = write_copy(&orig, original, &dir.path().join("original"), &appendix)?;
    let candidate = write_copy(&cand, candidate, &dir.path().join("candidate"), &appendix)?;
    Ok(Some(ProbeModels {
        _dir: dir,
        original,
        candidate,
        probes,
        unprobed,
    }))
}

/// Indices of the main graph's nodes.
fn main_nodes(model: &Model) -> impl Iterator<Item = usize> + '_ {
    model
        .graphs
        .first()
        .into_iter()
        .flat_map(|g| g.nodes.iter().copied())
}

/// The layers reading `rewired` weights in the main graph, and the weights
/// read only elsewhere.
fn find_probes(model: &Model, rewired: &[String]) -> Result<(Vec<Probe>, Vec<String>)> {
    let rewired: HashSet<&str> = rewired.iter().map(String::as_str).collect();
    let plan = plan::locate_weights(model)?;
    let by_label: HashMap<String, usize> = main_nodes(model)
        .map(|ni| (model.nodes[ni].label(ni), ni))
        .collect();
    let graph_outputs: HashSet<&str> = model
        .graphs
        .first()
        .map(|g| g.outputs.iter().map(String::as_str).collect())
        .unwrap_or_default();
    // Node index -> probe, so a node reading two rewired weights is one probe.
    let mut found: Vec<(usize, Probe)> = Vec::new();
    let mut unprobed = Vec::new();
    for w in plan
        .weights
        .iter()
        .filter(|w| rewired.contains(w.name.as_str()))
    {
        for c in &w.consumers {
            let node = by_label
                .get(&c.node)
                .copied()
                .filter(|&ni| model.nodes[ni].op_type == c.op);
            let output =
                node.and_then(|ni| model.nodes[ni].outputs.first().filter(|o| !o.is_empty()));
            let (Some(ni), Some(output)) = (node, output) else {
                unprobed.push(format!(
                    "`{}`: read by `{}` inside a function or subgraph, whose outputs cannot be exposed",
                    w.name, c.node
                ));
                continue;
            };
            match found.iter_mut().find(|(n, _)| *n == ni) {
                Some((_, p)) if !p.weights.contains(&w.name) => p.weights.push(w.name.clone()),
                Some(_) => {}
                None => found.push((
                    ni,
                    Probe {
                        output: output.clone(),
                        node: c.node.clone(),
                        op: c.op.clone(),
                        weights: vec![w.name.clone()],
                        added: !graph_outputs.contains(output.as_str()),
                    },
                )),
            }
        }
    }
    found.sort_by_key(|(ni, _)| *ni);
    Ok((found.into_iter().map(|(_, p)| p).collect(), unprobed))
}

/// An output declaration for `name`: its element type, and no shape.
fn value_info(model: &Model, name: &str) -> pb::ValueInfoProto {
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: output_type(model, name),
                shape: None,
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    }
}

/// The element type of a layer's output: that of its weight operand (Gemm,
/// MatMul, Conv and ConvTranspose take one type for all float operands),
/// found by walking back through the ops a weight is read through.
fn output_type(model: &Model, output: &str) -> i32 {
    let producers: HashMap<&str, usize> = main_nodes(model)
        .flat_map(|ni| {
            model.nodes[ni]
                .outputs
                .iter()
                .map(move |o| (o.as_str(), ni))
        })
        .collect();
    let initializers: HashMap<&str, i32> = model
        .graphs
        .first()
        .into_iter()
        .flat_map(|g| g.initializers.iter())
        .map(|&ti| {
            (
                model.tensors[ti].name.as_str(),
                model.tensors[ti].dtype.code(),
            )
        })
        .collect();
    let Some(&layer) = producers.get(output) else {
        return 0;
    };
    // Input 1 is the weight slot of every layer op the planner knows.
    let mut name = model.nodes[layer]
        .inputs
        .get(1)
        .map(String::as_str)
        .unwrap_or("");
    for _ in 0..model.nodes.len() {
        if let Some(&code) = initializers.get(name) {
            return code;
        }
        let Some(&ni) = producers.get(name) else {
            break;
        };
        let node = &model.nodes[ni];
        if node.is_onnx_op("Cast") {
            return node.attr_int("to").map_or(0, |t| t as i32);
        }
        if node.is_onnx_op("Constant") {
            if let Some(crate::onnx::AttrValue::Tensor(ti)) = node.attr("value") {
                return model.tensors[*ti].dtype.code();
            }
            break;
        }
        if !SEEN_THROUGH.iter().any(|op| node.is_onnx_op(op)) {
            break;
        }
        name = node.inputs.first().map(String::as_str).unwrap_or("");
    }
    0
}

/// Writes `model`'s bytes and `appendix` to `dir`, with its external data
/// files linked beside it; returns the copy's path.
fn write_copy(model: &Model, path: &Path, dir: &Path, appendix: &[u8]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    let name = path.file_name().unwrap_or_else(|| "model.onnx".as_ref());
    let copy = dir.join(name);
    let mut bytes = Vec::with_capacity(model.bytes.len() + appendix.len());
    bytes.extend_from_slice(&model.bytes);
    bytes.extend_from_slice(appendix);
    std::fs::write(&copy, bytes).map_err(|e| Error::io("cannot write", &copy, e))?;
    let mut linked = HashSet::new();
    for t in &model.tensors {
        let Storage::External { location, file, .. } = &t.storage else {
            continue;
        };
        if !linked.insert(location.as_str()) {
            continue;
        }
        // The reader already refused locations that leave the model's folder.
        let link = dir.join(location);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
        }
        let target =
            std::fs::canonicalize(file).map_err(|e| Error::io("cannot resolve", file, e))?;
        // A hard link is a plain file to every engine; across file systems
        // only a symbolic link is possible.
        std::fs::hard_link(&target, &link)
            .or_else(|_| symlink(&target, &link))
            .map_err(|e| Error::io("cannot link", &link, e))?;
    }
    Ok(copy)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::fs::copy(target, link).map(|_| ())
}
