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

use super::dtype::{is_float, BOOL, F32, I64};
use super::geometry::{axes_of, axis_of, broadcast, geometry, norm_axis, swap_last};
use super::node::{node_err, NodeExt};
use super::proto::{decode_f64, tensor_f32, tensor_i64, Attr};
use super::{Result, TrainError};

/// Element type and concrete shape of one value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Info {
    pub dtype: i32,
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
const KNOWN_LIMIT: i64 = 4096;

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
}

impl Graph {
    pub fn new(opset: i64) -> Self {
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
                dtype: t.data_type,
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

    pub fn add_input(&mut self, name: &str, dtype: i32, shape: Vec<i64>) {
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
        let infos = self.infer(&n)?;
        let known = self.evaluate(&n, &infos);
        for (i, o) in n.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            self.names.insert(o.clone());
            if let Some(info) = infos.get(i) {
                self.info.insert(o.clone(), info.clone());
            }
            if let Some(Some(k)) = known.as_ref().and_then(|k| k.get(i).cloned()) {
                self.known.insert(o.clone(), k);
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

    fn known_input(&self, n: &NodeProto, i: usize) -> Result<Known> {
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

    // ---- shape inference --------------------------------------------------------

    fn infer(&self, n: &NodeProto) -> Result<Vec<Info>> {
        let get = |i: usize| -> Result<&Info> {
            let name = n
                .input
                .get(i)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| node_err(n, format!("missing input {i}")))?;
            self.info
                .get(name)
                .ok_or_else(|| node_err(n, format!("input `{name}` has no known shape")))
        };
        let has = |i: usize| n.input.get(i).is_some_and(|s| !s.is_empty());
        let op = n.op_type.as_str();
        if !n.domain.is_empty() && n.domain != "ai.onnx" {
            return Err(node_err(
                n,
                format!("operator domain `{}` is not supported", n.domain),
            ));
        }
        let same = |x: &Info| Ok(vec![x.clone()]);
        match op {
            "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Erf" | "Gelu" | "Clip" | "Softmax"
            | "LogSoftmax" | "Identity" | "Neg" | "Exp" | "Log" | "Sqrt" | "Reciprocal" | "Abs"
            | "Elu" | "Selu" | "HardSigmoid" | "HardSwish" | "Softplus" | "Sin" | "Cos"
            | "Floor" | "Ceil" | "Round" | "Not" | "Sign" | "IsNaN" | "Mish" => {
                let mut x = get(0)?.clone();
                if op == "Not" || op == "IsNaN" {
                    x.dtype = BOOL;
                }
                same(&x)
            }
            "RandomUniform" | "RandomNormal" => {
                let shape = n
                    .ints_attr("shape")
                    .ok_or_else(|| node_err(n, "shape missing"))?;
                Ok(vec![Info {
                    dtype: n.int_attr("dtype", F32 as i64) as i32,
                    shape,
                }])
            }
            "RandomUniformLike" | "RandomNormalLike" => {
                let x = get(0)?;
                let dtype = n.int_attr("dtype", x.dtype as i64) as i32;
                Ok(vec![Info {
                    dtype,
                    shape: x.shape.clone(),
                }])
            }
            "Dropout" => {
                let x = get(0)?.clone();
                Ok(vec![
                    x.clone(),
                    Info {
                        dtype: BOOL,
                        shape: x.shape,
                    },
                ])
            }
            "Cast" => Ok(vec![Info {
                dtype: n.int_attr("to", F32 as i64) as i32,
                shape: get(0)?.shape.clone(),
            }]),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Mod"
            | "Equal" | "Greater" | "Less" | "GreaterOrEqual" | "LessOrEqual" | "And" | "Or"
            | "Xor" | "Where" => {
                let ins: Vec<&Info> = (0..n.input.len()).map(get).collect::<Result<_>>()?;
                let shapes: Vec<&[i64]> = ins.iter().map(|i| i.shape.as_slice()).collect();
                let shape = broadcast(&shapes)
                    .ok_or_else(|| node_err(n, format!("shapes {shapes:?} do not broadcast")))?;
                let dtype = match op {
                    "Equal" | "Greater" | "Less" | "GreaterOrEqual" | "LessOrEqual" | "And"
                    | "Or" | "Xor" => BOOL,
                    "Where" => ins[1].dtype,
                    _ => ins[0].dtype,
                };
                Ok(vec![Info { dtype, shape }])
            }
            "MatMul" => {
                let (a, b) = (get(0)?, get(1)?);
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
            "Gemm" => {
                let (a, b) = (get(0)?, get(1)?);
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
                if has(2) {
                    let c = &get(2)?.shape;
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
            "Conv" | "ConvTranspose" => {
                let (x, w) = (get(0)?, get(1)?);
                let group = n.int_attr("group", 1);
                // Conv's weight is [out, in / group, k...], ConvTranspose's
                // [in, out / group, k...]; both split their rows into groups.
                let in_channels = if op == "Conv" {
                    w.shape.get(1).map(|&c| c * group)
                } else {
                    w.shape.first().copied()
                };
                if w.shape.len() != x.shape.len()
                    || x.shape.len() < 3
                    || group < 1
                    || w.shape[0] % group != 0
                    || in_channels != Some(x.shape[1])
                {
                    return Err(node_err(
                        n,
                        format!(
                            "input {:?}, weight {:?} and group {group} do not fit together",
                            x.shape, w.shape
                        ),
                    ));
                }
                let kernel = n
                    .ints_attr("kernel_shape")
                    .unwrap_or_else(|| w.shape[2..].to_vec());
                if kernel != w.shape[2..] {
                    return Err(node_err(
                        n,
                        format!(
                            "kernel_shape {kernel:?} is not the weight's {:?}",
                            &w.shape[2..]
                        ),
                    ));
                }
                let g = geometry(n, &x.shape, &kernel, false)?;
                let c = if op == "Conv" {
                    w.shape[0]
                } else {
                    w.shape[1] * group
                };
                let mut shape = vec![x.shape[0], c];
                shape.extend(g.out);
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "MaxPool" | "AveragePool" | "LpPool" => {
                let x = get(0)?;
                let kernel = n
                    .ints_attr("kernel_shape")
                    .ok_or_else(|| node_err(n, "kernel_shape missing"))?;
                let g = geometry(n, &x.shape, &kernel, n.int_attr("ceil_mode", 0) != 0)?;
                let mut shape = x.shape[..2].to_vec();
                shape.extend(g.out);
                Ok(vec![
                    Info {
                        dtype: x.dtype,
                        shape: shape.clone(),
                    },
                    Info { dtype: I64, shape },
                ])
            }
            "GlobalAveragePool" | "GlobalMaxPool" => {
                let x = get(0)?;
                let mut shape = x.shape.clone();
                shape[2..].iter_mut().for_each(|d| *d = 1);
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2"
            | "ReduceL1" | "ReduceSumSquare" | "ReduceLogSumExp" | "ArgMax" | "ArgMin" => {
                let x = get(0)?;
                let r = x.shape.len();
                let keep = n.int_attr("keepdims", 1) != 0;
                let axes = self.reduce_axes(n, r)?;
                let mut shape = vec![];
                for (i, &d) in x.shape.iter().enumerate() {
                    if axes.contains(&i) {
                        if keep {
                            shape.push(1);
                        }
                    } else {
                        shape.push(d);
                    }
                }
                let dtype = if op.starts_with("Arg") { I64 } else { x.dtype };
                Ok(vec![Info { dtype, shape }])
            }
            "Flatten" => {
                let x = get(0)?;
                // Flatten alone also accepts axis = rank.
                let (axis, r) = (n.int_attr("axis", 1), x.shape.len());
                let a = if axis == r as i64 {
                    r
                } else {
                    axis_of(n, axis, r)?
                };
                let shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Reshape" => {
                let x = get(0)?;
                let spec = self.known_input(n, 1)?.ints();
                let allowzero = n.int_attr("allowzero", 0) != 0;
                let mut shape: Vec<i64> = spec
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if d == 0 && !allowzero { x.shape[i] } else { d })
                    .collect();
                if let Some(p) = shape.iter().position(|&d| d == -1) {
                    let rest: i64 = shape.iter().filter(|&&d| d != -1).product();
                    shape[p] = x.numel() / rest.max(1);
                }
                if shape.iter().product::<i64>() != x.numel() {
                    return Err(node_err(
                        n,
                        format!("cannot reshape {:?} to {:?}", x.shape, spec),
                    ));
                }
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Transpose" => {
                let x = get(0)?;
                let r = x.shape.len() as i64;
                let perm = n
                    .ints_attr("perm")
                    .unwrap_or_else(|| (0..r).rev().collect());
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..r).collect::<Vec<_>>() {
                    return Err(node_err(
                        n,
                        format!("perm {perm:?} is not a permutation of the {r} axes"),
                    ));
                }
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape: perm.iter().map(|&p| x.shape[p as usize]).collect(),
                }])
            }
            "Concat" => {
                let x = get(0)?;
                let a = axis_of(n, n.int_attr("axis", 0), x.shape.len())?;
                let mut shape = x.shape.clone();
                shape[a] = 0;
                for i in 0..n.input.len() {
                    let s = &get(i)?.shape;
                    let fits = s.len() == x.shape.len()
                        && (0..s.len()).all(|j| j == a || s[j] == x.shape[j]);
                    if !fits {
                        return Err(node_err(
                            n,
                            format!("inputs {:?} and {s:?} do not concatenate", x.shape),
                        ));
                    }
                    shape[a] += s[a];
                }
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Split" => {
                let x = get(0)?;
                let a = axis_of(n, n.int_attr("axis", 0), x.shape.len())?;
                let sizes = self.split_sizes(n, x.shape[a])?;
                Ok(sizes
                    .iter()
                    .map(|&s| {
                        let mut shape = x.shape.clone();
                        shape[a] = s;
                        Info {
                            dtype: x.dtype,
                            shape,
                        }
                    })
                    .collect())
            }
            "Slice" => {
                let x = get(0)?;
                let ranges = self.slice_ranges(n, &x.shape)?;
                let mut shape = x.shape.clone();
                for (axis, start, end, step) in ranges {
                    shape[axis] = slice_len(start, end, step);
                }
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Squeeze" | "Unsqueeze" => {
                let x = get(0)?;
                let axes = if has(1) {
                    self.known_input(n, 1)?.ints()
                } else {
                    n.ints_attr("axes").unwrap_or_default()
                };
                let shape = if op == "Squeeze" {
                    let r = x.shape.len();
                    let axes: Vec<usize> = if axes.is_empty() {
                        (0..r).filter(|&i| x.shape[i] == 1).collect()
                    } else {
                        axes_of(n, &axes, r)?
                    };
                    x.shape
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                } else {
                    let r = x.shape.len() + axes.len();
                    let axes = axes_of(n, &axes, r)?;
                    let mut it = x.shape.iter();
                    (0..r)
                        .map(|i| {
                            if axes.contains(&i) {
                                1
                            } else {
                                *it.next().unwrap()
                            }
                        })
                        .collect()
                };
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Expand" => {
                let x = get(0)?;
                let s = self.known_input(n, 1)?.ints();
                let shape = broadcast(&[&x.shape, &s])
                    .ok_or_else(|| node_err(n, "shapes do not broadcast"))?;
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Pad" => {
                let x = get(0)?;
                let pads = self.known_input(n, 1)?.ints();
                let r = x.shape.len();
                let axes: Vec<usize> = if has(3) {
                    axes_of(n, &self.known_input(n, 3)?.ints(), r)?
                } else {
                    (0..r).collect()
                };
                if pads.len() != 2 * axes.len() {
                    return Err(node_err(
                        n,
                        format!("{} pads for {} axes", pads.len(), axes.len()),
                    ));
                }
                let mut shape = x.shape.clone();
                for (k, &a) in axes.iter().enumerate() {
                    shape[a] += pads[k] + pads[k + axes.len()];
                }
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "Shape" => {
                let r = get(0)?.shape.len() as i64;
                let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
                let (s, e) = (clamp(n.int_attr("start", 0)), clamp(n.int_attr("end", r)));
                Ok(vec![Info {
                    dtype: I64,
                    shape: vec![(e - s).max(0)],
                }])
            }
            "Size" => Ok(vec![Info {
                dtype: I64,
                shape: vec![],
            }]),
            "Constant" => {
                if let Some(t) = n.attr("value").and_then(|a| a.t.as_ref()) {
                    Ok(vec![Info {
                        dtype: t.data_type,
                        shape: t.dims.clone(),
                    }])
                } else if let Some(a) = n.attr("value_ints") {
                    Ok(vec![Info {
                        dtype: I64,
                        shape: vec![a.ints.len() as i64],
                    }])
                } else if n.attr("value_int").is_some() {
                    Ok(vec![Info {
                        dtype: I64,
                        shape: vec![],
                    }])
                } else if let Some(a) = n.attr("value_floats") {
                    Ok(vec![Info {
                        dtype: F32,
                        shape: vec![a.floats.len() as i64],
                    }])
                } else if n.attr("value_float").is_some() {
                    Ok(vec![Info {
                        dtype: F32,
                        shape: vec![],
                    }])
                } else {
                    Err(node_err(n, "unsupported Constant attribute"))
                }
            }
            "ConstantOfShape" => {
                let shape = self.known_input(n, 0)?.ints();
                let dtype = n
                    .attr("value")
                    .and_then(|a| a.t.as_ref())
                    .map_or(F32, |t| t.data_type);
                Ok(vec![Info { dtype, shape }])
            }
            "Range" => {
                let k: Vec<f64> = (0..3)
                    .map(|i| self.known_input(n, i).map(|k| k.vals[0]))
                    .collect::<Result<_>>()?;
                let len = (((k[1] - k[0]) / k[2]).ceil()).max(0.0) as i64;
                Ok(vec![Info {
                    dtype: get(0)?.dtype,
                    shape: vec![len],
                }])
            }
            "Gather" => {
                let (x, idx) = (get(0)?, get(1)?);
                let a = axis_of(n, n.int_attr("axis", 0), x.shape.len())?;
                let mut shape = x.shape[..a].to_vec();
                shape.extend(&idx.shape);
                shape.extend(&x.shape[a + 1..]);
                Ok(vec![Info {
                    dtype: x.dtype,
                    shape,
                }])
            }
            "GatherElements" => Ok(vec![Info {
                dtype: get(0)?.dtype,
                shape: get(1)?.shape.clone(),
            }]),
            "ScatterElements" | "ScatterND" => same(get(0)?),
            "OneHot" => {
                let idx = get(0)?;
                let depth = self.known_input(n, 1)?.vals[0] as i64;
                let r = idx.shape.len() + 1;
                let a = axis_of(n, n.int_attr("axis", -1), r)?;
                let mut shape = idx.shape.clone();
                shape.insert(a, depth);
                Ok(vec![Info {
                    dtype: get(2)?.dtype,
                    shape,
                }])
            }
            "BatchNormalization" => {
                let x = get(0)?.clone();
                let c = vec![x.shape[1]];
                Ok(vec![
                    x.clone(),
                    Info {
                        dtype: x.dtype,
                        shape: c.clone(),
                    },
                    Info {
                        dtype: x.dtype,
                        shape: c,
                    },
                ])
            }
            "LayerNormalization" => {
                let x = get(0)?.clone();
                let a = axis_of(n, n.int_attr("axis", -1), x.shape.len())?;
                let mut stat = x.shape.clone();
                stat[a..].iter_mut().for_each(|d| *d = 1);
                Ok(vec![
                    x.clone(),
                    Info {
                        dtype: F32,
                        shape: stat.clone(),
                    },
                    Info {
                        dtype: F32,
                        shape: stat,
                    },
                ])
            }
            _ => Err(node_err(
                n,
                "cannot infer the output shapes of this operator",
            )),
        }
    }

    pub fn reduce_axes(&self, n: &NodeProto, rank: usize) -> Result<Vec<usize>> {
        let from_input = n.input.get(1).is_some_and(|s| !s.is_empty());
        let axes = if from_input {
            self.known_input(n, 1)?.ints()
        } else if n.op_type.starts_with("Arg") {
            vec![n.int_attr("axis", 0)]
        } else {
            n.ints_attr("axes").unwrap_or_default()
        };
        if axes.is_empty() {
            if n.int_attr("noop_with_empty_axes", 0) != 0 {
                return Ok(vec![]);
            }
            return Ok((0..rank).collect());
        }
        axes_of(n, &axes, rank)
    }

    pub fn split_sizes(&self, n: &NodeProto, dim: i64) -> Result<Vec<i64>> {
        if n.input.get(1).is_some_and(|s| !s.is_empty()) {
            return Ok(self.known_input(n, 1)?.ints());
        }
        if let Some(s) = n.ints_attr("split") {
            return Ok(s);
        }
        let k = n.output.len() as i64;
        let k = n.int_attr("num_outputs", k);
        let chunk = (dim + k - 1) / k;
        Ok((0..k).map(|i| (dim - i * chunk).clamp(0, chunk)).collect())
    }

    /// (axis, start, end, step) per sliced axis, clamped like the ONNX spec.
    pub fn slice_ranges(
        &self,
        n: &NodeProto,
        shape: &[i64],
    ) -> Result<Vec<(usize, i64, i64, i64)>> {
        let r = shape.len();
        let (starts, ends, axes, steps) = if n.input.len() > 1 {
            let starts = self.known_input(n, 1)?.ints();
            let ends = self.known_input(n, 2)?.ints();
            let axes = if n.input.get(3).is_some_and(|s| !s.is_empty()) {
                self.known_input(n, 3)?.ints()
            } else {
                (0..starts.len() as i64).collect()
            };
            let steps = if n.input.get(4).is_some_and(|s| !s.is_empty()) {
                self.known_input(n, 4)?.ints()
            } else {
                vec![1; starts.len()]
            };
            (starts, ends, axes, steps)
        } else {
            let starts = n.ints_attr("starts").unwrap_or_default();
            let ends = n.ints_attr("ends").unwrap_or_default();
            let axes = n
                .ints_attr("axes")
                .unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = vec![1; starts.len()];
            (starts, ends, axes, steps)
        };
        let k = starts.len();
        if ends.len() != k || axes.len() != k || steps.len() != k {
            return Err(node_err(
                n,
                "Slice starts, ends, axes and steps must have the same length",
            ));
        }
        let mut out = vec![];
        for i in 0..k {
            if !(-(r as i64)..r as i64).contains(&axes[i]) {
                return Err(node_err(
                    n,
                    format!("Slice axis {} is out of range for rank {r}", axes[i]),
                ));
            }
            let a = norm_axis(axes[i], r);
            let d = shape[a];
            let step = steps[i];
            if step == 0 {
                return Err(node_err(n, "Slice step must not be 0"));
            }
            let fix = |v: i64, lo: i64, hi: i64| {
                let v = if v < 0 { v.saturating_add(d) } else { v };
                v.clamp(lo, hi)
            };
            let (s, e) = if step > 0 {
                (fix(starts[i], 0, d), fix(ends[i], 0, d))
            } else {
                (fix(starts[i], 0, d - 1), fix(ends[i], -1, d - 1))
            };
            out.push((a, s, e, step));
        }
        Ok(out)
    }

    // ---- evaluation of small known tensors ----------------------------------------

    fn evaluate(&self, n: &NodeProto, infos: &[Info]) -> Option<Vec<Option<Known>>> {
        let op = n.op_type.as_str();
        let k = |i: usize| n.input.get(i).and_then(|s| self.known.get(s));
        let out_dims = infos.first().map(|i| i.shape.clone()).unwrap_or_default();
        if out_dims.iter().product::<i64>() > KNOWN_LIMIT {
            return None;
        }
        let one = |vals: Vec<f64>| {
            Some(vec![Some(Known {
                dims: out_dims.clone(),
                vals,
            })])
        };
        match op {
            "Shape" => {
                let s = &self.info.get(&n.input[0])?.shape;
                let r = s.len() as i64;
                let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
                let (a, b) = (clamp(n.int_attr("start", 0)), clamp(n.int_attr("end", r)));
                one(s[a as usize..b.max(a) as usize]
                    .iter()
                    .map(|&d| d as f64)
                    .collect())
            }
            "Size" => one(vec![
                self.info.get(&n.input[0])?.shape.iter().product::<i64>() as f64,
            ]),
            "Constant" => {
                if let Some(t) = n.attr("value").and_then(|a| a.t.as_ref()) {
                    one(decode_f64(t)?)
                } else if let Some(a) = n.attr("value_ints") {
                    one(a.ints.iter().map(|&v| v as f64).collect())
                } else if let Some(a) = n.attr("value_int") {
                    one(vec![a.i as f64])
                } else if let Some(a) = n.attr("value_floats") {
                    one(a.floats.iter().map(|&v| v as f64).collect())
                } else {
                    n.attr("value_float").and_then(|a| one(vec![a.f as f64]))
                }
            }
            "Identity" | "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" => one(k(0)?.vals.clone()),
            "Cast" => {
                let to = n.int_attr("to", 1) as i32;
                let v = k(0)?.vals.clone();
                one(if is_float(to) {
                    v
                } else {
                    v.into_iter().map(|x| x.trunc()).collect()
                })
            }
            "ConstantOfShape" => {
                let v = n
                    .attr("value")
                    .and_then(|a| a.t.as_ref())
                    .and_then(decode_f64)
                    .map_or(0.0, |v| v[0]);
                one(vec![v; out_dims.iter().product::<i64>() as usize])
            }
            "Concat" => {
                let mut v = vec![];
                for i in 0..n.input.len() {
                    v.extend(k(i)?.vals.iter().copied());
                }
                (out_dims.len() == 1).then_some(())?;
                one(v)
            }
            "Gather" => {
                let (x, idx) = (k(0)?, k(1)?);
                (x.dims.len() == 1).then_some(())?;
                let d = x.vals.len() as i64;
                // An index out of range is left for the runtime to refuse.
                one(idx
                    .vals
                    .iter()
                    .map(|&i| {
                        let i = i as i64;
                        let j = if i < 0 { i + d } else { i };
                        (0..d).contains(&j).then(|| x.vals[j as usize])
                    })
                    .collect::<Option<_>>()?)
            }
            "Slice" => {
                let x = k(0)?;
                (x.dims.len() == 1).then_some(())?;
                let (_, s, e, st) = *self.slice_ranges(n, &x.dims).ok()?.first()?;
                let mut v = vec![];
                let mut i = s;
                while (st > 0 && i < e) || (st < 0 && i > e) {
                    v.push(x.vals[i as usize]);
                    i += st;
                }
                one(v)
            }
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Equal" | "Pow" => {
                let (a, b) = (k(0)?, k(1)?);
                let n_out = out_dims.iter().product::<i64>() as usize;
                let at = |x: &Known, i: usize| {
                    if x.vals.len() == 1 {
                        x.vals[0]
                    } else {
                        x.vals[i]
                    }
                };
                if !(a.vals.len() == 1 || a.vals.len() == n_out)
                    || !(b.vals.len() == 1 || b.vals.len() == n_out)
                {
                    return None;
                }
                let int = !is_float(infos[0].dtype);
                one((0..n_out)
                    .map(|i| {
                        let (x, y) = (at(a, i), at(b, i));
                        match op {
                            "Add" => x + y,
                            "Sub" => x - y,
                            "Mul" => x * y,
                            "Div" if int => (x / y).floor(),
                            "Div" => x / y,
                            "Max" => x.max(y),
                            "Min" => x.min(y),
                            "Pow" => x.powf(y),
                            _ => (x == y) as i64 as f64,
                        }
                    })
                    .collect())
            }
            "Sqrt" => one(k(0)?.vals.iter().map(|v| v.sqrt()).collect()),
            "Neg" => one(k(0)?.vals.iter().map(|v| -v).collect()),
            "Range" => {
                let (s, l, d) = (k(0)?.vals[0], k(1)?.vals[0], k(2)?.vals[0]);
                let len = (((l - s) / d).ceil()).max(0.0) as usize;
                one((0..len).map(|i| s + d * i as f64).collect())
            }
            _ => None,
        }
    }
}

pub(crate) fn slice_len(start: i64, end: i64, step: i64) -> i64 {
    if step > 0 {
        ((end - start + step - 1) / step).max(0)
    } else {
        ((start - end + (-step) - 1) / (-step)).max(0)
    }
}
