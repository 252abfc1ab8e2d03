"""Export small, untrained JAX / Flax NNX models to ONNX with jax2onnx, as
fixtures for pa-onnx (see models/README.md, section JAX / Flax).

Models (fixed seeds, nnx.Rngs(0)):
- mlp: nnx.Linear layers; jax2onnx writes Gemm with transB=0 and the Flax
  kernel [in, out] as B: M = kernel transposed.
- cnn: nnx.Conv (NHWC in Flax); jax2onnx transposes the input to NCHW and
  stores the kernel already as OIHW initializers (`kernel_oih_*`).
- function_block: an nnx.Linear inside a class decorated with
  @jax2onnx.onnx_function: the call becomes a model-local function whose
  weights are Constant nodes inside the function body.
- jnp_gemm_a, jnp_einsum: plain functions on captured arrays. A 2-D dot is
  a Gemm (transB=0); with the constant on the left (w2 @ h.T) it is Gemm
  input A, and on rank-3 activations an Einsum: neither is in the
  orientation table, so those two arrays are not weights (see jnp_dot).

Each file is checked with onnx.checker (full_check) and onnxruntime against
JAX, and every weight's matrix against the framework's parameter in PyTorch
layout (Linear: kernel.T; Conv [kh, kw, I, O] -> [O, I, kh, kw]).

Usage (from the repository root, with the venv of models/README.md):
    /work/venvs/jax/bin/python models/export_jax.py
"""

import os
import sys
import warnings

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

import importlib.util  # noqa: E402

# Python puts the script's folder, models/, first on sys.path; its folders
# models/jax, models/keras, models/paddle, models/sklearn would then be
# importable as namespace packages and stand in for a framework that is not
# installed in this venv (keras probes `import jax`). Drop it, and load the
# helper by path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
_spec = importlib.util.spec_from_file_location(
    "manifest_util", os.path.join(os.path.dirname(os.path.abspath(__file__)), "manifest_util.py")
)
mu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mu)

import jax.numpy as jnp  # noqa: E402
import onnx  # noqa: E402
from flax import nnx  # noqa: E402
from jax2onnx import onnx_function, to_onnx  # noqa: E402

OPSET = 18  # jax2onnx 0.17.1 writes ReduceMean with an axes input (opset 18) even at 17
FAMILY = "jax"


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(20, 32, rngs=rngs)
        self.fc2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.fc2(nnx.relu(self.fc1(x)))


class CNN(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), padding="VALID", rngs=rngs)
        self.fc = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(x))
        return self.fc(jnp.mean(x, axis=(1, 2)))


@onnx_function
class Block(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(16, 24, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.dense(x))


class FunctionNet(nnx.Module):
    def __init__(self, rngs):
        self.block = Block(rngs)
        self.head = nnx.Linear(24, 5, rngs=rngs)

    def __call__(self, x):
        return self.head(self.block(x))


def params_refs(module):
    """Every >=2-D nnx.Param as M in PyTorch layout."""
    refs = {}
    for path, p in nnx.state(module, nnx.Param).flat_state():
        a = np.asarray(p.get_value() if hasattr(p, "get_value") else p.value)
        if a.ndim < 2:
            continue
        if a.ndim == 2:  # Linear kernel [in, out]
            m = a.T
        else:  # Conv kernel [k..., I, O] -> [O, I, k...]
            r = a.ndim
            m = a.transpose([r - 1, r - 2] + list(range(r - 2))).reshape(a.shape[-1], -1)
        refs["/".join(str(k) for k in path)] = np.ascontiguousarray(m)
    return refs


def jnp_dot():
    """Plain functions on captured arrays (not Flax parameters).

    jnp_gemm_a: x @ w1 is Gemm with B = w1 [K, N] (a weight); w2 @ h.T with
    w2 [N, K] is Gemm with w2 as input A, which the orientation table does
    not cover: not a weight. jnp_einsum: x @ w3 on rank-3 activations is an
    Einsum node, also not in the table: not a weight.
    """
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((12, 20)) / np.sqrt(12)).astype(np.float32)  # [K, N]
    w2 = (rng.standard_normal((6, 20)) / np.sqrt(20)).astype(np.float32)  # [N, K]
    w3 = (rng.standard_normal((12, 8)) / np.sqrt(12)).astype(np.float32)  # [K, N]

    def gemm_a(x):
        h = jnp.tanh(x @ w1)
        return (w2 @ h.T).T

    def einsum(x):
        return jnp.tanh(x @ w3)

    yield "jnp_gemm_a", gemm_a, (1, 12), {"w1": w1.T.copy()}, {"w2": (w2, "Gemm input 0 of rank 2")}
    yield "jnp_einsum", einsum, (2, 3, 12), {}, {"w3": (w3, "Einsum input 1")}


def models():
    m = MLP(nnx.Rngs(0))
    yield "mlp", m, (1, 20), params_refs(m), {}
    m = CNN(nnx.Rngs(0))
    yield "cnn", m, (1, 8, 8, 3), params_refs(m), {}
    m = FunctionNet(nnx.Rngs(0))
    yield "function_block", m, (1, 16), params_refs(m), {}
    yield from jnp_dot()


def check_not_weights(name, proto, not_weights, expected):
    """Each array in `expected` is stored as a not-weight with that reason."""
    values = mu.tensor_values(proto)
    why = {n["name"]: n["why"] for n in not_weights}
    for label, (arr, reason) in expected.items():
        hits = [k for k, v in values.items() if v.shape == arr.shape and np.array_equal(v, arr)]
        if len(hits) != 1 or why.get(hits[0]) != reason:
            raise RuntimeError(f"{name}: {label} stored as {hits}, expected a not-weight ({reason}): {why}")


def main():
    warnings.filterwarnings("ignore")
    out_dir = os.path.join(mu.HERE, FAMILY)
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for name, fn, shape, refs, not_refs in models():
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        want = np.asarray(fn(jnp.asarray(x)))
        proto = to_onnx(
            fn, [shape], opset=OPSET, model_name=name, input_names=["input"], output_names=["output"]
        )
        path = os.path.join(out_dir, f"{name}.onnx")
        onnx.save(proto, path)
        proto = mu.check_onnx(path, {"input": x}, want)
        weights, not_weights = mu.classify(proto)
        mu.check_values(name, proto, weights, refs)
        check_not_weights(name, proto, not_weights, not_refs)
        mu.report_model(path, proto, weights)
        entries.append(mu.manifest_entry(f"{FAMILY}/{name}.onnx", weights, not_weights))
    mu.write_manifest(os.path.join(mu.HERE, f"manifest_{FAMILY}.json"), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
