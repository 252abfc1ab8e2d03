"""Export small, untrained PyTorch models to ONNX as fixtures for pa-onnx.

pa-onnx rewires the dense and convolution weights of an untrained ONNX model
(see docs/algorithm.md section 1). To do so it must find those weights in
the graph and view each one as a matrix with rows = output neurons. The
layout of a weight depends on the op that consumes it and on the exporter
that wrote the file, so each model here exists to pin down one layout or one
edge case:

- mlp: Linear layers exported as Gemm with transB=1 (B is [N, K]).
- cnn_bn: Conv + BatchNorm in eval mode; both exporters fold BN into the
  Conv weights (new initializers), so no BatchNormalization node is left.
- cnn_bn_unfused: the same network exported with TrainingMode.PRESERVE
  (dynamo: optimizer off) so the BatchNormalization nodes and their
  scale/bias/mean/var initializers, which are not weights, stay.
- resblock: a ResNet BasicBlock with a 1x1 downsample projection (Conv
  weights with kernel 3x3 and 1x1, residual Add).
- conv1d, conv3d: Conv weights of rank 3 and 5.
- convtranspose, convtranspose_groups: ConvTranspose weights, whose axis 0 is
  the INPUT channels ([I, O/g, k...]), with and without groups.
- grouped_conv: Conv with groups=4 ([O, I/4, k, k]).
- depthwise_conv: a MobileNetV2 inverted residual block (1x1 expand,
  depthwise 3x3 with groups=channels, 1x1 project).
- transformer: nn.TransformerEncoderLayer; its projections are exported as
  MatMul(X, W) with W [K, N] (a transposed view) on 3-D activations.
- tied_lm: an embedding whose table is tied to the output projection; the
  shared tensor is read by Gather and by the output MatMul. It is a weight
  with the MatMul's view (rewiring the Linear rewires the tied embedding,
  as in the framework), and Gather reads the permuted table.
- keras_like_matmul: x @ W with W a [K, N] parameter (MatMul, transposed view)
  followed by torch.addmm (Gemm with transB=0, also a transposed view).
- left_matmul: W @ x with W [N, K] on the left of a MatMul (not transposed).

Each model is exported with the TorchScript exporter (dynamo=False) and, when
the graph differs, also with the dynamo exporter (file suffix `_dynamo`).
Every file is checked with onnx.checker (full_check), run once in
onnxruntime and compared with PyTorch's output. models/manifest.json lists,
for every committed file, the weight initializers found by walking the ONNX
graph with the orientation table of docs/algorithm.md section 1; it is an
oracle for the Rust locator tests, computed here independently of the Rust code,
and cross-checked against the PyTorch modules: the (rows, cols) they imply,
and the values (each manifest weight viewed as M must equal one PyTorch
weight's M, which pins the `transposed` flag). The output is byte-for-byte
reproducible with the same package versions (see models/README.md).

Usage (from the repository root):
    .venv/bin/python models/export_torch.py            # regenerate models/
    .venv/bin/python models/export_torch.py --resnet18 models/large/resnet18.onnx
"""

import argparse
import collections
import hashlib
import json
import math
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
TS_OPSET = 17
# The dynamo exporter implements opset 18 and up; asking for 17 makes it run
# a version converter, so it gets 18 directly.
DYNAMO_OPSET = 18
DENSE_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose")


# --------------------------------------------------------------------------
# Models


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class CnnBn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """ResNet BasicBlock, 16 -> 32 channels, stride 2, 1x1 projection."""

    def __init__(self, cin=16, cout=32):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.downsample(x))


class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 16, 5)
        self.conv2 = nn.Conv1d(16, 8, 3)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


class Conv3dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv3d(2, 8, 3)
        self.conv2 = nn.Conv3d(8, 4, (1, 3, 3))

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


class ConvTransposeNet(nn.Module):
    def __init__(self, groups=1):
        super().__init__()
        # Input and output channels differ so that [I, O/g, k, k] cannot be
        # mistaken for [O, I/g, k, k].
        self.up1 = nn.ConvTranspose2d(8, 12, 3, stride=2, padding=1, groups=groups)
        self.up2 = nn.ConvTranspose2d(12, 4, 4, stride=2, padding=1, groups=groups)

    def forward(self, x):
        return self.up2(torch.relu(self.up1(x)))


class GroupedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(16, 32, 3, padding=1, groups=4)
        self.conv2 = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (x4), depthwise 3x3, 1x1 project."""

    def __init__(self, ch=16, expand=4):
        super().__init__()
        hidden = ch * expand
        self.expand = nn.Conv2d(ch, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch)

    def forward(self, x):
        y = nn.functional.relu6(self.bn1(self.expand(x)))
        y = nn.functional.relu6(self.bn2(self.depthwise(y)))
        return x + self.bn3(self.project(y))


class EncoderLayer(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer whose attention asks for the weights.

    With need_weights=False (the stock _sa_block) attention goes through
    scaled_dot_product_attention, which the TorchScript tracer of torch 2.15
    fails on ("is_causal must be bool, not Tensor"). need_weights=True takes
    the explicit softmax path; the parameters and the result are the same.
    """

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal=False):
        x = self.self_attn(
            x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=True
        )[0]
        return self.dropout1(x)


def make_transformer():
    return EncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.hidden = nn.Linear(32, 32)
        self.lm_head = nn.Linear(32, 100, bias=False)
        self.lm_head.weight = self.emb.weight

    def forward(self, ids):
        return self.lm_head(torch.relu(self.hidden(self.emb(ids))))


class KerasLikeMatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(16, 8) * 0.25)  # [K, N]
        self.b = nn.Parameter(torch.zeros(8))
        self.w2 = nn.Parameter(torch.randn(8, 4) * 0.35)  # [K, N]
        self.b2 = nn.Parameter(torch.zeros(4))

    def forward(self, x):
        h = torch.relu(x @ self.w + self.b)  # MatMul(X, W) + Add
        return torch.addmm(self.b2, h, self.w2)  # Gemm transB=0


class LeftMatMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 16) * 0.25)  # [N, K]

    def forward(self, x):  # x: [1, 16, 4]
        return self.w @ x  # MatMul(W, X)


# name -> (constructor, example input factory, extra TorchScript options,
#          expected (rows, cols) of every weight, from the modules above)
def _f(*shape):
    return lambda: (torch.randn(*shape),)


MODELS = {
    "mlp": (MLP, _f(1, 784), {}, [(64, 784), (10, 64)]),
    "cnn_bn": (CnnBn, _f(1, 1, 28, 28), {}, [(8, 9), (16, 72), (10, 784)]),
    "cnn_bn_unfused": (
        CnnBn,
        _f(1, 1, 28, 28),
        # PRESERVE keeps the eval-mode BN nodes (EVAL folds them into Conv);
        # the dynamo exporter keeps them when its optimizer is off.
        {"training": torch.onnx.TrainingMode.PRESERVE, "dynamo_optimize": False},
        [(8, 9), (16, 72), (10, 784)],
    ),
    "resblock": (BasicBlock, _f(1, 16, 16, 16), {}, [(32, 144), (32, 288), (32, 16)]),
    "conv1d": (Conv1dNet, _f(1, 4, 32), {}, [(16, 20), (8, 48)]),
    "conv3d": (Conv3dNet, _f(1, 2, 8, 8, 8), {}, [(8, 54), (4, 72)]),
    "convtranspose": (ConvTransposeNet, _f(1, 8, 8, 8), {}, [(8, 108), (12, 64)]),
    "convtranspose_groups": (
        lambda: ConvTransposeNet(groups=2),
        _f(1, 8, 8, 8),
        {},
        [(8, 54), (12, 32)],
    ),
    "grouped_conv": (GroupedConv, _f(1, 16, 8, 8), {}, [(32, 36), (8, 32)]),
    "depthwise_conv": (InvertedResidual, _f(1, 16, 8, 8), {}, [(64, 16), (64, 9), (16, 64)]),
    # in_proj [96, 32] may be split into q/k/v [32, 32] by the exporter; the
    # check below accepts either form.
    "transformer": (
        make_transformer,
        _f(1, 8, 32),
        {},
        [("in_proj", 96, 32), (32, 32), (64, 32), (32, 64)],
    ),
    # The tied emb/lm_head tensor is a weight (lm_head's view), as is `hidden`.
    # Constant folding (TorchScript) or the onnxscript optimizer (dynamo)
    # would store lm_head's transposed copy of the tied table as a second
    # initializer; without them the one tensor feeds Gather and
    # Transpose -> MatMul.
    "tied_lm": (
        TiedLM,
        lambda: (torch.randint(0, 100, (1, 8), dtype=torch.int64),),
        {"do_constant_folding": False, "dynamo_optimize": False},
        [(32, 32), (100, 32)],
    ),
    "keras_like_matmul": (KerasLikeMatMul, _f(1, 16), {}, [(8, 16), (4, 8)]),
    "left_matmul": (LeftMatMul, _f(1, 16, 4), {}, [(8, 16)]),
}


def build(name):
    ctor, make_inputs, opts, expected = MODELS[name]
    torch.manual_seed(0)
    model = ctor()
    model.eval()  # untrained: BN running stats stay at mean 0, var 1
    torch.manual_seed(1)
    inputs = make_inputs()
    return model, inputs, opts, expected


# --------------------------------------------------------------------------
# Export


def export_torchscript(model, inputs, path, opts):
    kw = dict(
        dynamo=False,
        opset_version=TS_OPSET,
        input_names=["input"],
        output_names=["output"],
        do_constant_folding=True,
    )
    kw.update({k: v for k, v in opts.items() if not k.startswith("dynamo_")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, path, **kw)


def export_dynamo(model, inputs, path, opts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model,
            inputs,
            dynamo=True,
            opset_version=DYNAMO_OPSET,
            input_names=["input"],
            output_names=["output"],
            external_data=False,
            optimize=opts.get("dynamo_optimize", True),
            verbose=False,
        )
    proto = prog.model_proto
    # Stack traces name this machine's paths; drop them for reproducibility.
    strip_metadata(proto.graph)
    onnx.save(proto, path, save_as_external_data=False)
    if os.path.exists(path + ".data"):
        raise RuntimeError(f"{path}: external data written")


def strip_metadata(graph):
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                strip_metadata(a.g)
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        del vi.metadata_props[:]
    for t in graph.initializer:
        del t.metadata_props[:]


def check(path, model, inputs):
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        want = model(*inputs).numpy()
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"{path}: onnxruntime output differs from PyTorch")
    return proto


# --------------------------------------------------------------------------
# Manifest: find weights from the graph alone


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def classify(proto):
    """Split the initializers into weights and not_weights.

    Follows each initializer through Identity, Cast and Transpose to the
    nodes that finally read it, then applies the orientation table of
    docs/algorithm.md section 1 (rows = output neurons).
    """
    graph = proto.graph
    for node in graph.node:
        for a in node.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise RuntimeError(f"subgraph in {node.op_type} {node.name}: not handled")
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for idx, name in enumerate(node.input):
            if name:
                consumers[name].append((node, idx))
    graph_outputs = {o.name for o in graph.output}

    def uses_of(tensor, flipped, rank, seen):
        found = []
        if tensor in graph_outputs:
            found.append(("other", "graph output"))
        for node, idx in consumers[tensor]:
            key = (id(node), idx)
            if key in seen:
                continue
            seen.add(key)
            op = node.op_type
            if op in ("Identity", "Cast"):
                found += uses_of(node.output[0], flipped, rank, seen)
            elif op == "Transpose":
                perm = list(_attr(node, "perm", list(range(rank))[::-1]))
                if perm == list(range(rank)):
                    found += uses_of(node.output[0], flipped, rank, seen)
                elif perm == [1, 0]:
                    found += uses_of(node.output[0], not flipped, rank, seen)
                else:
                    found.append(("other", f"Transpose perm={perm}"))
            else:
                found.append((node, idx, flipped))
        return found

    def role(use, dims):
        if use[0] == "other":
            return use
        node, idx, flipped = use
        op, rank = node.op_type, len(dims)
        view = dims[::-1] if flipped else dims  # shape seen by the consumer
        if op == "Gemm":
            if idx == 2:
                return ("other", "bias (Gemm C)")
            if idx == 0:
                raise RuntimeError(f"initializer as Gemm A in {node.name}: not in the table")
            if _attr(node, "transB", 0) == 1:  # B [N, K]
                rows, cols, t = view[0], view[1], False
            else:  # B [K, N]
                rows, cols, t = view[1], view[0], True
            return ("dense", op, rows, cols, t != flipped)
        if op == "MatMul":
            if rank != 2:
                return ("other", f"MatMul operand of rank {rank}")
            if idx == 1:  # MatMul(X, W), W [K, N]
                return ("dense", op, view[1], view[0], True != flipped)
            return ("dense", op, view[0], view[1], False != flipped)  # W [N, K]
        if op in ("Conv", "ConvTranspose"):
            if idx == 2:
                return ("other", f"bias ({op} B)")
            if idx == 0:
                return ("other", f"{op} X input")
            if flipped:
                return ("other", f"{op} weight behind a Transpose")
            return ("dense", op, dims[0], math.prod(dims[1:]), False)
        if op == "BatchNormalization":
            part = ["X", "scale", "bias", "mean", "var"][idx]
            return ("other", f"BatchNormalization {part}")
        return ("other", f"{op} input {idx}")

    weights, not_weights = [], []
    for init in graph.initializer:
        dims = list(init.dims)
        uses = uses_of(init.name, False, len(dims), set())
        if not uses:
            not_weights.append({"name": init.name, "why": "unused"})
            continue
        roles = [role(u, dims) for u in uses]
        dense = [r for r in roles if r[0] == "dense"]
        # A table read by Gather (axis 0) and a dense op is a tied weight:
        # the dense use gives its view (pa-onnx's default, `--tied rewire`).
        tied = [r for r in roles if r[0] == "other" and r[1] == "Gather input 0"]
        if dense and tied and len(dense) + len(tied) == len(roles):
            roles = dense
        other = sorted({r[1] for r in roles if r[0] == "other"})
        if dense and not other:
            orient = {r[2:] for r in dense}
            if len(orient) != 1:
                not_weights.append({"name": init.name, "why": "dense uses disagree on orientation"})
                continue
            rows, cols, t = orient.pop()
            weights.append(
                {
                    "name": init.name,
                    "op": dense[0][1],
                    "shape": dims,
                    "rows": int(rows),
                    "cols": int(cols),
                    "transposed": bool(t),
                }
            )
        elif dense:
            ops = sorted({r[1] for r in dense})
            not_weights.append(
                {"name": init.name, "why": f"read by {'/'.join(ops)} and also by {'; '.join(other)}"}
            )
        else:
            not_weights.append({"name": init.name, "why": "; ".join(other)})
    return weights, not_weights


def constant_node_weights(proto):
    """Names of Constant-node outputs that feed a dense op's weight input."""
    consts = {n.output[0] for n in proto.graph.node if n.op_type == "Constant"}
    hits = []
    for n in proto.graph.node:
        if n.op_type in DENSE_OPS and len(n.input) > 1 and n.input[1] in consts:
            hits.append(n.input[1])
        if n.op_type == "MatMul" and n.input[0] in consts:
            hits.append(n.input[0])
    return hits


def cross_check(name, weights, expected):
    """Compare graph-derived (rows, cols) with those the modules imply."""
    got = sorted((w["rows"], w["cols"]) for w in weights)
    want, alt = [], []
    for e in expected:
        if e[0] == "in_proj":  # either one [3E, E] or three [E, E]
            want.append(e[1:])
            alt += [(e[2], e[2])] * 3
        else:
            want.append(e)
            alt.append(e)
    if got != sorted(want) and got != sorted(alt):
        raise RuntimeError(f"{name}: weights {got} != expected {sorted(want)}")


def check_tied(proto):
    """The tied table is stored once and read by Gather and a dense op."""
    tables = [t for t in proto.graph.initializer if list(t.dims) == [100, 32]]
    if len(tables) != 1 or any(list(t.dims) == [32, 100] for t in proto.graph.initializer):
        raise RuntimeError("tied_lm: the tied table is not stored exactly once")
    weights, _ = classify(proto)
    if not any(w["name"] == tables[0].name for w in weights):
        raise RuntimeError("tied_lm: the tied table is not a (tied) weight")
    if not any(n.op_type == "Gather" and n.input[0] == tables[0].name for n in proto.graph.node):
        raise RuntimeError("tied_lm: the tied table is not read by Gather")


def reference_matrices(model):
    """Every PyTorch weight's matrix M (rows = outputs), per docs/algorithm.md.

    Linear/Conv/ConvTranspose/MultiheadAttention weights: axis 0 as rows,
    the rest flattened. A bare parameter used as `x @ w` is [K, N], so M is
    its transpose; one used as `w @ x` is [N, K]. Embedding tables are not
    weights, unless a Linear shares them (tied_lm's table is also
    lm_head.weight): a tied table is rewired through its dense use.
    """
    refs = {}
    dense = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    lookup_only = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} - dense
    for pname, p in model.named_parameters():
        if p.dim() < 2 or id(p) in lookup_only:
            continue
        owner = model.get_submodule(pname.rpartition(".")[0]) if "." in pname else model
        mat = p.detach().reshape(p.shape[0], -1)
        if isinstance(owner, (KerasLikeMatMul,)):
            mat = p.detach().t()
        refs[pname] = mat.numpy()
    return refs


def check_values(name, proto, weights, model):
    """Each manifest weight, viewed as M, equals one PyTorch weight's M.

    Values match up to BN folding (scale 1/sqrt(1 + eps) for untrained BN).
    This pins the `transposed` flag, which shapes alone cannot for square
    matrices.
    """
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    refs = reference_matrices(model)
    unmatched = set(refs)
    for w in weights:
        a = inits[w["name"]]
        m = a.T if w["transposed"] else a.reshape(w["rows"], w["cols"])
        if m.shape != (w["rows"], w["cols"]):
            raise RuntimeError(f"{name}: {w['name']} viewed as {m.shape}")
        hits = [k for k, r in refs.items() if r.shape == m.shape and np.allclose(r, m, rtol=1e-4, atol=1e-7)]
        if len(hits) != 1:
            raise RuntimeError(f"{name}: {w['name']} matches PyTorch weights {hits}")
        unmatched.discard(hits[0])
    if unmatched:
        raise RuntimeError(f"{name}: PyTorch weights not found in the manifest: {sorted(unmatched)}")


def graph_signature(proto, weights):
    ops = sorted(n.op_type for n in proto.graph.node)
    ws = sorted((w["op"], tuple(w["shape"]), w["transposed"]) for w in weights)
    return ops, ws


# --------------------------------------------------------------------------
# Driver


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def export_all(out_dir, manifest_path):
    os.makedirs(out_dir, exist_ok=True)
    manifest, report = [], []
    for name in MODELS:
        model, inputs, opts, expected = build(name)
        ts_path = os.path.join(out_dir, f"{name}.onnx")
        export_torchscript(model, inputs, ts_path, opts)
        ts = check(ts_path, model, inputs)
        ts_w, ts_nw = classify(ts)
        cross_check(name, ts_w, expected)
        check_values(name, ts, ts_w, model)
        if name == "tied_lm":
            check_tied(ts)
        entries = [(f"{name}.onnx", ts, ts_w, ts_nw)]

        dyn_path = os.path.join(out_dir, f"{name}_dynamo.onnx")
        export_dynamo(model, inputs, dyn_path, opts)
        dyn = check(dyn_path, model, inputs)
        dyn_w, dyn_nw = classify(dyn)
        cross_check(name + "_dynamo", dyn_w, expected)
        check_values(name + "_dynamo", dyn, dyn_w, model)
        if name == "tied_lm":
            check_tied(dyn)
        if graph_signature(dyn, dyn_w) == graph_signature(ts, ts_w):
            os.remove(dyn_path)
            report.append(f"{name}: dynamo graph same as TorchScript, not kept")
        else:
            entries.append((f"{name}_dynamo.onnx", dyn, dyn_w, dyn_nw))

        for fname, proto, w, nw in entries:
            const = constant_node_weights(proto)
            if const:
                report.append(f"{fname}: weights held in Constant nodes: {const}")
            ops = collections.Counter(n.op_type for n in proto.graph.node)
            entry = {"model": fname, "weights": w, "not_weights": nw}
            if const:
                entry["weights_in_constant_nodes"] = const
            manifest.append(entry)
            path = os.path.join(out_dir, fname)
            report.append(
                f"{fname}: {os.path.getsize(path)} B sha={sha(path)} "
                f"weights={[(x['op'], x['shape'], x['transposed']) for x in w]} "
                f"ops={dict(sorted(ops.items()))}"
            )
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("\n".join(report))


def export_resnet18(path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    torch.manual_seed(1)
    inputs = (torch.randn(1, 3, 224, 224),)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    export_torchscript(model, inputs, path, {})
    proto = check(path, model, inputs)
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    w, _ = classify(proto)
    print(
        f"{path}: {os.path.getsize(path)} B, Conv={ops['Conv']} Gemm={ops['Gemm']} "
        f"BatchNormalization={ops['BatchNormalization']} weights={len(w)} "
        f"(BN fused into Conv: {ops['BatchNormalization'] == 0})"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=os.path.join(HERE, "torch"))
    ap.add_argument("--manifest", default=os.path.join(HERE, "manifest.json"))
    ap.add_argument("--resnet18", metavar="OUT_PATH", help="export only resnet18 to OUT_PATH")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    if args.resnet18:
        export_resnet18(args.resnet18)
    else:
        export_all(args.out_dir, args.manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
