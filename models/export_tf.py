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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifest_util as mu  # noqa: E402

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


def export(name, build, out_dir):
    keras.utils.set_random_seed(0)
    model = build()
    shape = (1,) + tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = model(x).numpy()

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="input")])
    def fn(inp):
        return {"output": model(inp)}

    path = os.path.join(out_dir, f"{name}.onnx")
    tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=OPSET, output_path=path)
    proto = mu.check_onnx(path, {"input": x}, want)
    weights, not_weights = mu.classify(proto)
    mu.check_values(name, proto, weights, reference_matrices(model))
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
    if not only:
        mu.write_manifest(os.path.join(mu.HERE, f"manifest_{FAMILY}.json"), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
