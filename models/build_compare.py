"""Build the small untrained classifiers that `pa-onnx compare` is tested and
demonstrated with, written directly with onnx.helper (no framework needed,
so CI can rebuild them with the packages it already installs).

- compare/small_cnn.onnx: input [N, 1, 8, 8] (the size of scikit-learn's
  digits), Conv 3x3 (8) -> BatchNorm -> Relu -> Conv 3x3 (16) -> BatchNorm
  -> Relu -> MaxPool 2 -> Flatten -> Gemm (64) -> Relu -> Dropout 0.1 ->
  Gemm (10).
- compare/mlp.onnx: input [N, 64], Gemm (128) -> Relu -> Gemm (64) -> Relu
  -> Gemm (10).

The batch axis is symbolic (`N`), as `torch.onnx.export` writes it with
`dynamic_axes`, so training and evaluation pick their own batch size.
Weights follow PyTorch's default initialization of Conv2d and Linear
(uniform in +-1/sqrt(fan_in) for weights and biases), BatchNorm starts at
scale 1, shift 0, mean 0, variance 1; the seed is fixed, so a rerun gives
the same bytes.

Usage (from the repository root):
    .venv/bin/python models/build_compare.py
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare")
OPSET = 17


def uniform(rng, shape, fan_in):
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


class Net:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, name, **attrs):
        # Node names as torch.onnx.export writes them; tract derives names of
        # its own from a node's name (`conv1` -> `conv1.bias`), which must not
        # meet a tensor's.
        self.nodes.append(helper.make_node(op, inputs, [name], name=f"/{name}/{op}", **attrs))
        return name

    def conv(self, x, name, cin, cout, k):
        fan_in = cin * k * k
        w = self.init(f"{name}.weight", uniform(self.rng, (cout, cin, k, k), fan_in))
        b = self.init(f"{name}.bias", uniform(self.rng, (cout,), fan_in))
        return self.node("Conv", [x, w, b], name, kernel_shape=[k, k], pads=[1, 1, 1, 1])

    def bn(self, x, name, c):
        ins = [
            self.init(f"{name}.weight", np.ones(c, np.float32)),
            self.init(f"{name}.bias", np.zeros(c, np.float32)),
            self.init(f"{name}.running_mean", np.zeros(c, np.float32)),
            self.init(f"{name}.running_var", np.ones(c, np.float32)),
        ]
        return self.node("BatchNormalization", [x] + ins, name, epsilon=1e-5, momentum=0.9)

    def linear(self, x, name, fin, fout):
        w = self.init(f"{name}.weight", uniform(self.rng, (fout, fin), fin))
        b = self.init(f"{name}.bias", uniform(self.rng, (fout,), fin))
        return self.node("Gemm", [x, w, b], name, transB=1)

    def model(self, graph_name, input_shape, out):
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)
        y = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 10])
        graph = helper.make_graph(self.nodes, graph_name, [x], [y], self.inits)
        m = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="pa-onnx models/build_compare.py",
        )
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def small_cnn():
    n = Net(7)
    h = n.conv("input", "conv1", 1, 8, 3)
    h = n.node("Relu", [n.bn(h, "bn1", 8)], "relu1")
    h = n.conv(h, "conv2", 8, 16, 3)
    h = n.node("Relu", [n.bn(h, "bn2", 16)], "relu2")
    h = n.node("MaxPool", [h], "pool", kernel_shape=[2, 2], strides=[2, 2])
    h = n.node("Flatten", [h], "flatten", axis=1)
    h = n.node("Relu", [n.linear(h, "fc1", 256, 64)], "relu3")
    ratio = n.init("dropout.ratio", np.array(0.1, np.float32))
    h = n.node("Dropout", [h, ratio], "dropout")
    h = n.linear(h, "fc2", 64, 10)
    h = n.node("Identity", [h], "logits")
    return n.model("small_cnn", ["N", 1, 8, 8], h)


def mlp():
    n = Net(11)
    h = n.node("Relu", [n.linear("input", "fc1", 64, 128)], "relu1")
    h = n.node("Relu", [n.linear(h, "fc2", 128, 64)], "relu2")
    h = n.linear(h, "fc3", 64, 10)
    h = n.node("Identity", [h], "logits")
    return n.model("mlp", ["N", 64], h)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, build in [("small_cnn", small_cnn), ("mlp", mlp)]:
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(build(), path)
        print(path)


if __name__ == "__main__":
    main()
