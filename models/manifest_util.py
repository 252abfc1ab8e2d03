"""Shared helpers for the non-PyTorch export scripts (export_tf.py,
export_jax.py, export_paddle.py, export_sklearn.py).

Imports only numpy, onnx and onnxruntime, so every family's venv can use it.
It does what export_torch.py's manifest code does (find the dense and
convolution weights of an ONNX file from the graph alone, with the
orientation table of docs/algorithm.md section 1), generalised for the
layouts the other exporters write:

- a Transpose with any perm between a tensor and its consumer (tf2onnx
  stores Conv kernels HWIO behind a Transpose [3, 2, 0, 1]): the consumer
  sees transpose(W, perm); the matrix view is the consumer's view, rows =
  its axis 0 per the table, and `axes` lists, in view order, the stored
  axes (rows = axes[0], columns = the others flattened in that order);
  `transposed` is true unless `axes` is the identity;
- weights held in Constant nodes (name = the Constant's output name);
- model-local functions: a call maps the function's formal input to the
  actual argument, and the walk goes on inside the function body.

export_torch.py keeps its own copy of the two-dimensional case; its output
is unchanged by this module.
"""

import collections
import hashlib
import json
import math
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
PASS_THROUGH = ("Identity", "Cast")
FLOAT_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


class _Scope:
    """One graph or function body: its nodes' readers and its outputs."""

    def __init__(self, nodes, outputs, label):
        self.label = label
        self.consumers = collections.defaultdict(list)
        for node in nodes:
            for a in node.attribute:
                if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                    raise RuntimeError(f"subgraph in {node.op_type} {node.name}: not handled")
            for idx, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, idx))
        self.outputs = set(outputs)


def classify(proto):
    """Split the model's constant tensors into weights and not_weights.

    Constant tensors are the main graph's initializers and the `value`
    tensors of Constant nodes (in the main graph and in local functions).
    Returns (weights, not_weights) in the manifest format; each weight also
    carries `axes` and `where` ("initializer", "constant node" or
    "constant node in function <name>").
    """
    graph = proto.graph
    main = _Scope(graph.node, [o.name for o in graph.output], "main graph")
    functions = {}
    for f in proto.functions:
        functions[(f.domain, f.name)] = (f, _Scope(f.node, list(f.output), f"function {f.name}"))

    def walk(scope, tensor, axes, seen, depth):
        if depth > 64:
            raise RuntimeError("walk too deep")
        found = []
        if tensor in scope.outputs:
            found.append(("other", f"output of the {scope.label}"))
        for node, idx in scope.consumers[tensor]:
            key = (id(node), idx)
            if key in seen:
                continue
            seen.add(key)
            op = node.op_type
            fn = functions.get((node.domain, op))
            if fn is not None:
                f, body = fn
                if idx >= len(f.input):
                    found.append(("other", f"extra input of call {op}"))
                    continue
                found += walk(body, f.input[idx], axes, seen, depth + 1)
                continue
            if node.domain not in ("", "ai.onnx"):
                found.append(("other", f"{node.domain}::{op} input {idx}"))
            elif op in PASS_THROUGH and idx == 0:
                found += walk(scope, node.output[0], axes, seen, depth + 1)
            elif op == "Transpose" and idx == 0:
                perm = _attr(node, "perm")
                perm = list(perm) if perm is not None else list(range(len(axes)))[::-1]
                if sorted(perm) != list(range(len(axes))):
                    found.append(("other", f"Transpose perm={perm} does not fit rank {len(axes)}"))
                    continue
                found += walk(scope, node.output[0], [axes[p] for p in perm], seen, depth + 1)
            else:
                found.append((node, idx, axes))
        return found

    def role(use, dims):
        if use[0] == "other":
            return use
        node, idx, axes = use
        op, rank = node.op_type, len(dims)
        if op == "Gemm":
            if idx == 2:
                return ("other", "bias (Gemm C)")
            if idx == 0 or rank != 2:
                return ("other", f"Gemm input {idx} of rank {rank}")
            view = list(axes) if _attr(node, "transB", 0) == 1 else [axes[1], axes[0]]
        elif op == "MatMul":
            if rank != 2:
                return ("other", f"MatMul operand of rank {rank}")
            # MatMul(X, W): W [K, N], rows N; MatMul(W, X): W [N, K].
            view = [axes[1], axes[0]] if idx == 1 else list(axes)
        elif op in ("Conv", "ConvTranspose"):
            if idx == 2:
                return ("other", f"bias ({op} B)")
            if idx == 0 or rank < 3:
                return ("other", f"{op} input {idx} of rank {rank}")
            # Conv W [O, I/g, k...]; ConvTranspose W [I, O/g, k...]: axis 0.
            view = list(axes)
        elif op == "BatchNormalization":
            return ("other", "BatchNormalization " + ["X", "scale", "bias", "mean", "var"][idx])
        else:
            return ("other", f"{op} input {idx}")
        rows = dims[view[0]]
        cols = math.prod(dims[a] for a in view[1:])
        return ("dense", op, int(rows), int(cols), tuple(view))

    # (name, dims, dtype, scope, where)
    tensors = [(t.name, list(t.dims), t.data_type, main, "initializer") for t in graph.initializer]
    for scope_nodes, scope, where in [(graph.node, main, "constant node")] + [
        (f.node, s, f"constant node in function {f.name}") for f, s in functions.values()
    ]:
        for n in scope_nodes:
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                t = _attr(n, "value")
                if isinstance(t, onnx.TensorProto):
                    tensors.append((n.output[0], list(t.dims), t.data_type, scope, where))

    weights, not_weights = [], []
    for name, dims, dtype, scope, where in tensors:
        uses = walk(scope, name, list(range(len(dims))), set(), 0)
        if not uses:
            not_weights.append({"name": name, "why": "unused"})
            continue
        roles = [role(u, dims) for u in uses]
        dense = [r for r in roles if r[0] == "dense"]
        other = sorted({r[1] for r in roles if r[0] == "other"})
        if dense and not other:
            orient = {r[2:] for r in dense}
            if len(orient) != 1:
                not_weights.append({"name": name, "why": "dense uses disagree on orientation"})
                continue
            if dtype not in FLOAT_TYPES:
                not_weights.append({"name": name, "why": f"dtype {dtype}"})
                continue
            rows, cols, axes = orient.pop()
            weights.append(
                {
                    "name": name,
                    "op": dense[0][1],
                    "shape": dims,
                    "rows": rows,
                    "cols": cols,
                    "transposed": list(axes) != list(range(len(dims))),
                    "axes": list(axes),
                    "where": where,
                }
            )
        elif dense:
            ops = sorted({r[1] for r in dense})
            not_weights.append({"name": name, "why": f"read by {'/'.join(ops)} and also by {'; '.join(other)}"})
        else:
            not_weights.append({"name": name, "why": "; ".join(other)})
    return weights, not_weights


def tensor_values(proto):
    """name -> numpy array for initializers and Constant-node tensors."""
    vals = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for nodes in [proto.graph.node] + [f.node for f in proto.functions]:
        for n in nodes:
            if n.op_type == "Constant":
                t = _attr(n, "value")
                if isinstance(t, onnx.TensorProto):
                    vals[n.output[0]] = numpy_helper.to_array(t)
    return vals


def matrix_of(values, w):
    """The weight's matrix M (rows = outputs), per the manifest entry."""
    a = np.transpose(values[w["name"]], w["axes"])
    return a.reshape(w["rows"], w["cols"])


def check_values(label, proto, weights, refs, rtol=1e-5, atol=1e-7):
    """Each manifest weight viewed as M equals exactly one reference matrix.

    `refs` maps a framework parameter name to its M in PyTorch layout
    (axis 0 = outputs, or input channels for a transposed convolution; the
    rest flattened). Every reference must be matched. This pins `axes` and
    `transposed`, which shapes alone cannot for square matrices.
    """
    values = tensor_values(proto)
    unmatched = set(refs)
    for w in weights:
        m = matrix_of(values, w)
        hits = [
            k
            for k, r in refs.items()
            if r.shape == m.shape and np.allclose(r, m, rtol=rtol, atol=atol)
        ]
        if len(hits) != 1:
            raise RuntimeError(f"{label}: {w['name']} {w['shape']} axes={w['axes']} matches references {hits}")
        unmatched.discard(hits[0])
    if unmatched:
        shapes = {k: refs[k].shape for k in unmatched}
        raise RuntimeError(f"{label}: reference weights not found in the manifest: {shapes}")


def check_onnx(path, feeds, want, rtol=1e-4, atol=1e-5, output=0):
    """onnx.checker (full_check) and one onnxruntime run: output number
    `output` is compared with the framework's result `want`."""
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, feeds)[output]
    want = np.asarray(want)
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
        err = np.max(np.abs(got - want)) if got.shape == want.shape else (got.shape, want.shape)
        raise RuntimeError(f"{path}: onnxruntime output differs from the framework ({err})")
    return proto


def layout_summary(proto, weights):
    """A one-line description of each weight's layout for the report."""
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    for f in proto.functions:
        ops.update(f"{f.name}/{n.op_type}" for n in f.node)
    parts = []
    for w in weights:
        parts.append(
            f"{w['name']}: {w['op']} stored {w['shape']} axes={w['axes']} "
            f"M=[{w['rows']}, {w['cols']}] transposed={w['transposed']} ({w['where']})"
        )
    return parts, dict(sorted(ops.items()))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def manifest_entry(rel_path, weights, not_weights):
    return {"model": rel_path, "weights": weights, "not_weights": not_weights}


def write_manifest(path, entries):
    with open(path, "w") as f:
        json.dump(entries, f, indent=1)
        f.write("\n")


def report_model(path, proto, weights):
    parts, ops = layout_summary(proto, weights)
    print(f"{os.path.relpath(path, HERE)}: {os.path.getsize(path)} B sha={sha(path)} ops={ops}")
    for p in parts:
        print("    " + p)
