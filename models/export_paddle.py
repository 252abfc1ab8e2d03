"""Export small, untrained PaddlePaddle models to ONNX with paddle2onnx (via
paddle.onnx.export), as fixtures for pa-onnx (see models/README.md, section
PaddlePaddle).

Paddle's layouts: nn.Linear weight [in, out] (M = weight transposed);
nn.Conv2D weight [O, I/g, kh, kw] (NCHW, as in PyTorch); nn.Conv2DTranspose
weight [I, O/g, kh, kw]. Each file is checked with onnx.checker
(full_check) and onnxruntime against Paddle, and every weight's matrix is
checked against the Paddle parameter in PyTorch layout.

Usage (from the repository root, with the venv of models/README.md):
    /work/venvs/paddle/bin/python models/export_paddle.py
"""

import os
import sys
import tempfile
import warnings

import numpy as np

import importlib.util

# Python puts the script's folder, models/, first on sys.path; its folders
# models/jax, models/keras, models/paddle, models/sklearn would then be
# importable as namespace packages and stand in for a framework that is not
# installed in this venv. Drop it, and load the helper by path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
_spec = importlib.util.spec_from_file_location("manifest_util", os.path.join(_HERE, "manifest_util.py"))
mu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mu)

import paddle  # noqa: E402
from paddle import nn  # noqa: E402

OPSET = 17
FAMILY = "paddle"


class MLP(nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(20, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(nn.functional.relu(self.fc1(x)))


class CNN(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2D(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2D(8, 16, 3)
        self.fc = nn.Linear(16 * 6 * 6, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(nn.functional.relu(self.conv1(x)), 2)
        x = nn.functional.relu(self.conv2(x))
        return self.fc(paddle.flatten(x, 1))


class DepthwiseTranspose(nn.Layer):
    """A depthwise 3x3 conv (groups = channels), a 1x1 conv, and a
    transposed conv whose input and output channels differ."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2D(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2D(8, 12, 1)
        self.up = nn.Conv2DTranspose(12, 4, 4, stride=2, padding=1)

    def forward(self, x):
        x = nn.functional.relu(self.pw(nn.functional.relu(self.dw(x))))
        return self.up(x)


MODELS = {
    "mlp": (MLP, [1, 20]),
    "cnn": (CNN, [1, 3, 16, 16]),
    "depthwise_convtranspose": (DepthwiseTranspose, [1, 8, 6, 6]),
}


def reference_matrices(layer):
    refs = {}
    for name, p in layer.named_parameters():
        a = p.numpy()
        if a.ndim < 2:
            continue
        m = a.T if a.ndim == 2 else a.reshape(a.shape[0], -1)  # Linear [in, out]
        refs[name] = np.ascontiguousarray(m)
    return refs


def export(name, cls, shape, out_dir):
    paddle.seed(0)
    with paddle.utils.unique_name.guard():  # parameter names restart per model
        layer = cls()
    layer.eval()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    want = layer(paddle.to_tensor(x)).numpy()
    path = os.path.join(out_dir, f"{name}.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, name)
        spec = [paddle.static.InputSpec(shape=shape, dtype="float32", name="input")]
        paddle.onnx.export(layer, prefix, input_spec=spec, opset_version=OPSET)
        os.replace(prefix + ".onnx", path)
    proto = mu.check_onnx(path, {"input": x}, want)
    weights, not_weights = mu.classify(proto)
    mu.check_values(name, proto, weights, reference_matrices(layer))
    mu.report_model(path, proto, weights)
    return mu.manifest_entry(f"{FAMILY}/{name}.onnx", weights, not_weights)


def main():
    warnings.filterwarnings("ignore")
    paddle.set_device("cpu")
    out_dir = os.path.join(mu.HERE, FAMILY)
    os.makedirs(out_dir, exist_ok=True)
    entries = [export(name, cls, shape, out_dir) for name, (cls, shape) in MODELS.items()]
    mu.write_manifest(os.path.join(mu.HERE, f"manifest_{FAMILY}.json"), entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
