"""Export small, untrained Keras models to ONNX with tf2onnx, as fixtures for
pa-onnx (see models/README.md, section Keras / TensorFlow).

Each model is built with a fixed seed (keras.utils.set_random_seed), wrapped
in a tf.function with a static input signature (batch 1, NHWC / NWC like
Keras), and converted with tf2onnx.convert.from_function (Keras 3 models
are not supported by from_keras). The script checks each file with
onnx.checker (full_check) and onnxruntime against Keras, finds the weights
from the ONNX graph alone (models/manifest_util.py), and checks every
weight's matrix against the Keras kernel in PyTorch layout:

- Dense kernel [K, N]: M = kernel transposed (rows N).
- Conv1D [k, I, O], Conv2D [kh, kw, I, O]: PyTorch [O, I, k...] with rows O.
- DepthwiseConv2D [kh, kw, C, m]: PyTorch [C*m, 1, kh, kw].
- Conv2DTranspose [kh, kw, O, I]: PyTorch ConvTranspose [I, O, kh, kw],
  rows I.

Usage (from the repository root, with the venv of models/README.md):
    /work/venvs/tf/bin/python models/export_tf.py
"""

import os
import sys
from unittest import mock

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

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

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import layers  # noqa: E402
import tf2onnx  # noqa: E402

OPSET = 17
FAMILY = "keras"


def dense():
    return keras.Sequential(
        [keras.Input((20,)), layers.Dense(32, activation="relu"), layers.Dense(10)]
    )


def cnn():
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
        ]
    )


def conv1d():
    return keras.Sequential(
        [keras.Input((32, 4)), layers.Conv1D(16, 5, activation="relu"), layers.Conv1D(8, 3)]
    )


def depthwise():
    return keras.Sequential(
        [
            keras.Input((12, 12, 8)),
            layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
            layers.Conv2D(8, 1),
        ]
    )


def conv2d_transpose():
    # Input and output channels differ so that [I, O, k, k] cannot be
    # mistaken for [O, I, k, k].
    return keras.Sequential(
        [
            keras.Input((6, 6, 8)),
            layers.Conv2DTranspose(12, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(4, 4, strides=2, padding="same"),
        ]
    )


MODELS = {
    "dense": dense,
    "cnn": cnn,
    "conv1d": conv1d,
    "depthwise_conv": depthwise,
    "conv2d_transpose": conv2d_transpose,
}

# Also exported with tf2onnx's optimizers off (file suffix `_unoptimized`).
# Only kept where that changes how a kernel is stored: for Dense, Conv1D,
# Conv2D and Conv2DTranspose the kernels are the same initializers either
# way (tf2onnx transposes constant kernels while converting), and only
# activation Transposes and Identity nodes differ.
UNOPTIMIZED = ("depthwise_conv",)

# Kernels that a file reads through an op outside the orientation table's
# see-through list (Identity, Cast, Transpose), so they are not weights:
# file -> {Keras layer type: the manifest's reason}.
HIDDEN = {
    "depthwise_conv_unoptimized": {"DepthwiseConv2D": "Reshape input 0"},
}


def reference_matrices(model):
    """Each Keras kernel as M in PyTorch layout (see the module docstring)."""
    refs = {}
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        k = np.asarray(layer.kernel.numpy())
        if isinstance(layer, layers.Dense):
            m = k.T
        elif isinstance(layer, layers.DepthwiseConv2D):
            kh, kw, c, mult = k.shape
            m = k.transpose(2, 3, 0, 1).reshape(c * mult, kh * kw)
        elif isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv2DTranspose)):
            # [k..., I, O] -> [O, I, k...]; for Conv2DTranspose the stored
            # [kh, kw, O, I] becomes [I, O, kh, kw], the ConvTranspose layout.
            r = k.ndim
            m = k.transpose([r - 1, r - 2] + list(range(r - 2)))
            m = m.reshape(m.shape[0], -1)
        else:
            raise RuntimeError(f"no reference layout for {type(layer).__name__}")
        refs[layer.name] = np.ascontiguousarray(m)
    return refs


def export(name, build, out_dir, optimize=True):
    keras.backend.clear_session()  # restart the layer-name counters
    keras.utils.set_random_seed(0)
    model = build()
    shape = (1,) + tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = model(x).numpy()

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    def fn(inp):
        return {"output": model(inp)}

    path = os.path.join(out_dir, f"{name}.onnx")
    if optimize:
        tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET, output_path=path)
    else:
        # tf2onnx's graph optimizers (transpose push-down, constant folding)
        # turned off: the kernels stay in TensorFlow layout behind Transposes.
        with mock.patch.dict(tf2onnx.optimizer._optimizers, clear=True):
            tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET, output_path=path)
    proto = mu.check_onnx(path, {"input": x}, want)
    weights, not_weights = mu.classify(proto)
    refs = reference_matrices(model)
    values = mu.tensor_values(proto)
    why = {n["name"]: n["why"] for n in not_weights}
    for layer_type, reason in HIDDEN.get(name, {}).items():
        # The kernel is stored in Keras layout and read through an op that
        # is not in the see-through list: not a weight, by the table.
        layer = next(l for l in model.layers if type(l).__name__ == layer_type)
        kernel = np.asarray(layer.kernel.numpy())
        hits = [k for k, v in values.items() if v.shape == kernel.shape and np.array_equal(v, kernel)]
        if len(hits) != 1 or why.get(hits[0]) != reason:
            raise RuntimeError(f"{name}: {layer_type} kernel stored as {hits}, expected not a weight ({reason})")
        del refs[layer.name]
    mu.check_values(name, proto, weights, refs)
    mu.report_model(path, proto, weights)
    return mu.manifest_entry(f"{FAMILY}/{name}.onnx", weights, not_weights)


def main():
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    out_dir = os.path.join(mu.HERE, FAMILY)
    os.makedirs(out_dir, exist_ok=True)
    only = sys.argv[1:]
    entries = []
    for name, build in MODELS.items():
        if only and name not in only:
            continue
        entries.append(export(name, build, out_dir))
        if name in UNOPTIMIZED:
            entries.append(export(name + "_unoptimized", build, out_dir, optimize=False))
    if not only:
        mu.write_manifest(os.path.join(mu.HERE, f"manifest_{FAMILY}.json"), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
