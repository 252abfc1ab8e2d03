//! The working graph the training builder grows node by node.
//!
//! Gradient rules need static facts (ranks, which axes were broadcast, the
//! spatial size a transposed convolution must restore), so every node that
//! enters this graph gets its output shapes inferred at once, and small
//! integer tensors (the `Shape -> Gather -> Concat -> Reshape` chains that
//! exporters leave when constant folding is off) are evaluated. The training
//! graph is therefore specialised to one set of input shapes, which also lets
//! the runtimes plan it with no shape computations left at run time.

use std::collections::{HashMap, HashSet};

use crate::onnx::pb::{AttributeProto, NodeProto, TensorProto};
use crate::onnx::DataType;

use super::geometry::swap_last;
use super::node::{node_err, NodeExt};
use super::proto::{decode_f64, tensor_f32, tensor_i64, Attr};
use super::{Result, TrainError};

/// What the graph learns about a node entering it: its outputs' types and
/// shapes and, where they can be computed while building, the values of
/// output 0. The operator rules supply it (`ops::outputs`); the graph takes
/// it as a function so that it does not depend on the rules that build on it.
pub(crate) type NodeRules = fn(&Graph, &NodeProto) -> Result<(Vec<Info>, Option<Known>)>;

/// Element type and concrete shape of one value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Info {
    pub dtype: DataType,
    pub shape: Vec<i64>,
}

impl Info {
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// A small tensor whose values are known while building (shapes, axes,
/// scalars). f64 holds every dimension exactly; INT64_MAX sentinels of
/// `Slice` saturate back to INT64_MAX when cast.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Known {
    pub dims: Vec<i64>,
    pub vals: Vec<f64>,
}

impl Known {
    pub fn ints(&self) -> Vec<i64> {
        self.vals.iter().map(|&v| v as i64).collect()
    }
}

/// Tensors larger than this are never decoded into [`Known`] values.
pub(crate) const KNOWN_LIMIT: i64 = 4096;

/// Nodes, initializers and the facts known about every value.
pub(crate) struct Graph {
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    pub init_index: HashMap<String, usize>,
    pub info: HashMap<String, Info>,
    pub known: HashMap<String, Known>,
    pub opset: i64,
    names: HashSet<String>,
    counter: usize,
    const_cache: HashMap<Vec<u8>, String>,
    rules: NodeRules,
}

impl Graph {
    pub fn new(opset: i64, rules: NodeRules) -> Self {
        Graph {
            nodes: vec![],
            inits: vec![],
            init_index: HashMap::new(),
            info: HashMap::new(),
            known: HashMap::new(),
            opset,
            names: HashSet::new(),
            counter: 0,
            const_cache: HashMap::new(),
            rules,
        }
    }

    pub fn reserve_name(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    /// A value name no node or tensor uses yet.
    pub fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let name = format!("pa_train/{hint}_{}", self.counter);
            if self.names.insert(name.clone()) {
                return name;
            }
        }
    }

    pub fn add_init(&mut self, t: TensorProto) {
        self.names.insert(t.name.clone());
        self.info.insert(
            t.name.clone(),
            Info {
                dtype: DataType::from_code(t.data_type),
                shape: t.dims.clone(),
            },
        );
        let numel: i64 = t.dims.iter().product();
        if numel <= KNOWN_LIMIT {
            if let Some(vals) = decode_f64(&t) {
                self.known.insert(
                    t.name.clone(),
                    Known {
                        dims: t.dims.clone(),
                        vals,
                    },
                );
            }
        }
        self.init_index.insert(t.name.clone(), self.inits.len());
        self.inits.push(t);
    }

    pub fn add_input(&mut self, name: &str, dtype: DataType, shape: Vec<i64>) {
        self.names.insert(name.into());
        self.info.insert(name.into(), Info { dtype, shape });
    }

    pub fn info(&self, name: &str) -> Result<&Info> {
        self.info
            .get(name)
            .ok_or_else(|| TrainError::Model(format!("value `{name}` has no known shape")))
    }
    pub fn shape(&self, name: &str) -> Result<Vec<i64>> {
        Ok(self.info(name)?.shape.clone())
    }
    pub fn rank(&self, name: &str) -> Result<usize> {
        Ok(self.info(name)?.shape.len())
    }

    /// Appends a node after inferring its outputs' shapes and known values.
    pub fn push(&mut self, n: NodeProto) -> Result<()> {
        let (infos, known) = (self.rules)(self, &n)?;
        for (i, o) in n.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            self.names.insert(o.clone());
            if let Some(info) = infos.get(i) {
                self.info.insert(o.clone(), info.clone());
            }
            if let Some(k) = known.as_ref().filter(|_| i == 0) {
                self.known.insert(o.clone(), k.clone());
            }
        }
        self.nodes.push(n);
        Ok(())
    }

    /// Emits a one-output node and returns the name of its output.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> Result<String> {
        Ok(self.op_n(op, inputs, 1, attrs)?.remove(0))
    }

    pub fn op_n(
        &mut self,
        op: &str,
        inputs: &[&str],
        n_out: usize,
        attrs: Vec<AttributeProto>,
    ) -> Result<Vec<String>> {
        let outs: Vec<String> = (0..n_out).map(|_| self.fresh(op)).collect();
        let name = self.fresh(&format!("{op}_node"));
        self.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outs.clone(),
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        })?;
        Ok(outs)
    }

    fn cached_init(&mut self, t: TensorProto) -> String {
        let key = [
            t.data_type.to_le_bytes().to_vec(),
            format!("{:?}", t.dims).into_bytes(),
            t.raw_data.clone(),
        ]
        .concat();
        if let Some(n) = self.const_cache.get(&key) {
            return n.clone();
        }
        let name = self.fresh("const");
        let mut t = t;
        t.name = name.clone();
        self.add_init(t);
        self.const_cache.insert(key, name.clone());
        name
    }

    pub fn const_i64(&mut self, vals: &[i64]) -> String {
        self.cached_init(tensor_i64("", &[vals.len() as i64], vals))
    }
    pub fn const_i64_shaped(&mut self, dims: &[i64], vals: &[i64]) -> String {
        self.cached_init(tensor_i64("", dims, vals))
    }
    pub fn const_f32(&mut self, dims: &[i64], vals: &[f32]) -> String {
        self.cached_init(tensor_f32("", dims, vals))
    }
    pub fn scalar(&mut self, v: f32) -> String {
        self.const_f32(&[], &[v])
    }

    pub fn reshape(&mut self, x: &str, shape: &[i64]) -> Result<String> {
        if self.shape(x)? == shape {
            return Ok(x.to_string());
        }
        let s = self.const_i64(shape);
        self.op("Reshape", &[x, &s], vec![])
    }

    /// ReduceSum/ReduceMean with the axes encoding of the graph's opset.
    pub fn reduce(&mut self, op: &str, x: &str, axes: &[i64], keepdims: bool) -> Result<String> {
        if axes.is_empty() {
            return Ok(x.to_string());
        }
        let axes_as_input = op == "ReduceSum" && self.opset >= 13 || self.opset >= 18;
        if axes_as_input {
            let a = self.const_i64(axes);
            self.op(op, &[x, &a], vec![Attr::int("keepdims", keepdims as i64)])
        } else {
            self.op(
                op,
                &[x],
                vec![
                    Attr::ints("axes", axes),
                    Attr::int("keepdims", keepdims as i64),
                ],
            )
        }
    }

    /// Sums `g` (shaped like a broadcast result) down to `shape`, undoing
    /// numpy-style broadcasting.
    pub fn reduce_to(&mut self, g: &str, shape: &[i64]) -> Result<String> {
        let gs = self.shape(g)?;
        if gs == shape {
            return Ok(g.to_string());
        }
        if shape.len() > gs.len() {
            return Err(TrainError::Model(format!(
                "cannot sum the gradient {g} of shape {gs:?} down to {shape:?}"
            )));
        }
        let d = gs.len() - shape.len().min(gs.len());
        let mut axes: Vec<i64> = (0..d as i64).collect();
        for (i, &s) in shape.iter().enumerate() {
            if s == 1 && gs[d + i] != 1 {
                axes.push((d + i) as i64);
            }
        }
        // Dropping only leading axes needs no Reshape afterwards.
        let keepdims = axes.len() != d;
        let r = self.reduce("ReduceSum", g, &axes, keepdims)?;
        self.reshape(&r, shape)
    }

    pub fn zeros(&mut self, shape: &[i64]) -> Result<String> {
        let s = self.const_i64(shape);
        self.op(
            "ConstantOfShape",
            &[&s],
            vec![Attr::tensor("value", tensor_f32("", &[1], &[0.0]))],
        )
    }

    pub fn transpose(&mut self, x: &str, perm: &[i64]) -> Result<String> {
        if perm.iter().enumerate().all(|(i, &p)| p == i as i64) {
            return Ok(x.to_string());
        }
        let producer = self
            .nodes
            .iter()
            .rev()
            .find(|n| n.output.first().is_some_and(|o| o == x))
            .cloned();
        if let Some(p) = producer.as_ref().filter(|p| p.op_type == "Transpose") {
            // Two transposes are one: the inner one is pruned if nothing
            // else reads it, and the pair may cancel.
            let r = perm.len() as i64;
            let inner = p
                .ints_attr("perm")
                .unwrap_or_else(|| (0..r).rev().collect());
            let composed: Vec<i64> = perm.iter().map(|&q| inner[q as usize]).collect();
            return self.transpose(&p.input[0], &composed);
        }
        let swaps_last = perm.len() >= 2 && perm == swap_last(perm.len());
        let matmul = producer.as_ref().filter(|p| {
            p.op_type == "MatMul" && p.name.starts_with("pa_train/") && p.input.len() == 2
        });
        if let Some(mm) = matmul.filter(|_| swaps_last) {
            // (P Q)^T = Q^T P^T over the last two axes: the operands'
            // transposes fold into the product (or cancel with the
            // transposes that made them) instead of moving the result.
            let mm = mm.clone();
            let (ra, rb) = (self.rank(&mm.input[0])?, self.rank(&mm.input[1])?);
            if ra >= 2 && rb >= 2 {
                let qt = self.transpose(&mm.input[1], &swap_last(rb))?;
                let pt = self.transpose(&mm.input[0], &swap_last(ra))?;
                return self.op("MatMul", &[&qt, &pt], vec![]);
            }
        }
        if perm == [1, 0] {
            // (A B)^T = B^T A^T: a Gemm can write its product transposed for
            // free. Weights stored [out, in] behind a Transpose make this the
            // common case; the original Gemm is pruned if nothing else reads it.
            let gemm = producer.filter(|n| {
                n.op_type == "Gemm" && n.input.len() == 2 && n.name.starts_with("pa_train/")
            });
            if let Some(gemm) = gemm {
                let ta = gemm.int_attr("transA", 0) != 0;
                let tb = gemm.int_attr("transB", 0) != 0;
                let mut attrs = vec![
                    Attr::int("transA", !tb as i64),
                    Attr::int("transB", !ta as i64),
                ];
                attrs.extend(gemm.attribute.iter().filter(|a| a.name == "alpha").cloned());
                return self.op("Gemm", &[&gemm.input[1], &gemm.input[0]], attrs);
            }
        }
        self.op("Transpose", &[x], vec![Attr::ints("perm", perm)])
    }

    pub fn known(&self, name: &str) -> Option<&Known> {
        self.known.get(name)
    }

    /// The known values of input `i` of `n`, which shape inference needs
    /// (a Reshape's target shape, a Slice's bounds).
    pub(crate) fn known_input(&self, n: &NodeProto, i: usize) -> Result<Known> {
        n.input
            .get(i)
            .filter(|s| !s.is_empty())
            .and_then(|s| self.known.get(s))
            .cloned()
            .ok_or_else(|| {
                node_err(
                    n,
                    format!("input {i} must be a constant known while building the training graph"),
                )
            })
    }
}
